//! Host and path matching with Kubernetes Ingress semantics.

use serde::Serialize;

/// Which `Host` header values a virtual host answers.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum HostMatch {
    /// Exactly this host (lower case).
    Exact(String),
    /// `*.example.com`: stored as `.example.com`; matches exactly one more label (Ingress).
    Wildcard(String),
    /// `*.example.com` of the Gateway API: stored as `.example.com`; matches one or more labels.
    Suffix(String),
    /// Any host.
    Any,
}

impl HostMatch {
    /// Parses an Ingress/Gateway hostname; empty means any.
    pub fn parse(host: &str) -> Result<Self, String> {
        let host = host.trim().to_ascii_lowercase();
        if host.is_empty() || host == "*" {
            return Ok(HostMatch::Any);
        }
        let (wild, rest) = match host.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, host.as_str()),
        };
        // `host` is lower case here, so the Kubernetes label rule applies as is.
        if rest.is_empty() || !crate::names::is_dns_subdomain(rest) {
            return Err(format!(
                "invalid hostname {host:?}: expected a DNS name, optionally starting with \"*.\""
            ));
        }
        Ok(if wild {
            HostMatch::Wildcard(format!(".{rest}"))
        } else {
            HostMatch::Exact(host)
        })
    }

    /// Parses a Gateway API hostname, whose wildcard matches any number of labels.
    pub fn parse_gateway_api(host: &str) -> Result<Self, String> {
        Ok(match Self::parse(host)? {
            HostMatch::Wildcard(s) => HostMatch::Suffix(s),
            other => other,
        })
    }

    /// Whether `host` (lower-case, no port) matches.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostMatch::Exact(h) => h.eq_ignore_ascii_case(host),
            HostMatch::Wildcard(suffix) => {
                host.len() > suffix.len()
                    && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
                    && !host[..host.len() - suffix.len()].contains('.')
            }
            HostMatch::Suffix(suffix) => {
                host.len() > suffix.len()
                    && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
            }
            HostMatch::Any => true,
        }
    }

    /// Sort key: exact first, then longer wildcard suffixes, then any.
    pub fn specificity(&self) -> (u8, std::cmp::Reverse<usize>) {
        match self {
            HostMatch::Exact(h) => (0, std::cmp::Reverse(h.len())),
            HostMatch::Wildcard(s) => (1, std::cmp::Reverse(s.len())),
            HostMatch::Suffix(s) => (2, std::cmp::Reverse(s.len())),
            HostMatch::Any => (3, std::cmp::Reverse(0)),
        }
    }
}

impl std::fmt::Display for HostMatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostMatch::Exact(h) => f.write_str(h),
            HostMatch::Wildcard(s) => write!(f, "*{s}"),
            HostMatch::Suffix(s) => write!(f, "*{s} (any depth)"),
            HostMatch::Any => f.write_str("*"),
        }
    }
}

/// Which request paths a route answers.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum PathMatch {
    /// The path exactly (case-sensitive).
    Exact(String),
    /// Element-wise prefix split by `/` (`/foo` matches `/foo` and `/foo/bar`, not `/foobar`).
    /// Stored without a trailing slash, except the root `/`.
    Prefix(String),
    /// The whole path matches a regular expression (Gateway API `RegularExpression`).
    Regex(super::Pattern),
}

impl PathMatch {
    /// An exact path; must start with `/`.
    pub fn exact(path: &str) -> Result<Self, String> {
        check_path(path)?;
        Ok(PathMatch::Exact(path.to_string()))
    }

    /// A prefix path; must start with `/`. A trailing slash is ignored, as Kubernetes says.
    pub fn prefix(path: &str) -> Result<Self, String> {
        check_path(path)?;
        let trimmed = path.trim_end_matches('/');
        Ok(PathMatch::Prefix(if trimmed.is_empty() {
            "/".into()
        } else {
            trimmed.into()
        }))
    }

    /// A regular expression the whole path must match.
    pub fn regex(pattern: &str) -> Result<Self, String> {
        if !pattern.starts_with('/') && !pattern.starts_with('^') {
            return Err(format!("path pattern {pattern:?} must start with \"/\""));
        }
        super::Pattern::new(pattern.strip_prefix('^').unwrap_or(pattern)).map(PathMatch::Regex)
    }

    /// Whether the request path (without query) matches.
    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Exact(p) => p == path,
            PathMatch::Prefix(p) => {
                p == "/"
                    || (path.starts_with(p.as_str())
                        && matches!(path.as_bytes().get(p.len()), None | Some(b'/')))
            }
            PathMatch::Regex(r) => r.is_match(path),
        }
    }

    /// Precedence key: exact before prefix for the same path, longer paths first.
    pub fn precedence(&self) -> (std::cmp::Reverse<usize>, u8) {
        match self {
            PathMatch::Exact(p) => (std::cmp::Reverse(p.len()), 0),
            PathMatch::Prefix(p) => (std::cmp::Reverse(p.len()), 1),
            PathMatch::Regex(r) => (std::cmp::Reverse(r.as_str().len()), 2),
        }
    }

    /// The path text.
    pub fn path(&self) -> &str {
        match self {
            PathMatch::Exact(p) | PathMatch::Prefix(p) => p,
            PathMatch::Regex(r) => r.as_str(),
        }
    }
}

fn check_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!("path {path:?} must start with \"/\""));
    }
    if path.contains(['?', '#', ' ']) || path.chars().any(char::is_control) {
        return Err(format!(
            "path {path:?} must not contain '?', '#', spaces or control characters"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_is_element_wise() {
        let p = PathMatch::prefix("/foo/").unwrap();
        assert!(p.matches("/foo"));
        assert!(p.matches("/foo/"));
        assert!(p.matches("/foo/bar"));
        assert!(!p.matches("/foobar"));
        assert!(!p.matches("/fo"));
        let root = PathMatch::prefix("/").unwrap();
        assert!(root.matches("/anything"));
        let ab = PathMatch::prefix("/aaa/bbb").unwrap();
        assert!(ab.matches("/aaa/bbb/ccc"));
        assert!(!ab.matches("/aaa/bbbxyz"));
    }

    #[test]
    fn exact_is_exact() {
        let p = PathMatch::exact("/foo").unwrap();
        assert!(p.matches("/foo"));
        assert!(!p.matches("/foo/"));
        assert!(PathMatch::exact("foo").is_err());
    }

    #[test]
    fn gateway_api_wildcards_match_any_depth_and_regex_paths_are_whole() {
        let h = HostMatch::parse_gateway_api("*.example.com").unwrap();
        assert!(h.matches("a.example.com"));
        assert!(h.matches("a.b.example.com"));
        assert!(!h.matches("example.com"));
        let r = PathMatch::regex("/v[0-9]+/.*").unwrap();
        assert!(r.matches("/v12/x"));
        assert!(!r.matches("/x/v1/"));
        assert!(PathMatch::regex("v1").is_err());
    }

    #[test]
    fn wildcard_matches_one_label() {
        let h = HostMatch::parse("*.Example.com").unwrap();
        assert!(h.matches("a.example.com"));
        assert!(!h.matches("example.com"));
        assert!(!h.matches("a.b.example.com"));
        assert!(HostMatch::parse("exa mple.com").is_err());
        assert_eq!(HostMatch::parse("").unwrap(), HostMatch::Any);
    }
}
