//! The one debouncer of both modes: a burst of change signals becomes one rebuild.

use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// How long the input must stay quiet before a rebuild. 50 ms: an editor's save (write a temp
/// file, fsync, rename, chmod) or a `cp`/`kubectl` of several files lands its events within a few
/// milliseconds of each other, so they still coalesce, and the wait is a third of the 150 ms a
/// change may take to serve at 10,000 Ingresses (it was 100 ms, two thirds of that budget).
/// Longer bursts are bounded by `MAX_DELAY`.
pub const QUIET: Duration = Duration::from_millis(50);
/// The longest a rebuild waits while the input keeps changing.
pub const MAX_DELAY: Duration = Duration::from_millis(500);

/// Waits for a change signal, then returns after `QUIET` without a new one, or `MAX_DELAY` after
/// the first, whichever comes first. A signal sent while nobody waits is kept by the `Notify`
/// (one permit), so a change during a rebuild triggers the next one.
pub async fn debounce(changed: &Notify) {
    changed.notified().await;
    let deadline = Instant::now() + MAX_DELAY;
    loop {
        let wake = (Instant::now() + QUIET).min(deadline);
        tokio::select! {
            _ = changed.notified() => {
                if Instant::now() >= deadline {
                    return;
                }
            }
            _ = tokio::time::sleep_until(wake) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn debounce_waits_for_quiet_but_not_longer_than_the_cap() {
        let n = Arc::new(Notify::new());
        // A single change: done after QUIET.
        n.notify_one();
        let t = Instant::now();
        debounce(&n).await;
        assert!(
            t.elapsed() >= QUIET && t.elapsed() < MAX_DELAY,
            "{:?}",
            t.elapsed()
        );
        // Changes every 20 ms (well inside QUIET) forever: done at MAX_DELAY.
        let pinger = {
            let n = n.clone();
            tokio::spawn(async move {
                loop {
                    n.notify_one();
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        };
        tokio::task::yield_now().await;
        let t = Instant::now();
        debounce(&n).await;
        assert!(t.elapsed() >= MAX_DELAY, "{:?}", t.elapsed());
        assert!(
            t.elapsed() < MAX_DELAY + Duration::from_millis(200),
            "{:?}",
            t.elapsed()
        );
        pinger.abort();
    }
}
