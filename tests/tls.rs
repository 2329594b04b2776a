//! TLS over real sockets with a CA generated in the test: wss through HTTPS listeners with SNI
//! certificate selection, rotation with an open session, Ingress spec.tls, a missing Secret that
//! does not take other hosts down, wss to a TLS backend with verification (wrong CA -> 502), and a
//! Gateway API BackendTLSPolicy (its hostname as SNI and verified name, its CA, 500 when it cannot
//! be honoured).
// Tests time real sockets with the wall clock and share plain std mutexes with their threads;
// the data-path rules of clippy.toml do not apply here.
#![allow(clippy::disallowed_types)]

mod common;

use common::*;
use futures_util::{SinkExt, StreamExt};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
    SanType,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl TestCa {
    fn new(name: &str) -> Self {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        Self {
            issuer: CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap(),
        }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A leaf certificate for DNS names and/or IP addresses: (cert PEM, key PEM).
    fn leaf(&self, names: &[&str]) -> (String, String) {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.subject_alt_names = names
            .iter()
            .map(|n| match n.parse() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName((*n).try_into().unwrap()),
            })
            .collect();
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn client_config(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(self.pem().as_bytes()).unwrap())
            .unwrap();
        Arc::new(
            rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
        )
    }
}

fn indent(pem: &str) -> String {
    pem.lines().map(|l| format!("    {l}\n")).collect()
}

fn tls_secret(ns: &str, name: &str, (cert, key): &(String, String)) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: {ns}}}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}---\n",
        indent(cert),
        indent(key)
    )
}

fn ca_secret(ns: &str, name: &str, ca_pem: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: {ns}}}\nstringData:\n  ca.crt: |\n{}---\n",
        indent(ca_pem)
    )
}

/// TLS to `addr` with SNI `name`; returns the stream and the DER of the certificate served.
async fn tls_connect(
    addr: SocketAddr,
    name: &str,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<(tokio_rustls::client::TlsStream<TcpStream>, Vec<u8>)> {
    let tcp = TcpStream::connect(addr).await?;
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(ServerName::try_from(name.to_string()).unwrap(), tcp)
        .await?;
    let served = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    Ok((tls, served))
}

fn der(pem: &str) -> Vec<u8> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .to_vec()
}

async fn wss(
    addr: SocketAddr,
    host: &str,
    config: Arc<rustls::ClientConfig>,
) -> (
    tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<TcpStream>>,
    Vec<u8>,
) {
    let (tls, served) = tls_connect(addr, host, config)
        .await
        .expect("TLS handshake");
    let (ws, resp) = tokio_tungstenite::client_async(format!("wss://{host}/ws"), tls)
        .await
        .expect("wss upgrade");
    assert_eq!(resp.status(), 101);
    (ws, served)
}

fn https_gateway(port: u16, backend: SocketAddr) -> String {
    format!(
        "apiVersion: wsgate.dev/v1alpha1\nkind: Gateway\nmetadata: {{name: secure, namespace: t}}\nspec:\n  listeners:\n    \
         - {{name: a, protocol: HTTPS, port: {port}, hostnames: [a.example.com], tls: {{secretName: a-tls}}}}\n    \
         - {{name: b, protocol: HTTPS, port: {port}, hostnames: [b.example.com], tls: {{secretName: b-tls}}}}\n  \
         backendPools: [{{name: echo, addresses: [{{host: 127.0.0.1, port: {}}}]}}]\n  \
         routingRules: [{{name: ws, listeners: [a, b], backendPool: echo}}]\n---\n",
        backend.port()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_with_sni_selection_and_rotation_keeping_open_sessions() {
    let ca = TestCa::new("wsgate test CA");
    let echo = echo_backend().await;
    let port = free_port();
    let (a1, b1) = (ca.leaf(&["a.example.com"]), ca.leaf(&["b.example.com"]));
    let config = |a: &(String, String)| {
        https_gateway(port, echo.addr)
            + &tls_secret("t", "a-tls", a)
            + &tls_secret("t", "b-tls", &b1)
    };
    let srv = TestServer::start(&[("tls.yaml", config(&a1))]).await;
    let addr = srv.port(port);

    let (mut ws_a, served_a) = wss(addr, "a.example.com", ca.client_config()).await;
    assert_eq!(
        served_a,
        der(&a1.0),
        "SNI a.example.com gets a's certificate"
    );
    echo_roundtrip(&mut ws_a, "over wss").await;
    let (mut ws_b, served_b) = wss(addr, "b.example.com", ca.client_config()).await;
    assert_eq!(
        served_b,
        der(&b1.0),
        "SNI b.example.com gets b's certificate"
    );
    echo_roundtrip(&mut ws_b, "b too").await;
    assert!(
        tls_connect(addr, "unknown.example.com", ca.client_config())
            .await
            .is_err(),
        "an unknown SNI gets the self-signed default certificate, which the CA does not sign"
    );

    // Rotate a's certificate while ws_a stays open.
    let a2 = ca.leaf(&["a.example.com"]);
    srv.write("tls.yaml", &config(&a2));
    let t0 = Instant::now();
    loop {
        let (_, served) = tls_connect(addr, "a.example.com", ca.client_config())
            .await
            .unwrap();
        if served == der(&a2.0) {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(2),
            "rotated certificate not served within 2 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    echo_roundtrip(
        &mut ws_a,
        "the session opened with the old certificate survives",
    )
    .await;
    ws_a.close(None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_secret_does_not_take_other_hosts_down() {
    let ca = TestCa::new("ca");
    let echo = echo_backend().await;
    let port = free_port();
    // b-tls is missing: b.example.com gets the default certificate, a.example.com is unaffected.
    let yaml =
        https_gateway(port, echo.addr) + &tls_secret("t", "a-tls", &ca.leaf(&["a.example.com"]));
    let report = wsgate::check::check(
        &{
            let d = tempfile::tempdir().unwrap();
            std::fs::write(d.path().join("x.yaml"), &yaml).unwrap();
            d.keep()
        },
        &wsgate::translate::Options::default(),
    );
    let text = wsgate::check::render(&report);
    assert!(
        text.contains("spec.listeners[1].tls.secretName: Secret t/b-tls not found"),
        "{text}"
    );
    assert!(
        !report.has_errors(),
        "a missing Secret is a warning, like a missing Service"
    );
    let srv = TestServer::start(&[("tls.yaml", yaml)]).await;
    let (mut ws, _) = wss(srv.port(port), "a.example.com", ca.client_config()).await;
    echo_roundtrip(&mut ws, "a still works").await;
    assert!(
        tls_connect(srv.port(port), "b.example.com", ca.client_config())
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingress_tls_hosts_are_served_on_the_https_port() {
    let ca = TestCa::new("ca");
    let web = http_backend("web").await;
    let https = free_port();
    let yaml = service_yaml("t", "web", &[web.addr])
        + &tls_secret("t", "secure-tls", &ca.leaf(&["secure.example.com"]))
        + "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: secure, namespace: t}\nspec:\n  ingressClassName: wsgate\n  \
           tls: [{hosts: [secure.example.com], secretName: secure-tls}]\n  rules:\n  - host: secure.example.com\n    http:\n      paths:\n      \
           - {path: /, pathType: Prefix, backend: {service: {name: web, port: {name: http}}}}\n  - host: plain.example.com\n    http:\n      paths:\n      \
           - {path: /, pathType: Prefix, backend: {service: {name: web, port: {name: http}}}}\n---\n";
    let srv = TestServer::start_ports(&[("i.yaml", yaml)], 0, https, |_| {}).await;
    let (mut tls, _) = tls_connect(srv.port(https), "secure.example.com", ca.client_config())
        .await
        .unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    tls.write_all(b"GET /x HTTP/1.1\r\nHost: secure.example.com\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    tls.read_to_end(&mut out).await.unwrap();
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.contains("x-forwarded-proto: https"), "{out}");
    assert_eq!(
        http_get(srv.http(), "secure.example.com", "/").await.0,
        200,
        "also served on plain HTTP"
    );
    let (status, _) = {
        let (mut t, _) = tls_connect(srv.port(https), "secure.example.com", ca.client_config())
            .await
            .unwrap();
        t.write_all(b"GET / HTTP/1.1\r\nHost: plain.example.com\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut o = Vec::new();
        t.read_to_end(&mut o).await.unwrap();
        let o = String::from_utf8_lossy(&o).into_owned();
        (o.split(' ').nth(1).unwrap_or("").to_string(), o)
    };
    assert_eq!(
        status, "404",
        "a host outside spec.tls is not routed on the HTTPS port"
    );
}

/// A wss echo backend with a certificate for 127.0.0.1 signed by `ca`.
async fn tls_echo_backend(ca: &TestCa) -> SocketAddr {
    tls_echo_backend_for(ca, &["127.0.0.1"]).await
}

/// A wss echo backend with a certificate for `names` signed by `ca`.
async fn tls_echo_backend_for(ca: &TestCa, names: &[&str]) -> SocketAddr {
    let (cert, key) = ca.leaf(names);
    let certs = vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()];
    let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(s).await else {
                    return;
                };
                let Ok(mut ws) = tokio_tungstenite::accept_async(tls).await else {
                    return;
                };
                while let Some(Ok(m)) = ws.next().await {
                    if m.is_text()
                        && ws
                            .send(Message::text(format!(
                                "tls backend: {}",
                                m.to_text().unwrap()
                            )))
                            .await
                            .is_err()
                    {
                        break;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_to_a_verified_tls_backend_and_wrong_ca_is_502() {
    let ca = TestCa::new("backend CA");
    let other = TestCa::new("some other CA");
    let backend = tls_echo_backend(&ca).await;
    let port = free_port();
    let gw = |ca_secret_name: &str| {
        format!(
            "apiVersion: wsgate.dev/v1alpha1\nkind: Gateway\nmetadata: {{name: up, namespace: t}}\nspec:\n  listeners: [{{name: l, port: {port}}}]\n  \
             backendPools: [{{name: p, addresses: [{{host: 127.0.0.1, port: {}}}]}}]\n  \
             backendSettings: [{{name: s, protocol: HTTPS, caSecretName: {ca_secret_name}}}]\n  \
             routingRules: [{{name: r, listeners: [l], backendPool: p, backendSettings: s}}]\n---\n",
            backend.port()
        )
    };
    let secrets = ca_secret("t", "right-ca", &ca.pem()) + &ca_secret("t", "wrong-ca", &other.pem());
    let srv = TestServer::start(&[("up.yaml", gw("right-ca") + &secrets)]).await;
    let mut ws = ws_connect(&format!("ws://{}/", srv.port(port))).await;
    ws.send(Message::text("hi")).await.unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(reply, Message::text("tls backend: hi"));

    srv.write("up.yaml", &(gw("wrong-ca") + &secrets));
    let t0 = Instant::now();
    loop {
        let (_, reply) = raw_from(
            "127.0.0.1",
            srv.port(port),
            &upgrade_req("/", "Connection: close\r\n"),
        )
        .await;
        if reply.starts_with("HTTP/1.1 502") {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(2),
            "verification against the wrong CA must fail: {reply}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    echo_roundtrip_tls_ok(&mut ws).await;
}

/// The session opened before the CA change keeps working.
async fn echo_roundtrip_tls_ok<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    ws.send(Message::text("still")).await.unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(reply, Message::text("tls backend: still"));
}

fn config_map_ca(ns: &str, name: &str, ca_pem: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}, namespace: {ns}}}\ndata:\n  ca.crt: |\n{}---\n",
        indent(ca_pem)
    )
}

/// A Gateway API route to Service `apps/secure` (endpoints: `backend`) and a BackendTLSPolicy
/// on it with `validation`.
fn backend_tls_setup(port: u16, backend: SocketAddr, validation: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {{name: wsgate}}\nspec: {{controllerName: wsgate.dev/gateway-controller}}\n---\n\
         apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: gw, namespace: apps}}\nspec:\n  gatewayClassName: wsgate\n  listeners: [{{name: web, port: {port}, protocol: HTTP}}]\n---\n\
         apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: r, namespace: apps}}\nspec:\n  parentRefs: [{{name: gw}}]\n  rules: [{{backendRefs: [{{name: secure, port: 80}}]}}]\n---\n\
         apiVersion: gateway.networking.k8s.io/v1\nkind: BackendTLSPolicy\nmetadata: {{name: secure-tls, namespace: apps}}\nspec:\n  targetRefs: [{{group: \"\", kind: Service, name: secure}}]\n  validation: {validation}\n---\n{}",
        service_yaml("apps", "secure", &[backend])
    )
}

/// The status line of a WebSocket upgrade to `addr`.
async fn upgrade_status(addr: SocketAddr) -> String {
    let (_, reply) = raw_from(
        "127.0.0.1",
        addr,
        &upgrade_req("/", "Connection: close\r\n"),
    )
    .await;
    reply.lines().next().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_tls_policy_sets_sni_and_ca_and_fails_closed() {
    let ca = TestCa::new("backend CA");
    // The certificate names only the policy's hostname: connecting by the endpoint address
    // (what wsgate does without the policy) could not verify it.
    let backend = tls_echo_backend_for(&ca, &["secure.apps.test"]).await;
    let port = free_port();
    let cm = config_map_ca("apps", "backend-ca", &ca.pem());
    let good = "{caCertificateRefs: [{group: \"\", kind: ConfigMap, name: backend-ca}], hostname: secure.apps.test}";
    let srv = TestServer::start(&[("gw.yaml", backend_tls_setup(port, backend, good) + &cm)]).await;
    let mut ws = ws_connect(&format!("ws://{}/", srv.port(port))).await;
    ws.send(Message::text("hi")).await.unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(reply, Message::text("tls backend: hi"));

    // Another hostname: the certificate does not match -> 502, never a plaintext retry.
    let wrong = "{caCertificateRefs: [{name: backend-ca}], hostname: other.apps.test}";
    srv.write("gw.yaml", &(backend_tls_setup(port, backend, wrong) + &cm));
    wait_for_status(srv.port(port), "HTTP/1.1 502").await;

    // The public roots do not know this CA -> 502.
    let system = "{wellKnownCACertificates: System, hostname: secure.apps.test}";
    srv.write("gw.yaml", &(backend_tls_setup(port, backend, system) + &cm));
    wait_for_status(srv.port(port), "HTTP/1.1 502").await;

    // A CA reference that does not resolve: the policy cannot be honoured -> 500.
    let missing = "{caCertificateRefs: [{name: nope}], hostname: secure.apps.test}";
    srv.write(
        "gw.yaml",
        &(backend_tls_setup(port, backend, missing) + &cm),
    );
    wait_for_status(srv.port(port), "HTTP/1.1 500").await;
    let report = wsgate::check::check(srv.dir.path(), &wsgate::translate::Options::default());
    let text = wsgate::check::render(&report);
    assert!(
        text.contains("BackendTLSPolicy apps/secure-tls: spec.validation.caCertificateRefs[0]: ConfigMap apps/nope not found"),
        "{text}"
    );

    // Back to the good policy: served again; the session opened first was never touched.
    srv.write("gw.yaml", &(backend_tls_setup(port, backend, good) + &cm));
    wait_for_status(srv.port(port), "HTTP/1.1 101").await;
    echo_roundtrip_tls_ok(&mut ws).await;
}

/// Polls upgrades until one answers `status` (a reload takes effect within a second or two).
async fn wait_for_status(addr: SocketAddr, status: &str) {
    let t0 = Instant::now();
    loop {
        let line = upgrade_status(addr).await;
        if line.starts_with(status) {
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "expected {status}, still {line}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
