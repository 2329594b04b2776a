//! What a request handler knows: its connection ([`ConnCtx`]) and, once routed, its route,
//! backend and client ([`RequestCtx`]). Leaf types every phase shares.

use super::access::SeriesCache;
use super::accounting::ConnGuard;
use super::error::ProxyError;
use super::headers::ClientInfo;
use super::http2::ClientProtocol;
use super::pools::{BoundPool, EndpointState, Lease, hash_key};
use super::send_timeout::SendDeadline;
use super::state::Shared;
use crate::ir::Backend;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// One client connection.
pub(crate) struct ConnCtx {
    /// Proxy state.
    pub(crate) shared: Arc<Shared>,
    /// The listener port it arrived on.
    pub(crate) port: u16,
    /// Whether it is TLS.
    pub(crate) tls: bool,
    /// HTTP/1 or HTTP/2.
    pub(crate) protocol: ClientProtocol,
    /// Peer address and TLS, formatted once.
    pub(crate) client: ClientInfo,
    /// The TCP peer.
    pub(crate) peer: SocketAddr,
    /// The listener capacity slot; sessions keep the context (and so the slot) alive.
    pub(crate) _slot: ConnGuard,
    /// Metric handles of the last request on this connection.
    pub(crate) series: SeriesCache,
    /// `wsgate_client_requests_total` of this connection's protocol.
    pub(crate) protocol_requests: prometheus::IntCounter,
    /// Turns the connection's send timeout off once it carries a WebSocket session.
    pub(crate) send_deadline: SendDeadline,
}

impl ConnCtx {
    /// The context of a connection accepted on `port` from `peer`, with or without TLS, speaking
    /// `protocol`, holding its capacity slot and the switch of its send timeout.
    pub(crate) fn new(
        shared: Arc<Shared>,
        (port, tls, protocol): (u16, bool, ClientProtocol),
        peer: SocketAddr,
        (slot, send_deadline): (ConnGuard, SendDeadline),
    ) -> Self {
        let protocol_requests = shared
            .metrics
            .client_requests
            .with_label_values(&[protocol.label()]);
        Self {
            client: ClientInfo::new(peer.ip(), tls),
            shared,
            port,
            tls,
            protocol,
            peer,
            _slot: slot,
            series: SeriesCache::default(),
            protocol_requests,
            send_deadline,
        }
    }

    /// The listener's protocol label for logs: `http` or `https`.
    pub(crate) fn scheme(&self) -> &'static str {
        if self.tls { "https" } else { "http" }
    }
}

/// A routed request as the forwarding phases see it.
#[derive(Clone, Copy)]
pub(crate) struct RequestCtx<'a> {
    /// Route id (metric label).
    pub(crate) route: &'a str,
    /// The route's backend.
    pub(crate) backend: &'a Backend,
    /// Its runtime state.
    pub(crate) pool: &'a BoundPool,
    /// Request host without port.
    pub(crate) host: &'a str,
    /// The client's address (trusted proxies resolved).
    pub(crate) client: IpAddr,
    /// The connection.
    pub(crate) conn: &'a Arc<ConnCtx>,
    /// The available endpoint the request's affinity cookie names.
    pub(crate) pinned: Option<&'a Arc<EndpointState>>,
    /// Identifies the request for passive health (method + normalised path).
    pub(crate) request: u64,
}

impl RequestCtx<'_> {
    /// Chooses an available endpoint by the backend's policy.
    pub(crate) fn pick(&self, headers: &http::HeaderMap) -> Result<Lease, ProxyError> {
        if self.backend.settings.unresolved {
            return Err(ProxyError::invalid_backend());
        }
        if let Some(ep) = self.pinned.filter(|e| e.available()) {
            return Ok(Lease::new(ep.clone(), self.request));
        }
        let policy = &self.backend.settings.load_balancing;
        self.pool
            .pick(policy, hash_key(policy, headers, self.client), self.request)
            .ok_or_else(ProxyError::no_endpoints)
    }
}
