//! The `wsgate` binary: parses the command line and hands over to the library.

use anyhow::Context;
use clap::Parser;
use std::io::IsTerminal;
use std::process::ExitCode;
use wsgate::cli::{Cli, Command, LogFormat, RunArgs};

/// mimalloc instead of glibc malloc: the proxy allocates a few small buffers per request and
/// frees them right after, where glibc's free/consolidate paths cost ~15 % of the user-space
/// instructions per request (callgrind, docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn init_logging(args: &RunArgs) -> anyhow::Result<()> {
    // kube-client logs every failed API request at ERROR (a flood while the API server is away);
    // the controller reports those failures itself, with context and rate-limited. An explicit
    // kube_client directive in --log-level still wins.
    let spec = if args.log_level.contains("kube_client") {
        args.log_level.clone()
    } else {
        format!("{},kube_client::client::builder=off", args.log_level)
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&spec)
        .with_context(|| format!("invalid --log-level {:?}", args.log_level))?;
    let format = args
        .log_format
        .unwrap_or(if std::io::stdout().is_terminal() {
            LogFormat::Text
        } else {
            LogFormat::Json
        });
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
    Ok(())
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    init_logging(&args)?;
    for flag in args.not_yet_enforced() {
        tracing::warn!(flag, "flag accepted but not acted on yet in this version");
    }
    let accept_delay = wsgate::app::drain_accept_delay(args.shutdown_drain);
    if !args.shutdown_close_spread.is_zero()
        && args.shutdown_close_spread + accept_delay >= args.shutdown_drain
    {
        anyhow::bail!(
            "--shutdown-close-spread {:?} does not fit in --shutdown-drain {:?}: the drain also \
             keeps listeners open for {:?} first, and sessions need time to close after their 1001",
            args.shutdown_close_spread,
            args.shutdown_drain,
            accept_delay
        );
    }
    let mut run = args.run_config();
    let workers = match args.workers {
        0 => wsgate::proxy::default_worker_count(),
        n => n,
    };
    // Kept until the end of `run`: dropping it stops and joins the worker threads.
    let (handles, _worker_threads) =
        wsgate::proxy::Workers::start(workers).context("cannot start the worker threads")?;
    run.proxy.workers = handles;
    let Some(config) = args.config.clone() else {
        let cfg = wsgate::controller::ControllerConfig {
            run,
            watch_namespaces: args.watch_namespace.clone(),
            publish: args.publish()?,
            gateway_services: args.gateway_services(),
            identity: None,
            lease_namespace: None,
        };
        let controller =
            wsgate::controller::Controller::start(cfg, wsgate::metrics::Metrics::new()).await?;
        controller.run_until_signal().await;
        return Ok(());
    };
    let server = wsgate::app::Server::start(config, run, wsgate::metrics::Metrics::new()).await?;
    server.run_until_signal().await;
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Crds(a) => match wsgate::crd::crds_yaml(a.which.as_deref()) {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Check(a) => {
            let report = wsgate::check::check(&a.path, &a.options());
            print!("{}", wsgate::check::render(&report));
            if report.has_errors() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Command::Run(args) => {
            let args = *args;
            // Single-threaded: this runtime is worker 0 and runs the control plane; `run`
            // starts the other workers (src/proxy/workers.rs says why not tokio's scheduler).
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(run(args)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
