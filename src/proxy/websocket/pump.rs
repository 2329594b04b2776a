//! One direction of a session: reads from one side, lets the [`Tracker`] judge the bytes, and
//! carries out its actions on the other side. Every write races the session's abandon signal, so
//! a peer that stops reading can never keep a session past its timers.

use super::frames::{Action, Tracker};
use super::state::{BACKEND, CLIENT, Control, DirCounters, State, close_frame, proxy_frame};
use bytes::Bytes;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tungstenite::protocol::frame::Frame;

/// Read buffer per direction while data streams (a read filled the buffer).
const BUF_SIZE: usize = 16 * 1024;
/// Read buffer per direction otherwise: an idle session holds two of these, not two big ones.
const IDLE_BUF_SIZE: usize = 256;
/// After the proxy sent a close frame, how long a peer has to answer with its own.
const CLOSE_REPLY: Duration = Duration::from_secs(1);

/// How a direction ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// The source ended cleanly (after close frames) or the proxy's close completed.
    Done,
    /// The source vanished without a close frame, or reading it failed.
    SrcFailed,
    /// Writing to the destination failed.
    DstFailed,
    /// Told to stop.
    Abandoned,
}

/// The writing half of a direction, with what it needs to count and to give up.
struct Sink<'a, W> {
    to: W,
    ctl: &'a Control,
}

impl<W: AsyncWrite + Unpin> Sink<'_, W> {
    /// Writes all of `bytes`, unless the session abandons this direction first.
    async fn write(&mut self, bytes: &[u8]) -> Result<(), End> {
        tokio::select! {
            // Biased: a write that completes at once never polls the abandon signal.
            biased;
            r = self.to.write_all(bytes) => r.map_err(|_| End::DstFailed),
            _ = self.ctl.abandoned() => Err(End::Abandoned),
        }
    }

    async fn shutdown(&mut self) {
        let _ = tokio::time::timeout(CLOSE_REPLY, self.to.shutdown()).await;
    }
}

/// Carries one direction, reading from side `src`, until it ends.
pub(crate) async fn pump<R, W>(
    source: (R, Bytes),
    to: W,
    src: usize,
    st: &State,
    counters: &DirCounters,
) -> End
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    match carry_on(source, to, src, st, counters).await {
        Ok(end) | Err(end) => end,
    }
}

/// [`pump`]'s loop; a failed or abandoned write ends it through `?`. Long (about 150 lines) by
/// choice: the frame logic lives in the socket-free [`Tracker`]; what remains is the order of
/// one pass (commands from the session, read, feed, carry out the actions, resize the buffer),
/// which shares the buffer, the carry and the closing state, all hot-path locals.
async fn carry_on<R, W>(
    (mut from, prefix): (R, Bytes),
    to: W,
    src: usize,
    st: &State,
    counters: &DirCounters,
) -> Result<End, End>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let dst = 1 - src;
    let mut sink = Sink {
        to,
        ctl: &st.ctl[dst],
    };
    let mut tracker = Tracker::new(st.policy.max_message_bytes, st.ping_payload);
    let mut buf = vec![0u8; IDLE_BUF_SIZE.max(prefix.len())];
    buf[..prefix.len()].copy_from_slice(&prefix);
    // Bytes that arrived with the handshake are processed before the first read.
    let mut preread = prefix.len();
    // Even an empty prefix may keep a whole handshake read buffer alive: let it go now.
    drop(prefix);
    let mut carry = 0usize;
    let mut actions = Vec::new();
    // Once the proxy sent its close to `dst`, input is discarded until `src` answers.
    let mut closing_since: Option<Instant> = None;
    let mut src_closed = false;

    loop {
        let ctl = sink.ctl;
        if ctl.abandon.load(Ordering::SeqCst) {
            return Ok(End::Abandoned);
        }
        if closing_since.is_none() {
            let code = ctl.close.load(Ordering::SeqCst);
            if code != 0 && (tracker.at_boundary() || tracker.is_opaque()) {
                if tracker.at_boundary() {
                    sink.write(&close_frame(code, dst)).await?;
                }
                closing_since = Some(Instant::now());
                tracker.discard();
            } else if tracker.at_boundary() && ctl.ping.swap(false, Ordering::SeqCst) {
                sink.write(&proxy_frame(Frame::ping(st.ping_payload.to_vec()), dst))
                    .await?;
                st.last_ping[dst].store(st.now_ms(), Ordering::SeqCst);
            }
        }
        if closing_since.is_some() && src_closed {
            sink.shutdown().await;
            return Ok(End::Done);
        }
        let reply_deadline = closing_since.map(|t| t + CLOSE_REPLY);

        let n = if preread > 0 {
            std::mem::take(&mut preread)
        } else {
            tokio::select! {
                biased;
                _ = ctl.notify.notified() => continue,
                _ = super::state::sleep_until_opt(reply_deadline) => {
                    sink.shutdown().await;
                    return Ok(End::Done);
                }
                // A read error is treated like the peer vanishing.
                r = from.read(&mut buf[carry..]) => r.unwrap_or_default(),
            }
        };

        if n == 0 {
            if src_closed || closing_since.is_some() {
                sink.shutdown().await;
                return Ok(End::Done);
            }
            // The source vanished without a close frame: tell the destination properly when the
            // stream is at a frame boundary (1011 to a client whose backend died, 1001 to a backend
            // whose client left); mid-frame only closing the connection is possible. Once any
            // close frame has crossed, a closing handshake is under way and a peer may end it by
            // dropping TCP (RFC 6455 7.1.7, e.g. after an invalid close frame): mirror that.
            let code = if src == BACKEND { 1011 } else { 1001 };
            let handshake_started = st.seen_close.load(Ordering::SeqCst) != 0;
            if tracker.at_boundary() && carry == 0 && !handshake_started {
                let _ = sink.write(&close_frame(code, dst)).await;
            }
            sink.shutdown().await;
            return Ok(End::SrcFailed);
        }

        let end = carry + n;
        let fed = tracker.feed(&buf[..end], &mut actions);
        let now = st.now_ms();
        if fed.activity {
            st.last_rx[src].store(now, Ordering::SeqCst);
        }
        if fed.data {
            st.last_data.store(now, Ordering::SeqCst);
        }
        if fed.messages > 0 {
            counters.messages.inc_by(fed.messages);
            st.messages[src].fetch_add(fed.messages, Ordering::Relaxed);
        }
        for action in actions.drain(..) {
            match action {
                Action::Forward(r) => {
                    sink.write(&buf[r.clone()]).await?;
                    st.count_bytes(counters, src, r.len());
                }
                Action::Release(bytes) => {
                    sink.write(&bytes).await?;
                    st.count_bytes(counters, src, bytes.len());
                }
                Action::Close => {
                    st.record_close(src);
                    src_closed = true;
                }
                Action::CloseCode(code) => st.codes[src].store(code, Ordering::Relaxed),
                Action::TooBig => {
                    // What preceded the message went out; 1009 to the sender, 1001 to the other
                    // side (written here: the output is at a frame boundary or, opaque, cut).
                    let codes = if src == CLIENT {
                        (1009, 1001)
                    } else {
                        (1001, 1009)
                    };
                    st.proxy_close("message_too_big", codes.0, codes.1);
                    if !tracker.is_opaque() {
                        sink.write(&close_frame(1001, dst)).await?;
                    }
                    closing_since = Some(Instant::now());
                }
                Action::Opaque => {
                    tracing::debug!(side = src, "stream no longer parses as WebSocket frames");
                }
            }
        }
        if !tracker.is_discarding() && src_closed && st.closes_complete() {
            // Both close frames have crossed; the handshake is complete.
            let _ = sink.to.flush().await;
        }
        carry = fed.carry;
        buf.copy_within(end - carry..end, 0);
        // A full read means more is coming: read big. A partial read means the source is drained
        // for now: wait with a small buffer (the held-back header bytes move along).
        let want = if end == buf.len() {
            BUF_SIZE
        } else {
            IDLE_BUF_SIZE
        };
        if buf.len() != want {
            let mut resized = vec![0u8; want];
            resized[..carry].copy_from_slice(&buf[..carry]);
            buf = resized;
        }
    }
}
