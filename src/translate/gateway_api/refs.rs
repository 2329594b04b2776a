//! Cross-namespace references: allowed only when a `ReferenceGrant` in the target's namespace
//! names the referring kind and namespace and the target kind (and name, when it gives one).

use crate::gwapi::ReferenceGrant;

/// The ReferenceGrants of a snapshot.
pub(crate) struct Grants<'a>(pub(crate) &'a [std::sync::Arc<ReferenceGrant>]);

/// One reference: who refers, from where, to what.
pub(crate) struct Reference<'a> {
    /// Group of the referring kind (`gateway.networking.k8s.io`).
    pub(crate) from_group: &'a str,
    /// `HTTPRoute`, `Gateway`.
    pub(crate) from_kind: &'a str,
    /// The referring object's namespace.
    pub(crate) from_namespace: &'a str,
    /// Target group (`""` = core).
    pub(crate) to_group: &'a str,
    /// `Service`, `Secret`.
    pub(crate) to_kind: &'a str,
    /// Target namespace.
    pub(crate) to_namespace: &'a str,
    /// Target name.
    pub(crate) to_name: &'a str,
}

impl Grants<'_> {
    /// Whether the reference is allowed (same namespace, or granted).
    pub(crate) fn allows(&self, r: &Reference<'_>) -> bool {
        if r.from_namespace == r.to_namespace {
            return true;
        }
        self.0.iter().any(|g| {
            g.metadata.namespace.as_deref().unwrap_or("default") == r.to_namespace
                && g.spec.from.iter().any(|f| {
                    f.group == r.from_group
                        && f.kind == r.from_kind
                        && f.namespace == r.from_namespace
                })
                && g.spec.to.iter().any(|t| {
                    t.group == r.to_group
                        && t.kind == r.to_kind
                        && t.name.as_deref().is_none_or(|n| n == r.to_name)
                })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gwapi::{ReferenceGrantFrom, ReferenceGrantSpec, ReferenceGrantTo};

    fn grant(ns: &str, from_ns: &str, to_name: Option<&str>) -> std::sync::Arc<ReferenceGrant> {
        let mut g = ReferenceGrant::new(
            "g",
            ReferenceGrantSpec {
                from: vec![ReferenceGrantFrom {
                    group: "gateway.networking.k8s.io".into(),
                    kind: "HTTPRoute".into(),
                    namespace: from_ns.into(),
                }],
                to: vec![ReferenceGrantTo {
                    group: String::new(),
                    kind: "Service".into(),
                    name: to_name.map(Into::into),
                }],
            },
        );
        g.metadata.namespace = Some(ns.into());
        std::sync::Arc::new(g)
    }

    fn r<'a>(from_ns: &'a str, to_ns: &'a str, name: &'a str) -> Reference<'a> {
        Reference {
            from_group: "gateway.networking.k8s.io",
            from_kind: "HTTPRoute",
            from_namespace: from_ns,
            to_group: "",
            to_kind: "Service",
            to_namespace: to_ns,
            to_name: name,
        }
    }

    #[test]
    fn grants_are_checked_by_namespace_kind_and_name() {
        let none = Grants(&[]);
        assert!(none.allows(&r("a", "a", "svc")));
        assert!(!none.allows(&r("a", "b", "svc")));
        let gs = [grant("b", "a", Some("svc"))];
        let grants = Grants(&gs);
        assert!(grants.allows(&r("a", "b", "svc")));
        assert!(!grants.allows(&r("a", "b", "other")));
        assert!(!grants.allows(&r("c", "b", "svc")));
        let any = [grant("b", "a", None)];
        assert!(Grants(&any).allows(&r("a", "b", "other")));
    }
}
