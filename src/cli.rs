//! Command-line interface (names from `shared/API.md`); every `run` flag is also `WSGATE_<FLAG>`.

use crate::app::RunConfig;
use crate::controller::gateway_services::{GatewayServices, ServiceType};
use crate::names::{is_dns_label, is_dns_subdomain};
use crate::proxy::{Http2Settings, ProxySettings};
use crate::translate::Options;
use crate::translate::gateway_ports::{GatewayPorts, PortRange};
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
    /// Print the CRD YAML of wsgate's own kinds (all, or the one named).
    Crds(CrdsArgs),
}

/// `wsgate crds` arguments.
#[derive(Debug, Args)]
pub struct CrdsArgs {
    /// `gateways` or `websocketpolicies`; all when absent.
    #[arg(value_parser = ["gateways", "websocketpolicies"])]
    pub which: Option<String>,
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
    /// Serve only this GatewayClass; all of controller wsgate.dev/gateway-controller when absent.
    #[arg(long, env = "WSGATE_GATEWAY_CLASS")]
    pub gateway_class: Option<String>,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable text.
    Text,
}

/// A duration flag, bounded like every configured duration (30 days), so no timer arithmetic
/// on it can overflow.
fn parse_duration(s: &str) -> Result<Duration, String> {
    crate::ir::parse_bounded(s)
}

fn parse_cidr(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("invalid CIDR {s:?}; expected e.g. 10.0.0.0/8"))
}

/// A `KEY=VALUE` Kubernetes label (key: optional DNS-subdomain prefix and `/`, then a name of
/// at most 63 characters; value: at most 63 characters; both alphanumerics, `-`, `_`, `.`, and
/// starting and ending alphanumeric).
fn parse_label(s: &str) -> Result<(String, String), String> {
    fn part_ok(p: &str) -> bool {
        p.len() <= 63
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            && p.bytes().next().is_none_or(|b| b.is_ascii_alphanumeric())
            && p.bytes().last().is_none_or(|b| b.is_ascii_alphanumeric())
    }
    let (key, value) = s
        .trim()
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected KEY=VALUE"))?;
    let name = match key.rsplit_once('/') {
        Some((prefix, name)) if is_dns_subdomain(prefix) => name,
        Some(_) => {
            return Err(format!(
                "{key:?}: the prefix before '/' must be a DNS subdomain"
            ));
        }
        None => key,
    };
    if name.is_empty() || !part_ok(name) {
        return Err(format!("{key:?}: not a valid label key"));
    }
    if !part_ok(value) {
        return Err(format!("{value:?}: not a valid label value"));
    }
    Ok((key.to_string(), value.to_string()))
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
    /// Serve only this GatewayClass (of controller wsgate.dev/gateway-controller); all when absent.
    #[arg(long, env = "WSGATE_GATEWAY_CLASS")]
    pub gateway_class: Option<String>,
    /// Controller mode: give every Gateway API Gateway its own Service (in wsgate's namespace,
    /// labelled with the Gateway) whose address goes into the Gateway's status, and serve its
    /// listeners on per-Gateway ports of the pods (see --gateway-port-range).
    #[arg(long, env = "WSGATE_GATEWAY_SERVICES", requires_all = ["kubernetes", "gateway_service_selector"])]
    pub gateway_services: bool,
    /// Pod ports Gateway listeners are mapped onto with --gateway-services (FIRST-LAST).
    #[arg(long, env = "WSGATE_GATEWAY_PORT_RANGE", default_value_t = PortRange::DEFAULT)]
    pub gateway_port_range: PortRange,
    /// Labels of the wsgate pods (KEY=VALUE, comma-separated): the selector of the Gateways'
    /// Services.
    #[arg(long, env = "WSGATE_GATEWAY_SERVICE_SELECTOR", value_delimiter = ',', value_parser = parse_label)]
    pub gateway_service_selector: Vec<(String, String)>,
    /// `spec.type` of the Gateways' Services.
    #[arg(long, env = "WSGATE_GATEWAY_SERVICE_TYPE", value_enum, default_value_t = ServiceType::ClusterIP)]
    pub gateway_service_type: ServiceType,
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
    /// A write to a client that makes no progress for this long closes its connection (a client
    /// that stopped reading a response); `0` = off. Connections carrying a WebSocket session are
    /// exempt: sessions have their own liveness rules.
    #[arg(long, env = "WSGATE_SEND_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub send_timeout: Duration,
    /// Largest request head; larger -> 431.
    #[arg(long, env = "WSGATE_MAX_HEADER_BYTES", default_value_t = 32768)]
    pub max_header_bytes: usize,
    /// Largest request body for non-WebSocket routes; 0 = unlimited; larger -> 413.
    #[arg(long, env = "WSGATE_MAX_BODY_BYTES", default_value_t = 0)]
    pub max_body_bytes: u64,
    /// Worker threads that accept and serve connections, each with its own single-threaded
    /// runtime and its own socket per listener port (`SO_REUSEPORT`); 0 = one per CPU available
    /// to the process.
    #[arg(long, env = "WSGATE_WORKERS", default_value_t = 0)]
    pub workers: usize,
    /// Open connections per listener; 0 = derived from the open-file limit.
    #[arg(long, env = "WSGATE_MAX_CONNECTIONS", default_value_t = 0)]
    pub max_connections: u64,
    /// Memory bound of the HTTP response cache.
    #[arg(long, env = "WSGATE_CACHE_MAX_BYTES", default_value_t = 256 * 1024 * 1024)]
    pub cache_max_bytes: u64,
    /// Forward request header names containing `_` (by default they are dropped, as nginx does).
    #[arg(long, env = "WSGATE_ALLOW_UNDERSCORE_HEADERS")]
    pub allow_underscore_headers: bool,
    /// Largest share of a pool's endpoints passive health may eject at once, in percent (at
    /// least one endpoint always stays).
    #[arg(long, env = "WSGATE_MAX_EJECTION_PERCENT", default_value_t = 50,
          value_parser = clap::value_parser!(u8).range(0..=100))]
    pub max_ejection_percent: u8,
    /// Offer HTTP/2 by ALPN (`h2`) on HTTPS listeners, WebSockets over HTTP/2 (RFC 8441)
    /// included; `--http2=false` offers only http/1.1.
    #[arg(long, env = "WSGATE_HTTP2", default_value_t = true, num_args = 0..=1,
          default_missing_value = "true", action = clap::ArgAction::Set)]
    pub http2: bool,
    /// Accept HTTP/2 with prior knowledge (h2c) on HTTP listeners, next to HTTP/1.1.
    #[arg(long, env = "WSGATE_HTTP2_CLEARTEXT", default_value_t = false, num_args = 0..=1,
          default_missing_value = "true", action = clap::ArgAction::Set)]
    pub http2_cleartext: bool,
    /// HTTP/2 streams open at once per connection (each WebSocket over HTTP/2 holds one).
    #[arg(long, env = "WSGATE_HTTP2_MAX_CONCURRENT_STREAMS", default_value_t = 128,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub http2_max_concurrent_streams: u32,
    /// HTTP/2 flow-control window per stream, bytes: what a client may send on one stream
    /// before wsgate passed it on.
    #[arg(long, env = "WSGATE_HTTP2_INITIAL_STREAM_WINDOW", default_value_t = 256 * 1024,
          value_parser = clap::value_parser!(u32).range(65_535..=2_147_483_647))]
    pub http2_initial_stream_window: u32,
    /// HTTP/2 flow-control window per connection, bytes (all its streams together).
    #[arg(long, env = "WSGATE_HTTP2_INITIAL_CONNECTION_WINDOW", default_value_t = 1024 * 1024,
          value_parser = clap::value_parser!(u32).range(65_535..=2_147_483_647))]
    pub http2_initial_connection_window: u32,
    /// Largest HTTP/2 frame payload wsgate accepts, bytes.
    #[arg(long, env = "WSGATE_HTTP2_MAX_FRAME_SIZE", default_value_t = 16_384,
          value_parser = clap::value_parser!(u32).range(16_384..=16_777_215))]
    pub http2_max_frame_size: u32,
    /// Streams a client may open and cancel before wsgate accepted them; more -> GOAWAY
    /// (rapid reset, CVE-2023-44487).
    #[arg(
        long,
        env = "WSGATE_HTTP2_MAX_PENDING_RESET_STREAMS",
        default_value_t = 20
    )]
    pub http2_max_pending_reset_streams: usize,
    /// Streams wsgate may reset for a client's protocol errors; more -> GOAWAY (CVE-2025-8671).
    #[arg(
        long,
        env = "WSGATE_HTTP2_MAX_LOCAL_ERROR_RESETS",
        default_value_t = 100
    )]
    pub http2_max_local_error_resets: usize,
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

impl RunArgs {
    /// The settings both modes share, from these flags.
    pub fn run_config(&self) -> RunConfig {
        RunConfig {
            options: Options {
                ingress_class: self.ingress_class.clone(),
                http_port: self.http_port,
                https_port: self.https_port,
                gateway_class: self.gateway_class.clone(),
                gateway_ports: self.gateway_ports(),
            },
            proxy: ProxySettings {
                bind: self.bind,
                trusted_proxies: self.trusted_proxies.clone(),
                header_timeout: self.header_timeout,
                send_timeout: Some(self.send_timeout).filter(|t| !t.is_zero()),
                max_header_bytes: self.max_header_bytes,
                max_body_bytes: self.max_body_bytes,
                cache_max_bytes: self.cache_max_bytes,
                max_connections: usize::try_from(self.max_connections).unwrap_or(usize::MAX),
                drain_accept_delay: crate::app::drain_accept_delay(self.shutdown_drain),
                close_spread: self.shutdown_close_spread,
                affinity_key: crate::ir::Redacted(self.affinity_key.0.clone().into_bytes()),
                allow_underscore_headers: self.allow_underscore_headers,
                max_ejection_percent: self.max_ejection_percent,
                http2: Http2Settings {
                    enabled: self.http2,
                    cleartext: self.http2_cleartext,
                    max_concurrent_streams: self.http2_max_concurrent_streams,
                    initial_stream_window: self.http2_initial_stream_window,
                    initial_connection_window: self.http2_initial_connection_window,
                    max_frame_size: self.http2_max_frame_size,
                    max_pending_reset_streams: self.http2_max_pending_reset_streams,
                    max_local_error_resets: self.http2_max_local_error_resets,
                },
                // Runtimes exist only once the binary starts them (src/main.rs).
                workers: Default::default(),
            },
            admin_port: self.admin_port,
            shutdown_drain: self.shutdown_drain,
        }
    }

    /// The per-Gateway port settings of translation (`--gateway-services`); the admin port is
    /// never handed out.
    pub fn gateway_ports(&self) -> Option<GatewayPorts> {
        (self.kubernetes && self.gateway_services).then(|| GatewayPorts {
            range: self.gateway_port_range,
            reserved: vec![self.admin_port],
        })
    }

    /// `--gateway-services` and its Service settings, when on.
    pub fn gateway_services(&self) -> Option<GatewayServices> {
        self.gateway_ports().map(|_| GatewayServices {
            selector: self.gateway_service_selector.iter().cloned().collect(),
            service_type: self.gateway_service_type,
            // Filled in by the controller: its own namespace.
            namespace: String::new(),
        })
    }

    /// `--publish-service` / `--publish-address`, checked.
    pub fn publish(&self) -> Result<Publish, PublishError> {
        Publish::from_flags(
            self.publish_service.as_deref(),
            self.publish_address.as_deref(),
        )
    }
}

impl CheckArgs {
    /// Translation options of `check` (the same names and defaults as `run`).
    pub fn options(&self) -> Options {
        Options {
            ingress_class: self.ingress_class.clone(),
            http_port: self.http_port,
            https_port: self.https_port,
            gateway_class: self.gateway_class.clone(),
            gateway_ports: None,
        }
    }
}

/// What goes into Ingress `status.loadBalancer.ingress`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Publish {
    /// Neither flag: Ingress status is not written.
    Nothing,
    /// `--publish-service NS/NAME`: that Service's load-balancer addresses, else its external IPs,
    /// else its cluster IP.
    Service {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// `--publish-address`: fixed IPs or host names (comma-separated).
    Addresses(Vec<String>),
}

/// A `--publish-*` flag that cannot be used.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// Not `NAMESPACE/NAME`.
    #[error("--publish-service {0:?}: expected NAMESPACE/NAME")]
    Service(String),
    /// Neither an IP address nor a DNS name.
    #[error("--publish-address {0:?}: not an IP address or DNS name")]
    Address(String),
}

impl Publish {
    /// Reads `--publish-service` / `--publish-address` (clap already makes them exclusive).
    pub fn from_flags(service: Option<&str>, address: Option<&str>) -> Result<Self, PublishError> {
        if let Some(s) = service {
            let (ns, name) = s
                .split_once('/')
                .filter(|(ns, name)| is_dns_label(ns) && is_dns_subdomain(name))
                .ok_or_else(|| PublishError::Service(s.to_string()))?;
            return Ok(Self::Service {
                namespace: ns.to_string(),
                name: name.to_string(),
            });
        }
        if let Some(a) = address {
            let mut out = Vec::new();
            for part in a.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                if part.parse::<IpAddr>().is_err() && !is_dns_subdomain(&part.to_ascii_lowercase())
                {
                    return Err(PublishError::Address(part.to_string()));
                }
                out.push(part.to_string());
            }
            if out.is_empty() {
                return Err(PublishError::Address(a.to_string()));
            }
            return Ok(Self::Addresses(out));
        }
        Ok(Self::Nothing)
    }

    /// The `(namespace, name)` of the Service to watch, if any.
    pub fn service(&self) -> Option<(&str, &str)> {
        match self {
            Self::Service { namespace, name } => Some((namespace, name)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_flags() {
        assert_eq!(Publish::from_flags(None, None), Ok(Publish::Nothing));
        assert_eq!(
            Publish::from_flags(Some("wsgate-system/wsgate"), None),
            Ok(Publish::Service {
                namespace: "wsgate-system".into(),
                name: "wsgate".into()
            })
        );
        for bad in ["wsgate", "/x", "a/", "A/b", "a/b/c"] {
            assert_eq!(
                Publish::from_flags(Some(bad), None),
                Err(PublishError::Service(bad.into())),
                "{bad}"
            );
        }
        assert_eq!(
            Publish::from_flags(None, Some("203.0.113.7, ws.example.com,2001:db8::1")),
            Ok(Publish::Addresses(vec![
                "203.0.113.7".into(),
                "ws.example.com".into(),
                "2001:db8::1".into()
            ]))
        );
        assert!(Publish::from_flags(None, Some("not an address")).is_err());
        assert!(Publish::from_flags(None, Some(" , ")).is_err());
    }

    #[test]
    fn labels_of_the_service_selector() {
        assert_eq!(
            parse_label("app.kubernetes.io/name=wsgate"),
            Ok(("app.kubernetes.io/name".into(), "wsgate".into()))
        );
        assert_eq!(parse_label("tier="), Ok(("tier".into(), String::new())));
        for bad in [
            "noequals", "=v", "a b=c", "-a=b", "a=-b", "Bad_/x=y", "a/=b",
        ] {
            assert!(parse_label(bad).is_err(), "{bad}");
        }
        assert!(parse_label(&format!("k={}", "v".repeat(64))).is_err());
    }

    #[test]
    fn gateway_services_need_controller_mode_and_a_selector() {
        let parse = |extra: &[&str]| {
            let mut argv = vec!["wsgate", "run"];
            argv.extend_from_slice(extra);
            Cli::try_parse_from(argv)
        };
        assert!(parse(&["--config", "x", "--gateway-services"]).is_err());
        assert!(parse(&["--kubernetes", "--gateway-services"]).is_err());
        let cli = parse(&[
            "--kubernetes",
            "--gateway-services",
            "--gateway-service-selector=app=ws,tier=edge",
            "--gateway-port-range=30000-30099",
            "--admin-port=30050",
        ])
        .expect("valid flags");
        let Command::Run(args) = cli.command else {
            panic!("run");
        };
        let ports = args.gateway_ports().expect("on");
        assert_eq!(ports.range.to_string(), "30000-30099");
        assert_eq!(ports.reserved, vec![30050]);
        let svc = args.gateway_services().expect("on");
        assert_eq!(svc.selector.len(), 2);
        assert_eq!(args.run_config().options.gateway_ports, Some(ports));
        assert!(parse(&["--kubernetes", "--gateway-port-range=9-1"]).is_err());
    }
}
