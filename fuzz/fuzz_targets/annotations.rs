//! Every `wsgate.dev/*` annotation with any value, through the same YAML loading and translation
//! as `wsgate check`: never panics; an invalid value is a diagnostic.
#![no_main]

use libfuzzer_sys::fuzz_target;

const NAMES: &[&str] = &[
    "websocket",
    "connect-timeout",
    "request-timeout",
    "ping-interval",
    "idle-timeout",
    "max-session-duration",
    "max-message-bytes",
    "max-connections",
    "load-balancing",
    "backend-protocol",
    "health-probe-path",
    "health-probe-interval",
    "health-probe-timeout",
    "health-probe-unhealthy-threshold",
    "health-probe-healthy-threshold",
    "health-probe-status-codes",
    "health-probe-hostname",
    "health-probe-port",
    "allowed-origins",
    "ip-allow",
    "ip-deny",
    "rate-limit",
    "cache",
    "path-normalization",
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let Ok(value) = std::str::from_utf8(rest) else {
        return;
    };
    let name = NAMES[usize::from(pick) % NAMES.len()];
    // JSON strings are YAML strings: any value, quoted exactly.
    let quoted = serde_json::to_string(value).unwrap_or_default();
    let yaml = format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: i\n  namespace: n\n  \
         annotations:\n    wsgate.dev/health-probe-path: /h\n    wsgate.dev/{name}: {quoted}\n\
         spec:\n  ingressClassName: wsgate\n  defaultBackend: {{service: {{name: s, port: {{number: 80}}}}}}\n"
    );
    let mut loaded = wsgate::source::files::Loaded::default();
    wsgate::source::files::parse_into("fuzz.yaml", &yaml, &mut loaded);
    // Characters YAML does not allow in a stream (C1 controls, ...) fail loading, correctly.
    if !loaded.errors.is_empty() {
        return;
    }
    let t = wsgate::translate::translate(&loaded.snapshot, &wsgate::translate::Options::default());
    assert!(t.table.validate().is_ok());
});
