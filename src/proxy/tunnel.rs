//! The frame-aware tunnel: forwards bytes unchanged in both directions while tracking frame
//! boundaries to count messages and learn who closed the session.
//!
//! Both directions run as two futures inside one task, so a slow reader on one side applies
//! backpressure to its writer only (bounded buffer per direction) and never stalls the other side.

use super::frames::{FrameTracker, ends_message, is_close};
use super::server::ConnCtx;
use crate::ir::BackendSettings;
use prometheus::{IntCounter, IntGauge};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Bytes read per direction per call; the only per-session buffers.
const BUF_SIZE: usize = 16 * 1024;
/// After one side ends cleanly, how long the other may take to finish its close.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Metric handles and identity of one session, resolved once at upgrade time.
pub(crate) struct Session {
    route: String,
    client: SocketAddr,
    endpoint: String,
    started: Instant,
    active: IntGauge,
    to_client: DirCounters,
    to_backend: DirCounters,
    ctx_metrics: crate::metrics::Metrics,
}

struct DirCounters {
    bytes: IntCounter,
    messages: IntCounter,
}

impl Session {
    pub(crate) fn new(
        route: &str,
        ctx: &ConnCtx,
        endpoint: &str,
        _settings: &BackendSettings,
        started: Instant,
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
            active: m.ws_active.with_label_values(&[route]),
            to_client: dir("to_client"),
            to_backend: dir("to_backend"),
            ctx_metrics: m.clone(),
        }
    }
}

/// Totals of one direction, for the session log line.
#[derive(Default)]
struct DirStats {
    bytes: AtomicU64,
    messages: AtomicU64,
}

/// How a direction ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The reader reached EOF and the writer was shut down.
    Eof,
    /// Reading or writing failed.
    Error,
}

/// Close frames seen: which side sent the first (0 none yet, else a side tag) and a bitmask of
/// every side that sent one.
#[derive(Default)]
struct Closes {
    first: AtomicU8,
    seen: AtomicU8,
}

impl Closes {
    fn record(&self, side: u8) {
        let _ = self
            .first
            .compare_exchange(0, side, Ordering::Relaxed, Ordering::Relaxed);
        self.seen.fetch_or(side, Ordering::Relaxed);
    }

    /// Both sides sent a close frame: the closing handshake is complete.
    fn complete(&self) -> bool {
        self.seen.load(Ordering::Relaxed) == CLIENT | BACKEND
    }
}
const CLIENT: u8 = 1;
const BACKEND: u8 = 2;

async fn pump<R, W>(
    mut from: R,
    mut to: W,
    counters: &DirCounters,
    stats: &DirStats,
    side: u8,
    closes: &Closes,
) -> End
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut tracker = FrameTracker::default();
    let mut buf = vec![0u8; BUF_SIZE];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) => {
                let _ = to.shutdown().await;
                return End::Eof;
            }
            Ok(n) => n,
            Err(_) => return End::Error,
        };
        let chunk = &buf[..n];
        tracker.feed(chunk, |f, _| {
            if ends_message(&f) {
                counters.messages.inc();
                stats.messages.fetch_add(1, Ordering::Relaxed);
            }
            if is_close(&f) {
                closes.record(side);
            }
        });
        counters.bytes.inc_by(n as u64);
        stats.bytes.fetch_add(n as u64, Ordering::Relaxed);
        if to.write_all(chunk).await.is_err() {
            return End::Error;
        }
    }
}

/// Runs the session until both directions are done (or one failed), then records it.
pub(crate) async fn run<C, B>(client: C, backend: B, s: Session)
where
    C: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    s.active.inc();
    let (c_read, c_write) = tokio::io::split(client);
    let (b_read, b_write) = tokio::io::split(backend);
    let up = DirStats::default();
    let down = DirStats::default();
    let closes = Closes::default();
    let c2b = pump(c_read, b_write, &s.to_backend, &up, CLIENT, &closes);
    let b2c = pump(b_read, c_write, &s.to_client, &down, BACKEND, &closes);
    tokio::pin!(c2b, b2c);

    // Whoever ends first decides; a clean end gives the other side time to complete its close.
    let (first_side, _first_end, second_end) = tokio::select! {
        e = &mut c2b => ("client", e, finish(&mut b2c, e, &closes).await),
        e = &mut b2c => ("backend", e, finish(&mut c2b, e, &closes).await),
    };
    s.active.dec();

    let reason = close_reason(first_side, closes.first.load(Ordering::Relaxed));
    let m = &s.ctx_metrics;
    m.ws_sessions.with_label_values(&[&s.route, reason]).inc();
    let duration = s.started.elapsed();
    m.ws_duration
        .with_label_values(&[&s.route])
        .observe(duration.as_secs_f64());
    tracing::info!(
        target: "wsgate::session",
        route = %s.route,
        client = %s.client,
        backend = %s.endpoint,
        duration_ms = duration.as_secs_f64() * 1000.0,
        bytes_to_backend = up.bytes.load(Ordering::Relaxed),
        bytes_to_client = down.bytes.load(Ordering::Relaxed),
        messages_to_backend = up.messages.load(Ordering::Relaxed),
        messages_to_client = down.messages.load(Ordering::Relaxed),
        close_reason = reason,
        first_closed_by = first_side,
        other_side = ?second_end,
        "websocket session closed"
    );
}

/// Lets the other direction finish after the first one ended. Nothing is waited for after an
/// error, or once both close frames have crossed (the handshake is complete and each pump has
/// finished writing what it read).
async fn finish<F: std::future::Future<Output = End> + Unpin>(
    other: &mut F,
    first: End,
    closes: &Closes,
) -> Option<End> {
    if first == End::Error || closes.complete() {
        return None;
    }
    tokio::time::timeout(CLOSE_GRACE, other).await.ok()
}

/// Who ended the session: the side that sent the first close frame, else the side whose
/// connection ended or failed first without one.
fn close_reason(first_side: &str, first_close: u8) -> &'static str {
    match (first_close, first_side) {
        (CLIENT, _) => "client",
        (BACKEND, _) => "backend",
        (_, "client") => "client_error",
        _ => "backend_error",
    }
}
