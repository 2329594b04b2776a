//! Connection and session accounting: what a drain waits for, the listener capacity, and a route's
//! `maxConnections` slots. Each count is held by a guard that gives it back on drop, so no path can
//! forget to.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::Notify;

/// Counts open client connections and sessions so a drain can wait for them.
#[derive(Default)]
pub(crate) struct ConnCount {
    open: AtomicUsize,
    idle: Notify,
}

/// Holds one unit of a [`ConnCount`] until dropped.
pub(crate) struct ConnGuard(Arc<ConnCount>);

impl ConnCount {
    /// Connections open now.
    pub(crate) fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// Counts one more; the guard counts it out.
    pub(crate) fn enter(self: &Arc<Self>) -> ConnGuard {
        self.open.fetch_add(1, Ordering::SeqCst);
        ConnGuard(self.clone())
    }

    /// Resolves once nothing is open.
    pub(crate) async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            if self.open() == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        if self.0.open.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// An open-connection limit: per listener (`--max-connections N`) or one process-wide limit
/// derived from the open-file limit (`--max-connections 0`).
pub(crate) struct Capacity {
    /// Connections held against the limit.
    pub(crate) count: Arc<ConnCount>,
    /// The limit.
    pub(crate) limit: usize,
}

impl Capacity {
    /// A fresh limit of `limit` connections.
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            count: Default::default(),
            limit,
        }
    }

    /// Whether one more connection would exceed the limit.
    pub(crate) fn full(&self) -> bool {
        self.count.open() >= self.limit
    }
}

/// The soft open-file limit of this process (Linux `/proc/self/limits`), if known.
pub(crate) fn open_file_limit() -> Option<usize> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// The derived default: every proxied session needs two descriptors; keep a reserve for
/// listeners, probes, config files and logs.
pub(crate) fn derived_max_connections() -> usize {
    let nofile = open_file_limit().unwrap_or(1024);
    (nofile.saturating_sub(128) / 2).max(16)
}

/// One of a route's `maxConnections` session slots, released when the session ends.
pub(crate) struct SessionSlot(Arc<AtomicUsize>);

impl SessionSlot {
    /// Takes a slot if fewer than `limit` are taken.
    pub(crate) fn take(count: &Arc<AtomicUsize>, limit: usize) -> Option<Self> {
        count
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < limit).then_some(n + 1)
            })
            .ok()
            .map(|_| SessionSlot(count.clone()))
    }
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn guards_count_out_and_wake_the_drain() {
        let count = Arc::new(ConnCount::default());
        let a = count.enter();
        let b = count.enter();
        assert_eq!(count.open(), 2);
        let waiter = tokio::spawn({
            let count = count.clone();
            async move { count.wait_idle().await }
        });
        drop(a);
        assert!(!waiter.is_finished());
        drop(b);
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("the drain wakes when the last guard goes")
            .expect("no panic");
    }

    #[test]
    fn session_slots_stop_at_the_limit() {
        let count = Arc::new(AtomicUsize::new(0));
        let one = SessionSlot::take(&count, 2).expect("first");
        let _two = SessionSlot::take(&count, 2).expect("second");
        assert!(SessionSlot::take(&count, 2).is_none());
        drop(one);
        assert!(SessionSlot::take(&count, 2).is_some());
    }
}
