//! Command-line interface (names from `shared/API.md`); every `run` flag is also `WSGATE_<FLAG>`.

use clap::{Args, Parser, Subcommand, ValueEnum};
use ipnet::IpNet;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// wsgate: a WebSocket-first ingress controller and reverse proxy.
#[derive(Debug, Parser)]
#[command(name = "wsgate", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve: from YAML files (--config) or from the cluster (--kubernetes).
    Run(Box<RunArgs>),
    /// Validate manifests offline exactly as `run` would; exit 1 on errors.
    Check(CheckArgs),
    /// Print the CRD YAML.
    Crds,
}

/// `wsgate check` arguments.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// A YAML file or a directory of *.yaml / *.yml files.
    pub path: PathBuf,
    /// IngressClass whose Ingresses are checked.
    #[arg(long, env = "WSGATE_INGRESS_CLASS", default_value = "wsgate")]
    pub ingress_class: String,
    /// Port Ingress routes are served on.
    #[arg(long, env = "WSGATE_HTTP_PORT", default_value_t = 8080)]
    pub http_port: u16,
    /// Port Ingress TLS hosts are served on.
    #[arg(long, env = "WSGATE_HTTPS_PORT", default_value_t = 8443)]
    pub https_port: u16,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable text.
    Text,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| format!("{e}; expected e.g. 30s, 5m"))
}

fn parse_cidr(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("invalid CIDR {s:?}; expected e.g. 10.0.0.0/8"))
}

/// `wsgate run` arguments.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Standalone mode: a YAML file or a directory of *.yaml / *.yml files.
    #[arg(
        long,
        env = "WSGATE_CONFIG",
        conflicts_with = "kubernetes",
        required_unless_present = "kubernetes"
    )]
    pub config: Option<PathBuf>,
    /// Controller mode: read objects from the cluster.
    #[arg(long, env = "WSGATE_KUBERNETES")]
    pub kubernetes: bool,
    /// Port for Ingress HTTP routes.
    #[arg(long, env = "WSGATE_HTTP_PORT", default_value_t = 8080)]
    pub http_port: u16,
    /// Port for Ingress TLS hosts.
    #[arg(long, env = "WSGATE_HTTPS_PORT", default_value_t = 8443)]
    pub https_port: u16,
    /// Port of /metrics, /healthz, /readyz, /debug/routes.
    #[arg(long, env = "WSGATE_ADMIN_PORT", default_value_t = 9090)]
    pub admin_port: u16,
    /// Address every listener binds.
    #[arg(long, env = "WSGATE_BIND", default_value = "0.0.0.0")]
    pub bind: IpAddr,
    /// IngressClass to serve.
    #[arg(long, env = "WSGATE_INGRESS_CLASS", default_value = "wsgate")]
    pub ingress_class: String,
    /// Namespaces to watch (repeatable); all when absent.
    #[arg(long, env = "WSGATE_WATCH_NAMESPACE", value_delimiter = ',')]
    pub watch_namespace: Vec<String>,
    /// Service whose address goes into Ingress status (NS/NAME).
    #[arg(
        long,
        env = "WSGATE_PUBLISH_SERVICE",
        conflicts_with = "publish_address"
    )]
    pub publish_service: Option<String>,
    /// Address that goes into Ingress status.
    #[arg(long, env = "WSGATE_PUBLISH_ADDRESS")]
    pub publish_address: Option<String>,
    /// How long SIGTERM waits for sessions and requests to finish.
    #[arg(long, env = "WSGATE_SHUTDOWN_DRAIN", default_value = "30s", value_parser = parse_duration)]
    pub shutdown_drain: Duration,
    /// After SIGTERM, WebSocket sessions get their 1001 at random moments spread over this window
    /// instead of all at once, so clients do not reconnect in one burst; 0s = all at once. Must
    /// be shorter than --shutdown-drain.
    #[arg(long, env = "WSGATE_SHUTDOWN_CLOSE_SPREAD", default_value = "0s", value_parser = parse_duration)]
    pub shutdown_close_spread: Duration,
    /// Log format (default: text on a terminal, else json).
    #[arg(long, env = "WSGATE_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Log level or RUST_LOG-style filter.
    #[arg(long, env = "WSGATE_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// CIDRs whose X-Forwarded-For is believed (comma-separated).
    #[arg(long, env = "WSGATE_TRUSTED_PROXIES", value_delimiter = ',', value_parser = parse_cidr)]
    pub trusted_proxies: Vec<IpNet>,
    /// The whole request head must arrive within this time.
    #[arg(long, env = "WSGATE_HEADER_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub header_timeout: Duration,
    /// Largest request head; larger -> 431.
    #[arg(long, env = "WSGATE_MAX_HEADER_BYTES", default_value_t = 32768)]
    pub max_header_bytes: usize,
    /// Largest request body for non-WebSocket routes; 0 = unlimited; larger -> 413.
    #[arg(long, env = "WSGATE_MAX_BODY_BYTES", default_value_t = 0)]
    pub max_body_bytes: u64,
    /// Open connections per listener; 0 = derived from the open-file limit.
    #[arg(long, env = "WSGATE_MAX_CONNECTIONS", default_value_t = 0)]
    pub max_connections: u64,
    /// Memory bound of the HTTP response cache.
    #[arg(long, env = "WSGATE_CACHE_MAX_BYTES", default_value_t = 256 * 1024 * 1024)]
    pub cache_max_bytes: u64,
    /// Secret key of affinity cookie values, the same on every replica (set it through the
    /// environment from a Secret, not on the command line); empty = unkeyed.
    #[arg(
        long,
        env = "WSGATE_AFFINITY_KEY",
        hide_env_values = true,
        default_value = ""
    )]
    pub affinity_key: SecretArg,
}

/// A flag value that is a secret: `Debug` does not print it.
#[derive(Clone, Default)]
pub struct SecretArg(pub String);

impl std::fmt::Debug for SecretArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl std::str::FromStr for SecretArg {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(SecretArg(s.to_string()))
    }
}

impl RunArgs {
    /// Flags accepted for the contract but not acted on yet, when set to a non-default value.
    pub fn not_yet_enforced(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if !self.kubernetes && !self.watch_namespace.is_empty() {
            out.push("--watch-namespace (controller mode only)");
        }
        if !self.kubernetes && (self.publish_service.is_some() || self.publish_address.is_some()) {
            out.push("--publish-service/--publish-address (controller mode only)");
        }
        out
    }
}
