//! Standalone mode wiring: the reconcile loop over the file source, the admin port, and drain on
//! SIGTERM/SIGINT; plus the run settings both modes share.

use crate::metrics::Metrics;
use crate::proxy::{BindError, Proxy, ProxySettings};
use crate::reconcile::files::FileSource;
use crate::reconcile::{OnError, Reconciler};
use crate::translate::Options;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The settings both modes share (from the `wsgate run` flags).
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// Translation options (class, ports).
    pub options: Options,
    /// Data plane settings.
    pub proxy: ProxySettings,
    /// `--admin-port`.
    pub admin_port: u16,
    /// `--shutdown-drain`.
    pub shutdown_drain: Duration,
}

/// Why standalone mode cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration has errors; nothing was served.
    #[error("the configuration has errors; nothing is served:\n{0}")]
    Invalid(String),
    /// A listener could not be opened.
    #[error("{0}")]
    Bind(String),
    /// The file watcher could not start.
    #[error("cannot watch {path}: {message}")]
    Watch {
        /// The path.
        path: String,
        /// Why.
        message: String,
    },
}

/// How long listeners keep accepting after SIGTERM while readiness is already false: a sixth of
/// `--shutdown-drain`, at most 5 s (load balancers need a moment to see the readiness change).
pub fn drain_accept_delay(shutdown_drain: Duration) -> Duration {
    (shutdown_drain / 6).min(Duration::from_secs(5))
}

/// A running standalone server.
pub struct Server {
    proxy: Proxy,
    admin: SocketAddr,
    cfg: RunConfig,
    reload: tokio::task::AbortHandle,
}

impl Server {
    /// Loads the configuration at `config` (a YAML file or directory), opens listeners and the
    /// admin port, and starts the reconcile loop on file changes.
    pub async fn start(
        config: PathBuf,
        cfg: RunConfig,
        metrics: Metrics,
    ) -> Result<Self, StartError> {
        let proxy = Proxy::new(cfg.proxy.clone(), metrics);
        // Watch before the first read, so that a change made while it runs is not missed.
        let source = FileSource::watch(&config).map_err(|e| StartError::Watch {
            path: config.display().to_string(),
            message: e.to_string(),
        })?;
        let mut reconciler = Reconciler::new(
            source,
            proxy.clone(),
            cfg.options.clone(),
            OnError::KeepLastGood,
        );
        let first = reconciler
            .pass()
            .await
            .ok_or_else(|| StartError::Invalid("the configuration could not be read".into()))?;
        if !first.rejected.is_empty() {
            return Err(StartError::Invalid(first.rejected.join("\n")));
        }
        if !first.bind_errors.is_empty() {
            let text: Vec<String> = first.bind_errors.iter().map(BindError::to_string).collect();
            return Err(StartError::Bind(text.join("\n")));
        }
        let admin_addr = SocketAddr::new(cfg.proxy.bind, cfg.admin_port);
        let admin = crate::admin::serve(admin_addr, proxy.clone())
            .await
            .map_err(|e| {
                StartError::Bind(format!(
                    "cannot listen on admin port {}: {e}",
                    cfg.admin_port
                ))
            })?;
        // Nobody reads standalone builds; the receiver is kept inside the loop's task.
        let (builds, keep) = tokio::sync::watch::channel(None);
        let reload = tokio::spawn(async move {
            let _keep = keep;
            reconciler.run(true, builds).await;
        })
        .abort_handle();
        tracing::info!(config = %config.display(), admin = %admin, "wsgate is serving");
        Ok(Self {
            proxy,
            admin,
            cfg,
            reload,
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

    /// Address bound for a configured listener port.
    pub fn listener_addr(&self, port: u16) -> Option<SocketAddr> {
        self.proxy
            .bound_ports()
            .into_iter()
            .find(|(p, _)| *p == port)
            .map(|(_, a)| a)
    }

    /// Serves until SIGTERM or SIGINT, then drains.
    pub async fn run_until_signal(self) {
        wait_for_signal().await;
        tracing::info!(drain = ?self.cfg.shutdown_drain, "shutting down: draining");
        self.proxy.drain(self.cfg.shutdown_drain).await;
        tracing::info!("drained; exiting");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // The loop holds the file watcher and a proxy handle; it ends with the server.
        self.reload.abort();
    }
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C elsewhere).
pub(crate) async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
