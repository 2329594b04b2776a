//! Route filters on the request path (Gateway API `HTTPRoute` filters): a redirect answered
//! without any backend, request header / host / path changes before forwarding, and response
//! header changes after. Kept apart from the request phases so the call sites stay one line each.

use super::{ProxyBody, respond};
use crate::ir::{HeaderEdits, Redirect, Rewrite, RouteFilters};
use http::header::{HOST, LOCATION};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode, Uri};

/// Applies header edits; names and values were validated by translation, so a failure to
/// convert one here means nothing to change.
fn edit(headers: &mut HeaderMap, e: &HeaderEdits) {
    for name in &e.remove {
        if let Ok(n) = HeaderName::from_bytes(name.as_bytes()) {
            headers.remove(n);
        }
    }
    for (name, value) in &e.set {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            headers.insert(n, v);
        }
    }
    for (name, value) in &e.add {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            headers.append(n, v);
        }
    }
}

fn well_known_port(scheme: &str) -> u16 {
    if scheme == "https" { 443 } else { 80 }
}

/// The `Location` of a redirect for a request to `host` (no port) with `uri` on a listener port.
fn location(r: &Redirect, uri: &Uri, host: &str, tls: bool, listener_port: u16) -> String {
    let request_scheme = if tls { "https" } else { "http" };
    let scheme = r.scheme.as_deref().unwrap_or(request_scheme);
    let hostname = r.hostname.as_deref().unwrap_or(host);
    // The spec: an explicit port; else the scheme's port when the scheme is set; else the
    // listener's port. A scheme's well-known port is left out of the URL.
    let port = r.port.unwrap_or_else(|| match &r.scheme {
        Some(s) => well_known_port(s),
        None => listener_port,
    });
    let path = match &r.path {
        Some(change) => change.apply(uri.path()),
        None => uri.path().to_string(),
    };
    let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
    if port == well_known_port(scheme) {
        format!("{scheme}://{hostname}{path}{query}")
    } else {
        format!("{scheme}://{hostname}:{port}{path}{query}")
    }
}

/// The redirect response, when the route redirects.
pub(crate) fn redirect<B>(
    filters: &RouteFilters,
    req: &Request<B>,
    host: &str,
    tls: bool,
    listener_port: u16,
) -> Option<Response<ProxyBody>> {
    let r = filters.redirect.as_ref()?;
    let to = location(r, req.uri(), host, tls, listener_port);
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::FOUND);
    let mut resp = respond::text(status, &format!("redirecting to {to}"));
    if let Ok(v) = HeaderValue::from_str(&to) {
        resp.headers_mut().insert(LOCATION, v);
    }
    edit(resp.headers_mut(), &filters.response_headers);
    Some(resp)
}

/// Changes the request before it is forwarded: headers, then host and path.
pub(crate) fn on_request<B>(filters: &RouteFilters, req: &mut Request<B>) {
    edit(req.headers_mut(), &filters.request_headers);
    if let Some(Rewrite { hostname, path }) = &filters.rewrite {
        if let Some(h) = hostname
            && let Ok(v) = HeaderValue::from_str(h)
        {
            req.headers_mut().insert(HOST, v);
        }
        if let Some(change) = path {
            let new_path = change.apply(req.uri().path());
            let pq = match req.uri().query() {
                Some(q) => format!("{new_path}?{q}"),
                None => new_path,
            };
            if let Ok(uri) = pq.parse::<Uri>() {
                *req.uri_mut() = uri;
            }
        }
    }
}

/// Changes the response headers.
pub(crate) fn on_response(filters: &RouteFilters, resp: &mut Response<ProxyBody>) {
    edit(resp.headers_mut(), &filters.response_headers);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::PathChange;

    fn r(
        scheme: Option<&str>,
        host: Option<&str>,
        port: Option<u16>,
        path: Option<PathChange>,
    ) -> Redirect {
        Redirect {
            scheme: scheme.map(Into::into),
            hostname: host.map(Into::into),
            port,
            path,
            status: 302,
        }
    }

    #[test]
    fn redirect_locations_follow_the_port_rules() {
        let uri: Uri = "/a/b?x=1".parse().unwrap();
        assert_eq!(
            location(
                &r(Some("https"), None, None, None),
                &uri,
                "h.test",
                false,
                8080
            ),
            "https://h.test/a/b?x=1"
        );
        assert_eq!(
            location(
                &r(None, Some("o.test"), None, None),
                &uri,
                "h.test",
                false,
                8080
            ),
            "http://o.test:8080/a/b?x=1"
        );
        assert_eq!(
            location(&r(None, None, Some(80), None), &uri, "h.test", false, 8080),
            "http://h.test/a/b?x=1"
        );
        assert_eq!(
            location(
                &r(Some("http"), None, Some(8443), None),
                &uri,
                "h.test",
                true,
                443
            ),
            "http://h.test:8443/a/b?x=1"
        );
        let p = PathChange::Prefix {
            matched: "/a".into(),
            replacement: "/z".into(),
        };
        assert_eq!(
            location(&r(None, None, None, Some(p)), &uri, "h.test", false, 80),
            "http://h.test/z/b?x=1"
        );
    }

    #[test]
    fn request_rewrites_change_host_path_and_headers() {
        let mut req = Request::builder()
            .uri("/a/b?q=1")
            .header("host", "h.test")
            .header("x-drop", "1")
            .body(())
            .unwrap();
        let f = RouteFilters {
            request_headers: HeaderEdits {
                set: vec![("x-set".into(), "v".into())],
                add: vec![("x-add".into(), "w".into())],
                remove: vec!["x-drop".into()],
            },
            rewrite: Some(Rewrite {
                hostname: Some("b.test".into()),
                path: Some(PathChange::Full("/new".into())),
            }),
            ..Default::default()
        };
        on_request(&f, &mut req);
        assert_eq!(req.uri().to_string(), "/new?q=1");
        assert_eq!(req.headers()["host"], "b.test");
        assert_eq!(req.headers()["x-set"], "v");
        assert_eq!(req.headers()["x-add"], "w");
        assert!(req.headers().get("x-drop").is_none());
    }
}
