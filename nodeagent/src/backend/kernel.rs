//! The `kernel` backend: nmstate's kernel-only mode (netlink through
//! nispor, no NetworkManager), for hosts without NetworkManager, run by the
//! nmstate helper ([`crate::helper`]).
//!
//! The kernel has no checkpoints, so this module makes its own: before an
//! apply it snapshots the current state; rolling back re-applies the
//! snapshot and removes what the apply created (interfaces and routes that
//! are not in the snapshot). An uncommitted apply is rolled back by a timer
//! after its timeout, and a failed apply (nmstate leaves a half-applied
//! state in this mode) is rolled back at once.
//!
//! With a snapshot file the open checkpoint survives the agent: it is
//! written before the apply and removed at commit or rollback, and
//! [`Backend::rollback_stale`] of the next run restores it. Changes are not
//! signalled; the reporter's periodic resync covers them.

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use nmstate_openapi::State;
use serde_json::{Value, json};
use tokio::{sync::watch, task::JoinHandle};

use super::{Backend, BackendError, Checkpoint, Versions, nm::NMSTATE_VERSION};
use crate::helper::{Helper, Mode};

/// The kernel-only backend.
#[derive(Debug)]
pub struct KernelBackend {
    /// Where nmstate runs.
    helper: Helper,
    /// Open checkpoints by id: the snapshot and the timer that rolls back.
    open: Arc<Mutex<HashMap<String, OpenCheckpoint>>>,
    /// Where the open snapshot is kept across restarts, if anywhere.
    snapshot_file: Option<PathBuf>,
    /// Never moves: the kernel backend has no change notifications.
    changes: watch::Receiver<u64>,
    /// Keeps `changes` open.
    _changes_sender: watch::Sender<u64>,
}

#[derive(Debug)]
struct OpenCheckpoint {
    snapshot: Value,
    timer: JoinHandle<()>,
}

impl KernelBackend {
    /// A kernel-only backend; `snapshot_file` keeps an open checkpoint's
    /// snapshot on disk so that a restarted agent can roll it back.
    pub fn new(helper: Helper, snapshot_file: Option<PathBuf>) -> Self {
        let (changes_sender, changes) = watch::channel(0);
        Self {
            helper,
            open: Arc::default(),
            snapshot_file,
            changes,
            _changes_sender: changes_sender,
        }
    }

    fn take(&self, id: &str) -> Option<OpenCheckpoint> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.remove(id)
    }

    async fn forget_snapshot_file(&self) -> Result<(), BackendError> {
        if let Some(path) = &self.snapshot_file {
            match tokio::fs::remove_file(path).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(BackendError::new(format!(
                        "removing the snapshot {}: {e}",
                        path.display()
                    )));
                }
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Backend for KernelBackend {
    fn name(&self) -> &'static str {
        "kernel"
    }

    async fn retrieve(&self) -> Result<State, BackendError> {
        self.helper.retrieve(Mode::Kernel).await
    }

    async fn versions(&self) -> Versions {
        Versions {
            host_network_manager: None,
            handler_network_manager: None,
            handler_nmstate: Some(NMSTATE_VERSION.to_owned()),
        }
    }

    async fn apply(&self, desired: &State, timeout: Duration) -> Result<Checkpoint, BackendError> {
        let snapshot = self.helper.retrieve(Mode::Kernel).await?.0;
        if let Some(path) = &self.snapshot_file {
            let bytes = serde_json::to_vec(&snapshot)
                .map_err(|e| BackendError::new(format!("serialising the snapshot: {e}")))?;
            tokio::fs::write(path, bytes).await.map_err(|e| {
                BackendError::new(format!("writing the snapshot {}: {e}", path.display()))
            })?;
        }
        let applied = self.helper.apply(desired, Mode::Kernel, None, false).await;
        if let Err(error) = applied {
            // Kernel mode leaves whatever it got to; put the old state back.
            if let Err(restore) = restore(&self.helper, &snapshot).await {
                tracing::error!(error = %restore, "rolling back a failed kernel apply failed");
            }
            self.forget_snapshot_file().await?;
            return Err(error);
        }
        let id = format!("kernel-snapshot-{}", uuid::Uuid::new_v4());
        let timer = {
            let open = Arc::clone(&self.open);
            let id = id.clone();
            let snapshot_file = self.snapshot_file.clone();
            let helper = self.helper.clone();
            tokio::spawn(async move {
                tokio::time::sleep(timeout).await;
                let expired = open.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
                if let Some(expired) = expired {
                    tracing::warn!(checkpoint = %id, "checkpoint timed out; rolling back");
                    if let Err(e) = restore(&helper, &expired.snapshot).await {
                        tracing::error!(checkpoint = %id, error = %e, "timed-out rollback failed");
                    }
                    if let Some(path) = snapshot_file {
                        let _ = tokio::fs::remove_file(path).await;
                    }
                }
            })
        };
        self.open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.clone(), OpenCheckpoint { snapshot, timer });
        Ok(Checkpoint { id, timeout })
    }

    async fn commit(&self, checkpoint: &Checkpoint) -> Result<(), BackendError> {
        let open = self
            .take(&checkpoint.id)
            .ok_or_else(|| not_open(checkpoint))?;
        open.timer.abort();
        self.forget_snapshot_file().await
    }

    async fn rollback(&self, checkpoint: &Checkpoint) -> Result<(), BackendError> {
        let open = self
            .take(&checkpoint.id)
            .ok_or_else(|| not_open(checkpoint))?;
        open.timer.abort();
        restore(&self.helper, &open.snapshot).await?;
        self.forget_snapshot_file().await
    }

    async fn rollback_stale(&self) -> Result<(), BackendError> {
        let Some(path) = &self.snapshot_file else {
            return Ok(());
        };
        let bytes = match tokio::fs::read(path).await {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                return Err(BackendError::new(format!(
                    "reading the snapshot {}: {e}",
                    path.display()
                )));
            }
        };
        let snapshot: Value = serde_json::from_slice(&bytes).map_err(|e| {
            BackendError::new(format!("the snapshot {} is not JSON: {e}", path.display()))
        })?;
        tracing::info!(snapshot = %path.display(), "restoring the state from before an unfinished apply");
        restore(&self.helper, &snapshot).await?;
        self.forget_snapshot_file().await
    }

    fn changes(&self) -> watch::Receiver<u64> {
        self.changes.clone()
    }
}

fn not_open(checkpoint: &Checkpoint) -> BackendError {
    BackendError::new(format!(
        "checkpoint {} is not open (committed, rolled back, or timed out)",
        checkpoint.id
    ))
}

/// Puts the network back to `snapshot`.
async fn restore(helper: &Helper, snapshot: &Value) -> Result<(), BackendError> {
    let current = helper.retrieve(Mode::Kernel).await?.0;
    let document = State(rollback_document(snapshot, &current));
    // Best effort, not verified: the kernel gives some things back only
    // later (an IPv6 link-local address on a former bridge port), and a
    // failed verification would not undo anything either.
    helper
        .apply(&document, Mode::Kernel, None, true)
        .await
        .map_err(|e| BackendError::new(format!("restoring the snapshot: {e}")))
}

/// The state to apply to go from `current` back to `snapshot`: the
/// snapshot's interfaces and configured routes, plus `state: absent` for
/// every interface and configured route that exists now and did not then.
pub(crate) fn rollback_document(snapshot: &Value, current: &Value) -> Value {
    let key = |iface: &Value| {
        (
            iface.get("name").cloned().unwrap_or(Value::Null),
            iface.get("type").cloned().unwrap_or(Value::Null),
        )
    };
    let list = |state: &Value, pointer: &str| -> Vec<Value> {
        state
            .pointer(pointer)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };

    let before = list(snapshot, "/interfaces");
    let mut interfaces: Vec<Value> = before
        .iter()
        .cloned()
        .map(|mut iface| {
            // The kernel reports a port's IPv6 link-local address, but
            // nmstate refuses IP settings on a port: leave them out.
            if iface.get("controller").is_some_and(|c| !c.is_null())
                && let Some(fields) = iface.as_object_mut()
            {
                fields.remove("ipv4");
                fields.remove("ipv6");
            }
            iface
        })
        .collect();
    for iface in list(current, "/interfaces") {
        if !before.iter().any(|old| key(old) == key(&iface)) {
            interfaces.push(json!({
                "name": iface.get("name"),
                "type": iface.get("type"),
                "state": "absent",
            }));
        }
    }

    let before_routes = list(snapshot, "/routes/config");
    let mut routes = before_routes.clone();
    for route in list(current, "/routes/config") {
        if !before_routes.contains(&route) {
            let mut absent = route.clone();
            if let Some(fields) = absent.as_object_mut() {
                fields.insert("state".into(), json!("absent"));
            }
            routes.push(absent);
        }
    }

    json!({
        "interfaces": interfaces,
        "routes": {"config": routes},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rollback_removes_what_the_apply_created_and_restores_the_rest() {
        let snapshot = json!({
            "interfaces": [
                {"name": "eth1", "type": "veth", "state": "up", "mtu": 1500},
                {"name": "eth2", "type": "veth", "state": "up", "controller": "br2",
                 "ipv6": {"enabled": true}},
            ],
            "routes": {"config": [
                {"destination": "0.0.0.0/0", "next-hop-interface": "eth0", "next-hop-address": "10.0.0.1"},
            ]},
        });
        let current = json!({
            "interfaces": [
                {"name": "eth1", "type": "veth", "state": "up", "mtu": 9000},
                {"name": "eth2", "type": "veth", "state": "up", "controller": "br2"},
                {"name": "br1", "type": "linux-bridge", "state": "up"},
            ],
            "routes": {"config": [
                {"destination": "0.0.0.0/0", "next-hop-interface": "eth0", "next-hop-address": "10.0.0.1"},
                {"destination": "198.51.100.0/24", "next-hop-interface": "br1"},
            ]},
        });
        assert_eq!(
            rollback_document(&snapshot, &current),
            json!({
                "interfaces": [
                    {"name": "eth1", "type": "veth", "state": "up", "mtu": 1500},
                    {"name": "eth2", "type": "veth", "state": "up", "controller": "br2"},
                    {"name": "br1", "type": "linux-bridge", "state": "absent"},
                ],
                "routes": {"config": [
                    {"destination": "0.0.0.0/0", "next-hop-interface": "eth0", "next-hop-address": "10.0.0.1"},
                    {"destination": "198.51.100.0/24", "next-hop-interface": "br1", "state": "absent"},
                ]},
            })
        );
    }

    #[tokio::test]
    async fn committing_an_unknown_checkpoint_says_so() {
        let backend = KernelBackend::new(Helper::default(), None);
        let checkpoint = Checkpoint {
            id: "kernel-snapshot-0".into(),
            timeout: Duration::from_secs(1),
        };
        let error = backend
            .commit(&checkpoint)
            .await
            .expect_err("nothing is open");
        assert_eq!(
            error.message,
            "checkpoint kernel-snapshot-0 is not open (committed, rolled back, or timed out)"
        );
    }

    #[tokio::test]
    async fn without_a_snapshot_file_there_is_nothing_stale() {
        let backend = KernelBackend::new(Helper::default(), None);
        backend.rollback_stale().await.expect("nothing to do");
    }
}
