//! What every connection of the proxy shares: the active table, the registries behind it, the
//! drain signal and the process-wide counters. Nothing here opens sockets.

use super::accounting::{Capacity, ConnCount, derived_max_connections};
use super::cache::HttpCache;
use super::health::HealthChecker;
use super::settings::ProxySettings;
use super::table::{ActiveTable, Registries};
use crate::metrics::Metrics;
use arc_swap::ArcSwap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use tokio::sync::{Semaphore, watch};

/// WebSocket handshakes with backends that may be in progress at once; more are answered 503 so
/// a flood of upgrade requests to a slow backend cannot pile up connections.
pub const MAX_PENDING_HANDSHAKES: usize = 4096;

/// State shared by the proxy handle, the listeners and every connection.
pub(crate) struct Shared {
    /// The compiled table; each request loads it once.
    pub(crate) table: ArcSwap<ActiveTable>,
    /// State kept across table swaps.
    pub(crate) registries: Registries,
    /// Active probes of the current table.
    pub(crate) health: HealthChecker,
    /// The Prometheus registry.
    pub(crate) metrics: Metrics,
    /// Command-line settings.
    pub(crate) settings: ProxySettings,
    /// A first table is serving.
    pub(crate) ready: AtomicBool,
    /// Readiness was withdrawn (SIGTERM received).
    pub(crate) stopping: AtomicBool,
    /// Whether the idle-connection reaper runs.
    pub(crate) reaper: AtomicBool,
    /// Turns true when the drain starts.
    pub(crate) drain: watch::Sender<bool>,
    /// Open client connections and WebSocket sessions, so a drain can wait for them.
    pub(crate) conns: Arc<ConnCount>,
    /// The process-wide connection limit used when `max_connections` is 0.
    pub(crate) capacity: Arc<Capacity>,
    /// The HTTP response cache (routes with `cache.enabled`).
    pub(crate) cache: HttpCache,
    /// Served for SNI names no Secret covers.
    pub(crate) default_cert: Arc<rustls::sign::CertifiedKey>,
    /// WebSocket handshakes with backends in progress (bounded, see [`MAX_PENDING_HANDSHAKES`]).
    pub(crate) handshakes: Arc<Semaphore>,
    /// Key of affinity cookie values (from `ProxySettings::affinity_key`).
    pub(crate) affinity_key: ring::hmac::Key,
}

impl Shared {
    /// Fresh state with an empty table.
    pub(crate) fn new(
        settings: ProxySettings,
        metrics: Metrics,
        default_cert: Arc<rustls::sign::CertifiedKey>,
    ) -> Self {
        let (drain, _) = watch::channel(false);
        Self {
            affinity_key: super::affinity_token::key(&settings.affinity_key.0),
            table: ArcSwap::from_pointee(ActiveTable::empty()),
            registries: Registries::new(&metrics, settings.max_ejection_percent),
            health: HealthChecker::default(),
            cache: HttpCache::new(settings.cache_max_bytes),
            metrics,
            settings,
            ready: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            reaper: AtomicBool::new(false),
            drain,
            conns: Arc::default(),
            capacity: Arc::new(Capacity::new(derived_max_connections())),
            default_cert,
            handshakes: Arc::new(Semaphore::new(MAX_PENDING_HANDSHAKES)),
        }
    }
}
