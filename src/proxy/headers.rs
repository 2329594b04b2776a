//! Header hygiene: hop-by-hop removal and the forwarding headers.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;
use std::net::IpAddr;

/// Whether `name` describes one connection and is never forwarded (RFC 9110 7.6.1). Compared
/// as text: a few instructions per name, where comparing with each `HeaderName` of a list cost
/// tens (and a `const` list was built and dropped again at every use).
fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "proxy-authorization"
            | "proxy-authenticate"
    )
}

/// Removes hop-by-hop headers and every header named in `Connection`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // One pass over the names present instead of a lookup per hop-by-hop name (this runs twice
    // per proxied request, and usually finds nothing). Without any hop-by-hop name there is no
    // `Connection` either, so no header it names.
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
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
    // Only the names present are removed (a WebSocket handshake carries two of the nine): a
    // removal is a hashed lookup, a scan of the few names present is cheaper.
    while let Some(name) = headers.keys().find(|k| is_hop_by_hop(k)).cloned() {
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
    /// `peer` as a header value, formatted once per connection: `X-Real-IP` and (from an
    /// untrusted peer) `X-Forwarded-For` share it instead of each copying the text per request.
    peer_value: HeaderValue,
}

impl ClientInfo {
    /// The client side of a connection from `peer`.
    pub fn new(peer: IpAddr, tls: bool) -> Self {
        // An address's text is always a valid header value.
        let peer_value = HeaderValue::from_maybe_shared(bytes::Bytes::from(ip_text(peer)))
            .unwrap_or(HeaderValue::from_static(""));
        Self {
            peer,
            tls,
            peer_value,
        }
    }

    /// `peer` as text.
    pub fn peer_text(&self) -> &str {
        self.peer_value.to_str().unwrap_or("")
    }

    /// `peer` as a header value (a reference-counted copy).
    pub fn peer_value(&self) -> HeaderValue {
        self.peer_value.clone()
    }
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// The forwarding headers of one request, as header lines the backend head is written with
/// after the request's own (see [`set_forwarding`]).
#[derive(Debug, Default)]
pub struct Forwarding {
    /// Values of `X-Forwarded-For`, `Forwarded`, `X-Forwarded-Proto`, `X-Forwarded-Host`.
    values: [Option<Value>; 4],
}

/// One forwarding value. They are only ever written into the backend's request head, so they
/// stay text: turning each into a `HeaderValue` cost a validation pass, and for a built `String`
/// a conversion into `Bytes`, on every request. Every value is checked to be a valid header
/// value where it is made ([`is_header_value`]).
#[derive(Debug)]
enum Value {
    /// The client address, formatted once per connection.
    Peer(HeaderValue),
    /// Built for this request.
    Text(String),
    /// `http` or `https`.
    Static(&'static str),
}

impl Value {
    fn as_bytes(&self) -> &[u8] {
        match self {
            Value::Peer(v) => v.as_bytes(),
            Value::Text(t) => t.as_bytes(),
            Value::Static(t) => t.as_bytes(),
        }
    }
}

/// Whether `text` may be a header value as it is (`HeaderValue::from_str`'s rule: no CR, LF,
/// DEL or other controls except tab; obs-text bytes are allowed).
fn is_header_value(text: &str) -> bool {
    text.bytes().all(|b| (b >= 0x20 && b != 0x7f) || b == b'\t')
}

impl Forwarding {
    /// The header lines, in order.
    pub fn lines(&self) -> impl Iterator<Item = (&HeaderName, &[u8])> {
        FORWARDING
            .iter()
            .zip(self.values.iter())
            .filter_map(|(n, v)| Some((n, v.as_ref()?.as_bytes())))
    }
}

/// `ip` as text, as `Display` writes it; IPv4 without the formatting machinery (a tenth of
/// the instructions, once per connection).
fn ip_text(ip: IpAddr) -> String {
    let IpAddr::V4(v4) = ip else {
        return ip.to_string();
    };
    let mut out = String::with_capacity(15);
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        if octet >= 100 {
            out.push(char::from(b'0' + octet / 100));
        }
        if octet >= 10 {
            out.push(char::from(b'0' + octet / 10 % 10));
        }
        out.push(char::from(b'0' + octet % 10));
    }
    out
}

/// The names [`set_forwarding`] decides about, in the order of [`Forwarding`]'s values.
static FORWARDING: [HeaderName; 4] = [
    X_FORWARDED_FOR,
    header::FORWARDED,
    X_FORWARDED_PROTO,
    X_FORWARDED_HOST,
];

/// Whether `name` is one of [`FORWARDING`] (compared as text, see [`is_hop_by_hop`]).
fn is_forwarding(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "x-forwarded-for" | "forwarded" | "x-forwarded-proto" | "x-forwarded-host"
    )
}

/// Makes `X-Forwarded-For/-Proto/-Host` and `Forwarded`. Incoming values are kept (appended to)
/// only when the peer is a trusted proxy; otherwise they are replaced, so clients cannot spoof them.
///
/// The values are returned for the backend head rather than inserted into `headers` (the
/// incoming ones they replace are removed from it): four inserts into the request's map, and
/// the growth of the map they usually caused, were a tenth of the proxy's work per request.
pub fn set_forwarding(
    headers: &mut HeaderMap,
    client: &ClientInfo,
    host: &str,
    trusted: &[IpNet],
) -> Forwarding {
    let trusted_peer = trusted.iter().any(|n| n.contains(&client.peer));
    let proto = if client.tls { "https" } else { "http" };
    let peer = client.peer_text();
    // Each value is built in one String that becomes the header value without another copy.
    let prior = |name: &HeaderName| trusted_peer.then(|| join_values(headers, name)).flatten();
    // Usually there is no prior value: then the peer's value, formatted once per connection.
    let xff = prior(&X_FORWARDED_FOR).map(|p| format!("{p}, {peer}"));
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
    // What is replaced goes (one pass over the names; usually none of them is there).
    if headers.keys().any(is_forwarding) {
        headers.remove(X_FORWARDED_FOR);
        headers.remove(header::FORWARDED);
        if !keep_proto {
            headers.remove(X_FORWARDED_PROTO);
        }
        if !keep_host {
            headers.remove(X_FORWARDED_HOST);
        }
    }
    // The host was parsed as an authority before; checked again here because it is written
    // into the backend's head as it is. Prior values were header values already.
    let host_ok = is_header_value(host);
    Forwarding {
        values: [
            Some(match xff {
                Some(xff) => Value::Text(xff),
                None => Value::Peer(client.peer_value()),
            }),
            host_ok.then_some(Value::Text(fwd)),
            (!keep_proto).then_some(Value::Static(proto)),
            (!keep_host && host_ok).then(|| Value::Text(host.to_owned())),
        ],
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

const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// Client-identity headers that CDNs and load balancers set. From a peer that is not a trusted
/// proxy they are claims by the client itself, so they are removed (`X-Real-IP` is always
/// replaced by the address wsgate determined). A `static`: a `const` array is built and dropped
/// again at every use.
pub static IDENTITY_HEADERS: [HeaderName; 5] = [
    HeaderName::from_static("true-client-ip"),
    HeaderName::from_static("x-client-ip"),
    HeaderName::from_static("x-cluster-client-ip"),
    HeaderName::from_static("cf-connecting-ip"),
    HeaderName::from_static("fastly-client-ip"),
];

/// Whether `name` is one of [`IDENTITY_HEADERS`] (compared as text, see [`is_hop_by_hop`]).
fn is_identity(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "true-client-ip"
            | "x-client-ip"
            | "x-cluster-client-ip"
            | "cf-connecting-ip"
            | "fastly-client-ip"
    )
}

/// Sets `X-Real-IP` to `client` (the address wsgate determined, see [`client_ip`], as a header
/// value) and, unless the TCP peer is a trusted proxy, removes the [`IDENTITY_HEADERS`].
pub fn set_identity(headers: &mut HeaderMap, client: HeaderValue, peer_trusted: bool) {
    if !peer_trusted && headers.keys().any(is_identity) {
        for name in IDENTITY_HEADERS.iter() {
            headers.remove(name);
        }
    }
    headers.insert(X_REAL_IP, client);
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

    /// The hop-by-hop names of RFC 9110 7.6.1 and the de-facto ones.
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

    #[test]
    fn name_checks_agree_with_the_name_lists() {
        for n in HOP_BY_HOP.iter() {
            assert!(is_hop_by_hop(n), "{n}");
        }
        for n in IDENTITY_HEADERS.iter() {
            assert!(is_identity(n), "{n}");
        }
        for n in FORWARDING.iter() {
            assert!(is_forwarding(n), "{n}");
        }
        for n in [
            header::HOST,
            header::COOKIE,
            HeaderName::from_static("x-forwarded"),
        ] {
            assert!(
                !is_hop_by_hop(&n) && !is_identity(&n) && !is_forwarding(&n),
                "{n}"
            );
        }
    }

    #[test]
    fn ip_text_is_display() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.20.30.40",
            "192.168.100.255",
            "255.255.255.255",
            "1.10.100.9",
            "::1",
            "2001:db8::8a2e:370:7334",
            "::ffff:192.0.2.1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(ip_text(ip), ip.to_string());
        }
        for a in [0u8, 1, 9, 10, 99, 100, 199, 200, 255] {
            let ip = IpAddr::from([a, 255 - a, a / 2, 7]);
            assert_eq!(ip_text(ip), ip.to_string());
        }
    }

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
        // Every hop-by-hop name, some twice, goes; nothing else does.
        let mut h = HeaderMap::new();
        for n in HOP_BY_HOP.iter() {
            h.append(n, HeaderValue::from_static("1"));
            h.append(n, HeaderValue::from_static("2"));
        }
        h.insert("x-keep", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.keys().collect::<Vec<_>>(), ["x-keep"]);
    }

    #[test]
    fn untrusted_forwarding_headers_are_replaced() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("6.6.6.6"));
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        h.insert("x-keep", HeaderValue::from_static("1"));
        let client = ClientInfo::new("10.1.2.3".parse().unwrap(), false);
        let lines = |f: &Forwarding| -> Vec<(String, String)> {
            f.lines()
                .map(|(n, v)| (n.to_string(), String::from_utf8(v.to_vec()).unwrap()))
                .collect()
        };
        let f = set_forwarding(&mut h, &client, "a.example", &[]);
        let pair = |n: &str, v: &str| (n.to_string(), v.to_string());
        assert_eq!(
            lines(&f),
            [
                pair("x-forwarded-for", "10.1.2.3"),
                pair("forwarded", "for=10.1.2.3;proto=http;host=\"a.example\""),
                pair("x-forwarded-proto", "http"),
                pair("x-forwarded-host", "a.example"),
            ]
        );
        assert_eq!(h.len(), 1, "the client's own values are removed: {h:?}");
        assert!(h.contains_key("x-keep"));
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("1.1.1.1"));
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        let f = set_forwarding(&mut h, &client, "a.example", &trusted);
        assert_eq!(
            lines(&f),
            [
                pair("x-forwarded-for", "1.1.1.1, 10.1.2.3"),
                pair("forwarded", "for=10.1.2.3;proto=http;host=\"a.example\""),
                pair("x-forwarded-host", "a.example"),
            ]
        );
        assert_eq!(
            h["x-forwarded-proto"], "https",
            "a trusted proxy's scheme is kept"
        );
        assert!(!h.contains_key("x-forwarded-for"));
    }

    #[test]
    fn forwarding_values_are_checked_like_header_values() {
        for ok in [
            "a.example",
            "a.example:8080",
            "[::1]:80",
            "with space\tand tab",
            "ünï",
        ] {
            assert!(is_header_value(ok), "{ok:?}");
            assert_eq!(is_header_value(ok), HeaderValue::from_str(ok).is_ok());
        }
        for bad in ["a\r\nx: y", "a\nb", "nul\0", "del\x7f", "esc\x1b"] {
            assert!(!is_header_value(bad), "{bad:?}");
            assert_eq!(is_header_value(bad), HeaderValue::from_str(bad).is_ok());
        }
        // A host that could not be a header value never reaches the backend's head.
        let client = ClientInfo::new("10.1.2.3".parse().unwrap(), true);
        let f = set_forwarding(&mut HeaderMap::new(), &client, "a\r\nx: y", &[]);
        let names: Vec<&str> = f.lines().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["x-forwarded-for", "x-forwarded-proto"]);
        assert!(f.lines().all(|(_, v)| HeaderValue::from_bytes(v).is_ok()));
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
        set_identity(&mut h, HeaderValue::from_static("10.1.2.3"), false);
        assert_eq!(h.len(), 1);
        assert_eq!(h["x-real-ip"], "10.1.2.3");
        set_identity(&mut trusted, HeaderValue::from_static("203.0.113.9"), true);
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
