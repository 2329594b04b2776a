//! `X-Request-Id`: kept when a trusted proxy sent one, otherwise made here, so that a request
//! can be followed from the client's error page through wsgate's log to the backend's.

use http::{HeaderMap, HeaderName, HeaderValue};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The header name.
pub(crate) const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest id accepted from a trusted proxy; a longer one is replaced.
const MAX_LEN: usize = 128;

/// A request's id: made here (kept as text on the stack, so the log and an error page need no
/// copy of the header value) or the one a trusted proxy sent.
pub(crate) enum RequestId {
    /// 32 hex digits made by [`ensure`].
    Made([u8; 32]),
    /// A trusted proxy's id, checked to be 1..=128 visible ASCII characters.
    Given(HeaderValue),
}

impl RequestId {
    /// The id as text (for the access log and the error body).
    pub(crate) fn as_str(&self) -> &str {
        match self {
            RequestId::Made(digits) => std::str::from_utf8(digits).unwrap_or(""),
            RequestId::Given(v) => v.to_str().unwrap_or(""),
        }
    }

    /// The id as a header value (for a response the proxy answers itself).
    pub(crate) fn header_value(&self) -> HeaderValue {
        match self {
            // Hex digits are always a valid header value.
            RequestId::Made(digits) => {
                HeaderValue::from_bytes(digits).unwrap_or(HeaderValue::from_static("0"))
            }
            RequestId::Given(v) => v.clone(),
        }
    }
}

/// The request id to use: the trusted peer's if it sent a sane one, else a fresh one; either way
/// the request carries it afterwards.
pub(crate) fn ensure(headers: &mut HeaderMap, trusted_peer: bool) -> RequestId {
    if trusted_peer
        && let Some(v) = headers.get(X_REQUEST_ID)
        && (1..=MAX_LEN).contains(&v.len())
        && v.as_bytes().iter().all(|b| b.is_ascii_graphic())
    {
        return RequestId::Given(v.clone());
    }
    let id = RequestId::Made(fresh());
    // Inserted once and not cloned: a clone would turn the value's buffer into a shared one
    // (another allocation) on every request.
    headers.insert(X_REQUEST_ID, id.header_value());
    id
}

/// 32 hex digits: a random process prefix and a counter, unique within the process and, with
/// overwhelming likelihood, across replicas; cheap enough for every request.
fn fresh() -> [u8; 32] {
    static PREFIX: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = *PREFIX.get_or_init(rand::random);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut out = [0u8; 32];
    hex(prefix, &mut out[..16]);
    hex(n, &mut out[16..]);
    out
}

/// `v` as 16 lower-case hex digits into `out`, a byte (two digits) at a time.
fn hex(v: u64, out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (pair, byte) in out.chunks_exact_mut(2).zip(v.to_be_bytes()) {
        pair[0] = DIGITS[usize::from(byte >> 4)];
        pair[1] = DIGITS[usize::from(byte & 0xf)];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_digits_in_order() {
        let mut out = [0u8; 16];
        hex(0x0123_4567_89ab_cdef, &mut out);
        assert_eq!(&out, b"0123456789abcdef");
        hex(0xf, &mut out);
        assert_eq!(&out, b"000000000000000f");
    }

    #[test]
    fn made_here_unless_a_trusted_proxy_sent_one() {
        let mut h = HeaderMap::new();
        h.insert(X_REQUEST_ID, HeaderValue::from_static("from-client"));
        let made = ensure(&mut h, false);
        assert_ne!(
            made.as_str(),
            "from-client",
            "an untrusted client cannot choose the id"
        );
        assert_eq!(h[X_REQUEST_ID], made.as_str());
        assert_eq!(made.header_value(), made.as_str());
        assert_eq!(made.as_str().len(), 32);
        assert!(made.as_str().bytes().all(|b| b.is_ascii_hexdigit()));
        let mut h = HeaderMap::new();
        h.insert(X_REQUEST_ID, HeaderValue::from_static("lb-42"));
        let given = ensure(&mut h, true);
        assert_eq!(given.as_str(), "lb-42");
        assert_eq!(given.header_value(), "lb-42");
        let mut h = HeaderMap::new();
        h.insert(X_REQUEST_ID, HeaderValue::from_static("has space"));
        assert_ne!(
            ensure(&mut h, true).as_str(),
            "has space",
            "a bad id is replaced"
        );
        let mut h = HeaderMap::new();
        let a = ensure(&mut h, true);
        let b = ensure(&mut HeaderMap::new(), false);
        assert_ne!(a.as_str(), b.as_str());
    }
}
