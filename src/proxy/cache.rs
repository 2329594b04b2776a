//! The HTTP response cache (RFC 9111 rules via `http-cache-semantics`) for routes with
//! `cache.enabled`: a byte-bounded in-memory store, revalidation with ETag/Last-Modified, and
//! coalescing of concurrent misses. Requests with `Upgrade` never touch it.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, Version, header};
use http_cache_semantics::{AfterResponse, BeforeRequest, CachePolicy};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::watch;

/// The response header saying what the cache did.
pub(crate) const X_CACHE: &str = "x-cache";

/// A stored response.
pub(crate) struct Entry {
    policy: CachePolicy,
    status: StatusCode,
    version: Version,
    headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Entry {
    fn weight(&self) -> u32 {
        let headers: usize = self
            .headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len())
            .sum();
        u32::try_from(self.body.len() + headers + 256).unwrap_or(u32::MAX)
    }
}

/// What a lookup found.
pub(crate) enum Lookup {
    /// Fresh: serve this (headers with `Age` updated).
    Hit(http::response::Parts, Bytes),
    /// Stale but revalidatable: send these request headers, then call [`HttpCache::revalidated`].
    Revalidate(Arc<Entry>, HeaderMap),
    /// Nothing usable.
    Miss,
}

type Variants = Arc<Vec<Arc<Entry>>>;

/// The process-wide cache.
pub(crate) struct HttpCache {
    store: moka::future::Cache<String, Variants>,
    inflight: Mutex<HashMap<String, watch::Receiver<bool>>>,
    max_entry: usize,
}

/// Removes the in-flight marker of a miss and wakes waiters, on every path.
pub(crate) struct Leader<'a> {
    cache: &'a HttpCache,
    key: String,
    done: watch::Sender<bool>,
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        self.cache.inflight.lock().remove(&self.key);
        let _ = self.done.send(true);
    }
}

/// Whether a request may use the cache at all (GET/HEAD without Upgrade).
pub(crate) fn eligible<B>(req: &Request<B>) -> bool {
    (req.method() == Method::GET || req.method() == Method::HEAD)
        && !req.headers().contains_key(header::UPGRADE)
}

impl HttpCache {
    /// A cache bounded to `max_bytes` (bodies plus headers); one response may use up to an eighth.
    pub(crate) fn new(max_bytes: u64) -> Self {
        let store = moka::future::Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|_k: &String, v: &Variants| {
                v.iter().map(|e| e.weight()).fold(0u32, u32::saturating_add)
            })
            .build();
        Self {
            store,
            inflight: Mutex::new(HashMap::new()),
            max_entry: usize::try_from(max_bytes / 8).unwrap_or(usize::MAX),
        }
    }

    /// The cache key of a request on a route.
    pub(crate) fn key<B>(route: &str, host: &str, req: &Request<B>) -> String {
        let pq = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        format!("{route}\u{0}{}\u{0}{host}\u{0}{pq}", req.method())
    }

    /// Looks a request up.
    pub(crate) async fn lookup<B>(&self, key: &str, req: &Request<B>) -> Lookup {
        let Some(variants) = self.store.get(key).await else {
            return Lookup::Miss;
        };
        let now = SystemTime::now();
        let mut stale = None;
        // Newest first.
        for e in variants.iter().rev() {
            match e.policy.before_request(req, now) {
                BeforeRequest::Fresh(mut parts) => {
                    parts.status = e.status;
                    parts.version = e.version;
                    return Lookup::Hit(parts, e.body.clone());
                }
                BeforeRequest::Stale {
                    request,
                    matches: true,
                } if stale.is_none() => {
                    stale = Some((e.clone(), request.headers));
                }
                BeforeRequest::Stale { .. } => {}
            }
        }
        match stale {
            Some((e, headers)) => Lookup::Revalidate(e, headers),
            None => Lookup::Miss,
        }
    }

    /// For a miss: `Ok(leader)` if this request should fetch (others wait for it), or `Err(rx)`
    /// to wait for the request already fetching the same key.
    pub(crate) fn begin_miss(&self, key: &str) -> Result<Leader<'_>, watch::Receiver<bool>> {
        let mut inflight = self.inflight.lock();
        if let Some(rx) = inflight.get(key) {
            return Err(rx.clone());
        }
        let (tx, rx) = watch::channel(false);
        inflight.insert(key.to_string(), rx);
        Ok(Leader {
            cache: self,
            key: key.to_string(),
            done: tx,
        })
    }

    /// Waits (at most `limit`) for a leader to finish.
    pub(crate) async fn wait(mut rx: watch::Receiver<bool>, limit: Duration) {
        let _ = tokio::time::timeout(limit, rx.wait_for(|done| *done)).await;
    }

    /// Whether a response may be stored: storable per RFC 9111 and of known, bounded size.
    pub(crate) fn storable<B>(
        &self,
        req: &Request<B>,
        resp: &http::response::Parts,
    ) -> Option<CachePolicy> {
        if resp.status == StatusCode::SWITCHING_PROTOCOLS {
            return None;
        }
        let len = resp
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok())?;
        if len > self.max_entry {
            return None;
        }
        let policy = CachePolicy::new(req, resp);
        policy.is_storable().then_some(policy)
    }

    /// Stores a response (replacing variants the new one supersedes).
    pub(crate) async fn insert(
        &self,
        key: &str,
        policy: CachePolicy,
        resp: &http::response::Parts,
        body: Bytes,
    ) {
        let entry = Arc::new(Entry {
            policy,
            status: resp.status,
            version: resp.version,
            headers: resp.headers.clone(),
            body,
        });
        let mut variants: Vec<Arc<Entry>> = self
            .store
            .get(key)
            .await
            .map(|v| v.as_ref().clone())
            .unwrap_or_default();
        // A variant with the same Vary-selected request headers is replaced; others are kept.
        variants.retain(|old| !same_variant(old, &entry));
        variants.push(entry);
        variants.truncate(16);
        self.store.insert(key.to_string(), Arc::new(variants)).await;
    }

    /// After a conditional request: a 304 refreshes the entry and yields its body.
    pub(crate) async fn revalidated<B>(
        &self,
        key: &str,
        entry: &Entry,
        req: &Request<B>,
        resp: &http::response::Parts,
    ) -> Option<(http::response::Parts, Bytes)> {
        if resp.status != StatusCode::NOT_MODIFIED {
            return None;
        }
        match entry.policy.after_response(req, resp, SystemTime::now()) {
            AfterResponse::NotModified(policy, mut parts) => {
                parts.status = entry.status;
                parts.version = entry.version;
                self.insert(key, policy, &parts, entry.body.clone()).await;
                Some((parts, entry.body.clone()))
            }
            AfterResponse::Modified(..) => None,
        }
    }
}

fn same_variant(a: &Entry, b: &Entry) -> bool {
    let vary = |e: &Entry| e.headers.get(header::VARY).map(|v| v.as_bytes().to_vec());
    vary(a) == vary(b) && vary(a).is_none()
}

/// Sets `X-Cache`.
pub(crate) fn mark(headers: &mut HeaderMap, result: &'static str) {
    headers.insert(X_CACHE, HeaderValue::from_static(result));
}
