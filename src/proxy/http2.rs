//! HTTP/2 on client connections: which protocol a connection speaks (ALPN, or the prior-knowledge
//! preface on cleartext listeners) and hyper's HTTP/2 server configured with wsgate's limits.
//! Requests of both protocols then enter the same pipeline.

use super::settings::ProxySettings;
use hyper::server::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::time::Duration;
use tokio::net::TcpStream;

/// The connection preface every HTTP/2 client sends first (RFC 9113 §3.4).
pub(crate) const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// A stream the server may have to send after it committed to a response, at most; bounds what
/// wsgate buffers towards one slow client stream.
const MAX_SEND_BUF: usize = 256 * 1024;

/// The protocol a client connection speaks: the `protocol` label of the metrics and the
/// `client_protocol` field of the logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ClientProtocol {
    /// HTTP/1.0 or HTTP/1.1.
    Http1,
    /// HTTP/2 (ALPN `h2`, or prior knowledge on a cleartext listener).
    H2,
}

impl ClientProtocol {
    /// The label value: `http1` or `h2`.
    pub(crate) fn label(self) -> &'static str {
        match self {
            ClientProtocol::Http1 => "http1",
            ClientProtocol::H2 => "h2",
        }
    }

    /// The protocol a TLS handshake agreed on by ALPN (no ALPN means HTTP/1.1).
    pub(crate) fn from_alpn(alpn: Option<&[u8]>) -> Self {
        match alpn {
            Some(b"h2") => ClientProtocol::H2,
            _ => ClientProtocol::Http1,
        }
    }
}

/// Request extension: this GET was an HTTP/2 extended CONNECT with `:protocol websocket` (RFC
/// 8441). Its client side is the stream, answered `200`, not an HTTP/1.1 `101`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ExtendedConnect;

/// What the first bytes of a cleartext connection say.
#[derive(Debug, PartialEq, Eq)]
enum Sniff {
    /// The whole preface arrived.
    H2,
    /// The bytes so far cannot start the preface.
    Http1,
    /// A strict prefix of the preface: wait for more.
    More,
}

fn sniff(bytes: &[u8]) -> Sniff {
    let n = bytes.len().min(PREFACE.len());
    if bytes[..n] != PREFACE[..n] {
        Sniff::Http1
    } else if n == PREFACE.len() {
        Sniff::H2
    } else {
        Sniff::More
    }
}

/// Decides a cleartext connection's protocol by peeking (not reading) its first bytes: HTTP/2
/// with prior knowledge when they are the preface, else HTTP/1 (hyper's parser then judges the
/// bytes, including a client that sends nothing within `within`). Nearly every client decides it
/// with its first packet; a preface split over packets is peeked again after a short pause.
pub(crate) async fn sniff_cleartext(stream: &TcpStream, within: Duration) -> ClientProtocol {
    let mut buf = [0u8; PREFACE.len()];
    let peeking = async {
        loop {
            match stream.peek(&mut buf).await {
                Ok(0) | Err(_) => return ClientProtocol::Http1,
                Ok(n) => match sniff(&buf[..n]) {
                    Sniff::H2 => return ClientProtocol::H2,
                    Sniff::Http1 => return ClientProtocol::Http1,
                    Sniff::More => tokio::time::sleep(Duration::from_millis(5)).await,
                },
            }
        }
    };
    tokio::time::timeout(within, peeking)
        .await
        .unwrap_or(ClientProtocol::Http1)
}

/// hyper's HTTP/2 server with RFC 8441 extended CONNECT and the limits of `settings`.
pub(crate) fn builder(settings: &ProxySettings) -> http2::Builder<TokioExecutor> {
    let h2 = &settings.http2;
    let mut builder = http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .enable_connect_protocol()
        .max_concurrent_streams(h2.max_concurrent_streams)
        // The same bound as an HTTP/1.1 head (RFC 9113 §6.5.2 counts names, values and 32 bytes
        // per field); HPACK's dynamic table stays at the protocol's 4096 bytes.
        .max_header_list_size(u32::try_from(settings.max_header_bytes).unwrap_or(u32::MAX))
        .header_table_size(4096)
        .initial_stream_window_size(h2.initial_stream_window)
        .initial_connection_window_size(h2.initial_connection_window)
        .max_frame_size(h2.max_frame_size)
        .max_send_buf_size(MAX_SEND_BUF)
        .max_pending_accept_reset_streams(h2.max_pending_reset_streams)
        .max_local_error_reset_streams(h2.max_local_error_resets);
    builder
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preface_is_recognised_at_any_split() {
        for n in 1..PREFACE.len() {
            assert_eq!(sniff(&PREFACE[..n]), Sniff::More, "prefix of {n} bytes");
        }
        assert_eq!(sniff(PREFACE), Sniff::H2);
        let mut longer = PREFACE.to_vec();
        longer.extend_from_slice(b"\x00\x00\x12\x04");
        assert_eq!(sniff(&longer), Sniff::H2);
        assert_eq!(sniff(b"GET / HTTP/1.1\r\n"), Sniff::Http1);
        assert_eq!(sniff(b"POST"), Sniff::Http1);
        assert_eq!(sniff(b"PRI * HTTP/1.1"), Sniff::Http1);
        assert_eq!(
            ClientProtocol::from_alpn(Some(b"h2")).label(),
            "h2",
            "ALPN h2"
        );
        assert_eq!(
            ClientProtocol::from_alpn(Some(b"http/1.1")).label(),
            "http1"
        );
        assert_eq!(ClientProtocol::from_alpn(None), ClientProtocol::Http1);
    }
}
