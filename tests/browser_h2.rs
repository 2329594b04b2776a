//! Real browsers through wsgate over HTTP/2: headless Chromium and headless Firefox ESR load a
//! page over `https` from wsgate (ALPN h2) and open `wss://` to the same host, which they send as
//! an RFC 8441 extended CONNECT on the same connection. The page sends a message, gets the echo
//! from a real WebSocket backend, and reports it with a request the backend records; wsgate's own
//! metrics must show an `h2` WebSocket session and no HTTP/1.1 connection.
//!
//! Needs `chromium` and `firefox-esr` + `certutil` (Debian packages): run them with
//! `bash tests/browser/run.sh`, which installs them and runs these tests (they are `#[ignore]`d
//! in the plain `cargo test`).
// Tests time real sockets with the wall clock and share plain std mutexes with their threads;
// the data-path rules of clippy.toml do not apply here.
#![allow(clippy::disallowed_types)]

mod common;

use base64::Engine;
use common::*;
use futures_util::{SinkExt, StreamExt};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
    PublicKeyData,
};
use std::net::SocketAddr;
use std::path::Path;
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

/// wsgate on an HTTPS Gateway listener for `HOST` in front of [`page_backend`], with a test CA.
struct Fixture {
    srv: TestServer,
    /// wsgate's HTTPS listener.
    addr: SocketAddr,
    /// Request lines the backend saw.
    seen: Arc<Mutex<Vec<String>>>,
    /// The CA that signed wsgate's certificate (PEM), for browsers that trust a root.
    ca_pem: String,
    /// base64 SHA-256 of the leaf's SubjectPublicKeyInfo, for browsers that trust a key.
    leaf_spki: String,
}

impl Fixture {
    async fn start() -> Self {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "wsgate browser test CA");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec![HOST.to_string()])
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        let leaf_spki = base64::engine::general_purpose::STANDARD.encode(
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
        Fixture {
            srv,
            addr,
            seen,
            ca_pem: ca.pem(),
            leaf_spki,
        }
    }

    /// The page's URL.
    fn url(&self) -> String {
        format!("https://{HOST}:{}/", self.addr.port())
    }

    /// Waits (90 s at most) for the page's report and returns its request line, or what the
    /// backend saw instead.
    async fn report(&self) -> Result<String, String> {
        let done = async {
            loop {
                if let Some(line) = self
                    .seen
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
        tokio::time::timeout(Duration::from_secs(90), done)
            .await
            .map_err(|_| {
                format!(
                    "the page never reported; backend saw {:?}",
                    self.seen.lock().unwrap()
                )
            })
    }

    /// Asserts the report carried the echo, and that wsgate served everything over HTTP/2 with
    /// the WebSocket as an RFC 8441 stream.
    async fn assert_echo_over_h2(&self, line: &str) {
        assert_eq!(
            line, "GET /done?echo=hello%20from%20the%20browser HTTP/1.1",
            "the browser got the echo"
        );
        let m = self.srv.metrics().await;
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium: bash tests/browser/run.sh"]
async fn chromium_opens_wss_over_http2() {
    let fx = Fixture::start().await;
    let profile = tempfile::tempdir().unwrap();
    // Chromium trusts exactly wsgate's key (the way web-platform-tests run), so the connection
    // is an ordinary trusted one and HTTP/2 behaves as on any valid site.
    let mut chromium = tokio::process::Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            &format!("--user-data-dir={}", profile.path().display()),
            &format!("--host-resolver-rules=MAP {HOST} 127.0.0.1"),
            &format!("--ignore-certificate-errors-spki-list={}", fx.leaf_spki),
            // No `--dump-dom` / `--virtual-time-budget`: with them Chromium exits once its
            // virtual clock runs out, and virtual time does not wait for WebSocket messages, so
            // on a loaded machine it quit before the echo came back. Without them the headless
            // browser stays on the page until the report arrives (90 s at most) and is killed.
            &fx.url(),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("chromium starts (install it with tests/browser/run.sh)");

    let line = fx.report().await;
    let _ = chromium.start_kill();
    let _ = chromium.wait().await;
    fx.assert_echo_over_h2(&line.unwrap_or_else(|e| panic!("{e}")))
        .await;
}

/// Preferences of the throwaway Firefox profile: every name resolves to 127.0.0.1 (so `HOST`
/// reaches wsgate and nothing Firefox would fetch by itself leaves the machine), no proxy, no
/// DNS over HTTPS, and the background services (updates, telemetry, safe browsing, push, remote
/// settings, captive portal checks, first-run pages) off. WebSockets over HTTP/2 are on by
/// default; the pref is set so a changed default shows up here, not as a confusing failure.
const FIREFOX_PREFS: &[(&str, &str)] = &[
    ("network.dns.forceResolve", "\"127.0.0.1\""),
    ("network.dns.localDomains", "\"h2.example\""),
    ("network.proxy.type", "0"),
    ("network.trr.mode", "5"),
    ("network.http.http2.enabled", "true"),
    ("network.http.http2.websockets", "true"),
    ("network.dns.disablePrefetch", "true"),
    ("network.prefetch-next", "false"),
    ("network.predictor.enabled", "false"),
    ("network.captive-portal-service.enabled", "false"),
    ("network.connectivity-service.enabled", "false"),
    ("security.OCSP.enabled", "0"),
    ("security.remote_settings.crlite_filters.enabled", "false"),
    ("security.remote_settings.intermediates.enabled", "false"),
    (
        "services.settings.server",
        "\"data:,#remote-settings-dummy/v1\"",
    ),
    ("app.update.disabledForTesting", "true"),
    ("app.update.auto", "false"),
    ("app.normandy.enabled", "false"),
    ("extensions.update.enabled", "false"),
    ("extensions.getAddons.cache.enabled", "false"),
    ("extensions.systemAddon.update.enabled", "false"),
    ("datareporting.policy.dataSubmissionEnabled", "false"),
    ("datareporting.healthreport.uploadEnabled", "false"),
    ("toolkit.telemetry.enabled", "false"),
    ("toolkit.telemetry.unified", "false"),
    ("toolkit.telemetry.server", "\"\""),
    ("browser.ping-centre.telemetry", "false"),
    ("browser.safebrowsing.malware.enabled", "false"),
    ("browser.safebrowsing.phishing.enabled", "false"),
    ("browser.safebrowsing.downloads.enabled", "false"),
    ("browser.safebrowsing.blockedURIs.enabled", "false"),
    ("browser.region.update.enabled", "false"),
    ("browser.region.network.url", "\"\""),
    ("browser.search.update", "false"),
    ("dom.push.connection.enabled", "false"),
    ("browser.shell.checkDefaultBrowser", "false"),
    ("browser.startup.homepage_override.mstone", "\"ignore\""),
    ("browser.startup.page", "0"),
    ("browser.aboutwelcome.enabled", "false"),
    ("browser.newtabpage.enabled", "false"),
    ("toolkit.startup.max_resumed_crashes", "-1"),
];

/// A fresh Firefox profile in `dir` whose certificate store trusts `ca_pem` for TLS servers.
fn firefox_profile(dir: &Path, ca_pem: &str) {
    let ca = dir.join("test-ca.pem");
    std::fs::write(&ca, ca_pem).unwrap();
    let db = format!("sql:{}", dir.display());
    let certutil = |args: &[&str]| {
        let out = std::process::Command::new("certutil")
            .args(args)
            .output()
            .expect("certutil runs (libnss3-tools; install it with tests/browser/run.sh)");
        assert!(
            out.status.success(),
            "certutil {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    certutil(&["-N", "-d", &db, "--empty-password"]);
    certutil(&[
        "-A",
        "-d",
        &db,
        "-t",
        "C,,",
        "-n",
        "wsgate-test-ca",
        "-i",
        ca.to_str().unwrap(),
    ]);
    let user_js: String = FIREFOX_PREFS
        .iter()
        .map(|(name, value)| format!("user_pref(\"{name}\", {value});\n"))
        .collect();
    std::fs::write(dir.join("user.js"), user_js).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs firefox-esr and certutil: bash tests/browser/run.sh"]
async fn firefox_opens_wss_over_http2() {
    let fx = Fixture::start().await;
    let profile = tempfile::tempdir().unwrap();
    firefox_profile(profile.path(), &fx.ca_pem);

    // Its own process group, so the content processes Firefox forks are stopped with it.
    let mut firefox = tokio::process::Command::new("firefox-esr")
        .args(["--headless", "--no-remote", "--profile"])
        .arg(profile.path())
        .arg(fx.url())
        .env("MOZ_HEADLESS", "1")
        .env("HOME", profile.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(profile.path().join("firefox.err")).unwrap())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .expect("firefox-esr starts (install it with tests/browser/run.sh)");
    let pid = firefox.id().expect("firefox runs");

    let line = fx.report().await;
    let _ = std::process::Command::new("kill")
        .args(["-KILL", "--", &format!("-{pid}")])
        .status();
    let _ = firefox.wait().await;
    let line = line.unwrap_or_else(|e| {
        panic!(
            "{e}; firefox's stderr:\n{}",
            std::fs::read_to_string(profile.path().join("firefox.err")).unwrap_or_default()
        )
    });
    fx.assert_echo_over_h2(&line).await;
}
