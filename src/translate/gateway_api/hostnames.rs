//! Listener and route hostname intersection (Gateway API: a route attaches to a listener only
//! for the host names both accept).

use crate::ir::HostMatch;

/// The host names a route serves on a listener: the intersection of the listener's hostname
/// (`Any` when unset) and the route's hostnames (`Any` when it lists none). Empty = the route
/// does not attach to this listener.
pub(crate) fn intersect(listener: &HostMatch, route: &[HostMatch]) -> Vec<HostMatch> {
    if route.is_empty() {
        return vec![listener.clone()];
    }
    let mut out: Vec<HostMatch> = Vec::new();
    for r in route {
        let both = match (listener, r) {
            (HostMatch::Any, r) => Some(r.clone()),
            (l, HostMatch::Any) => Some(l.clone()),
            (l, HostMatch::Exact(r)) => l.matches(r).then(|| HostMatch::Exact(r.clone())),
            (HostMatch::Exact(l), r) => r.matches(l).then(|| HostMatch::Exact(l.clone())),
            (HostMatch::Suffix(ls), HostMatch::Suffix(rs)) => {
                // The longer suffix is the narrower set; it must lie inside the other.
                if rs.ends_with(ls.as_str()) {
                    Some(r.clone())
                } else if ls.ends_with(rs.as_str()) {
                    Some(listener.clone())
                } else {
                    None
                }
            }
            _ => None,
        };
        if let Some(h) = both
            && !out.contains(&h)
        {
            out.push(h);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> HostMatch {
        HostMatch::parse_gateway_api(s).unwrap()
    }

    #[test]
    fn intersections_follow_the_spec() {
        assert_eq!(intersect(&h(""), &[]), vec![HostMatch::Any]);
        assert_eq!(
            intersect(&h("a.example.com"), &[]),
            vec![h("a.example.com")]
        );
        assert_eq!(
            intersect(&h("*.example.com"), &[h("a.example.com"), h("b.other.com")]),
            vec![h("a.example.com")]
        );
        assert_eq!(
            intersect(&h("a.example.com"), &[h("*.example.com")]),
            vec![h("a.example.com")]
        );
        assert_eq!(
            intersect(&h("*.example.com"), &[h("*.example.com")]),
            vec![h("*.example.com")]
        );
        assert_eq!(
            intersect(&h("*.example.com"), &[h("*.a.example.com")]),
            vec![h("*.a.example.com")]
        );
        assert!(intersect(&h("a.example.com"), &[h("b.example.com")]).is_empty());
        assert!(intersect(&h("*.example.com"), &[h("example.com")]).is_empty());
        // Gateway API wildcards match any number of labels.
        assert_eq!(
            intersect(&h("*.example.com"), &[h("a.b.example.com")]),
            vec![h("a.b.example.com")]
        );
    }
}
