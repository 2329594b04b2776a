//! A backend response body, decoded as the client reads it. When the body ends as framed, the
//! connection goes back to its endpoint's idle stack.

use super::head::Framing;
use crate::proxy::pools::EndpointState;
use crate::proxy::tls::BackendStream;
use bytes::{Buf, Bytes, BytesMut};
use hyper::body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

/// Largest chunk-size or trailer line accepted.
const MAX_LINE: usize = 4096;
/// Largest trailer section accepted (the trailers are read and dropped).
const MAX_TRAILERS: usize = 16 * 1024;
/// Read size while a body streams.
const READ_SIZE: usize = 16 * 1024;

/// Where a finished connection goes back to.
pub(crate) struct Home {
    pub(crate) endpoint: Arc<EndpointState>,
    pub(crate) runtime: u64,
}

/// Chunked decoding state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Expecting a chunk-size line.
    Size,
    /// Inside chunk data, this many bytes left.
    Data(u64),
    /// Expecting the CRLF after chunk data.
    DataEnd,
    /// Reading trailer lines (this many bytes so far) up to the empty line.
    Trailers(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Length(u64),
    Chunked(Chunk),
    UntilClose,
    Done,
}

/// The body of a response from a backend.
pub(crate) struct BackendBody {
    io: Option<BackendStream>,
    buf: BytesMut,
    state: State,
    /// Set when the connection may be parked once the body is complete.
    home: Option<Home>,
}

/// A body that ended before its framing said it would, or was malformed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyError {
    #[error("backend closed the connection before the response body was complete")]
    Incomplete,
    #[error("invalid chunked encoding from the backend: {0}")]
    Chunked(&'static str),
    #[error("reading the response body failed: {0}")]
    Io(#[from] std::io::Error),
}

impl BackendBody {
    /// A body read from `io` (with `buf` already read past the head), framed by `framing`.
    pub(crate) fn new(
        io: BackendStream,
        buf: BytesMut,
        framing: Framing,
        home: Option<Home>,
    ) -> Self {
        let state = match framing {
            Framing::Empty => State::Done,
            Framing::Length(n) => State::Length(n),
            Framing::Chunked => State::Chunked(Chunk::Size),
            Framing::UntilClose => State::UntilClose,
        };
        let mut body = BackendBody {
            io: Some(io),
            buf,
            state,
            home,
        };
        if body.state == State::Done {
            body.finish();
        }
        body
    }

    /// A body decoded from bytes already in memory, followed by the end of the connection (the
    /// decoder without a socket: fuzzing and tests).
    pub(crate) fn from_bytes(buf: BytesMut, framing: Framing) -> Self {
        let state = match framing {
            Framing::Empty => State::Done,
            Framing::Length(n) => State::Length(n),
            Framing::Chunked => State::Chunked(Chunk::Size),
            Framing::UntilClose => State::UntilClose,
        };
        BackendBody {
            io: None,
            buf,
            state,
            home: None,
        }
    }

    /// The body ended as framed: park the connection if it is clean and allowed to be reused.
    fn finish(&mut self) {
        self.state = State::Done;
        let io = self.io.take();
        if let (Some(io), Some(home)) = (io, self.home.take())
            && self.buf.is_empty()
        {
            home.endpoint.idle.park(io, home.runtime);
        }
    }

    /// Reads more from the backend into `buf`; `Ok(0)` at EOF.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<Result<usize, BodyError>> {
        let Some(io) = self.io.as_mut() else {
            return Poll::Ready(Ok(0));
        };
        if self.buf.capacity() - self.buf.len() < 1024 {
            self.buf.reserve(READ_SIZE);
        }
        let n = ready!(tokio_util::io::poll_read_buf(
            Pin::new(io),
            cx,
            &mut self.buf
        ))?;
        Poll::Ready(Ok(n))
    }

    /// Takes up to `limit` bytes of data from the buffer.
    fn take(&mut self, limit: u64) -> Bytes {
        let n = (self.buf.len() as u64).min(limit) as usize;
        self.buf.split_to(n).freeze()
    }

    /// Advances the chunked decoder over buffered bytes.
    fn step_chunked(&mut self, c: Chunk) -> Result<Step, BodyError> {
        match c {
            Chunk::Size => {
                let Some(line) = take_line(&mut self.buf)? else {
                    return Ok(Step::NeedMore);
                };
                let size = parse_chunk_size(&line)?;
                self.state = State::Chunked(if size == 0 {
                    Chunk::Trailers(0)
                } else {
                    Chunk::Data(size)
                });
                Ok(Step::Progress)
            }
            Chunk::Data(left) => {
                if self.buf.is_empty() {
                    return Ok(Step::NeedMore);
                }
                let data = self.take(left);
                let left = left - data.len() as u64;
                self.state = State::Chunked(if left == 0 {
                    Chunk::DataEnd
                } else {
                    Chunk::Data(left)
                });
                Ok(Step::Data(data))
            }
            Chunk::DataEnd => {
                if self.buf.len() < 2 {
                    return Ok(Step::NeedMore);
                }
                if &self.buf[..2] != b"\r\n" {
                    return Err(BodyError::Chunked("chunk data not followed by CRLF"));
                }
                self.buf.advance(2);
                self.state = State::Chunked(Chunk::Size);
                Ok(Step::Progress)
            }
            Chunk::Trailers(seen) => {
                let Some(line) = take_line(&mut self.buf)? else {
                    return Ok(Step::NeedMore);
                };
                if line.is_empty() {
                    self.finish();
                    return Ok(Step::End);
                }
                let seen = seen + line.len() + 2;
                if seen > MAX_TRAILERS {
                    return Err(BodyError::Chunked("trailer section too large"));
                }
                self.state = State::Chunked(Chunk::Trailers(seen));
                Ok(Step::Progress)
            }
        }
    }

    /// The body is broken: the connection is closed, never reused.
    fn fail(&mut self) {
        self.state = State::Done;
        self.io = None;
        self.home = None;
    }
}

/// What one step of the chunked decoder did.
enum Step {
    NeedMore,
    Progress,
    Data(Bytes),
    End,
}

/// Removes one CRLF-terminated line from the front of `buf` (without the CRLF).
fn take_line(buf: &mut BytesMut) -> Result<Option<BytesMut>, BodyError> {
    match buf.iter().position(|&b| b == b'\n') {
        Some(i) => {
            if i == 0 || buf[i - 1] != b'\r' {
                return Err(BodyError::Chunked("line not terminated by CRLF"));
            }
            let mut line = buf.split_to(i + 1);
            line.truncate(i - 1);
            Ok(Some(line))
        }
        None if buf.len() > MAX_LINE => Err(BodyError::Chunked("line too long")),
        None => Ok(None),
    }
}

/// `1a;ext=v` -> 26.
fn parse_chunk_size(line: &[u8]) -> Result<u64, BodyError> {
    let digits = line.split(|&b| b == b';').next().unwrap_or(b"");
    let digits = digits.trim_ascii();
    if digits.is_empty() || digits.len() > 16 {
        return Err(BodyError::Chunked("bad chunk size"));
    }
    let mut n: u64 = 0;
    for &d in digits {
        let v = (d as char)
            .to_digit(16)
            .ok_or(BodyError::Chunked("bad chunk size"))?;
        n = (n << 4) | u64::from(v);
    }
    Ok(n)
}

impl Body for BackendBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        loop {
            match this.state {
                State::Done => return Poll::Ready(None),
                State::Length(left) => {
                    if !this.buf.is_empty() {
                        let data = this.take(left);
                        let left = left - data.len() as u64;
                        this.state = State::Length(left);
                        if left == 0 {
                            this.finish();
                        }
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                }
                State::UntilClose => {
                    if !this.buf.is_empty() {
                        let data = this.take(u64::MAX);
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                }
                State::Chunked(c) => match this.step_chunked(c) {
                    Err(e) => {
                        this.fail();
                        return Poll::Ready(Some(Err(e)));
                    }
                    Ok(Step::Data(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                    Ok(Step::End) => return Poll::Ready(None),
                    Ok(Step::Progress) => continue,
                    Ok(Step::NeedMore) => {}
                },
            }
            // Nothing buffered for the current state: read more.
            match ready!(this.poll_fill(cx)) {
                Ok(0) => {
                    if this.state == State::UntilClose {
                        this.state = State::Done;
                        this.io = None;
                        return Poll::Ready(None);
                    }
                    this.fail();
                    return Poll::Ready(Some(Err(BodyError::Incomplete)));
                }
                Ok(_) => {}
                Err(e) => {
                    this.fail();
                    return Poll::Ready(Some(Err(e)));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.state == State::Done
    }

    fn size_hint(&self) -> SizeHint {
        match self.state {
            State::Done => SizeHint::with_exact(0),
            State::Length(n) => SizeHint::with_exact(n),
            _ => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use tokio::io::AsyncWriteExt;
    use tokio::net::{TcpListener, TcpStream};

    /// Decodes `wire` (after the head) with `framing`, the backend writing it `step` bytes at a
    /// time over a real socket.
    async fn decode(wire: &'static [u8], framing: Framing, step: usize) -> Result<Vec<u8>, String> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let writer = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            for piece in wire.chunks(step) {
                s.write_all(piece).await.unwrap();
                s.flush().await.unwrap();
                tokio::task::yield_now().await;
            }
        });
        let io = tokio_util::either::Either::Left(TcpStream::connect(addr).await.unwrap());
        let body = BackendBody::new(io, BytesMut::new(), framing, None);
        let out = body.collect().await.map(|c| c.to_bytes().to_vec());
        writer.await.unwrap();
        out.map_err(|e| e.to_string())
    }

    #[test]
    fn chunk_sizes_and_lines() {
        assert_eq!(parse_chunk_size(b"1a").unwrap(), 26);
        assert_eq!(parse_chunk_size(b"A;name=value").unwrap(), 10);
        assert_eq!(parse_chunk_size(b" 0 ").unwrap(), 0);
        for bad in [&b""[..], b"g", b"-1", b"11111111111111111"] {
            assert!(parse_chunk_size(bad).is_err(), "{bad:?}");
        }
        let mut buf = BytesMut::from(&b"abc\r\nrest"[..]);
        assert_eq!(&take_line(&mut buf).unwrap().unwrap()[..], b"abc");
        assert_eq!(&buf[..], b"rest");
        assert!(take_line(&mut buf).unwrap().is_none());
        assert!(take_line(&mut BytesMut::from(&b"bare\n"[..])).is_err());
    }

    #[tokio::test]
    async fn chunked_bodies_decode_across_any_split() {
        let wire: &[u8] = b"5;x=1\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nx-t: 1\r\n\r\n";
        for step in [1, 2, 3, 7, wire.len()] {
            assert_eq!(
                decode(wire, Framing::Chunked, step).await.unwrap(),
                b"hello world",
                "written {step} bytes at a time"
            );
        }
        assert_eq!(
            decode(b"hello", Framing::Length(5), 2).await.unwrap(),
            b"hello"
        );
        assert_eq!(
            decode(b"until eof", Framing::UntilClose, 4).await.unwrap(),
            b"until eof"
        );
    }

    #[tokio::test]
    async fn broken_bodies_are_errors() {
        let err = decode(b"5\r\nhelloXX0\r\n\r\n", Framing::Chunked, 3)
            .await
            .unwrap_err();
        assert!(err.contains("CRLF"), "{err}");
        let err = decode(b"zz\r\n", Framing::Chunked, 3).await.unwrap_err();
        assert!(err.contains("chunk size"), "{err}");
        let err = decode(b"5\r\nhel", Framing::Chunked, 3).await.unwrap_err();
        assert!(
            err.contains("before the response body was complete"),
            "{err}"
        );
        let err = decode(b"hel", Framing::Length(5), 3).await.unwrap_err();
        assert!(
            err.contains("before the response body was complete"),
            "{err}"
        );
    }
}
