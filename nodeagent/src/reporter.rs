//! The reporter publishes the node's network state as NodeNetworkState
//! `<node>`.
//!
//! It reports on start; when the backend signals a change (debounced); when
//! the enactor finished an apply; when its NodeNetworkState was deleted (it
//! watches it by name, and recreates it at once); and on the resync period.
//! Every report reads the state, filters it ([`crate::filter`]) and compares
//! the result with what is stored: it writes only when the filtered state,
//! the versions or the labels changed, or when the `Ready` heartbeat is
//! older than the ready interval. `lastSuccessfulUpdateTime` moves only
//! with the state. So an idle node writes nothing but its heartbeat, and
//! the heartbeat alone is a merge patch of `status.conditions` (a few
//! hundred bytes, as a kubelet's status patch), not the 19 KB state.
//!
//! What is stored is known from the watch, so an idle report sends no
//! request at all. The decision is [`plan`], a pure function.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::{
    Api,
    api::{Patch, PatchParams, PostParams},
    runtime::watcher::{self, Event},
};
use nmstate_openapi::{
    NodeNetworkState, NodeNetworkStateStatus, State, Time,
    condition::{ConditionType, find_condition, set_state_ready},
};
use tokio::sync::{Notify, watch};

use crate::{
    backend::{Backend, Versions},
    client::{self, Object, StateObject},
    filter::filter_state,
    metrics::Metrics,
};

/// How long the reporter waits for more change signals before reading.
pub const DEBOUNCE: Duration = Duration::from_millis(500);

/// The reporter's settings.
#[derive(Clone, Debug)]
pub struct ReporterConfig {
    /// The node.
    pub node_name: String,
    /// Labels the NodeNetworkState must carry.
    pub labels: BTreeMap<String, String>,
    /// Full re-read period.
    pub resync: Duration,
    /// The `Ready` heartbeat is renewed when older than this.
    pub ready_interval: Duration,
    /// The Node object owning the NodeNetworkState (in a cluster), so that
    /// deleting the Node deletes its state.
    pub owner: Option<OwnerReference>,
}

/// What a report must write.
#[derive(Clone, Debug, PartialEq)]
pub enum Plan {
    /// The stored object is up to date.
    Nothing,
    /// No object: create it with its labels, then write the status.
    Create {
        /// The object to create (metadata only).
        object: NodeNetworkState,
        /// The status to write after.
        status: NodeNetworkStateStatus,
    },
    /// Write the object's labels (metadata) first, then the status if set.
    Labels {
        /// The whole object with the new labels.
        object: NodeNetworkState,
        /// The new status, if it changed too.
        status: Option<NodeNetworkStateStatus>,
    },
    /// Write the status only.
    Status(NodeNetworkStateStatus),
    /// Only the heartbeat is due: write these conditions (the renewed
    /// `Ready` among them), nothing else.
    Heartbeat(Vec<nmstate_openapi::Condition>),
}

/// Decides what to write, given what is stored (`None`: no object), the
/// reporter's settings (node, labels, owner, heartbeat interval), the
/// filtered state just read, the versions, and the time.
pub fn plan(
    stored: Option<&NodeNetworkState>,
    config: &ReporterConfig,
    state: &State,
    versions: &Versions,
    now: &Time,
) -> Plan {
    let labels = &config.labels;
    let empty = NodeNetworkStateStatus::default();
    let old = stored
        .and_then(|object| object.status.as_ref())
        .unwrap_or(&empty);
    // The stored current state is tens of kilobytes: compared once, and
    // neither it nor the status around it is copied to find that nothing
    // is to be written (most reports, and every heartbeat check).
    let state_changed = old.current_state.as_ref() != Some(state);
    let mut status = NodeNetworkStateStatus {
        current_state: None,
        last_successful_update_time: if state_changed {
            Some(now.clone())
        } else {
            old.last_successful_update_time.clone()
        },
        host_network_manager_version: versions.host_network_manager.clone(),
        handler_network_manager_version: versions.handler_network_manager.clone(),
        handler_nmstate_version: versions.handler_nmstate.clone(),
        conditions: old.conditions.clone(),
    };
    let status_changed = state_changed
        || status.host_network_manager_version != old.host_network_manager_version
        || status.handler_network_manager_version != old.handler_network_manager_version
        || status.handler_nmstate_version != old.handler_nmstate_version;
    let heartbeat_due = heartbeat_due(&status, config.ready_interval, now);
    if status_changed || heartbeat_due {
        // A state change renews the heartbeat as well: it is a write anyway.
        set_state_ready(&mut status.conditions, now);
    }
    let whole = |mut status: NodeNetworkStateStatus| {
        status.current_state = Some(state.clone());
        status
    };
    let Some(stored) = stored else {
        let mut object = NodeNetworkState::new(&config.node_name);
        object.metadata.labels = Some(labels.clone());
        object.metadata.owner_references = config.owner.clone().map(|owner| vec![owner]);
        return Plan::Create {
            object,
            status: whole(status),
        };
    };
    let stored_labels = stored.metadata.labels.clone().unwrap_or_default();
    let mut wanted_labels = stored_labels.clone();
    wanted_labels.extend(labels.clone());
    if wanted_labels != stored_labels {
        let mut object = stored.clone();
        object.metadata.labels = Some(wanted_labels);
        return Plan::Labels {
            object,
            status: (status_changed || heartbeat_due).then(|| whole(status)),
        };
    }
    if status_changed {
        Plan::Status(whole(status))
    } else if heartbeat_due {
        Plan::Heartbeat(status.conditions)
    } else {
        Plan::Nothing
    }
}

/// Whether the `Ready` heartbeat in `status` is missing, not true, or at
/// least `ready_interval` old at `now`.
pub fn heartbeat_due(
    status: &NodeNetworkStateStatus,
    ready_interval: Duration,
    now: &Time,
) -> bool {
    find_condition(&status.conditions, &ConditionType::Ready)
        .filter(|ready| ready.is_true())
        .and_then(|ready| ready.last_heartbeat_time.as_ref())
        .is_none_or(|beat| {
            let age = now.0.duration_since(beat.0);
            age.is_negative() || age.unsigned_abs() >= ready_interval
        })
}

/// Publishes the node's state until `shutdown` turns true.
#[derive(Debug)]
pub struct Reporter {
    config: ReporterConfig,
    api: Api<StateObject>,
    backend: Arc<dyn Backend>,
    metrics: Metrics,
    /// The enactor pokes this after every apply.
    applied: Arc<Notify>,
}

impl Reporter {
    /// A reporter for `config.node_name` through `client`.
    pub fn new(
        config: ReporterConfig,
        client: &kube::Client,
        backend: Arc<dyn Backend>,
        metrics: Metrics,
        applied: Arc<Notify>,
    ) -> Self {
        Self {
            config,
            api: client::states(client),
            backend,
            metrics,
            applied,
        }
    }

    /// Runs until `shutdown` turns true.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let node = self.config.node_name.clone();
        let watch_config = watcher::Config::default().fields(&format!("metadata.name={node}"));
        let mut events = watcher::watcher(self.api.clone(), watch_config).boxed();
        let mut changes = self.backend.changes();
        let mut resync = tokio::time::interval(self.config.resync);
        resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Checked often enough to renew the heartbeat on time; a check that
        // finds it fresh sends nothing.
        let mut heartbeat = tokio::time::interval(self.config.ready_interval / 4);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut stored: Option<NodeNetworkState> = None;
        // Reports wait until the watch has listed what is stored.
        let mut synced = false;
        let mut pending = false;
        loop {
            let mut report = false;
            tokio::select! {
                () = stopped(&mut shutdown) => return,
                event = events.next() => match event {
                    Some(Ok(Event::Apply(object) | Event::InitApply(object))) => {
                        stored = Some(object.0);
                    }
                    Some(Ok(Event::Delete(_))) => {
                        tracing::info!(node = %node, "NodeNetworkState deleted: recreating it");
                        stored = None;
                        report = true;
                    }
                    Some(Ok(Event::Init)) => {
                        stored = None;
                    }
                    Some(Ok(Event::InitDone)) => {
                        synced = true;
                        report = true;
                    }
                    Some(Err(error)) => {
                        tracing::warn!(%error, "watching the NodeNetworkState failed; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    None => return,
                },
                changed = changes.changed() => {
                    if changed.is_err() {
                        // The backend dropped its sender: no more signals.
                        changes = watch::channel(0).1;
                        continue;
                    }
                    tokio::time::sleep(DEBOUNCE).await;
                    changes.mark_unchanged();
                    report = true;
                }
                _ = self.applied.notified() => report = true,
                _ = resync.tick() => report = true,
                // Only a due heartbeat costs a state read.
                _ = heartbeat.tick() => {
                    let now = Time(jiff::Timestamp::now());
                    report = stored
                        .as_ref()
                        .and_then(|stored| stored.status.as_ref())
                        .is_none_or(|status| {
                            heartbeat_due(status, self.config.ready_interval, &now)
                        });
                }
            }
            if !(report || pending) {
                continue;
            }
            if !synced {
                pending = true;
                continue;
            }
            pending = false;
            match self.report(stored.as_ref()).await {
                Ok(Some(written)) => stored = Some(written),
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(%error, "reporting the node state failed; will retry");
                    pending = true;
                    // Try again soon, but do not spin.
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    /// One report; returns the object as written, if anything was written.
    async fn report(
        &self,
        stored: Option<&NodeNetworkState>,
    ) -> Result<Option<NodeNetworkState>, ReportError> {
        let state = self
            .backend
            .retrieve()
            .await
            .map_err(ReportError::Backend)?;
        let state = filter_state(&state);
        self.metrics.observe_state(&state);
        let versions = self.backend.versions().await;
        let now = Time(jiff::Timestamp::now());
        let plan = plan(stored, &self.config, &state, &versions, &now);
        let post = PostParams::default();
        let name = self.config.node_name.as_str();
        let written = match plan {
            Plan::Nothing => return Ok(None),
            Plan::Create { object, status } => {
                let created = match self.api.create(&post, &Object(object)).await {
                    Ok(created) => {
                        self.metrics.observe_state_write();
                        tracing::info!(node = %name, "NodeNetworkState created");
                        created
                    }
                    // It exists, and the watch has not brought it yet: an
                    // earlier try whose answer was lost, or a restart. On a
                    // busy server the watch may take long to start, and
                    // creating again at every report only adds to the load:
                    // read it, and write the status onto it now.
                    Err(error) if client::status_code(&error) == Some(409) => {
                        match self.api.get_opt(name).await.map_err(ReportError::Api)? {
                            Some(existing) => existing,
                            None => return Ok(None),
                        }
                    }
                    Err(error) => return Err(ReportError::Api(error)),
                };
                let mut object = created.0;
                object.status = Some(status);
                self.write_status(object).await?
            }
            Plan::Labels { object, status } => {
                let mut written = self
                    .api
                    .replace(name, &post, &Object(object))
                    .await
                    .map_err(ReportError::Api)?
                    .0;
                self.metrics.observe_state_write();
                if let Some(status) = status {
                    written.status = Some(status);
                    written = self.write_status(written).await?;
                }
                written
            }
            Plan::Status(status) => {
                let Some(stored) = stored else {
                    return Ok(None);
                };
                let mut object = stored.clone();
                object.status = Some(status);
                self.write_status(object).await?
            }
            Plan::Heartbeat(conditions) => {
                // A merge patch replaces the conditions list as a whole;
                // nothing else of the status is sent or changed.
                let patch = serde_json::json!({"status": {"conditions": conditions}});
                let written = self
                    .api
                    .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map_err(ReportError::Api)?;
                self.metrics.observe_state_write();
                tracing::debug!(node = %name, "Ready heartbeat renewed");
                written.0
            }
        };
        Ok(Some(written))
    }

    async fn write_status(
        &self,
        object: NodeNetworkState,
    ) -> Result<NodeNetworkState, ReportError> {
        let name = self.config.node_name.as_str();
        let written = self
            .api
            .replace_status(name, &PostParams::default(), &Object(object))
            .await
            .map_err(ReportError::Api)?;
        self.metrics.observe_state_write();
        tracing::debug!(node = %name, "NodeNetworkState status written");
        Ok(written.0)
    }
}

/// Returns once `shutdown` is true (or its sender is gone). Unlike
/// `wait_for`, its output holds no borrow of the channel, so a `select!`
/// whose branches await keeps its future `Send` (many agents share a
/// multi-threaded runtime in the benchmarks' fleet).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Why a report failed; it is retried.
#[derive(Debug, thiserror::Error)]
enum ReportError {
    /// Reading the state failed.
    #[error("reading the network state: {0}")]
    Backend(#[source] crate::backend::BackendError),
    /// The API server refused or did not answer (a 409 means another
    /// writer was first: the watch brings the newer object).
    #[error("writing the NodeNetworkState: {0}")]
    Api(#[source] kube::Error),
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use jiff::Timestamp;
    use serde_json::json;

    use super::*;

    fn at(second: i64) -> Time {
        Time(Timestamp::from_second(second).unwrap())
    }

    fn versions() -> Versions {
        Versions {
            handler_nmstate: Some("2.2.62".into()),
            ..Versions::default()
        }
    }

    fn labels() -> BTreeMap<String, String> {
        BTreeMap::from([("kubernetes.io/hostname".to_owned(), "n1".to_owned())])
    }

    const MINUTE: Duration = Duration::from_secs(60);

    fn config(labels: BTreeMap<String, String>) -> ReporterConfig {
        ReporterConfig {
            node_name: "n1".into(),
            labels,
            resync: MINUTE,
            ready_interval: MINUTE,
            owner: None,
        }
    }

    /// The object as it is after applying `plan`.
    fn stored_after(plan: Plan) -> NodeNetworkState {
        match plan {
            Plan::Create { mut object, status } => {
                object.status = Some(status);
                object
            }
            Plan::Labels { mut object, status } => {
                if let Some(status) = status {
                    object.status = Some(status);
                }
                object
            }
            other => panic!("expected a write, got {other:?}"),
        }
    }

    #[test]
    fn creates_then_stays_quiet_until_something_changes() {
        let state = State(json!({"interfaces": [{"name": "eth0", "type": "ethernet"}]}));
        let created = plan(None, &config(labels()), &state, &versions(), &at(0));
        let Plan::Create { object, status } = &created else {
            panic!("{created:?}");
        };
        assert_eq!(object.metadata.name.as_deref(), Some("n1"));
        assert_eq!(object.metadata.labels, Some(labels()));
        assert_eq!(object.metadata.owner_references, None);
        assert_eq!(status.current_state.as_ref(), Some(&state));
        assert_eq!(status.last_successful_update_time, Some(at(0)));
        assert_eq!(status.handler_nmstate_version.as_deref(), Some("2.2.62"));
        let ready = find_condition(&status.conditions, &ConditionType::Ready).unwrap();
        assert!(ready.is_true());
        let stored = stored_after(created);

        // Same state within the minute: nothing to write.
        assert_eq!(
            plan(
                Some(&stored),
                &config(labels()),
                &state,
                &versions(),
                &at(59)
            ),
            Plan::Nothing
        );

        // A minute later: only the heartbeat moves, and only the
        // conditions are written.
        let Plan::Heartbeat(conditions) = plan(
            Some(&stored),
            &config(labels()),
            &state,
            &versions(),
            &at(60),
        ) else {
            panic!("heartbeat expected");
        };
        let ready = find_condition(&conditions, &ConditionType::Ready).unwrap();
        assert_eq!(ready.last_heartbeat_time, Some(at(60)));
        assert_eq!(ready.last_transition_time, Some(at(0)));

        // A changed state moves lastSuccessfulUpdateTime.
        let changed = State(json!({"interfaces": []}));
        let Plan::Status(status) = plan(
            Some(&stored),
            &config(labels()),
            &changed,
            &versions(),
            &at(10),
        ) else {
            panic!("status expected");
        };
        assert_eq!(status.current_state, Some(changed));
        assert_eq!(status.last_successful_update_time, Some(at(10)));
    }

    #[test]
    fn adds_missing_labels_and_keeps_others() {
        let state = State(json!({}));
        let mut stored = stored_after(plan(
            None,
            &config(BTreeMap::new()),
            &state,
            &versions(),
            &at(0),
        ));
        stored
            .metadata
            .labels
            .get_or_insert_default()
            .insert("extra".into(), "kept".into());
        let Plan::Labels { object, status } = plan(
            Some(&stored),
            &config(labels()),
            &state,
            &versions(),
            &at(1),
        ) else {
            panic!("labels expected");
        };
        assert_eq!(status, None);
        let labels = object.metadata.labels.unwrap();
        assert_eq!(labels["extra"], "kept");
        assert_eq!(labels["kubernetes.io/hostname"], "n1");
    }

    #[test]
    fn a_not_ready_condition_is_renewed_at_once() {
        let state = State(json!({}));
        let mut stored = stored_after(plan(None, &config(labels()), &state, &versions(), &at(0)));
        let status = stored.status.as_mut().unwrap();
        status.conditions[0].status = nmstate_openapi::ConditionStatus::False;
        let Plan::Heartbeat(conditions) = plan(
            Some(&stored),
            &config(labels()),
            &state,
            &versions(),
            &at(5),
        ) else {
            panic!("heartbeat expected");
        };
        assert!(conditions[0].is_true());
    }
}

#[cfg(test)]
mod owner_tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_cluster_node_owns_its_state() {
        let owner = OwnerReference {
            api_version: "v1".into(),
            kind: "Node".into(),
            name: "n1".into(),
            uid: "3f1c".into(),
            ..OwnerReference::default()
        };
        let config = ReporterConfig {
            node_name: "n1".into(),
            labels: BTreeMap::new(),
            resync: Duration::from_secs(60),
            ready_interval: Duration::from_secs(60),
            owner: Some(owner.clone()),
        };
        let now = Time(jiff::Timestamp::from_second(0).unwrap());
        let Plan::Create { object, .. } =
            plan(None, &config, &State::default(), &Versions::default(), &now)
        else {
            panic!("create expected");
        };
        assert_eq!(object.metadata.owner_references, Some(vec![owner]));
    }
}
