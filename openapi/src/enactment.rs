//! The `NodeNetworkConfigurationEnactment` kind: one policy on one node. The
//! controller writes what was rendered for the node; the node's agent writes
//! how applying it went. Also the enactment naming rule and its labels.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{
    Condition, ObjectMeta, State, Time,
    condition::set_enactment_unknown,
    resources::{Resource, ResourceKind, type_meta},
    validation::{FieldError, validate_enactment},
};

/// Label naming the policy an enactment belongs to.
pub const ENACTMENT_POLICY_LABEL: &str = "nmstate.io/policy";
/// Label naming the node an enactment belongs to.
pub const ENACTMENT_NODE_LABEL: &str = "nmstate.io/node";

/// Longest object name (a DNS-1123 subdomain).
const MAX_NAME_LENGTH: usize = 253;
/// Hex digits of the hash in shortened names.
const HASH_LENGTH: usize = 16;

/// The name of the enactment of `policy` on `node`: `<node>.<policy>` as
/// upstream, or, when that exceeds 253 characters, the node name cut short
/// followed by `-<16 hex digits of a hash of the full name>.<policy>`. The
/// result is deterministic and, for a valid node name and policy name, a
/// valid DNS-1123 subdomain. Use the labels, not the name, to find a node's
/// or a policy's enactments: names cannot be split back unambiguously.
pub fn enactment_name(node: &str, policy: &str) -> String {
    let full = format!("{node}.{policy}");
    if full.len() <= MAX_NAME_LENGTH {
        return full;
    }
    let hash = format!("{:0width$x}", fnv1a64(full.as_bytes()), width = HASH_LENGTH);
    let suffix = format!("-{hash}.{policy}");
    let Some(budget) = MAX_NAME_LENGTH
        .checked_sub(suffix.len())
        .filter(|budget| *budget > 0)
    else {
        // Only reachable with a policy name far beyond its 63-character
        // limit; still deterministic.
        return format!("nnce-{hash}");
    };
    let mut end = budget.min(node.len());
    while !node.is_char_boundary(end) {
        end -= 1;
    }
    // A cut may end on '-' or '.', which may not precede the '-'.
    let prefix = node[..end].trim_end_matches(['-', '.']);
    format!("{prefix}{suffix}")
}

/// 64-bit FNV-1a: tiny, stable across versions and platforms, and enough to
/// tell apart names that share their first 170-odd characters.
pub(crate) fn fnv1a64(bytes: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.iter().fold(OFFSET, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(PRIME)
    })
}

/// The outcome of one policy on one node.
///
/// ```yaml
/// apiVersion: nmstate.io/v1
/// kind: NodeNetworkConfigurationEnactment
/// metadata:
///   name: node01.br1-eth1
///   labels:
///     nmstate.io/node: node01
///     nmstate.io/policy: br1-eth1
/// status:
///   policyGeneration: 2
///   desiredState:
///     interfaces:
///     - name: br1
///       type: linux-bridge
///       state: up
///   conditions:
///   - type: Available
///     status: "True"
///     reason: SuccessfullyConfigured
///     message: successfully reconciled
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeNetworkConfigurationEnactment {
    /// `nmstate.io/v1` or `nmstate.io/v1beta1`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    /// `NodeNetworkConfigurationEnactment`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    /// Standard object metadata. The name is `<node>.<policy>` (see
    /// [`enactment_name`] for names too long for that); the labels
    /// `nmstate.io/node` and `nmstate.io/policy` name the node and the policy.
    #[serde(default)]
    #[schema(value_type = crate::openapi_doc::meta::ObjectMetaSchema)]
    pub metadata: ObjectMeta,
    /// What was rendered and how applying it went.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<NodeNetworkConfigurationEnactmentStatus>,
}

/// The rendered state for the node and the progress of applying it.
///
/// ```yaml
/// desiredState:
///   interfaces:
///   - name: eth1
///     type: ethernet
///     state: up
///     lldp:
///       enabled: true
/// desiredStateMetaInfo:
///   version: "2"
///   time: "2024-05-01T10:00:00Z"
/// capturedStates:
///   ethernets:
///     state:
///       interfaces:
///       - name: eth1
///         type: ethernet
///         state: up
///     metaInfo:
///       version: "2"
///       time: "2024-05-01T10:00:00Z"
/// policyGeneration: 2
/// features:
/// - lldp
/// retryCount:
///   "2": 1
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeNetworkConfigurationEnactmentStatus {
    /// The policy's desired state rendered for this node (captures run,
    /// templates filled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(inline)]
    pub desired_state: Option<State>,
    /// Which policy generation `desiredState` was rendered from, and when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_state_meta_info: Option<MetaInfo>,
    /// The result of each capture of the policy on this node.
    #[serde(
        default,
        deserialize_with = "crate::null_as_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub captured_states: BTreeMap<String, CapturedState>,
    /// The policy generation this status is about; conditions of another
    /// generation are stale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_generation: Option<i64>,
    /// The enactment's conditions, one of each type: `Available`,
    /// `Failing`, `Progressing`, `Pending`, `Aborted`.
    #[serde(
        default,
        deserialize_with = "crate::null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub conditions: Vec<Condition>,
    /// nmstate features the desired state uses (for metrics).
    #[serde(
        default,
        deserialize_with = "crate::null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub features: Vec<String>,
    /// Failed apply attempts, by policy generation (decimal string).
    #[serde(
        default,
        deserialize_with = "crate::null_as_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub retry_count: BTreeMap<String, i32>,
}

/// The result of one capture on the node.
///
/// ```yaml
/// state:
///   routes:
///     running:
///     - destination: 0.0.0.0/0
///       next-hop-interface: eth1
/// metaInfo:
///   version: "2"
///   time: "2024-05-01T10:00:00Z"
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CapturedState {
    /// The captured part of the node's state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(inline)]
    pub state: Option<State>,
    /// Which policy generation it was captured for, and when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta_info: Option<MetaInfo>,
}

/// Provenance of a rendered or captured state.
///
/// ```yaml
/// version: "2"
/// time: "2024-05-01T10:00:00Z"
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetaInfo {
    /// The policy generation, as a decimal string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// When it was produced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = crate::openapi_doc::meta::TimeSchema)]
    pub time: Option<Time>,
}

impl NodeNetworkConfigurationEnactment {
    /// A new enactment of `policy` on `node`, typed as `nmstate.io/v1`, with
    /// its name, labels and every condition `Unknown` at `now` (as upstream
    /// creates them).
    pub fn new(node: &str, policy: &str, now: &Time) -> Self {
        let (api_version, kind) =
            type_meta(ResourceKind::NodeNetworkConfigurationEnactment, crate::V1);
        let labels = BTreeMap::from([
            (ENACTMENT_NODE_LABEL.to_owned(), node.to_owned()),
            (ENACTMENT_POLICY_LABEL.to_owned(), policy.to_owned()),
        ]);
        let mut status = NodeNetworkConfigurationEnactmentStatus::default();
        set_enactment_unknown(&mut status.conditions, now);
        Self {
            api_version,
            kind,
            metadata: ObjectMeta {
                name: Some(enactment_name(node, policy)),
                labels: Some(labels),
                ..ObjectMeta::default()
            },
            status: Some(status),
        }
    }

    /// The node, from the `nmstate.io/node` label.
    pub fn node_name(&self) -> Option<&str> {
        self.label(ENACTMENT_NODE_LABEL)
    }

    /// The policy, from the `nmstate.io/policy` label.
    pub fn policy_name(&self) -> Option<&str> {
        self.label(ENACTMENT_POLICY_LABEL)
    }

    fn label(&self, key: &str) -> Option<&str> {
        self.metadata.labels.as_ref()?.get(key).map(String::as_str)
    }
}

impl NodeNetworkConfigurationEnactmentStatus {
    /// Failed apply attempts for policy generation `generation`.
    pub fn retry_count_for(&self, generation: i64) -> i32 {
        self.retry_count
            .get(&generation.to_string())
            .copied()
            .unwrap_or_default()
    }
}

/// Where an enactment stands, read from its conditions. The controller and
/// the agent both decide from this, so the rules live in one place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnactmentPhase {
    /// No decision yet (new, or conditions `Unknown`).
    Unknown,
    /// Held back by `maxUnavailable` (`Pending` true).
    Pending,
    /// Released to the node's agent, being applied, or being retried
    /// (`Progressing` true): in flight.
    Progressing,
    /// Applied (`Available` true).
    Available,
    /// Failed for good (`Failing` true, `Progressing` not true).
    Failed,
    /// Not attempted because failures reached `maxUnavailable`.
    Aborted,
}

impl EnactmentPhase {
    /// Whether the node is done with the enactment's generation, one way or
    /// the other.
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Available | Self::Failed)
    }
}

impl NodeNetworkConfigurationEnactmentStatus {
    /// The phase its conditions describe. `Progressing` wins over `Failing`
    /// (a retry is still in flight).
    pub fn phase(&self) -> EnactmentPhase {
        use crate::condition::{ConditionType as T, is_condition_true};
        let is = |type_: T| is_condition_true(&self.conditions, &type_);
        if is(T::Progressing) {
            EnactmentPhase::Progressing
        } else if is(T::Failing) {
            EnactmentPhase::Failed
        } else if is(T::Available) {
            EnactmentPhase::Available
        } else if is(T::Aborted) {
            EnactmentPhase::Aborted
        } else if is(T::Pending) {
            EnactmentPhase::Pending
        } else {
            EnactmentPhase::Unknown
        }
    }
}

impl Resource for NodeNetworkConfigurationEnactment {
    const KIND: ResourceKind = ResourceKind::NodeNetworkConfigurationEnactment;

    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }

    fn set_type_meta(&mut self, version: &str) {
        (self.api_version, self.kind) = type_meta(Self::KIND, version);
    }

    fn validate(&self) -> Vec<FieldError> {
        validate_enactment(self)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use k8s_openapi::jiff::Timestamp;

    use super::*;
    use crate::validation::names::is_dns1123_subdomain;

    #[test]
    fn names() {
        let long_node = format!("{}.example.com", "n".repeat(200));
        let policy = "p".repeat(63);
        let dashed_node = format!("{}-{}", "a".repeat(171), "b".repeat(81));
        let cases: Vec<(&str, String, String)> = vec![
            (
                "short",
                enactment_name("node01", "br1"),
                "node01.br1".to_owned(),
            ),
            (
                "exactly 253",
                enactment_name(&"n".repeat(189), &policy),
                format!("{}.{policy}", "n".repeat(189)),
            ),
            (
                "too long cuts the node",
                enactment_name(&long_node, &policy),
                format!("{}-f692d9a04e55f47c.{policy}", "n".repeat(172)),
            ),
            (
                "cut never leaves a dash before the hash",
                enactment_name(&dashed_node, &policy),
                format!("{}-e7cbcfce96ff9f6b.{policy}", "a".repeat(171)),
            ),
        ];
        for (name, actual, expected) in cases {
            assert_eq!(actual, expected, "{name}");
            assert!(actual.len() <= 253, "{name}");
            assert_eq!(
                is_dns1123_subdomain(&actual),
                Vec::<String>::new(),
                "{name}"
            );
        }
        // Deterministic, and different nodes sharing a long prefix differ.
        let other_node = format!("{}.example.org", "n".repeat(200));
        assert_eq!(
            enactment_name(&long_node, &policy),
            enactment_name(&long_node, &policy)
        );
        assert_ne!(
            enactment_name(&long_node, &policy),
            enactment_name(&other_node, &policy)
        );
        assert!(enactment_name("n", &"p".repeat(300)).starts_with("nnce-"));
    }

    #[test]
    fn new_enactment() {
        let now = Time(Timestamp::from_second(0).unwrap());
        let enactment = NodeNetworkConfigurationEnactment::new("node01", "br1", &now);
        assert_eq!(enactment.node_name(), Some("node01"));
        assert_eq!(enactment.policy_name(), Some("br1"));
        assert_eq!(
            serde_json::to_value(&enactment).unwrap(),
            serde_json::json!({
                "apiVersion": "nmstate.io/v1",
                "kind": "NodeNetworkConfigurationEnactment",
                "metadata": {
                    "name": "node01.br1",
                    "labels": {"nmstate.io/node": "node01", "nmstate.io/policy": "br1"},
                },
                "status": {"conditions": [
                    {"type": "Available", "status": "Unknown", "lastHeartbeatTime": "1970-01-01T00:00:00Z", "lastTransitionTime": "1970-01-01T00:00:00Z"},
                    {"type": "Failing", "status": "Unknown", "lastHeartbeatTime": "1970-01-01T00:00:00Z", "lastTransitionTime": "1970-01-01T00:00:00Z"},
                    {"type": "Progressing", "status": "Unknown", "lastHeartbeatTime": "1970-01-01T00:00:00Z", "lastTransitionTime": "1970-01-01T00:00:00Z"},
                    {"type": "Pending", "status": "Unknown", "lastHeartbeatTime": "1970-01-01T00:00:00Z", "lastTransitionTime": "1970-01-01T00:00:00Z"},
                    {"type": "Aborted", "status": "Unknown", "lastHeartbeatTime": "1970-01-01T00:00:00Z", "lastTransitionTime": "1970-01-01T00:00:00Z"},
                ]},
            })
        );
        assert!(enactment.validate().is_empty());
    }

    #[test]
    fn phases() {
        use crate::condition::{
            ENACTMENT_RELEASED_MESSAGE, set_enactment_aborted, set_enactment_failed_to_configure,
            set_enactment_pending, set_enactment_released, set_enactment_retrying,
            set_enactment_success,
        };
        let now = Time(Timestamp::from_second(0).unwrap());
        type Setter = fn(&mut Vec<Condition>, &Time);
        let cases: [(&str, Setter, EnactmentPhase); 7] = [
            ("new", |_, _| {}, EnactmentPhase::Unknown),
            (
                "pending",
                |c, t| {
                    set_enactment_pending(c, "wait", t);
                },
                EnactmentPhase::Pending,
            ),
            (
                "released",
                |c, t| {
                    set_enactment_released(c, t);
                },
                EnactmentPhase::Progressing,
            ),
            (
                "retrying is in flight",
                |c, t| {
                    set_enactment_retrying(c, "again", t);
                },
                EnactmentPhase::Progressing,
            ),
            (
                "failed",
                |c, t| {
                    set_enactment_failed_to_configure(c, "boom", t);
                },
                EnactmentPhase::Failed,
            ),
            (
                "available",
                |c, t| {
                    set_enactment_success(c, "ok", t);
                },
                EnactmentPhase::Available,
            ),
            (
                "aborted",
                |c, t| {
                    set_enactment_aborted(c, "stop", t);
                },
                EnactmentPhase::Aborted,
            ),
        ];
        for (name, set, phase) in cases {
            let mut status = NodeNetworkConfigurationEnactment::new("n", "p", &now)
                .status
                .unwrap();
            set(&mut status.conditions, &now);
            assert_eq!(status.phase(), phase, "{name}");
            assert_eq!(
                phase.is_finished(),
                matches!(phase, EnactmentPhase::Available | EnactmentPhase::Failed),
                "{name}"
            );
        }
        let mut status = NodeNetworkConfigurationEnactmentStatus::default();
        set_enactment_released(&mut status.conditions, &now);
        let progressing = status
            .conditions
            .iter()
            .find(|c| c.type_ == crate::ConditionType::Progressing)
            .unwrap();
        assert_eq!(progressing.message, ENACTMENT_RELEASED_MESSAGE);
        assert_eq!(
            progressing.reason,
            Some(crate::ConditionReason::ConfigurationProgressing)
        );
    }

    #[test]
    fn wire_format() {
        let json = r#"{"metadata":{"name":"node01.p"},"status":{"desiredState":{"interfaces":[{"name":"eth1","type":"ethernet","state":"up"}]},"desiredStateMetaInfo":{"version":"2","time":"2024-05-01T10:00:00Z"},"capturedStates":{"eth":{"state":{"interfaces":[]},"metaInfo":{"version":"2"}}},"policyGeneration":2,"features":["lldp"],"retryCount":{"2":3}}}"#;
        let enactment: NodeNetworkConfigurationEnactment = serde_json::from_str(json).unwrap();
        assert_eq!(serde_json::to_string(&enactment).unwrap(), json);
        let status = enactment.status.unwrap();
        assert_eq!(status.retry_count_for(2), 3);
        assert_eq!(status.retry_count_for(1), 0);
    }
}
