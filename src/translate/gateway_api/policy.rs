//! `WebSocketPolicy` attachment (GEP-713): a policy targets a Gateway (or one listener), an
//! HTTPRoute (or one rule) or a Service in its own namespace. The most specific target wins:
//! route rule > route > Service > listener > Gateway; among policies on the same target the
//! oldest (then by name) wins and the others are `Conflicted`.

use super::PolicyReport;
use crate::crd::WebSocketPolicy;
use crate::gwapi;
use crate::ir::{BackendSettings, Timeout};
use crate::translate::conditions::Condition;
use crate::translate::diagnostics::{Diagnostics, ObjectRef};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// What a policy targets, normalised.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Target {
    Gateway(String, Option<String>),
    Route(String, Option<String>),
    Service(String),
}

/// A parsed policy.
#[derive(Clone, Debug)]
struct Parsed {
    object: ObjectRef,
    liveness: Option<Timeout>,
    websocket: Option<crate::crd::WebSocketSpec>,
}

/// A policy, its targets (namespace, target) and its own conditions.
type PolicyEntry = (ObjectRef, Vec<(String, Target)>, Vec<Condition>);

/// The policies of a snapshot, indexed by (namespace, target).
pub(crate) struct Policies {
    by_target: HashMap<(String, Target), Parsed>,
    all: Vec<PolicyEntry>,
    /// The BackendTLSPolicies, consulted for each Service a route reaches.
    pub(crate) backend_tls: super::backend_tls::BackendTls,
}

impl Policies {
    /// Parses every policy; invalid fields are errors on the policy. Kept whole: parsing,
    /// validation and conflict resolution share the per-policy error list and condition.
    pub(crate) fn new(list: &[Arc<WebSocketPolicy>], diags: &mut Diagnostics) -> Self {
        let sorted = super::oldest_first(list);
        let mut by_target = HashMap::new();
        let mut all = Vec::new();
        for p in sorted {
            let object = ObjectRef::of("WebSocketPolicy", p);
            let ns = object.namespace.clone();
            let mut errors = Vec::new();
            let liveness = p.spec.liveness_timeout.as_deref().and_then(|t| {
                Timeout::parse(t)
                    .map_err(|e| errors.push(("spec.livenessTimeout".to_string(), e)))
                    .ok()
            });
            if let Some(ws) = &p.spec.websocket {
                for (f, v) in [
                    ("pingInterval", &ws.ping_interval),
                    ("idleTimeout", &ws.idle_timeout),
                    ("maxSessionDuration", &ws.max_session_duration),
                ] {
                    if let Some(v) = v
                        && let Err(e) = Timeout::parse(v)
                    {
                        errors.push((format!("spec.websocket.{f}"), e));
                    }
                }
            }
            let mut targets = Vec::new();
            for (i, t) in p.spec.target_refs.iter().enumerate() {
                let target = match (t.group.as_str(), t.kind.as_str()) {
                    (gwapi::GROUP, "Gateway") => {
                        Target::Gateway(t.name.clone(), t.section_name.clone())
                    }
                    (gwapi::GROUP, "HTTPRoute") => {
                        Target::Route(t.name.clone(), t.section_name.clone())
                    }
                    ("", "Service") => Target::Service(t.name.clone()),
                    (g, k) => {
                        errors.push((
                            format!("spec.targetRefs[{i}]"),
                            format!("{k} of group {g:?} cannot be targeted; Gateway, HTTPRoute (gateway.networking.k8s.io) and Service can"),
                        ));
                        continue;
                    }
                };
                targets.push((ns.clone(), target));
            }
            let mut conds = Vec::new();
            if errors.is_empty() {
                let parsed = Parsed {
                    object: object.clone(),
                    liveness,
                    websocket: p.spec.websocket.clone(),
                };
                for key in &targets {
                    if let Some(winner) = by_target.get(key) {
                        let w: &Parsed = winner;
                        diags.warn(&object, "spec.targetRefs", format!("{} already sets these settings for the same target; this policy is ignored there", w.object));
                        conds.push(Condition::failed(
                            "Accepted",
                            "Conflicted",
                            format!("{} targets the same object and is older", w.object),
                        ));
                    } else {
                        by_target.insert(key.clone(), parsed.clone());
                    }
                }
            } else {
                for (f, e) in &errors {
                    diags.error(&object, f.clone(), e.clone());
                }
                let text: Vec<String> = errors.iter().map(|(f, e)| format!("{f}: {e}")).collect();
                conds.push(Condition::failed("Accepted", "Invalid", text.join("; ")));
            }
            all.push((object, targets, conds));
        }
        Self {
            by_target,
            all,
            backend_tls: Default::default(),
        }
    }

    /// These policies with the snapshot's BackendTLSPolicies.
    pub(crate) fn with_backend_tls(self, backend_tls: super::backend_tls::BackendTls) -> Self {
        Self {
            backend_tls,
            ..self
        }
    }

    /// Applies the most specific policy for a backend of `route` (rule `rule`) on Gateway `gw`
    /// (listener `listener`), Service `service`, all in the given namespaces.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn apply(
        &self,
        settings: &mut BackendSettings,
        route_ns: &str,
        route: &str,
        rule: Option<&str>,
        service_ns: &str,
        service: &str,
        gw_ns: &str,
        gw: &str,
        listener: &str,
    ) {
        let candidates = [
            rule.map(|r| (route_ns, Target::Route(route.into(), Some(r.into())))),
            Some((route_ns, Target::Route(route.into(), None))),
            Some((service_ns, Target::Service(service.into()))),
            Some((gw_ns, Target::Gateway(gw.into(), Some(listener.into())))),
            Some((gw_ns, Target::Gateway(gw.into(), None))),
        ];
        let Some(p) = candidates
            .into_iter()
            .flatten()
            .find_map(|(ns, t)| self.by_target.get(&(ns.to_string(), t)))
        else {
            return;
        };
        if let Some(l) = p.liveness {
            settings.request_timeout = l;
        }
        if let Some(ws) = &p.websocket {
            let w = &mut settings.websocket;
            if let Some(e) = ws.enabled {
                w.enabled = e;
            }
            let set = |v: &Option<String>, slot: &mut Timeout| {
                if let Some(t) = v.as_deref().and_then(|v| Timeout::parse(v).ok()) {
                    *slot = t;
                }
            };
            set(&ws.ping_interval, &mut w.ping_interval);
            set(&ws.idle_timeout, &mut w.idle_timeout);
            set(&ws.max_session_duration, &mut w.max_session_duration);
            if let Some(m) = ws.max_message_bytes {
                w.max_message_bytes = m;
            }
            if let Some(m) = ws.max_connections {
                w.max_connections = m;
            }
        }
    }

    /// Status per policy: `Accepted` for each ancestor Gateway of its targets.
    pub(crate) fn report(
        &self,
        gateways: &[Arc<gwapi::Gateway>],
        routes: &[Arc<gwapi::HTTPRoute>],
    ) -> Vec<PolicyReport> {
        let mut out = Vec::new();
        for (object, targets, conds) in &self.all {
            let mut ancestors: BTreeMap<(String, String), Condition> = BTreeMap::new();
            for (ns, t) in targets {
                let gws: Vec<(String, String)> = match t {
                    Target::Gateway(name, _) => gateways
                        .iter()
                        .filter(|g| {
                            g.metadata.namespace.as_deref() == Some(ns)
                                && g.metadata.name.as_deref() == Some(name)
                        })
                        .map(|_| (ns.clone(), name.clone()))
                        .collect(),
                    Target::Route(name, _) => routes
                        .iter()
                        .filter(|r| {
                            r.metadata.namespace.as_deref() == Some(ns)
                                && r.metadata.name.as_deref() == Some(name)
                        })
                        .flat_map(|r| {
                            r.spec.parent_refs.iter().map(|p| {
                                (
                                    p.namespace.clone().unwrap_or_else(|| ns.clone()),
                                    p.name.clone(),
                                )
                            })
                        })
                        .collect(),
                    Target::Service(_) => Vec::new(),
                };
                for g in gws {
                    let c = conds
                        .first()
                        .cloned()
                        .unwrap_or_else(|| Condition::ok("Accepted", "Accepted"));
                    ancestors.entry(g).or_insert(c);
                }
            }
            out.push(PolicyReport {
                object: object.clone(),
                ancestors: ancestors.into_iter().collect(),
            });
        }
        out
    }
}
