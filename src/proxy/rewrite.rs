//! Heads as they cross the proxy: the client's request head rewritten for the backend, and the
//! backend's response head for the client.

use super::ProxyBody;
use super::context::ConnCtx;
use super::headers::{Forwarding, set_forwarding, strip_hop_by_hop};
use super::upstream::{BackendBody, ResponseHead};
use http::{HeaderValue, Response, Version, header};
use http_body_util::Either;

/// Rewrites a client request head for the backend: hop-by-hop headers out, a `Host` when the
/// client sent none; returns the forwarding headers, which the backend head carries after the
/// request's own. The request target stays as the client sent it (only its path and query are
/// written).
pub(crate) fn request_head(
    parts: &mut http::request::Parts,
    endpoint: &str,
    host: &str,
    ctx: &ConnCtx,
) -> Forwarding {
    strip_hop_by_hop(&mut parts.headers);
    let forwarding = set_forwarding(
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
    forwarding
}

/// The client response for a backend response head and its body.
pub(crate) fn response(head: ResponseHead, body: BackendBody) -> Response<ProxyBody> {
    let mut resp = Response::new(Either::Left(body));
    *resp.status_mut() = head.status;
    *resp.headers_mut() = head.headers;
    strip_hop_by_hop(resp.headers_mut());
    resp
}
