//! Feedback to the cluster (leader only): Ingress load-balancer addresses, Gateway conditions and a
//! Warning Event per rejected annotation, field or reference.
//!
//! Every write is a merge patch of the `status` subresource (or an Event create), made only when
//! the object's current status differs from the wanted one, so the watch event a write causes
//! never causes another write.

use super::Build;
use super::reflect::UnparsedGateway;
use crate::crd::{Gateway, GatewayStatus};
use crate::translate::{self, Diagnostic, ObjectRef, Options, Severity};
use k8s_openapi::api::core::v1::{ObjectReference, Service};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass, IngressLoadBalancerIngress};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    Condition as MetaCondition, MicroTime, ObjectMeta, Time,
};
use k8s_openapi::jiff::Timestamp;
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource};
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

/// What goes into Ingress `status.loadBalancer.ingress`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Publish {
    /// Neither flag: Ingress status is not written.
    Nothing,
    /// `--publish-service NS/NAME`: that Service's load-balancer addresses, else its external IPs,
    /// else its cluster IP.
    Service {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// `--publish-address`: fixed IPs or host names (comma-separated).
    Addresses(Vec<String>),
}

/// A `--publish-*` flag that cannot be used.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// Not `NAMESPACE/NAME`.
    #[error("--publish-service {0:?}: expected NAMESPACE/NAME")]
    Service(String),
    /// Neither an IP address nor a DNS name.
    #[error("--publish-address {0:?}: not an IP address or DNS name")]
    Address(String),
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_dns_name(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

impl Publish {
    /// Reads `--publish-service` / `--publish-address` (clap already makes them exclusive).
    pub fn from_flags(service: Option<&str>, address: Option<&str>) -> Result<Self, PublishError> {
        if let Some(s) = service {
            let (ns, name) = s
                .split_once('/')
                .filter(|(ns, name)| is_dns_label(ns) && is_dns_name(name))
                .ok_or_else(|| PublishError::Service(s.to_string()))?;
            return Ok(Self::Service {
                namespace: ns.to_string(),
                name: name.to_string(),
            });
        }
        if let Some(a) = address {
            let mut out = Vec::new();
            for part in a.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                if part.parse::<IpAddr>().is_err() && !is_dns_name(&part.to_ascii_lowercase()) {
                    return Err(PublishError::Address(part.to_string()));
                }
                out.push(part.to_string());
            }
            if out.is_empty() {
                return Err(PublishError::Address(a.to_string()));
            }
            return Ok(Self::Addresses(out));
        }
        Ok(Self::Nothing)
    }

    /// The `(namespace, name)` of the Service to watch, if any.
    pub fn service(&self) -> Option<(&str, &str)> {
        match self {
            Self::Service { namespace, name } => Some((namespace, name)),
            _ => None,
        }
    }
}

/// One load-balancer entry: `ip` for an IP address, `hostname` otherwise.
pub fn address_entry(addr: &str) -> IngressLoadBalancerIngress {
    if addr.parse::<IpAddr>().is_ok() {
        IngressLoadBalancerIngress {
            ip: Some(addr.to_string()),
            ..Default::default()
        }
    } else {
        IngressLoadBalancerIngress {
            hostname: Some(addr.to_string()),
            ..Default::default()
        }
    }
}

/// A Service's public addresses: `status.loadBalancer.ingress`, else `spec.externalIPs`, else its
/// cluster IP (nothing for a headless Service).
pub fn service_addresses(svc: &Service) -> Vec<IngressLoadBalancerIngress> {
    let lb: Vec<IngressLoadBalancerIngress> = svc
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .map(|list| {
            list.iter()
                .filter_map(|i| {
                    i.ip.as_deref()
                        .or(i.hostname.as_deref())
                        .filter(|a| !a.is_empty())
                        .map(address_entry)
                })
                .collect()
        })
        .unwrap_or_default();
    if !lb.is_empty() {
        return lb;
    }
    let spec = svc.spec.as_ref();
    let external: Vec<IngressLoadBalancerIngress> = spec
        .and_then(|s| s.external_ips.as_ref())
        .map(|ips| ips.iter().map(|ip| address_entry(ip)).collect())
        .unwrap_or_default();
    if !external.is_empty() {
        return external;
    }
    spec.and_then(|s| s.cluster_ip.as_deref())
        .filter(|ip| !ip.is_empty() && *ip != "None")
        .map(|ip| vec![address_entry(ip)])
        .unwrap_or_default()
}

/// Whether wsgate serves this Ingress (its class is ours, or it has none and our class is the
/// default): the rule `translate()` applies.
pub fn is_ours(ing: &Ingress, classes: &[IngressClass], options: &Options) -> bool {
    translate::is_ours(ing, classes, options)
}

/// One wanted condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wanted {
    /// `Accepted`, `ResolvedRefs`, `Programmed`.
    pub type_: &'static str,
    /// `True`, `False` or `Unknown`.
    pub status: &'static str,
    /// CamelCase reason.
    pub reason: String,
    /// Detail.
    pub message: String,
}

const MAX_MESSAGE: usize = 32 * 1024;

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max.saturating_sub(3);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

fn wanted(type_: &'static str, c: &translate::Condition) -> Wanted {
    Wanted {
        type_,
        status: if c.status { "True" } else { "False" },
        reason: c.reason.clone(),
        message: c.message.clone(),
    }
}

/// The three conditions of a translated Gateway; `Programmed` is `False` when one of its
/// listener ports could not be bound.
pub fn gateway_wanted(
    gw: &Gateway,
    c: &translate::GatewayConditions,
    bind_errors: &[crate::proxy::BindError],
) -> Vec<Wanted> {
    let mut programmed = wanted("Programmed", &c.programmed);
    let failed: Vec<String> = bind_errors
        .iter()
        .filter(|e| gw.spec.listeners.iter().any(|l| l.port == e.port))
        .map(ToString::to_string)
        .collect();
    if !failed.is_empty() {
        programmed = Wanted {
            type_: "Programmed",
            status: "False",
            reason: "ListenerNotReady".into(),
            message: failed.join("; "),
        };
    }
    vec![
        wanted("Accepted", &c.accepted),
        wanted("ResolvedRefs", &c.resolved_refs),
        programmed,
    ]
}

/// Conditions of a Gateway that could not be read at all.
pub fn unparsed_wanted(d: &Diagnostic) -> Vec<Wanted> {
    let message = if d.field.is_empty() {
        d.message.clone()
    } else {
        format!("{}: {}", d.field, d.message)
    };
    vec![
        Wanted {
            type_: "Accepted",
            status: "False",
            reason: "Invalid".into(),
            message: message.clone(),
        },
        Wanted {
            type_: "ResolvedRefs",
            status: "Unknown",
            reason: "NotAccepted".into(),
            message: "the Gateway was not accepted".into(),
        },
        Wanted {
            type_: "Programmed",
            status: "False",
            reason: "Invalid".into(),
            message,
        },
    ]
}

/// The status to write, or `None` when `current` already says the same (ignoring transition
/// times). A condition keeps its `lastTransitionTime` while its status does not change.
pub fn gateway_status_update(
    generation: Option<i64>,
    wanted: &[Wanted],
    current: Option<&GatewayStatus>,
    now: Timestamp,
) -> Option<GatewayStatus> {
    let existing: &[MetaCondition] = current.map(|s| &s.conditions[..]).unwrap_or(&[]);
    let conditions: Vec<MetaCondition> = wanted
        .iter()
        .map(|w| {
            let prior = existing.iter().find(|c| c.type_ == w.type_);
            let since = prior
                .filter(|c| c.status == w.status)
                .map(|c| c.last_transition_time.clone())
                .unwrap_or(Time(now));
            MetaCondition {
                type_: w.type_.to_string(),
                status: w.status.to_string(),
                reason: w.reason.clone(),
                message: truncate(&w.message, MAX_MESSAGE),
                observed_generation: generation,
                last_transition_time: since,
            }
        })
        .collect();
    let same = current.is_some_and(|c| {
        c.observed_generation == generation
            && c.conditions.len() == conditions.len()
            && c.conditions.iter().zip(&conditions).all(|(a, b)| {
                (
                    &a.type_,
                    &a.status,
                    &a.reason,
                    &a.message,
                    a.observed_generation,
                ) == (
                    &b.type_,
                    &b.status,
                    &b.reason,
                    &b.message,
                    b.observed_generation,
                )
            })
    });
    (!same).then_some(GatewayStatus {
        observed_generation: generation,
        conditions,
    })
}

/// The reason of the Warning Event for a diagnostic.
pub fn event_reason(d: &Diagnostic) -> &'static str {
    if d.field.starts_with("metadata.annotations") {
        "InvalidAnnotation"
    } else if d.severity == Severity::Warning
        && (d.field.ends_with(".service")
            || d.field.ends_with("secretName")
            || d.field.ends_with("SecretName"))
    {
        "UnresolvedReference"
    } else if d.severity == Severity::Error {
        "Rejected"
    } else {
        "Ignored"
    }
}

/// Identity of an emitted Event: one per distinct problem of one object version's uid.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct EventKey {
    object: ObjectRef,
    uid: String,
    field: String,
    message: String,
}

/// Writes status and Events for one build; keeps what it emitted so each problem is reported
/// once per leadership term (and again if it goes away and comes back). A term survives an API
/// server outage during which no other replica took the Lease.
pub struct Feedback {
    client: Client,
    options: Options,
    publish: Publish,
    identity: String,
    gateway_resource: ApiResource,
    emitted: HashSet<EventKey>,
}

fn ingress_key(ing: &Ingress) -> (String, String) {
    (
        ing.metadata.namespace.clone().unwrap_or_default(),
        ing.metadata.name.clone().unwrap_or_default(),
    )
}

impl Feedback {
    /// A writer acting as `identity` (the Events' `reportingInstance`).
    pub fn new(client: Client, options: Options, publish: Publish, identity: String) -> Self {
        Self {
            client,
            options,
            publish,
            identity,
            gateway_resource: ApiResource::erase::<Gateway>(&()),
            emitted: HashSet::new(),
        }
    }

    /// Forgets emitted Events (a new leadership term reports every current problem afresh).
    pub fn reset(&mut self) {
        self.emitted.clear();
    }

    fn params() -> PatchParams {
        PatchParams {
            field_manager: Some("wsgate".into()),
            ..PatchParams::default()
        }
    }

    /// Writes what differs. Returns false if any write failed (the caller retries later).
    pub async fn pass(&mut self, build: &Build) -> bool {
        let a = self.ingress_statuses(build).await;
        let b = self.gateway_statuses(build).await;
        let c = self.events(build).await;
        a && b && c
    }

    fn published(&self, build: &Build) -> Option<Vec<IngressLoadBalancerIngress>> {
        match &self.publish {
            Publish::Nothing => None,
            Publish::Addresses(list) => Some(list.iter().map(|a| address_entry(a)).collect()),
            Publish::Service { .. } => Some(
                build
                    .view
                    .publish_service
                    .as_ref()
                    .map(service_addresses)
                    .unwrap_or_default(),
            ),
        }
    }

    async fn ingress_statuses(&self, build: &Build) -> bool {
        let Some(wanted) = self.published(build) else {
            return true;
        };
        let snapshot = &build.view.snapshot;
        let mut ok = true;
        for ing in &snapshot.ingresses {
            if !is_ours(ing, &snapshot.ingress_classes, &self.options) {
                continue;
            }
            let current = ing
                .status
                .as_ref()
                .and_then(|s| s.load_balancer.as_ref())
                .and_then(|lb| lb.ingress.clone())
                .unwrap_or_default();
            if current == wanted {
                continue;
            }
            let (ns, name) = ingress_key(ing);
            let api: Api<Ingress> = Api::namespaced(self.client.clone(), &ns);
            let patch = serde_json::json!({"status": {"loadBalancer": {"ingress": wanted}}});
            match api
                .patch_status(&name, &Self::params(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => tracing::info!(
                    object = %format!("Ingress {ns}/{name}"),
                    field = "status.loadBalancer.ingress",
                    identity = %self.identity,
                    "status written"
                ),
                Err(e) => {
                    ok = false;
                    tracing::warn!(object = %format!("Ingress {ns}/{name}"), error = %e, "cannot write Ingress status");
                }
            }
        }
        ok
    }

    async fn write_gateway_status(&self, meta: &ObjectMeta, status: &GatewayStatus) -> bool {
        let ns = meta.namespace.clone().unwrap_or_default();
        let name = meta.name.clone().unwrap_or_default();
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &ns, &self.gateway_resource);
        let patch = serde_json::json!({ "status": status });
        match api
            .patch_status(&name, &Self::params(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {
                tracing::info!(
                    object = %format!("Gateway {ns}/{name}"),
                    field = "status.conditions",
                    identity = %self.identity,
                    "status written"
                );
                true
            }
            Err(e) => {
                tracing::warn!(object = %format!("Gateway {ns}/{name}"), error = %e, "cannot write Gateway status");
                false
            }
        }
    }

    async fn gateway_statuses(&self, build: &Build) -> bool {
        let now = Timestamp::now();
        let by_ref: HashMap<&ObjectRef, &translate::GatewayConditions> = build
            .translated
            .gateway_statuses
            .iter()
            .map(|(r, c)| (r, c))
            .collect();
        let mut ok = true;
        for gw in &build.view.snapshot.gateways {
            let Some(conditions) = by_ref.get(&ObjectRef::of("Gateway", gw)) else {
                continue;
            };
            let wanted = gateway_wanted(gw, conditions, &build.bind_errors);
            if let Some(status) =
                gateway_status_update(gw.metadata.generation, &wanted, gw.status.as_ref(), now)
            {
                ok &= self.write_gateway_status(&gw.metadata, &status).await;
            }
        }
        for bad in &build.view.unparsed_gateways {
            let wanted = unparsed_wanted(&bad.diagnostic);
            if let Some(status) =
                gateway_status_update(bad.metadata.generation, &wanted, bad.status.as_ref(), now)
            {
                ok &= self.write_gateway_status(&bad.metadata, &status).await;
            }
        }
        ok
    }

    /// The object an Event about `d` is attached to, if it is an Ingress or Gateway we have.
    fn regarding(&self, build: &Build, d: &Diagnostic) -> Option<ObjectReference> {
        let snapshot = &build.view.snapshot;
        let matches = |m: &ObjectMeta| {
            m.namespace.as_deref().unwrap_or_default() == d.object.namespace
                && m.name.as_deref().unwrap_or_default() == d.object.name
        };
        match d.object.kind.as_str() {
            "Ingress" => snapshot
                .ingresses
                .iter()
                .find(|i| matches(&i.metadata))
                .map(|i| i.object_ref(&())),
            "Gateway" => snapshot
                .gateways
                .iter()
                .find(|g| matches(&g.metadata))
                .map(|g| g.object_ref(&()))
                .or_else(|| {
                    build
                        .view
                        .unparsed_gateways
                        .iter()
                        .find(|g| matches(&g.metadata))
                        .map(unparsed_ref)
                }),
            _ => None,
        }
    }

    async fn events(&mut self, build: &Build) -> bool {
        let diagnostics = build
            .translated
            .diagnostics
            .iter()
            .chain(build.view.unparsed_gateways.iter().map(|g| &g.diagnostic));
        let mut current = HashSet::new();
        let mut ok = true;
        for d in diagnostics {
            let Some(regarding) = self.regarding(build, d) else {
                continue;
            };
            let key = EventKey {
                object: d.object.clone(),
                uid: regarding.uid.clone().unwrap_or_default(),
                field: d.field.clone(),
                message: d.message.clone(),
            };
            current.insert(key.clone());
            if self.emitted.contains(&key) {
                continue;
            }
            match self.publish_event(d, regarding).await {
                Ok(()) => {
                    self.emitted.insert(key);
                }
                Err(e) => {
                    ok = false;
                    tracing::warn!(object = %d.object, error = %e, "cannot create Event");
                }
            }
        }
        self.emitted.retain(|k| current.contains(k));
        ok
    }

    async fn publish_event(
        &self,
        d: &Diagnostic,
        regarding: ObjectReference,
    ) -> Result<(), kube::Error> {
        let ns = regarding
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let note = if d.field.is_empty() {
            d.message.clone()
        } else {
            format!("{}: {}", d.field, d.message)
        };
        let name = regarding.name.clone().unwrap_or_else(|| "wsgate".into());
        let now = Timestamp::now();
        let event = Event {
            metadata: ObjectMeta {
                // `generateName` may not end in "."; this is the naming kubectl and client-go use.
                name: Some(format!(
                    "{}.{:x}",
                    name.chars().take(230).collect::<String>(),
                    now.as_nanosecond()
                )),
                namespace: Some(ns.clone()),
                ..ObjectMeta::default()
            },
            event_time: Some(MicroTime(now)),
            action: Some("Translate".into()),
            reason: Some(event_reason(d).into()),
            note: Some(truncate(&note, 1024)),
            type_: Some("Warning".into()),
            regarding: Some(regarding),
            reporting_controller: Some(translate::CONTROLLER_NAME.into()),
            reporting_instance: Some(truncate(&self.identity, 128)),
            ..Event::default()
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), &ns);
        api.create(&PostParams::default(), &event).await?;
        tracing::info!(object = %d.object, field = %d.field, reason = event_reason(d), identity = %self.identity, "Warning Event created");
        Ok(())
    }
}

fn unparsed_ref(g: &UnparsedGateway) -> ObjectReference {
    ObjectReference {
        api_version: Some(Gateway::api_version(&()).into_owned()),
        kind: Some("Gateway".into()),
        name: g.metadata.name.clone(),
        namespace: g.metadata.namespace.clone(),
        uid: g.metadata.uid.clone(),
        resource_version: g.metadata.resource_version.clone(),
        ..ObjectReference::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        LoadBalancerIngress, LoadBalancerStatus, ServiceSpec, ServiceStatus,
    };
    use k8s_openapi::api::networking::v1::IngressSpec;
    use std::collections::BTreeMap;

    #[test]
    fn publish_flags() {
        assert_eq!(Publish::from_flags(None, None), Ok(Publish::Nothing));
        assert_eq!(
            Publish::from_flags(Some("wsgate-system/wsgate"), None),
            Ok(Publish::Service {
                namespace: "wsgate-system".into(),
                name: "wsgate".into()
            })
        );
        for bad in ["wsgate", "/x", "a/", "A/b", "a/b/c"] {
            assert_eq!(
                Publish::from_flags(Some(bad), None),
                Err(PublishError::Service(bad.into())),
                "{bad}"
            );
        }
        assert_eq!(
            Publish::from_flags(None, Some("203.0.113.7, ws.example.com,2001:db8::1")),
            Ok(Publish::Addresses(vec![
                "203.0.113.7".into(),
                "ws.example.com".into(),
                "2001:db8::1".into()
            ]))
        );
        assert!(Publish::from_flags(None, Some("not an address")).is_err());
        assert!(Publish::from_flags(None, Some(" , ")).is_err());
    }

    #[test]
    fn address_entries_are_ip_or_hostname() {
        assert_eq!(address_entry("10.0.0.1").ip.as_deref(), Some("10.0.0.1"));
        assert_eq!(address_entry("10.0.0.1").hostname, None);
        assert_eq!(
            address_entry("lb.example.com").hostname.as_deref(),
            Some("lb.example.com")
        );
    }

    fn service(lb: &[&str], external: &[&str], cluster_ip: Option<&str>) -> Service {
        Service {
            spec: Some(ServiceSpec {
                external_ips: (!external.is_empty())
                    .then(|| external.iter().map(|s| s.to_string()).collect()),
                cluster_ip: cluster_ip.map(Into::into),
                ..ServiceSpec::default()
            }),
            status: Some(ServiceStatus {
                load_balancer: Some(LoadBalancerStatus {
                    ingress: Some(
                        lb.iter()
                            .map(|a| {
                                if a.parse::<IpAddr>().is_ok() {
                                    LoadBalancerIngress {
                                        ip: Some(a.to_string()),
                                        ..Default::default()
                                    }
                                } else {
                                    LoadBalancerIngress {
                                        hostname: Some(a.to_string()),
                                        ..Default::default()
                                    }
                                }
                            })
                            .collect(),
                    ),
                }),
                ..ServiceStatus::default()
            }),
            ..Service::default()
        }
    }

    #[test]
    fn service_addresses_prefer_load_balancer_then_external_then_cluster_ip() {
        let got = service_addresses(&service(
            &["1.2.3.4", "lb.example.com"],
            &["5.6.7.8"],
            Some("10.96.0.9"),
        ));
        assert_eq!(
            got,
            vec![address_entry("1.2.3.4"), address_entry("lb.example.com")]
        );
        let got = service_addresses(&service(&[], &["5.6.7.8"], Some("10.96.0.9")));
        assert_eq!(got, vec![address_entry("5.6.7.8")]);
        let got = service_addresses(&service(&[], &[], Some("10.96.0.9")));
        assert_eq!(got, vec![address_entry("10.96.0.9")]);
        assert!(service_addresses(&service(&[], &[], Some("None"))).is_empty());
    }

    fn ingress(class: Option<&str>, legacy: Option<&str>) -> Ingress {
        let mut annotations = BTreeMap::new();
        annotations.insert("wsgate.dev/ip-allow".to_string(), "not a CIDR".to_string());
        if let Some(l) = legacy {
            annotations.insert("kubernetes.io/ingress.class".to_string(), l.to_string());
        }
        Ingress {
            metadata: ObjectMeta {
                name: Some("i".into()),
                namespace: Some("n".into()),
                annotations: Some(annotations),
                ..ObjectMeta::default()
            },
            spec: Some(IngressSpec {
                ingress_class_name: class.map(Into::into),
                ..IngressSpec::default()
            }),
            status: None,
        }
    }

    fn class(name: &str, default: bool) -> IngressClass {
        let mut annotations = BTreeMap::new();
        if default {
            annotations.insert(
                "ingressclass.kubernetes.io/is-default-class".to_string(),
                "true".to_string(),
            );
        }
        IngressClass {
            metadata: ObjectMeta {
                name: Some(name.into()),
                annotations: Some(annotations),
                ..ObjectMeta::default()
            },
            spec: Some(k8s_openapi::api::networking::v1::IngressClassSpec {
                controller: Some(translate::CONTROLLER_NAME.into()),
                parameters: None,
            }),
        }
    }

    #[test]
    fn ours_follows_translate() {
        let o = Options::default();
        assert!(is_ours(&ingress(Some("wsgate"), None), &[], &o));
        assert!(!is_ours(&ingress(Some("nginx"), None), &[], &o));
        assert!(is_ours(&ingress(None, Some("wsgate")), &[], &o));
        assert!(!is_ours(&ingress(None, None), &[], &o));
        assert!(!is_ours(
            &ingress(None, None),
            &[class("wsgate", false)],
            &o
        ));
        assert!(is_ours(&ingress(None, None), &[class("wsgate", true)], &o));
    }

    fn cond(status: bool, reason: &str) -> translate::Condition {
        translate::Condition {
            status,
            reason: reason.into(),
            message: if status {
                String::new()
            } else {
                format!("{reason} detail")
            },
        }
    }

    fn conditions(resolved: bool) -> translate::GatewayConditions {
        translate::GatewayConditions {
            accepted: cond(true, "Accepted"),
            resolved_refs: if resolved {
                cond(true, "ResolvedRefs")
            } else {
                cond(false, "BackendNotFound")
            },
            programmed: cond(true, "Programmed"),
        }
    }

    #[test]
    fn gateway_status_written_only_when_different() {
        let gw = Gateway::new("g", Default::default());
        let t0 = Timestamp::from_second(1_000).unwrap_or(Timestamp::UNIX_EPOCH);
        let t1 = Timestamp::from_second(2_000).unwrap_or(Timestamp::UNIX_EPOCH);
        let wanted = gateway_wanted(&gw, &conditions(false), &[]);
        let first = gateway_status_update(Some(1), &wanted, None, t0).expect("first write");
        assert_eq!(first.observed_generation, Some(1));
        let types: Vec<_> = first
            .conditions
            .iter()
            .map(|c| (c.type_.as_str(), c.status.as_str(), c.reason.as_str()))
            .collect();
        assert_eq!(
            types,
            vec![
                ("Accepted", "True", "Accepted"),
                ("ResolvedRefs", "False", "BackendNotFound"),
                ("Programmed", "True", "Programmed")
            ]
        );
        assert!(
            first
                .conditions
                .iter()
                .all(|c| c.observed_generation == Some(1))
        );
        // Same wanted state, later: no write.
        assert_eq!(
            gateway_status_update(Some(1), &wanted, Some(&first), t1),
            None
        );
        // New generation: write, transition times kept.
        let second =
            gateway_status_update(Some(2), &wanted, Some(&first), t1).expect("new generation");
        assert!(
            second
                .conditions
                .iter()
                .all(|c| c.last_transition_time.0 == t0)
        );
        // ResolvedRefs flips: only its transition time moves.
        let fixed = gateway_wanted(&gw, &conditions(true), &[]);
        let third = gateway_status_update(Some(2), &fixed, Some(&second), t1).expect("flip");
        let rr = third
            .conditions
            .iter()
            .find(|c| c.type_ == "ResolvedRefs")
            .expect("ResolvedRefs");
        assert_eq!(
            (rr.status.as_str(), rr.last_transition_time.0),
            ("True", t1)
        );
        let acc = third
            .conditions
            .iter()
            .find(|c| c.type_ == "Accepted")
            .expect("Accepted");
        assert_eq!(acc.last_transition_time.0, t0);
    }

    #[test]
    fn bind_failure_makes_gateway_not_programmed() {
        let mut gw = Gateway::new("g", Default::default());
        gw.spec.listeners.push(crate::crd::GatewayListener {
            name: "web".into(),
            protocol: "HTTP".into(),
            port: 8181,
            ..Default::default()
        });
        let errors = [crate::proxy::BindError {
            port: 8181,
            message: "in use".into(),
        }];
        let w = gateway_wanted(&gw, &conditions(true), &errors);
        assert_eq!(
            (w[2].status, w[2].reason.as_str()),
            ("False", "ListenerNotReady")
        );
        let other = [crate::proxy::BindError {
            port: 9999,
            message: "in use".into(),
        }];
        assert_eq!(
            gateway_wanted(&gw, &conditions(true), &other)[2].status,
            "True"
        );
    }

    #[test]
    fn event_reasons() {
        let d = |sev, field: &str| Diagnostic {
            severity: sev,
            object: ObjectRef::new("Ingress", Some("n"), Some("i")),
            field: field.into(),
            message: "m".into(),
        };
        assert_eq!(
            event_reason(&d(
                Severity::Warning,
                "metadata.annotations[\"wsgate.dev/x\"]"
            )),
            "InvalidAnnotation"
        );
        assert_eq!(
            event_reason(&d(
                Severity::Warning,
                "spec.rules[0].http.paths[0].backend.service"
            )),
            "UnresolvedReference"
        );
        assert_eq!(
            event_reason(&d(Severity::Error, "spec.rules[0].host")),
            "Rejected"
        );
        assert_eq!(event_reason(&d(Severity::Warning, "spec.tls")), "Ignored");
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        assert_eq!(truncate("abc", 10), "abc");
        let t = truncate(&"é".repeat(100), 11);
        assert!(t.len() <= 11 && t.ends_with("..."), "{t}");
    }
}
