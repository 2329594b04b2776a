//! Session policies over real sockets: every close reason with the close code each side receives
//! and the metric label counting it; proxy pings with swallowed pongs; liveness rules.
// Tests time real sockets with the wall clock and share plain std mutexes with their threads;
// the data-path rules of clippy.toml do not apply here.
#![allow(clippy::disallowed_types)]

mod common;

use common::*;
use futures_util::{SinkExt, StreamExt};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

const ROUTE: &str = "p/i/*/ws";

async fn serve(backend: std::net::SocketAddr, annotations: &[(&str, &str)]) -> TestServer {
    let yaml = service_yaml("p", "b", &[backend])
        + &ingress_yaml("p", "i", annotations, &[("", "/ws", "Prefix", "b")]);
    TestServer::start(&[("p.yaml", yaml)]).await
}

/// Reads until a close frame; returns its code and how long it took.
async fn close_code<S>(
    ws: &mut tokio_tungstenite::WebSocketStream<S>,
    within: Duration,
) -> (u16, Duration)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let t0 = Instant::now();
    loop {
        let next = tokio::time::timeout(within.saturating_sub(t0.elapsed()), ws.next()).await;
        match next {
            Ok(Some(Ok(Message::Close(f)))) => {
                return (f.map(|f| u16::from(f.code)).unwrap_or(1005), t0.elapsed());
            }
            Ok(Some(Ok(_))) => continue,
            other => panic!("expected a close frame within {within:?}, got {other:?}"),
        }
    }
}

async fn sessions_total(srv: &TestServer, reason: &str) -> f64 {
    // The session is recorded right after its close completes.
    for _ in 0..50 {
        let v = metric(
            &srv.metrics().await,
            &format!(
                r#"wsgate_websocket_sessions_total{{close_reason="{reason}",route="{ROUTE}"}}"#
            ),
        );
        if v > 0.0 {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    0.0
}

async fn backend_close_code(echo: &EchoBackend) -> Option<u16> {
    for _ in 0..100 {
        if let Some(c) = echo.received_closes.lock().unwrap().first() {
            return Some(*c);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

#[tokio::test]
async fn frames_dribbled_one_byte_at_a_time_pass_intact() {
    let echo = echo_backend().await;
    let srv = serve(echo.addr, &[]).await;
    let mut c = tokio::net::TcpStream::connect(srv.http()).await.unwrap();
    c.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").await.unwrap();
    assert!(read_head(&mut c).await.starts_with("HTTP/1.1 101"));
    let mut bytes = Vec::new();
    for (payload, op, fin) in [
        (vec![b'a'; 300], OpCode::Data(Data::Text), false),
        (vec![b'b'; 70_000], OpCode::Data(Data::Continue), true),
    ] {
        let mut f = Frame::message(payload, op, fin);
        f.header_mut().mask = Some([1, 2, 3, 4]);
        f.format(&mut bytes).unwrap();
    }
    // Headers split across reads, including the 8-byte extended length, byte by byte.
    for chunk in bytes[..400].chunks(1).chain(bytes[400..].chunks(8192)) {
        c.write_all(chunk).await.unwrap();
        c.flush().await.unwrap();
    }
    let mut got = Vec::new();
    let want = 2 + 8 + 70_300; // unmasked header of the reassembled echo + payload
    let mut chunk = [0u8; 65536];
    while got.len() < want {
        let n = tokio::time::timeout(Duration::from_secs(5), c.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0);
        got.extend_from_slice(&chunk[..n]);
    }
    assert_eq!(got[0], 0x81, "a final text frame");
    assert!(
        got[10..].iter().take(300).all(|b| *b == b'a') && got[310..want].iter().all(|b| *b == b'b')
    );
}

#[tokio::test]
async fn proxy_pings_both_sides_and_swallows_their_pongs() {
    let echo = echo_backend().await;
    let srv = serve(echo.addr, &[("wsgate.dev/ping-interval", "150ms")]).await;
    let mut ws = ws_connect(&format!("ws://{}/ws", srv.http())).await;
    let mut pings = 0;
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_millis(1000) {
        match tokio::time::timeout(Duration::from_millis(100), ws.next()).await {
            Ok(Some(Ok(Message::Ping(_)))) => pings += 1,
            Ok(Some(Ok(Message::Pong(p)))) => {
                panic!("the backend's pong to a proxy ping leaked to the client: {p:?}")
            }
            Ok(other) => panic!("unexpected {other:?}"),
            Err(_) => {}
        }
    }
    assert!(
        pings >= 4,
        "client got {pings} proxy pings in 1 s at a 150 ms interval"
    );
    // The client's own pings still get the backend's pongs.
    ws.send(Message::Ping("mine".into())).await.unwrap();
    loop {
        match ws.next().await.unwrap().unwrap() {
            Message::Pong(p) => {
                assert_eq!(&p[..], b"mine");
                break;
            }
            Message::Ping(_) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
    echo_roundtrip(&mut ws, "still fine").await;
}

#[tokio::test]
async fn quiet_live_session_outlives_five_request_timeouts() {
    let echo = echo_backend().await;
    let srv = serve(
        echo.addr,
        &[
            ("wsgate.dev/request-timeout", "1s"),
            ("wsgate.dev/ping-interval", "200ms"),
        ],
    )
    .await;
    let mut ws = ws_connect(&format!("ws://{}/ws", srv.http())).await;
    // The client only reads (which answers pings); no data for 5 × requestTimeout.
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_millis(5000) {
        if let Ok(m) = tokio::time::timeout(Duration::from_millis(50), ws.next()).await {
            assert!(matches!(m, Some(Ok(Message::Ping(_)))), "{m:?}");
        }
    }
    echo_roundtrip(&mut ws, "alive after 5 request timeouts").await;
}

#[tokio::test]
async fn client_that_stops_answering_pings_is_closed_with_1001() {
    let echo = echo_backend().await;
    let srv = serve(
        echo.addr,
        &[
            ("wsgate.dev/request-timeout", "500ms"),
            ("wsgate.dev/ping-interval", "200ms"),
        ],
    )
    .await;
    // A raw client that completes the handshake and then goes silent (never reads or answers).
    let mut c = tokio::net::TcpStream::connect(srv.http()).await.unwrap();
    c.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").await.unwrap();
    assert!(read_head(&mut c).await.starts_with("HTTP/1.1 101"));
    let t0 = Instant::now();
    assert_eq!(backend_close_code(&echo).await, Some(1001));
    let took = t0.elapsed();
    assert!(
        took <= Duration::from_millis(500 + 200 + 600),
        "closed after {took:?}, want within requestTimeout + pingInterval"
    );
    assert_eq!(sessions_total(&srv, "request_timeout").await, 1.0);
}

#[tokio::test]
async fn idle_timeout_counts_data_frames_only() {
    let echo = echo_backend().await;
    let srv = serve(
        echo.addr,
        &[
            ("wsgate.dev/idle-timeout", "400ms"),
            ("wsgate.dev/ping-interval", "100ms"),
        ],
    )
    .await;
    let mut ws = ws_connect(&format!("ws://{}/ws", srv.http())).await;
    echo_roundtrip(&mut ws, "one message").await;
    let (code, took) = close_code(&mut ws, Duration::from_secs(3)).await;
    assert_eq!(code, 1001);
    assert!(
        took >= Duration::from_millis(350) && took < Duration::from_millis(2000),
        "{took:?}"
    );
    assert_eq!(backend_close_code(&echo).await, Some(1001));
    assert_eq!(sessions_total(&srv, "idle_timeout").await, 1.0);
}

#[tokio::test]
async fn max_session_duration_closes_busy_sessions_too() {
    let echo = echo_backend().await;
    let srv = serve(echo.addr, &[("wsgate.dev/max-session-duration", "500ms")]).await;
    let mut ws = ws_connect(&format!("ws://{}/ws", srv.http())).await;
    let t0 = Instant::now();
    let code = loop {
        if ws.send(Message::text("busy")).await.is_err() {
            panic!("send failed before a close frame arrived");
        }
        match tokio::time::timeout(Duration::from_secs(2), ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
        {
            Message::Close(f) => break f.map(|f| u16::from(f.code)).unwrap(),
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    assert_eq!(code, 1001);
    assert!(t0.elapsed() < Duration::from_millis(1500));
    assert_eq!(backend_close_code(&echo).await, Some(1001));
    assert_eq!(sessions_total(&srv, "max_duration").await, 1.0);
}

#[tokio::test]
async fn message_too_big_from_client_gets_1009_and_backend_1001() {
    let echo = echo_backend().await;
    let srv = serve(echo.addr, &[("wsgate.dev/max-message-bytes", "1000")]).await;
    let mut ws = ws_connect(&format!("ws://{}/ws", srv.http())).await;
    echo_roundtrip(&mut ws, &"x".repeat(1000)).await;
    ws.send(Message::binary(vec![0u8; 1001])).await.unwrap();
    let (code, _) = close_code(&mut ws, Duration::from_secs(3)).await;
    assert_eq!(code, 1009);
    assert_eq!(backend_close_code(&echo).await, Some(1001));
    assert_eq!(sessions_total(&srv, "message_too_big").await, 1.0);
}

#[tokio::test]
async fn fragmented_message_over_the_limit_is_caught() {
    let echo = echo_backend().await;
    let srv = serve(echo.addr, &[("wsgate.dev/max-message-bytes", "1000")]).await;
    let mut ws = ws_connect(&format!("ws://{}/ws", srv.http())).await;
    ws.send(Message::Frame(Frame::message(
        vec![b'a'; 600],
        OpCode::Data(Data::Text),
        false,
    )))
    .await
    .unwrap();
    ws.send(Message::Frame(Frame::message(
        vec![b'a'; 600],
        OpCode::Data(Data::Continue),
        true,
    )))
    .await
    .unwrap();
    assert_eq!(close_code(&mut ws, Duration::from_secs(3)).await.0, 1009);
    assert_eq!(backend_close_code(&echo).await, Some(1001));
}

#[tokio::test]
async fn backend_dies_mid_session_client_gets_1011_within_1s() {
    // A backend that completes the handshake, then drops the connection without a close frame.
    let (backend, _) = raw_backend(|mut s| async move {
        let head = read_head(&mut s).await;
        let key = head_value(&head, "sec-websocket-key").unwrap();
        let resp = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
            wsgate::proxy::accept_key(&key)
        );
        s.write_all(resp.as_bytes()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        // Reset rather than FIN: the harshest way to die.
        let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
        drop(s);
    })
    .await;
    let srv = serve(backend, &[]).await;
    let mut ws = ws_connect(&format!("ws://{}/ws", srv.http())).await;
    let (code, took) = close_code(&mut ws, Duration::from_secs(2)).await;
    assert_eq!(code, 1011);
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert_eq!(sessions_total(&srv, "backend_error").await, 1.0);
}

#[tokio::test]
async fn client_dies_backend_gets_1001() {
    let echo = echo_backend().await;
    let srv = serve(echo.addr, &[]).await;
    let ws = ws_connect(&format!("ws://{}/ws", srv.http())).await;
    drop(ws); // TCP closed without a close frame
    assert_eq!(backend_close_code(&echo).await, Some(1001));
    assert_eq!(sessions_total(&srv, "client_error").await, 1.0);
}

#[tokio::test]
async fn client_and_backend_initiated_closes_are_labelled() {
    let echo = echo_backend().await;
    let srv = serve(echo.addr, &[]).await;
    let mut ws = ws_connect(&format!("ws://{}/ws", srv.http())).await;
    ws.close(None).await.unwrap();
    while let Some(Ok(_)) = ws.next().await {}
    assert_eq!(sessions_total(&srv, "client").await, 1.0);
    let mut ws = ws_connect(&format!("ws://{}/ws", srv.http())).await;
    ws.send(Message::text("close:1000")).await.unwrap();
    assert_eq!(close_code(&mut ws, Duration::from_secs(2)).await.0, 1000);
    while let Some(Ok(_)) = ws.next().await {}
    assert_eq!(sessions_total(&srv, "backend").await, 1.0);
}

#[tokio::test]
async fn drain_sends_1001_to_every_session() {
    let echo = echo_backend().await;
    let srv = serve(echo.addr, &[]).await;
    let mut clients = Vec::new();
    for _ in 0..10 {
        clients.push(ws_connect(&format!("ws://{}/ws", srv.http())).await);
    }
    let proxy = srv.server.proxy().clone();
    let drain = tokio::spawn(async move {
        let t0 = Instant::now();
        proxy.drain(Duration::from_secs(5)).await;
        t0.elapsed()
    });
    for ws in clients.iter_mut() {
        assert_eq!(close_code(ws, Duration::from_secs(3)).await.0, 1001);
    }
    for mut ws in clients {
        while let Some(Ok(_)) = ws.next().await {}
    }
    let took = drain.await.unwrap();
    assert!(took < Duration::from_secs(3), "drain waited {took:?}");
    assert_eq!(sessions_total(&srv, "shutdown").await, 10.0);
    assert!(!srv.server.proxy().is_ready());
}
