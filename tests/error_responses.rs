//! What wsgate says when it answers itself: request ids (made here, passed to the backend, on
//! every own response), no backend address or OS error text in 502 bodies, duplicate handshake
//! headers named as duplicates, a missing Origin said in words. Real sockets throughout.

mod common;

use common::*;

fn gateway(port: u16, backend_port: u16, firewall: &str) -> String {
    format!(
        "apiVersion: wsgate.dev/v1alpha1\nkind: Gateway\nmetadata: {{name: err, namespace: e}}\nspec:\n  \
         listeners: [{{name: l, port: {port}}}]\n  \
         backendPools: [{{name: p, addresses: [{{host: 127.0.0.1, port: {backend_port}}}]}}]\n  \
         firewall: {firewall}\n  \
         routingRules: [{{name: r, listeners: [l], backendPool: p}}]\n"
    )
}

fn request_id(response: &str) -> Option<String> {
    let head = response.split("\r\n\r\n").next()?;
    head_value(head, "x-request-id")
}

#[tokio::test]
async fn a_failed_backend_is_not_described_to_the_client() {
    // Nothing listens on this port: the connect is refused.
    let dead = free_port();
    let port = free_port();
    let srv = TestServer::start(&[("g.yaml", gateway(port, dead, "{}"))]).await;
    let resp = raw_exchange_full(
        srv.port(port),
        "GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 502"), "{resp}");
    let body = resp.split("\r\n\r\n").nth(1).unwrap_or("");
    assert!(
        !body.contains("127.0.0.1"),
        "no address in the body: {body}"
    );
    assert!(
        !body.contains(&dead.to_string()),
        "no port in the body: {body}"
    );
    assert!(
        !body.to_lowercase().contains("refused"),
        "no OS error: {body}"
    );
    assert!(!body.contains("os error"), "no OS error: {body}");
    let id = request_id(&resp).expect("an X-Request-Id on wsgate's own answer");
    assert_eq!(id.len(), 32);
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
}

#[tokio::test]
async fn request_ids_reach_the_backend_and_clients_cannot_choose_them() {
    let b = http_backend("b").await;
    let port = free_port();
    let srv = TestServer::start(&[("g.yaml", gateway(port, b.addr.port(), "{}"))]).await;
    let resp = raw_exchange_full(
        srv.port(port),
        "GET /x HTTP/1.1\r\nHost: a\r\nX-Request-Id: chosen-by-client\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let seen = b.requests.lock().unwrap().join("");
    let forwarded = seen
        .lines()
        .find_map(|l| l.strip_prefix("x-request-id: "))
        .expect("the backend gets a request id")
        .to_string();
    assert_ne!(forwarded, "chosen-by-client");
    assert_eq!(forwarded.len(), 32);
    assert_eq!(
        seen.matches("x-request-id").count(),
        1,
        "exactly one: {seen}"
    );
}

#[tokio::test]
async fn duplicate_handshake_headers_are_named_as_duplicates() {
    let b = mixed_backend().await;
    let port = free_port();
    let srv = TestServer::start(&[("g.yaml", gateway(port, b.addr.port(), "{}"))]).await;
    let dup_key = upgrade_req(
        "/",
        "Sec-WebSocket-Key: AQIDBAUGBwgJCgsMDQ4PEA==\r\nConnection: close\r\n",
    );
    let resp = raw_exchange_full(srv.port(port), &dup_key).await;
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
    assert!(
        resp.contains("Sec-WebSocket-Key appears more than once"),
        "{resp}"
    );
    let dup_version = upgrade_req("/", "Sec-WebSocket-Version: 13\r\nConnection: close\r\n");
    let resp = raw_exchange_full(srv.port(port), &dup_version).await;
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
    assert!(
        resp.contains("Sec-WebSocket-Version appears more than once"),
        "{resp}"
    );
    assert!(request_id(&resp).is_some());
    assert_eq!(b.sessions.load(std::sync::atomic::Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_missing_origin_is_said_in_words() {
    let b = mixed_backend().await;
    let port = free_port();
    let fw = "{allowedOrigins: ['https://chat.example.com']}";
    let srv = TestServer::start(&[("g.yaml", gateway(port, b.addr.port(), fw))]).await;
    let resp = raw_exchange_full(srv.port(port), &upgrade_req("/", "Connection: close\r\n")).await;
    assert!(resp.starts_with("HTTP/1.1 403"), "{resp}");
    assert!(resp.contains("has no Origin header"), "{resp}");
    let resp = raw_exchange_full(
        srv.port(port),
        &upgrade_req("/", "Origin: https://evil.example\r\nConnection: close\r\n"),
    )
    .await;
    assert!(
        resp.contains("\"https://evil.example\" is not allowed"),
        "{resp}"
    );
}

/// Log lines written by every test of this binary (JSON, one object per line).
fn captured_logs() -> std::sync::Arc<parking_lot::Mutex<Vec<u8>>> {
    use std::sync::{Arc, OnceLock};
    static LOGS: OnceLock<Arc<parking_lot::Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let sink = buf.clone();
        let writer = move || Capture(sink.clone());
        let _ = tracing_subscriber::fmt()
            .json()
            .with_max_level(tracing::Level::INFO)
            .with_writer(writer)
            .try_init();
        buf
    })
    .clone()
}

struct Capture(std::sync::Arc<parking_lot::Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn log_lines_explain_the_failure_and_carry_the_request_id() {
    let logs = captured_logs();
    let dead = free_port();
    let port = free_port();
    let srv = TestServer::start(&[("g.yaml", gateway(port, dead, "{}"))]).await;
    let resp = raw_exchange_full(
        srv.port(port),
        "GET /logged HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    .await;
    let id = request_id(&resp).expect("request id");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let text = String::from_utf8_lossy(&logs.lock()).into_owned();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .filter(|l| l.contains(&id))
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let access = lines
        .iter()
        .find(|l| l["target"] == "wsgate::access")
        .unwrap_or_else(|| panic!("no access line for {id} in {text}"));
    let f = &access["fields"];
    assert_eq!(f["status"], 502);
    assert_eq!(f["reason"], "upstream_failed");
    assert_eq!(f["listener_port"], port);
    assert_eq!(f["listener_protocol"], "http");
    assert_eq!(f["route"], "e/err/r");
    let warning = lines
        .iter()
        .find(|l| l["fields"]["message"] == "backend exchange failed")
        .unwrap_or_else(|| panic!("no warning for {id} in {text}"));
    let cause = warning["fields"]["cause"].as_str().unwrap_or("");
    assert!(!cause.is_empty(), "the warning names the cause: {warning}");
    assert_eq!(warning["level"], "WARN");
}
