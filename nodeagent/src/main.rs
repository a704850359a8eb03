//! `nmstate-agent`: the per-node agent (DaemonSet). Parses flags, starts
//! tracing, runs [`nmstate_agent::agent::run`] until SIGTERM or Ctrl-C, and
//! lets an apply in flight finish or roll back before exiting 0.

use std::{
    collections::BTreeMap, io::IsTerminal, net::SocketAddr, path::PathBuf, process::ExitCode,
    time::Duration,
};

use clap::Parser;
use nmstate_agent::{
    backend::{BackendKind, HollowOptions},
    config::{Config, parse_duration, parse_labels},
    helper::Helper,
};
use tokio::sync::watch;
use tracing_subscriber::EnvFilter;

/// Exit code for bad flags (EX_USAGE).
const EXIT_USAGE: u8 = 64;

/// Reports this node's network state and applies its enactments.
#[derive(Debug, Parser)]
#[command(name = "nmstate-agent", version, about)]
struct Args {
    /// The node this agent runs on.
    #[arg(long, env = "NODE_NAME")]
    node_name: String,
    /// Kubeconfig file; without it the in-cluster configuration is used.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Labels of the NodeNetworkState, k=v,...: for standalone nodes (in a
    /// cluster the Node object's labels are copied too).
    #[arg(long, default_value = "", value_parser = parse_labels)]
    node_labels: BTreeMap<String, String>,
    /// How the node's network is read and changed.
    #[arg(long, value_enum, default_value = "nm")]
    backend: BackendKind,
    /// How long an applied change may stay uncommitted before it rolls back
    /// by itself.
    #[arg(long, default_value = "480s", value_parser = parse_duration)]
    checkpoint_timeout: Duration,
    /// Timeout of each post-apply probe.
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    probe_timeout: Duration,
    /// The name the DNS probe resolves through each running name server.
    #[arg(long, default_value = "root-servers.net")]
    dns_probe_host: String,
    /// Period of the full state re-read.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    resync: Duration,
    /// Renew the NodeNetworkState's Ready heartbeat when older than this
    /// (at least 1m).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    ready_interval: Duration,
    /// Local address serving /healthz and /metrics (port 0: any free port,
    /// logged at start).
    #[arg(long, default_value = "127.0.0.1:0")]
    health_address: SocketAddr,
    /// Hollow backend: number of ethernet interfaces (eth0, eth1, ...).
    #[arg(long, default_value_t = 3)]
    hollow_interfaces: usize,
    /// Hollow backend: how long an apply takes.
    #[arg(long, default_value = "100ms", value_parser = parse_duration)]
    hollow_apply_delay: Duration,
    /// Hollow backend: fail every apply whose desired state contains this
    /// text.
    #[arg(long)]
    hollow_fail_marker: Option<String>,
    /// Hollow backend: probability (0 to 1) that any other apply fails.
    #[arg(long, default_value_t = 0.0)]
    hollow_fail_probability: f64,
    /// Hollow backend: seed of the random failures.
    #[arg(long, default_value_t = 0)]
    hollow_seed: u64,
    /// The nmstate helper, run once per read, apply, commit, rollback and
    /// statistic [default: nmstate-helper beside this binary].
    #[arg(long, env = "NMSTATE_HELPER")]
    nmstate_helper: Option<PathBuf>,
    /// Kernel backend: where to keep the snapshot taken before an apply,
    /// so that an agent restarted in the middle of an apply rolls it back
    /// (a file on a host path that survives the agent's restart).
    #[arg(long)]
    kernel_snapshot_file: Option<PathBuf>,
    /// Log format.
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Colour in text logs: only when standard output is a terminal
    /// (`auto`), or forced either way.
    #[arg(long, value_enum, default_value = "auto")]
    log_color: LogColor,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum LogColor {
    Auto,
    Always,
    Never,
}

/// The default log filter; `RUST_LOG` replaces it (and the nmstate
/// helper's, which inherits it).
const DEFAULT_LOG_FILTER: &str = "info";

impl Args {
    fn into_config(self) -> Result<Config, String> {
        if self.node_name.trim().is_empty() {
            return Err("--node-name (or NODE_NAME) must not be empty".to_owned());
        }
        if !(0.0..=1.0).contains(&self.hollow_fail_probability) {
            return Err(format!(
                "--hollow-fail-probability {} is not between 0 and 1",
                self.hollow_fail_probability
            ));
        }
        if self.ready_interval < Duration::from_secs(60) {
            return Err("--ready-interval must be at least 1m".to_owned());
        }
        for (flag, value) in [
            ("--checkpoint-timeout", self.checkpoint_timeout),
            ("--probe-timeout", self.probe_timeout),
            ("--resync", self.resync),
        ] {
            if value.is_zero() {
                return Err(format!("{flag} must be more than 0"));
            }
        }
        Ok(Config {
            node_name: self.node_name,
            kubeconfig: self.kubeconfig,
            node_labels: self.node_labels,
            backend: self.backend,
            checkpoint_timeout: self.checkpoint_timeout,
            probe_timeout: self.probe_timeout,
            dns_probe_host: self.dns_probe_host,
            resync: self.resync,
            ready_interval: self.ready_interval,
            health_address: Some(self.health_address),
            hollow: HollowOptions {
                interfaces: self.hollow_interfaces,
                apply_delay: self.hollow_apply_delay,
                fail_marker: self.hollow_fail_marker,
                fail_probability: self.hollow_fail_probability,
                seed: self.hollow_seed,
                initial_state: None,
            },
            kernel_snapshot_file: self.kernel_snapshot_file,
            helper: self.nmstate_helper.map(Helper::new).unwrap_or_default(),
            in_process_statistic: None,
        })
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let (log_format, log_color) = (args.log_format, args.log_color);
    let config = match args.into_config() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("nmstate-agent: {error}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER));
    let ansi = match log_color {
        LogColor::Auto => std::io::stdout().is_terminal(),
        LogColor::Always => true,
        LogColor::Never => false,
    };
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi);
    match log_format {
        LogFormat::Text => subscriber.init(),
        LogFormat::Json => subscriber.json().init(),
    }
    // One thread: the agent runs on every node and is mostly idle.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("nmstate-agent: starting the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let (stop, shutdown) = watch::channel(false);
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("stopping: finishing or rolling back an apply in flight");
            let _ = stop.send(true);
            // A second signal forces the exit.
            wait_for_signal().await;
            tracing::warn!("second signal: exiting at once");
            std::process::exit(1);
        });
        match nmstate_agent::agent::run(config, shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                tracing::error!(%error, "nmstate-agent failed");
                eprintln!("nmstate-agent: {error}");
                ExitCode::FAILURE
            }
        }
    })
}

async fn wait_for_signal() {
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
    tokio::select! {
        _ = terminate.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
