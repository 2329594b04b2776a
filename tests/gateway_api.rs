//! The Kubernetes Gateway API in file mode, over real sockets: every HTTPRoute match (path Exact,
//! PathPrefix, RegularExpression, header, query, method, with the spec's precedence), filter
//! (request/response header modifiers, redirects, rewrites), weighted backends, timeouts that bound
//! the response but never a session, ReferenceGrant, allowedRoutes and hostname intersection; a
//! WebSocket session on each route type.

// Measures real wall-clock time against a live server, not tokio time.
#![allow(clippy::disallowed_types)]

mod common;

use common::*;
use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

fn route(ns: &str, name: &str, hostnames: &str, parent: &str, rules: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  parentRefs: [{parent}]\n  hostnames: [{hostnames}]\n  rules:\n{rules}---\n"
    )
}

fn be(svc: &str) -> String {
    format!("[{{name: {svc}, port: 80}}]")
}

struct Env {
    srv: TestServer,
    port: u16,
    a: HttpBackend,
    b: HttpBackend,
    echo: MixedBackend,
}

async fn start() -> Env {
    let a = http_backend("a").await;
    let b = http_backend("b").await;
    let echo = mixed_backend().await;
    let slow = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let slow_addr = slow.local_addr().unwrap();
    // Accepts, reads, never answers.
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = slow.accept().await {
            held.push(s);
        }
    });
    let port = free_port();
    let svc = |ns: &str, name: &str, addr: SocketAddr| service_yaml(ns, name, &[addr]);
    let mut yaml = String::new();
    yaml += "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: wsgate}\nspec: {controllerName: wsgate.dev/gateway-controller}\n---\n";
    yaml += "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: other}\nspec: {controllerName: example.com/other}\n---\n";
    yaml += &format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: gw, namespace: apps}}\nspec:\n  gatewayClassName: wsgate\n  listeners:\n  \
         - {{name: web, port: {port}, protocol: HTTP, hostname: \"*.example.com\", allowedRoutes: {{namespaces: {{from: All}}}}}}\n  \
         - {{name: admin, port: {port}, protocol: HTTP, hostname: admin.test}}\n---\n"
    );
    // A Gateway of another class must not be served.
    yaml += &format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: foreign, namespace: apps}}\nspec:\n  gatewayClassName: other\n  listeners: [{{name: web, port: {}, protocol: HTTP}}]\n---\n",
        free_port()
    );
    yaml += &svc("apps", "web-a", a.addr);
    yaml += &svc("apps", "web-b", b.addr);
    yaml += &svc("apps", "echo", echo.addr);
    yaml += &svc("apps", "slow", slow_addr);
    let p = "{name: gw, namespace: apps, sectionName: web}";
    let rule = |m: &str, svc: &str| format!("  - matches: [{m}]\n    backendRefs: {}\n", be(svc));
    let mut rules = String::new();
    for (m, svc) in [
        ("{path: {type: Exact, value: /exact}}", "web-a"),
        ("{path: {type: PathPrefix, value: /prefix}}", "web-a"),
        (
            "{path: {type: RegularExpression, value: \"/re/[0-9]+\"}}",
            "web-b",
        ),
        (
            "{path: {value: /h}, headers: [{name: X-Env, value: canary}]}",
            "web-b",
        ),
        ("{path: {value: /h}}", "web-a"),
        (
            "{path: {value: /hr}, headers: [{name: x-v, type: RegularExpression, value: \"v[0-9]\"}]}",
            "web-b",
        ),
        (
            "{path: {value: /q}, queryParams: [{name: v, value: \"2\"}]}",
            "web-b",
        ),
        ("{path: {value: /q}}", "web-a"),
        ("{path: {value: /m}, method: POST}", "web-b"),
        ("{path: {value: /m}}", "web-a"),
        ("{path: {type: Exact, value: /ws-exact}}", "echo"),
        ("{path: {value: /ws-prefix}}", "echo"),
        (
            "{path: {type: RegularExpression, value: \"/ws-re/[a-z]+\"}}",
            "echo",
        ),
        (
            "{path: {value: /ws-h}, headers: [{name: x-ws, value: \"yes\"}]}",
            "echo",
        ),
        (
            "{path: {value: /ws-q}, queryParams: [{name: t, value: \"1\"}]}",
            "echo",
        ),
        ("{path: {value: /ws-m}, method: GET}", "echo"),
    ] {
        rules += &rule(m, svc);
    }
    yaml += &route("apps", "matches", "m.example.com", p, &rules);
    let filters = format!(
        "  - matches: [{{path: {{value: /headers}}}}]\n    filters:\n    - {{type: RequestHeaderModifier, requestHeaderModifier: {{set: [{{name: x-set, value: s1}}], add: [{{name: x-add, value: a1}}], remove: [x-remove]}}}}\n    - {{type: ResponseHeaderModifier, responseHeaderModifier: {{set: [{{name: x-resp, value: r1}}]}}}}\n    backendRefs: {a}\n\
           \x20\x20- matches: [{{path: {{value: /redirect}}}}]\n    filters: [{{type: RequestRedirect, requestRedirect: {{scheme: https, statusCode: 301}}}}]\n\
           \x20\x20- matches: [{{path: {{value: /moved}}}}]\n    filters: [{{type: RequestRedirect, requestRedirect: {{hostname: new.example.com, port: 8443, statusCode: 308, path: {{type: ReplacePrefixMatch, replacePrefixMatch: /new}}}}}}]\n\
           \x20\x20- matches: [{{path: {{value: /see}}}}]\n    filters: [{{type: RequestRedirect, requestRedirect: {{path: {{type: ReplaceFullPath, replaceFullPath: /other}}, statusCode: 303}}}}]\n\
           \x20\x20- matches: [{{path: {{value: /rewrite}}}}]\n    filters: [{{type: URLRewrite, urlRewrite: {{hostname: rewritten.test, path: {{type: ReplacePrefixMatch, replacePrefixMatch: /v2}}}}}}]\n    backendRefs: {a}\n\
           \x20\x20- matches: [{{path: {{value: /full}}}}]\n    filters: [{{type: URLRewrite, urlRewrite: {{path: {{type: ReplaceFullPath, replaceFullPath: /fixed}}}}}}]\n    backendRefs: {a}\n\
           \x20\x20- matches: [{{path: {{value: /ws-rw}}}}]\n    filters:\n    - {{type: URLRewrite, urlRewrite: {{path: {{type: ReplacePrefixMatch, replacePrefixMatch: /}}}}}}\n    - {{type: RequestHeaderModifier, requestHeaderModifier: {{set: [{{name: x-from, value: wsgate}}]}}}}\n    backendRefs: {echo}\n",
        a = be("web-a"),
        echo = be("echo")
    );
    yaml += &route("apps", "filters", "f.example.com", p, &filters);
    yaml += &route(
        "apps",
        "weights",
        "w.example.com",
        p,
        "  - backendRefs: [{name: web-a, port: 80, weight: 3}, {name: web-b, port: 80, weight: 1}, {name: echo, port: 80, weight: 0}]\n",
    );
    yaml += &route(
        "apps",
        "timeouts",
        "t.example.com",
        p,
        &format!(
            "  - matches: [{{path: {{value: /slow}}}}]\n    timeouts: {{request: 500ms}}\n    backendRefs: {}\n\
               \x20\x20- matches: [{{path: {{value: /ws}}}}]\n    timeouts: {{request: 1s, backendRequest: 1s}}\n    backendRefs: {}\n",
            be("slow"),
            be("echo")
        ),
    );
    // Cross-namespace references: granted for web-a only.
    yaml += "apiVersion: gateway.networking.k8s.io/v1beta1\nkind: ReferenceGrant\nmetadata: {name: from-other, namespace: apps}\nspec:\n  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: other}]\n  to: [{group: \"\", kind: Service, name: web-a}]\n---\n";
    yaml += &route(
        "other",
        "granted",
        "g.example.com",
        p,
        "  - backendRefs: [{name: web-a, namespace: apps, port: 80}]\n",
    );
    yaml += &route(
        "other",
        "denied",
        "d.example.com",
        p,
        "  - backendRefs: [{name: web-b, namespace: apps, port: 80}]\n",
    );
    // The admin listener allows only routes from its own namespace; this one is in `other`.
    yaml += &route(
        "other",
        "intruder",
        "admin.test",
        "{name: gw, namespace: apps, sectionName: admin}",
        &rule("{path: {value: /}}", "web-a"),
    );
    yaml += &route(
        "apps",
        "admin",
        "admin.test",
        "{name: gw, namespace: apps, sectionName: admin}",
        &rule("{path: {value: /ok}}", "web-b"),
    );
    // Hostnames outside the listener's: not attached.
    yaml += &route(
        "apps",
        "elsewhere",
        "x.other.com",
        p,
        &rule("{path: {value: /}}", "web-a"),
    );
    // parentRef by port.
    yaml += &route(
        "apps",
        "by-port",
        "p.example.com",
        &format!("{{name: gw, namespace: apps, port: {port}}}"),
        &rule("{path: {value: /}}", "web-b"),
    );
    let srv = TestServer::start_ports(&[("gw.yaml", yaml)], 0, 8443, |_| {}).await;
    Env {
        srv,
        port,
        a,
        b,
        echo,
    }
}

fn body_backend(body: &str) -> &str {
    body.lines().next().unwrap_or("")
}

async fn get(env: &Env, host: &str, path: &str) -> (u16, String) {
    http_get(env.srv.port(env.port), host, path).await
}

async fn send(env: &Env, method: &str, host: &str, path: &str, headers: &str) -> (u16, String) {
    raw_exchange(
        env.srv.port(env.port),
        &format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\n{headers}Content-Length: 0\r\nConnection: close\r\n\r\n"),
    )
    .await
}

async fn ws(env: &Env, host: &str, path: &str, headers: &[(&str, &str)]) -> Result<(), String> {
    let mut req = format!("ws://{}{path}", env.srv.port(env.port))
        .into_client_request()
        .unwrap();
    req.headers_mut().insert("host", host.parse().unwrap());
    for (k, v) in headers {
        req.headers_mut().insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    let (mut s, _) = tokio_tungstenite::connect_async(req)
        .await
        .map_err(|e| e.to_string())?;
    echo_roundtrip(&mut s, &format!("hello {path}")).await;
    s.send(Message::Close(None)).await.unwrap();
    while let Some(Ok(_)) = s.next().await {}
    Ok(())
}

#[tokio::test]
async fn matches_follow_the_spec_and_every_route_type_carries_websockets() {
    let env = start().await;
    let h = "m.example.com";
    let backend = |r: &(u16, String)| (r.0, body_backend(&r.1).to_string());
    assert_eq!(backend(&get(&env, h, "/exact").await), (200, "a".into()));
    assert_eq!(get(&env, h, "/exact/x").await.0, 404);
    assert_eq!(
        backend(&get(&env, h, "/prefix/x/y").await),
        (200, "a".into())
    );
    assert_eq!(get(&env, h, "/prefixx").await.0, 404);
    assert_eq!(backend(&get(&env, h, "/re/123").await), (200, "b".into()));
    assert_eq!(get(&env, h, "/re/12a").await.0, 404);
    // Header match beats the same path without one; header names are case-insensitive.
    assert_eq!(
        backend(&send(&env, "GET", h, "/h", "x-env: canary\r\n").await),
        (200, "b".into())
    );
    assert_eq!(
        backend(&send(&env, "GET", h, "/h", "x-env: prod\r\n").await),
        (200, "a".into())
    );
    assert_eq!(
        backend(&send(&env, "GET", h, "/hr", "x-v: v7\r\n").await),
        (200, "b".into())
    );
    assert_eq!(send(&env, "GET", h, "/hr", "x-v: w7\r\n").await.0, 404);
    assert_eq!(
        backend(&get(&env, h, "/q?x=1&v=2").await),
        (200, "b".into())
    );
    assert_eq!(backend(&get(&env, h, "/q?v=3").await), (200, "a".into()));
    assert_eq!(
        backend(&send(&env, "POST", h, "/m", "").await),
        (200, "b".into())
    );
    assert_eq!(
        backend(&send(&env, "GET", h, "/m", "").await),
        (200, "a".into())
    );
    // A WebSocket session on every kind of match.
    ws(&env, h, "/ws-exact", &[]).await.unwrap();
    ws(&env, h, "/ws-prefix/room", &[]).await.unwrap();
    ws(&env, h, "/ws-re/abc", &[]).await.unwrap();
    ws(&env, h, "/ws-h", &[("x-ws", "yes")]).await.unwrap();
    ws(&env, h, "/ws-q?t=1", &[]).await.unwrap();
    ws(&env, h, "/ws-m", &[]).await.unwrap();
    assert!(ws(&env, h, "/ws-h", &[("x-ws", "no")]).await.is_err());
    assert!(ws(&env, h, "/ws-q?t=2", &[]).await.is_err());
    assert_eq!(
        env.echo.sessions.load(std::sync::atomic::Ordering::SeqCst),
        6
    );
}

#[tokio::test]
async fn filters_modify_redirect_and_rewrite() {
    let env = start().await;
    let h = "f.example.com";
    let (status, reply) = raw_exchange(
        env.srv.port(env.port),
        &format!("GET /headers HTTP/1.1\r\nHost: {h}\r\nx-remove: 1\r\nx-add: a0\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert_eq!(status, 200);
    assert!(reply.contains("x-set: s1"), "{reply}");
    assert!(reply.contains("x-add: a0\nx-add: a1"), "{reply}");
    assert!(!reply.contains("x-remove"), "{reply}");
    let full = raw_exchange_full(
        env.srv.port(env.port),
        &format!("GET /headers HTTP/1.1\r\nHost: {h}\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert_eq!(head_value(&full, "x-resp").as_deref(), Some("r1"), "{full}");

    let redirect = |path: &'static str| {
        let addr = env.srv.port(env.port);
        async move {
            raw_exchange_full(
                addr,
                &format!("GET {path} HTTP/1.1\r\nHost: {h}\r\nConnection: close\r\n\r\n"),
            )
            .await
        }
    };
    let r = redirect("/redirect?a=1").await;
    assert!(r.starts_with("HTTP/1.1 301"), "{r}");
    assert_eq!(
        head_value(&r, "location").as_deref(),
        Some("https://f.example.com/redirect?a=1")
    );
    let r = redirect("/moved/x").await;
    assert!(r.starts_with("HTTP/1.1 308"), "{r}");
    assert_eq!(
        head_value(&r, "location").as_deref(),
        Some("http://new.example.com:8443/new/x")
    );
    let r = redirect("/see").await;
    assert!(r.starts_with("HTTP/1.1 303"), "{r}");
    assert_eq!(
        head_value(&r, "location").as_deref(),
        Some(format!("http://f.example.com:{}/other", env.port).as_str())
    );

    let (status, seen) = get(&env, h, "/rewrite/x?k=v").await;
    assert_eq!(status, 200);
    assert!(seen.contains("GET /v2/x?k=v"), "{seen}");
    assert!(seen.contains("host: rewritten.test"), "{seen}");
    assert!(seen.contains("x-forwarded-host: f.example.com"), "{seen}");
    let (_, seen) = get(&env, h, "/full/a/b").await;
    assert!(seen.contains("GET /fixed"), "{seen}");
    ws(&env, h, "/ws-rw/chat", &[]).await.unwrap();
    assert!(env.a.requests.lock().unwrap().len() >= 3);
}

#[tokio::test]
async fn weights_split_traffic_and_zero_weight_gets_none() {
    let env = start().await;
    let mut counts = std::collections::HashMap::new();
    for _ in 0..200 {
        let (status, body) = get(&env, "w.example.com", "/").await;
        assert_eq!(status, 200);
        *counts.entry(body_backend(&body).to_string()).or_insert(0) += 1;
    }
    let a = counts.get("a").copied().unwrap_or(0);
    let b = counts.get("b").copied().unwrap_or(0);
    assert_eq!(a + b, 200, "{counts:?}");
    // 3:1 expected (150:50); generous bounds.
    assert!((110..=185).contains(&a), "{counts:?}");
    assert!(b >= 15, "{counts:?}");
    assert_eq!(
        env.echo.sessions.load(std::sync::atomic::Ordering::SeqCst),
        0
    );
    assert!(env.b.accepts.load(std::sync::atomic::Ordering::SeqCst) > 0);
}

#[tokio::test]
async fn timeouts_bound_the_response_but_never_a_session() {
    let env = start().await;
    let t0 = Instant::now();
    let (status, _) = get(&env, "t.example.com", "/slow").await;
    assert_eq!(status, 504);
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    assert!(
        t0.elapsed() >= Duration::from_millis(450),
        "{:?}",
        t0.elapsed()
    );
    // A session on a route with a 1 s request timeout stays open and quiet for 2.5 s.
    let mut req = format!("ws://{}/ws", env.srv.port(env.port))
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("host", "t.example.com".parse().unwrap());
    let (mut s, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    echo_roundtrip(&mut s, "first").await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    echo_roundtrip(&mut s, "after 2.5 s").await;
}

#[tokio::test]
async fn reference_grants_listeners_and_hostnames_decide_attachment() {
    let env = start().await;
    assert_eq!(body_backend(&get(&env, "g.example.com", "/").await.1), "a");
    // A reference no ReferenceGrant allows: the spec's 500, not a 503 (nothing will recover).
    assert_eq!(get(&env, "d.example.com", "/").await.0, 500);
    // `admin` allows only its namespace: the `other` route is not attached, the `apps` one is.
    assert_eq!(get(&env, "admin.test", "/").await.0, 404);
    assert_eq!(body_backend(&get(&env, "admin.test", "/ok").await.1), "b");
    assert_eq!(get(&env, "x.other.com", "/").await.0, 404);
    assert_eq!(body_backend(&get(&env, "p.example.com", "/").await.1), "b");

    // `check` names the same problems with object and field.
    let report = wsgate::check::check(env.srv.dir.path(), &wsgate::translate::Options::default());
    let text = wsgate::check::render(&report);
    assert!(text.contains("HTTPRoute other/denied: spec.rules[0].backendRefs[0]: Service apps/web-b is in another namespace and no ReferenceGrant allows it"), "{text}");
    assert!(text.contains("HTTPRoute other/intruder: spec.parentRefs[0]: not attached to Gateway apps/gw sectionName admin: listener admin does not allow routes from namespace other"), "{text}");
    assert!(
        text.contains("HTTPRoute apps/elsewhere: spec.parentRefs[0]"),
        "{text}"
    );
    assert!(!report.has_errors(), "{text}");
    let r = &report.gateway_api;
    let denied = r.routes.iter().find(|r| r.object.name == "denied").unwrap();
    let rr = &denied.parents[0].conditions[1];
    assert_eq!(
        (rr.type_.as_str(), rr.reason.as_str()),
        ("ResolvedRefs", "RefNotPermitted")
    );
    let gw = r.gateways.iter().find(|g| g.object.name == "gw").unwrap();
    let web = gw.listeners.iter().find(|l| l.name == "web").unwrap();
    assert!(web.attached_routes >= 6, "{gw:?}");
    assert!(!r.gateways.iter().any(|g| g.object.name == "foreign"));
}
