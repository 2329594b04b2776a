//! Controller mode (`wsgate run --kubernetes`): cluster reflectors -> the same `Snapshot` ->
//! `translate()` -> `Proxy::apply()` path as standalone mode, plus status, Events and leader
//! election.
//!
//! Differences from standalone mode, on purpose:
//! - A translation error never blocks the rest of the cluster's configuration: the bad object (or
//!   part of it) is already left out by `translate()`, the table is applied, and the error goes to
//!   the object's status / a Warning Event.
//! - `/readyz` turns 200 only after every reflector finished its first complete list, because the
//!   first `apply` happens only then.
//! - When the API server goes away, the stores keep their contents, so the last table keeps
//!   serving; the watchers retry with back-off and re-list when it returns.

pub mod gateway_services;
pub mod leader;
pub mod reflect;
pub mod status;

pub use crate::cli::{Publish, PublishError};

use crate::app::RunConfig;
use crate::metrics::Metrics;
use crate::proxy::Proxy;
use crate::reconcile::{OnError, Reconciler};
use reflect::{Cluster, ClusterView};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// How often a replica that is still waiting for its first complete list says so.
const SYNC_REPORT: Duration = Duration::from_secs(10);

/// Settings of `wsgate run --kubernetes`.
#[derive(Clone, Debug)]
pub struct ControllerConfig {
    /// The settings both modes share.
    pub run: RunConfig,
    /// `--watch-namespace` (all namespaces when empty).
    pub watch_namespaces: Vec<String>,
    /// `--publish-service` / `--publish-address`.
    pub publish: Publish,
    /// Lease holder identity; `None` = `$POD_NAME`, else `HOSTNAME-PID`.
    pub identity: Option<String>,
    /// `--gateway-services`: a Service per Gateway API Gateway, when on.
    pub gateway_services: Option<gateway_services::GatewayServices>,
    /// Namespace of the leader-election Lease; `None` = `$POD_NAMESPACE`, else the in-cluster
    /// service-account namespace, else the kubeconfig's namespace.
    pub lease_namespace: Option<String>,
}

/// Why controller mode cannot start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Neither in-cluster configuration nor a usable kubeconfig.
    #[error(
        "cannot load the Kubernetes client configuration (in-cluster service account or KUBECONFIG / ~/.kube/config): {0}"
    )]
    Config(String),
    /// The client could not be built from the configuration.
    #[error("cannot create the Kubernetes client: {0}")]
    Client(String),
    /// A `--watch-namespace` value is not a namespace name.
    #[error("--watch-namespace {0:?}: not a valid namespace name (lower-case DNS label)")]
    Namespace(String),
    /// The admin port could not be opened.
    #[error("cannot listen on admin port {port}: {message}")]
    Admin {
        /// The port.
        port: u16,
        /// Why.
        message: String,
    },
}

/// One rebuild of the reconcile loop over the cluster.
pub type Build = crate::reconcile::Build<ClusterView>;

/// The name of the leader-election Lease for an IngressClass (so that installations serving
/// different classes in one namespace elect separately).
pub fn lease_name(ingress_class: &str) -> String {
    format!("wsgate-leader-{ingress_class}")
}

fn hostname() -> Option<String> {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
}

/// This replica's identity: the configured one, `$POD_NAME`, or `HOSTNAME-PID` outside a pod
/// (unique per process, so two local processes never share a Lease identity).
pub fn resolve_identity(configured: Option<&str>) -> String {
    configured
        .map(str::to_string)
        .or_else(|| std::env::var("POD_NAME").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| {
            format!(
                "{}-{}",
                hostname().unwrap_or_else(|| "wsgate".into()),
                std::process::id()
            )
        })
}

const SERVICE_ACCOUNT_NAMESPACE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/// The Lease namespace: configured, `$POD_NAMESPACE`, the in-cluster service-account namespace,
/// else the client's default namespace (the kubeconfig context's, or `default`).
pub fn resolve_lease_namespace(configured: Option<&str>, client_default: &str) -> String {
    configured
        .map(str::to_string)
        .or_else(|| {
            std::env::var("POD_NAMESPACE")
                .ok()
                .filter(|s| !s.is_empty())
        })
        .or_else(|| {
            std::fs::read_to_string(SERVICE_ACCOUNT_NAMESPACE)
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        })
        .unwrap_or_else(|| client_default.to_string())
}

/// A running controller.
pub struct Controller {
    proxy: Proxy,
    admin: SocketAddr,
    election: leader::LeaderElection,
    shutdown_drain: Duration,
    builds: watch::Receiver<Option<Arc<Build>>>,
}

impl Controller {
    /// Connects to the cluster, opens the admin port, starts the reflectors, the rebuild loop,
    /// leader election and the status writer. Returns at once: `/readyz` turns 200 after the
    /// first complete sync.
    pub async fn start(cfg: ControllerConfig, metrics: Metrics) -> Result<Self, Error> {
        let run = &cfg.run;
        for ns in &cfg.watch_namespaces {
            if !crate::names::is_dns_label(ns) {
                return Err(Error::Namespace(ns.clone()));
            }
        }
        let kube_config = kube::Config::infer()
            .await
            .map_err(|e| Error::Config(e.to_string()))?;
        let client =
            kube::Client::try_from(kube_config).map_err(|e| Error::Client(e.to_string()))?;

        let proxy = Proxy::new(run.proxy.clone(), metrics);
        let admin_addr = SocketAddr::new(run.proxy.bind, run.admin_port);
        let admin = crate::admin::serve(admin_addr, proxy.clone())
            .await
            .map_err(|e| Error::Admin {
                port: run.admin_port,
                message: e.to_string(),
            })?;

        let identity = resolve_identity(cfg.identity.as_deref());
        let lease_ns =
            resolve_lease_namespace(cfg.lease_namespace.as_deref(), client.default_namespace());
        let optional = reflect::OptionalKinds::discover(&client).await;
        tracing::info!(?optional, "optional kinds served by the API server");
        // The Gateways' Services live in wsgate's own namespace (where its pods are).
        let gateway_services = cfg.gateway_services.clone().map(|mut g| {
            g.namespace = lease_ns.clone();
            g
        });
        let mut cluster = Cluster::start(
            &client,
            &cfg.watch_namespaces,
            cfg.publish.service(),
            &optional,
            gateway_services.as_ref().map(|g| g.namespace.as_str()),
        );
        let reachable = cluster.reachable();
        let (builds_tx, builds) = watch::channel(None);
        let rebuild_proxy = proxy.clone();
        let options = run.options.clone();
        tokio::spawn(async move {
            if !cluster.wait_synced(SYNC_REPORT).await {
                tracing::error!("a reflector stopped before its first list; not serving");
                return;
            }
            tracing::info!("initial sync of every watched kind complete");
            Reconciler::new(cluster, rebuild_proxy, options, OnError::ApplyRest)
                .run(false, builds_tx)
                .await;
        });

        let election = leader::LeaderElection::start(
            client.clone(),
            leader::LeaseConfig::new(
                lease_ns.clone(),
                lease_name(&run.options.ingress_class),
                identity.clone(),
            ),
            reachable,
        );
        let feedback = status::Feedback::new(
            client,
            run.options.clone(),
            cfg.publish.clone(),
            identity.clone(),
        )
        .with_gateway_services(gateway_services);
        tokio::spawn(feedback_loop(
            feedback,
            builds.clone(),
            election.subscribe(),
        ));

        tracing::info!(
            admin = %admin,
            identity = %identity,
            lease = %format!("{lease_ns}/{}", lease_name(&run.options.ingress_class)),
            namespaces = ?cfg.watch_namespaces,
            "wsgate controller started; waiting for the first complete sync"
        );
        Ok(Self {
            proxy,
            admin,
            election,
            shutdown_drain: run.shutdown_drain,
            builds,
        })
    }

    /// The proxy handle.
    pub fn proxy(&self) -> &Proxy {
        &self.proxy
    }

    /// Where the admin endpoints listen.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
    }

    /// Whether this replica holds the Lease now.
    pub fn is_leader(&self) -> bool {
        self.election.is_leader()
    }

    /// The latest rebuild, once the first sync is complete.
    pub fn latest(&self) -> Option<Arc<Build>> {
        self.builds.borrow().clone()
    }

    /// Serves until SIGTERM or SIGINT, then gives up the Lease and drains.
    pub async fn run_until_signal(self) {
        crate::app::wait_for_signal().await;
        tracing::info!(drain = ?self.shutdown_drain, "shutting down: releasing leadership, draining");
        self.election.release(Duration::from_secs(2)).await;
        self.proxy.drain(self.shutdown_drain).await;
        tracing::info!("drained; exiting");
    }
}

/// Retry delays of failed status writes: 1 s doubling up to 30 s.
fn retry_delay(failures: u32) -> Duration {
    Duration::from_secs(1u64 << failures.min(5)).min(Duration::from_secs(30))
}

async fn feedback_loop(
    mut feedback: status::Feedback,
    mut builds: watch::Receiver<Option<Arc<Build>>>,
    mut leader: watch::Receiver<leader::Leadership>,
) {
    let mut failures = 0u32;
    let mut retry_at: Option<Instant> = None;
    let mut term = 0u64;
    loop {
        let standing = *leader.borrow_and_update();
        let build = builds.borrow_and_update().clone();
        // A new term may follow another replica's: report every current problem again once.
        if standing.term != term {
            term = standing.term;
            feedback.reset();
        }
        if !standing.leader {
            retry_at = None;
        } else if let Some(build) = build {
            if feedback.pass(&build).await {
                failures = 0;
                retry_at = None;
            } else {
                retry_at = Some(Instant::now() + retry_delay(failures));
                failures = failures.saturating_add(1);
            }
        }
        tokio::select! {
            r = builds.changed() => if r.is_err() { return },
            r = leader.changed() => if r.is_err() { return },
            _ = async {
                match retry_at {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_and_namespace_fallbacks() {
        assert_eq!(resolve_identity(Some("pod-1")), "pod-1");
        assert!(!resolve_identity(None).is_empty());
        assert_eq!(resolve_lease_namespace(Some("ops"), "default"), "ops");
    }

    #[test]
    fn retry_delays_are_capped() {
        assert_eq!(retry_delay(0), Duration::from_secs(1));
        assert_eq!(retry_delay(3), Duration::from_secs(8));
        assert_eq!(retry_delay(50), Duration::from_secs(30));
    }
}
