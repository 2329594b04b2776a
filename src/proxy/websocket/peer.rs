//! The two ends of a tunnel. A plain TCP socket (the common case) is used directly and split
//! into borrowed halves without a lock; TLS streams and anything else are boxed and split with
//! `tokio::io::split`. Bytes that arrived together with the handshake come along as a prefix.

use crate::proxy::send_timeout::SendTimeout;
use crate::proxy::tls::BackendStream;
use bytes::Bytes;
use hyper_util::rt::TokioIo;
use std::io::IoSlice;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::net::tcp;

/// A bidirectional stream that can be boxed.
pub(crate) trait Duplex: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Duplex for T {}

enum Io {
    Tcp(TcpStream),
    Other(Box<dyn Duplex>),
}

/// One end of a session.
pub(crate) struct Peer {
    io: Io,
    /// Bytes already read from this end that the tunnel must process first.
    prefix: Bytes,
}

impl Peer {
    /// The client end, from hyper's upgrade: the socket itself when the listener is plain TCP.
    pub(crate) fn client(upgraded: hyper::upgrade::Upgraded) -> Self {
        match upgraded.downcast::<TokioIo<SendTimeout<TcpStream>>>() {
            Ok(parts) => Peer {
                io: Io::Tcp(parts.io.into_inner().into_inner()),
                prefix: parts.read_buf,
            },
            Err(upgraded) => Peer {
                io: Io::Other(Box::new(TokioIo::new(upgraded))),
                prefix: Bytes::new(),
            },
        }
    }

    /// The backend end, with the bytes read past the 101 response head.
    pub(crate) fn backend(io: BackendStream, prefix: Bytes) -> Self {
        let io = match io {
            tokio_util::either::Either::Left(tcp) => Io::Tcp(tcp),
            tokio_util::either::Either::Right(tls) => Io::Other(tls),
        };
        Peer { io, prefix }
    }

    /// Any stream (tests use in-memory pipes).
    #[cfg(test)]
    pub(crate) fn other(io: impl Duplex + 'static, prefix: Bytes) -> Self {
        Peer {
            io: Io::Other(Box::new(io)),
            prefix,
        }
    }

    /// Read half, write half and the prefix to process before reading.
    pub(crate) fn split(&mut self) -> (PeerRead<'_>, PeerWrite<'_>, Bytes) {
        let prefix = std::mem::take(&mut self.prefix);
        match &mut self.io {
            Io::Tcp(tcp) => {
                let (r, w) = tcp.split();
                (PeerRead::Tcp(r), PeerWrite::Tcp(w), prefix)
            }
            Io::Other(other) => {
                let (r, w) = tokio::io::split(other);
                (PeerRead::Other(r), PeerWrite::Other(w), prefix)
            }
        }
    }
}

/// The reading half of a [`Peer`].
pub(crate) enum PeerRead<'a> {
    Tcp(tcp::ReadHalf<'a>),
    Other(tokio::io::ReadHalf<&'a mut Box<dyn Duplex>>),
}

/// The writing half of a [`Peer`].
pub(crate) enum PeerWrite<'a> {
    Tcp(tcp::WriteHalf<'a>),
    Other(tokio::io::WriteHalf<&'a mut Box<dyn Duplex>>),
}

impl AsyncRead for PeerRead<'_> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            PeerRead::Tcp(r) => Pin::new(r).poll_read(cx, buf),
            PeerRead::Other(r) => Pin::new(r).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for PeerWrite<'_> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            PeerWrite::Tcp(w) => Pin::new(w).poll_write(cx, buf),
            PeerWrite::Other(w) => Pin::new(w).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            PeerWrite::Tcp(w) => Pin::new(w).poll_write_vectored(cx, bufs),
            PeerWrite::Other(w) => Pin::new(w).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            PeerWrite::Tcp(w) => w.is_write_vectored(),
            PeerWrite::Other(w) => w.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            PeerWrite::Tcp(w) => Pin::new(w).poll_flush(cx),
            PeerWrite::Other(w) => Pin::new(w).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            PeerWrite::Tcp(w) => Pin::new(w).poll_shutdown(cx),
            PeerWrite::Other(w) => Pin::new(w).poll_shutdown(cx),
        }
    }
}
