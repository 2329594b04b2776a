//! `--gateway-services` (leader only): one Service per Gateway API Gateway of ours, so that
//! every Gateway has an address of its own. The Service lives in wsgate's own namespace (a
//! Service selects pods of its namespace only), is named after the Gateway
//! ([`service_name`](crate::translate::gateway_ports::service_name)) and labelled with it,
//! selects the wsgate pods, and maps each listener port to the pod port translation chose for
//! it ([`crate::translate::gateway_ports`]). Its address is what the Gateway's
//! `status.addresses` say. (No owner reference: owners must be in the dependent's namespace, so
//! wsgate deletes the Service itself once its Gateway is gone.)
//!
//! [`wanted`] and [`differs`] are pure; [`reconcile`] writes (create, or server-side apply when
//! the Service differs) and deletes the Services of Gateways that are gone. A Service of that
//! name that wsgate does not manage is never touched: the Gateway reports it instead.

use crate::gwapi::Gateway;
use crate::source::Snapshot;
use crate::translate::ObjectRef;
use crate::translate::gateway_api::GatewayReport;
use crate::translate::gateway_ports::{
    GATEWAY_LABEL, GATEWAY_NAMESPACE_LABEL, MANAGED_BY, MANAGED_BY_LABEL, is_managed, service_name,
};
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::{Client, Resource};
use std::collections::{BTreeMap, HashMap};

/// `--gateway-service-type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ServiceType {
    /// An address inside the cluster only.
    #[value(name = "ClusterIP")]
    ClusterIP,
    /// A port on every node too.
    #[value(name = "NodePort")]
    NodePort,
    /// An address from the cluster's load balancer (what a Gateway usually wants).
    #[value(name = "LoadBalancer")]
    LoadBalancer,
}

impl ServiceType {
    fn as_str(self) -> &'static str {
        match self {
            ServiceType::ClusterIP => "ClusterIP",
            ServiceType::NodePort => "NodePort",
            ServiceType::LoadBalancer => "LoadBalancer",
        }
    }
}

impl std::fmt::Display for ServiceType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Settings of the Gateways' Services.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewayServices {
    /// `--gateway-service-selector`: the wsgate pods' labels.
    pub selector: BTreeMap<String, String>,
    /// `--gateway-service-type`.
    pub service_type: ServiceType,
    /// Where the Services are: wsgate's own namespace (set by the controller at start, the
    /// Lease's namespace).
    pub namespace: String,
}

/// What a Gateway's Service gives its status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The Service exists and has these addresses (load-balancer ingress, else cluster IP).
    Addresses(Vec<String>),
    /// No address: why, naming the object and field (`Programmed` is False with this message).
    Problem(String),
}

/// The Service Gateway `gw` should have, or why it cannot have one.
pub fn wanted(
    gw: &Gateway,
    report: &GatewayReport,
    cfg: &GatewayServices,
) -> Result<Service, String> {
    let name = gw.metadata.name.clone().unwrap_or_default();
    let ns = gw.metadata.namespace.clone().unwrap_or_default();
    if report.service_ports.is_empty() {
        return Err(
            "spec.listeners: no listener port to serve; the Gateway gets no Service".into(),
        );
    }
    let ports = report
        .service_ports
        .iter()
        .map(|(port, target)| ServicePort {
            name: Some(format!("tcp-{port}")),
            port: i32::from(*port),
            target_port: Some(IntOrString::Int(i32::from(*target))),
            protocol: Some("TCP".into()),
            ..ServicePort::default()
        })
        .collect();
    let external = cfg.service_type != ServiceType::ClusterIP;
    Ok(Service {
        metadata: ObjectMeta {
            name: Some(service_name(&ns, &name)),
            namespace: Some(cfg.namespace.clone()),
            labels: Some(BTreeMap::from([
                (MANAGED_BY_LABEL.to_string(), MANAGED_BY.to_string()),
                (GATEWAY_LABEL.to_string(), name),
                (GATEWAY_NAMESPACE_LABEL.to_string(), ns),
            ])),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            type_: Some(cfg.service_type.as_str().into()),
            selector: Some(cfg.selector.clone()),
            ports: Some(ports),
            // Client source addresses reach wsgate (firewall, rate limit, logs), as with the
            // chart's own Service.
            external_traffic_policy: external.then(|| "Local".to_string()),
            ..ServiceSpec::default()
        }),
        status: None,
    })
}

/// Whether the `current` Service lacks something `wanted` sets (fields the API server fills
/// in, such as node ports and the cluster IP, are not compared).
pub fn differs(current: &Service, wanted: &Service) -> bool {
    let ports = |s: &Service| -> Vec<(Option<String>, i32, Option<IntOrString>, String)> {
        let mut v: Vec<_> = s
            .spec
            .as_ref()
            .and_then(|s| s.ports.as_ref())
            .into_iter()
            .flatten()
            .map(|p| {
                (
                    p.name.clone(),
                    p.port,
                    p.target_port.clone(),
                    p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                )
            })
            .collect();
        v.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
        v
    };
    let (Some(c), Some(w)) = (current.spec.as_ref(), wanted.spec.as_ref()) else {
        return true;
    };
    let labels_ok = wanted
        .metadata
        .labels
        .iter()
        .flatten()
        .all(|(k, v)| current.metadata.labels.as_ref().and_then(|l| l.get(k)) == Some(v));
    !labels_ok
        || c.type_.as_deref().unwrap_or("ClusterIP") != w.type_.as_deref().unwrap_or("ClusterIP")
        || c.selector != w.selector
        || ports(current) != ports(wanted)
        || (w.external_traffic_policy.is_some()
            && c.external_traffic_policy != w.external_traffic_policy)
}

/// The addresses of a Service (load-balancer ingress, external IPs, else the cluster IP), or
/// why there are none yet.
fn outcome_of(svc: &Service) -> Outcome {
    let addresses: Vec<String> = crate::controller::status::wanted::service_addresses(svc)
        .into_iter()
        .filter_map(|a| a.ip.or(a.hostname))
        .collect();
    if addresses.is_empty() {
        Outcome::Problem(format!(
            "Service {}/{} has no address yet",
            svc.metadata.namespace.as_deref().unwrap_or_default(),
            svc.metadata.name.as_deref().unwrap_or_default()
        ))
    } else {
        Outcome::Addresses(addresses)
    }
}

fn apply_params() -> PatchParams {
    PatchParams::apply("wsgate").force()
}

fn create_params() -> PostParams {
    PostParams {
        field_manager: Some("wsgate".into()),
        ..PostParams::default()
    }
}

/// Ensures the Service of every Gateway in `reports` and deletes managed Services whose Gateway
/// is gone. Returns each Gateway's outcome and whether every write succeeded.
pub async fn reconcile(
    client: &Client,
    cfg: &GatewayServices,
    snapshot: &Snapshot,
    reports: &[GatewayReport],
) -> (HashMap<ObjectRef, Outcome>, bool) {
    let mut out = HashMap::new();
    let mut ok = true;
    for r in reports {
        let Some(gw) = snapshot.gateway_api.gateways.iter().find(|g| {
            g.metadata.namespace.as_deref() == Some(&r.object.namespace)
                && g.metadata.name.as_deref() == Some(&r.object.name)
        }) else {
            continue;
        };
        let outcome = match wanted(gw, r, cfg) {
            Err(problem) => Outcome::Problem(problem),
            Ok(want) => {
                let (o, written) = ensure(client, snapshot, &r.object, &want).await;
                ok &= written;
                o
            }
        };
        out.insert(r.object.clone(), outcome);
    }
    ok &= delete_stale(client, snapshot).await;
    (out, ok)
}

/// Creates or updates one Service (when it differs) and returns its outcome; false when a write
/// failed.
async fn ensure(
    client: &Client,
    snapshot: &Snapshot,
    gw: &ObjectRef,
    want: &Service,
) -> (Outcome, bool) {
    let ns = want.metadata.namespace.clone().unwrap_or_default();
    let name = want.metadata.name.clone().unwrap_or_default();
    let what = format!("Service {ns}/{name}");
    let api: Api<Service> = Api::namespaced(client.clone(), &ns);
    let current = snapshot
        .gateway_api
        .gateway_services
        .iter()
        .find(|s| is_managed(s, &gw.namespace, &gw.name));
    let written = match current {
        Some(cur) if !differs(cur, want) => return (outcome_of(cur), true),
        // Ours already: server-side apply makes it what it should be.
        Some(_) => api.patch(&name, &apply_params(), &Patch::Apply(want)).await,
        // Not known as ours: only a create, which never takes over someone else's Service.
        None => match api.create(&create_params(), want).await {
            Err(kube::Error::Api(e)) if e.code == 409 => match api.get_opt(&name).await {
                // Ours after all (written by an earlier pass the watch has not shown yet).
                Ok(Some(svc)) if is_managed(&svc, &gw.namespace, &gw.name) => {
                    api.patch(&name, &apply_params(), &Patch::Apply(want)).await
                }
                Ok(Some(_)) => {
                    return (
                        Outcome::Problem(format!(
                            "{what} exists and is not managed by wsgate (no labels \
                             {MANAGED_BY_LABEL}={MANAGED_BY}, {GATEWAY_NAMESPACE_LABEL}={}, \
                             {GATEWAY_LABEL}={}); it is left alone, so the Gateway has no \
                             address: delete or rename that Service",
                            gw.namespace, gw.name
                        )),
                        true,
                    );
                }
                Ok(None) => Err(kube::Error::Api(e)),
                Err(get) => Err(get),
            },
            other => other,
        },
    };
    match written {
        Ok(svc) => {
            tracing::info!(object = %what, gateway = %gw, "Gateway Service written");
            (outcome_of(&svc), true)
        }
        Err(e) => {
            tracing::warn!(object = %what, gateway = %gw, error = %e, "cannot write the Gateway's Service");
            (
                Outcome::Problem(format!("cannot create or update {what}: {e}")),
                false,
            )
        }
    }
}

/// Deletes Services wsgate manages whose Gateway is gone (deleted, or outside the watched
/// namespaces). A Gateway that still exists but is no longer served keeps its Service: it may
/// be another wsgate installation's (`--gateway-class`).
async fn delete_stale(client: &Client, snapshot: &Snapshot) -> bool {
    let mut ok = true;
    for svc in &snapshot.gateway_api.gateway_services {
        let label = |k: &str| {
            svc.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(k))
                .cloned()
                .unwrap_or_default()
        };
        let (gw_ns, gw_name) = (label(GATEWAY_NAMESPACE_LABEL), label(GATEWAY_LABEL));
        if !is_managed(svc, &gw_ns, &gw_name)
            || snapshot.gateway_api.gateways.iter().any(|g| {
                g.metadata.namespace.as_deref() == Some(gw_ns.as_str())
                    && g.metadata.name.as_deref() == Some(gw_name.as_str())
            })
        {
            continue;
        }
        let ns = svc.metadata.namespace.clone().unwrap_or_default();
        let name = svc.metadata.name.clone().unwrap_or_default();
        let api: Api<Service> = Api::namespaced(client.clone(), &ns);
        let dp = DeleteParams {
            preconditions: Some(Preconditions {
                uid: svc.meta().uid.clone(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match api.delete(&name, &dp).await {
            Ok(_) => {
                tracing::info!(object = %format!("Service {ns}/{name}"), gateway = %format!("{gw_ns}/{gw_name}"), "Service of a Gateway that is gone deleted")
            }
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
            Err(e) => {
                ok = false;
                tracing::warn!(object = %format!("Service {ns}/{name}"), error = %e, "cannot delete the Service of a Gateway that is gone");
            }
        }
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gateway(name: &str) -> Gateway {
        let mut gw: Gateway = serde_json::from_value(serde_json::json!({
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "Gateway",
            "metadata": {"name": name, "namespace": "apps", "uid": "u-1"},
            "spec": {"gatewayClassName": "wsgate", "listeners": [
                {"name": "web", "protocol": "HTTP", "port": 80}
            ]}
        }))
        .expect("a Gateway");
        gw.metadata.uid = Some("u-1".into());
        gw
    }

    fn report(name: &str, service_ports: Vec<(u16, u16)>) -> GatewayReport {
        GatewayReport {
            object: ObjectRef::new(
                "Gateway.gateway.networking.k8s.io",
                Some("apps"),
                Some(name),
            ),
            ports: service_ports.iter().map(|p| p.1).collect(),
            service_ports,
            conditions: Vec::new(),
            listeners: Vec::new(),
        }
    }

    fn cfg() -> GatewayServices {
        GatewayServices {
            selector: BTreeMap::from([("app".to_string(), "wsgate".to_string())]),
            service_type: ServiceType::LoadBalancer,
            namespace: "wsgate-system".into(),
        }
    }

    #[test]
    fn the_service_maps_listener_ports_to_pod_ports_in_wsgates_namespace() {
        let svc = wanted(
            &gateway("web"),
            &report("web", vec![(80, 21000), (443, 25000)]),
            &cfg(),
        )
        .expect("a Service");
        assert_eq!(
            svc.metadata.name.as_deref(),
            Some(service_name("apps", "web").as_str())
        );
        assert_eq!(svc.metadata.namespace.as_deref(), Some("wsgate-system"));
        assert!(is_managed(&svc, "apps", "web"));
        assert!(!is_managed(&svc, "apps", "other"));
        assert!(!is_managed(&svc, "other", "web"));
        let spec = svc.spec.as_ref().expect("spec");
        let ports: Vec<(i32, Option<IntOrString>)> = spec
            .ports
            .iter()
            .flatten()
            .map(|p| (p.port, p.target_port.clone()))
            .collect();
        assert_eq!(
            ports,
            vec![
                (80, Some(IntOrString::Int(21000))),
                (443, Some(IntOrString::Int(25000)))
            ]
        );
        assert_eq!(spec.type_.as_deref(), Some("LoadBalancer"));
        assert_eq!(spec.external_traffic_policy.as_deref(), Some("Local"));
        assert_eq!(spec.selector, Some(cfg().selector));
    }

    #[test]
    fn a_gateway_without_ports_gets_no_service() {
        let e = wanted(&gateway("web"), &report("web", vec![]), &cfg()).unwrap_err();
        assert!(e.starts_with("spec.listeners"), "{e}");
    }

    #[test]
    fn differs_ignores_server_filled_fields_and_sees_our_changes() {
        let want = wanted(&gateway("web"), &report("web", vec![(80, 21000)]), &cfg()).expect("svc");
        let mut cur = want.clone();
        {
            let spec = cur.spec.as_mut().expect("spec");
            spec.cluster_ip = Some("198.18.128.7".into());
            spec.ports.as_mut().expect("ports")[0].node_port = Some(31000);
            cur.metadata
                .labels
                .as_mut()
                .expect("labels")
                .insert("extra".into(), "x".into());
        }
        assert!(!differs(&cur, &want));
        let moved =
            wanted(&gateway("web"), &report("web", vec![(80, 21001)]), &cfg()).expect("svc");
        assert!(differs(&cur, &moved));
        let mut other_selector = cfg();
        other_selector.selector.insert("tier".into(), "edge".into());
        let w2 = wanted(
            &gateway("web"),
            &report("web", vec![(80, 21000)]),
            &other_selector,
        )
        .expect("svc");
        assert!(differs(&cur, &w2));
        let mut relabelled = cur.clone();
        relabelled.metadata.labels = None;
        assert!(differs(&relabelled, &want));
    }

    #[test]
    fn addresses_come_from_the_service() {
        let mut svc =
            wanted(&gateway("web"), &report("web", vec![(80, 21000)]), &cfg()).expect("svc");
        assert!(
            matches!(outcome_of(&svc), Outcome::Problem(m) if m.contains(&format!("wsgate-system/{}", service_name("apps", "web"))))
        );
        svc.spec.as_mut().expect("spec").cluster_ip = Some("198.18.128.7".into());
        assert_eq!(
            outcome_of(&svc),
            Outcome::Addresses(vec!["198.18.128.7".into()])
        );
    }
}
