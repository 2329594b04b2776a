//! A real browser through wsgate over HTTP/2: headless Chromium loads a page over `https` from
//! wsgate (ALPN h2) and opens `wss://` to the same host, which Chromium sends as an RFC 8441
//! extended CONNECT on the same connection. The page sends a message, gets the echo from a real
//! WebSocket backend, and reports it with a request the backend records; wsgate's own metrics
//! must show an `h2` WebSocket session and no HTTP/1.1 connection.
//!
//! Needs `chromium` (Debian package): run it with `bash tests/browser/run.sh`, which installs it
//! and runs this test (it is `#[ignore]`d in the plain `cargo test`).
// Tests time real sockets with the wall clock and share plain std mutexes with their threads;
// the data-path rules of clippy.toml do not apply here.
#![allow(clippy::disallowed_types)]

mod common;

use base64::Engine;
use common::*;
use futures_util::{SinkExt, StreamExt};
use rcgen::PublicKeyData;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

const HOST: &str = "h2.example";

const PAGE: &str = r#"<!doctype html>
<html><head><title>pending</title></head><body><script>
const ws = new WebSocket("wss://" + location.host + "/ws");
ws.onopen = () => ws.send("hello from the browser");
ws.onmessage = (e) => {
  fetch("/done?echo=" + encodeURIComponent(e.data)).finally(() => ws.close(1000));
};
ws.onerror = () => fetch("/done?error=1");
</script></body></html>"#;

/// A backend serving the page at `/`, a WebSocket echo at `/ws` and recording request lines.
async fn page_backend() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let record = record.clone();
            tokio::spawn(async move {
                let mut peek = [0u8; 4096];
                let n = stream.peek(&mut peek).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&peek[..n]).to_string();
                record
                    .lock()
                    .unwrap()
                    .push(head.lines().next().unwrap_or("").to_string());
                if head.to_ascii_lowercase().contains("upgrade: websocket") {
                    let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                        return;
                    };
                    while let Some(Ok(msg)) = ws.next().await {
                        if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                            break;
                        }
                    }
                    return;
                }
                let _ = read_head(&mut stream).await;
                let body = if head.starts_with("GET / ") {
                    PAGE
                } else {
                    "ok"
                };
                let _ = stream
                    .write_all(
                        format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                            body.len()
                        )
                        .as_bytes(),
                    )
                    .await;
            });
        }
    });
    (addr, seen)
}

fn indent(pem: &str) -> String {
    pem.lines().map(|l| format!("    {l}\n")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium: bash tests/browser/run.sh"]
async fn chromium_opens_wss_over_http2() {
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec![HOST.to_string()]).unwrap();
    let cert = params.self_signed(&key).unwrap();
    // Chromium trusts exactly this key (the way web-platform-tests run), so the connection is
    // an ordinary trusted one and HTTP/2 behaves as on any valid site.
    let spki = base64::engine::general_purpose::STANDARD.encode(
        ring::digest::digest(&ring::digest::SHA256, &key.subject_public_key_info()).as_ref(),
    );

    let (backend, seen) = page_backend().await;
    let port = free_port();
    let yaml = format!(
        "apiVersion: wsgate.dev/v1alpha1\nkind: Gateway\nmetadata: {{name: b, namespace: t}}\nspec:\n  listeners:\n    \
         - {{name: tls, protocol: HTTPS, port: {port}, hostnames: [{HOST}], tls: {{secretName: b-tls}}}}\n  \
         backendPools: [{{name: p, addresses: [{{host: 127.0.0.1, port: {}}}]}}]\n  \
         routingRules: [{{name: r, listeners: [tls], backendPool: p}}]\n---\n\
         apiVersion: v1\nkind: Secret\nmetadata: {{name: b-tls, namespace: t}}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}---\n",
        backend.port(),
        indent(&cert.pem()),
        indent(&key.serialize_pem()),
    );
    let srv = TestServer::start(&[("b.yaml", yaml)]).await;
    let addr = srv.port(port);
    let profile = tempfile::tempdir().unwrap();

    let mut chromium = tokio::process::Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            &format!("--user-data-dir={}", profile.path().display()),
            &format!("--host-resolver-rules=MAP {HOST} 127.0.0.1"),
            &format!("--ignore-certificate-errors-spki-list={spki}"),
            "--virtual-time-budget=10000",
            "--dump-dom",
            &format!("https://{HOST}:{}/", addr.port()),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("chromium starts (install it with tests/browser/run.sh)");

    let done = async {
        loop {
            if let Some(line) = seen
                .lock()
                .unwrap()
                .iter()
                .find(|l| l.starts_with("GET /done"))
            {
                return line.clone();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let line = tokio::time::timeout(Duration::from_secs(90), done)
        .await
        .unwrap_or_else(|_| {
            panic!(
                "the page never reported; backend saw {:?}",
                seen.lock().unwrap()
            )
        });
    let _ = chromium.start_kill();
    let _ = chromium.wait().await;
    assert_eq!(
        line, "GET /done?echo=hello%20from%20the%20browser HTTP/1.1",
        "the browser got the echo"
    );

    let m = srv.metrics().await;
    assert_eq!(
        metric(
            &m,
            "wsgate_websocket_sessions_opened_total{protocol=\"h2\"}"
        ),
        1.0,
        "the WebSocket went over HTTP/2 (RFC 8441):\n{m}"
    );
    assert_eq!(
        metric(
            &m,
            "wsgate_websocket_sessions_opened_total{protocol=\"http1\"}"
        ),
        0.0,
        "{m}"
    );
    assert_eq!(
        metric(&m, "wsgate_client_connections_total{protocol=\"http1\"}"),
        0.0,
        "no HTTP/1.1 connection:\n{m}"
    );
    assert!(
        metric(&m, "wsgate_client_requests_total{protocol=\"h2\"}") >= 3.0,
        "page, WebSocket and report over h2:\n{m}"
    );
}
