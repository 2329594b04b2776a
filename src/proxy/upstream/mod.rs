//! HTTP/1.1 to backends, driven from the request's own task: no connection task, no channel hop.
//!
//! A request checks out an idle keep-alive connection of its endpoint (or connects), writes the
//! request head and body, and reads the response head; the response body is decoded as the client
//! reads it, and the connection goes back to its endpoint's idle stack once the body is complete.
//! WebSocket handshakes use the same exchange on a fresh connection and keep the stream on a 101.
//!
//! - `idle`: per-endpoint stacks of idle connections, liveness checks, reaping.
//! - `head`: request head encoding and response head parsing (`httparse`), body framing.
//! - `body`: the response body as the client reads it (length, chunked, until close).
//! - `exchange`: one request/response on one connection, with the stale-connection retry.

mod body;
mod exchange;
pub(crate) mod head;
mod idle;

pub(crate) use body::BackendBody;
pub(crate) use exchange::{Exchange, ExchangeError, Reply, send};
pub(crate) use head::ResponseHead;
pub(crate) use idle::IdleConns;
