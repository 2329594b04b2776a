//! Per-route request and response changes (Gateway API `HTTPRoute` filters), as plain data.

use serde::Serialize;

/// Header changes: `set` replaces, `add` appends, `remove` deletes (names lower case).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize)]
pub struct HeaderEdits {
    /// Replace or add.
    pub set: Vec<(String, String)>,
    /// Append a value.
    pub add: Vec<(String, String)>,
    /// Remove.
    pub remove: Vec<String>,
}

impl HeaderEdits {
    /// Whether nothing changes.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }
}

/// How a path is changed by a redirect or rewrite.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum PathChange {
    /// The whole path becomes this.
    Full(String),
    /// The part the route's prefix matched becomes `replacement`.
    Prefix {
        /// The route's path prefix (as matched).
        matched: String,
        /// What replaces it.
        replacement: String,
    },
}

impl PathChange {
    /// The new path for request path `path`.
    pub fn apply(&self, path: &str) -> String {
        match self {
            PathChange::Full(p) => p.clone(),
            PathChange::Prefix {
                matched,
                replacement,
            } => {
                let rest = if matched == "/" {
                    path
                } else {
                    path.get(matched.len()..).unwrap_or("")
                };
                let rest = rest.trim_start_matches('/');
                let base = replacement.trim_end_matches('/');
                match (base.is_empty(), rest.is_empty()) {
                    (true, true) => "/".to_string(),
                    (true, false) => format!("/{rest}"),
                    (false, true) => base.to_string(),
                    (false, false) => format!("{base}/{rest}"),
                }
            }
        }
    }
}

/// An answer with a redirect instead of forwarding.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Redirect {
    /// `http` or `https`; `None` = the request's.
    pub scheme: Option<String>,
    /// `None` = the request's host.
    pub hostname: Option<String>,
    /// `None` = derived as the spec says (from the scheme when it changes, else the request's).
    pub port: Option<u16>,
    /// `None` = the request's path.
    pub path: Option<PathChange>,
    /// 301, 302, 303, 307 or 308.
    pub status: u16,
}

/// A change of the request before it is forwarded.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize)]
pub struct Rewrite {
    /// New `Host`.
    pub hostname: Option<String>,
    /// New path.
    pub path: Option<PathChange>,
}

/// Everything a route changes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize)]
pub struct RouteFilters {
    /// Request header changes.
    pub request_headers: HeaderEdits,
    /// Response header changes.
    pub response_headers: HeaderEdits,
    /// Answer with a redirect (no backend is contacted).
    pub redirect: Option<Redirect>,
    /// Change host and/or path before forwarding.
    pub rewrite: Option<Rewrite>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_replacement_follows_the_spec_examples() {
        let p = |m: &str, r: &str| PathChange::Prefix {
            matched: m.into(),
            replacement: r.into(),
        };
        assert_eq!(p("/foo", "/xyz").apply("/foo/bar"), "/xyz/bar");
        assert_eq!(p("/foo", "/xyz/").apply("/foo/bar"), "/xyz/bar");
        assert_eq!(p("/foo/", "/xyz").apply("/foo/bar"), "/xyz/bar");
        assert_eq!(p("/foo", "/").apply("/foo/bar"), "/bar");
        assert_eq!(p("/foo", "/").apply("/foo"), "/");
        assert_eq!(p("/foo", "/xyz").apply("/foo"), "/xyz");
        assert_eq!(p("/", "/xyz").apply("/bar"), "/xyz/bar");
        assert_eq!(PathChange::Full("/new".into()).apply("/old/x"), "/new");
    }
}
