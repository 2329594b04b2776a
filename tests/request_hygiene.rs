//! Request hygiene over real sockets: RFC 9112 head rules (one valid Host, absolute-form targets,
//! framing), path normalisation before routing and the firewall, underscore header names and
//! client-identity headers. Every refused request is checked against the backend's accept counter:
//! the backend is never contacted.

mod common;

use common::*;
use std::sync::atomic::Ordering;

/// wsgate with Ingress hosts `a.test` (-> A, `/api` Prefix -> API) and `b.test` (-> B).
async fn hosts(
    annotations: &[(&str, &str)],
    tune: impl FnOnce(&mut wsgate::proxy::ProxySettings),
) -> (TestServer, HttpBackend, HttpBackend, HttpBackend) {
    let a = http_backend("A").await;
    let b = http_backend("B").await;
    let api = http_backend("API").await;
    let mut yaml = service_yaml("web", "a", &[a.addr]);
    yaml += &service_yaml("web", "b", &[b.addr]);
    yaml += &service_yaml("web", "api", &[api.addr]);
    yaml += &ingress_yaml(
        "web",
        "hosts",
        annotations,
        &[
            ("a.test", "/", "Prefix", "a"),
            ("a.test", "/api", "Prefix", "api"),
            ("b.test", "/", "Prefix", "b"),
        ],
    );
    let srv = TestServer::start_tuned(&[("i.yaml", yaml)], tune).await;
    (srv, a, b, api)
}

fn contacts(backends: &[&HttpBackend]) -> usize {
    backends
        .iter()
        .map(|b| b.accepts.load(Ordering::SeqCst))
        .sum()
}

#[tokio::test]
async fn malformed_heads_get_400_and_never_reach_the_backend() {
    let (srv, a, b, api) = hosts(&[], |_| {}).await;
    let addr = srv.http();
    let cases: &[(&str, &str, u16)] = &[
        (
            "duplicate Host",
            "GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n",
            400,
        ),
        ("missing Host", "GET / HTTP/1.1\r\n\r\n", 400),
        (
            "invalid Host",
            "GET / HTTP/1.1\r\nHost: a.test/x\r\n\r\n",
            400,
        ),
        (
            "Host with a bad port",
            "GET / HTTP/1.1\r\nHost: a.test:99999\r\n\r\n",
            400,
        ),
        (
            "obs-fold",
            "GET / HTTP/1.1\r\nHost: a.test\r\nX-A: 1\r\n  folded\r\n\r\n",
            400,
        ),
        (
            "whitespace before colon",
            "GET / HTTP/1.1\r\nHost : a.test\r\n\r\n",
            400,
        ),
        (
            "invalid character in a name",
            "GET / HTTP/1.1\r\nHost: a.test\r\nX(A): 1\r\n\r\n",
            400,
        ),
        (
            "invalid character in a value",
            "GET / HTTP/1.1\r\nHost: a.test\r\nX-A: a\x01b\r\n\r\n",
            400,
        ),
        (
            "conflicting Content-Length",
            "POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
            400,
        ),
        (
            "Transfer-Encoding not ending in chunked",
            "POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
            400,
        ),
        (
            "Transfer-Encoding gzip only",
            "POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: gzip\r\n\r\nabcd",
            400,
        ),
        (
            "Transfer-Encoding on HTTP/1.0",
            "POST / HTTP/1.0\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            400,
        ),
        (
            "upgrade with a Content-Length body",
            "GET / HTTP/1.1\r\nHost: a.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nContent-Length: 5\r\n\r\nhello",
            400,
        ),
        (
            "upgrade with a chunked body",
            "GET / HTTP/1.1\r\nHost: a.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            400,
        ),
        (
            "encoded slash",
            "GET /a%2Fb HTTP/1.1\r\nHost: a.test\r\n\r\n",
            400,
        ),
        (
            "encoded backslash",
            "GET /a%5cb HTTP/1.1\r\nHost: a.test\r\n\r\n",
            400,
        ),
        (
            "bad escape",
            "GET /a%zz HTTP/1.1\r\nHost: a.test\r\n\r\n",
            400,
        ),
        (
            "encoded NUL",
            "GET /a%00 HTTP/1.1\r\nHost: a.test\r\n\r\n",
            400,
        ),
        (
            "absolute-form with user info",
            "GET http://u@a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n",
            400,
        ),
        (
            "CONNECT",
            "CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\n",
            405,
        ),
    ];
    let mut failures = Vec::new();
    for (name, req, want) in cases {
        let (status, _) = raw_exchange(addr, req).await;
        if status != *want {
            failures.push(format!("{name}: got {status}, want {want}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    assert_eq!(contacts(&[&a, &b, &api]), 0, "no backend was contacted");
    // The same connection machinery still serves a well-formed request.
    assert_eq!(http_get(addr, "a.test", "/").await.0, 200);
}

/// hyper drops the `Content-Length` of a request that also has `Transfer-Encoding`, reads the body
/// by the chunked coding alone and closes the connection after the response (RFC 9112 §6.1), so
/// the combination cannot smuggle a second request: nothing pipelined behind it is read.
#[tokio::test]
async fn length_and_chunked_is_read_as_chunked_and_closes() {
    let (srv, a, ..) = hosts(&[], |_| {}).await;
    let text = raw_exchange_full(
        srv.http(),
        "POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n\
         GET /smuggled HTTP/1.1\r\nHost: a.test\r\n\r\n",
    )
    .await;
    assert_eq!(
        text.matches("HTTP/1.1 ").count(),
        1,
        "one response, then close: {text}"
    );
    let seen = a.requests.lock().unwrap().join("");
    assert!(seen.starts_with("POST /\n"), "{seen}");
    assert!(!seen.contains("content-length: 40"), "{seen}");
    assert!(!seen.contains("smuggled"), "{seen}");
}

#[tokio::test]
async fn absolute_form_is_routed_by_its_authority() {
    let (srv, a, b, _api) = hosts(&[], |_| {}).await;
    let (status, body) = raw_exchange(
        srv.http(),
        "GET http://A.test/x?q=1 HTTP/1.1\r\nHost: b.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        body.starts_with("A\n"),
        "routed by the target's authority: {body}"
    );
    let seen = a.requests.lock().unwrap().join("");
    assert!(
        seen.starts_with("GET /x?q=1\n"),
        "origin-form to the backend: {seen}"
    );
    assert!(seen.contains("\nhost: A.test\n"), "Host rewritten: {seen}");
    assert_eq!(b.accepts.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn normalised_path_routes_and_reaches_the_backend() {
    let (srv, a, _b, api) = hosts(&[], |_| {}).await;
    for raw in [
        "/x/../api/v1",
        "//api/v1",
        "/%61pi/v1",
        "/./api/./v1",
        "/api;p=1/v1",
    ] {
        let (status, body) = http_get(srv.http(), "a.test", raw).await;
        assert_eq!(status, 200, "{raw}");
        assert!(body.starts_with("API\n"), "{raw} routed to /api: {body}");
    }
    let seen = api.requests.lock().unwrap().clone();
    let lines: Vec<&str> = seen.iter().map(|s| s.lines().next().unwrap()).collect();
    assert_eq!(
        lines,
        [
            "GET /api/v1",
            "GET /api/v1",
            "GET /api/v1",
            "GET /api/v1",
            "GET /api;p=1/v1"
        ]
    );
    assert_eq!(a.accepts.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn keep_original_forwards_the_path_as_sent() {
    let (srv, _a, _b, api) = hosts(
        &[("wsgate.dev/path-normalization", "keep-original")],
        |_| {},
    )
    .await;
    let (status, body) = http_get(srv.http(), "a.test", "/x/../api/%61?z=1").await;
    assert_eq!(status, 200);
    assert!(
        body.starts_with("API\n"),
        "matching used the normalised path: {body}"
    );
    let seen = api.requests.lock().unwrap().join("");
    assert!(seen.starts_with("GET /x/../api/%61?z=1\n"), "{seen}");
}

#[tokio::test]
async fn firewall_path_bypasses_are_denied() {
    let b = http_backend("B").await;
    let port = free_port();
    let yaml = format!(
        "apiVersion: wsgate.dev/v1alpha1\nkind: Gateway\nmetadata: {{name: fw, namespace: sec}}\nspec:\n  listeners: [{{name: l, port: {port}}}]\n  \
         backendPools: [{{name: p, addresses: [{{host: 127.0.0.1, port: {}}}]}}]\n  \
         firewall: {{rules: [{{name: internal, match: {{pathPrefix: /internal}}, action: Deny}}]}}\n  \
         routingRules: [{{name: r, listeners: [l], backendPool: p}}]\n",
        b.addr.port()
    );
    let srv = TestServer::start_tuned(&[("fw.yaml", yaml)], |_| {}).await;
    let addr = srv.port(port);
    for raw in [
        "/internal",
        "/internal;a=b",
        "/%69nternal",
        "//internal",
        "/./internal",
        "/x/../internal",
        "/%2e/internal",
        "/x/..;/internal/secret",
        "/INTERNAL/../internal",
    ] {
        assert_eq!(http_get(addr, "x", raw).await.0, 403, "{raw}");
    }
    assert_eq!(
        b.accepts.load(Ordering::SeqCst),
        0,
        "the backend never saw them"
    );
    assert_eq!(
        http_get(addr, "x", "/internals").await.0,
        200,
        "a sibling path passes"
    );
}

#[tokio::test]
async fn underscore_headers_are_dropped_unless_allowed() {
    let req = "GET / HTTP/1.1\r\nHost: a.test\r\nX_Forwarded_For: 6.6.6.6\r\nX-Kept: 1\r\nConnection: close\r\n\r\n";
    let (srv, a, ..) = hosts(&[], |_| {}).await;
    assert_eq!(raw_exchange(srv.http(), req).await.0, 200);
    let seen = a.requests.lock().unwrap().join("");
    assert!(!seen.contains("x_forwarded_for"), "{seen}");
    assert!(seen.contains("x-kept: 1"), "{seen}");

    let (srv, a, ..) = hosts(&[], |s| s.allow_underscore_headers = true).await;
    assert_eq!(raw_exchange(srv.http(), req).await.0, 200);
    let seen = a.requests.lock().unwrap().join("");
    assert!(seen.contains("x_forwarded_for: 6.6.6.6"), "{seen}");
}

const SPOOFED: &str = "X-Real-IP: 6.6.6.6\r\nTrue-Client-IP: 6.6.6.6\r\nX-Client-IP: 6.6.6.6\r\n\
    X-Cluster-Client-IP: 6.6.6.6\r\nCF-Connecting-IP: 6.6.6.6\r\nFastly-Client-IP: 6.6.6.6\r\n";

#[tokio::test]
async fn identity_headers_from_untrusted_clients_are_replaced() {
    let (srv, a, ..) = hosts(&[], |_| {}).await;
    let req = format!("GET / HTTP/1.1\r\nHost: a.test\r\n{SPOOFED}Connection: close\r\n\r\n");
    assert_eq!(raw_from("127.0.0.7", srv.http(), &req).await.0, 200);
    let seen = a.requests.lock().unwrap().join("");
    assert!(seen.contains("x-real-ip: 127.0.0.7\n"), "{seen}");
    assert!(
        !seen.contains("6.6.6.6"),
        "every spoofed identity removed: {seen}"
    );
}

#[tokio::test]
async fn identity_headers_from_trusted_proxies_are_kept() {
    let (srv, a, ..) = hosts(&[], |s| {
        s.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
    })
    .await;
    let req = format!(
        "GET / HTTP/1.1\r\nHost: a.test\r\n{SPOOFED}X-Forwarded-For: 203.0.113.9\r\nConnection: close\r\n\r\n"
    );
    assert_eq!(raw_from("127.0.0.7", srv.http(), &req).await.0, 200);
    let seen = a.requests.lock().unwrap().join("");
    assert!(seen.contains("x-real-ip: 203.0.113.9\n"), "{seen}");
    assert!(seen.contains("cf-connecting-ip: 6.6.6.6\n"), "{seen}");
    assert!(seen.contains("true-client-ip: 6.6.6.6\n"), "{seen}");
}

/// A Gateway on a fresh port in front of a raw backend that answers every request with `reply`.
async fn raw_reply_gateway(reply: &'static str) -> (TestServer, std::net::SocketAddr) {
    use tokio::io::AsyncWriteExt;
    let (addr, _) = raw_backend(move |mut s| async move {
        let _ = read_head(&mut s).await;
        let _ = s.write_all(reply.as_bytes()).await;
    })
    .await;
    let port = free_port();
    let srv = TestServer::start(&[(
        "g.yaml",
        gateway_yaml(port, &[addr], "connectTimeout: 1s", ""),
    )])
    .await;
    let gw = srv.port(port);
    (srv, gw)
}

#[tokio::test]
async fn response_with_length_and_chunked_drops_the_length() {
    let (_srv, gw) = raw_reply_gateway(
        "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
         5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    )
    .await;
    let text =
        raw_exchange_full(gw, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{text}");
    assert_ne!(
        head_value(head, "content-length").as_deref(),
        Some("3"),
        "{head}"
    );
    // hyper frames the relayed body itself (chunked or by length): decode whichever it chose.
    let decoded = if head_value(head, "transfer-encoding").is_some() {
        let mut out = String::new();
        let mut rest = body;
        while let Some((size, after)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap();
            if n == 0 {
                break;
            }
            out.push_str(&after[..n]);
            rest = &after[n + 2..];
        }
        out
    } else {
        body.to_string()
    };
    assert_eq!(decoded, "hello world", "the whole body: {text}");
}

#[tokio::test]
async fn response_with_an_unknown_transfer_coding_is_502() {
    for reply in [
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nConnection: close\r\n\r\nxxxx",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n4\r\nxxxx\r\n0\r\n\r\n",
    ] {
        let (_srv, gw) = raw_reply_gateway(reply).await;
        assert_eq!(http_get(gw, "x", "/").await.0, 502, "{reply}");
    }
}
