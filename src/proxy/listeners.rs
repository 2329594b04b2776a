//! Opens and closes listening sockets as the table's set of ports changes.

use super::accounting::Capacity;
use super::http2::{self, ClientProtocol};
use super::server::{self, Accepted};
use super::state::Shared;
use super::table::BindError;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

struct Running {
    addr: SocketAddr,
    cancel: CancellationToken,
}

/// The open listening sockets, one accept loop each.
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
    pub(crate) async fn sync(&self, ports: &[u16]) -> Vec<BindError> {
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
                        n => Arc::new(Capacity::new(n)),
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
                Err(e) => errors.push(BindError {
                    port,
                    message: e.to_string(),
                }),
            }
        }
        let mut bound: Vec<(u16, SocketAddr)> = running.iter().map(|(p, r)| (*p, r.addr)).collect();
        bound.sort();
        *self.bound.lock() = bound;
        errors
    }

    pub(crate) fn bound(&self) -> Vec<(u16, SocketAddr)> {
        self.bound.lock().clone()
    }

    pub(crate) async fn close_all(&self) {
        let mut running = self.running.lock().await;
        for (_, r) in running.drain() {
            r.cancel.cancel();
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
                    if capacity.full() {
                        // Refuse early and cheaply; established sessions keep their descriptors.
                        drop(stream);
                        shared.metrics.rejected.with_label_values(&["", "max_connections"]).inc();
                        continue;
                    }
                    let guards = (shared.conns.enter(), capacity.count.enter());
                    let _ = stream.set_nodelay(true);
                    let accepted = move |tls, protocol| Accepted { peer, port, tls, protocol, guards };
                    match shared.table.load().tls(port).cloned() {
                        None if shared.settings.http2.cleartext => {
                            let shared = shared.clone();
                            // HTTP/2 with prior knowledge: the preface decides, in the
                            // connection's task.
                            tokio::spawn(async move {
                                let within = shared.settings.header_timeout;
                                let protocol = http2::sniff_cleartext(&stream, within).await;
                                server::serve(stream, accepted(false, protocol), shared).await
                            });
                        }
                        None => {
                            let accepted = accepted(false, ClientProtocol::Http1);
                            tokio::spawn(server::serve(stream, accepted, shared.clone()));
                        }
                        Some(config) => {
                            let shared = shared.clone();
                            // The handshake runs in the connection's task, bounded like a request
                            // head, so slow TLS clients never hold up the accept loop.
                            tokio::spawn(async move {
                                let accept = tokio_rustls::TlsAcceptor::from(config).accept(stream);
                                match tokio::time::timeout(shared.settings.header_timeout, accept).await {
                                    Ok(Ok(tls)) => {
                                        let alpn = tls.get_ref().1.alpn_protocol();
                                        let protocol = ClientProtocol::from_alpn(alpn);
                                        server::serve(tls, accepted(true, protocol), shared).await
                                    }
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
