//! Firewall settings from a Gateway `firewall` block or Ingress annotations.

use super::diagnostics::{Diagnostics, ObjectRef};
use crate::crd::FirewallSpec;
use crate::ir::{Firewall, FirewallRule, HeaderCondition, PathMatch, RateLimit};
use ipnet::IpNet;
use std::collections::BTreeMap;
use std::net::IpAddr;

fn parse_cidr(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
        .map(|n| n.trunc())
        .map_err(|_| format!("invalid CIDR {s:?}; expected e.g. 10.0.0.0/8 or 192.0.2.7"))
}

fn parse_origin(s: &str) -> Result<String, String> {
    let s = s.trim();
    let ok = s == "null"
        || s.split_once("://").is_some_and(|(scheme, rest)| {
            !scheme.is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
                && !rest.is_empty()
                && !rest.contains(['/', '?', '#', ' '])
        });
    if ok {
        Ok(s.to_ascii_lowercase())
    } else {
        Err(format!(
            "invalid origin {s:?}; expected scheme://host[:port], e.g. https://chat.example.com"
        ))
    }
}

/// Ingress annotations `allowed-origins`, `ip-allow`, `ip-deny`, `rate-limit`; an invalid entry is
/// ignored with a warning naming the annotation. `None` when no firewall annotation is set.
pub(crate) fn from_annotations(
    annotations: Option<&BTreeMap<String, String>>,
    obj: &ObjectRef,
    diags: &mut Diagnostics,
) -> Option<Firewall> {
    let annotations = annotations?;
    let get = |k: &str| {
        let key = super::text::annotation_key(k);
        annotations
            .get(&key)
            .map(|v| (super::text::AnnotationField(&key).to_string(), v))
    };
    // The id (the object's name) is made only for an Ingress that has a firewall.
    let mut fw = Firewall::default();
    let mut any = false;
    let list = |v: &str| {
        v.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    if let Some((field, v)) = get("allowed-origins") {
        any = true;
        for item in list(v) {
            match parse_origin(&item) {
                Ok(o) => fw.allowed_origins.push(o),
                Err(e) => diags.warn(obj, &field, format!("{e}; this entry is ignored")),
            }
        }
    }
    for (key, slot) in [("ip-allow", &mut fw.ip_allow), ("ip-deny", &mut fw.ip_deny)] {
        if let Some((field, v)) = get(key) {
            any = true;
            for item in list(v) {
                match parse_cidr(&item) {
                    Ok(n) => slot.push(n),
                    Err(e) => diags.warn(obj, &field, format!("{e}; this entry is ignored")),
                }
            }
        }
    }
    if let Some((field, v)) = get("rate-limit") {
        any = true;
        match v.trim().parse::<u32>() {
            Ok(0) => {}
            Ok(n) => {
                fw.rate_limit = Some(RateLimit {
                    per_second: n,
                    burst: n,
                })
            }
            Err(_) => diags.warn(
                obj,
                &field,
                format!(
                    "invalid value {v:?}; expected requests per second as an integer; no rate limit"
                ),
            ),
        }
    }
    any.then(|| Firewall {
        id: obj.to_string().into(),
        ..fw
    })
}

/// A Gateway's `firewall` block; invalid entries are errors naming their field and are left out.
/// Long because it is one validation step per field of the contract's `firewall` block, each
/// naming its field path; they share only the diagnostics.
pub(crate) fn from_spec(spec: &FirewallSpec, obj: &ObjectRef, diags: &mut Diagnostics) -> Firewall {
    let mut fw = Firewall {
        id: obj.to_string().into(),
        ..Firewall::default()
    };
    for (i, o) in spec.allowed_origins.iter().enumerate() {
        match parse_origin(o) {
            Ok(o) => fw.allowed_origins.push(o),
            Err(e) => diags.error(obj, format!("spec.firewall.allowedOrigins[{i}]"), e),
        }
    }
    for (name, items, slot) in [
        ("ipAllow", &spec.ip_allow, &mut fw.ip_allow),
        ("ipDeny", &spec.ip_deny, &mut fw.ip_deny),
    ] {
        for (i, item) in items.iter().enumerate() {
            match parse_cidr(item) {
                Ok(n) => slot.push(n),
                Err(e) => diags.error(obj, format!("spec.firewall.{name}[{i}]"), e),
            }
        }
    }
    if let Some(rl) = &spec.rate_limit
        && rl.requests_per_second > 0
    {
        let burst = if rl.burst == 0 {
            rl.requests_per_second
        } else {
            rl.burst
        };
        fw.rate_limit = Some(RateLimit {
            per_second: rl.requests_per_second,
            burst,
        });
    }
    for (i, r) in spec.rules.iter().enumerate() {
        let field = format!("spec.firewall.rules[{i}]");
        let allow = match r.action.as_str() {
            "Allow" => true,
            "Deny" => false,
            other => {
                diags.error(
                    obj,
                    format!("{field}.action"),
                    format!("invalid action {other:?}; expected Allow or Deny; rule ignored"),
                );
                continue;
            }
        };
        let m = &r.match_;
        let mut rule = FirewallRule {
            name: r.name.clone(),
            path_prefix: None,
            path: None,
            method: m.method.as_ref().map(|s| s.to_ascii_uppercase()),
            header: None,
            allow,
        };
        let mut bad = false;
        if let Some(p) = &m.path_prefix {
            match PathMatch::prefix(p) {
                Ok(p) => rule.path_prefix = Some(p),
                Err(e) => {
                    diags.error(obj, format!("{field}.match.pathPrefix"), e);
                    bad = true;
                }
            }
        }
        if let Some(p) = &m.path {
            if p.starts_with('/') {
                rule.path = Some(p.clone());
            } else {
                diags.error(
                    obj,
                    format!("{field}.match.path"),
                    format!("path {p:?} must start with \"/\""),
                );
                bad = true;
            }
        }
        if let Some(h) = &m.header {
            if let Some(re) = &h.regex
                && let Err(e) = regex::Regex::new(re)
            {
                diags.error(
                    obj,
                    format!("{field}.match.header.regex"),
                    format!("invalid regular expression: {e}"),
                );
                bad = true;
            }
            if h.value.is_some() == h.regex.is_some() {
                diags.error(
                    obj,
                    format!("{field}.match.header"),
                    "exactly one of value or regex is required",
                );
                bad = true;
            }
            rule.header = Some(HeaderCondition {
                name: h.name.to_ascii_lowercase(),
                value: h.value.clone(),
                regex: h.regex.clone(),
            });
        }
        if rule.path_prefix.is_none()
            && rule.path.is_none()
            && rule.method.is_none()
            && rule.header.is_none()
            && !bad
        {
            diags.error(
                obj,
                format!("{field}.match"),
                "a rule needs at least one of pathPrefix, path, method, header",
            );
            bad = true;
        }
        if bad {
            diags.error(
                obj,
                &field,
                "rule ignored; a firewall with a broken rule would not filter as written",
            );
            continue;
        }
        fw.rules.push(rule);
    }
    fw
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_and_origins() {
        assert_eq!(parse_cidr("10.1.2.3/8").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(parse_cidr("192.0.2.7").unwrap().to_string(), "192.0.2.7/32");
        assert!(parse_cidr("10.0.0.0/33").is_err());
        assert_eq!(
            parse_origin("HTTPS://Chat.Example.com").unwrap(),
            "https://chat.example.com"
        );
        assert!(parse_origin("https://chat.example.com/path").is_err());
        assert!(parse_origin("chat.example.com").is_err());
    }
}
