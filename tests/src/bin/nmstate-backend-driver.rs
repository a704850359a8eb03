//! `nmstate-backend-driver --backend nm|kernel`: drives one of the agent's
//! real backends from line-delimited JSON requests on stdin, one JSON answer
//! per line on stdout. The backend tests run it inside a network-namespace
//! node (`hack/netns-node.sh exec`), where netlink and the D-Bus system bus
//! are the node's own, and keep it running across requests so that a
//! checkpoint opened by `apply` can be committed or rolled back later.
//!
//! Requests: `{"op":"retrieve"}`, `{"op":"versions"}`,
//! `{"op":"apply","state":{...},"timeout_ms":N}`,
//! `{"op":"commit","checkpoint":ID}`, `{"op":"rollback","checkpoint":ID}`,
//! `{"op":"rollback-stale"}`, `{"op":"changes"}` (the change counter now).
//! Answers: `{"ok": VALUE}` or `{"error": MESSAGE}`.

use std::{process::ExitCode, time::Duration};

use clap::{Parser, ValueEnum};
use nmstate_agent::backend::{self, Backend, BackendKind, BackendOptions, Checkpoint};
use nmstate_openapi::State;
use serde_json::{Value, json};
use std::io::{BufRead, Write};

/// Drives an agent backend from JSON lines on stdin.
#[derive(Debug, Parser)]
struct Args {
    /// The backend to drive.
    #[arg(long, value_enum)]
    backend: Kind,
    /// `kernel`: keep the open checkpoint's snapshot in this file.
    #[arg(long)]
    kernel_snapshot_file: Option<std::path::PathBuf>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Kind {
    Nm,
    Kernel,
}

fn main() -> ExitCode {
    let args = Args::parse();
    // Multi-threaded, so that the backend's own tasks (NetworkManager's
    // signal subscription) run while the driver waits for the next request.
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("nmstate-backend-driver: {e}");
            return ExitCode::FAILURE;
        }
    };
    drive(&runtime, args)
}

fn drive(runtime: &tokio::runtime::Runtime, args: Args) -> ExitCode {
    let kind = match args.backend {
        Kind::Nm => BackendKind::Nm,
        Kind::Kernel => BackendKind::Kernel,
    };
    let options = BackendOptions {
        kernel_snapshot_file: args.kernel_snapshot_file,
        ..BackendOptions::default()
    };
    let backend = match runtime.block_on(backend::build(kind, &options)) {
        Ok(backend) => backend,
        Err(e) => {
            eprintln!("nmstate-backend-driver: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut lines = std::io::stdin().lock().lines();
    let mut stdout = std::io::stdout();
    loop {
        let line = match lines.next() {
            Some(Ok(line)) => line,
            None => return ExitCode::SUCCESS,
            Some(Err(e)) => {
                eprintln!("nmstate-backend-driver: reading stdin: {e}");
                return ExitCode::FAILURE;
            }
        };
        let answer = match serde_json::from_str::<Value>(&line) {
            Ok(request) => match runtime.block_on(handle(backend.as_ref(), &request)) {
                Ok(value) => json!({ "ok": value }),
                Err(message) => json!({ "error": message }),
            },
            Err(e) => json!({ "error": format!("request is not JSON: {e}") }),
        };
        let mut bytes = answer.to_string().into_bytes();
        bytes.push(b'\n');
        if stdout.write_all(&bytes).is_err() || stdout.flush().is_err() {
            return ExitCode::FAILURE;
        }
    }
}

async fn handle(backend: &dyn Backend, request: &Value) -> Result<Value, String> {
    let checkpoint = || -> Result<Checkpoint, String> {
        let id = request["checkpoint"]
            .as_str()
            .ok_or("checkpoint: a string is required")?;
        Ok(Checkpoint {
            id: id.to_owned(),
            timeout: Duration::ZERO,
        })
    };
    match request["op"].as_str().unwrap_or_default() {
        "retrieve" => backend
            .retrieve()
            .await
            .map(|state| state.0)
            .map_err(|e| e.message),
        "versions" => {
            let versions = backend.versions().await;
            Ok(json!({
                "hostNetworkManagerVersion": versions.host_network_manager,
                "handlerNetworkManagerVersion": versions.handler_network_manager,
                "handlerNmstateVersion": versions.handler_nmstate,
            }))
        }
        "apply" => {
            let timeout = request["timeout_ms"]
                .as_u64()
                .ok_or("timeout_ms: a number is required")?;
            let state = State(request["state"].clone());
            backend
                .apply(&state, Duration::from_millis(timeout))
                .await
                .map(|checkpoint| json!(checkpoint.id))
                .map_err(|e| e.message)
        }
        "commit" => backend
            .commit(&checkpoint()?)
            .await
            .map(|()| Value::Null)
            .map_err(|e| e.message),
        "rollback" => backend
            .rollback(&checkpoint()?)
            .await
            .map(|()| Value::Null)
            .map_err(|e| e.message),
        "rollback-stale" => backend
            .rollback_stale()
            .await
            .map(|()| Value::Null)
            .map_err(|e| e.message),
        "changes" => Ok(json!(*backend.changes().borrow())),
        other => Err(format!("unknown op {other:?}")),
    }
}
