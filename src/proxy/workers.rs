//! The data plane's worker threads: each runs its own single-threaded tokio runtime, every
//! listener port gets one accept loop per worker (one `SO_REUSEPORT` socket each, so the kernel
//! spreads new connections), and a connection and its WebSocket session stay on the worker that
//! accepted it.
//!
//! Why not tokio's multi-threaded scheduler: with 1000 busy sessions on one worker its bounded
//! local run queue (256 tasks) overflows into the global queue, which the worker only looks at
//! every few dozen polls. Sessions that land there wait while the others cycle: in the bench the
//! median round trip was the best of all proxies and the p99 6× worse than the peers'
//! (docs/performance.md, "Tail latency at 1000 sessions"). A current-thread runtime has one
//! unbounded FIFO run queue: every ready session gets its turn in order, and no work stealing
//! means no atomics on the hot path either.

use std::cell::Cell;
use std::sync::Arc;
use tokio::runtime::Handle;

thread_local! {
    /// Index of the worker this thread runs (0 on the main thread and on threads that are not
    /// workers).
    static WORKER: Cell<usize> = const { Cell::new(0) };
}

/// Index of the worker running the caller: tags state that should stay on one worker (idle
/// backend connections, whose sockets are registered with that worker's I/O driver).
pub(crate) fn current() -> usize {
    WORKER.with(Cell::get)
}

/// The runtimes that accept and serve connections; cheap to clone. Empty (the default) means
/// "the runtime the proxy was started on", which is what tests and library users get.
#[derive(Clone, Default)]
pub struct Workers {
    handles: Arc<[Handle]>,
}

impl std::fmt::Debug for Workers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Workers({})", self.handles.len())
    }
}

impl Workers {
    /// The handles to spawn accept loops on: the current runtime when none were started.
    pub(crate) fn handles(&self) -> Vec<Handle> {
        if self.handles.is_empty() {
            vec![Handle::current()]
        } else {
            self.handles.to_vec()
        }
    }

    /// How many workers accept connections.
    pub fn count(&self) -> usize {
        self.handles.len().max(1)
    }

    /// Starts `n - 1` worker threads beside the calling runtime, which becomes worker 0 (it also
    /// runs the control plane). Must be called from within that runtime. The threads stop when
    /// the returned [`WorkerThreads`] is dropped.
    pub fn start(n: usize) -> std::io::Result<(Workers, WorkerThreads)> {
        let mut handles = vec![Handle::current()];
        let mut threads = Vec::new();
        for index in 1..n.max(1) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            handles.push(runtime.handle().clone());
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let thread = std::thread::Builder::new()
                .name(format!("wsgate-worker-{index}"))
                .spawn(move || {
                    WORKER.with(|w| w.set(index));
                    // Runs the worker's tasks until told to stop; dropping the runtime then
                    // cancels what is left (the drain has already closed the sessions).
                    let _ = runtime.block_on(stopped);
                })?;
            threads.push((stop, thread));
        }
        Ok((
            Workers {
                handles: handles.into(),
            },
            WorkerThreads { threads },
        ))
    }
}

/// The threads of [`Workers::start`]; dropping this stops and joins them.
pub struct WorkerThreads {
    threads: Vec<(
        tokio::sync::oneshot::Sender<()>,
        std::thread::JoinHandle<()>,
    )>,
}

impl Drop for WorkerThreads {
    fn drop(&mut self) {
        for (stop, thread) in self.threads.drain(..) {
            let _ = stop.send(());
            let _ = thread.join();
        }
    }
}

/// The worker count `--workers 0` means: the CPUs this process may use (cgroup quota included).
pub fn default_count() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}
