//! Gateway API in file mode, over real sockets: listeners that admit routes by namespace labels
//! (`allowedRoutes.namespaces.from: Selector`, read from `v1 Namespace` objects, re-read when a
//! label changes) and listener isolation (GatewayHTTPListenerIsolation: a request goes to the
//! most specific listener matching its host, and only that listener's routes answer it).

mod common;

use common::*;
use std::time::Duration;
use tokio::time::Instant;
use wsgate::translate::gateway_api::GatewayApiReport;

const CLASS: &str = "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: wsgate}\nspec: {controllerName: wsgate.dev/gateway-controller}\n---\n";

fn namespace(name: &str, labels: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {name}, labels: {{{labels}}}}}\n---\n"
    )
}

fn route(ns: &str, name: &str, section: &str, hostnames: &str, path: &str, svc: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  parentRefs: [{{name: gw, namespace: infra, sectionName: {section}}}]\n  hostnames: [{hostnames}]\n  rules:\n  - matches: [{{path: {{value: {path}}}}}]\n    backendRefs: [{{name: {svc}, namespace: infra, port: 80}}]\n---\n"
    )
}

/// Backends live in `infra`; routes of other namespaces may use them.
const GRANT: &str = "apiVersion: gateway.networking.k8s.io/v1beta1\nkind: ReferenceGrant\nmetadata: {name: all, namespace: infra}\nspec:\n  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: blue}, {group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: red}, {group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: ghost}]\n  to: [{group: \"\", kind: Service}]\n---\n";

fn attached(r: &GatewayApiReport, listener: &str) -> i32 {
    let gw = r.gateways.iter().find(|g| g.object.name == "gw").unwrap();
    gw.listeners
        .iter()
        .find(|l| l.name == listener)
        .unwrap_or_else(|| panic!("no listener {listener}: {gw:?}"))
        .attached_routes
}

/// Polls until `host path` answers `want` (the config directory is re-read after a write).
async fn eventually(srv: &TestServer, port: u16, host: &str, path: &str, want: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _) = http_get(srv.port(port), host, path).await;
        if status == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{host}{path}: {status}, want {want}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn namespace_selectors_admit_routes_by_label_and_follow_label_changes() {
    let a = http_backend("a").await;
    let port = free_port();
    let gateway = format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: gw, namespace: infra}}\nspec:\n  gatewayClassName: wsgate\n  listeners:\n  \
         - {{name: blue-team, port: {port}, protocol: HTTP, hostname: team.test, allowedRoutes: {{namespaces: {{from: Selector, selector: {{matchLabels: {{team: blue}}}}}}}}}}\n  \
         - {{name: prod, port: {port}, protocol: HTTP, hostname: prod.test, allowedRoutes: {{namespaces: {{from: Selector, selector: {{matchExpressions: [{{key: env, operator: In, values: [prod, stage]}}, {{key: tier, operator: DoesNotExist}}]}}}}}}}}\n  \
         - {{name: by-name, port: {port}, protocol: HTTP, hostname: name.test, allowedRoutes: {{namespaces: {{from: Selector, selector: {{matchLabels: {{kubernetes.io/metadata.name: ghost}}}}}}}}}}\n---\n"
    );
    let mut objects = String::from(CLASS);
    objects += &gateway;
    objects += GRANT;
    objects += &service_yaml("infra", "web", &[a.addr]);
    for ns in ["blue", "red", "ghost"] {
        objects += &route(ns, ns, "blue-team", "", &format!("/{ns}"), "web");
        objects += &route(
            ns,
            &format!("{ns}-prod"),
            "prod",
            "",
            &format!("/{ns}"),
            "web",
        );
        objects += &route(
            ns,
            &format!("{ns}-name"),
            "by-name",
            "",
            &format!("/{ns}"),
            "web",
        );
    }
    // `ghost` has no Namespace object: only its name label.
    let labels = |blue: &str| {
        namespace("blue", blue) + &namespace("red", "team: red, env: prod, tier: edge")
    };
    let srv = TestServer::start_ports(
        &[
            ("gw.yaml", objects.clone()),
            ("ns.yaml", labels("team: blue, env: prod")),
        ],
        0,
        8443,
        |_| {},
    )
    .await;

    for (host, path, want) in [
        ("team.test", "/blue", 200),
        ("team.test", "/red", 404),
        ("team.test", "/ghost", 404),
        ("prod.test", "/blue", 200),
        ("prod.test", "/red", 404), // has `tier`
        ("prod.test", "/ghost", 404),
        ("name.test", "/ghost", 200),
        ("name.test", "/blue", 404),
    ] {
        let (status, body) = http_get(srv.port(port), host, path).await;
        assert_eq!(status, want, "{host}{path}: {body}");
        if want == 200 {
            assert_eq!(body.lines().next(), Some("a"));
        }
    }

    // Status and `check` say the same: attached counts and the refusal reason.
    let report = wsgate::check::check(srv.dir.path(), &wsgate::translate::Options::default());
    let text = wsgate::check::render(&report);
    let r = &report.gateway_api;
    assert_eq!(attached(r, "blue-team"), 1, "{text}");
    assert_eq!(attached(r, "prod"), 1, "{text}");
    assert_eq!(attached(r, "by-name"), 1, "{text}");
    assert!(
        text.contains("HTTPRoute red/red: spec.parentRefs[0]: not attached to Gateway infra/gw sectionName blue-team: listener blue-team does not allow routes from namespace red"),
        "{text}"
    );
    let red = r.routes.iter().find(|x| x.object.name == "red").unwrap();
    let acc = &red.parents[0].conditions[0];
    assert_eq!(
        (acc.type_.as_str(), acc.is_true(), acc.reason.as_str()),
        ("Accepted", false, "NotAllowedByListeners")
    );

    // Labels change: blue leaves the team, red joins it; the table follows without a restart.
    srv.write("ns.yaml", &labels("team: green, env: prod"));
    eventually(&srv, port, "team.test", "/blue", 404).await;
    assert_eq!(http_get(srv.port(port), "prod.test", "/blue").await.0, 200);
    srv.write(
        "ns.yaml",
        &(namespace("blue", "team: green, env: dev") + &namespace("red", "team: blue")),
    );
    eventually(&srv, port, "team.test", "/red", 200).await;
    eventually(&srv, port, "prod.test", "/blue", 404).await; // `env: dev` is not In [prod, stage]
}

/// A selector the API server's validation would refuse makes its listener invalid, naming the
/// field; in standalone mode that error refuses the whole file (never half-applied).
#[test]
fn an_invalid_selector_is_an_error_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let gw = "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: gw, namespace: infra}\nspec:\n  gatewayClassName: wsgate\n  listeners:\n  \
              - {name: ok, port: 8080, protocol: HTTP}\n  \
              - {name: broken, port: 8080, protocol: HTTP, hostname: broken.test, allowedRoutes: {namespaces: {from: Selector, selector: {matchExpressions: [{key: env, operator: Gt, values: [\"1\"]}]}}}}\n  \
              - {name: missing, port: 8080, protocol: HTTP, hostname: missing.test, allowedRoutes: {namespaces: {from: Selector}}}\n---\n";
    std::fs::write(dir.path().join("gw.yaml"), format!("{CLASS}{gw}")).unwrap();
    let report = wsgate::check::check(dir.path(), &wsgate::translate::Options::default());
    let text = wsgate::check::render(&report);
    assert!(report.has_errors(), "{text}");
    assert!(
        text.contains("Gateway.gateway.networking.k8s.io infra/gw: spec.listeners[1]: allowedRoutes.namespaces.selector.matchExpressions[0].operator \"Gt\" is not one of In, NotIn, Exists, DoesNotExist; listener ignored"),
        "{text}"
    );
    assert!(
        text.contains("spec.listeners[2]: allowedRoutes.namespaces.selector is required when from is Selector; listener ignored"),
        "{text}"
    );
    let gw = &report.gateway_api.gateways[0];
    for name in ["broken", "missing"] {
        let l = gw.listeners.iter().find(|l| l.name == name).unwrap();
        let c = &l.conditions[0];
        assert_eq!(
            (c.type_.as_str(), c.is_true(), c.reason.as_str()),
            ("Accepted", false, "Invalid"),
            "{name}"
        );
    }
}

#[tokio::test]
async fn listener_isolation_sends_each_host_to_its_most_specific_listener() {
    let a = http_backend("a").await;
    let port = free_port();
    // The listeners and routes of the conformance suite's GatewayHTTPListenerIsolation, with
    // and without route hostnames (two Gateways would need two addresses; here the route
    // hostnames are on a second port of the same Gateway).
    let (p1, p2) = (port, free_port());
    let mut listeners = String::new();
    for (p, suffix) in [(p1, ""), (p2, "-i")] {
        for (name, host) in [
            ("empty-hostname", ""),
            ("wildcard-example-com", "*.example.com"),
            ("wildcard-foo-example-com", "*.foo.example.com"),
            ("abc-foo-example-com", "abc.foo.example.com"),
        ] {
            let hostname = if host.is_empty() {
                String::new()
            } else {
                format!(", hostname: \"{host}\"")
            };
            listeners +=
                &format!("  - {{name: {name}{suffix}, port: {p}, protocol: HTTP{hostname}}}\n");
        }
    }
    let mut objects = String::from(CLASS);
    objects += &format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: gw, namespace: infra}}\nspec:\n  gatewayClassName: wsgate\n  listeners:\n{listeners}---\n"
    );
    objects += &service_yaml("infra", "web", &[a.addr]);
    let all_hosts =
        "\"bar.com\", \"*.example.com\", \"*.foo.example.com\", \"abc.foo.example.com\"";
    for name in [
        "empty-hostname",
        "wildcard-example-com",
        "wildcard-foo-example-com",
        "abc-foo-example-com",
    ] {
        objects += &route("infra", name, name, "", &format!("/{name}"), "web");
        objects += &route(
            "infra",
            &format!("{name}-i"),
            &format!("{name}-i"),
            all_hosts,
            &format!("/{name}"),
            "web",
        );
    }
    let srv = TestServer::start_ports(&[("gw.yaml", objects)], 0, 8443, |_| {}).await;

    // Host -> the one path (listener) that answers it; every other path is a 404.
    let expected = [
        ("bar.com", "/empty-hostname"),
        ("bar.example.com", "/wildcard-example-com"),
        ("bar.foo.example.com", "/wildcard-foo-example-com"),
        ("abc.foo.example.com", "/abc-foo-example-com"),
    ];
    for p in [p1, p2] {
        for (host, served) in expected {
            for (_, path) in expected {
                let (status, body) = http_get(srv.port(p), host, path).await;
                let want = if path == served { 200 } else { 404 };
                assert_eq!(status, want, "port {p} {host}{path}: {body}");
            }
        }
    }
}
