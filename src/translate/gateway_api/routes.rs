//! HTTPRoute -> routes on the listeners its `parentRefs` select, with matches, weighted backends,
//! filters, timeouts and session policies; plus its `parents[]` status.

use super::hostnames::{intersect, isolate};
use super::listeners::{Declared, FromNamespaces};
use super::matches;
use super::namespaces::NamespaceLabels;
use super::policy::Policies;
use super::refs::{Grants, Reference};
use super::{ParentReport, RouteReport};
use crate::gwapi::{self, HTTPBackendRef, HTTPRoute, HTTPRouteRule, ParentReference};
use crate::ir::{
    Backend, BackendProtocol, BackendSettings, HostMatch, Redacted, RouteFilters, Timeout,
};
use crate::translate::backends::{Index, PortRef};
use crate::translate::builder::{Origin, RouteExtras, Source, TableBuilder, Target};
use crate::translate::conditions::Condition;
use crate::translate::diagnostics::{Diagnostics, ObjectRef};
use std::sync::Arc;

/// Weighted backends `(index, weight)`.
type Split = Arc<[(usize, u32)]>;

/// Where a rule's backends are used: the Gateway and listener, the rule's name, its timeout.
struct Placement<'a> {
    gw: &'a Declared,
    listener: &'a str,
    rule: Option<&'a str>,
    timeout: Option<Timeout>,
}

/// One listener the route attached to, with the host names it serves there.
struct Attachment {
    gateway: usize,
    listener: usize,
    hosts: Vec<HostMatch>,
}

/// Why a parent reference did not attach.
fn parent_label(p: &ParentReference, route_ns: &str) -> String {
    let mut s = format!(
        "Gateway {}/{}",
        p.namespace.as_deref().unwrap_or(route_ns),
        p.name
    );
    if let Some(sec) = &p.section_name {
        s += &format!(" sectionName {sec}");
    }
    if let Some(port) = p.port {
        s += &format!(" port {port}");
    }
    s
}

/// What attaching a route reads besides the route and the Gateways: the same for every route.
pub(crate) struct Lookups<'a> {
    /// Services and their ports.
    pub(crate) index: &'a Index<'a>,
    /// ReferenceGrants.
    pub(crate) grants: &'a Grants<'a>,
    /// WebSocketPolicies and BackendTLSPolicies.
    pub(crate) policies: &'a Policies,
    /// Namespace labels, for listeners' namespace selectors.
    pub(crate) namespaces: &'a NamespaceLabels<'a>,
}

/// Attaches one HTTPRoute; returns its wanted status.
pub(crate) fn attach(
    route: &HTTPRoute,
    gateways: &mut [Declared],
    lookups: &Lookups<'_>,
    b: &mut TableBuilder,
    diags: &mut Diagnostics,
) -> RouteReport {
    let Lookups {
        index,
        grants,
        policies,
        namespaces,
    } = *lookups;
    let obj = ObjectRef::new(
        "HTTPRoute",
        route.metadata.namespace.as_deref(),
        route.metadata.name.as_deref(),
    );
    let ns = obj.namespace.clone();
    let mut report = RouteReport {
        object: obj.clone(),
        parents: Vec::new(),
    };
    let mut hostnames = Vec::new();
    for (i, h) in route.spec.hostnames.iter().enumerate() {
        match HostMatch::parse_gateway_api(h) {
            Ok(h) => hostnames.push(h),
            Err(e) => diags.error(&obj, format!("spec.hostnames[{i}]"), e),
        }
    }
    for (pi, parent) in route.spec.parent_refs.iter().enumerate() {
        let group = parent.group.as_deref().unwrap_or(gwapi::GROUP);
        let kind = parent.kind.as_deref().unwrap_or("Gateway");
        let parent_ns = parent.namespace.as_deref().unwrap_or(&ns);
        let Some(gi) = gateways.iter().position(|g| {
            group == gwapi::GROUP
                && kind == "Gateway"
                && g.object.namespace == parent_ns
                && g.object.name == parent.name
        }) else {
            continue; // Not a Gateway of ours: its controller reports.
        };
        let field = format!("spec.parentRefs[{pi}]");
        let (attached, refusal) =
            select_listeners(&gateways[gi], gi, parent, &ns, namespaces, &hostnames);
        let accepted = if attached.is_empty() {
            let (reason, msg) =
                refusal.unwrap_or(("NoMatchingParent", "no listener matches".into()));
            diags.warn(
                &obj,
                &field,
                format!("not attached to {}: {msg}", parent_label(parent, &ns)),
            );
            Condition::failed("Accepted", reason, msg)
        } else {
            Condition::ok("Accepted", "Accepted")
        };
        for a in &attached {
            gateways[a.gateway].listeners[a.listener].attached += 1;
        }
        let (resolved, rule_problem) = place_rules(
            route, &obj, &attached, gateways, index, grants, policies, b, diags,
        );
        let accepted = match (accepted.is_true(), rule_problem) {
            (true, Some(m)) => Condition::failed("Accepted", "UnsupportedValue", m),
            (_, _) if !accepted.is_true() => accepted,
            _ => accepted,
        };
        report.parents.push(ParentReport {
            parent_ref: parent.clone(),
            parent: parent_label(parent, &ns),
            conditions: vec![accepted, resolved],
        });
    }
    report
}

/// The listeners of a Gateway a parent reference selects and that accept the route.
fn select_listeners(
    gw: &Declared,
    gi: usize,
    parent: &ParentReference,
    route_ns: &str,
    namespaces: &NamespaceLabels<'_>,
    hostnames: &[HostMatch],
) -> (Vec<Attachment>, Option<(&'static str, String)>) {
    let mut out = Vec::new();
    let mut refusal: Option<(&'static str, String)> = None;
    let mut any_selected = false;
    for (li, l) in gw.listeners.iter().enumerate() {
        if parent.section_name.as_deref().is_some_and(|s| s != l.name)
            || parent.port.is_some_and(|p| p != l.port)
        {
            continue;
        }
        any_selected = true;
        if !l.usable {
            refusal.get_or_insert((
                "NoMatchingParent",
                format!("listener {} is not valid", l.name),
            ));
            continue;
        }
        let allowed = match &l.from {
            FromNamespaces::Same => route_ns == gw.object.namespace,
            FromNamespaces::All => true,
            FromNamespaces::Selector(s) => s.matches(&namespaces.of(route_ns)),
        };
        if !allowed {
            refusal = Some((
                "NotAllowedByListeners",
                format!(
                    "listener {} does not allow routes from namespace {route_ns}",
                    l.name
                ),
            ));
            continue;
        }
        let hosts = intersect(&l.host, hostnames);
        if hosts.is_empty() {
            refusal.get_or_insert((
                "NoMatchingListenerHostname",
                format!("no hostname of the route matches listener {}", l.name),
            ));
            continue;
        }
        // Listener isolation: a request goes to the most specific listener of the Gateway
        // that matches its host, so this listener serves none of the hosts a more specific one
        // on the same port covers.
        let narrower = gw
            .listeners
            .iter()
            .enumerate()
            .filter(|(i, o)| *i != li && o.usable && o.port == l.port)
            .map(|(_, o)| &o.host);
        out.push(Attachment {
            gateway: gi,
            listener: li,
            hosts: isolate(&l.host, narrower, hosts),
        });
    }
    if !any_selected {
        refusal = Some((
            "NoMatchingParent",
            "no listener has that sectionName/port".into(),
        ));
    }
    (out, refusal)
}

/// Adds the routes of every rule on every attachment. Returns `ResolvedRefs` and, when a rule
/// was left out, why. Kept as one loop nest (rules x attachments x matches x hosts) because
/// every level reports into the same two results.
#[allow(clippy::too_many_arguments)]
fn place_rules(
    route: &HTTPRoute,
    obj: &ObjectRef,
    attached: &[Attachment],
    gateways: &[Declared],
    index: &Index<'_>,
    grants: &Grants<'_>,
    policies: &Policies,
    b: &mut TableBuilder,
    diags: &mut Diagnostics,
) -> (Condition, Option<String>) {
    let created = route
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0.to_string());
    let source = Source::new(created, obj.clone());
    let default_rule = [HTTPRouteRule::default()];
    let rules: &[HTTPRouteRule] = if route.spec.rules.is_empty() {
        &default_rule
    } else {
        &route.spec.rules
    };
    let mut unresolved: Option<(&'static str, String)> = None;
    let mut problem: Option<String> = None;
    for (ri, rule) in rules.iter().enumerate() {
        let field = format!("spec.rules[{ri}]");
        let rule_name = rule.name.clone().unwrap_or_else(|| ri.to_string());
        let id: Arc<str> = format!("{}/{}/{rule_name}", obj.namespace, obj.name).into();
        let timeout = match rule_timeout(rule) {
            Ok(t) => t,
            Err(e) => {
                diags.error(
                    obj,
                    format!("{field}.timeouts"),
                    format!("{e}; rule ignored"),
                );
                problem.get_or_insert(e);
                continue;
            }
        };
        let default_match = [gwapi::HTTPRouteMatch::default()];
        let ms: &[gwapi::HTTPRouteMatch] = if rule.matches.is_empty() {
            &default_match
        } else {
            &rule.matches
        };
        for a in attached {
            let gw = &gateways[a.gateway];
            let l = &gw.listeners[a.listener];
            let at = Placement {
                gw,
                listener: &l.name,
                rule: rule.name.as_deref(),
                timeout,
            };
            let backends = backends(
                rule,
                obj,
                &field,
                index,
                grants,
                policies,
                &at,
                b,
                diags,
                &mut unresolved,
            );
            let Some((first, split)) = backends else {
                continue;
            };
            for (mi, m) in ms.iter().enumerate() {
                let matched = match matches::convert(m) {
                    Ok(mm) => mm,
                    Err((f, e)) => {
                        diags.error(
                            obj,
                            format!("{field}.matches[{mi}].{f}"),
                            format!("{e}; match ignored"),
                        );
                        problem.get_or_insert(e);
                        continue;
                    }
                };
                let filters = match matches::filters(&rule.filters, &matched.path) {
                    Ok(f) => f,
                    Err((fi, e)) => {
                        diags.error(
                            obj,
                            format!("{field}.filters[{fi}]"),
                            format!("{e}; rule ignored"),
                        );
                        problem.get_or_insert(e);
                        continue;
                    }
                };
                // A listener that is not served (its certificate does not resolve) still has
                // the route attached and its references checked, but gets no traffic.
                let hosts: &[HostMatch] = if l.served { &a.hosts } else { &[] };
                let filters = public_redirect_port(filters, l.port, l.bind);
                for h in hosts {
                    b.route_with(
                        l.bind,
                        h.clone(),
                        matched.path.clone(),
                        id.clone(),
                        Target {
                            backend: first,
                            firewall: None,
                            forward_original_path: false,
                        },
                        Origin {
                            source: source.clone(),
                            field: format!("{field}.matches[{mi}]"),
                        },
                        RouteExtras {
                            conditions: matched.conditions.clone().map(Arc::new),
                            filters: filters.clone().map(Arc::new),
                            split: split.clone(),
                        },
                    );
                }
            }
        }
    }
    let resolved = match unresolved {
        None => Condition::ok("ResolvedRefs", "ResolvedRefs"),
        Some((reason, m)) => Condition::failed("ResolvedRefs", reason, m),
    };
    (resolved, problem)
}

/// A redirect that keeps the request's scheme and names no port goes to "the listener's port"
/// (the spec); the proxy takes that from the port it accepted on, which with
/// `--gateway-services` is the pod port, so the listener port is written into the redirect.
fn public_redirect_port(
    filters: Option<RouteFilters>,
    listener_port: u16,
    bind: u16,
) -> Option<RouteFilters> {
    filters.map(|mut f| {
        if let Some(r) = f.redirect.as_mut()
            && listener_port != bind
            && r.scheme.is_none()
            && r.port.is_none()
        {
            r.port = Some(listener_port);
        }
        f
    })
}

/// `timeouts.request` / `timeouts.backendRequest`: the tighter bounds the wait for the response
/// headers (or the 101).
fn rule_timeout(rule: &HTTPRouteRule) -> Result<Option<Timeout>, String> {
    let Some(t) = &rule.timeouts else {
        return Ok(None);
    };
    let parse = |v: &Option<String>| v.as_deref().map(Timeout::parse).transpose();
    let request = parse(&t.request)?;
    let backend = parse(&t.backend_request)?;
    if let (Some(r), Some(b)) = (request.and_then(|r| r.get()), backend.and_then(|b| b.get()))
        && b > r
    {
        return Err("backendRequest must not be longer than request".into());
    }
    Ok(match (request, backend) {
        (Some(r), Some(b)) => Some(match (r.get(), b.get()) {
            (Some(_), None) => r,
            (None, _) => b,
            _ => b,
        }),
        (r, b) => b.or(r),
    })
}

/// The rule's backends: the first (by weight > 0) and, when several, the weighted split.
/// `None` when every backend has weight 0. A reference that does not resolve becomes an
/// `unresolved` backend: its share of the requests gets 500, as the spec requires.
#[allow(clippy::too_many_arguments)]
fn backends(
    rule: &HTTPRouteRule,
    obj: &ObjectRef,
    field: &str,
    index: &Index<'_>,
    grants: &Grants<'_>,
    policies: &Policies,
    at: &Placement<'_>,
    b: &mut TableBuilder,
    diags: &mut Diagnostics,
    unresolved: &mut Option<(&'static str, String)>,
) -> Option<(usize, Option<Split>)> {
    let mut out: Vec<(usize, u32)> = Vec::new();
    for (bi, r) in rule.backend_refs.iter().enumerate() {
        let f = format!("{field}.backendRefs[{bi}]");
        let weight = r.weight.unwrap_or(1).max(0) as u32;
        let (backend, problem) = backend(r, obj, index, grants, policies, at, &mut *b);
        if let Some((reason, m)) = problem {
            diags.warn(obj, &f, format!("{m}; requests to it get 500"));
            unresolved.get_or_insert((reason, m));
        }
        if weight > 0 {
            out.push((backend, weight));
        }
    }
    if rule.backend_refs.is_empty() && rule.filters.iter().all(|f| f.type_ != "RequestRedirect") {
        // No backends and nothing else that answers: the spec wants 500s.
        let empty = b.backend(Backend {
            id: format!("{}/{}/no-backends", obj.namespace, obj.name).into(),
            endpoints: Arc::from([]),
            settings: BackendSettings {
                unresolved: true,
                ..BackendSettings::default()
            },
        });
        return Some((empty, None));
    }
    if rule.backend_refs.is_empty() {
        // A redirect-only rule: the backend is never contacted.
        let empty = b.backend(Backend {
            id: format!("{}/{}/redirect", obj.namespace, obj.name).into(),
            endpoints: Arc::from([]),
            settings: BackendSettings::default(),
        });
        return Some((empty, None));
    }
    let first = out.first()?.0;
    let split = (out.len() > 1).then(|| Arc::from(out));
    Some((first, split))
}

/// One backend reference -> a table backend (empty when it does not resolve) and the problem.
/// The checks run in the spec's order of reasons (kind, filters, grant, port, lookup), so the
/// first failing one names the `ResolvedRefs` reason; that chain is why it is one function.
#[allow(clippy::too_many_arguments)]
fn backend(
    r: &HTTPBackendRef,
    obj: &ObjectRef,
    index: &Index<'_>,
    grants: &Grants<'_>,
    policies: &Policies,
    at: &Placement<'_>,
    b: &mut TableBuilder,
) -> (usize, Option<(&'static str, String)>) {
    let ns = r.namespace.as_deref().unwrap_or(&obj.namespace);
    let port = r.port.unwrap_or(0);
    let id: Arc<str> = format!("{ns}/{}:{port}", r.name).into();
    let mut settings = BackendSettings {
        response_timeout: at.timeout,
        ..BackendSettings::default()
    };
    let mut problem = None;
    let mut tls_failed = false;
    let mut endpoints = Vec::new();
    let kind_ok = r.group.as_deref().unwrap_or("").is_empty()
        && r.kind.as_deref().unwrap_or("Service") == "Service";
    if !kind_ok {
        problem = Some((
            "InvalidKind",
            format!(
                "{} {} is not a Service",
                r.kind.as_deref().unwrap_or(""),
                r.name
            ),
        ));
    } else if !r.filters.is_empty() {
        problem = Some((
            "UnsupportedValue",
            "backendRefs[].filters are not supported".to_string(),
        ));
    } else if !grants.allows(&Reference {
        from_group: gwapi::GROUP,
        from_kind: "HTTPRoute",
        from_namespace: &obj.namespace,
        to_group: "",
        to_kind: "Service",
        to_namespace: ns,
        to_name: &r.name,
    }) {
        problem = Some((
            "RefNotPermitted",
            format!(
                "Service {ns}/{} is in another namespace and no ReferenceGrant allows it",
                r.name
            ),
        ));
    } else if r.port.is_none() {
        problem = Some((
            "BackendNotFound",
            format!("backendRef to Service {ns}/{} needs a port", r.name),
        ));
    } else {
        match index.resolve(ns, &r.name, &PortRef::Number(port)) {
            Ok(eps) => endpoints = eps,
            Err(e) => problem = Some(("BackendNotFound", e)),
        }
        match index.app_protocol(ns, &r.name, port).as_deref() {
            // TLS to the backend: wss, or an IANA `https` port (as BackendTLSPolicy targets have).
            Some(p) if p == "kubernetes.io/wss" || p.eq_ignore_ascii_case("https") => {
                settings.protocol = BackendProtocol::Https
            }
            None | Some("kubernetes.io/ws") | Some("http") | Some("kubernetes.io/http") => {}
            Some(other) => {
                problem = Some((
                    "UnsupportedProtocol",
                    format!(
                        "appProtocol {other:?} of Service {ns}/{} is not supported",
                        r.name
                    ),
                ));
                endpoints.clear();
            }
        }
        policies.apply(
            &mut settings,
            &obj.namespace,
            &obj.name,
            at.rule,
            ns,
            &r.name,
            &at.gw.object.namespace,
            &at.gw.object.name,
            at.listener,
        );
        tls_failed = !backend_tls(&mut settings, policies, index, ns, &r.name, port, at);
    }
    settings.unresolved = problem.is_some() || tls_failed;
    let backend = b.backend(Backend {
        id,
        endpoints: endpoints.into(),
        settings,
    });
    (backend, problem)
}

/// Applies the BackendTLSPolicy of Service `ns/name` port `port`, if one targets it: HTTPS with
/// its CA and server name. False when the policy cannot be honoured (requests then get 500:
/// never plaintext, never other roots).
fn backend_tls(
    settings: &mut BackendSettings,
    policies: &Policies,
    index: &Index<'_>,
    ns: &str,
    name: &str,
    port: i32,
    at: &Placement<'_>,
) -> bool {
    let port_name = index.port_name(ns, name, port);
    let gateway = (at.gw.object.namespace.as_str(), at.gw.object.name.as_str());
    match policies
        .backend_tls
        .lookup(ns, name, port_name.as_deref(), gateway)
    {
        None => true,
        Some(Ok(tls)) => {
            settings.protocol = BackendProtocol::Https;
            settings.ca_pem = tls.ca_pem.clone().map(Redacted);
            settings.tls_server_name = Some(tls.hostname.clone());
            true
        }
        Some(Err(_)) => false,
    }
}
