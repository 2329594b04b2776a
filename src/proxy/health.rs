//! Active health probes: one task per (pool, endpoint, probe), started and stopped as tables change.

use super::pools::EndpointState;
use crate::ir::{Backend, BackendProtocol, Probe};
use http::{Request, header};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::task::JoinHandle;

type Key = (Arc<str>, String, String);
/// A probe the table asks for: its endpoint, settings and TLS client config (HTTPS probes).
type Wanted = (
    Weak<EndpointState>,
    Probe,
    Option<Arc<rustls::ClientConfig>>,
);
/// A running probe and the endpoint it judges.
type Running = (JoinHandle<()>, Weak<EndpointState>);

/// Runs the probes the current table asks for.
#[derive(Default)]
pub(crate) struct HealthChecker {
    tasks: Mutex<HashMap<Key, Running>>,
}

impl HealthChecker {
    /// Starts probes that are new and stops those no longer wanted.
    pub(crate) fn sync<'a>(
        &self,
        backends: impl Iterator<Item = (&'a Backend, &'a [Arc<EndpointState>])>,
    ) {
        let mut wanted: HashMap<Key, Wanted> = HashMap::new();
        for (backend, endpoints) in backends {
            let Some(probe) = &backend.settings.probe else {
                continue;
            };
            let tls = (probe.protocol == BackendProtocol::Https).then(|| {
                let ca = backend.settings.ca_pem.as_ref().map(|c| c.0.as_str());
                super::tls::client_config(ca).ok()
            });
            let tls = tls.flatten();
            for ep in endpoints {
                let key = (ep.pool.clone(), ep.label.clone(), format!("{probe:?}"));
                wanted.insert(key, (Arc::downgrade(ep), probe.clone(), tls.clone()));
            }
        }
        let mut tasks = self.tasks.lock();
        tasks.retain(|key, (task, ep)| {
            let keep = wanted.contains_key(key);
            if !keep {
                task.abort();
                // Without a probe, an endpoint is judged by passive health only.
                if let Some(ep) = ep.upgrade() {
                    ep.set_probe_healthy(true);
                }
            }
            keep
        });
        for (key, (ep, probe, tls)) in wanted {
            if tasks.contains_key(&key) {
                continue;
            }
            let task = tokio::spawn(probe_loop(ep.clone(), probe, tls));
            tasks.insert(key, (task, ep));
        }
    }
}

async fn probe_loop(ep: Weak<EndpointState>, probe: Probe, tls: Option<Arc<rustls::ClientConfig>>) {
    let interval = probe.interval.get().unwrap_or(Duration::from_secs(10));
    let (mut successes, mut failures) = (0u32, 0u32);
    loop {
        let Some(state) = ep.upgrade() else { return };
        let result = probe_once(&state, &probe, tls.as_ref()).await;
        match &result {
            Ok(()) => {
                successes += 1;
                failures = 0;
                if successes >= probe.healthy_threshold {
                    state.set_probe_healthy(true);
                }
            }
            Err(why) => {
                failures += 1;
                successes = 0;
                tracing::debug!(pool = %state.pool, endpoint = %state.label, why, "probe failed");
                if failures >= probe.unhealthy_threshold {
                    state.set_probe_healthy(false);
                }
            }
        }
        drop(state);
        tokio::time::sleep(interval).await;
    }
}

async fn probe_once(
    ep: &EndpointState,
    probe: &Probe,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> Result<(), String> {
    let port = if probe.port == 0 {
        ep.endpoint.port
    } else {
        probe.port
    };
    let host = if probe.host.is_empty() {
        ep.endpoint.host.to_string()
    } else {
        probe.host.clone()
    };
    let limit = probe.timeout.get().unwrap_or(Duration::from_secs(5));
    let attempt = async {
        let stream = super::tls::connect(&ep.endpoint.host, port, tls, None)
            .await
            .map_err(|e| e.to_string())?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        let conn = tokio::spawn(conn);
        let req = Request::get(probe.path.as_str())
            .header(header::HOST, host)
            .header(header::USER_AGENT, "wsgate-health-probe")
            .body(Empty::<bytes::Bytes>::new())
            .map_err(|e| e.to_string())?;
        let resp = sender.send_request(req).await.map_err(|e| e.to_string());
        conn.abort();
        let status = resp?.status().as_u16();
        if probe
            .status_codes
            .iter()
            .any(|(lo, hi)| (*lo..=*hi).contains(&status))
        {
            Ok(())
        } else {
            Err(format!("status {status}"))
        }
    };
    tokio::time::timeout(limit, attempt)
        .await
        .map_err(|_| "timed out".to_string())?
}
