//! Serves one accepted client connection with hyper's HTTP/1.1 server; every request goes
//! through [`pipeline::handle`]. Upgraded sessions run on in their own task.

use super::accounting::ConnGuard;
use super::context::ConnCtx;
use super::pipeline;
use super::state::Shared;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

/// Where a connection came from and the guards it holds.
pub(crate) struct Accepted {
    /// The TCP peer.
    pub(crate) peer: SocketAddr,
    /// The listener port.
    pub(crate) port: u16,
    /// Whether TLS was terminated.
    pub(crate) tls: bool,
    /// The drain count and the listener capacity slot.
    pub(crate) guards: (ConnGuard, ConnGuard),
}

/// Serves one accepted connection until it closes.
pub(crate) async fn serve<IO>(stream: IO, accepted: Accepted, shared: Arc<Shared>)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let Accepted {
        peer,
        port,
        tls,
        guards: (guard, slot),
    } = accepted;
    let ctx = Arc::new(ConnCtx::new(shared.clone(), port, tls, peer, slot));
    let service = service_fn(move |req| {
        let ctx = ctx.clone();
        async move { Ok::<_, Infallible>(pipeline::handle(req, ctx).await) }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(shared.settings.header_timeout)
        .max_buf_size(shared.settings.max_header_bytes.max(8192))
        .keep_alive(true);
    let conn = builder
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(conn);
    let mut drain = shared.drain.subscribe();
    let draining = *drain.borrow();
    if draining {
        conn.as_mut().graceful_shutdown();
    }
    loop {
        tokio::select! {
            res = conn.as_mut() => {
                if let Err(e) = res {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                break;
            }
            changed = drain.changed(), if !draining => {
                if changed.is_err() || *drain.borrow() {
                    conn.as_mut().graceful_shutdown();
                }
                if changed.is_err() {
                    break;
                }
            }
        }
    }
    drop(guard);
}
