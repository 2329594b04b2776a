//! The proxy's wire-level checks and parsers as a small public API, so that the fuzz targets
//! (`fuzz/`) and tests drive exactly the code the proxy runs: the WebSocket handshake gate, the
//! backend response-head parser and the response-body decoder.

use super::upstream::head::{self, Framing};
use bytes::BytesMut;
use http::{Method, Request};
use hyper::body::Body;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// Runs the client-side WebSocket handshake gate on a request head; `Err` carries the status the
/// client would get (400 or 426).
pub fn check_websocket_handshake<B>(req: &Request<B>) -> Result<(), http::StatusCode> {
    super::websocket::gate::check_client(req).map_err(|e| e.status())
}

/// A backend response head as the proxy understood it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseSummary {
    /// Status code.
    pub status: u16,
    /// Bytes of the input the head took.
    pub head_len: usize,
    /// How the body is delimited: `empty`, `length:N`, `chunked` or `until-close`.
    pub framing: String,
    /// Whether the connection could carry another request.
    pub keep_alive: bool,
    /// The headers relayed onward (before hop-by-hop removal).
    pub headers: http::HeaderMap,
}

/// Parses a backend response head from the front of `bytes` for a request with `method`;
/// `Ok(None)` when the head is incomplete, `Err` when the proxy would answer 502.
pub fn parse_response_head(
    bytes: &[u8],
    method: &Method,
) -> Result<Option<ResponseSummary>, String> {
    let mut buf = BytesMut::from(bytes);
    let parsed = head::parse_response(&mut buf, method).map_err(|e| e.to_string())?;
    Ok(parsed.map(|h| ResponseSummary {
        status: h.status.as_u16(),
        head_len: bytes.len() - buf.len(),
        framing: match h.framing {
            Framing::Empty => "empty".into(),
            Framing::Length(n) => format!("length:{n}"),
            Framing::Chunked => "chunked".into(),
            Framing::UntilClose => "until-close".into(),
        },
        keep_alive: h.keep_alive,
        headers: h.headers,
    }))
}

/// Decodes a chunked response body held entirely in `bytes` (the backend closes after them), as
/// the proxy decodes it for the client; `Err` when it would cut the response off.
pub fn decode_chunked(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let mut body =
        super::upstream::BackendBody::from_bytes(BytesMut::from(bytes), Framing::Chunked);
    let mut cx = Context::from_waker(Waker::noop());
    let mut out = Vec::new();
    loop {
        match Pin::new(&mut body).poll_frame(&mut cx) {
            Poll::Ready(None) => return Ok(out),
            Poll::Ready(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    out.extend_from_slice(&data);
                }
            }
            Poll::Ready(Some(Err(e))) => return Err(e.to_string()),
            // Without a socket the decoder never waits.
            Poll::Pending => return Err("decoder waited without a socket".into()),
        }
    }
}

/// Runs the WebSocket frame tracker over `stream`, fed whole and again cut at `cut`, and returns
/// both results (forwarded bytes, other events as text); they must be equal for any input.
pub fn track_frames(stream: &[u8], cut: usize, max_message_bytes: u64) -> [(Vec<u8>, String); 2] {
    use super::websocket::frames::{Action, Tracker};
    let run = |cuts: &[usize]| {
        let mut t = Tracker::new(max_message_bytes, *b"wsgate!!");
        let (mut forwarded, mut events) = (Vec::new(), String::new());
        let (mut buf, mut out, mut last) = (Vec::new(), Vec::new(), 0);
        for &p in cuts.iter().chain([&stream.len()]) {
            let p = p.min(stream.len()).max(last);
            buf.extend_from_slice(&stream[last..p]);
            last = p;
            let fed = t.feed(&buf, &mut out);
            for a in out.drain(..) {
                match a {
                    Action::Forward(r) => forwarded.extend_from_slice(&buf[r]),
                    Action::Release(b) => forwarded.extend_from_slice(&b),
                    other => events.push_str(&format!("{other:?};")),
                }
            }
            buf.drain(..buf.len() - fed.carry);
        }
        (forwarded, events)
    };
    [run(&[]), run(&[cut])]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_decoding_in_memory() {
        assert_eq!(
            decode_chunked(b"5\r\nhello\r\n6;x=y\r\n world\r\n0\r\nT: 1\r\n\r\n").unwrap(),
            b"hello world"
        );
        assert!(decode_chunked(b"5\r\nhel").is_err());
        assert!(decode_chunked(b"zz\r\n").is_err());
        assert!(decode_chunked(b"").is_err());
    }

    #[test]
    fn response_heads() {
        let h = parse_response_head(
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
            &Method::GET,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (h.status, h.head_len, h.framing.as_str()),
            (200, 38, "length:2")
        );
        assert!(
            parse_response_head(b"HTTP/1.1 200 OK\r\n", &Method::GET)
                .unwrap()
                .is_none()
        );
        assert!(parse_response_head(b"HTTP/1.1 2000 OK\r\n\r\n", &Method::GET).is_err());
    }
}
