//! Plain HTTP forwarding over pooled keep-alive upstream connections.

use super::ProxyBody;
use super::cache::{self, HttpCache, Lookup};
use super::context::RequestCtx;
use super::error::{ProxyError, Reason};
use super::rewrite;
use super::upstream::{self, Exchange, ExchangeError, Reply};
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Either, Full, Limited};
use hyper::body::Incoming;
use std::time::Duration;

/// Forwards a non-upgrade request and relays the response, through the HTTP cache when the route
/// enables it.
pub(crate) async fn forward(
    req: Request<Incoming>,
    f: &RequestCtx<'_>,
) -> Result<(Response<ProxyBody>, Option<String>), ProxyError> {
    if !f.backend.settings.cache {
        return upstream(req, f).await;
    }
    // Boxed: the cache's future would otherwise be part of every request's.
    Box::pin(through_cache(req, f)).await
}

/// [`forward`] for a route with the cache enabled. Kept as one function (about 100 lines): the
/// lookup, miss coalescing, revalidation and store-on-miss steps share the cache key, the
/// request head as the policy sees it and the single-flight guard, whose lifetime must span
/// the backend exchange.
async fn through_cache(
    mut req: Request<Incoming>,
    f: &RequestCtx<'_>,
) -> Result<(Response<ProxyBody>, Option<String>), ProxyError> {
    let RequestCtx {
        route,
        backend,
        host,
        conn: ctx,
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
        let (mut resp, ep) = upstream(req, f).await?;
        cache::mark(resp.headers_mut(), "bypass");
        count("bypass");
        return Ok((resp, ep));
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
            return Ok((cached_response(parts, body, &head), None));
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
    let (resp, ep) = upstream(req, f).await?;
    let (mut parts, body) = resp.into_parts();
    if let Some(entry) = &revalidating
        && let Some((fresh, body)) = cache.revalidated(&key, entry, &head, &parts).await
    {
        count("hit");
        return Ok((cached_response(fresh, body, &head), ep));
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
                        let endpoint = ep.unwrap_or_default();
                        let failed = ProxyError::new(
                            StatusCode::BAD_GATEWAY,
                            Reason::UpstreamFailed,
                            "the backend failed to answer",
                        );
                        return Err(failed.detail("response body incomplete").at(&endpoint));
                    }
                }
            }
            None => Either::Left(incoming),
        },
        own => own,
    };
    cache::mark(&mut parts.headers, "miss");
    Ok((Response::from_parts(parts, body), ep))
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
    f: &RequestCtx<'_>,
) -> Result<(Response<ProxyBody>, Option<String>), ProxyError> {
    let max_body = f.conn.shared.settings.max_body_bytes;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if max_body > 0 && declared.is_some_and(|n| n > max_body) {
        return Err(ProxyError::body_too_large(max_body));
    }
    let lease = f.pick(req.headers())?;
    let endpoint = &lease.0.label;
    let (mut parts, body) = req.into_parts();
    // A body without Content-Length (chunked) is cut off at the limit while streaming.
    let limit = if max_body == 0 {
        usize::MAX
    } else {
        usize::try_from(max_body).unwrap_or(usize::MAX)
    };
    let body = Limited::new(body, limit);
    let forwarding = rewrite::request_head(&mut parts, endpoint, f.host, f.conn);
    let ex = Exchange {
        endpoint: &lease.0,
        forwarding: &forwarding,
        runtime: &f.pool.runtime,
        upgrade: false,
        request_timeout: f
            .backend
            .settings
            .response_timeout
            .unwrap_or(f.backend.settings.request_timeout)
            .get(),
    };
    match upstream::send(&ex, &parts, body).await {
        Ok(Reply::Response(head, body)) => {
            lease.answered(head.status);
            Ok((rewrite::response(head, body), Some(endpoint.clone())))
        }
        // `send` refuses a 101 to a request that did not ask for it.
        Ok(Reply::Upgraded(..)) => {
            lease.0.failure();
            let e = ProxyError::new(
                StatusCode::BAD_GATEWAY,
                Reason::UpstreamFailed,
                "the backend failed to answer",
            );
            Err(e.detail("unexpected 101").at(endpoint))
        }
        Err(e) if e.is_body_limit() => Err(ProxyError::body_too_large(max_body).at(endpoint)),
        // The client went away or sent a broken body: nobody reads this answer.
        Err(ExchangeError::RequestBody(e)) => {
            let message = format!("request body: {e}");
            let e = ProxyError::new(StatusCode::BAD_REQUEST, Reason::BadRequest, message);
            Err(e.closing().at(endpoint))
        }
        Err(e) => {
            lease.0.failure();
            Err(ProxyError::exchange(endpoint, &e))
        }
    }
}
