//! The WebSocket handshake gate (client side) and the 101 check (backend side).

use crate::proxy::headers::has_token;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::{HeaderMap, Method, Request, StatusCode, Version, header};
use sha1::{Digest, Sha1};

const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Validates the HTTP/2 form of a client's opening handshake (RFC 8441 §5): an extended CONNECT
/// whose method, `:protocol`, `:scheme`, `:path` and `:authority` the request rules already
/// checked; what is left is `Sec-WebSocket-Version: 13`, exactly once. There is no
/// `Sec-WebSocket-Key` (wsgate makes its own for the backend), no `Upgrade`, no `Connection`.
pub fn check_client_h2<B>(req: &Request<B>) -> Result<(), GateError> {
    match exactly_one(req.headers(), header::SEC_WEBSOCKET_VERSION).map(str::trim) {
        Ok("13") => Ok(()),
        Ok(_) => Err(GateError::Version),
        Err(Count::None) => Err(GateError::Malformed("Sec-WebSocket-Version missing")),
        Err(Count::Many) => Err(GateError::Malformed(
            "Sec-WebSocket-Version appears more than once",
        )),
    }
}

/// A fresh `Sec-WebSocket-Key` (base64 of 16 random bytes) for a backend handshake wsgate opens
/// on behalf of an HTTP/2 client, which has no key of its own.
pub fn fresh_key() -> String {
    STANDARD.encode(rand::random::<[u8; 16]>())
}

/// Why a client handshake is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GateError {
    /// 400: malformed handshake.
    #[error("bad WebSocket handshake: {0}")]
    Malformed(&'static str),
    /// 426: unsupported `Sec-WebSocket-Version`.
    #[error("unsupported Sec-WebSocket-Version; only 13 is supported")]
    Version,
}

impl GateError {
    /// The status to answer with.
    pub fn status(&self) -> StatusCode {
        match self {
            GateError::Malformed(_) => StatusCode::BAD_REQUEST,
            GateError::Version => StatusCode::UPGRADE_REQUIRED,
        }
    }
}

/// Whether a request tries to open a WebSocket: it offers the `websocket` upgrade token or carries
/// any `Sec-WebSocket-*` handshake header. Such requests must pass [`check_client`]; other
/// `Upgrade` tokens (h2c, ...) are stripped and the request is proxied as plain HTTP.
pub fn is_websocket_attempt<B>(req: &Request<B>) -> bool {
    let h = req.headers();
    // Every request asks this: one pass over the names present first (a comparison each),
    // three hashed lookups only when one of the names is there.
    let named = |k: &header::HeaderName| {
        matches!(
            k.as_str(),
            "upgrade" | "sec-websocket-key" | "sec-websocket-version"
        )
    };
    if !h.keys().any(named) {
        return false;
    }
    has_token(h, header::UPGRADE, "websocket")
        || h.contains_key(header::SEC_WEBSOCKET_KEY)
        || h.contains_key(header::SEC_WEBSOCKET_VERSION)
}

/// Validates a client's opening handshake (RFC 6455 §4.2.1).
pub fn check_client<B>(req: &Request<B>) -> Result<(), GateError> {
    let h = req.headers();
    if req.method() != Method::GET {
        return Err(GateError::Malformed("method must be GET"));
    }
    if req.version() != Version::HTTP_11 {
        return Err(GateError::Malformed("HTTP/1.1 is required"));
    }
    let upgrade: Vec<&str> = h
        .get_all(header::UPGRADE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if upgrade.len() != 1 || !upgrade[0].trim().eq_ignore_ascii_case("websocket") {
        return Err(GateError::Malformed(
            "Upgrade must be exactly \"websocket\"",
        ));
    }
    if !has_token(h, header::CONNECTION, "upgrade") {
        return Err(GateError::Malformed("Connection must contain \"upgrade\""));
    }
    let key = exactly_one(h, header::SEC_WEBSOCKET_KEY).map_err(|n| match n {
        Count::None => GateError::Malformed("Sec-WebSocket-Key missing"),
        Count::Many => GateError::Malformed("Sec-WebSocket-Key appears more than once"),
    })?;
    match STANDARD.decode(key.trim()) {
        Ok(raw) if raw.len() == 16 => {}
        _ => {
            return Err(GateError::Malformed(
                "Sec-WebSocket-Key must be base64 of 16 bytes",
            ));
        }
    }
    match exactly_one(h, header::SEC_WEBSOCKET_VERSION).map(str::trim) {
        Ok("13") => Ok(()),
        Ok(_) => Err(GateError::Version),
        Err(Count::None) => Err(GateError::Malformed("Sec-WebSocket-Version missing")),
        Err(Count::Many) => Err(GateError::Malformed(
            "Sec-WebSocket-Version appears more than once",
        )),
    }
}

/// Why a header that must appear once does not.
enum Count {
    None,
    Many,
}

/// The one value of `name`; a value that is not text counts as absent.
fn exactly_one(h: &HeaderMap, name: header::HeaderName) -> Result<&str, Count> {
    let mut all = h.get_all(name).iter();
    let first = all.next().ok_or(Count::None)?;
    if all.next().is_some() {
        return Err(Count::Many);
    }
    first.to_str().map_err(|_| Count::None)
}

fn single(h: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    let mut all = h.get_all(name).iter();
    let first = all.next()?.to_str().ok()?;
    all.next().is_none().then_some(first)
}

/// The `Sec-WebSocket-Accept` value for a key.
pub fn accept_key(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.trim().as_bytes());
    sha.update(WS_GUID.as_bytes());
    STANDARD.encode(sha.finalize())
}

/// Checks the backend's 101: `Upgrade: websocket`, `Connection: upgrade`, the right accept value,
/// and a subprotocol only from those the client offered.
pub fn check_backend(
    h: &HeaderMap,
    client_key: &str,
    offered_protocols: &[String],
) -> Result<(), &'static str> {
    if !has_token(h, header::UPGRADE, "websocket") {
        return Err("backend 101 lacks Upgrade: websocket");
    }
    if !has_token(h, header::CONNECTION, "upgrade") {
        return Err("backend 101 lacks Connection: upgrade");
    }
    let accept =
        single(h, header::SEC_WEBSOCKET_ACCEPT).ok_or("backend 101 lacks Sec-WebSocket-Accept")?;
    if accept.trim() != accept_key(client_key) {
        return Err("backend 101 has a wrong Sec-WebSocket-Accept");
    }
    if let Some(p) = h.get(header::SEC_WEBSOCKET_PROTOCOL) {
        let chosen = p.to_str().unwrap_or("").trim();
        if !offered_protocols.iter().any(|o| o == chosen) {
            return Err("backend chose a subprotocol the client did not offer");
        }
    }
    Ok(())
}

/// The subprotocols a client offered, in order.
pub fn offered_protocols(h: &HeaderMap) -> Vec<String> {
    h.get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(f: impl FnOnce(http::request::Builder) -> http::request::Builder) -> Request<()> {
        let b = Request::get("/")
            .header("upgrade", "websocket")
            .header("connection", "keep-alive, Upgrade")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
            .header("sec-websocket-version", "13");
        f(b).body(()).unwrap()
    }

    #[test]
    fn h2_gate_needs_version_13_once() {
        let h2 = |f: fn(http::request::Builder) -> http::request::Builder| {
            check_client_h2(&f(Request::get("https://a.example/chat")).body(()).unwrap())
        };
        assert_eq!(h2(|b| b.header("sec-websocket-version", "13")), Ok(()));
        assert_eq!(
            h2(|b| b.header("sec-websocket-version", "8")),
            Err(GateError::Version)
        );
        assert_eq!(
            h2(|b| b),
            Err(GateError::Malformed("Sec-WebSocket-Version missing"))
        );
        assert_eq!(
            h2(|b| b
                .header("sec-websocket-version", "13")
                .header("sec-websocket-version", "13")),
            Err(GateError::Malformed(
                "Sec-WebSocket-Version appears more than once"
            ))
        );
        let key = fresh_key();
        assert_eq!(STANDARD.decode(&key).map(|k| k.len()), Ok(16));
        assert_ne!(key, fresh_key(), "keys are random");
    }

    #[test]
    fn attempts_are_recognised_by_any_handshake_header() {
        let attempt = |f: fn(http::request::Builder) -> http::request::Builder| {
            is_websocket_attempt(&f(Request::get("/")).body(()).unwrap())
        };
        assert!(attempt(|b| b.header("upgrade", "WebSocket")));
        assert!(attempt(|b| b.header("upgrade", "h2c, websocket")));
        assert!(attempt(|b| b.header("sec-websocket-key", "x")));
        assert!(attempt(|b| b.header("sec-websocket-version", "13")));
        assert!(!attempt(|b| b.header("upgrade", "h2c")));
        assert!(!attempt(|b| b.header("connection", "upgrade")));
        assert!(!attempt(|b| b.header("host", "a")));
        assert!(is_websocket_attempt(&req(|b| b)));
    }

    #[test]
    fn rfc_example_accept() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn gate_matrix() {
        assert_eq!(check_client(&req(|b| b)), Ok(()));
        let bad_version = req(|b| b.header("sec-websocket-version", "8"));
        // A duplicate version header is itself malformed, and said so.
        assert_eq!(
            check_client(&bad_version),
            Err(GateError::Malformed(
                "Sec-WebSocket-Version appears more than once"
            ))
        );
        let two_keys = req(|b| b.header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="));
        assert_eq!(
            check_client(&two_keys),
            Err(GateError::Malformed(
                "Sec-WebSocket-Key appears more than once"
            ))
        );
        let mut r = req(|b| b);
        r.headers_mut()
            .insert("sec-websocket-version", "8".parse().unwrap());
        assert_eq!(check_client(&r), Err(GateError::Version));
        r.headers_mut()
            .insert("sec-websocket-version", "13".parse().unwrap());
        r.headers_mut()
            .insert("sec-websocket-key", "c2hvcnQ=".parse().unwrap());
        assert!(matches!(check_client(&r), Err(GateError::Malformed(_))));
        let mut r = req(|b| b);
        r.headers_mut()
            .insert("upgrade", "websocket2".parse().unwrap());
        assert!(matches!(check_client(&r), Err(GateError::Malformed(_))));
        let mut r = req(|b| b);
        r.headers_mut()
            .insert("connection", "keep-alive".parse().unwrap());
        assert!(matches!(check_client(&r), Err(GateError::Malformed(_))));
        let mut r = req(|b| b);
        *r.method_mut() = Method::POST;
        assert!(matches!(check_client(&r), Err(GateError::Malformed(_))));
        let mut r = req(|b| b);
        r.headers_mut().remove("sec-websocket-key");
        assert!(matches!(check_client(&r), Err(GateError::Malformed(_))));
    }
}
