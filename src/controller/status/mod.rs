//! Feedback to the cluster (leader only): Ingress load-balancer addresses, Gateway conditions and a
//! Warning Event per rejected annotation, field or reference.
//!
//! `wanted.rs` computes what each object should say (pure); this file compares and writes. Every
//! write is a merge patch of the `status` subresource (or an Event create), made only when the
//! object's current status differs from the wanted one, so the watch event a write causes never
//! causes another write.

pub mod gateway_api;
pub mod wanted;

pub use wanted::{
    address_entry, event_reason, gateway_status_update, gateway_wanted, is_ours, service_addresses,
    unparsed_wanted,
};

use super::Build;
use super::gateway_services::{self, GatewayServices};
use super::reflect::UnparsedGateway;
use crate::cli::Publish;
use crate::crd::{Gateway, GatewayStatus};
use crate::translate::{self, Diagnostic, ObjectRef, Options};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::networking::v1::{Ingress, IngressLoadBalancerIngress};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource};
use std::collections::{HashMap, HashSet};
use wanted::truncate;

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
    gateway_services: Option<GatewayServices>,
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
            gateway_services: None,
        }
    }

    /// With `--gateway-services`: every Gateway API Gateway gets its own Service, whose address
    /// its status carries.
    pub fn with_gateway_services(mut self, cfg: Option<GatewayServices>) -> Self {
        self.gateway_services = cfg;
        self
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
        let addresses: Vec<String> = self
            .published(build)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|a| a.ip.or(a.hostname))
            .collect();
        let (outcomes, e) = match &self.gateway_services {
            Some(cfg) => {
                let (o, ok) = gateway_services::reconcile(
                    &self.client,
                    cfg,
                    &build.view.snapshot,
                    &build.translated.gateway_api.gateways,
                )
                .await;
                (Some(o), ok)
            }
            None => (None, true),
        };
        let d = gateway_api::write_all(
            &self.client,
            &build.view.snapshot,
            &build.translated.gateway_api,
            match &outcomes {
                Some(o) => gateway_api::Addresses::PerGateway(o),
                None => gateway_api::Addresses::Shared(&addresses),
            },
            &build.bind_errors,
        )
        .await;
        a && b && c && d && e
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
            let Some(conditions) = by_ref.get(&ObjectRef::of("Gateway", &**gw)) else {
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
