//! Process-wide proxy settings from the command line.

use ipnet::IpNet;
use std::net::IpAddr;
use std::time::Duration;

/// Process-wide proxy settings from the command line.
#[derive(Clone, Debug)]
pub struct ProxySettings {
    /// `--bind`.
    pub bind: IpAddr,
    /// `--trusted-proxies`.
    pub trusted_proxies: Vec<IpNet>,
    /// `--header-timeout`: the whole request head must arrive within it.
    pub header_timeout: Duration,
    /// `--send-timeout`: a write to a client that makes no progress for this long closes the
    /// connection (HTTP responses; a connection carrying a WebSocket session is exempt); `None`
    /// = off.
    pub send_timeout: Option<Duration>,
    /// `--max-header-bytes`.
    pub max_header_bytes: usize,
    /// `--max-body-bytes`: request body limit for non-WebSocket requests; 0 = unlimited.
    pub max_body_bytes: u64,
    /// `--cache-max-bytes`: memory bound of the HTTP response cache.
    pub cache_max_bytes: u64,
    /// `--max-connections`: open connections per listener; 0 = one process-wide limit derived
    /// from the open-file limit.
    pub max_connections: usize,
    /// After SIGTERM, how long listeners keep accepting while readiness is already false, so
    /// load balancers stop sending new connections first.
    pub drain_accept_delay: Duration,
    /// `--shutdown-close-spread`: WebSocket sessions get their 1001 at random moments spread
    /// over this window after the drain starts, so clients do not all reconnect at once;
    /// zero = all at once.
    pub close_spread: Duration,
    /// `--affinity-key`: HMAC key of affinity cookie values; the same on every replica. Empty =
    /// unkeyed (values are still opaque and stable across replicas, see `affinity.rs`).
    pub affinity_key: crate::ir::Redacted<Vec<u8>>,
    /// `--allow-underscore-headers`: forward header names containing `_` (dropped by default).
    pub allow_underscore_headers: bool,
    /// `--max-ejection-percent`: the largest share of a pool's endpoints passive health may
    /// eject at once (at least one endpoint always stays).
    pub max_ejection_percent: u8,
    /// `--http2*`: HTTP/2 on client connections and its limits.
    pub http2: Http2Settings,
    /// `--workers`: the runtimes that accept and serve connections (default: the one the proxy
    /// runs on).
    pub workers: super::Workers,
}

/// HTTP/2 on client connections (`--http2*` flags, see `docs/http2.md`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Http2Settings {
    /// `--http2`: offer `h2` by ALPN on HTTPS listeners (RFC 8441 WebSockets included).
    pub enabled: bool,
    /// `--http2-cleartext`: accept HTTP/2 with prior knowledge on HTTP listeners.
    pub cleartext: bool,
    /// `--http2-max-concurrent-streams`: `SETTINGS_MAX_CONCURRENT_STREAMS`; a WebSocket over
    /// HTTP/2 holds one stream for its life.
    pub max_concurrent_streams: u32,
    /// `--http2-initial-stream-window`: bytes a client may send on one stream before wsgate
    /// has passed them on (what one slow stream can hold in memory).
    pub initial_stream_window: u32,
    /// `--http2-initial-connection-window`: the same for all streams of a connection together.
    pub initial_connection_window: u32,
    /// `--http2-max-frame-size`: `SETTINGS_MAX_FRAME_SIZE`.
    pub max_frame_size: u32,
    /// `--http2-max-pending-reset-streams`: streams a client may open and reset before wsgate
    /// accepted them; more -> GOAWAY (rapid reset, CVE-2023-44487).
    pub max_pending_reset_streams: usize,
    /// `--http2-max-local-error-resets`: streams wsgate may reset for protocol errors of a
    /// client; more -> GOAWAY (MadeYouReset, CVE-2025-8671).
    pub max_local_error_resets: usize,
}

impl Default for Http2Settings {
    fn default() -> Self {
        Self {
            enabled: true,
            cleartext: false,
            max_concurrent_streams: 128,
            initial_stream_window: 256 * 1024,
            initial_connection_window: 1024 * 1024,
            max_frame_size: 16 * 1024,
            max_pending_reset_streams: 20,
            max_local_error_resets: 100,
        }
    }
}

impl Default for ProxySettings {
    fn default() -> Self {
        Self {
            bind: IpAddr::from([0, 0, 0, 0]),
            trusted_proxies: Vec::new(),
            header_timeout: Duration::from_secs(10),
            send_timeout: Some(Duration::from_secs(60)),
            max_header_bytes: 32 * 1024,
            max_body_bytes: 0,
            cache_max_bytes: 256 * 1024 * 1024,
            max_connections: 0,
            drain_accept_delay: Duration::ZERO,
            close_spread: Duration::ZERO,
            affinity_key: Default::default(),
            allow_underscore_headers: false,
            max_ejection_percent: 50,
            http2: Http2Settings::default(),
            workers: super::Workers::default(),
        }
    }
}
