//! Upgrade safety over real sockets: the handshake gate answers without contacting the backend,
//! a bad 101 never becomes a tunnel (so nothing pipelined behind it is smuggled), non-101
//! answers are relayed as HTTP, and other upgrade tokens are never tunnelled.
// Tests time real sockets with the wall clock and share plain std mutexes with their threads;
// the data-path rules of clippy.toml do not apply here.
#![allow(clippy::disallowed_types)]

mod common;

use common::*;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

fn upgrade_request(path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

async fn serve(backend: SocketAddr) -> TestServer {
    let files = [(
        "t.yaml",
        service_yaml("t", "b", &[backend])
            + &ingress_yaml("t", "i", &[], &[("", "/", "Prefix", "b")]),
    )];
    TestServer::start(&files).await
}

/// A backend that answers every request head with `response`, then records every byte that
/// follows on that connection.
async fn scripted_backend(
    response: &'static str,
) -> (
    SocketAddr,
    Arc<std::sync::atomic::AtomicUsize>,
    Arc<Mutex<Vec<u8>>>,
) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    let (addr, accepts) = raw_backend(move |mut s| {
        let seen = s2.clone();
        async move {
            let head = read_head(&mut s).await;
            seen.lock().unwrap().extend_from_slice(head.as_bytes());
            let _ = s.write_all(response.as_bytes()).await;
            record_until_quiet(&mut s, &seen, Duration::from_secs(3)).await;
        }
    })
    .await;
    (addr, accepts, seen)
}

async fn bad_101_is_refused(response: &'static str) {
    let (backend, accepts, seen) = scripted_backend(response).await;
    let srv = serve(backend).await;
    // The upgrade request and a smuggled request pipelined behind it, in one write.
    let pipelined = upgrade_request("/ws", "") + "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
    let reply = raw_exchange_full(srv.http(), &pipelined).await;
    assert!(
        reply.starts_with("HTTP/1.1 502"),
        "client must get 502, got {reply:?}"
    );
    assert_eq!(
        reply.matches("HTTP/1.1").count(),
        1,
        "the pipelined request must not be answered: {reply:?}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seen = String::from_utf8_lossy(&seen.lock().unwrap()).into_owned();
    assert!(
        !seen.contains("/smuggled"),
        "backend must never see the pipelined request: {seen:?}"
    );
    assert_eq!(accepts.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test]
async fn backend_101_without_accept_gets_502_and_no_smuggling() {
    bad_101_is_refused(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    )
    .await;
}

#[tokio::test]
async fn backend_101_with_wrong_accept_gets_502_and_no_smuggling() {
    bad_101_is_refused(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n",
    )
    .await;
}

#[tokio::test]
async fn backend_101_without_upgrade_header_gets_502() {
    bad_101_is_refused(
        "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
    )
    .await;
}

async fn non_101_relayed(response: &'static str, status: u16) {
    let (backend, _accepts, seen) = scripted_backend(response).await;
    let srv = serve(backend).await;
    let mut c = tokio::net::TcpStream::connect(srv.http()).await.unwrap();
    c.write_all(upgrade_request("/ws", "").as_bytes())
        .await
        .unwrap();
    let head = read_head(&mut c).await;
    assert!(head.starts_with(&format!("HTTP/1.1 {status}")), "{head}");
    let mut body = [0u8; 7];
    c.read_exact(&mut body).await.unwrap();
    assert_eq!(&body, b"refused");
    // No tunnel: bytes sent now are parsed as HTTP by wsgate, not forwarded raw to the backend.
    c.write_all(b"\x81\x85garbage-frame\r\n\r\n").await.unwrap();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), c.read_to_end(&mut rest)).await;
    let rest = String::from_utf8_lossy(&rest);
    assert!(
        rest.starts_with("HTTP/1.1 400") || rest.is_empty(),
        "raw bytes must be treated as HTTP: {rest:?}"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let seen = String::from_utf8_lossy(&seen.lock().unwrap()).into_owned();
    assert!(!seen.contains("garbage-frame"), "{seen:?}");
}

#[tokio::test]
async fn backend_426_is_relayed_as_http() {
    non_101_relayed(
        "HTTP/1.1 426 Upgrade Required\r\nContent-Length: 7\r\n\r\nrefused",
        426,
    )
    .await;
}

#[tokio::test]
async fn backend_200_is_relayed_as_http() {
    non_101_relayed("HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nrefused", 200).await;
}

#[tokio::test]
async fn h2c_upgrade_is_never_tunnelled() {
    let backend = http_backend("plain").await;
    let srv = serve(backend.addr).await;
    let req = "GET /h HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n\
               HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nConnection: close\r\n\r\n";
    let (status, body) = raw_exchange(srv.http(), req).await;
    assert_eq!(status, 200, "{body}");
    let seen = backend.requests.lock().unwrap().join("\n");
    assert!(seen.contains("GET /h"), "{seen}");
    assert!(
        !seen.contains("upgrade:"),
        "Upgrade must be stripped: {seen}"
    );
    assert!(
        !seen.contains("http2-settings:"),
        "Connection-named headers must be stripped: {seen}"
    );
}

#[tokio::test]
async fn handshake_matrix_answered_without_backend_connection() {
    let echo = echo_backend().await;
    let srv = serve(echo.addr).await;
    let base = |upgrade: &str, connection: &str, key: Option<&str>, version: &str, method: &str| {
        let mut r = format!(
            "{method} /ws HTTP/1.1\r\nHost: x\r\nUpgrade: {upgrade}\r\nConnection: {connection}\r\n"
        );
        if let Some(k) = key {
            r.push_str(&format!("Sec-WebSocket-Key: {k}\r\n"));
        }
        r.push_str(&format!(
            "Sec-WebSocket-Version: {version}\r\nContent-Length: 0\r\n\r\n"
        ));
        r
    };
    let cases = [
        (
            "missing key",
            base("websocket", "Upgrade", None, "13", "GET"),
            400,
        ),
        (
            "key not 16 bytes",
            base("websocket", "Upgrade", Some("c2hvcnQ="), "13", "GET"),
            400,
        ),
        (
            "version 8",
            base("websocket", "Upgrade", Some(KEY), "8", "GET"),
            426,
        ),
        (
            "Upgrade: websocket2",
            base("websocket2", "Upgrade", Some(KEY), "13", "GET"),
            400,
        ),
        (
            "no Connection: upgrade",
            base("websocket", "keep-alive", Some(KEY), "13", "GET"),
            400,
        ),
        (
            "POST",
            base("websocket", "Upgrade", Some(KEY), "13", "POST"),
            400,
        ),
    ];
    for (name, req, want) in &cases {
        let reply = raw_exchange_full(
            srv.http(),
            &(req
                .clone()
                .replace("\r\n\r\n", "\r\nConnection: close\r\n\r\n")),
        )
        .await;
        let status: u16 = reply
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        assert_eq!(status, *want, "{name}: {reply}");
        if *want == 426 {
            assert_eq!(
                head_value(&reply, "sec-websocket-version").as_deref(),
                Some("13"),
                "{name}"
            );
        }
    }
    assert_eq!(echo.accepted(), 0, "the backend must never be contacted");
    let m = srv.metrics().await;
    assert_eq!(
        metric(
            &m,
            r#"wsgate_rejected_total{reason="bad_handshake",route="t/i/*/"}"#
        ),
        6.0,
        "{m}"
    );
    // The same route still upgrades a valid handshake.
    let mut ws = ws_connect(&format!("ws://{}/ws", srv.http())).await;
    echo_roundtrip(&mut ws, "valid").await;
    assert_eq!(echo.accepted(), 1);
}

#[tokio::test]
async fn websocket_disabled_route_gets_403() {
    let echo = echo_backend().await;
    let files = [(
        "t.yaml",
        service_yaml("t", "b", &[echo.addr])
            + &ingress_yaml(
                "t",
                "i",
                &[("wsgate.dev/websocket", "false")],
                &[("", "/", "Prefix", "b")],
            ),
    )];
    let srv = TestServer::start(&files).await;
    let reply =
        raw_exchange_full(srv.http(), &upgrade_request("/ws", "Connection: close\r\n")).await;
    assert!(reply.starts_with("HTTP/1.1 403"), "{reply}");
    assert_eq!(echo.accepted(), 0);
}
