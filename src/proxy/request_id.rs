//! `X-Request-Id`: kept when a trusted proxy sent one, otherwise made here, so that a request
//! can be followed from the client's error page through wsgate's log to the backend's.

use http::{HeaderMap, HeaderName, HeaderValue};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The header name.
pub(crate) const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest id accepted from a trusted proxy; a longer one is replaced.
const MAX_LEN: usize = 128;

/// The request id to use: the trusted peer's if it sent a sane one, else a fresh one; either way
/// the request carries it afterwards.
pub(crate) fn ensure(headers: &mut HeaderMap, trusted_peer: bool) -> HeaderValue {
    if trusted_peer
        && let Some(v) = headers.get(X_REQUEST_ID)
        && (1..=MAX_LEN).contains(&v.len())
        && v.as_bytes().iter().all(|b| b.is_ascii_graphic())
    {
        return v.clone();
    }
    let id = fresh();
    headers.insert(X_REQUEST_ID, id.clone());
    id
}

/// 32 hex digits: a random process prefix and a counter, unique within the process and, with
/// overwhelming likelihood, across replicas; cheap enough for every request.
fn fresh() -> HeaderValue {
    static PREFIX: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = *PREFIX.get_or_init(rand::random);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut out = [0u8; 32];
    hex(prefix, &mut out[..16]);
    hex(n, &mut out[16..]);
    // Hex digits are always a valid header value.
    HeaderValue::from_bytes(&out).unwrap_or(HeaderValue::from_static("0"))
}

fn hex(mut v: u64, out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for slot in out.iter_mut().rev() {
        *slot = DIGITS[(v & 0xf) as usize];
        v >>= 4;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_here_unless_a_trusted_proxy_sent_one() {
        let mut h = HeaderMap::new();
        h.insert(X_REQUEST_ID, HeaderValue::from_static("from-client"));
        let made = ensure(&mut h, false);
        assert_ne!(
            made, "from-client",
            "an untrusted client cannot choose the id"
        );
        assert_eq!(h[X_REQUEST_ID], made);
        assert_eq!(made.len(), 32);
        let mut h = HeaderMap::new();
        h.insert(X_REQUEST_ID, HeaderValue::from_static("lb-42"));
        assert_eq!(ensure(&mut h, true), "lb-42");
        let mut h = HeaderMap::new();
        let a = ensure(&mut h, true);
        let b = ensure(&mut HeaderMap::new(), false);
        assert_ne!(a, b);
    }
}
