//! The `wsgate.dev/v1alpha1` `WebSocketPolicy`: wsgate's session settings attached to Gateway API
//! objects by `targetRefs` (Gateway API policy attachment, GEP-713).

use super::WebSocketSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Session settings for the routes of the targeted objects.
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[kube(
    group = "wsgate.dev",
    version = "v1alpha1",
    kind = "WebSocketPolicy",
    namespaced,
    shortname = "wspol",
    status = "WebSocketPolicyStatus",
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebSocketPolicySpec {
    /// A Gateway (`gateway.networking.k8s.io`), an HTTPRoute or a Service in the policy's
    /// namespace; `sectionName` narrows a Gateway to one listener or an HTTPRoute to one rule.
    pub target_refs: Vec<PolicyTargetRef>,
    /// `livenessTimeout`: a session in which no frame at all crosses in either direction for this
    /// long is closed with 1001 (wsgate's `requestTimeout` for sessions). Default `60s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub liveness_timeout: Option<String>,
    /// The same fields as a wsgate Gateway's `backendSettings[].websocket`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub websocket: Option<WebSocketSpec>,
}

/// A GEP-713 target reference (local: same namespace as the policy).
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyTargetRef {
    /// `gateway.networking.k8s.io` for Gateway and HTTPRoute, empty for Service.
    #[serde(default)]
    pub group: String,
    /// `Gateway`, `HTTPRoute` or `Service`.
    pub kind: String,
    /// The object's name.
    pub name: String,
    /// A listener (Gateway) or rule (HTTPRoute) name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,
}

/// GEP-713 policy status: one entry per ancestor (Gateway) the policy affects.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WebSocketPolicyStatus {
    /// Per ancestor: `Accepted` (or `Conflicted`, `TargetNotFound`).
    #[serde(default)]
    pub ancestors: Vec<PolicyAncestor>,
}

/// Status of a policy for one ancestor.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PolicyAncestor {
    /// The ancestor Gateway.
    pub ancestor_ref: AncestorRef,
    /// `wsgate.dev/gateway-controller`.
    pub controller_name: String,
    /// `Accepted`.
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

/// A reference to an ancestor object.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AncestorRef {
    /// Group.
    pub group: String,
    /// Kind.
    pub kind: String,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}
