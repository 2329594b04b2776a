//! The request-head rules for HTTP/2 streams (RFC 9113 §8.2-8.3, RFC 8441 §4): no
//! connection-specific fields, `Host` consistent with `:authority`, `CONNECT` only in its
//! extended form for `websocket`; then the RFC 9112 rules of [`super::request`] that apply to
//! every request (one valid host, framing, path normalisation).
//!
//! hyper's HTTP/2 server (the `h2` crate) already resets streams with malformed pseudo-headers,
//! upper-case names or connection-specific fields; these checks repeat the last ones so the
//! rules hold whatever the library lets through. Pure: no I/O, nothing but the request head.

use super::request::{self, HeadError, RequestHead, parse_authority};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri, Version, header};

/// What an admitted HTTP/2 stream asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum H2Form {
    /// An ordinary request.
    Plain,
    /// An extended CONNECT with `:protocol websocket` (RFC 8441): a WebSocket, proxied to the
    /// backend as an HTTP/1.1 `GET` Upgrade.
    WebSocket,
}

/// Fields that describe an HTTP/1 connection and are malformed in HTTP/2 (RFC 9113 §8.2.2).
const CONNECTION_SPECIFIC: [HeaderName; 5] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Checks the head of an HTTP/2 request: `method`, `uri` (built from `:scheme`, `:authority`,
/// `:path`), the header fields and the `:protocol` pseudo-header if any.
pub fn check<'a>(
    method: &Method,
    uri: &'a Uri,
    headers: &HeaderMap,
    protocol: Option<&str>,
) -> Result<(RequestHead<'a>, H2Form), HeadError> {
    if let Some(name) = CONNECTION_SPECIFIC
        .iter()
        .find(|n| headers.contains_key(*n))
    {
        return Err(HeadError::ConnectionHeader(name.as_str().to_string()));
    }
    if headers
        .get_all(header::TE)
        .iter()
        .any(|v| !v.as_bytes().trim_ascii().eq_ignore_ascii_case(b"trailers"))
    {
        return Err(HeadError::ConnectionHeader("te".into()));
    }
    let form = match (method, protocol) {
        (&Method::CONNECT, None) => return Err(HeadError::Connect),
        (&Method::CONNECT, Some(p)) if p.eq_ignore_ascii_case("websocket") => H2Form::WebSocket,
        (&Method::CONNECT, Some(p)) => {
            return Err(HeadError::UnsupportedProtocol(p.chars().take(64).collect()));
        }
        // `:protocol` belongs to CONNECT only (the h2 crate already refuses it elsewhere).
        (_, Some(_)) => return Err(HeadError::InvalidTarget),
        (_, None) => H2Form::Plain,
    };
    if let Some(authority) = uri.authority() {
        let mut hosts = headers.get_all(header::HOST).iter();
        if let Some(host) = hosts.next() {
            if hosts.next().is_some() {
                return Err(HeadError::DuplicateHost);
            }
            same_entity(uri.scheme_str(), authority.as_str(), host)?;
        }
    }
    // An extended CONNECT becomes the HTTP/1.1 GET Upgrade the backend gets; the shared rules
    // judge it as that.
    let as_method = match form {
        H2Form::WebSocket => &Method::GET,
        H2Form::Plain => method,
    };
    let head = request::check(as_method, uri, Version::HTTP_2, headers)?;
    let announced_body = headers
        .get_all(header::CONTENT_LENGTH)
        .iter()
        .any(|v| v.as_bytes().trim_ascii() != b"0");
    if form == H2Form::WebSocket && announced_body {
        return Err(HeadError::UpgradeWithBody);
    }
    Ok((head, form))
}

/// Whether `host` names the same host and port as `authority` (ports defaulted by scheme).
fn same_entity(scheme: Option<&str>, authority: &str, host: &HeaderValue) -> Result<(), HeadError> {
    let host_text = host
        .to_str()
        .map_err(|_| HeadError::InvalidHost(String::from_utf8_lossy(host.as_bytes()).into()))?;
    let (a_host, a_port) = parse_authority(authority)?;
    let (h_host, h_port) = parse_authority(host_text)?;
    let default = match scheme {
        Some(s) if s.eq_ignore_ascii_case("https") => Some(443),
        Some(s) if s.eq_ignore_ascii_case("http") => Some(80),
        _ => None,
    };
    if a_host != h_host || a_port.or(default) != h_port.or(default) {
        return Err(HeadError::AuthorityMismatch {
            authority: authority.chars().take(64).collect(),
            host: host_text.chars().take(64).collect(),
        });
    }
    Ok(())
}

/// Joins the `cookie` fields an HTTP/2 client may split into one (`; `-separated), as an
/// HTTP/1.1 backend expects (RFC 9113 §8.2.3). Returns whether anything was joined.
pub fn join_cookies(headers: &mut HeaderMap) -> bool {
    let mut values = headers.get_all(header::COOKIE).iter();
    if values.next().is_none() || values.next().is_none() {
        return false;
    }
    let mut joined: Vec<u8> = Vec::new();
    for v in headers.get_all(header::COOKIE) {
        if !joined.is_empty() {
            joined.extend_from_slice(b"; ");
        }
        joined.extend_from_slice(v.as_bytes());
    }
    match HeaderValue::from_bytes(&joined) {
        Ok(v) => {
            headers.insert(header::COOKIE, v);
            true
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(lines: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in lines {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    fn run(
        method: &str,
        uri: &str,
        lines: &[(&str, &str)],
        protocol: Option<&str>,
    ) -> Result<String, HeadError> {
        let uri: Uri = uri.parse().unwrap();
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        check(&method, &uri, &fields(lines), protocol).map(|(h, form)| {
            format!(
                "{} {:?} {:?} {} {form:?}",
                h.host, h.port, h.rewrite_host, h.path.matching
            )
        })
    }

    #[test]
    fn authority_names_the_host() {
        assert_eq!(
            run("GET", "https://Chat.Example.com/a", &[], None).unwrap(),
            "chat.example.com None Some(\"Chat.Example.com\") /a Plain"
        );
        // No :authority: Host is the host, and one is required.
        assert_eq!(
            run("GET", "/a", &[("host", "x.example:8443")], None).unwrap(),
            "x.example Some(8443) None /a Plain"
        );
        assert_eq!(run("GET", "/a", &[], None), Err(HeadError::MissingHost));
    }

    #[test]
    fn host_must_agree_with_authority() {
        let ok = [
            ("https://a.example/", "a.example"),
            ("https://a.example/", "A.EXAMPLE:443"),
            ("https://a.example:443/", "a.example"),
            ("http://a.example:8080/", "a.example:8080"),
        ];
        for (uri, host) in ok {
            assert!(
                run("GET", uri, &[("host", host)], None).is_ok(),
                "{uri} {host}"
            );
        }
        let bad = [
            ("https://a.example/", "b.example"),
            ("https://a.example/", "a.example:8443"),
            ("http://a.example:8080/", "a.example"),
        ];
        for (uri, host) in bad {
            assert!(
                matches!(
                    run("GET", uri, &[("host", host)], None),
                    Err(HeadError::AuthorityMismatch { .. })
                ),
                "{uri} {host}"
            );
        }
        assert_eq!(
            run(
                "GET",
                "https://a.example/",
                &[("host", "a.example"), ("host", "a.example")],
                None
            ),
            Err(HeadError::DuplicateHost)
        );
        assert!(matches!(
            run("GET", "https://a.example/", &[("host", "a b")], None),
            Err(HeadError::InvalidHost(_))
        ));
    }

    #[test]
    fn connection_specific_fields_are_malformed() {
        for name in [
            "connection",
            "keep-alive",
            "proxy-connection",
            "transfer-encoding",
            "upgrade",
        ] {
            assert_eq!(
                run("GET", "https://a.example/", &[(name, "x")], None),
                Err(HeadError::ConnectionHeader(name.into())),
                "{name}"
            );
        }
        assert!(run("GET", "https://a.example/", &[("te", "trailers")], None).is_ok());
        assert_eq!(
            run("GET", "https://a.example/", &[("te", "gzip")], None),
            Err(HeadError::ConnectionHeader("te".into()))
        );
    }

    #[test]
    fn connect_only_in_its_extended_websocket_form() {
        assert_eq!(
            run(
                "CONNECT",
                "https://a.example/chat?x=1",
                &[("sec-websocket-version", "13")],
                Some("websocket")
            )
            .unwrap(),
            "a.example None Some(\"a.example\") /chat WebSocket"
        );
        assert_eq!(
            run("CONNECT", "https://a.example/", &[], Some("WebSocket"))
                .map(|s| s.ends_with("WebSocket")),
            Ok(true)
        );
        let plain: Uri = "a.example:443".parse().unwrap();
        assert_eq!(
            check(&Method::CONNECT, &plain, &HeaderMap::new(), None).map(|_| ()),
            Err(HeadError::Connect)
        );
        let e = run("CONNECT", "https://a.example/", &[], Some("connect-udp")).unwrap_err();
        assert_eq!(e, HeadError::UnsupportedProtocol("connect-udp".into()));
        assert_eq!(e.status(), http::StatusCode::NOT_IMPLEMENTED);
        assert_eq!(
            run("GET", "https://a.example/", &[], Some("websocket")),
            Err(HeadError::InvalidTarget)
        );
        // The path rules apply to the extended CONNECT's :path too.
        assert_eq!(
            run(
                "CONNECT",
                "https://a.example/a/../chat",
                &[],
                Some("websocket")
            )
            .unwrap(),
            "a.example None Some(\"a.example\") /chat WebSocket"
        );
        // A body announced on a WebSocket is refused like an HTTP/1.1 upgrade with a body.
        assert_eq!(
            run(
                "CONNECT",
                "https://a.example/",
                &[("content-length", "5")],
                Some("websocket")
            ),
            Err(HeadError::UpgradeWithBody)
        );
        assert!(
            run(
                "CONNECT",
                "https://a.example/",
                &[("content-length", "0")],
                Some("websocket")
            )
            .is_ok()
        );
    }

    #[test]
    fn split_cookies_are_joined() {
        let mut h = fields(&[("cookie", "a=1"), ("cookie", "b=2"), ("x", "y")]);
        assert!(join_cookies(&mut h));
        assert_eq!(h.get_all(header::COOKIE).iter().count(), 1);
        assert_eq!(h[header::COOKIE], "a=1; b=2");
        let mut one = fields(&[("cookie", "a=1")]);
        assert!(!join_cookies(&mut one));
        assert_eq!(one[header::COOKIE], "a=1");
    }
}
