//! The compile step: a translated `RouteTable` plus the runtime registries become one
//! `ActiveTable` (backend state, compiled firewalls, session counters, TLS server configs), which
//! the proxy stores once. A request or TLS handshake therefore always sees routes and
//! certificates of the same configuration.

use super::firewall::{CompiledFirewall, LimiterRegistry};
use super::pools::{BoundPool, PoolRegistry};
use super::registry::Registry;
use super::tls;
use crate::ir::{Backend, ListenerProtocol, Route, RouteTable};
use rustls::sign::CertifiedKey;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

/// A problem found while compiling: the port it concerns and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot listen on port {port}: {message}")]
pub struct BindError {
    /// The configured port.
    pub port: u16,
    /// Why.
    pub message: String,
}

/// The registries whose state outlives one table.
pub(crate) struct Registries {
    /// Per-backend and per-endpoint runtime state.
    pub(crate) pools: PoolRegistry,
    /// Rate-limit buckets per firewall.
    pub(crate) limiters: LimiterRegistry,
    /// Open sessions per route with `maxConnections`.
    pub(crate) route_sessions: Registry<Arc<str>, AtomicUsize>,
}

impl Registries {
    /// Empty registries; endpoint state reports `wsgate_backend_up` into `metrics`.
    pub(crate) fn new(metrics: &crate::metrics::Metrics, max_ejection_percent: u8) -> Self {
        Self {
            pools: PoolRegistry::new(metrics.backend_up.clone(), max_ejection_percent),
            limiters: LimiterRegistry::default(),
            route_sessions: Registry::default(),
        }
    }
}

/// The routing table with everything the data path needs at hand.
pub(crate) struct ActiveTable {
    /// The IR as translated.
    pub(crate) ir: Arc<RouteTable>,
    pools: Vec<BoundPool>,
    firewalls: Vec<CompiledFirewall>,
    /// Open-session counters of routes with `maxConnections`, by route id.
    route_sessions: HashMap<Arc<str>, Arc<AtomicUsize>>,
    /// Server config per HTTPS listener port.
    tls: HashMap<u16, Arc<rustls::ServerConfig>>,
}

/// What a request needs once it is routed.
pub(crate) struct Routed<'a> {
    /// The matched route.
    pub(crate) route: &'a Route,
    /// Its backend.
    pub(crate) backend: &'a Backend,
    /// The backend's runtime state.
    pub(crate) pool: &'a BoundPool,
    /// The route's firewall.
    pub(crate) firewall: Option<&'a CompiledFirewall>,
    /// The route's session counter when its backend limits sessions.
    pub(crate) sessions: Option<&'a Arc<AtomicUsize>>,
}

impl ActiveTable {
    /// A table that routes nothing.
    pub(crate) fn empty() -> Self {
        Self {
            ir: Arc::default(),
            pools: Vec::new(),
            firewalls: Vec::new(),
            route_sessions: HashMap::new(),
            tls: HashMap::new(),
        }
    }

    /// Compiles `ir` against the registries; HTTPS listeners get `default_cert` for unknown
    /// names and offer `h2` by ALPN when `h2` is set. Certificates that fail to load are
    /// reported and left out; the rest serves.
    pub(crate) fn compile(
        ir: RouteTable,
        reg: &Registries,
        (default_cert, h2): (&Arc<CertifiedKey>, bool),
    ) -> (Self, Vec<BindError>) {
        let pools = ir.backends.iter().map(|b| reg.pools.bind(b)).collect();
        let firewalls = ir
            .firewalls
            .iter()
            .map(|f| reg.limiters.compile(f))
            .collect();
        let route_sessions = session_counters(&ir, &reg.route_sessions);
        let mut errors = Vec::new();
        let mut configs = HashMap::new();
        for l in ir
            .listeners
            .iter()
            .filter(|l| l.protocol == ListenerProtocol::Https)
        {
            match tls::server_config(l, default_cert, h2) {
                Ok((config, problems)) => {
                    errors.extend(problems.into_iter().map(|message| BindError {
                        port: l.port,
                        message,
                    }));
                    configs.insert(l.port, config);
                }
                Err(e) => errors.push(BindError {
                    port: l.port,
                    message: format!("TLS configuration: {e}"),
                }),
            }
        }
        let table = Self {
            ir: Arc::new(ir),
            pools,
            firewalls,
            route_sessions,
            tls: configs,
        };
        (table, errors)
    }

    /// Routes a request by listener port, host and path.
    pub(crate) fn route(
        &self,
        port: u16,
        host: &str,
        path: &str,
        facts: &crate::ir::RequestFacts<'_>,
    ) -> Option<Routed<'_>> {
        let (route, backend) = self.ir.route_request(port, host, path, Some(facts))?;
        // A weighted split picks per request; without one this is `route.backend` (and no
        // random number is drawn).
        let index = if route.split.is_some() {
            route.pick_backend(rand::random())
        } else {
            route.backend
        };
        let backend = self.ir.backends.get(index).unwrap_or(backend);
        Some(Routed {
            route,
            backend,
            pool: self.pools.get(index)?,
            firewall: route.firewall.and_then(|f| self.firewalls.get(f)),
            sessions: self.route_sessions.get(&route.id),
        })
    }

    /// The backends with their runtime state.
    pub(crate) fn bound_pools(&self) -> impl Iterator<Item = (&Backend, &BoundPool)> {
        self.ir.backends.iter().zip(self.pools.iter())
    }

    /// The TLS server config of an HTTPS listener port.
    pub(crate) fn tls(&self, port: u16) -> Option<&Arc<rustls::ServerConfig>> {
        self.tls.get(&port)
    }

    /// The ports to listen on.
    pub(crate) fn ports(&self) -> Vec<u16> {
        self.ir.listeners.iter().map(|l| l.port).collect()
    }
}

/// Session counters for routes whose backend limits sessions, shared with the previous table so
/// a reload does not reset the count.
fn session_counters(
    ir: &RouteTable,
    known: &Registry<Arc<str>, AtomicUsize>,
) -> HashMap<Arc<str>, Arc<AtomicUsize>> {
    let mut out = HashMap::new();
    for l in ir.listeners.iter() {
        let routes = l
            .virtual_hosts
            .iter()
            .flat_map(|vh| vh.routes.iter())
            .chain(l.default_route.iter());
        for r in routes {
            // A weighted route may send a session to any of its backends.
            let split = r
                .split
                .as_deref()
                .unwrap_or_default()
                .iter()
                .map(|(b, _)| *b);
            let limited = std::iter::once(r.backend).chain(split).any(|i| {
                ir.backends
                    .get(i)
                    .is_some_and(|b| b.settings.websocket.max_connections > 0)
            });
            if limited && !out.contains_key(&r.id) {
                let counter = known.get_or_insert_with(r.id.clone(), AtomicUsize::default);
                out.insert(r.id.clone(), counter);
            }
        }
    }
    out
}
