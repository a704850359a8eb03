//! How the agent reads and changes the node's network: one small trait and
//! its implementations (DESIGN.md section 7).
//!
//! - `nm` (default): the `nmstate` crate talking to NetworkManager over
//!   D-Bus, in the nmstate helper ([`crate::helper`]); applies are guarded
//!   by NetworkManager checkpoints that roll back by themselves after a
//!   timeout.
//! - `kernel`: nmstate's kernel-only mode (netlink, no NetworkManager), in
//!   the nmstate helper too; the agent snapshots the state before applying
//!   and re-applies the snapshot to roll back.
//! - `hollow`: an in-memory simulated node for scale and rollout tests.
//!
//! The reporter and the enactor only see this trait.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use nmstate_openapi::State;
use tokio::sync::watch;

use crate::helper::Helper;

pub mod hollow;
pub mod kernel;
pub mod nm;

pub use hollow::{Hollow, HollowOptions};

/// What a backend can fail with. The message is shown to users (enactment
/// `Failing` message), so it keeps nmstate's own wording.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct BackendError {
    /// nmstate's (or the simulator's) error text.
    pub message: String,
}

impl BackendError {
    /// An error with `message`.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

/// Software versions reported in the NodeNetworkState status.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Versions {
    /// NetworkManager on the host (`hostNetworkManagerVersion`).
    pub host_network_manager: Option<String>,
    /// NetworkManager the agent talks to (`handlerNetworkManagerVersion`).
    pub handler_network_manager: Option<String>,
    /// nmstate library version (`handlerNmstateVersion`).
    pub handler_nmstate: Option<String>,
}

/// An applied but not yet committed change. Committing makes it permanent;
/// rolling back (or letting `timeout` pass, for backends with real
/// checkpoints) restores the state from before the apply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// Backend-specific identifier (a NetworkManager checkpoint D-Bus path,
    /// a snapshot id).
    pub id: String,
    /// How long the checkpoint lives before the backend rolls it back by
    /// itself.
    pub timeout: Duration,
}

/// The node's network, as the agent sees it.
#[async_trait]
pub trait Backend: Send + Sync + std::fmt::Debug {
    /// `nm`, `kernel` or `hollow`.
    fn name(&self) -> &'static str;

    /// The current network state (an nmstate document, unfiltered).
    async fn retrieve(&self) -> Result<State, BackendError>;

    /// Versions for the NodeNetworkState status.
    async fn versions(&self) -> Versions;

    /// Applies `desired` without committing it, under a checkpoint that
    /// rolls back by itself after `timeout` if neither [`Backend::commit`]
    /// nor [`Backend::rollback`] is called.
    async fn apply(&self, desired: &State, timeout: Duration) -> Result<Checkpoint, BackendError>;

    /// Makes the change under `checkpoint` permanent.
    async fn commit(&self, checkpoint: &Checkpoint) -> Result<(), BackendError>;

    /// Restores the state from before the change under `checkpoint`.
    async fn rollback(&self, checkpoint: &Checkpoint) -> Result<(), BackendError>;

    /// Rolls back any checkpoint left open by an earlier run of the agent
    /// (called on start, before reconciling). Nothing to do is not an error.
    async fn rollback_stale(&self) -> Result<(), BackendError>;

    /// A counter that moves whenever the backend notices that the network
    /// may have changed (NetworkManager signals, a simulated change). The
    /// reporter waits on it, debounces, and re-reads the state. Backends
    /// without change notifications return a receiver that never changes
    /// (the reporter's periodic resync still runs).
    fn changes(&self) -> watch::Receiver<u64>;
}

/// Which backend the agent drives (`--backend`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
#[non_exhaustive]
pub enum BackendKind {
    /// NetworkManager through the `nmstate` crate.
    Nm,
    /// nmstate's kernel-only mode (netlink).
    Kernel,
    /// The in-memory simulated node.
    Hollow,
}

impl BackendKind {
    /// The `--backend` spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Nm => "nm",
            Self::Kernel => "kernel",
            Self::Hollow => "hollow",
        }
    }

    /// Whether the backend simulates the node: the probes that need a real
    /// network (default gateway, DNS) do not apply to it.
    pub fn is_simulated(self) -> bool {
        matches!(self, Self::Hollow)
    }
}

/// Everything a backend may need to start, from the agent's flags.
#[derive(Clone, Debug, Default)]
pub struct BackendOptions {
    /// The node's name (the hollow backend derives its addresses from it).
    pub node_name: String,
    /// Options of the hollow backend.
    pub hollow: HollowOptions,
    /// `kernel`: where an open checkpoint's snapshot is kept so that a
    /// restarted agent can roll it back; `None` keeps it in memory only.
    pub kernel_snapshot_file: Option<std::path::PathBuf>,
    /// `nm` and `kernel`: the nmstate helper that reads and changes the
    /// network.
    pub helper: Helper,
}

/// Builds the backend `kind`. The `nm` backend connects to the system bus
/// (`DBUS_SYSTEM_BUS_ADDRESS`) here; failing that is an error the agent
/// reports at start.
pub async fn build(
    kind: BackendKind,
    options: &BackendOptions,
) -> Result<Arc<dyn Backend>, BackendError> {
    match kind {
        BackendKind::Hollow => Ok(Arc::new(Hollow::new(
            &options.node_name,
            options.hollow.clone(),
        ))),
        BackendKind::Nm => Ok(Arc::new(
            nm::NmBackend::connect(options.helper.clone()).await?,
        )),
        BackendKind::Kernel => Ok(Arc::new(kernel::KernelBackend::new(
            options.helper.clone(),
            options.kernel_snapshot_file.clone(),
        ))),
    }
}
