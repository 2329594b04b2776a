//! The immutable routing table (IR): listeners -> virtual hosts -> routes -> backends.
//!
//! Plain data produced by `translate()` and consumed by the proxy. Nothing here does I/O.

mod conditions;
mod filters;
mod matching;
mod timeout;

pub use conditions::{Pattern, RequestConditions, RequestFacts, ValueMatch, query_param};
pub use filters::{HeaderEdits, PathChange, Redirect, Rewrite, RouteFilters};
pub use matching::{HostMatch, PathMatch};
pub use timeout::{Timeout, parse_bounded};

use serde::Serialize;
use std::sync::Arc;

/// The whole routing table one request sees.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RouteTable {
    /// Listeners sorted by port; one per bound port.
    pub listeners: Arc<[Listener]>,
    /// Every backend referenced by a route; routes refer to them by index.
    pub backends: Arc<[Backend]>,
    /// Every firewall referenced by a route; routes refer to them by index.
    pub firewalls: Arc<[Firewall]>,
}

/// One listening port and the virtual hosts served on it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Listener {
    /// TCP port the proxy binds.
    pub port: u16,
    /// Transport protocol of the port.
    pub protocol: ListenerProtocol,
    /// Virtual hosts, most specific first (exact, then longer wildcards, then any).
    pub virtual_hosts: Arc<[VirtualHost]>,
    /// Route used when no host/path rule matches (Ingress `defaultBackend`).
    pub default_route: Option<Route>,
    /// Certificates of an HTTPS listener, chosen by SNI.
    pub certificates: Arc<[TlsCertificate]>,
}

/// A certificate and key from a `kubernetes.io/tls` Secret, served for some SNI names.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TlsCertificate {
    /// Where it came from, e.g. `Secret apps/chat-tls`.
    pub source: String,
    /// SNI names it is served for; empty = any name (the listener's default).
    pub hosts: Vec<HostMatch>,
    /// PEM certificate chain.
    pub cert_pem: Redacted<String>,
    /// PEM private key.
    pub key_pem: Redacted<String>,
}

/// A secret value: `Debug` and `Serialize` print `[redacted]`; equality compares the value, so a
/// rotated secret changes the table.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Redacted<T>(pub T);

impl<T> std::fmt::Debug for Redacted<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<T> Serialize for Redacted<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("[redacted]")
    }
}

/// Plain HTTP or TLS on a listener port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum ListenerProtocol {
    /// Cleartext HTTP/1.1.
    Http,
    /// HTTP/1.1 over TLS.
    Https,
}

/// Routes served for one host pattern.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct VirtualHost {
    /// Which `Host` values this virtual host answers.
    pub host: HostMatch,
    /// Routes in precedence order: the first match wins.
    pub routes: Arc<[Route]>,
}

/// One path rule and where it goes.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Route {
    /// Metric/log name: `NAMESPACE/NAME/RULE`.
    pub id: Arc<str>,
    /// Which request paths match.
    pub path: PathMatch,
    /// Index into [`RouteTable::backends`].
    pub backend: usize,
    /// Index into [`RouteTable::firewalls`], if the route has one.
    pub firewall: Option<usize>,
    /// Header, query and method conditions (Gateway API matches); `None` = none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Arc<RequestConditions>>,
    /// Request/response changes and redirects (Gateway API filters).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filters: Option<Arc<RouteFilters>>,
    /// Weighted backends `(index, weight)` when there are several (`backend` is the first).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub split: Option<Arc<[(usize, u32)]>>,
    /// Forward the request path as the client sent it instead of the normalised one (matching
    /// still uses the normalised path): annotation `path-normalization: keep-original`, Gateway
    /// `routingRules[].pathNormalization: KeepOriginal`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub forward_original_path: bool,
}

/// Sort key of a route: the path's precedence, then its conditions' (smaller first).
pub type RoutePrecedence = (
    (std::cmp::Reverse<usize>, u8),
    (
        std::cmp::Reverse<bool>,
        std::cmp::Reverse<usize>,
        std::cmp::Reverse<usize>,
    ),
);

impl Route {
    /// A route with only a path (Ingress, wsgate Gateway).
    pub fn new(id: Arc<str>, path: PathMatch, backend: usize, firewall: Option<usize>) -> Self {
        Self {
            id,
            path,
            backend,
            firewall,
            conditions: None,
            filters: None,
            split: None,
            forward_original_path: false,
        }
    }

    /// Precedence within a virtual host: the path's, then the conditions' (smaller first).
    pub fn precedence(&self) -> RoutePrecedence {
        let c = self
            .conditions
            .as_deref()
            .map(RequestConditions::precedence)
            .unwrap_or((
                std::cmp::Reverse(false),
                std::cmp::Reverse(0),
                std::cmp::Reverse(0),
            ));
        (self.path.precedence(), c)
    }

    /// Which backend serves a request: `backend`, or a weighted choice by `roll` (any number;
    /// taken modulo the total weight) when the route splits traffic.
    pub fn pick_backend(&self, roll: u32) -> usize {
        let Some(split) = self.split.as_deref() else {
            return self.backend;
        };
        let total: u64 = split.iter().map(|(_, w)| u64::from(*w)).sum();
        if total == 0 {
            return self.backend;
        }
        let mut at = u64::from(roll) % total;
        for (b, w) in split {
            if at < u64::from(*w) {
                return *b;
            }
            at -= u64::from(*w);
        }
        self.backend
    }
}

/// A backend pool with its resolved endpoints and the settings that govern traffic to it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Backend {
    /// Stable identity of the pool across table swaps, e.g. `apps/chat/pool-name` or
    /// `apps/svc:8080` for an Ingress backend; keys health and balancing state.
    pub id: Arc<str>,
    /// Resolved endpoints (only ready ones).
    pub endpoints: Arc<[Endpoint]>,
    /// Timeouts, WebSocket policy, balancing, cache.
    pub settings: BackendSettings,
}

/// One backend address.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Endpoint {
    /// IP address or DNS name.
    pub host: Arc<str>,
    /// TCP port.
    pub port: u16,
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Protocol spoken to the backend.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
pub enum BackendProtocol {
    /// Cleartext.
    #[default]
    Http,
    /// TLS, verifying the backend certificate.
    Https,
}

/// How an endpoint is chosen for a new request or session.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(tag = "policy", content = "hashOn")]
pub enum LoadBalancing {
    /// Each endpoint in turn.
    #[default]
    RoundRobin,
    /// The endpoint with the fewest open sessions and in-flight requests.
    LeastConnections,
    /// Hash of a request attribute, stable under endpoint churn.
    ConsistentHash(HashOn),
}

/// What a consistent hash is computed over.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum HashOn {
    /// A cookie's value.
    Cookie(String),
    /// A request header's value.
    Header(String),
    /// The client IP.
    SourceIp,
}

/// Settings that govern traffic to one backend (Gateway `backendSettings`, Ingress annotations).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BackendSettings {
    /// HTTP or HTTPS to the backend.
    pub protocol: BackendProtocol,
    /// PEM CA certificates that verify an HTTPS backend; `None` = the bundled public roots.
    pub ca_pem: Option<Redacted<String>>,
    /// TCP (+TLS) connect limit.
    pub connect_timeout: Timeout,
    /// Response-header / 101 limit; also the no-frame-at-all limit of a session.
    pub request_timeout: Timeout,
    /// When set, the response-header / 101 limit instead of `request_timeout`, which then only
    /// bounds sessions (Gateway API `timeouts`: never an established session).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_timeout: Option<Timeout>,
    /// Endpoint choice.
    pub load_balancing: LoadBalancing,
    /// WebSocket policy.
    pub websocket: WebSocketSettings,
    /// Whether the HTTP response cache applies (never to upgrades).
    pub cache: bool,
    /// Active health probe, if any.
    pub probe: Option<Probe>,
    /// Cookie-based session affinity issued by wsgate; `None` = off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub affinity: Option<AffinityCookie>,
    /// The route's reference to this backend did not resolve (Gateway API: a missing Service,
    /// a reference no ReferenceGrant allows, an unsupported kind, or a rule without backends):
    /// requests answer 500 as the spec requires, not the 503 of a backend without endpoints.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub unresolved: bool,
    /// The name sent as SNI and verified in an HTTPS backend's certificate (Gateway API
    /// `BackendTLSPolicy` `hostname`); `None` = the endpoint's host, as written or resolved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_server_name: Option<Arc<str>>,
}

impl Default for BackendSettings {
    fn default() -> Self {
        Self {
            protocol: BackendProtocol::Http,
            ca_pem: None,
            connect_timeout: Timeout::secs(5),
            request_timeout: Timeout::secs(60),
            response_timeout: None,
            load_balancing: LoadBalancing::RoundRobin,
            websocket: WebSocketSettings::default(),
            cache: false,
            probe: None,
            affinity: None,
            unresolved: false,
            tls_server_name: None,
        }
    }
}

/// The affinity cookie wsgate sets and follows (annotation `wsgate.dev/affinity: cookie`, Gateway
/// `backendSettings[].affinityCookie`): it names the endpoint that served a client, so later
/// requests and the WebSocket upgrade of the same client reach it while it is available.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AffinityCookie {
    /// Cookie name (an RFC 6265 token).
    pub name: String,
    /// `Max-Age`; off = a session cookie (no `Max-Age`).
    pub max_age: Timeout,
    /// `Path`; `None` = the path of the route that issued it.
    pub path: Option<String>,
    /// `SameSite` attribute.
    pub same_site: SameSite,
}

/// Default name of the affinity cookie.
pub const DEFAULT_AFFINITY_COOKIE: &str = "wsgate_affinity";

impl Default for AffinityCookie {
    fn default() -> Self {
        Self {
            name: DEFAULT_AFFINITY_COOKIE.into(),
            max_age: Timeout::Off,
            path: None,
            same_site: SameSite::Lax,
        }
    }
}

/// The cookie `SameSite` attribute.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub enum SameSite {
    /// Sent on same-site requests only.
    Strict,
    /// Also sent on top-level cross-site navigations (the browsers' default).
    #[default]
    Lax,
    /// Sent on every request; browsers require `Secure` with it, so wsgate always adds it.
    None,
}

/// WebSocket policy of a backend.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WebSocketSettings {
    /// `false`: upgrade requests get 403.
    pub enabled: bool,
    /// Proxy ping cadence; off = no proxy pings.
    pub ping_interval: Timeout,
    /// No data frame either way for this long closes the session.
    pub idle_timeout: Timeout,
    /// Hard session age.
    pub max_session_duration: Timeout,
    /// Largest message allowed; 0 = unlimited.
    pub max_message_bytes: u64,
    /// Open sessions per routing rule and replica; 0 = unlimited.
    pub max_connections: u32,
}

impl Default for WebSocketSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            ping_interval: Timeout::secs(20),
            idle_timeout: Timeout::Off,
            max_session_duration: Timeout::Off,
            max_message_bytes: 0,
            max_connections: 0,
        }
    }
}

/// An active HTTP health probe.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Probe {
    /// HTTP or HTTPS.
    pub protocol: BackendProtocol,
    /// Request path.
    pub path: String,
    /// Host header; empty = the endpoint address.
    pub host: String,
    /// Port; 0 = the endpoint's port.
    pub port: u16,
    /// Time between probes.
    pub interval: Timeout,
    /// Time a probe may take.
    pub timeout: Timeout,
    /// Consecutive failures that mark an endpoint down.
    pub unhealthy_threshold: u32,
    /// Consecutive successes that mark it up again.
    pub healthy_threshold: u32,
    /// Accepted status ranges, inclusive.
    pub status_codes: Vec<(u16, u16)>,
}

impl Default for Probe {
    fn default() -> Self {
        Self {
            protocol: BackendProtocol::Http,
            path: "/".into(),
            host: String::new(),
            port: 0,
            interval: Timeout::secs(10),
            timeout: Timeout::secs(5),
            unhealthy_threshold: 3,
            healthy_threshold: 2,
            status_codes: vec![(200, 399)],
        }
    }
}

/// Request filtering applied before any backend connection (Gateway `firewall`, Ingress
/// `allowed-origins`/`ip-allow`/`ip-deny`/`rate-limit`). Established sessions are not inspected.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Firewall {
    /// Owner (`Gateway ns/name`, `Ingress ns/name`); keys rate-limit state across reloads.
    pub id: Arc<str>,
    /// Exact `Origin` values allowed for WebSocket upgrades; empty = any.
    pub allowed_origins: Vec<String>,
    /// Client networks allowed; empty = any.
    pub ip_allow: Vec<ipnet::IpNet>,
    /// Client networks denied.
    pub ip_deny: Vec<ipnet::IpNet>,
    /// Token bucket per client IP.
    pub rate_limit: Option<RateLimit>,
    /// Ordered rules; the first match decides.
    pub rules: Vec<FirewallRule>,
}

/// Requests per second per client IP, with a burst allowance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct RateLimit {
    /// Sustained rate.
    pub per_second: u32,
    /// Bucket size.
    pub burst: u32,
}

/// One ordered firewall rule.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FirewallRule {
    /// Name, for logs.
    pub name: String,
    /// Conditions; every one given must hold.
    pub path_prefix: Option<PathMatch>,
    /// Exact path.
    pub path: Option<String>,
    /// Method (upper case).
    pub method: Option<String>,
    /// Header name (lower case) and its exact value or regex.
    pub header: Option<HeaderCondition>,
    /// Allow (stop evaluating rules) or deny (403).
    pub allow: bool,
}

/// A header condition of a firewall rule.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HeaderCondition {
    /// Header name, lower case.
    pub name: String,
    /// Exact value.
    pub value: Option<String>,
    /// Regular expression (validated by translation) on the value.
    pub regex: Option<String>,
}

impl RouteTable {
    /// The listener bound to `port`, if any.
    pub fn listener(&self, port: u16) -> Option<&Listener> {
        self.listeners
            .binary_search_by_key(&port, |l| l.port)
            .ok()
            .map(|i| &self.listeners[i])
    }

    /// Finds the route for a request on `port` with `host` (no port part) and `path`; routes
    /// with request conditions never match.
    pub fn route(&self, port: u16, host: &str, path: &str) -> Option<(&Route, &Backend)> {
        self.route_request(port, host, path, None)
    }

    /// Finds the route for a request, judging routes' request conditions against `facts`.
    pub fn route_request(
        &self,
        port: u16,
        host: &str,
        path: &str,
        facts: Option<&RequestFacts<'_>>,
    ) -> Option<(&Route, &Backend)> {
        let listener = self.listener(port)?;
        let route = listener
            .virtual_hosts
            .iter()
            .find(|vh| vh.host.matches(host))
            .and_then(|vh| {
                vh.routes.iter().find(|r| {
                    r.path.matches(path)
                        && r.conditions
                            .as_deref()
                            .is_none_or(|c| facts.is_some_and(|f| c.matches(f)))
                })
            })
            .or(listener.default_route.as_ref())?;
        let backend = self.backends.get(route.backend)?;
        Some((route, backend))
    }

    /// Checks internal consistency (sorted unique ports, backend indices in range).
    pub fn validate(&self) -> Result<(), String> {
        for pair in self.listeners.windows(2) {
            if pair[0].port >= pair[1].port {
                return Err(format!(
                    "listeners not sorted/unique at port {}",
                    pair[1].port
                ));
            }
        }
        for l in self.listeners.iter() {
            let routes = l.virtual_hosts.iter().flat_map(|vh| vh.routes.iter());
            for r in routes.chain(l.default_route.iter()) {
                if r.backend >= self.backends.len() {
                    return Err(format!(
                        "route {} refers to missing backend {}",
                        r.id, r.backend
                    ));
                }
                if r.split
                    .as_deref()
                    .is_some_and(|s| s.iter().any(|(b, _)| *b >= self.backends.len()))
                {
                    return Err(format!("route {} splits to a missing backend", r.id));
                }
                if r.firewall.is_some_and(|f| f >= self.firewalls.len()) {
                    return Err(format!("route {} refers to a missing firewall", r.id));
                }
            }
        }
        Ok(())
    }
}
