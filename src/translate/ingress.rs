//! Ingress objects of our class -> routes on the `--http-port` listener.

use super::annotations::settings_from;
use super::backends::{Index, PortRef};
use super::builder::{Origin, Source, TableBuilder, Target};
use super::diagnostics::{Diagnostics, ObjectRef};
use super::firewall;
use super::text;
use super::{CONTROLLER_NAME, Options};
use crate::ir::{
    Backend, BackendSettings, HostMatch, ListenerProtocol, PathMatch, Redacted, TlsCertificate,
};
use crate::source::Snapshot;
use k8s_openapi::api::networking::v1::{Ingress, IngressBackend, IngressClass};
use std::fmt::Write;
use std::sync::Arc;

const DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";
const LEGACY_CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";

/// Whether an Ingress belongs to wsgate: its class is ours, or it has none and our IngressClass is
/// the cluster default.
pub fn is_ours(ing: &Ingress, classes: &[std::sync::Arc<IngressClass>], options: &Options) -> bool {
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

/// How many paths the snapshot's Ingresses declare (a size hint for the table builder).
pub(crate) fn path_count(snapshot: &Snapshot) -> usize {
    snapshot
        .ingresses
        .iter()
        .filter_map(|i| i.spec.as_ref()?.rules.as_ref())
        .flatten()
        .filter_map(|r| r.http.as_ref())
        .map(|h| h.paths.len())
        .sum()
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
    let source = Source::new(created, obj.clone());
    let origin = |field: String| Origin {
        source: source.clone(),
        field,
    };
    let Some(spec) = &ing.spec else {
        diags.warn(&obj, "spec", "Ingress has no spec; nothing to serve");
        return;
    };
    let tls_hosts = tls_hosts(spec, &obj, options, index, b, diags);
    let port = options.http_port;

    if let Some(db) = &spec.default_backend
        && let Some(backend) = backend_for(
            db,
            &Field("spec.defaultBackend", ""),
            &obj,
            &settings,
            index,
            diags,
        )
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
        let rfield = text::indexed("spec.rules", ri, "");
        let host = match HostMatch::parse(rule.host.as_deref().unwrap_or("")) {
            Ok(h) => h,
            Err(e) => {
                diags.error(&obj, format!("{rfield}.host"), format!("{e}; rule ignored"));
                continue;
            }
        };
        let Some(http) = &rule.http else { continue };
        let paths_field = [rfield.as_str(), ".http.paths"].concat();
        for (pi, p) in http.paths.iter().enumerate() {
            let pfield = text::indexed(&paths_field, pi, "");
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
                &Field(&pfield, ".backend"),
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
            let id: Arc<str> = route_id(&ns, &obj.name, &host, text).into();
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
    field: &Field<'_>,
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
    let endpoints = match index.resolve_shared(&obj.namespace, &svc.name, &port) {
        Ok(eps) => eps,
        Err(e) => {
            diags.warn(
                obj,
                format!("{field}.service"),
                format!("{e}; requests get 503 until it resolves"),
            );
            Arc::from([])
        }
    };
    let mut id = String::with_capacity(obj.namespace.len() + obj.name.len() + svc.name.len() + 16);
    // Writing to a String cannot fail.
    let _ = write!(id, "{}/{}/{}:{port}", obj.namespace, obj.name, svc.name);
    Some(Backend {
        id: id.into(),
        endpoints,
        settings: settings.clone(),
    })
}

/// A field path in two parts, joined only when a diagnostic prints it.
struct Field<'a>(&'a str, &'a str);

impl std::fmt::Display for Field<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)?;
        f.write_str(self.1)
    }
}

/// `NAMESPACE/NAME/HOSTPATH`, a route's metric and log name. Sized up front: growing the text
/// by reallocation cost more than the rest of the route.
fn route_id(ns: &str, name: &str, host: &HostMatch, path: &str) -> String {
    let mut id = String::with_capacity(ns.len() + name.len() + path.len() + 64);
    // Writing to a String cannot fail.
    let _ = write!(id, "{ns}/{name}/{host}{path}");
    id
}
