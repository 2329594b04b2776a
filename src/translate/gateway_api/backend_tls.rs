//! `BackendTLSPolicy` (v1): TLS from wsgate to the endpoints of a Service, verified against a CA
//! bundle in a ConfigMap (`ca.crt`) or the bundled public roots (`wellKnownCACertificates:
//! System`), with `hostname` as SNI and as the name the certificate must carry.
//!
//! A policy targets Services in its own namespace, optionally one port by `sectionName` (the
//! Service port's name); a port-specific policy wins over a whole-Service one. Among policies on
//! the same target the oldest (then by namespace/name) wins and the others are `Conflicted`. A
//! policy that cannot be honoured fails closed: requests to the backend answer 500, never
//! plaintext and never other roots.

use super::TlsPolicyReport;
use crate::gwapi::BackendTLSPolicy;
use crate::translate::conditions::Condition;
use crate::translate::diagnostics::{Diagnostics, ObjectRef};
use k8s_openapi::api::core::v1::ConfigMap;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// What a usable policy asks of the connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Tls {
    /// PEM CA bundle; `None` = the bundled public roots (`System`).
    pub(crate) ca_pem: Option<String>,
    /// SNI and the verified name.
    pub(crate) hostname: Arc<str>,
}

/// One policy, parsed and validated.
struct Parsed {
    object: ObjectRef,
    /// `Accepted` and `ResolvedRefs`.
    conditions: Vec<Condition>,
    /// The connection settings, or why requests get 500.
    tls: Result<Tls, String>,
}

/// A target: namespace, Service name, port name (`None` = every port).
type Target = (String, String, Option<String>);

/// The BackendTLSPolicies of a snapshot, indexed by target.
#[derive(Default)]
pub(crate) struct BackendTls {
    entries: Vec<Parsed>,
    /// Per target, the policies on it, the one that applies first (the others are `Conflicted`
    /// but still report for the same Gateways).
    by_target: HashMap<Target, Vec<usize>>,
    /// Gateways whose routes reach each policy's Services (the policy's status ancestors).
    ancestors: RefCell<BTreeMap<usize, BTreeSet<(String, String)>>>,
}

impl BackendTls {
    /// Parses every policy; problems are warnings on the policy naming the field.
    pub(crate) fn new(
        list: &[Arc<BackendTLSPolicy>],
        config_maps: &[Arc<ConfigMap>],
        diags: &mut Diagnostics,
    ) -> Self {
        let sorted = super::oldest_first(list);
        let mut out = Self {
            entries: Vec::new(),
            by_target: HashMap::new(),
            ancestors: RefCell::new(BTreeMap::new()),
        };
        for p in sorted {
            let object = ObjectRef::of("BackendTLSPolicy", p);
            let ns = object.namespace.clone();
            let (tls, mut conditions) = validate(p, &object, config_maps, diags);
            let index = out.entries.len();
            let mut conflicted = false;
            for (i, t) in p.spec.target_refs.iter().enumerate() {
                if !t.group.is_empty() || t.kind != "Service" {
                    let field = format!("spec.targetRefs[{i}]");
                    diags.warn(&object, &field, "only Services (group \"\") are supported");
                    continue;
                }
                let key = (ns.clone(), t.name.clone(), t.section_name.clone());
                let on_target = out.by_target.entry(key).or_default();
                if !on_target.is_empty() {
                    conflicted = true;
                    diags.warn(
                        &object,
                        format!("spec.targetRefs[{i}]"),
                        "an older BackendTLSPolicy targets the same Service and sectionName; this one is not applied there",
                    );
                }
                on_target.push(index);
            }
            if conflicted {
                conditions[0] = Condition::failed(
                    "Accepted",
                    "Conflicted",
                    "an older BackendTLSPolicy targets the same Service and sectionName",
                );
            }
            out.entries.push(Parsed {
                object,
                conditions,
                tls,
            });
        }
        out
    }

    /// The policy for Service `ns/name` port `port_name` reached through Gateway `gateway`
    /// (recorded as the policy's status ancestor): `None` when no policy targets it,
    /// `Some(Err)` when one does but cannot be honoured.
    pub(crate) fn lookup(
        &self,
        ns: &str,
        name: &str,
        port_name: Option<&str>,
        gateway: (&str, &str),
    ) -> Option<Result<&Tls, &str>> {
        let specific = port_name.and_then(|p| {
            self.by_target
                .get(&(ns.to_string(), name.to_string(), Some(p.to_string())))
        });
        let on_target = specific.or_else(|| {
            self.by_target
                .get(&(ns.to_string(), name.to_string(), None))
        })?;
        let mut ancestors = self.ancestors.borrow_mut();
        for i in on_target {
            ancestors
                .entry(*i)
                .or_default()
                .insert((gateway.0.to_string(), gateway.1.to_string()));
        }
        let entry = &self.entries[*on_target.first()?];
        Some(entry.tls.as_ref().map_err(String::as_str))
    }

    /// Status per policy: its conditions for each Gateway whose routes reach its Services.
    pub(crate) fn report(&self) -> Vec<TlsPolicyReport> {
        let ancestors = self.ancestors.borrow();
        self.entries
            .iter()
            .enumerate()
            .map(|(i, e)| TlsPolicyReport {
                object: e.object.clone(),
                ancestors: ancestors
                    .get(&i)
                    .map(|set| {
                        set.iter()
                            .map(|g| (g.clone(), e.conditions.clone()))
                            .collect()
                    })
                    .unwrap_or_default(),
            })
            .collect()
    }
}

/// The policy's TLS settings and its `Accepted` + `ResolvedRefs` conditions.
fn validate(
    p: &BackendTLSPolicy,
    object: &ObjectRef,
    config_maps: &[Arc<ConfigMap>],
    diags: &mut Diagnostics,
) -> (Result<Tls, String>, Vec<Condition>) {
    let v = &p.spec.validation;
    let invalid = |diags: &mut Diagnostics, field: &str, m: String| {
        diags.warn(
            object,
            field,
            format!("{m}; requests to its Services get 500"),
        );
        (
            Err(m.clone()),
            vec![
                Condition::failed("Accepted", "Invalid", m),
                Condition::ok("ResolvedRefs", "ResolvedRefs"),
            ],
        )
    };
    if let Err(m) = check_hostname(&v.hostname) {
        return invalid(diags, "spec.validation.hostname", m);
    }
    if !v.subject_alt_names.is_empty() {
        return invalid(
            diags,
            "spec.validation.subjectAltNames",
            "subjectAltNames are not supported (the certificate is verified against hostname)"
                .into(),
        );
    }
    let well_known = v.well_known_ca_certificates.as_deref().unwrap_or("");
    match (v.ca_certificate_refs.is_empty(), well_known) {
        (false, w) if !w.is_empty() => invalid(
            diags,
            "spec.validation",
            "caCertificateRefs and wellKnownCACertificates are mutually exclusive".into(),
        ),
        (true, "") => invalid(
            diags,
            "spec.validation",
            "one of caCertificateRefs or wellKnownCACertificates is required".into(),
        ),
        (true, "System") => (
            Ok(Tls {
                ca_pem: None,
                hostname: v.hostname.as_str().into(),
            }),
            vec![
                Condition::ok("Accepted", "Accepted"),
                Condition::ok("ResolvedRefs", "ResolvedRefs"),
            ],
        ),
        (true, other) => invalid(
            diags,
            "spec.validation.wellKnownCACertificates",
            format!("{other:?} is not supported (only \"System\")"),
        ),
        (false, _) => ca_refs(p, object, config_maps, diags),
    }
}

/// Resolves `caCertificateRefs` (ConfigMaps with `ca.crt` in the policy's namespace). Invalid
/// references are left out; when none is left the policy is not accepted.
fn ca_refs(
    p: &BackendTLSPolicy,
    object: &ObjectRef,
    config_maps: &[Arc<ConfigMap>],
    diags: &mut Diagnostics,
) -> (Result<Tls, String>, Vec<Condition>) {
    let mut bundle = String::new();
    let mut problem: Option<(&str, String)> = None;
    for (i, r) in p.spec.validation.ca_certificate_refs.iter().enumerate() {
        let field = format!("spec.validation.caCertificateRefs[{i}]");
        let group = r.group.as_deref().unwrap_or("");
        let kind = r.kind.as_deref().unwrap_or("ConfigMap");
        let found = if !group.is_empty() || kind != "ConfigMap" {
            Err((
                "InvalidKind",
                format!("{kind} (group {group:?}) is not supported; use a ConfigMap"),
            ))
        } else {
            ca_bundle(config_maps, &object.namespace, &r.name)
                .map_err(|m| ("InvalidCACertificateRef", m))
        };
        match found {
            Ok(pem) => {
                bundle.push_str(&pem);
                bundle.push('\n');
            }
            Err((reason, m)) => {
                diags.warn(object, &field, format!("{m}; this CA is not used"));
                problem.get_or_insert((reason, m));
            }
        }
    }
    let hostname: Arc<str> = p.spec.validation.hostname.as_str().into();
    match (problem, bundle.is_empty()) {
        (None, _) => (
            Ok(Tls {
                ca_pem: Some(bundle),
                hostname,
            }),
            vec![
                Condition::ok("Accepted", "Accepted"),
                Condition::ok("ResolvedRefs", "ResolvedRefs"),
            ],
        ),
        (Some((reason, m)), false) => (
            Ok(Tls {
                ca_pem: Some(bundle),
                hostname,
            }),
            vec![
                Condition::ok("Accepted", "Accepted"),
                Condition::failed("ResolvedRefs", reason, m),
            ],
        ),
        (Some((reason, m)), true) => {
            diags.warn(
                object,
                "spec.validation.caCertificateRefs",
                "no usable CA certificate; requests to its Services get 500",
            );
            (
                Err(m.clone()),
                vec![
                    Condition::failed(
                        "Accepted",
                        "NoValidCACertificate",
                        "no usable CA certificate",
                    ),
                    Condition::failed("ResolvedRefs", reason, m),
                ],
            )
        }
    }
}

/// The `ca.crt` of ConfigMap `ns/name`, checked to hold at least one certificate.
fn ca_bundle(config_maps: &[Arc<ConfigMap>], ns: &str, name: &str) -> Result<String, String> {
    let cm = config_maps
        .iter()
        .find(|c| {
            c.metadata.namespace.as_deref().unwrap_or("default") == ns
                && c.metadata.name.as_deref() == Some(name)
        })
        .ok_or_else(|| format!("ConfigMap {ns}/{name} not found"))?;
    let pem = cm
        .data
        .as_ref()
        .and_then(|d| d.get("ca.crt"))
        .ok_or_else(|| format!("ConfigMap {ns}/{name} has no key ca.crt"))?;
    let certs = crate::translate::tls::parse_certs(pem)
        .map_err(|e| format!("ConfigMap {ns}/{name} ca.crt: {e}"))?;
    if certs.is_empty() {
        return Err(format!(
            "ConfigMap {ns}/{name} ca.crt holds no PEM certificate"
        ));
    }
    // Parsed as trust anchors now, so a broken bundle is reported here, not at connect time.
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs {
        roots
            .add(cert)
            .map_err(|e| format!("ConfigMap {ns}/{name} ca.crt: unusable certificate: {e}"))?;
    }
    Ok(pem.clone())
}

/// `hostname` must be a DNS name (RFC 1123, no wildcard, no IP address), as SNI requires.
fn check_hostname(h: &str) -> Result<(), String> {
    if h.is_empty() {
        return Err("hostname is required".into());
    }
    if h.parse::<std::net::IpAddr>().is_ok() {
        return Err(format!(
            "hostname {h:?} is an IP address; SNI needs a DNS name"
        ));
    }
    if !crate::names::is_dns_subdomain(h) {
        return Err(format!("hostname {h:?} is not a valid DNS name"));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
