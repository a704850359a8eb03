//! `nmstate-apiserver`: parses flags, starts logging, runs the server until
//! SIGTERM or Ctrl-C, then drains. `nmstate-apiserver kubeconfig ...`
//! issues a client kubeconfig instead.

use std::{io::IsTerminal, process::ExitCode};

use clap::Parser;
use nmstate_apiserver::config::{Args, Command, KubeconfigArgs, LogFormat, PodEnvironment};
use tracing_subscriber::EnvFilter;

/// jemalloc instead of glibc's malloc. The server allocates and frees
/// trees of JSON for every write; at 5 000 nodes glibc's malloc spent about
/// a third of the server's CPU in its own bookkeeping (`malloc_consolidate`,
/// `unlink_chunk`), see docs/benchmarks.md, "scale".
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Exit code for bad flags (EX_USAGE).
const EXIT_USAGE: u8 = 64;

fn main() -> ExitCode {
    let mut args = Args::parse();
    init_tracing(args.log_format);
    // The only environment the server reads: where kube-apiserver is when
    // running in a pod (NMSTATE_SERVICEACCOUNT_DIR is for tests).
    args.pod = PodEnvironment {
        kubernetes_service_host: std::env::var("KUBERNETES_SERVICE_HOST").ok(),
        kubernetes_service_port: std::env::var("KUBERNETES_SERVICE_PORT").ok(),
        serviceaccount_dir: std::env::var_os("NMSTATE_SERVICEACCOUNT_DIR").map(Into::into),
    };
    if let Some(Command::Kubeconfig(kubeconfig)) = args.command.take() {
        return issue_kubeconfig(kubeconfig, args);
    }
    let config = match args.into_config() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("nmstate-apiserver: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("nmstate-apiserver: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let running = match nmstate_apiserver::start(&config).await {
            Ok(running) => running,
            Err(e) => {
                tracing::error!(error = %e, "cannot start");
                eprintln!("nmstate-apiserver: {e}");
                return ExitCode::FAILURE;
            }
        };
        shutdown_signal().await;
        // A second signal forces the exit while draining.
        tokio::spawn(async {
            shutdown_signal().await;
            tracing::warn!("second signal: exiting without draining");
            std::process::exit(1);
        });
        running.shutdown().await;
        ExitCode::SUCCESS
    })
}

/// `nmstate-apiserver kubeconfig`: no runtime, no server, one file.
fn issue_kubeconfig(kubeconfig: KubeconfigArgs, args: Args) -> ExitCode {
    let request = match kubeconfig.into_request(args.data_dir) {
        Ok(request) => request,
        Err(e) => {
            eprintln!("nmstate-apiserver kubeconfig: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    match nmstate_apiserver::kubeconfig::issue(&request) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nmstate-apiserver kubeconfig: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        // nmstate logs every step of a diff or capture at info: noise in a
        // server that renders for every node.
        .unwrap_or_else(|_| EnvFilter::new("info,nmstate=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(
            tokio::signal::unix::SignalKind::terminate(),
        ) {
            Ok(term) => term,
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the server");
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => tracing::info!("interrupted"),
            _ = term.recv() => tracing::info!("SIGTERM received"),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
