//! Errors and warnings of translation, each naming the object and field.

use serde::Serialize;

/// How serious a diagnostic is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Severity {
    /// Something the user wrote was rejected and left out.
    Error,
    /// A value was ignored or a reference does not resolve (yet); the rest works.
    Warning,
}

/// The object a diagnostic is about.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct ObjectRef {
    /// `Ingress`, `Gateway`, ...
    pub kind: String,
    /// Namespace (empty for cluster-scoped objects).
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl ObjectRef {
    /// Reference to a namespaced or cluster-scoped object.
    pub fn new(kind: &str, namespace: Option<&str>, name: Option<&str>) -> Self {
        Self {
            kind: kind.into(),
            namespace: namespace.unwrap_or_default().into(),
            name: name.unwrap_or_default().into(),
        }
    }

    /// Reference from an object's metadata.
    pub fn of<K: kube::Resource>(kind: &str, obj: &K) -> Self {
        let m = obj.meta();
        Self::new(kind, m.namespace.as_deref(), m.name.as_deref())
    }
}

impl std::fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{} {}", self.kind, self.name)
        } else {
            write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
        }
    }
}

/// One problem found in the input.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// The object.
    pub object: ObjectRef,
    /// The field path, e.g. `spec.rules[0].http.paths[1].path`.
    pub field: String,
    /// What is wrong and what happens because of it.
    pub message: String,
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(
            f,
            "{sev}: {}: {}: {}",
            self.object, self.field, self.message
        )
    }
}

/// Collector passed through the processors.
#[derive(Debug, Default)]
pub(crate) struct Diagnostics(Vec<Diagnostic>);

impl Diagnostics {
    pub(crate) fn error(
        &mut self,
        object: &ObjectRef,
        field: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.push(Severity::Error, object, field.into(), message.into());
    }

    pub(crate) fn warn(
        &mut self,
        object: &ObjectRef,
        field: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.push(Severity::Warning, object, field.into(), message.into());
    }

    fn push(&mut self, severity: Severity, object: &ObjectRef, field: String, message: String) {
        self.0.push(Diagnostic {
            severity,
            object: object.clone(),
            field,
            message,
        });
    }

    /// Whether any diagnostic about `object` is an error.
    pub(crate) fn has_error_for(&self, object: &ObjectRef) -> bool {
        self.0
            .iter()
            .any(|d| d.severity == Severity::Error && &d.object == object)
    }

    pub(crate) fn for_object<'a>(
        &'a self,
        object: &'a ObjectRef,
    ) -> impl Iterator<Item = &'a Diagnostic> + 'a {
        self.0.iter().filter(move |d| &d.object == object)
    }

    pub(crate) fn into_vec(mut self) -> Vec<Diagnostic> {
        self.0
            .sort_by(|a, b| (&a.object, a.severity).cmp(&(&b.object, b.severity)));
        self.0
    }
}

/// Writes the parsed value of `field` into `slot`, or reports it (an error, or a warning that
/// the default is used) and leaves `slot` as it was. The field path is made into text only
/// when it is reported.
pub(crate) fn apply<T, F: std::fmt::Display + ?Sized>(
    diags: &mut Diagnostics,
    obj: &ObjectRef,
    field: &F,
    parsed: Result<T, String>,
    slot: &mut T,
    error: bool,
) {
    match parsed {
        Ok(v) => *slot = v,
        Err(e) if error => diags.error(obj, field.to_string(), e),
        Err(e) => diags.warn(obj, field.to_string(), format!("{e}; the default is used")),
    }
}
