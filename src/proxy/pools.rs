//! Runtime state per backend (round-robin cursor, keep-alive connection pool), kept across table
//! swaps for backends whose identity and connect settings are unchanged.

use crate::ir::{Backend, Endpoint, Timeout};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// State of one backend pool.
pub(crate) struct PoolRuntime {
    cursor: AtomicUsize,
    /// Pooled keep-alive client for plain HTTP.
    pub(crate) client: Client<HttpConnector, Incoming>,
}

impl PoolRuntime {
    fn new(connect_timeout: Timeout) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(connect_timeout.get());
        connector.set_nodelay(true);
        connector.enforce_http(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(64)
            .build(connector);
        Self {
            cursor: AtomicUsize::new(0),
            client,
        }
    }

    /// Picks the next endpoint in turn.
    pub(crate) fn pick<'a>(&self, endpoints: &'a [Endpoint]) -> Option<&'a Endpoint> {
        if endpoints.is_empty() {
            return None;
        }
        let i = self.cursor.fetch_add(1, Ordering::Relaxed) % endpoints.len();
        endpoints.get(i)
    }
}

type Key = (Arc<str>, Timeout);

/// Finds the runtime of a backend by identity, creating it when new.
#[derive(Default)]
pub(crate) struct PoolRegistry {
    pools: Mutex<HashMap<Key, Weak<PoolRuntime>>>,
}

impl PoolRegistry {
    pub(crate) fn get(&self, backend: &Backend) -> Arc<PoolRuntime> {
        let key = (backend.id.clone(), backend.settings.connect_timeout);
        let mut pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = pools.get(&key).and_then(Weak::upgrade) {
            return p;
        }
        let p = Arc::new(PoolRuntime::new(backend.settings.connect_timeout));
        pools.insert(key, Arc::downgrade(&p));
        p
    }

    /// Forgets pools no table refers to any more.
    pub(crate) fn prune(&self) {
        let mut pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        pools.retain(|_, w| w.strong_count() > 0);
    }
}
