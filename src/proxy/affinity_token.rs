//! The affinity cookie's value: a keyed hash of pool identity + endpoint address (see
//! [`super::affinity`] for why). A leaf: the endpoint state caches its value, the cookie code
//! compares with it.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::hmac;

/// Length of a cookie value: 16 bytes in unpadded base64url.
pub(crate) const TOKEN_LEN: usize = 22;

/// Domain separation, so the key can never produce a value meaningful to another use.
const CONTEXT: &[u8] = b"wsgate affinity cookie v1\0";

/// The HMAC key cookie values are computed with (`--affinity-key`; empty = unkeyed).
pub(crate) fn key(secret: &[u8]) -> hmac::Key {
    hmac::Key::new(hmac::HMAC_SHA256, secret)
}

/// The cookie value naming `endpoint` (its `host:port` label) of pool `pool`.
pub(crate) fn token(key: &hmac::Key, pool: &str, endpoint: &str) -> Box<str> {
    let mut ctx = hmac::Context::with_key(key);
    ctx.update(CONTEXT);
    // Length-prefixed, so no two (pool, endpoint) pairs feed the same bytes.
    ctx.update(&(pool.len() as u64).to_be_bytes());
    ctx.update(pool.as_bytes());
    ctx.update(endpoint.as_bytes());
    let tag = ctx.sign();
    URL_SAFE_NO_PAD.encode(&tag.as_ref()[..16]).into()
}
