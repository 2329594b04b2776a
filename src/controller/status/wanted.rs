//! The pure half of status: what each object's status and Events should say, computed from a
//! build. No I/O and no clock (the time is a parameter); the writer in `mod.rs` compares and
//! writes.

use crate::crd::{Gateway, GatewayStatus};
use crate::translate::{self, Condition, ConditionStatus, Diagnostic, Options, Severity};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass, IngressLoadBalancerIngress};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition as MetaCondition, Time};
use k8s_openapi::jiff::Timestamp;
use std::net::IpAddr;

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
pub fn is_ours(ing: &Ingress, classes: &[std::sync::Arc<IngressClass>], options: &Options) -> bool {
    translate::is_ours(ing, classes, options)
}

const MAX_MESSAGE: usize = 32 * 1024;

pub(crate) fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max.saturating_sub(3);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

/// The three conditions of a translated Gateway; `Programmed` is `False` when one of its
/// listener ports could not be bound.
pub fn gateway_wanted(
    gw: &Gateway,
    c: &translate::GatewayConditions,
    bind_errors: &[crate::proxy::BindError],
) -> Vec<Condition> {
    let mut programmed = c.programmed.clone();
    let failed: Vec<String> = bind_errors
        .iter()
        .filter(|e| gw.spec.listeners.iter().any(|l| l.port == e.port))
        .map(ToString::to_string)
        .collect();
    if !failed.is_empty() {
        programmed = Condition::failed("Programmed", "ListenerNotReady", failed.join("; "));
    }
    vec![c.accepted.clone(), c.resolved_refs.clone(), programmed]
}

/// Conditions of a Gateway that could not be read at all.
pub fn unparsed_wanted(d: &Diagnostic) -> Vec<Condition> {
    let message = if d.field.is_empty() {
        d.message.clone()
    } else {
        format!("{}: {}", d.field, d.message)
    };
    vec![
        Condition::failed("Accepted", "Invalid", message.clone()),
        Condition::new(
            "ResolvedRefs",
            ConditionStatus::Unknown,
            "NotAccepted",
            "the Gateway was not accepted",
        ),
        Condition::failed("Programmed", "Invalid", message),
    ]
}

/// The `metav1.Condition`s to write for `wanted`, or `None` when `current` already says the same
/// (ignoring transition times). A condition keeps its `lastTransitionTime` while its status does
/// not change.
pub fn conditions_update(
    generation: Option<i64>,
    wanted: &[Condition],
    current: &[MetaCondition],
    now: Timestamp,
) -> Option<Vec<MetaCondition>> {
    let conditions = meta_conditions(generation, wanted, current, now);
    let same = current.len() == conditions.len()
        && current.iter().zip(&conditions).all(|(a, b)| {
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
        });
    (!same).then_some(conditions)
}

/// `wanted` as `metav1.Condition`s stamped with `generation`; transition times are kept from
/// `current` while a condition's status is unchanged, else `now`.
pub fn meta_conditions(
    generation: Option<i64>,
    wanted: &[Condition],
    current: &[MetaCondition],
    now: Timestamp,
) -> Vec<MetaCondition> {
    wanted
        .iter()
        .map(|w| {
            let status = w.status.as_str();
            let since = current
                .iter()
                .find(|c| c.type_ == w.type_)
                .filter(|c| c.status == status)
                .map(|c| c.last_transition_time.clone())
                .unwrap_or(Time(now));
            MetaCondition {
                type_: w.type_.clone(),
                status: status.to_string(),
                reason: w.reason.clone(),
                message: truncate(&w.message, MAX_MESSAGE),
                observed_generation: generation,
                last_transition_time: since,
            }
        })
        .collect()
}

/// The status to write, or `None` when `current` already says the same (ignoring transition
/// times).
pub fn gateway_status_update(
    generation: Option<i64>,
    wanted: &[Condition],
    current: Option<&GatewayStatus>,
    now: Timestamp,
) -> Option<GatewayStatus> {
    let existing: &[MetaCondition] = current.map(|s| &s.conditions[..]).unwrap_or(&[]);
    let same_generation = current.is_some_and(|c| c.observed_generation == generation);
    match conditions_update(generation, wanted, existing, now) {
        None if same_generation => None,
        update => Some(GatewayStatus {
            observed_generation: generation,
            conditions: update
                .unwrap_or_else(|| meta_conditions(generation, wanted, existing, now)),
        }),
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translate::ObjectRef;
    use k8s_openapi::api::core::v1::{
        LoadBalancerIngress, LoadBalancerStatus, ServiceSpec, ServiceStatus,
    };
    use k8s_openapi::api::networking::v1::IngressSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use std::collections::BTreeMap;

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
            &[class("wsgate", false).into()],
            &o
        ));
        assert!(is_ours(
            &ingress(None, None),
            &[class("wsgate", true).into()],
            &o
        ));
    }

    fn conditions(resolved: bool) -> translate::GatewayConditions {
        translate::GatewayConditions {
            accepted: Condition::ok("Accepted", "Accepted"),
            resolved_refs: if resolved {
                Condition::ok("ResolvedRefs", "ResolvedRefs")
            } else {
                Condition::failed("ResolvedRefs", "BackendNotFound", "BackendNotFound detail")
            },
            programmed: Condition::ok("Programmed", "Programmed"),
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
            (ConditionStatus::False, "ListenerNotReady")
        );
        let other = [crate::proxy::BindError {
            port: 9999,
            message: "in use".into(),
        }];
        assert_eq!(
            gateway_wanted(&gw, &conditions(true), &other)[2].status,
            ConditionStatus::True
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
