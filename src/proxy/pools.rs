//! Runtime state of backends, kept across table swaps: per-pool connection pools and cursors,
//! per-endpoint health and load counters, and endpoint choice (round robin, least connections,
//! rendezvous hashing) over the endpoints that are available now.
//!
//! Passive health is bounded so that clients cannot take a backend out for everyone:
//! a 5xx streak ejects only when it spans several distinct requests, at most
//! `--max-ejection-percent` of a pool is ever ejected (at least one endpoint stays), and when no
//! endpoint is available at all the pool is in panic mode and every endpoint is used.

use super::registry::Registry;
use crate::ir::{
    Backend, BackendProtocol, BackendSettings, Endpoint, HashOn, LoadBalancing, Timeout,
};
use parking_lot::Mutex;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// Consecutive connect failures or 5xx answers that eject an endpoint passively.
pub(crate) const PASSIVE_FAILURES: u32 = 5;
/// Distinct requests (method + normalised path) a failure streak must span to eject. A transport
/// failure (connect, reset, timeout) always counts as a distinct request: it is the backend's.
/// A 5xx may be the request's own fault (one URL that always fails), so a client repeating one
/// or two failing URLs never ejects an endpoint.
pub(crate) const DISTINCT_FAILING_REQUESTS: usize = 3;
/// First passive ejection; doubles with each consecutive ejection up to [`MAX_EJECTION`].
pub(crate) const BASE_EJECTION: Duration = Duration::from_secs(5);
/// Longest passive ejection.
pub(crate) const MAX_EJECTION: Duration = Duration::from_secs(120);

/// Health and load of one endpoint of one pool.
pub(crate) struct EndpointState {
    pub(crate) pool: Arc<str>,
    pub(crate) endpoint: Endpoint,
    pub(crate) label: String,
    /// Open WebSocket sessions plus in-flight requests.
    pub(crate) active: AtomicUsize,
    /// Verdict of the active probe (true when there is none).
    pub(crate) probe_healthy: AtomicBool,
    consecutive_failures: AtomicU32,
    /// Distinct request keys of the current failure streak (at most
    /// [`DISTINCT_FAILING_REQUESTS`]); touched only when a request fails.
    failing_requests: Mutex<Vec<u64>>,
    ejections: AtomicU32,
    ejected_until_ms: AtomicU64,
    epoch: Instant,
    up_gauge: prometheus::IntGauge,
    /// Idle keep-alive connections to this endpoint.
    pub(crate) idle: super::upstream::IdleConns,
    /// Its affinity cookie value, computed on first use (the key is fixed per process).
    affinity_token: std::sync::OnceLock<Box<str>>,
}

impl EndpointState {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Whether new requests and sessions may go here.
    pub(crate) fn available(&self) -> bool {
        if !self.probe_healthy.load(Ordering::Relaxed) {
            return false;
        }
        // Never ejected (the common case): no clock read.
        let until = self.ejected_until_ms.load(Ordering::Relaxed);
        until == 0 || until <= self.now_ms()
    }

    /// Records a transport failure (connect, reset, timeout): always the backend's fault.
    pub(crate) fn failure(&self) {
        static TRANSPORT: AtomicU64 = AtomicU64::new(0);
        // A key no request has: each transport failure counts as its own request.
        self.failure_of(u64::MAX - TRANSPORT.fetch_add(1, Ordering::Relaxed));
    }

    /// Records a failure of the request identified by `request`; ejects after
    /// [`PASSIVE_FAILURES`] in a row spanning [`DISTINCT_FAILING_REQUESTS`] distinct requests.
    fn failure_of(&self, request: u64) {
        let distinct = {
            let mut seen = self.failing_requests.lock();
            if seen.len() < DISTINCT_FAILING_REQUESTS && !seen.contains(&request) {
                seen.push(request);
            }
            seen.len()
        };
        let streak = self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if streak >= PASSIVE_FAILURES && distinct >= DISTINCT_FAILING_REQUESTS {
            self.consecutive_failures.store(0, Ordering::Relaxed);
            self.failing_requests.lock().clear();
            let n = self.ejections.fetch_add(1, Ordering::Relaxed).min(5);
            let ban = (BASE_EJECTION * 2u32.pow(n)).min(MAX_EJECTION);
            self.ejected_until_ms
                .store(self.now_ms() + ban.as_millis() as u64, Ordering::Relaxed);
            tracing::warn!(pool = %self.pool, endpoint = %self.label, ejected_for = ?ban, "endpoint ejected after consecutive failures");
            self.refresh_gauge();
        }
    }

    /// Records a success: the failure streak and the ejection back-off reset.
    pub(crate) fn success(&self) {
        if self.consecutive_failures.load(Ordering::Relaxed) != 0 {
            self.consecutive_failures.store(0, Ordering::Relaxed);
            self.failing_requests.lock().clear();
        }
        if self.ejections.load(Ordering::Relaxed) != 0
            && self.ejected_until_ms.load(Ordering::Relaxed) <= self.now_ms()
        {
            self.ejections.store(0, Ordering::Relaxed);
            self.refresh_gauge();
        }
    }

    /// Records a backend's answer to the request identified by `request`: a 5xx counts as a
    /// failure of that request, anything else as a success.
    pub(crate) fn answered(&self, status: http::StatusCode, request: u64) {
        if status.is_server_error() {
            self.failure_of(request);
        } else {
            self.success();
        }
    }

    /// Whether a probe passes and the endpoint is passively ejected now.
    fn ejected(&self) -> bool {
        self.probe_healthy.load(Ordering::Relaxed) && !self.available()
    }

    /// Sets the active probe's verdict.
    pub(crate) fn set_probe_healthy(&self, healthy: bool) {
        if self.probe_healthy.swap(healthy, Ordering::Relaxed) != healthy {
            tracing::info!(pool = %self.pool, endpoint = %self.label, healthy, "endpoint health changed");
        }
        self.refresh_gauge();
    }

    /// The affinity cookie value that names this endpoint.
    pub(crate) fn affinity_token(&self, key: &ring::hmac::Key) -> &str {
        self.affinity_token
            .get_or_init(|| super::affinity_token::token(key, &self.pool, &self.label))
    }

    pub(crate) fn refresh_gauge(&self) {
        self.up_gauge.set(i64::from(self.available()));
    }
}

/// Holds one unit of an endpoint's load while a request or session uses it; the second field
/// identifies the request (see [`EndpointState::answered`]).
pub(crate) struct Lease(pub(crate) Arc<EndpointState>, u64);

impl Lease {
    pub(crate) fn new(ep: Arc<EndpointState>, request: u64) -> Self {
        ep.active.fetch_add(1, Ordering::Relaxed);
        Lease(ep, request)
    }

    /// Records the backend's answer to this lease's request.
    pub(crate) fn answered(&self, status: http::StatusCode) {
        self.0.answered(status, self.1);
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Identity of a [`PoolRuntime`]: idle connections made under other TLS settings are not reused.
static NEXT_RUNTIME: AtomicU64 = AtomicU64::new(1);

/// Cursor and connection settings of one backend pool.
pub(crate) struct PoolRuntime {
    cursor: AtomicUsize,
    /// Unique per runtime; tags the idle connections it made.
    pub(crate) id: u64,
    /// TLS to the backend, `None` for HTTP backends.
    pub(crate) tls: Option<Arc<rustls::ClientConfig>>,
    /// TCP connect (and TLS handshake) limit.
    pub(crate) connect_timeout: Option<Duration>,
    /// SNI and verified name instead of the endpoint's host (`BackendTLSPolicy` hostname).
    pub(crate) server_name: Option<Arc<str>>,
}

impl PoolRuntime {
    fn new(settings: &BackendSettings) -> Self {
        let tls = (settings.protocol == BackendProtocol::Https).then(|| {
            let ca = settings.ca_pem.as_ref().map(|c| c.0.as_str());
            super::tls::client_config(ca).unwrap_or_else(|e| {
                // Fail closed: an unusable CA must not fall back to trusting other roots.
                tracing::error!(error = %e, "backend CA unusable; TLS to this backend will fail");
                super::tls::client_config(Some(""))
                    .unwrap_or_else(|_| Arc::new(empty_client_config()))
            })
        });
        Self {
            cursor: AtomicUsize::new(0),
            id: NEXT_RUNTIME.fetch_add(1, Ordering::Relaxed),
            tls,
            connect_timeout: settings.connect_timeout.get(),
            server_name: settings.tls_server_name.clone(),
        }
    }
}

/// A client config that trusts nothing (used for plain-HTTP pools, which never handshake).
fn empty_client_config() -> rustls::ClientConfig {
    rustls::ClientConfig::builder_with_provider(super::tls::provider())
        .with_safe_default_protocol_versions()
        .map(|b| {
            b.with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth()
        })
        .unwrap_or_else(|_| {
            rustls::ClientConfig::builder()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth()
        })
}

/// A backend as one table sees it: its runtime and the state of each of its endpoints.
pub(crate) struct BoundPool {
    pub(crate) runtime: Arc<PoolRuntime>,
    pub(crate) endpoints: Arc<[Arc<EndpointState>]>,
    /// Most endpoints that may be passively ejected at once (`--max-ejection-percent`, at most
    /// all but one).
    max_ejected: usize,
}

/// How many of `n` endpoints may be ejected at once with `percent`: rounded down, never all.
pub(crate) fn max_ejected(n: usize, percent: u8) -> usize {
    (n * usize::from(percent.min(100)) / 100).min(n.saturating_sub(1))
}

/// What a consistent hash is computed from for one request.
pub(crate) type HashKey<'a> = Option<std::borrow::Cow<'a, [u8]>>;

impl BoundPool {
    /// The available endpoint whose affinity cookie value is `token`.
    pub(crate) fn find_by_token(
        &self,
        token: &str,
        key: &ring::hmac::Key,
    ) -> Option<&Arc<EndpointState>> {
        self.endpoints
            .iter()
            .find(|e| e.available() && e.affinity_token(key) == token)
    }

    /// Chooses an available endpoint by `policy` for the request identified by `request`, or
    /// `None` when the pool has no endpoints.
    pub(crate) fn pick(
        &self,
        policy: &LoadBalancing,
        key: HashKey<'_>,
        request: u64,
    ) -> Option<Lease> {
        // No list is collected while every endpoint is available: this runs for every request.
        let n = self.endpoints.iter().filter(|e| e.available()).count();
        if n == self.endpoints.len() {
            let all = || self.endpoints.iter();
            return Self::choose(all, n, policy, key, &self.runtime, request);
        }
        let usable = self.usable();
        let list = || usable.iter().copied();
        Self::choose(list, usable.len(), policy, key, &self.runtime, request)
    }

    /// The endpoints to use while some are unavailable: the available ones, plus the ejected
    /// ones that exceed the ejection bound (those whose ejection ends first), or every endpoint
    /// when none is left (panic mode: a possibly wrong health verdict beats a certain 503).
    fn usable(&self) -> Vec<&Arc<EndpointState>> {
        let mut usable: Vec<&Arc<EndpointState>> =
            self.endpoints.iter().filter(|e| e.available()).collect();
        let mut ejected: Vec<&Arc<EndpointState>> =
            self.endpoints.iter().filter(|e| e.ejected()).collect();
        if ejected.len() > self.max_ejected {
            ejected.sort_by_key(|e| e.ejected_until_ms.load(Ordering::Relaxed));
            let readmit = ejected.len() - self.max_ejected;
            usable.extend(ejected.into_iter().take(readmit));
        }
        if usable.is_empty() {
            tracing::debug!(pool = %self.endpoints.first().map_or("", |e| &*e.pool), "no endpoint available: panic mode, using all");
            usable.extend(self.endpoints.iter());
        }
        usable
    }

    fn choose<'a, I>(
        available: impl Fn() -> I,
        n: usize,
        policy: &LoadBalancing,
        key: HashKey<'_>,
        runtime: &PoolRuntime,
        request: u64,
    ) -> Option<Lease>
    where
        I: Iterator<Item = &'a Arc<EndpointState>> + Clone,
    {
        if n == 0 {
            return None;
        }
        let turn = runtime.cursor.fetch_add(1, Ordering::Relaxed);
        let chosen = match (policy, key) {
            (LoadBalancing::LeastConnections, _) => {
                // Rotate the start so equal loads are spread in turn.
                available()
                    .cycle()
                    .skip(turn % n)
                    .take(n)
                    .min_by_key(|e| e.active.load(Ordering::Relaxed))
            }
            (LoadBalancing::ConsistentHash(_), Some(key)) => {
                available().max_by_key(|e| {
                    // Rendezvous hashing: only keys whose endpoint disappears move.
                    let mut h = DefaultHasher::new();
                    key.hash(&mut h);
                    e.label.hash(&mut h);
                    h.finish()
                })
            }
            _ => available().nth(turn % n),
        }?;
        Some(Lease::new(chosen.clone(), request))
    }
}

/// Extracts the hash key of a request for a consistent-hash policy.
pub(crate) fn hash_key<'a>(
    policy: &LoadBalancing,
    headers: &'a http::HeaderMap,
    client: std::net::IpAddr,
) -> HashKey<'a> {
    use std::borrow::Cow;
    let LoadBalancing::ConsistentHash(on) = policy else {
        return None;
    };
    match on {
        HashOn::SourceIp => Some(Cow::Owned(match client {
            std::net::IpAddr::V4(v4) => v4.octets().to_vec(),
            std::net::IpAddr::V6(v6) => v6.octets().to_vec(),
        })),
        HashOn::Header(name) => headers
            .get(name.as_str())
            .map(|v| Cow::Borrowed(v.as_bytes())),
        HashOn::Cookie(name) => headers
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|c| {
                let (k, v) = c.trim().split_once('=')?;
                (k == name).then_some(Cow::Borrowed(v.as_bytes()))
            }),
    }
}

/// Identity, connect timeout, protocol, CA and TLS server name: a change to any of them builds a
/// new pool.
type PoolKey = (
    Arc<str>,
    Timeout,
    BackendProtocol,
    Option<String>,
    Option<Arc<str>>,
);
type EndpointKey = (Arc<str>, Endpoint);

/// Finds runtime state by identity, creating it when new; forgets what no table uses.
pub(crate) struct PoolRegistry {
    pools: Registry<PoolKey, PoolRuntime>,
    endpoints: Registry<EndpointKey, EndpointState>,
    up: prometheus::IntGaugeVec,
    epoch: Instant,
    /// `--max-ejection-percent`.
    max_ejection_percent: u8,
}

impl PoolRegistry {
    pub(crate) fn new(up: prometheus::IntGaugeVec, max_ejection_percent: u8) -> Self {
        Self {
            pools: Registry::default(),
            endpoints: Registry::default(),
            up,
            epoch: Instant::now(),
            max_ejection_percent,
        }
    }

    /// The runtime and endpoint states for a backend of a new table.
    pub(crate) fn bind(&self, backend: &Backend) -> BoundPool {
        let st = &backend.settings;
        let key = (
            backend.id.clone(),
            st.connect_timeout,
            st.protocol,
            st.ca_pem.as_ref().map(|c| c.0.clone()),
            st.tls_server_name.clone(),
        );
        let runtime = self
            .pools
            .get_or_insert_with(key, || PoolRuntime::new(&backend.settings));
        let endpoints: Vec<Arc<EndpointState>> = backend
            .endpoints
            .iter()
            .map(|ep| {
                let key = (backend.id.clone(), ep.clone());
                self.endpoints
                    .get_or_insert_with(key, || self.new_endpoint(backend, ep))
            })
            .collect();
        BoundPool {
            runtime,
            max_ejected: max_ejected(endpoints.len(), self.max_ejection_percent),
            endpoints: endpoints.into(),
        }
    }

    fn new_endpoint(&self, backend: &Backend, ep: &Endpoint) -> EndpointState {
        let label = ep.to_string();
        let s = EndpointState {
            pool: backend.id.clone(),
            endpoint: ep.clone(),
            up_gauge: self
                .up
                .with_label_values(&[backend.id.as_ref(), label.as_str()]),
            label,
            active: AtomicUsize::new(0),
            probe_healthy: AtomicBool::new(true),
            consecutive_failures: AtomicU32::new(0),
            ejections: AtomicU32::new(0),
            ejected_until_ms: AtomicU64::new(0),
            epoch: self.epoch,
            idle: Default::default(),
            affinity_token: Default::default(),
            failing_requests: Mutex::new(Vec::new()),
        };
        s.refresh_gauge();
        s
    }

    /// Closes idle backend connections that timed out or were closed by their backend.
    pub(crate) fn reap_idle(&self) {
        for ep in self.endpoints.live() {
            ep.idle.reap();
        }
    }

    /// Forgets state no table refers to any more and drops its `wsgate_backend_up` series.
    pub(crate) fn prune(&self) {
        self.pools.prune(|_| {});
        self.endpoints.prune(|(pool, ep)| {
            let _ = self
                .up
                .remove_label_values(&[pool.as_ref(), ep.to_string().as_str()]);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(n: u16, percent: u8) -> BoundPool {
        let up =
            prometheus::IntGaugeVec::new(prometheus::Opts::new("up", "up"), &["pool", "endpoint"])
                .unwrap();
        let registry = PoolRegistry::new(up, percent);
        registry.bind(&Backend {
            id: "ns/p".into(),
            endpoints: (1..=n)
                .map(|port| Endpoint {
                    host: "127.0.0.1".into(),
                    port,
                })
                .collect(),
            settings: BackendSettings::default(),
        })
    }

    fn picked(p: &BoundPool) -> std::collections::BTreeSet<u16> {
        (0..20)
            .filter_map(|_| p.pick(&LoadBalancing::RoundRobin, None, 1))
            .map(|l| l.0.endpoint.port)
            .collect()
    }

    #[test]
    fn one_failing_url_never_ejects() {
        let p = pool(2, 50);
        for _ in 0..50 {
            p.endpoints[0].answered(http::StatusCode::INTERNAL_SERVER_ERROR, 7);
        }
        assert!(p.endpoints[0].available());
        for key in 1..=5 {
            p.endpoints[0].answered(http::StatusCode::BAD_GATEWAY, key);
        }
        assert!(
            !p.endpoints[0].available(),
            "distinct failing requests eject"
        );
        assert_eq!(picked(&p), [2].into());
    }

    #[test]
    fn transport_failures_always_count() {
        let p = pool(2, 50);
        for _ in 0..5 {
            p.endpoints[1].failure();
        }
        assert!(!p.endpoints[1].available());
    }

    #[test]
    fn ejection_is_bounded_and_one_endpoint_always_stays() {
        assert_eq!(max_ejected(1, 50), 0);
        assert_eq!(max_ejected(2, 50), 1);
        assert_eq!(max_ejected(3, 50), 1);
        assert_eq!(max_ejected(4, 100), 3);
        assert_eq!(max_ejected(4, 0), 0);
        // The only endpoint: ejected by its own state, still used.
        let p = pool(1, 50);
        for _ in 0..5 {
            p.endpoints[0].failure();
        }
        assert!(!p.endpoints[0].available());
        assert_eq!(picked(&p), [1].into());
        // Two of four ejected at 50 %: both stay out; a third ejection readmits one.
        let p = pool(4, 50);
        for ep in p.endpoints.iter().take(3) {
            for _ in 0..5 {
                ep.failure();
            }
        }
        let got = picked(&p);
        assert_eq!(got.len(), 2, "{got:?}: one healthy, one readmitted");
        assert!(got.contains(&4));
    }

    #[test]
    fn panic_mode_uses_every_endpoint_when_none_is_available() {
        let p = pool(2, 50);
        for ep in p.endpoints.iter() {
            ep.set_probe_healthy(false);
        }
        assert_eq!(picked(&p), [1, 2].into());
        let empty = pool(0, 50);
        assert!(empty.pick(&LoadBalancing::RoundRobin, None, 1).is_none());
    }
}
