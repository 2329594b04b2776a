//! Standalone mode wiring: load files -> translate -> apply, then reload on change and drain on
//! SIGTERM/SIGINT.

use crate::metrics::Metrics;
use crate::proxy::{BindError, Proxy, ProxySettings};
use crate::source::files;
use crate::source::watch;
use crate::translate::{self, Options, Severity, Translated};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Settings of `wsgate run --config`.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// The YAML file or directory.
    pub config: PathBuf,
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

/// Loads and translates; `Err` holds every error line when the configuration must not be applied.
pub fn load_and_translate(cfg: &RunConfig) -> Result<Translated, Vec<String>> {
    let loaded = files::load(&cfg.config);
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    let mut errors: Vec<String> = loaded
        .errors
        .iter()
        .map(|e| format!("error: {e}"))
        .collect();
    if !errors.is_empty() {
        return Err(errors);
    }
    let t = translate::translate(&loaded.snapshot, &cfg.options);
    for d in t
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Warning)
    {
        tracing::warn!(object = %d.object, field = %d.field, "{}", d.message);
    }
    errors.extend(
        t.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .map(|d| d.to_string()),
    );
    if errors.is_empty() {
        Ok(t)
    } else {
        Err(errors)
    }
}

/// A running standalone server.
pub struct Server {
    proxy: Proxy,
    admin: SocketAddr,
    cfg: RunConfig,
    _watcher: watch::FileWatcher,
}

impl Server {
    /// Loads the configuration, opens listeners and the admin port, and starts watching files.
    pub async fn start(cfg: RunConfig, metrics: Metrics) -> Result<Self, StartError> {
        let proxy = Proxy::new(cfg.proxy.clone(), metrics);
        let translated = load_and_translate(&cfg).map_err(|e| StartError::Invalid(e.join("\n")))?;
        let errors = proxy.apply(translated.table).await;
        if !errors.is_empty() {
            let text: Vec<String> = errors.iter().map(BindError::to_string).collect();
            return Err(StartError::Bind(text.join("\n")));
        }
        proxy
            .metrics()
            .config_reloads
            .with_label_values(&["ok"])
            .inc();
        let admin_addr = SocketAddr::new(cfg.proxy.bind, cfg.admin_port);
        let admin = crate::admin::serve(admin_addr, proxy.clone())
            .await
            .map_err(|e| {
                StartError::Bind(format!(
                    "cannot listen on admin port {}: {e}",
                    cfg.admin_port
                ))
            })?;
        let (watcher, mut ticks) = watch::watch(&cfg.config).map_err(|e| StartError::Watch {
            path: cfg.config.display().to_string(),
            message: e.to_string(),
        })?;
        let reload_proxy = proxy.clone();
        let reload_cfg = cfg.clone();
        tokio::spawn(async move {
            while ticks.recv().await.is_some() {
                reload(&reload_proxy, &reload_cfg).await;
            }
        });
        tracing::info!(config = %cfg.config.display(), admin = %admin, "wsgate is serving");
        Ok(Self {
            proxy,
            admin,
            cfg,
            _watcher: watcher,
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

async fn reload(proxy: &Proxy, cfg: &RunConfig) {
    let counter = &proxy.metrics().config_reloads;
    match load_and_translate(cfg) {
        Ok(t) => {
            if *proxy.table() == t.table {
                counter.with_label_values(&["ok"]).inc();
                tracing::debug!("configuration changed on disk; routing table unchanged");
                return;
            }
            let errors = proxy.apply(t.table).await;
            for e in &errors {
                tracing::error!("{e}");
            }
            let result = if errors.is_empty() { "ok" } else { "error" };
            counter.with_label_values(&[result]).inc();
            tracing::info!(result, "configuration reloaded");
        }
        Err(errors) => {
            counter.with_label_values(&["error"]).inc();
            for e in &errors {
                tracing::error!("{e}");
            }
            tracing::error!(
                errors = errors.len(),
                "configuration rejected; the last good routing table keeps serving"
            );
        }
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
