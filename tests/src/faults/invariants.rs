//! The invariants of a rollout under faults, checked on every event of the
//! policy and enactment watches, in revision order. Pure: [`Checker`]
//! takes what the watches saw ([`Seen`]) and keeps the cluster as of the
//! last revision it applied, with every violation it found; the suite feeds
//! it and reads its [`Report`].
//!
//! Checked on every event:
//! - `resourceVersion` increases along each watch connection, and the
//!   first event of a connection is newer than the revision it was opened
//!   with;
//! - at most `maxUnavailable` enactments of a policy are in flight
//!   (`Progressing`), whatever their nodes' `Ready` says: an enactment
//!   released to a node holds its slot until the agent reports an end;
//! - no policy is `Available` (for its current generation) while an
//!   enactment of it is in flight;
//! - no enactment is created twice without a delete between, and none of a
//!   node the policy still selects is deleted (or missing from a re-list);
//! - ordering rules the suite adds ([`Checker::never_before_end`]): an
//!   enactment is never released while another one has not ended.
//!
//! At the end ([`Checker::finish`]): every policy has exactly the
//! enactments of its nodes, none in flight or waiting, and the condition
//! they justify (`Degraded` when any failed or was aborted, otherwise
//! `Available`; `Ignored` for no node), which must also be what the suite
//! expected of it.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use nmstate_openapi::{EnactmentPhase, NodeNetworkConfigurationEnactmentStatus};
use serde_json::Value;

use super::watch::{Kind, Seen};

/// How many violation messages are kept (all are counted).
const KEPT_MESSAGES: usize = 50;

/// What the suite knows of a policy it created.
#[derive(Clone, Debug)]
pub struct Expected {
    /// The nodes its selector matches.
    pub nodes: BTreeSet<String>,
    /// `maxUnavailable` for that many nodes.
    pub max_unavailable: usize,
    /// The condition it must end with (`Available`, `Degraded`,
    /// `Ignored`), if the suite knows; in any case it must end with the
    /// one its nodes justify.
    pub ends: Option<&'static str>,
    /// Whether it must never read `Available` on the way.
    pub never_available: bool,
}

#[derive(Clone, Debug)]
struct Enactment {
    policy: String,
    node: String,
    phase: EnactmentPhase,
    conditions: Value,
}

#[derive(Clone, Debug, Default)]
struct Policy {
    generation: i64,
    conditions: Value,
    annotations: Value,
}

impl Policy {
    /// Whether condition `type_` is `True` for the current generation.
    fn holds(&self, type_: &str) -> bool {
        self.conditions.as_array().into_iter().flatten().any(|c| {
            c["type"] == type_
                && c["status"] == "True"
                && (c["observedGeneration"].is_null()
                    || c["observedGeneration"].as_i64() == Some(self.generation))
        })
    }
}

/// The counts and the violations.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Events applied (list items included).
    pub events: u64,
    /// Watch connections opened, per kind.
    pub connections: BTreeMap<String, u64>,
    /// Re-lists after `410 Gone`.
    pub relists: u64,
    /// How watch connections ended, by reason.
    pub ends: BTreeMap<String, u64>,
    /// The most enactments of each policy in flight at once.
    pub max_in_flight: BTreeMap<String, usize>,
    /// Violations found.
    pub violations: u64,
    /// The first [`KEPT_MESSAGES`] of them.
    pub messages: Vec<String>,
}

/// The cluster as the watches saw it, and what it broke.
#[derive(Debug, Default)]
pub struct Checker {
    expected: BTreeMap<String, Expected>,
    enactments: BTreeMap<String, Enactment>,
    policies: BTreeMap<String, Policy>,
    last_revision: HashMap<(Kind, u64), i64>,
    listed: BTreeSet<Kind>,
    ordering: Vec<(String, String)>,
    /// Every revision at which the watch saw each policy, with its
    /// annotations then (for acknowledged writes).
    policy_history: BTreeMap<String, Vec<(i64, Value)>>,
    revision: i64,
    report: Report,
}

impl Checker {
    /// A checker for the policies in `expected` (by name).
    pub fn new(expected: BTreeMap<String, Expected>) -> Self {
        Self {
            expected,
            ..Self::default()
        }
    }

    /// Adds the rule: enactment `later` is never in flight while enactment
    /// `first` has been released and has not ended.
    pub fn never_before_end(&mut self, first: &str, later: &str) {
        self.ordering.push((first.to_owned(), later.to_owned()));
    }

    /// The report so far.
    pub fn report(&self) -> &Report {
        &self.report
    }

    /// The newest revision applied.
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// The phase of enactment `name`, if it exists.
    pub fn phase(&self, name: &str) -> Option<EnactmentPhase> {
        self.enactments.get(name).map(|e| e.phase)
    }

    /// The conditions of enactment `name` (null if none).
    pub fn enactment_conditions(&self, name: &str) -> Value {
        self.enactments
            .get(name)
            .map(|e| e.conditions.clone())
            .unwrap_or_default()
    }

    /// The policies it checks, with what the suite expects of them.
    pub fn expected(&self) -> &BTreeMap<String, Expected> {
        &self.expected
    }

    /// A policy's true conditions (with their messages) and its
    /// enactments' phases, for the report.
    pub fn policy_summary(&self, name: &str) -> String {
        let conditions: Vec<String> = self
            .policies
            .get(name)
            .map(|p| {
                p.conditions
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|c| c["status"] == "True")
                    .map(|c| {
                        format!(
                            "{} ({})",
                            c["type"].as_str().unwrap_or_default(),
                            c["message"].as_str().unwrap_or_default()
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut phases: BTreeMap<String, usize> = BTreeMap::new();
        for enactment in self.enactments.values().filter(|e| e.policy == name) {
            *phases.entry(format!("{:?}", enactment.phase)).or_default() += 1;
        }
        format!("{}; enactments {phases:?}", conditions.join(", "))
    }

    /// The revisions (with annotations) at which policy `name` was seen.
    pub fn policy_history(&self, name: &str) -> &[(i64, Value)] {
        self.policy_history
            .get(name)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// Whether every expected policy has settled: all its enactments exist
    /// and have ended, and the policy says what they justify.
    pub fn settled(&self) -> bool {
        self.unsettled().is_empty()
    }

    /// Why each policy that has not settled has not.
    pub fn unsettled(&self) -> Vec<String> {
        let mut reasons = Vec::new();
        for (name, expected) in &self.expected {
            let open: Vec<String> = expected
                .nodes
                .iter()
                .filter_map(|node| {
                    let enactment = format!("{node}.{name}");
                    match self.enactments.get(&enactment).map(|e| e.phase) {
                        Some(phase) if ended(phase) => None,
                        phase => Some(format!("{node} {phase:?}")),
                    }
                })
                .collect();
            let justified = self.justified(name, expected);
            let holds = self.policies.get(name).is_some_and(|p| p.holds(justified));
            if !open.is_empty() || !holds {
                reasons.push(format!(
                    "{name}: not {justified} yet; open: [{}]",
                    open.join(", ")
                ));
            }
        }
        reasons
    }

    /// The condition the policy's enactments justify: `Ignored` without
    /// nodes, `Degraded` when any failed or was aborted, else `Available`.
    fn justified(&self, name: &str, expected: &Expected) -> &'static str {
        let failed = expected.nodes.iter().any(|node| {
            self.enactments
                .get(&format!("{node}.{name}"))
                .is_some_and(|e| {
                    matches!(e.phase, EnactmentPhase::Failed | EnactmentPhase::Aborted)
                })
        });
        if expected.nodes.is_empty() {
            "Ignored"
        } else if failed {
            "Degraded"
        } else {
            "Available"
        }
    }

    /// Records a violation.
    pub fn violation(&mut self, message: String) {
        self.report.violations += 1;
        if self.report.messages.len() < KEPT_MESSAGES {
            self.report
                .messages
                .push(format!("at revision {}: {message}", self.revision));
        }
    }

    /// Applies what a watch saw and checks the invariants.
    pub fn apply(&mut self, seen: &Seen) {
        match seen {
            Seen::Listed {
                kind,
                revision,
                objects,
            } => self.listed(*kind, *revision, objects),
            Seen::Connected { kind, stream, from } => {
                *self
                    .report
                    .connections
                    .entry(format!("{kind:?}"))
                    .or_default() += 1;
                self.last_revision.insert((*kind, *stream), *from);
            }
            Seen::Event {
                kind,
                stream,
                kind_of_event,
                revision,
                object,
            } => {
                let last = self.last_revision.insert((*kind, *stream), *revision);
                let is_bookmark = kind_of_event == "BOOKMARK";
                if let Some(last) = last
                    && (*revision < last || (*revision == last && !is_bookmark))
                {
                    self.violation(format!(
                        "{kind:?} watch {stream}: resourceVersion {revision} after {last}"
                    ));
                }
                if is_bookmark {
                    return;
                }
                self.revision = self.revision.max(*revision);
                self.report.events += 1;
                match kind {
                    Kind::Enactment => self.enactment_event(kind_of_event, object),
                    Kind::Policy => self.policy_event(kind_of_event, *revision, object),
                }
            }
            Seen::Ended { reason, .. } => {
                *self.report.ends.entry(reason.clone()).or_default() += 1;
            }
        }
    }

    fn listed(&mut self, kind: Kind, revision: i64, objects: &[Value]) {
        if !self.listed.insert(kind) {
            self.report.relists += 1;
        }
        self.revision = self.revision.max(revision);
        match kind {
            Kind::Enactment => {
                let names: BTreeSet<String> = objects.iter().filter_map(name_of).collect();
                let gone: Vec<String> = self
                    .enactments
                    .keys()
                    .filter(|name| !names.contains(*name))
                    .cloned()
                    .collect();
                for name in gone {
                    self.enactment_event(
                        "DELETED",
                        &serde_json::json!({"metadata": {"name": name}}),
                    );
                }
                for object in objects {
                    let name = name_of(object).unwrap_or_default();
                    let event = if self.enactments.contains_key(&name) {
                        "MODIFIED"
                    } else {
                        "ADDED"
                    };
                    self.report.events += 1;
                    self.enactment_event(event, object);
                }
            }
            Kind::Policy => {
                for object in objects {
                    self.report.events += 1;
                    let at = super::watch::revision_of(object).unwrap_or(revision);
                    self.policy_event("MODIFIED", at, object);
                }
            }
        }
    }

    fn enactment_event(&mut self, type_: &str, object: &Value) {
        let Some(name) = name_of(object) else {
            return;
        };
        if type_ == "DELETED" {
            if let Some(old) = self.enactments.remove(&name)
                && self
                    .expected
                    .get(&old.policy)
                    .is_some_and(|p| p.nodes.contains(&old.node))
            {
                self.violation(format!(
                    "enactment {name} lost: deleted while policy {} still selects {}",
                    old.policy, old.node
                ));
            }
            return;
        }
        let labels = &object["metadata"]["labels"];
        let policy = labels["nmstate.io/policy"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let node = labels["nmstate.io/node"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if type_ == "ADDED" && self.enactments.contains_key(&name) {
            self.violation(format!("enactment {name} created twice"));
        }
        if let Some(expected) = self.expected.get(&policy)
            && !expected.nodes.contains(&node)
        {
            self.violation(format!(
                "enactment {name} for node {node}, which {policy} does not select"
            ));
        }
        let status: NodeNetworkConfigurationEnactmentStatus =
            serde_json::from_value(object["status"].clone()).unwrap_or_default();
        let enactment = Enactment {
            policy: policy.clone(),
            node,
            phase: status.phase(),
            conditions: object["status"]["conditions"].clone(),
        };
        self.enactments.insert(name, enactment);
        self.check_policy(&policy);
        self.check_ordering();
    }

    fn policy_event(&mut self, type_: &str, revision: i64, object: &Value) {
        let Some(name) = name_of(object) else {
            return;
        };
        if type_ == "DELETED" {
            self.policies.remove(&name);
            return;
        }
        let policy = Policy {
            generation: object["metadata"]["generation"]
                .as_i64()
                .unwrap_or_default(),
            conditions: object["status"]["conditions"].clone(),
            annotations: object["metadata"]["annotations"].clone(),
        };
        self.policy_history
            .entry(name.clone())
            .or_default()
            .push((revision, policy.annotations.clone()));
        self.policies.insert(name.clone(), policy);
        self.check_policy(&name);
    }

    fn in_flight(&self, policy: &str) -> Vec<&str> {
        self.enactments
            .iter()
            .filter(|(_, e)| e.policy == policy && e.phase == EnactmentPhase::Progressing)
            .map(|(_, e)| e.node.as_str())
            .collect()
    }

    fn check_policy(&mut self, name: &str) {
        let in_flight: Vec<String> = self
            .in_flight(name)
            .into_iter()
            .map(str::to_owned)
            .collect();
        let max = self
            .report
            .max_in_flight
            .entry(name.to_owned())
            .or_default();
        *max = (*max).max(in_flight.len());
        if let Some(expected) = self.expected.get(name) {
            let limit = expected.max_unavailable;
            let never_available = expected.never_available;
            if in_flight.len() > limit {
                self.violation(format!(
                    "policy {name}: {} enactments in flight ({}), maxUnavailable {limit}",
                    in_flight.len(),
                    in_flight.join(", ")
                ));
            }
            if never_available
                && self
                    .policies
                    .get(name)
                    .is_some_and(|p| p.holds("Available"))
            {
                self.violation(format!("policy {name} reads Available on the way"));
            }
        }
        if !in_flight.is_empty()
            && self
                .policies
                .get(name)
                .is_some_and(|p| p.holds("Available"))
        {
            self.violation(format!(
                "policy {name} reads Available while enactments are in flight on {}",
                in_flight.join(", ")
            ));
        }
    }

    fn check_ordering(&mut self) {
        let mut found = Vec::new();
        for (first, later) in &self.ordering {
            let first_open = !self.enactments.get(first).is_some_and(|e| ended(e.phase));
            let later_in_flight = self
                .enactments
                .get(later)
                .is_some_and(|e| e.phase == EnactmentPhase::Progressing);
            if first_open && later_in_flight {
                found.push(format!("{later} released while {first} has not ended"));
            }
        }
        for message in found {
            self.violation(message);
        }
    }

    /// The final checks, once the suite has healed every fault and the
    /// watches have caught up with the store.
    pub fn finish(&mut self) {
        let expected = self.expected.clone();
        for (name, expected) in &expected {
            for node in &expected.nodes {
                let enactment = format!("{node}.{name}");
                match self.enactments.get(&enactment).map(|e| e.phase) {
                    None => self.violation(format!("enactment {enactment} missing at the end")),
                    Some(phase) if !ended(phase) => {
                        self.violation(format!("enactment {enactment} ends {phase:?}"));
                    }
                    Some(_) => {}
                }
            }
            let extra: Vec<String> = self
                .enactments
                .iter()
                .filter(|(_, e)| e.policy == *name && !expected.nodes.contains(&e.node))
                .map(|(n, _)| n.clone())
                .collect();
            for enactment in extra {
                self.violation(format!(
                    "enactment {enactment} of a node {name} does not select"
                ));
            }
            let justified = self.justified(name, expected);
            let holds = self.policies.get(name).is_some_and(|p| p.holds(justified));
            if !holds {
                let conditions = self
                    .policies
                    .get(name)
                    .map(|p| p.conditions.to_string())
                    .unwrap_or_default();
                self.violation(format!(
                    "policy {name} does not end {justified}, as its nodes justify: {conditions}"
                ));
            }
            if let Some(ends) = expected.ends
                && justified != ends
            {
                self.violation(format!(
                    "policy {name}: its nodes end it {justified}, expected {ends}"
                ));
            }
        }
    }
}

/// Whether an enactment has ended: its agent reported an end, or the
/// controller gave it up.
pub fn ended(phase: EnactmentPhase) -> bool {
    matches!(
        phase,
        EnactmentPhase::Available | EnactmentPhase::Failed | EnactmentPhase::Aborted
    )
}

fn name_of(object: &Value) -> Option<String> {
    object["metadata"]["name"].as_str().map(str::to_owned)
}

#[cfg(test)]
mod tests;
