//! HTTPRoute matches and filters -> the IR's path match, request conditions and route filters.

use crate::gwapi::{HTTPRouteFilter, HTTPRouteMatch, HeaderModifier, PathModifier};
use crate::ir::{
    HeaderEdits, PathChange, PathMatch, Pattern, Redirect, RequestConditions, Rewrite,
    RouteFilters, ValueMatch,
};

/// One match as the IR holds it.
pub(crate) struct Matched {
    pub(crate) path: PathMatch,
    pub(crate) conditions: Option<RequestConditions>,
}

const METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

fn value_match(kind: Option<&str>, value: &str) -> Result<ValueMatch, String> {
    match kind.unwrap_or("Exact") {
        "Exact" => Ok(ValueMatch::Exact(value.to_string())),
        "RegularExpression" => Pattern::new(value).map(ValueMatch::Regex),
        other => Err(format!(
            "type {other:?} is not supported; Exact and RegularExpression are"
        )),
    }
}

/// Converts one match; `Err` names the field (relative to the match) and the reason.
pub(crate) fn convert(m: &HTTPRouteMatch) -> Result<Matched, (String, String)> {
    let path = match &m.path {
        None => PathMatch::Prefix("/".into()),
        Some(p) => {
            let value = p.value.as_deref().unwrap_or("/");
            match p.type_.as_deref().unwrap_or("PathPrefix") {
                "Exact" => PathMatch::exact(value),
                "PathPrefix" => PathMatch::prefix(value),
                "RegularExpression" => PathMatch::regex(value),
                other => Err(format!(
                    "type {other:?} is not supported; Exact, PathPrefix and RegularExpression are"
                )),
            }
            .map_err(|e| ("path".to_string(), e))?
        }
    };
    let mut c = RequestConditions::default();
    if let Some(method) = &m.method {
        if !METHODS.contains(&method.as_str()) {
            return Err(("method".into(), format!("unknown method {method:?}")));
        }
        c.method = Some(method.clone());
    }
    for (i, h) in m.headers.iter().enumerate() {
        let name = h.name.to_ascii_lowercase();
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err((
                format!("headers[{i}].name"),
                format!("invalid header name {:?}", h.name),
            ));
        }
        // The spec: only the first match of a repeated name counts.
        if c.headers.iter().any(|(n, _)| *n == name) {
            continue;
        }
        let v =
            value_match(h.type_.as_deref(), &h.value).map_err(|e| (format!("headers[{i}]"), e))?;
        c.headers.push((name, v));
    }
    for (i, q) in m.query_params.iter().enumerate() {
        if c.query.iter().any(|(n, _)| *n == q.name) {
            continue;
        }
        let v = value_match(q.type_.as_deref(), &q.value)
            .map_err(|e| (format!("queryParams[{i}]"), e))?;
        c.query.push((q.name.clone(), v));
    }
    let conditions = (c != RequestConditions::default()).then_some(c);
    Ok(Matched { path, conditions })
}

fn edits(m: &HeaderModifier) -> Result<HeaderEdits, String> {
    let check = |n: &str| {
        http::HeaderName::from_bytes(n.as_bytes())
            .map(|h| h.as_str().to_string())
            .map_err(|_| format!("invalid header name {n:?}"))
    };
    let pair = |h: &crate::gwapi::HeaderValue| -> Result<(String, String), String> {
        http::HeaderValue::from_str(&h.value)
            .map_err(|_| format!("invalid value for header {:?}", h.name))?;
        Ok((check(&h.name)?, h.value.clone()))
    };
    Ok(HeaderEdits {
        set: m.set.iter().map(pair).collect::<Result<_, _>>()?,
        add: m.add.iter().map(pair).collect::<Result<_, _>>()?,
        remove: m
            .remove
            .iter()
            .map(|n| check(n))
            .collect::<Result<_, _>>()?,
    })
}

fn path_change(p: &PathModifier, matched: &PathMatch) -> Result<PathChange, String> {
    match p.type_.as_str() {
        "ReplaceFullPath" => {
            let v = p.replace_full_path.clone().unwrap_or_else(|| "/".into());
            PathMatch::exact(&v)?;
            Ok(PathChange::Full(v))
        }
        "ReplacePrefixMatch" => {
            let PathMatch::Prefix(prefix) = matched else {
                return Err("ReplacePrefixMatch needs a PathPrefix match".into());
            };
            let v = p.replace_prefix_match.clone().unwrap_or_else(|| "/".into());
            PathMatch::exact(&v)?;
            Ok(PathChange::Prefix {
                matched: prefix.clone(),
                replacement: v,
            })
        }
        other => Err(format!(
            "path type {other:?} is not supported; ReplaceFullPath and ReplacePrefixMatch are"
        )),
    }
}

/// Converts a rule's filters for one of its matches (`ReplacePrefixMatch` depends on it).
/// `Err` names the filter index and the reason. One arm per filter type of the spec, so its
/// length follows the spec's list.
pub(crate) fn filters(
    list: &[HTTPRouteFilter],
    matched: &PathMatch,
) -> Result<Option<RouteFilters>, (usize, String)> {
    let mut f = RouteFilters::default();
    for (i, filter) in list.iter().enumerate() {
        let e = |m: String| (i, m);
        match filter.type_.as_str() {
            "RequestHeaderModifier" => {
                if let Some(m) = &filter.request_header_modifier {
                    f.request_headers = edits(m).map_err(e)?;
                }
            }
            "ResponseHeaderModifier" => {
                if let Some(m) = &filter.response_header_modifier {
                    f.response_headers = edits(m).map_err(e)?;
                }
            }
            "RequestRedirect" => {
                let r = filter
                    .request_redirect
                    .as_ref()
                    .ok_or_else(|| e("requestRedirect is required".into()))?;
                let status = r.status_code.unwrap_or(302);
                if ![301, 302, 303, 307, 308].contains(&status) {
                    return Err(e(format!(
                        "statusCode {status} is not 301, 302, 303, 307 or 308"
                    )));
                }
                if let Some(s) = &r.scheme
                    && s != "http"
                    && s != "https"
                {
                    return Err(e(format!("scheme {s:?} is not http or https")));
                }
                if let Some(h) = &r.hostname {
                    crate::ir::HostMatch::parse(h).map_err(e)?;
                }
                f.redirect = Some(Redirect {
                    scheme: r.scheme.clone(),
                    hostname: r.hostname.clone(),
                    port: r.port,
                    path: r
                        .path
                        .as_ref()
                        .map(|p| path_change(p, matched))
                        .transpose()
                        .map_err(e)?,
                    status,
                });
            }
            "URLRewrite" => {
                let r = filter
                    .url_rewrite
                    .as_ref()
                    .ok_or_else(|| e("urlRewrite is required".into()))?;
                if let Some(h) = &r.hostname {
                    crate::ir::HostMatch::parse(h).map_err(e)?;
                }
                f.rewrite = Some(Rewrite {
                    hostname: r.hostname.clone(),
                    path: r
                        .path
                        .as_ref()
                        .map(|p| path_change(p, matched))
                        .transpose()
                        .map_err(e)?,
                });
            }
            other => {
                return Err(e(format!(
                    "filter type {other:?} is not supported; RequestHeaderModifier, ResponseHeaderModifier, RequestRedirect and URLRewrite are"
                )));
            }
        }
    }
    if f.redirect.is_some() && f.rewrite.is_some() {
        return Err((
            0,
            "RequestRedirect and URLRewrite cannot be used together".into(),
        ));
    }
    Ok((f != RouteFilters::default()).then_some(f))
}
