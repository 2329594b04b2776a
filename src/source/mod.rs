//! Inputs: the objects translation works on, from YAML files or (later) a cluster.

pub mod files;
pub mod watch;

use crate::crd::Gateway;
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};

/// Every object `translate()` reads, as plain lists. File and cluster sources produce the same type.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// `networking.k8s.io/v1` Ingress objects.
    pub ingresses: Vec<Ingress>,
    /// `networking.k8s.io/v1` IngressClass objects.
    pub ingress_classes: Vec<IngressClass>,
    /// `v1` Services.
    pub services: Vec<Service>,
    /// `discovery.k8s.io/v1` EndpointSlices.
    pub endpoint_slices: Vec<EndpointSlice>,
    /// `v1` Secrets.
    pub secrets: Vec<Secret>,
    /// `wsgate.dev/v1alpha1` Gateways.
    pub gateways: Vec<Gateway>,
}
