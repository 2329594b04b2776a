//! Opening a WebSocket session: gate, backend handshake, 101 validation, then the tunnel.

use super::forward::{UpstreamError, is_timeout, prepare_head};
use super::handshake::{self, GateError};
use super::headers::strip_hop_by_hop;
use super::server::Forwarding;
use super::tunnel::{self, Session};
use super::{ProxyBody, respond};
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{Either, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
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
    let ep = lease.0.endpoint.clone();
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
    if let Err(e) = prepare_head(&mut parts, pool.runtime.scheme, &endpoint, host, ctx) {
        return (
            respond::text(StatusCode::BAD_REQUEST, &format!("bad request target: {e}")),
            None,
        );
    }
    // Origin-form for a direct HTTP/1.1 connection.
    let pq = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    parts.uri = pq.parse().unwrap_or_default();
    parts
        .headers
        .insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    parts
        .headers
        .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    let backend_req = Request::from_parts(parts, Empty::<bytes::Bytes>::new());

    let settings = &backend.settings;
    let started = Instant::now();
    let exchange = async {
        // connectTimeout covers TCP and, for HTTPS backends, the TLS handshake.
        let connect = super::tls::connect(&ep.host, ep.port, pool.runtime.tls.as_ref());
        let stream = match settings.connect_timeout.get() {
            Some(t) => tokio::time::timeout(t, connect)
                .await
                .map_err(|_| UpstreamError::Timeout(endpoint.clone()))?,
            None => connect.await,
        }
        .map_err(|e| UpstreamError::Failed(endpoint.clone(), e.to_string()))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| UpstreamError::Failed(endpoint.clone(), e.to_string()))?;
        let conn_task = tokio::spawn(conn.with_upgrades());
        let sent = sender.send_request(backend_req);
        let resp = match settings.request_timeout.get() {
            Some(t) => match tokio::time::timeout(t, sent).await {
                Ok(r) => r,
                Err(_) => {
                    conn_task.abort();
                    return Err(UpstreamError::Timeout(endpoint.clone()));
                }
            },
            None => sent.await,
        };
        resp.map_err(|e| {
            conn_task.abort();
            if is_timeout(&e) {
                UpstreamError::Timeout(endpoint.clone())
            } else {
                UpstreamError::Failed(endpoint.clone(), e.to_string())
            }
        })
        .map(|r| (r, conn_task))
    };
    let (mut resp, conn_task) = match exchange.await {
        Ok(x) => x,
        Err(e) => {
            lease.0.failure();
            return (e.response(), Some(endpoint));
        }
    };
    if resp.status().is_server_error() {
        lease.0.failure();
    } else {
        lease.0.success();
    }

    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        // Relay as HTTP; this dedicated backend connection is never reused.
        let (mut p, body) = resp.into_parts();
        strip_hop_by_hop(&mut p.headers);
        return (Response::from_parts(p, Either::Left(body)), Some(endpoint));
    }
    if let Err(why) = handshake::check_backend(&resp, &key, &offered) {
        conn_task.abort();
        drop(resp);
        tracing::warn!(route, backend = %endpoint, why, "refused backend upgrade");
        // Close the client connection too, so nothing pipelined after the upgrade request is read.
        return (
            respond::text_and_close(StatusCode::BAD_GATEWAY, why),
            Some(endpoint),
        );
    }

    let backend_upgrade = hyper::upgrade::on(&mut resp);
    let mut client_resp = Response::new(Either::Right(http_body_util::Full::new(
        bytes::Bytes::new(),
    )));
    *client_resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let mut headers = resp.headers().clone();
    strip_hop_by_hop(&mut headers);
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    *client_resp.headers_mut() = headers;

    let session = Session::new(route, ctx, &endpoint, settings, started, (lease, slot));
    tokio::spawn(async move {
        let (client, backend) = match tokio::join!(client_upgrade, backend_upgrade) {
            (Ok(c), Ok(b)) => (c, b),
            (c, b) => {
                tracing::warn!(
                    client_ok = c.is_ok(),
                    backend_ok = b.is_ok(),
                    "upgrade did not complete"
                );
                return;
            }
        };
        tunnel::run(TokioIo::new(client), TokioIo::new(backend), session).await;
    });
    (client_resp, Some(endpoint))
}
