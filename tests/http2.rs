//! HTTP/2 on client connections over real sockets, with the `h2` crate as the client: ALPN
//! choices, plain requests multiplexed on one connection and translated for HTTP/1.1 backends,
//! WebSockets over HTTP/2 (RFC 8441 extended CONNECT) through a real tungstenite backend with
//! every session policy, bad CONNECTs that never reach a backend, the drain (1001 on every
//! stream, then GOAWAY) and the rapid-reset defence.
// Tests time real sockets with the wall clock and share plain std mutexes with their threads;
// the data-path rules of clippy.toml do not apply here.
#![allow(clippy::disallowed_types)]

mod common;

use bytes::Bytes;
use common::*;
use futures_util::{SinkExt, StreamExt};
use h2::client::SendRequest;
use h2::{RecvStream, SendStream};
use http::{Method, Request, StatusCode};
use rustls_pki_types::{CertificateDer, ServerName};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::Role;

const HOST: &str = "h2.example";

/// A self-signed certificate for [`HOST`]: (cert PEM, key PEM, DER for the client's roots).
fn certificate() -> (String, String, CertificateDer<'static>) {
    let generated = rcgen::generate_simple_self_signed(vec![HOST.to_string()]).unwrap();
    (
        generated.cert.pem(),
        generated.signing_key.serialize_pem(),
        generated.cert.der().clone(),
    )
}

fn indent(pem: &str) -> String {
    pem.lines().map(|l| format!("    {l}\n")).collect()
}

/// A Gateway with an HTTP and an HTTPS listener routing everything to `backends` (host `a` and
/// `b` to their own pools when two are given), WebSocket settings and an optional firewall.
fn gateway(
    (http, https): (u16, u16),
    backends: &[SocketAddr],
    websocket: &str,
    firewall: &str,
    (cert, key): (&str, &str),
) -> String {
    let pools: Vec<String> = backends
        .iter()
        .enumerate()
        .map(|(i, a)| {
            format!(
                "{{name: p{i}, addresses: [{{host: 127.0.0.1, port: {}}}]}}",
                a.port()
            )
        })
        .collect();
    let rules = if backends.len() == 2 {
        "[{name: a, listeners: [web, tls-a], backendPool: p0, backendSettings: s}, \
          {name: b, listeners: [web-b], backendPool: p1, backendSettings: s}]"
    } else {
        "[{name: a, listeners: [web, tls-a], backendPool: p0, backendSettings: s}]"
    };
    format!(
        "apiVersion: wsgate.dev/v1alpha1\nkind: Gateway\nmetadata: {{name: h2, namespace: t}}\nspec:\n  listeners:\n    \
         - {{name: web, protocol: HTTP, port: {http}, hostnames: [a.example, {HOST}]}}\n    \
         - {{name: web-b, protocol: HTTP, port: {http}, hostnames: [b.example]}}\n    \
         - {{name: tls-a, protocol: HTTPS, port: {https}, hostnames: [{HOST}], tls: {{secretName: h2-tls}}}}\n  \
         backendPools: [{}]\n  backendSettings: [{{name: s, websocket: {{{websocket}}}}}]\n  \
         firewall: {{{firewall}}}\n  routingRules: {rules}\n---\n\
         apiVersion: v1\nkind: Secret\nmetadata: {{name: h2-tls, namespace: t}}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}---\n",
        pools.join(", "),
        indent(cert),
        indent(key),
    )
}

struct Setup {
    srv: TestServer,
    http: SocketAddr,
    https: SocketAddr,
    roots: CertificateDer<'static>,
}

async fn setup(
    backends: &[SocketAddr],
    websocket: &str,
    firewall: &str,
    tune: impl FnOnce(&mut wsgate::proxy::ProxySettings),
) -> Setup {
    let (cert, key, roots) = certificate();
    let ports = (free_port(), free_port());
    let yaml = gateway(ports, backends, websocket, firewall, (&cert, &key));
    let srv = TestServer::start_tuned(&[("gw.yaml", yaml)], |p| {
        p.http2.cleartext = true;
        tune(p);
    })
    .await;
    Setup {
        http: srv.port(ports.0),
        https: srv.port(ports.1),
        srv,
        roots,
    }
}

/// TLS to `addr` offering `alpn`; returns the stream and the protocol the server chose.
async fn tls(
    addr: SocketAddr,
    roots: &CertificateDer<'static>,
    alpn: &[&[u8]],
) -> (tokio_rustls::client::TlsStream<TcpStream>, Option<Vec<u8>>) {
    let mut store = rustls::RootCertStore::empty();
    store.add(roots.clone()).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(store)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from(HOST).unwrap(), tcp)
        .await
        .expect("TLS handshake");
    let chosen = stream.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    (stream, chosen)
}

/// An HTTP/2 client on `io`; the connection runs in a task whose result the handle reports.
async fn h2_client<T>(
    io: T,
) -> (
    SendRequest<Bytes>,
    tokio::task::JoinHandle<Result<(), h2::Error>>,
)
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (send, conn) = h2::client::handshake(io).await.expect("h2 handshake");
    let task = tokio::spawn(conn);
    let send = send.ready().await.expect("ready");
    (send, task)
}

/// Prior-knowledge HTTP/2 to a cleartext listener.
async fn h2c(
    addr: SocketAddr,
) -> (
    SendRequest<Bytes>,
    tokio::task::JoinHandle<Result<(), h2::Error>>,
) {
    h2_client(TcpStream::connect(addr).await.unwrap()).await
}

/// A GET on the connection: (status, body).
async fn get(
    send: &SendRequest<Bytes>,
    uri: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, String) {
    let mut req = Request::get(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut send = send.clone().ready().await.expect("ready");
    let (resp, _) = send
        .send_request(req.body(()).unwrap(), true)
        .expect("send");
    let resp = tokio::time::timeout(Duration::from_secs(5), resp)
        .await
        .expect("response within 5 s")
        .expect("response");
    let status = resp.status();
    let mut body = resp.into_body();
    let mut out = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.expect("body");
        let _ = body.flow_control().release_capacity(chunk.len());
        out.extend_from_slice(&chunk);
    }
    (status, String::from_utf8_lossy(&out).into_owned())
}

/// Waits until the server's SETTINGS enabled the extended CONNECT protocol.
async fn wait_connect_protocol(send: &SendRequest<Bytes>) {
    for _ in 0..200 {
        if send.is_extended_connect_protocol_enabled() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("SETTINGS_ENABLE_CONNECT_PROTOCOL not received");
}

/// Sends an extended CONNECT; returns the response head and the stream halves.
async fn connect(
    send: &SendRequest<Bytes>,
    uri: &str,
    protocol: Option<&str>,
    headers: &[(&str, &str)],
) -> (http::response::Parts, RecvStream, SendStream<Bytes>) {
    wait_connect_protocol(send).await;
    let mut req = Request::builder().method(Method::CONNECT).uri(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut req = req.body(()).unwrap();
    if let Some(p) = protocol {
        req.extensions_mut().insert(h2::ext::Protocol::from(p));
    }
    let mut send = send.clone().ready().await.expect("ready");
    let (resp, stream) = send.send_request(req, false).expect("send CONNECT");
    let resp = tokio::time::timeout(Duration::from_secs(5), resp)
        .await
        .expect("answer within 5 s")
        .expect("answer");
    let (parts, body) = resp.into_parts();
    (parts, body, stream)
}

/// A stream's DATA frames as a byte stream, for tungstenite.
struct H2Io {
    send: SendStream<Bytes>,
    recv: RecvStream,
    buf: Bytes,
}

impl AsyncRead for H2Io {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        while self.buf.is_empty() {
            match self.recv.poll_data(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Ready(Some(Ok(b))) => {
                    let _ = self.recv.flow_control().release_capacity(b.len());
                    self.buf = b;
                }
                Poll::Ready(Some(Err(e))) => {
                    return Poll::Ready(Err(std::io::Error::other(e)));
                }
            }
        }
        let n = self.buf.len().min(out.remaining());
        out.put_slice(&self.buf.split_to(n));
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for H2Io {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        // h2 queues what the window does not allow yet; tests send little.
        self.send
            .send_data(Bytes::copy_from_slice(buf), false)
            .map_err(std::io::Error::other)?;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let _ = self.send.send_data(Bytes::new(), true);
        Poll::Ready(Ok(()))
    }
}

type H2Ws = WebSocketStream<H2Io>;

/// A WebSocket over HTTP/2 at `path` on host `host`; returns it and the `200`'s head.
async fn ws_over_h2(
    send: &SendRequest<Bytes>,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (H2Ws, http::response::Parts) {
    let mut all = vec![("sec-websocket-version", "13")];
    all.extend_from_slice(headers);
    let (parts, recv, send) = connect(
        send,
        &format!("https://{host}{path}"),
        Some("websocket"),
        &all,
    )
    .await;
    assert_eq!(parts.status, StatusCode::OK, "extended CONNECT accepted");
    let io = H2Io {
        send,
        recv,
        buf: Bytes::new(),
    };
    (
        WebSocketStream::from_raw_socket(io, Role::Client, None).await,
        parts,
    )
}

async fn next_message(ws: &mut H2Ws) -> Message {
    tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("a message within 5 s")
        .expect("stream open")
        .expect("message")
}

async fn roundtrip(ws: &mut H2Ws, msg: Message) {
    ws.send(msg.clone()).await.expect("send");
    assert_eq!(next_message(ws).await, msg);
}

/// Reads messages until a close frame; returns its code, after the client's answer went out
/// (tungstenite sends it on the next poll) and the stream ended.
async fn close_code(ws: &mut H2Ws) -> u16 {
    loop {
        match next_message(ws).await {
            Message::Close(c) => {
                let code = c.map(|c| u16::from(c.code)).unwrap_or(1005);
                let rest = tokio::time::timeout(Duration::from_secs(5), async {
                    while let Some(Ok(_)) = ws.next().await {}
                });
                rest.await
                    .expect("the stream ends after the close handshake");
                return code;
            }
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

/// Waits until a series has exactly `want`.
async fn wait_for(srv: &TestServer, series: &str, want: f64) {
    for _ in 0..100 {
        if metric(&srv.metrics().await, series) == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{series} did not reach {want}:\n{}", srv.metrics().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alpn_offers_h2_first_and_http11_still() {
    let backend = http_backend("one").await;
    let s = setup(&[backend.addr], "", "", |_| {}).await;

    let (stream, chosen) = tls(s.https, &s.roots, &[b"h2", b"http/1.1"]).await;
    assert_eq!(
        chosen.as_deref(),
        Some(&b"h2"[..]),
        "h2 chosen when offered"
    );
    let (send, _conn) = h2_client(stream).await;
    let (status, body) = get(&send, &format!("https://{HOST}/over-tls"), &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.starts_with("one\nGET /over-tls\n"), "{body}");
    assert!(body.contains(&format!("host: {HOST}\n")), "{body}");
    assert!(body.contains("x-forwarded-proto: https\n"), "{body}");

    let (mut stream, chosen) = tls(s.https, &s.roots, &[b"http/1.1"]).await;
    assert_eq!(chosen.as_deref(), Some(&b"http/1.1"[..]));
    stream
        .write_all(
            format!("GET /h1 HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).await.unwrap_or_default();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    let (_, chosen) = tls(s.https, &s.roots, &[]).await;
    assert_eq!(chosen, None, "no ALPN offered, none chosen: HTTP/1.1");

    let m = s.srv.metrics().await;
    assert_eq!(
        metric(&m, "wsgate_client_connections_total{protocol=\"h2\"}"),
        1.0,
        "{m}"
    );
    assert_eq!(
        metric(&m, "wsgate_client_requests_total{protocol=\"h2\"}"),
        1.0,
        "{m}"
    );
    assert!(
        metric(&m, "wsgate_client_requests_total{protocol=\"http1\"}") >= 1.0,
        "{m}"
    );

    // --http2=false: only http/1.1 is offered.
    let off = setup(&[backend.addr], "", "", |p| p.http2.enabled = false).await;
    let (_, chosen) = tls(off.https, &off.roots, &[b"h2", b"http/1.1"]).await;
    assert_eq!(chosen.as_deref(), Some(&b"http/1.1"[..]), "h2 off");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_requests_multiplex_and_reach_http11_backends_translated() {
    let (one, two) = (http_backend("one").await, http_backend("two").await);
    let s = setup(&[one.addr, two.addr], "", "", |_| {}).await;
    let (send, _conn) = h2c(s.http).await;

    let mut tasks = Vec::new();
    for i in 0..20 {
        let send = send.clone();
        tasks.push(tokio::spawn(async move {
            let host = if i % 2 == 0 { "a.example" } else { "b.example" };
            let (status, body) = get(
                &send,
                &format!("http://{host}/item/{i}?q=1"),
                &[("cookie", "a=1"), ("cookie", "b=2"), ("te", "trailers")],
            )
            .await;
            (i, host, status, body)
        }));
    }
    for t in tasks {
        let (i, host, status, body) = t.await.unwrap();
        assert_eq!(status, StatusCode::OK);
        let name = if host == "a.example" { "one" } else { "two" };
        assert!(
            body.starts_with(&format!("{name}\nGET /item/{i}?q=1\n")),
            "{body}"
        );
        assert!(
            body.contains(&format!("host: {host}\n")),
            ":authority -> Host: {body}"
        );
        assert!(
            body.contains("cookie: a=1; b=2\n"),
            "cookies joined: {body}"
        );
        assert!(!body.contains("\nte:"), "te not forwarded: {body}");
        assert!(body.contains("x-forwarded-proto: http\n"), "{body}");
    }
    assert!(one.accepts.load(std::sync::atomic::Ordering::SeqCst) >= 1);
    assert!(two.accepts.load(std::sync::atomic::Ordering::SeqCst) >= 1);
    assert_eq!(
        one.requests.lock().unwrap().len() + two.requests.lock().unwrap().len(),
        20
    );

    // A Host that names another host than :authority is refused, before any backend.
    let before = one.requests.lock().unwrap().len();
    let (status, body) = get(&send, "http://a.example/x", &[("host", "b.example")]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("does not match :authority"), "{body}");
    assert_eq!(one.requests.lock().unwrap().len(), before);
    // The connection goes on.
    assert_eq!(
        get(&send, "http://a.example/after", &[]).await.0,
        StatusCode::OK
    );

    // HTTP/1.1 on the same cleartext listener still works (the preface decides).
    let (status, body) = http_get(s.http, "a.example", "/h1").await;
    assert_eq!(status, 200, "{body}");

    let m = s.srv.metrics().await;
    assert_eq!(
        metric(&m, "wsgate_client_connections_total{protocol=\"h2\"}"),
        1.0,
        "{m}"
    );
    assert_eq!(
        metric(&m, "wsgate_client_requests_total{protocol=\"h2\"}"),
        22.0,
        "{m}"
    );
    assert_eq!(
        metric(&m, "wsgate_client_connections_total{protocol=\"http1\"}"),
        1.0,
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_over_h2_echoes_through_a_real_backend() {
    let backend = echo_backend().await;
    let s = setup(&[backend.addr], "", "", |_| {}).await;
    let (stream, _) = tls(s.https, &s.roots, &[b"h2"]).await;
    let (send, _conn) = h2_client(stream).await;

    let (mut ws, head) = ws_over_h2(
        &send,
        HOST,
        "/chat",
        &[
            ("sec-websocket-protocol", "chat, superchat"),
            ("origin", "https://h2.example"),
        ],
    )
    .await;
    assert_eq!(
        head.headers["sec-websocket-protocol"], "chat",
        "subprotocol passed through"
    );
    assert!(!head.headers.contains_key("sec-websocket-accept"));
    roundtrip(&mut ws, Message::text("hello over h2")).await;
    roundtrip(&mut ws, Message::binary(vec![0u8, 1, 2, 255])).await;
    ws.send(Message::Ping(Bytes::from_static(b"are you there")))
        .await
        .unwrap();
    assert_eq!(
        next_message(&mut ws).await,
        Message::Pong(Bytes::from_static(b"are you there"))
    );
    // The backend closes with 4001: the code reaches the client.
    ws.send(Message::text("close:4001")).await.unwrap();
    assert_eq!(close_code(&mut ws).await, 4001);
    assert_eq!(backend.accepted(), 1);

    wait_for(
        &s.srv,
        "wsgate_websocket_sessions_total{close_reason=\"backend\",route=\"t/h2/a\"}",
        1.0,
    )
    .await;
    let m = s.srv.metrics().await;
    assert_eq!(
        metric(
            &m,
            "wsgate_websocket_sessions_opened_total{protocol=\"h2\"}"
        ),
        1.0,
        "{m}"
    );
    assert!(
        m.contains("wsgate_http_requests_total{code=\"200\",method=\"CONNECT\""),
        "{m}"
    );
    // The connection is still usable.
    let (mut again, _) = ws_over_h2(&send, HOST, "/chat", &[]).await;
    roundtrip(&mut again, Message::text("again")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_websockets_and_a_request_share_one_connection() {
    let backend = mixed_backend().await;
    let s = setup(&[backend.addr], "", "", |_| {}).await;
    let (send, _conn) = h2c(s.http).await;

    let (mut first, _) = ws_over_h2(&send, "a.example", "/one", &[]).await;
    let (mut second, _) = ws_over_h2(&send, "a.example", "/two", &[]).await;
    tokio::join!(
        roundtrip(&mut first, Message::text("first")),
        roundtrip(&mut second, Message::text("second"))
    );
    // A plain request between them, to the same backend.
    let (status, body) = get(&send, "http://a.example/plain", &[]).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ok"));
    assert_eq!(backend.open.load(std::sync::atomic::Ordering::SeqCst), 2);
    // Closing one leaves the other open.
    first.close(None).await.unwrap();
    assert_eq!(close_code(&mut first).await, 1005);
    roundtrip(&mut second, Message::text("still here")).await;
    wait_for(
        &s.srv,
        "wsgate_websocket_sessions_active{route=\"t/h2/a\"}",
        1.0,
    )
    .await;
    second.close(None).await.unwrap();
    assert_eq!(close_code(&mut second).await, 1005);
    wait_for(
        &s.srv,
        "wsgate_websocket_sessions_active{route=\"t/h2/a\"}",
        0.0,
    )
    .await;
    assert_eq!(
        backend.sessions.load(std::sync::atomic::Ordering::SeqCst),
        2
    );
    let m = s.srv.metrics().await;
    assert_eq!(
        metric(
            &m,
            "wsgate_websocket_sessions_opened_total{protocol=\"h2\"}"
        ),
        2.0,
        "{m}"
    );
    assert_eq!(
        metric(&m, "wsgate_client_connections_total{protocol=\"h2\"}"),
        1.0,
        "{m}"
    );
}

/// `:protocol`, header fields, the status wsgate must answer.
type BadConnect<'a> = (Option<&'a str>, &'a [(&'a str, &'a str)], StatusCode);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_connects_never_reach_the_backend() {
    let backend = echo_backend().await;
    let s = setup(
        &[backend.addr],
        "",
        "allowedOrigins: [\"https://good.example\"]",
        |_| {},
    )
    .await;
    let (send, _conn) = h2c(s.http).await;
    wait_connect_protocol(&send).await;
    let uri = "https://a.example/chat";
    let good = ("origin", "https://good.example");
    let v13 = ("sec-websocket-version", "13");
    let cases: [BadConnect; 6] = [
        (
            Some("connect-udp"),
            &[v13, good],
            StatusCode::NOT_IMPLEMENTED,
        ),
        (
            Some("websocket"),
            &[("sec-websocket-version", "8"), good],
            StatusCode::UPGRADE_REQUIRED,
        ),
        (Some("websocket"), &[good], StatusCode::BAD_REQUEST),
        (
            Some("websocket"),
            &[v13, v13, good],
            StatusCode::BAD_REQUEST,
        ),
        (
            Some("websocket"),
            &[v13, ("origin", "https://evil.example")],
            StatusCode::FORBIDDEN,
        ),
        (
            Some("websocket"),
            &[v13, good, ("host", "b.example")],
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (protocol, headers, want) in cases {
        let (parts, _, _) = connect(&send, uri, protocol, headers).await;
        assert_eq!(parts.status, want, "{protocol:?} {headers:?}");
    }
    // A CONNECT without :protocol asks for a forward proxy, which wsgate is not.
    let (parts, _, _) = connect(&send, "a.example:443", None, &[]).await;
    assert_eq!(parts.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(backend.accepted(), 0, "no bad CONNECT reached the backend");

    // The same connection then opens a good one.
    let (mut ws, _) = ws_over_h2(
        &send,
        "a.example",
        "/chat",
        &[("origin", "https://good.example")],
    )
    .await;
    roundtrip(&mut ws, Message::text("fine")).await;
    assert_eq!(backend.accepted(), 1);
    let m = s.srv.metrics().await;
    assert_eq!(
        metric(
            &m,
            "wsgate_rejected_total{reason=\"origin\",route=\"t/h2/a\"}"
        ),
        1.0,
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "wsgate_rejected_total{reason=\"bad_handshake\",route=\"t/h2/a\"}"
        ),
        3.0,
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_message_bytes_is_enforced_on_h2_sessions() {
    let backend = echo_backend().await;
    let s = setup(&[backend.addr], "maxMessageBytes: 1000", "", |_| {}).await;
    let (send, _conn) = h2c(s.http).await;
    let (mut ws, _) = ws_over_h2(&send, "a.example", "/big", &[]).await;
    roundtrip(&mut ws, Message::binary(vec![7u8; 900])).await;
    ws.send(Message::binary(vec![7u8; 4000])).await.unwrap();
    assert_eq!(close_code(&mut ws).await, 1009);
    wait_for(
        &s.srv,
        "wsgate_websocket_sessions_total{close_reason=\"message_too_big\",route=\"t/h2/a\"}",
        1.0,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_closes_h2_sessions_with_1001_then_goaway() {
    let backend = echo_backend().await;
    let s = setup(&[backend.addr], "", "", |_| {}).await;
    let (send, conn) = h2c(s.http).await;
    let (mut one, _) = ws_over_h2(&send, "a.example", "/one", &[]).await;
    let (mut two, _) = ws_over_h2(&send, "a.example", "/two", &[]).await;
    roundtrip(&mut one, Message::text("before")).await;

    let proxy = s.srv.server.proxy().clone();
    let drain = tokio::spawn(async move { proxy.drain(Duration::from_secs(10)).await });
    assert_eq!(close_code(&mut one).await, 1001);
    assert_eq!(close_code(&mut two).await, 1001);
    drop((one, two));
    // GOAWAY: the client connection ends and no new stream can start on it.
    let ended = tokio::time::timeout(Duration::from_secs(8), conn)
        .await
        .expect("the h2 connection ends after the drain");
    assert!(ended.is_ok(), "connection task");
    let refused = get_result(&send, "http://a.example/late").await;
    assert!(refused.is_err(), "a stream after GOAWAY is refused");
    tokio::time::timeout(Duration::from_secs(8), drain)
        .await
        .expect("drain finishes")
        .unwrap();
    let m = s.srv.metrics().await;
    assert_eq!(
        metric(
            &m,
            "wsgate_websocket_sessions_total{close_reason=\"shutdown\",route=\"t/h2/a\"}"
        ),
        2.0,
        "{m}"
    );
}

async fn get_result(send: &SendRequest<Bytes>, uri: &str) -> Result<StatusCode, h2::Error> {
    let mut send = send.clone().ready().await?;
    let (resp, _) = send.send_request(Request::get(uri).body(()).unwrap(), true)?;
    Ok(resp.await?.status())
}

/// One HTTP/2 frame: 9-byte header and payload.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rapid_reset_gets_goaway_and_others_are_served() {
    let backend = http_backend("one").await;
    let s = setup(&[backend.addr], "", "", |_| {}).await;

    let mut tcp = TcpStream::connect(s.http).await.unwrap();
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(frame(0x4, 0, 0, &[])); // SETTINGS
    // HPACK: :method GET, :scheme http, :path /, :authority a.example (literal, not indexed).
    let mut block = vec![0x82, 0x86, 0x84, 0x01, 9];
    block.extend_from_slice(b"a.example");
    for i in 0..1000u32 {
        let id = 2 * i + 1;
        out.extend(frame(0x1, 0x4 | 0x1, id, &block)); // HEADERS, END_HEADERS | END_STREAM
        out.extend(frame(0x3, 0, id, &8u32.to_be_bytes())); // RST_STREAM CANCEL
    }
    // The server may stop reading once it sent GOAWAY: a failed write is an answer too.
    let _ = tcp.write_all(&out).await;
    let mut seen = Vec::new();
    let mut buf = [0u8; 16384];
    let goaway = loop {
        match tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break find_goaway(&seen),
            Ok(Ok(n)) => {
                seen.extend_from_slice(&buf[..n]);
                if let Some(code) = find_goaway(&seen) {
                    break Some(code);
                }
            }
            Err(_) => panic!("neither GOAWAY nor close within 5 s"),
        }
    };
    // ENHANCE_YOUR_CALM (0xb).
    assert_eq!(goaway, Some(0xb), "GOAWAY with ENHANCE_YOUR_CALM");
    assert!(
        backend.requests.lock().unwrap().len() < 1000,
        "the burst was cut short"
    );
    // wsgate still serves everyone else.
    let (send, _conn) = h2c(s.http).await;
    assert_eq!(
        get(&send, "http://a.example/ok", &[]).await.0,
        StatusCode::OK
    );
    assert_eq!(http_get(s.http, "a.example", "/ok").await.0, 200);
}

/// The error code of the first GOAWAY frame in a server's byte stream.
fn find_goaway(bytes: &[u8]) -> Option<u32> {
    let mut at = 0;
    while at + 9 <= bytes.len() {
        let len = u32::from_be_bytes([0, bytes[at], bytes[at + 1], bytes[at + 2]]) as usize;
        if at + 9 + len > bytes.len() {
            return None;
        }
        if bytes[at + 3] == 0x7 && len >= 8 {
            let p = &bytes[at + 9..];
            return Some(u32::from_be_bytes([p[4], p[5], p[6], p[7]]));
        }
        at += 9 + len;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_h2_connection_is_closed_after_the_header_timeout() {
    let backend = http_backend("one").await;
    let s = setup(&[backend.addr], "", "", |p| {
        p.header_timeout = Duration::from_millis(500)
    })
    .await;
    let mut tcp = TcpStream::connect(s.http).await.unwrap();
    tcp.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    tcp.write_all(&frame(0x4, 0, 0, &[])).await.unwrap();
    let mut seen = Vec::new();
    let started = std::time::Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
            Err(_) => panic!("a connection without requests stays open"),
        }
    }
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "not before the timeout"
    );
    assert!(!seen.is_empty(), "the server's SETTINGS came first");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_logs_the_protocol_and_sigterm_closes_h2_sessions_then_goaway() {
    use std::process::Stdio;
    let backend = echo_backend().await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = service_yaml("d", "e", &[backend.addr])
        + &ingress_yaml("d", "i", &[], &[("", "/", "Prefix", "e")]);
    std::fs::write(dir.path().join("d.yaml"), yaml).unwrap();
    let (http, admin) = (free_port(), free_port());
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_wsgate"))
        .args(["run", "--config", dir.path().to_str().unwrap()])
        .args(["--bind", "127.0.0.1", "--http-port", &http.to_string()])
        .args(["--admin-port", &admin.to_string(), "--shutdown-drain", "6s"])
        .args(["--http2-cleartext", "--http2-max-concurrent-streams=16"])
        .args(["--log-format", "json", "--log-level", "info"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let http_addr: SocketAddr = format!("127.0.0.1:{http}").parse().unwrap();
    let admin_addr: SocketAddr = format!("127.0.0.1:{admin}").parse().unwrap();
    let t0 = std::time::Instant::now();
    while TcpStream::connect(admin_addr).await.is_err()
        || http_get(admin_addr, "x", "/readyz").await.0 != 200
    {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "wsgate did not become ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let (send, conn) = h2c(http_addr).await;
    let (mut sessions, mut heads) = (Vec::new(), Vec::new());
    for path in ["/a", "/b", "/c"] {
        let (ws, head) = ws_over_h2(&send, "x.example", path, &[]).await;
        sessions.push(ws);
        heads.push(head);
    }
    // The server's SETTINGS arrived before the first extended CONNECT could go out.
    assert_eq!(
        send.current_max_send_streams(),
        16,
        "SETTINGS_MAX_CONCURRENT_STREAMS"
    );
    for ws in sessions.iter_mut() {
        roundtrip(ws, Message::text("before the drain")).await;
    }

    let pid = child.id().expect("running").to_string();
    let killed = tokio::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status();
    assert!(killed.await.unwrap().success());
    for ws in sessions.iter_mut() {
        assert_eq!(close_code(ws).await, 1001, "every h2 session gets 1001");
    }
    drop(sessions);
    let ended = tokio::time::timeout(Duration::from_secs(8), conn).await;
    assert!(
        matches!(ended, Ok(Ok(_))),
        "GOAWAY ends the connection: {ended:?}"
    );
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("exits within the drain")
        .unwrap();
    assert!(status.success(), "{status}");

    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .await
        .unwrap();
    let lines: Vec<serde_json::Value> = out
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let of = |target: &str| -> Vec<&serde_json::Value> {
        lines.iter().filter(|l| l["target"] == target).collect()
    };
    let access = of("wsgate::access");
    assert_eq!(access.len(), 3, "{out}");
    for l in &access {
        assert_eq!(l["client_protocol"], "h2", "{l}");
        assert_eq!(l["method"], "CONNECT", "{l}");
        assert_eq!(l["status"], 200, "{l}");
    }
    let closed = of("wsgate::session");
    assert_eq!(closed.len(), 3, "{out}");
    for l in &closed {
        assert_eq!(l["client_protocol"], "h2", "{l}");
        assert_eq!(l["close_reason"], "shutdown", "{l}");
    }
}
