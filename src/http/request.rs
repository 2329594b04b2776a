//! RFC 9112 request-head rules on the client side: one valid `Host`, absolute-form targets routed by
//! their authority, framing headers a proxy can forward safely, no body on an upgrade request.
//!
//! hyper's parser already refuses what cannot be parsed (obs-fold, whitespace before a colon,
//! invalid characters, conflicting `Content-Length`, ...); these rules cover what it accepts but a
//! proxy must not forward. Pure: no I/O, nothing but the request head.

use super::path::{self, NormalPath};
use http::{HeaderMap, HeaderName, Method, StatusCode, Uri, Version, header};

/// Why a request head is refused, with the status the client gets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    /// An HTTP/1.1 request without `Host` (400).
    #[error("missing Host header")]
    MissingHost,
    /// More than one `Host` field line (400).
    #[error("more than one Host header")]
    DuplicateHost,
    /// A `Host` value or target authority that is not `host[:port]` (400).
    #[error("invalid host {0:?}")]
    InvalidHost(String),
    /// An absolute-form target that is not `http(s)://authority/...`, or one with user info (400).
    #[error("invalid absolute-form request target")]
    InvalidTarget,
    /// `CONNECT` (authority-form): wsgate is not a forward proxy (405).
    #[error("CONNECT is not supported")]
    Connect,
    /// `Transfer-Encoding` whose final coding is not `chunked`, with `chunked` twice, or on
    /// HTTP/1.0 (400).
    #[error("invalid Transfer-Encoding")]
    BadTransferEncoding,
    /// A transfer coding other than `chunked` before it, e.g. `gzip, chunked` (501).
    #[error("unsupported transfer coding {0:?}")]
    UnsupportedCoding(String),
    /// Both `Transfer-Encoding` and `Content-Length` (400; RFC 9112 §6.1 allows refusing).
    #[error("both Transfer-Encoding and Content-Length")]
    LengthAndEncoding,
    /// A `Content-Length` that is not one decimal number (400).
    #[error("invalid Content-Length")]
    BadContentLength,
    /// A WebSocket upgrade request that carries a body (400).
    #[error("an upgrade request must not have a body")]
    UpgradeWithBody,
    /// A path refused by normalisation (400).
    #[error(transparent)]
    Path(#[from] path::PathError),
    /// HTTP/2: a `Host` header naming another host or port than `:authority` (400, RFC 9113
    /// §8.3.1).
    #[error("Host {host:?} does not match :authority {authority:?}")]
    AuthorityMismatch {
        /// The `:authority` pseudo-header.
        authority: String,
        /// The `Host` header.
        host: String,
    },
    /// HTTP/2: a connection-specific header field, or `TE` other than `trailers` (400, RFC
    /// 9113 §8.2.2).
    #[error("connection-specific header {0:?} in an HTTP/2 request")]
    ConnectionHeader(String),
    /// HTTP/2: an extended CONNECT for a protocol other than `websocket` (501, RFC 8441 §4).
    #[error("extended CONNECT protocol {0:?} is not supported")]
    UnsupportedProtocol(String),
}

impl HeadError {
    /// The status to answer with.
    pub fn status(&self) -> StatusCode {
        match self {
            HeadError::Connect => StatusCode::METHOD_NOT_ALLOWED,
            HeadError::UnsupportedCoding(_) | HeadError::UnsupportedProtocol(_) => {
                StatusCode::NOT_IMPLEMENTED
            }
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// What routing needs from an accepted request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead<'a> {
    /// The routing host: lower-case, without port and trailing dot (empty when the request named
    /// none, which HTTP/1.0 allows).
    pub host: String,
    /// The port named with the host, if any.
    pub port: Option<u16>,
    /// For an absolute-form target: its authority, which replaces the `Host` header.
    pub rewrite_host: Option<String>,
    /// The normalised path.
    pub path: NormalPath<'a>,
}

/// Checks a request head and extracts the routing authority and normalised path.
pub fn check<'a>(
    method: &Method,
    uri: &'a Uri,
    version: Version,
    headers: &HeaderMap,
) -> Result<RequestHead<'a>, HeadError> {
    if *method == Method::CONNECT {
        return Err(HeadError::Connect);
    }
    let mut hosts = headers.get_all(header::HOST).iter();
    let host_header = hosts.next();
    if hosts.next().is_some() {
        return Err(HeadError::DuplicateHost);
    }
    // HTTP/2 names the host in `:authority` (the URI's authority); HTTP/1.1 always needs `Host`.
    let named = host_header.is_some() || (version == Version::HTTP_2 && uri.authority().is_some());
    if !named && version != Version::HTTP_10 && version != Version::HTTP_09 {
        return Err(HeadError::MissingHost);
    }
    let from_header = match host_header {
        Some(v) => {
            let text = v.to_str().map_err(|_| {
                HeadError::InvalidHost(String::from_utf8_lossy(v.as_bytes()).into())
            })?;
            Some(parse_authority(text)?)
        }
        None => None,
    };
    let (host, port, rewrite_host) = match (uri.scheme_str(), uri.authority()) {
        (None, None) => {
            let (h, p) = from_header.unwrap_or_default();
            (h, p, None)
        }
        (Some(scheme), Some(auth)) => {
            let scheme_ok =
                scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https");
            if !scheme_ok || auth.as_str().contains('@') {
                return Err(HeadError::InvalidTarget);
            }
            let (h, p) = parse_authority(auth.as_str())?;
            if h.is_empty() {
                return Err(HeadError::InvalidTarget);
            }
            (h, p, Some(auth.as_str().to_string()))
        }
        _ => return Err(HeadError::InvalidTarget),
    };
    let framed_body = check_framing(version, headers)?;
    if framed_body && is_websocket_upgrade(headers) {
        return Err(HeadError::UpgradeWithBody);
    }
    let path = path::normalize(uri.path())?;
    Ok(RequestHead {
        host,
        port,
        rewrite_host,
        path,
    })
}

/// Checks `Transfer-Encoding` and `Content-Length`; returns whether the request has a body.
fn check_framing(version: Version, headers: &HeaderMap) -> Result<bool, HeadError> {
    // Most requests (GET) have neither header: one pass over the names present settles that
    // without the two hashed lookups below.
    let framed =
        |k: &header::HeaderName| *k == header::TRANSFER_ENCODING || *k == header::CONTENT_LENGTH;
    if !headers.keys().any(framed) {
        return Ok(false);
    }
    // Looked up once: the "present but empty" check below reuses the lookup.
    let te = headers.get_all(header::TRANSFER_ENCODING);
    let mut codings = te
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(|t| t.trim_ascii())
        .filter(|t| !t.is_empty())
        .peekable();
    let chunked = if codings.peek().is_some() {
        if version != Version::HTTP_11 {
            return Err(HeadError::BadTransferEncoding);
        }
        let all: Vec<&[u8]> = codings.collect();
        let Some((last, before)) = all.split_last() else {
            return Err(HeadError::BadTransferEncoding);
        };
        if !last.eq_ignore_ascii_case(b"chunked")
            || before.iter().any(|c| c.eq_ignore_ascii_case(b"chunked"))
        {
            return Err(HeadError::BadTransferEncoding);
        }
        if let Some(other) = before.first() {
            return Err(HeadError::UnsupportedCoding(
                String::from_utf8_lossy(other).into_owned(),
            ));
        }
        true
    } else if te.iter().next().is_some() {
        // Present but empty.
        return Err(HeadError::BadTransferEncoding);
    } else {
        false
    };
    let mut length: Option<u64> = None;
    for v in headers.get_all(header::CONTENT_LENGTH) {
        for part in v.as_bytes().split(|&b| b == b',') {
            let part = part.trim_ascii();
            if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
                return Err(HeadError::BadContentLength);
            }
            let n: u64 = std::str::from_utf8(part)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or(HeadError::BadContentLength)?;
            if length.is_some_and(|l| l != n) {
                return Err(HeadError::BadContentLength);
            }
            length = Some(n);
        }
    }
    if chunked && length.is_some() {
        return Err(HeadError::LengthAndEncoding);
    }
    Ok(chunked || length.is_some_and(|n| n > 0))
}

fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::UPGRADE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"websocket"))
        || headers.contains_key(header::SEC_WEBSOCKET_KEY)
}

/// Parses `host[:port]` (RFC 3986 authority without user info): a registered name of letters,
/// digits, `-`, `.` and `_`, an IPv4 address, or an IPv6 literal in brackets. Returns the host
/// lower-cased without a trailing dot, and the port.
pub fn parse_authority(s: &str) -> Result<(String, Option<u16>), HeadError> {
    let bad = || HeadError::InvalidHost(s.chars().take(64).collect());
    if s.len() > 262 {
        return Err(bad());
    }
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (inner, after) = rest.split_once(']').ok_or_else(bad)?;
        inner.parse::<std::net::Ipv6Addr>().map_err(|_| bad())?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or_else(bad)?),
        };
        (inner, port)
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    let port = match port {
        None | Some("") => None,
        Some(p) if p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => {
            Some(p.parse::<u16>().map_err(|_| bad())?)
        }
        Some(_) => return Err(bad()),
    };
    let bracketed = s.starts_with('[');
    if !bracketed {
        // One pass: the allowed characters and no empty label (`..`); no substring search.
        let mut prev = 0u8;
        let name_ok = host.bytes().all(|b| {
            let ok = (b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
                && !(b == b'.' && prev == b'.');
            prev = b;
            ok
        });
        if !name_ok || host.len() > 254 || host.starts_with('.') {
            return Err(bad());
        }
    }
    Ok((host.trim_end_matches('.').to_ascii_lowercase(), port))
}

/// Removes header fields whose name contains `_` (as nginx does by default with
/// `underscores_in_headers off`): `X_Forwarded_For` must not pass for `X-Forwarded-For` at a
/// backend that folds `_` into `-` (CGI-style frameworks do). Returns how many were dropped.
pub fn drop_underscore_headers(headers: &mut HeaderMap) -> usize {
    if !headers.keys().any(|k| k.as_str().contains('_')) {
        return 0;
    }
    let names: Vec<HeaderName> = headers
        .keys()
        .filter(|k| k.as_str().contains('_'))
        .cloned()
        .collect();
    let mut n = 0;
    for name in names {
        n += headers.get_all(&name).iter().count();
        headers.remove(&name);
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(lines: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in lines {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    fn run(target: &str, version: Version, lines: &[(&str, &str)]) -> Result<String, HeadError> {
        let uri: Uri = target.parse().unwrap();
        check(&Method::GET, &uri, version, &head(lines)).map(|h| {
            format!(
                "{} {:?} {:?} {}",
                h.host, h.port, h.rewrite_host, h.path.matching
            )
        })
    }

    #[test]
    fn host_rules() {
        let v11 = Version::HTTP_11;
        assert_eq!(
            run("/a", v11, &[("host", "Chat.Example.com.:8080")]).unwrap(),
            "chat.example.com Some(8080) None /a"
        );
        assert_eq!(run("/a", v11, &[]), Err(HeadError::MissingHost));
        assert_eq!(
            run("/a", v11, &[("host", "a"), ("host", "b")]),
            Err(HeadError::DuplicateHost)
        );
        assert_eq!(
            run("/a", Version::HTTP_10, &[]).unwrap(),
            " None None /a",
            "HTTP/1.0 may omit Host"
        );
        for bad in [
            "a b", "a,b", "a/b", "a@b", "[::1", "[zz]", "a:99999", "a:8x", "..", "a..b",
        ] {
            assert!(
                matches!(
                    run("/", v11, &[("host", bad)]),
                    Err(HeadError::InvalidHost(_))
                ),
                "{bad}"
            );
        }
        assert_eq!(
            run("/", v11, &[("host", "[::1]:80")]).unwrap(),
            "::1 Some(80) None /"
        );
        assert_eq!(run("/", v11, &[("host", "")]).unwrap(), " None None /");
    }

    #[test]
    fn absolute_form_routes_by_its_authority() {
        assert_eq!(
            run(
                "http://A.test:81/x/../y",
                Version::HTTP_11,
                &[("host", "b.test")]
            )
            .unwrap(),
            "a.test Some(81) Some(\"A.test:81\") /y"
        );
        assert_eq!(
            run("http://u@a.test/", Version::HTTP_11, &[("host", "a.test")]),
            Err(HeadError::InvalidTarget)
        );
        assert_eq!(
            run("ftp://a.test/", Version::HTTP_11, &[("host", "a.test")]),
            Err(HeadError::InvalidTarget)
        );
        // Host is still required and checked (RFC 9112 §3.2).
        assert_eq!(
            run("http://a.test/", Version::HTTP_11, &[]),
            Err(HeadError::MissingHost)
        );
    }

    #[test]
    fn framing_rules() {
        let v11 = Version::HTTP_11;
        let h = ("host", "a");
        assert!(run("/", v11, &[h, ("transfer-encoding", "chunked")]).is_ok());
        assert_eq!(
            run("/", v11, &[h, ("transfer-encoding", "chunked, identity")]),
            Err(HeadError::BadTransferEncoding)
        );
        assert_eq!(
            run(
                "/",
                v11,
                &[
                    h,
                    ("transfer-encoding", "chunked"),
                    ("transfer-encoding", "chunked")
                ]
            ),
            Err(HeadError::BadTransferEncoding)
        );
        assert_eq!(
            run("/", v11, &[h, ("transfer-encoding", "gzip, chunked")]),
            Err(HeadError::UnsupportedCoding("gzip".into()))
        );
        assert_eq!(
            run(
                "/",
                Version::HTTP_10,
                &[h, ("transfer-encoding", "chunked")]
            ),
            Err(HeadError::BadTransferEncoding)
        );
        assert_eq!(
            run(
                "/",
                v11,
                &[h, ("transfer-encoding", "chunked"), ("content-length", "3")]
            ),
            Err(HeadError::LengthAndEncoding)
        );
        assert_eq!(
            run("/", v11, &[h, ("content-length", "3, 4")]),
            Err(HeadError::BadContentLength)
        );
        assert_eq!(
            run("/", v11, &[h, ("content-length", "+3")]),
            Err(HeadError::BadContentLength)
        );
        assert!(run("/", v11, &[h, ("content-length", "3, 3")]).is_ok());
    }

    #[test]
    fn upgrade_with_body_is_refused() {
        let v11 = Version::HTTP_11;
        let ws = [
            ("host", "a"),
            ("upgrade", "websocket"),
            ("connection", "upgrade"),
        ];
        assert!(run("/", v11, &ws).is_ok());
        let mut with_len = ws.to_vec();
        with_len.push(("content-length", "5"));
        assert_eq!(run("/", v11, &with_len), Err(HeadError::UpgradeWithBody));
        let mut zero = ws.to_vec();
        zero.push(("content-length", "0"));
        assert!(run("/", v11, &zero).is_ok());
        let mut chunked = ws.to_vec();
        chunked.push(("transfer-encoding", "chunked"));
        assert_eq!(run("/", v11, &chunked), Err(HeadError::UpgradeWithBody));
        // Other upgrade tokens are stripped, so their bodies are plain request bodies.
        assert!(
            run(
                "/",
                v11,
                &[("host", "a"), ("upgrade", "h2c"), ("content-length", "5")]
            )
            .is_ok()
        );
    }

    #[test]
    fn connect_and_bad_paths() {
        let uri: Uri = "a.test:443".parse().unwrap();
        assert_eq!(
            check(
                &Method::CONNECT,
                &uri,
                Version::HTTP_11,
                &head(&[("host", "a.test")])
            ),
            Err(HeadError::Connect)
        );
        assert!(matches!(
            run("/a%2fb", Version::HTTP_11, &[("host", "a")]),
            Err(HeadError::Path(_))
        ));
    }

    #[test]
    fn underscore_headers_are_dropped() {
        let mut h = head(&[
            ("x_forwarded_for", "1.2.3.4"),
            ("x-ok", "1"),
            ("a_b", "1"),
            ("a_b", "2"),
        ]);
        assert_eq!(drop_underscore_headers(&mut h), 3);
        assert_eq!(h.len(), 1);
        assert_eq!(drop_underscore_headers(&mut h), 0);
    }
}
