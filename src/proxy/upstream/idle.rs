//! Idle keep-alive connections of one endpoint: a LIFO stack (the most recently used connection
//! is the most likely to be alive), checked for liveness without a syscall when the socket has
//! not become readable, and reaped when too old.

use crate::proxy::tls::BackendStream;
use parking_lot::Mutex;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::time::Instant;

/// Idle connections kept per endpoint.
pub(crate) const MAX_IDLE: usize = 64;
/// An idle connection older than this is closed instead of reused.
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

struct Idle {
    io: BackendStream,
    since: Instant,
    /// The pool runtime that made the connection (its TLS settings).
    runtime: u64,
    /// The worker whose I/O driver the socket is registered with.
    worker: usize,
}

/// The idle stack of one endpoint.
#[derive(Default)]
pub(crate) struct IdleConns {
    stack: Mutex<Vec<Idle>>,
}

impl IdleConns {
    /// The most recently parked live connection made by `runtime` on the calling worker, if
    /// any. Connections parked by other workers stay: their sockets belong to those workers' I/O
    /// drivers, so using one here would route every readiness event through another thread.
    pub(crate) fn checkout(&self, runtime: u64) -> Option<BackendStream> {
        let worker = crate::proxy::workers::current();
        let mut closed = Vec::new();
        let found = {
            let mut stack = self.stack.lock();
            let mut at = stack.len();
            loop {
                if at == 0 {
                    break None;
                }
                at -= 1;
                if stack[at].worker != worker {
                    continue;
                }
                let mut idle = stack.remove(at);
                if idle.runtime == runtime
                    && idle.since.elapsed() < IDLE_TIMEOUT
                    && still_open(&mut idle.io)
                {
                    break Some(idle.io);
                }
                closed.push(idle);
            }
        };
        // Closing sockets outside the lock.
        drop(closed);
        found
    }

    /// Parks a connection whose last response was read completely.
    pub(crate) fn park(&self, io: BackendStream, runtime: u64) {
        let mut stack = self.stack.lock();
        if stack.len() < MAX_IDLE {
            stack.push(Idle {
                io,
                since: Instant::now(),
                runtime,
                worker: crate::proxy::workers::current(),
            });
        }
    }

    /// Closes connections idle for longer than [`IDLE_TIMEOUT`] or closed by the backend.
    pub(crate) fn reap(&self) {
        let mut stack = self.stack.lock();
        let before = std::mem::take(&mut *stack);
        let (mut keep, gone): (Vec<_>, Vec<_>) = before
            .into_iter()
            .partition(|i| i.since.elapsed() < IDLE_TIMEOUT);
        keep.retain_mut(|i| still_open(&mut i.io));
        *stack = keep;
        drop(stack);
        drop(gone);
    }
}

/// Whether an idle connection can carry another request: nothing arrived on it (no EOF, no stray
/// bytes). When the socket has not been reported readable this costs no syscall.
fn still_open(io: &mut BackendStream) -> bool {
    let mut cx = Context::from_waker(std::task::Waker::noop());
    let tcp = match io {
        tokio_util::either::Either::Left(tcp) => tcp,
        tokio_util::either::Either::Right(tls) => tls.get_mut().0,
    };
    if tcp.poll_read_ready(&mut cx).is_pending() {
        return true;
    }
    // Readable: EOF, a TLS close_notify, stray bytes, or stale readiness. Only the last is fine.
    let mut byte = [0u8; 1];
    let mut buf = ReadBuf::new(&mut byte);
    matches!(Pin::new(io).poll_read(&mut cx, &mut buf), Poll::Pending)
}
