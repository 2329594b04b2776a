//! Opens and closes listening sockets as the table's set of ports changes.

use super::Shared;
use super::server;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// A port that could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot listen on port {port}: {message}")]
pub struct BindError {
    /// The configured port.
    pub port: u16,
    /// Why.
    pub message: String,
}

struct Running {
    addr: SocketAddr,
    cancel: CancellationToken,
}

/// An open-connection limit: per listener (`--max-connections N`) or one process-wide limit
/// derived from the open-file limit (`--max-connections 0`).
pub(crate) struct Capacity {
    pub(crate) count: Arc<ConnCount>,
    pub(crate) limit: usize,
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

/// Counts open client connections so a drain can wait for them.
#[derive(Default)]
pub(crate) struct ConnCount {
    open: AtomicUsize,
    idle: Notify,
}

/// Decrements the count when a connection ends.
pub(crate) struct ConnGuard(Arc<ConnCount>);

impl ConnCount {
    /// Connections open now.
    pub(crate) fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    pub(crate) fn enter(self: &Arc<Self>) -> ConnGuard {
        self.open.fetch_add(1, Ordering::SeqCst);
        ConnGuard(self.clone())
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        if self.0.open.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

pub(crate) struct Listeners {
    shared: Arc<Shared>,
    running: tokio::sync::Mutex<HashMap<u16, Running>>,
    bound: Mutex<Vec<(u16, SocketAddr)>>,
}

impl Listeners {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self {
            shared,
            running: Default::default(),
            bound: Default::default(),
        }
    }

    /// Makes the set of open listeners equal to `ports`.
    pub(crate) async fn sync(&self, ports: &[u16]) -> Vec<super::BindError> {
        let mut running = self.running.lock().await;
        running.retain(|port, r| {
            let keep = ports.contains(port);
            if !keep {
                tracing::info!(port, "closing listener");
                r.cancel.cancel();
            }
            keep
        });
        let mut errors = Vec::new();
        for &port in ports {
            if running.contains_key(&port) {
                continue;
            }
            let addr = SocketAddr::new(self.shared.settings.bind, port);
            match TcpListener::bind(addr).await {
                Ok(listener) => {
                    let local = listener.local_addr().unwrap_or(addr);
                    tracing::info!(port, %local, "listening");
                    let cancel = CancellationToken::new();
                    let capacity = match self.shared.settings.max_connections {
                        0 => self.shared.capacity.clone(),
                        n => Arc::new(Capacity {
                            count: Default::default(),
                            limit: n,
                        }),
                    };
                    tokio::spawn(accept_loop(
                        listener,
                        port,
                        self.shared.clone(),
                        cancel.clone(),
                        capacity,
                    ));
                    running.insert(
                        port,
                        Running {
                            addr: local,
                            cancel,
                        },
                    );
                }
                Err(e) => errors.push(super::BindError {
                    port,
                    message: e.to_string(),
                }),
            }
        }
        let mut bound: Vec<(u16, SocketAddr)> = running.iter().map(|(p, r)| (*p, r.addr)).collect();
        bound.sort();
        *self.bound.lock().unwrap_or_else(|p| p.into_inner()) = bound;
        errors
    }

    pub(crate) fn bound(&self) -> Vec<(u16, SocketAddr)> {
        self.bound.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(crate) async fn close_all(&self) {
        let mut running = self.running.lock().await;
        for (_, r) in running.drain() {
            r.cancel.cancel();
        }
    }

    /// Resolves once no client connection is open.
    pub(crate) async fn wait_idle(&self) {
        loop {
            let notified = self.shared.conns.idle.notified();
            if self.shared.conns.open.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    port: u16,
    shared: Arc<Shared>,
    cancel: CancellationToken,
    capacity: Arc<Capacity>,
) {
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    if capacity.count.open() >= capacity.limit {
                        // Refuse early and cheaply; established sessions keep their descriptors.
                        drop(stream);
                        shared.metrics.rejected.with_label_values(&["", "max_connections"]).inc();
                        continue;
                    }
                    let guards = (shared.conns.enter(), capacity.count.enter());
                    let _ = stream.set_nodelay(true);
                    match shared.tls_configs.load().get(&port).cloned() {
                        None => {
                            tokio::spawn(server::serve(stream, peer, port, false, shared.clone(), guards));
                        }
                        Some(config) => {
                            let shared = shared.clone();
                            // The handshake runs in the connection's task, bounded like a request
                            // head, so slow TLS clients never hold up the accept loop.
                            tokio::spawn(async move {
                                let accept = tokio_rustls::TlsAcceptor::from(config).accept(stream);
                                match tokio::time::timeout(shared.settings.header_timeout, accept).await {
                                    Ok(Ok(tls)) => server::serve(tls, peer, port, true, shared, guards).await,
                                    Ok(Err(e)) => tracing::debug!(%peer, port, error = %e, "TLS handshake failed"),
                                    Err(_) => tracing::debug!(%peer, port, "TLS handshake timed out"),
                                }
                            });
                        }
                    }
                }
                Err(e) => {
                    // Typically EMFILE: back off briefly instead of spinning; existing sessions go on.
                    tracing::warn!(port, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}
