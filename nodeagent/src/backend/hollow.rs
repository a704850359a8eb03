//! The `hollow` backend: a simulated node held in memory, like kubemark's
//! hollow kubelet, for scale and rollout tests without real networks.
//!
//! It starts with a realistic state: `lo`, `eth0`..`eth<N-1>` (ethernet,
//! up), an IPv4 address from the documentation range 192.0.2.0/24 on `eth0`,
//! a default route through `eth0` and one name server; or with the state
//! its caller gives ([`HollowOptions::initial_state`], e.g. a node as big
//! as a real one for the scale benchmark). None of these addresses is ever
//! used for traffic: the simulator sends nothing.
//!
//! Applying is a simplification of nmstate's merge, good enough for a
//! simulator: each desired interface with `state: absent` is removed, any
//! other is merged key by key into the interface of the same name (objects
//! merge recursively, everything else is replaced) or appended; desired
//! `routes.config` entries are added to the configured and running routes
//! (or removed with `state: absent`); a desired `dns-resolver.config`
//! replaces the configured and running DNS settings. The apply takes
//! `apply_delay`, and fails without changing anything when the desired
//! state's JSON contains `fail_marker`, or at random with
//! `fail_probability` (seeded, so runs repeat).
//!
//! Checkpoints: the state from before an apply is kept until commit; a
//! rollback, or a timer after the checkpoint timeout, restores it.

use std::{
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use async_trait::async_trait;
use nmstate_openapi::State;
use rand::{RngExt, SeedableRng, rngs::StdRng};
use serde_json::{Map, Value, json};
use tokio::{sync::watch, task::JoinHandle};

use super::{Backend, BackendError, Checkpoint, Versions};

/// Options of the hollow backend (`--hollow-*` flags).
#[derive(Clone, Debug, PartialEq)]
pub struct HollowOptions {
    /// Ethernet interfaces the node starts with (`eth0`, `eth1`, ...).
    pub interfaces: usize,
    /// How long an apply takes.
    pub apply_delay: Duration,
    /// Every apply whose desired state (as JSON) contains this text fails.
    pub fail_marker: Option<String>,
    /// The probability that any other apply fails.
    pub fail_probability: f64,
    /// Seed of the random failures.
    pub seed: u64,
    /// The state the node starts with (an nmstate document); `None`
    /// builds one from `interfaces`.
    pub initial_state: Option<Value>,
}

impl Default for HollowOptions {
    fn default() -> Self {
        Self {
            interfaces: 3,
            apply_delay: Duration::from_millis(100),
            fail_marker: None,
            fail_probability: 0.0,
            seed: 0,
            initial_state: None,
        }
    }
}

/// The version the hollow backend reports as its nmstate version.
const HOLLOW_VERSION: &str = concat!("hollow-", env!("CARGO_PKG_VERSION"));

/// A simulated node.
#[derive(Debug)]
pub struct Hollow {
    inner: Arc<Mutex<Inner>>,
    changes: Arc<watch::Sender<u64>>,
    options: HollowOptions,
}

#[derive(Debug)]
struct Inner {
    state: Value,
    open: Option<OpenCheckpoint>,
    rng: StdRng,
    next_id: u64,
}

#[derive(Debug)]
struct OpenCheckpoint {
    id: String,
    before: Value,
    timer: JoinHandle<()>,
}

impl Hollow {
    /// A node named `node` in its starting state.
    pub fn new(node: &str, mut options: HollowOptions) -> Self {
        let (changes, _) = watch::channel(0);
        let state = options
            .initial_state
            .take()
            .unwrap_or_else(|| initial_state(node, options.interfaces));
        Self {
            inner: Arc::new(Mutex::new(Inner {
                state,
                open: None,
                rng: StdRng::seed_from_u64(options.seed),
                next_id: 1,
            })),
            changes: Arc::new(changes),
            options,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        lock(&self.inner)
    }
}

/// The simulator's lock is never held across an await and nothing in it
/// panics, so a poisoned lock still holds a consistent state.
fn lock(inner: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    inner
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn notify(changes: &watch::Sender<u64>) {
    changes.send_modify(|counter| *counter = counter.wrapping_add(1));
}

#[async_trait]
impl Backend for Hollow {
    fn name(&self) -> &'static str {
        "hollow"
    }

    async fn retrieve(&self) -> Result<State, BackendError> {
        Ok(State(self.lock().state.clone()))
    }

    async fn versions(&self) -> Versions {
        Versions {
            host_network_manager: None,
            handler_network_manager: None,
            handler_nmstate: Some(HOLLOW_VERSION.to_owned()),
        }
    }

    async fn apply(&self, desired: &State, timeout: Duration) -> Result<Checkpoint, BackendError> {
        tokio::time::sleep(self.options.apply_delay).await;
        let text = desired.0.to_string();
        let mut inner = self.lock();
        if inner.open.is_some() {
            return Err(BackendError::new(
                "a checkpoint is already open: commit or roll it back first",
            ));
        }
        if let Some(marker) = &self.options.fail_marker
            && text.contains(marker.as_str())
        {
            return Err(BackendError::new(format!(
                "hollow node: injected failure: the desired state contains {marker:?}"
            )));
        }
        if self.options.fail_probability > 0.0 {
            let probability = self.options.fail_probability.clamp(0.0, 1.0);
            if inner.rng.random_bool(probability) {
                return Err(BackendError::new(
                    "hollow node: injected random failure".to_owned(),
                ));
            }
        }
        let merged = merge_state(&inner.state, &desired.0)?;
        let before = std::mem::replace(&mut inner.state, merged);
        let id = format!("hollow-checkpoint-{}", inner.next_id);
        inner.next_id += 1;
        // The timer rolls back by itself, as a NetworkManager checkpoint.
        let timer = {
            let shared = Arc::clone(&self.inner);
            let changes = Arc::clone(&self.changes);
            let id = id.clone();
            tokio::spawn(async move {
                tokio::time::sleep(timeout).await;
                let mut inner = lock(&shared);
                if inner.open.as_ref().is_some_and(|open| open.id == id)
                    && let Some(open) = inner.open.take()
                {
                    inner.state = open.before;
                    drop(inner);
                    tracing::warn!(checkpoint = %id, "hollow checkpoint timed out: rolled back");
                    notify(&changes);
                }
            })
        };
        inner.open = Some(OpenCheckpoint {
            id: id.clone(),
            before,
            timer,
        });
        drop(inner);
        notify(&self.changes);
        Ok(Checkpoint { id, timeout })
    }

    async fn commit(&self, checkpoint: &Checkpoint) -> Result<(), BackendError> {
        let mut inner = self.lock();
        match inner.open.take() {
            Some(open) if open.id == checkpoint.id => {
                open.timer.abort();
                Ok(())
            }
            other => {
                inner.open = other;
                Err(BackendError::new(format!(
                    "checkpoint {} does not exist (it expired and was rolled back)",
                    checkpoint.id
                )))
            }
        }
    }

    async fn rollback(&self, checkpoint: &Checkpoint) -> Result<(), BackendError> {
        let mut inner = self.lock();
        match inner.open.take() {
            Some(open) if open.id == checkpoint.id => {
                open.timer.abort();
                inner.state = open.before;
                drop(inner);
                notify(&self.changes);
                Ok(())
            }
            other => {
                inner.open = other;
                Err(BackendError::new(format!(
                    "checkpoint {} does not exist (it expired and was rolled back)",
                    checkpoint.id
                )))
            }
        }
    }

    async fn rollback_stale(&self) -> Result<(), BackendError> {
        // The simulated node lives as long as the process: the only stale
        // checkpoint can be one this process left open.
        let mut inner = self.lock();
        if let Some(open) = inner.open.take() {
            open.timer.abort();
            inner.state = open.before;
            drop(inner);
            notify(&self.changes);
        }
        Ok(())
    }

    fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }
}

/// The starting state of hollow node `node` with `count` ethernet
/// interfaces.
fn initial_state(node: &str, count: usize) -> Value {
    // A per-node byte keeps MAC addresses distinct between hollow nodes.
    let node_byte = nmstate_openapi::enactment_name(node, "x")
        .bytes()
        .fold(0u8, |acc, byte| acc.wrapping_mul(31).wrapping_add(byte));
    let mut interfaces = vec![json!({
        "name": "lo",
        "type": "loopback",
        "state": "up",
        "mac-address": "00:00:00:00:00:00",
        "mtu": 65536,
        "ipv4": {"enabled": true, "address": [{"ip": "127.0.0.1", "prefix-length": 8}]},
        "ipv6": {"enabled": true, "address": [{"ip": "::1", "prefix-length": 128}]},
    })];
    for index in 0..count {
        let mut interface = json!({
            "name": format!("eth{index}"),
            "type": "ethernet",
            "state": "up",
            "mac-address": format!("02:00:00:{node_byte:02X}:{:02X}:{:02X}", index / 256, index % 256),
            "mtu": 1500,
            "ipv4": {"enabled": false},
            "ipv6": {"enabled": false},
        });
        if index == 0 {
            interface["ipv4"] = json!({
                "enabled": true,
                "dhcp": false,
                "address": [{"ip": "192.0.2.10", "prefix-length": 24}],
            });
        }
        interfaces.push(interface);
    }
    let default_route = json!({
        "destination": "0.0.0.0/0",
        "next-hop-address": "192.0.2.1",
        "next-hop-interface": "eth0",
        "metric": 100,
        "table-id": 254,
    });
    let mut state = json!({
        "dns-resolver": {
            "config": {"search": [], "server": ["192.0.2.53"]},
            "running": {"search": [], "server": ["192.0.2.53"]},
        },
        "route-rules": {"config": []},
        "routes": {"config": [], "running": []},
        "interfaces": interfaces,
    });
    if count > 0 {
        state["routes"] = json!({"config": [default_route.clone()], "running": [default_route]});
    }
    state
}

/// `desired` merged into `current` as the module doc says.
fn merge_state(current: &Value, desired: &Value) -> Result<Value, BackendError> {
    let mut state = current.clone();
    let Some(desired) = desired.as_object() else {
        return Err(BackendError::new("the desired state is not a map"));
    };
    if let Some(interfaces) = desired.get("interfaces") {
        let Some(interfaces) = interfaces.as_array() else {
            return Err(BackendError::new("interfaces: expected a list"));
        };
        let list = state["interfaces"]
            .as_array_mut()
            .ok_or_else(|| BackendError::new("current interfaces are not a list"))?;
        for interface in interfaces {
            let Some(name) = interface.get("name").and_then(Value::as_str) else {
                return Err(BackendError::new("interfaces: an interface has no name"));
            };
            let position = list
                .iter()
                .position(|existing| existing.get("name").and_then(Value::as_str) == Some(name));
            let absent = interface.get("state").and_then(Value::as_str) == Some("absent");
            match (position, absent) {
                (Some(at), true) => {
                    list.remove(at);
                }
                (None, true) => {}
                (Some(at), false) => merge_value(&mut list[at], interface),
                (None, false) => {
                    let mut added = interface.clone();
                    if added.get("state").is_none() {
                        added["state"] = json!("up");
                    }
                    list.push(added);
                }
            }
        }
        let names: Vec<String> = list
            .iter()
            .filter_map(|i| i.get("name").and_then(Value::as_str).map(str::to_owned))
            .collect();
        // Routes through a removed interface go with it, as in the kernel.
        for kind in ["config", "running"] {
            if let Some(routes) = state["routes"][kind].as_array_mut() {
                routes.retain(|route| {
                    route
                        .get("next-hop-interface")
                        .and_then(Value::as_str)
                        .is_none_or(|name| names.iter().any(|n| n == name))
                });
            }
        }
    }
    if let Some(routes) = desired.get("routes").and_then(|r| r.get("config")) {
        let Some(routes) = routes.as_array() else {
            return Err(BackendError::new("routes.config: expected a list"));
        };
        for route in routes {
            let absent = route.get("state").and_then(Value::as_str) == Some("absent");
            let mut route = route.clone();
            if let Some(object) = route.as_object_mut() {
                object.remove("state");
            }
            for kind in ["config", "running"] {
                if !state["routes"][kind].is_array() {
                    state["routes"][kind] = json!([]);
                }
                let Some(list) = state["routes"][kind].as_array_mut() else {
                    continue;
                };
                if absent {
                    list.retain(|existing| !route_matches(&route, existing));
                } else if !list.contains(&route) {
                    list.push(route.clone());
                }
            }
        }
    }
    if let Some(config) = desired.get("dns-resolver").and_then(|d| d.get("config")) {
        state["dns-resolver"]["config"] = config.clone();
        state["dns-resolver"]["running"] = config.clone();
    }
    Ok(state)
}

/// Whether `existing` is selected by the absent route `selector`: every key
/// the selector names has the same value.
fn route_matches(selector: &Value, existing: &Value) -> bool {
    selector.as_object().is_some_and(|selector: &Map<_, _>| {
        selector
            .iter()
            .all(|(key, value)| existing.get(key) == Some(value))
    })
}

/// Merges `patch` into `target`: maps recursively, everything else replaced.
fn merge_value(target: &mut Value, patch: &Value) {
    match (target.as_object_mut(), patch.as_object()) {
        (Some(target), Some(patch)) => {
            for (key, value) in patch {
                match target.get_mut(key) {
                    Some(existing) => merge_value(existing, value),
                    None => {
                        target.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        _ => *target = patch.clone(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn hollow(options: HollowOptions) -> Hollow {
        Hollow::new(
            "node-1",
            HollowOptions {
                apply_delay: Duration::ZERO,
                ..options
            },
        )
    }

    fn interface_names(state: &State) -> Vec<String> {
        state.0["interfaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["name"].as_str().unwrap().to_owned())
            .collect()
    }

    const BRIDGE: &str = r#"{"interfaces": [{"name": "br1", "type": "linux-bridge", "state": "up",
        "bridge": {"port": [{"name": "eth1"}]}}],
        "routes": {"config": [{"destination": "198.51.100.0/24", "next-hop-address": "192.0.2.1", "next-hop-interface": "eth0"}]},
        "dns-resolver": {"config": {"server": ["192.0.2.54"]}}}"#;

    #[tokio::test]
    async fn starts_realistic_and_validates_as_nmstate() {
        let backend = hollow(HollowOptions {
            interfaces: 3,
            ..HollowOptions::default()
        });
        let state = backend.retrieve().await.unwrap();
        assert_eq!(interface_names(&state), ["lo", "eth0", "eth1", "eth2"]);
        assert_eq!(
            state.0["routes"]["running"][0]["destination"],
            json!("0.0.0.0/0")
        );
        // The simulated state is a valid nmstate document.
        state.to_network_state().unwrap();
        assert_eq!(
            backend.versions().await.handler_nmstate.as_deref(),
            Some(HOLLOW_VERSION)
        );
    }

    #[tokio::test]
    async fn starts_from_a_given_state() {
        let given = json!({"interfaces": [{"name": "bond0", "type": "bond", "state": "up"}]});
        let backend = hollow(HollowOptions {
            initial_state: Some(given.clone()),
            ..HollowOptions::default()
        });
        assert_eq!(backend.retrieve().await.unwrap().0, given);
    }

    #[tokio::test]
    async fn apply_merges_and_commit_keeps_it() {
        let backend = hollow(HollowOptions::default());
        let mut changes = backend.changes();
        let desired = State(serde_json::from_str(BRIDGE).unwrap());
        let checkpoint = backend
            .apply(&desired, Duration::from_secs(60))
            .await
            .unwrap();
        assert!(changes.has_changed().unwrap());
        changes.mark_unchanged();
        backend.commit(&checkpoint).await.unwrap();
        let state = backend.retrieve().await.unwrap();
        assert_eq!(
            interface_names(&state),
            ["lo", "eth0", "eth1", "eth2", "br1"]
        );
        assert_eq!(state.0["routes"]["running"].as_array().unwrap().len(), 2);
        assert_eq!(
            state.0["dns-resolver"]["running"]["server"],
            json!(["192.0.2.54"])
        );
        state.to_network_state().unwrap();

        // Removing the bridge and eth1 drops them, and routes through eth1.
        let remove = State(json!({"interfaces": [
            {"name": "br1", "state": "absent"},
            {"name": "eth0", "state": "absent"},
        ]}));
        let checkpoint = backend
            .apply(&remove, Duration::from_secs(60))
            .await
            .unwrap();
        backend.commit(&checkpoint).await.unwrap();
        let state = backend.retrieve().await.unwrap();
        assert_eq!(interface_names(&state), ["lo", "eth1", "eth2"]);
        assert_eq!(state.0["routes"]["running"], json!([]));
        // Committing twice is an error, as for an expired checkpoint.
        let error = backend.commit(&checkpoint).await.unwrap_err();
        assert_eq!(
            error.message,
            "checkpoint hollow-checkpoint-2 does not exist (it expired and was rolled back)"
        );
    }

    #[tokio::test]
    async fn rollback_restores_the_state_before() {
        let backend = hollow(HollowOptions::default());
        let before = backend.retrieve().await.unwrap();
        let desired = State(serde_json::from_str(BRIDGE).unwrap());
        let checkpoint = backend
            .apply(&desired, Duration::from_secs(60))
            .await
            .unwrap();
        assert_ne!(backend.retrieve().await.unwrap(), before);
        // A second apply while one is open is refused.
        let error = backend
            .apply(&desired, Duration::from_secs(60))
            .await
            .unwrap_err();
        assert!(error.message.contains("already open"), "{error}");
        backend.rollback(&checkpoint).await.unwrap();
        assert_eq!(backend.retrieve().await.unwrap(), before);
    }

    #[tokio::test(start_paused = true)]
    async fn an_open_checkpoint_rolls_back_after_its_timeout() {
        let backend = hollow(HollowOptions::default());
        let before = backend.retrieve().await.unwrap();
        let desired = State(serde_json::from_str(BRIDGE).unwrap());
        let checkpoint = backend
            .apply(&desired, Duration::from_secs(30))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(29)).await;
        assert_ne!(backend.retrieve().await.unwrap(), before);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(backend.retrieve().await.unwrap(), before);
        assert!(backend.commit(&checkpoint).await.is_err());
    }

    #[tokio::test]
    async fn injected_failures_change_nothing() {
        let backend = hollow(HollowOptions {
            fail_marker: Some("fail-here".into()),
            ..HollowOptions::default()
        });
        let before = backend.retrieve().await.unwrap();
        let desired = State(json!({"interfaces": [{"name": "fail-here", "type": "linux-bridge"}]}));
        let error = backend
            .apply(&desired, Duration::from_secs(60))
            .await
            .unwrap_err();
        assert_eq!(
            error.message,
            r#"hollow node: injected failure: the desired state contains "fail-here""#
        );
        assert_eq!(backend.retrieve().await.unwrap(), before);

        // Probability 1 fails every apply; 0 never does.
        let always = hollow(HollowOptions {
            fail_probability: 1.0,
            ..HollowOptions::default()
        });
        let error = always
            .apply(&State(json!({})), Duration::from_secs(60))
            .await
            .unwrap_err();
        assert_eq!(error.message, "hollow node: injected random failure");
        let never = hollow(HollowOptions::default());
        let checkpoint = never
            .apply(&State(json!({})), Duration::from_secs(60))
            .await
            .unwrap();
        never.commit(&checkpoint).await.unwrap();
    }

    #[tokio::test]
    async fn rollback_stale_closes_an_open_checkpoint() {
        let backend = hollow(HollowOptions::default());
        let before = backend.retrieve().await.unwrap();
        backend
            .apply(
                &State(serde_json::from_str(BRIDGE).unwrap()),
                Duration::from_secs(60),
            )
            .await
            .unwrap();
        backend.rollback_stale().await.unwrap();
        assert_eq!(backend.retrieve().await.unwrap(), before);
        // Nothing open: nothing to do, no error.
        backend.rollback_stale().await.unwrap();
    }
}
