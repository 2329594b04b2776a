//! Typed backend settings from Gateway `backendSettings`/`probes` and shared value parsers.

use super::diagnostics::{Diagnostics, ObjectRef, apply};
use crate::crd::{BackendSettingsSpec, ProbeSpec};
use crate::ir::{
    BackendProtocol, BackendSettings, HashOn, LoadBalancing, Probe, Redacted, Timeout,
};

/// Parses `HTTP`/`HTTPS` (case-insensitive).
pub(crate) fn parse_protocol(text: &str) -> Result<BackendProtocol, String> {
    match text.to_ascii_uppercase().as_str() {
        "HTTP" => Ok(BackendProtocol::Http),
        "HTTPS" => Ok(BackendProtocol::Https),
        _ => Err(format!("invalid protocol {text:?}; expected HTTP or HTTPS")),
    }
}

/// Parses status code lists such as `200-399,404`.
pub(crate) fn parse_status_codes<'a>(
    items: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<(u16, u16)>, String> {
    let mut out = Vec::new();
    for item in items {
        let item = item.trim();
        let (lo, hi) = item.split_once('-').unwrap_or((item, item));
        let parse = |s: &str| {
            s.trim()
                .parse::<u16>()
                .ok()
                .filter(|c| (100..=599).contains(c))
        };
        match (parse(lo), parse(hi)) {
            (Some(lo), Some(hi)) if lo <= hi => out.push((lo, hi)),
            _ => {
                return Err(format!(
                    "invalid status code range {item:?}; expected e.g. 200-399"
                ));
            }
        }
    }
    if out.is_empty() {
        return Err("no status codes given".into());
    }
    Ok(out)
}

/// A probe request path: starts with `/`, visible ASCII only, a valid request target.
pub(crate) fn parse_probe_path(v: &str) -> Result<String, String> {
    let visible = v.bytes().all(|b| b.is_ascii_graphic());
    if !v.starts_with('/') || !visible || v.parse::<http::uri::PathAndQuery>().is_err() {
        return Err(format!(
            "invalid probe path {v:?}; must start with \"/\" and contain no spaces or control characters"
        ));
    }
    Ok(v.to_string())
}

/// A probe `Host` value: empty (the endpoint's address) or `host[:port]`.
pub(crate) fn parse_probe_host(v: &str) -> Result<String, String> {
    let v = v.trim();
    if v.is_empty() {
        return Ok(String::new());
    }
    crate::http::request::parse_authority(v)
        .map(|_| v.to_string())
        .map_err(|_| format!("invalid probe hostname {v:?}; expected a host name or address"))
}

/// A header name to hash on, lower-cased.
pub(crate) fn parse_header_name(v: &str) -> Result<String, String> {
    http::HeaderName::from_bytes(v.as_bytes())
        .map(|n| n.as_str().to_string())
        .map_err(|_| format!("invalid header name {v:?}"))
}

/// A cookie name (an RFC 9110 token).
pub(crate) fn parse_cookie_name(v: &str) -> Result<String, String> {
    let tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if v.is_empty() || !v.bytes().all(tchar) {
        return Err(format!("invalid cookie name {v:?}"));
    }
    Ok(v.to_string())
}

/// Parses the annotation form of load balancing.
pub(crate) fn parse_lb_annotation(text: &str) -> Result<LoadBalancing, String> {
    let text = text.trim();
    let named = |prefix: &str| {
        text.strip_prefix(prefix)
            .filter(|n| !n.is_empty())
            .map(str::to_string)
    };
    if text == "round-robin" {
        Ok(LoadBalancing::RoundRobin)
    } else if text == "least-connections" {
        Ok(LoadBalancing::LeastConnections)
    } else if text == "hash-source-ip" {
        Ok(LoadBalancing::ConsistentHash(HashOn::SourceIp))
    } else if let Some(h) = named("hash-header:") {
        Ok(LoadBalancing::ConsistentHash(HashOn::Header(
            parse_header_name(&h)?,
        )))
    } else if let Some(c) = named("hash-cookie:") {
        Ok(LoadBalancing::ConsistentHash(HashOn::Cookie(
            parse_cookie_name(&c)?,
        )))
    } else {
        Err(format!(
            "invalid value {text:?}; expected round-robin, least-connections, hash-source-ip, hash-header:NAME or hash-cookie:NAME"
        ))
    }
}

/// Converts a Gateway `backendSettings` entry (`field` is its path) and its probe. Long because
/// it is one validated assignment per field of the contract's `backendSettings`, each naming
/// its field path.
pub(crate) fn from_spec(
    spec: &BackendSettingsSpec,
    probes: &[ProbeSpec],
    secrets: &super::tls::Secrets<'_>,
    field: &str,
    obj: &ObjectRef,
    diags: &mut Diagnostics,
) -> BackendSettings {
    let mut s = BackendSettings::default();
    let f = |name: &str| format!("{field}.{name}");
    if let Some(p) = &spec.protocol {
        apply(
            diags,
            obj,
            &f("protocol"),
            parse_protocol(p),
            &mut s.protocol,
            true,
        );
    }
    if let Some(name) = &spec.ca_secret_name {
        if s.protocol != BackendProtocol::Https {
            diags.warn(
                obj,
                f("caSecretName"),
                "only used with protocol: HTTPS; ignored",
            );
        }
        match secrets.ca_bundle(&obj.namespace, name) {
            Ok(pem) => s.ca_pem = Some(Redacted(pem)),
            Err(e) => diags.error(obj, f("caSecretName"), e),
        }
    }
    let dur = |d: &mut Diagnostics, name: &str, v: &Option<String>, slot: &mut Timeout| {
        if let Some(v) = v {
            apply(d, obj, &f(name), Timeout::parse(v), slot, true);
        }
    };
    dur(
        diags,
        "connectTimeout",
        &spec.connect_timeout,
        &mut s.connect_timeout,
    );
    dur(
        diags,
        "requestTimeout",
        &spec.request_timeout,
        &mut s.request_timeout,
    );
    if let Some(lb) = &spec.load_balancing {
        let parsed = match lb.policy.as_str() {
            "RoundRobin" => Ok(LoadBalancing::RoundRobin),
            "LeastConnections" => Ok(LoadBalancing::LeastConnections),
            "ConsistentHash" => match &lb.hash_on {
                Some(h) => match (&h.cookie, &h.header, h.source_ip) {
                    (Some(c), None, None | Some(false)) => parse_cookie_name(c)
                        .map(|c| LoadBalancing::ConsistentHash(HashOn::Cookie(c))),
                    (None, Some(hd), None | Some(false)) => parse_header_name(hd)
                        .map(|h| LoadBalancing::ConsistentHash(HashOn::Header(h))),
                    (None, None, Some(true)) => Ok(LoadBalancing::ConsistentHash(HashOn::SourceIp)),
                    _ => Err("hashOn needs exactly one of cookie, header, sourceIP".to_string()),
                },
                None => Err("ConsistentHash needs hashOn".to_string()),
            },
            other => Err(format!(
                "invalid policy {other:?}; expected RoundRobin, LeastConnections or ConsistentHash"
            )),
        };
        apply(
            diags,
            obj,
            &f("loadBalancing"),
            parsed,
            &mut s.load_balancing,
            true,
        );
    }
    if let Some(ws) = &spec.websocket {
        let w = &mut s.websocket;
        if let Some(e) = ws.enabled {
            w.enabled = e;
        }
        dur(
            diags,
            "websocket.pingInterval",
            &ws.ping_interval,
            &mut w.ping_interval,
        );
        dur(
            diags,
            "websocket.idleTimeout",
            &ws.idle_timeout,
            &mut w.idle_timeout,
        );
        dur(
            diags,
            "websocket.maxSessionDuration",
            &ws.max_session_duration,
            &mut w.max_session_duration,
        );
        if let Some(m) = ws.max_message_bytes {
            w.max_message_bytes = m;
        }
        if let Some(m) = ws.max_connections {
            w.max_connections = m;
        }
    }
    if let Some(c) = &spec.cache {
        s.cache = c.enabled;
    }
    if let Some(c) = &spec.affinity_cookie {
        s.affinity = Some(super::affinity::from_spec(
            c,
            &f("affinityCookie"),
            obj,
            diags,
        ));
    }
    if let Some(name) = &spec.probe {
        match probes.iter().position(|p| &p.name == name) {
            Some(i) => {
                s.probe = Some(probe_from_spec(
                    &probes[i],
                    &format!("spec.probes[{i}]"),
                    obj,
                    diags,
                ))
            }
            None => diags.error(
                obj,
                f("probe"),
                format!("no probe named {name:?} in spec.probes"),
            ),
        }
    }
    s
}

fn probe_from_spec(
    spec: &ProbeSpec,
    field: &str,
    obj: &ObjectRef,
    diags: &mut Diagnostics,
) -> Probe {
    let mut p = Probe::default();
    let f = |name: &str| format!("{field}.{name}");
    if let Some(v) = &spec.protocol {
        apply(
            diags,
            obj,
            &f("protocol"),
            parse_protocol(v),
            &mut p.protocol,
            true,
        );
    }
    if let Some(v) = &spec.path {
        apply(
            diags,
            obj,
            &f("path"),
            parse_probe_path(v),
            &mut p.path,
            true,
        );
    }
    if let Some(v) = &spec.host {
        apply(
            diags,
            obj,
            &f("host"),
            parse_probe_host(v),
            &mut p.host,
            true,
        );
    }
    if let Some(v) = spec.port {
        p.port = v;
    }
    for (name, v, slot) in [
        ("interval", &spec.interval, &mut p.interval),
        ("timeout", &spec.timeout, &mut p.timeout),
    ] {
        if let Some(v) = v {
            apply(diags, obj, &f(name), Timeout::parse(v), slot, true);
        }
    }
    if let Some(v) = spec.unhealthy_threshold {
        p.unhealthy_threshold = v.max(1);
    }
    if let Some(v) = spec.healthy_threshold {
        p.healthy_threshold = v.max(1);
    }
    if let Some(m) = &spec.match_ {
        let codes = parse_status_codes(m.status_codes.iter().map(String::as_str));
        apply(
            diags,
            obj,
            &f("match.statusCodes"),
            codes,
            &mut p.status_codes,
            true,
        );
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_values_are_validated() {
        assert!(parse_probe_path("/healthz?x=1").is_ok());
        for bad in ["healthz", "/health z", "/a\r\nX: y", "/a\t", ""] {
            assert!(parse_probe_path(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_probe_host("").unwrap(), "");
        assert!(parse_probe_host("svc.ns:8080").is_ok());
        for bad in ["a\r\nX: y", "a b", "a/b"] {
            assert!(parse_probe_host(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn status_codes() {
        assert_eq!(
            parse_status_codes(["200-399", "404"]),
            Ok(vec![(200, 399), (404, 404)])
        );
        assert!(parse_status_codes(["399-200"]).is_err());
        assert!(parse_status_codes(["abc"]).is_err());
        assert!(parse_status_codes([]).is_err());
    }

    #[test]
    fn lb_annotation() {
        assert_eq!(
            parse_lb_annotation("least-connections"),
            Ok(LoadBalancing::LeastConnections)
        );
        assert_eq!(
            parse_lb_annotation("hash-header:X-User"),
            Ok(LoadBalancing::ConsistentHash(HashOn::Header(
                "x-user".into()
            )))
        );
        assert!(parse_lb_annotation("hash-header:").is_err());
        assert!(parse_lb_annotation("hash-header:X\nY").is_err());
        assert!(parse_lb_annotation("hash-header:X Y").is_err());
        assert!(parse_lb_annotation("hash-cookie:a;b").is_err());
        assert!(parse_lb_annotation("random").is_err());
    }
}
