//! `--gateway-services` (leader only): one Service per Gateway API Gateway of ours, so that
//! every Gateway has an address of its own. The Service `NAME-wsgate` lives in the Gateway's
//! namespace, is owned by the Gateway (deleting the Gateway deletes it), selects the wsgate
//! pods, and maps each listener port to the pod port translation chose for it
//! ([`crate::translate::gateway_ports`]). Its address is what the Gateway's `status.addresses`
//! say.
//!
//! [`wanted`] and [`differs`] are pure; [`reconcile`] writes (server-side apply, only when the
//! Service differs) and deletes the Services of Gateways that are gone. A Service of that name
//! that wsgate does not manage is never touched: the Gateway reports it instead.

use crate::gwapi::{self, Gateway};
use crate::source::Snapshot;
use crate::translate::ObjectRef;
use crate::translate::gateway_api::GatewayReport;
use crate::translate::gateway_ports::{GATEWAY_LABEL, MANAGED_BY, service_name};
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::{Client, Resource};
use std::collections::{BTreeMap, HashMap};

const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";

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
}

/// What a Gateway's Service gives its status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The Service exists and has these addresses (load-balancer ingress, else cluster IP).
    Addresses(Vec<String>),
    /// No address: why, naming the object and field (`Programmed` is False with this message).
    Problem(String),
}

/// Whether `svc` is the Service wsgate manages for Gateway `gateway` (its labels say so).
pub fn is_managed(svc: &Service, gateway: &str) -> bool {
    let labels = svc.metadata.labels.as_ref();
    labels
        .and_then(|l| l.get(MANAGED_BY_LABEL))
        .map(String::as_str)
        == Some(MANAGED_BY)
        && labels
            .and_then(|l| l.get(GATEWAY_LABEL))
            .map(String::as_str)
            == Some(gateway)
}

/// The Service Gateway `gw` should have: its name, or why it cannot have one.
pub fn wanted(
    gw: &Gateway,
    report: &GatewayReport,
    cfg: &GatewayServices,
) -> Result<Service, String> {
    let name = gw.metadata.name.clone().unwrap_or_default();
    let ns = gw.metadata.namespace.clone().unwrap_or_default();
    let svc_name = service_name(&name).ok_or_else(|| {
        format!(
            "metadata.name: {name:?}-wsgate is not a valid Service name (a DNS-1035 label: \
             at most 63 characters, a letter first, no dots); the Gateway gets no address"
        )
    })?;
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
    let owner = OwnerReference {
        api_version: format!("{}/v1", gwapi::GROUP),
        kind: "Gateway".into(),
        name: name.clone(),
        uid: gw.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        // No blockOwnerDeletion: setting it needs the right to update the Gateway's finalizers.
        block_owner_deletion: None,
    };
    let external = cfg.service_type != ServiceType::ClusterIP;
    Ok(Service {
        metadata: ObjectMeta {
            name: Some(svc_name),
            namespace: Some(ns),
            labels: Some(BTreeMap::from([
                (MANAGED_BY_LABEL.to_string(), MANAGED_BY.to_string()),
                (GATEWAY_LABEL.to_string(), name),
            ])),
            owner_references: Some(vec![owner]),
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
    let owner_ok = wanted.metadata.owner_references.iter().flatten().all(|o| {
        current
            .metadata
            .owner_references
            .iter()
            .flatten()
            .any(|x| x.uid == o.uid && x.kind == o.kind && x.controller == o.controller)
    });
    !labels_ok
        || !owner_ok
        || c.type_.as_deref().unwrap_or("ClusterIP") != w.type_.as_deref().unwrap_or("ClusterIP")
        || c.selector != w.selector
        || ports(current) != ports(wanted)
        || (w.external_traffic_policy.is_some()
            && c.external_traffic_policy != w.external_traffic_policy)
}

/// The addresses of a Service (load-balancer ingress, external IPs, else the cluster IP), or
/// why there are none yet.
fn outcome_of(svc: &Service) -> Outcome {
    let addresses: Vec<String> = crate::controller::status::service_addresses(svc)
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

fn params() -> PatchParams {
    PatchParams::apply("wsgate").force()
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
                let (o, written) = ensure(client, snapshot, &r.object.name, &want).await;
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
    gateway: &str,
    want: &Service,
) -> (Outcome, bool) {
    let ns = want.metadata.namespace.clone().unwrap_or_default();
    let name = want.metadata.name.clone().unwrap_or_default();
    let current = snapshot.services.iter().find(|s| {
        s.metadata.namespace.as_deref() == Some(&ns) && s.metadata.name.as_deref() == Some(&name)
    });
    if let Some(cur) = current {
        if !is_managed(cur, gateway) {
            return (
                Outcome::Problem(format!(
                    "Service {ns}/{name} exists and is not managed by wsgate (no labels \
                     {MANAGED_BY_LABEL}={MANAGED_BY}, {GATEWAY_LABEL}={gateway}); it is left \
                     alone, so the Gateway has no address: delete or rename that Service"
                )),
                true,
            );
        }
        if !differs(cur, want) {
            return (outcome_of(cur), true);
        }
    }
    let api: Api<Service> = Api::namespaced(client.clone(), &ns);
    match api.patch(&name, &params(), &Patch::Apply(want)).await {
        Ok(svc) => {
            tracing::info!(object = %format!("Service {ns}/{name}"), gateway, "Gateway Service written");
            (outcome_of(&svc), true)
        }
        Err(e) => {
            tracing::warn!(object = %format!("Service {ns}/{name}"), error = %e, "cannot write the Gateway's Service");
            (
                Outcome::Problem(format!("cannot create or update Service {ns}/{name}: {e}")),
                false,
            )
        }
    }
}

/// Deletes Services wsgate manages whose Gateway is gone. The owner reference makes the
/// cluster's garbage collector do the same; this covers clusters (and moments) without it.
/// A Gateway that still exists but is no longer served keeps its Service: it may be another
/// wsgate installation's (`--gateway-class`), and its owner reference removes it with the
/// Gateway.
async fn delete_stale(client: &Client, snapshot: &Snapshot) -> bool {
    let mut ok = true;
    for svc in &snapshot.services {
        let labels = svc.metadata.labels.as_ref();
        let Some(gateway) = labels.and_then(|l| l.get(GATEWAY_LABEL)) else {
            continue;
        };
        let ns = svc.metadata.namespace.clone().unwrap_or_default();
        let name = svc.metadata.name.clone().unwrap_or_default();
        if !is_managed(svc, gateway)
            || service_name(gateway).as_deref() != Some(name.as_str())
            || snapshot.gateway_api.gateways.iter().any(|g| {
                g.metadata.namespace.as_deref() == Some(ns.as_str())
                    && g.metadata.name.as_deref() == Some(gateway.as_str())
            })
        {
            continue;
        }
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
                tracing::info!(object = %format!("Service {ns}/{name}"), gateway = %gateway, "Service of a Gateway that is gone deleted")
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
        }
    }

    #[test]
    fn the_service_maps_listener_ports_to_pod_ports_and_is_owned() {
        let svc = wanted(
            &gateway("web"),
            &report("web", vec![(80, 21000), (443, 25000)]),
            &cfg(),
        )
        .expect("a Service");
        assert_eq!(svc.metadata.name.as_deref(), Some("web-wsgate"));
        assert_eq!(svc.metadata.namespace.as_deref(), Some("apps"));
        assert!(is_managed(&svc, "web"));
        assert!(!is_managed(&svc, "other"));
        let owner = &svc.metadata.owner_references.as_ref().expect("owner")[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
            ("Gateway", "u-1", Some(true))
        );
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
    fn names_that_cannot_be_service_names_and_gateways_without_ports_are_reported() {
        let e = wanted(&gateway("a.b"), &report("a.b", vec![(80, 21000)]), &cfg()).unwrap_err();
        assert!(e.starts_with("metadata.name"), "{e}");
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
        let mut unowned = cur.clone();
        unowned.metadata.owner_references = None;
        assert!(differs(&unowned, &want));
    }

    #[test]
    fn addresses_come_from_the_service() {
        let mut svc =
            wanted(&gateway("web"), &report("web", vec![(80, 21000)]), &cfg()).expect("svc");
        assert!(matches!(outcome_of(&svc), Outcome::Problem(m) if m.contains("apps/web-wsgate")));
        svc.spec.as_mut().expect("spec").cluster_ip = Some("198.18.128.7".into());
        assert_eq!(
            outcome_of(&svc),
            Outcome::Addresses(vec!["198.18.128.7".into()])
        );
    }
}
