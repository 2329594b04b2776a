//! The affinity cookie: which endpoint a cookie names, and the `Set-Cookie` that pins a client.
//!
//! The value is a keyed hash, never an address: the first 16 bytes of
//! HMAC-SHA256(`--affinity-key`, pool identity + endpoint address), base64url (22 characters).
//!
//! * Every replica with the same key mints and accepts the same value for the same endpoint, with
//!   no shared state: a client pinned by one replica is routed the same way by any other, and by a
//!   restarted one. That is what a Deployment of several wsgate replicas behind one Service needs.
//! * A value only ever selects among the *available endpoints of the route's own pool*: it is
//!   compared with the value of each, never decoded. A forged, stale, tampered or foreign value
//!   matches none and is treated as absent (normal balancing, then a fresh cookie); it cannot
//!   reach an address that is not already one of that pool's endpoints.
//! * With a secret key, the value reveals nothing about the address and cannot be computed for a
//!   chosen endpoint without having been served by it. Without a key (the default) the hash is
//!   still opaque but unkeyed, like the cookies of ingress-nginx and Traefik: someone who guesses
//!   the pool identity can confirm a guessed endpoint address offline. Setting the key (from a
//!   Secret, the same on every replica) closes that.

use super::affinity_token::TOKEN_LEN;
use super::pools::{BoundPool, EndpointState};
use crate::ir::{AffinityCookie, Backend, SameSite};
use http::{HeaderMap, HeaderValue, header};
use ring::hmac;
use std::sync::Arc;

/// Whether `value` has the shape of a cookie value wsgate issues.
fn well_formed(value: &str) -> bool {
    value.len() == TOKEN_LEN
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The well-formed values of cookie `name` in the request's `Cookie` headers, in order (a browser
/// may send several with one name, for different paths). Anything else is skipped.
pub(crate) fn presented<'a>(
    headers: &'a HeaderMap,
    name: &'a str,
) -> impl Iterator<Item = &'a str> + 'a {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(move |pair| {
            let (k, v) = pair.split_once('=')?;
            if k.trim() != name {
                return None;
            }
            let v = v.trim();
            // RFC 6265 allows the value in double quotes.
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v);
            well_formed(v).then_some(v)
        })
}

/// The available endpoint of `pool` the request's affinity cookie names, if the backend uses
/// affinity and the cookie names one.
pub(crate) fn pinned<'p>(
    backend: &Backend,
    pool: &'p BoundPool,
    headers: &HeaderMap,
    key: &hmac::Key,
) -> Option<&'p Arc<EndpointState>> {
    let cookie = backend.settings.affinity.as_ref()?;
    presented(headers, &cookie.name).find_map(|t| pool.find_by_token(t, key))
}

/// The `Set-Cookie` value pinning a client to the endpoint whose value is `token`.
/// `route_path` is the default `Path`; `secure` says the client connection is TLS.
pub(crate) fn set_cookie(
    cookie: &AffinityCookie,
    token: &str,
    route_path: &str,
    secure: bool,
) -> Option<HeaderValue> {
    let path = cookie.path.as_deref().unwrap_or(route_path);
    let mut v = format!("{}={token}; Path={path}", cookie.name);
    if let Some(age) = cookie.max_age.get() {
        v.push_str(&format!("; Max-Age={}", age.as_secs()));
    }
    v.push_str(match cookie.same_site {
        SameSite::Strict => "; SameSite=Strict",
        SameSite::Lax => "; SameSite=Lax",
        SameSite::None => "; SameSite=None",
    });
    // Browsers drop `SameSite=None` without `Secure`.
    if secure || cookie.same_site == SameSite::None {
        v.push_str("; Secure");
    }
    v.push_str("; HttpOnly");
    // Name and path were checked by translation; a value that still fails is not sent.
    HeaderValue::from_str(&v).ok()
}

/// After a request was served by `endpoint` (its label), adds the `Set-Cookie` that pins the
/// client there, unless the request's cookie already named that endpoint.
pub(crate) fn issue(
    headers: &mut HeaderMap,
    backend: &Backend,
    pool: &BoundPool,
    (pinned, endpoint): (Option<&Arc<EndpointState>>, Option<&str>),
    (route_path, secure): (&str, bool),
    key: &hmac::Key,
) {
    let (Some(cookie), Some(endpoint)) = (&backend.settings.affinity, endpoint) else {
        return;
    };
    if pinned.is_some_and(|p| p.label == endpoint) {
        return;
    }
    let Some(state) = pool.endpoints.iter().find(|e| e.label == endpoint) else {
        return;
    };
    if let Some(v) = set_cookie(cookie, state.affinity_token(key), route_path, secure) {
        headers.append(header::SET_COOKIE, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::Timeout;
    use crate::proxy::affinity_token::{key, token};

    #[test]
    fn tokens_are_keyed_stable_and_distinct() {
        let k = key(b"secret");
        let t = token(&k, "apps/chat", "127.0.0.1:8080");
        assert_eq!(t.len(), TOKEN_LEN);
        assert!(well_formed(&t));
        assert_eq!(t, token(&key(b"secret"), "apps/chat", "127.0.0.1:8080"));
        assert_ne!(t, token(&key(b"other"), "apps/chat", "127.0.0.1:8080"));
        assert_ne!(t, token(&k, "apps/chat", "127.0.0.1:8081"));
        assert_ne!(t, token(&k, "apps/chat2", "127.0.0.1:8080"));
        // The length prefix keeps the pool/endpoint boundary unambiguous.
        assert_ne!(token(&k, "a", "b:1"), token(&k, "ab", ":1"));
        assert!(!t.contains("127"));
    }

    #[test]
    fn cookie_header_parsing_skips_anything_malformed() {
        let good = token(&key(b""), "p", "h:1");
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("a=1; io=xyz"));
        h.append(
            header::COOKIE,
            HeaderValue::from_str(&format!(
                "wsgate_affinity=short; junk; =; wsgate_affinity=\"{good}\"; wsgate_affinity={good}x"
            ))
            .unwrap(),
        );
        h.append(
            header::COOKIE,
            HeaderValue::from_bytes(b"wsgate_affinity=\xff\xfe").unwrap(),
        );
        let found: Vec<&str> = presented(&h, "wsgate_affinity").collect();
        assert_eq!(found, vec![&*good]);
        assert_eq!(presented(&h, "WSGATE_AFFINITY").count(), 0);
        let long = format!("wsgate_affinity={}", "A".repeat(10_000));
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_str(&long).unwrap());
        assert_eq!(presented(&h, "wsgate_affinity").count(), 0);
        // Right length, not base64url: '+' and '/' of the standard alphabet, a control character.
        for bad in [
            "abcdefghijklmnopqrstu+",
            "abcdefghijklmnopqrstu/",
            "abcdefghijklmnopqrstu\t",
        ] {
            assert!(!well_formed(bad), "{bad:?}");
        }
    }

    #[test]
    fn set_cookie_attributes() {
        let mut c = AffinityCookie::default();
        let v = set_cookie(&c, "T", "/ws", false).unwrap();
        assert_eq!(v, "wsgate_affinity=T; Path=/ws; SameSite=Lax; HttpOnly");
        let v = set_cookie(&c, "T", "/ws", true).unwrap();
        assert_eq!(
            v,
            "wsgate_affinity=T; Path=/ws; SameSite=Lax; Secure; HttpOnly"
        );
        c.name = "route".into();
        c.path = Some("/".into());
        c.max_age = Timeout::secs(3600);
        c.same_site = SameSite::None;
        let v = set_cookie(&c, "T", "/ws", false).unwrap();
        assert_eq!(
            v,
            "route=T; Path=/; Max-Age=3600; SameSite=None; Secure; HttpOnly"
        );
    }
}
