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

#[test]
fn huge_flag_values_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().to_str().unwrap();
    for (flag, value) in [
        ("--header-timeout", "500000000000y"),
        ("--shutdown-drain", "500000000000y"),
        ("--header-timeout", "721h"),
        ("--max-ejection-percent", "101"),
    ] {
        let (code, out) = wsgate(&["run", "--config", cfg, flag, value]);
        assert_eq!(code, 2, "{flag} {value}: {out}");
        assert!(out.contains(flag), "{flag} {value} named: {out}");
        assert!(!out.contains("panicked"), "{out}");
    }
}

#[test]
fn check_names_out_of_range_and_malformed_values() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.yaml"),
        "apiVersion: wsgate.dev/v1alpha1\nkind: Gateway\nmetadata: {name: gw, namespace: apps}\nspec:\n  \
         listeners: [{name: web, port: 8081}]\n  backendPools: [{name: p, addresses: [{host: 127.0.0.1, port: 9}]}]\n  \
         backendSettings: [{name: s, requestTimeout: 18446744073709551615ms, probe: hc, \
         loadBalancing: {policy: ConsistentHash, hashOn: {header: \"X\\nY\"}}}]\n  \
         probes: [{name: hc, path: \"/health z\", host: \"a\\r\\nX-Evil: 1\"}]\n  \
         routingRules: [{name: r, listeners: [web], backendPool: p, backendSettings: s, pathNormalization: Sometimes}]\n---\n\
         apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: ing\n  namespace: apps\n  annotations:\n    \
         wsgate.dev/load-balancing: \"hash-header:X\\nY\"\n    wsgate.dev/max-session-duration: 9999999h\n    \
         wsgate.dev/health-probe-path: \"/a b\"\n    wsgate.dev/path-normalization: maybe\n\
         spec:\n  ingressClassName: wsgate\n  defaultBackend: {service: {name: s, port: {number: 80}}}\n",
    )
    .unwrap();
    let (code, out) = wsgate(&["check", dir.path().to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    for needle in [
        "spec.backendSettings[0].requestTimeout: invalid duration",
        "spec.backendSettings[0].loadBalancing: invalid header name",
        "spec.probes[0].path: invalid probe path",
        "spec.probes[0].host: invalid probe hostname",
        "spec.routingRules[0].pathNormalization: invalid value",
        "metadata.annotations[wsgate.dev/load-balancing]: invalid header name",
        "metadata.annotations[wsgate.dev/max-session-duration]: duration \"9999999h\" exceeds the maximum",
        "metadata.annotations[wsgate.dev/health-probe-path]: invalid probe path",
        "metadata.annotations[wsgate.dev/path-normalization]: invalid value",
    ] {
        assert!(out.contains(needle), "{needle}\n{out}");
    }
}
