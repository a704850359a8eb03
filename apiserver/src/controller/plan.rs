//! The controller's decisions as one pure function: given a policy, the
//! nodes and the policy's enactments as the watch cache holds them, what to
//! write. No IO, no clock (the time is an argument), so every rule is a
//! table test.
//!
//! Rules (DESIGN.md section 6):
//! - Nodes are NodeNetworkState objects; the policy's `nodeSelector` picks
//!   them by the labels the caller gives (the Node's in a cluster, the
//!   NodeNetworkState's standalone; see `controller::nodes`). Enactments of
//!   nodes that do not match (or whose NodeNetworkState is gone) are
//!   deleted.
//! - An enactment whose status is not about the policy's current generation
//!   is rendered for it once, against the node's current state, and becomes
//!   Pending; a render error makes it Failing for that generation.
//!   Exception: an enactment in flight (`Progressing`) keeps its generation
//!   until the node's agent finishes it.
//! - Release: at most `maxUnavailable` enactments in flight. The guard fails
//!   closed: an enactment released to a node holds its slot until the
//!   node's agent reports an end (`Available`, `Failing`), also while the
//!   node is NotReady — a node that went dark in the middle of an apply is
//!   the likeliest victim of the policy. Only an operator ends such a slot,
//!   by deleting the enactment or the node's NodeNetworkState. Rendered,
//!   pending enactments on live nodes are released in name order as slots
//!   free up; nodes NotReady before their release wait (ignored). Once the
//!   current generation's failures reach `maxUnavailable`, its enactments
//!   not yet started are Aborted.
//! - The policy's conditions and counts aggregate the current generation's
//!   enactments with upstream's wording. A policy is never Available while
//!   an enactment is in flight, nor when it configured no node at all.
//!
//! A write is planned only when something other than a heartbeat changes,
//! so reconciling a settled policy writes nothing.

use std::{
    borrow::Cow,
    collections::{BTreeMap, HashMap, HashSet},
};

use nmstate_openapi::{
    Condition, EnactmentPhase, NodeNetworkConfigurationEnactmentStatus,
    NodeNetworkConfigurationPolicySpec, NodeNetworkConfigurationPolicyStatus, State, Time,
    condition::{
        ENACTMENT_PENDING_MESSAGE, POLICY_NO_MATCHING_NODE, enactment_aborted_message,
        enactment_render_failure_message, is_enactment_pending, policy_failed_message,
        policy_progressing_message, policy_success_message, set_enactment_aborted,
        set_enactment_failed_to_configure, set_enactment_pending, set_enactment_released,
        set_enactment_unknown, set_policy_failed_to_configure, set_policy_not_matching,
        set_policy_progressing, set_policy_success,
    },
    enactment::MetaInfo,
    enactment_name,
    render::{RenderOptions, render},
};

/// A node, as its NodeNetworkState tells.
#[derive(Clone, Debug)]
pub struct Node<'a> {
    /// The node name (the NodeNetworkState's name).
    pub name: &'a str,
    /// The labels selectors are matched against (the Node's in a cluster,
    /// the NodeNetworkState's standalone).
    pub labels: &'a BTreeMap<String, String>,
    /// Whether its agent is alive (a recent `Ready` heartbeat).
    pub alive: bool,
    /// `status.currentState` as JSON text, if reported (parsed only to
    /// render).
    pub current_state: Option<&'a str>,
}

/// An existing enactment of the policy.
#[derive(Clone, Debug)]
pub struct Existing<'a> {
    /// The enactment's name.
    pub name: &'a str,
    /// Its `nmstate.io/node` label.
    pub node: &'a str,
    /// Its resource version (the store revision), for compare-and-swap.
    pub revision: i64,
    /// Its status, decoded (the controller keeps each enactment's decoded
    /// status between batches, so this is a borrow).
    pub status: &'a NodeNetworkConfigurationEnactmentStatus,
}

/// The policy being reconciled.
#[derive(Clone, Debug)]
pub struct Policy<'a> {
    /// Its name.
    pub name: &'a str,
    /// `metadata.generation`.
    pub generation: i64,
    /// Its spec.
    pub spec: &'a NodeNetworkConfigurationPolicySpec,
    /// Its current status.
    pub status: Option<&'a NodeNetworkConfigurationPolicyStatus>,
}

/// One write the controller must make.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Create enactment `name` for `node` with `status`.
    Create {
        /// Enactment name.
        name: String,
        /// Node name.
        node: String,
        /// Initial status.
        status: NodeNetworkConfigurationEnactmentStatus,
    },
    /// Replace the status of enactment `name`, read at `revision`.
    UpdateStatus {
        /// Enactment name.
        name: String,
        /// Revision the change was planned on.
        revision: i64,
        /// The new status.
        status: NodeNetworkConfigurationEnactmentStatus,
    },
    /// Delete enactment `name`, read at `revision`.
    Delete {
        /// Enactment name.
        name: String,
        /// Revision the decision was made on.
        revision: i64,
    },
}

/// Counts of the policy's matching nodes, by where their enactment stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Nodes the selector matches.
    pub matching: usize,
    /// Matching nodes whose agent was not alive when their turn came, so
    /// they wait unreleased (upstream: "ignored due to NotReady state").
    pub not_ready: usize,
    /// In flight on nodes whose agent is not alive: released (or applying)
    /// when the node went dark. They hold their slot.
    pub dark_in_flight: usize,
    /// Configured with the current generation.
    pub available: usize,
    /// In flight (released, applying or retrying; any generation).
    pub progressing: usize,
    /// Waiting for their turn, on live nodes.
    pub pending: usize,
    /// Failed the current generation.
    pub failed: usize,
    /// Aborted for the current generation.
    pub aborted: usize,
}

/// What to write for one policy.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// Enactment writes, in enactment name order.
    pub actions: Vec<Action>,
    /// The policy's new status, when it differs from the current one in
    /// more than heartbeats.
    pub policy_status: Option<NodeNetworkConfigurationPolicyStatus>,
    /// The counts the status was computed from.
    pub counts: Counts,
}

/// One matching node's enactment while planning. The status is copied
/// only when the plan changes it: with thousands of enactments, most of
/// them settled or waiting, copying every one on every batch was most of
/// a batch's cost.
struct Slot<'a> {
    node: &'a Node<'a>,
    name: Cow<'a, str>,
    revision: Option<i64>,
    status: Cow<'a, NodeNetworkConfigurationEnactmentStatus>,
    /// `status.phase()`, which reads the conditions: asked several times
    /// of every slot, kept here and refreshed by [`Slot::status_mut`].
    phase: EnactmentPhase,
    changed: bool,
}

impl<'a> Slot<'a> {
    fn new(
        node: &'a Node<'a>,
        name: Cow<'a, str>,
        revision: Option<i64>,
        status: Cow<'a, NodeNetworkConfigurationEnactmentStatus>,
    ) -> Self {
        Self {
            node,
            name,
            revision,
            phase: status.phase(),
            changed: revision.is_none(),
            status,
        }
    }

    fn generation(&self) -> Option<i64> {
        self.status.policy_generation
    }

    /// Changes the status (a copy of the borrowed one, made once) and
    /// marks the slot changed.
    fn change(&mut self, edit: impl FnOnce(&mut NodeNetworkConfigurationEnactmentStatus)) {
        let status = self.status.to_mut();
        edit(status);
        self.phase = status.phase();
        self.changed = true;
    }

    fn rendered_for(&self, generation: i64) -> bool {
        self.status.desired_state.is_some()
            && self
                .status
                .desired_state_meta_info
                .as_ref()
                .and_then(|meta| meta.version.as_deref())
                == Some(generation.to_string().as_str())
    }
}

/// Decides the writes for `policy` given every node and the policy's
/// enactments.
pub fn plan(
    policy: &Policy<'_>,
    nodes: &[Node<'_>],
    existing: &[Existing<'_>],
    now: &Time,
    options: RenderOptions,
) -> Plan {
    let generation = policy.generation;
    let mut actions = Vec::new();

    let mut matching: Vec<&Node<'_>> = nodes
        .iter()
        .filter(|node| policy.spec.selects(node.labels))
        .collect();
    matching.sort_by(|a, b| a.name.cmp(b.name));
    let max_unavailable = policy.spec.max_unavailable_nodes(matching.len());

    // A set, not a scan of `matching` per enactment: with thousands of
    // nodes that scan was quadratic, and the controller plans on every
    // batch of enactment updates during a rollout.
    let matching_names: HashSet<&str> = matching.iter().map(|node| node.name).collect();
    let mut by_node: HashMap<&str, &Existing<'_>> = HashMap::new();
    for enactment in existing {
        let wanted = matching_names.contains(enactment.node)
            && enactment.name == enactment_name(enactment.node, policy.name);
        if wanted {
            by_node.insert(enactment.node, enactment);
        } else {
            actions.push(Action::Delete {
                name: enactment.name.to_owned(),
                revision: enactment.revision,
            });
        }
    }

    let mut slots: Vec<Slot<'_>> = matching
        .iter()
        .map(|node| match by_node.get(node.name) {
            Some(enactment) => Slot::new(
                node,
                Cow::Borrowed(enactment.name),
                Some(enactment.revision),
                Cow::Borrowed(enactment.status),
            ),
            None => {
                let mut status = NodeNetworkConfigurationEnactmentStatus::default();
                set_enactment_unknown(&mut status.conditions, now);
                Slot::new(
                    node,
                    Cow::Owned(enactment_name(node.name, policy.name)),
                    None,
                    Cow::Owned(status),
                )
            }
        })
        .collect();

    // Bring every enactment that is not in flight to the current
    // generation: render it once.
    for slot in &mut slots {
        if slot.phase == EnactmentPhase::Progressing
            || slot.rendered_for(generation)
            || (slot.generation() == Some(generation) && slot.phase.is_finished())
        {
            continue;
        }
        let Some(current) = slot.node.current_state else {
            // Nothing to render against yet: wait, Pending, for a report.
            if slot.generation() != Some(generation) {
                slot.change(|status| reset_for(status, generation, now));
            }
            continue;
        };
        let rendered = serde_json::from_str(current)
            .map_err(|error| format!("the node's current state is no JSON: {error}"))
            .and_then(|current| {
                render(policy.spec, &State(current), &options, now).map_err(|e| e.to_string())
            });
        slot.change(|status| {
            reset_for(status, generation, now);
            match rendered {
                Ok(rendered) => {
                    status.desired_state = Some(rendered.desired_state);
                    status.captured_states = rendered.captured_states;
                    status.desired_state_meta_info = Some(MetaInfo {
                        version: Some(generation.to_string()),
                        time: Some(now.clone()),
                    });
                }
                Err(error) => {
                    set_enactment_failed_to_configure(
                        &mut status.conditions,
                        &enactment_render_failure_message(&error),
                        now,
                    );
                }
            }
        });
    }

    // Release in waves. Every enactment in flight holds a slot, whether or
    // not its node still reports (fail closed).
    let is_current = |slot: &Slot<'_>| slot.generation() == Some(generation);
    let in_flight = slots
        .iter()
        .filter(|slot| slot.phase == EnactmentPhase::Progressing)
        .count();
    let failed = slots
        .iter()
        .filter(|slot| is_current(slot) && slot.phase == EnactmentPhase::Failed)
        .count();
    let abort = failed >= max_unavailable;
    let mut free = max_unavailable.saturating_sub(in_flight);
    for slot in &mut slots {
        let waiting = slot.generation() == Some(generation)
            && matches!(
                slot.phase,
                EnactmentPhase::Pending | EnactmentPhase::Unknown
            );
        if !waiting {
            continue;
        }
        let release = !abort && free > 0 && slot.node.alive && slot.rendered_for(generation);
        // Most waiting enactments stay as they are: nothing is copied for
        // them (a heartbeat alone is not worth a write).
        if !abort
            && !release
            && !slot.changed
            && is_enactment_pending(&slot.status.conditions, ENACTMENT_PENDING_MESSAGE)
        {
            continue;
        }
        if release {
            free -= 1;
        }
        let name = slot.name.clone();
        slot.change(|status| {
            let conditions = &mut status.conditions;
            if abort {
                set_enactment_aborted(conditions, &enactment_aborted_message(&name), now);
            } else if release {
                set_enactment_released(conditions, now);
            } else {
                set_enactment_pending(conditions, ENACTMENT_PENDING_MESSAGE, now);
            }
        });
    }

    // Count.
    let mut counts = Counts {
        matching: slots.len(),
        ..Counts::default()
    };
    for slot in &slots {
        let phase = slot.phase;
        if phase == EnactmentPhase::Progressing {
            counts.progressing += 1;
            if !slot.node.alive {
                counts.dark_in_flight += 1;
            }
            continue;
        }
        if !is_current(slot) {
            continue;
        }
        match phase {
            EnactmentPhase::Available => counts.available += 1,
            EnactmentPhase::Failed => counts.failed += 1,
            EnactmentPhase::Aborted => counts.aborted += 1,
            EnactmentPhase::Pending | EnactmentPhase::Unknown if slot.node.alive => {
                counts.pending += 1;
            }
            EnactmentPhase::Pending | EnactmentPhase::Unknown => counts.not_ready += 1,
            EnactmentPhase::Progressing => {}
        }
    }

    for slot in slots {
        if !slot.changed {
            continue;
        }
        actions.push(match slot.revision {
            None => Action::Create {
                name: slot.name.into_owned(),
                node: slot.node.name.to_owned(),
                status: slot.status.into_owned(),
            },
            Some(revision) => Action::UpdateStatus {
                name: slot.name.into_owned(),
                revision,
                status: slot.status.into_owned(),
            },
        });
    }
    actions.sort_by(|a, b| action_name(a).cmp(action_name(b)));

    Plan {
        actions,
        policy_status: policy_status(policy, &counts, now),
        counts,
    }
}

fn action_name(action: &Action) -> &str {
    match action {
        Action::Create { name, .. }
        | Action::UpdateStatus { name, .. }
        | Action::Delete { name, .. } => name,
    }
}

/// Starts the status over for `generation`: the old rendering is dropped
/// and every condition becomes `Unknown` (the retry counts of other
/// generations stay).
fn reset_for(status: &mut NodeNetworkConfigurationEnactmentStatus, generation: i64, now: &Time) {
    status.policy_generation = Some(generation);
    status.desired_state = None;
    status.desired_state_meta_info = None;
    status.captured_states.clear();
    status.features.clear();
    set_enactment_unknown(&mut status.conditions, now);
}

/// The policy's status for `counts`, or `None` when the current one says
/// the same (heartbeats aside).
fn policy_status(
    policy: &Policy<'_>,
    counts: &Counts,
    now: &Time,
) -> Option<NodeNetworkConfigurationPolicyStatus> {
    let old = policy.status.cloned().unwrap_or_default();
    let mut status = old.clone();
    let generation = Some(policy.generation);
    let conditions: &mut Vec<Condition> = &mut status.conditions;
    let finished = counts.available + counts.failed + counts.aborted;
    let conditions_changed = if counts.matching == 0 {
        set_policy_not_matching(conditions, POLICY_NO_MATCHING_NODE, generation, now)
    } else if counts.failed > 0 || counts.aborted > 0 {
        let message = policy_failed_message(counts.failed, counts.matching, counts.aborted);
        set_policy_failed_to_configure(conditions, &message, generation, now)
    } else if counts.progressing > 0 || counts.pending > 0 || counts.available == 0 {
        // Something is in flight (on a live node or a dark one), waits for
        // a slot, or no node was configured at all (every matching node
        // NotReady): not Available.
        let message = policy_progressing_message(
            finished,
            counts.matching - counts.not_ready,
            counts.pending,
            counts.not_ready,
            counts.dark_in_flight,
        );
        set_policy_progressing(conditions, &message, generation, now)
    } else {
        let message = policy_success_message(counts.available, counts.matching, counts.not_ready);
        set_policy_success(conditions, &message, generation, now)
    };
    let count = |n: usize| Some(i32::try_from(n).unwrap_or(i32::MAX));
    status.observed_generation = generation;
    status.matching_nodes = count(counts.matching);
    status.available_nodes = count(counts.available);
    status.progressing_nodes = count(counts.progressing);
    status.pending_nodes = count(counts.pending);
    status.failing_nodes = count(counts.failed);
    status.aborted_nodes = count(counts.aborted);
    status.unavailable_node_count = count(counts.progressing);
    let counts_changed = status.observed_generation != old.observed_generation
        || status.matching_nodes != old.matching_nodes
        || status.available_nodes != old.available_nodes
        || status.progressing_nodes != old.progressing_nodes
        || status.pending_nodes != old.pending_nodes
        || status.failing_nodes != old.failing_nodes
        || status.aborted_nodes != old.aborted_nodes
        || status.unavailable_node_count != old.unavailable_node_count;
    (conditions_changed || counts_changed || policy.status.is_none()).then_some(status)
}

#[cfg(test)]
mod tests;
