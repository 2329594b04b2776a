//! Admission of a request head before routing: the RFC 9112 rules (RFC 9113 for HTTP/2 streams,
//! whose extended CONNECT becomes a GET marked [`ExtendedConnect`]) and path normalisation of
//! [`crate::http`], `Host` rewritten for absolute-form targets (and from `:authority`),
//! underscore header names dropped, identity headers set. One call at the start of the request
//! phases, one after routing.

use super::context::ConnCtx;
use super::error::{ProxyError, Reason};
use super::headers::{client_ip, set_identity};
use super::http2::ExtendedConnect;
use crate::http::request;
use crate::http::request_h2::{self, H2Form};
use http::{HeaderValue, Method, Request, Version, header};
use hyper::ext::Protocol;
use std::hash::{DefaultHasher, Hash, Hasher};

/// An admitted request: what routing matches on and what the backend gets.
pub(crate) struct Admitted {
    /// Routing host (lower-case, no port).
    pub(crate) host: String,
    /// The normalised path without `;` parameters: routes and the firewall match on it.
    pub(crate) matching: String,
    /// The normalised path and query for the backend, when they differ from the request's.
    pub(crate) normalized: Option<http::uri::PathAndQuery>,
    /// Identifies "the same request" (method and matching path) for passive health, so that one
    /// failing URL is told apart from a failing backend.
    pub(crate) key: u64,
}

/// A refused request head: 400 (or what the rule says), and the connection closes after it
/// because its framing may not be trusted.
fn refused(status: http::StatusCode, message: String) -> ProxyError {
    ProxyError::new(status, Reason::BadRequest, message).closing()
}

/// Checks and adjusts a request head.
pub(crate) fn admit<B>(req: &mut Request<B>, ctx: &ConnCtx) -> Result<Admitted, ProxyError> {
    let checked = if req.version() == Version::HTTP_2 {
        let protocol = req.extensions().get::<Protocol>().map(Protocol::as_str);
        request_h2::check(req.method(), req.uri(), req.headers(), protocol)
    } else {
        request::check(req.method(), req.uri(), req.version(), req.headers())
            .map(|h| (h, H2Form::Plain))
    };
    let (head, form) = match checked {
        Ok(h) => h,
        Err(e) => {
            return Err(refused(e.status(), e.to_string()));
        }
    };
    let host = head.host;
    let rewrite = head.rewrite_host;
    let matching = head.path.matching.into_owned();
    let absolute = req.uri().scheme().is_some();
    let normalized = if head.path.forward.as_ref() != req.uri().path() || absolute {
        let mut pq = head.path.forward.into_owned();
        if let Some(q) = req.uri().query() {
            pq.push('?');
            pq.push_str(q);
        }
        match http::uri::PathAndQuery::try_from(pq) {
            Ok(pq) => Some(pq),
            Err(_) => {
                return Err(refused(
                    http::StatusCode::BAD_REQUEST,
                    "invalid request target".into(),
                ));
            }
        }
    } else {
        None
    };
    let mut hasher = DefaultHasher::new();
    req.method().hash(&mut hasher);
    matching.hash(&mut hasher);
    let key = hasher.finish();

    if req.version() == Version::HTTP_2 {
        request_h2::join_cookies(req.headers_mut());
    }
    if form == H2Form::WebSocket {
        // From here on the request is the backend's GET Upgrade (routing, firewall rules and
        // route filters see the same request as over HTTP/1.1); the marker keeps its form.
        *req.method_mut() = Method::GET;
        req.extensions_mut().insert(ExtendedConnect);
    }
    let settings = &ctx.shared.settings;
    let headers = req.headers_mut();
    if let Some(authority) = rewrite
        && let Ok(v) = HeaderValue::from_str(&authority)
    {
        headers.insert(header::HOST, v);
    }
    if !settings.allow_underscore_headers {
        request::drop_underscore_headers(headers);
    }
    let trusted = &settings.trusted_proxies;
    let peer = ctx.client.peer;
    let peer_trusted = trusted.iter().any(|n| n.contains(&peer));
    if peer_trusted {
        let client = client_ip(peer, headers, trusted).to_string();
        // An address's text is always a valid header value.
        if let Ok(v) = HeaderValue::from_str(&client) {
            set_identity(headers, v, true);
        }
    } else {
        // The common case: the peer is the client; its value is formatted once per connection.
        set_identity(headers, ctx.client.peer_value(), false);
    }
    Ok(Admitted {
        host,
        matching,
        normalized,
        key,
    })
}

/// Gives the request the normalised target (origin-form), unless the route forwards the
/// original path.
pub(crate) fn apply_path<B>(req: &mut Request<B>, admitted: &Admitted, keep_original: bool) {
    if keep_original {
        return;
    }
    if let Some(pq) = &admitted.normalized {
        let mut parts = http::uri::Parts::default();
        parts.path_and_query = Some(pq.clone());
        if let Ok(uri) = http::Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
    }
}
