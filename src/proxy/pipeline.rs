//! The request pipeline: named phases that each return `Result`, and the one rescue that turns an
//! error into a response, counts a rejection and logs the reason. Phases read only the request's
//! method, target and headers, so an HTTP/2 stream enters the same pipeline as an HTTP/1.1
//! request.
//!
//! head limits -> route -> firewall (+ rate limit) -> WebSocket session or forward (cache inside)

use super::access::{self, Entry, method_label};
use super::context::{ConnCtx, RequestCtx};
use super::error::{ProxyError, Reason};
use super::headers::{client_ip, request_host};
use super::table::{ActiveTable, Routed};
use super::{ProxyBody, affinity, forward, request_id, websocket};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use std::net::IpAddr;
use std::sync::Arc;
use tokio::time::Instant;

/// What the phases learnt about a request, for the log line even when a phase fails.
#[derive(Default)]
struct Outcome {
    route: Option<Arc<str>>,
    endpoint: Option<String>,
}

/// Serves one request: runs the phases, rescues their error, records the request.
pub(crate) async fn handle(mut req: Request<Incoming>, ctx: Arc<ConnCtx>) -> Response<ProxyBody> {
    let start = Instant::now();
    let method = method_label(req.method());
    let host = request_host(req.headers(), req.uri());
    let path = req.uri().path().to_string();
    let trusted = is_trusted(&ctx, ctx.client.peer);
    let request_id = request_id::ensure(req.headers_mut(), trusted);
    let mut outcome = Outcome::default();
    let (resp, reason) = match phases(req, &ctx, &host, &path, &mut outcome).await {
        Ok(resp) => (resp, None),
        Err(e) => {
            let reason = e.reason.label();
            (rescue(&ctx, &mut outcome, e, &request_id), Some(reason))
        }
    };
    let conn = access::Conn {
        peer: ctx.peer,
        port: ctx.port,
        scheme: ctx.scheme(),
    };
    access::record(
        &ctx.series,
        &ctx.shared.metrics,
        &conn,
        &Entry {
            route: outcome.route.as_deref().unwrap_or(""),
            method,
            host: &host,
            path: &path,
            status: resp.status(),
            start,
            endpoint: outcome.endpoint.as_deref(),
            reason,
            request_id: request_id.to_str().unwrap_or(""),
        },
    );
    resp
}

fn is_trusted(ctx: &ConnCtx, ip: IpAddr) -> bool {
    ctx.shared
        .settings
        .trusted_proxies
        .iter()
        .any(|n| n.contains(&ip))
}

/// The one place an error becomes a response: rejections are counted, backend failures logged
/// with their cause (never shown to the client), and the body names the request id.
fn rescue(
    ctx: &ConnCtx,
    outcome: &mut Outcome,
    e: ProxyError,
    request_id: &http::HeaderValue,
) -> Response<ProxyBody> {
    let route = outcome.route.as_deref().unwrap_or("");
    if e.reason.is_rejection() {
        ctx.shared
            .metrics
            .rejected
            .with_label_values(&[route, e.reason.label()])
            .inc();
    }
    if e.endpoint.is_some() {
        outcome.endpoint = e.endpoint.clone();
    }
    if let Some(detail) = &e.detail {
        tracing::warn!(
            route,
            backend = e.endpoint.as_deref().unwrap_or(""),
            reason = e.reason.label(),
            request_id = request_id.to_str().unwrap_or(""),
            cause = %detail,
            "backend exchange failed"
        );
    }
    let mut resp = e.response();
    resp.headers_mut()
        .insert(request_id::X_REQUEST_ID, request_id.clone());
    resp
}

/// The fixed phases. Returns the response of the backend (or the cache, or the 101).
async fn phases(
    req: Request<Incoming>,
    ctx: &Arc<ConnCtx>,
    host: &str,
    path: &str,
    outcome: &mut Outcome,
) -> Result<Response<ProxyBody>, ProxyError> {
    check_head(&req, ctx)?;
    let table = ctx.shared.table.load_full();
    let routed = route(&table, ctx, host, path)?;
    outcome.route = Some(routed.route.id.clone());
    let client = client_ip(
        ctx.client.peer,
        req.headers(),
        &ctx.shared.settings.trusted_proxies,
    );
    let websocket = websocket::is_attempt(&req);
    if let Some(fw) = routed.firewall {
        fw.check(req.method(), path, req.headers(), client, websocket)?;
    }
    let key = &ctx.shared.affinity_key;
    let pinned = affinity::pinned(routed.backend, routed.pool, req.headers(), key);
    let https = affinity::client_https(
        ctx.tls,
        ctx.client.peer,
        req.headers(),
        &ctx.shared.settings.trusted_proxies,
    );
    let rctx = RequestCtx {
        route: &routed.route.id,
        backend: routed.backend,
        pool: routed.pool,
        host,
        client,
        conn: ctx,
        pinned,
    };
    let (mut resp, endpoint) = if websocket {
        // Boxed: the handshake's large future would otherwise be part of every request's.
        Box::pin(websocket::open(req, &rctx, routed.sessions)).await?
    } else {
        forward::forward(req, &rctx).await?
    };
    affinity::issue(
        resp.headers_mut(),
        routed.backend,
        routed.pool,
        (pinned, endpoint.as_deref()),
        (routed.route.path.path(), https),
        key,
    );
    outcome.endpoint = endpoint;
    Ok(resp)
}

/// Limits on the request head that hyper does not enforce itself.
fn check_head<B>(req: &Request<B>, ctx: &ConnCtx) -> Result<(), ProxyError> {
    let max_head = ctx.shared.settings.max_header_bytes;
    let head_bytes = head_size(req);
    if head_bytes > max_head {
        let message = format!("request head of {head_bytes} bytes exceeds {max_head}");
        let status = StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE;
        return Err(ProxyError::new(status, Reason::HeaderTooLarge, message).closing());
    }
    Ok(())
}

/// Size of the request head as sent: request line and header lines.
fn head_size<B>(req: &Request<B>) -> usize {
    let target = req.uri().path_and_query().map_or(1, |pq| pq.as_str().len());
    let line = req.method().as_str().len() + target + 12;
    req.headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum::<usize>()
        + line
}

/// Finds the route for listener port, host and path.
fn route<'t>(
    table: &'t ActiveTable,
    ctx: &ConnCtx,
    host: &str,
    path: &str,
) -> Result<Routed<'t>, ProxyError> {
    table.route(ctx.port, host, path).ok_or_else(|| {
        let message = format!("no route for host {host:?} path {path:?}");
        ProxyError::new(StatusCode::NOT_FOUND, Reason::NoRoute, message)
    })
}
