//! Status of the Gateway API objects and WebSocketPolicies (leader only): the wanted status is
//! built from translation's report (pure: [`class_status`], [`gateway_status`], [`route_status`],
//! [`policy_status`], [`tls_policy_status`], each keeping transition times of unchanged conditions), compared with the
//! object's, and written by a merge patch of the `status` subresource only when it differs.

use super::wanted::meta_conditions;
use crate::controller::gateway_services::Outcome;
use crate::crd::{AncestorRef, PolicyAncestor, WebSocketPolicyStatus};
use crate::gwapi::{
    self, GatewayClassStatus, GatewayStatus, GatewayStatusAddress, ListenerStatus, RouteGroupKind,
    RouteParentStatus, RouteStatus, SupportedFeature,
};
use crate::proxy::BindError;
use crate::translate::Condition;
use crate::translate::ObjectRef;
use crate::translate::gateway_api::{
    GatewayApiReport, GatewayReport, PolicyReport, RouteReport, SUPPORTED_FEATURES, TlsPolicyReport,
};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, Resource};
use serde::Serialize;
use std::collections::HashMap;

/// The wanted GatewayClass status.
pub fn class_status(
    cond: &Condition,
    generation: Option<i64>,
    current: Option<&GatewayClassStatus>,
    now: Timestamp,
) -> GatewayClassStatus {
    let existing = current.map(|c| &c.conditions[..]).unwrap_or(&[]);
    GatewayClassStatus {
        conditions: meta_conditions(generation, std::slice::from_ref(cond), existing, now),
        supported_features: SUPPORTED_FEATURES
            .iter()
            .map(|f| SupportedFeature { name: (*f).into() })
            .collect(),
    }
}

/// Where the Gateways' `status.addresses` come from.
#[derive(Clone, Copy, Debug)]
pub enum Addresses<'a> {
    /// The same for every Gateway (`--publish-service` / `--publish-address`).
    Shared(&'a [String]),
    /// Each Gateway's own Service (`--gateway-services`), by the Gateway's reference.
    PerGateway(&'a HashMap<ObjectRef, Outcome>),
}

impl Addresses<'_> {
    /// The addresses of one Gateway, or why it has none.
    fn of(&self, gateway: &ObjectRef) -> (Vec<String>, Option<String>) {
        match self {
            Addresses::Shared(list) => (list.to_vec(), None),
            Addresses::PerGateway(map) => match map.get(gateway) {
                Some(Outcome::Addresses(list)) => (list.clone(), None),
                Some(Outcome::Problem(p)) => (Vec::new(), Some(p.clone())),
                None => (
                    Vec::new(),
                    Some("its Service is not written yet".to_string()),
                ),
            },
        }
    }
}

/// The wanted Gateway status; `Programmed` turns False when one of its ports could not be bound
/// or, with `--gateway-services`, while it has no address (`address_problem`, reason
/// `AddressNotAssigned`).
#[allow(clippy::too_many_arguments)]
pub fn gateway_status(
    r: &GatewayReport,
    generation: Option<i64>,
    addresses: &[String],
    address_problem: Option<&str>,
    bind_errors: &[BindError],
    current: Option<&GatewayStatus>,
    now: Timestamp,
) -> GatewayStatus {
    let failed: Vec<String> = bind_errors
        .iter()
        .filter(|e| r.ports.contains(&e.port))
        .map(ToString::to_string)
        .collect();
    let mut conditions = r.conditions.clone();
    if !failed.is_empty() {
        for c in conditions.iter_mut().filter(|c| c.type_ == "Programmed") {
            *c = Condition::failed("Programmed", "Invalid", failed.join("; "));
        }
    }
    if let Some(problem) = address_problem {
        for c in conditions
            .iter_mut()
            .filter(|c| c.type_ == "Programmed" && c.is_true())
        {
            *c = Condition::failed("Programmed", "AddressNotAssigned", problem);
        }
    }
    let existing = current.map(|c| &c.conditions[..]).unwrap_or(&[]);
    GatewayStatus {
        addresses: addresses
            .iter()
            .map(|a| GatewayStatusAddress {
                type_: Some(
                    if a.parse::<std::net::IpAddr>().is_ok() {
                        "IPAddress"
                    } else {
                        "Hostname"
                    }
                    .into(),
                ),
                value: a.clone(),
            })
            .collect(),
        conditions: meta_conditions(generation, &conditions, existing, now),
        listeners: r
            .listeners
            .iter()
            .map(|l| {
                let prior = current
                    .and_then(|c| c.listeners.iter().find(|p| p.name == l.name))
                    .map(|p| &p.conditions[..])
                    .unwrap_or(&[]);
                ListenerStatus {
                    name: l.name.clone(),
                    supported_kinds: l
                        .supported_kinds
                        .iter()
                        .map(|k| RouteGroupKind {
                            group: Some(gwapi::GROUP.into()),
                            kind: k.clone(),
                        })
                        .collect(),
                    attached_routes: l.attached_routes,
                    conditions: meta_conditions(generation, &l.conditions, prior, now),
                }
            })
            .collect(),
    }
}

/// The wanted HTTPRoute status: other controllers' `parents[]` entries kept, ours replaced.
pub fn route_status(
    r: &RouteReport,
    generation: Option<i64>,
    current: Option<&RouteStatus>,
    now: Timestamp,
) -> RouteStatus {
    let mut parents: Vec<RouteParentStatus> = current
        .map(|c| {
            c.parents
                .iter()
                .filter(|p| p.controller_name != gwapi::CONTROLLER_NAME)
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    for p in &r.parents {
        let prior = current
            .and_then(|c| {
                c.parents.iter().find(|x| {
                    x.controller_name == gwapi::CONTROLLER_NAME && x.parent_ref == p.parent_ref
                })
            })
            .map(|x| &x.conditions[..])
            .unwrap_or(&[]);
        parents.push(RouteParentStatus {
            parent_ref: p.parent_ref.clone(),
            controller_name: gwapi::CONTROLLER_NAME.into(),
            conditions: meta_conditions(generation, &p.conditions, prior, now),
        });
    }
    RouteStatus { parents }
}

/// The wanted WebSocketPolicy status.
pub fn policy_status(
    r: &PolicyReport,
    generation: Option<i64>,
    current: Option<&WebSocketPolicyStatus>,
    now: Timestamp,
) -> WebSocketPolicyStatus {
    WebSocketPolicyStatus {
        ancestors: r
            .ancestors
            .iter()
            .map(|((ns, name), cond)| {
                let ancestor_ref = AncestorRef {
                    group: gwapi::GROUP.into(),
                    kind: "Gateway".into(),
                    namespace: ns.clone(),
                    name: name.clone(),
                };
                let prior = current
                    .and_then(|c| c.ancestors.iter().find(|a| a.ancestor_ref == ancestor_ref))
                    .map(|a| &a.conditions[..])
                    .unwrap_or(&[]);
                PolicyAncestor {
                    ancestor_ref,
                    controller_name: gwapi::CONTROLLER_NAME.into(),
                    conditions: meta_conditions(generation, std::slice::from_ref(cond), prior, now),
                }
            })
            .collect(),
    }
}

/// The wanted BackendTLSPolicy status: ours per ancestor Gateway; entries other controllers
/// wrote are kept as they are (the policy is a shared object, unlike a WebSocketPolicy).
pub fn tls_policy_status(
    r: &TlsPolicyReport,
    generation: Option<i64>,
    current: Option<&gwapi::PolicyStatus>,
    now: Timestamp,
) -> gwapi::PolicyStatus {
    let theirs = current
        .map(|c| &c.ancestors[..])
        .unwrap_or(&[])
        .iter()
        .filter(|a| a.controller_name != gwapi::CONTROLLER_NAME)
        .cloned();
    let ours = r.ancestors.iter().map(|((ns, name), conds)| {
        let ancestor_ref = gwapi::ParentReference {
            group: Some(gwapi::GROUP.into()),
            kind: Some("Gateway".into()),
            namespace: Some(ns.clone()),
            name: name.clone(),
            section_name: None,
            port: None,
        };
        let prior = current
            .and_then(|c| {
                c.ancestors.iter().find(|a| {
                    a.ancestor_ref == ancestor_ref && a.controller_name == gwapi::CONTROLLER_NAME
                })
            })
            .map(|a| &a.conditions[..])
            .unwrap_or(&[]);
        gwapi::PolicyAncestorStatus {
            ancestor_ref,
            controller_name: gwapi::CONTROLLER_NAME.into(),
            conditions: meta_conditions(generation, conds, prior, now),
        }
    });
    gwapi::PolicyStatus {
        ancestors: theirs.chain(ours).collect(),
    }
}

fn params() -> PatchParams {
    PatchParams {
        field_manager: Some("wsgate".into()),
        ..PatchParams::default()
    }
}

/// Writes `wanted` when it differs from `current`; false when the write failed.
async fn write<K, S>(api: Api<K>, name: &str, wanted: &S, current: Option<&S>, what: &str) -> bool
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    S: Serialize + PartialEq,
{
    if current == Some(wanted) {
        return true;
    }
    let patch = serde_json::json!({ "status": wanted });
    match api
        .patch_status(name, &params(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => {
            tracing::info!(object = %what, "status written");
            true
        }
        Err(e) => {
            tracing::warn!(object = %what, error = %e, "cannot write status");
            false
        }
    }
}

/// Finds `object` in `objects` (the snapshot's copies) and writes the status `wanted` computes
/// from it when that differs from the current one; true when nothing failed (a vanished object
/// is not a failure: the next pass no longer reports it).
async fn write_namespaced<'a, K, S>(
    client: &Client,
    objects: &'a [std::sync::Arc<K>],
    object: &ObjectRef,
    wanted: impl FnOnce(&'a K) -> (S, Option<&'a S>),
) -> bool
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    S: Serialize + PartialEq + 'a,
{
    let Some(found) = objects.iter().find(|o| {
        o.meta().namespace.as_deref() == Some(&object.namespace)
            && o.meta().name.as_deref() == Some(&object.name)
    }) else {
        return true;
    };
    let (wanted, current) = wanted(&**found);
    let api: Api<K> = Api::namespaced(client.clone(), &object.namespace);
    write(api, &object.name, &wanted, current, &object.to_string()).await
}

/// Writes every Gateway API status that differs. Returns false if a write failed.
pub async fn write_all(
    client: &Client,
    snapshot: &crate::source::Snapshot,
    report: &GatewayApiReport,
    addresses: Addresses<'_>,
    bind_errors: &[BindError],
) -> bool {
    let api = &snapshot.gateway_api;
    let now = Timestamp::now();
    let mut ok = true;
    for (name, cond) in &report.classes {
        let Some(c) = api
            .classes
            .iter()
            .find(|c| c.metadata.name.as_deref() == Some(name))
        else {
            continue;
        };
        let wanted = class_status(cond, c.metadata.generation, c.status.as_ref(), now);
        let a: Api<gwapi::GatewayClass> = Api::all(client.clone());
        ok &= write(
            a,
            name,
            &wanted,
            c.status.as_ref(),
            &format!("GatewayClass {name}"),
        )
        .await;
    }
    for r in &report.gateways {
        let (list, problem) = addresses.of(&r.object);
        ok &= write_namespaced(client, &api.gateways, &r.object, |g| {
            let wanted = gateway_status(
                r,
                g.metadata.generation,
                &list,
                problem.as_deref(),
                bind_errors,
                g.status.as_ref(),
                now,
            );
            (wanted, g.status.as_ref())
        })
        .await;
    }
    for r in &report.routes {
        ok &= write_namespaced(client, &api.http_routes, &r.object, |h| {
            let wanted = route_status(r, h.metadata.generation, h.status.as_ref(), now);
            (wanted, h.status.as_ref())
        })
        .await;
    }
    for r in &report.policies {
        ok &= write_namespaced(client, &api.websocket_policies, &r.object, |p| {
            let wanted = policy_status(r, p.metadata.generation, p.status.as_ref(), now);
            (wanted, p.status.as_ref())
        })
        .await;
    }
    // A BackendTLSPolicy has nothing to say until a route of ours reaches one of its Services.
    for r in report
        .tls_policies
        .iter()
        .filter(|r| !r.ancestors.is_empty())
    {
        ok &= write_namespaced(client, &api.backend_tls_policies, &r.object, |p| {
            let wanted = tls_policy_status(r, p.metadata.generation, p.status.as_ref(), now);
            (wanted, p.status.as_ref())
        })
        .await;
    }
    ok
}
