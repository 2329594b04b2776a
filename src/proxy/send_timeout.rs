//! A send timeout on client connections (`--send-timeout`): a write to the client that makes no
//! progress for that long fails with `TimedOut`, so a client that stops reading a response cannot
//! hold its connection, its buffers and the backend's response forever (nginx's `send_timeout`).
//!
//! The clock runs only while a write or flush is pending and restarts with every byte accepted,
//! so a slow reader that keeps reading is never cut. A connection that turns into a WebSocket
//! session disarms it ([`SendDeadline::disarm`]): sessions have their own liveness rules.

use std::io::IoSlice;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// The switch a connection's request handlers use to turn the timeout off.
#[derive(Clone, Debug, Default)]
pub(crate) struct SendDeadline(Arc<AtomicBool>);

impl SendDeadline {
    /// Stops the timeout for the rest of the connection (it became a WebSocket session).
    pub(crate) fn disarm(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    fn disarmed(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// `io` with a send timeout of `limit` (`None` = off).
pub(crate) struct SendTimeout<IO> {
    io: IO,
    limit: Option<Duration>,
    switch: SendDeadline,
    /// Running while a write or flush is pending.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<IO> SendTimeout<IO> {
    /// Wraps `io`; `switch` disarms it later.
    pub(crate) fn new(io: IO, limit: Option<Duration>, switch: SendDeadline) -> Self {
        Self {
            io,
            limit,
            switch,
            stalled: None,
        }
    }

    /// The wrapped stream (the WebSocket tunnel takes the socket back after the upgrade).
    pub(crate) fn into_inner(self) -> IO {
        self.io
    }

    /// Passes a ready result through (progress: the clock stops); on pending, runs the clock
    /// and fails once it expires.
    fn watch<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<std::io::Result<T>>,
    ) -> Poll<std::io::Result<T>> {
        if polled.is_ready() {
            self.stalled = None;
            return polled;
        }
        let Some(limit) = self.limit.filter(|_| !self.switch.disarmed()) else {
            self.stalled = None;
            return Poll::Pending;
        };
        let sleep = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        ready!(sleep.as_mut().poll(cx));
        self.stalled = None;
        Poll::Ready(Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("the client read nothing for {limit:?} (--send-timeout)"),
        )))
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for SendTimeout<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for SendTimeout<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, buf);
        self.watch(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.watch(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let polled = Pin::new(&mut self.io).poll_flush(cx);
        self.watch(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// A writer stuck forever, and one that accepts everything.
    #[tokio::test(start_paused = true)]
    async fn a_stuck_write_fails_after_the_limit_and_only_then() {
        let (client, _server) = tokio::io::duplex(16);
        let mut w = SendTimeout::new(
            client,
            Some(Duration::from_secs(5)),
            SendDeadline::default(),
        );
        // 16 bytes fit the pipe; the rest waits for a reader that never comes.
        let t0 = tokio::time::Instant::now();
        let err = w.write_all(&[0u8; 64]).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        let waited = t0.elapsed();
        assert!(
            waited >= Duration::from_secs(5) && waited < Duration::from_secs(6),
            "{waited:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_reader_that_keeps_reading_is_never_cut() {
        let (client, mut server) = tokio::io::duplex(16);
        let mut w = SendTimeout::new(
            client,
            Some(Duration::from_secs(5)),
            SendDeadline::default(),
        );
        let reader = tokio::spawn(async move {
            let mut got = 0usize;
            let mut buf = [0u8; 8];
            while got < 256 {
                // Reads 8 bytes every 4 s: each write waits less than the limit.
                tokio::time::sleep(Duration::from_secs(4)).await;
                got += tokio::io::AsyncReadExt::read(&mut server, &mut buf)
                    .await
                    .unwrap();
            }
            got
        });
        w.write_all(&[1u8; 256]).await.unwrap();
        assert!(reader.await.unwrap() >= 256);
    }

    #[tokio::test(start_paused = true)]
    async fn disarmed_or_off_waits_as_long_as_it_takes() {
        for (limit, disarm) in [(Some(Duration::from_secs(1)), true), (None, false)] {
            let (client, mut server) = tokio::io::duplex(16);
            let switch = SendDeadline::default();
            let mut w = SendTimeout::new(client, limit, switch.clone());
            if disarm {
                switch.disarm();
            }
            let reader = tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                let mut sink = Vec::new();
                tokio::io::AsyncReadExt::read_to_end(&mut server, &mut sink)
                    .await
                    .unwrap();
                sink.len()
            });
            w.write_all(&[2u8; 64]).await.unwrap();
            drop(w);
            assert_eq!(reader.await.unwrap(), 64);
        }
    }
}
