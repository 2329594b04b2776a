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
}

impl Default for ProxySettings {
    fn default() -> Self {
        Self {
            bind: IpAddr::from([0, 0, 0, 0]),
            trusted_proxies: Vec::new(),
            header_timeout: Duration::from_secs(10),
            max_header_bytes: 32 * 1024,
            max_body_bytes: 0,
            cache_max_bytes: 256 * 1024 * 1024,
            max_connections: 0,
            drain_accept_delay: Duration::ZERO,
            close_spread: Duration::ZERO,
            affinity_key: Default::default(),
        }
    }
}
