//! One request and its response head on one backend connection.

use super::body::{BackendBody, Home};
use super::head::{self, HeadError, RequestBody, ResponseHead};
use crate::proxy::headers::Forwarding;
use crate::proxy::pools::{EndpointState, PoolRuntime};
use crate::proxy::tls::BackendStream;
use bytes::{Bytes, BytesMut};
use http::{Method, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Body;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A request body up to this size is written together with the head.
const COALESCE: usize = 8 * 1024;

/// Where and how a request goes.
pub(crate) struct Exchange<'a> {
    pub(crate) endpoint: &'a Arc<EndpointState>,
    /// The forwarding headers, written after the request's own.
    pub(crate) forwarding: &'a Forwarding,
    pub(crate) runtime: &'a PoolRuntime,
    /// `true` for a WebSocket handshake: a fresh connection, kept as a stream on a 101.
    pub(crate) upgrade: bool,
    /// `requestTimeout`: limit of the whole exchange up to the response head.
    pub(crate) request_timeout: Option<std::time::Duration>,
}

/// What the backend answered.
pub(crate) enum Reply {
    /// A response with its body (the connection is parked when the body is complete).
    Response(ResponseHead, BackendBody),
    /// `101 Switching Protocols` to an upgrade: the stream and any bytes read past the head.
    Upgraded(ResponseHead, BackendStream, BytesMut),
}

/// Why an exchange failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ExchangeError {
    #[error("connect failed: {0}")]
    Connect(std::io::Error),
    /// `connectTimeout` or `requestTimeout` elapsed.
    #[error("timed out")]
    TimedOut,
    #[error("{0}")]
    Io(std::io::Error),
    #[error("backend closed the connection without a response")]
    Closed,
    #[error("{0}")]
    Head(#[from] HeadError),
    #[error("backend answered 101 to a request that did not ask to upgrade")]
    UnexpectedUpgrade,
    /// The client's request body failed (too large, or the client went away).
    #[error("request body: {0}")]
    RequestBody(Box<dyn std::error::Error + Send + Sync>),
}

impl ExchangeError {
    /// Whether this is the request body exceeding its limit.
    pub(crate) fn is_body_limit(&self) -> bool {
        matches!(self, ExchangeError::RequestBody(e) if e.is::<http_body_util::LengthLimitError>())
    }

    pub(crate) fn is_timeout(&self) -> bool {
        match self {
            ExchangeError::TimedOut => true,
            ExchangeError::Connect(e) | ExchangeError::Io(e) => {
                e.kind() == std::io::ErrorKind::TimedOut
            }
            _ => false,
        }
    }
}

/// Sends `parts` + `body` to the endpoint and reads the response head within the request
/// timeout. A request without a body that fails on a reused connection before any response byte
/// arrives (the backend closed it while idle) is retried once on a new connection.
pub(crate) async fn send<B>(
    ex: &Exchange<'_>,
    parts: &http::request::Parts,
    body: B,
) -> Result<Reply, ExchangeError>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    match ex.request_timeout {
        Some(limit) => tokio::time::timeout(limit, send_untimed(ex, parts, body))
            .await
            .unwrap_or(Err(ExchangeError::TimedOut)),
        None => send_untimed(ex, parts, body).await,
    }
}

async fn send_untimed<B>(
    ex: &Exchange<'_>,
    parts: &http::request::Parts,
    body: B,
) -> Result<Reply, ExchangeError>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let framing = request_framing(parts, &body);
    let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let mut head_buf = Vec::new();
    head::encode_request(
        &mut head_buf,
        &parts.method,
        target,
        (&parts.headers, ex.forwarding),
        framing,
    );

    let mut body = Some(body);
    let mut pooled = if ex.upgrade {
        None
    } else {
        ex.endpoint.idle.checkout(ex.runtime.id)
    };
    loop {
        let reused = pooled.is_some();
        let io = match pooled.take() {
            Some(io) => io,
            None => connect(ex).await?,
        };
        let b = if framing == RequestBody::None {
            None
        } else {
            body.take()
        };
        let attempt = on_connection(ex, io, &parts.method, &head_buf, b, framing).await;
        match attempt {
            Err(Attempt::Stale(_)) if reused && framing == RequestBody::None => continue,
            Err(Attempt::Stale(e) | Attempt::Failed(e)) => return Err(e),
            Ok(reply) => return Ok(reply),
        }
    }
}

enum Attempt {
    /// Failed before any response byte arrived: the connection may have been stale.
    Stale(ExchangeError),
    Failed(ExchangeError),
}

async fn connect(ex: &Exchange<'_>) -> Result<BackendStream, ExchangeError> {
    let ep = &ex.endpoint.endpoint;
    let connect = crate::proxy::tls::connect(
        &ep.host,
        ep.port,
        ex.runtime.tls.as_ref(),
        ex.runtime.server_name.as_deref(),
    );
    match ex.runtime.connect_timeout {
        Some(t) => tokio::time::timeout(t, connect)
            .await
            .map_err(|_| ExchangeError::TimedOut)?,
        None => connect.await,
    }
    .map_err(ExchangeError::Connect)
}

/// How the request body goes to the backend: as declared when the client's `Content-Length` is
/// what hyper is delivering, chunked when the length is unknown, not at all when there is none.
fn request_framing<B: Body>(parts: &http::request::Parts, body: &B) -> RequestBody {
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match (declared, body.size_hint().exact()) {
        (Some(d), Some(e)) if d == e => RequestBody::Length,
        (None, _) if body.is_end_stream() => RequestBody::None,
        _ => RequestBody::Chunked,
    }
}

async fn on_connection<B>(
    ex: &Exchange<'_>,
    mut io: BackendStream,
    method: &Method,
    head_buf: &[u8],
    body: Option<B>,
    framing: RequestBody,
) -> Result<Reply, Attempt>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stale = |e: std::io::Error| Attempt::Stale(ExchangeError::Io(e));
    match body {
        None => io.write_all(head_buf).await.map_err(stale)?,
        Some(body) => {
            // Boxed: only requests with a body pay for this future's size.
            if let Err(e) = Box::pin(write_body(&mut io, head_buf, body, framing)).await {
                // A backend may answer early (e.g. 413) and stop reading: prefer its response.
                if matches!(e, ExchangeError::Io(_))
                    && let Ok(Ok(reply)) = tokio::time::timeout(
                        std::time::Duration::from_millis(100),
                        Box::pin(read_reply(ex, io, method)),
                    )
                    .await
                {
                    return Ok(reply);
                }
                return Err(Attempt::Failed(e));
            }
        }
    }
    io.flush().await.map_err(stale)?;
    read_reply(ex, io, method).await
}

/// Writes the head and the body (small first frames go out with the head).
async fn write_body<B>(
    io: &mut BackendStream,
    head_buf: &[u8],
    mut body: B,
    framing: RequestBody,
) -> Result<(), ExchangeError>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut out = head_buf.to_vec();
    let io_err = ExchangeError::Io;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ExchangeError::RequestBody(e.into()))?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers are not forwarded
        };
        if data.is_empty() {
            continue;
        }
        if framing == RequestBody::Chunked {
            out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
        }
        if out.len() + data.len() <= COALESCE {
            out.extend_from_slice(&data);
        } else {
            io.write_all(&out).await.map_err(io_err)?;
            out.clear();
            io.write_all(&data).await.map_err(io_err)?;
        }
        if framing == RequestBody::Chunked {
            out.extend_from_slice(b"\r\n");
        }
        if out.len() >= COALESCE {
            io.write_all(&out).await.map_err(io_err)?;
            out.clear();
        }
    }
    if framing == RequestBody::Chunked {
        out.extend_from_slice(b"0\r\n\r\n");
    }
    io.write_all(&out).await.map_err(io_err)
}

/// Reads the response head (skipping interim 1xx responses) and hands back the reply.
async fn read_reply(
    ex: &Exchange<'_>,
    mut io: BackendStream,
    method: &Method,
) -> Result<Reply, Attempt> {
    let mut buf = BytesMut::with_capacity(4096);
    let mut received = false;
    let head = loop {
        if !buf.is_empty() {
            match head::parse_response(&mut buf, method) {
                Ok(Some(h)) if h.status == StatusCode::SWITCHING_PROTOCOLS => break h,
                Ok(Some(h)) if h.status.is_informational() => continue,
                Ok(Some(h)) => break h,
                Ok(None) => {}
                Err(e) => return Err(Attempt::Failed(e.into())),
            }
        }
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve(4096);
        }
        match io.read_buf(&mut buf).await {
            Ok(0) if !received => return Err(Attempt::Stale(ExchangeError::Closed)),
            Ok(0) => {
                return Err(Attempt::Failed(ExchangeError::Io(
                    std::io::ErrorKind::UnexpectedEof.into(),
                )));
            }
            Ok(_) => received = true,
            Err(e) if !received => return Err(Attempt::Stale(ExchangeError::Io(e))),
            Err(e) => return Err(Attempt::Failed(ExchangeError::Io(e))),
        }
    };
    if head.status == StatusCode::SWITCHING_PROTOCOLS {
        if !ex.upgrade {
            return Err(Attempt::Failed(ExchangeError::UnexpectedUpgrade));
        }
        return Ok(Reply::Upgraded(head, io, buf));
    }
    let home = (head.keep_alive && !ex.upgrade).then(|| Home {
        endpoint: ex.endpoint.clone(),
        runtime: ex.runtime.id,
    });
    let framing = head.framing;
    Ok(Reply::Response(
        head,
        BackendBody::new(io, buf, framing, home),
    ))
}
