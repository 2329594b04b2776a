//! The request pipeline: named phases that each return `Result`, and the one rescue that turns an
//! error into a response, counts a rejection and logs the reason. Phases read only the request's
//! method, target and headers, so an HTTP/2 stream enters the same pipeline as an HTTP/1.1
//! request.
//!
//! admit (RFC 9112 rules, path normalisation, identity headers) -> head limits -> route ->
//! firewall (+ rate limit) -> route filters (redirect, request changes) -> WebSocket session or
//! forward (cache inside) -> response filters

use super::access::{self, Entry, method_label};
use super::admit::{self, Admitted};
use super::context::{ConnCtx, RequestCtx};
use super::error::{ProxyError, Reason};
use super::headers::{client_ip, request_host};
use super::table::{ActiveTable, Routed};
use super::{ProxyBody, affinity, filters, forward, request_id, websocket};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use std::net::IpAddr;
use std::sync::Arc;
use tokio::time::Instant;

/// Headers the proxy adds to the request's map: `X-Request-Id`, `X-Real-IP` and possibly
/// `Host` (the forwarding headers are written with the backend head instead).
const ADDED_HEADERS: usize = 3;

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
    let trusted = is_trusted(&ctx, ctx.client.peer);
    // Room for the headers the proxy adds (request id, identity, forwarding) at once: growing
    // the map one insert at a time rehashes it twice per request.
    req.headers_mut().reserve(ADDED_HEADERS);
    let request_id = request_id::ensure(req.headers_mut(), trusted);
    let mut outcome = Outcome::default();
    let (host, path, result) = match admit::admit(&mut req, &ctx) {
        Ok(admitted) => {
            let result = phases(req, &ctx, &admitted, &mut outcome).await;
            (admitted.host, admitted.matching, result)
        }
        Err(e) => {
            let host = request_host(req.headers(), req.uri());
            (host, req.uri().path().to_string(), Err(e))
        }
    };
    let (resp, reason) = match result {
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
        protocol: ctx.protocol.label(),
        requests: &ctx.protocol_requests,
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
            request_id: request_id.as_str(),
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
    request_id: &request_id::RequestId,
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
            request_id = request_id.as_str(),
            cause = %detail,
            "backend exchange failed"
        );
    }
    let mut resp = e.response();
    resp.headers_mut()
        .insert(request_id::X_REQUEST_ID, request_id.header_value());
    resp
}

/// The fixed phases. Returns the response of the backend (or the cache, or the 101).
async fn phases(
    mut req: Request<Incoming>,
    ctx: &Arc<ConnCtx>,
    admitted: &Admitted,
    outcome: &mut Outcome,
) -> Result<Response<ProxyBody>, ProxyError> {
    let (host, path) = (admitted.host.as_str(), admitted.matching.as_str());
    check_head(&req, ctx)?;
    let table = ctx.shared.table.load_full();
    let routed = route(&table, ctx, host, path, &req)?;
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
    admit::apply_path(&mut req, admitted, routed.route.forward_original_path);
    // Gateway API route filters: a redirect is answered here without a backend; the request
    // changes apply to what is sent on, after the path normalisation.
    let filters = routed.route.filters.as_deref();
    if let Some(fl) = filters {
        if let Some(resp) = filters::redirect(fl, &req, host, ctx.client.tls, ctx.port) {
            return Ok(resp);
        }
        filters::on_request(fl, &mut req);
    }
    let key = &ctx.shared.affinity_key;
    let pinned = affinity::pinned(routed.backend, routed.pool, req.headers(), key);
    let rctx = RequestCtx {
        route: &routed.route.id,
        backend: routed.backend,
        pool: routed.pool,
        host,
        client,
        conn: ctx,
        pinned,
        request: admitted.key,
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
        (routed.route.path.path(), ctx.client.tls),
        key,
    );
    if let Some(fl) = filters {
        filters::on_response(fl, &mut resp);
    }
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

/// Finds the route for listener port, host, path and the request's method, headers and query
/// (Gateway API matches).
fn route<'t, B>(
    table: &'t ActiveTable,
    ctx: &ConnCtx,
    host: &str,
    path: &str,
    req: &Request<B>,
) -> Result<Routed<'t>, ProxyError> {
    let facts = crate::ir::RequestFacts {
        method: req.method().as_str(),
        headers: req.headers(),
        query: req.uri().query(),
    };
    table.route(ctx.port, host, path, &facts).ok_or_else(|| {
        let message = format!("no route for host {host:?} path {path:?}");
        ProxyError::new(StatusCode::NOT_FOUND, Reason::NoRoute, message)
    })
}
