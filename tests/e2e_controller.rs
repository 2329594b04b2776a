//! Controller mode end to end: the built `wsgate` binary against a real kube-apiserver, with only
//! the RBAC the Helm chart renders. Run by `e2e/run.sh` (inside `e2e/netns.sh`, so that backends on
//! 198.18.0.x can be EndpointSlice addresses); without `WSGATE_E2E_KUBE_DIR` every test is skipped.
//!
//! Run one at a time (`--test-threads=1`): the last test stops and restarts the API server.
// Tests time real sockets with the wall clock and share plain std mutexes with their threads;
// the data-path rules of clippy.toml do not apply here.
#![allow(clippy::disallowed_types)]

use futures_util::{SinkExt, StreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const LEASE_NAMESPACE: &str = "wsgate-system";
const CONTROLLER_USER: &str = "wsgate-controller";
const CONTROLLER: &str = "wsgate.dev/ingress-controller";

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

// ------------------------------------------------------------------------------------ environment

struct Env {
    dir: PathBuf,
    admin: Client,
}

/// The API server started by e2e/run.sh, with CRDs and the chart's RBAC applied; `None` = skip.
async fn env() -> Option<Env> {
    let Ok(dir) = std::env::var("WSGATE_E2E_KUBE_DIR") else {
        eprintln!("skipped: WSGATE_E2E_KUBE_DIR is not set (run e2e/run.sh)");
        return None;
    };
    let dir = PathBuf::from(dir);
    let admin = client_for(&dir.join("kubeconfig")).await;
    apply_crds_and_rbac(&admin).await;
    Some(Env { dir, admin })
}

async fn client_for(kubeconfig: &Path) -> Client {
    let kc = Kubeconfig::read_from(kubeconfig).expect("kubeconfig readable");
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("kubeconfig valid");
    Client::try_from(config).expect("client")
}

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn yaml_docs(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).expect("readable YAML");
    serde_yaml::Deserializer::from_str(&text)
        .filter_map(|d| {
            let v: serde_yaml::Value = serde::Deserialize::deserialize(d).expect("valid YAML");
            (!v.is_null()).then(|| serde_json::to_value(v).expect("YAML as JSON"))
        })
        .collect()
}

fn typed<K: DeserializeOwned>(v: Value) -> K {
    serde_json::from_value(v).expect("object of the expected kind")
}

/// Creates `obj`; an existing object of that name is replaced by it (so reruns are idempotent).
async fn create_or_replace<K>(api: &Api<K>, obj: &K)
where
    K: Resource + Clone + serde::Serialize + DeserializeOwned + std::fmt::Debug,
{
    match api.create(&PostParams::default(), obj).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.is_already_exists() => {
            let name = obj.meta().name.clone().expect("named");
            let current = api.get(&name).await.expect("existing object");
            let mut next = obj.clone();
            next.meta_mut().resource_version = current.meta().resource_version.clone();
            api.replace(&name, &PostParams::default(), &next)
                .await
                .expect("replace");
        }
        Err(e) => panic!("create {:?}: {e}", obj.meta().name),
    }
}

/// `crds/`, the Gateway API CRDs, plus the Namespace, ClusterRole and Role of manifests/install.yaml (the chart rendered
/// with defaults), bound to the controller's user only.
async fn apply_crds_and_rbac(admin: &Client) {
    let crds = &Api::<CustomResourceDefinition>::all(admin.clone());
    // wsgate's own CRDs, and the Gateway API's (standard channel, vendored in the chart).
    for dir in ["crds", "charts/wsgate/gateway-api-crds"] {
        for entry in std::fs::read_dir(repo(dir)).expect("CRD directory") {
            let path = entry.expect("entry").path();
            for doc in yaml_docs(&path) {
                create_or_replace(crds, &typed::<CustomResourceDefinition>(doc)).await;
            }
        }
    }
    eventually(
        "the HTTPRoute CRD is established",
        Duration::from_secs(30),
        || async move {
            let crd = crds
                .get("httproutes.gateway.networking.k8s.io")
                .await
                .ok()?;
            crd.status?
                .conditions?
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
                .then_some(())
        },
    )
    .await;
    eventually(
        "the Gateway CRD is established",
        Duration::from_secs(30),
        || async move {
            let crd = crds.get("gateways.wsgate.dev").await.ok()?;
            crd.status?
                .conditions?
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
                .then_some(())
        },
    )
    .await;

    let mut cluster_role = None;
    let mut role = None;
    for doc in yaml_docs(&repo("manifests/install.yaml")) {
        match doc["kind"].as_str() {
            Some("Namespace") => {
                create_or_replace(&Api::<Namespace>::all(admin.clone()), &typed(doc)).await
            }
            Some("ClusterRole") => cluster_role = Some(typed::<ClusterRole>(doc)),
            Some("Role") => role = Some(typed::<Role>(doc)),
            _ => {}
        }
    }
    let cluster_role = cluster_role.expect("install.yaml has a ClusterRole");
    let role = role.expect("install.yaml has a Role");
    let role_ns = role.metadata.namespace.clone().expect("Role namespace");
    assert_eq!(role_ns, LEASE_NAMESPACE);
    create_or_replace(&Api::<ClusterRole>::all(admin.clone()), &cluster_role).await;
    create_or_replace(&Api::<Role>::namespaced(admin.clone(), &role_ns), &role).await;
    let subject =
        json!([{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": CONTROLLER_USER}]);
    let crb: ClusterRoleBinding = typed(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": "wsgate-e2e"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": cluster_role.metadata.name},
        "subjects": subject,
    }));
    create_or_replace(&Api::all(admin.clone()), &crb).await;
    let rb: RoleBinding = typed(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "wsgate-e2e", "namespace": role_ns},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role.metadata.name},
        "subjects": subject,
    }));
    create_or_replace(&Api::namespaced(admin.clone(), &role_ns), &rb).await;
}

/// Polls `f` every 50 ms until it returns `Some`, or panics after `timeout` naming `what`.
async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

// ------------------------------------------------------------------------------------ objects

async fn namespace(admin: &Client, name: &str) {
    create_or_replace(
        &Api::<Namespace>::all(admin.clone()),
        &typed(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})),
    )
    .await;
}

async fn ingress_class(admin: &Client, name: &str) {
    create_or_replace(
        &Api::<IngressClass>::all(admin.clone()),
        &typed(json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
            "metadata": {"name": name}, "spec": {"controller": CONTROLLER},
        })),
    )
    .await;
}

/// A Service with one port `http` 80 -> 9001.
async fn service(admin: &Client, ns: &str, name: &str) {
    service_of_type(admin, ns, name, "ClusterIP").await;
}

/// A Service of `type_` with one port `http` 80 -> 9001.
async fn service_of_type(admin: &Client, ns: &str, name: &str, type_: &str) {
    create_or_replace(
        &Api::<Service>::namespaced(admin.clone(), ns),
        &typed(json!({
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
            "spec": {"type": type_, "ports": [{"name": "http", "port": 80, "targetPort": 9001}]},
        })),
    )
    .await;
}

/// The Service's one EndpointSlice, listing `ips` as ready on port 9001.
/// The common start of a test: namespace, IngressClass, Service `echo` and its endpoints.
async fn echo_service(admin: &Client, ns: &str, class: &str, ips: &[&str]) {
    namespace(admin, ns).await;
    ingress_class(admin, class).await;
    service(admin, ns, "echo").await;
    endpoints(admin, ns, "echo", ips).await;
}

async fn endpoints(admin: &Client, ns: &str, svc: &str, ips: &[&str]) {
    let eps: Vec<Value> = ips
        .iter()
        .map(|ip| json!({"addresses": [ip], "conditions": {"ready": true}}))
        .collect();
    create_or_replace(
        &Api::<EndpointSlice>::namespaced(admin.clone(), ns),
        &typed(json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": format!("{svc}-1"), "namespace": ns,
                         "labels": {"kubernetes.io/service-name": svc}},
            "addressType": "IPv4", "endpoints": eps,
            "ports": [{"name": "http", "port": 9001, "protocol": "TCP"}],
        })),
    )
    .await;
}

async fn ingress(
    admin: &Client,
    ns: &str,
    name: &str,
    class: &str,
    path: &str,
    svc: &str,
    annotations: &[(&str, &str)],
) {
    let annotations: BTreeMap<&str, &str> = annotations.iter().copied().collect();
    create_or_replace(
        &Api::<Ingress>::namespaced(admin.clone(), ns),
        &typed(json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": name, "namespace": ns, "annotations": annotations},
            "spec": {"ingressClassName": class, "rules": [{"http": {"paths": [{
                "path": path, "pathType": "Prefix",
                "backend": {"service": {"name": svc, "port": {"name": "http"}}}}]}}]},
        })),
    )
    .await;
}

async fn annotate(admin: &Client, ns: &str, name: &str, key: &str, value: &str) {
    Api::<Ingress>::namespaced(admin.clone(), ns)
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {key: value}}})),
        )
        .await
        .expect("annotate Ingress");
}

async fn ingress_status(admin: &Client, ns: &str, name: &str) -> Value {
    let ing = Api::<Ingress>::namespaced(admin.clone(), ns)
        .get(name)
        .await
        .expect("get Ingress");
    serde_json::to_value(
        ing.status
            .and_then(|s| s.load_balancer)
            .and_then(|lb| lb.ingress)
            .unwrap_or_default(),
    )
    .expect("status as JSON")
}

async fn warning_events(admin: &Client, ns: &str, kind: &str, name: &str) -> Vec<Event> {
    Api::<Event>::namespaced(admin.clone(), ns)
        .list(&Default::default())
        .await
        .expect("list Events")
        .items
        .into_iter()
        .filter(|e| {
            e.regarding
                .as_ref()
                .is_some_and(|r| r.kind.as_deref() == Some(kind) && r.name.as_deref() == Some(name))
                && e.type_.as_deref() == Some("Warning")
        })
        .collect()
}

async fn lease_holder(admin: &Client, class: &str) -> Option<String> {
    Api::<Lease>::namespaced(admin.clone(), LEASE_NAMESPACE)
        .get_opt(&format!("wsgate-leader-{class}"))
        .await
        .ok()
        .flatten()
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
        .filter(|h| !h.is_empty())
}

// ------------------------------------------------------------------------------------ processes

/// One `wsgate run --kubernetes` process with the controller's token only.
struct Wsgate {
    child: tokio::process::Child,
    identity: String,
    http: u16,
    admin: u16,
    log: PathBuf,
}

impl Wsgate {
    /// Starts it and waits until `/readyz` answers 200.
    async fn start(env: &Env, identity: &str, class: &str, extra: &[&str]) -> Self {
        let w = Self::spawn(env, identity, class, extra);
        let started = Instant::now();
        eventually(
            &format!("{identity} /readyz 200"),
            Duration::from_secs(30),
            || w.ready(),
        )
        .await;
        eprintln!("  {identity}: ready {:?} after start", started.elapsed());
        w
    }

    /// Starts it without waiting.
    fn spawn(env: &Env, identity: &str, class: &str, extra: &[&str]) -> Self {
        let (http, admin) = (free_port(), free_port());
        let log = env.dir.join(format!("wsgate-{identity}.log"));
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_wsgate"))
            .args([
                "run",
                "--kubernetes",
                "--bind",
                "127.0.0.1",
                "--log-format",
                "json",
            ])
            .args([
                "--http-port",
                &http.to_string(),
                "--admin-port",
                &admin.to_string(),
            ])
            .args(["--ingress-class", class, "--shutdown-drain", "2s"])
            .args(extra)
            .env(
                "KUBECONFIG",
                env.dir.join(format!("users/{CONTROLLER_USER}.kubeconfig")),
            )
            .env("POD_NAME", identity)
            .env("POD_NAMESPACE", LEASE_NAMESPACE)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .kill_on_drop(true)
            .spawn()
            .expect("start wsgate");
        Self {
            child,
            identity: identity.to_string(),
            http,
            admin,
            log,
        }
    }

    /// The `/readyz` status code (0 when the admin port does not answer).
    async fn readyz(&self) -> u16 {
        http_get(self.admin, "/readyz").await.map_or(0, |(c, _)| c)
    }

    async fn ready(&self) -> Option<()> {
        let (code, _) = http_get(self.admin, "/readyz").await?;
        (code == 200).then_some(())
    }

    fn url(&self, path: &str) -> String {
        format!("ws://127.0.0.1:{}{path}", self.http)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Log lines (JSON) whose message is `msg`.
    fn log_lines(&self, msg: &str) -> Vec<Value> {
        self.log()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["message"] == msg)
            .collect()
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.id().expect("running");
        let ok = std::process::Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .expect("kill runs")
            .success();
        assert!(ok, "kill {sig} {pid}");
    }

    async fn wait_exit(&mut self, timeout: Duration) {
        tokio::time::timeout(timeout, self.child.wait())
            .await
            .expect("wsgate exits in time")
            .expect("wait");
    }
}

async fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&out).into_owned();
    let code = text.split(' ').nth(1)?.parse().ok()?;
    Some((
        code,
        text.split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default(),
    ))
}

// ------------------------------------------------------------------------------------ WebSocket

/// A WebSocket echo backend on `ip:9001`; text `who` answers with its name.
struct Backend {
    name: String,
    ip: String,
    open: Arc<AtomicUsize>,
    closed: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn backend(name: &str, ip: &str) -> Backend {
    let listener = TcpListener::bind((ip, 9001))
        .await
        .unwrap_or_else(|e| panic!("bind {ip}:9001 (inside e2e/netns.sh?): {e}"));
    let (open, closed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (o, c, n) = (open.clone(), closed.clone(), name.to_string());
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (o, c, n) = (o.clone(), c.clone(), n.clone());
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                o.fetch_add(1, Ordering::SeqCst);
                while let Some(Ok(msg)) = ws.next().await {
                    let reply = match msg {
                        Message::Text(t) if t.as_str() == "who" => Message::text(n.clone()),
                        Message::Text(t) => Message::Text(t),
                        Message::Binary(b) => Message::Binary(b),
                        Message::Close(_) => break,
                        _ => continue,
                    };
                    if ws.send(reply).await.is_err() {
                        break;
                    }
                }
                o.fetch_sub(1, Ordering::SeqCst);
                c.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    Backend {
        name: name.to_string(),
        ip: ip.to_string(),
        open,
        closed,
        task,
    }
}

/// Opens a session; `Err(status)` when the upgrade is answered with an HTTP status instead.
async fn connect(url: &str, headers: &[(&str, &str)]) -> Result<Ws, u16> {
    let mut req = url.into_client_request().expect("request");
    for (k, v) in headers {
        req.headers_mut().insert(
            http::HeaderName::from_bytes(k.as_bytes()).expect("header name"),
            http::HeaderValue::from_str(v).expect("header value"),
        );
    }
    match tokio::time::timeout(
        Duration::from_secs(5),
        tokio_tungstenite::connect_async(req),
    )
    .await
    {
        Ok(Ok((ws, _))) => Ok(ws),
        Ok(Err(tokio_tungstenite::tungstenite::Error::Http(resp))) => Err(resp.status().as_u16()),
        Ok(Err(_)) | Err(_) => Err(0),
    }
}

/// Sends `text`, returns the reply (None if the session is gone or silent for 5 s).
async fn ask(ws: &mut Ws, text: &str) -> Option<String> {
    ws.send(Message::text(text)).await.ok()?;
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return Some(t.to_string()),
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            _ => return None,
        }
    }
}

/// Opens a session and asks which backend it reached.
async fn who(url: &str, headers: &[(&str, &str)]) -> Result<(Ws, String), u16> {
    let mut ws = connect(url, headers).await?;
    match ask(&mut ws, "who").await {
        Some(name) => Ok((ws, name)),
        None => Err(0),
    }
}

// ------------------------------------------------------------------------------------ tests

/// Traffic through an Ingress with `wsgate.dev/` annotations, an invalid one reported as a Warning
/// Event while the rest serves, the published address in status, and annotation changes taking
/// effect on new sessions within 2 s while an open session continues.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_1_ingress_annotations_events_and_status() {
    let Some(env) = env().await else { return };
    let (ns, class) = ("e2e-ingress", "e2e-ingress");
    let a = &env.admin;
    let b1 = backend("b1", "198.18.0.11").await;
    let b2 = backend("b2", "198.18.0.12").await;
    echo_service(a, ns, class, &[&b1.ip, &b2.ip]).await;
    ingress(
        a,
        ns,
        "echo",
        class,
        "/echo",
        "echo",
        &[
            ("wsgate.dev/request-timeout", "5s"),
            ("wsgate.dev/ping-interval", "10s"),
            ("wsgate.dev/max-connections", "lots"),
        ],
    )
    .await;
    let w = Wsgate::start(
        &env,
        "ingress-1",
        class,
        &["--publish-address", "203.0.113.7", "--watch-namespace", ns],
    )
    .await;
    let url = &w.url("/echo");

    // Traffic flows to both endpoints (round-robin by default).
    let mut seen = HashMap::new();
    let mut open = Vec::new();
    for _ in 0..4 {
        let (ws, name) = who(url, &[]).await.expect("session through wsgate");
        *seen.entry(name).or_insert(0) += 1;
        open.push(ws);
    }
    assert_eq!(seen.len(), 2, "round-robin over both endpoints: {seen:?}");
    eprintln!("  sessions reach both endpoints: {seen:?}");

    // The invalid annotation: a Warning Event naming it; the rest of the Ingress serves (above).
    let ev = eventually(
        "InvalidAnnotation Event on Ingress echo",
        Duration::from_secs(10),
        || async move {
            warning_events(a, ns, "Ingress", "echo")
                .await
                .into_iter()
                .find(|e| e.reason.as_deref() == Some("InvalidAnnotation"))
        },
    )
    .await;
    let note = ev.note.clone().unwrap_or_default();
    assert!(
        note.contains("wsgate.dev/max-connections") && note.contains("lots"),
        "{note}"
    );
    assert_eq!(ev.reporting_controller.as_deref(), Some(CONTROLLER));
    assert_eq!(ev.reporting_instance.as_deref(), Some("ingress-1"));
    eprintln!("  Warning Event: {} {note}", ev.reason.unwrap_or_default());

    // The published address.
    eventually(
        "Ingress status carries 203.0.113.7",
        Duration::from_secs(10),
        || async move {
            (ingress_status(a, ns, "echo").await == json!([{"ip": "203.0.113.7"}])).then_some(())
        },
    )
    .await;

    // websocket: "false" -> new upgrades get 403 within 2 s; the open sessions continue.
    let t = Instant::now();
    annotate(a, ns, "echo", "wsgate.dev/websocket", "false").await;
    eventually(
        "websocket=false answers 403",
        Duration::from_secs(2),
        || async move { (connect(url, &[]).await.err() == Some(403)).then_some(()) },
    )
    .await;
    let took = t.elapsed();
    eprintln!("  annotation websocket=false effective after {took:?}");
    for ws in &mut open {
        assert_eq!(ask(ws, "still here").await.as_deref(), Some("still here"));
    }
    annotate(a, ns, "echo", "wsgate.dev/websocket", "true").await;
    eventually(
        "websocket=true again",
        Duration::from_secs(2),
        || async move { connect(url, &[]).await.ok().map(|_| ()) },
    )
    .await;

    // load-balancing: hash-header:X-User -> every session of one user on one endpoint.
    let t = Instant::now();
    annotate(
        a,
        ns,
        "echo",
        "wsgate.dev/load-balancing",
        "hash-header:X-User",
    )
    .await;
    eventually(
        "hash-header balancing in effect",
        Duration::from_secs(2),
        || async move {
            let mut names = Vec::new();
            for _ in 0..4 {
                names.push(who(url, &[("X-User", "alice")]).await.ok()?.1);
            }
            names.windows(2).all(|p| p[0] == p[1]).then_some(())
        },
    )
    .await;
    eprintln!(
        "  annotation load-balancing=hash-header:X-User effective after {:?}",
        t.elapsed()
    );
    for ws in &mut open {
        assert_eq!(ask(ws, "still here").await.as_deref(), Some("still here"));
    }
    drop(open);
}

/// 50 open sessions while endpoints are added and removed: no session on a surviving endpoint
/// closes, new sessions reach the new endpoint and never the removed one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_2_endpoint_churn_with_50_open_sessions() {
    let Some(env) = env().await else { return };
    let (ns, class) = ("e2e-churn", "e2e-churn");
    let a = &env.admin;
    let b1 = backend("c1", "198.18.0.21").await;
    let b2 = backend("c2", "198.18.0.22").await;
    let b3 = backend("c3", "198.18.0.23").await;
    echo_service(a, ns, class, &[&b1.ip, &b2.ip]).await;
    ingress(a, ns, "echo", class, "/", "echo", &[]).await;
    let w = Wsgate::start(&env, "churn-1", class, &[]).await;
    let url = &w.url("/");

    let mut sessions = Vec::new();
    for _ in 0..50 {
        sessions.push(who(url, &[]).await.expect("session"));
    }
    let on = |name: &str, s: &[(Ws, String)]| s.iter().filter(|(_, n)| n == name).count();
    let (on1, on2) = (on(&b1.name, &sessions), on(&b2.name, &sessions));
    assert_eq!(on1 + on2, 50);
    assert!(on1 > 0 && on2 > 0, "both endpoints used: {on1}/{on2}");
    eprintln!("  50 sessions open: {on1} on c1, {on2} on c2");

    // c1 leaves, c3 joins.
    let t = Instant::now();
    endpoints(a, ns, "echo", &[&b2.ip, &b3.ip]).await;
    let mut fresh = Vec::new();
    loop {
        let (ws, name) = who(url, &[]).await.expect("session during the change");
        let hit = name == b3.name;
        fresh.push((ws, name));
        if hit {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "no session reached c3 within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "  new endpoint receives sessions {:?} after the EndpointSlice update",
        t.elapsed()
    );
    let before = fresh.len();
    for _ in 0..20 {
        fresh.push(who(url, &[]).await.expect("new session"));
    }
    let after: Vec<&str> = fresh[before..].iter().map(|(_, n)| n.as_str()).collect();
    assert!(
        !after.contains(&b1.name.as_str()),
        "no new session on the removed endpoint: {after:?}"
    );
    assert!(
        after.contains(&"c2") && after.contains(&"c3"),
        "new sessions on c2 and c3: {after:?}"
    );

    // Every one of the 50 sessions is still open; in particular none on the surviving endpoint.
    let mut alive = 0;
    for (i, (ws, name)) in sessions.iter_mut().enumerate() {
        let msg = format!("ping-{i}");
        if ask(ws, &msg).await.as_deref() == Some(msg.as_str()) {
            alive += 1;
        } else {
            panic!("session {i} on {name} closed after the endpoint change");
        }
    }
    assert_eq!(alive, 50);
    assert_eq!(
        b2.closed.load(Ordering::SeqCst),
        0,
        "no session on c2 closed"
    );
    let fresh_on1 = fresh.iter().filter(|(_, n)| *n == b1.name).count();
    assert_eq!(
        b1.open.load(Ordering::SeqCst),
        on1 + fresh_on1,
        "sessions on the removed c1 keep running"
    );
    eprintln!("  all 50 sessions alive after the change (0 closed on the surviving endpoint)");
}

async fn gateway_status(a: &Client, ns: &str, name: &str) -> (Option<i64>, Value) {
    let ar = kube::api::ApiResource::erase::<wsgate::crd::Gateway>(&());
    let gw = Api::<DynamicObject>::namespaced_with(a.clone(), ns, &ar)
        .get(name)
        .await
        .expect("get Gateway");
    (gw.metadata.generation, gw.data["status"].clone())
}

fn condition<'a>(status: &'a Value, type_: &str) -> Option<&'a Value> {
    status["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

/// A Gateway whose pool names a missing Service: ResolvedRefs=False with a reason; creating the
/// Service flips it to True and traffic flows; an invalid edit gives Accepted=False and an Event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_3_gateway_conditions_follow_references() {
    let Some(env) = env().await else { return };
    let (ns, class) = ("e2e-gateway", "e2e-gateway");
    let a = &env.admin;
    let chat = backend("g1", "198.18.0.31").await;
    namespace(a, ns).await;
    // A CA bundle in an Opaque Secret (with a key wsgate must not keep), for an HTTPS setting.
    let ca = std::fs::read_to_string(env.dir.join("ca.crt")).expect("the apiserver's CA");
    create_or_replace(
        &Api::<k8s_openapi::api::core::v1::Secret>::namespaced(a.clone(), ns),
        &typed(json!({
            "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": "backend-ca", "namespace": ns},
            "stringData": {"ca.crt": ca, "password": "hunter2"},
        })),
    )
    .await;
    let port = free_port();
    let gw = json!({
        "apiVersion": "wsgate.dev/v1alpha1", "kind": "Gateway",
        "metadata": {"name": "chat", "namespace": ns},
        "spec": {
            "listeners": [{"name": "web", "protocol": "HTTP", "port": port}],
            "backendPools": [{"name": "chat", "service": {"name": "chat", "port": 80}}],
            "backendSettings": [
                {"name": "ws", "requestTimeout": "10s"},
                {"name": "secure", "protocol": "HTTPS", "caSecretName": "backend-ca"},
            ],
            "routingRules": [{"name": "chat", "listeners": ["web"], "paths": [{"path": "/chat"}],
                              "backendPool": "chat", "backendSettings": "ws"}],
        },
    });
    let ar = kube::api::ApiResource::erase::<wsgate::crd::Gateway>(&());
    let gws: Api<DynamicObject> = Api::namespaced_with(a.clone(), ns, &ar);
    let mut obj: DynamicObject = typed(gw.clone());
    obj.types = Some(kube::api::TypeMeta {
        api_version: "wsgate.dev/v1alpha1".into(),
        kind: "Gateway".into(),
    });
    create_or_replace(&gws, &obj).await;
    let _w = Wsgate::start(&env, "gateway-1", class, &["--watch-namespace", ns]).await;
    let url = &format!("ws://127.0.0.1:{port}/chat");

    let status = eventually(
        "ResolvedRefs=False",
        Duration::from_secs(10),
        || async move {
            let (generation, st) = gateway_status(a, ns, "chat").await;
            let rr = condition(&st, "ResolvedRefs")?;
            (rr["status"] == "False" && st["observedGeneration"].as_i64() == generation)
                .then(|| st.clone())
        },
    )
    .await;
    let rr = condition(&status, "ResolvedRefs").expect("ResolvedRefs");
    assert_eq!(rr["reason"], "BackendNotFound");
    assert!(
        rr["message"].as_str().unwrap_or_default().contains("chat"),
        "{rr}"
    );
    // Accepted: in particular the Opaque Secret's ca.crt was found (a missing one is an error).
    assert_eq!(
        condition(&status, "Accepted").expect("Accepted")["status"],
        "True",
        "{status}"
    );
    eprintln!(
        "  ResolvedRefs=False reason={} message={}",
        rr["reason"], rr["message"]
    );
    assert_eq!(
        connect(url, &[]).await.err(),
        Some(503),
        "no endpoints yet: 503"
    );
    eventually(
        "UnresolvedReference Event",
        Duration::from_secs(10),
        || async move {
            warning_events(a, ns, "Gateway", "chat")
                .await
                .into_iter()
                .find(|e| e.reason.as_deref() == Some("UnresolvedReference"))
        },
    )
    .await;

    // Fix it: the Service and its endpoints appear.
    let t = Instant::now();
    service(a, ns, "chat").await;
    endpoints(a, ns, "chat", &[&chat.ip]).await;
    eventually(
        "ResolvedRefs=True",
        Duration::from_secs(10),
        || async move {
            let (_, st) = gateway_status(a, ns, "chat").await;
            (condition(&st, "ResolvedRefs")?["status"] == "True").then_some(())
        },
    )
    .await;
    let (_, name) = eventually(
        "traffic flows to g1",
        Duration::from_secs(5),
        || async move { who(url, &[]).await.ok() },
    )
    .await;
    assert_eq!(name, "g1");
    eprintln!(
        "  ResolvedRefs=True and traffic flowing {:?} after creating the Service",
        t.elapsed()
    );

    // An invalid edit: Accepted=False at the new generation, a Warning Event, the rest serves.
    let mut spec = gw["spec"].clone();
    spec["routingRules"]
        .as_array_mut()
        .expect("rules")
        .push(json!({"name": "bad", "listeners": ["web"], "backendPool": "nope"}));
    gws.patch(
        "chat",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": spec})),
    )
    .await
    .expect("patch Gateway");
    let st = eventually(
        "Accepted=False at generation 2",
        Duration::from_secs(10),
        || async move {
            let (generation, st) = gateway_status(a, ns, "chat").await;
            let acc = condition(&st, "Accepted")?;
            (generation == Some(2) && acc["status"] == "False" && acc["observedGeneration"] == 2)
                .then(|| st.clone())
        },
    )
    .await;
    let acc = condition(&st, "Accepted").expect("Accepted");
    assert_eq!(acc["reason"], "Invalid");
    assert!(
        acc["message"]
            .as_str()
            .unwrap_or_default()
            .contains("spec.routingRules[1].backendPool"),
        "{acc}"
    );
    eventually(
        "Rejected Event naming the field",
        Duration::from_secs(10),
        || async move {
            warning_events(a, ns, "Gateway", "chat")
                .await
                .into_iter()
                .find(|e| {
                    e.reason.as_deref() == Some("Rejected")
                        && e.note
                            .as_deref()
                            .unwrap_or_default()
                            .contains("spec.routingRules[1].backendPool")
                })
        },
    )
    .await;
    assert_eq!(
        who(url, &[]).await.map(|(_, n)| n),
        Ok("g1".to_string()),
        "the valid rule still serves"
    );
}

/// Two replicas: both serve, only the Lease holder writes status; the other takes over when the
/// holder dies (Lease expiry) or stops (released at once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_4_leader_election_and_publish_service() {
    let Some(env) = env().await else { return };
    let (ns, class) = ("e2e-leader", "e2e-leader");
    let a = &env.admin;
    let b = backend("l1", "198.18.0.41").await;
    echo_service(a, ns, class, &[&b.ip]).await;
    ingress(
        a,
        ns,
        "echo",
        class,
        "/",
        "echo",
        &[("wsgate.dev/idle-timeout", "soon")],
    )
    .await;
    // The Service whose address is published (no load balancer yet: its cluster IP).
    // A LoadBalancer Service nobody provisions yet: its cluster IP is published until then.
    service_of_type(a, LEASE_NAMESPACE, "e2e-pub", "LoadBalancer").await;
    let cluster_ip = &Api::<Service>::namespaced(a.clone(), LEASE_NAMESPACE)
        .get("e2e-pub")
        .await
        .expect("publish Service")
        .spec
        .and_then(|s| s.cluster_ip)
        .expect("cluster IP");
    let publish = format!("{LEASE_NAMESPACE}/e2e-pub");
    // Only this test's namespace; the published Service is watched on its own in another one.
    let args = [
        "--publish-service",
        publish.as_str(),
        "--watch-namespace",
        ns,
    ];
    let mut first = Wsgate::start(&env, "leader-a", class, &args).await;
    let mut second = Wsgate::start(&env, "leader-b", class, &args).await;

    let holder = eventually("a Lease holder", Duration::from_secs(10), || {
        lease_holder(a, class)
    })
    .await;
    assert!(holder == "leader-a" || holder == "leader-b", "{holder}");
    let (leader, follower) = if holder == first.identity {
        (&mut first, &mut second)
    } else {
        (&mut second, &mut first)
    };
    eprintln!("  Lease held by {}", leader.identity);

    eventually(
        "Ingress status = the Service's cluster IP",
        Duration::from_secs(10),
        || async move {
            (ingress_status(a, ns, "echo").await == json!([{"ip": cluster_ip}])).then_some(())
        },
    )
    .await;
    // A load balancer address appears on the published Service: the status follows.
    Api::<Service>::namespaced(a.clone(), LEASE_NAMESPACE)
        .patch_status(
            "e2e-pub",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"status": {"loadBalancer": {"ingress": [{"hostname": "lb.example.com"}]}}}),
            ),
        )
        .await
        .expect("set load balancer status");
    eventually(
        "Ingress status = the load balancer's hostname",
        Duration::from_secs(10),
        || async move {
            (ingress_status(a, ns, "echo").await == json!([{"hostname": "lb.example.com"}]))
                .then_some(())
        },
    )
    .await;
    eventually(
        "an InvalidAnnotation Event",
        Duration::from_secs(10),
        || async move {
            warning_events(a, ns, "Ingress", "echo")
                .await
                .into_iter()
                .find(|e| e.reason.as_deref() == Some("InvalidAnnotation"))
        },
    )
    .await;

    // Both serve traffic; only the leader wrote.
    for w in [&*leader, &*follower] {
        assert_eq!(
            who(&w.url("/"), &[]).await.map(|(_, n)| n),
            Ok("l1".to_string()),
            "{} serves",
            w.identity
        );
    }
    assert!(
        !leader.log_lines("status written").is_empty(),
        "the leader wrote status"
    );
    assert!(
        !leader.log_lines("Warning Event created").is_empty(),
        "the leader created Events"
    );
    assert!(
        follower.log_lines("status written").is_empty(),
        "the follower wrote no status:\n{}",
        follower.log()
    );
    assert!(
        follower.log_lines("Warning Event created").is_empty(),
        "the follower created no Event"
    );
    let events = warning_events(a, ns, "Ingress", "echo").await;
    assert!(
        events
            .iter()
            .all(|e| e.reporting_instance.as_deref() == Some(leader.identity.as_str()))
    );

    // The leader dies without releasing: the follower takes over once the Lease expires.
    let t = Instant::now();
    leader.signal("-KILL");
    leader.wait_exit(Duration::from_secs(5)).await;
    let follower_id = follower.identity.as_str();
    eventually("the follower holds the Lease", Duration::from_secs(30), || async move {
        (lease_holder(a, class).await.as_deref() == Some(follower_id)).then_some(())
    })
    .await;
    eprintln!(
        "  takeover after the holder was killed: {:?} (Lease duration 15 s)",
        t.elapsed()
    );
    ingress(a, ns, "echo2", class, "/two", "echo", &[]).await;
    eventually(
        "the new leader writes status for a new Ingress",
        Duration::from_secs(10),
        || async move {
            (ingress_status(a, ns, "echo2").await == json!([{"hostname": "lb.example.com"}]))
                .then_some(())
        },
    )
    .await;
    // The log line follows the PATCH that the check above saw; on a loaded machine the test
    // can read the log in between, so wait for it too.
    let follower_ref = &*follower;
    eventually(
        "the new leader logs the status it wrote",
        Duration::from_secs(10),
        || async move {
            follower_ref
                .log_lines("status written")
                .iter()
                .any(|l| l["object"] == format!("Ingress {ns}/echo2"))
                .then_some(())
        },
    )
    .await;

    // A third replica; the current leader stops (SIGTERM) and releases: the takeover is quick.
    let third = Wsgate::start(&env, "leader-c", class, &args).await;
    let t = Instant::now();
    follower.signal("-TERM");
    eventually("the third replica holds the Lease", Duration::from_secs(10), || async move {
        (lease_holder(a, class).await.as_deref() == Some("leader-c")).then_some(())
    })
    .await;
    eprintln!(
        "  takeover after the holder stopped (Lease released): {:?}",
        t.elapsed()
    );
    follower.wait_exit(Duration::from_secs(10)).await;
    drop(third);
}

/// The API server is stopped for 30 s under open sessions: traffic keeps flowing and new
/// sessions open; after it returns, changes are picked up again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_5_apiserver_outage() {
    let Some(env) = env().await else { return };
    let (ns, class) = ("e2e-outage", "e2e-outage");
    let a = &env.admin;
    let b = backend("o1", "198.18.0.51").await;
    echo_service(a, ns, class, &[&b.ip]).await;
    ingress(
        a,
        ns,
        "echo",
        class,
        "/",
        "echo",
        &[("wsgate.dev/rate-limit", "fast")],
    )
    .await;
    let w = Wsgate::start(
        &env,
        "outage-1",
        class,
        &[
            "--publish-address",
            "ws.example.com",
            "--watch-namespace",
            ns,
        ],
    )
    .await;
    let url = &w.url("/");
    let mut sessions = Vec::new();
    for _ in 0..10 {
        sessions.push(who(url, &[]).await.expect("session").0);
    }

    // Down: a crash (SIGKILL), not a graceful stop.
    let apiserver = env.dir.join("apiserver.pid");
    let pid = std::fs::read_to_string(&apiserver).expect("apiserver pid");
    assert!(
        std::process::Command::new("kill")
            .args(["-KILL", pid.trim()])
            .status()
            .expect("kill")
            .success()
    );
    eprintln!("  API server killed; 30 s of traffic without it");
    let down = Instant::now();
    // A replica started now cannot list anything: it must not turn ready on an empty table.
    let late = Wsgate::spawn(
        &env,
        "outage-2",
        class,
        &[
            "--publish-address",
            "ws.example.com",
            "--watch-namespace",
            ns,
        ],
    );
    let mut exchanged = 0;
    let mut opened = 0;
    while down.elapsed() < Duration::from_secs(30) {
        for (i, ws) in sessions.iter_mut().enumerate() {
            let msg = format!("m{i}");
            assert_eq!(
                ask(ws, &msg).await.as_deref(),
                Some(msg.as_str()),
                "session {i} during the outage"
            );
            exchanged += 1;
        }
        let (_, name) = who(url, &[]).await.expect("new session during the outage");
        assert_eq!(name, "o1");
        opened += 1;
        assert!(w.ready().await.is_some(), "still ready during the outage");
        let code = late.readyz().await;
        assert!(
            code == 503 || (code == 0 && down.elapsed() < Duration::from_secs(5)),
            "a replica that never synced is not ready: {code}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    eprintln!(
        "  during the outage: {exchanged} messages on 10 open sessions, {opened} new sessions, /readyz 200"
    );

    // Up again (same state directory: same port, tokens, data).
    let token = std::env::var("WSGATE_E2E_TOKEN").expect("WSGATE_E2E_TOKEN");
    let status = tokio::process::Command::new(repo("e2e/apiserver.sh"))
        .arg("start")
        .arg(&env.dir)
        .args(["--token", &format!("user={CONTROLLER_USER},token={token}")])
        .status()
        .await
        .expect("apiserver.sh start");
    assert!(status.success(), "API server restarted");
    let ready = env.dir.join("ready");
    eventually("the API server is ready", Duration::from_secs(60), || {
        let ready = ready.clone();
        async move { ready.exists().then_some(()) }
    })
    .await;
    let up = Instant::now();
    annotate(a, ns, "echo", "wsgate.dev/websocket", "false").await;
    eventually(
        "the change made after the restart is served",
        Duration::from_secs(60),
        || async move { (connect(url, &[]).await.err() == Some(403)).then_some(()) },
    )
    .await;
    eprintln!(
        "  change after the restart served {:?} after the API server was back",
        up.elapsed()
    );
    eventually(
        "outage-2 ready after its first sync",
        Duration::from_secs(30),
        || late.ready(),
    )
    .await;
    eprintln!(
        "  outage-2 (started during the outage, 503 all along) ready {:?} after the API server was back",
        up.elapsed()
    );
    assert_eq!(
        connect(&late.url("/"), &[]).await.err(),
        Some(403),
        "outage-2 serves the current table"
    );
    for (i, ws) in sessions.iter_mut().enumerate() {
        assert_eq!(
            ask(ws, "after").await.as_deref(),
            Some("after"),
            "session {i} after the outage"
        );
    }
    ingress(a, ns, "late", class, "/late", "echo", &[]).await;
    eventually(
        "status still written after the restart",
        Duration::from_secs(30),
        || async move {
            (ingress_status(a, ns, "late").await == json!([{"hostname": "ws.example.com"}]))
                .then_some(())
        },
    )
    .await;
    // Leadership paused during the outage but nobody else took the Lease: the same term, so the
    // invalid annotation was reported once, not again after the outage.
    let events = warning_events(a, ns, "Ingress", "echo").await;
    let invalid: Vec<_> = events
        .iter()
        .filter(|e| e.reason.as_deref() == Some("InvalidAnnotation"))
        .collect();
    assert_eq!(
        invalid.len(),
        1,
        "one Event for the invalid annotation: {events:?}"
    );
}

// ------------------------------------------------------------------------------------ Gateway API

/// Status of a Gateway API object (`plural` in `gateway.networking.k8s.io/v1`) as JSON.
async fn gwapi_status(a: &Client, ns: Option<&str>, plural: &str, kind: &str, name: &str) -> Value {
    let ar = kube::api::ApiResource {
        group: "gateway.networking.k8s.io".into(),
        version: "v1".into(),
        api_version: "gateway.networking.k8s.io/v1".into(),
        kind: kind.into(),
        plural: plural.into(),
    };
    let api: Api<DynamicObject> = match ns {
        Some(ns) => Api::namespaced_with(a.clone(), ns, &ar),
        None => Api::all_with(a.clone(), &ar),
    };
    api.get(name)
        .await
        .ok()
        .and_then(|o| o.data.get("status").cloned())
        .unwrap_or(Value::Null)
}

/// Gateway API in controller mode: GatewayClass / Gateway / HTTPRoute status as the spec says, a
/// cross-namespace backendRef refused (RefNotPermitted, 503) until a ReferenceGrant allows it,
/// then a WebSocket session through it; the Gateway's listener counts the attached route.
/// A GatewayClass for wsgate's Gateway API controller.
async fn gateway_class(a: &Client, name: &str) {
    let gc: wsgate::gwapi::GatewayClass = typed(json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
        "metadata": {"name": name},
        "spec": {"controllerName": "wsgate.dev/gateway-controller"},
    }));
    create_or_replace(&Api::all(a.clone()), &gc).await;
}

/// wsgate's entry in a status list that several controllers share (`parents`, `ancestors`).
fn wsgate_entry(list: &Value) -> Option<Value> {
    list.as_array()?
        .iter()
        .find(|p| p["controllerName"] == "wsgate.dev/gateway-controller")
        .cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_6_gateway_api_status_and_reference_grant() {
    let Some(env) = env().await else { return };
    let a = &env.admin;
    let (ns, other, class) = ("e2e-gwapi", "e2e-gwapi-routes", "e2e-gwapi");
    let chat = backend("gw-api", "198.18.0.61").await;
    namespace(a, ns).await;
    namespace(a, other).await;
    service(a, ns, "chat").await;
    endpoints(a, ns, "chat", &[&chat.ip]).await;
    let port = free_port();
    gateway_class(a, class).await;
    let gw: wsgate::gwapi::Gateway = typed(json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": "edge", "namespace": ns},
        "spec": {"gatewayClassName": class, "listeners": [
            {"name": "web", "protocol": "HTTP", "port": port, "allowedRoutes": {"namespaces": {"from": "All"}}},
        ]},
    }));
    create_or_replace(&Api::namespaced(a.clone(), ns), &gw).await;
    let route: wsgate::gwapi::HTTPRoute = typed(json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "chat", "namespace": other},
        "spec": {
            "parentRefs": [{"name": "edge", "namespace": ns, "sectionName": "web"}],
            "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/chat"}}],
                       "backendRefs": [{"name": "chat", "namespace": ns, "port": 80}]}],
        },
    }));
    create_or_replace(&Api::namespaced(a.clone(), other), &route).await;
    let _w = Wsgate::start(
        &env,
        "gwapi-1",
        class,
        &[
            "--gateway-class",
            class,
            "--watch-namespace",
            ns,
            "--watch-namespace",
            other,
            "--publish-address",
            "203.0.113.9",
        ],
    )
    .await;
    let url = &format!("ws://127.0.0.1:{port}/chat");

    let status = eventually(
        "GatewayClass Accepted",
        Duration::from_secs(15),
        || async move {
            let st = gwapi_status(a, None, "gatewayclasses", "GatewayClass", class).await;
            (condition(&st, "Accepted")?["status"] == "True").then_some(st)
        },
    )
    .await;
    let features: Vec<&str> = status["supportedFeatures"]
        .as_array()
        .map(|l| l.iter().filter_map(|f| f["name"].as_str()).collect())
        .unwrap_or_default();
    assert!(
        features.contains(&"HTTPRouteBackendProtocolWebSocket"),
        "{status}"
    );
    assert!(features.contains(&"HTTPRouteRequestTimeout"), "{status}");

    let parent = eventually(
        "HTTPRoute RefNotPermitted",
        Duration::from_secs(15),
        || async move {
            let st = gwapi_status(a, Some(other), "httproutes", "HTTPRoute", "chat").await;
            let p = wsgate_entry(&st["parents"])?;
            (condition(&p, "ResolvedRefs")?["reason"] == "RefNotPermitted").then_some(p)
        },
    )
    .await;
    assert_eq!(
        condition(&parent, "Accepted").expect("Accepted")["status"],
        "True",
        "{parent}"
    );
    assert_eq!(
        condition(&parent, "ResolvedRefs").expect("ResolvedRefs")["status"],
        "False",
        "{parent}"
    );
    assert_eq!(parent["parentRef"]["name"], "edge", "{parent}");
    assert_eq!(
        connect(url, &[]).await.err(),
        Some(500),
        "not granted: the reference does not resolve, the spec's 500"
    );

    let gws = eventually(
        "Gateway Programmed, 1 route",
        Duration::from_secs(15),
        || async move {
            let st = gwapi_status(a, Some(ns), "gateways", "Gateway", "edge").await;
            let l = st["listeners"].as_array()?.first()?.clone();
            (condition(&st, "Programmed")?["status"] == "True" && l["attachedRoutes"] == 1)
                .then_some(st)
        },
    )
    .await;
    assert_eq!(
        condition(&gws, "Accepted").expect("Accepted")["status"],
        "True",
        "{gws}"
    );
    assert_eq!(gws["addresses"][0]["value"], "203.0.113.9", "{gws}");
    let listener = &gws["listeners"][0];
    for (t, s) in [
        ("Accepted", "True"),
        ("Programmed", "True"),
        ("ResolvedRefs", "True"),
        ("Conflicted", "False"),
    ] {
        assert_eq!(
            condition(listener, t).unwrap_or(&Value::Null)["status"],
            s,
            "{t}: {listener}"
        );
    }

    let grant: wsgate::gwapi::ReferenceGrant = typed(json!({
        "apiVersion": "gateway.networking.k8s.io/v1beta1", "kind": "ReferenceGrant",
        "metadata": {"name": "routes-to-chat", "namespace": ns},
        "spec": {"from": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "namespace": other}],
                 "to": [{"group": "", "kind": "Service", "name": "chat"}]},
    }));
    create_or_replace(&Api::namespaced(a.clone(), ns), &grant).await;
    eventually(
        "HTTPRoute ResolvedRefs True",
        Duration::from_secs(15),
        || async move {
            let st = gwapi_status(a, Some(other), "httproutes", "HTTPRoute", "chat").await;
            let p = st["parents"].as_array()?.first()?.clone();
            (condition(&p, "ResolvedRefs")?["status"] == "True").then_some(())
        },
    )
    .await;
    let (mut ws, name) = eventually(
        "a session through the granted route",
        Duration::from_secs(10),
        || async move { who(url, &[]).await.ok() },
    )
    .await;
    assert_eq!(name, chat.name);
    assert_eq!(
        ask(&mut ws, "still here").await.as_deref(),
        Some("still here")
    );

    // A BackendTLSPolicy on the Service whose CA ConfigMap does not exist: the policy reports
    // the spec's reasons for the Gateway its route reaches, new requests fail closed with 500
    // (never plaintext), and the open session is not touched.
    let policy: wsgate::gwapi::BackendTLSPolicy = typed(json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "BackendTLSPolicy",
        "metadata": {"name": "chat-tls", "namespace": ns},
        "spec": {"targetRefs": [{"group": "", "kind": "Service", "name": "chat"}],
                 "validation": {"caCertificateRefs": [{"group": "", "kind": "ConfigMap", "name": "chat-ca"}],
                                "hostname": "chat.e2e.test"}},
    }));
    create_or_replace(&Api::namespaced(a.clone(), ns), &policy).await;
    let ancestor = eventually(
        "BackendTLSPolicy ancestors: NoValidCACertificate",
        Duration::from_secs(15),
        || async move {
            let st = gwapi_status(
                a,
                Some(ns),
                "backendtlspolicies",
                "BackendTLSPolicy",
                "chat-tls",
            )
            .await;
            let anc = wsgate_entry(&st["ancestors"])?;
            (condition(&anc, "Accepted")?["reason"] == "NoValidCACertificate").then_some(anc)
        },
    )
    .await;
    assert_eq!(ancestor["ancestorRef"]["name"], "edge", "{ancestor}");
    assert_eq!(
        condition(&ancestor, "ResolvedRefs").expect("ResolvedRefs")["reason"],
        "InvalidCACertificateRef",
        "{ancestor}"
    );
    eventually(
        "requests to the Service fail closed",
        Duration::from_secs(10),
        || async move { (connect(url, &[]).await.err() == Some(500)).then_some(()) },
    )
    .await;
    assert_eq!(
        ask(&mut ws, "still open").await.as_deref(),
        Some("still open")
    );
}

/// `allowedRoutes.namespaces.from: Selector` in a cluster: the route's namespace is admitted by
/// its labels, read through the Namespace watch the chart's RBAC allows, and a label change
/// attaches and detaches the route without a restart.
#[tokio::test]
async fn e2e_7_gateway_api_namespace_selector() {
    let Some(env) = env().await else { return };
    let a = &env.admin;
    let (ns, other, class) = ("e2e-gwsel", "e2e-gwsel-routes", "e2e-gwsel");
    let label = "e2e.wsgate.dev/routes";
    let chat = backend("gw-sel", "198.18.0.62").await;
    namespace(a, ns).await;
    namespace(a, other).await;
    service(a, other, "chat").await;
    endpoints(a, other, "chat", &[&chat.ip]).await;
    let port = free_port();
    gateway_class(a, class).await;
    let gw: wsgate::gwapi::Gateway = typed(json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": "sel", "namespace": ns},
        "spec": {"gatewayClassName": class, "listeners": [
            {"name": "web", "protocol": "HTTP", "port": port, "allowedRoutes": {"namespaces": {
                "from": "Selector", "selector": {"matchLabels": {label: "yes"}}}}},
        ]},
    }));
    create_or_replace(&Api::namespaced(a.clone(), ns), &gw).await;
    let route: wsgate::gwapi::HTTPRoute = typed(json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "chat", "namespace": other},
        "spec": {
            "parentRefs": [{"name": "sel", "namespace": ns}],
            "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/chat"}}],
                       "backendRefs": [{"name": "chat", "port": 80}]}],
        },
    }));
    create_or_replace(&Api::namespaced(a.clone(), other), &route).await;
    let _w = Wsgate::start(
        &env,
        "gwsel-1",
        class,
        &[
            "--gateway-class",
            class,
            "--watch-namespace",
            ns,
            "--watch-namespace",
            other,
        ],
    )
    .await;
    let url = &format!("ws://127.0.0.1:{port}/chat");
    let accepted = |want: &'static str| async move {
        let st = gwapi_status(a, Some(other), "httproutes", "HTTPRoute", "chat").await;
        let p = wsgate_entry(&st["parents"])?;
        (condition(&p, "Accepted")?["reason"] == want).then_some(p)
    };

    let p = eventually(
        "HTTPRoute NotAllowedByListeners (namespace not labelled)",
        Duration::from_secs(15),
        || accepted("NotAllowedByListeners"),
    )
    .await;
    assert_eq!(condition(&p, "Accepted").unwrap()["status"], "False", "{p}");
    assert_eq!(connect(url, &[]).await.err(), Some(404));

    let namespaces = Api::<Namespace>::all(a.clone());
    let set = |v: Value| {
        let namespaces = namespaces.clone();
        async move {
            namespaces
                .patch(
                    other,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"metadata": {"labels": {label: v}}})),
                )
                .await
                .expect("label the namespace");
        }
    };
    set(json!("yes")).await;
    eventually(
        "HTTPRoute Accepted after the label",
        Duration::from_secs(15),
        || accepted("Accepted"),
    )
    .await;
    eventually(
        "Gateway listener: 1 attached route",
        Duration::from_secs(15),
        || async move {
            let st = gwapi_status(a, Some(ns), "gateways", "Gateway", "sel").await;
            (st["listeners"][0]["attachedRoutes"] == 1).then_some(())
        },
    )
    .await;
    let (mut ws, name) = eventually(
        "a session through the admitted route",
        Duration::from_secs(10),
        || async move { who(url, &[]).await.ok() },
    )
    .await;
    assert_eq!(name, chat.name);

    // The label goes: new sessions are refused, the open one is not cut.
    set(Value::Null).await;
    eventually(
        "HTTPRoute NotAllowedByListeners again",
        Duration::from_secs(15),
        || accepted("NotAllowedByListeners"),
    )
    .await;
    eventually(
        "new sessions refused",
        Duration::from_secs(10),
        || async move { (connect(url, &[]).await.err() == Some(404)).then_some(()) },
    )
    .await;
    assert_eq!(
        ask(&mut ws, "still open").await.as_deref(),
        Some("still open")
    );
}

/// A Gateway API Gateway and its route to `svc` (port 80 listener, path `/`).
async fn gateway_with_route(a: &Client, ns: &str, class: &str, name: &str, svc: &str) {
    let gw: wsgate::gwapi::Gateway = typed(json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"gatewayClassName": class, "listeners": [
            {"name": "web", "protocol": "HTTP", "port": 80},
        ]},
    }));
    create_or_replace(&Api::namespaced(a.clone(), ns), &gw).await;
    let route: wsgate::gwapi::HTTPRoute = typed(json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "parentRefs": [{"name": name}],
            "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                       "backendRefs": [{"name": svc, "port": 80}]}],
        },
    }));
    create_or_replace(&Api::namespaced(a.clone(), ns), &route).await;
}

/// `--gateway-services`: two Gateways on port 80 get a Service each (in wsgate's namespace,
/// labelled with the Gateway, port 80 -> a pod port of their own), their `status.addresses`
/// name that Service's cluster IP, and each pod port reaches its own Gateway's route. A Service
/// of the same name that wsgate does not manage is left alone and reported; deleting a Gateway
/// deletes its Service and moves no other Gateway's port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_8_gateway_services() {
    use wsgate::translate::gateway_ports::service_name;
    let Some(env) = env().await else { return };
    let a = &env.admin;
    let (ns, class) = ("e2e-gwsvc", "e2e-gwsvc");
    let (b1, b2) = (
        backend("svc-one", "198.18.0.81").await,
        backend("svc-two", "198.18.0.82").await,
    );
    namespace(a, ns).await;
    for (svc, b) in [("one", &b1), ("two", &b2)] {
        service(a, ns, svc).await;
        endpoints(a, ns, svc, &[&b.ip]).await;
    }
    gateway_class(a, class).await;
    gateway_with_route(a, ns, class, "one", "one").await;
    gateway_with_route(a, ns, class, "two", "two").await;
    // Someone else's Service with the name Gateway "three" would get.
    let three = service_name(ns, "three");
    service(a, LEASE_NAMESPACE, &three).await;
    gateway_with_route(a, ns, class, "three", "one").await;
    let services = Api::<Service>::namespaced(a.clone(), LEASE_NAMESPACE);
    let foreign = services.get(&three).await.expect("foreign Service");

    let _w = Wsgate::start(
        &env,
        "gwsvc-1",
        class,
        &[
            "--gateway-class",
            class,
            "--watch-namespace",
            ns,
            "--gateway-services",
            "--gateway-service-selector",
            "app.kubernetes.io/name=wsgate-e2e",
            "--gateway-port-range",
            "24000-24099",
        ],
    )
    .await;

    let mut pod_ports = HashMap::new();
    for name in ["one", "two"] {
        let svc_name = service_name(ns, name);
        let svc = eventually(
            &format!("Service {svc_name}"),
            Duration::from_secs(15),
            || {
                let (services, svc_name) = (services.clone(), svc_name.clone());
                async move { services.get_opt(&svc_name).await.ok().flatten() }
            },
        )
        .await;
        let labels = svc.metadata.labels.clone().unwrap_or_default();
        let label = |k: &str| labels.get(k).map(String::as_str);
        assert_eq!(
            (
                label("wsgate.dev/gateway"),
                label("wsgate.dev/gateway-namespace"),
                label("app.kubernetes.io/managed-by")
            ),
            (Some(name), Some(ns), Some("wsgate"))
        );
        let spec = svc.spec.clone().expect("spec");
        assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
        assert_eq!(
            spec.selector,
            Some(BTreeMap::from([(
                "app.kubernetes.io/name".to_string(),
                "wsgate-e2e".to_string()
            )]))
        );
        let ports = spec.ports.clone().unwrap_or_default();
        assert_eq!(ports.len(), 1, "{ports:?}");
        assert_eq!(ports[0].port, 80);
        let Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(target)) =
            ports[0].target_port.clone()
        else {
            panic!("numeric targetPort: {ports:?}")
        };
        assert!((24000..=24099).contains(&target), "{target}");
        let ip = spec.cluster_ip.clone().expect("cluster IP");
        let ip = ip.as_str();
        let st = eventually(
            &format!("Gateway {name} Programmed with its Service's address"),
            Duration::from_secs(15),
            || async move {
                let st = gwapi_status(a, Some(ns), "gateways", "Gateway", name).await;
                (condition(&st, "Programmed")?["status"] == "True"
                    && st["addresses"][0]["value"] == ip)
                    .then_some(st)
            },
        )
        .await;
        assert_eq!(st["addresses"].as_array().map(Vec::len), Some(1), "{st}");
        pod_ports.insert(name, target as u16);
    }
    assert_ne!(pod_ports["one"], pod_ports["two"]);

    // Each Gateway's pod port (where its Service forwards port 80) serves its own route.
    for (name, b) in [("one", &b1), ("two", &b2)] {
        let url = format!("ws://127.0.0.1:{}/", pod_ports[name]);
        let (_ws, reached) = eventually(
            &format!("a session through Gateway {name}"),
            Duration::from_secs(10),
            || {
                let url = url.clone();
                async move { who(&url, &[]).await.ok() }
            },
        )
        .await;
        assert_eq!(reached, b.name, "Gateway {name}");
    }

    // The foreign Service: untouched, and Gateway "three" says why it has no address.
    let st = eventually(
        "Gateway three: Programmed False, AddressNotAssigned",
        Duration::from_secs(15),
        || async move {
            let st = gwapi_status(a, Some(ns), "gateways", "Gateway", "three").await;
            (condition(&st, "Programmed")?["reason"] == "AddressNotAssigned").then_some(st)
        },
    )
    .await;
    let programmed = condition(&st, "Programmed").expect("Programmed");
    assert_eq!(programmed["status"], "False", "{st}");
    let message = programmed["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!("Service {LEASE_NAMESPACE}/{three}"))
            && message.contains("not managed by wsgate"),
        "{message}"
    );
    assert!(st["addresses"].as_array().is_none_or(Vec::is_empty), "{st}");
    let after = services.get(&three).await.expect("foreign Service");
    assert_eq!(
        after.metadata.resource_version,
        foreign.metadata.resource_version
    );

    // Gateway "two" goes: its Service goes; "one" keeps its Service and pod port.
    Api::<wsgate::gwapi::Gateway>::namespaced(a.clone(), ns)
        .delete("two", &Default::default())
        .await
        .expect("delete Gateway two");
    let two = service_name(ns, "two");
    eventually(
        "the Service of Gateway two deleted",
        Duration::from_secs(15),
        || {
            let (services, two) = (services.clone(), two.clone());
            async move {
                services
                    .get_opt(&two)
                    .await
                    .ok()
                    .and_then(|s| s.is_none().then_some(()))
            }
        },
    )
    .await;
    let one = services
        .get(&service_name(ns, "one"))
        .await
        .expect("Service of Gateway one");
    let target = one.spec.and_then(|s| s.ports).unwrap_or_default()[0]
        .target_port
        .clone();
    assert_eq!(
        target,
        Some(
            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(i32::from(
                pod_ports["one"]
            ))
        )
    );
    assert!(services.get_opt(&three).await.expect("get").is_some());
    let (_ws, reached) = who(&format!("ws://127.0.0.1:{}/", pod_ports["one"]), &[])
        .await
        .expect("Gateway one still serves");
    assert_eq!(reached, b1.name);
}
