//! The cluster source: one reflector per watched kind and namespace, merged into a [`Snapshot`].
//!
//! Each reflector keeps its own in-memory store. While the API server is unreachable the stores
//! keep their last contents (so the last table keeps serving) and the watchers retry with a capped
//! exponential back-off; a re-list replaces a store atomically once it completes.

use crate::crd::{Gateway, GatewayStatus, WebSocketPolicy};
use crate::gwapi;
use crate::source::Snapshot;
use crate::translate::{Diagnostic, ObjectRef, Severity};
use futures_util::StreamExt;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{ApiResource, DynamicObject};
use kube::runtime::reflector::{self, Store, store::Writer};
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt, watcher as watch_stream};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// The Secret keys wsgate uses: a `kubernetes.io/tls` Secret's certificate and key (listeners),
/// and a `ca.crt` bundle in a Secret of any type (`caSecretName` of HTTPS backends).
pub const SECRET_KEYS: [&str; 3] = ["tls.crt", "tls.key", "ca.crt"];

/// Trims a Secret as it arrives, before it is stored: only [`SECRET_KEYS`] are kept (`tls.crt`
/// and `tls.key` only for `kubernetes.io/tls`), and annotations are dropped (kubectl's
/// last-applied-configuration repeats the whole data). Passwords, tokens and other keys never
/// stay in wsgate's memory.
pub fn trim_secret(secret: &mut Secret) {
    let tls = secret.type_.as_deref() == Some("kubernetes.io/tls");
    if let Some(data) = secret.data.as_mut() {
        data.retain(|k, _| k == "ca.crt" || (tls && SECRET_KEYS.contains(&k.as_str())));
    }
    secret.string_data = None;
    secret.metadata.annotations = None;
    secret.metadata.managed_fields = None;
}

/// Drops `managedFields` (never read; often the largest part of an object).
fn trim_meta<K: Resource>(obj: &mut K) {
    obj.meta_mut().managed_fields = None;
}

/// Retry delays of a failed list/watch: 500 ms doubling up to 8 s, with jitter, reset after any
/// successful event. A watcher waiting out its delay also retries as soon as any other request
/// to the API server succeeds again (see [`Cluster::reachable`]), so a returning API server is
/// noticed within about one Lease retry period, not one full back-off.
#[derive(Debug, Clone)]
pub struct RetryBackoff {
    next: Duration,
}

impl RetryBackoff {
    const MIN: Duration = Duration::from_millis(500);
    const MAX: Duration = Duration::from_secs(8);

    /// A fresh back-off starting at the minimum delay.
    pub fn new() -> Self {
        Self { next: Self::MIN }
    }

    /// Back to the minimum delay.
    pub fn reset(&mut self) {
        self.next = Self::MIN;
    }
}

impl Default for RetryBackoff {
    fn default() -> Self {
        Self::new()
    }
}

impl Iterator for RetryBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let base = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        // Between half and all of the base delay, so that replicas do not retry in lockstep.
        let jitter = rand::random::<f64>() * 0.5 + 0.5;
        Some(base.mul_f64(jitter))
    }
}

/// What a reflector keeps of each object it receives.
pub trait Trim {
    /// Removes what wsgate never reads, before the object is stored.
    fn trim(&mut self);
}

impl Trim for Secret {
    fn trim(&mut self) {
        trim_secret(self);
    }
}

/// A ConfigMap keeps only `ca.crt` (a `BackendTLSPolicy` CA bundle): the rest of every
/// ConfigMap in the watched namespaces is never held in memory.
impl Trim for ConfigMap {
    fn trim(&mut self) {
        trim_meta(self);
        if let Some(data) = &mut self.data {
            data.retain(|k, _| k == "ca.crt");
        }
        self.binary_data = None;
    }
}

/// A Namespace keeps its name and labels (what `allowedRoutes.namespaces.selector` reads).
impl Trim for Namespace {
    fn trim(&mut self) {
        trim_meta(self);
        self.metadata.annotations = None;
        self.spec = None;
        self.status = None;
    }
}

macro_rules! trim_meta_only {
    ($($k:ty),*) => {$(
        impl Trim for $k {
            fn trim(&mut self) {
                trim_meta(self);
            }
        }
    )*};
}
trim_meta_only!(
    Ingress,
    IngressClass,
    Service,
    EndpointSlice,
    DynamicObject,
    gwapi::GatewayClass,
    gwapi::Gateway,
    gwapi::HTTPRoute,
    gwapi::ReferenceGrant,
    gwapi::BackendTLSPolicy,
    WebSocketPolicy
);

/// A Gateway whose stored form does not parse as this version's `Gateway` type (for example a
/// field added by a newer CRD). It is left out of the snapshot and reported on its own.
#[derive(Clone, Debug)]
pub struct UnparsedGateway {
    /// The object's metadata (name, namespace, uid, generation).
    pub metadata: ObjectMeta,
    /// Its current status, when that part parses.
    pub status: Option<GatewayStatus>,
    /// What failed, naming the field.
    pub diagnostic: Diagnostic,
}

/// Everything read from the cluster at one moment.
#[derive(Clone, Debug, Default)]
pub struct ClusterView {
    /// The objects translation reads.
    pub snapshot: Snapshot,
    /// Gateways that could not be read as `Gateway`.
    pub unparsed_gateways: Vec<UnparsedGateway>,
    /// The `--publish-service` Service, when configured and present.
    pub publish_service: Option<Service>,
}

type ReadyFuture = Pin<Box<dyn Future<Output = bool> + Send>>;

/// Kinds watched only when the API server serves them (their CRDs are optional): without the
/// Gateway API CRDs a watch would fail forever and the replica would never turn ready.
#[derive(Clone, Copy, Debug, Default)]
pub struct OptionalKinds {
    /// `gateway.networking.k8s.io/v1` GatewayClass, Gateway, HTTPRoute.
    pub gateway_api: bool,
    /// `gateway.networking.k8s.io/v1beta1` ReferenceGrant.
    pub reference_grants: bool,
    /// `wsgate.dev/v1alpha1` WebSocketPolicy.
    pub websocket_policies: bool,
    /// `gateway.networking.k8s.io/v1` BackendTLSPolicy (and then the ConfigMaps its
    /// `caCertificateRefs` name).
    pub backend_tls_policies: bool,
}

impl OptionalKinds {
    /// Asks the API server which of the optional kinds it serves (discovery); a failed request
    /// counts as "not served" and is logged.
    pub async fn discover(client: &Client) -> Self {
        async fn serves(client: &Client, group_version: &str, plural: &str) -> bool {
            match client.list_api_group_resources(group_version).await {
                Ok(list) => list.resources.iter().any(|r| r.name == plural),
                Err(e) => {
                    tracing::info!(api = group_version, error = %e, "API not served; its kinds are not watched");
                    false
                }
            }
        }
        Self {
            gateway_api: serves(client, "gateway.networking.k8s.io/v1", "httproutes").await,
            reference_grants: serves(
                client,
                "gateway.networking.k8s.io/v1beta1",
                "referencegrants",
            )
            .await,
            websocket_policies: serves(client, "wsgate.dev/v1alpha1", "websocketpolicies").await,
            backend_tls_policies: serves(
                client,
                "gateway.networking.k8s.io/v1",
                "backendtlspolicies",
            )
            .await,
        }
    }
}

/// Readers of every reflector's store (cheap to clone: each store is shared).
#[derive(Clone, Default)]
pub struct Stores {
    ingresses: Vec<Store<Ingress>>,
    ingress_classes: Vec<Store<IngressClass>>,
    services: Vec<Store<Service>>,
    endpoint_slices: Vec<Store<EndpointSlice>>,
    secrets: Vec<Store<Secret>>,
    gateways: Vec<Store<DynamicObject>>,
    publish: Option<Store<Service>>,
    gateway_services: Vec<Store<Service>>,
    gw_classes: Vec<Store<gwapi::GatewayClass>>,
    gw_gateways: Vec<Store<gwapi::Gateway>>,
    gw_routes: Vec<Store<gwapi::HTTPRoute>>,
    gw_grants: Vec<Store<gwapi::ReferenceGrant>>,
    ws_policies: Vec<Store<WebSocketPolicy>>,
    tls_policies: Vec<Store<gwapi::BackendTLSPolicy>>,
    config_maps: Vec<Store<ConfigMap>>,
    namespaces: Vec<Store<Namespace>>,
}

/// Readers of every reflector plus the "something changed" signal they share.
pub struct Cluster {
    stores: Stores,
    changed: Arc<Notify>,
    reachable: Arc<Notify>,
    waits: Vec<(String, ReadyFuture)>,
}

/// Where a namespaced kind is watched: every namespace, or each listed one.
fn scopes(namespaces: &[String]) -> Vec<Option<String>> {
    if namespaces.is_empty() {
        vec![None]
    } else {
        namespaces.iter().cloned().map(Some).collect()
    }
}

/// An API handle for a namespaced kind in one namespace, or in all.
fn scoped<K>(client: &Client, ns: Option<&str>) -> Api<K>
where
    K: Resource<Scope = NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

fn scope_label(plural: &str, scope: &Option<String>) -> String {
    match scope {
        Some(ns) => format!("{plural} in namespace {ns}"),
        None => format!("{plural} in all namespaces"),
    }
}

impl Cluster {
    /// Starts the reflectors: Ingress, Service, EndpointSlice, Secret (TLS only) and Gateway in
    /// each of `namespaces` (all when empty), IngressClass cluster-wide, and the
    /// `--publish-service` Service when given as `(namespace, name)`, and with
    /// `--gateway-services` the Services wsgate manages for Gateways in `gateway_services_ns`.
    pub fn start(
        client: &Client,
        namespaces: &[String],
        publish: Option<(&str, &str)>,
        optional: &OptionalKinds,
        gateway_services_ns: Option<&str>,
    ) -> Self {
        let changed = Arc::new(Notify::new());
        let mut cluster = Self {
            stores: Stores::default(),
            changed: changed.clone(),
            reachable: Arc::new(Notify::new()),
            waits: Vec::new(),
        };
        let gateway_resource = ApiResource::erase::<Gateway>(&());
        for scope in scopes(namespaces) {
            let ns = scope.as_deref();
            let gw: Api<DynamicObject> = match ns {
                Some(ns) => Api::namespaced_with(client.clone(), ns, &gateway_resource),
                None => Api::all_with(client.clone(), &gateway_resource),
            };
            let s = cluster.reflect(
                scoped::<Ingress>(client, ns),
                watcher::Config::default(),
                Writer::default(),
                scope_label("Ingresses", &scope),
            );
            cluster.stores.ingresses.push(s);
            let s = cluster.reflect(
                scoped::<Service>(client, ns),
                watcher::Config::default(),
                Writer::default(),
                scope_label("Services", &scope),
            );
            cluster.stores.services.push(s);
            let s = cluster.reflect(
                scoped::<EndpointSlice>(client, ns),
                watcher::Config::default(),
                Writer::default(),
                scope_label("EndpointSlices", &scope),
            );
            cluster.stores.endpoint_slices.push(s);
            let s = cluster.reflect(
                scoped::<Secret>(client, ns),
                watcher::Config::default(),
                Writer::default(),
                scope_label("Secrets", &scope),
            );
            cluster.stores.secrets.push(s);
            let s = cluster.reflect(
                gw,
                watcher::Config::default(),
                Writer::new(gateway_resource.clone()),
                scope_label(
                    "Gateways (wsgate.dev/v1alpha1; is the CRD installed?)",
                    &scope,
                ),
            );
            cluster.stores.gateways.push(s);
            if optional.gateway_api {
                let s = cluster.reflect(
                    scoped::<gwapi::Gateway>(client, ns),
                    watcher::Config::default(),
                    Writer::default(),
                    scope_label("Gateways (gateway.networking.k8s.io/v1)", &scope),
                );
                cluster.stores.gw_gateways.push(s);
                let s = cluster.reflect(
                    scoped::<gwapi::HTTPRoute>(client, ns),
                    watcher::Config::default(),
                    Writer::default(),
                    scope_label("HTTPRoutes", &scope),
                );
                cluster.stores.gw_routes.push(s);
            }
            if optional.reference_grants {
                let s = cluster.reflect(
                    scoped::<gwapi::ReferenceGrant>(client, ns),
                    watcher::Config::default(),
                    Writer::default(),
                    scope_label("ReferenceGrants", &scope),
                );
                cluster.stores.gw_grants.push(s);
            }
            if optional.websocket_policies {
                let s = cluster.reflect(
                    scoped::<WebSocketPolicy>(client, ns),
                    watcher::Config::default(),
                    Writer::default(),
                    scope_label("WebSocketPolicies", &scope),
                );
                cluster.stores.ws_policies.push(s);
            }
            if optional.backend_tls_policies {
                let s = cluster.reflect(
                    scoped::<gwapi::BackendTLSPolicy>(client, ns),
                    watcher::Config::default(),
                    Writer::default(),
                    scope_label("BackendTLSPolicies", &scope),
                );
                cluster.stores.tls_policies.push(s);
                let s = cluster.reflect(
                    scoped::<ConfigMap>(client, ns),
                    watcher::Config::default(),
                    Writer::default(),
                    scope_label("ConfigMaps (ca.crt of BackendTLSPolicies)", &scope),
                );
                cluster.stores.config_maps.push(s);
            }
        }
        if optional.gateway_api {
            let s = cluster.reflect(
                Api::<gwapi::GatewayClass>::all(client.clone()),
                watcher::Config::default(),
                Writer::default(),
                "GatewayClasses".to_string(),
            );
            cluster.stores.gw_classes.push(s);
            // Cluster-wide even with --watch-namespace: a listener's namespace selector may
            // admit routes of any namespace wsgate watches, and only labels are kept.
            let s = cluster.reflect(
                Api::<Namespace>::all(client.clone()),
                watcher::Config::default(),
                Writer::default(),
                "Namespaces (labels for allowedRoutes selectors)".to_string(),
            );
            cluster.stores.namespaces.push(s);
        }
        let s = cluster.reflect(
            Api::<IngressClass>::all(client.clone()),
            watcher::Config::default(),
            Writer::default(),
            "IngressClasses".to_string(),
        );
        cluster.stores.ingress_classes.push(s);
        if let Some(ns) = gateway_services_ns.filter(|_| optional.gateway_api) {
            let s = cluster.reflect(
                Api::<Service>::namespaced(client.clone(), ns),
                watcher::Config::default()
                    .labels(crate::translate::gateway_ports::GATEWAY_NAMESPACE_LABEL),
                Writer::default(),
                format!("the Gateways' Services in namespace {ns}"),
            );
            cluster.stores.gateway_services.push(s);
        }
        if let Some((ns, name)) = publish {
            let s = cluster.reflect(
                Api::<Service>::namespaced(client.clone(), ns),
                watcher::Config::default().fields(&format!("metadata.name={name}")),
                Writer::default(),
                format!("the --publish-service Service {ns}/{name}"),
            );
            cluster.stores.publish = Some(s);
        }
        cluster
    }

    /// Spawns one reflector. After a failed list/watch it waits out a [`RetryBackoff`] delay, or
    /// less when [`Cluster::reachable`] fires; every applied, deleted or re-listed object set
    /// wakes the rebuild loop.
    fn reflect<K>(
        &mut self,
        api: Api<K>,
        config: watcher::Config,
        writer: Writer<K>,
        label: String,
    ) -> Store<K>
    where
        K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + Trim + 'static,
        K::DynamicType: Eq + std::hash::Hash + Clone + Send + Sync,
    {
        let store = writer.as_reader();
        let stream = reflector::reflector(writer, watch_stream(api, config).modify(K::trim));
        let changed = self.changed.clone();
        let reachable = self.reachable.clone();
        let task_label = label.clone();
        tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            let mut backoff = RetryBackoff::new();
            let mut failing_since: Option<Instant> = None;
            let mut last_warning: Option<Instant> = None;
            while let Some(item) = stream.next().await {
                match item {
                    // Emitted before the list request is even made: no sign of success.
                    Ok(Event::Init) => {}
                    Ok(event) => {
                        backoff.reset();
                        if let Some(since) = failing_since.take() {
                            tracing::info!(
                                watch = %task_label,
                                after = ?since.elapsed(),
                                "watch restored; resyncing"
                            );
                            last_warning = None;
                            reachable.notify_waiters();
                        }
                        if !matches!(event, Event::InitApply(_)) {
                            changed.notify_one();
                        }
                    }
                    Err(e) => {
                        let now = Instant::now();
                        failing_since.get_or_insert(now);
                        // One warning per minute per watch: retries come far more often.
                        if last_warning
                            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(60))
                        {
                            last_warning = Some(now);
                            tracing::warn!(
                                watch = %task_label,
                                error = %e,
                                "cannot list/watch; retrying with back-off, the last known objects keep serving"
                            );
                        } else {
                            tracing::debug!(watch = %task_label, error = %e, "list/watch retry failed");
                        }
                        let delay = backoff.next().unwrap_or(RetryBackoff::MAX);
                        tokio::select! {
                            _ = tokio::time::sleep(delay) => {}
                            _ = reachable.notified() => backoff.reset(),
                        }
                    }
                }
            }
        });
        let waiter = store.clone();
        self.waits.push((
            label,
            Box::pin(async move { waiter.wait_until_ready().await.is_ok() }),
        ));
        store
    }

    /// Fired (to every waiter) when a request to the API server succeeds after failures: watchers
    /// waiting out a back-off retry at once. The leader election fires it too.
    pub fn reachable(&self) -> Arc<Notify> {
        self.reachable.clone()
    }

    /// The signal every reflector pokes when its objects change.
    pub fn changed(&self) -> Arc<Notify> {
        self.changed.clone()
    }

    /// Waits until every reflector has completed its first full list. Logs, every `report`
    /// interval, which watches are still waiting. Returns false if a reflector stopped.
    pub async fn wait_synced(&mut self, report: Duration) -> bool {
        for (label, wait) in std::mem::take(&mut self.waits) {
            let mut wait = wait;
            loop {
                tokio::select! {
                    ok = &mut wait => {
                        if !ok {
                            return false;
                        }
                        tracing::debug!(watch = %label, "initial list complete");
                        break;
                    }
                    _ = tokio::time::sleep(report) => {
                        tracing::warn!(watch = %label, "still waiting for the first complete list; not ready yet");
                    }
                }
            }
        }
        true
    }

    /// Everything the stores hold now.
    pub fn view(&self) -> ClusterView {
        self.stores.view()
    }

    /// The stores, for reading from another thread.
    pub fn stores(&self) -> Stores {
        self.stores.clone()
    }
}

impl Stores {
    /// Everything the stores hold now.
    pub fn view(&self) -> ClusterView {
        let dynamic = collect(&self.gateways)
            .into_iter()
            .map(Arc::unwrap_or_clone);
        let (gateways, unparsed_gateways) = parse_gateways(dynamic.collect());
        ClusterView {
            snapshot: Snapshot {
                ingresses: collect(&self.ingresses),
                ingress_classes: collect(&self.ingress_classes),
                services: collect(&self.services),
                endpoint_slices: collect(&self.endpoint_slices),
                secrets: collect(&self.secrets),
                gateways: gateways.into_iter().map(Arc::new).collect(),
                gateway_api: crate::source::GatewayApi {
                    classes: collect(&self.gw_classes),
                    gateways: collect(&self.gw_gateways),
                    http_routes: collect(&self.gw_routes),
                    reference_grants: collect(&self.gw_grants),
                    backend_tls_policies: collect(&self.tls_policies),
                    config_maps: collect(&self.config_maps),
                    websocket_policies: collect(&self.ws_policies),
                    namespaces: collect(&self.namespaces),
                    gateway_services: collect(&self.gateway_services),
                },
            },
            unparsed_gateways,
            publish_service: self
                .publish
                .as_ref()
                .and_then(|s| s.state().first().map(|svc| (**svc).clone())),
        }
    }
}

/// The objects of several stores, shared (not copied) and sorted by namespace and name (translation does not
/// depend on the order, but logs and tests read better this way).
fn collect<K: Resource + Clone>(stores: &[Store<K>]) -> Vec<Arc<K>>
where
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    let mut out: Vec<Arc<K>> = stores.iter().flat_map(|s| s.state()).collect();
    out.sort_by(|a, b| {
        let (a, b) = (a.meta(), b.meta());
        (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name))
    });
    out
}

/// Reads each stored Gateway as this version's type; one that does not parse is reported with
/// the field that failed instead of failing the whole list.
pub fn parse_gateways(objects: Vec<DynamicObject>) -> (Vec<Gateway>, Vec<UnparsedGateway>) {
    let mut good = Vec::new();
    let mut bad = Vec::new();
    for obj in objects {
        let object = ObjectRef::new(
            "Gateway",
            obj.metadata.namespace.as_deref(),
            obj.metadata.name.as_deref(),
        );
        let status = obj
            .data
            .get("status")
            .and_then(|s| serde_json::from_value::<GatewayStatus>(s.clone()).ok());
        let value = match serde_json::to_value(&obj) {
            Ok(v) => v,
            Err(e) => {
                bad.push(UnparsedGateway {
                    metadata: obj.metadata,
                    status,
                    diagnostic: Diagnostic {
                        severity: Severity::Error,
                        object,
                        field: String::new(),
                        message: format!("cannot read the object: {e}"),
                    },
                });
                continue;
            }
        };
        match serde_path_to_error::deserialize::<_, Gateway>(value) {
            Ok(gw) => good.push(gw),
            Err(e) => {
                let field = e.path().to_string();
                bad.push(UnparsedGateway {
                    metadata: obj.metadata,
                    status,
                    diagnostic: Diagnostic {
                        severity: Severity::Error,
                        object,
                        field: if field == "." { String::new() } else { field },
                        message: format!("{}; the Gateway is not served", e.inner()),
                    },
                });
            }
        }
    }
    (good, bad)
}

impl crate::reconcile::View for ClusterView {
    fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    fn problems(&self) -> Vec<crate::reconcile::ReadProblem> {
        self.unparsed_gateways
            .iter()
            .map(|g| crate::reconcile::ReadProblem {
                severity: g.diagnostic.severity,
                location: g.diagnostic.object.to_string(),
                field: g.diagnostic.field.clone(),
                message: g.diagnostic.message.clone(),
            })
            .collect()
    }
}

impl crate::reconcile::Source for Cluster {
    type View = ClusterView;

    async fn changed(&mut self) -> bool {
        crate::reconcile::debounce::debounce(&self.changed).await;
        true
    }

    fn reader(&self) -> Box<dyn FnOnce() -> ClusterView + Send> {
        let stores = self.stores.clone();
        Box::new(move || stores.view())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dynamic(value: serde_json::Value) -> DynamicObject {
        serde_json::from_value(value).expect("test object")
    }

    #[test]
    fn gateways_parse_one_by_one() {
        let ok = dynamic(json!({
            "apiVersion": "wsgate.dev/v1alpha1", "kind": "Gateway",
            "metadata": {"name": "good", "namespace": "a", "generation": 2},
            "spec": {"listeners": [{"name": "web", "port": 8080}]},
        }));
        let bad = dynamic(json!({
            "apiVersion": "wsgate.dev/v1alpha1", "kind": "Gateway",
            "metadata": {"name": "bad", "namespace": "a"},
            "spec": {"listeners": [{"name": "web", "port": 8080, "future": true}]},
            "status": {"observedGeneration": 1, "conditions": []},
        }));
        let (good, unparsed) = parse_gateways(vec![ok, bad]);
        assert_eq!(good.len(), 1);
        assert_eq!(good[0].metadata.name.as_deref(), Some("good"));
        assert_eq!(good[0].spec.listeners[0].port, 8080);
        assert_eq!(unparsed.len(), 1);
        let d = &unparsed[0].diagnostic;
        assert_eq!(d.object.to_string(), "Gateway a/bad");
        assert_eq!(d.field, "spec.listeners[0].future");
        assert!(d.message.contains("future"), "{}", d.message);
        assert_eq!(
            unparsed[0]
                .status
                .as_ref()
                .and_then(|s| s.observed_generation),
            Some(1)
        );
    }

    #[test]
    fn secrets_keep_only_tls_material() {
        use k8s_openapi::ByteString;
        let mut data = std::collections::BTreeMap::new();
        for k in ["tls.crt", "tls.key", "ca.crt", "password"] {
            data.insert(k.to_string(), ByteString(k.as_bytes().to_vec()));
        }
        let mut annotations = std::collections::BTreeMap::new();
        annotations.insert(
            "kubectl.kubernetes.io/last-applied-configuration".to_string(),
            "{\"data\":{\"password\":\"...\"}}".to_string(),
        );
        let secret = |type_: &str| Secret {
            type_: Some(type_.into()),
            data: Some(data.clone()),
            metadata: ObjectMeta {
                annotations: Some(annotations.clone()),
                ..ObjectMeta::default()
            },
            ..Secret::default()
        };
        let keys =
            |s: &Secret| -> Vec<String> { s.data.iter().flat_map(|d| d.keys().cloned()).collect() };
        let mut tls = secret("kubernetes.io/tls");
        tls.trim();
        assert_eq!(keys(&tls), ["ca.crt", "tls.crt", "tls.key"]);
        assert_eq!(tls.metadata.annotations, None);
        let mut opaque = secret("Opaque");
        opaque.trim();
        assert_eq!(keys(&opaque), ["ca.crt"]);
    }

    #[test]
    fn backoff_grows_to_the_cap_and_resets() {
        let mut b = RetryBackoff::new();
        let delays: Vec<Duration> = (0..8).map(|_| b.next().unwrap_or_default()).collect();
        assert!(delays[0] >= Duration::from_millis(250) && delays[0] <= Duration::from_millis(500));
        assert!(delays.iter().all(|d| *d <= RetryBackoff::MAX));
        assert!(delays[7] >= RetryBackoff::MAX / 2);
        b.reset();
        assert!(b.next().unwrap_or_default() <= RetryBackoff::MIN);
    }

    #[test]
    fn scopes_are_all_namespaces_or_each_listed() {
        assert_eq!(scopes(&[]), vec![None]);
        assert_eq!(
            scopes(&["a".into(), "b".into()]),
            vec![Some("a".to_string()), Some("b".to_string())]
        );
    }
}
