//! Incremental re-reading of the configuration path: every file is read again on each pass (cheap,
//! bounded by [`super::limits`]), but only a file whose text changed is parsed again. The result
//! is exactly what [`super::files::load`] gives on the same files, because a file's parsed objects,
//! errors and warnings are a pure function of its name and text, and fragments are merged in the
//! same (sorted) file order.
//!
//! Why the text and not size + mtime: a same-size rewrite within the file system's timestamp
//! granularity would go unnoticed, and a rename of a new inode over an old name must be seen. The
//! text is compared byte for byte (no hash collisions to reason about); keeping it costs about as
//! much memory as the files themselves.

use super::Snapshot;
use super::files::{self, LoadError, Loaded};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// What one file parsed into, and the text it was parsed from.
#[derive(Debug)]
struct Entry {
    text: String,
    parsed: Loaded,
}

/// The parsed content of each file read last time, keyed by path.
#[derive(Debug, Default)]
pub struct FileCache {
    entries: HashMap<PathBuf, Entry>,
}

impl FileCache {
    /// An empty cache: the first [`FileCache::load`] parses everything.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of files whose parse is kept.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no file's parse is kept.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Reads `path` like [`files::load`], parsing again only files whose text changed since the
    /// last call; files gone from the listing are forgotten. A file that cannot be read is
    /// reported (and forgotten) exactly as `load` reports it.
    pub fn load(&mut self, path: &Path) -> Loaded {
        let mut out = Loaded::default();
        let listed = match files::list_files(path) {
            Ok(f) => f,
            Err(message) => {
                self.entries.clear();
                out.errors.push(LoadError::whole_file(path, message));
                return out;
            }
        };
        // Read (and parse what changed) first, then merge in file order with room reserved.
        let read: Vec<(PathBuf, Result<Entry, String>)> = listed
            .into_iter()
            .map(|file| {
                let entry =
                    files::read_bounded(&file).map(|text| match self.entries.remove(&file) {
                        Some(e) if e.text == text => e,
                        _ => {
                            let mut parsed = Loaded::default();
                            files::parse_into(&file.display().to_string(), &text, &mut parsed);
                            Entry { text, parsed }
                        }
                    });
                (file, entry)
            })
            .collect();
        let parsed = read
            .iter()
            .filter_map(|(_, e)| e.as_ref().ok().map(|e| &e.parsed.snapshot));
        reserve(&mut out.snapshot, parsed);
        let mut kept = HashMap::with_capacity(read.len());
        for (file, entry) in read {
            match entry {
                Ok(entry) => {
                    merge(&mut out, &entry.parsed);
                    kept.insert(file.clone(), entry);
                }
                Err(message) => out.errors.push(LoadError::whole_file(&file, message)),
            }
            out.files.push(file);
        }
        self.entries = kept;
        out
    }
}

/// Reserves room for every object of `parts` at once: 10,000 Ingresses are megabytes, and growing
/// the vectors by doubling would copy them several times on every pass.
fn reserve<'a>(into: &mut Snapshot, parts: impl Iterator<Item = &'a Snapshot> + Clone) {
    macro_rules! total {
        ($($f:ident).+) => {{
            let n: usize = parts.clone().map(|p| p.$($f).+.len()).sum();
            into.$($f).+.reserve(n);
        }};
    }
    total!(ingresses);
    total!(services);
    total!(endpoint_slices);
    total!(secrets);
    total!(gateway_api.http_routes);
}

/// Appends one file's fragment to the whole, in the order `parse_into` would have pushed it.
fn merge(out: &mut Loaded, part: &Loaded) {
    out.errors.extend_from_slice(&part.errors);
    out.warnings.extend_from_slice(&part.warnings);
    extend(&mut out.snapshot, &part.snapshot);
}

/// Appends clones of every object of `part` (destructured, so a new kind cannot be forgotten).
fn extend(into: &mut Snapshot, part: &Snapshot) {
    let Snapshot {
        ingresses,
        ingress_classes,
        services,
        endpoint_slices,
        secrets,
        gateways,
        gateway_api,
    } = part;
    into.ingresses.extend_from_slice(ingresses);
    into.ingress_classes.extend_from_slice(ingress_classes);
    into.services.extend_from_slice(services);
    into.endpoint_slices.extend_from_slice(endpoint_slices);
    into.secrets.extend_from_slice(secrets);
    into.gateways.extend_from_slice(gateways);
    let super::GatewayApi {
        classes,
        gateways,
        http_routes,
        reference_grants,
        backend_tls_policies,
        config_maps,
        websocket_policies,
        namespaces,
        gateway_services,
    } = gateway_api;
    let g = &mut into.gateway_api;
    g.classes.extend_from_slice(classes);
    g.gateways.extend_from_slice(gateways);
    g.http_routes.extend_from_slice(http_routes);
    g.reference_grants.extend_from_slice(reference_grants);
    g.backend_tls_policies
        .extend_from_slice(backend_tls_policies);
    g.config_maps.extend_from_slice(config_maps);
    g.websocket_policies.extend_from_slice(websocket_policies);
    g.namespaces.extend_from_slice(namespaces);
    g.gateway_services.extend_from_slice(gateway_services);
}

#[cfg(test)]
mod tests {
    use super::*;

    const SVC: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: NAME, namespace: ns}\n\
                       spec:\n  ports: [{name: ws, port: 80}]\n";

    fn svc(name: &str) -> String {
        SVC.replace("NAME", name)
    }

    /// The cache's result against a fresh full read, compared field by field (Debug covers every
    /// object and error exactly).
    fn assert_same(cache: &mut FileCache, dir: &Path) {
        let inc = cache.load(dir);
        let full = files::load(dir);
        assert_eq!(
            format!("{:?}", inc.snapshot),
            format!("{:?}", full.snapshot)
        );
        assert_eq!(inc.errors, full.errors);
        assert_eq!(inc.warnings, full.warnings);
        assert_eq!(inc.files, full.files);
    }

    #[test]
    fn incremental_reads_equal_full_reads_through_adds_edits_renames_and_deletes() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        let mut cache = FileCache::new();
        assert_same(&mut cache, d);
        std::fs::write(d.join("a.yaml"), svc("a")).unwrap();
        std::fs::write(d.join("b.yaml"), format!("{}---\n{}", svc("b1"), svc("b2"))).unwrap();
        std::fs::write(
            d.join("c.yml"),
            "apiVersion: v9\nkind: Unknown\nmetadata: {name: x}\n",
        )
        .unwrap();
        std::fs::write(d.join(".hidden.yaml"), svc("hidden")).unwrap();
        assert_same(&mut cache, d);
        assert_eq!(cache.len(), 3);
        // Edit in place, same size.
        std::fs::write(d.join("a.yaml"), svc("z")).unwrap();
        assert_same(&mut cache, d);
        // A new inode renamed over an existing name.
        std::fs::write(d.join(".tmp"), svc("renamed")).unwrap();
        std::fs::rename(d.join(".tmp"), d.join("b.yaml")).unwrap();
        assert_same(&mut cache, d);
        // A file renamed to a new name (old name gone, same text elsewhere).
        std::fs::rename(d.join("a.yaml"), d.join("0-first.yaml")).unwrap();
        assert_same(&mut cache, d);
        // Delete.
        std::fs::remove_file(d.join("c.yml")).unwrap();
        assert_same(&mut cache, d);
        assert_eq!(cache.len(), 2);
        let names: Vec<_> = cache
            .load(d)
            .snapshot
            .services
            .iter()
            .map(|s| s.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(names, ["z", "renamed"]);
    }

    #[test]
    fn a_bad_file_reports_its_error_like_a_full_read_and_recovers() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        let mut cache = FileCache::new();
        std::fs::write(d.join("a.yaml"), svc("a")).unwrap();
        std::fs::write(d.join("b.yaml"), svc("b")).unwrap();
        assert_same(&mut cache, d);
        // Invalid YAML, then a document refused by the depth limit, then a bad field.
        std::fs::write(d.join("b.yaml"), "kind: [unclosed\n").unwrap();
        assert_same(&mut cache, d);
        assert_eq!(cache.load(d).errors.len(), 1);
        std::fs::write(d.join("b.yaml"), "[".repeat(200)).unwrap();
        assert_same(&mut cache, d);
        let e = cache.load(d).errors;
        assert!(e[0].message.contains("refused before parsing"), "{e:?}");
        std::fs::write(
            d.join("b.yaml"),
            "apiVersion: v1\nkind: Service\nmetadata: {name: b}\nspec: {ports: 7}\n",
        )
        .unwrap();
        assert_same(&mut cache, d);
        assert_eq!(cache.load(d).errors.len(), 1);
        // Unreadable (a directory with a YAML name is skipped; a dangling link cannot be read).
        #[cfg(unix)]
        {
            std::fs::remove_file(d.join("b.yaml")).unwrap();
            std::os::unix::fs::symlink(d.join("missing"), d.join("b.yaml")).unwrap();
            assert_same(&mut cache, d);
            std::fs::remove_file(d.join("b.yaml")).unwrap();
        }
        // Fixed: the same objects as a fresh read.
        std::fs::write(d.join("b.yaml"), svc("b")).unwrap();
        assert_same(&mut cache, d);
        assert!(cache.load(d).errors.is_empty());
        // The path itself gone.
        let gone = d.join("nope");
        let inc = cache.load(&gone);
        assert_eq!(inc.errors, files::load(&gone).errors);
        assert!(cache.is_empty());
    }

    #[test]
    fn an_oversized_file_is_refused_on_every_read() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        let mut cache = FileCache::new();
        std::fs::write(d.join("a.yaml"), svc("a")).unwrap();
        assert_same(&mut cache, d);
        let big = format!(
            "{}#{}\n",
            svc("a"),
            "x".repeat(crate::source::limits::MAX_FILE_BYTES as usize)
        );
        std::fs::write(d.join("a.yaml"), big).unwrap();
        assert_same(&mut cache, d);
        let e = cache.load(d).errors;
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(cache.is_empty());
    }
}
