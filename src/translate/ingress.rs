//! Ingress objects of our class -> routes on the `--http-port` listener.

use super::annotations::settings_from;
use super::backends::{Index, PortRef};
use super::builder::{Origin, TableBuilder, Target};
use super::diagnostics::{Diagnostics, ObjectRef};
use super::firewall;
use super::{CONTROLLER_NAME, Options};
use crate::ir::{
    Backend, BackendSettings, HostMatch, ListenerProtocol, PathMatch, Redacted, TlsCertificate,
};
use crate::source::Snapshot;
use k8s_openapi::api::networking::v1::{Ingress, IngressBackend, IngressClass};
use std::sync::Arc;

const DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";
const LEGACY_CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";

/// Whether an Ingress belongs to wsgate: its class is ours, or it has none and our IngressClass is
/// the cluster default.
pub fn is_ours(ing: &Ingress, classes: &[IngressClass], options: &Options) -> bool {
    let class = ing
        .spec
        .as_ref()
        .and_then(|s| s.ingress_class_name.as_deref())
        .or_else(|| {
            ing.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(LEGACY_CLASS_ANNOTATION))
                .map(String::as_str)
        });
    match class {
        Some(c) => c == options.ingress_class,
        None => classes.iter().any(|ic| {
            ic.metadata.name.as_deref() == Some(options.ingress_class.as_str())
                && ic.spec.as_ref().and_then(|s| s.controller.as_deref()) == Some(CONTROLLER_NAME)
                && ic
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(DEFAULT_CLASS_ANNOTATION))
                    .map(String::as_str)
                    == Some("true")
        }),
    }
}

pub(crate) fn translate_all(
    snapshot: &Snapshot,
    options: &Options,
    index: &Index<'_>,
    builder: &mut TableBuilder,
    diags: &mut Diagnostics,
) {
    for ing in snapshot
        .ingresses
        .iter()
        .filter(|i| is_ours(i, &snapshot.ingress_classes, options))
    {
        translate_one(ing, options, index, builder, diags);
    }
}

/// One Ingress: its class, settings, TLS hosts, rules and default backend. About 100 lines, kept
/// in the order the Ingress spec reads (spec.tls, spec.rules[].http.paths[], defaultBackend),
/// each part naming its field path.
fn translate_one(
    ing: &Ingress,
    options: &Options,
    index: &Index<'_>,
    b: &mut TableBuilder,
    diags: &mut Diagnostics,
) {
    let obj = ObjectRef::of("Ingress", ing);
    let ns = obj.namespace.clone();
    let settings = settings_from(ing.metadata.annotations.as_ref(), &obj, diags);
    let firewall = firewall::from_annotations(ing.metadata.annotations.as_ref(), &obj, diags)
        .map(|f| b.firewall(f));
    let forward_original_path =
        super::annotations::keep_original_path(ing.metadata.annotations.as_ref(), &obj, diags);
    let created = ing
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0.to_string());
    let origin = |field: String| Origin {
        created: created.clone(),
        object: obj.clone(),
        field,
    };
    let Some(spec) = &ing.spec else {
        diags.warn(&obj, "spec", "Ingress has no spec; nothing to serve");
        return;
    };
    let tls_hosts = tls_hosts(spec, &obj, options, index, b, diags);
    let port = options.http_port;

    if let Some(db) = &spec.default_backend
        && let Some(backend) = backend_for(db, "spec.defaultBackend", &obj, &settings, index, diags)
    {
        let target = Target {
            backend: b.backend(backend),
            firewall,
            forward_original_path,
        };
        b.default_route(
            port,
            format!("{ns}/{}/default-backend", obj.name).into(),
            target,
            origin("spec.defaultBackend".into()),
        );
    }

    for (ri, rule) in spec.rules.iter().flatten().enumerate() {
        let rfield = format!("spec.rules[{ri}]");
        let host = match HostMatch::parse(rule.host.as_deref().unwrap_or("")) {
            Ok(h) => h,
            Err(e) => {
                diags.error(&obj, format!("{rfield}.host"), format!("{e}; rule ignored"));
                continue;
            }
        };
        let Some(http) = &rule.http else { continue };
        for (pi, p) in http.paths.iter().enumerate() {
            let pfield = format!("{rfield}.http.paths[{pi}]");
            let text = p.path.as_deref().unwrap_or("/");
            let path = match p.path_type.as_str() {
                "Exact" => PathMatch::exact(text),
                "Prefix" | "ImplementationSpecific" => PathMatch::prefix(text),
                other => Err(format!(
                    "invalid pathType {other:?}; expected Exact, Prefix or ImplementationSpecific"
                )),
            };
            let path = match path {
                Ok(p) => p,
                Err(e) => {
                    diags.error(&obj, format!("{pfield}.path"), format!("{e}; path ignored"));
                    continue;
                }
            };
            let Some(backend) = backend_for(
                &p.backend,
                &format!("{pfield}.backend"),
                &obj,
                &settings,
                index,
                diags,
            ) else {
                continue;
            };
            let target = Target {
                backend: b.backend(backend),
                firewall,
                forward_original_path,
            };
            // The path as written keeps `/ws` (Exact) and `/ws/` (Prefix) apart in metrics.
            let id: Arc<str> = format!("{ns}/{}/{host}{text}", obj.name).into();
            if tls_hosts.iter().any(|t| covers(t, &host)) {
                b.route(
                    options.https_port,
                    host.clone(),
                    path.clone(),
                    id.clone(),
                    target,
                    origin(pfield.clone()),
                );
            }
            b.route(port, host.clone(), path, id, target, origin(pfield));
        }
    }
}

/// Whether a TLS host entry covers a rule's host.
fn covers(tls: &HostMatch, host: &HostMatch) -> bool {
    match (tls, host) {
        (HostMatch::Any, _) => true,
        (t, h) if t == h => true,
        (HostMatch::Wildcard(_), HostMatch::Exact(h)) => tls.matches(h),
        _ => false,
    }
}

/// Declares `spec.tls` on the `--https-port` listener and returns the hosts served over TLS. A
/// missing or bad Secret is a warning; those hosts are then served on HTTP only.
fn tls_hosts(
    spec: &k8s_openapi::api::networking::v1::IngressSpec,
    obj: &ObjectRef,
    options: &Options,
    index: &Index<'_>,
    b: &mut TableBuilder,
    diags: &mut Diagnostics,
) -> Vec<HostMatch> {
    let mut served = Vec::new();
    for (ti, t) in spec.tls.iter().flatten().enumerate() {
        let field = format!("spec.tls[{ti}]");
        let mut hosts = Vec::new();
        for (hi, h) in t.hosts.iter().flatten().enumerate() {
            match HostMatch::parse(h) {
                Ok(h) => hosts.push(h),
                Err(e) => diags.warn(obj, format!("{field}.hosts[{hi}]"), format!("{e}; ignored")),
            }
        }
        // Kubernetes: no hosts means every host of this Ingress.
        if t.hosts.as_ref().is_none_or(Vec::is_empty) {
            hosts.push(HostMatch::Any);
        }
        if let Err(e) = b.listener(options.https_port, ListenerProtocol::Https) {
            diags.warn(
                obj,
                &field,
                format!("{e}; these hosts are served on HTTP only"),
            );
            continue;
        }
        match t.secret_name.as_deref().filter(|n| !n.is_empty()) {
            None => diags.warn(
                obj,
                format!("{field}.secretName"),
                "no secretName: the default (self-signed) certificate is served for these hosts",
            ),
            Some(name) => match index.secrets.certificate(&obj.namespace, name) {
                Ok((cert, key)) => b.certificate(
                    options.https_port,
                    TlsCertificate {
                        source: format!("Secret {}/{name}", obj.namespace),
                        hosts: hosts.clone(),
                        cert_pem: Redacted(cert),
                        key_pem: Redacted(key),
                    },
                ),
                Err(e) => {
                    diags.warn(
                        obj,
                        format!("{field}.secretName"),
                        format!("{e}; these hosts are served on HTTP only"),
                    );
                    continue;
                }
            },
        }
        served.extend(hosts);
    }
    served
}

/// Builds the backend of an Ingress path. Unresolved Services yield a backend with no endpoints
/// (503) and a warning, because Services and endpoints often appear after the Ingress.
fn backend_for(
    ib: &IngressBackend,
    field: &str,
    obj: &ObjectRef,
    settings: &BackendSettings,
    index: &Index<'_>,
    diags: &mut Diagnostics,
) -> Option<Backend> {
    if ib.resource.is_some() {
        diags.error(
            obj,
            format!("{field}.resource"),
            "resource backends are not supported; path ignored",
        );
        return None;
    }
    let Some(svc) = &ib.service else {
        diags.error(
            obj,
            format!("{field}.service"),
            "a service backend is required; path ignored",
        );
        return None;
    };
    let port = match svc.port.as_ref().map(|p| (p.number, p.name.as_deref())) {
        Some((Some(n), None)) => PortRef::Number(n),
        Some((None, Some(n))) if !n.is_empty() => PortRef::Name(n.to_string()),
        _ => {
            diags.error(
                obj,
                format!("{field}.service.port"),
                "exactly one of number or name is required; path ignored",
            );
            return None;
        }
    };
    let endpoints = match index.resolve(&obj.namespace, &svc.name, &port) {
        Ok(eps) => eps,
        Err(e) => {
            diags.warn(
                obj,
                format!("{field}.service"),
                format!("{e}; requests get 503 until it resolves"),
            );
            Vec::new()
        }
    };
    Some(Backend {
        id: format!("{}/{}/{}:{port}", obj.namespace, obj.name, svc.name).into(),
        endpoints: endpoints.into(),
        settings: settings.clone(),
    })
}
