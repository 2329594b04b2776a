//! A Gateway API Gateway's listeners: declared on the table's ports, with their certificates,
//! conflicts and per-listener conditions.

use super::namespaces::NamespaceSelector;
use super::pod_ports::PodPorts;
use super::refs::{Grants, Reference};
use super::{GatewayReport, ListenerReport};
use crate::gwapi::{self, Gateway};
use crate::ir::{HostMatch, ListenerProtocol, Redacted, TlsCertificate};
use crate::translate::backends::Index;
use crate::translate::builder::TableBuilder;
use crate::translate::conditions::Condition;
use crate::translate::diagnostics::{Diagnostics, ObjectRef};

/// Which namespaces' routes a listener accepts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum FromNamespaces {
    /// The Gateway's own (default).
    Same,
    /// Any.
    All,
    /// Those whose labels match a selector.
    Selector(NamespaceSelector),
}

/// One listener as routes see it.
#[derive(Debug)]
pub(crate) struct DeclaredListener {
    pub(crate) name: String,
    /// The listener port (what clients connect to; what `parentRefs[].port` names).
    pub(crate) port: u16,
    /// The table port it is served on: `port`, or its Gateway's pod port for it with
    /// `--gateway-services`.
    pub(crate) bind: u16,
    pub(crate) protocol: ListenerProtocol,
    pub(crate) host: HostMatch,
    pub(crate) from: FromNamespaces,
    /// Whether routes may attach (accepted, not conflicted, kinds fine). Attachment follows
    /// `parentRefs` and `allowedRoutes` alone, so a listener whose references do not resolve
    /// still counts its routes (`attachedRoutes`), as the spec asks.
    pub(crate) usable: bool,
    /// Whether its routes are served: false while its certificate does not resolve (no
    /// traffic is sent to a listener that cannot present its own certificate).
    pub(crate) served: bool,
    /// Route kinds it accepts, for `status.listeners[].supportedKinds`: none for a protocol
    /// wsgate does not serve, else the valid entries of `allowedRoutes.kinds` (HTTPRoute when
    /// that is empty), as the spec requires.
    supported_kinds: Vec<String>,
    pub(crate) attached: i32,
    conditions: Vec<Condition>,
}

/// One Gateway of ours after its listeners were declared.
#[derive(Debug)]
pub(crate) struct Declared {
    pub(crate) object: ObjectRef,
    pub(crate) listeners: Vec<DeclaredListener>,
    conditions: Vec<Condition>,
    service_ports: Vec<(u16, u16)>,
}

impl Declared {
    /// The wanted status.
    pub(crate) fn report(self) -> GatewayReport {
        let ports = self.listeners.iter().map(|l| l.bind).collect();
        GatewayReport {
            object: self.object,
            ports,
            service_ports: self.service_ports,
            conditions: self.conditions,
            listeners: self
                .listeners
                .into_iter()
                .map(|l| ListenerReport {
                    name: l.name,
                    supported_kinds: l.supported_kinds,
                    attached_routes: l.attached,
                    conditions: l.conditions,
                })
                .collect(),
        }
    }
}

/// Declares a Gateway's listeners on `b` and computes their conditions. About 85 lines: each
/// listener's conditions are built up across its steps (own validity, its port on the table,
/// where a protocol clash is `Conflicted`, its certificate), then summarised for the Gateway.
pub(crate) fn declare(
    gw: &Gateway,
    pod_ports: Option<&PodPorts>,
    index: &Index<'_>,
    grants: &Grants<'_>,
    b: &mut TableBuilder,
    diags: &mut Diagnostics,
) -> Declared {
    let object = ObjectRef::new(
        "Gateway.gateway.networking.k8s.io",
        gw.metadata.namespace.as_deref(),
        gw.metadata.name.as_deref(),
    );
    let ns = object.namespace.clone();
    let mut listeners: Vec<DeclaredListener> = Vec::new();
    for (i, l) in gw.spec.listeners.iter().enumerate() {
        let field = format!("spec.listeners[{i}]");
        let mut dl = listener(l, &object, &field, diags);
        if let Some(map) = pod_ports {
            bind_port(&mut dl, map, &object, &field, diags);
        }
        if dl.usable
            && let Err(e) = b.listener(dl.bind, dl.protocol)
        {
            diags.error(
                &object,
                format!("{field}.port"),
                format!("{e}; listener ignored"),
            );
            dl.usable = false;
            dl.conditions = vec![
                Condition::failed("Accepted", "PortUnavailable", e.clone()),
                Condition::ok("ResolvedRefs", "ResolvedRefs"),
                Condition::failed("Programmed", "Invalid", e),
                Condition::new(
                    "Conflicted",
                    crate::translate::ConditionStatus::False,
                    "NoConflicts",
                    "",
                ),
            ];
        }
        if dl.usable
            && dl.protocol == ListenerProtocol::Https
            && let Some(tls) = &l.tls
        {
            certificate(&mut dl, tls, &ns, &object, &field, index, grants, b, diags);
        }
        listeners.push(dl);
    }
    conflicts(&mut listeners, &object, diags);
    // Listeners that are not Accepted (the Gateway is still Accepted while one listener is
    // valid, but says so with the reason ListenersNotValid, as the spec asks).
    let invalid: Vec<&str> = listeners
        .iter()
        .filter(|l| {
            l.conditions
                .iter()
                .any(|c| c.type_ == "Accepted" && !c.is_true())
        })
        .map(|l| l.name.as_str())
        .collect();
    let mut conditions = Vec::new();
    if !gw.spec.addresses.is_empty() {
        diags.warn(
            &object,
            "spec.addresses",
            "wsgate serves on the addresses of its own Service; requested addresses are not supported",
        );
        conditions.push(Condition::failed(
            "Accepted",
            "UnsupportedAddress",
            "spec.addresses is not supported",
        ));
        conditions.push(Condition::failed(
            "Programmed",
            "AddressNotUsable",
            "spec.addresses is not supported",
        ));
    } else if let Some(params) = gw
        .spec
        .infrastructure
        .as_ref()
        .and_then(|i| i.get("parametersRef"))
    {
        // wsgate has no parameters kind: any reference cannot resolve, and the spec says to
        // reject the Gateway with InvalidParameters rather than run it without them.
        diags.warn(
            &object,
            "spec.infrastructure.parametersRef",
            format!("wsgate takes no parameters ({params}); the Gateway is not accepted"),
        );
        conditions.push(Condition::failed(
            "Accepted",
            "InvalidParameters",
            "wsgate takes no infrastructure.parametersRef",
        ));
        conditions.push(Condition::failed(
            "Programmed",
            "Invalid",
            "wsgate takes no infrastructure.parametersRef",
        ));
    } else if listeners.iter().any(|l| l.usable) {
        conditions.push(if invalid.is_empty() {
            Condition::ok("Accepted", "Accepted")
        } else {
            Condition::new(
                "Accepted",
                crate::translate::ConditionStatus::True,
                "ListenersNotValid",
                format!("invalid listeners: {}", invalid.join(", ")),
            )
        });
        conditions.push(if listeners.iter().any(|l| l.usable && l.served) {
            Condition::ok("Programmed", "Programmed")
        } else {
            Condition::failed("Programmed", "Invalid", "no listener can be served")
        });
    } else {
        conditions.push(Condition::failed(
            "Accepted",
            "ListenersNotValid",
            "no listener is valid",
        ));
        conditions.push(Condition::failed(
            "Programmed",
            "Invalid",
            "no listener is valid",
        ));
    }
    let mut service_ports: Vec<(u16, u16)> = listeners
        .iter()
        .filter(|l| pod_ports.is_some() && l.port != 0 && l.bind != 0)
        .map(|l| (l.port, l.bind))
        .collect();
    service_ports.sort_unstable();
    service_ports.dedup();
    Declared {
        object,
        listeners,
        conditions,
        service_ports,
    }
}

/// Sets the pod port of a listener from the Gateway's port map; a listener without one (the
/// range is full) is not served.
fn bind_port(
    dl: &mut DeclaredListener,
    map: &PodPorts,
    object: &ObjectRef,
    field: &str,
    diags: &mut Diagnostics,
) {
    if dl.port == 0 {
        return;
    }
    let key = crate::translate::gateway_ports::PortKey {
        namespace: object.namespace.clone(),
        name: object.name.clone(),
        port: dl.port,
    };
    match map.get(&key) {
        Some(p) => dl.bind = *p,
        None => {
            let m = "no free port left in --gateway-port-range".to_string();
            diags.error(
                object,
                format!("{field}.port"),
                format!("{m}; listener ignored"),
            );
            dl.bind = 0;
            if dl.usable {
                dl.usable = false;
                dl.conditions = vec![
                    Condition::failed("Accepted", "PortUnavailable", m.clone()),
                    Condition::failed("Programmed", "Invalid", m),
                ];
            }
        }
    }
}

/// A listener's own validity (protocol, hostname, TLS, allowedRoutes): one check per field of
/// the spec's listener, in the order of the reasons its conditions report.
fn listener(
    l: &gwapi::Listener,
    obj: &ObjectRef,
    field: &str,
    diags: &mut Diagnostics,
) -> DeclaredListener {
    let mut problems: Vec<(&str, String)> = Vec::new();
    let mut protocol_known = true;
    let protocol = match l.protocol.as_str() {
        "HTTP" => ListenerProtocol::Http,
        "HTTPS" => ListenerProtocol::Https,
        other => {
            protocol_known = false;
            problems.push((
                "UnsupportedProtocol",
                format!("protocol {other:?} is not supported; HTTP and HTTPS are"),
            ));
            ListenerProtocol::Http
        }
    };
    if l.port == 0 {
        problems.push(("PortUnavailable", "port must be 1-65535".into()));
    }
    let host = match l.hostname.as_deref() {
        None => HostMatch::Any,
        Some(h) => HostMatch::parse_gateway_api(h).unwrap_or_else(|e| {
            problems.push(("Invalid", format!("hostname: {e}")));
            HostMatch::Any
        }),
    };
    if protocol == ListenerProtocol::Https {
        match &l.tls {
            None => problems.push((
                "Invalid",
                "an HTTPS listener needs tls.certificateRefs".into(),
            )),
            Some(t) if t.mode.as_deref().is_some_and(|m| m != "Terminate") => problems.push((
                "UnsupportedValue",
                "tls.mode Passthrough is not supported".into(),
            )),
            Some(_) => {}
        }
    }
    let namespaces = l
        .allowed_routes
        .as_ref()
        .and_then(|a| a.namespaces.as_ref());
    let from = match namespaces.and_then(|n| n.from.as_deref()) {
        None | Some("Same") => FromNamespaces::Same,
        Some("All") => FromNamespaces::All,
        Some("Selector") => match namespaces.and_then(|n| n.selector.as_ref()) {
            None => {
                problems.push((
                    "Invalid",
                    "allowedRoutes.namespaces.selector is required when from is Selector".into(),
                ));
                FromNamespaces::Same
            }
            Some(s) => match NamespaceSelector::parse(s) {
                Ok(s) => FromNamespaces::Selector(s),
                Err(e) => {
                    problems.push(("Invalid", format!("allowedRoutes.namespaces.selector.{e}")));
                    FromNamespaces::Same
                }
            },
        },
        Some(other) => {
            problems.push((
                "Invalid",
                format!("allowedRoutes.namespaces.from {other:?}"),
            ));
            FromNamespaces::Same
        }
    };
    let is_http_route = |k: &&gwapi::RouteGroupKind| {
        k.kind == "HTTPRoute" && k.group.as_deref().is_none_or(|g| g == gwapi::GROUP)
    };
    let kinds = l.allowed_routes.iter().flat_map(|a| a.kinds.iter());
    let bad_kinds: Vec<String> = kinds
        .clone()
        .filter(|k| !is_http_route(k))
        .map(|k| k.kind.clone())
        .collect();
    let supported_kinds = if !protocol_known
        || (kinds.clone().next().is_some() && !kinds.clone().any(|k| is_http_route(&k)))
    {
        Vec::new()
    } else {
        vec!["HTTPRoute".to_string()]
    };
    let mut conditions = Vec::new();
    let mut usable = true;
    if let Some((reason, message)) = problems.first() {
        for (_, m) in &problems {
            diags.error(obj, field, format!("{m}; listener ignored"));
        }
        usable = false;
        conditions.push(Condition::failed("Accepted", reason, message.clone()));
        conditions.push(Condition::failed("Programmed", "Invalid", message.clone()));
    }
    if !bad_kinds.is_empty() {
        let m = format!("route kinds {bad_kinds:?} are not supported; HTTPRoute is");
        diags.warn(obj, format!("{field}.allowedRoutes.kinds"), m.clone());
        conditions.push(Condition::failed("ResolvedRefs", "InvalidRouteKinds", m));
        let only_bad = l
            .allowed_routes
            .as_ref()
            .is_some_and(|a| a.kinds.len() == bad_kinds.len());
        usable &= !only_bad;
    }
    DeclaredListener {
        name: l.name.clone(),
        port: l.port,
        bind: l.port,
        protocol,
        host,
        from,
        usable,
        served: true,
        supported_kinds,
        attached: 0,
        conditions,
    }
}

/// Loads an HTTPS listener's certificate (first `certificateRefs` entry).
#[allow(clippy::too_many_arguments)]
fn certificate(
    dl: &mut DeclaredListener,
    tls: &gwapi::ListenerTls,
    ns: &str,
    obj: &ObjectRef,
    field: &str,
    index: &Index<'_>,
    grants: &Grants<'_>,
    b: &mut TableBuilder,
    diags: &mut Diagnostics,
) {
    let Some(r) = tls.certificate_refs.first() else {
        diags.error(
            obj,
            format!("{field}.tls.certificateRefs"),
            "at least one Secret is required; listener ignored",
        );
        dl.usable = false;
        dl.conditions.push(Condition::failed(
            "ResolvedRefs",
            "InvalidCertificateRef",
            "no certificateRefs",
        ));
        return;
    };
    let f = format!("{field}.tls.certificateRefs[0]");
    let target_ns = r.namespace.as_deref().unwrap_or(ns);
    let kind_ok = r.group.as_deref().unwrap_or("").is_empty()
        && r.kind.as_deref().unwrap_or("Secret") == "Secret";
    let result = if !kind_ok {
        Err((
            "InvalidCertificateRef",
            "only core Secrets are supported".to_string(),
        ))
    } else if !grants.allows(&Reference {
        from_group: gwapi::GROUP,
        from_kind: "Gateway",
        from_namespace: ns,
        to_group: "",
        to_kind: "Secret",
        to_namespace: target_ns,
        to_name: &r.name,
    }) {
        Err((
            "RefNotPermitted",
            format!(
                "Secret {target_ns}/{} is in another namespace and no ReferenceGrant allows it",
                r.name
            ),
        ))
    } else {
        index
            .secrets
            .certificate(target_ns, &r.name)
            .map_err(|e| ("InvalidCertificateRef", e))
    };
    match result {
        Ok((cert, key)) => b.certificate(
            dl.bind,
            TlsCertificate {
                source: format!("Secret {target_ns}/{}", r.name),
                hosts: vec![dl.host.clone()],
                cert_pem: Redacted(cert),
                key_pem: Redacted(key),
            },
        ),
        Err((reason, message)) => {
            diags.warn(obj, f, format!("{message}; the listener is not served"));
            dl.served = false;
            dl.conditions
                .push(Condition::failed("ResolvedRefs", reason, message.clone()));
            dl.conditions
                .push(Condition::failed("Programmed", "Invalid", message));
        }
    }
}

/// Listeners of one Gateway on the same port with the same host name conflict (all but the
/// first), as do listeners on one port with different protocols; then fills in the conditions
/// every listener carries.
fn conflicts(listeners: &mut [DeclaredListener], obj: &ObjectRef, diags: &mut Diagnostics) {
    for i in 0..listeners.len() {
        let conflict = listeners[..i].iter().find_map(|o| {
            if o.port != listeners[i].port {
                None
            } else if o.protocol != listeners[i].protocol {
                Some("ProtocolConflict")
            } else if o.host == listeners[i].host {
                Some("HostnameConflict")
            } else {
                None
            }
        });
        let l = &mut listeners[i];
        if let Some(reason) = conflict {
            diags.warn(
                obj,
                format!("spec.listeners[{i}]"),
                format!("listener {:?} conflicts with an earlier one on port {} ({reason}); it is not served", l.name, l.port),
            );
            l.usable = false;
            l.conditions.push(Condition::ok("Conflicted", reason));
            l.conditions.push(Condition::failed(
                "Accepted",
                reason,
                "conflicts with an earlier listener",
            ));
            l.conditions
                .push(Condition::failed("Programmed", "Invalid", "conflicted"));
        }
        let has = |l: &DeclaredListener, t: &str| l.conditions.iter().any(|c| c.type_ == t);
        if !has(l, "Conflicted") {
            l.conditions.push(Condition::new(
                "Conflicted",
                crate::translate::ConditionStatus::False,
                "NoConflicts",
                "",
            ));
        }
        if !has(l, "Accepted") {
            l.conditions.push(Condition::ok("Accepted", "Accepted"));
        }
        if !has(l, "ResolvedRefs") {
            l.conditions
                .push(Condition::ok("ResolvedRefs", "ResolvedRefs"));
        }
        if !has(l, "Programmed") {
            l.conditions.push(Condition::ok("Programmed", "Programmed"));
        }
        l.conditions.sort_by(|a, b| a.type_.cmp(&b.type_));
    }
}
