//! The file source of standalone mode: YAML files read with [`crate::source::files`], changes
//! reported by [`crate::source::watch`].

use super::debounce::debounce;
use super::{ReadProblem, Source, View};
use crate::source::file_cache::FileCache;
use crate::source::files::{self, LoadError, Loaded};
use crate::source::{Snapshot, watch};
use crate::translate::Severity;
use parking_lot::Mutex;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::Notify;

/// What one read of the files produced.
#[derive(Debug, Default)]
pub struct FileView(pub Loaded);

fn problem(severity: Severity, e: &LoadError) -> ReadProblem {
    ReadProblem {
        severity,
        location: format!("{}: document {}{}", e.file, e.document, e.object),
        field: String::new(),
        message: e.message.clone(),
    }
}

impl View for FileView {
    fn snapshot(&self) -> &Snapshot {
        &self.0.snapshot
    }

    fn problems(&self) -> Vec<ReadProblem> {
        let errors = self.0.errors.iter().map(|e| problem(Severity::Error, e));
        let warnings = self
            .0
            .warnings
            .iter()
            .map(|e| problem(Severity::Warning, e));
        errors.chain(warnings).collect()
    }
}

/// Reads `path` now (blocking).
pub fn read(path: &Path) -> FileView {
    FileView(files::load(path))
}

/// A file or directory of YAML files, watched for changes.
pub struct FileSource {
    path: PathBuf,
    changed: Arc<Notify>,
    /// Each file's parse from the previous pass: a change re-parses only the files it touched.
    cache: Arc<Mutex<FileCache>>,
    _watcher: watch::FileWatcher,
}

impl FileSource {
    /// Starts watching `path`.
    pub fn watch(path: &Path) -> notify::Result<Self> {
        let changed = Arc::new(Notify::new());
        let watcher = watch::watch(path, changed.clone())?;
        Ok(Self {
            path: path.to_path_buf(),
            changed,
            cache: Arc::default(),
            _watcher: watcher,
        })
    }
}

impl Source for FileSource {
    type View = FileView;

    async fn changed(&mut self) -> bool {
        debounce(&self.changed).await;
        true
    }

    fn reader(&self) -> Box<dyn FnOnce() -> FileView + Send> {
        let path = self.path.clone();
        let cache = self.cache.clone();
        Box::new(move || {
            let mut cache = cache.lock();
            FileView(cache.load(&path))
        })
    }
}
