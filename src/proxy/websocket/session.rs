//! A WebSocket session after the switch: both directions ([`pump`]) and the session controller
//! (timers and drain) run as futures in one task, talking through per-side [`Control`]s. Timers
//! use tokio's clock, so tests can run them on paused time.

use super::peer::Peer;
use super::pump::{End, pump};
use crate::ir::BackendSettings;
use crate::proxy::access::millis;
use crate::proxy::accounting::{ConnGuard, SessionSlot};
use crate::proxy::context::ConnCtx;
use crate::proxy::pools::Lease;
use parking_lot::Mutex;
use prometheus::{IntCounter, IntGauge};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU16, AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::Frame;
use tungstenite::protocol::frame::coding::CloseCode;

/// After one direction ends, or the proxy decided to close, how long until the session is cut
/// whatever the peers do (a peer that never reads cannot hold it).
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// The client side's index.
pub(crate) const CLIENT: usize = 0;
/// The backend side's index.
pub(crate) const BACKEND: usize = 1;

/// Session policy from the backend settings.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Policy {
    pub(crate) ping_interval: Option<Duration>,
    pub(crate) request_timeout: Option<Duration>,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) max_duration: Option<Duration>,
    pub(crate) max_message_bytes: u64,
    /// `--shutdown-close-spread`: the drain's 1001 comes at a random moment within it.
    pub(crate) close_spread: Duration,
}

impl Policy {
    /// The policy of a backend's settings.
    pub(crate) fn from_settings(s: &BackendSettings, close_spread: Duration) -> Self {
        Self {
            ping_interval: s.websocket.ping_interval.get(),
            request_timeout: s.request_timeout.get(),
            idle_timeout: s.websocket.idle_timeout.get(),
            max_duration: s.websocket.max_session_duration.get(),
            max_message_bytes: s.websocket.max_message_bytes,
            close_spread,
        }
    }
}

/// Per-direction metric handles.
pub(crate) struct DirCounters {
    pub(crate) bytes: IntCounter,
    pub(crate) messages: IntCounter,
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
    _holds: (ConnGuard, Arc<ConnCtx>, Lease, Option<SessionSlot>),
}

impl Session {
    /// A session on `route` to `endpoint`, holding its endpoint lease and route slot.
    pub(crate) fn new(
        route: &str,
        ctx: &Arc<ConnCtx>,
        endpoint: &str,
        settings: &BackendSettings,
        started: Instant,
        holds: (Lease, Option<SessionSlot>),
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
            policy: Policy::from_settings(settings, ctx.shared.settings.close_spread),
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
pub(crate) struct Control {
    pub(crate) notify: Notify,
    pub(crate) ping: AtomicBool,
    /// Close code to send (0 = none).
    pub(crate) close: AtomicU16,
    /// Stop forwarding: the destination is gone or the session is over.
    pub(crate) abandon: AtomicBool,
}

impl Control {
    /// Resolves once the direction is told to stop.
    pub(crate) async fn abandoned(&self) {
        loop {
            let notified = self.notify.notified();
            if self.abandon.load(Ordering::SeqCst) {
                return;
            }
            notified.await;
        }
    }
}

/// State shared by both directions and the controller.
pub(crate) struct State {
    epoch: Instant,
    pub(crate) policy: Policy,
    /// Milliseconds since `epoch` of the last frame received from each side.
    pub(crate) last_rx: [AtomicU64; 2],
    pub(crate) last_data: AtomicU64,
    pub(crate) last_ping: [AtomicU64; 2],
    /// Side (+1) that sent the first close frame; bitmask of sides that sent one.
    first_close: AtomicU8,
    pub(crate) seen_close: AtomicU8,
    /// Close reason decided by the proxy, if it ended the session, and when (ms).
    reason: Mutex<Option<(&'static str, u64)>>,
    /// Wakes the controller when the proxy decided to close.
    wake: Notify,
    /// Commands for the direction writing to each side.
    pub(crate) ctl: [Control; 2],
    pub(crate) ping_payload: [u8; 8],
    pub(crate) bytes: [AtomicU64; 2],
    pub(crate) messages: [AtomicU64; 2],
    /// Close code each side sent (0 = none).
    pub(crate) codes: [AtomicU16; 2],
}

impl State {
    pub(crate) fn new(policy: Policy) -> Self {
        Self {
            epoch: Instant::now(),
            policy,
            last_rx: Default::default(),
            last_data: Default::default(),
            last_ping: Default::default(),
            first_close: Default::default(),
            seen_close: Default::default(),
            reason: Mutex::new(None),
            wake: Notify::new(),
            ctl: Default::default(),
            ping_payload: rand::random(),
            bytes: Default::default(),
            messages: Default::default(),
            codes: Default::default(),
        }
    }

    /// Milliseconds since the session started.
    pub(crate) fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn at(&self, ms: u64) -> Instant {
        self.epoch + Duration::from_millis(ms)
    }

    pub(crate) fn record_close(&self, side: usize) {
        let _ = self.first_close.compare_exchange(
            0,
            side as u8 + 1,
            Ordering::SeqCst,
            Ordering::SeqCst,
        );
        self.seen_close.fetch_or(1 << side, Ordering::SeqCst);
    }

    pub(crate) fn closes_complete(&self) -> bool {
        self.seen_close.load(Ordering::SeqCst) == 0b11
    }

    pub(crate) fn count_bytes(&self, counters: &DirCounters, src: usize, n: usize) {
        counters.bytes.inc_by(n as u64);
        self.bytes[src].fetch_add(n as u64, Ordering::Relaxed);
    }

    /// The proxy ends the session: each side gets a close frame with its code. The first
    /// reason wins; a session whose peers already began closing is left to them.
    pub(crate) fn proxy_close(&self, reason: &'static str, client_code: u16, backend_code: u16) {
        {
            let mut r = self.reason.lock();
            if r.is_some() || self.first_close.load(Ordering::SeqCst) != 0 {
                return;
            }
            *r = Some((reason, self.now_ms()));
        }
        for (side, code) in [(CLIENT, client_code), (BACKEND, backend_code)] {
            self.ctl[side].close.store(code, Ordering::SeqCst);
            self.ctl[side].notify.notify_one();
        }
        self.wake.notify_one();
    }

    pub(crate) fn abandon(&self, side: usize) {
        self.ctl[side].abandon.store(true, Ordering::SeqCst);
        self.ctl[side].notify.notify_one();
    }
}

/// Encodes a frame the proxy sends; frames to the backend are masked with a fresh key.
pub(crate) fn proxy_frame(mut frame: Frame, to: usize) -> Vec<u8> {
    if to == BACKEND {
        frame.header_mut().mask = Some(rand::random());
    }
    let mut out = Vec::with_capacity(frame.len());
    // Formatting into a Vec cannot fail.
    let _ = frame.format(&mut out);
    out
}

/// A close frame of the proxy's with `code` and a short reason.
pub(crate) fn close_frame(code: u16, to: usize) -> Vec<u8> {
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

pub(crate) async fn sleep_until_opt(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// The earliest of the deadlines it was shown.
#[derive(Default)]
struct Earliest(Option<u64>);

impl Earliest {
    fn consider(&mut self, t: u64) {
        self.0 = Some(self.0.map_or(t, |n| n.min(t)));
    }
}

/// Pings to quiet sides, and the request timeout: with pings every live side answers within
/// the interval, so a side silent for the request timeout is dead or stuck; without pings a
/// listen-only side is normal and only total silence counts.
fn liveness(st: &State, now: u64, next: &mut Earliest) {
    let p = st.policy;
    let rt = p.request_timeout.map(|d| d.as_millis() as u64);
    match p.ping_interval.map(|d| d.as_millis() as u64) {
        Some(pi) => {
            for side in [CLIENT, BACKEND] {
                let rx = st.last_rx[side].load(Ordering::SeqCst);
                let since = rx.max(st.last_ping[side].load(Ordering::SeqCst));
                if now >= since + pi {
                    // The direction writing to `side` sends the ping.
                    st.ctl[side].ping.store(true, Ordering::SeqCst);
                    st.ctl[side].notify.notify_one();
                    st.last_ping[side].store(now, Ordering::SeqCst);
                    next.consider(now + pi);
                } else {
                    next.consider(since + pi);
                }
                if let Some(rt) = rt {
                    if now >= rx + rt {
                        st.proxy_close("request_timeout", 1001, 1001);
                    }
                    next.consider(rx + rt);
                }
            }
        }
        None => {
            if let Some(rt) = rt {
                let rx = st.last_rx[CLIENT]
                    .load(Ordering::SeqCst)
                    .max(st.last_rx[BACKEND].load(Ordering::SeqCst));
                if now >= rx + rt {
                    st.proxy_close("request_timeout", 1001, 1001);
                }
                next.consider(rx + rt);
            }
        }
    }
}

/// Drives timers: liveness, the idle timeout (no data frame either way), the session age limit,
/// the drain signal (spread over `close_spread`), and the cut after a proxy close that the peers
/// do not complete.
async fn controller(st: &State, mut drain: watch::Receiver<bool>) {
    let p = st.policy;
    let max_age = p.max_duration.map(|d| d.as_millis() as u64);
    let mut drain_at: Option<u64> = None;
    loop {
        let now = st.now_ms();
        let mut next = Earliest::default();
        if *drain.borrow() && drain_at.is_none() {
            let spread = p.close_spread.as_millis() as u64;
            let delay = if spread == 0 {
                0
            } else {
                rand::random::<u64>() % spread
            };
            drain_at = Some(now + delay);
        }
        if let Some(at) = drain_at {
            if now >= at {
                st.proxy_close("shutdown", 1001, 1001);
            } else {
                next.consider(at);
            }
        }
        if let Some(age) = max_age {
            if now >= age {
                st.proxy_close("max_duration", 1001, 1001);
            }
            next.consider(age);
        }
        liveness(st, now, &mut next);
        if let Some(it) = p.idle_timeout.map(|d| d.as_millis() as u64) {
            let last = st.last_data.load(Ordering::SeqCst);
            if now >= last + it {
                st.proxy_close("idle_timeout", 1001, 1001);
            }
            next.consider(last + it);
        }
        if let Some((_, closed)) = *st.reason.lock() {
            let cut = closed + CLOSE_GRACE.as_millis() as u64;
            if now >= cut {
                st.abandon(CLIENT);
                st.abandon(BACKEND);
            } else {
                next.consider(cut);
            }
        }
        let wake = next.0.map(|t| st.at(t.max(now + 1)));
        tokio::select! {
            _ = sleep_until_opt(wake) => {}
            _ = st.wake.notified() => {}
            changed = drain.changed() => if changed.is_err() { std::future::pending::<()>().await },
        }
    }
}

/// Runs the session until both directions are done, then records it.
pub(crate) async fn run(client: Peer, backend: Peer, s: Session) {
    s.active.inc();
    let (st, reason) = drive(client, backend, s.policy, &s.counters, s.drain.clone()).await;
    s.active.dec();
    record(&s, &st, reason);
}

/// Both directions and the controller until the session is over; returns its state and the
/// close reason.
pub(crate) async fn drive(
    mut client: Peer,
    mut backend: Peer,
    policy: Policy,
    counters: &[DirCounters; 2],
    drain: watch::Receiver<bool>,
) -> (State, &'static str) {
    let st = State::new(policy);
    // The directions borrow the state: they are dropped before it is handed back.
    let reason = {
        let (c_read, c_write, c_prefix) = client.split();
        let (b_read, b_write, b_prefix) = backend.split();
        let c2b = pump((c_read, c_prefix), b_write, CLIENT, &st, &counters[CLIENT]);
        let b2c = pump(
            (b_read, b_prefix),
            c_write,
            BACKEND,
            &st,
            &counters[BACKEND],
        );
        let ctl = controller(&st, drain);
        tokio::pin!(c2b, b2c, ctl);

        let mut ends: [Option<End>; 2] = [None, None];
        let mut first_failed: Option<usize> = None;
        let mut grace: Option<Instant> = None;
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
        close_reason(&st, first_failed)
    };
    (st, reason)
}

/// The session's metrics and its log line.
fn record(s: &Session, st: &State, reason: &'static str) {
    s.metrics
        .ws_sessions
        .with_label_values(&[&s.route, reason])
        .inc();
    let duration = s.started.elapsed();
    s.metrics
        .ws_duration
        .with_label_values(&[&s.route])
        .observe(duration.as_secs_f64());
    // A side that sent no close frame has no close code: the field is left out.
    let code = |side: usize| Some(st.codes[side].load(Ordering::Relaxed)).filter(|c| *c != 0);
    tracing::info!(
        target: "wsgate::session",
        route = %s.route,
        client = %s.client,
        backend = %s.endpoint,
        duration_ms = millis(duration),
        bytes_to_backend = st.bytes[CLIENT].load(Ordering::Relaxed),
        bytes_to_client = st.bytes[BACKEND].load(Ordering::Relaxed),
        messages_to_backend = st.messages[CLIENT].load(Ordering::Relaxed),
        messages_to_client = st.messages[BACKEND].load(Ordering::Relaxed),
        client_close_code = code(CLIENT),
        backend_close_code = code(BACKEND),
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
    grace: &mut Option<Instant>,
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
        *grace = Some(Instant::now() + CLOSE_GRACE);
    }
}

/// The metric label for how the session ended.
fn close_reason(st: &State, first_failed: Option<usize>) -> &'static str {
    if let Some((r, _)) = *st.reason.lock() {
        return r;
    }
    match (st.first_close.load(Ordering::SeqCst), first_failed) {
        (1, _) => "client",
        (2, _) => "backend",
        (_, Some(BACKEND)) => "backend_error",
        _ => "client_error",
    }
}

#[cfg(test)]
mod tests;
