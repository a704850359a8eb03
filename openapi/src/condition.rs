//! Conditions: the vocabulary (types, statuses, reasons, with upstream
//! kubernetes-nmstate spellings), the rule for updating one condition in a
//! list, the condition sets upstream writes together for each policy and
//! enactment phase, and the upstream message formats.
//!
//! Everything takes the current time as an argument, so callers (controller,
//! agent) decide the clock and tests are deterministic.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use utoipa::ToSchema;

use crate::Time;
// Short names keep the upstream condition tables below readable.
use ConditionReason as R;
use ConditionStatus::{False, True, Unknown};
use ConditionType as T;

/// Declares a string-valued enum with known upstream spellings and an
/// `Other` variant that keeps any other value verbatim, so objects written by
/// newer or older versions still decode.
macro_rules! string_enum {
    (
        $(#[$meta:meta])*
        $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident => $text:literal, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )*
            /// A value this version does not know, kept verbatim.
            Other(String),
        }

        impl $name {
            /// Every value this version knows, in upstream's order.
            pub const KNOWN: &'static [$name] = &[$($name::$variant),*];

            /// The wire spelling.
            pub fn as_str(&self) -> &str {
                match self {
                    $( Self::$variant => $text, )*
                    Self::Other(text) => text.as_str(),
                }
            }

            /// Whether this is one of [`Self::KNOWN`].
            pub fn is_known(&self) -> bool {
                !matches!(self, Self::Other(_))
            }
        }

        impl From<&str> for $name {
            fn from(text: &str) -> Self {
                match text {
                    $( $text => Self::$variant, )*
                    other => Self::Other(other.to_owned()),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl utoipa::PartialSchema for $name {
            /// A plain string: values this version does not know are kept,
            /// so the schema lists no `enum`.
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::schema::Object::with_type(utoipa::openapi::schema::Type::String)
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {}

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                Ok(Self::from(text.as_str()))
            }
        }
    };
}

string_enum! {
    /// The `type` of a condition. The same names are shared by the kinds;
    /// which ones a kind uses is listed in [`POLICY_CONDITION_TYPES`],
    /// [`ENACTMENT_CONDITION_TYPES`] and [`STATE_CONDITION_TYPES`].
    ConditionType {
        /// The configuration is in place (policy: on all matching nodes).
        Available => "Available",
        /// Policy: some node failed or aborted.
        Degraded => "Degraded",
        /// Being applied.
        Progressing => "Progressing",
        /// Policy: no node matches its selector.
        Ignored => "Ignored",
        /// Enactment (and node state): applying failed or is being retried.
        Failing => "Failing",
        /// Enactment: waiting for its turn under `maxUnavailable`.
        Pending => "Pending",
        /// Enactment: not attempted because too many nodes failed.
        Aborted => "Aborted",
        /// Node state: the node's agent is alive and reporting (renewed at
        /// most once a minute). Not in upstream, which has no agent liveness.
        Ready => "Ready",
    }
}

string_enum! {
    /// The `reason` of a condition (a CamelCase word for machines).
    ConditionReason {
        /// Applying failed (and retries are exhausted).
        FailedToConfigure => "FailedToConfigure",
        /// Applying succeeded.
        SuccessfullyConfigured => "SuccessfullyConfigured",
        /// Applying is under way.
        ConfigurationProgressing => "ConfigurationProgressing",
        /// Policy: the node selector matches no node.
        NoMatchingNode => "NoMatchingNode",
        /// Enactment: held back, `maxUnavailable` nodes are already in flight.
        MaxUnavailableLimitReached => "MaxUnavailableLimitReached",
        /// Enactment: given up because failures reached `maxUnavailable`.
        ConfigurationAborted => "ConfigurationAborted",
        /// Enactment: an apply failed and will be tried again.
        Retrying => "Retrying",
        /// Node state `Ready`: the node's agent is alive and reporting.
        AgentReporting => "AgentReporting",
    }
}

/// Condition types a policy carries, in upstream order.
pub const POLICY_CONDITION_TYPES: [ConditionType; 4] = [
    ConditionType::Available,
    ConditionType::Degraded,
    ConditionType::Progressing,
    ConditionType::Ignored,
];

/// Condition types an enactment carries, in upstream order.
pub const ENACTMENT_CONDITION_TYPES: [ConditionType; 5] = [
    ConditionType::Available,
    ConditionType::Failing,
    ConditionType::Progressing,
    ConditionType::Pending,
    ConditionType::Aborted,
];

/// Condition types a node state may carry: upstream's `Available` and
/// `Failing`, plus our agent-liveness `Ready`.
pub const STATE_CONDITION_TYPES: [ConditionType; 3] = [
    ConditionType::Available,
    ConditionType::Failing,
    ConditionType::Ready,
];

/// The `status` of a condition, as Kubernetes' `ConditionStatus`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum ConditionStatus {
    /// The condition holds.
    True,
    /// The condition does not hold.
    False,
    /// Not known (yet).
    Unknown,
}

impl ConditionStatus {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::True => "True",
            Self::False => "False",
            Self::Unknown => "Unknown",
        }
    }
}

impl std::fmt::Display for ConditionStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One condition of a policy, enactment or node state.
///
/// ```yaml
/// type: Available
/// status: "True"
/// reason: SuccessfullyConfigured
/// message: 3/3 nodes successfully configured
/// lastHeartbeatTime: "2024-05-01T10:00:00Z"
/// lastTransitionTime: "2024-05-01T09:58:12Z"
/// observedGeneration: 2
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// What the condition is about, e.g. `Available`.
    #[serde(rename = "type")]
    #[schema(inline)]
    pub type_: ConditionType,
    /// `True`, `False` or `Unknown`.
    #[schema(inline)]
    pub status: ConditionStatus,
    /// Why, as a CamelCase word; absent (upstream writes `""`) when unknown.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "empty_reason_as_none"
    )]
    #[schema(inline)]
    pub reason: Option<ConditionReason>,
    /// Why, for humans.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// The last time the condition was written, changed or not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = crate::openapi_doc::meta::TimeSchema)]
    pub last_heartbeat_time: Option<Time>,
    /// The last time `status` changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = crate::openapi_doc::meta::TimeSchema)]
    pub last_transition_time: Option<Time>,
    /// The policy generation the condition describes (policy conditions
    /// only), so that `kubectl wait --for=condition=Available` waits for the
    /// current generation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

fn empty_reason_as_none<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<ConditionReason>, D::Error> {
    let reason = Option::<String>::deserialize(deserializer)?;
    Ok(reason
        .filter(|reason| !reason.is_empty())
        .map(|reason| ConditionReason::from(reason.as_str())))
}

impl Condition {
    /// A condition with no times and no observed generation; pass it to
    /// [`set_condition`] to record it.
    pub fn new(
        type_: ConditionType,
        status: ConditionStatus,
        reason: Option<ConditionReason>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_,
            status,
            reason,
            message: message.into(),
            last_heartbeat_time: None,
            last_transition_time: None,
            observed_generation: None,
        }
    }

    /// The same condition, describing policy generation `generation`.
    pub fn with_observed_generation(mut self, generation: Option<i64>) -> Self {
        self.observed_generation = generation;
        self
    }

    /// Whether `status` is `True`.
    pub fn is_true(&self) -> bool {
        self.status == ConditionStatus::True
    }
}

/// The condition of type `type_`, if present.
pub fn find_condition<'a>(
    conditions: &'a [Condition],
    type_: &ConditionType,
) -> Option<&'a Condition> {
    conditions
        .iter()
        .find(|condition| &condition.type_ == type_)
}

/// Whether the condition of type `type_` is present with status `True`.
pub fn is_condition_true(conditions: &[Condition], type_: &ConditionType) -> bool {
    find_condition(conditions, type_).is_some_and(Condition::is_true)
}

/// Records `desired` in `conditions` at time `now`, the way upstream does:
/// a new type is appended with both times set to `now`; an existing one takes
/// the new status, reason, message and observed generation, and its
/// `lastTransitionTime` moves only when the status changes. The heartbeat is
/// always `now`. The times carried by `desired` are ignored.
///
/// Returns whether anything other than the heartbeat changed, so a caller can
/// skip a write that would only move heartbeats.
pub fn set_condition(conditions: &mut Vec<Condition>, desired: Condition, now: &Time) -> bool {
    let Some(existing) = conditions.iter_mut().find(|c| c.type_ == desired.type_) else {
        conditions.push(Condition {
            last_heartbeat_time: Some(now.clone()),
            last_transition_time: Some(now.clone()),
            ..desired
        });
        return true;
    };
    let mut changed = false;
    if existing.status != desired.status {
        existing.last_transition_time = Some(now.clone());
        existing.status = desired.status;
        changed = true;
    }
    if existing.reason != desired.reason {
        existing.reason = desired.reason;
        changed = true;
    }
    if existing.message != desired.message {
        existing.message = desired.message;
        changed = true;
    }
    if existing.observed_generation != desired.observed_generation {
        existing.observed_generation = desired.observed_generation;
        changed = true;
    }
    // Upstream never clears a transition time; an object written without one
    // gets it now so that "Status Age" columns have a value.
    if existing.last_transition_time.is_none() {
        existing.last_transition_time = Some(now.clone());
    }
    existing.last_heartbeat_time = Some(now.clone());
    changed
}

/// Sets several conditions at once; returns whether any changed beyond the
/// heartbeat.
fn set_all(
    conditions: &mut Vec<Condition>,
    desired: impl IntoIterator<Item = Condition>,
    now: &Time,
) -> bool {
    desired.into_iter().fold(false, |changed, condition| {
        set_condition(conditions, condition, now) | changed
    })
}

fn cond(
    type_: ConditionType,
    status: ConditionStatus,
    reason: Option<ConditionReason>,
    message: &str,
) -> Condition {
    Condition::new(type_, status, reason, message)
}

/// Policy phase "some matching node is still being configured"
/// (upstream `SetPolicyProgressing`). `generation` is the policy generation
/// the conditions describe.
pub fn set_policy_progressing(
    conditions: &mut Vec<Condition>,
    message: &str,
    generation: Option<i64>,
    now: &Time,
) -> bool {
    let reason = Some(R::ConfigurationProgressing);
    set_all(
        conditions,
        [
            cond(T::Degraded, Unknown, reason.clone(), ""),
            cond(T::Available, Unknown, reason.clone(), ""),
            cond(T::Progressing, True, reason.clone(), message),
            cond(T::Ignored, False, reason, ""),
        ]
        .map(|c| c.with_observed_generation(generation)),
        now,
    )
}

/// Policy phase "every matching node is configured" (upstream
/// `SetPolicySuccess`).
pub fn set_policy_success(
    conditions: &mut Vec<Condition>,
    message: &str,
    generation: Option<i64>,
    now: &Time,
) -> bool {
    let reason = Some(R::SuccessfullyConfigured);
    set_all(
        conditions,
        [
            cond(T::Degraded, False, reason.clone(), ""),
            cond(T::Available, True, reason.clone(), message),
            cond(T::Progressing, False, reason.clone(), ""),
            cond(T::Ignored, False, reason, ""),
        ]
        .map(|c| c.with_observed_generation(generation)),
        now,
    )
}

/// Policy phase "the selector matches no node" (upstream
/// `SetPolicyNotMatching`); `message` is normally [`POLICY_NO_MATCHING_NODE`].
pub fn set_policy_not_matching(
    conditions: &mut Vec<Condition>,
    message: &str,
    generation: Option<i64>,
    now: &Time,
) -> bool {
    let reason = Some(R::NoMatchingNode);
    set_all(
        conditions,
        [
            cond(T::Degraded, False, reason.clone(), ""),
            cond(T::Available, False, reason.clone(), ""),
            cond(T::Progressing, False, reason.clone(), ""),
            cond(T::Ignored, True, reason, message),
        ]
        .map(|c| c.with_observed_generation(generation)),
        now,
    )
}

/// Policy phase "some node failed or aborted" (upstream
/// `SetPolicyFailedToConfigure`; note that upstream gives `Progressing` the
/// reason `ConfigurationProgressing` here).
pub fn set_policy_failed_to_configure(
    conditions: &mut Vec<Condition>,
    message: &str,
    generation: Option<i64>,
    now: &Time,
) -> bool {
    let reason = Some(R::FailedToConfigure);
    set_all(
        conditions,
        [
            cond(T::Degraded, True, reason.clone(), message),
            cond(T::Available, False, reason.clone(), ""),
            cond(T::Progressing, False, Some(R::ConfigurationProgressing), ""),
            cond(T::Ignored, False, reason, ""),
        ]
        .map(|c| c.with_observed_generation(generation)),
        now,
    )
}

/// Every policy condition `Unknown` with no reason (upstream
/// `SetPolicyStatusUnknown`, written when a policy is created or changed).
pub fn set_policy_unknown(
    conditions: &mut Vec<Condition>,
    generation: Option<i64>,
    now: &Time,
) -> bool {
    set_all(
        conditions,
        POLICY_CONDITION_TYPES
            .map(|type_| cond(type_, Unknown, None, "").with_observed_generation(generation)),
        now,
    )
}

/// Every enactment condition `Unknown` with no reason, as a new enactment
/// starts (upstream `NewEnactment`).
pub fn set_enactment_unknown(conditions: &mut Vec<Condition>, now: &Time) -> bool {
    set_all(
        conditions,
        ENACTMENT_CONDITION_TYPES.map(|type_| cond(type_, Unknown, None, "")),
        now,
    )
}

/// Enactment phase "applying failed for good" (upstream
/// `SetFailedToConfigure`). `message` is the error.
pub fn set_enactment_failed_to_configure(
    conditions: &mut Vec<Condition>,
    message: &str,
    now: &Time,
) -> bool {
    let reason = Some(R::FailedToConfigure);
    set_all(
        conditions,
        [
            cond(T::Failing, True, reason.clone(), message),
            cond(T::Available, False, reason.clone(), ""),
            cond(T::Progressing, False, reason.clone(), ""),
            cond(T::Pending, False, reason, ""),
            cond(T::Aborted, False, Some(R::SuccessfullyConfigured), ""),
        ],
        now,
    )
}

/// Enactment phase "an apply failed and will be retried" (upstream
/// `SetRetryAfterFailed`): `Failing` and `Progressing` are both true.
/// `message` is normally [`enactment_retrying_message`].
pub fn set_enactment_retrying(conditions: &mut Vec<Condition>, message: &str, now: &Time) -> bool {
    let reason = Some(R::Retrying);
    set_all(
        conditions,
        [
            cond(T::Failing, True, reason.clone(), message),
            cond(T::Progressing, True, reason.clone(), message),
            cond(T::Available, False, reason.clone(), ""),
            cond(T::Pending, False, reason, ""),
            cond(T::Aborted, False, Some(R::SuccessfullyConfigured), ""),
        ],
        now,
    )
}

/// Enactment phase "not attempted: too many nodes failed" (upstream
/// `SetConfigurationAborted`). `message` is normally
/// [`enactment_aborted_message`].
pub fn set_enactment_aborted(conditions: &mut Vec<Condition>, message: &str, now: &Time) -> bool {
    let reason = Some(R::ConfigurationAborted);
    set_all(
        conditions,
        [
            cond(T::Failing, False, reason.clone(), ""),
            cond(T::Available, False, reason.clone(), ""),
            cond(T::Progressing, False, reason.clone(), ""),
            cond(T::Pending, False, reason.clone(), ""),
            cond(T::Aborted, True, reason, message),
        ],
        now,
    )
}

/// Enactment phase "applied" (upstream `SetSuccess`); `message` is normally
/// [`ENACTMENT_SUCCESS_MESSAGE`].
pub fn set_enactment_success(conditions: &mut Vec<Condition>, message: &str, now: &Time) -> bool {
    let reason = Some(R::SuccessfullyConfigured);
    set_all(
        conditions,
        [
            cond(T::Available, True, reason.clone(), message),
            cond(T::Failing, False, reason.clone(), ""),
            cond(T::Progressing, False, reason.clone(), ""),
            cond(T::Pending, False, reason.clone(), ""),
            cond(T::Aborted, False, reason, ""),
        ],
        now,
    )
}

/// Enactment phase "being applied" (upstream `SetProgressing`); `message` is
/// normally [`ENACTMENT_PROGRESSING_MESSAGE`].
pub fn set_enactment_progressing(
    conditions: &mut Vec<Condition>,
    message: &str,
    now: &Time,
) -> bool {
    let reason = Some(R::ConfigurationProgressing);
    set_all(
        conditions,
        [
            cond(T::Progressing, True, reason.clone(), message),
            cond(T::Failing, Unknown, reason.clone(), ""),
            cond(T::Available, Unknown, reason.clone(), ""),
            cond(T::Pending, False, reason.clone(), ""),
            cond(T::Aborted, False, reason, ""),
        ],
        now,
    )
}

/// Enactment phase "waiting for its turn under `maxUnavailable`" (upstream
/// `SetPending`; upstream also copies the message onto `Progressing`).
/// `message` is normally [`ENACTMENT_PENDING_MESSAGE`].
pub fn set_enactment_pending(conditions: &mut Vec<Condition>, message: &str, now: &Time) -> bool {
    let reason = R::MaxUnavailableLimitReached;
    set_all(
        conditions,
        pending_conditions(message)
            .map(|(type_, status, message)| cond(type_, status, Some(reason.clone()), message)),
        now,
    )
}

/// Whether `conditions` already say what [`set_enactment_pending`] with
/// `message` would write, so that it would change nothing but heartbeats
/// (and return `false`). It copies nothing: a rollout asks it of every
/// waiting enactment on every batch.
pub fn is_enactment_pending(conditions: &[Condition], message: &str) -> bool {
    let reason = Some(R::MaxUnavailableLimitReached);
    pending_conditions(message)
        .iter()
        .all(|(type_, status, message)| {
            find_condition(conditions, type_).is_some_and(|condition| {
                condition.status == *status
                    && condition.reason == reason
                    && condition.message == *message
                    && condition.observed_generation.is_none()
            })
        })
}

/// A waiting enactment's conditions (type, status, message), all with the
/// reason `MaxUnavailableLimitReached`.
fn pending_conditions(message: &str) -> [(ConditionType, ConditionStatus, &str); 5] {
    [
        (T::Pending, True, message),
        (T::Aborted, False, ""),
        (T::Progressing, False, message),
        (T::Failing, False, ""),
        (T::Available, False, ""),
    ]
}

/// Enactment phase "released to the node's agent" (written by the
/// controller when the rollout gives this enactment its turn): `Progressing`
/// with reason `ConfigurationProgressing` and [`ENACTMENT_RELEASED_MESSAGE`].
/// The agent applies an enactment whose `Progressing` is true; when it
/// starts it writes [`set_enactment_progressing`] with
/// [`ENACTMENT_PROGRESSING_MESSAGE`], so the status shows whether the agent
/// has picked the work up.
pub fn set_enactment_released(conditions: &mut Vec<Condition>, now: &Time) -> bool {
    set_enactment_progressing(conditions, ENACTMENT_RELEASED_MESSAGE, now)
}

/// Node state `Ready`: the agent is alive and reporting. The agent renews
/// it (the heartbeat) at most once a minute; the controller treats a node
/// whose `Ready` is not true, or whose heartbeat is too old, as NotReady.
pub fn set_state_ready(conditions: &mut Vec<Condition>, now: &Time) -> bool {
    set_condition(
        conditions,
        cond(T::Ready, True, Some(R::AgentReporting), STATE_READY_MESSAGE),
        now,
    )
}

/// Node state `Ready` message.
pub const STATE_READY_MESSAGE: &str = "nmstate-agent is reporting";
/// Enactment `Progressing` message once the controller released it to the
/// node's agent and before the agent started applying.
pub const ENACTMENT_RELEASED_MESSAGE: &str = "Released to the node agent for applying";
/// Policy `Ignored` message when the selector matches no node.
pub const POLICY_NO_MATCHING_NODE: &str = "Policy does not match any node";
/// Enactment `Progressing` message while applying.
pub const ENACTMENT_PROGRESSING_MESSAGE: &str = "Applying desired state";
/// Enactment `Available` message after a successful apply.
pub const ENACTMENT_SUCCESS_MESSAGE: &str = "successfully reconciled";
/// Enactment `Pending` message while held back by `maxUnavailable`.
pub const ENACTMENT_PENDING_MESSAGE: &str = "Waiting for progressing nodes to finish";

fn not_ready_suffix(not_ready: usize) -> String {
    if not_ready > 0 {
        format!(", {not_ready} nodes ignored due to NotReady state")
    } else {
        String::new()
    }
}

/// Policy `Available` message: `3/10 nodes successfully configured`, plus
/// `, N nodes ignored due to NotReady state` when some matching nodes are
/// not ready.
pub fn policy_success_message(available: usize, matching: usize, not_ready: usize) -> String {
    format!(
        "{available}/{matching} nodes successfully configured{}",
        not_ready_suffix(not_ready)
    )
}

/// Policy `Degraded` message: `1/10 nodes failed to configure`, plus
/// `, N nodes aborted configuration` when some were aborted.
pub fn policy_failed_message(failed: usize, matching: usize, aborted: usize) -> String {
    let mut message = format!("{failed}/{matching} nodes failed to configure");
    if aborted > 0 {
        message.push_str(&format!(", {aborted} nodes aborted configuration"));
    }
    message
}

/// Policy `Progressing` message: `Policy is progressing 2/10 nodes finished`,
/// plus `, N pending` when `pending` is not zero, `, N in flight on NotReady
/// nodes` when enactments in flight lost their node's agent (they keep
/// their slot), and the NotReady suffix for nodes that wait unreleased.
/// (Upstream shows the pending count only once every released node has
/// finished; pass `pending = 0` to reproduce that. Upstream has no dark
/// in-flight count: it does not hold their slots.)
pub fn policy_progressing_message(
    finished: usize,
    ready: usize,
    pending: usize,
    not_ready: usize,
    dark_in_flight: usize,
) -> String {
    let mut message = format!("Policy is progressing {finished}/{ready} nodes finished");
    if pending > 0 {
        message.push_str(&format!(", {pending} pending"));
    }
    if dark_in_flight > 0 {
        message.push_str(&format!(", {dark_in_flight} in flight on NotReady nodes"));
    }
    message.push_str(&not_ready_suffix(not_ready));
    message
}

/// Enactment `Failing` message when rendering for the node failed.
pub fn enactment_render_failure_message(error: &str) -> String {
    format!("failure generating desiredState and capturedStates: {error}")
}

/// Enactment `Failing`/`Progressing` message of a retry, `attempt` counting
/// from 1.
pub fn enactment_retrying_message(node: &str, attempt: u32, max_attempts: u32) -> String {
    format!(
        "failed to reconcile NodeNetworkConfigurationPolicy on node {node}. Retrying {attempt}/{max_attempts}"
    )
}

/// Enactment `Aborted` message.
pub fn enactment_aborted_message(enactment: &str) -> String {
    format!("reconciliation of enactment {enactment:?} has aborted")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use k8s_openapi::jiff::Timestamp;

    use super::*;

    fn at(second: i64) -> Time {
        Time(Timestamp::from_second(second).unwrap())
    }

    fn summary(conditions: &[Condition]) -> Vec<String> {
        conditions
            .iter()
            .map(|c| {
                format!(
                    "{} {} {} {:?} hb={} tr={} gen={:?}",
                    c.type_,
                    c.status,
                    c.reason
                        .as_ref()
                        .map(ConditionReason::as_str)
                        .unwrap_or("-"),
                    c.message,
                    c.last_heartbeat_time
                        .as_ref()
                        .map_or(-1, |t| t.0.as_second()),
                    c.last_transition_time
                        .as_ref()
                        .map_or(-1, |t| t.0.as_second()),
                    c.observed_generation,
                )
            })
            .collect()
    }

    #[test]
    fn is_enactment_pending_says_whether_set_enactment_pending_would_change_anything() {
        let message = ENACTMENT_PENDING_MESSAGE;
        let with = |set: fn(&mut Vec<Condition>, &Time) -> bool| {
            let mut conditions = Vec::new();
            set(&mut conditions, &at(1));
            conditions
        };
        let pending = with(|c, now| set_enactment_pending(c, ENACTMENT_PENDING_MESSAGE, now));
        let mut other_message = pending.clone();
        set_enactment_pending(&mut other_message, "another message", &at(1));
        let mut with_generation = pending.clone();
        with_generation[0].observed_generation = Some(1);
        let mut one_missing = pending.clone();
        one_missing.retain(|c| c.type_ != T::Failing);
        let cases = [
            ("nothing yet", vec![]),
            ("pending", pending),
            ("pending, another message", other_message),
            ("pending, with a generation", with_generation),
            ("pending, one condition missing", one_missing),
            ("released", with(set_enactment_released)),
            ("unknown", with(set_enactment_unknown)),
        ];
        for (case, conditions) in cases {
            let mut copy = conditions.clone();
            let would_change = set_enactment_pending(&mut copy, message, &at(2));
            assert_eq!(
                is_enactment_pending(&conditions, message),
                !would_change,
                "{case}"
            );
        }
    }

    #[test]
    fn set_condition_follows_upstream_rules() {
        // (case, start, update, now, expected list, expected changed)
        type Case = (
            &'static str,
            Vec<Condition>,
            Condition,
            i64,
            Vec<&'static str>,
            bool,
        );
        let failing_unknown = Condition {
            last_heartbeat_time: Some(at(0)),
            last_transition_time: Some(at(0)),
            ..Condition::new(T::Failing, Unknown, Some("foo".into()), "bar")
        };
        let cases: Vec<Case> = vec![
            (
                "add to empty list",
                vec![],
                Condition::new(T::Available, True, Some(R::SuccessfullyConfigured), "ok"),
                10,
                vec![r#"Available True SuccessfullyConfigured "ok" hb=10 tr=10 gen=None"#],
                true,
            ),
            (
                "add keeps existing untouched",
                vec![failing_unknown.clone()],
                Condition::new(T::Available, True, Some("foo".into()), "bar"),
                10,
                vec![
                    r#"Failing Unknown foo "bar" hb=0 tr=0 gen=None"#,
                    r#"Available True foo "bar" hb=10 tr=10 gen=None"#,
                ],
                true,
            ),
            (
                "same values only move the heartbeat",
                vec![failing_unknown.clone()],
                Condition::new(T::Failing, Unknown, Some("foo".into()), "bar"),
                10,
                vec![r#"Failing Unknown foo "bar" hb=10 tr=0 gen=None"#],
                false,
            ),
            (
                "new message keeps the transition time",
                vec![failing_unknown.clone()],
                Condition::new(T::Failing, Unknown, Some("foo".into()), "other"),
                10,
                vec![r#"Failing Unknown foo "other" hb=10 tr=0 gen=None"#],
                true,
            ),
            (
                "new status moves the transition time",
                vec![failing_unknown.clone()],
                Condition::new(T::Failing, True, Some("bar".into()), "foo"),
                10,
                vec![r#"Failing True bar "foo" hb=10 tr=10 gen=None"#],
                true,
            ),
            (
                "new observed generation is a change",
                vec![failing_unknown],
                Condition::new(T::Failing, Unknown, Some("foo".into()), "bar")
                    .with_observed_generation(Some(2)),
                10,
                vec![r#"Failing Unknown foo "bar" hb=10 tr=0 gen=Some(2)"#],
                true,
            ),
        ];
        for (name, mut conditions, update, now, expected, expected_changed) in cases {
            let changed = set_condition(&mut conditions, update, &at(now));
            assert_eq!(summary(&conditions), expected, "{name}");
            assert_eq!(changed, expected_changed, "{name}");
        }
    }

    #[test]
    fn policy_phases_write_upstream_condition_sets() {
        type Setter = fn(&mut Vec<Condition>, &str, Option<i64>, &Time) -> bool;
        let cases: [(&str, Setter, [&str; 4]); 4] = [
            (
                "progressing",
                set_policy_progressing,
                [
                    r#"Degraded Unknown ConfigurationProgressing "" hb=5 tr=5 gen=Some(3)"#,
                    r#"Available Unknown ConfigurationProgressing "" hb=5 tr=5 gen=Some(3)"#,
                    r#"Progressing True ConfigurationProgressing "m" hb=5 tr=5 gen=Some(3)"#,
                    r#"Ignored False ConfigurationProgressing "" hb=5 tr=5 gen=Some(3)"#,
                ],
            ),
            (
                "success",
                set_policy_success,
                [
                    r#"Degraded False SuccessfullyConfigured "" hb=5 tr=5 gen=Some(3)"#,
                    r#"Available True SuccessfullyConfigured "m" hb=5 tr=5 gen=Some(3)"#,
                    r#"Progressing False SuccessfullyConfigured "" hb=5 tr=5 gen=Some(3)"#,
                    r#"Ignored False SuccessfullyConfigured "" hb=5 tr=5 gen=Some(3)"#,
                ],
            ),
            (
                "not matching",
                set_policy_not_matching,
                [
                    r#"Degraded False NoMatchingNode "" hb=5 tr=5 gen=Some(3)"#,
                    r#"Available False NoMatchingNode "" hb=5 tr=5 gen=Some(3)"#,
                    r#"Progressing False NoMatchingNode "" hb=5 tr=5 gen=Some(3)"#,
                    r#"Ignored True NoMatchingNode "m" hb=5 tr=5 gen=Some(3)"#,
                ],
            ),
            (
                "failed",
                set_policy_failed_to_configure,
                [
                    r#"Degraded True FailedToConfigure "m" hb=5 tr=5 gen=Some(3)"#,
                    r#"Available False FailedToConfigure "" hb=5 tr=5 gen=Some(3)"#,
                    r#"Progressing False ConfigurationProgressing "" hb=5 tr=5 gen=Some(3)"#,
                    r#"Ignored False FailedToConfigure "" hb=5 tr=5 gen=Some(3)"#,
                ],
            ),
        ];
        for (name, setter, expected) in cases {
            let mut conditions = vec![];
            assert!(setter(&mut conditions, "m", Some(3), &at(5)), "{name}");
            assert_eq!(summary(&conditions), expected, "{name}");
        }

        let mut conditions = vec![];
        set_policy_unknown(&mut conditions, Some(1), &at(5));
        assert_eq!(
            summary(&conditions),
            [
                r#"Available Unknown - "" hb=5 tr=5 gen=Some(1)"#,
                r#"Degraded Unknown - "" hb=5 tr=5 gen=Some(1)"#,
                r#"Progressing Unknown - "" hb=5 tr=5 gen=Some(1)"#,
                r#"Ignored Unknown - "" hb=5 tr=5 gen=Some(1)"#,
            ]
        );
    }

    #[test]
    fn enactment_phases_write_upstream_condition_sets() {
        type Setter = fn(&mut Vec<Condition>, &str, &Time) -> bool;
        // Start from the all-Unknown set a new enactment has, so the order is
        // always Available, Failing, Progressing, Pending, Aborted.
        let cases: [(&str, Setter, [&str; 5]); 6] = [
            (
                "failed",
                set_enactment_failed_to_configure,
                [
                    r#"Available False FailedToConfigure "" hb=5 tr=5 gen=None"#,
                    r#"Failing True FailedToConfigure "m" hb=5 tr=5 gen=None"#,
                    r#"Progressing False FailedToConfigure "" hb=5 tr=5 gen=None"#,
                    r#"Pending False FailedToConfigure "" hb=5 tr=5 gen=None"#,
                    r#"Aborted False SuccessfullyConfigured "" hb=5 tr=5 gen=None"#,
                ],
            ),
            (
                "retrying",
                set_enactment_retrying,
                [
                    r#"Available False Retrying "" hb=5 tr=5 gen=None"#,
                    r#"Failing True Retrying "m" hb=5 tr=5 gen=None"#,
                    r#"Progressing True Retrying "m" hb=5 tr=5 gen=None"#,
                    r#"Pending False Retrying "" hb=5 tr=5 gen=None"#,
                    r#"Aborted False SuccessfullyConfigured "" hb=5 tr=5 gen=None"#,
                ],
            ),
            (
                "aborted",
                set_enactment_aborted,
                [
                    r#"Available False ConfigurationAborted "" hb=5 tr=5 gen=None"#,
                    r#"Failing False ConfigurationAborted "" hb=5 tr=5 gen=None"#,
                    r#"Progressing False ConfigurationAborted "" hb=5 tr=5 gen=None"#,
                    r#"Pending False ConfigurationAborted "" hb=5 tr=5 gen=None"#,
                    r#"Aborted True ConfigurationAborted "m" hb=5 tr=5 gen=None"#,
                ],
            ),
            (
                "success",
                set_enactment_success,
                [
                    r#"Available True SuccessfullyConfigured "m" hb=5 tr=5 gen=None"#,
                    r#"Failing False SuccessfullyConfigured "" hb=5 tr=5 gen=None"#,
                    r#"Progressing False SuccessfullyConfigured "" hb=5 tr=5 gen=None"#,
                    r#"Pending False SuccessfullyConfigured "" hb=5 tr=5 gen=None"#,
                    r#"Aborted False SuccessfullyConfigured "" hb=5 tr=5 gen=None"#,
                ],
            ),
            (
                "progressing",
                set_enactment_progressing,
                [
                    r#"Available Unknown ConfigurationProgressing "" hb=5 tr=0 gen=None"#,
                    r#"Failing Unknown ConfigurationProgressing "" hb=5 tr=0 gen=None"#,
                    r#"Progressing True ConfigurationProgressing "m" hb=5 tr=5 gen=None"#,
                    r#"Pending False ConfigurationProgressing "" hb=5 tr=5 gen=None"#,
                    r#"Aborted False ConfigurationProgressing "" hb=5 tr=5 gen=None"#,
                ],
            ),
            (
                "pending",
                set_enactment_pending,
                [
                    r#"Available False MaxUnavailableLimitReached "" hb=5 tr=5 gen=None"#,
                    r#"Failing False MaxUnavailableLimitReached "" hb=5 tr=5 gen=None"#,
                    r#"Progressing False MaxUnavailableLimitReached "m" hb=5 tr=5 gen=None"#,
                    r#"Pending True MaxUnavailableLimitReached "m" hb=5 tr=5 gen=None"#,
                    r#"Aborted False MaxUnavailableLimitReached "" hb=5 tr=5 gen=None"#,
                ],
            ),
        ];
        for (name, setter, expected) in cases {
            let mut conditions = vec![];
            set_enactment_unknown(&mut conditions, &at(0));
            assert!(setter(&mut conditions, "m", &at(5)), "{name}");
            assert_eq!(summary(&conditions), expected, "{name}");
            assert!(
                !setter(&mut conditions, "m", &at(6)),
                "{name}: second write changes nothing"
            );
        }
    }

    #[test]
    fn messages_use_upstream_wording() {
        let cases = [
            (
                "success",
                policy_success_message(3, 10, 0),
                "3/10 nodes successfully configured",
            ),
            (
                "success with not ready",
                policy_success_message(3, 10, 2),
                "3/10 nodes successfully configured, 2 nodes ignored due to NotReady state",
            ),
            (
                "failed",
                policy_failed_message(1, 10, 0),
                "1/10 nodes failed to configure",
            ),
            (
                "failed with aborted",
                policy_failed_message(1, 10, 4),
                "1/10 nodes failed to configure, 4 nodes aborted configuration",
            ),
            (
                "progressing",
                policy_progressing_message(2, 10, 0, 0, 0),
                "Policy is progressing 2/10 nodes finished",
            ),
            (
                "progressing with pending and not ready",
                policy_progressing_message(2, 10, 5, 1, 0),
                "Policy is progressing 2/10 nodes finished, 5 pending, 1 nodes ignored due to NotReady state",
            ),
            (
                "progressing with a dark node in flight",
                policy_progressing_message(1, 3, 1, 0, 1),
                "Policy is progressing 1/3 nodes finished, 1 pending, 1 in flight on NotReady nodes",
            ),
            (
                "render failure",
                enactment_render_failure_message("boom"),
                "failure generating desiredState and capturedStates: boom",
            ),
            (
                "retrying",
                enactment_retrying_message("node01", 2, 5),
                "failed to reconcile NodeNetworkConfigurationPolicy on node node01. Retrying 2/5",
            ),
            (
                "aborted",
                enactment_aborted_message("node01.policy"),
                r#"reconciliation of enactment "node01.policy" has aborted"#,
            ),
        ];
        for (name, actual, expected) in cases {
            assert_eq!(actual, expected, "{name}");
        }
    }

    #[test]
    fn wire_format() {
        let condition: Condition = serde_json::from_str(
            r#"{"type":"Available","status":"True","reason":"","message":"",
                "lastHeartbeatTime":"2024-05-01T10:00:00Z","lastTransitionTime":null}"#,
        )
        .unwrap();
        assert_eq!(condition.reason, None);
        assert_eq!(condition.last_transition_time, None);
        assert_eq!(
            serde_json::to_string(&condition).unwrap(),
            r#"{"type":"Available","status":"True","lastHeartbeatTime":"2024-05-01T10:00:00Z"}"#
        );

        let condition: Condition = serde_json::from_str(
            r#"{"type":"Sleeping","status":"False","reason":"Tired","observedGeneration":4}"#,
        )
        .unwrap();
        assert_eq!(condition.type_, ConditionType::Other("Sleeping".into()));
        assert!(!condition.type_.is_known());
        assert_eq!(
            serde_json::to_string(&condition).unwrap(),
            r#"{"type":"Sleeping","status":"False","reason":"Tired","observedGeneration":4}"#
        );

        let error = serde_json::from_str::<Condition>(r#"{"type":"Available","status":"true"}"#)
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "unknown variant `true`, expected one of `True`, `False`, `Unknown` at line 1 column 35"
        );
        assert_eq!(ConditionReason::KNOWN.len(), 8);
        assert!(is_condition_true(
            &[Condition::new(T::Ready, True, None, "")],
            &T::Ready
        ));
        assert!(!is_condition_true(&[], &T::Ready));
    }
}
