//! Header hygiene: hop-by-hop removal and the forwarding headers.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;
use std::net::IpAddr;

/// Headers that describe one connection, never forwarded (RFC 9110 7.6.1), as names so that
/// removing them needs no parsing.
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
    header::PROXY_AUTHENTICATE,
];

/// Removes hop-by-hop headers and every header named in `Connection`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    // One pass over the names present instead of a lookup per hop-by-hop name (this runs twice
    // per proxied request, and usually finds nothing).
    if !headers.keys().any(|k| HOP_BY_HOP.contains(k)) {
        return;
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
}

/// Whether a comma-separated header contains `token` (case-insensitive).
pub fn has_token(headers: &HeaderMap, name: HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// What the proxy knows about the client side of a request.
#[derive(Clone, Debug)]
pub struct ClientInfo {
    /// The TCP peer.
    pub peer: IpAddr,
    /// Whether the connection is TLS.
    pub tls: bool,
    /// `peer` as text, formatted once per connection rather than twice per request.
    peer_text: Box<str>,
}

impl ClientInfo {
    /// The client side of a connection from `peer`.
    pub fn new(peer: IpAddr, tls: bool) -> Self {
        Self {
            peer,
            tls,
            peer_text: peer.to_string().into(),
        }
    }

    /// `peer` as text.
    pub fn peer_text(&self) -> &str {
        &self.peer_text
    }
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Sets `X-Forwarded-For/-Proto/-Host` and `Forwarded`. Incoming values are kept (appended to)
/// only when the peer is a trusted proxy; otherwise they are replaced, so clients cannot spoof them.
pub fn set_forwarding(headers: &mut HeaderMap, client: &ClientInfo, host: &str, trusted: &[IpNet]) {
    let trusted_peer = trusted.iter().any(|n| n.contains(&client.peer));
    let proto = if client.tls { "https" } else { "http" };
    let peer = &*client.peer_text;
    // Each value is built in one String that becomes the header value without another copy.
    let prior = |name: &HeaderName| trusted_peer.then(|| join_values(headers, name)).flatten();
    let mut xff = String::with_capacity(peer.len());
    if let Some(p) = prior(&X_FORWARDED_FOR) {
        xff.push_str(&p);
        xff.push_str(", ");
    }
    xff.push_str(peer);
    let mut fwd = String::with_capacity(peer.len() + host.len() + 32);
    if let Some(p) = prior(&header::FORWARDED) {
        fwd.push_str(&p);
        fwd.push_str(", ");
    }
    match client.peer {
        IpAddr::V4(_) => {
            fwd.push_str("for=");
            fwd.push_str(peer);
        }
        IpAddr::V6(_) => {
            fwd.push_str("for=\"[");
            fwd.push_str(peer);
            fwd.push_str("]\"");
        }
    }
    fwd.push_str(";proto=");
    fwd.push_str(proto);
    fwd.push_str(";host=\"");
    if host.contains(['"', '\\']) {
        fwd.extend(host.chars().filter(|c| !matches!(c, '"' | '\\')));
    } else {
        fwd.push_str(host);
    }
    fwd.push('"');
    let keep_proto = trusted_peer && headers.contains_key(X_FORWARDED_PROTO);
    let keep_host = trusted_peer && headers.contains_key(X_FORWARDED_HOST);
    set_owned(headers, X_FORWARDED_FOR, xff);
    set_owned(headers, header::FORWARDED, fwd);
    if !keep_proto {
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    }
    if !keep_host {
        set(headers, X_FORWARDED_HOST, host);
    }
}

/// Sets a header to a value built in a `String` (no copy; invalid values are skipped).
fn set_owned(headers: &mut HeaderMap, name: HeaderName, value: String) {
    if let Ok(v) = HeaderValue::from_maybe_shared(bytes::Bytes::from(value)) {
        headers.insert(name, v);
    }
}

fn join_values(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let vals: Vec<&str> = headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    (!vals.is_empty()).then(|| vals.join(", "))
}

fn set(headers: &mut HeaderMap, name: HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(name, v);
    }
}

const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// Client-identity headers that CDNs and load balancers set. From a peer that is not a trusted
/// proxy they are claims by the client itself, so they are removed (`X-Real-IP` is always
/// replaced by the address wsgate determined).
pub const IDENTITY_HEADERS: [HeaderName; 5] = [
    HeaderName::from_static("true-client-ip"),
    HeaderName::from_static("x-client-ip"),
    HeaderName::from_static("x-cluster-client-ip"),
    HeaderName::from_static("cf-connecting-ip"),
    HeaderName::from_static("fastly-client-ip"),
];

/// Sets `X-Real-IP` to `client` (the address wsgate determined, see [`client_ip`], as text) and,
/// unless the TCP peer is a trusted proxy, removes the [`IDENTITY_HEADERS`].
pub fn set_identity(headers: &mut HeaderMap, client: &str, peer_trusted: bool) {
    if !peer_trusted && headers.keys().any(|k| IDENTITY_HEADERS.contains(k)) {
        for name in &IDENTITY_HEADERS {
            headers.remove(name);
        }
    }
    set(headers, X_REAL_IP, client);
}

/// The client's address: the socket peer, or, when the peer is a trusted proxy, the right-most
/// `X-Forwarded-For` entry that is not itself a trusted proxy.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let entries: Vec<&str> = headers
        .get_all(X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let mut client = peer;
    for e in entries.iter().rev() {
        let Some(ip) = parse_node(e) else { break };
        client = ip;
        if !is_trusted(&ip) {
            break;
        }
    }
    client
}

/// An address from a forwarding header entry: `1.2.3.4`, `1.2.3.4:5`, `[::1]:5`, `::1`.
fn parse_node(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse() {
        return Some(ip);
    }
    if let Ok(sa) = s.parse::<std::net::SocketAddr>() {
        return Some(sa.ip());
    }
    s.trim_start_matches('[').split(']').next()?.parse().ok()
}

/// The request host without port, lower-cased (from `Host`, else the URI authority).
pub fn request_host(headers: &HeaderMap, uri: &http::Uri) -> String {
    let raw = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()))
        .unwrap_or("");
    let no_port = if raw.starts_with('[') {
        raw.split_once(']').map(|(h, _)| &h[1..]).unwrap_or(raw)
    } else {
        raw.rsplit_once(':').map(|(h, _)| h).unwrap_or(raw)
    };
    no_port.trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_connection_named_headers() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, X-Secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("upgrade", HeaderValue::from_static("h2c"));
        h.insert("te", HeaderValue::from_static("trailers"));
        h.insert("x-keep", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-keep"));
    }

    #[test]
    fn untrusted_forwarding_headers_are_replaced() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("6.6.6.6"));
        let client = ClientInfo::new("10.1.2.3".parse().unwrap(), false);
        set_forwarding(&mut h, &client, "a.example", &[]);
        assert_eq!(h["x-forwarded-for"], "10.1.2.3");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["forwarded"], "for=10.1.2.3;proto=http;host=\"a.example\"");
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("1.1.1.1"));
        set_forwarding(&mut h, &client, "a.example", &trusted);
        assert_eq!(h["x-forwarded-for"], "1.1.1.1, 10.1.2.3");
    }

    #[test]
    fn identity_headers_from_untrusted_peers_are_removed() {
        let mut h = HeaderMap::new();
        for n in [
            "true-client-ip",
            "x-client-ip",
            "x-cluster-client-ip",
            "cf-connecting-ip",
        ] {
            h.insert(
                HeaderName::from_static(n),
                HeaderValue::from_static("6.6.6.6"),
            );
        }
        h.insert("fastly-client-ip", HeaderValue::from_static("6.6.6.6"));
        h.insert("x-real-ip", HeaderValue::from_static("6.6.6.6"));
        let mut trusted = h.clone();
        set_identity(&mut h, "10.1.2.3", false);
        assert_eq!(h.len(), 1);
        assert_eq!(h["x-real-ip"], "10.1.2.3");
        set_identity(&mut trusted, "203.0.113.9", true);
        assert_eq!(trusted.len(), 6);
        assert_eq!(trusted["x-real-ip"], "203.0.113.9");
        assert_eq!(trusted["cf-connecting-ip"], "6.6.6.6");
    }

    #[test]
    fn client_ip_from_trusted_chain() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("6.6.6.6, 203.0.113.9, 10.0.0.5"),
        );
        let lb: IpAddr = "10.1.1.1".parse().unwrap();
        assert_eq!(
            client_ip(lb, &h, &trusted),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
        let outsider: IpAddr = "198.51.100.1".parse().unwrap();
        assert_eq!(
            client_ip(outsider, &h, &trusted),
            outsider,
            "untrusted peers cannot claim an address"
        );
        assert_eq!(client_ip(lb, &HeaderMap::new(), &trusted), lb);
    }

    #[test]
    fn host_without_port() {
        let mut h = HeaderMap::new();
        h.insert("host", HeaderValue::from_static("Chat.Example.com:8080"));
        assert_eq!(request_host(&h, &"/".parse().unwrap()), "chat.example.com");
        h.insert("host", HeaderValue::from_static("[::1]:80"));
        assert_eq!(request_host(&h, &"/".parse().unwrap()), "::1");
    }
}
