//! The agent's way to nmstate: `nmstate-helper`, a binary of its own that
//! the agent runs once for each read, apply, commit, rollback or statistic,
//! the way upstream's handler runs `nmstatectl`.
//!
//! Why a separate binary: an idle agent's resident memory follows the code
//! linked into it, not what its idle loop runs (docs/benchmarks.md, "The
//! agent's resident pages"). nmstate, nispor and netlink are about 1.7 MiB
//! of code; linked into the agent they stay resident between the reads
//! that use them. In the helper they are resident only while it runs, and
//! a crash or a leak in them ends with the helper, not with the agent.
//!
//! The protocol ([`Operation`]): `nmstate-helper OPERATION [FLAGS]`, a JSON
//! document on standard input for the operations that take one, the result
//! as JSON on standard output and exit status 0. A failure exits with
//! status [`FAILED`] and its message, in nmstate's wording (users read it
//! in an enactment's `Failing` condition), as standard output's text.
//! Standard error is nmstate's log, which the agent passes on to its own.
//!
//! A helper ends with its agent: an agent killed in the middle of an apply
//! must not leave a helper applying on, outside the checkpoint that the
//! next agent rolls back at its start. The helper asks the kernel for
//! `SIGKILL` when its parent dies, and exits at once if the agent named in
//! [`PARENT_VARIABLE`] is already gone.

use std::{
    ffi::OsString,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use nmstate_openapi::State;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use crate::backend::BackendError;

/// The helper's file name; the agent looks for it beside its own binary.
pub const HELPER_NAME: &str = "nmstate-helper";

/// The exit status of an operation that failed with a message.
pub const FAILED: i32 = 1;

/// The environment variable that tells the helper its agent's process id:
/// the helper ends when that process does (see the helper's `main`).
pub const PARENT_VARIABLE: &str = "NMSTATE_HELPER_PARENT";

/// Which network the helper reads or changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Through NetworkManager (D-Bus system bus).
    NetworkManager,
    /// nmstate's kernel-only mode (netlink, no NetworkManager).
    Kernel,
}

/// What the helper is asked to do; [`Operation::args`] spells it as the
/// helper's command line, which parses it back with clap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Operation {
    /// Print the current state. `retrieve [--kernel]`.
    Retrieve(Mode),
    /// Apply the desired state on standard input. `apply [--kernel]
    /// [--no-commit --timeout SECONDS] [--no-verify]`.
    Apply {
        /// Where to apply.
        mode: Mode,
        /// NetworkManager mode: leave the change under a checkpoint that
        /// rolls back by itself after this many seconds unless committed.
        checkpoint_timeout: Option<u32>,
        /// Skip nmstate's verification of the applied state.
        no_verify: bool,
    },
    /// Make the change under a NetworkManager checkpoint permanent.
    /// `commit CHECKPOINT`.
    Commit(String),
    /// Restore the state from before a NetworkManager checkpoint.
    /// `rollback CHECKPOINT`.
    Rollback(String),
    /// nmstate's statistic: the features a desired state uses on a node, as
    /// `nmstatectl statistic` names them. Standard input: a
    /// [`StatisticInput`]; standard output: a list of names.
    Statistic,
}

impl Operation {
    /// The helper's command line for this operation.
    pub fn args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = Vec::new();
        let mut push = |arg: &str| args.push(arg.into());
        match self {
            Self::Retrieve(mode) => {
                push("retrieve");
                if *mode == Mode::Kernel {
                    push("--kernel");
                }
            }
            Self::Apply {
                mode,
                checkpoint_timeout,
                no_verify,
            } => {
                push("apply");
                if *mode == Mode::Kernel {
                    push("--kernel");
                }
                if let Some(seconds) = checkpoint_timeout {
                    push("--no-commit");
                    push("--timeout");
                    push(&seconds.to_string());
                }
                if *no_verify {
                    push("--no-verify");
                }
            }
            Self::Commit(checkpoint) => {
                push("commit");
                push(checkpoint);
            }
            Self::Rollback(checkpoint) => {
                push("rollback");
                push(checkpoint);
            }
            Self::Statistic => push("statistic"),
        }
        args
    }

    /// The operation's name, for messages.
    fn name(&self) -> &'static str {
        match self {
            Self::Retrieve(_) => "retrieve",
            Self::Apply { .. } => "apply",
            Self::Commit(_) => "commit",
            Self::Rollback(_) => "rollback",
            Self::Statistic => "statistic",
        }
    }

    /// Whether the operation changes the node; its log is then worth
    /// `info` in the agent's log, a read's only `debug`.
    fn changes_the_node(&self) -> bool {
        matches!(
            self,
            Self::Apply { .. } | Self::Commit(_) | Self::Rollback(_)
        )
    }
}

/// The helper's command line, as `nmstate-helper` parses it.
#[derive(Debug, clap::Parser)]
#[command(
    name = "nmstate-helper",
    version,
    about = "nmstate for nmstate-agent: one read, apply, commit, rollback or statistic per run"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Print the current network state as JSON.
    Retrieve {
        /// Kernel only (netlink), without NetworkManager.
        #[arg(long)]
        kernel: bool,
    },
    /// Apply the desired state (JSON) read from standard input.
    Apply {
        /// Kernel only (netlink), without NetworkManager.
        #[arg(long)]
        kernel: bool,
        /// Leave the change under a NetworkManager checkpoint.
        #[arg(long, requires = "timeout", conflicts_with = "kernel")]
        no_commit: bool,
        /// Seconds before an uncommitted checkpoint rolls back by itself.
        #[arg(long, requires = "no_commit")]
        timeout: Option<u32>,
        /// Do not verify the applied state.
        #[arg(long)]
        no_verify: bool,
    },
    /// Commit a NetworkManager checkpoint.
    Commit {
        /// The checkpoint's D-Bus path.
        checkpoint: String,
    },
    /// Roll a NetworkManager checkpoint back.
    Rollback {
        /// The checkpoint's D-Bus path.
        checkpoint: String,
    },
    /// Print the nmstate features of `{"desired": ..., "current": ...}`.
    Statistic,
}

impl Cli {
    /// The operation this command line asks for.
    pub fn operation(self) -> Operation {
        let mode = |kernel: bool| {
            if kernel {
                Mode::Kernel
            } else {
                Mode::NetworkManager
            }
        };
        match self.command {
            Command::Retrieve { kernel } => Operation::Retrieve(mode(kernel)),
            Command::Apply {
                kernel,
                no_commit: _,
                timeout,
                no_verify,
            } => Operation::Apply {
                mode: mode(kernel),
                checkpoint_timeout: timeout,
                no_verify,
            },
            Command::Commit { checkpoint } => Operation::Commit(checkpoint),
            Command::Rollback { checkpoint } => Operation::Rollback(checkpoint),
            Command::Statistic => Operation::Statistic,
        }
    }
}

/// Standard input of [`Operation::Statistic`].
#[derive(Debug, Serialize, Deserialize)]
pub struct StatisticInput {
    /// The state to apply.
    pub desired: State,
    /// The node's state before the apply.
    pub current: State,
}

/// Runs `nmstate-helper` at a path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Helper {
    path: PathBuf,
}

impl Default for Helper {
    /// `nmstate-helper` beside the running executable, as the agent's
    /// container and a build directory have it; `nmstate-helper` on `PATH`
    /// when the executable's directory is unknown.
    fn default() -> Self {
        let beside = std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(|dir| dir.join(HELPER_NAME)));
        Self::new(beside.unwrap_or_else(|| PathBuf::from(HELPER_NAME)))
    }
}

impl Helper {
    /// The helper at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// Where the helper is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The node's current state.
    pub async fn retrieve(&self, mode: Mode) -> Result<State, BackendError> {
        let output = self.run(&Operation::Retrieve(mode), None).await?;
        parse(&output, "the retrieved state")
    }

    /// Applies `desired`; see [`Operation::Apply`].
    pub async fn apply(
        &self,
        desired: &State,
        mode: Mode,
        checkpoint_timeout: Option<Duration>,
        no_verify: bool,
    ) -> Result<(), BackendError> {
        let input = serde_json::to_vec(desired)
            .map_err(|e| BackendError::new(format!("serialising the desired state: {e}")))?;
        let operation = Operation::Apply {
            mode,
            checkpoint_timeout: checkpoint_timeout.map(timeout_seconds),
            no_verify,
        };
        self.run(&operation, Some(input)).await.map(drop)
    }

    /// Commits NetworkManager checkpoint `checkpoint`.
    pub async fn commit(&self, checkpoint: &str) -> Result<(), BackendError> {
        self.run(&Operation::Commit(checkpoint.to_owned()), None)
            .await
            .map(drop)
    }

    /// Rolls NetworkManager checkpoint `checkpoint` back.
    pub async fn rollback(&self, checkpoint: &str) -> Result<(), BackendError> {
        self.run(&Operation::Rollback(checkpoint.to_owned()), None)
            .await
            .map(drop)
    }

    /// nmstate's statistic of applying `desired` on a node in state
    /// `current`: the features it uses, sorted, without repeats.
    pub async fn statistic(
        &self,
        desired: &State,
        current: &State,
    ) -> Result<Vec<String>, BackendError> {
        #[derive(Serialize)]
        struct Input<'a> {
            desired: &'a State,
            current: &'a State,
        }
        let input = serde_json::to_vec(&Input { desired, current })
            .map_err(|e| BackendError::new(format!("serialising the statistic's input: {e}")))?;
        let output = self.run(&Operation::Statistic, Some(input)).await?;
        parse(&output, "the statistic")
    }

    /// Runs one operation to its end and returns its standard output. A
    /// helper abandoned half-way (the agent stopping) is killed; an apply
    /// it had started stays under its checkpoint.
    async fn run(
        &self,
        operation: &Operation,
        input: Option<Vec<u8>>,
    ) -> Result<Vec<u8>, BackendError> {
        let name = operation.name();
        let mut child = tokio::process::Command::new(&self.path)
            .args(operation.args())
            .env(PARENT_VARIABLE, std::process::id().to_string())
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                BackendError::new(format!(
                    "starting the nmstate helper {}: {e}",
                    self.path.display()
                ))
            })?;
        // The helper reads all of its input before it writes anything, so
        // this cannot block on a full output pipe. A helper that exits
        // before reading it (a bad command line) breaks the pipe: its own
        // answer, read below, says more than the broken pipe.
        let mut written = Ok(());
        if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
            written = stdin.write_all(&input).await;
        }
        let output = child.wait_with_output().await.map_err(|e| {
            BackendError::new(format!("waiting for the nmstate helper ({name}): {e}"))
        })?;
        if output.status.success()
            && let Err(e) = written
        {
            return Err(BackendError::new(format!(
                "writing to the nmstate helper ({name}): {e}"
            )));
        }
        let log = String::from_utf8_lossy(&output.stderr);
        for line in log.lines().filter(|line| !line.trim().is_empty()) {
            if operation.changes_the_node() {
                tracing::info!(target: "nmstate", operation = name, "{line}");
            } else {
                tracing::debug!(target: "nmstate", operation = name, "{line}");
            }
        }
        if output.status.success() {
            return Ok(output.stdout);
        }
        if output.status.code() == Some(FAILED) {
            let message = String::from_utf8_lossy(&output.stdout).trim().to_owned();
            return Err(BackendError::new(message));
        }
        // A crash: a panic's message or a signal.
        let last = log.lines().rev().find(|line| !line.trim().is_empty());
        Err(BackendError::new(format!(
            "the nmstate helper ({name}) failed ({}){}",
            output.status,
            last.map(|line| format!(": {line}")).unwrap_or_default()
        )))
    }
}

fn parse<T: serde::de::DeserializeOwned>(output: &[u8], what: &str) -> Result<T, BackendError> {
    serde_json::from_slice(output)
        .map_err(|e| BackendError::new(format!("the nmstate helper's {what} is not JSON: {e}")))
}

/// nmstate counts checkpoint timeouts in whole seconds; round up so that a
/// sub-second timeout does not become "no timeout" (0).
pub fn timeout_seconds(timeout: Duration) -> u32 {
    let seconds = timeout.as_secs() + u64::from(timeout.subsec_nanos() > 0);
    u32::try_from(seconds.max(1)).unwrap_or(u32::MAX)
}

/// How the enactor learns the nmstate features of an apply.
#[derive(Clone, Debug)]
pub enum Statistic {
    /// From the nmstate helper (the agent).
    Helper(Helper),
    /// From a function in this process: the hollow fleet, where thousands
    /// of simulated nodes in one process cannot each start a process per
    /// apply.
    InProcess(StatisticFn),
}

/// nmstate's statistic in process: (desired, current) → feature names.
pub type StatisticFn = fn(&State, &State) -> Result<Vec<String>, String>;

impl Statistic {
    /// The features `desired` uses on a node in state `current`.
    pub async fn features(
        &self,
        desired: &State,
        current: &State,
    ) -> Result<Vec<String>, BackendError> {
        match self {
            Self::Helper(helper) => helper.statistic(desired, current).await,
            Self::InProcess(statistic) => statistic(desired, current).map_err(BackendError::new),
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[test]
    fn timeouts_round_up_to_whole_seconds() {
        assert_eq!(timeout_seconds(Duration::from_secs(480)), 480);
        assert_eq!(timeout_seconds(Duration::from_millis(1500)), 2);
        assert_eq!(timeout_seconds(Duration::ZERO), 1);
        assert_eq!(timeout_seconds(Duration::from_secs(u64::MAX)), u32::MAX);
    }

    #[test]
    fn operations_spell_the_helpers_command_line() {
        let nm_apply = Operation::Apply {
            mode: Mode::NetworkManager,
            checkpoint_timeout: Some(480),
            no_verify: false,
        };
        let kernel_restore = Operation::Apply {
            mode: Mode::Kernel,
            checkpoint_timeout: None,
            no_verify: true,
        };
        let table: [(Operation, &[&str]); 6] = [
            (Operation::Retrieve(Mode::NetworkManager), &["retrieve"]),
            (Operation::Retrieve(Mode::Kernel), &["retrieve", "--kernel"]),
            (nm_apply, &["apply", "--no-commit", "--timeout", "480"]),
            (kernel_restore, &["apply", "--kernel", "--no-verify"]),
            (
                Operation::Commit("/org/freedesktop/NetworkManager/Checkpoint/1".into()),
                &["commit", "/org/freedesktop/NetworkManager/Checkpoint/1"],
            ),
            (Operation::Statistic, &["statistic"]),
        ];
        for (operation, expected) in table {
            let args = operation.args();
            let expected: Vec<OsString> = expected.iter().map(OsString::from).collect();
            assert_eq!(args, expected, "{operation:?}");
            // ... and the helper reads back what the agent meant.
            let parsed = Cli::try_parse_from(std::iter::once(HELPER_NAME.into()).chain(args))
                .unwrap_or_else(|e| panic!("{operation:?}: {e}"));
            assert_eq!(parsed.operation(), operation);
        }
    }

    #[test]
    fn a_checkpoint_timeout_needs_no_commit_and_network_manager() {
        for args in [
            &["apply", "--timeout", "5"][..],
            &["apply", "--no-commit"],
            &["apply", "--kernel", "--no-commit", "--timeout", "5"],
        ] {
            let args = std::iter::once(HELPER_NAME).chain(args.iter().copied());
            assert!(Cli::try_parse_from(args).is_err());
        }
    }
}
