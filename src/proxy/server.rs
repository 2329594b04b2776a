//! One client connection: HTTP/1.1 via hyper, request routing, and the per-request phases
//! (route -> policy -> pick endpoint -> forward -> log/metrics).

use super::headers::{ClientInfo, client_ip, request_host};
use super::listeners::ConnGuard;
use super::pools::BoundPool;
use super::{ProxyBody, Shared, forward, handshake, respond, websocket};
use crate::ir::Backend;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

/// Everything a request handler needs to know about its connection.
pub(crate) struct ConnCtx {
    pub(crate) shared: Arc<Shared>,
    pub(crate) port: u16,
    pub(crate) client: ClientInfo,
    pub(crate) peer: SocketAddr,
    /// The listener capacity slot; sessions keep the context (and so the slot) alive.
    _slot: ConnGuard,
    /// Metric handles of the last request on this connection.
    last_series: std::sync::Mutex<Option<RequestSeries>>,
}

/// The `wsgate_http_requests_total` and duration series of one route/method/status, kept per
/// connection so that a keep-alive connection repeating a request does not look them up again.
struct RequestSeries {
    route: String,
    method: &'static str,
    status: StatusCode,
    requests: prometheus::IntCounter,
    /// `None` for requests that matched no route.
    duration: Option<prometheus::Histogram>,
}

/// Serves one accepted connection until it closes (upgraded sessions run on in their own task).
pub(crate) async fn serve<IO>(
    stream: IO,
    peer: SocketAddr,
    port: u16,
    tls: bool,
    shared: Arc<Shared>,
    (guard, slot): (ConnGuard, ConnGuard),
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let ctx = Arc::new(ConnCtx {
        client: ClientInfo::new(peer.ip(), tls),
        shared: shared.clone(),
        port,
        peer,
        _slot: slot,
        last_series: Default::default(),
    });
    let service = service_fn(move |req| {
        let ctx = ctx.clone();
        async move { Ok::<_, Infallible>(handle(req, ctx).await) }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(shared.settings.header_timeout)
        .max_buf_size(shared.settings.max_header_bytes.max(8192))
        .keep_alive(true);
    let conn = builder
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(conn);
    let mut drain = shared.drain.subscribe();
    let draining = *drain.borrow();
    if draining {
        conn.as_mut().graceful_shutdown();
    }
    loop {
        tokio::select! {
            res = conn.as_mut() => {
                if let Err(e) = res {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                break;
            }
            changed = drain.changed(), if !draining => {
                if changed.is_err() || *drain.borrow() {
                    conn.as_mut().graceful_shutdown();
                }
                if changed.is_err() {
                    break;
                }
            }
        }
    }
    drop(guard);
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

/// Method label values are bounded so that clients cannot explode metric cardinality.
fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// A routed request as the forwarding phase sees it.
#[derive(Clone, Copy)]
pub(crate) struct Forwarding<'a> {
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
    pub(crate) ctx: &'a Arc<ConnCtx>,
}

impl Forwarding<'_> {
    /// Counts a rejection of this request by `reason` and hands the response back.
    pub(crate) fn reject(
        &self,
        reason: &str,
        resp: Response<ProxyBody>,
    ) -> (Response<ProxyBody>, Option<String>) {
        self.ctx
            .shared
            .metrics
            .rejected
            .with_label_values(&[self.route, reason])
            .inc();
        (resp, None)
    }

    /// Chooses an available endpoint by the backend's policy; `None` (counted as
    /// `no_healthy_backend`) when none is available.
    pub(crate) fn pick(&self, headers: &http::HeaderMap) -> Option<super::pools::Lease> {
        let policy = &self.backend.settings.load_balancing;
        let lease = self
            .pool
            .pick(policy, super::pools::hash_key(policy, headers, self.client));
        if lease.is_none() {
            self.ctx
                .shared
                .metrics
                .rejected
                .with_label_values(&[self.route, "no_healthy_backend"])
                .inc();
        }
        lease
    }
}

async fn handle(req: Request<Incoming>, ctx: Arc<ConnCtx>) -> Response<ProxyBody> {
    let start = Instant::now();
    let method = method_label(req.method());
    let host = request_host(req.headers(), req.uri());
    let path = req.uri().path().to_string();
    let (resp, route, endpoint) = phases(req, &ctx, &host, &path).await;
    log_request(
        &ctx,
        route.as_deref().unwrap_or(""),
        method,
        &host,
        &path,
        resp.status(),
        start,
        endpoint.as_deref(),
    );
    resp
}

/// The fixed phases of a request: limits -> route -> firewall -> forward (cache inside) or open a
/// WebSocket session. Returns the response, the route id and the endpoint used.
async fn phases(
    mut req: Request<Incoming>,
    ctx: &Arc<ConnCtx>,
    host: &str,
    path: &str,
) -> (Response<ProxyBody>, Option<Arc<str>>, Option<String>) {
    let max_head = ctx.shared.settings.max_header_bytes;
    let head_bytes = head_size(&req);
    if head_bytes > max_head {
        let message = format!("request head of {head_bytes} bytes exceeds {max_head}");
        let resp = respond::text_and_close(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, &message);
        return (resp, None, None);
    }
    let table = ctx.shared.table.load_full();
    let facts = crate::ir::RequestFacts {
        method: req.method().as_str(),
        headers: req.headers(),
        query: req.uri().query(),
    };
    let Some(routed) = table.route(ctx.port, host, path, &facts) else {
        let message = format!("no route for host {host:?} path {path:?}");
        return (respond::text(StatusCode::NOT_FOUND, &message), None, None);
    };
    let route_id = routed.route.id.clone();
    let client = client_ip(
        ctx.client.peer,
        req.headers(),
        &ctx.shared.settings.trusted_proxies,
    );
    let websocket = handshake::is_websocket_attempt(&req);
    if let Some(fw) = routed.firewall
        && let Err(r) = fw.check(req.method(), path, req.headers(), client, websocket)
    {
        ctx.shared
            .metrics
            .rejected
            .with_label_values(&[&route_id, r.reason])
            .inc();
        let mut resp = respond::text(r.status, &r.message);
        if let Some(secs) = r.retry_after
            && let Ok(v) = http::HeaderValue::from_str(&secs.to_string())
        {
            resp.headers_mut().insert(http::header::RETRY_AFTER, v);
        }
        return (resp, Some(route_id), None);
    }
    let filters = routed.route.filters.as_deref();
    if let Some(fl) = filters {
        if let Some(resp) = super::filters::redirect(fl, &req, host, ctx.client.tls, ctx.port) {
            return (resp, Some(route_id), None);
        }
        super::filters::on_request(fl, &mut req);
    }
    let f = Forwarding {
        route: &route_id,
        backend: routed.backend,
        pool: routed.pool,
        host,
        client,
        ctx,
    };
    let (resp, endpoint) = if websocket {
        // Boxed: the handshake's large future would otherwise be part of every request's.
        Box::pin(websocket::open(
            req,
            &f,
            table.route_sessions.get(&route_id),
        ))
        .await
    } else {
        forward::forward(req, &f).await
    };
    let mut resp = resp;
    if let Some(fl) = filters {
        super::filters::on_response(fl, &mut resp);
    }
    (resp, Some(route_id), endpoint)
}

#[allow(clippy::too_many_arguments)]
fn log_request(
    ctx: &ConnCtx,
    route: &str,
    method: &'static str,
    host: &str,
    path: &str,
    status: StatusCode,
    start: Instant,
    endpoint: Option<&str>,
) {
    let elapsed = start.elapsed();
    {
        let mut last = ctx.last_series.lock().unwrap_or_else(|p| p.into_inner());
        let series = match last.take() {
            Some(s) if s.route == route && s.method == method && s.status == status => s,
            _ => {
                let m = &ctx.shared.metrics;
                RequestSeries {
                    route: route.to_string(),
                    method,
                    status,
                    requests: m
                        .http_requests
                        .with_label_values(&[route, method, status.as_str()]),
                    duration: (!route.is_empty())
                        .then(|| m.http_duration.with_label_values(&[route])),
                }
            }
        };
        series.requests.inc();
        if let Some(d) = &series.duration {
            d.observe(elapsed.as_secs_f64());
        }
        *last = Some(series);
    }
    tracing::info!(
        target: "wsgate::access",
        route,
        client = %ctx.peer,
        method,
        host,
        path,
        status = status.as_u16(),
        backend = endpoint.unwrap_or(""),
        duration_ms = elapsed.as_secs_f64() * 1000.0,
        "request"
    );
}
