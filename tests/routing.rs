//! Host and path routing over real sockets for Ingress and Gateway objects: Kubernetes path
//! semantics, precedence, wildcard hosts, default backends, and conflicts between objects.

mod common;

use common::*;

async fn who(srv_addr: std::net::SocketAddr, host: &str, path: &str) -> String {
    let (status, body) = http_get(srv_addr, host, path).await;
    if status == 200 {
        body.lines().next().unwrap_or("").to_string()
    } else {
        status.to_string()
    }
}

#[tokio::test]
async fn ingress_precedence_hosts_and_default_backend() {
    let a = http_backend("A").await;
    let b = http_backend("B").await;
    let c = http_backend("C").await;
    let d = http_backend("D").await;
    let e = http_backend("E").await;
    let f = http_backend("F").await;
    let g = http_backend("G").await;
    let mut yaml = String::new();
    for (n, be) in [
        ("a", &a),
        ("b", &b),
        ("c", &c),
        ("d", &d),
        ("e", &e),
        ("f", &f),
        ("g", &g),
    ] {
        yaml += &service_yaml("web", n, &[be.addr]);
    }
    yaml += &ingress_yaml(
        "web",
        "api",
        &[],
        &[
            ("a.example.com", "/api", "Prefix", "a"),
            ("a.example.com", "/api/exact", "Exact", "b"),
            ("a.example.com", "/api/v2/", "Prefix", "c"),
            ("*.example.com", "/", "Prefix", "d"),
            ("", "/", "ImplementationSpecific", "e"),
        ],
    );
    // Same host+path as "api"'s first rule, but newer: it loses the conflict.
    yaml += "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: aaa-newer\n  namespace: web\n  creationTimestamp: \"2030-01-01T00:00:00Z\"\n\
             spec:\n  ingressClassName: wsgate\n  rules:\n  - host: a.example.com\n    http:\n      paths:\n      - {path: /api, pathType: Prefix, backend: {service: {name: g, port: {name: http}}}}\n---\n";
    yaml = yaml.replace(
        "metadata:\n  name: api\n  namespace: web\n",
        "metadata:\n  name: api\n  namespace: web\n  creationTimestamp: \"2020-01-01T00:00:00Z\"\n",
    );
    // A default backend (in its own Ingress) catches what no rule matches.
    yaml += "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: fallback, namespace: web}\n\
             spec:\n  ingressClassName: wsgate\n  defaultBackend: {service: {name: f, port: {name: http}}}\n---\n";
    // Ingresses of another class are not ours.
    yaml += "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: other, namespace: web}\n\
             spec:\n  ingressClassName: nginx\n  rules:\n  - host: other.org\n    http:\n      paths:\n      - {path: /, pathType: Prefix, backend: {service: {name: g, port: {name: http}}}}\n---\n";
    let srv = TestServer::start(&[("web.yaml", yaml)]).await;
    let h = srv.http();

    let cases = [
        ("a.example.com", "/api", "A"),
        ("a.example.com", "/api/x", "A"),
        ("A.Example.COM:8080", "/api/x", "A"),
        ("a.example.com", "/apix", "F"),
        ("a.example.com", "/api/exact", "B"),
        ("a.example.com", "/api/exact/", "A"),
        ("a.example.com", "/api/v2", "C"),
        ("a.example.com", "/api/v2/y?q=1", "C"),
        ("a.example.com", "/api/v2x", "A"),
        ("a.example.com", "/other", "F"),
        ("b.example.com", "/anything", "D"),
        ("c.d.example.com", "/anything", "E"),
        ("example.com", "/", "E"),
        ("other.org", "/", "E"),
    ];
    for (host, path, want) in cases {
        assert_eq!(who(h, host, path).await, want, "{host}{path}");
    }
    let table = srv.server.proxy().table();
    let dump = serde_json::to_string(&*table).unwrap();
    assert!(
        !dump.contains("\"g\""),
        "the conflicting newer Ingress must lose"
    );
}

#[tokio::test]
async fn gateway_listeners_hosts_paths_and_shared_ports() {
    let a = http_backend("A").await;
    let b = http_backend("B").await;
    let c = http_backend("C").await;
    let port = free_port();
    let yaml = format!(
        r#"apiVersion: wsgate.dev/v1alpha1
kind: Gateway
metadata: {{name: gw, namespace: apps}}
spec:
  listeners:
    - {{name: chat, protocol: HTTP, port: {port}, hostnames: [chat.example.com]}}
    - {{name: any, protocol: HTTP, port: {port}}}
  backendPools:
    - {{name: a, addresses: [{{host: 127.0.0.1, port: {pa}}}]}}
    - {{name: b, addresses: [{{host: 127.0.0.1, port: {pb}}}]}}
    - {{name: c, service: {{name: c, port: http}}}}
  backendSettings:
    - {{name: s, requestTimeout: 5s}}
  routingRules:
    - {{name: exact, listeners: [chat], paths: [{{path: /ws, type: Exact}}], backendPool: a, backendSettings: s}}
    - {{name: prefix, listeners: [chat], paths: [{{path: /ws, type: Prefix}}], backendPool: b}}
    - {{name: rest, listeners: [any], backendPool: c}}
---
"#,
        pa = a.addr.port(),
        pb = b.addr.port()
    ) + &service_yaml("apps", "c", &[c.addr]);
    let srv = TestServer::start(&[("gw.yaml", yaml)]).await;
    let g = srv.port(port);
    assert_eq!(who(g, "chat.example.com", "/ws").await, "A");
    assert_eq!(who(g, "chat.example.com", "/ws/room").await, "B");
    assert_eq!(who(g, "chat.example.com", "/other").await, "404");
    assert_eq!(who(g, "elsewhere.example.com", "/ws").await, "C");
    let m = srv.metrics().await;
    assert_eq!(
        metric(
            &m,
            r#"wsgate_http_requests_total{code="200",method="GET",route="apps/gw/exact"}"#
        ),
        1.0,
        "{m}"
    );
}

#[tokio::test]
async fn unresolved_service_gives_503_and_dead_backend_502() {
    let dead = free_port();
    let yaml = format!(
        "apiVersion: wsgate.dev/v1alpha1\nkind: Gateway\nmetadata: {{name: gw, namespace: x}}\nspec:\n  listeners: [{{name: l, port: {p}}}]\n  backendPools:\n    - {{name: none, service: {{name: missing, port: 80}}}}\n    - {{name: dead, addresses: [{{host: 127.0.0.1, port: {dead}}}]}}\n  routingRules:\n    - {{name: n, listeners: [l], paths: [{{path: /none}}], backendPool: none}}\n    - {{name: d, listeners: [l], paths: [{{path: /dead}}], backendPool: dead}}\n",
        p = free_port()
    );
    let srv = TestServer::start(&[("gw.yaml", yaml.clone())]).await;
    let port: u16 = yaml
        .split("port: ")
        .nth(1)
        .unwrap()
        .split('}')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let g = srv.port(port);
    assert_eq!(http_get(g, "x", "/none").await.0, 503);
    assert_eq!(http_get(g, "x", "/dead").await.0, 502);
    let reply = raw_exchange_full(
        g,
        "GET /dead HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 502"), "{reply}");
}

#[tokio::test]
async fn forwarding_headers_are_set_and_spoofing_ignored() {
    let a = http_backend("A").await;
    let yaml = service_yaml("web", "a", &[a.addr])
        + &ingress_yaml("web", "i", &[], &[("", "/", "Prefix", "a")]);
    let srv = TestServer::start(&[("w.yaml", yaml)]).await;
    let (status, body) = raw_exchange(
        srv.http(),
        "GET /p HTTP/1.1\r\nHost: shop.example\r\nX-Forwarded-For: 6.6.6.6\r\nConnection: close, X-Drop-Me\r\nX-Drop-Me: secret\r\nKeep-Alive: 5\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200);
    assert!(body.contains("x-forwarded-for: 127.0.0.1\n"), "{body}");
    assert!(body.contains("x-forwarded-proto: http\n"), "{body}");
    assert!(body.contains("x-forwarded-host: shop.example\n"), "{body}");
    assert!(
        body.contains("forwarded: for=127.0.0.1;proto=http;host=\"shop.example\"\n"),
        "{body}"
    );
    assert!(body.contains("host: shop.example\n"), "{body}");
    assert!(!body.contains("x-drop-me"), "{body}");
    assert!(!body.contains("keep-alive"), "{body}");
    assert!(!body.contains("6.6.6.6"), "{body}");
}

#[tokio::test]
async fn http_keep_alive_to_backend_is_pooled() {
    let a = http_backend("A").await;
    let yaml = service_yaml("web", "a", &[a.addr])
        + &ingress_yaml("web", "i", &[], &[("", "/", "Prefix", "a")]);
    let srv = TestServer::start(&[("w.yaml", yaml)]).await;
    for _ in 0..10 {
        assert_eq!(http_get(srv.http(), "x", "/").await.0, 200);
    }
    assert_eq!(
        a.accepts.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "one pooled upstream connection"
    );
}
