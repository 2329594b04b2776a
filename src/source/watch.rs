//! Watches the configuration path and reports debounced "something changed" ticks.

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::mpsc;

/// How long the files must stay quiet before a reload.
pub const QUIET: Duration = Duration::from_millis(100);
/// The longest a reload waits while files keep changing.
pub const MAX_DELAY: Duration = Duration::from_millis(500);

/// Keeps the OS watcher alive; dropping it stops the ticks.
pub struct FileWatcher {
    _watcher: RecommendedWatcher,
}

/// Starts watching `path` (a file or directory). Each debounced burst of changes sends one `()` on
/// the returned channel.
pub fn watch(path: &Path) -> notify::Result<(FileWatcher, mpsc::Receiver<()>)> {
    let (raw_tx, mut raw_rx) = mpsc::unbounded_channel::<()>();
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
            let _ = raw_tx.send(());
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

    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        while raw_rx.recv().await.is_some() {
            let deadline = tokio::time::Instant::now() + MAX_DELAY;
            loop {
                let quiet = tokio::time::sleep(QUIET);
                tokio::select! {
                    more = raw_rx.recv() => if more.is_none() { return },
                    _ = quiet => break,
                }
                if tokio::time::Instant::now() >= deadline {
                    break;
                }
            }
            // A full channel already holds a pending tick, which covers this burst too.
            let _ = tx.try_send(());
        }
    });
    Ok((FileWatcher { _watcher: watcher }, rx))
}
