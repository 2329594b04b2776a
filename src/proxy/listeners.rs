//! Opens and closes listening sockets as the table's set of ports changes.

use super::accounting::Capacity;
use super::http2::{self, ClientProtocol};
use super::server::{self, Accepted};
use super::state::Shared;
use super::table::BindError;
use parking_lot::Mutex;
use socket2::{Domain, Protocol, Socket, Type};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Pending connections per listening socket (tokio's `TcpListener::bind` uses the same).
const BACKLOG: i32 = 1024;

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
            let workers = self.shared.settings.workers.handles();
            match bind(addr, workers.len()) {
                Ok(sockets) => {
                    let local = sockets[0].local_addr().unwrap_or(addr);
                    tracing::info!(port, %local, workers = workers.len(), "listening");
                    let cancel = CancellationToken::new();
                    let capacity = match self.shared.settings.max_connections {
                        0 => self.shared.capacity.clone(),
                        n => Arc::new(Capacity::new(n)),
                    };
                    for (socket, worker) in sockets.into_iter().zip(workers) {
                        let (shared, cancel, capacity) =
                            (self.shared.clone(), cancel.clone(), capacity.clone());
                        // Registered with the worker's own I/O driver, inside its runtime.
                        worker.spawn(async move {
                            match TcpListener::from_std(socket) {
                                Ok(listener) => {
                                    accept_loop(listener, port, shared, cancel, capacity).await
                                }
                                Err(e) => {
                                    tracing::error!(port, error = %e, "cannot register listener")
                                }
                            }
                        });
                    }
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

/// Listening sockets for `addr`, one per worker. With several workers each gets its own socket
/// on the same port (`SO_REUSEPORT`: the kernel spreads connections over them, and a worker never
/// wakes for a connection another one takes); port 0 binds the first and reuses its port. Either
/// all bind or none stays open.
fn bind(addr: SocketAddr, workers: usize) -> std::io::Result<Vec<std::net::TcpListener>> {
    let mut sockets: Vec<std::net::TcpListener> = Vec::with_capacity(workers);
    let mut at = addr;
    for _ in 0..workers.max(1) {
        let socket = Socket::new(Domain::for_address(at), Type::STREAM, Some(Protocol::TCP))?;
        // As tokio's own bind: a restarted process binds while old connections sit in TIME_WAIT.
        socket.set_reuse_address(true)?;
        if workers > 1 {
            socket.set_reuse_port(true)?;
        }
        socket.set_nonblocking(true)?;
        socket.bind(&at.into())?;
        socket.listen(BACKLOG)?;
        let listener: std::net::TcpListener = socket.into();
        if at.port() == 0 {
            at = listener.local_addr()?;
        }
        sockets.push(listener);
    }
    Ok(sockets)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_worker_gets_a_socket_on_the_same_port() {
        let sockets = bind("127.0.0.1:0".parse().unwrap(), 3).unwrap();
        let ports: Vec<u16> = sockets
            .iter()
            .map(|s| s.local_addr().unwrap().port())
            .collect();
        assert_eq!(ports.len(), 3);
        assert_ne!(ports[0], 0);
        assert!(ports.iter().all(|&p| p == ports[0]), "{ports:?}");
    }

    #[test]
    fn a_port_held_by_another_socket_is_an_error_and_nothing_stays_open() {
        // A plain socket without SO_REUSEPORT: the kernel refuses every other bind of the port.
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        assert!(bind(addr, 2).is_err());
        assert!(bind(addr, 1).is_err());
        drop(taken);
        // Nothing of the failed attempts holds the port.
        assert_eq!(bind(addr, 2).unwrap().len(), 2);
    }
}
