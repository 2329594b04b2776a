//! The state one session's directions and controller share: per-side commands, timestamps,
//! counts and close codes, and the frames the proxy writes itself.

use crate::ir::BackendSettings;
use parking_lot::Mutex;
use prometheus::IntCounter;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU16, AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;
use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::Frame;
use tungstenite::protocol::frame::coding::CloseCode;

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
    pub(crate) first_close: AtomicU8,
    pub(crate) seen_close: AtomicU8,
    /// Close reason decided by the proxy, if it ended the session, and when (ms).
    pub(crate) reason: Mutex<Option<(&'static str, u64)>>,
    /// Wakes the controller when the proxy decided to close.
    pub(crate) wake: Notify,
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

    pub(crate) fn at(&self, ms: u64) -> Instant {
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
