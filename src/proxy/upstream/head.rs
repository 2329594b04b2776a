//! Request heads as written to a backend, response heads as read from it, and the framing of a
//! response body (RFC 9112 section 6.3).

use crate::proxy::headers::Forwarding;
use bytes::{Buf, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Version, header};

/// Most header lines accepted in a backend response head.
const MAX_HEADERS: usize = 128;
/// Smallest capacity of a response's header map (see [`parse_response`]).
const RECYCLED_CAPACITY: usize = 12;
/// Largest backend response head.
pub(crate) const MAX_HEAD_BYTES: usize = 64 * 1024;

/// How the request body is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RequestBody {
    /// No body.
    None,
    /// `Content-Length` bytes, as the client declared.
    Length,
    /// Chunked (the client's framing is unknown or was itself chunked).
    Chunked,
}

/// Appends `METHOD target HTTP/1.1`, the headers, the forwarding headers, and the framing header
/// for `body`.
pub(crate) fn encode_request(
    out: &mut Vec<u8>,
    method: &Method,
    target: &str,
    (headers, forwarding): (&HeaderMap, &Forwarding),
    body: RequestBody,
) {
    let lines = || {
        headers
            .iter()
            .map(|(k, v)| (k, v.as_bytes()))
            .chain(forwarding.lines())
    };
    let size = lines()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum::<usize>();
    out.reserve(method.as_str().len() + target.len() + size + 40);
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in lines() {
        if body != RequestBody::Length && name == header::CONTENT_LENGTH {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    if body == RequestBody::Chunked {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// How a response body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body (HEAD, 1xx, 204, 304).
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Until the backend closes the connection.
    UntilClose,
}

/// A parsed response head.
#[derive(Debug)]
pub(crate) struct ResponseHead {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) framing: Framing,
    /// Whether the connection may carry another request after this response.
    pub(crate) keep_alive: bool,
}

/// Why a response head is unusable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum HeadError {
    #[error("invalid response head: {0}")]
    Invalid(String),
    #[error("response head larger than {MAX_HEAD_BYTES} bytes")]
    TooLarge,
}

/// Parses a complete response head from the front of `buf` and removes it; `Ok(None)` when more
/// bytes are needed. `method` is the request's (a HEAD response has no body).
pub(crate) fn parse_response(
    buf: &mut BytesMut,
    method: &Method,
) -> Result<Option<ResponseHead>, HeadError> {
    // Uninitialised slots: no 4 KiB of zeroing per response head.
    let mut slots =
        [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut []);
    let config = httparse::ParserConfig::default();
    let len = match config.parse_response_with_uninit_headers(&mut parsed, buf, &mut slots) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD_BYTES => {
            return Err(HeadError::TooLarge);
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(HeadError::Invalid(e.to_string())),
    };
    if len > MAX_HEAD_BYTES {
        return Err(HeadError::TooLarge);
    }
    let code = parsed.code.unwrap_or(0);
    let status = StatusCode::from_u16(code)
        .map_err(|_| HeadError::Invalid(format!("status code {code}")))?;
    let version = if parsed.version == Some(1) {
        Version::HTTP_11
    } else {
        Version::HTTP_10
    };
    // Room for a typical request too: hyper keeps a response's map, emptied, for the next
    // request on the client connection, and the proxy adds a few headers to each request; a
    // map this size does not grow (rehash) on every request.
    let mut headers = HeaderMap::with_capacity(parsed.headers.len().max(RECYCLED_CAPACITY));
    // Which framing-related names appear is noted on the way (a comparison of the parsed
    // name), so that the usual response needs no lookup for them afterwards.
    let (mut has_te, mut has_connection) = (false, false);
    for h in parsed.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| HeadError::Invalid(format!("header name {:?}", h.name)))?;
        let value = HeaderValue::from_bytes(h.value)
            .map_err(|_| HeadError::Invalid(format!("value of header {:?}", h.name)))?;
        has_te |= name == header::TRANSFER_ENCODING;
        has_connection |= name == header::CONNECTION;
        headers.append(name, value);
    }
    let (framing, framing_reusable) = framing(method, status, &headers, has_te)?;
    if has_te {
        // The body reaches the client de-chunked and re-framed by hyper: a Content-Length sent
        // beside Transfer-Encoding would not describe it (RFC 9112 6.3: Transfer-Encoding wins).
        headers.remove(header::CONTENT_LENGTH);
    }
    buf.advance(len);
    let close =
        has_connection && super::super::headers::has_token(&headers, header::CONNECTION, "close");
    let keep_alive = version == Version::HTTP_11 && !close && framing_reusable;
    Ok(Some(ResponseHead {
        status,
        headers,
        framing,
        keep_alive,
    }))
}

/// The body framing of a response, and whether it leaves the connection reusable. `has_te`:
/// whether `headers` has `Transfer-Encoding`.
fn framing(
    method: &Method,
    status: StatusCode,
    headers: &HeaderMap,
    has_te: bool,
) -> Result<(Framing, bool), HeadError> {
    if method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Ok((Framing::Empty, true));
    }
    if has_te {
        let codings: Vec<&str> = headers
            .get_all(header::TRANSFER_ENCODING)
            .iter()
            .map(|v| v.to_str().unwrap_or("?"))
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .collect();
        // Transfer-Encoding is hop-by-hop: wsgate decodes `chunked` and re-frames the body, so
        // any other coding (gzip, ...) would reach the client undeclared. Refused (502).
        if let Some(other) = codings.iter().find(|t| !t.eq_ignore_ascii_case("chunked")) {
            return Err(HeadError::Invalid(format!(
                "unsupported transfer coding {other:?}"
            )));
        }
        if codings.len() != 1 {
            return Err(HeadError::Invalid(
                "Transfer-Encoding must be exactly \"chunked\"".into(),
            ));
        }
        let chunked = true;
        // Both Transfer-Encoding and Content-Length: chunked wins, and the connection is not
        // trusted with another request (RFC 9112 6.3, smuggling hygiene).
        let reusable = chunked && !headers.contains_key(header::CONTENT_LENGTH);
        let framing = if chunked {
            Framing::Chunked
        } else {
            Framing::UntilClose
        };
        return Ok((framing, reusable));
    }
    let mut length: Option<u64> = None;
    for v in headers.get_all(header::CONTENT_LENGTH) {
        for part in v.to_str().unwrap_or("x").split(',') {
            let part = part.trim();
            let n = (!part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
                .then(|| part.parse::<u64>().ok())
                .flatten()
                .ok_or_else(|| HeadError::Invalid(format!("Content-Length {part:?}")))?;
            if length.is_some_and(|l| l != n) {
                return Err(HeadError::Invalid(
                    "conflicting Content-Length values".into(),
                ));
            }
            length = Some(n);
        }
    }
    Ok(match length {
        Some(0) => (Framing::Empty, true),
        Some(n) => (Framing::Length(n), true),
        None => (Framing::UntilClose, false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str, method: Method) -> Result<Option<ResponseHead>, HeadError> {
        let mut buf = BytesMut::from(raw);
        parse_response(&mut buf, &method)
    }

    #[test]
    fn encodes_the_head_with_the_framing_it_was_told() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("a.example"));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("5"));
        let mut out = Vec::new();
        let none = Forwarding::default();
        encode_request(
            &mut out,
            &Method::POST,
            "/x?y=1",
            (&h, &none),
            RequestBody::Length,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "POST /x?y=1 HTTP/1.1\r\nhost: a.example\r\ncontent-length: 5\r\n\r\n"
        );
        let mut out = Vec::new();
        encode_request(
            &mut out,
            &Method::POST,
            "/",
            (&h, &none),
            RequestBody::Chunked,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "POST / HTTP/1.1\r\nhost: a.example\r\ntransfer-encoding: chunked\r\n\r\n"
        );
        // The forwarding headers follow the request's own.
        let client = crate::proxy::headers::ClientInfo::new([192, 0, 2, 1].into(), true);
        let fwd = crate::proxy::headers::set_forwarding(&mut h, &client, "a.example", &[]);
        let mut out = Vec::new();
        encode_request(&mut out, &Method::GET, "/", (&h, &fwd), RequestBody::None);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "GET / HTTP/1.1\r\nhost: a.example\r\nx-forwarded-for: 192.0.2.1\r\n\
             forwarded: for=192.0.2.1;proto=https;host=\"a.example\"\r\n\
             x-forwarded-proto: https\r\nx-forwarded-host: a.example\r\n\r\n"
        );
    }

    #[test]
    fn partial_heads_wait_and_complete_heads_are_consumed() {
        let mut buf = BytesMut::from("HTTP/1.1 200 OK\r\ncontent-length: 3\r\n");
        assert!(matches!(parse_response(&mut buf, &Method::GET), Ok(None)));
        buf.extend_from_slice(b"\r\nabc");
        let head = parse_response(&mut buf, &Method::GET).unwrap().unwrap();
        assert_eq!(head.status, StatusCode::OK);
        assert_eq!(head.framing, Framing::Length(3));
        assert!(head.keep_alive);
        assert_eq!(&buf[..], b"abc");
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let head = |raw: &str, m: Method| parse(raw, m).unwrap().unwrap();
        let h = head("HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n", Method::HEAD);
        assert_eq!((h.framing, h.keep_alive), (Framing::Empty, true));
        let h = head(
            "HTTP/1.1 304 Not Modified\r\ncontent-length: 9\r\n\r\n",
            Method::GET,
        );
        assert_eq!(h.framing, Framing::Empty);
        for unknown in [
            "gzip, chunked",
            "gzip",
            "chunked, chunked",
            "chunked, identity",
        ] {
            let raw = format!("HTTP/1.1 200 OK\r\ntransfer-encoding: {unknown}\r\n\r\n");
            assert!(
                matches!(parse(&raw, Method::GET), Err(HeadError::Invalid(_))),
                "{unknown}"
            );
        }
        let h = head(
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 4\r\n\r\n",
            Method::GET,
        );
        assert_eq!((h.framing, h.keep_alive), (Framing::Chunked, false));
        assert!(
            !h.headers.contains_key(header::CONTENT_LENGTH),
            "Content-Length beside Transfer-Encoding is dropped"
        );
        let h = head("HTTP/1.1 200 OK\r\n\r\n", Method::GET);
        assert_eq!((h.framing, h.keep_alive), (Framing::UntilClose, false));
        let h = head(
            "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\n",
            Method::GET,
        );
        assert_eq!((h.framing, h.keep_alive), (Framing::Length(2), false));
        let h = head("HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\n", Method::GET);
        assert!(!h.keep_alive);
        let h = head(
            "HTTP/1.1 200 OK\r\ncontent-length: 7, 7\r\n\r\n",
            Method::GET,
        );
        assert_eq!(h.framing, Framing::Length(7));
    }

    #[test]
    fn bad_heads_are_errors() {
        for raw in [
            "HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: +1\r\n\r\n",
            "HTTP/1.1 999x OK\r\n\r\n",
            "garbage\r\n\r\n",
        ] {
            assert!(
                matches!(parse(raw, Method::GET), Err(HeadError::Invalid(_))),
                "{raw:?}"
            );
        }
        let huge = format!("HTTP/1.1 200 OK\r\nx: {}", "a".repeat(MAX_HEAD_BYTES));
        assert_eq!(parse(&huge, Method::GET).unwrap_err(), HeadError::TooLarge);
    }
}
