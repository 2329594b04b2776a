//! Opening a WebSocket session: gate, backend handshake, 101 validation, then the tunnel.

use super::forward::{UpstreamError, prepare_head, relay};
use super::handshake::{self, GateError};
use super::headers::strip_hop_by_hop;
use super::server::Forwarding;
use super::tunnel::{self, Session};
use super::upstream::{self, Exchange, Reply};
use super::{ProxyBody, respond};
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{Either, Empty};
use hyper::body::Incoming;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// One of a route's `maxConnections` session slots, released when the session ends.
pub(crate) struct SessionSlot(Arc<AtomicUsize>);

impl SessionSlot {
    fn take(count: &Arc<AtomicUsize>, limit: usize) -> Option<Self> {
        count
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < limit).then_some(n + 1)
            })
            .ok()
            .map(|_| SessionSlot(count.clone()))
    }
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Handles a request that tries to open a WebSocket.
pub(crate) async fn open(
    mut req: Request<Incoming>,
    f: &Forwarding<'_>,
    route_sessions: Option<&Arc<AtomicUsize>>,
) -> (Response<ProxyBody>, Option<String>) {
    let Forwarding {
        route,
        backend,
        pool,
        host,
        ctx,
        ..
    } = *f;
    if !backend.settings.websocket.enabled {
        let resp = respond::text(
            StatusCode::FORBIDDEN,
            "WebSocket is disabled for this route",
        );
        return f.reject("websocket_disabled", resp);
    }
    if let Err(e) = handshake::check_client(&req) {
        let mut resp = respond::text(e.status(), &e.to_string());
        if e == GateError::Version {
            resp.headers_mut().insert(
                header::SEC_WEBSOCKET_VERSION,
                HeaderValue::from_static("13"),
            );
        }
        return f.reject("bad_handshake", resp);
    }
    let limit = backend.settings.websocket.max_connections as usize;
    let slot = match route_sessions {
        Some(count) if limit > 0 => match SessionSlot::take(count, limit) {
            Some(slot) => Some(slot),
            None => {
                let mut resp = respond::text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &format!("this route already holds its limit of {limit} WebSocket sessions"),
                );
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                return f.reject("max_connections", resp);
            }
        },
        _ => None,
    };
    let Some(lease) = f.pick(req.headers()) else {
        return (UpstreamError::NoEndpoints.response(), None);
    };
    let endpoint = lease.0.label.clone();
    let Ok(_pending) = ctx.shared.handshakes.clone().try_acquire_owned() else {
        let mut resp = respond::text(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many WebSocket handshakes in progress",
        );
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return f.reject("max_connections", resp);
    };
    let key = req
        .headers()
        .get(header::SEC_WEBSOCKET_KEY)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let offered = handshake::offered_protocols(req.headers());
    let client_upgrade = hyper::upgrade::on(&mut req);

    let (mut parts, _body) = req.into_parts();
    prepare_head(&mut parts, &endpoint, host, ctx);
    parts
        .headers
        .insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    parts
        .headers
        .insert(header::UPGRADE, HeaderValue::from_static("websocket"));

    let settings = &backend.settings;
    let started = Instant::now();
    // connectTimeout covers TCP and, for HTTPS backends, the TLS handshake; requestTimeout the
    // whole exchange up to the response head.
    let ex = Exchange {
        endpoint: &lease.0,
        runtime: &pool.runtime,
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
            lease.0.answered(head.status);
            return (relay(head, body), Some(endpoint));
        }
        Err(e) => {
            lease.0.failure();
            let e = UpstreamError::from_exchange(&endpoint, &e);
            return (e.response(), Some(endpoint));
        }
    };
    lease.0.success();
    if let Err(why) = handshake::check_backend(&head.headers, &key, &offered) {
        drop(io);
        tracing::warn!(route, backend = %endpoint, why, "refused backend upgrade");
        // Close the client connection too, so nothing pipelined after the upgrade request is read.
        return (
            respond::text_and_close(StatusCode::BAD_GATEWAY, why),
            Some(endpoint),
        );
    }

    let mut client_resp = Response::new(Either::Right(http_body_util::Full::new(
        bytes::Bytes::new(),
    )));
    *client_resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let mut headers = head.headers;
    strip_hop_by_hop(&mut headers);
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    *client_resp.headers_mut() = headers;

    let session = Session::new(route, ctx, &endpoint, settings, started, (lease, slot));
    let backend = super::peer::Peer::backend(io, leftover.freeze());
    tokio::spawn(async move {
        let client = match client_upgrade.await {
            Ok(upgraded) => super::peer::Peer::client(upgraded),
            Err(e) => {
                tracing::warn!(error = %e, "client upgrade did not complete");
                return;
            }
        };
        tunnel::run(client, backend, session).await;
    });
    (client_resp, Some(endpoint))
}
