//! Leader election over a `coordination.k8s.io/v1` Lease: only the holder writes status and Events.
//!
//! The algorithm is client-go's: a candidate takes the Lease when it is free or when its record
//! has not changed for `leaseDurationSeconds` *as observed locally* (so clocks need not agree);
//! the holder renews every `retry_period` and steps down when it could not renew for
//! `renew_deadline`. Writes use the Lease's `resourceVersion` (update, not patch), so two
//! candidates can never both win the same round. Every replica serves traffic regardless.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::{Api, Client};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Where the Lease is and who we are.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    /// Namespace of the Lease (the pod's namespace).
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// This replica's identity (the pod name).
    pub identity: String,
    /// How long a Lease whose record does not change stays with its holder.
    pub lease_duration: Duration,
    /// How long the holder keeps acting as leader without a successful renewal.
    pub renew_deadline: Duration,
    /// Pause between attempts.
    pub retry_period: Duration,
}

impl LeaseConfig {
    /// client-go's defaults: 15 s lease, 10 s renew deadline, 2 s retry period.
    pub fn new(namespace: String, name: String, identity: String) -> Self {
        Self {
            namespace,
            name,
            identity,
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// Why one attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API request failed.
    #[error("Lease {namespace}/{name}: {source}")]
    Api {
        /// Lease namespace.
        namespace: String,
        /// Lease name.
        name: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
}

/// This replica's standing in the election.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Leadership {
    /// Holds the Lease now (may write status and Events).
    pub leader: bool,
    /// Incremented each time this replica acquires the Lease from another holder or a free
    /// Lease; renewing its own Lease after a pause (e.g. an API server outage) keeps the term.
    pub term: u64,
}

/// The running election.
pub struct LeaderElection {
    leader: watch::Receiver<Leadership>,
    task: JoinHandle<()>,
    api: Api<Lease>,
    config: LeaseConfig,
}

impl LeaderElection {
    /// Starts campaigning in the background. `reachable` is fired when a request succeeds after
    /// failures (the API server is back), so that other clients can stop backing off.
    pub fn start(client: Client, config: LeaseConfig, reachable: Arc<Notify>) -> Self {
        let api: Api<Lease> = Api::namespaced(client, &config.namespace);
        let (tx, rx) = watch::channel(Leadership::default());
        let task = tokio::spawn(campaign(api.clone(), config.clone(), tx, reachable));
        Self {
            leader: rx,
            task,
            api,
            config,
        }
    }

    /// This replica's standing, updated as it changes.
    pub fn subscribe(&self) -> watch::Receiver<Leadership> {
        self.leader.clone()
    }

    /// Whether this replica holds the Lease now.
    pub fn is_leader(&self) -> bool {
        self.leader.borrow().leader
    }

    /// Stops campaigning and, if we hold the Lease, gives it up so another replica takes over at
    /// once instead of after `lease_duration`. Best effort, bounded by `timeout`.
    pub async fn release(self, timeout: Duration) {
        self.task.abort();
        let held = self.leader.borrow().leader;
        if !held {
            return;
        }
        match tokio::time::timeout(timeout, release(&self.api, &self.config)).await {
            Ok(Ok(())) => tracing::info!(lease = %self.config.name, "leadership released"),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "could not release the Lease; another replica takes over when it expires")
            }
            Err(_) => tracing::warn!(
                "releasing the Lease timed out; another replica takes over when it expires"
            ),
        }
    }
}

fn now() -> MicroTime {
    MicroTime(Timestamp::now())
}

fn seconds(d: Duration) -> i32 {
    i32::try_from(d.as_secs().max(1)).unwrap_or(i32::MAX)
}

/// What we last saw of the Lease and when (local monotonic time).
struct Observed {
    spec: Option<LeaseSpec>,
    at: Instant,
}

/// Outcome of one attempt.
#[derive(Debug, PartialEq, Eq)]
enum Attempt {
    /// We hold the Lease; `acquired` when it was not ours before this attempt.
    Holding {
        /// Taken from another holder, or created / taken while free.
        acquired: bool,
    },
    /// Someone else holds it (identity, when known).
    Held(Option<String>),
}

async fn campaign(
    api: Api<Lease>,
    config: LeaseConfig,
    tx: watch::Sender<Leadership>,
    reachable: Arc<Notify>,
) {
    let mut observed = Observed {
        spec: None,
        at: Instant::now(),
    };
    let mut last_renewal: Option<Instant> = None;
    let mut last_holder: Option<String> = None;
    let mut failing = false;
    loop {
        let attempt = try_acquire_or_renew(&api, &config, &mut observed).await;
        if failing && attempt.is_ok() {
            tracing::info!("leader election: the API server is reachable again");
            reachable.notify_waiters();
        }
        match attempt {
            Ok(Attempt::Holding { acquired }) => {
                failing = false;
                last_renewal = Some(Instant::now());
                let mut now = *tx.borrow();
                if acquired {
                    now.term += 1;
                }
                if !now.leader || acquired {
                    tracing::info!(
                        lease = %format!("{}/{}", config.namespace, config.name),
                        identity = %config.identity,
                        "became leader: this replica writes status and Events"
                    );
                    now.leader = true;
                    tx.send_replace(now);
                    last_holder = None;
                }
            }
            Ok(Attempt::Held(holder)) => {
                failing = false;
                if tx.borrow().leader {
                    tracing::warn!(holder = ?holder, "lost leadership to another replica");
                    tx.send_modify(|l| l.leader = false);
                }
                if holder != last_holder {
                    tracing::info!(holder = ?holder, "another replica is leader");
                    last_holder = holder;
                }
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "leader election: cannot read or renew the Lease; retrying");
                    failing = true;
                }
                let expired = last_renewal.is_none_or(|t| t.elapsed() >= config.renew_deadline);
                if tx.borrow().leader && expired {
                    tracing::warn!(
                        "stepping down: the Lease could not be renewed within the renew deadline"
                    );
                    tx.send_modify(|l| l.leader = false);
                }
            }
        }
        if tx.is_closed() {
            return;
        }
        tokio::time::sleep(config.retry_period).await;
    }
}

fn api_error(config: &LeaseConfig, source: kube::Error) -> Error {
    Error::Api {
        namespace: config.namespace.clone(),
        name: config.name.clone(),
        source,
    }
}

fn is_status(e: &kube::Error, check: fn(&kube::core::Status) -> bool) -> bool {
    matches!(e, kube::Error::Api(s) if check(s))
}

async fn try_acquire_or_renew(
    api: &Api<Lease>,
    config: &LeaseConfig,
    observed: &mut Observed,
) -> Result<Attempt, Error> {
    let Some(mut lease) = api
        .get_opt(&config.name)
        .await
        .map_err(|e| api_error(config, e))?
    else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(config.name.clone()),
                namespace: Some(config.namespace.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(config.identity.clone()),
                lease_duration_seconds: Some(seconds(config.lease_duration)),
                acquire_time: Some(now()),
                renew_time: Some(now()),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(created) => {
                observed.spec = created.spec;
                observed.at = Instant::now();
                Ok(Attempt::Holding { acquired: true })
            }
            // Another candidate created it first; look again next round.
            Err(e) if is_status(&e, kube::core::Status::is_already_exists) => {
                Ok(Attempt::Held(None))
            }
            Err(e) => Err(api_error(config, e)),
        };
    };
    let spec = lease.spec.clone().unwrap_or_default();
    if observed.spec.as_ref() != Some(&spec) {
        observed.spec = Some(spec.clone());
        observed.at = Instant::now();
    }
    let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
    let ours = holder.as_deref() == Some(config.identity.as_str());
    let duration = spec
        .lease_duration_seconds
        .and_then(|s| u64::try_from(s).ok())
        .map(Duration::from_secs)
        .unwrap_or(config.lease_duration);
    let expired = observed.at.elapsed() >= duration;
    if holder.is_some() && !ours && !expired {
        return Ok(Attempt::Held(holder));
    }
    let mut next = spec.clone();
    if !ours {
        next.holder_identity = Some(config.identity.clone());
        next.acquire_time = Some(now());
        next.lease_transitions = Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
    }
    next.renew_time = Some(now());
    next.lease_duration_seconds = Some(seconds(config.lease_duration));
    lease.spec = Some(next);
    // `replace` carries the resourceVersion we read: a concurrent writer makes this a conflict.
    match api
        .replace(&config.name, &PostParams::default(), &lease)
        .await
    {
        Ok(updated) => {
            if !ours {
                tracing::info!(previous = ?holder, "acquired the Lease");
            }
            observed.spec = updated.spec;
            observed.at = Instant::now();
            Ok(Attempt::Holding { acquired: !ours })
        }
        Err(e) if is_status(&e, kube::core::Status::is_conflict) => Ok(Attempt::Held(holder)),
        Err(e) => Err(api_error(config, e)),
    }
}

async fn release(api: &Api<Lease>, config: &LeaseConfig) -> Result<(), Error> {
    let Some(mut lease) = api
        .get_opt(&config.name)
        .await
        .map_err(|e| api_error(config, e))?
    else {
        return Ok(());
    };
    let mut spec = lease.spec.clone().unwrap_or_default();
    if spec.holder_identity.as_deref() != Some(config.identity.as_str()) {
        return Ok(());
    }
    // client-go's ReleaseOnCancel: no holder, a 1 s duration, so candidates take it at once.
    spec.holder_identity = None;
    spec.lease_duration_seconds = Some(1);
    spec.renew_time = Some(now());
    lease.spec = Some(spec);
    api.replace(&config.name, &PostParams::default(), &lease)
        .await
        .map(|_| ())
        .map_err(|e| api_error(config, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_client_go() {
        let c = LeaseConfig::new("ns".into(), "l".into(), "me".into());
        assert_eq!(c.lease_duration, Duration::from_secs(15));
        assert!(c.renew_deadline < c.lease_duration);
        assert!(c.retry_period < c.renew_deadline);
        assert_eq!(seconds(Duration::from_millis(10)), 1);
    }
}
