//! Gateway API objects (`gateway.networking.k8s.io`) -> listeners and routes of the same table
//! as Ingress and wsgate's own Gateway, plus the status each object should carry (computed here,
//! purely; the controller writes it).
//!
//! Order: GatewayClasses decide which Gateways are ours; each Gateway's listeners are declared
//! ([`listeners`]); each HTTPRoute attaches to the listeners its `parentRefs` select and that
//! allow it ([`routes`]), on the intersection of host names ([`hostnames`]); references across
//! namespaces need a ReferenceGrant ([`refs`]); WebSocketPolicies set session settings
//! ([`policy`]).

mod backend_tls;
mod hostnames;
mod listeners;
mod matches;
mod namespaces;
mod pod_ports;
mod policy;
mod refs;
mod routes;

use super::Options;
use super::backends::Index;
use super::builder::TableBuilder;
use super::conditions::Condition;
use super::diagnostics::{Diagnostics, ObjectRef};
use crate::gwapi::{self, ParentReference};
use crate::source::Snapshot;
use serde::Serialize;

/// Status of one listener.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ListenerReport {
    /// The listener's name.
    pub name: String,
    /// Route kinds it accepts (`HTTPRoute`).
    pub supported_kinds: Vec<String>,
    /// Routes attached to it.
    pub attached_routes: i32,
    /// `Accepted`, `Conflicted`, `ResolvedRefs`, `Programmed`.
    pub conditions: Vec<Condition>,
}

/// Wanted status of one Gateway API `Gateway`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GatewayReport {
    /// The Gateway.
    pub object: ObjectRef,
    /// The table ports its listeners are served on (for bind errors): the listener ports, or
    /// with `--gateway-services` the pod ports they map to.
    pub ports: Vec<u16>,
    /// With `--gateway-services`: (listener port, pod port) of every listener port, sorted,
    /// what its Service maps; empty otherwise.
    pub service_ports: Vec<(u16, u16)>,
    /// `Accepted`, `Programmed`.
    pub conditions: Vec<Condition>,
    /// Per listener, in spec order.
    pub listeners: Vec<ListenerReport>,
}

/// Wanted status of a route for one parent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ParentReport {
    /// The parent reference as written.
    #[serde(skip)]
    pub parent_ref: ParentReference,
    /// `Gateway ns/name`, `sectionName`, `port` for reading.
    pub parent: String,
    /// `Accepted`, `ResolvedRefs`.
    pub conditions: Vec<Condition>,
}

/// Wanted status of one HTTPRoute.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RouteReport {
    /// The route.
    pub object: ObjectRef,
    /// One entry per parent reference to a Gateway of ours.
    pub parents: Vec<ParentReport>,
}

/// Wanted status of a WebSocketPolicy for one ancestor Gateway.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PolicyReport {
    /// The policy.
    pub object: ObjectRef,
    /// Per ancestor Gateway (`namespace`, `name`): `Accepted`.
    pub ancestors: Vec<((String, String), Condition)>,
}

/// Wanted status of a BackendTLSPolicy: `Accepted` and `ResolvedRefs` for each Gateway whose
/// routes reach one of its Services.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TlsPolicyReport {
    /// The policy.
    pub object: ObjectRef,
    /// Per ancestor Gateway (`namespace`, `name`): its conditions.
    pub ancestors: Vec<((String, String), Vec<Condition>)>,
}

/// Everything the Gateway API objects should report.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct GatewayApiReport {
    /// GatewayClasses of ours: name and `Accepted`.
    pub classes: Vec<(String, Condition)>,
    /// Gateways of our classes.
    pub gateways: Vec<GatewayReport>,
    /// HTTPRoutes attached (or trying to attach) to them.
    pub routes: Vec<RouteReport>,
    /// WebSocketPolicies.
    pub policies: Vec<PolicyReport>,
    /// BackendTLSPolicies.
    pub tls_policies: Vec<TlsPolicyReport>,
}

/// The features wsgate supports, for `GatewayClass` `status.supportedFeatures` (sorted, as the
/// spec requires).
pub const SUPPORTED_FEATURES: &[&str] = &[
    "BackendTLSPolicy",
    "Gateway",
    "GatewayHTTPListenerIsolation",
    "GatewayPort8080",
    "HTTPRoute",
    "HTTPRoute303RedirectStatusCode",
    "HTTPRoute307RedirectStatusCode",
    "HTTPRoute308RedirectStatusCode",
    "HTTPRouteBackendProtocolWebSocket",
    "HTTPRouteBackendTimeout",
    "HTTPRouteDestinationPortMatching",
    "HTTPRouteHostRewrite",
    "HTTPRouteMethodMatching",
    "HTTPRouteParentRefPort",
    "HTTPRoutePathRedirect",
    "HTTPRoutePathRewrite",
    "HTTPRoutePortRedirect",
    "HTTPRouteQueryParamMatching",
    "HTTPRouteRequestTimeout",
    "HTTPRouteResponseHeaderModification",
    "HTTPRouteSchemeRedirect",
    "ReferenceGrant",
];

/// `list` oldest first, then by namespace and name: the Gateway API's order of precedence
/// between conflicting objects (policies on the same target, for instance).
pub(crate) fn oldest_first<K: kube::Resource>(list: &[std::sync::Arc<K>]) -> Vec<&K> {
    let mut sorted: Vec<&K> = list.iter().map(|k| &**k).collect();
    sorted.sort_by_key(|p| {
        let m = p.meta();
        (
            m.creation_timestamp.as_ref().map(|t| t.0.to_string()),
            m.namespace.clone(),
            m.name.clone(),
        )
    });
    sorted
}

/// Whether a GatewayClass is served by wsgate.
fn is_our_class(c: &gwapi::GatewayClass, options: &Options) -> bool {
    c.spec.controller_name == gwapi::CONTROLLER_NAME
        && options
            .gateway_class
            .as_deref()
            .is_none_or(|only| c.metadata.name.as_deref() == Some(only))
}

/// Translates every Gateway API object of the snapshot into `b`.
pub(crate) fn translate_all(
    snapshot: &Snapshot,
    options: &Options,
    index: &Index<'_>,
    b: &mut TableBuilder,
    diags: &mut Diagnostics,
) -> GatewayApiReport {
    let api = &snapshot.gateway_api;
    let mut report = GatewayApiReport::default();
    let mut ours = Vec::new();
    for c in api.classes.iter().filter(|c| is_our_class(c, options)) {
        let name = c.metadata.name.clone().unwrap_or_default();
        let cond = if c.spec.parameters_ref.is_some() {
            let obj = ObjectRef::new("GatewayClass", None, Some(&name));
            diags.warn(
                &obj,
                "spec.parametersRef",
                "wsgate takes no parameters; the class is not accepted",
            );
            Condition::failed(
                "Accepted",
                "InvalidParameters",
                "wsgate takes no parametersRef",
            )
        } else {
            ours.push(name.clone());
            Condition::ok("Accepted", "Accepted")
        };
        report.classes.push((name, cond));
    }
    let grants = refs::Grants(&api.reference_grants);
    let gateways: Vec<&gwapi::Gateway> = api
        .gateways
        .iter()
        .filter(|g| ours.contains(&g.spec.gateway_class_name))
        .map(|g| &**g)
        .collect();
    let pod_ports = options
        .gateway_ports
        .as_ref()
        .map(|settings| pod_ports::assign(snapshot, options, settings, &gateways));
    let mut declared: Vec<listeners::Declared> = gateways
        .iter()
        .map(|g| listeners::declare(g, pod_ports.as_ref(), index, &grants, b, diags))
        .collect();
    let policies = policy::Policies::new(&api.websocket_policies, diags).with_backend_tls(
        backend_tls::BackendTls::new(&api.backend_tls_policies, &api.config_maps, diags),
    );
    let namespaces = namespaces::NamespaceLabels::new(&api.namespaces);
    let lookups = routes::Lookups {
        index,
        grants: &grants,
        policies: &policies,
        namespaces: &namespaces,
    };
    for route in &api.http_routes {
        let r = routes::attach(route, &mut declared, &lookups, b, diags);
        if !r.parents.is_empty() {
            report.routes.push(r);
        }
    }
    report.gateways = declared
        .into_iter()
        .map(listeners::Declared::report)
        .collect();
    report.policies = policies.report(&api.gateways, &api.http_routes);
    report.tls_policies = policies.backend_tls.report();
    report
}
