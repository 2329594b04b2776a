//! `--gateway-services` in translation: two Gateways listening on the same port are served on
//! pod ports of their own, each with only its own routes; the ports are the same for any
//! object order, a port a Gateway's Service records is kept, a redirect names the listener port
//! (not the pod port), and without the option (file mode) a listener port is the port bound.

use wsgate::ir::{Redirect, RouteTable};

use wsgate::source::files;
use wsgate::translate::gateway_ports::{GatewayPorts, PortRange, service_name};
use wsgate::translate::{self, Options, Translated};

const CLASS: &str = "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: wsgate}\nspec: {controllerName: wsgate.dev/gateway-controller}\n---\n";

fn gateway(name: &str, created: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: {name}, namespace: apps, creationTimestamp: \"{created}\"}}\nspec:\n  gatewayClassName: wsgate\n  listeners:\n  - {{name: web, port: 80, protocol: HTTP}}\n---\n"
    )
}

fn route(name: &str, gateway: &str, backend: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {name}, namespace: apps}}\nspec:\n  parentRefs: [{{name: {gateway}}}]\n  rules:\n  - backendRefs: [{{name: {backend}, port: 80}}]\n---\n"
    )
}

fn redirect_route(gateway: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: moved, namespace: apps}}\nspec:\n  parentRefs: [{{name: {gateway}}}]\n  rules:\n  - matches: [{{path: {{type: PathPrefix, value: /old}}}}]\n    filters: [{{type: RequestRedirect, requestRedirect: {{hostname: new.example.com}}}}]\n---\n"
    )
}

fn service(name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: apps}}\nspec:\n  ports: [{{name: http, port: 80}}]\n---\n"
    )
}

/// The Service wsgate would have written (in its namespace) for Gateway `apps/gw`, recording
/// `target` for port 80.
fn recorded_service(gw: &str, target: u16) -> String {
    let name = service_name("apps", gw);
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: wsgate-system\n  labels: {{app.kubernetes.io/managed-by: wsgate, wsgate.dev/gateway: {gw}, wsgate.dev/gateway-namespace: apps}}\nspec:\n  ports: [{{name: tcp-80, port: 80, targetPort: {target}}}]\n---\n"
    )
}

fn options() -> Options {
    Options {
        gateway_ports: Some(GatewayPorts {
            range: PortRange {
                first: 21000,
                last: 21009,
            },
            reserved: vec![9090],
        }),
        ..Options::default()
    }
}

fn translate_docs(docs: &[String], options: &Options) -> Translated {
    let mut loaded = files::Loaded::default();
    files::parse_into("t.yaml", &format!("{CLASS}{}", docs.concat()), &mut loaded);
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    // What the controller's reflector of the Gateways' Services would hold.
    let mut snapshot = loaded.snapshot;
    snapshot.gateway_api.gateway_services = snapshot
        .services
        .iter()
        .filter(|s| s.metadata.namespace.as_deref() == Some("wsgate-system"))
        .cloned()
        .collect();
    translate::translate(&snapshot, options)
}

/// (listener port, pod port) of Gateway `name`.
fn service_ports(t: &Translated, name: &str) -> Vec<(u16, u16)> {
    t.gateway_api
        .gateways
        .iter()
        .find(|g| g.object.name == name)
        .unwrap_or_else(|| panic!("no Gateway {name}"))
        .service_ports
        .clone()
}

/// The backend ids of the routes served on table port `port`.
fn backends_on(table: &RouteTable, port: u16) -> Vec<String> {
    let l = table
        .listeners
        .iter()
        .find(|l| l.port == port)
        .unwrap_or_else(|| panic!("no listener on {port}"));
    l.virtual_hosts
        .iter()
        .flat_map(|v| v.routes.iter())
        .map(|r| table.backends[r.backend].id.to_string())
        .collect()
}

/// The redirect of the route served on `port`.
fn redirect_on(t: &Translated, port: u16) -> Redirect {
    let l = t
        .table
        .listeners
        .iter()
        .find(|l| l.port == port)
        .expect("a listener on the port");
    l.virtual_hosts
        .iter()
        .flat_map(|v| v.routes.iter())
        .find_map(|r| r.filters.as_ref().and_then(|f| f.redirect.clone()))
        .expect("the redirect route")
}

fn two_gateways() -> Vec<String> {
    vec![
        gateway("one", "2026-01-01T00:00:00Z"),
        gateway("two", "2026-01-02T00:00:00Z"),
        route("to-a", "one", "a"),
        route("to-b", "two", "b"),
        service("a"),
        service("b"),
    ]
}

#[test]
fn two_gateways_on_port_80_get_their_own_pod_ports_and_routes() {
    let t = translate_docs(&two_gateways(), &options());
    assert!(!t.has_errors(), "{:?}", t.diagnostics);
    let one = service_ports(&t, "one");
    let two = service_ports(&t, "two");
    assert_eq!((one.len(), two.len()), (1, 1));
    assert_eq!((one[0].0, two[0].0), (80, 80));
    assert_ne!(one[0].1, two[0].1);
    for (_, p) in one.iter().chain(&two) {
        assert!((21000..=21009).contains(p), "{p}");
    }
    assert_eq!(backends_on(&t.table, one[0].1), vec!["apps/a:80"]);
    assert_eq!(backends_on(&t.table, two[0].1), vec!["apps/b:80"]);
    assert!(
        t.table.listeners.iter().all(|l| l.port != 80),
        "port 80 itself is not bound"
    );
    // Both Gateways are accepted and programmed (the controller adds the address).
    for g in &t.gateway_api.gateways {
        assert!(
            g.conditions.iter().all(|c| c.is_true()),
            "{:?}",
            g.conditions
        );
    }
}

#[test]
fn the_same_ports_for_any_order_and_kept_when_recorded() {
    let mut docs = two_gateways();
    let first = translate_docs(&docs, &options());
    docs.reverse();
    let reversed = translate_docs(&docs, &options());
    for name in ["one", "two"] {
        assert_eq!(service_ports(&first, name), service_ports(&reversed, name));
    }
    // A port the Gateway's Service records wins over the computed one; a Service of that name
    // without wsgate's labels is no record.
    let computed = service_ports(&first, "two")[0].1;
    let other = if computed == 21009 { 21008 } else { 21009 };
    let mut with_record = two_gateways();
    with_record.push(recorded_service("two", other));
    let t = translate_docs(&with_record, &options());
    assert_eq!(service_ports(&t, "two"), vec![(80, other)]);
    let mut foreign = two_gateways();
    foreign.push(recorded_service("two", other).replace("wsgate.dev/gateway: two, ", ""));
    let t = translate_docs(&foreign, &options());
    assert_eq!(service_ports(&t, "two"), vec![(80, computed)]);
}

#[test]
fn a_full_range_leaves_the_newest_listener_unserved_with_a_reason() {
    let mut opts = options();
    opts.gateway_ports = Some(GatewayPorts {
        range: PortRange {
            first: 21000,
            last: 21000,
        },
        reserved: Vec::new(),
    });
    let t = translate_docs(&two_gateways(), &opts);
    assert_eq!(service_ports(&t, "one"), vec![(80, 21000)]);
    assert_eq!(service_ports(&t, "two"), vec![]);
    let two = t
        .gateway_api
        .gateways
        .iter()
        .find(|g| g.object.name == "two")
        .expect("two");
    let accepted = two.listeners[0]
        .conditions
        .iter()
        .find(|c| c.type_ == "Accepted")
        .expect("Accepted");
    assert!(!accepted.is_true());
    assert_eq!(accepted.reason, "PortUnavailable");
    assert!(
        t.diagnostics
            .iter()
            .any(|d| d.field == "spec.listeners[0].port"
                && d.message.contains("--gateway-port-range")),
        "{:?}",
        t.diagnostics
    );
}

#[test]
fn a_redirect_without_scheme_and_port_names_the_listener_port() {
    let mut docs = two_gateways();
    docs.push(redirect_route("one"));
    let t = translate_docs(&docs, &options());
    let pod = service_ports(&t, "one")[0].1;
    assert_eq!(redirect_on(&t, pod).port, Some(80));
    // File mode: the listener port is bound and the redirect keeps "the listener's port".
    let t = translate_docs(&docs, &Options::default());
    assert_eq!(redirect_on(&t, 80).port, None);
}

#[test]
fn an_https_listener_has_its_certificate_on_the_pod_port() {
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec!["example.org".to_string()])
        .expect("params")
        .self_signed(&key)
        .expect("cert");
    let indent = |pem: &str| -> String { pem.lines().map(|l| format!("    {l}\n")).collect() };
    let secret = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: tls, namespace: apps}}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}---\n",
        indent(&cert.pem()),
        indent(&key.serialize_pem())
    );
    let gw = "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: secure, namespace: apps}\nspec:\n  gatewayClassName: wsgate\n  listeners:\n  - {name: https, port: 443, protocol: HTTPS, hostname: example.org, tls: {certificateRefs: [{name: tls}]}}\n---\n";
    let t = translate_docs(
        &[
            gw.to_string(),
            secret,
            route("r", "secure", "a"),
            service("a"),
        ],
        &options(),
    );
    assert!(!t.has_errors(), "{:?}", t.diagnostics);
    let pod = service_ports(&t, "secure")[0];
    assert_eq!(pod.0, 443);
    let l = t
        .table
        .listeners
        .iter()
        .find(|l| l.port == pod.1)
        .expect("the pod port's listener");
    assert_eq!(l.certificates.len(), 1, "{:?}", l.certificates);
    assert_eq!(l.certificates[0].source, "Secret apps/tls");
    assert!(t.table.listeners.iter().all(|l| l.port != 443));
}
