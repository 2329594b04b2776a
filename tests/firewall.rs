//! The firewall on every request, including the WebSocket upgrade request, before any backend
//! connection: IP deny/allow, ordered rules, Origin allowlist, per-client rate limit, trusted
//! proxies. Each rejection is counted by reason; the backend's accept counter proves it was never
//! contacted.

mod common;

use common::*;
use std::sync::atomic::Ordering;

fn get(path: &str, extra: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: x\r\n{extra}Connection: close\r\n\r\n")
}

async fn gateway(
    firewall: &str,
    tune: impl FnOnce(&mut wsgate::proxy::ProxySettings),
) -> (TestServer, MixedBackend, std::net::SocketAddr, u16) {
    let b = mixed_backend().await;
    let port = free_port();
    let yaml = format!(
        "apiVersion: wsgate.dev/v1alpha1\nkind: Gateway\nmetadata: {{name: fw, namespace: sec}}\nspec:\n  listeners: [{{name: l, port: {port}}}]\n  \
         backendPools: [{{name: p, addresses: [{{host: 127.0.0.1, port: {}}}]}}]\n  firewall: {firewall}\n  \
         routingRules: [{{name: r, listeners: [l], backendPool: p}}]\n",
        b.addr.port()
    );
    let srv = TestServer::start_tuned(&[("fw.yaml", yaml)], tune).await;
    let addr = srv.port(port);
    (srv, b, addr, port)
}

async fn rejected(srv: &TestServer, reason: &str) -> f64 {
    metric(
        &srv.metrics().await,
        &format!(r#"wsgate_rejected_total{{reason="{reason}",route="sec/fw/r"}}"#),
    )
}

fn backend_contacts(b: &MixedBackend) -> usize {
    b.sessions.load(Ordering::SeqCst)
}

#[tokio::test]
async fn ip_deny_and_allow() {
    let (srv, b, addr, _) =
        gateway("{ipDeny: [127.0.0.3/32], ipAllow: [127.0.0.0/29]}", |_| {}).await;
    assert_eq!(
        raw_from(
            "127.0.0.3",
            addr,
            &upgrade_req("/", "Connection: close\r\n")
        )
        .await
        .0,
        403,
        "denied IP"
    );
    assert_eq!(
        raw_from(
            "127.0.0.9",
            addr,
            &upgrade_req("/", "Connection: close\r\n")
        )
        .await
        .0,
        403,
        "outside the allow list"
    );
    assert_eq!(
        raw_from("127.0.0.9", addr, &get("/", "")).await.0,
        403,
        "plain HTTP too"
    );
    assert_eq!(backend_contacts(&b), 0);
    assert_eq!(rejected(&srv, "firewall").await, 3.0);
    let (status, _) = raw_from("127.0.0.2", addr, &upgrade_req("/", "")).await;
    assert_eq!(status, 101, "allowed client upgrades");
}

#[tokio::test]
async fn ordered_rules_first_match_wins() {
    let rules = "{rules: [\
        {name: ops-allowed, match: {pathPrefix: /admin, header: {name: X-Ops-Token, value: letmein}}, action: Allow}, \
        {name: block-admin, match: {pathPrefix: /admin}, action: Deny}, \
        {name: no-delete, match: {method: DELETE}, action: Deny}, \
        {name: bad-bots, match: {header: {name: User-Agent, regex: '(?i)evilbot/\\d+'}}, action: Deny}]}";
    let (srv, _b, addr, _) = gateway(rules, |_| {}).await;
    assert_eq!(raw_exchange(addr, &get("/admin/users", "")).await.0, 403);
    assert_eq!(
        raw_exchange(addr, &get("/administrator", "")).await.0,
        200,
        "element-wise prefix"
    );
    assert_eq!(
        raw_exchange(addr, &get("/admin", "X-Ops-Token: letmein\r\n"))
            .await
            .0,
        200,
        "Allow matched first"
    );
    assert_eq!(
        raw_exchange(
            addr,
            "DELETE /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .await
        .0,
        403
    );
    assert_eq!(
        raw_exchange(addr, &get("/x", "User-Agent: EvilBot/2.1\r\n"))
            .await
            .0,
        403
    );
    assert_eq!(
        raw_exchange(addr, &get("/x", "User-Agent: curl/8\r\n"))
            .await
            .0,
        200
    );
    assert_eq!(
        raw_exchange_full(addr, &upgrade_req("/admin/ws", "Connection: close\r\n"))
            .await
            .split(' ')
            .nth(1),
        Some("403"),
        "rules apply to upgrades"
    );
    assert_eq!(rejected(&srv, "firewall").await, 4.0);
}

#[tokio::test]
async fn origin_allowlist_guards_websocket_upgrades_only() {
    let (srv, b, addr, _) = gateway("{allowedOrigins: ['https://chat.example.com']}", |_| {}).await;
    let evil = raw_exchange_full(
        addr,
        &upgrade_req("/", "Origin: https://evil.example\r\nConnection: close\r\n"),
    )
    .await;
    assert!(evil.starts_with("HTTP/1.1 403"), "{evil}");
    let missing = raw_exchange_full(addr, &upgrade_req("/", "Connection: close\r\n")).await;
    assert!(
        missing.starts_with("HTTP/1.1 403"),
        "no Origin is not an allowed origin: {missing}"
    );
    assert_eq!(backend_contacts(&b), 0);
    assert_eq!(rejected(&srv, "origin").await, 2.0);
    let (status, _) = raw_from(
        "127.0.0.1",
        addr,
        &upgrade_req("/", "Origin: https://chat.example.com\r\n"),
    )
    .await;
    assert_eq!(status, 101);
    assert_eq!(
        raw_exchange(addr, &get("/page", "Origin: https://evil.example\r\n"))
            .await
            .0,
        200,
        "plain HTTP is not origin-checked"
    );
}

#[tokio::test]
async fn rate_limit_per_client_ip_with_retry_after() {
    let (srv, b, addr, _) = gateway("{rateLimit: {requestsPerSecond: 1, burst: 2}}", |_| {}).await;
    assert_eq!(raw_from("127.0.0.2", addr, &get("/", "")).await.0, 200);
    assert_eq!(raw_from("127.0.0.2", addr, &get("/", "")).await.0, 200);
    let (status, reply) = raw_from(
        "127.0.0.2",
        addr,
        &upgrade_req("/", "Connection: close\r\n"),
    )
    .await;
    assert_eq!(status, 429, "{reply}");
    assert_eq!(head_value(&reply, "retry-after").as_deref(), Some("1"));
    assert_eq!(
        backend_contacts(&b),
        0,
        "the rate-limited upgrade never reached the backend"
    );
    assert_eq!(
        raw_from("127.0.0.3", addr, &get("/", "")).await.0,
        200,
        "another client has its own bucket"
    );
    assert_eq!(rejected(&srv, "rate_limit").await, 1.0);
}

#[tokio::test]
async fn x_forwarded_for_counts_only_from_trusted_proxies() {
    let fw = "{ipDeny: [203.0.113.0/24]}";
    let spoof = get("/", "X-Forwarded-For: 203.0.113.9\r\n");
    let (_srv, _b, addr, _) = gateway(fw, |_| {}).await;
    assert_eq!(
        raw_exchange(addr, &spoof).await.0,
        200,
        "an untrusted peer's X-Forwarded-For is ignored"
    );
    let (_srv2, _b2, addr2, _) = gateway(fw, |p| {
        p.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()]
    })
    .await;
    assert_eq!(
        raw_exchange(addr2, &spoof).await.0,
        403,
        "behind a trusted proxy the forwarded client is judged"
    );
    assert_eq!(
        raw_exchange(addr2, &get("/", "X-Forwarded-For: 198.51.100.7\r\n"))
            .await
            .0,
        200
    );
}

#[tokio::test]
async fn ingress_annotations_configure_the_firewall() {
    let b = mixed_backend().await;
    let yaml = service_yaml("sec", "b", &[b.addr])
        + &ingress_yaml(
            "sec",
            "i",
            &[
                ("wsgate.dev/ip-deny", "127.0.0.3"),
                (
                    "wsgate.dev/allowed-origins",
                    "https://ok.example, not-an-origin",
                ),
                ("wsgate.dev/rate-limit", "100"),
            ],
            &[("", "/", "Prefix", "b")],
        );
    let srv = TestServer::start(&[("i.yaml", yaml)]).await;
    let addr = srv.http();
    assert_eq!(raw_from("127.0.0.3", addr, &get("/", "")).await.0, 403);
    assert_eq!(
        raw_exchange(
            addr,
            &upgrade_req("/", "Origin: https://bad.example\r\nConnection: close\r\n")
        )
        .await
        .0,
        403
    );
    assert_eq!(
        raw_from(
            "127.0.0.1",
            addr,
            &upgrade_req("/", "Origin: https://ok.example\r\n")
        )
        .await
        .0,
        101
    );
    assert_eq!(backend_contacts(&b), 1);
}
