//! `nmstate-helper`: the nmstate crate for `nmstate-agent`, one operation
//! per run (see `nmstate_agent::helper` for why and for the protocol). It
//! is the only binary of the agent's image that links nmstate.

use std::{
    io::{Read, Write},
    process::ExitCode,
};

use clap::Parser;
use nix::{sys::signal::Signal, unistd::getppid};
use nmstate::{NetworkState, NmstateError};
use nmstate_agent::helper::{Cli, FAILED, Mode, Operation, PARENT_VARIABLE, StatisticInput};
use nmstate_openapi::State;
use tracing_subscriber::EnvFilter;

/// nmstate's log on standard error, which the agent passes on: `info`,
/// except two warnings the libraries repeat on every read or apply of a
/// node whose hardware or NetworkManager they do not like: nispor's
/// "Failed to query WIFI information" (every retrieve on a host without
/// WiFi support) and nmstate's "Unsupported NetworkManager version" (every
/// apply; the agent reports the version in the NodeNetworkState). The
/// agent's `RUST_LOG`, which the helper inherits, replaces it.
const DEFAULT_LOG_FILTER: &str =
    "info,nispor::query::inter_ifaces=error,nmstate::nm::query_apply::apply=error";

fn main() -> ExitCode {
    let operation = Cli::parse().operation();
    if let Err(message) = end_with_the_agent() {
        eprintln!("nmstate-helper: {message}");
        return ExitCode::from(2);
    }
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER));
    // The agent stamps each line with its own time.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .without_time()
        .init();
    let (code, output) = match run(&operation) {
        Ok(output) => (ExitCode::SUCCESS, output),
        Err(message) => (ExitCode::from(FAILED as u8), message.into_bytes()),
    };
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_all(&output).and_then(|()| stdout.flush()) {
        eprintln!("nmstate-helper: writing the result: {e}");
        return ExitCode::from(2);
    }
    code
}

/// Asks the kernel to kill this process when its parent dies, and checks
/// that the parent is still the agent that started it (it may have died
/// before the request). Run by hand, without [`PARENT_VARIABLE`], the
/// request alone is made.
fn end_with_the_agent() -> Result<(), String> {
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)
        .map_err(|e| format!("asking to end with the agent: {e}"))?;
    let Ok(agent) = std::env::var(PARENT_VARIABLE) else {
        return Ok(());
    };
    if getppid().as_raw().to_string() != agent {
        return Err(format!("the agent ({agent}) that started it is gone"));
    }
    Ok(())
}

/// One operation: its standard output, or the message of its failure.
fn run(operation: &Operation) -> Result<Vec<u8>, String> {
    match operation {
        Operation::Retrieve(mode) => {
            let mut state = NetworkState::new();
            state.set_kernel_only(*mode == Mode::Kernel);
            state.retrieve().map_err(nmstate_error)?;
            serde_json::to_vec(&state).map_err(|e| format!("serialising the retrieved state: {e}"))
        }
        Operation::Apply {
            mode,
            checkpoint_timeout,
            no_verify,
        } => {
            let desired: State = serde_json::from_slice(&stdin()?)
                .map_err(|e| format!("the desired state is not JSON: {e}"))?;
            let mut state = desired
                .to_network_state()
                .map_err(|e| format!("invalid desired state: {e}"))?;
            state.set_kernel_only(*mode == Mode::Kernel);
            if let Some(seconds) = checkpoint_timeout {
                state.set_commit(false);
                state.set_timeout(*seconds);
            }
            if *no_verify {
                state.set_verify_change(false);
            }
            state.apply().map_err(nmstate_error)?;
            Ok(b"{}".to_vec())
        }
        Operation::Commit(checkpoint) => {
            NetworkState::checkpoint_commit(checkpoint).map_err(nmstate_error)?;
            Ok(b"{}".to_vec())
        }
        Operation::Rollback(checkpoint) => {
            NetworkState::checkpoint_rollback(checkpoint).map_err(nmstate_error)?;
            Ok(b"{}".to_vec())
        }
        Operation::Statistic => {
            let input: StatisticInput = serde_json::from_slice(&stdin()?)
                .map_err(|e| format!("the statistic's input is not JSON: {e}"))?;
            let features = input.desired.features(&input.current)?;
            serde_json::to_vec(&features).map_err(|e| format!("serialising the features: {e}"))
        }
    }
}

fn stdin() -> Result<Vec<u8>, String> {
    let mut input = Vec::new();
    std::io::stdin()
        .read_to_end(&mut input)
        .map_err(|e| format!("reading standard input: {e}"))?;
    Ok(input)
}

/// nmstate's errors keep their own wording ("InvalidArgument: ...") since
/// users see them in the enactment's `Failing` message.
fn nmstate_error(error: NmstateError) -> String {
    error.to_string()
}
