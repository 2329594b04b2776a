//! The `wsgate` binary: `check` reports object and field and exits 1 on errors; `crds` matches
//! the committed `crds/` (regenerate with `cargo run -- crds gateways > crds/gateways.wsgate.dev.yaml`
//! and `cargo run -- crds websocketpolicies > crds/websocketpolicies.wsgate.dev.yaml`).

use std::process::Command;

fn wsgate(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_wsgate"))
        .args(args)
        .output()
        .expect("runs");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn crds_dir_is_current() {
    let (code, out) = wsgate(&["crds", "gateways"]);
    assert_eq!(code, 0);
    let committed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/crds/gateways.wsgate.dev.yaml"
    ))
    .unwrap();
    assert!(
        committed == out,
        "crds/ is stale: run `cargo run -- crds gateways > crds/gateways.wsgate.dev.yaml`"
    );
    assert!(out.contains("shortNames:\n    - wsgw"), "{out}");
    let (code, policy) = wsgate(&["crds", "websocketpolicies"]);
    assert_eq!(code, 0);
    let committed_policy = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/crds/websocketpolicies.wsgate.dev.yaml"
    ))
    .unwrap();
    assert!(
        committed_policy == policy,
        "crds/ is stale: run `cargo run -- crds websocketpolicies > crds/websocketpolicies.wsgate.dev.yaml`"
    );
    assert!(policy.contains("shortNames:\n    - wspol"), "{policy}");
    let (code, all) = wsgate(&["crds"]);
    assert_eq!(code, 0);
    assert_eq!(all, committed + &committed_policy);
}

#[test]
fn check_accepts_the_examples() {
    let (code, out) = wsgate(&[
        "check",
        concat!(env!("CARGO_MANIFEST_DIR"), "/examples/config"),
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("Prefix /echo -> demo/echo/echo:ws [127.0.0.1:9001]"),
        "{out}"
    );
    assert!(out.contains("0 error(s)"), "{out}");
}

#[test]
fn check_names_object_and_field_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.yaml"),
        r#"apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: chat, namespace: apps, annotations: {wsgate.dev/idle-timeout: soon}}
spec:
  ingressClassName: wsgate
  rules:
    - http:
        paths:
          - {path: ws, pathType: Prefix, backend: {service: {name: chat, port: {number: 80}}}}
---
apiVersion: wsgate.dev/v1alpha1
kind: Gateway
metadata: {name: gw, namespace: apps}
spec:
  listeners: [{name: web, port: 8081}]
  backendPools: [{name: p, addresses: [{host: 127.0.0.1, port: 9}]}]
  routingRules: [{name: r, listeners: [web], backendPool: nope}]
---
apiVersion: wsgate.dev/v1alpha1
kind: Gateway
metadata: {name: typo, namespace: apps}
spec:
  listeners: [{name: web, port: "eighty"}]
"#,
    )
    .unwrap();
    let (code, out) = wsgate(&["check", dir.path().to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("error: Ingress apps/chat: spec.rules[0].http.paths[0].path: path \"ws\" must start with \"/\""),
        "{out}"
    );
    assert!(
        out.contains("warning: Ingress apps/chat: metadata.annotations[wsgate.dev/idle-timeout]: invalid duration \"soon\""),
        "{out}"
    );
    assert!(
        out.contains("error: Gateway apps/gw: spec.routingRules[0].backendPool: no backend pool named \"nope\""),
        "{out}"
    );
    assert!(
        out.contains("document 3 (Gateway apps/typo): spec.listeners[0].port: invalid type"),
        "{out}"
    );
}

#[test]
fn run_refuses_an_invalid_config_at_startup() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("x.yaml"), "kind: Ingress\n").unwrap();
    let (code, out) = wsgate(&[
        "run",
        "--config",
        dir.path().to_str().unwrap(),
        "--http-port",
        "0",
        "--admin-port",
        "0",
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("apiVersion and kind are required"), "{out}");
}
