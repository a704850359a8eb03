//! Which Kubernetes Events the controller reports, as one pure function:
//! given what it saw of a policy and its enactments at its last reconcile
//! and what it sees now, the events to write and what to remember. No IO,
//! no clock (the time is an argument); `controller::recorder` writes them.
//!
//! The controller reports, not the agents: it sees every enactment's
//! status in its watch cache (the agents' outcomes and its own aborts and
//! render failures), runs once per cluster (leader election) so one
//! recorder folds repeats into one Event's series, and already holds the
//! cluster connection; the agents need no rights on kube-apiserver beyond
//! their own objects, and an agent cut off by its policy could not report
//! anyway.
//!
//! Events, with upstream kubernetes-nmstate's reasons and messages where it
//! has them:
//! - an enactment failed (its `Failing` condition true): on the policy,
//!   Warning `ReconcileFailed`, "reconciliation of enactment "N" has failed
//!   after 5 retries" (`related`: the enactment); on the enactment, Warning
//!   `FailedToConfigure` (`related`: the Node). A probe failure (the agent
//!   gives up at its first failure only for those: `retryCount` 1) and a
//!   render failure (the controller's, `retryCount` 0) say so instead of
//!   counting retries;
//! - an enactment was aborted: on the policy, Warning `ReconcileFailed`,
//!   "reconciliation of enactment "N" has aborted"; on the enactment,
//!   Warning `ConfigurationAborted`;
//! - a policy's rollout finished (`Available` true for its generation):
//!   Normal `SuccessfullyConfigured` on the policy.
//!
//! An event is reported once per transition, never for retries (the agent's
//! `Retrying n/5` is in flight, not an outcome) or for a status that did
//! not change. Each event's message is fixed by its object, reason, action
//! and related object (the error itself is in the object's conditions,
//! which `kubectl describe` shows above the events): kube's recorder folds
//! an event whose key it has seen in the last six minutes into that Event's
//! series, and its key is exactly those fields, so one Event object stands
//! for each (object, reason, message). An object the controller has not
//! seen since it started leading is reported only if its transition is
//! younger than [`FIRST_SIGHT_WINDOW`], so a new leader tells what happened
//! while nobody led without telling every old failure again.

use std::collections::HashMap;

use nmstate_openapi::{
    API_VERSION_V1, ConditionType, EnactmentPhase, NodeNetworkConfigurationEnactmentStatus,
    NodeNetworkConfigurationPolicyStatus, ResourceKind, Time,
    condition::{enactment_aborted_message, find_condition},
};

/// How recent the transition of an object not seen before must be to be
/// reported (a leader election takes about 15 s, 30 s at worst).
pub const FIRST_SIGHT_WINDOW_SECONDS: i64 = 120;

/// The name the events give as their reporting controller.
pub const REPORTING_CONTROLLER: &str = "nmstate.io/policy-controller";

/// The reason of the policy's Warning events (upstream's).
pub const RECONCILE_FAILED: &str = "ReconcileFailed";
/// The reason of an enactment's failure event (its condition's reason).
pub const FAILED_TO_CONFIGURE: &str = "FailedToConfigure";
/// The reason of an enactment's abort event (its condition's reason).
pub const CONFIGURATION_ABORTED: &str = "ConfigurationAborted";
/// The reason of a finished rollout's event (the policy condition's).
pub const SUCCESSFULLY_CONFIGURED: &str = "SuccessfullyConfigured";

/// The severity of an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventType {
    /// Something finished as asked.
    Normal,
    /// Something failed or was given up.
    Warning,
}

/// The object an event is about, or one related to it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reference {
    /// `apiVersion`.
    pub api_version: &'static str,
    /// `kind`.
    pub kind: &'static str,
    /// `metadata.name` (every object here is cluster-scoped).
    pub name: String,
    /// `metadata.uid`, when known: `kubectl describe` finds events by it.
    pub uid: Option<String>,
}

impl Reference {
    /// One of our objects.
    fn nmstate(kind: ResourceKind, name: &str, uid: &str) -> Self {
        Self {
            api_version: API_VERSION_V1,
            kind: kind.kind(),
            name: name.to_owned(),
            uid: (!uid.is_empty()).then(|| uid.to_owned()),
        }
    }

    /// The cluster's Node object `name`.
    fn node(name: &str) -> Self {
        Self {
            api_version: "v1",
            kind: "Node",
            name: name.to_owned(),
            uid: None,
        }
    }
}

/// One event to write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Announcement {
    /// Normal or Warning.
    pub type_: EventType,
    /// CamelCase, shown by `kubectl get events` and `kubectl describe`.
    pub reason: &'static str,
    /// What the controller or agent did (`Configure`, `Probe`, `Render`,
    /// `Abort`, `Rollout`): machine-readable, part of the dedup key.
    pub action: &'static str,
    /// The message.
    pub note: String,
    /// The object the event is about.
    pub regarding: Reference,
    /// Another object involved: the enactment of a policy's event, the
    /// Node of an enactment's.
    pub related: Option<Reference>,
}

/// Why an enactment failed, as far as its status tells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The apply failed, and every retry too (`retries` of them).
    Apply {
        /// How many times it was tried again.
        retries: i64,
    },
    /// A probe failed after the apply; rolled back, not retried.
    Probe,
    /// The controller could not render the policy for the node.
    Render,
}

/// Where an object stands, as far as events go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing to report (new, pending, in flight, retrying).
    Other,
    /// Configured (a policy: for every node it counts).
    Available,
    /// Failed for good.
    Failed(Failure),
    /// Given up because failures reached `maxUnavailable`.
    Aborted,
}

/// What the controller saw of an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seen {
    /// The policy generation the outcome is for.
    pub generation: Option<i64>,
    /// The outcome.
    pub outcome: Outcome,
}

/// What the controller saw of a policy and its enactments (by uid) at its
/// last reconcile.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Memory {
    /// The policy.
    pub policy: Option<Seen>,
    /// Its enactments, by uid.
    pub enactments: HashMap<String, Seen>,
}

/// A policy as the cache holds it.
#[derive(Clone, Copy, Debug)]
pub struct PolicyView<'a> {
    /// Its name.
    pub name: &'a str,
    /// Its uid.
    pub uid: &'a str,
    /// `metadata.generation`.
    pub generation: i64,
    /// Its status.
    pub status: Option<&'a NodeNetworkConfigurationPolicyStatus>,
}

/// An enactment of the policy as the cache holds it.
#[derive(Clone, Copy, Debug)]
pub struct EnactmentView<'a> {
    /// Its name.
    pub name: &'a str,
    /// Its uid.
    pub uid: &'a str,
    /// Its node.
    pub node: &'a str,
    /// Its status.
    pub status: &'a NodeNetworkConfigurationEnactmentStatus,
}

/// The events for what changed since `before`, and what to remember now.
pub fn announce(
    policy: &PolicyView<'_>,
    enactments: &[EnactmentView<'_>],
    before: &Memory,
    now: &Time,
) -> (Vec<Announcement>, Memory) {
    let mut events = Vec::new();
    let mut memory = Memory::default();
    let policy_ref = Reference::nmstate(
        ResourceKind::NodeNetworkConfigurationPolicy,
        policy.name,
        policy.uid,
    );

    let mut enactments: Vec<&EnactmentView<'_>> = enactments.iter().collect();
    enactments.sort_by_key(|enactment| enactment.name);
    for enactment in enactments {
        let (seen, since) = enactment_seen(enactment.status);
        memory.enactments.insert(enactment.uid.to_owned(), seen);
        if !is_news(before.enactments.get(enactment.uid), seen, since, now) {
            continue;
        }
        let enactment_ref = Reference::nmstate(
            ResourceKind::NodeNetworkConfigurationEnactment,
            enactment.name,
            enactment.uid,
        );
        let (name, node) = (enactment.name, enactment.node);
        let (action, policy_note, reason, note) = match seen.outcome {
            Outcome::Failed(failure) => {
                let (action, policy_note, note) = failure_notes(name, node, failure);
                (action, policy_note, FAILED_TO_CONFIGURE, note)
            }
            Outcome::Aborted => {
                let note = enactment_aborted_message(name);
                ("Abort", note.clone(), CONFIGURATION_ABORTED, note)
            }
            Outcome::Other | Outcome::Available => continue,
        };
        events.push(Announcement {
            type_: EventType::Warning,
            reason: RECONCILE_FAILED,
            action,
            note: policy_note,
            regarding: policy_ref.clone(),
            related: Some(enactment_ref.clone()),
        });
        events.push(Announcement {
            type_: EventType::Warning,
            reason,
            action,
            note,
            regarding: enactment_ref,
            related: Some(Reference::node(node)),
        });
    }

    let (seen, since) = policy_seen(policy);
    memory.policy = Some(seen);
    if seen.outcome == Outcome::Available && is_news(before.policy.as_ref(), seen, since, now) {
        events.push(Announcement {
            type_: EventType::Normal,
            reason: SUCCESSFULLY_CONFIGURED,
            action: "Rollout",
            note: "rollout finished: the policy is configured on its nodes".to_owned(),
            regarding: policy_ref,
            related: None,
        });
    }
    (events, memory)
}

/// The policy event's action and message and the enactment event's
/// message for a failure of enactment `name` on `node`.
fn failure_notes(name: &str, node: &str, failure: Failure) -> (&'static str, String, String) {
    let failed = format!("reconciliation of enactment {name:?} has failed");
    match failure {
        Failure::Apply { retries } => (
            "Configure",
            format!("{failed} after {retries} retries"),
            format!(
                "failed to configure node {node} after {retries} retries; rolled back (the error is in the Failing condition)"
            ),
        ),
        Failure::Probe => (
            "Probe",
            format!("{failed}: a probe failed on node {node} after the apply"),
            format!(
                "a probe failed on node {node} after the apply; rolled back and not retried (the error is in the Failing condition)"
            ),
        ),
        Failure::Render => (
            "Render",
            format!("{failed}: the policy could not be rendered for node {node}"),
            format!(
                "the policy could not be rendered for node {node} (the error is in the Failing condition)"
            ),
        ),
    }
}

/// Whether `seen` (reached at `since`) is worth an event, given what was
/// seen before (`None`: not since the controller started leading).
fn is_news(before: Option<&Seen>, seen: Seen, since: Option<&Time>, now: &Time) -> bool {
    if seen.outcome == Outcome::Other {
        return false;
    }
    match before {
        Some(before) => *before != seen,
        None => since.is_some_and(|since| {
            now.0.as_second() - since.0.as_second() <= FIRST_SIGHT_WINDOW_SECONDS
        }),
    }
}

/// An enactment's outcome and when its condition turned.
fn enactment_seen(status: &NodeNetworkConfigurationEnactmentStatus) -> (Seen, Option<&Time>) {
    let generation = status.policy_generation;
    let (outcome, condition) = match status.phase() {
        EnactmentPhase::Failed => {
            let failures = generation.map_or(0, |generation| status.retry_count_for(generation));
            let failure = match failures {
                0 => Failure::Render,
                1 => Failure::Probe,
                n => Failure::Apply {
                    retries: i64::from(n) - 1,
                },
            };
            (Outcome::Failed(failure), Some(ConditionType::Failing))
        }
        EnactmentPhase::Aborted => (Outcome::Aborted, Some(ConditionType::Aborted)),
        EnactmentPhase::Available => (Outcome::Available, Some(ConditionType::Available)),
        EnactmentPhase::Unknown | EnactmentPhase::Pending | EnactmentPhase::Progressing => {
            (Outcome::Other, None)
        }
    };
    let since = condition
        .and_then(|type_| find_condition(&status.conditions, &type_))
        .and_then(|condition| condition.last_transition_time.as_ref());
    (
        Seen {
            generation,
            outcome,
        },
        since,
    )
}

/// A policy's outcome (only `Available` for its current generation
/// matters) and when its `Available` condition turned.
fn policy_seen<'a>(policy: &PolicyView<'a>) -> (Seen, Option<&'a Time>) {
    let available = policy
        .status
        .and_then(|status| find_condition(&status.conditions, &ConditionType::Available))
        .filter(|condition| {
            condition.is_true() && condition.observed_generation == Some(policy.generation)
        });
    (
        Seen {
            generation: Some(policy.generation),
            outcome: if available.is_some() {
                Outcome::Available
            } else {
                Outcome::Other
            },
        },
        available.and_then(|condition| condition.last_transition_time.as_ref()),
    )
}

#[cfg(test)]
mod tests;
