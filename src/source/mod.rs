//! Inputs: the objects translation works on, from YAML files or (later) a cluster.

pub mod file_cache;
pub mod files;
pub mod limits;
pub mod watch;

use crate::crd::Gateway;
use crate::gwapi;
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use std::sync::Arc;

/// Every object `translate()` reads, as plain lists. File and cluster sources produce the same type.
///
/// Objects are shared (`Arc`), not owned: a reload with 10,000 Ingresses rebuilds these lists from
/// the file cache or the cluster stores on every change, and cloning every object deeply took
/// about 100 ms of the 150 ms a change may take to serve. Sharing makes the rebuild a pointer copy.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// `networking.k8s.io/v1` Ingress objects.
    pub ingresses: Vec<Arc<Ingress>>,
    /// `networking.k8s.io/v1` IngressClass objects.
    pub ingress_classes: Vec<Arc<IngressClass>>,
    /// `v1` Services.
    pub services: Vec<Arc<Service>>,
    /// `discovery.k8s.io/v1` EndpointSlices.
    pub endpoint_slices: Vec<Arc<EndpointSlice>>,
    /// `v1` Secrets.
    pub secrets: Vec<Arc<Secret>>,
    /// `wsgate.dev/v1alpha1` Gateways.
    pub gateways: Vec<Arc<Gateway>>,
    /// Gateway API objects (`gateway.networking.k8s.io`) and wsgate's policies attached to them.
    pub gateway_api: GatewayApi,
}

/// The Gateway API objects of a snapshot.
#[derive(Clone, Debug, Default)]
pub struct GatewayApi {
    /// `GatewayClass` (v1).
    pub classes: Vec<Arc<gwapi::GatewayClass>>,
    /// `Gateway` (v1).
    pub gateways: Vec<Arc<gwapi::Gateway>>,
    /// `HTTPRoute` (v1).
    pub http_routes: Vec<Arc<gwapi::HTTPRoute>>,
    /// `ReferenceGrant` (v1beta1).
    pub reference_grants: Vec<Arc<gwapi::ReferenceGrant>>,
    /// `BackendTLSPolicy` (v1).
    pub backend_tls_policies: Vec<Arc<gwapi::BackendTLSPolicy>>,
    /// `v1` ConfigMaps: the `ca.crt` bundles `BackendTLSPolicy` `caCertificateRefs` name.
    pub config_maps: Vec<Arc<k8s_openapi::api::core::v1::ConfigMap>>,
    /// `wsgate.dev/v1alpha1` `WebSocketPolicy`.
    pub websocket_policies: Vec<Arc<crate::crd::WebSocketPolicy>>,
    /// `v1` Namespaces (only their labels are read): listeners with
    /// `allowedRoutes.namespaces.from: Selector` match routes' namespaces by them.
    pub namespaces: Vec<Arc<k8s_openapi::api::core::v1::Namespace>>,
    /// `v1` Services wsgate manages for Gateways (controller mode with `--gateway-services`:
    /// those in wsgate's namespace labelled `wsgate.dev/gateway`); they record each Gateway's
    /// pod ports. Empty in standalone mode.
    pub gateway_services: Vec<Arc<k8s_openapi::api::core::v1::Service>>,
}
