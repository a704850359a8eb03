//! `nmstate-hollow-fleet`: many hollow nodes in one process, each the real
//! `nmstate-agent` code with its own connection, watches and heartbeat
//! (see `nmstate_e2e::fleet`).
//!
//! ```sh
//! nmstate-hollow-fleet --server https://127.0.0.1:6443 --data-dir DIR --nodes 5000
//! ```
//!
//! It prints `started N` on standard output once every agent runs, and
//! stops on SIGTERM, on Ctrl-C, or when its standard input ends (the
//! process that started it went away).

use std::{io::Read, path::PathBuf, process::ExitCode, time::Duration};

use clap::Parser;
use nmstate_agent::config::parse_duration;
use nmstate_e2e::fleet::{self, FleetOptions};
use tokio::sync::watch;
use tracing_subscriber::EnvFilter;

/// The fleet stands in for thousands of nodes on the server's own cores:
/// jemalloc, as the server uses, keeps glibc's malloc bookkeeping (about a
/// third of the fleet's CPU at 5 000 nodes) from taking CPU the server then
/// lacks. A real agent runs on its own node, with the system's allocator.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Runs many hollow nmstate agents in one process.
#[derive(Debug, Parser)]
#[command(name = "nmstate-hollow-fleet")]
struct Args {
    /// The API server (or a balancer in front of replicas).
    #[arg(long)]
    server: String,
    /// A server data directory holding its local CA, to issue each node's
    /// client certificate.
    #[arg(long)]
    data_dir: PathBuf,
    /// How many nodes.
    #[arg(long, default_value_t = 100)]
    nodes: usize,
    /// The first node's index (nodes are named node-<index>).
    #[arg(long, default_value_t = 0)]
    first: usize,
    /// How long an apply takes.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    apply_delay: Duration,
    /// Probability (0 to 1) that an apply fails.
    #[arg(long, default_value_t = 0.0)]
    fail_probability: f64,
    /// Seed of the failures (node i uses seed + i).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Renew each node's Ready heartbeat when older than this.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    ready_interval: Duration,
    /// Full state re-read period of each node.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    resync: Duration,
    /// Nodes started per second.
    #[arg(long, default_value_t = 250.0)]
    start_rate: f64,
    /// Worker threads of the runtime (0: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if !(0.0..=1.0).contains(&args.fail_probability) {
        eprintln!("nmstate-hollow-fleet: --fail-probability must be between 0 and 1");
        return ExitCode::from(64);
    }
    // Agents log every apply; a fleet keeps warnings only unless asked.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let limit = fleet::raise_open_file_limit_to(FILES_PER_NODE * args.nodes as u64);
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if args.threads > 0 {
        builder.worker_threads(args.threads);
    }
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("nmstate-hollow-fleet: starting the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let options = FleetOptions {
        server: args.server,
        data_dir: args.data_dir,
        first: args.first,
        nodes: args.nodes,
        apply_delay: args.apply_delay,
        fail_probability: args.fail_probability,
        seed: args.seed,
        ready_interval: args.ready_interval,
        resync: args.resync,
        start_rate: args.start_rate,
    };
    eprintln!(
        "nmstate-hollow-fleet: {} nodes against {} (open file limit {limit})",
        options.nodes, options.server
    );
    let code = runtime.block_on(async move {
        let (stop, shutdown) = watch::channel(false);
        tokio::spawn(async move {
            wait_for_end().await;
            let _ = stop.send(true);
            // Agents finish what they are doing; do not wait forever.
            tokio::time::sleep(Duration::from_secs(10)).await;
            std::process::exit(0);
        });
        let nodes = options.nodes;
        match fleet::run(&options, shutdown, || println!("started {nodes}")).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("nmstate-hollow-fleet: {error:#}");
                ExitCode::FAILURE
            }
        }
    });
    // The thread reading standard input never ends by itself: do not wait
    // for it.
    runtime.shutdown_background();
    code
}

/// Open files a node holds: its one HTTP/2 connection (its watches and
/// requests are streams on it), and slack for a reconnect.
const FILES_PER_NODE: u64 = 2;

/// Waits for SIGTERM, Ctrl-C, or the end of standard input.
async fn wait_for_end() {
    let stdin = async {
        let _ = tokio::task::spawn_blocking(|| {
            let mut buffer = [0u8; 64];
            while matches!(std::io::stdin().read(&mut buffer), Ok(n) if n > 0) {}
        })
        .await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        () = stdin => {}
        () = terminate => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
