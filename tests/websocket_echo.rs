//! Echo through wsgate over real sockets: message kinds, sizes, fragmentation, control frames,
//! close codes both ways, subprotocols, and permessage-deflate end to end.

mod common;

use common::*;
use futures_util::{SinkExt, StreamExt};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};

async fn setup() -> (TestServer, EchoBackend) {
    let echo = echo_backend().await;
    let files = [(
        "echo.yaml",
        service_yaml("demo", "echo", &[echo.addr])
            + &ingress_yaml("demo", "echo", &[], &[("", "/ws", "Prefix", "echo")]),
    )];
    (TestServer::start(&files).await, echo)
}

async fn next(
    ws: &mut (impl StreamExt<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin),
) -> Message {
    tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("reply in time")
        .expect("stream open")
        .expect("valid message")
}

#[tokio::test]
async fn text_binary_large_and_fragmented_messages_echo() {
    let (srv, _echo) = setup().await;
    let mut ws = ws_connect(&format!("ws://{}/ws", srv.http())).await;

    ws.send(Message::text("hello")).await.unwrap();
    assert_eq!(next(&mut ws).await, Message::text("hello"));

    let bin: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
    ws.send(Message::binary(bin.clone())).await.unwrap();
    assert_eq!(next(&mut ws).await, Message::binary(bin));

    let big: Vec<u8> = (0..1024 * 1024).map(|i| (i * 7 % 251) as u8).collect();
    ws.send(Message::binary(big.clone())).await.unwrap();
    assert_eq!(next(&mut ws).await, Message::binary(big));

    // A text message in three fragments arrives reassembled by the backend and echoed whole.
    ws.send(Message::Frame(Frame::message(
        "frag",
        OpCode::Data(Data::Text),
        false,
    )))
    .await
    .unwrap();
    ws.send(Message::Frame(Frame::message(
        "men",
        OpCode::Data(Data::Continue),
        false,
    )))
    .await
    .unwrap();
    ws.send(Message::Frame(Frame::message(
        "ted",
        OpCode::Data(Data::Continue),
        true,
    )))
    .await
    .unwrap();
    assert_eq!(next(&mut ws).await, Message::text("fragmented"));

    ws.send(Message::Ping("are you there".into()))
        .await
        .unwrap();
    assert_eq!(next(&mut ws).await, Message::Pong("are you there".into()));

    ws.close(None).await.unwrap();
    let m = srv.metrics().await;
    assert_eq!(
        metric(
            &m,
            r#"wsgate_websocket_messages_total{direction="to_backend",route="demo/echo/*/ws"}"#
        ),
        4.0,
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            r#"wsgate_websocket_messages_total{direction="to_client",route="demo/echo/*/ws"}"#
        ),
        4.0
    );
    assert!(
        metric(
            &m,
            r#"wsgate_websocket_bytes_total{direction="to_client",route="demo/echo/*/ws"}"#
        ) > 1_048_576.0
    );
    assert_eq!(
        metric(
            &m,
            r#"wsgate_http_requests_total{code="101",method="GET",route="demo/echo/*/ws"}"#
        ),
        1.0
    );
}

#[tokio::test]
async fn close_codes_relay_both_ways() {
    let (srv, echo) = setup().await;
    // Client-initiated close: the backend receives the client's code.
    let mut ws = ws_connect(&format!("ws://{}/ws", srv.http())).await;
    ws.close(Some(CloseFrame {
        code: CloseCode::from(4001),
        reason: "client done".into(),
    }))
    .await
    .unwrap();
    while let Some(Ok(_)) = ws.next().await {}
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(*echo.received_closes.lock().unwrap(), vec![4001]);

    // Backend-initiated close: the client receives the backend's code.
    let mut ws = ws_connect(&format!("ws://{}/ws", srv.http())).await;
    ws.send(Message::text("close:4002")).await.unwrap();
    match next(&mut ws).await {
        Message::Close(Some(f)) => assert_eq!(u16::from(f.code), 4002),
        other => panic!("expected close 4002, got {other:?}"),
    }
    // Polling on sends the client's close reply, completing the handshake.
    while let Some(Ok(_)) = ws.next().await {}
    tokio::time::sleep(Duration::from_millis(300)).await;
    let m = srv.metrics().await;
    assert_eq!(
        metric(
            &m,
            r#"wsgate_websocket_sessions_total{close_reason="client",route="demo/echo/*/ws"}"#
        ),
        1.0,
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            r#"wsgate_websocket_sessions_total{close_reason="backend",route="demo/echo/*/ws"}"#
        ),
        1.0
    );
    assert_eq!(
        metric(
            &m,
            r#"wsgate_websocket_sessions_active{route="demo/echo/*/ws"}"#
        ),
        0.0
    );
}

#[tokio::test]
async fn backend_subprotocol_choice_reaches_client() {
    let (srv, _echo) = setup().await;
    let mut req = format!("ws://{}/ws", srv.http())
        .into_client_request()
        .unwrap();
    req.headers_mut().insert(
        "sec-websocket-protocol",
        "chat.v2, chat.v1".parse().unwrap(),
    );
    let (mut ws, resp) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(resp.headers()["sec-websocket-protocol"], "chat.v2");
    echo_roundtrip(&mut ws, "with protocol").await;
}

#[tokio::test]
async fn permessage_deflate_negotiated_end_to_end() {
    use deflate_peer::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    // A backend that negotiates permessage-deflate, inflates what it gets and deflates its reply.
    let (backend, _) = raw_backend(|mut s| async move {
        let head = read_head(&mut s).await;
        let key = head_value(&head, "sec-websocket-key").unwrap();
        let ext = head_value(&head, "sec-websocket-extensions").unwrap_or_default();
        assert!(ext.contains("permessage-deflate"), "backend saw extensions {ext:?}");
        let resp = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\nSec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover\r\n\r\n",
            wsgate::proxy::accept_key(&key)
        );
        s.write_all(resp.as_bytes()).await.unwrap();
        let (rsv1, payload) = read_frame(&mut s).await;
        assert!(rsv1, "compressed frame arrives with RSV1 set");
        let text = inflate(&payload);
        let reply = deflate(format!("echo: {text}").as_bytes());
        s.write_all(&frame_bytes(true, &reply, None)).await.unwrap();
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut rest)).await;
    })
    .await;
    let files = [(
        "d.yaml",
        service_yaml("demo", "deflate", &[backend])
            + &ingress_yaml("demo", "d", &[], &[("", "/", "Prefix", "deflate")]),
    )];
    let srv = TestServer::start(&files).await;

    let mut c = tokio::net::TcpStream::connect(srv.http()).await.unwrap();
    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    c.write_all(
        format!(
            "GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let head = read_head(&mut c).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head_value(&head, "sec-websocket-extensions")
            .unwrap()
            .contains("permessage-deflate")
    );
    let compressed = deflate(b"hello compressed world");
    c.write_all(&frame_bytes(true, &compressed, Some([9, 8, 7, 6])))
        .await
        .unwrap();
    let (rsv1, payload) = read_frame(&mut c).await;
    assert!(rsv1);
    assert_eq!(inflate(&payload), "echo: hello compressed world");
}

mod deflate_peer {
    use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
    use std::time::Duration;
    use tokio::io::AsyncReadExt;
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    pub fn deflate(data: &[u8]) -> Vec<u8> {
        let mut c = Compress::new(Compression::default(), false);
        let mut out = Vec::with_capacity(data.len() + 64);
        c.compress_vec(data, &mut out, FlushCompress::Sync).unwrap();
        // RFC 7692: strip the trailing 00 00 ff ff of a sync flush.
        out.truncate(out.len() - 4);
        out
    }
    pub fn inflate(data: &[u8]) -> String {
        let mut d = Decompress::new(false);
        let mut input = data.to_vec();
        input.extend_from_slice(&[0, 0, 0xff, 0xff]);
        let mut out = Vec::with_capacity(4096);
        d.decompress_vec(&input, &mut out, FlushDecompress::Sync)
            .unwrap();
        String::from_utf8(out).unwrap()
    }
    pub fn frame_bytes(rsv1: bool, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
        let mut f = Frame::message(payload.to_vec(), OpCode::Data(Data::Text), true);
        f.header_mut().rsv1 = rsv1;
        f.header_mut().mask = mask;
        let mut out = Vec::new();
        f.format(&mut out).unwrap();
        out
    }
    pub async fn read_frame(s: &mut tokio::net::TcpStream) -> (bool, Vec<u8>) {
        let mut buf = Vec::new();
        loop {
            let mut cur = std::io::Cursor::new(&buf);
            if let Some((h, len)) =
                tokio_tungstenite::tungstenite::protocol::frame::FrameHeader::parse(&mut cur)
                    .unwrap()
            {
                let start = cur.position() as usize;
                if buf.len() >= start + len as usize {
                    let mut payload = buf[start..start + len as usize].to_vec();
                    if let Some(m) = h.mask {
                        for (i, b) in payload.iter_mut().enumerate() {
                            *b ^= m[i % 4];
                        }
                    }
                    return (h.rsv1, payload);
                }
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk))
                .await
                .unwrap()
                .unwrap();
            assert!(n > 0, "connection closed before a full frame");
            buf.extend_from_slice(&chunk[..n]);
        }
    }
}
