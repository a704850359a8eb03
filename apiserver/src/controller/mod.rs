//! The policy controller (DESIGN.md section 6): turns policies into
//! per-node enactments, renders each once per policy generation, releases
//! them to the nodes' agents in waves of `maxUnavailable`, and aggregates
//! their outcome into the policy's status.
//!
//! It runs inside the apiserver under leader election ([`Store::elect`]:
//! an etcd lease, or always for the embedded store), reads only from the
//! watch caches, and writes straight to the store with compare-and-swap on
//! the revision it read, so a lost race is retried on fresh data and never
//! overwrites an agent's write. The decisions are [`plan::plan`], a pure
//! function; this module is the loop around it:
//! - one watcher per cache marks policies dirty: a policy event marks that
//!   policy, an enactment event its policy, a node state event every policy
//!   but only when the node's labels, liveness or presence of a state
//!   changed (heartbeats and state reports alone do not), and a periodic
//!   resync catches heartbeats that expire;
//! - dirty policies are reconciled in batches after a short debounce, each
//!   batch on one snapshot of the caches, after the caches have caught up
//!   with the controller's own writes, so a settled policy costs no writes
//!   and a 1 000-node rollout costs O(nodes) writes per generation;
//! - with a cluster, each reconcile also compares what it sees of the
//!   policy and its enactments with what it saw last ([`events::announce`],
//!   pure) and hands the Events that follows to [`recorder`], which writes
//!   them to kube-apiserver in the background. Standalone it reports none.
//!
//! [`Store::elect`]: crate::storage::Store::elect

pub mod events;
pub mod nodes;
pub mod plan;
pub mod recorder;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::Arc,
    time::Duration,
};

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use nmstate_openapi::{
    Condition, ConditionStatus, ConditionType, ENACTMENT_POLICY_LABEL,
    NodeNetworkConfigurationEnactment, NodeNetworkConfigurationEnactmentStatus,
    NodeNetworkConfigurationPolicy, NodeNetworkConfigurationPolicyStatus, ResourceKind, Time,
};
use serde::Deserialize;
use serde_json::Value;

use crate::{
    cache::{CacheEvent, CacheWatcher, CachedObject, WatchFilter},
    rules::object::{self, UpdateScope, prepare_create, prepare_update},
    state::AppState,
    storage::{self, Revision, object_key},
};

use self::{
    events::{EnactmentView, Memory, PolicyView},
    nodes::NodeLabels,
    plan::{Action, Existing, Node, Plan, Policy},
    recorder::EventSink,
};
use tokio::sync::watch;

/// The election the controller replicas campaign in.
pub const ELECTION: &str = "policy-controller";

/// How the controller runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControllerConfig {
    /// This replica's name in the election.
    pub identity: String,
    /// How old a node's `Ready` heartbeat may be before the node counts as
    /// NotReady (its agent renews it at most once a minute).
    pub heartbeat_grace: Duration,
    /// How often every policy is reconciled even without events (expired
    /// heartbeats have no event).
    pub resync: Duration,
    /// How long to gather events before reconciling.
    pub debounce: Duration,
    /// Writes in flight at once.
    pub write_concurrency: usize,
    /// The kube-apiserver whose Node objects are the nodes (their labels
    /// select them), when the server runs in a cluster; `None`: the
    /// NodeNetworkState objects are the nodes and their labels select them
    /// (standalone).
    pub nodes: Option<crate::auth::cluster::ClusterAccess>,
    /// The kube-apiserver the policies' and enactments' Events are written
    /// to; `None` (standalone): no events, the same facts are in the
    /// objects' conditions.
    pub events: Option<crate::auth::cluster::ClusterAccess>,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        Self {
            identity: format!("nmstate-apiserver-{}", uuid::Uuid::new_v4()),
            heartbeat_grace: Duration::from_secs(180),
            resync: Duration::from_secs(30),
            debounce: Duration::from_millis(50),
            write_concurrency: 16,
            nodes: None,
            events: None,
        }
    }
}

/// Starts the controller in the background; it stops when the server shuts
/// down.
pub fn start(state: Arc<AppState>, config: ControllerConfig) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let cluster_nodes = match &config.nodes {
            None => None,
            Some(access) => {
                let shutdown = {
                    let state = state.clone();
                    async move { state.shutdown_requested().await }
                };
                match nodes::watch_nodes(access, shutdown) {
                    Ok(receiver) => {
                        tracing::info!(%access, "policy controller: nodes and their labels are the cluster's Node objects");
                        Some(receiver)
                    }
                    Err(error) => {
                        // Selecting by labels the nodes set themselves
                        // would be worse than not acting.
                        tracing::error!(%error, "policy controller: cannot reach the cluster's Nodes; not running");
                        return;
                    }
                }
            }
        };
        let (sink, writer) = match &config.events {
            None => (None, None),
            Some(access) => match recorder::connect(access, &config.identity).await {
                Ok((sink, writer)) => (Some(sink), Some(writer)),
                Err(error) => {
                    // The conditions still say everything; events are a
                    // convenience not worth stopping the controller for.
                    tracing::warn!(%error, "policy controller: no events will be written");
                    (None, None)
                }
            },
        };
        let writer = async move {
            match writer {
                Some(writer) => writer.await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = lead(&state, &config, cluster_nodes.as_ref(), sink.as_ref()) => {}
            () = writer => {}
            () = state.shutdown_requested() => {}
        }
    })
}

/// Campaigns, and while leading runs the reconcile loop; campaigns again
/// when leadership is lost.
async fn lead(
    state: &Arc<AppState>,
    config: &ControllerConfig,
    cluster_nodes: Option<&watch::Receiver<Option<NodeLabels>>>,
    events: Option<&EventSink>,
) {
    loop {
        let mut leadership = match state.store.elect(ELECTION, &config.identity).await {
            Ok(leadership) => leadership,
            Err(error) => {
                tracing::warn!(%error, "policy controller: election failed, retrying");
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
        };
        tracing::info!(identity = %config.identity, "policy controller: leading");
        state.metrics.set_controller_leader(true);
        let shutdown = tokio::select! {
            () = leadership.lost() => {
                tracing::warn!("policy controller: leadership lost");
                false
            }
            () = run_while_leading(state, config, cluster_nodes, events) => false,
            () = state.shutdown_requested() => true,
        };
        state.metrics.set_controller_leader(false);
        if shutdown {
            leadership.resign().await;
            return;
        }
        drop(leadership);
    }
}

/// Runs the loop, starting it over after errors (a watch that fell too far
/// behind, a cache restarting).
async fn run_while_leading(
    state: &Arc<AppState>,
    config: &ControllerConfig,
    cluster_nodes: Option<&watch::Receiver<Option<NodeLabels>>>,
    events: Option<&EventSink>,
) {
    loop {
        let reconciler = Reconciler::new(state.clone(), config.clone(), events.cloned());
        if let Err(error) = reconciler.run(cluster_nodes.cloned()).await {
            tracing::warn!(%error, "policy controller: restarting its loop");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// Why the loop stopped.
#[derive(Debug, thiserror::Error)]
enum LoopError {
    #[error("watch cache: {0}")]
    Cache(String),
    #[error("store: {0}")]
    Store(#[from] storage::Error),
    #[error("the cluster's Node list stopped")]
    NodesStopped,
}

/// What the controller last saw of a node: what selection and release
/// depend on.
#[derive(Clone, Debug, PartialEq, Eq)]
struct NodeKey {
    /// The revision of the node state it was read from.
    revision: Revision,
    labels: BTreeMap<String, String>,
    /// The `Ready` condition is true.
    ready: bool,
    /// Its `lastHeartbeatTime`, in seconds.
    heartbeat: Option<i64>,
    has_state: bool,
}

impl NodeKey {
    fn of(object: &CachedObject) -> Self {
        let (ready, heartbeat) = ready_heartbeat(object);
        NodeKey {
            revision: object.revision,
            labels: object.labels.clone(),
            ready,
            heartbeat,
            has_state: object.current_state().is_some(),
        }
    }

    /// Whether the node counts as alive at `now` (seconds): `Ready` and a
    /// heartbeat at most `grace` seconds old.
    fn alive(&self, now: i64, grace: i64) -> bool {
        self.ready
            && self
                .heartbeat
                .is_some_and(|heartbeat| now - heartbeat <= grace)
    }

    /// Whether the node changed, from `self` to `next`, in a way that
    /// matters to the policies at `now`: its labels, whether it has a
    /// state, or whether it is alive. A heartbeat renewal of a live node is
    /// no change (with thousands of nodes, every renewal would reconcile
    /// every policy); the renewal of a node that went dark is one, and
    /// expiry without an event is caught by the resync.
    fn differs(&self, next: &NodeKey, now: i64, grace: i64) -> bool {
        self.labels != next.labels
            || self.has_state != next.has_state
            || self.alive(now, grace) != next.alive(now, grace)
    }
}

/// Whether `object`'s `Ready` condition is true, and its heartbeat time in
/// seconds. Every batch asks this of every node state, so only the `Ready`
/// condition is decoded, in place.
fn ready_heartbeat(object: &CachedObject) -> (bool, Option<i64>) {
    let ready = object
        .summary()
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|condition| {
            condition.get("type").and_then(Value::as_str) == Some(ConditionType::Ready.as_str())
        })
        .and_then(|condition| Condition::deserialize(condition).ok());
    match ready {
        Some(ready) => (
            ready.status == ConditionStatus::True,
            ready.last_heartbeat_time.map(|time| time.0.as_second()),
        ),
        None => (false, None),
    }
}

struct Reconciler {
    state: Arc<AppState>,
    config: ControllerConfig,
    /// Policies to reconcile in the next batch.
    dirty: BTreeSet<String>,
    /// Reconcile every policy in the next batch.
    all_dirty: bool,
    /// What was last seen of each node.
    nodes: HashMap<String, NodeKey>,
    /// With a cluster, its Nodes' labels (the only labels that select);
    /// `None` standalone.
    cluster_labels: Option<NodeLabels>,
    /// The highest revision the controller wrote (or lost a race at): the
    /// next batch waits for the caches to reach it.
    written: Revision,
    /// Where events go, with a cluster.
    events: Option<EventSink>,
    /// What each policy's last reconcile saw, to report only changes.
    seen: HashMap<String, Memory>,
    /// Each enactment's status, decoded, with the revision it was decoded
    /// at: a batch decodes only the enactments that changed since the
    /// last one (thousands of them would otherwise be decoded on every
    /// batch of a rollout).
    decoded: HashMap<String, (Revision, NodeNetworkConfigurationEnactmentStatus)>,
}

impl Reconciler {
    fn new(state: Arc<AppState>, config: ControllerConfig, events: Option<EventSink>) -> Self {
        Self {
            state,
            config,
            dirty: BTreeSet::new(),
            all_dirty: true,
            nodes: HashMap::new(),
            cluster_labels: None,
            written: 0,
            events,
            seen: HashMap::new(),
            decoded: HashMap::new(),
        }
    }

    fn watch(&self, kind: ResourceKind) -> Result<CacheWatcher, LoopError> {
        let cache = self.state.caches.get(kind);
        let (_, objects, watcher) = cache
            .snapshot_and_watch(WatchFilter::everything())
            .map_err(|e| LoopError::Cache(e.to_string()))?;
        drop(objects);
        Ok(watcher)
    }

    async fn run(
        mut self,
        mut cluster_nodes: Option<watch::Receiver<Option<NodeLabels>>>,
    ) -> Result<(), LoopError> {
        if let Some(receiver) = &mut cluster_nodes {
            // Nothing is selected before the Nodes were read: an empty
            // registry would take every enactment away.
            let labels = receiver
                .wait_for(Option::is_some)
                .await
                .map_err(|_| LoopError::NodesStopped)?
                .clone();
            self.cluster_labels = labels;
        }
        self.wait_for_caches().await?;
        let mut policies = self.watch(ResourceKind::NodeNetworkConfigurationPolicy)?;
        let mut states = self.watch(ResourceKind::NodeNetworkState)?;
        let mut enactments = self.watch(ResourceKind::NodeNetworkConfigurationEnactment)?;
        let (_, current) = self
            .state
            .caches
            .get(ResourceKind::NodeNetworkState)
            .snapshot();
        for object in current {
            self.nodes.insert(object.name.clone(), NodeKey::of(&object));
        }
        let mut resync = tokio::time::interval(self.config.resync);
        resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // When the next batch is due: `debounce` after the first event
        // since the last batch. A deadline, not a sleep started again on
        // every event: with thousands of nodes the events (heartbeats,
        // state reports, enactment updates) come faster than the debounce,
        // and a restarted sleep would hold every batch back until a lull.
        let mut due: Option<tokio::time::Instant> = None;
        loop {
            let pending = self.all_dirty || !self.dirty.is_empty();
            if pending && due.is_none() {
                due = Some(tokio::time::Instant::now() + self.config.debounce);
            }
            let batch_due = due.unwrap_or_else(tokio::time::Instant::now);
            tokio::select! {
                event = policies.next() => {
                    let event = event.map_err(|end| LoopError::Cache(format!("{end:?}")))?;
                    if let Some(object) = event.object() {
                        self.dirty.insert(object.name.clone());
                    }
                }
                event = enactments.next() => {
                    let event = event.map_err(|end| LoopError::Cache(format!("{end:?}")))?;
                    if let Some(policy) = event
                        .object()
                        .and_then(|object| object.labels.get(ENACTMENT_POLICY_LABEL))
                    {
                        self.dirty.insert(policy.clone());
                    }
                }
                event = states.next() => {
                    let event = event.map_err(|end| LoopError::Cache(format!("{end:?}")))?;
                    self.node_event(&event);
                }
                changed = node_labels_changed(cluster_nodes.as_mut()) => {
                    self.cluster_labels = changed?;
                    self.all_dirty = true;
                }
                _ = resync.tick() => self.all_dirty = true,
                () = tokio::time::sleep_until(batch_due), if pending => {
                    due = None;
                    self.reconcile_batch().await?;
                }
            }
        }
    }

    fn node_event(&mut self, event: &CacheEvent) {
        match event {
            CacheEvent::Added(object) | CacheEvent::Modified(object) => {
                let key = NodeKey::of(object);
                let now = time_now().0.as_second();
                let grace = self.grace_seconds();
                if self
                    .nodes
                    .get(&object.name)
                    .is_none_or(|seen| seen.differs(&key, now, grace))
                {
                    self.all_dirty = true;
                }
                self.nodes.insert(object.name.clone(), key);
            }
            CacheEvent::Deleted(object) => {
                self.nodes.remove(&object.name);
                self.all_dirty = true;
            }
            CacheEvent::Bookmark(_) => {}
        }
    }

    fn grace_seconds(&self) -> i64 {
        i64::try_from(self.config.heartbeat_grace.as_secs()).unwrap_or(i64::MAX)
    }

    /// Waits until every cache is ready and has seen the store's current
    /// revision (or at least the controller's last write).
    async fn wait_for_caches(&self) -> Result<(), LoopError> {
        let revision = self.state.store.current_revision().await?.max(self.written);
        for kind in ResourceKind::ALL {
            self.state
                .caches
                .get(kind)
                .wait_until_fresh(revision, Duration::from_secs(60))
                .await
                .map_err(|e| LoopError::Cache(e.to_string()))?;
        }
        Ok(())
    }

    async fn reconcile_batch(&mut self) -> Result<(), LoopError> {
        if self.written > 0 {
            self.wait_for_caches().await?;
        }
        let caches = &self.state.caches;
        let (_, policies) = caches
            .get(ResourceKind::NodeNetworkConfigurationPolicy)
            .snapshot();
        let (_, states) = caches.get(ResourceKind::NodeNetworkState).snapshot();
        let (_, enactments) = caches
            .get(ResourceKind::NodeNetworkConfigurationEnactment)
            .snapshot();

        let mut names = std::mem::take(&mut self.dirty);
        if std::mem::take(&mut self.all_dirty) {
            names.extend(policies.iter().map(|policy| policy.name.clone()));
            // Enactments of policies that no longer exist.
            names.extend(
                enactments
                    .iter()
                    .filter_map(|e| e.labels.get(ENACTMENT_POLICY_LABEL).cloned()),
            );
        }
        self.state.metrics.set_controller_queue(names.len());
        if names.is_empty() {
            return Ok(());
        }

        let now = time_now();
        let grace = self.grace_seconds();
        let cluster_labels = self.cluster_labels.clone();
        let known_nodes = &self.nodes;
        let nodes: Vec<Node<'_>> = states
            .iter()
            .filter_map(|object| {
                let labels = match &cluster_labels {
                    None => &object.labels,
                    // A state without a Node is no node of the cluster.
                    Some(cluster) => cluster.get(&object.name)?,
                };
                Some(node_of(
                    object,
                    labels,
                    known_nodes.get(&object.name),
                    &now,
                    grace,
                ))
            })
            .collect();
        let mut by_policy: HashMap<&str, Vec<&Arc<CachedObject>>> = HashMap::new();
        for enactment in &enactments {
            if let Some(policy) = enactment.labels.get(ENACTMENT_POLICY_LABEL)
                && names.contains(policy)
            {
                by_policy.entry(policy).or_default().push(enactment);
            }
        }

        for object in by_policy.values().flatten() {
            let fresh = self
                .decoded
                .get(&object.name)
                .is_some_and(|(revision, _)| *revision == object.revision);
            if !fresh {
                self.decoded.insert(
                    object.name.clone(),
                    (object.revision, enactment_status(object)),
                );
            }
        }
        if self.decoded.len() > enactments.len() {
            let present: std::collections::HashSet<&str> =
                enactments.iter().map(|e| e.name.as_str()).collect();
            self.decoded
                .retain(|name, _| present.contains(name.as_str()));
        }

        let policy_cache = caches.get(ResourceKind::NodeNetworkConfigurationPolicy);
        let mut writes = Vec::new();
        for name in &names {
            let mut existing: Vec<Existing<'_>> = Vec::new();
            let mut uids: Vec<&str> = Vec::new();
            for object in by_policy.get(name.as_str()).into_iter().flatten() {
                if let Some(enactment) = existing_of(object, &self.decoded) {
                    // Only events name uids (a lookup in each object's
                    // metadata, for thousands of them on every batch).
                    if self.events.is_some() {
                        uids.push(uid_of(object));
                    }
                    existing.push(enactment);
                }
            }
            let policy_object = policy_cache.get(name);
            let decoded = policy_object.as_ref().and_then(|object| {
                serde_json::from_value::<NodeNetworkConfigurationPolicy>(object.to_value())
                    .map_err(|error| {
                        tracing::warn!(policy = %name, %error, "policy controller: undecodable policy");
                    })
                    .ok()
            });
            let (Some(object), Some(policy)) = (policy_object, decoded) else {
                // Deleted policy: its enactments go.
                self.seen.remove(name);
                for enactment in existing {
                    writes.push(Write::Enactment(
                        name.clone(),
                        Action::Delete {
                            name: enactment.name.to_owned(),
                            revision: enactment.revision,
                        },
                    ));
                }
                continue;
            };
            if object::meta_str(object.summary(), "deletionTimestamp").is_some() {
                continue;
            }
            let plan = plan::plan(
                &Policy {
                    name,
                    generation: policy.metadata.generation.unwrap_or(1),
                    spec: &policy.spec,
                    status: policy.status.as_ref(),
                },
                &nodes,
                &existing,
                &now,
                self.state.render,
            );
            self.state.metrics.controller_reconciled();
            if let Some(sink) = &self.events {
                let enactments: Vec<EnactmentView<'_>> = existing
                    .iter()
                    .zip(&uids)
                    .map(|(enactment, uid)| EnactmentView {
                        name: enactment.name,
                        uid,
                        node: enactment.node,
                        status: enactment.status,
                    })
                    .collect();
                let view = PolicyView {
                    name,
                    uid: uid_of(&object),
                    generation: policy.metadata.generation.unwrap_or(1),
                    status: policy.status.as_ref(),
                };
                let before = self.seen.remove(name).unwrap_or_default();
                let (announcements, seen) = events::announce(&view, &enactments, &before, &now);
                self.seen.insert(name.clone(), seen);
                for announcement in announcements {
                    sink.send(announcement);
                }
            }
            let Plan {
                actions,
                policy_status,
                ..
            } = plan;
            writes.extend(
                actions
                    .into_iter()
                    .map(|action| Write::Enactment(name.clone(), action)),
            );
            if let Some(status) = policy_status {
                writes.push(Write::PolicyStatus {
                    object: object.clone(),
                    status,
                });
            }
        }
        drop(nodes);
        self.execute(writes).await
    }

    /// Makes the writes, several at a time. A lost race (conflict, already
    /// exists, gone) marks the policy for another round on fresh data.
    async fn execute(&mut self, writes: Vec<Write>) -> Result<(), LoopError> {
        if writes.is_empty() {
            return Ok(());
        }
        let state = &self.state;
        let results: Vec<(String, Result<Revision, storage::Error>)> =
            futures::stream::iter(writes)
                .map(|write| async move {
                    let policy = write.policy();
                    (policy, write.apply(state).await)
                })
                .buffer_unordered(self.config.write_concurrency.max(1))
                .collect()
                .await;
        let mut unavailable = None;
        for (policy, result) in results {
            match result {
                Ok(revision) => {
                    self.written = self.written.max(revision);
                    self.state.metrics.controller_wrote(true);
                }
                Err(error) => {
                    self.state.metrics.controller_wrote(false);
                    tracing::debug!(%policy, %error, "policy controller: write lost, retrying");
                    self.dirty.insert(policy);
                    if error.is_retryable() {
                        unavailable = Some(error);
                    } else {
                        // Make the next batch wait for the caches to see
                        // whatever we raced with.
                        self.written = self.written.max(1);
                    }
                }
            }
        }
        match unavailable {
            Some(error) => Err(error.into()),
            None => Ok(()),
        }
    }
}

/// A node from its NodeNetworkState, with the labels that select it.
/// Whether it is alive comes from `known`, what the controller's watch
/// last saw of it, when that was this revision: every batch looks at every
/// node, and reading the `Ready` condition again for thousands of nodes
/// many times a second was most of a rollout's controller time.
fn node_of<'a>(
    object: &'a CachedObject,
    labels: &'a BTreeMap<String, String>,
    known: Option<&NodeKey>,
    now: &Time,
    grace_seconds: i64,
) -> Node<'a> {
    let (ready, heartbeat) = match known {
        Some(key) if key.revision == object.revision => (key.ready, key.heartbeat),
        _ => ready_heartbeat(object),
    };
    let key = NodeKey {
        revision: object.revision,
        labels: BTreeMap::new(),
        ready,
        heartbeat,
        has_state: false,
    };
    Node {
        name: &object.name,
        labels,
        alive: key.alive(now.0.as_second(), grace_seconds),
        current_state: object.current_state(),
    }
}

/// The cluster's Node labels once they changed; never without a cluster.
async fn node_labels_changed(
    receiver: Option<&mut watch::Receiver<Option<NodeLabels>>>,
) -> Result<Option<NodeLabels>, LoopError> {
    let Some(receiver) = receiver else {
        return std::future::pending().await;
    };
    receiver
        .changed()
        .await
        .map_err(|_| LoopError::NodesStopped)?;
    Ok(receiver.borrow_and_update().clone())
}

/// An enactment from the cache, if it is one the controller can read,
/// with its status from `decoded` (which must hold it).
fn existing_of<'a>(
    object: &'a CachedObject,
    decoded: &'a HashMap<String, (Revision, NodeNetworkConfigurationEnactmentStatus)>,
) -> Option<Existing<'a>> {
    let node = object
        .labels
        .get(nmstate_openapi::ENACTMENT_NODE_LABEL)?
        .as_str();
    let (_, status) = decoded.get(&object.name)?;
    Some(Existing {
        name: &object.name,
        node,
        revision: object.revision,
        status,
    })
}

/// An enactment's status, decoded (the default if it has none or it does
/// not decode).
fn enactment_status(object: &CachedObject) -> NodeNetworkConfigurationEnactmentStatus {
    object
        .summary()
        .get("status")
        .and_then(|status| NodeNetworkConfigurationEnactmentStatus::deserialize(status).ok())
        .unwrap_or_default()
}

/// An object's `metadata.uid` (empty if it has none).
fn uid_of(object: &CachedObject) -> &str {
    object::meta_str(object.summary(), "uid").unwrap_or_default()
}

/// One write of a batch.
enum Write {
    /// A write to an enactment of the named policy.
    Enactment(String, Action),
    PolicyStatus {
        object: Arc<CachedObject>,
        status: NodeNetworkConfigurationPolicyStatus,
    },
}

impl Write {
    /// The policy the write is about (for requeueing).
    fn policy(&self) -> String {
        match self {
            Write::Enactment(policy, _) => policy.clone(),
            Write::PolicyStatus { object, .. } => object.name.clone(),
        }
    }

    async fn apply(self, state: &AppState) -> Result<Revision, storage::Error> {
        let enactments = ResourceKind::NodeNetworkConfigurationEnactment;
        let store = &state.store;
        match self {
            Write::Enactment(policy, Action::Create { name, node, status }) => {
                let mut enactment =
                    NodeNetworkConfigurationEnactment::new(&node, &policy, &time_now());
                enactment.metadata.name = Some(name.clone());
                // Owned by the policy, as upstream: `kubectl get nnce -o
                // yaml` shows where it comes from. (The controller deletes
                // enactments itself; there is no garbage collector here.)
                let owner = state
                    .caches
                    .get(ResourceKind::NodeNetworkConfigurationPolicy)
                    .get(&policy)
                    .and_then(|object| {
                        object::meta_str(object.summary(), "uid").map(str::to_owned)
                    });
                if let Some(uid) = owner {
                    enactment.metadata.owner_references = Some(vec![OwnerReference {
                        api_version: nmstate_openapi::api_version(nmstate_openapi::V1)
                            .unwrap_or_default()
                            .to_owned(),
                        kind: ResourceKind::NodeNetworkConfigurationPolicy
                            .kind()
                            .to_owned(),
                        name: policy.clone(),
                        uid,
                        controller: Some(true),
                        block_owner_deletion: None,
                    }]);
                }
                let mut value = to_value(&enactment)?;
                value = prepare_create(enactments, value, &object::now())
                    .map_err(|e| internal(&name, e))?;
                set_status(&mut value, &status)?;
                let key = object_key(enactments.plural(), &name);
                write_registered(state, enactments, &name, value, async |bytes| {
                    store.create(&key, bytes).await
                })
                .await
            }
            Write::Enactment(
                _,
                Action::UpdateStatus {
                    name,
                    revision,
                    status,
                },
            ) => {
                let cached = state
                    .caches
                    .get(enactments)
                    .get(&name)
                    .filter(|cached| cached.revision == revision)
                    .ok_or_else(|| storage::Error::Conflict {
                        key: name.clone(),
                        expected: revision,
                        actual: 0,
                    })?;
                let old = cached.to_value();
                let mut new = old.clone();
                set_status(&mut new, &status)?;
                write_status(state, enactments, &name, &old, new, revision).await
            }
            Write::Enactment(_, Action::Delete { name, revision }) => {
                let (_, deleted) = store
                    .delete(&object_key(enactments.plural(), &name), Some(revision))
                    .await?;
                Ok(deleted)
            }
            Write::PolicyStatus { object, status } => {
                let old = object.to_value();
                let mut new = old.clone();
                set_status(&mut new, &status)?;
                write_status(
                    state,
                    ResourceKind::NodeNetworkConfigurationPolicy,
                    &object.name,
                    &old,
                    new,
                    object.revision,
                )
                .await
            }
        }
    }
}

/// Writes `new` over `old` (read at `revision`) through the `/status`
/// rules.
async fn write_status(
    state: &AppState,
    kind: ResourceKind,
    name: &str,
    old: &Value,
    new: Value,
    revision: Revision,
) -> Result<Revision, storage::Error> {
    let mut old = old.clone();
    object::metadata_mut(&mut old).remove("resourceVersion");
    let merged =
        prepare_update(kind, &old, new, UpdateScope::Status).map_err(|e| internal(name, e))?;
    let key = object_key(kind.plural(), name);
    write_registered(state, kind, name, merged, async |bytes| {
        state.store.update(&key, bytes, revision).await
    })
    .await
}

/// Stores `object` with `write`, registered with the watch cache first
/// (see [`WatchCache::expect`](crate::cache::WatchCache::expect)) so that
/// the cache need not parse what was just written.
async fn write_registered(
    state: &AppState,
    kind: ResourceKind,
    name: &str,
    object: Value,
    write: impl AsyncFnOnce(Vec<u8>) -> Result<storage::KeyValue, storage::Error>,
) -> Result<Revision, storage::Error> {
    let bytes = to_bytes(&object)?;
    // An object the cache cannot serve is the reflector's to log.
    let expected = CachedObject::from_value(name, 0, object)
        .ok()
        .map(|made| state.caches.get(kind).expect(made, &bytes));
    let kv = write(bytes).await?;
    if let Some(expected) = expected {
        expected.written(kv.mod_revision);
    }
    Ok(kv.mod_revision)
}

fn set_status(object: &mut Value, status: &impl serde::Serialize) -> Result<(), storage::Error> {
    let status = to_value(status)?;
    if let Some(map) = object.as_object_mut() {
        map.insert("status".into(), status);
    }
    Ok(())
}

fn time_now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

fn to_value(value: &impl serde::Serialize) -> Result<Value, storage::Error> {
    serde_json::to_value(value).map_err(|error| storage::Error::Corrupt {
        key: String::new(),
        message: error.to_string(),
    })
}

fn to_bytes(value: &Value) -> Result<Vec<u8>, storage::Error> {
    serde_json::to_vec(value).map_err(|error| storage::Error::Corrupt {
        key: String::new(),
        message: error.to_string(),
    })
}

fn internal(name: &str, error: object::Error) -> storage::Error {
    storage::Error::Corrupt {
        key: name.to_owned(),
        message: error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(ready: bool, heartbeat: Option<i64>) -> NodeKey {
        NodeKey {
            revision: 1,
            labels: BTreeMap::from([("rack".to_owned(), "r1".to_owned())]),
            ready,
            heartbeat,
            has_state: true,
        }
    }

    #[test]
    fn a_heartbeat_renewal_of_a_live_node_is_no_change() {
        let grace = 180;
        let before = key(true, Some(1_000));
        // A minute later, renewed: alive before and after.
        assert!(!before.differs(&key(true, Some(1_060)), 1_060, grace));
        // Renewed after it had gone dark: a change.
        assert!(before.differs(&key(true, Some(1_300)), 1_300, grace));
        // Not ready any more, labels, a state: changes.
        assert!(before.differs(&key(false, Some(1_060)), 1_060, grace));
        let mut relabelled = key(true, Some(1_000));
        relabelled.labels.insert("rack".to_owned(), "r2".to_owned());
        assert!(before.differs(&relabelled, 1_000, grace));
        let mut stateless = key(true, Some(1_000));
        stateless.has_state = false;
        assert!(before.differs(&stateless, 1_000, grace));
        // Never ready: no heartbeat is alive.
        assert!(!key(true, None).alive(0, grace));
        assert!(!key(false, Some(0)).alive(0, grace));
    }
}
