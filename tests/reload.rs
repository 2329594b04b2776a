//! Configuration reloads never drop sessions: 50 open WebSocket sessions survive 20 edits of the
//! config files with messages flowing, each new route serves within 1 s of its edit, and a bad
//! edit keeps the last good table serving.
// Tests time real sockets with the wall clock and share plain std mutexes with their threads;
// the data-path rules of clippy.toml do not apply here.
#![allow(clippy::disallowed_types)]

mod common;

use common::*;
use futures_util::{SinkExt, StreamExt};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

fn config(echo: std::net::SocketAddr, http: std::net::SocketAddr, edits: usize) -> String {
    let mut yaml = service_yaml("live", "echo", &[echo]) + &service_yaml("live", "web", &[http]);
    // Annotations change on every edit too, so the session's own route is rebuilt each time.
    let timeout = format!("{}s", 60 + edits);
    yaml += &ingress_yaml(
        "live",
        "chat",
        &[("wsgate.dev/request-timeout", &timeout)],
        &[("", "/ws", "Prefix", "echo")],
    );
    for i in 1..=edits {
        yaml += &ingress_yaml(
            "live",
            &format!("new-{i}"),
            &[],
            &[("", &format!("/new-{i}"), "Exact", "web")],
        );
    }
    yaml
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_sessions_survive_twenty_edits() {
    let echo = echo_backend().await;
    let web = http_backend("web").await;
    let srv = TestServer::start(&[("live.yaml", config(echo.addr, web.addr, 0))]).await;
    let url = format!("ws://{}/ws", srv.http());
    let mut sessions = Vec::new();
    for _ in 0..50 {
        sessions.push(ws_connect(&url).await);
    }

    let mut worst = Duration::ZERO;
    for edit in 1..=20 {
        assert_eq!(
            http_get(srv.http(), "x", &format!("/new-{edit}")).await.0,
            404,
            "not yet routed"
        );
        let t0 = Instant::now();
        srv.write("live.yaml", &config(echo.addr, web.addr, edit));
        loop {
            if http_get(srv.http(), "x", &format!("/new-{edit}")).await.0 == 200 {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(1),
                "edit {edit}: new route not serving within 1 s"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        worst = worst.max(t0.elapsed());
        for (i, ws) in sessions.iter_mut().enumerate() {
            echo_roundtrip(ws, &format!("edit {edit} session {i}")).await;
        }
    }
    eprintln!("slowest edit-to-serving time: {worst:?}");

    // A broken edit is rejected and the last good table keeps serving.
    srv.write(
        "live.yaml",
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: broken\n",
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(http_get(srv.http(), "x", "/new-20").await.0, 200);

    for ws in sessions.iter_mut() {
        echo_roundtrip(ws, "still here").await;
    }
    let m = srv.metrics().await;
    assert_eq!(
        metric(
            &m,
            r#"wsgate_websocket_sessions_active{route="live/chat/*/ws"}"#
        ),
        50.0,
        "{m}"
    );
    assert!(
        !m.contains("wsgate_websocket_sessions_total"),
        "no session may have closed: {m}"
    );
    assert!(
        metric(&m, r#"wsgate_config_reloads_total{result="ok"}"#) >= 21.0,
        "{m}"
    );
    assert!(
        metric(&m, r#"wsgate_config_reloads_total{result="error"}"#) >= 1.0,
        "{m}"
    );
    for mut ws in sessions {
        ws.send(Message::Close(None)).await.unwrap();
        while let Some(Ok(_)) = ws.next().await {}
    }
}

#[tokio::test]
async fn removing_a_route_keeps_its_open_sessions() {
    let echo = echo_backend().await;
    let web = http_backend("web").await;
    let srv = TestServer::start(&[("live.yaml", config(echo.addr, web.addr, 0))]).await;
    let mut ws = ws_connect(&format!("ws://{}/ws", srv.http())).await;
    // The route and its backend disappear from the configuration entirely.
    srv.write("live.yaml", &service_yaml("live", "web", &[web.addr]));
    let t0 = Instant::now();
    while http_get(srv.http(), "x", "/ws").await.0 != 404 {
        assert!(
            t0.elapsed() < Duration::from_secs(2),
            "route removal not applied"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The established session is untouched: the backend decides when it ends.
    echo_roundtrip(&mut ws, "route is gone, session is not").await;
}

#[tokio::test]
async fn removing_an_endpoint_keeps_its_open_sessions() {
    let a = echo_backend().await;
    let b = echo_backend_on("127.0.0.2:0").await;
    let both = service_yaml("live", "echo", &[a.addr, b.addr]);
    // Both backends share a port number only by chance; use one EndpointSlice per backend instead.
    let slice = |name: &str, addr: std::net::SocketAddr| {
        format!(
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}\n  namespace: live\n  labels: {{kubernetes.io/service-name: echo}}\n\
             addressType: IPv4\nports: [{{name: http, port: {}}}]\nendpoints:\n  - addresses: [{}]\n---\n",
            addr.port(),
            addr.ip()
        )
    };
    let svc = both.split("---\n").next().unwrap().to_string() + "---\n";
    let ing = ingress_yaml("live", "chat", &[], &[("", "/ws", "Prefix", "echo")]);
    let srv = TestServer::start(&[(
        "live.yaml",
        svc.clone() + &slice("a", a.addr) + &slice("b", b.addr) + &ing,
    )])
    .await;
    let mut sessions = Vec::new();
    for _ in 0..10 {
        sessions.push(ws_connect(&format!("ws://{}/ws", srv.http())).await);
    }
    assert!(
        a.accepted() > 0 && b.accepted() > 0,
        "round robin used both endpoints"
    );
    let on_b = b.accepted();
    // Endpoint b leaves the EndpointSlices (a scale-down or a failed readiness probe).
    srv.write("live.yaml", &(svc + &slice("a", a.addr) + &ing));
    let t0 = Instant::now();
    while srv.server.proxy().table().backends[0].endpoints.len() != 1 {
        assert!(t0.elapsed() < Duration::from_secs(2));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for ws in sessions.iter_mut() {
        echo_roundtrip(ws, "the backend decides when I end").await;
    }
    let mut fresh = ws_connect(&format!("ws://{}/ws", srv.http())).await;
    echo_roundtrip(&mut fresh, "new sessions go to a").await;
    assert_eq!(
        b.accepted(),
        on_b,
        "no new session reaches the removed endpoint"
    );
}
