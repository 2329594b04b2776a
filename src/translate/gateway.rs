//! `Gateway` objects -> listeners, pools, settings and routes, plus their status conditions.

use super::backends::{Index, PortRef};
use super::builder::{Origin, Source, TableBuilder, Target};
use super::conditions::Condition;
use super::diagnostics::{Diagnostics, ObjectRef};
use super::firewall;
use super::settings;
use crate::crd::Gateway;
use crate::ir::{
    Backend, BackendSettings, Endpoint, HostMatch, ListenerProtocol, PathMatch, Redacted,
    TlsCertificate,
};
use crate::source::Snapshot;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// The three conditions of a Gateway's status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GatewayConditions {
    /// The spec is valid.
    pub accepted: Condition,
    /// Every Service/Secret reference resolves.
    pub resolved_refs: Condition,
    /// At least one route made it into the table.
    pub programmed: Condition,
}

pub(crate) fn translate_all(
    snapshot: &Snapshot,
    index: &Index<'_>,
    builder: &mut TableBuilder,
    diags: &mut Diagnostics,
) -> Vec<(ObjectRef, GatewayConditions)> {
    snapshot
        .gateways
        .iter()
        .map(|gw| translate_one(gw, index, builder, diags))
        .collect()
}

fn duplicates<'a>(names: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut seen = HashSet::new();
    names.filter(|n| !seen.insert(*n)).collect()
}

/// Everything one Gateway's parts need while it is translated.
struct Ctx<'a> {
    gw: &'a Gateway,
    index: &'a Index<'a>,
    obj: ObjectRef,
    ns: String,
    /// `creationTimestamp`, which orders conflicting routes (oldest wins).
    created: Option<String>,
    /// Why references did not resolve (the `ResolvedRefs` message).
    unresolved: Vec<String>,
    /// The Gateway's firewall in the table.
    firewall: Option<usize>,
}

/// Listener name -> (port, hostnames).
type Listeners<'a> = HashMap<&'a str, (u16, Vec<HostMatch>)>;

fn translate_one(
    gw: &Gateway,
    index: &Index<'_>,
    b: &mut TableBuilder,
    diags: &mut Diagnostics,
) -> (ObjectRef, GatewayConditions) {
    let obj = ObjectRef::of("Gateway", gw);
    let mut cx = Ctx {
        gw,
        index,
        ns: obj.namespace.clone(),
        obj,
        created: gw
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.to_string()),
        unresolved: Vec::new(),
        firewall: None,
    };
    cx.unique_names(diags);
    cx.firewall = gw
        .spec
        .firewall
        .as_ref()
        .map(|f| b.firewall(firewall::from_spec(f, &cx.obj, diags)));
    let listeners = cx.listeners(b, diags);
    let pools = cx.pools(diags);
    let settings = cx.settings(diags);
    let routes = cx.rules(&listeners, &pools, &settings, b, diags);
    let conditions = cx.conditions(routes, diags);
    (cx.obj, conditions)
}

impl<'a> Ctx<'a> {
    /// Names must be unique within each list.
    fn unique_names(&self, diags: &mut Diagnostics) {
        let spec = &self.gw.spec;
        let lists: [(&str, Vec<&str>); 5] = [
            (
                "spec.listeners",
                spec.listeners.iter().map(|l| l.name.as_str()).collect(),
            ),
            (
                "spec.backendPools",
                spec.backend_pools.iter().map(|p| p.name.as_str()).collect(),
            ),
            (
                "spec.backendSettings",
                spec.backend_settings
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect(),
            ),
            (
                "spec.probes",
                spec.probes.iter().map(|p| p.name.as_str()).collect(),
            ),
            (
                "spec.routingRules",
                spec.routing_rules.iter().map(|r| r.name.as_str()).collect(),
            ),
        ];
        for (list, names) in lists {
            for dup in duplicates(names.into_iter()) {
                diags.error(
                    &self.obj,
                    list,
                    format!("name {dup:?} is used more than once; names must be unique"),
                );
            }
        }
    }

    /// Declares each valid listener's port (and certificate) and returns name -> (port, hosts).
    fn listeners(&mut self, b: &mut TableBuilder, diags: &mut Diagnostics) -> Listeners<'a> {
        let mut out: Listeners<'a> = HashMap::new();
        for (i, l) in self.gw.spec.listeners.iter().enumerate() {
            let field = format!("spec.listeners[{i}]");
            if out.contains_key(l.name.as_str()) {
                continue;
            }
            let Some(protocol) = self.listener_protocol(l, &field, diags) else {
                continue;
            };
            if let Err(e) = b.listener(l.port, protocol) {
                diags.error(
                    &self.obj,
                    format!("{field}.port"),
                    format!("{e}; listener ignored"),
                );
                continue;
            }
            let mut hosts = Vec::new();
            for (hi, h) in l.hostnames.iter().enumerate() {
                match HostMatch::parse(h) {
                    Ok(h) => hosts.push(h),
                    Err(e) => diags.error(&self.obj, format!("{field}.hostnames[{hi}]"), e),
                }
            }
            if hosts.is_empty() {
                hosts.push(HostMatch::Any);
            }
            if let (ListenerProtocol::Https, Some(tls)) = (protocol, &l.tls) {
                self.certificate(l.port, &tls.secret_name, &hosts, &field, b, diags);
            }
            // A duplicate name was reported above; the first definition wins.
            out.entry(l.name.as_str()).or_insert((l.port, hosts));
        }
        out
    }

    /// The listener's protocol, or `None` (reported) when the listener cannot be served.
    fn listener_protocol(
        &self,
        l: &crate::crd::GatewayListener,
        field: &str,
        diags: &mut Diagnostics,
    ) -> Option<ListenerProtocol> {
        let obj = &self.obj;
        let protocol = match l.protocol.as_str() {
            "HTTP" => ListenerProtocol::Http,
            "HTTPS" => ListenerProtocol::Https,
            other => {
                diags.error(
                    obj,
                    format!("{field}.protocol"),
                    format!("invalid protocol {other:?}; expected HTTP or HTTPS"),
                );
                return None;
            }
        };
        if l.port == 0 {
            diags.error(
                obj,
                format!("{field}.port"),
                "port must be 1-65535; listener ignored",
            );
            return None;
        }
        if protocol == ListenerProtocol::Https && l.tls.is_none() {
            diags.error(
                obj,
                format!("{field}.tls"),
                "an HTTPS listener needs tls.secretName; listener ignored",
            );
            return None;
        }
        if protocol == ListenerProtocol::Http && l.tls.is_some() {
            diags.warn(
                obj,
                format!("{field}.tls"),
                "tls is only used with protocol HTTPS; ignored",
            );
        }
        Some(protocol)
    }

    /// Adds an HTTPS listener's certificate, or reports the Secret as unresolved.
    fn certificate(
        &mut self,
        port: u16,
        secret: &str,
        hosts: &[HostMatch],
        field: &str,
        b: &mut TableBuilder,
        diags: &mut Diagnostics,
    ) {
        let ns = &self.ns;
        match self.index.secrets.certificate(ns, secret) {
            Ok((cert, key)) => b.certificate(
                port,
                TlsCertificate {
                    source: format!("Secret {ns}/{secret}"),
                    hosts: hosts.to_vec(),
                    cert_pem: Redacted(cert),
                    key_pem: Redacted(key),
                },
            ),
            Err(e) => {
                // Like a missing Service: reported, and the rest of the gateway is served.
                diags.warn(
                    &self.obj,
                    format!("{field}.tls.secretName"),
                    format!(
                        "{e}; the default (self-signed) certificate is served until it resolves"
                    ),
                );
                self.unresolved.push(e);
            }
        }
    }

    /// Pool name -> endpoints (an unresolved Service gives an empty pool: 503 until it resolves).
    fn pools(&mut self, diags: &mut Diagnostics) -> HashMap<&'a str, Vec<Endpoint>> {
        let mut pools: HashMap<&str, Vec<Endpoint>> = HashMap::new();
        for (i, p) in self.gw.spec.backend_pools.iter().enumerate() {
            let field = format!("spec.backendPools[{i}]");
            if pools.contains_key(p.name.as_str()) {
                continue;
            }
            let eps = match (&p.service, p.addresses.is_empty()) {
                (Some(svc), true) => {
                    let port = match &svc.port {
                        IntOrString::Int(n) => PortRef::Number(*n),
                        IntOrString::String(s) => PortRef::Name(s.clone()),
                    };
                    match self.index.resolve(&self.ns, &svc.name, &port) {
                        Ok(found) => found,
                        Err(e) => {
                            diags.warn(
                                &self.obj,
                                format!("{field}.service"),
                                format!("{e}; requests get 503 until it resolves"),
                            );
                            self.unresolved.push(e);
                            Vec::new()
                        }
                    }
                }
                (None, false) => self.static_addresses(p, &field, diags),
                _ => {
                    diags.error(
                        &self.obj,
                        field,
                        "exactly one of service or addresses is required; pool ignored",
                    );
                    continue;
                }
            };
            pools.insert(p.name.as_str(), eps);
        }
        pools
    }

    fn static_addresses(
        &self,
        p: &crate::crd::BackendPool,
        field: &str,
        diags: &mut Diagnostics,
    ) -> Vec<Endpoint> {
        let mut eps = Vec::new();
        for (ai, a) in p.addresses.iter().enumerate() {
            if a.host.trim().is_empty() || a.port == 0 {
                diags.error(
                    &self.obj,
                    format!("{field}.addresses[{ai}]"),
                    "host and a port 1-65535 are required",
                );
                continue;
            }
            eps.push(Endpoint {
                host: a.host.trim().into(),
                port: a.port,
            });
        }
        eps
    }

    /// Settings name -> parsed settings (the first definition of a name wins).
    fn settings(&self, diags: &mut Diagnostics) -> HashMap<&'a str, BackendSettings> {
        let spec = &self.gw.spec;
        let mut out = HashMap::new();
        for (i, s) in spec.backend_settings.iter().enumerate() {
            let parsed = settings::from_spec(
                s,
                &spec.probes,
                &self.index.secrets,
                &format!("spec.backendSettings[{i}]"),
                &self.obj,
                diags,
            );
            out.entry(s.name.as_str()).or_insert(parsed);
        }
        out
    }

    /// Adds the routes of every routing rule; returns how many were added.
    fn rules(
        &self,
        listeners: &Listeners<'_>,
        pools: &HashMap<&str, Vec<Endpoint>>,
        settings: &HashMap<&str, BackendSettings>,
        b: &mut TableBuilder,
        diags: &mut Diagnostics,
    ) -> usize {
        let mut routes = 0usize;
        for (i, rule) in self.gw.spec.routing_rules.iter().enumerate() {
            let field = format!("spec.routingRules[{i}]");
            let Some(eps) = pools.get(rule.backend_pool.as_str()) else {
                diags.error(
                    &self.obj,
                    format!("{field}.backendPool"),
                    format!(
                        "no backend pool named {:?}; rule ignored",
                        rule.backend_pool
                    ),
                );
                continue;
            };
            let set = match &rule.backend_settings {
                None => BackendSettings::default(),
                Some(name) => match settings.get(name.as_str()) {
                    Some(s) => s.clone(),
                    None => {
                        diags.error(
                            &self.obj,
                            format!("{field}.backendSettings"),
                            format!("no backend settings named {name:?}; rule ignored"),
                        );
                        continue;
                    }
                },
            };
            let paths = self.paths(rule, &field, diags);
            if rule.listeners.is_empty() {
                diags.error(
                    &self.obj,
                    format!("{field}.listeners"),
                    "at least one listener is required; rule ignored",
                );
                continue;
            }
            let backend = b.backend(Backend {
                id: format!("{}/{}/{}", self.ns, self.obj.name, rule.backend_pool).into(),
                endpoints: eps.clone().into(),
                settings: set,
            });
            let forward_original_path = match rule.path_normalization.as_deref() {
                None => false,
                Some(v) => match super::annotations::parse_path_normalization(v) {
                    Ok(keep) => keep,
                    Err(e) => {
                        diags.error(&self.obj, format!("{field}.pathNormalization"), e);
                        continue;
                    }
                },
            };
            let target = Target {
                backend,
                firewall: self.firewall,
                forward_original_path,
            };
            routes += self.place(rule, &field, &paths, target, listeners, b, diags);
        }
        routes
    }

    /// A rule's paths (every path when it lists none).
    fn paths(
        &self,
        rule: &crate::crd::RoutingRule,
        field: &str,
        diags: &mut Diagnostics,
    ) -> Vec<PathMatch> {
        let mut paths = Vec::new();
        for (pi, p) in rule.paths.iter().enumerate() {
            let parsed = match p.type_.as_str() {
                "Exact" => PathMatch::exact(&p.path),
                "Prefix" => PathMatch::prefix(&p.path),
                other => Err(format!("invalid type {other:?}; expected Exact or Prefix")),
            };
            match parsed {
                Ok(pm) => paths.push(pm),
                Err(e) => diags.error(
                    &self.obj,
                    format!("{field}.paths[{pi}]"),
                    format!("{e}; path ignored"),
                ),
            }
        }
        if rule.paths.is_empty() {
            paths.push(PathMatch::Prefix("/".into()));
        }
        paths
    }

    /// Adds one route per listener host and path of a rule; returns how many.
    #[allow(clippy::too_many_arguments)]
    fn place(
        &self,
        rule: &crate::crd::RoutingRule,
        field: &str,
        paths: &[PathMatch],
        target: Target,
        listeners: &Listeners<'_>,
        b: &mut TableBuilder,
        diags: &mut Diagnostics,
    ) -> usize {
        let id: Arc<str> = format!("{}/{}/{}", self.ns, self.obj.name, rule.name).into();
        let mut routes = 0;
        for (li, lname) in rule.listeners.iter().enumerate() {
            let Some((port, hosts)) = listeners.get(lname.as_str()) else {
                if !self.gw.spec.listeners.iter().any(|l| &l.name == lname) {
                    diags.error(
                        &self.obj,
                        format!("{field}.listeners[{li}]"),
                        format!("no listener named {lname:?}"),
                    );
                }
                continue;
            };
            for h in hosts {
                for p in paths {
                    let origin = Origin {
                        source: Source::new(self.created.clone(), self.obj.clone()),
                        field: field.to_string(),
                    };
                    b.route(*port, h.clone(), p.clone(), id.clone(), target, origin);
                    routes += 1;
                }
            }
        }
        routes
    }

    /// Accepted (no error), ResolvedRefs (every reference resolved), Programmed (some route).
    fn conditions(&self, routes: usize, diags: &Diagnostics) -> GatewayConditions {
        let errors: Vec<String> = diags
            .for_object(&self.obj)
            .filter(|d| d.severity == super::Severity::Error)
            .map(|d| format!("{}: {}", d.field, d.message))
            .collect();
        let accepted = if diags.has_error_for(&self.obj) {
            Condition::failed("Accepted", "Invalid", errors.join("; "))
        } else {
            Condition::ok("Accepted", "Accepted")
        };
        let resolved_refs = if self.unresolved.is_empty() {
            Condition::ok("ResolvedRefs", "ResolvedRefs")
        } else {
            Condition::failed(
                "ResolvedRefs",
                "BackendNotFound",
                self.unresolved.join("; "),
            )
        };
        let programmed = if routes > 0 {
            Condition::ok("Programmed", "Programmed")
        } else {
            Condition::failed("Programmed", "NoRoutes", "no routing rule could be served")
        };
        GatewayConditions {
            accepted,
            resolved_refs,
            programmed,
        }
    }
}
