//! Firewall evaluation on every request, including the WebSocket upgrade request, before any
//! backend connection: IP deny/allow, ordered rules, the Origin allowlist, per-client rate limit.

use super::error::{ProxyError, Reason};
use super::registry::Registry;
use crate::ir::{Firewall, RateLimit};
use http::{HeaderMap, Method, StatusCode, header};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use tokio::time::Instant;

/// Most client IPs a limiter remembers; beyond it, buckets that are full again are forgotten.
const MAX_TRACKED_CLIENTS: usize = 100_000;

struct Bucket {
    tokens: f64,
    last: Instant,
}

/// A token bucket per client IP.
pub(crate) struct RateLimiter {
    limit: RateLimit,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

impl RateLimiter {
    fn new(limit: RateLimit) -> Self {
        Self {
            limit,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token for `ip`; `Err(seconds)` until one is available.
    fn take(&self, ip: IpAddr, now: Instant) -> Result<(), u64> {
        let rate = f64::from(self.limit.per_second.max(1));
        let burst = f64::from(self.limit.burst.max(1));
        let mut buckets = self.buckets.lock();
        if buckets.len() >= MAX_TRACKED_CLIENTS && !buckets.contains_key(&ip) {
            buckets
                .retain(|_, b| b.tokens + now.duration_since(b.last).as_secs_f64() * rate < burst);
        }
        let b = buckets.entry(ip).or_insert(Bucket {
            tokens: burst,
            last: now,
        });
        b.tokens = (b.tokens + now.duration_since(b.last).as_secs_f64() * rate).min(burst);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - b.tokens) / rate).ceil().max(1.0) as u64)
        }
    }
}

/// A firewall ready to evaluate: regexes compiled, limiter attached.
pub(crate) struct CompiledFirewall {
    fw: Firewall,
    regexes: Vec<Option<regex::Regex>>,
    limiter: Option<Arc<RateLimiter>>,
}

/// Keeps rate-limit state per firewall identity across table swaps.
#[derive(Default)]
pub(crate) struct LimiterRegistry {
    limiters: Registry<Arc<str>, RateLimiter>,
}

impl LimiterRegistry {
    /// Forgets the limiters of firewalls no table uses any more.
    pub(crate) fn prune(&self) {
        self.limiters.prune(|_| {});
    }

    /// Compiles a firewall of a new table.
    pub(crate) fn compile(&self, fw: &Firewall) -> CompiledFirewall {
        // Translation validated the patterns; one that still fails never matches.
        let regexes = fw
            .rules
            .iter()
            .map(|r| {
                r.header
                    .as_ref()
                    .and_then(|h| h.regex.as_deref())
                    .and_then(|re| regex::Regex::new(re).ok())
            })
            .collect();
        let limiter = fw.rate_limit.map(|limit| {
            self.limiters.get_or_make(
                fw.id.clone(),
                |l| l.limit == limit,
                || RateLimiter::new(limit),
            )
        });
        CompiledFirewall {
            fw: fw.clone(),
            regexes,
            limiter,
        }
    }
}

fn forbid(reason: Reason, message: String) -> ProxyError {
    ProxyError::new(StatusCode::FORBIDDEN, reason, message)
}

impl CompiledFirewall {
    /// Evaluates a request; `websocket` says whether it is an upgrade attempt.
    pub(crate) fn check(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
        client: IpAddr,
        websocket: bool,
    ) -> Result<(), ProxyError> {
        let fw = &self.fw;
        if fw.ip_deny.iter().any(|n| n.contains(&client)) {
            return Err(forbid(
                Reason::Firewall,
                format!("client {client} is denied"),
            ));
        }
        if !fw.ip_allow.is_empty() && !fw.ip_allow.iter().any(|n| n.contains(&client)) {
            return Err(forbid(
                Reason::Firewall,
                format!("client {client} is not allowed"),
            ));
        }
        for (rule, re) in fw.rules.iter().zip(&self.regexes) {
            let matches = rule.path_prefix.as_ref().is_none_or(|p| p.matches(path))
                && rule.path.as_deref().is_none_or(|p| p == path)
                && rule.method.as_deref().is_none_or(|m| m == method.as_str())
                && rule.header.as_ref().is_none_or(|h| {
                    headers.get_all(h.name.as_str()).iter().any(|v| {
                        let v = v.to_str().unwrap_or("");
                        match (&h.value, re) {
                            (Some(want), _) => v == want,
                            (None, Some(re)) => re.is_match(v),
                            (None, None) => false,
                        }
                    })
                });
            if matches {
                if rule.allow {
                    break;
                }
                return Err(forbid(
                    Reason::Firewall,
                    format!("denied by firewall rule {:?}", rule.name),
                ));
            }
        }
        if websocket && !fw.allowed_origins.is_empty() {
            let Some(origin) = headers.get(header::ORIGIN) else {
                return Err(forbid(
                    Reason::Origin,
                    "this route accepts WebSockets only from listed origins, and the request \
                     has no Origin header"
                        .into(),
                ));
            };
            let origin = origin.to_str().unwrap_or("");
            if !fw
                .allowed_origins
                .iter()
                .any(|o| o.eq_ignore_ascii_case(origin))
            {
                return Err(forbid(
                    Reason::Origin,
                    format!("Origin {origin:?} is not allowed to open WebSockets here"),
                ));
            }
        }
        if let Some(l) = &self.limiter
            && let Err(secs) = l.take(client, Instant::now())
        {
            let message = format!(
                "rate limit of {} requests per second exceeded",
                l.limit.per_second
            );
            return Err(
                ProxyError::new(StatusCode::TOO_MANY_REQUESTS, Reason::RateLimit, message)
                    .retry_after(secs),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bucket_refills_at_the_rate() {
        let l = RateLimiter::new(RateLimit {
            per_second: 2,
            burst: 3,
        });
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let t = Instant::now();
        assert!(l.take(ip, t).is_ok() && l.take(ip, t).is_ok() && l.take(ip, t).is_ok());
        assert_eq!(l.take(ip, t), Err(1));
        assert!(l.take(ip, t + Duration::from_millis(500)).is_ok());
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(l.take(other, t).is_ok(), "buckets are per client");
    }
}
