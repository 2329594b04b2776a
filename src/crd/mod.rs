//! The `wsgate.dev/v1alpha1` `Gateway` custom resource, exactly as `shared/API.md` specifies.
//!
//! Durations are strings (`30s`, `5m`, `1h`), validated by `translate()` so that a bad value is
//! reported against its object and field instead of failing the whole object's parse.

mod policy;

pub use policy::{
    AncestorRef, PolicyAncestor, PolicyTargetRef, WebSocketPolicy, WebSocketPolicySpec,
    WebSocketPolicyStatus,
};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Listeners, backend pools, settings, probes, firewall and routing rules of one gateway.
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[kube(
    group = "wsgate.dev",
    version = "v1alpha1",
    kind = "Gateway",
    namespaced,
    shortname = "wsgw",
    status = "GatewayStatus",
    printcolumn = r#"{"name":"Programmed","type":"string","jsonPath":".status.conditions[?(@.type==\"Programmed\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GatewaySpec {
    /// Ports and hostnames the gateway serves.
    #[serde(default)]
    pub listeners: Vec<GatewayListener>,
    /// Where traffic goes: a Service or static addresses.
    #[serde(default)]
    pub backend_pools: Vec<BackendPool>,
    /// Timeouts, WebSocket policy, balancing, cache per backend.
    #[serde(default)]
    pub backend_settings: Vec<BackendSettingsSpec>,
    /// Active health probes referenced by backend settings.
    #[serde(default)]
    pub probes: Vec<ProbeSpec>,
    /// Applied to every request, including WebSocket upgrade requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firewall: Option<FirewallSpec>,
    /// Which listener + path goes to which pool with which settings.
    #[serde(default)]
    pub routing_rules: Vec<RoutingRule>,
}

/// A port (and optional hostnames) the proxy listens on.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GatewayListener {
    /// Unique within the gateway.
    pub name: String,
    /// `HTTP` or `HTTPS`.
    #[serde(default = "default_http")]
    pub protocol: String,
    /// Port the proxy binds; listeners sharing a port share the socket.
    pub port: u16,
    /// Exact or `*.example.com` names; empty = any host.
    #[serde(default)]
    pub hostnames: Vec<String>,
    /// Certificate for HTTPS listeners.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ListenerTls>,
}

/// TLS material of an HTTPS listener.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListenerTls {
    /// A `kubernetes.io/tls` Secret in the gateway's namespace; chosen by SNI.
    pub secret_name: String,
}

/// A set of endpoints: a Service or static addresses.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackendPool {
    /// Unique within the gateway.
    pub name: String,
    /// A Service in the gateway's namespace; endpoints come from its EndpointSlices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceRef>,
    /// Static IPs or DNS names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<StaticAddress>,
}

/// A Service port by number or name.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceRef {
    /// Service name.
    pub name: String,
    /// Service port number or port name.
    pub port: IntOrString,
}

/// One static backend address.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StaticAddress {
    /// IP address or DNS name.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

/// How traffic to a pool is handled.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackendSettingsSpec {
    /// Unique within the gateway.
    pub name: String,
    /// `HTTP` or `HTTPS` to the backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// Secret holding `ca.crt` to verify an HTTPS backend; system roots when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_name: Option<String>,
    /// TCP (+TLS) connect limit (default `5s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_timeout: Option<String>,
    /// Response-header/101 limit and session no-frame limit (default `60s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_timeout: Option<String>,
    /// Name of an entry in `probes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<String>,
    /// Endpoint choice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancing: Option<LoadBalancingSpec>,
    /// WebSocket policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub websocket: Option<WebSocketSpec>,
    /// HTTP response cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheSpec>,
    /// Cookie-based session affinity issued by wsgate; present = on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity_cookie: Option<AffinityCookieSpec>,
}

/// The affinity cookie wsgate sets and follows: requests carrying it go to the endpoint that
/// served the client before, while that endpoint is ready and healthy.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AffinityCookieSpec {
    /// Cookie name (default `wsgate_affinity`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `Max-Age` as a duration (`12h`) or seconds; default: a session cookie.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<String>,
    /// `Path` (default: the routing rule's path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// `Strict`, `Lax` (default) or `None` (always sent with `Secure`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub same_site: Option<String>,
}

/// Load-balancing policy.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoadBalancingSpec {
    /// `RoundRobin` (default), `LeastConnections` or `ConsistentHash`.
    pub policy: String,
    /// For `ConsistentHash`: exactly one of cookie, header, sourceIP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash_on: Option<HashOnSpec>,
}

/// What a consistent hash is computed over.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HashOnSpec {
    /// Cookie name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie: Option<String>,
    /// Header name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// Client IP.
    #[serde(default, rename = "sourceIP", skip_serializing_if = "Option::is_none")]
    pub source_ip: Option<bool>,
}

/// WebSocket policy of a backend.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebSocketSpec {
    /// Default true; false = upgrade requests get 403.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Default `20s`; `0s` = off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ping_interval: Option<String>,
    /// Default off; no data frame either way for this long -> close 1001.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<String>,
    /// Default off; hard session age.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_session_duration: Option<String>,
    /// Default 0 = unlimited; larger message -> close 1009.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_message_bytes: Option<u64>,
    /// Default 0 = unlimited; per routing rule, per replica; over it -> 503.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u32>,
}

/// HTTP response cache switch.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CacheSpec {
    /// Default false.
    #[serde(default)]
    pub enabled: bool,
}

/// An active health probe.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProbeSpec {
    /// Unique within the gateway.
    pub name: String,
    /// `HTTP` or `HTTPS`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// Request path (default `/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Host header; default the backend address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Port; default (0) the endpoint's port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Default `10s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// Default `5s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Default 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unhealthy_threshold: Option<u32>,
    /// Default 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy_threshold: Option<u32>,
    /// Accepted responses.
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub match_: Option<ProbeMatch>,
}

/// What a healthy probe response looks like.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProbeMatch {
    /// Codes or ranges, e.g. `["200-399"]`.
    #[serde(default)]
    pub status_codes: Vec<String>,
}

/// Request filtering applied before any backend connection.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FirewallSpec {
    /// Exact origins allowed for WebSocket upgrades; empty = any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_origins: Vec<String>,
    /// CIDRs; non-empty = only these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip_allow: Vec<String>,
    /// CIDRs always rejected.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip_deny: Vec<String>,
    /// Per client IP token bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimitSpec>,
    /// Ordered rules; first match wins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<FirewallRule>,
}

/// Token bucket per client IP.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateLimitSpec {
    /// 0 = off.
    #[serde(default)]
    pub requests_per_second: u32,
    /// Bucket size; 0 = `requestsPerSecond`.
    #[serde(default)]
    pub burst: u32,
}

/// One ordered firewall rule.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FirewallRule {
    /// Rule name (for logs and metrics).
    pub name: String,
    /// What the rule matches.
    #[serde(rename = "match")]
    pub match_: FirewallMatch,
    /// `Allow` or `Deny`.
    pub action: String,
}

/// Match of a firewall rule; every given field must match.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FirewallMatch {
    /// Path prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    /// Exact path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// HTTP method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Header value or regex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<HeaderMatch>,
}

/// A header condition.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeaderMatch {
    /// Header name.
    pub name: String,
    /// Exact value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Regular expression on the value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
}

/// Listener + paths -> pool + settings.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoutingRule {
    /// Unique within the gateway; the `RULE` part of the metric route label.
    pub name: String,
    /// Listener names.
    pub listeners: Vec<String>,
    /// Paths; empty = every path.
    #[serde(default)]
    pub paths: Vec<RulePath>,
    /// Name of a backend pool.
    pub backend_pool: String,
    /// Name of backend settings; defaults apply when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_settings: Option<String>,
    /// `Normalize` (default: the backend receives the normalised path) or `KeepOriginal` (the
    /// backend receives the path as the client sent it; matching and the firewall still use the
    /// normalised path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_normalization: Option<String>,
}

/// A path and how it matches.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RulePath {
    /// Must start with `/`.
    pub path: String,
    /// `Exact` or `Prefix` (default).
    #[serde(default = "default_prefix", rename = "type")]
    pub type_: String,
}

/// Observed state written by the controller.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GatewayStatus {
    /// Generation these conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Accepted`, `Programmed`, `ResolvedRefs`.
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

fn default_http() -> String {
    "HTTP".into()
}

fn default_prefix() -> String {
    "Prefix".into()
}

/// The `Gateway` CRD as YAML, the source of `crds/gateways.wsgate.dev.yaml`.
pub fn crd_yaml() -> Result<String, serde_yaml::Error> {
    use kube::CustomResourceExt;
    let body = serde_yaml::to_string(&Gateway::crd())?;
    Ok(format!(
        "# Generated by `wsgate crds`; do not edit. Regenerate: cargo run -- crds gateways > crds/gateways.wsgate.dev.yaml\n---\n{body}"
    ))
}

/// The `WebSocketPolicy` CRD as YAML, the source of `crds/websocketpolicies.wsgate.dev.yaml`.
pub fn policy_crd_yaml() -> Result<String, serde_yaml::Error> {
    use kube::CustomResourceExt;
    let body = serde_yaml::to_string(&WebSocketPolicy::crd())?;
    Ok(format!(
        "# Generated by `wsgate crds`; do not edit. Regenerate: cargo run -- crds websocketpolicies > crds/websocketpolicies.wsgate.dev.yaml\n---\n{body}"
    ))
}

/// `wsgate crds [WHICH]`: one CRD by plural name, or every one (Gateway first).
pub fn crds_yaml(which: Option<&str>) -> Result<String, serde_yaml::Error> {
    match which {
        Some("gateways") => crd_yaml(),
        Some("websocketpolicies") => policy_crd_yaml(),
        _ => Ok(crd_yaml()? + &policy_crd_yaml()?),
    }
}
