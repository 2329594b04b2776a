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

/// Whether every host `inner` matches is matched by `outer` too.
fn covers(outer: &HostMatch, inner: &HostMatch) -> bool {
    match (outer, inner) {
        (HostMatch::Any, _) => true,
        (_, HostMatch::Any) => false,
        (o, HostMatch::Exact(h)) => o.matches(h),
        (HostMatch::Exact(_), _) => false,
        (HostMatch::Suffix(o), HostMatch::Suffix(i) | HostMatch::Wildcard(i)) => {
            i.ends_with(o.as_str())
        }
        (HostMatch::Wildcard(o), HostMatch::Wildcard(i)) => o == i,
        (HostMatch::Wildcard(_), HostMatch::Suffix(_)) => false,
    }
}

/// Listener isolation (GEP-1713): drops from `hosts` (a route's hosts on a listener whose
/// hostname is `own`) each host that one of the Gateway's other listeners on the same port,
/// with a narrower hostname than `own`, covers whole: requests for it belong to that listener.
/// A host only partly covered stays; the table's most-specific-host-first lookup sends the
/// narrower part to the narrower listener's routes.
pub(crate) fn isolate<'a>(
    own: &HostMatch,
    others: impl Iterator<Item = &'a HostMatch>,
    hosts: Vec<HostMatch>,
) -> Vec<HostMatch> {
    let narrower: Vec<&HostMatch> = others.filter(|o| *o != own && covers(own, o)).collect();
    hosts
        .into_iter()
        .filter(|h| !narrower.iter().any(|o| covers(o, h)))
        .collect()
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

    #[test]
    fn isolation_leaves_each_host_to_the_narrowest_listener() {
        // The conformance suite's GatewayHTTPListenerIsolation listeners.
        let listeners = [
            h(""),
            h("*.example.com"),
            h("*.foo.example.com"),
            h("abc.foo.example.com"),
        ];
        let route = [
            h("bar.com"),
            h("*.example.com"),
            h("*.foo.example.com"),
            h("abc.foo.example.com"),
        ];
        let on = |i: usize, route: &[HostMatch]| {
            let others = listeners
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, l)| l);
            isolate(&listeners[i], others, intersect(&listeners[i], route))
        };
        assert_eq!(on(0, &route), vec![h("bar.com")]);
        assert_eq!(on(1, &route), vec![h("*.example.com")]);
        assert_eq!(on(2, &route), vec![h("*.foo.example.com")]);
        assert_eq!(on(3, &route), vec![h("abc.foo.example.com")]);
        // Without route hostnames each listener keeps its own hostname.
        assert_eq!(on(0, &[]), vec![HostMatch::Any]);
        assert_eq!(on(1, &[]), vec![h("*.example.com")]);
        // A host a narrower listener covers only in part stays.
        let two = [h(""), h("a.example.com")];
        let kept = isolate(
            &two[0],
            std::iter::once(&two[1]),
            vec![h("*.example.com"), h("a.example.com")],
        );
        assert_eq!(kept, vec![h("*.example.com")]);
        // The same hostname on another listener (a conflict, reported elsewhere) isolates nothing.
        assert_eq!(
            isolate(
                &h("x.test"),
                std::iter::once(&h("x.test")),
                vec![h("x.test")]
            ),
            vec![h("x.test")]
        );
    }
}
