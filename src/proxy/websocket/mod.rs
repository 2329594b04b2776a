//! WebSocket sessions: the handshake gate, opening the backend session and validating its `101`,
//! then the frame-aware tunnel.
//!
//! | module | job |
//! |---|---|
//! | `gate` | the client handshake rules and the backend 101 check (pure) |
//! | `frames` | the frame tracker: bytes in, actions out (pure) |
//! | `pump` | one direction: carries out the tracker's actions on sockets |
//! | `state` | what a session's directions and controller share; the proxy's own frames |
//! | `session` | both directions, the timers, the drain, the session's metrics and log |
//! | `peer` | the two ends of a session as socket halves |

pub(crate) mod frames;
pub(crate) mod gate;
mod peer;
mod pump;
mod session;
mod state;

use super::ProxyBody;
use super::accounting::SessionSlot;
use super::context::RequestCtx;
use super::error::{ProxyError, Reason};
use super::headers::strip_hop_by_hop;
use super::http2::ExtendedConnect;
use super::rewrite;
use super::upstream::{self, Exchange, Reply};
use gate::GateError;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{Either, Empty};
use hyper::body::Incoming;
use session::Session;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use tokio::time::Instant;

/// Whether a request tries to open a WebSocket: an HTTP/1.1 upgrade attempt (see
/// [`gate::is_websocket_attempt`]) or an admitted RFC 8441 extended CONNECT.
pub(crate) fn is_attempt<B>(req: &Request<B>) -> bool {
    req.extensions().get::<ExtendedConnect>().is_some() || gate::is_websocket_attempt(req)
}

impl From<GateError> for ProxyError {
    fn from(e: GateError) -> Self {
        ProxyError::new(e.status(), Reason::BadHandshake, e.to_string())
    }
}

/// Handles a request that tries to open a WebSocket: policy checks, then the backend handshake,
/// then the 101 to the client and the tunnel in its own task. About 100 lines, kept in order:
/// each step holds a guard (session slot, endpoint lease, affinity pin) that the next one
/// moves into the session, and reading them top to bottom is the handshake's sequence.
pub(crate) async fn open(
    mut req: Request<Incoming>,
    f: &RequestCtx<'_>,
    route_sessions: Option<&Arc<AtomicUsize>>,
) -> Result<(Response<ProxyBody>, Option<String>), ProxyError> {
    let settings = &f.backend.settings;
    if !settings.websocket.enabled {
        return Err(ProxyError::new(
            StatusCode::FORBIDDEN,
            Reason::WebsocketDisabled,
            "WebSocket is disabled for this route",
        ));
    }
    // Over HTTP/2 the client's side is an extended CONNECT stream (RFC 8441), over HTTP/1.1 the
    // connection itself; the backend gets an HTTP/1.1 Upgrade either way.
    let h2 = req.extensions().get::<ExtendedConnect>().is_some();
    if h2 {
        gate::check_client_h2(&req)?;
    } else {
        gate::check_client(&req)?;
    }
    let slot = take_slot(settings.websocket.max_connections as usize, route_sessions)?;
    let lease = f.pick(req.headers())?;
    let endpoint = lease.0.label.clone();
    let Ok(_pending) = f.conn.shared.handshakes.clone().try_acquire_owned() else {
        let e = ProxyError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            Reason::MaxConnections,
            "too many WebSocket handshakes in progress",
        );
        return Err(e.retry_after(1));
    };
    let key = if h2 {
        gate::fresh_key()
    } else {
        req.headers()
            .get(header::SEC_WEBSOCKET_KEY)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let offered = gate::offered_protocols(req.headers());
    let client_upgrade = hyper::upgrade::on(&mut req);

    let (mut parts, _body) = req.into_parts();
    let forwarding = rewrite::request_head(&mut parts, &endpoint, f.host, f.conn);
    parts
        .headers
        .insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    parts
        .headers
        .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if h2 {
        // Admission already made the extended CONNECT a GET; the key is wsgate's own.
        if let Ok(v) = HeaderValue::from_str(&key) {
            parts.headers.insert(header::SEC_WEBSOCKET_KEY, v);
        }
    }

    let started = Instant::now();
    // connectTimeout covers TCP and, for HTTPS backends, the TLS handshake; requestTimeout the
    // whole exchange up to the response head.
    let ex = Exchange {
        endpoint: &lease.0,
        forwarding: &forwarding,
        runtime: &f.pool.runtime,
        upgrade: true,
        request_timeout: settings
            .response_timeout
            .unwrap_or(settings.request_timeout)
            .get(),
    };
    let (head, io, leftover) = match upstream::send(&ex, &parts, Empty::<bytes::Bytes>::new()).await
    {
        Ok(Reply::Upgraded(head, io, leftover)) => (head, io, leftover),
        Ok(Reply::Response(head, body)) => {
            // Relayed as HTTP; this dedicated backend connection is never reused.
            lease.answered(head.status);
            return Ok((rewrite::response(head, body), Some(endpoint)));
        }
        Err(e) => {
            lease.0.failure();
            return Err(ProxyError::exchange(&endpoint, &e));
        }
    };
    lease.0.success();
    if let Err(why) = gate::check_backend(&head.headers, &key, &offered) {
        drop(io);
        // Close the client connection too, so nothing pipelined after the upgrade request is read.
        let e = ProxyError::new(
            StatusCode::BAD_GATEWAY,
            Reason::UpstreamBadUpgrade,
            "the backend refused the WebSocket upgrade",
        );
        return Err(e.detail(why).at(&endpoint).closing());
    }

    let client_resp = if h2 {
        accepted_stream(head.headers)
    } else {
        switching_protocols(head.headers)
    };

    // From here the connection carries a session, which has its own liveness rules.
    f.conn.send_deadline.disarm();
    let session = Session::new(f.route, f.conn, &endpoint, settings, started, (lease, slot));
    let backend = peer::Peer::backend(io, leftover.freeze());
    // Boxed: the session's future is large and `tokio::spawn` moves it several times (see
    // `server::serve`).
    tokio::spawn(Box::pin(async move {
        let client = match client_upgrade.await {
            Ok(upgraded) => peer::Peer::client(upgraded),
            Err(e) => {
                tracing::warn!(error = %e, "client upgrade did not complete");
                return;
            }
        };
        session::run(client, backend, session).await;
    }));
    Ok((client_resp, Some(endpoint)))
}

/// The client's `101` for an HTTP/1.1 upgrade: the backend's headers without hop-by-hop ones.
fn switching_protocols(mut headers: http::HeaderMap) -> Response<ProxyBody> {
    let mut resp = Response::new(Either::Right(
        http_body_util::Full::new(bytes::Bytes::new()),
    ));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    strip_hop_by_hop(&mut headers);
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    *resp.headers_mut() = headers;
    resp
}

/// The client's `200` for an RFC 8441 extended CONNECT: the backend's `101` headers (chosen
/// subprotocol and extensions, cookies, ...) without those that belong to the HTTP/1.1
/// handshake or would announce a body; the stream then carries the WebSocket frames.
fn accepted_stream(mut headers: http::HeaderMap) -> Response<ProxyBody> {
    let mut resp = Response::new(Either::Right(
        http_body_util::Full::new(bytes::Bytes::new()),
    ));
    strip_hop_by_hop(&mut headers);
    for name in [header::SEC_WEBSOCKET_ACCEPT, header::CONTENT_LENGTH] {
        headers.remove(name);
    }
    *resp.headers_mut() = headers;
    resp
}

/// One of the route's `maxConnections` session slots (none needed when it has no limit).
fn take_slot(
    limit: usize,
    route_sessions: Option<&Arc<AtomicUsize>>,
) -> Result<Option<SessionSlot>, ProxyError> {
    match route_sessions {
        Some(count) if limit > 0 => match SessionSlot::take(count, limit) {
            Some(slot) => Ok(Some(slot)),
            None => {
                let message =
                    format!("this route already holds its limit of {limit} WebSocket sessions");
                let e = ProxyError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    Reason::MaxConnections,
                    message,
                );
                Err(e.retry_after(1))
            }
        },
        _ => Ok(None),
    }
}
