//! Test support: an in-process wsgate on ephemeral ports, real backends, raw sockets.
// Tests time real sockets with the wall clock and share plain std mutexes with their threads;
// the data-path rules of clippy.toml do not apply here.
#![allow(clippy::disallowed_types)]
#![allow(dead_code, clippy::result_large_err, clippy::collapsible_match)]

use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use wsgate::app::{RunConfig, Server};
use wsgate::metrics::Metrics;
use wsgate::proxy::ProxySettings;
use wsgate::translate::Options;

/// A port that was free a moment ago (for Gateway listeners, which need fixed ports).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// wsgate serving a temporary config directory.
pub struct TestServer {
    pub server: Server,
    pub dir: tempfile::TempDir,
    pub http_port: u16,
}

impl TestServer {
    /// Starts wsgate with `files` (name, YAML) in a fresh directory; Ingress port is `http_port`.
    pub async fn start_on(http_port: u16, files: &[(&str, String)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        let cfg = RunConfig {
            options: Options {
                http_port,
                ..Options::default()
            },
            proxy: ProxySettings {
                bind: "127.0.0.1".parse().unwrap(),
                ..ProxySettings::default()
            },
            admin_port: 0,
            shutdown_drain: Duration::from_secs(5),
        };
        let server = Server::start(dir.path().to_path_buf(), cfg, Metrics::new())
            .await
            .expect("server starts");
        Self {
            server,
            dir,
            http_port,
        }
    }

    /// Like [`TestServer::start_on`] with proxy settings adjusted by `tune`.
    pub async fn start_tuned(
        files: &[(&str, String)],
        tune: impl FnOnce(&mut ProxySettings),
    ) -> Self {
        Self::start_ports(files, 0, 8443, tune).await
    }

    /// Starts with explicit Ingress HTTP and HTTPS ports.
    pub async fn start_ports(
        files: &[(&str, String)],
        http_port: u16,
        https_port: u16,
        tune: impl FnOnce(&mut ProxySettings),
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        let mut proxy = ProxySettings {
            bind: "127.0.0.1".parse().unwrap(),
            ..ProxySettings::default()
        };
        tune(&mut proxy);
        let cfg = RunConfig {
            options: Options {
                http_port,
                https_port,
                ..Options::default()
            },
            proxy,
            admin_port: 0,
            shutdown_drain: Duration::from_secs(5),
        };
        let server = Server::start(dir.path().to_path_buf(), cfg, Metrics::new())
            .await
            .expect("server starts");
        Self {
            server,
            dir,
            http_port,
        }
    }

    /// Starts with the Ingress listener on an ephemeral port.
    pub async fn start(files: &[(&str, String)]) -> Self {
        Self::start_on(0, files).await
    }

    /// Address of the Ingress listener.
    pub fn http(&self) -> SocketAddr {
        self.server
            .listener_addr(self.http_port)
            .expect("http listener bound")
    }

    /// Address bound for a Gateway listener port.
    pub fn port(&self, port: u16) -> SocketAddr {
        self.server.listener_addr(port).expect("listener bound")
    }

    /// Replaces a config file atomically (write + rename), as editors and ConfigMap updates do.
    pub fn write(&self, name: &str, text: &str) {
        let tmp: PathBuf = self.dir.path().join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, self.dir.path().join(name)).unwrap();
    }

    /// The /metrics text.
    pub async fn metrics(&self) -> String {
        http_get(self.server.admin_addr(), "127.0.0.1", "/metrics")
            .await
            .1
    }
}

/// Reads one metric sample's value by its exact series text, e.g. `wsgate_x{a="b"}`; 0 if absent.
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.trim().parse().ok())
        })
        .unwrap_or(0.0)
}

/// A minimal HTTP/1.1 GET over a fresh connection; returns (status, body).
pub async fn http_get(addr: SocketAddr, host: &str, path: &str) -> (u16, String) {
    raw_exchange(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
    )
    .await
}

/// Sends raw request bytes and reads until the server closes; returns (status, body).
pub async fn raw_exchange(addr: SocketAddr, request: &str) -> (u16, String) {
    let text = raw_exchange_full(addr, request).await;
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// Sends raw request bytes and returns everything read until close (or 5 s).
pub async fn raw_exchange_full(addr: SocketAddr, request: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// A real WebSocket echo backend (tokio-tungstenite) counting accepted TCP connections.
/// Text `close:CODE` makes it close with that code; it picks the first offered subprotocol.
pub struct EchoBackend {
    pub addr: SocketAddr,
    pub accepts: Arc<AtomicUsize>,
    /// Close codes received from clients.
    pub received_closes: Arc<std::sync::Mutex<Vec<u16>>>,
}

impl EchoBackend {
    pub fn accepted(&self) -> usize {
        self.accepts.load(Ordering::SeqCst)
    }
}

pub async fn echo_backend() -> EchoBackend {
    echo_backend_on("127.0.0.1:0").await
}

pub async fn echo_backend_on(addr: &str) -> EchoBackend {
    let listener = TcpListener::bind(addr).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepts = Arc::new(AtomicUsize::new(0));
    let received_closes = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (a, rc) = (accepts.clone(), received_closes.clone());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            a.fetch_add(1, Ordering::SeqCst);
            let rc = rc.clone();
            tokio::spawn(async move {
                let pick = |req: &Request, mut resp: Response| {
                    if let Some(p) = req
                        .headers()
                        .get("sec-websocket-protocol")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.split(',').next())
                    {
                        resp.headers_mut()
                            .insert("sec-websocket-protocol", p.trim().parse().unwrap());
                    }
                    Ok(resp)
                };
                let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, pick).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    match msg {
                        Message::Text(t) if t.starts_with("close:") => {
                            let code: u16 = t[6..].parse().unwrap_or(1000);
                            let frame = CloseFrame {
                                code: CloseCode::from(code),
                                reason: "bye".into(),
                            };
                            let _ = ws.close(Some(frame)).await;
                        }
                        Message::Text(_) | Message::Binary(_) => {
                            if ws.send(msg).await.is_err() {
                                break;
                            }
                        }
                        Message::Close(c) => {
                            rc.lock()
                                .unwrap()
                                .push(c.map(|c| u16::from(c.code)).unwrap_or(1005));
                        }
                        _ => {}
                    }
                }
            });
        }
    });
    EchoBackend {
        addr,
        accepts,
        received_closes,
    }
}

/// An HTTP backend answering every request with `200 <name>` plus the request line and headers it
/// saw (lower-cased), counting accepted connections and requests.
pub struct HttpBackend {
    pub addr: SocketAddr,
    pub accepts: Arc<AtomicUsize>,
    pub requests: Arc<std::sync::Mutex<Vec<String>>>,
}

pub async fn http_backend(name: &'static str) -> HttpBackend {
    use http_body_util::Full;
    use hyper::service::service_fn;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepts = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (a, r) = (accepts.clone(), requests.clone());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            a.fetch_add(1, Ordering::SeqCst);
            let r = r.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let mut seen = format!("{} {}\n", req.method(), req.uri());
                    for (k, v) in req.headers() {
                        seen.push_str(&format!("{k}: {}\n", v.to_str().unwrap_or("?")));
                    }
                    r.lock().unwrap().push(seen.clone());
                    async move {
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                            bytes::Bytes::from(format!("{name}\n{seen}")),
                        )))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    HttpBackend {
        addr,
        accepts,
        requests,
    }
}

/// A raw TCP backend that runs `script` on every accepted connection, counting accepts.
pub async fn raw_backend<F, Fut>(script: F) -> (SocketAddr, Arc<AtomicUsize>)
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepts = Arc::new(AtomicUsize::new(0));
    let a = accepts.clone();
    let script = Arc::new(script);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            a.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(script(stream));
        }
    });
    (addr, accepts)
}

/// Reads an HTTP head (up to the blank line) from a stream.
pub async fn read_head(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte).await {
            Ok(1) => buf.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// Appends everything read from `s` to `into` until EOF or `quiet` without a byte.
pub async fn record_until_quiet(
    s: &mut TcpStream,
    into: &std::sync::Mutex<Vec<u8>>,
    quiet: Duration,
) {
    let mut buf = [0u8; 4096];
    while let Ok(Ok(n)) = tokio::time::timeout(quiet, s.read(&mut buf)).await {
        if n == 0 {
            break;
        }
        into.lock().unwrap().extend_from_slice(&buf[..n]);
    }
}

/// Value of a header in a raw HTTP head (case-insensitive name).
pub fn head_value(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

/// YAML for a Service + EndpointSlice pointing at `addrs` (all sharing one port).
pub fn service_yaml(ns: &str, name: &str, addrs: &[SocketAddr]) -> String {
    let port = addrs.first().map(|a| a.port()).unwrap_or(1);
    let ips: Vec<String> = addrs.iter().map(|a| a.ip().to_string()).collect();
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  ports: [{{name: http, port: 80}}]\n---\n\
         apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}-x\n  namespace: {ns}\n  labels: {{kubernetes.io/service-name: {name}}}\n\
         addressType: IPv4\nports: [{{name: http, port: {port}}}]\nendpoints:\n  - addresses: [{}]\n---\n",
        ips.join(", ")
    )
}

/// YAML for an Ingress with (host, path, pathType, service) rules, using port name `http`.
pub fn ingress_yaml(
    ns: &str,
    name: &str,
    annotations: &[(&str, &str)],
    rules: &[(&str, &str, &str, &str)],
) -> String {
    let mut out = format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {name}\n  namespace: {ns}\n"
    );
    if !annotations.is_empty() {
        out.push_str("  annotations:\n");
        for (k, v) in annotations {
            out.push_str(&format!("    {k}: \"{v}\"\n"));
        }
    }
    out.push_str("spec:\n  ingressClassName: wsgate\n  rules:\n");
    for (host, path, kind, svc) in rules {
        out.push_str(&format!(
            "  - host: \"{host}\"\n    http:\n      paths:\n      - path: {path}\n        pathType: {kind}\n        backend: {{service: {{name: {svc}, port: {{name: http}}}}}}\n"
        ));
    }
    out.push_str("---\n");
    out
}

/// Connects a WebSocket client through wsgate.
pub async fn ws_connect(
    url: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>> {
    let (ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("websocket connects");
    ws
}

/// Sends a text and expects the same text back within 5 s.
pub async fn echo_roundtrip<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>, text: &str)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    ws.send(Message::text(text)).await.expect("send");
    let got = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("echo within 5s")
        .expect("stream open")
        .expect("message");
    assert_eq!(got, Message::text(text));
}

/// A backend serving WebSocket echo and plain HTTP (`/healthz` answers 200 or 500 by `healthy`),
/// counting WebSocket sessions it accepted and holds open.
pub struct MixedBackend {
    pub addr: SocketAddr,
    pub healthy: Arc<std::sync::atomic::AtomicBool>,
    pub sessions: Arc<AtomicUsize>,
    pub open: Arc<AtomicUsize>,
}

pub async fn mixed_backend() -> MixedBackend {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let healthy = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sessions = Arc::new(AtomicUsize::new(0));
    let open = Arc::new(AtomicUsize::new(0));
    let (h, s, o) = (healthy.clone(), sessions.clone(), open.clone());
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let (h, s, o) = (h.clone(), s.clone(), o.clone());
            tokio::spawn(async move {
                let mut peek = [0u8; 2048];
                let n = stream.peek(&mut peek).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&peek[..n]).to_ascii_lowercase();
                if head.contains("upgrade: websocket") {
                    let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                        return;
                    };
                    s.fetch_add(1, Ordering::SeqCst);
                    o.fetch_add(1, Ordering::SeqCst);
                    while let Some(Ok(msg)) = ws.next().await {
                        if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                            break;
                        }
                    }
                    o.fetch_sub(1, Ordering::SeqCst);
                } else {
                    let _ = read_head(&mut stream).await;
                    let status = if h.load(Ordering::SeqCst) {
                        "200 OK"
                    } else {
                        "500 Internal Server Error"
                    };
                    let _ = stream
                        .write_all(format!("HTTP/1.1 {status}\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok").as_bytes())
                        .await;
                }
            });
        }
    });
    MixedBackend {
        addr,
        healthy,
        sessions,
        open,
    }
}

/// A Gateway on `port` routing `/` to static `addrs` with the given backendSettings body (YAML
/// flow mapping entries, e.g. `loadBalancing: {policy: LeastConnections}`) and optional probes.
pub fn gateway_yaml(port: u16, addrs: &[SocketAddr], settings: &str, probes: &str) -> String {
    let list: Vec<String> = addrs
        .iter()
        .map(|a| format!("{{host: {}, port: {}}}", a.ip(), a.port()))
        .collect();
    format!(
        "apiVersion: wsgate.dev/v1alpha1\nkind: Gateway\nmetadata: {{name: gw, namespace: lb}}\nspec:\n  listeners: [{{name: l, port: {port}}}]\n  \
         backendPools: [{{name: pool, addresses: [{}]}}]\n  backendSettings: [{{name: s, {settings}}}]\n  probes: [{probes}]\n  \
         routingRules: [{{name: r, listeners: [l], backendPool: pool, backendSettings: s}}]\n",
        list.join(", ")
    )
}

/// A TCP connection to `addr` from source address `from` (e.g. 127.0.0.3), to act as another client.
pub async fn connect_from(from: &str, addr: SocketAddr) -> TcpStream {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(format!("{from}:0").parse().unwrap()).unwrap();
    sock.connect(addr).await.unwrap()
}

/// Sends a raw request from source address `from`; returns (status, whole reply).
pub async fn raw_from(from: &str, addr: SocketAddr, request: &str) -> (u16, String) {
    let mut s = connect_from(from, addr).await;
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let mut chunk = [0u8; 4096];
    // Until close, or until a 101 head is complete (the connection then stays open).
    while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk)).await {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&chunk[..n]);
        if out.starts_with(b"HTTP/1.1 101") && out.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let text = String::from_utf8_lossy(&out).into_owned();
    (
        text.split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
        text,
    )
}

/// A WebSocket upgrade request (Connection: close after the reply), with extra header lines.
pub fn upgrade_req(path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}
