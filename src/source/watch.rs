//! Watches the configuration path and signals "something changed" (debounced by the reconcile
//! loop).

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::Notify;

/// Keeps the OS watcher alive; dropping it stops the signals.
pub struct FileWatcher {
    _watcher: RecommendedWatcher,
}

/// Starts watching `path` (a file or directory); every relevant file event calls
/// `changed.notify_one()`.
pub fn watch(path: &Path, changed: Arc<Notify>) -> notify::Result<FileWatcher> {
    let target: PathBuf = path.to_path_buf();
    let is_file = path.is_file();
    let file_name = path.file_name().map(|n| n.to_os_string());
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let Ok(event) = res else { return };
        if matches!(event.kind, notify::EventKind::Access(_)) {
            return;
        }
        // Editors replace files by rename, so a single file is watched through its directory.
        let relevant = !is_file
            || event
                .paths
                .iter()
                .any(|p| p.file_name() == file_name.as_deref());
        if relevant {
            changed.notify_one();
        }
    })?;
    let dir = if is_file {
        target
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."))
    } else {
        target.clone()
    };
    watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    Ok(FileWatcher { _watcher: watcher })
}
