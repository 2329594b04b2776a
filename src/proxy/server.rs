//! Serves one accepted client connection with hyper's HTTP/1.1 or HTTP/2 server (by ALPN, or
//! the prior-knowledge preface on cleartext listeners); every request goes through
//! [`pipeline::handle`]. Upgraded sessions run on in their own task.

use super::accounting::ConnGuard;
use super::context::ConnCtx;
use super::http2::{self, ClientProtocol};
use super::pipeline;
use super::send_timeout::{SendDeadline, SendTimeout};
use super::state::Shared;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Where a connection came from and the guards it holds.
pub(crate) struct Accepted {
    /// The TCP peer.
    pub(crate) peer: SocketAddr,
    /// The listener port.
    pub(crate) port: u16,
    /// Whether TLS was terminated.
    pub(crate) tls: bool,
    /// The protocol agreed by ALPN or found by the preface.
    pub(crate) protocol: ClientProtocol,
    /// The drain count and the listener capacity slot.
    pub(crate) guards: (ConnGuard, ConnGuard),
}

/// Serves one accepted connection until it closes.
///
/// Boxed: the connection's future (hyper's connection state and the request in flight) is
/// several kilobytes, and `tokio::spawn` moves a future several times while it sets up and
/// finishes the task (about 4k instructions per connection in memory copies); a box moves
/// as a pointer.
pub(crate) fn serve<IO>(
    stream: IO,
    accepted: Accepted,
    shared: Arc<Shared>,
) -> Pin<Box<impl Future<Output = ()> + Send>>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    Box::pin(serve_connection(stream, accepted, shared))
}

async fn serve_connection<IO>(stream: IO, accepted: Accepted, shared: Arc<Shared>)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let Accepted {
        peer,
        port,
        tls,
        protocol,
        guards: (guard, slot),
    } = accepted;
    let deadline = SendDeadline::default();
    let ctx = Arc::new(ConnCtx::new(
        shared.clone(),
        (port, tls, protocol),
        peer,
        (slot, deadline.clone()),
    ));
    ctx.shared
        .metrics
        .client_connections
        .with_label_values(&[protocol.label()])
        .inc();
    let seen = Arc::new(AtomicBool::new(false));
    let first = seen.clone();
    let service = service_fn(move |req| {
        let ctx = ctx.clone();
        first.store(true, Ordering::Relaxed);
        async move { Ok::<_, Infallible>(pipeline::handle(req, ctx).await) }
    });
    let io = TokioIo::new(SendTimeout::new(
        stream,
        shared.settings.send_timeout,
        deadline,
    ));
    match protocol {
        ClientProtocol::Http1 => {
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(shared.settings.header_timeout.min(crate::ir::Timeout::MAX))
                .max_buf_size(shared.settings.max_header_bytes.max(8192))
                .keep_alive(true);
            let conn = builder.serve_connection(io, service).with_upgrades();
            drive(conn, |c| c.graceful_shutdown(), (&shared, peer), None).await;
        }
        ClientProtocol::H2 => {
            let conn = http2::builder(&shared.settings).serve_connection(io, service);
            drive(
                conn,
                |c| c.graceful_shutdown(),
                (&shared, peer),
                Some(&seen),
            )
            .await;
        }
    }
    drop(guard);
}

/// Runs a connection to its end, shutting it down gracefully (`shut_down`: HTTP/1 after the
/// request in flight; HTTP/2 GOAWAY, then the open streams finish) when the drain starts and, for
/// HTTP/2 (`seen` given), closing it when no request arrived within the header timeout (hyper's
/// HTTP/2 server has no such timer: a client that only completes the handshake would hold a
/// slot).
async fn drive<C>(
    conn: C,
    shut_down: impl Fn(Pin<&mut C>),
    (shared, peer): (&Shared, SocketAddr),
    seen: Option<&AtomicBool>,
) where
    C: Future<Output = hyper::Result<()>>,
{
    tokio::pin!(conn);
    let mut drain = shared.drain.subscribe();
    let draining = *drain.borrow();
    if draining {
        shut_down(conn.as_mut());
    }
    let first_request = tokio::time::sleep(shared.settings.header_timeout);
    tokio::pin!(first_request);
    let mut waiting = seen.is_some();
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
                    shut_down(conn.as_mut());
                }
                if changed.is_err() {
                    break;
                }
            }
            _ = &mut first_request, if waiting => {
                waiting = false;
                if !seen.is_some_and(|s| s.load(Ordering::Relaxed)) {
                    // Closed, not shut down gracefully: there is no stream to finish, and a
                    // graceful GOAWAY would wait for the silent client's PING answer.
                    tracing::debug!(%peer, "no HTTP/2 request within the header timeout");
                    break;
                }
            }
        }
    }
}
