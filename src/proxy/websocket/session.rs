//! A WebSocket session after the switch: both directions ([`pump`]) and the session controller
//! (timers and drain) run as futures in one task, talking through per-side [`Control`]s. Timers
//! use tokio's clock, so tests can run them on paused time.

use super::peer::Peer;
use super::pump::{End, pump};
use super::state::{BACKEND, CLIENT, DirCounters, Policy, State, sleep_until_opt};
use crate::ir::BackendSettings;
use crate::proxy::access::millis;
use crate::proxy::accounting::{ConnGuard, SessionSlot};
use crate::proxy::context::ConnCtx;
use crate::proxy::pools::Lease;
use prometheus::IntGauge;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// After one direction ends, or the proxy decided to close, how long until the session is cut
/// whatever the peers do (a peer that never reads cannot hold it).
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Metric handles and identity of one session, resolved once at upgrade time.
pub(crate) struct Session {
    route: String,
    client: SocketAddr,
    /// `http1` or `h2`: how the client side is carried.
    protocol: &'static str,
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
            protocol: ctx.protocol.label(),
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
    s.metrics.ws_opened.with_label_values(&[s.protocol]).inc();
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
        client_protocol = s.protocol,
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
