//! The `nm` backend: the `nmstate` crate talking to NetworkManager over
//! D-Bus, the way `nmstatectl` does, in the nmstate helper
//! ([`crate::helper`]): one short-lived process per read, apply, commit or
//! rollback.
//!
//! Applies run under a NetworkManager checkpoint (`apply --no-commit
//! --timeout T`): NetworkManager itself rolls the change back after `T`
//! unless the agent commits it, so an agent (or helper) that dies between
//! apply and commit leaves the node as it was. This module itself reads
//! NetworkManager's `Version` and `Checkpoints` properties over D-Bus and
//! turns NetworkManager's signals into the change counter the reporter
//! waits on.
//!
//! A NetworkManager checkpoint does not cover NetworkManager's global DNS
//! configuration, where nmstate keeps name servers
//! (`GlobalDnsConfiguration`; NetworkManager 1.42 leaves it as the apply
//! set it after a rollback). So the backend reads it before each apply and
//! writes it back when it rolls that apply back. A checkpoint that expires
//! by itself (the agent died before its commit) leaves the name servers as
//! the apply set them.
//!
//! The system bus is the one `DBUS_SYSTEM_BUS_ADDRESS` names (zbus and
//! nmstate both honour it, and the helper inherits it), so an agent in a
//! test network namespace talks to that namespace's own NetworkManager.
//! This module never reads the environment itself.

use std::{
    collections::{BTreeSet, HashMap},
    sync::{Mutex, PoisonError},
    time::Duration,
};

use async_trait::async_trait;
use futures::StreamExt;
use nmstate_openapi::State;
use tokio::{sync::watch, task::JoinHandle};
use zbus::{
    Connection, MatchRule, MessageStream,
    fdo::PropertiesProxy,
    message::Type as MessageType,
    names::InterfaceName,
    zvariant::{OwnedObjectPath, OwnedValue},
};

use super::{Backend, BackendError, Checkpoint, Versions};
use crate::helper::{Helper, Mode};

/// NetworkManager's well-known bus name.
const NM_SERVICE: &str = "org.freedesktop.NetworkManager";
/// NetworkManager's root object.
const NM_PATH: &str = "/org/freedesktop/NetworkManager";
/// NetworkManager's root interface.
const NM_INTERFACE: &str = "org.freedesktop.NetworkManager";
/// NetworkManager's global DNS configuration property (`a{sv}`).
const GLOBAL_DNS: &str = "GlobalDnsConfiguration";

/// The version of the `nmstate` crate this agent is built with (the
/// `handlerNmstateVersion` of the NodeNetworkState). The crate exports no
/// version constant; a unit test keeps this equal to Cargo.lock.
pub const NMSTATE_VERSION: &str = "2.2.62";

/// Signals that mean the network may have changed: the manager's state,
/// devices coming and going, and property changes on devices and active
/// connections (addresses, link state, ports).
const CHANGE_SIGNALS: &[&str] = &[
    "StateChanged",
    "DeviceAdded",
    "DeviceRemoved",
    "PropertiesChanged",
];

/// How long to wait before subscribing again after the bus connection was
/// lost (NetworkManager or the bus restarted).
const RESUBSCRIBE_DELAY: Duration = Duration::from_secs(1);

/// The NetworkManager backend. Dropping it stops its signal subscription.
#[derive(Debug)]
pub struct NmBackend {
    /// Where nmstate runs.
    helper: Helper,
    /// The bus connection for the backend's own property reads.
    connection: Connection,
    /// Bumped by the signal task.
    changes: watch::Receiver<u64>,
    /// The signal task, aborted on drop.
    signals: JoinHandle<()>,
    /// `GlobalDnsConfiguration` before each open checkpoint's apply, by
    /// checkpoint: restored on rollback (a checkpoint does not cover it).
    dns_before: Mutex<HashMap<String, OwnedValue>>,
}

impl Drop for NmBackend {
    fn drop(&mut self) {
        self.signals.abort();
    }
}

impl NmBackend {
    /// Connects to the system bus and subscribes to NetworkManager's
    /// signals. Fails when the bus cannot be reached; NetworkManager itself
    /// may start later (its signals are matched by name).
    pub async fn connect(helper: Helper) -> Result<Self, BackendError> {
        let connection = Connection::system().await.map_err(dbus_error)?;
        let (sender, changes) = watch::channel(0);
        let signals = tokio::spawn(watch_signals(connection.clone(), sender));
        Ok(Self {
            helper,
            connection,
            changes,
            signals,
            dns_before: Mutex::default(),
        })
    }

    /// NetworkManager's open checkpoints (D-Bus object paths).
    pub async fn checkpoints(&self) -> Result<Vec<String>, BackendError> {
        let paths: Vec<OwnedObjectPath> = self.nm_property("Checkpoints").await?;
        Ok(paths
            .into_iter()
            .map(|path| path.as_str().to_owned())
            .collect())
    }

    /// NetworkManager's `Version` property.
    pub async fn network_manager_version(&self) -> Result<String, BackendError> {
        self.nm_property("Version").await
    }

    async fn properties(&self) -> Result<PropertiesProxy<'_>, BackendError> {
        PropertiesProxy::builder(&self.connection)
            .destination(NM_SERVICE)
            .and_then(|builder| builder.path(NM_PATH))
            .map_err(dbus_error)?
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await
            .map_err(dbus_error)
    }

    /// Writes NetworkManager's `GlobalDnsConfiguration` back to what it was
    /// before the apply under checkpoint `id`, if it changed.
    async fn restore_global_dns(&self, id: &str) -> Result<(), BackendError> {
        let before = self
            .dns_before
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id);
        let Some(before) = before else {
            return Ok(());
        };
        let now: OwnedValue = self.nm_property(GLOBAL_DNS).await?;
        if now == before {
            return Ok(());
        }
        tracing::info!("restoring NetworkManager's global DNS configuration");
        self.properties()
            .await?
            .set(
                InterfaceName::from_static_str_unchecked(NM_INTERFACE),
                GLOBAL_DNS,
                zbus::zvariant::Value::from(before),
            )
            .await
            .map_err(|e| BackendError::new(format!("restoring NetworkManager's {GLOBAL_DNS}: {e}")))
    }

    async fn nm_property<T>(&self, name: &str) -> Result<T, BackendError>
    where
        T: TryFrom<zbus::zvariant::OwnedValue>,
        T::Error: std::fmt::Display,
    {
        let properties = self.properties().await?;
        let value = properties
            .get(InterfaceName::from_static_str_unchecked(NM_INTERFACE), name)
            .await
            .map_err(|e| BackendError::new(format!("NetworkManager property {name}: {e}")))?;
        T::try_from(value)
            .map_err(|e| BackendError::new(format!("NetworkManager property {name}: {e}")))
    }
}

#[async_trait]
impl Backend for NmBackend {
    fn name(&self) -> &'static str {
        "nm"
    }

    async fn retrieve(&self) -> Result<State, BackendError> {
        self.helper.retrieve(Mode::NetworkManager).await
    }

    async fn versions(&self) -> Versions {
        let network_manager = match self.network_manager_version().await {
            Ok(version) => Some(version),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read NetworkManager's version");
                None
            }
        };
        Versions {
            // The agent talks to the host's own NetworkManager, so both are
            // the same daemon.
            host_network_manager: network_manager.clone(),
            handler_network_manager: network_manager,
            handler_nmstate: Some(NMSTATE_VERSION.to_owned()),
        }
    }

    async fn apply(&self, desired: &State, timeout: Duration) -> Result<Checkpoint, BackendError> {
        // nmstate does not return the checkpoint it created (it only logs
        // it): the new entry of NetworkManager's `Checkpoints` is ours.
        let before: BTreeSet<String> = self.checkpoints().await?.into_iter().collect();
        let dns_before: OwnedValue = self.nm_property(GLOBAL_DNS).await?;
        self.helper
            .apply(desired, Mode::NetworkManager, Some(timeout), false)
            .await?;
        let after = self.checkpoints().await?;
        let id = after
            .iter()
            .rev()
            .find(|path| !before.contains(*path))
            .cloned()
            .ok_or_else(|| {
                BackendError::new(
                    "NetworkManager lists no new checkpoint after the apply; \
                     it may have expired already (checkpoint timeout too short?)",
                )
            })?;
        tracing::debug!(checkpoint = %id, "applied without commit");
        self.dns_before
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id.clone(), dns_before);
        Ok(Checkpoint { id, timeout })
    }

    async fn commit(&self, checkpoint: &Checkpoint) -> Result<(), BackendError> {
        self.dns_before
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&checkpoint.id);
        self.helper.commit(&checkpoint.id).await
    }

    async fn rollback(&self, checkpoint: &Checkpoint) -> Result<(), BackendError> {
        self.helper.rollback(&checkpoint.id).await?;
        self.restore_global_dns(&checkpoint.id).await
    }

    async fn rollback_stale(&self) -> Result<(), BackendError> {
        for id in self.checkpoints().await? {
            tracing::info!(checkpoint = %id, "rolling back a checkpoint left open");
            self.helper.rollback(&id).await?;
        }
        Ok(())
    }

    fn changes(&self) -> watch::Receiver<u64> {
        self.changes.clone()
    }
}

/// Bumps `sender` on every NetworkManager signal that may mean a change,
/// for as long as anyone listens; subscribes again when the bus connection
/// ends.
async fn watch_signals(mut connection: Connection, sender: watch::Sender<u64>) {
    loop {
        match subscribe(&connection).await {
            Ok(mut stream) => {
                while let Some(message) = stream.next().await {
                    let Ok(message) = message else { continue };
                    let header = message.header();
                    let interesting = header
                        .member()
                        .is_some_and(|member| CHANGE_SIGNALS.contains(&member.as_str()));
                    if interesting {
                        sender.send_modify(|count| *count = count.wrapping_add(1));
                    }
                    if sender.is_closed() {
                        return;
                    }
                }
                tracing::warn!("NetworkManager signal stream ended; subscribing again");
            }
            Err(e) => tracing::warn!(error = %e, "cannot subscribe to NetworkManager signals"),
        }
        if sender.is_closed() {
            return;
        }
        // Whatever was missed while unsubscribed counts as a change.
        sender.send_modify(|count| *count = count.wrapping_add(1));
        tokio::time::sleep(RESUBSCRIBE_DELAY).await;
        match Connection::system().await {
            Ok(fresh) => connection = fresh,
            Err(e) => tracing::warn!(error = %e, "cannot reach the system bus"),
        }
    }
}

/// A stream of NetworkManager's signals on its own objects (the manager,
/// devices, active connections and their IP configurations).
async fn subscribe(connection: &Connection) -> zbus::Result<MessageStream> {
    let rule = MatchRule::builder()
        .msg_type(MessageType::Signal)
        .sender(NM_SERVICE)?
        .path_namespace(NM_PATH)?
        .build();
    MessageStream::for_match_rule(rule, connection, None).await
}

fn dbus_error(error: zbus::Error) -> BackendError {
    BackendError::new(format!("D-Bus system bus: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nmstate_version_matches_the_lock_file() {
        let lock = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.lock"))
            .expect("the workspace's Cargo.lock");
        let locked = lock
            .split("[[package]]")
            .find(|package| package.contains("\nname = \"nmstate\"\n"))
            .and_then(|package| {
                package
                    .lines()
                    .find_map(|line| line.strip_prefix("version = \""))
                    .map(|version| version.trim_end_matches('"').to_owned())
            })
            .expect("nmstate in Cargo.lock");
        assert_eq!(NMSTATE_VERSION, locked);
    }
}
