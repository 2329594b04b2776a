//! `allowedRoutes.namespaces.from: Selector`: a listener accepts routes from the namespaces whose
//! labels match a label selector. The selector is checked once when the listener is declared (a
//! bad operator makes the listener invalid, naming the field); matching reads the namespaces'
//! labels from the snapshot (`v1 Namespace` objects: watched in a cluster, YAML in file mode).

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use std::collections::{BTreeMap, HashMap};

/// The label every namespace carries with its own name (set by the API server since
/// Kubernetes 1.21), so selectors on it work for namespaces without a Namespace object in file
/// mode too.
const NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// A validated label selector (`matchLabels` and `matchExpressions`, all must hold).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct NamespaceSelector {
    labels: Vec<(String, String)>,
    expressions: Vec<Expression>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Expression {
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

impl NamespaceSelector {
    /// Checks a selector as the API server's label selector validation does; the error names
    /// the field below `selector`.
    pub(crate) fn parse(s: &LabelSelector) -> Result<Self, String> {
        let labels = s
            .match_labels
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut expressions = Vec::new();
        for (i, e) in s.match_expressions.iter().flatten().enumerate() {
            let values = e.values.clone().unwrap_or_default();
            let field = format!("matchExpressions[{i}]");
            let key = e.key.clone();
            let expr = match e.operator.as_str() {
                "In" | "NotIn" if values.is_empty() => {
                    return Err(format!(
                        "{field}.values must not be empty for operator {}",
                        e.operator
                    ));
                }
                "Exists" | "DoesNotExist" if !values.is_empty() => {
                    return Err(format!(
                        "{field}.values must be empty for operator {}",
                        e.operator
                    ));
                }
                "In" => Expression::In(key, values),
                "NotIn" => Expression::NotIn(key, values),
                "Exists" => Expression::Exists(key),
                "DoesNotExist" => Expression::DoesNotExist(key),
                other => {
                    return Err(format!(
                        "{field}.operator {other:?} is not one of In, NotIn, Exists, DoesNotExist"
                    ));
                }
            };
            expressions.push(expr);
        }
        Ok(Self {
            labels,
            expressions,
        })
    }

    /// Whether a namespace's labels match (an empty selector matches every namespace).
    pub(crate) fn matches(&self, labels: &Labels<'_>) -> bool {
        self.labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v.as_str()))
            && self.expressions.iter().all(|e| match e {
                Expression::In(k, vs) => labels.get(k).is_some_and(|v| vs.iter().any(|x| x == v)),
                // As in Kubernetes: a missing key satisfies NotIn.
                Expression::NotIn(k, vs) => {
                    labels.get(k).is_none_or(|v| !vs.iter().any(|x| x == v))
                }
                Expression::Exists(k) => labels.get(k).is_some(),
                Expression::DoesNotExist(k) => labels.get(k).is_none(),
            })
    }
}

/// The labels of one namespace, with the name label always present.
pub(crate) struct Labels<'a> {
    name: &'a str,
    labels: Option<&'a BTreeMap<String, String>>,
}

impl Labels<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        if key == NAME_LABEL {
            return Some(self.name);
        }
        self.labels.and_then(|l| l.get(key)).map(String::as_str)
    }
}

/// Namespace name -> labels, from the snapshot's Namespace objects.
#[derive(Default)]
pub(crate) struct NamespaceLabels<'a>(HashMap<&'a str, &'a BTreeMap<String, String>>);

impl<'a> NamespaceLabels<'a> {
    /// Indexes the Namespace objects.
    pub(crate) fn new(namespaces: &'a [std::sync::Arc<Namespace>]) -> Self {
        Self(
            namespaces
                .iter()
                .filter_map(|n| Some((n.metadata.name.as_deref()?, n.metadata.labels.as_ref()?)))
                .collect(),
        )
    }

    /// The labels of `name`; a namespace without an object has only its name label.
    pub(crate) fn of<'n>(&'n self, name: &'n str) -> Labels<'n> {
        Labels {
            name,
            labels: self.0.get(name).copied(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn sel(labels: &[(&str, &str)], exprs: &[(&str, &str, &[&str])]) -> LabelSelector {
        LabelSelector {
            match_labels: (!labels.is_empty()).then(|| {
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect()
            }),
            match_expressions: (!exprs.is_empty()).then(|| {
                exprs
                    .iter()
                    .map(|(k, op, vs)| LabelSelectorRequirement {
                        key: k.to_string(),
                        operator: op.to_string(),
                        values: (!vs.is_empty())
                            .then(|| vs.iter().map(|v| v.to_string()).collect()),
                    })
                    .collect()
            }),
        }
    }

    fn ns(name: &str, labels: &[(&str, &str)]) -> std::sync::Arc<Namespace> {
        let mut n = Namespace::default();
        n.metadata.name = Some(name.into());
        n.metadata.labels = Some(
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        std::sync::Arc::new(n)
    }

    #[test]
    fn selectors_match_as_in_kubernetes() {
        let objects = [
            ns("blue", &[("team", "blue"), ("env", "prod")]),
            ns("red", &[("team", "red"), ("env", "prod"), ("tier", "x")]),
        ];
        let idx = NamespaceLabels::new(&objects);
        let m =
            |s: LabelSelector, n: &str| NamespaceSelector::parse(&s).unwrap().matches(&idx.of(n));

        assert!(m(sel(&[], &[]), "anything"), "empty selector matches all");
        assert!(m(sel(&[("team", "blue")], &[]), "blue"));
        assert!(!m(sel(&[("team", "blue")], &[]), "red"));
        assert!(!m(sel(&[("team", "blue")], &[]), "ghost"));
        assert!(m(sel(&[], &[("env", "In", &["prod", "stage"])]), "red"));
        assert!(!m(sel(&[], &[("env", "In", &["stage"])]), "red"));
        assert!(m(sel(&[], &[("team", "NotIn", &["red"])]), "blue"));
        assert!(
            m(sel(&[], &[("team", "NotIn", &["red"])]), "ghost"),
            "missing key satisfies NotIn"
        );
        assert!(!m(sel(&[], &[("team", "NotIn", &["red"])]), "red"));
        assert!(m(sel(&[], &[("tier", "Exists", &[])]), "red"));
        assert!(!m(sel(&[], &[("tier", "Exists", &[])]), "blue"));
        assert!(m(sel(&[], &[("tier", "DoesNotExist", &[])]), "blue"));
        // Every namespace has its name label, with or without an object.
        assert!(m(sel(&[(NAME_LABEL, "ghost")], &[]), "ghost"));
        assert!(m(sel(&[], &[(NAME_LABEL, "In", &["blue", "x"])]), "blue"));
        // All terms must hold.
        assert!(!m(
            sel(&[("env", "prod")], &[("tier", "DoesNotExist", &[])]),
            "red"
        ));
    }

    #[test]
    fn invalid_selectors_name_the_field() {
        let e = |s| NamespaceSelector::parse(&s).unwrap_err();
        assert_eq!(
            e(sel(&[], &[("a", "In", &[])])),
            "matchExpressions[0].values must not be empty for operator In"
        );
        assert_eq!(
            e(sel(&[], &[("a", "Exists", &[]), ("b", "Exists", &["x"])])),
            "matchExpressions[1].values must be empty for operator Exists"
        );
        assert_eq!(
            e(sel(&[], &[("a", "Gt", &["1"])])),
            "matchExpressions[0].operator \"Gt\" is not one of In, NotIn, Exists, DoesNotExist"
        );
    }
}
