//! The data plane: listeners, HTTP forwarding, the WebSocket gate and the frame-aware tunnel.
//!
//! One `ArcSwap<ActiveTable>` holds the routing table; each request loads it once. Swapping never
//! touches established connections or sessions.

mod cache;
mod filters;
mod firewall;
mod forward;
mod handshake;
mod headers;
mod health;
mod listeners;
mod peer;
mod pools;
mod respond;
mod server;
mod tls;
mod tunnel;
mod upstream;
mod websocket;

pub use handshake::{GateError, accept_key, check_client};
pub use listeners::BindError;

use crate::ir::{Backend, ListenerProtocol, Route, RouteTable};
use crate::metrics::Metrics;
use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::{Either, Full};
use ipnet::IpNet;
use pools::{BoundPool, PoolRegistry};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::watch;

/// WebSocket handshakes with backends that may be in progress at once; more are answered 503 so
/// a flood of upgrade requests to a slow backend cannot pile up connections.
pub const MAX_PENDING_HANDSHAKES: usize = 4096;

/// Body of every response the proxy sends: a relayed backend body or one of its own.
pub(crate) type ProxyBody = Either<upstream::BackendBody, Full<Bytes>>;

/// Process-wide proxy settings from the command line.
#[derive(Clone, Debug)]
pub struct ProxySettings {
    /// `--bind`.
    pub bind: IpAddr,
    /// `--trusted-proxies`.
    pub trusted_proxies: Vec<IpNet>,
    /// `--header-timeout`: the whole request head must arrive within it.
    pub header_timeout: Duration,
    /// `--max-header-bytes`.
    pub max_header_bytes: usize,
    /// `--max-body-bytes`: request body limit for non-WebSocket requests; 0 = unlimited.
    pub max_body_bytes: u64,
    /// `--cache-max-bytes`: memory bound of the HTTP response cache.
    pub cache_max_bytes: u64,
    /// `--max-connections`: open connections per listener; 0 = one process-wide limit derived
    /// from the open-file limit.
    pub max_connections: usize,
    /// After SIGTERM, how long listeners keep accepting while readiness is already false, so
    /// load balancers stop sending new connections first.
    pub drain_accept_delay: Duration,
}

impl Default for ProxySettings {
    fn default() -> Self {
        Self {
            bind: IpAddr::from([0, 0, 0, 0]),
            trusted_proxies: Vec::new(),
            header_timeout: Duration::from_secs(10),
            max_header_bytes: 32 * 1024,
            max_body_bytes: 0,
            cache_max_bytes: 256 * 1024 * 1024,
            max_connections: 0,
            drain_accept_delay: Duration::ZERO,
        }
    }
}

/// The routing table plus the runtime state (balancing, connection pools) of each backend.
pub struct ActiveTable {
    /// The IR as translated.
    pub ir: Arc<RouteTable>,
    pools: Vec<BoundPool>,
    firewalls: Vec<firewall::CompiledFirewall>,
    /// Open-session counters of routes with `maxConnections`, by route id.
    route_sessions: std::collections::HashMap<Arc<str>, Arc<std::sync::atomic::AtomicUsize>>,
}

/// What a request needs once it is routed.
pub(crate) struct Routed<'a> {
    pub(crate) route: &'a Route,
    pub(crate) backend: &'a Backend,
    pub(crate) pool: &'a BoundPool,
    pub(crate) firewall: Option<&'a firewall::CompiledFirewall>,
}

impl ActiveTable {
    fn route(
        &self,
        port: u16,
        host: &str,
        path: &str,
        facts: &crate::ir::RequestFacts<'_>,
    ) -> Option<Routed<'_>> {
        let (route, backend) = self.ir.route_request(port, host, path, Some(facts))?;
        // A weighted split picks per request; without one this is `route.backend`.
        let index = route.pick_backend(rand::random());
        let backend = self.ir.backends.get(index).unwrap_or(backend);
        let pool = self.pools.get(index)?;
        let firewall = route.firewall.and_then(|f| self.firewalls.get(f));
        Some(Routed {
            route,
            backend,
            pool,
            firewall,
        })
    }
}

pub(crate) struct Shared {
    table: ArcSwap<ActiveTable>,
    registry: PoolRegistry,
    limiters: firewall::LimiterRegistry,
    health: health::HealthChecker,
    route_counters: std::sync::Mutex<
        std::collections::HashMap<Arc<str>, std::sync::Weak<std::sync::atomic::AtomicUsize>>,
    >,
    metrics: Metrics,
    settings: ProxySettings,
    ready: AtomicBool,
    drain: watch::Sender<bool>,
    /// Open client connections and WebSocket sessions, so a drain can wait for them.
    conns: Arc<listeners::ConnCount>,
    /// The process-wide connection limit used when `max_connections` is 0.
    capacity: Arc<listeners::Capacity>,
    /// Readiness was withdrawn (SIGTERM received).
    stopping: AtomicBool,
    /// Whether the idle-connection reaper runs.
    reaper: AtomicBool,
    /// The HTTP response cache (routes with `cache.enabled`).
    cache: cache::HttpCache,
    /// Server config per HTTPS listener port.
    tls_configs: ArcSwap<std::collections::HashMap<u16, Arc<rustls::ServerConfig>>>,
    /// Served for SNI names no Secret covers.
    default_cert: Arc<rustls::sign::CertifiedKey>,
    /// WebSocket handshakes with backends in progress (bounded, see [`MAX_PENDING_HANDSHAKES`]).
    handshakes: Arc<tokio::sync::Semaphore>,
}

/// How often idle backend connections are checked for age and for being closed by the backend.
const IDLE_REAP_INTERVAL: Duration = Duration::from_secs(10);

/// Closes idle backend connections that aged out or that their backend closed, until the proxy
/// is dropped.
fn spawn_idle_reaper(shared: std::sync::Weak<Shared>) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(IDLE_REAP_INTERVAL).await;
            let Some(shared) = shared.upgrade() else {
                return;
            };
            shared.registry.reap_idle();
        }
    });
}

/// Handle to the running proxy; cheap to clone.
#[derive(Clone)]
pub struct Proxy {
    shared: Arc<Shared>,
    listeners: Arc<listeners::Listeners>,
}

impl Proxy {
    /// A proxy with an empty table and no listeners yet.
    pub fn new(settings: ProxySettings, metrics: Metrics) -> Self {
        let registry = PoolRegistry::new(metrics.backend_up.clone());
        let empty = ActiveTable {
            ir: Arc::new(RouteTable::default()),
            pools: Vec::new(),
            firewalls: Vec::new(),
            route_sessions: Default::default(),
        };
        let (drain, _) = watch::channel(false);
        let cache_max_bytes = settings.cache_max_bytes;
        let shared = Arc::new(Shared {
            table: ArcSwap::from_pointee(empty),
            registry,
            limiters: Default::default(),
            health: Default::default(),
            route_counters: Default::default(),
            metrics,
            settings,
            ready: AtomicBool::new(false),
            drain,
            conns: Default::default(),
            capacity: Arc::new(listeners::Capacity {
                count: Default::default(),
                limit: listeners::derived_max_connections(),
            }),
            stopping: AtomicBool::new(false),
            reaper: AtomicBool::new(false),
            handshakes: Arc::new(tokio::sync::Semaphore::new(MAX_PENDING_HANDSHAKES)),
            tls_configs: ArcSwap::from_pointee(Default::default()),
            cache: cache::HttpCache::new(cache_max_bytes),
            // Generating a self-signed certificate does not depend on input; failure would mean a
            // broken crypto provider, which no request could work around.
            default_cert: tls::default_certificate().expect("a self-signed default certificate"),
        });
        Self {
            listeners: Arc::new(listeners::Listeners::new(shared.clone())),
            shared,
        }
    }

    /// Installs a new table and opens/closes listeners to match its ports. Open connections and
    /// sessions keep running on what they started with. Returns the ports that failed to bind.
    pub async fn apply(&self, table: RouteTable) -> Vec<BindError> {
        let pools: Vec<BoundPool> = table
            .backends
            .iter()
            .map(|b| self.shared.registry.bind(b))
            .collect();
        self.shared.health.sync(
            table
                .backends
                .iter()
                .zip(pools.iter().map(|p| &p.endpoints[..])),
        );
        let route_sessions = self.route_counters(&table);
        let firewalls = table
            .firewalls
            .iter()
            .map(|f| self.shared.limiters.compile(f))
            .collect();
        let ports: Vec<u16> = table.listeners.iter().map(|l| l.port).collect();
        let mut tls_configs = std::collections::HashMap::new();
        let mut errors = Vec::new();
        for l in table
            .listeners
            .iter()
            .filter(|l| l.protocol == ListenerProtocol::Https)
        {
            match tls::server_config(l, &self.shared.default_cert) {
                Ok((config, problems)) => {
                    for p in problems {
                        errors.push(BindError {
                            port: l.port,
                            message: p,
                        });
                    }
                    tls_configs.insert(l.port, config);
                }
                Err(e) => errors.push(BindError {
                    port: l.port,
                    message: format!("TLS configuration: {e}"),
                }),
            }
        }
        // New handshakes use the new certificates; open connections keep theirs.
        self.shared.tls_configs.store(Arc::new(tls_configs));
        self.shared.table.store(Arc::new(ActiveTable {
            ir: Arc::new(table),
            pools,
            firewalls,
            route_sessions,
        }));
        self.shared.registry.prune();
        if !self.shared.reaper.swap(true, Ordering::SeqCst) {
            spawn_idle_reaper(Arc::downgrade(&self.shared));
        }
        errors.extend(self.listeners.sync(&ports).await);
        self.shared.ready.store(true, Ordering::SeqCst);
        errors
    }

    /// Session counters for routes whose backend limits connections, shared with the previous
    /// table so a reload does not reset the count.
    fn route_counters(
        &self,
        table: &RouteTable,
    ) -> std::collections::HashMap<Arc<str>, Arc<std::sync::atomic::AtomicUsize>> {
        let mut known = self
            .shared
            .route_counters
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        known.retain(|_, w| w.strong_count() > 0);
        let mut out = std::collections::HashMap::new();
        for l in table.listeners.iter() {
            let routes = l
                .virtual_hosts
                .iter()
                .flat_map(|vh| vh.routes.iter())
                .chain(l.default_route.iter());
            for r in routes {
                let limited = table
                    .backends
                    .get(r.backend)
                    .is_some_and(|b| b.settings.websocket.max_connections > 0);
                if !limited || out.contains_key(&r.id) {
                    continue;
                }
                let counter = known
                    .get(&r.id)
                    .and_then(std::sync::Weak::upgrade)
                    .unwrap_or_default();
                known.insert(r.id.clone(), Arc::downgrade(&counter));
                out.insert(r.id.clone(), counter);
            }
        }
        out
    }

    /// The table now serving.
    pub fn table(&self) -> Arc<RouteTable> {
        self.shared.table.load().ir.clone()
    }

    /// Whether a first table is serving and no drain has started.
    pub fn is_ready(&self) -> bool {
        self.shared.ready.load(Ordering::SeqCst) && !self.shared.stopping.load(Ordering::SeqCst)
    }

    /// The ports actually bound (useful with port 0 in tests).
    pub fn bound_ports(&self) -> Vec<(u16, std::net::SocketAddr)> {
        self.listeners.bound()
    }

    /// Drains: readiness turns false at once; after `drain_accept_delay` listeners stop
    /// accepting, every WebSocket session gets close 1001 and HTTP connections finish their
    /// in-flight request. Returns once nothing is open or `deadline` (counted from the call) passed.
    pub async fn drain(&self, deadline: Duration) {
        let until = tokio::time::Instant::now() + deadline;
        self.shared.stopping.store(true, Ordering::SeqCst);
        tokio::time::sleep(self.shared.settings.drain_accept_delay.min(deadline / 2)).await;
        self.listeners.close_all().await;
        self.shared.drain.send_replace(true);
        let _ = tokio::time::timeout_at(until, self.listeners.wait_idle()).await;
    }

    /// The metrics registry.
    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }
}
