//! Reads Kubernetes-style multi-document YAML from a file or a directory into a [`Snapshot`].

use super::{Snapshot, limits};
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};

/// One problem found while reading files, located by file, document and field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{file}: document {document}{object}: {message}")]
pub struct LoadError {
    /// The file.
    pub file: String,
    /// 1-based document index in the file.
    pub document: usize,
    /// ` (Kind namespace/name)` when known, else empty.
    pub object: String,
    /// What is wrong, with the field path when known.
    pub message: String,
}

impl LoadError {
    /// A problem with a whole file or directory (it could not be listed or read), not with one
    /// of its documents.
    pub(crate) fn whole_file(path: &Path, message: String) -> Self {
        Self {
            file: path.display().to_string(),
            document: 0,
            object: String::new(),
            message,
        }
    }
}

/// A non-fatal note (unknown kinds are skipped).
pub type LoadWarning = LoadError;

/// What loading produced: objects, hard errors and skipped documents.
#[derive(Debug, Default)]
pub struct Loaded {
    /// The objects that parsed.
    pub snapshot: Snapshot,
    /// Files or documents that could not be read; `run` keeps the last good table when any exist.
    pub errors: Vec<LoadError>,
    /// Documents that were skipped (kinds wsgate does not read).
    pub warnings: Vec<LoadWarning>,
    /// The files that were read, in order.
    pub files: Vec<PathBuf>,
}

/// Reads `path`: a YAML file, or every `*.yaml`/`*.yml` file directly inside a directory (sorted,
/// hidden files skipped).
pub fn load(path: &Path) -> Loaded {
    let mut out = Loaded::default();
    let files = match list_files(path) {
        Ok(f) => f,
        Err(message) => {
            out.errors.push(LoadError::whole_file(path, message));
            return out;
        }
    };
    for file in files {
        match read_bounded(&file) {
            Ok(text) => parse_into(&file.display().to_string(), &text, &mut out),
            Err(message) => out.errors.push(LoadError::whole_file(&file, message)),
        }
        out.files.push(file);
    }
    out
}

/// Reads a file of at most [`limits::MAX_FILE_BYTES`] (checked on the size and on what was read,
/// so a file growing meanwhile is still bounded).
pub(crate) fn read_bounded(file: &Path) -> Result<String, String> {
    use std::io::Read as _;
    let f = std::fs::File::open(file).map_err(|e| format!("cannot read: {e}"))?;
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    limits::check_size(len).map_err(|e| e.to_string())?;
    // Sized from the metadata (bounded above), so a large file is not copied while it grows.
    let mut text = String::with_capacity(len as usize + 1);
    f.take(limits::MAX_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read: {e}"))?;
    limits::check_size(text.len() as u64).map_err(|e| e.to_string())?;
    Ok(text)
}

/// Lists the YAML files `load` reads for `path`.
pub fn list_files(path: &Path) -> Result<Vec<PathBuf>, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read: {e}"))?;
    if meta.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let entries = std::fs::read_dir(path).map_err(|e| format!("cannot list directory: {e}"))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| is_config_file(p) && p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

/// Whether a path names a file `load` would read from a directory.
pub fn is_config_file(p: &Path) -> bool {
    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
    !name.starts_with('.') && (name.ends_with(".yaml") || name.ends_with(".yml"))
}

/// Parses one file's text (multi-document YAML) into `out`; text beyond the [`limits`] is refused
/// as a whole before parsing.
pub fn parse_into(file: &str, text: &str, out: &mut Loaded) {
    if let Err(e) = limits::check_text(text) {
        out.errors.push(LoadError {
            file: file.to_string(),
            document: 0,
            object: String::new(),
            message: format!("refused before parsing: {e}"),
        });
        return;
    }
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let document = i + 1;
        let err = |object: String, message: String| LoadError {
            file: file.to_string(),
            document,
            object,
            message,
        };
        let value = match serde_yaml::Value::deserialize_from(doc) {
            Ok(v) => v,
            Err(e) => {
                out.errors
                    .push(err(String::new(), format!("invalid YAML: {e}")));
                // A syntax error leaves the rest of the stream unreadable.
                break;
            }
        };
        if value.is_null() {
            continue;
        }
        let field = |k: &str| {
            value
                .get(k)
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_string()
        };
        let (api_version, kind) = (field("apiVersion"), field("kind"));
        let meta = value.get("metadata");
        let name = meta
            .and_then(|m| m.get("name"))
            .and_then(|v| v.as_str())
            .unwrap_or("");
        let ns = meta
            .and_then(|m| m.get("namespace"))
            .and_then(|v| v.as_str());
        let object = match ns {
            Some(ns) => format!(" ({kind} {ns}/{name})"),
            None => format!(" ({kind} {name})"),
        };
        if api_version.is_empty() || kind.is_empty() {
            out.errors
                .push(err(object, "apiVersion and kind are required".into()));
            continue;
        }
        if name.is_empty() {
            out.errors
                .push(err(object, "metadata.name is required".into()));
            continue;
        }
        let snap = &mut out.snapshot;
        let result = match (api_version.as_str(), kind.as_str()) {
            ("networking.k8s.io/v1", "Ingress") => decode(value, &mut snap.ingresses),
            ("networking.k8s.io/v1", "IngressClass") => decode(value, &mut snap.ingress_classes),
            ("v1", "Service") => decode(value, &mut snap.services),
            ("discovery.k8s.io/v1", "EndpointSlice") => decode(value, &mut snap.endpoint_slices),
            ("v1", "Secret") => decode(value, &mut snap.secrets),
            ("v1", "ConfigMap") => decode(value, &mut snap.gateway_api.config_maps),
            ("v1", "Namespace") => decode(value, &mut snap.gateway_api.namespaces),
            ("wsgate.dev/v1alpha1", "Gateway") => decode(value, &mut snap.gateways),
            ("wsgate.dev/v1alpha1", "WebSocketPolicy") => {
                decode(value, &mut snap.gateway_api.websocket_policies)
            }
            ("gateway.networking.k8s.io/v1", "GatewayClass") => {
                decode(value, &mut snap.gateway_api.classes)
            }
            ("gateway.networking.k8s.io/v1", "Gateway") => {
                decode(value, &mut snap.gateway_api.gateways)
            }
            ("gateway.networking.k8s.io/v1", "HTTPRoute") => {
                decode(value, &mut snap.gateway_api.http_routes)
            }
            ("gateway.networking.k8s.io/v1beta1", "ReferenceGrant") => {
                decode(value, &mut snap.gateway_api.reference_grants)
            }
            ("gateway.networking.k8s.io/v1", "BackendTLSPolicy") => {
                decode(value, &mut snap.gateway_api.backend_tls_policies)
            }
            _ => {
                out.warnings.push(err(
                    object,
                    format!("{api_version} {kind} is not read by wsgate; skipped"),
                ));
                continue;
            }
        };
        if let Err(message) = result {
            out.errors.push(err(object, message));
        }
    }
}

trait DeserializeFrom: Sized {
    fn deserialize_from(d: serde_yaml::Deserializer<'_>) -> Result<Self, serde_yaml::Error>;
}

impl DeserializeFrom for serde_yaml::Value {
    fn deserialize_from(d: serde_yaml::Deserializer<'_>) -> Result<Self, serde_yaml::Error> {
        serde::Deserialize::deserialize(d)
    }
}

/// Decodes a document into `T`, naming the field on failure (`spec.rules[0].http.paths[1].pathType: ...`).
fn decode<T: DeserializeOwned + HasNamespace>(
    value: serde_yaml::Value,
    into: &mut Vec<std::sync::Arc<T>>,
) -> Result<(), String> {
    let mut obj: T = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            inner.to_string()
        } else {
            format!("{path}: {inner}")
        }
    })?;
    obj.default_namespace();
    into.push(std::sync::Arc::new(obj));
    Ok(())
}

/// Objects that live in a namespace; files may omit it, meaning `default`.
trait HasNamespace {
    fn default_namespace(&mut self);
}

impl<T: kube::Resource> HasNamespace for T
where
    T::DynamicType: Default,
{
    fn default_namespace(&mut self) {
        let meta = self.meta_mut();
        if meta.namespace.is_none() && !is_cluster_scoped::<T>() {
            meta.namespace = Some("default".into());
        }
    }
}

fn is_cluster_scoped<T: kube::Resource>() -> bool
where
    T::DynamicType: Default,
{
    matches!(
        T::kind(&Default::default()).as_ref(),
        "IngressClass" | "GatewayClass"
    )
}
