//! Affinity cookie settings from Ingress annotations (`wsgate.dev/affinity*`) and from the Gateway
//! `backendSettings[].affinityCookie` block, with the value checks both share.
//!
//! Every value ends up in a `Set-Cookie` header, so each is checked to be a valid, inert part of
//! one: a name that is an RFC 6265 token, a path without `;` or control characters.

use super::diagnostics::{Diagnostics, ObjectRef, apply};
use crate::crd::AffinityCookieSpec;
use crate::ir::{AffinityCookie, SameSite, Timeout};
use std::collections::BTreeMap;

/// Longest accepted cookie name or path; far beyond real use, short enough to keep headers small.
const MAX_ATTRIBUTE_LEN: usize = 256;

/// Checks a cookie name: an RFC 6265 `token` (no separators, no controls).
pub(crate) fn parse_name(text: &str) -> Result<String, String> {
    let name = text.trim();
    let separator = |c: char| "()<>@,;:\\\"/[]?={} \t".contains(c);
    if name.is_empty()
        || name.len() > MAX_ATTRIBUTE_LEN
        || !name.chars().all(|c| c.is_ascii_graphic() && !separator(c))
    {
        return Err(format!(
            "invalid cookie name {name:?}; expected letters, digits and !#$%&'*+-.^_`|~"
        ));
    }
    Ok(name.to_string())
}

/// Checks a cookie path: starts with `/`, no `;`, no spaces or control characters.
pub(crate) fn parse_path(text: &str) -> Result<String, String> {
    let path = text.trim();
    if !path.starts_with('/')
        || path.len() > MAX_ATTRIBUTE_LEN
        || !path.chars().all(|c| c.is_ascii_graphic() && c != ';')
    {
        return Err(format!(
            "invalid cookie path {path:?}; expected a path starting with \"/\" without ';' or spaces"
        ));
    }
    Ok(path.to_string())
}

/// Parses `Strict`, `Lax` or `None` (case-insensitive).
pub(crate) fn parse_same_site(text: &str) -> Result<SameSite, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "strict" => Ok(SameSite::Strict),
        "lax" => Ok(SameSite::Lax),
        "none" => Ok(SameSite::None),
        _ => Err(format!(
            "invalid SameSite {text:?}; expected Strict, Lax or None"
        )),
    }
}

/// Parses a `Max-Age`: a duration (`12h`) or whole seconds (`3600`); `0` = a session cookie.
pub(crate) fn parse_max_age(text: &str) -> Result<Timeout, String> {
    let text = text.trim();
    let max_age = match text.parse::<u64>() {
        Ok(secs) => Timeout::secs(secs),
        Err(_) => Timeout::parse(text)?,
    };
    // Max-Age is whole seconds; a sub-second value would be sent as 0 (delete the cookie).
    if max_age.get().is_some_and(|d| d.subsec_nanos() != 0) {
        return Err(format!("invalid max-age {text:?}; expected whole seconds"));
    }
    Ok(max_age)
}

/// Reads the `wsgate.dev/affinity*` annotations. `None` unless `wsgate.dev/affinity: cookie`;
/// an invalid attribute is ignored with a warning naming it and its default applies.
pub(crate) fn from_annotations(
    annotations: Option<&BTreeMap<String, String>>,
    obj: &ObjectRef,
    diags: &mut Diagnostics,
) -> Option<AffinityCookie> {
    let get = |name: &str| annotations.and_then(|a| a.get(&super::text::annotation_key(name)));
    let field =
        |name: &str| super::text::AnnotationField(&super::text::annotation_key(name)).to_string();
    let attributes = [
        "affinity-cookie-name",
        "affinity-cookie-max-age",
        "affinity-cookie-path",
        "affinity-cookie-samesite",
    ];
    let enabled = match get("affinity").map(|v| v.trim()) {
        Some("cookie") => true,
        Some("none") | None => false,
        Some(other) => {
            diags.warn(
                obj,
                field("affinity"),
                format!("invalid value {other:?}; expected cookie or none; affinity is off"),
            );
            false
        }
    };
    if !enabled {
        for name in attributes {
            if get(name).is_some() {
                diags.warn(
                    obj,
                    field(name),
                    "needs wsgate.dev/affinity: cookie; ignored",
                );
            }
        }
        return None;
    }
    let mut c = AffinityCookie::default();
    if let Some(v) = get("affinity-cookie-name") {
        apply(
            diags,
            obj,
            &field("affinity-cookie-name"),
            parse_name(v),
            &mut c.name,
            false,
        );
    }
    if let Some(v) = get("affinity-cookie-max-age") {
        apply(
            diags,
            obj,
            &field("affinity-cookie-max-age"),
            parse_max_age(v),
            &mut c.max_age,
            false,
        );
    }
    if let Some(v) = get("affinity-cookie-path") {
        apply(
            diags,
            obj,
            &field("affinity-cookie-path"),
            parse_path(v).map(Some),
            &mut c.path,
            false,
        );
    }
    if let Some(v) = get("affinity-cookie-samesite") {
        apply(
            diags,
            obj,
            &field("affinity-cookie-samesite"),
            parse_same_site(v),
            &mut c.same_site,
            false,
        );
    }
    Some(c)
}

/// Reads a Gateway `affinityCookie` block (`field` is its path); invalid values are errors.
pub(crate) fn from_spec(
    spec: &AffinityCookieSpec,
    field: &str,
    obj: &ObjectRef,
    diags: &mut Diagnostics,
) -> AffinityCookie {
    let mut c = AffinityCookie::default();
    let f = |name: &str| format!("{field}.{name}");
    if let Some(v) = &spec.name {
        apply(diags, obj, &f("name"), parse_name(v), &mut c.name, true);
    }
    if let Some(v) = &spec.max_age {
        apply(
            diags,
            obj,
            &f("maxAge"),
            parse_max_age(v),
            &mut c.max_age,
            true,
        );
    }
    if let Some(v) = &spec.path {
        apply(
            diags,
            obj,
            &f("path"),
            parse_path(v).map(Some),
            &mut c.path,
            true,
        );
    }
    if let Some(v) = &spec.same_site {
        apply(
            diags,
            obj,
            &f("sameSite"),
            parse_same_site(v),
            &mut c.same_site,
            true,
        );
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annotated(pairs: &[(&str, &str)]) -> (Option<AffinityCookie>, Vec<String>) {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (format!("wsgate.dev/{k}"), v.to_string()))
            .collect();
        let mut d = Diagnostics::default();
        let obj = ObjectRef::new("Ingress", Some("ns"), Some("x"));
        let c = from_annotations(Some(&map), &obj, &mut d);
        (c, d.into_vec().into_iter().map(|d| d.to_string()).collect())
    }

    #[test]
    fn defaults_and_values() {
        let (c, w) = annotated(&[("affinity", "cookie")]);
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(c, Some(AffinityCookie::default()));
        let (c, w) = annotated(&[
            ("affinity", "cookie"),
            ("affinity-cookie-name", "route"),
            ("affinity-cookie-max-age", "2h"),
            ("affinity-cookie-path", "/socket.io"),
            ("affinity-cookie-samesite", "strict"),
        ]);
        assert!(w.is_empty(), "{w:?}");
        let c = c.unwrap();
        assert_eq!(c.name, "route");
        assert_eq!(c.max_age, Timeout::secs(7200));
        assert_eq!(c.path.as_deref(), Some("/socket.io"));
        assert_eq!(c.same_site, SameSite::Strict);
        assert_eq!(parse_max_age("600"), Ok(Timeout::secs(600)));
        assert_eq!(parse_max_age("0"), Ok(Timeout::Off));
    }

    #[test]
    fn invalid_values_warn_naming_the_annotation() {
        let (c, w) = annotated(&[
            ("affinity", "cookie"),
            ("affinity-cookie-name", "bad name;x=1"),
            ("affinity-cookie-max-age", "1.5s"),
            ("affinity-cookie-path", "/a; Domain=evil"),
            ("affinity-cookie-samesite", "sometimes"),
        ]);
        assert_eq!(c, Some(AffinityCookie::default()));
        assert_eq!(w.len(), 4, "{w:?}");
        for name in ["name", "max-age", "path", "samesite"] {
            let field = format!("metadata.annotations[wsgate.dev/affinity-cookie-{name}]");
            assert!(w.iter().any(|m| m.contains(&field)), "{field}: {w:?}");
        }
    }

    #[test]
    fn attributes_without_affinity_are_ignored_with_a_warning() {
        let (c, w) = annotated(&[("affinity-cookie-name", "x")]);
        assert_eq!(c, None);
        assert_eq!(w.len(), 1, "{w:?}");
        let (c, w) = annotated(&[("affinity", "sticky")]);
        assert_eq!(c, None);
        assert!(w[0].contains("wsgate.dev/affinity]"), "{w:?}");
    }

    #[test]
    fn names_and_paths_cannot_inject_attributes() {
        for bad in ["", "a b", "a;b", "a=b", "a\"b", "ä", "a\r\nSet-Cookie: x"] {
            assert!(parse_name(bad).is_err(), "{bad:?}");
        }
        for bad in ["", "ws", "/a;b", "/a b", "/a\u{7f}", "/ä"] {
            assert!(parse_path(bad).is_err(), "{bad:?}");
        }
        assert!(parse_name(&"n".repeat(257)).is_err());
        assert_eq!(parse_name(" io "), Ok("io".into()));
    }
}
