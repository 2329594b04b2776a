//! Plain HTTP forwarding over pooled keep-alive upstream connections.

use super::cache::{self, HttpCache, Lookup};
use super::headers::{set_forwarding, strip_hop_by_hop};
use super::server::{ConnCtx, Forwarding};
use super::upstream::{self, BackendBody, Exchange, ExchangeError, Reply, ResponseHead};
use super::{ProxyBody, respond};
use http::{HeaderValue, Request, Response, StatusCode, Version, header};
use http_body_util::{BodyExt, Either, Full, Limited};
use hyper::body::Incoming;
use std::time::Duration;

/// Why a backend exchange failed, mapped onto the status the client gets.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UpstreamError {
    /// No ready and healthy endpoint: 503.
    #[error("no healthy endpoint for this backend")]
    NoEndpoints,
    /// Connect or response too slow: 504.
    #[error("backend {0} did not answer in time")]
    Timeout(String),
    /// Refused, reset or broken: 502.
    #[error("backend {0} failed: {1}")]
    Failed(String, String),
}

impl UpstreamError {
    pub(crate) fn response(&self) -> Response<ProxyBody> {
        let status = match self {
            UpstreamError::NoEndpoints => StatusCode::SERVICE_UNAVAILABLE,
            UpstreamError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            UpstreamError::Failed(..) => StatusCode::BAD_GATEWAY,
        };
        respond::text(status, &self.to_string())
    }

    /// The client-facing error for a failed exchange with `endpoint`.
    pub(crate) fn from_exchange(endpoint: &str, e: &ExchangeError) -> Self {
        if e.is_timeout() {
            UpstreamError::Timeout(endpoint.to_string())
        } else {
            UpstreamError::Failed(endpoint.to_string(), e.to_string())
        }
    }
}

fn body_too_large(max: u64) -> Response<ProxyBody> {
    respond::text_and_close(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!("request body larger than {max} bytes"),
    )
}

/// Rewrites a client request head for the backend: hop-by-hop headers out, forwarding headers in,
/// a `Host` when the client sent none. The request target stays as the client sent it (only its
/// path and query are written).
pub(crate) fn prepare_head(
    parts: &mut http::request::Parts,
    endpoint: &str,
    host: &str,
    ctx: &ConnCtx,
) {
    strip_hop_by_hop(&mut parts.headers);
    set_forwarding(
        &mut parts.headers,
        &ctx.client,
        host,
        &ctx.shared.settings.trusted_proxies,
    );
    if !parts.headers.contains_key(header::HOST)
        && let Ok(v) = HeaderValue::from_str(if host.is_empty() { endpoint } else { host })
    {
        parts.headers.insert(header::HOST, v);
    }
    parts.version = Version::HTTP_11;
}

/// The client response for a backend response head and its body.
pub(crate) fn relay(head: ResponseHead, body: BackendBody) -> Response<ProxyBody> {
    let mut resp = Response::new(Either::Left(body));
    *resp.status_mut() = head.status;
    *resp.headers_mut() = head.headers;
    strip_hop_by_hop(resp.headers_mut());
    resp
}

/// Forwards a non-upgrade request and relays the response, through the HTTP cache when the route
/// enables it.
pub(crate) async fn forward(
    req: Request<Incoming>,
    f: &Forwarding<'_>,
) -> (Response<ProxyBody>, Option<String>) {
    if !f.backend.settings.cache {
        return upstream(req, f).await;
    }
    // Boxed: the cache's future would otherwise be part of every request's.
    Box::pin(through_cache(req, f)).await
}

/// [`forward`] for a route with the cache enabled.
async fn through_cache(
    mut req: Request<Incoming>,
    f: &Forwarding<'_>,
) -> (Response<ProxyBody>, Option<String>) {
    let Forwarding {
        route,
        backend,
        host,
        ctx,
        ..
    } = *f;
    let cache = &ctx.shared.cache;
    let count = |result: &str| {
        ctx.shared
            .metrics
            .cache_requests
            .with_label_values(&[route, result])
            .inc()
    };
    if !cache::eligible(&req) {
        let (mut resp, ep) = upstream(req, f).await;
        cache::mark(resp.headers_mut(), "bypass");
        count("bypass");
        return (resp, ep);
    }
    let key = HttpCache::key(route, host, &req);
    // The request head as the cache policy sees it (a GET or HEAD has no body to keep).
    let mut head = Request::new(());
    *head.method_mut() = req.method().clone();
    *head.uri_mut() = req.uri().clone();
    *head.version_mut() = req.version();
    *head.headers_mut() = req.headers().clone();

    let mut lookup = cache.lookup(&key, &head).await;
    let mut _leader = None;
    if matches!(lookup, Lookup::Miss) {
        match cache.begin_miss(&key) {
            Ok(leader) => _leader = Some(leader),
            Err(wait) => {
                // Coalescing: another request is fetching this key; use its result if storable.
                let limit = backend
                    .settings
                    .request_timeout
                    .get()
                    .unwrap_or(Duration::from_secs(60));
                HttpCache::wait(wait, limit).await;
                lookup = cache.lookup(&key, &head).await;
            }
        }
    }
    let revalidating = match lookup {
        Lookup::Hit(parts, body) => {
            count("hit");
            return (cached_response(parts, body, &head), None);
        }
        Lookup::Revalidate(entry, conditional) => {
            for name in [header::IF_NONE_MATCH, header::IF_MODIFIED_SINCE] {
                if let Some(v) = conditional.get(&name) {
                    req.headers_mut().insert(name, v.clone());
                }
            }
            Some(entry)
        }
        Lookup::Miss => None,
    };
    let (resp, ep) = upstream(req, f).await;
    let (mut parts, body) = resp.into_parts();
    if let Some(entry) = &revalidating
        && let Some((fresh, body)) = cache.revalidated(&key, entry, &head, &parts).await
    {
        count("hit");
        return (cached_response(fresh, body, &head), ep);
    }
    count("miss");
    let body = match body {
        Either::Left(incoming) => match cache.storable(&head, &parts) {
            Some(policy) => {
                let limit = backend
                    .settings
                    .request_timeout
                    .get()
                    .unwrap_or(Duration::from_secs(60));
                match tokio::time::timeout(limit, incoming.collect()).await {
                    Ok(Ok(collected)) => {
                        let bytes = collected.to_bytes();
                        cache.insert(&key, policy, &parts, bytes.clone()).await;
                        Either::Right(Full::new(bytes))
                    }
                    _ => {
                        let endpoint = ep.clone().unwrap_or_default();
                        let failed =
                            UpstreamError::Failed(endpoint, "response body incomplete".into());
                        return (failed.response(), ep);
                    }
                }
            }
            None => Either::Left(incoming),
        },
        own => own,
    };
    cache::mark(&mut parts.headers, "miss");
    (Response::from_parts(parts, body), ep)
}

/// A response served from the cache (`HEAD` gets the headers only).
fn cached_response(
    mut parts: http::response::Parts,
    body: bytes::Bytes,
    req: &Request<()>,
) -> Response<ProxyBody> {
    cache::mark(&mut parts.headers, "hit");
    let body = if req.method() == http::Method::HEAD {
        bytes::Bytes::new()
    } else {
        body
    };
    Response::from_parts(parts, Either::Right(Full::new(body)))
}

/// Sends a request to an endpoint of the backend and relays the response.
async fn upstream(
    req: Request<Incoming>,
    f: &Forwarding<'_>,
) -> (Response<ProxyBody>, Option<String>) {
    let Forwarding {
        backend,
        pool,
        host,
        ctx,
        ..
    } = *f;
    let Some(lease) = f.pick(req.headers()) else {
        return (UpstreamError::NoEndpoints.response(), None);
    };
    let endpoint = &lease.0.label;
    let max_body = ctx.shared.settings.max_body_bytes;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if max_body > 0 && declared.is_some_and(|n| n > max_body) {
        return (body_too_large(max_body), None);
    }
    let (mut parts, body) = req.into_parts();
    // A body without Content-Length (chunked) is cut off at the limit while streaming.
    let limit = if max_body == 0 {
        usize::MAX
    } else {
        usize::try_from(max_body).unwrap_or(usize::MAX)
    };
    let body = Limited::new(body, limit);
    prepare_head(&mut parts, endpoint, host, ctx);
    let ex = Exchange {
        endpoint: &lease.0,
        runtime: &pool.runtime,
        upgrade: false,
        request_timeout: backend
            .settings
            .response_timeout
            .unwrap_or(backend.settings.request_timeout)
            .get(),
    };
    let resp = match upstream::send(&ex, &parts, body).await {
        Ok(Reply::Response(head, body)) => {
            lease.0.answered(head.status);
            relay(head, body)
        }
        // `send` refuses a 101 to a request that did not ask for it.
        Ok(Reply::Upgraded(..)) => {
            lease.0.failure();
            UpstreamError::Failed(endpoint.clone(), "unexpected 101".into()).response()
        }
        Err(e) if e.is_body_limit() => body_too_large(max_body),
        // The client went away or sent a broken body: nobody reads this answer.
        Err(ExchangeError::RequestBody(e)) => {
            respond::text_and_close(StatusCode::BAD_REQUEST, &format!("request body: {e}"))
        }
        Err(e) => {
            lease.0.failure();
            UpstreamError::from_exchange(endpoint, &e).response()
        }
    };
    (resp, Some(endpoint.clone()))
}
