//! Backend pools over real sockets: active health probes, passive ejection, least connections
//! (also after scale-out), consistent hashing, per-route session limits.

mod common;

use common::*;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

async fn connect_n(
    addr: std::net::SocketAddr,
    n: usize,
) -> Vec<tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>>
{
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(ws_connect(&format!("ws://{addr}/")).await);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_probe_takes_endpoint_out_and_recovery_brings_it_back() {
    let b: Vec<MixedBackend> = vec![
        mixed_backend().await,
        mixed_backend().await,
        mixed_backend().await,
    ];
    let addrs: Vec<_> = b.iter().map(|x| x.addr).collect();
    let port = free_port();
    let yaml = gateway_yaml(
        port,
        &addrs,
        "probe: hc",
        "{name: hc, path: /healthz, interval: 100ms, timeout: 1s, unhealthyThreshold: 2, healthyThreshold: 2}",
    );
    let srv = TestServer::start(&[("g.yaml", yaml)]).await;
    let gw = srv.port(port);
    let up = |m: &str, a: std::net::SocketAddr| {
        metric(
            m,
            &format!(r#"wsgate_backend_up{{endpoint="{a}",pool="lb/gw/pool"}}"#),
        )
    };

    b[1].healthy.store(false, Ordering::SeqCst);
    // Out within interval × threshold (+ one interval of slack for the probe in flight).
    tokio::time::sleep(Duration::from_millis(100 * 2 + 150)).await;
    assert_eq!(up(&srv.metrics().await, addrs[1]), 0.0);
    assert_eq!(up(&srv.metrics().await, addrs[0]), 1.0);
    let before = b[1].sessions.load(Ordering::SeqCst);
    let s1 = connect_n(gw, 30).await;
    assert_eq!(
        b[1].sessions.load(Ordering::SeqCst),
        before,
        "no new session may reach the failing endpoint"
    );

    b[1].healthy.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(100 * 2 + 150)).await;
    assert_eq!(up(&srv.metrics().await, addrs[1]), 1.0);
    let s2 = connect_n(gw, 30).await;
    assert!(
        b[1].sessions.load(Ordering::SeqCst) >= before + 5,
        "the recovered endpoint gets sessions again"
    );
    drop((s1, s2));
}

// Every endpoint probed down is panic mode (the endpoints are used anyway): tests/ejection.rs.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passive_ejection_stops_sending_to_a_dead_endpoint() {
    let live = http_backend("live").await;
    let dead = free_port();
    let port = free_port();
    let addrs = [live.addr, format!("127.0.0.1:{dead}").parse().unwrap()];
    let srv = TestServer::start(&[(
        "g.yaml",
        gateway_yaml(port, &addrs, "connectTimeout: 1s", ""),
    )])
    .await;
    let mut failures = 0;
    for _ in 0..12 {
        if http_get(srv.port(port), "x", "/").await.0 == 502 {
            failures += 1;
        }
    }
    assert!(
        (1..=6).contains(&failures),
        "{failures} failures before ejection"
    );
    for _ in 0..20 {
        assert_eq!(
            http_get(srv.port(port), "x", "/").await.0,
            200,
            "the dead endpoint must be ejected"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_connections_spreads_sessions_and_prefers_a_new_endpoint() {
    let mut b: Vec<MixedBackend> = vec![
        mixed_backend().await,
        mixed_backend().await,
        mixed_backend().await,
    ];
    let port = free_port();
    let settings = "loadBalancing: {policy: LeastConnections}";
    let addrs: Vec<_> = b.iter().map(|x| x.addr).collect();
    let srv = TestServer::start(&[("g.yaml", gateway_yaml(port, &addrs, settings, ""))]).await;
    let s1 = connect_n(srv.port(port), 300).await;
    for x in &b {
        let n = x.open.load(Ordering::SeqCst);
        assert!(
            (90..=110).contains(&n),
            "each endpoint within ±10% of 100, got {n}"
        );
    }
    b.push(mixed_backend().await);
    let addrs: Vec<_> = b.iter().map(|x| x.addr).collect();
    srv.write("g.yaml", &gateway_yaml(port, &addrs, settings, ""));
    tokio::time::sleep(Duration::from_millis(700)).await;
    let s2 = connect_n(srv.port(port), 100).await;
    let newest = b[3].open.load(Ordering::SeqCst);
    assert!(
        newest >= 90,
        "new sessions prefer the new endpoint: it got {newest} of 100"
    );
    for x in &b[..3] {
        assert!(
            x.open.load(Ordering::SeqCst) >= 90,
            "scale-out closed no session on old endpoints"
        );
    }
    drop((s1, s2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistent_hash_keeps_a_cookie_on_one_endpoint() {
    let b: Vec<MixedBackend> = vec![
        mixed_backend().await,
        mixed_backend().await,
        mixed_backend().await,
    ];
    let port = free_port();
    let addrs: Vec<_> = b.iter().map(|x| x.addr).collect();
    let settings = "loadBalancing: {policy: ConsistentHash, hashOn: {cookie: sid}}";
    let srv = TestServer::start(&[("g.yaml", gateway_yaml(port, &addrs, settings, ""))]).await;
    let with_cookie = |c: String| {
        let mut req = format!("ws://{}/", srv.port(port))
            .into_client_request()
            .unwrap();
        req.headers_mut()
            .insert("cookie", format!("theme=dark; sid={c}").parse().unwrap());
        req
    };
    let mut held = Vec::new();
    for _ in 0..20 {
        held.push(
            tokio_tungstenite::connect_async(with_cookie("alice".into()))
                .await
                .unwrap()
                .0,
        );
    }
    let counts: Vec<usize> = b
        .iter()
        .map(|x| x.sessions.load(Ordering::SeqCst))
        .collect();
    assert!(
        counts.contains(&20),
        "all of alice's sessions on one endpoint: {counts:?}"
    );
    for i in 0..30 {
        held.push(
            tokio_tungstenite::connect_async(with_cookie(format!("user{i}")))
                .await
                .unwrap()
                .0,
        );
    }
    let used = b
        .iter()
        .filter(|x| x.sessions.load(Ordering::SeqCst) > 0)
        .count();
    assert!(used >= 2, "different cookies spread over endpoints");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_per_rule_answers_503_with_retry_after() {
    let b = mixed_backend().await;
    let port = free_port();
    let srv = TestServer::start(&[(
        "g.yaml",
        gateway_yaml(port, &[b.addr], "websocket: {maxConnections: 3}", ""),
    )])
    .await;
    let mut held = connect_n(srv.port(port), 3).await;
    let reply = raw_exchange_full(srv.port(port), "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nConnection: close\r\n\r\n").await;
    assert!(reply.starts_with("HTTP/1.1 503"), "{reply}");
    assert_eq!(head_value(&reply, "retry-after").as_deref(), Some("1"));
    assert_eq!(
        b.sessions.load(Ordering::SeqCst),
        3,
        "the backend was not contacted"
    );
    let m = srv.metrics().await;
    assert_eq!(
        metric(
            &m,
            r#"wsgate_rejected_total{reason="max_connections",route="lb/gw/r"}"#
        ),
        1.0
    );
    // A closed session frees its slot.
    let mut first = held.remove(0);
    first.close(None).await.unwrap();
    use futures_util::StreamExt;
    while let Some(Ok(_)) = first.next().await {}
    tokio::time::sleep(Duration::from_millis(100)).await;
    held.push(ws_connect(&format!("ws://{}/", srv.port(port))).await);
    assert_eq!(b.sessions.load(Ordering::SeqCst), 4);
}
