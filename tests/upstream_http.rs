//! HTTP/1.1 to backends over real sockets: response framings relayed intact and connections
//! reused only when a response ended as framed, request bodies (declared and chunked) delivered
//! byte for byte, keep-alive connections the backend closed while idle retried transparently,
//! malformed responses answered 502, and bytes pipelined with a 101 carried into the tunnel.
// Tests time real sockets with the wall clock and share plain std mutexes with their threads;
// the data-path rules of clippy.toml do not apply here.
#![allow(clippy::disallowed_types)]

mod common;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn serve(backend: SocketAddr) -> TestServer {
    let files = [(
        "t.yaml",
        service_yaml("t", "b", &[backend])
            + &ingress_yaml("t", "i", &[], &[("", "/", "Prefix", "b")]),
    )];
    TestServer::start(&files).await
}

/// One keep-alive client connection to wsgate (hyper's client decodes what wsgate sends).
async fn client(addr: SocketAddr) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

/// Sends one request; returns status, headers and the whole body (or the body error).
async fn call(
    c: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    method: &str,
    path: &str,
    body: Vec<u8>,
) -> (u16, http::HeaderMap, Result<Vec<u8>, String>) {
    c.ready().await.unwrap();
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "x")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let resp = c.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = tokio::time::timeout(Duration::from_secs(5), resp.into_body().collect())
        .await
        .map_err(|_| "timed out".to_string())
        .and_then(|r| r.map_err(|e| e.to_string()))
        .map(|c| c.to_bytes().to_vec());
    (status, headers, body)
}

/// The response a scripted backend writes for a request path, in pieces written separately;
/// `true` when the backend closes the connection afterwards.
fn scripted_response(path: &str) -> (Vec<&'static [u8]>, bool) {
    match path {
        "/length" => (vec![b"HTTP/1.1 200 OK\r\ncontent-length: 11\r\n\r\nhello", b" world"], false),
        "/chunked" => (
            vec![
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5;ext=1\r\nhel",
                b"lo\r\n6\r\n world\r\n0\r\nx-trailer: t\r\n",
                b"\r\n",
            ],
            false,
        ),
        "/empty" => (vec![b"HTTP/1.1 204 No Content\r\n\r\n"], false),
        "/head" => (vec![b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n"], false),
        "/until-close" => (vec![b"HTTP/1.1 200 OK\r\n\r\nuntil ", b"close"], true),
        "/truncated" => (vec![b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nshort"], true),
        "/garbage" => (vec![b"SPDY/3 what\r\n\r\n"], true),
        "/two-lengths" => (
            vec![b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nab"],
            true,
        ),
        "/interim" => (
            vec![b"HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"],
            false,
        ),
        _ => (vec![b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"], false),
    }
}

/// A backend that answers each request on a connection from [`scripted_response`].
async fn scripted_backend() -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    raw_backend(|mut s| async move {
        loop {
            let head = read_head(&mut s).await;
            let Some(path) = head.split(' ').nth(1) else {
                return;
            };
            let (pieces, close) = scripted_response(path);
            for p in pieces {
                if s.write_all(p).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            if close {
                return;
            }
        }
    })
    .await
}

#[tokio::test]
async fn response_framings_are_relayed_and_connections_reused_only_when_clean() {
    let (addr, accepts) = scripted_backend().await;
    let srv = serve(addr).await;
    let mut c = client(srv.http()).await;

    let (s, _, body) = call(&mut c, "GET", "/length", vec![]).await;
    assert_eq!((s, body.unwrap()), (200, b"hello world".to_vec()));
    let (s, _, body) = call(&mut c, "GET", "/chunked", vec![]).await;
    assert_eq!((s, body.unwrap()), (200, b"hello world".to_vec()));
    let (s, _, body) = call(&mut c, "GET", "/empty", vec![]).await;
    assert_eq!((s, body.unwrap()), (204, vec![]));
    let (s, h, body) = call(&mut c, "HEAD", "/head", vec![]).await;
    assert_eq!((s, body.unwrap()), (200, vec![]));
    assert_eq!(h.get("content-length").unwrap(), "5");
    let (s, h, body) = call(&mut c, "GET", "/interim", vec![]).await;
    assert_eq!((s, body.unwrap()), (200, b"ok".to_vec()));
    assert!(
        h.get("link").is_none(),
        "interim headers are not merged: {h:?}"
    );
    assert_eq!(
        accepts.load(Ordering::SeqCst),
        1,
        "every response above ended as framed: one backend connection"
    );

    let (s, _, body) = call(&mut c, "GET", "/until-close", vec![]).await;
    assert_eq!((s, body.unwrap()), (200, b"until close".to_vec()));
    let (s, _, body) = call(&mut c, "GET", "/length", vec![]).await;
    assert_eq!((s, body.unwrap()), (200, b"hello world".to_vec()));
    assert_eq!(
        accepts.load(Ordering::SeqCst),
        2,
        "a close-delimited body ends its connection"
    );

    // A body cut short reaches the client as an error, never as a complete response.
    let mut c2 = client(srv.http()).await;
    let (s, _, body) = call(&mut c2, "GET", "/truncated", vec![]).await;
    assert_eq!(s, 200);
    assert!(
        body.is_err(),
        "truncated body must not look complete: {body:?}"
    );
}

#[tokio::test]
async fn malformed_backend_responses_get_502() {
    let (addr, _) = scripted_backend().await;
    let srv = serve(addr).await;
    for path in ["/garbage", "/two-lengths"] {
        let (status, body) = http_get(srv.http(), "x", path).await;
        assert_eq!(status, 502, "{path}: {body}");
        assert!(body.contains("failed"), "{path}: {body}");
    }
    // A head larger than the limit, and a backend that closes without answering.
    let (huge, _) = raw_backend(|mut s| async move {
        read_head(&mut s).await;
        let line = format!("x-big: {}\r\n", "a".repeat(1000));
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\n").await;
        for _ in 0..70 {
            if s.write_all(line.as_bytes()).await.is_err() {
                return;
            }
        }
    })
    .await;
    let (silent, _) = raw_backend(|mut s| async move {
        read_head(&mut s).await;
    })
    .await;
    for backend in [huge, silent] {
        let srv = serve(backend).await;
        let (status, body) = http_get(srv.http(), "x", "/").await;
        assert_eq!(status, 502, "{body}");
    }
}

/// Reads one request (head and body, declared or chunked) and answers with the body's length
/// and a checksum; keeps the connection open for the next.
async fn body_summary_backend() -> SocketAddr {
    let (addr, _) = raw_backend(|mut s| async move {
        loop {
            let head = read_head(&mut s).await;
            if head.is_empty() {
                return;
            }
            let body = if let Some(n) = head_value(&head, "content-length") {
                let mut b = vec![0u8; n.parse().unwrap()];
                s.read_exact(&mut b).await.unwrap();
                b
            } else if head_value(&head, "transfer-encoding").as_deref() == Some("chunked") {
                read_chunked(&mut s).await
            } else {
                Vec::new()
            };
            let sum: u64 = body.iter().map(|&b| u64::from(b)).sum();
            let framing = if head_value(&head, "content-length").is_some() {
                "length"
            } else if head_value(&head, "transfer-encoding").is_some() {
                "chunked"
            } else {
                "none"
            };
            let text = format!("{} {} {}", body.len(), sum, framing);
            let resp = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{text}",
                text.len()
            );
            if s.write_all(resp.as_bytes()).await.is_err() {
                return;
            }
        }
    })
    .await;
    addr
}

/// Decodes a chunked body from a raw stream (test side).
async fn read_chunked(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let mut line = Vec::new();
        while !line.ends_with(b"\r\n") {
            line.push(s.read_u8().await.unwrap());
        }
        let size = usize::from_str_radix(std::str::from_utf8(&line).unwrap().trim(), 16).unwrap();
        let mut chunk = vec![0u8; size + 2];
        s.read_exact(&mut chunk).await.unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&chunk[..size]);
    }
}

#[tokio::test]
async fn request_bodies_arrive_byte_for_byte() {
    let backend = body_summary_backend().await;
    let srv = serve(backend).await;
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let sum: u64 = big.iter().map(|&b| u64::from(b)).sum();

    // Declared length (hyper's client sends Content-Length for a full body).
    let mut c = client(srv.http()).await;
    let (s, _, body) = call(&mut c, "POST", "/", big.clone()).await;
    assert_eq!(s, 200);
    assert_eq!(
        String::from_utf8(body.unwrap()).unwrap(),
        format!("{} {sum} length", big.len())
    );
    let (s, _, body) = call(&mut c, "GET", "/", vec![]).await;
    assert_eq!(
        (s, String::from_utf8(body.unwrap()).unwrap()),
        (200, "0 0 none".into())
    );

    // Chunked from the client, in uneven chunks: re-chunked to the backend.
    let mut raw = TcpStream::connect(srv.http()).await.unwrap();
    raw.write_all(b"POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n")
        .await
        .unwrap();
    for piece in big.chunks(70_001) {
        raw.write_all(format!("{:x}\r\n", piece.len()).as_bytes())
            .await
            .unwrap();
        raw.write_all(piece).await.unwrap();
        raw.write_all(b"\r\n").await.unwrap();
    }
    raw.write_all(b"0\r\n\r\n").await.unwrap();
    let head = read_head(&mut raw).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let n: usize = head_value(&head, "content-length")
        .unwrap()
        .parse()
        .unwrap();
    let mut body = vec![0u8; n];
    raw.read_exact(&mut body).await.unwrap();
    assert_eq!(
        String::from_utf8(body).unwrap(),
        format!("{} {sum} chunked", big.len())
    );
}

#[tokio::test]
async fn keep_alive_connections_closed_by_the_backend_are_not_a_client_error() {
    // Answers one request per connection without announcing it, then closes: every pooled
    // connection is stale by the next request (wsgate notices the close before reusing it).
    let (addr, accepts) = raw_backend(|mut s| async move {
        read_head(&mut s).await;
        let _ = s
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            .await;
    })
    .await;
    let srv = serve(addr).await;
    let mut c = client(srv.http()).await;
    for i in 0..20 {
        if i % 2 == 1 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let method = if i % 3 == 0 { "POST" } else { "GET" };
        let payload = if method == "POST" {
            b"data".to_vec()
        } else {
            vec![]
        };
        let (s, _, body) = call(&mut c, method, "/", payload).await;
        assert_eq!(
            (s, body.unwrap()),
            (200, b"ok".to_vec()),
            "request {i} ({method})"
        );
    }
    assert_eq!(accepts.load(Ordering::SeqCst), 20);

    // Closes a kept-alive connection only when the next request arrives on it (its idle timer
    // fired just then): wsgate cannot see that coming and retries the request once.
    let (addr, accepts) = raw_backend(|mut s| async move {
        read_head(&mut s).await;
        let _ = s
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            .await;
        read_head(&mut s).await;
    })
    .await;
    let srv = serve(addr).await;
    let mut c = client(srv.http()).await;
    for i in 0..10 {
        let (s, _, body) = call(&mut c, "GET", "/", vec![]).await;
        assert_eq!((s, body.unwrap()), (200, b"ok".to_vec()), "request {i}");
    }
    assert_eq!(accepts.load(Ordering::SeqCst), 10);
}

#[tokio::test]
async fn bytes_pipelined_with_the_handshake_cross_the_tunnel() {
    let received = Arc::new(std::sync::Mutex::new(Vec::new()));
    let r2 = received.clone();
    let (addr, _) = raw_backend(move |mut s| {
        let received = r2.clone();
        async move {
            let head = read_head(&mut s).await;
            let key = head_value(&head, "sec-websocket-key").unwrap();
            let accept = wsgate::proxy::accept_key(&key);
            // The 101 and a first text frame "early" in one write.
            let mut out = format!(
                "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\
                 sec-websocket-accept: {accept}\r\n\r\n"
            )
            .into_bytes();
            out.extend_from_slice(&[0x81, 5]);
            out.extend_from_slice(b"early");
            s.write_all(&out).await.unwrap();
            record_until_quiet(&mut s, &received, Duration::from_secs(2)).await;
        }
    })
    .await;
    let srv = serve(addr).await;
    let mut s = TcpStream::connect(srv.http()).await.unwrap();
    // The upgrade request and a masked text frame "hello" in one write.
    let mask = [1u8, 2, 3, 4];
    let mut out = upgrade_req("/", "").into_bytes();
    out.extend_from_slice(&[0x81, 0x80 | 5]);
    out.extend_from_slice(&mask);
    out.extend(b"hello".iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    s.write_all(&out).await.unwrap();

    let head = read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let mut frame = [0u8; 7];
    tokio::time::timeout(Duration::from_secs(2), s.read_exact(&mut frame))
        .await
        .expect("the backend's early frame arrives")
        .unwrap();
    assert_eq!(&frame, b"\x81\x05early");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while received.lock().unwrap().len() < 11 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let got = received.lock().unwrap().clone();
    assert_eq!(&got[..2], &[0x81, 0x85], "{got:?}");
    let unmasked: Vec<u8> = got[6..11]
        .iter()
        .enumerate()
        .map(|(i, b)| b ^ got[2 + i % 4])
        .collect();
    assert_eq!(unmasked, b"hello");
}

#[tokio::test]
async fn request_metrics_count_every_request_on_a_keep_alive_connection() {
    let (addr, _) = scripted_backend().await;
    let srv = serve(addr).await;
    let mut c = client(srv.http()).await;
    for path in [
        "/length", "/length", "/missing", "/length", "/empty", "/missing",
    ] {
        assert!(call(&mut c, "GET", path, vec![]).await.2.is_ok(), "{path}");
    }
    assert!(call(&mut c, "HEAD", "/head", vec![]).await.2.is_ok());
    let m = srv.metrics().await;
    let count = |code: &str, method: &str| {
        m.lines()
            .filter(|l| l.starts_with("wsgate_http_requests_total{"))
            .filter(|l| l.contains(&format!("code=\"{code}\"")))
            .filter(|l| l.contains(&format!("method=\"{method}\"")))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
    };
    assert_eq!(count("200", "GET"), 3.0, "{m}");
    assert_eq!(count("404", "GET"), 2.0, "{m}");
    assert_eq!(count("204", "GET"), 1.0, "{m}");
    assert_eq!(count("200", "HEAD"), 1.0, "{m}");
    let observed: f64 = m
        .lines()
        .filter(|l| l.starts_with("wsgate_http_request_duration_seconds_count{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(observed, 7.0, "{m}");
}
