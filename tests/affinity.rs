//! The affinity cookie over real sockets: issued once and then followed (plain requests and the
//! WebSocket upgrade, whose 101 carries it), re-pinned when the endpoint leaves the pool or turns
//! unhealthy, tampered values re-pinned without an error, `Secure` on HTTPS, the same values on
//! every replica sharing the key, and the cookie taking precedence over the balancing policy.

mod common;

use common::*;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, SanType};
use rustls_pki_types::ServerName;
use rustls_pki_types::pem::PemObject;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// An HTTP backend whose body is its name; `/healthz` answers 200 or 503 by `healthy`.
struct Named {
    addr: SocketAddr,
    healthy: Arc<AtomicBool>,
}

async fn named(name: &'static str) -> Named {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let healthy = Arc::new(AtomicBool::new(true));
    let h = healthy.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let h = h.clone();
            tokio::spawn(async move {
                loop {
                    let head = read_head(&mut s).await;
                    if head.is_empty() {
                        return;
                    }
                    let (status, body) = if head.starts_with("GET /healthz ") {
                        if h.load(Ordering::SeqCst) {
                            ("200 OK", "ok")
                        } else {
                            ("503 Service Unavailable", "down")
                        }
                    } else {
                        ("200 OK", name)
                    };
                    let reply = format!(
                        "HTTP/1.1 {status}\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if s.write_all(reply.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Named { addr, healthy }
}

/// The reply to one request: status, the backend's name (body) and the Set-Cookie values.
#[derive(Debug)]
struct Reply {
    status: u16,
    body: String,
    set_cookies: Vec<String>,
}

impl Reply {
    fn parse(text: &str) -> Self {
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text, ""));
        Reply {
            status: head
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0),
            body: body.to_string(),
            set_cookies: head
                .lines()
                .filter_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("set-cookie")
                        .then(|| v.trim().to_string())
                })
                .collect(),
        }
    }

    /// The `NAME=VALUE` pair of the single Set-Cookie, ready for a `Cookie` header.
    fn cookie(&self) -> String {
        assert_eq!(self.set_cookies.len(), 1, "one Set-Cookie: {self:?}");
        self.set_cookies[0].split(';').next().unwrap().to_string()
    }
}

fn request(path: &str, cookie: Option<&str>) -> String {
    let cookie = cookie
        .map(|c| format!("Cookie: {c}\r\n"))
        .unwrap_or_default();
    format!("GET {path} HTTP/1.1\r\nHost: app.test\r\n{cookie}Connection: close\r\n\r\n")
}

async fn get(addr: SocketAddr, path: &str, cookie: Option<&str>) -> Reply {
    Reply::parse(&raw_exchange_full(addr, &request(path, cookie)).await)
}

/// Service `t/app` with one EndpointSlice per backend (they listen on different ports).
fn service(addrs: &[SocketAddr]) -> String {
    let mut y = "apiVersion: v1\nkind: Service\nmetadata: {name: app, namespace: t}\nspec:\n  ports: [{name: http, port: 80}]\n---\n".to_string();
    for (i, a) in addrs.iter().enumerate() {
        y.push_str(&format!(
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: app-{i}, namespace: t, labels: {{kubernetes.io/service-name: app}}}}\n\
             addressType: IPv4\nports: [{{name: http, port: {}}}]\nendpoints: [{{addresses: [{}]}}]\n---\n",
            a.port(),
            a.ip()
        ));
    }
    y
}

fn ingress(addrs: &[SocketAddr], extra: &[(&str, &str)]) -> String {
    let mut annotations = vec![("wsgate.dev/affinity", "cookie")];
    annotations.extend_from_slice(extra);
    service(addrs)
        + &ingress_yaml(
            "t",
            "app",
            &annotations,
            &[("app.test", "/app", "Prefix", "app")],
        )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issued_once_then_followed_by_every_request() {
    let (a, b, c) = (named("a").await, named("b").await, named("c").await);
    let srv = TestServer::start(&[("app.yaml", ingress(&[a.addr, b.addr, c.addr], &[]))]).await;
    let addr = srv.http();

    let first = get(addr, "/app/x", None).await;
    assert_eq!(first.status, 200);
    let set = &first.set_cookies;
    assert_eq!(set.len(), 1, "{first:?}");
    let value = set[0].split(';').next().unwrap();
    let token = value
        .strip_prefix("wsgate_affinity=")
        .expect("default name");
    assert_eq!(token.len(), 22, "opaque 128-bit value: {token}");
    assert!(
        !token.contains("127") && !token.contains(&a.addr.port().to_string()),
        "no address in the value"
    );
    assert!(set[0].contains("; Path=/app"), "route path: {}", set[0]);
    assert!(set[0].contains("; SameSite=Lax") && set[0].ends_with("; HttpOnly"));
    assert!(!set[0].contains("Secure") && !set[0].contains("Max-Age"));

    // Round robin alone would spread these over a, b and c.
    let cookie = first.cookie();
    for _ in 0..12 {
        let r = get(addr, "/app/y", Some(&format!("other=1; {cookie}; io=abc"))).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.body, first.body, "followed to the same endpoint");
        assert!(r.set_cookies.is_empty(), "issued once: {r:?}");
    }
    // Without the cookie, balancing goes on as usual and each answer pins its own endpoint.
    let mut seen = std::collections::HashSet::new();
    for _ in 0..3 {
        let r = get(addr, "/app", None).await;
        assert_eq!(r.set_cookies.len(), 1);
        seen.insert(r.body);
    }
    assert_eq!(seen.len(), 3, "round robin still balances new clients");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_cookie_on_the_101_and_the_upgrade_follows_the_cookie() {
    let (e1, e2) = (echo_backend().await, echo_backend().await);
    let srv = TestServer::start(&[("app.yaml", ingress(&[e1.addr, e2.addr], &[]))]).await;
    let addr = srv.http();

    let upgrade =
        |extra: &str| upgrade_req("/app/ws", extra).replace("Host: x\r\n", "Host: app.test\r\n");
    let (status, text) = raw_from("127.0.0.1", addr, &upgrade("")).await;
    assert_eq!(status, 101, "{text}");
    let first = Reply::parse(&text);
    let cookie = first.cookie();
    let pinned = if e1.accepted() == 1 { &e1 } else { &e2 };
    assert_eq!(e1.accepted() + e2.accepted(), 1);

    for i in 0..6 {
        let (status, text) = raw_from(
            "127.0.0.1",
            addr,
            &upgrade(&format!("Cookie: {cookie}\r\n")),
        )
        .await;
        assert_eq!(status, 101, "{text}");
        assert!(Reply::parse(&text).set_cookies.is_empty(), "{text}");
        assert_eq!(pinned.accepted(), i + 2, "upgrade followed the cookie");
    }
    assert_eq!(e1.accepted() + e2.accepted(), 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repinned_when_the_endpoint_leaves_the_pool() {
    let (a, b) = (named("a").await, named("b").await);
    let srv = TestServer::start(&[("app.yaml", ingress(&[a.addr, b.addr], &[]))]).await;
    let addr = srv.http();
    let first = get(addr, "/app", None).await;
    let cookie = first.cookie();
    let (gone, stays) = if first.body == "a" {
        (&a, &b)
    } else {
        (&b, &a)
    };
    let stays_name = if first.body == "a" { "b" } else { "a" };

    srv.write("app.yaml", &ingress(&[stays.addr], &[]));
    let t0 = Instant::now();
    let moved = loop {
        let r = get(addr, "/app", Some(&cookie)).await;
        assert_eq!(r.status, 200, "never an error: {r:?}");
        if r.body == stays_name {
            break r;
        }
        assert!(r.set_cookies.is_empty(), "still pinned before the reload");
        assert!(t0.elapsed() < Duration::from_secs(5), "reload not seen");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let new_cookie = moved.cookie();
    assert_ne!(new_cookie, cookie, "the cookie is replaced");
    for _ in 0..3 {
        let r = get(addr, "/app", Some(&new_cookie)).await;
        assert_eq!(r.body, stays_name);
        assert!(r.set_cookies.is_empty());
    }

    // The endpoint comes back: clients pinned elsewhere stay where they are; the old cookie
    // names it again (values depend only on the key, pool and address).
    srv.write("app.yaml", &ingress(&[a.addr, b.addr], &[]));
    let first_name = first.body.clone();
    let t0 = Instant::now();
    loop {
        let r = get(addr, "/app", Some(&cookie)).await;
        if r.body == first_name && r.set_cookies.is_empty() {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(5), "endpoint not back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = get(addr, "/app", Some(&new_cookie)).await;
    assert_eq!(r.body, stays_name);
    let _ = gone;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repinned_when_the_endpoint_turns_unhealthy() {
    let (a, b) = (named("a").await, named("b").await);
    let port = free_port();
    let gw = gateway_yaml(
        port,
        &[a.addr, b.addr],
        "probe: hc, affinityCookie: {name: pin, maxAge: 1h, sameSite: Strict}",
        "{name: hc, path: /healthz, interval: 100ms, timeout: 1s, unhealthyThreshold: 1, healthyThreshold: 1}",
    );
    let srv = TestServer::start(&[("gw.yaml", gw)]).await;
    let addr = srv.port(port);
    let first = get(addr, "/", None).await;
    let set = &first.set_cookies[0];
    assert!(set.starts_with("pin="), "{set}");
    assert!(
        set.contains("; Path=/; Max-Age=3600; SameSite=Strict; HttpOnly"),
        "{set}"
    );
    let cookie = first.cookie();
    let (sick, other_name) = if first.body == "a" {
        (&a, "b")
    } else {
        (&b, "a")
    };

    sick.healthy.store(false, Ordering::SeqCst);
    let t0 = Instant::now();
    let moved = loop {
        let r = get(addr, "/", Some(&cookie)).await;
        assert_eq!(r.status, 200, "{r:?}");
        if r.body == other_name {
            break r;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "probe verdict not seen"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let new_cookie = moved.cookie();
    assert_ne!(new_cookie, cookie);
    for _ in 0..3 {
        let r = get(addr, "/", Some(&new_cookie)).await;
        assert_eq!(r.body, other_name);
        assert!(r.set_cookies.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_or_foreign_values_are_repinned_without_error() {
    let (a, b) = (named("a").await, named("b").await);
    let srv = TestServer::start(&[("app.yaml", ingress(&[a.addr, b.addr], &[]))]).await;
    let addr = srv.http();
    let good = get(addr, "/app", None).await.cookie();
    let token = good.strip_prefix("wsgate_affinity=").unwrap().to_string();
    let mut flipped = token.clone().into_bytes();
    flipped[3] = if flipped[3] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).unwrap();
    let long = "A".repeat(20_000);
    let bad = [
        format!("wsgate_affinity={flipped}"),
        format!("wsgate_affinity={token}A"),
        format!("wsgate_affinity={}", &token[..21]),
        "wsgate_affinity=".to_string(),
        "wsgate_affinity".to_string(),
        "wsgate_affinity=127.0.0.1:8080".to_string(),
        format!("wsgate_affinity={}", "A".repeat(22)),
        format!("wsgate_affinity={long}"),
        format!("WSGATE_AFFINITY={token}"),
        ";;;=;=".to_string(),
    ];
    for c in &bad {
        let r = get(addr, "/app", Some(c)).await;
        assert_eq!(r.status, 200, "{c:.60}: {r:?}");
        assert_eq!(r.set_cookies.len(), 1, "re-pinned: {c:.60}");
        assert!(r.set_cookies[0].starts_with("wsgate_affinity="));
    }
    // A quoted value is the same value (RFC 6265).
    let r = get(addr, "/app", Some(&format!("wsgate_affinity=\"{token}\""))).await;
    assert!(r.set_cookies.is_empty(), "{r:?}");
    // Non-UTF-8 bytes in the Cookie header.
    let mut raw = b"GET /app HTTP/1.1\r\nHost: app.test\r\nCookie: wsgate_affinity=\xff\xfe\r\nConnection: close\r\n\r\n".to_vec();
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&raw).await.unwrap();
    raw.clear();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut raw)).await;
    let r = Reply::parse(&String::from_utf8_lossy(&raw));
    assert_eq!(r.status, 200);
    assert_eq!(r.set_cookies.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_sharing_the_key_issue_and_follow_the_same_values() {
    let (a, b, c) = (named("a").await, named("b").await, named("c").await);
    let files = [("app.yaml", ingress(&[a.addr, b.addr, c.addr], &[]))];
    let key = |k: &'static [u8]| {
        move |p: &mut wsgate::proxy::ProxySettings| {
            p.affinity_key = wsgate::ir::Redacted(k.to_vec())
        }
    };
    let r1 = TestServer::start_tuned(&files, key(&b"shared secret"[..])).await;
    let r2 = TestServer::start_tuned(&files, key(&b"shared secret"[..])).await;
    let other = TestServer::start_tuned(&files, key(&b"another key"[..])).await;

    // Every replica ends up naming each endpoint with the same value.
    let mut by_replica: Vec<HashMap<String, String>> = Vec::new();
    for srv in [&r1, &r2] {
        let mut names = HashMap::new();
        for _ in 0..3 {
            let r = get(srv.http(), "/app", None).await;
            names.insert(r.body.clone(), r.cookie());
        }
        assert_eq!(names.len(), 3);
        by_replica.push(names);
    }
    assert_eq!(by_replica[0], by_replica[1]);
    // A client pinned by replica 1 is routed the same way by replica 2.
    for (name, cookie) in &by_replica[0] {
        for _ in 0..3 {
            let r = get(r2.http(), "/app", Some(cookie)).await;
            assert_eq!(&r.body, name);
            assert!(r.set_cookies.is_empty());
        }
        // A replica with another key does not know the value: it re-pins.
        let r = get(other.http(), "/app", Some(cookie)).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.set_cookies.len(), 1);
        assert_ne!(&r.cookie(), cookie);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cookie_takes_precedence_over_the_balancing_policy() {
    let (a, b) = (named("a").await, named("b").await);
    let extra = [("wsgate.dev/load-balancing", "hash-header:x-user")];
    let srv = TestServer::start(&[("app.yaml", ingress(&[a.addr, b.addr], &extra))]).await;
    let addr = srv.http();
    let with_user = |user: &str, cookie: Option<&str>| {
        let cookie = cookie
            .map(|c| format!("Cookie: {c}\r\n"))
            .unwrap_or_default();
        format!(
            "GET /app HTTP/1.1\r\nHost: app.test\r\nx-user: {user}\r\n{cookie}Connection: close\r\n\r\n"
        )
    };
    // Users hashed to each endpoint.
    let mut user_of: HashMap<String, (String, String)> = HashMap::new();
    for i in 0..40 {
        let user = format!("u{i}");
        let r = Reply::parse(&raw_exchange_full(addr, &with_user(&user, None)).await);
        user_of.entry(r.body.clone()).or_insert((user, r.cookie()));
    }
    let (user_a, cookie_a) = &user_of["a"];
    let (user_b, _) = &user_of["b"];
    let _ = user_a;
    // The header says b, the cookie says a: the cookie wins, and nothing is re-issued.
    for _ in 0..3 {
        let r = Reply::parse(&raw_exchange_full(addr, &with_user(user_b, Some(cookie_a))).await);
        assert_eq!(r.body, "a");
        assert!(r.set_cookies.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secure_on_https_listeners() {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap();
    let mut leaf = CertificateParams::new(Vec::<String>::new()).unwrap();
    leaf.subject_alt_names = vec![SanType::DnsName("app.test".try_into().unwrap())];
    let key = KeyPair::generate().unwrap();
    let cert = leaf.signed_by(&key, &ca).unwrap();
    let indent = |pem: &str| -> String { pem.lines().map(|l| format!("    {l}\n")).collect() };
    let secret = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: app-tls, namespace: t}}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}---\n",
        indent(&cert.pem()),
        indent(&key.serialize_pem())
    );
    let a = named("a").await;
    let with_tls = ingress(&[a.addr], &[]).replace(
        "spec:\n  ingressClassName: wsgate\n",
        "spec:\n  ingressClassName: wsgate\n  tls: [{hosts: [app.test], secretName: app-tls}]\n",
    );
    let https_port = free_port();
    let srv =
        TestServer::start_ports(&[("app.yaml", with_tls + &secret)], 0, https_port, |_| {}).await;

    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls_pki_types::CertificateDer::from_pem_slice(ca.pem().as_bytes()).unwrap())
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = TcpStream::connect(srv.port(https_port)).await.unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("app.test").unwrap(), tcp)
        .await
        .unwrap();
    tls.write_all(request("/app", None).as_bytes())
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut out)).await;
    let r = Reply::parse(&String::from_utf8_lossy(&out));
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.set_cookies.len(), 1);
    assert!(
        r.set_cookies[0].ends_with("; SameSite=Lax; Secure; HttpOnly"),
        "{:?}",
        r.set_cookies
    );
    // The same route over plain HTTP: no Secure, even when the client claims HTTPS.
    let r = get(srv.http(), "/app", None).await;
    assert!(!r.set_cookies[0].contains("Secure"), "{r:?}");
    let claims_https = "GET /app HTTP/1.1\r\nHost: app.test\r\nX-Forwarded-Proto: https\r\nConnection: close\r\n\r\n";
    let r = Reply::parse(&raw_exchange_full(srv.http(), claims_https).await);
    assert!(!r.set_cookies[0].contains("Secure"), "{r:?}");

    // Behind a trusted proxy that terminated TLS, its X-Forwarded-Proto counts.
    let behind_lb = TestServer::start_tuned(&[("app.yaml", ingress(&[a.addr], &[]))], |p| {
        p.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()]
    })
    .await;
    let r = Reply::parse(&raw_exchange_full(behind_lb.http(), claims_https).await);
    assert!(r.set_cookies[0].contains("; Secure"), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_annotation_no_cookie_is_set() {
    let (a, b) = (named("a").await, named("b").await);
    let plain = service(&[a.addr, b.addr])
        + &ingress_yaml("t", "app", &[], &[("app.test", "/app", "Prefix", "app")]);
    let srv = TestServer::start(&[("app.yaml", plain)]).await;
    let r = get(
        srv.http(),
        "/app",
        Some("wsgate_affinity=AAAAAAAAAAAAAAAAAAAAAA"),
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(r.set_cookies.is_empty(), "{r:?}");
}
