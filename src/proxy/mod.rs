//! The data plane: listeners, the request pipeline, HTTP forwarding, WebSocket sessions.
//!
//! Layers, each importing only those below it (no cycles):
//!
//! | layer | modules |
//! |---|---|
//! | handle | `mod.rs` ([`Proxy`]: apply, drain) |
//! | accept | `listeners` (accept loops, TLS), `server` (hyper per connection) |
//! | request | `pipeline` (phases + the one error rescue), `forward` (HTTP, cache), `websocket/` |
//! | exchange | `upstream/` (HTTP/1.1 to backends), `rewrite` (heads across the proxy) |
//! | state | `state` (what connections share), `table` (the compile step), `context`, `access` |
//! | leaves | `error`, `respond`, `accounting`, `registry`, `settings`, `request_id`, `admit`, `wire`, `affinity`, `headers`, `pools`, `firewall`, `health`, `cache`, `tls` |
//!
//! One `ArcSwap<ActiveTable>` holds the compiled table; each request loads it once. Swapping
//! never touches established connections or sessions.

mod access;
mod accounting;
mod admit;
mod affinity;
mod affinity_token;
mod cache;
mod context;
mod error;
mod filters;
mod firewall;
mod forward;
mod headers;
mod health;
mod http2;
mod listeners;
mod pipeline;
mod pools;
mod registry;
mod request_id;
mod respond;
mod rewrite;
mod send_timeout;
mod server;
mod settings;
mod state;
mod table;
mod tls;
mod upstream;
mod websocket;
pub mod wire;
mod workers;

pub use settings::{Http2Settings, ProxySettings};
pub use state::MAX_PENDING_HANDSHAKES;
pub use table::BindError;
pub use websocket::gate::{GateError, accept_key, check_client};
pub use workers::{WorkerThreads, Workers, default_count as default_worker_count};

use crate::ir::RouteTable;
use crate::metrics::Metrics;
use bytes::Bytes;
use http_body_util::{Either, Full};
use state::Shared;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use table::ActiveTable;

/// Body of every response the proxy sends: a relayed backend body or one of its own.
pub(crate) type ProxyBody = Either<upstream::BackendBody, Full<Bytes>>;

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
            shared.registries.pools.reap_idle();
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
        // Generating a self-signed certificate does not depend on input; failure would mean a
        // broken crypto provider, which no request could work around.
        let default_cert = tls::default_certificate().expect("a self-signed default certificate");
        let shared = Arc::new(Shared::new(settings, metrics, default_cert));
        Self {
            listeners: Arc::new(listeners::Listeners::new(shared.clone())),
            shared,
        }
    }

    /// Compiles `table` into the active table, stores it once, starts and stops probes, and
    /// opens/closes listeners to match its ports. Open connections and sessions keep running on
    /// what they started with. Returns the problems: ports that failed to bind, certificates
    /// that failed to load.
    pub async fn apply(&self, table: RouteTable) -> Vec<BindError> {
        let shared = &self.shared;
        let (active, mut errors) = ActiveTable::compile(
            table,
            &shared.registries,
            (&shared.default_cert, shared.settings.http2.enabled),
        );
        shared.health.sync(
            active
                .bound_pools()
                .map(|(backend, pool)| (backend, &pool.endpoints[..])),
        );
        let ports = active.ports();
        shared.table.store(Arc::new(active));
        shared.registries.pools.prune();
        shared.registries.route_sessions.prune(|_| {});
        shared.registries.limiters.prune();
        if !shared.reaper.swap(true, Ordering::SeqCst) {
            spawn_idle_reaper(Arc::downgrade(shared));
        }
        errors.extend(self.listeners.sync(&ports).await);
        shared.ready.store(true, Ordering::SeqCst);
        errors
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
    /// accepting, every WebSocket session gets close 1001 (spread over `close_spread`) and HTTP
    /// connections finish their in-flight request. Returns once nothing is open or `deadline`
    /// (counted from the call) passed.
    pub async fn drain(&self, deadline: Duration) {
        let until = tokio::time::Instant::now()
            .checked_add(deadline)
            .unwrap_or_else(far_future);
        self.shared.stopping.store(true, Ordering::SeqCst);
        tokio::time::sleep(self.shared.settings.drain_accept_delay.min(deadline / 2)).await;
        self.listeners.close_all().await;
        self.shared.drain.send_replace(true);
        let _ = tokio::time::timeout_at(until, self.shared.conns.wait_idle()).await;
    }

    /// The metrics registry.
    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }
}

/// A deadline no drain reaches (about 30 years), for durations too large to add to a clock.
fn far_future() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(86400 * 365 * 30)
}
