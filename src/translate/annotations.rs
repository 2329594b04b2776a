//! Ingress annotations (`wsgate.dev/*`) parsed into typed backend settings.
//!
//! An invalid value is ignored with a warning naming the annotation; values are never copied into
//! any configuration text.

use super::diagnostics::{Diagnostics, ObjectRef, apply};
use super::settings::{parse_lb_annotation, parse_protocol, parse_status_codes};
use crate::ir::{BackendSettings, Probe, Timeout};
use std::collections::BTreeMap;

/// Prefix of every wsgate annotation.
pub const ANNOTATION_PREFIX: &str = "wsgate.dev/";

fn parse_bool(v: &str) -> Result<bool, String> {
    match v.trim() {
        "true" => Ok(true),
        "false" => Ok(false),
        other => Err(format!("invalid value {other:?}; expected true or false")),
    }
}

fn parse_int<T: std::str::FromStr>(v: &str) -> Result<T, String> {
    v.trim()
        .parse()
        .map_err(|_| format!("invalid value {v:?}; expected a non-negative integer"))
}

/// Reads every `wsgate.dev/` annotation of an Ingress into settings, warning on bad values.
/// Long because it is the annotation table: one match arm per annotation of the API contract,
/// read top to bottom against README's table.
pub(crate) fn settings_from(
    annotations: Option<&BTreeMap<String, String>>,
    obj: &ObjectRef,
    diags: &mut Diagnostics,
) -> BackendSettings {
    let mut s = BackendSettings::default();
    let mut probe = Probe::default();
    let mut probe_set = false;
    for (key, value) in annotations.into_iter().flatten() {
        let Some(name) = key.strip_prefix(ANNOTATION_PREFIX) else {
            continue;
        };
        let field = super::text::AnnotationField(key);
        let d = &mut *diags;
        let ws = &mut s.websocket;
        match name {
            "websocket" => apply(d, obj, &field, parse_bool(value), &mut ws.enabled, false),
            "connect-timeout" => apply(
                d,
                obj,
                &field,
                Timeout::parse(value),
                &mut s.connect_timeout,
                false,
            ),
            "request-timeout" => apply(
                d,
                obj,
                &field,
                Timeout::parse(value),
                &mut s.request_timeout,
                false,
            ),
            "ping-interval" => apply(
                d,
                obj,
                &field,
                Timeout::parse(value),
                &mut ws.ping_interval,
                false,
            ),
            "idle-timeout" => apply(
                d,
                obj,
                &field,
                Timeout::parse(value),
                &mut ws.idle_timeout,
                false,
            ),
            "max-session-duration" => apply(
                d,
                obj,
                &field,
                Timeout::parse(value),
                &mut ws.max_session_duration,
                false,
            ),
            "max-message-bytes" => apply(
                d,
                obj,
                &field,
                parse_int(value),
                &mut ws.max_message_bytes,
                false,
            ),
            "max-connections" => apply(
                d,
                obj,
                &field,
                parse_int(value),
                &mut ws.max_connections,
                false,
            ),
            "load-balancing" => apply(
                d,
                obj,
                &field,
                parse_lb_annotation(value),
                &mut s.load_balancing,
                false,
            ),
            // HTTPS backends are verified against the bundled public roots.
            "backend-protocol" => apply(
                d,
                obj,
                &field,
                parse_protocol(value),
                &mut s.protocol,
                false,
            ),
            "health-probe-path" => {
                probe_set = true;
                let checked = super::settings::parse_probe_path(value);
                apply(d, obj, &field, checked, &mut probe.path, false);
            }
            "health-probe-interval" => apply(
                d,
                obj,
                &field,
                Timeout::parse(value),
                &mut probe.interval,
                false,
            ),
            "health-probe-timeout" => apply(
                d,
                obj,
                &field,
                Timeout::parse(value),
                &mut probe.timeout,
                false,
            ),
            "health-probe-unhealthy-threshold" => apply(
                d,
                obj,
                &field,
                parse_int(value).map(|v: u32| v.max(1)),
                &mut probe.unhealthy_threshold,
                false,
            ),
            "health-probe-healthy-threshold" => apply(
                d,
                obj,
                &field,
                parse_int(value).map(|v: u32| v.max(1)),
                &mut probe.healthy_threshold,
                false,
            ),
            "health-probe-status-codes" => apply(
                d,
                obj,
                &field,
                parse_status_codes(value.split(',')),
                &mut probe.status_codes,
                false,
            ),
            "health-probe-hostname" => apply(
                d,
                obj,
                &field,
                super::settings::parse_probe_host(value),
                &mut probe.host,
                false,
            ),
            "health-probe-port" => apply(d, obj, &field, parse_int(value), &mut probe.port, false),
            "cache" => apply(d, obj, &field, parse_bool(value), &mut s.cache, false),
            // Read by `firewall::from_annotations`.
            "allowed-origins" | "ip-allow" | "ip-deny" | "rate-limit" => {}
            // Read by `affinity::from_annotations`.
            "affinity"
            | "affinity-cookie-name"
            | "affinity-cookie-max-age"
            | "affinity-cookie-path"
            | "affinity-cookie-samesite" => {}
            // Read by `keep_original_path`.
            "path-normalization" => {}
            _ => d.warn(
                obj,
                field.to_string(),
                format!("unknown annotation {key:?}; ignored"),
            ),
        }
    }
    s.affinity = super::affinity::from_annotations(annotations, obj, diags);
    if probe_set {
        s.probe = Some(probe);
    } else if annotations
        .into_iter()
        .flatten()
        .any(|(k, _)| k.starts_with("wsgate.dev/health-probe-"))
    {
        diags.warn(
            obj,
            "metadata.annotations",
            "health-probe-* annotations need wsgate.dev/health-probe-path to enable the probe; ignored",
        );
    }
    s
}

/// `wsgate.dev/path-normalization`: `normalize` (default: the backend receives the normalised
/// path) or `keep-original` (the backend receives the path as sent; matching still uses the
/// normalised one). Returns whether the original is kept; an invalid value warns.
pub(crate) fn keep_original_path(
    annotations: Option<&BTreeMap<String, String>>,
    obj: &ObjectRef,
    diags: &mut Diagnostics,
) -> bool {
    let key = "wsgate.dev/path-normalization";
    let Some(value) = annotations.and_then(|a| a.get(key)) else {
        return false;
    };
    let mut keep = false;
    let parsed = parse_path_normalization(value);
    let field = super::text::AnnotationField(key);
    apply(diags, obj, &field, parsed, &mut keep, false);
    keep
}

/// Parses a path normalisation mode (`normalize` / `keep-original`, any case, also the Gateway
/// spellings `Normalize` / `KeepOriginal`) into "keep the original path".
pub(crate) fn parse_path_normalization(v: &str) -> Result<bool, String> {
    match v.trim().to_ascii_lowercase().as_str() {
        "normalize" => Ok(false),
        "keep-original" | "keeporiginal" => Ok(true),
        other => Err(format!(
            "invalid value {other:?}; expected normalize or keep-original"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{HashOn, LoadBalancing};

    fn parse(pairs: &[(&str, &str)]) -> (BackendSettings, Vec<String>) {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut d = Diagnostics::default();
        let s = settings_from(
            Some(&map),
            &ObjectRef::new("Ingress", Some("ns"), Some("x")),
            &mut d,
        );
        (s, d.into_vec().into_iter().map(|d| d.to_string()).collect())
    }

    #[test]
    fn valid_values_are_typed() {
        let (s, w) = parse(&[
            ("wsgate.dev/request-timeout", "2m"),
            ("wsgate.dev/ping-interval", "0s"),
            ("wsgate.dev/max-message-bytes", "1048576"),
            ("wsgate.dev/load-balancing", "hash-cookie:sid"),
            ("wsgate.dev/websocket", "false"),
            ("kubernetes.io/ingress.class", "other"),
        ]);
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(s.request_timeout, Timeout::secs(120));
        assert_eq!(s.websocket.ping_interval, Timeout::Off);
        assert_eq!(s.websocket.max_message_bytes, 1_048_576);
        assert!(!s.websocket.enabled);
        assert_eq!(
            s.load_balancing,
            LoadBalancing::ConsistentHash(HashOn::Cookie("sid".into()))
        );
    }

    #[test]
    fn invalid_values_warn_and_keep_defaults() {
        let (s, w) = parse(&[
            ("wsgate.dev/idle-timeout", "soon"),
            ("wsgate.dev/max-connections", "-3"),
            ("wsgate.dev/bogus", "1"),
        ]);
        assert_eq!(s, BackendSettings::default());
        assert_eq!(w.len(), 3, "{w:?}");
        assert!(
            w.iter()
                .any(|m| m.contains("metadata.annotations[wsgate.dev/idle-timeout]"))
        );
        assert!(w.iter().any(|m| m.contains("unknown annotation")));
    }
}
