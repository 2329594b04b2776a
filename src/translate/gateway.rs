//! `Gateway` objects -> listeners, pools, settings and routes, plus their status conditions.

use super::backends::{Index, PortRef};
use super::builder::{Origin, TableBuilder, Target};
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

/// One status condition, as `metav1.Condition` will carry it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Condition {
    /// `True` or `False`.
    pub status: bool,
    /// CamelCase reason.
    pub reason: String,
    /// Human-readable detail.
    pub message: String,
}

impl Condition {
    fn ok(reason: &str) -> Self {
        Self {
            status: true,
            reason: reason.into(),
            message: String::new(),
        }
    }
    fn failed(reason: &str, message: String) -> Self {
        Self {
            status: false,
            reason: reason.into(),
            message,
        }
    }
}

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

fn translate_one(
    gw: &Gateway,
    index: &Index<'_>,
    b: &mut TableBuilder,
    diags: &mut Diagnostics,
) -> (ObjectRef, GatewayConditions) {
    let obj = ObjectRef::of("Gateway", gw);
    let ns = obj.namespace.clone();
    let spec = &gw.spec;
    let created = gw
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0.to_string());
    let mut unresolved: Vec<String> = Vec::new();

    for (list, names) in [
        (
            "spec.listeners",
            spec.listeners
                .iter()
                .map(|l| l.name.as_str())
                .collect::<Vec<_>>(),
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
    ] {
        for dup in duplicates(names.into_iter()) {
            diags.error(
                &obj,
                list,
                format!("name {dup:?} is used more than once; names must be unique"),
            );
        }
    }
    let firewall = spec
        .firewall
        .as_ref()
        .map(|f| b.firewall(firewall::from_spec(f, &obj, diags)));

    // Listeners: name -> (port, hostnames).
    let mut listeners: HashMap<&str, (u16, Vec<HostMatch>)> = HashMap::new();
    for (i, l) in spec.listeners.iter().enumerate() {
        let field = format!("spec.listeners[{i}]");
        if listeners.contains_key(l.name.as_str()) {
            continue;
        }
        let protocol = match l.protocol.as_str() {
            "HTTP" => ListenerProtocol::Http,
            "HTTPS" => ListenerProtocol::Https,
            other => {
                diags.error(
                    &obj,
                    format!("{field}.protocol"),
                    format!("invalid protocol {other:?}; expected HTTP or HTTPS"),
                );
                continue;
            }
        };
        if l.port == 0 {
            diags.error(
                &obj,
                format!("{field}.port"),
                "port must be 1-65535; listener ignored",
            );
            continue;
        }
        if protocol == ListenerProtocol::Https && l.tls.is_none() {
            diags.error(
                &obj,
                format!("{field}.tls"),
                "an HTTPS listener needs tls.secretName; listener ignored",
            );
            continue;
        }
        if protocol == ListenerProtocol::Http && l.tls.is_some() {
            diags.warn(
                &obj,
                format!("{field}.tls"),
                "tls is only used with protocol HTTPS; ignored",
            );
        }
        if let Err(e) = b.listener(l.port, protocol) {
            diags.error(
                &obj,
                format!("{field}.port"),
                format!("{e}; listener ignored"),
            );
            continue;
        }
        let mut hosts = Vec::new();
        for (hi, h) in l.hostnames.iter().enumerate() {
            match HostMatch::parse(h) {
                Ok(h) => hosts.push(h),
                Err(e) => diags.error(&obj, format!("{field}.hostnames[{hi}]"), e),
            }
        }
        if hosts.is_empty() {
            hosts.push(HostMatch::Any);
        }
        if let (ListenerProtocol::Https, Some(tls)) = (protocol, &l.tls) {
            match index.secrets.certificate(&ns, &tls.secret_name) {
                Ok((cert, key)) => b.certificate(
                    l.port,
                    TlsCertificate {
                        source: format!("Secret {ns}/{}", tls.secret_name),
                        hosts: hosts.clone(),
                        cert_pem: Redacted(cert),
                        key_pem: Redacted(key),
                    },
                ),
                Err(e) => {
                    // Like a missing Service: reported, and the rest of the gateway is served.
                    diags.warn(
                        &obj,
                        format!("{field}.tls.secretName"),
                        format!(
                            "{e}; the default (self-signed) certificate is served until it resolves"
                        ),
                    );
                    unresolved.push(e);
                }
            }
        }
        // A duplicate name was reported above; the first definition wins.
        listeners.entry(l.name.as_str()).or_insert((l.port, hosts));
    }

    // Pools: name -> endpoints.
    let mut pools: HashMap<&str, Vec<Endpoint>> = HashMap::new();
    for (i, p) in spec.backend_pools.iter().enumerate() {
        let field = format!("spec.backendPools[{i}]");
        if pools.contains_key(p.name.as_str()) {
            continue;
        }
        let mut eps = Vec::new();
        match (&p.service, p.addresses.is_empty()) {
            (Some(svc), true) => {
                let port = match &svc.port {
                    IntOrString::Int(n) => PortRef::Number(*n),
                    IntOrString::String(s) => PortRef::Name(s.clone()),
                };
                match index.resolve(&ns, &svc.name, &port) {
                    Ok(found) => eps = found,
                    Err(e) => {
                        let reason = e.clone();
                        diags.warn(
                            &obj,
                            format!("{field}.service"),
                            format!("{e}; requests get 503 until it resolves"),
                        );
                        unresolved.push(reason);
                    }
                }
            }
            (None, false) => {
                for (ai, a) in p.addresses.iter().enumerate() {
                    if a.host.trim().is_empty() || a.port == 0 {
                        diags.error(
                            &obj,
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
            }
            _ => {
                diags.error(
                    &obj,
                    field,
                    "exactly one of service or addresses is required; pool ignored",
                );
                continue;
            }
        }
        pools.insert(p.name.as_str(), eps);
    }

    let mut settings: HashMap<&str, BackendSettings> = HashMap::new();
    for (i, s) in spec.backend_settings.iter().enumerate() {
        let parsed = settings::from_spec(
            s,
            &spec.probes,
            &index.secrets,
            &format!("spec.backendSettings[{i}]"),
            &obj,
            diags,
        );
        settings.entry(s.name.as_str()).or_insert(parsed);
    }

    let mut routes = 0usize;
    for (i, rule) in spec.routing_rules.iter().enumerate() {
        let field = format!("spec.routingRules[{i}]");
        let Some(eps) = pools.get(rule.backend_pool.as_str()) else {
            diags.error(
                &obj,
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
                        &obj,
                        format!("{field}.backendSettings"),
                        format!("no backend settings named {name:?}; rule ignored"),
                    );
                    continue;
                }
            },
        };
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
                    &obj,
                    format!("{field}.paths[{pi}]"),
                    format!("{e}; path ignored"),
                ),
            }
        }
        if rule.paths.is_empty() {
            paths.push(PathMatch::Prefix("/".into()));
        }
        if rule.listeners.is_empty() {
            diags.error(
                &obj,
                format!("{field}.listeners"),
                "at least one listener is required; rule ignored",
            );
            continue;
        }
        let backend = b.backend(Backend {
            id: format!("{ns}/{}/{}", obj.name, rule.backend_pool).into(),
            endpoints: eps.clone().into(),
            settings: set,
        });
        let id: Arc<str> = format!("{ns}/{}/{}", obj.name, rule.name).into();
        let forward_original_path = match rule.path_normalization.as_deref() {
            None => false,
            Some(v) => match super::annotations::parse_path_normalization(v) {
                Ok(keep) => keep,
                Err(e) => {
                    diags.error(&obj, format!("{field}.pathNormalization"), e);
                    continue;
                }
            },
        };
        for (li, lname) in rule.listeners.iter().enumerate() {
            let Some((port, hosts)) = listeners.get(lname.as_str()) else {
                if !spec.listeners.iter().any(|l| &l.name == lname) {
                    diags.error(
                        &obj,
                        format!("{field}.listeners[{li}]"),
                        format!("no listener named {lname:?}"),
                    );
                }
                continue;
            };
            for h in hosts {
                for p in &paths {
                    let origin = Origin {
                        created: created.clone(),
                        object: obj.clone(),
                        field: field.clone(),
                    };
                    b.route(
                        *port,
                        h.clone(),
                        p.clone(),
                        id.clone(),
                        Target {
                            backend,
                            firewall,
                            forward_original_path,
                        },
                        origin,
                    );
                    routes += 1;
                }
            }
        }
    }

    let errors: Vec<String> = diags
        .for_object(&obj)
        .filter(|d| d.severity == super::Severity::Error)
        .map(|d| format!("{}: {}", d.field, d.message))
        .collect();
    let accepted = if diags.has_error_for(&obj) {
        Condition::failed("Invalid", errors.join("; "))
    } else {
        Condition::ok("Accepted")
    };
    let resolved_refs = if unresolved.is_empty() {
        Condition::ok("ResolvedRefs")
    } else {
        Condition::failed("BackendNotFound", unresolved.join("; "))
    };
    let programmed = if routes > 0 {
        Condition::ok("Programmed")
    } else {
        Condition::failed("NoRoutes", "no routing rule could be served".into())
    };
    (
        obj,
        GatewayConditions {
            accepted,
            resolved_refs,
            programmed,
        },
    )
}
