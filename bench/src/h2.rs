//! WebSockets over HTTP/2 (RFC 8441) for the load generator: one cleartext connection with prior
//! knowledge (h2c), sessions opened as extended CONNECT streams, and each stream's DATA frames as
//! a byte stream (`H2Ws`: `AsyncRead + AsyncWrite`), so the WebSocket framing code and every
//! measuring loop are the same as over HTTP/1.1.

use bytes::Bytes;
use h2::client::SendRequest;
use h2::{RecvStream, SendStream};
use http::{Method, Request, StatusCode};
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Per-stream and per-connection receive windows the client announces. Large enough that a
/// 64 KiB echo never waits for a WINDOW_UPDATE of ours; capacity is released as bytes are read,
/// so the windows stay open.
const STREAM_WINDOW: u32 = 1 << 20;
const CONN_WINDOW: u32 = 16 << 20;

/// An HTTP/2 connection that may carry WebSocket sessions.
pub struct H2Conn {
    send: SendRequest<Bytes>,
}

/// Starts HTTP/2 with prior knowledge on `tcp` (client preface and SETTINGS), spawns the
/// connection's driver on the current `LocalSet`, and waits until the server's SETTINGS arrived
/// with `SETTINGS_ENABLE_CONNECT_PROTOCOL = 1`: without it RFC 8441 forbids the extended CONNECT.
pub async fn h2c_connect(tcp: TcpStream, wait: Duration) -> io::Result<H2Conn> {
    let (send, conn) = h2::client::Builder::new()
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONN_WINDOW)
        .enable_push(false)
        .handshake::<_, Bytes>(tcp)
        .await
        .map_err(|e| io::Error::other(format!("h2 handshake: {e}")))?;
    tokio::task::spawn_local(async move {
        if let Err(e) = conn.await {
            eprintln!("wsbench: h2 connection: {e}");
        }
    });
    let send = send
        .ready()
        .await
        .map_err(|e| io::Error::other(format!("h2 ready: {e}")))?;
    // The server's SETTINGS is processed by the driver task; poll for its effect.
    let end = Instant::now() + wait;
    while !send.is_extended_connect_protocol_enabled() {
        if Instant::now() >= end {
            return Err(io::Error::other(
                "server did not enable the extended CONNECT protocol (RFC 8441)",
            ));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(H2Conn { send })
}

impl H2Conn {
    /// How many streams the server lets this client open at once (its
    /// `SETTINGS_MAX_CONCURRENT_STREAMS`, as far as the client has seen it).
    pub fn max_streams(&self) -> usize {
        self.send.current_max_send_streams()
    }

    /// Opens one WebSocket session: an extended CONNECT (`:method CONNECT`, `:protocol websocket`,
    /// `:scheme http`, `:authority host`, `:path path`, `sec-websocket-version: 13`); the server
    /// must answer `200`.
    pub async fn open_ws(&self, host: &str, path: &str) -> io::Result<H2Ws> {
        let mut req = Request::builder()
            .method(Method::CONNECT)
            .uri(format!("http://{host}{path}"))
            .header("sec-websocket-version", "13")
            .body(())
            .map_err(io::Error::other)?;
        req.extensions_mut()
            .insert(h2::ext::Protocol::from_static("websocket"));
        let mut send = self
            .send
            .clone()
            .ready()
            .await
            .map_err(|e| io::Error::other(format!("h2 ready: {e}")))?;
        let (resp, stream) = send
            .send_request(req, false)
            .map_err(|e| io::Error::other(format!("extended CONNECT: {e}")))?;
        let resp = resp
            .await
            .map_err(|e| io::Error::other(format!("extended CONNECT answer: {e}")))?;
        if resp.status() != StatusCode::OK {
            return Err(io::Error::other(format!(
                "extended CONNECT answered {} (want 200)",
                resp.status()
            )));
        }
        Ok(H2Ws {
            send: stream,
            recv: resp.into_body(),
            buf: Bytes::new(),
        })
    }
}

/// One WebSocket session's stream: reads are the DATA frames' bytes (window released as they are
/// handed over), writes become DATA frames sent within the flow-control window.
pub struct H2Ws {
    send: SendStream<Bytes>,
    recv: RecvStream,
    buf: Bytes,
}

impl AsyncRead for H2Ws {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        while self.buf.is_empty() {
            match ready!(self.recv.poll_data(cx)) {
                // END_STREAM: EOF, as a TCP FIN would be.
                None => return Poll::Ready(Ok(())),
                Some(Ok(b)) => self.buf = b,
                Some(Err(e)) => return Poll::Ready(Err(io::Error::other(e))),
            }
        }
        let n = self.buf.len().min(out.remaining());
        let chunk = self.buf.split_to(n);
        out.put_slice(&chunk);
        // The bytes are ours now: give the window back to the server.
        self.recv
            .flow_control()
            .release_capacity(n)
            .map_err(io::Error::other)?;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for H2Ws {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        loop {
            // Send only what the stream's and the connection's windows allow; the rest waits
            // for WINDOW_UPDATE (back-pressure, as a full socket buffer gives over TCP).
            let cap = self.send.capacity();
            if cap > 0 {
                let n = cap.min(buf.len());
                self.send
                    .send_data(Bytes::copy_from_slice(&buf[..n]), false)
                    .map_err(io::Error::other)?;
                return Poll::Ready(Ok(n));
            }
            self.send.reserve_capacity(buf.len());
            match ready!(self.send.poll_capacity(cx)) {
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Poll::Ready(Err(io::Error::other(e))),
                None => return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        // DATA handed to h2 is written by the connection's driver task.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        // END_STREAM: the half-close a TCP FIN would be.
        let _ = self.send.send_data(Bytes::new(), true);
        Poll::Ready(Ok(()))
    }
}
