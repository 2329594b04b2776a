//! The frame-aware tunnel: forwards bytes unchanged in both directions while parsing frame
//! headers, which gives message counts, `maxMessageBytes`, liveness timers, proxy pings (their
//! pongs swallowed) and proxy-generated close frames written at frame boundaries.
//!
//! Both directions run as futures in one task with a session controller (timers, drain). Each
//! direction holds back an incomplete frame header (at most 13 bytes), so whenever it waits for
//! input its output is at a frame boundary or inside a payload whose length is known.

use super::listeners::ConnGuard;
use super::peer::Peer;
use super::server::ConnCtx;
use crate::ir::BackendSettings;
use bytes::Bytes;
use prometheus::{IntCounter, IntGauge};
use std::io::Cursor;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU16, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Notify, watch};
use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::coding::{CloseCode, Control as Ctl, Data, OpCode};
use tungstenite::protocol::frame::{Frame, FrameHeader};

/// Read buffer per direction while data streams (a read filled the buffer).
const BUF_SIZE: usize = 16 * 1024;
/// Read buffer per direction otherwise: an idle session holds two of these, not two big ones.
const IDLE_BUF_SIZE: usize = 256;
/// After one direction ends, how long the other may take to finish.
const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// After the proxy sent a close frame, how long a peer has to answer with its own.
const CLOSE_REPLY: Duration = Duration::from_secs(1);
/// Longest control frame: 2 + 4 (mask) + 125.
const MAX_CONTROL_FRAME: usize = 131;

const CLIENT: usize = 0;
const BACKEND: usize = 1;

/// Session policy from the backend settings.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Policy {
    ping_interval: Option<Duration>,
    request_timeout: Option<Duration>,
    idle_timeout: Option<Duration>,
    max_duration: Option<Duration>,
    max_message_bytes: u64,
}

impl Policy {
    pub(crate) fn from_settings(s: &BackendSettings) -> Self {
        Self {
            ping_interval: s.websocket.ping_interval.get(),
            request_timeout: s.request_timeout.get(),
            idle_timeout: s.websocket.idle_timeout.get(),
            max_duration: s.websocket.max_session_duration.get(),
            max_message_bytes: s.websocket.max_message_bytes,
        }
    }
}

/// Metric handles and identity of one session, resolved once at upgrade time.
pub(crate) struct Session {
    route: String,
    client: SocketAddr,
    endpoint: String,
    started: Instant,
    policy: Policy,
    active: IntGauge,
    counters: [DirCounters; 2],
    metrics: crate::metrics::Metrics,
    drain: watch::Receiver<bool>,
    /// Held for the session's life: drain count, the connection context (with its listener
    /// slot), endpoint load, route slot.
    _holds: (
        ConnGuard,
        std::sync::Arc<ConnCtx>,
        super::pools::Lease,
        Option<super::websocket::SessionSlot>,
    ),
}

struct DirCounters {
    bytes: IntCounter,
    messages: IntCounter,
}

impl Session {
    pub(crate) fn new(
        route: &str,
        ctx: &std::sync::Arc<ConnCtx>,
        endpoint: &str,
        settings: &BackendSettings,
        started: Instant,
        holds: (super::pools::Lease, Option<super::websocket::SessionSlot>),
    ) -> Self {
        let m = &ctx.shared.metrics;
        let dir = |d: &str| DirCounters {
            bytes: m.ws_bytes.with_label_values(&[route, d]),
            messages: m.ws_messages.with_label_values(&[route, d]),
        };
        Self {
            route: route.to_string(),
            client: ctx.peer,
            endpoint: endpoint.to_string(),
            started,
            policy: Policy::from_settings(settings),
            active: m.ws_active.with_label_values(&[route]),
            // Indexed by the side the bytes come from: from the client they go to the backend.
            counters: [dir("to_backend"), dir("to_client")],
            metrics: m.clone(),
            drain: ctx.shared.drain.subscribe(),
            _holds: (ctx.shared.conns.enter(), ctx.clone(), holds.0, holds.1),
        }
    }
}

/// Commands for the direction that writes to one side.
#[derive(Default)]
struct Control {
    notify: Notify,
    ping: AtomicBool,
    /// Close code to send (0 = none).
    close: AtomicU16,
    /// Stop forwarding: the destination is gone or the session is over.
    abandon: AtomicBool,
}

/// State shared by both directions and the controller.
struct State {
    epoch: Instant,
    /// Milliseconds since `epoch` of the last frame received from each side.
    last_rx: [AtomicU64; 2],
    last_data: AtomicU64,
    last_ping: [AtomicU64; 2],
    /// Side (+1) that sent the first close frame; bitmask of sides that sent one.
    first_close: AtomicU8,
    seen_close: AtomicU8,
    /// Close reason decided by the proxy, if it ended the session.
    reason: Mutex<Option<&'static str>>,
    /// Commands for the direction writing to each side.
    ctl: [Control; 2],
    ping_payload: [u8; 8],
    bytes: [AtomicU64; 2],
    messages: [AtomicU64; 2],
    codes: [AtomicU16; 2],
}

impl State {
    fn new() -> Self {
        Self {
            epoch: Instant::now(),
            last_rx: Default::default(),
            last_data: Default::default(),
            last_ping: Default::default(),
            first_close: Default::default(),
            seen_close: Default::default(),
            reason: Mutex::new(None),
            ctl: Default::default(),
            ping_payload: rand::random(),
            bytes: Default::default(),
            messages: Default::default(),
            codes: Default::default(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn at(&self, ms: u64) -> tokio::time::Instant {
        tokio::time::Instant::from_std(self.epoch + Duration::from_millis(ms))
    }

    fn record_close(&self, side: usize) {
        let _ = self.first_close.compare_exchange(
            0,
            side as u8 + 1,
            Ordering::SeqCst,
            Ordering::SeqCst,
        );
        self.seen_close.fetch_or(1 << side, Ordering::SeqCst);
    }

    fn closes_complete(&self) -> bool {
        self.seen_close.load(Ordering::SeqCst) == 0b11
    }

    /// The proxy ends the session: each side gets a close frame with its code. The first
    /// reason wins.
    fn proxy_close(&self, reason: &'static str, client_code: u16, backend_code: u16) {
        {
            let mut r = self.reason.lock().unwrap_or_else(|p| p.into_inner());
            if r.is_some() || self.first_close.load(Ordering::SeqCst) != 0 {
                return;
            }
            *r = Some(reason);
        }
        for (side, code) in [(CLIENT, client_code), (BACKEND, backend_code)] {
            self.ctl[side].close.store(code, Ordering::SeqCst);
            self.ctl[side].notify.notify_one();
        }
    }

    fn abandon(&self, side: usize) {
        self.ctl[side].abandon.store(true, Ordering::SeqCst);
        self.ctl[side].notify.notify_one();
    }
}

/// Encodes a frame the proxy sends; frames to the backend are masked with a fresh key.
fn proxy_frame(mut frame: Frame, to: usize) -> Vec<u8> {
    if to == BACKEND {
        frame.header_mut().mask = Some(rand::random());
    }
    let mut out = Vec::with_capacity(frame.len());
    // Formatting into a Vec cannot fail.
    let _ = frame.format(&mut out);
    out
}

fn close_frame(code: u16, to: usize) -> Vec<u8> {
    let reason = match code {
        1009 => "message too big",
        1011 => "backend error",
        _ => "going away",
    };
    proxy_frame(
        Frame::close(Some(CloseFrame {
            code: CloseCode::from(code),
            reason: reason.into(),
        })),
        to,
    )
}

/// A pong being held back until its payload shows whether it answers a proxy ping.
struct Held {
    bytes: Vec<u8>,
    mask: Option<[u8; 4]>,
    header_len: usize,
}

impl Held {
    fn is_ours(&self, payload: &[u8; 8]) -> bool {
        let body = &self.bytes[self.header_len..];
        if body.len() != payload.len() {
            return false;
        }
        body.iter().enumerate().all(|(i, b)| {
            let unmasked = match self.mask {
                Some(m) => b ^ m[i % 4],
                None => *b,
            };
            unmasked == payload[i]
        })
    }
}

/// How a direction ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The source ended cleanly (after close frames) or the proxy's close completed.
    Done,
    /// The source vanished without a close frame, or reading it failed.
    SrcFailed,
    /// Writing to the destination failed.
    DstFailed,
    /// Told to stop.
    Abandoned,
}

/// One direction: reads from side `src`, writes to the other side.
async fn pump<R, W>(
    (mut from, prefix): (R, Bytes),
    mut to: W,
    src: usize,
    st: &State,
    policy: Policy,
    counters: &DirCounters,
) -> End
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let dst = 1 - src;
    let ctl = &st.ctl[dst];
    let mut buf = vec![0u8; IDLE_BUF_SIZE.max(prefix.len())];
    buf[..prefix.len()].copy_from_slice(&prefix);
    // Bytes that arrived with the handshake are processed before the first read.
    let mut preread = prefix.len();
    // Even an empty prefix may keep a whole handshake read buffer alive: let it go now.
    drop(prefix);
    let mut carry = 0usize;
    let mut remaining: u64 = 0;
    let mut held: Option<Held> = None;
    let mut message_bytes: u64 = 0;
    // Once the proxy sent its close to `dst`, input is discarded until `src` answers.
    let mut closing_since: Option<tokio::time::Instant> = None;
    let mut src_closed = false;
    let mut opaque = false;

    loop {
        if ctl.abandon.load(Ordering::SeqCst) {
            return End::Abandoned;
        }
        let boundary = remaining == 0 && held.is_none() && !opaque;
        if closing_since.is_none() {
            let code = ctl.close.load(Ordering::SeqCst);
            if code != 0 && (boundary || opaque) {
                if boundary && to.write_all(&close_frame(code, dst)).await.is_err() {
                    return End::DstFailed;
                }
                closing_since = Some(tokio::time::Instant::now());
            } else if boundary && ctl.ping.swap(false, Ordering::SeqCst) {
                if to
                    .write_all(&proxy_frame(Frame::ping(st.ping_payload.to_vec()), dst))
                    .await
                    .is_err()
                {
                    return End::DstFailed;
                }
                st.last_ping[dst].store(st.now_ms(), Ordering::SeqCst);
            }
        }
        if closing_since.is_some() && src_closed {
            let _ = to.shutdown().await;
            return End::Done;
        }
        let reply_deadline = closing_since.map(|t| t + CLOSE_REPLY);

        let n = if preread > 0 {
            std::mem::take(&mut preread)
        } else {
            tokio::select! {
                biased;
                _ = ctl.notify.notified() => continue,
                _ = sleep_until_opt(reply_deadline) => {
                    let _ = to.shutdown().await;
                    return End::Done;
                }
                // A read error is treated like the peer vanishing.
                r = from.read(&mut buf[carry..]) => r.unwrap_or_default(),
            }
        };

        if n == 0 {
            if src_closed || closing_since.is_some() {
                let _ = to.shutdown().await;
                return End::Done;
            }
            // The source vanished without a close frame: tell the destination properly when the
            // stream is at a frame boundary (1011 to a client whose backend died, 1001 to a backend
            // whose client left); mid-frame only closing the connection is possible. Once any
            // close frame has crossed, a closing handshake is under way and a peer may end it by
            // dropping TCP (RFC 6455 7.1.7, e.g. after an invalid close frame): mirror that.
            let code = if src == BACKEND { 1011 } else { 1001 };
            let handshake_started = st.seen_close.load(Ordering::SeqCst) != 0;
            if remaining == 0 && held.is_none() && !opaque && carry == 0 && !handshake_started {
                let _ = to.write_all(&close_frame(code, dst)).await;
            }
            let _ = to.shutdown().await;
            return End::SrcFailed;
        }

        let end = carry + n;
        carry = 0;
        let mut i = 0;
        let mut flush_from = 0;
        let mut discard = closing_since.is_some();
        while i < end {
            if opaque {
                break;
            }
            if remaining > 0 {
                let take = remaining.min((end - i) as u64) as usize;
                remaining -= take as u64;
                if let Some(h) = held.as_mut() {
                    h.bytes.extend_from_slice(&buf[i..i + take]);
                    i += take;
                    flush_from = i;
                    if remaining == 0 {
                        let h = held.take().unwrap_or_else(|| Held {
                            bytes: Vec::new(),
                            mask: None,
                            header_len: 0,
                        });
                        if !h.is_ours(&st.ping_payload) && !discard {
                            if to.write_all(&h.bytes).await.is_err() {
                                return End::DstFailed;
                            }
                            count_bytes(st, counters, src, h.bytes.len());
                        }
                    }
                } else {
                    i += take;
                }
                continue;
            }
            let mut cursor = Cursor::new(&buf[i..end]);
            let (header, len) = match FrameHeader::parse(&mut cursor) {
                Ok(Some(h)) => h,
                Ok(None) => {
                    // Hold back the incomplete header for the next read.
                    if !discard && flush_from < i {
                        if to.write_all(&buf[flush_from..i]).await.is_err() {
                            return End::DstFailed;
                        }
                        count_bytes(st, counters, src, i - flush_from);
                    }
                    buf.copy_within(i..end, 0);
                    carry = end - i;
                    flush_from = end;
                    break;
                }
                Err(_) => {
                    // Not WebSocket framing any more: pass bytes through and let the peers judge.
                    opaque = true;
                    continue;
                }
            };
            let header_len = cursor.position() as usize;
            let now = st.now_ms();
            st.last_rx[src].store(now, Ordering::SeqCst);
            match header.opcode {
                OpCode::Data(d) => {
                    st.last_data.store(now, Ordering::SeqCst);
                    if d != Data::Continue {
                        message_bytes = 0;
                    }
                    message_bytes = message_bytes.saturating_add(len);
                    if policy.max_message_bytes > 0
                        && message_bytes > policy.max_message_bytes
                        && !discard
                    {
                        // Forward what precedes this frame, then close: 1009 to the sender, 1001 to
                        // the other side (written here: the output is at a frame boundary).
                        if flush_from < i {
                            if to.write_all(&buf[flush_from..i]).await.is_err() {
                                return End::DstFailed;
                            }
                            count_bytes(st, counters, src, i - flush_from);
                        }
                        let (client_code, backend_code) = if src == CLIENT {
                            (1009, 1001)
                        } else {
                            (1001, 1009)
                        };
                        st.proxy_close("message_too_big", client_code, backend_code);
                        if to.write_all(&close_frame(1001, dst)).await.is_err() {
                            return End::DstFailed;
                        }
                        closing_since = Some(tokio::time::Instant::now());
                        discard = true;
                        remaining = len;
                        i += header_len;
                        continue;
                    }
                    if header.is_final && !discard {
                        counters.messages.inc();
                        st.messages[src].fetch_add(1, Ordering::Relaxed);
                    }
                }
                OpCode::Control(Ctl::Close) => {
                    st.record_close(src);
                    src_closed = true;
                    if len == 0 {
                        // RFC 6455 7.1.5: a close frame without a code reports 1005.
                        st.codes[src].store(1005, Ordering::Relaxed);
                    } else if len >= 2 && i + header_len + 2 <= end {
                        let mut code = [buf[i + header_len], buf[i + header_len + 1]];
                        if let Some(m) = header.mask {
                            code[0] ^= m[0];
                            code[1] ^= m[1];
                        }
                        st.codes[src].store(u16::from_be_bytes(code), Ordering::Relaxed);
                    }
                }
                OpCode::Control(Ctl::Pong)
                    if (header_len + len as usize) <= MAX_CONTROL_FRAME && !discard =>
                {
                    if flush_from < i {
                        if to.write_all(&buf[flush_from..i]).await.is_err() {
                            return End::DstFailed;
                        }
                        count_bytes(st, counters, src, i - flush_from);
                    }
                    let mut bytes = Vec::with_capacity(header_len + len as usize);
                    bytes.extend_from_slice(&buf[i..i + header_len]);
                    i += header_len;
                    flush_from = i;
                    remaining = len;
                    let h = Held {
                        bytes,
                        mask: header.mask,
                        header_len,
                    };
                    if remaining == 0 {
                        if !h.is_ours(&st.ping_payload) {
                            if to.write_all(&h.bytes).await.is_err() {
                                return End::DstFailed;
                            }
                            count_bytes(st, counters, src, h.bytes.len());
                        }
                    } else {
                        held = Some(h);
                    }
                    continue;
                }
                _ => {}
            }
            remaining = len;
            i += header_len;
        }
        if !discard && flush_from < end - carry {
            let upto = end - carry;
            if to.write_all(&buf[flush_from..upto]).await.is_err() {
                return End::DstFailed;
            }
            count_bytes(st, counters, src, upto - flush_from);
        }
        if !discard && src_closed && st.closes_complete() {
            // Both close frames have crossed; the handshake is complete.
            let _ = to.flush().await;
        }
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

fn count_bytes(st: &State, counters: &DirCounters, src: usize, n: usize) {
    counters.bytes.inc_by(n as u64);
    st.bytes[src].fetch_add(n as u64, Ordering::Relaxed);
}

async fn sleep_until_opt(t: Option<tokio::time::Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// Drives timers: proxy pings to quiet sides, the request timeout (no frame from a side), the
/// idle timeout (no data frame either way), the session age limit, and the drain signal.
async fn controller(st: &State, policy: Policy, mut drain: watch::Receiver<bool>) {
    let max_age = policy.max_duration.map(|d| d.as_millis() as u64);
    loop {
        if *drain.borrow() {
            st.proxy_close("shutdown", 1001, 1001);
        }
        let now = st.now_ms();
        let mut next: Option<u64> = max_age;
        let mut consider = |t: u64| next = Some(next.map_or(t, |n| n.min(t)));
        if let Some(age) = max_age
            && now >= age
        {
            st.proxy_close("max_duration", 1001, 1001);
        }
        for side in [CLIENT, BACKEND] {
            let rx = st.last_rx[side].load(Ordering::SeqCst);
            if let Some(pi) = policy.ping_interval.map(|d| d.as_millis() as u64) {
                let since = rx.max(st.last_ping[side].load(Ordering::SeqCst));
                if now >= since + pi {
                    // The direction writing to `side` sends the ping.
                    st.ctl[side].ping.store(true, Ordering::SeqCst);
                    st.ctl[side].notify.notify_one();
                    st.last_ping[side].store(now, Ordering::SeqCst);
                    consider(now + pi);
                } else {
                    consider(since + pi);
                }
                // With pings, every live side answers within the interval: a side silent for the
                // request timeout is dead or stuck.
                if let Some(rt) = policy.request_timeout.map(|d| d.as_millis() as u64) {
                    if now >= rx + rt {
                        st.proxy_close("request_timeout", 1001, 1001);
                    }
                    consider(rx + rt);
                }
            }
        }
        if policy.ping_interval.is_none()
            && let Some(rt) = policy.request_timeout.map(|d| d.as_millis() as u64)
        {
            // Without pings, a listen-only side is normal: only total silence counts.
            let rx = st.last_rx[CLIENT]
                .load(Ordering::SeqCst)
                .max(st.last_rx[BACKEND].load(Ordering::SeqCst));
            if now >= rx + rt {
                st.proxy_close("request_timeout", 1001, 1001);
            }
            consider(rx + rt);
        }
        if let Some(it) = policy.idle_timeout.map(|d| d.as_millis() as u64) {
            let last = st.last_data.load(Ordering::SeqCst);
            if now >= last + it {
                st.proxy_close("idle_timeout", 1001, 1001);
            }
            consider(last + it);
        }
        let wake = next.map(|t| st.at(t.max(now + 1)));
        tokio::select! {
            _ = sleep_until_opt(wake) => {}
            changed = drain.changed() => if changed.is_err() { std::future::pending::<()>().await },
        }
    }
}

/// Runs the session until both directions are done, then records it.
pub(crate) async fn run(mut client: Peer, mut backend: Peer, s: Session) {
    s.active.inc();
    let st = State::new();
    let (c_read, c_write, c_prefix) = client.split();
    let (b_read, b_write, b_prefix) = backend.split();
    let c2b = pump(
        (c_read, c_prefix),
        b_write,
        CLIENT,
        &st,
        s.policy,
        &s.counters[CLIENT],
    );
    let b2c = pump(
        (b_read, b_prefix),
        c_write,
        BACKEND,
        &st,
        s.policy,
        &s.counters[BACKEND],
    );
    let ctl = controller(&st, s.policy, s.drain.clone());
    tokio::pin!(c2b, b2c, ctl);

    let mut ends: [Option<End>; 2] = [None, None];
    let mut first_failed: Option<usize> = None;
    let mut grace: Option<tokio::time::Instant> = None;
    while ends.iter().any(Option::is_none) {
        tokio::select! {
            e = &mut c2b, if ends[CLIENT].is_none() => {
                ends[CLIENT] = Some(e);
                on_end(&st, CLIENT, e, &mut first_failed, &mut grace);
            }
            e = &mut b2c, if ends[BACKEND].is_none() => {
                ends[BACKEND] = Some(e);
                on_end(&st, BACKEND, e, &mut first_failed, &mut grace);
            }
            _ = &mut ctl => {}
            _ = sleep_until_opt(grace) => {
                st.abandon(CLIENT);
                st.abandon(BACKEND);
                break;
            }
        }
    }
    s.active.dec();

    let reason = close_reason(&st, first_failed);
    s.metrics
        .ws_sessions
        .with_label_values(&[&s.route, reason])
        .inc();
    let duration = s.started.elapsed();
    s.metrics
        .ws_duration
        .with_label_values(&[&s.route])
        .observe(duration.as_secs_f64());
    tracing::info!(
        target: "wsgate::session",
        route = %s.route,
        client = %s.client,
        backend = %s.endpoint,
        duration_ms = duration.as_secs_f64() * 1000.0,
        bytes_to_backend = st.bytes[CLIENT].load(Ordering::Relaxed),
        bytes_to_client = st.bytes[BACKEND].load(Ordering::Relaxed),
        messages_to_backend = st.messages[CLIENT].load(Ordering::Relaxed),
        messages_to_client = st.messages[BACKEND].load(Ordering::Relaxed),
        // 0 = that side sent no close frame.
        client_close_code = st.codes[CLIENT].load(Ordering::Relaxed),
        backend_close_code = st.codes[BACKEND].load(Ordering::Relaxed),
        close_reason = reason,
        "websocket session closed"
    );
}

/// Bookkeeping when one direction (reading from `side`) ends.
fn on_end(
    st: &State,
    side: usize,
    e: End,
    first_failed: &mut Option<usize>,
    grace: &mut Option<tokio::time::Instant>,
) {
    let failed_side = match e {
        End::SrcFailed => Some(side),
        End::DstFailed => Some(1 - side),
        End::Done | End::Abandoned => None,
    };
    if first_failed.is_none() && st.first_close.load(Ordering::SeqCst) == 0 {
        *first_failed = failed_side;
    }
    if e == End::SrcFailed || st.closes_complete() {
        // The source is gone (the destination was told with a close frame), or the closing
        // handshake is complete: the other direction has nothing left to deliver to `side`.
        st.abandon(side);
    }
    if grace.is_none() {
        *grace = Some(tokio::time::Instant::now() + CLOSE_GRACE);
    }
}

/// The metric label for how the session ended.
fn close_reason(st: &State, first_failed: Option<usize>) -> &'static str {
    if let Some(r) = *st.reason.lock().unwrap_or_else(|p| p.into_inner()) {
        return r;
    }
    match (st.first_close.load(Ordering::SeqCst), first_failed) {
        (1, _) => "client",
        (2, _) => "backend",
        (_, Some(BACKEND)) => "backend_error",
        _ => "client_error",
    }
}
