//! The `NodeNetworkConfigurationPolicy` kind: the desired network state for
//! the nodes its selector picks, optional nmpolicy captures, and the rollout
//! limit; its status aggregates the per-node enactments.
//!
//! Also the small pure rules that hang off the spec: node selection and the
//! `maxUnavailable` count.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{
    Condition, IntOrString, ObjectMeta, State, Time,
    resources::{Resource, ResourceKind, type_meta},
    validation::{FieldError, validate_policy},
};

/// `maxUnavailable` when a policy does not set it (upstream's default).
pub const DEFAULT_MAX_UNAVAILABLE: &str = "50%";

/// Desired network configuration for a set of nodes.
///
/// ```yaml
/// apiVersion: nmstate.io/v1
/// kind: NodeNetworkConfigurationPolicy
/// metadata:
///   name: br1-eth1
/// spec:
///   nodeSelector:
///     node-role.kubernetes.io/worker: ""
///   maxUnavailable: 25%
///   desiredState:
///     interfaces:
///     - name: br1
///       type: linux-bridge
///       state: up
///       ipv4:
///         enabled: true
///         dhcp: true
///       bridge:
///         port:
///         - name: eth1
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeNetworkConfigurationPolicy {
    /// `nmstate.io/v1` or `nmstate.io/v1beta1`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    /// `NodeNetworkConfigurationPolicy`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    /// Standard object metadata. The name is at most 63 characters because
    /// it becomes the `nmstate.io/policy` label value of enactments.
    #[serde(default)]
    #[schema(value_type = crate::openapi_doc::meta::ObjectMetaSchema)]
    pub metadata: ObjectMeta,
    /// What the user wants.
    #[serde(default)]
    pub spec: NodeNetworkConfigurationPolicySpec,
    /// What the controller observed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<NodeNetworkConfigurationPolicyStatus>,
}

/// The desired configuration and where and how to roll it out.
///
/// ```yaml
/// nodeSelector:
///   kubernetes.io/hostname: node01
/// capture:
///   default-gw: routes.running.destination=="0.0.0.0/0"
///   base-iface: interfaces.name==capture.default-gw.routes.running.0.next-hop-interface
/// desiredState:
///   interfaces:
///   - name: br1
///     type: linux-bridge
///     state: up
///     bridge:
///       port:
///       - name: "{{ capture.base-iface.interfaces.0.name }}"
/// maxUnavailable: 1
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeNetworkConfigurationPolicySpec {
    /// Labels a node must all have (equality only) for the policy to apply
    /// to it; empty selects every node.
    #[serde(
        default,
        deserialize_with = "crate::null_as_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub node_selector: BTreeMap<String, String>,
    /// nmpolicy capture expressions by name, run against each node's current
    /// state; `desiredState` refers to their results as
    /// `{{ capture.<name>.<path> }}`.
    #[serde(
        default,
        deserialize_with = "crate::null_as_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub capture: BTreeMap<String, String>,
    /// The nmstate desired state, possibly holding capture templates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(inline)]
    pub desired_state: Option<State>,
    /// How many matching nodes may be configured at the same time: a count
    /// or a percentage of matching nodes (rounded up, at least 1). Default
    /// `"50%"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(inline)]
    pub max_unavailable: Option<IntOrString>,
}

/// How the policy is doing across the nodes it selects.
///
/// ```yaml
/// observedGeneration: 2
/// matchingNodes: 3
/// availableNodes: 3
/// conditions:
/// - type: Available
///   status: "True"
///   reason: SuccessfullyConfigured
///   message: 3/3 nodes successfully configured
///   observedGeneration: 2
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeNetworkConfigurationPolicyStatus {
    /// The policy's conditions, one of each type: `Available`, `Degraded`,
    /// `Progressing`, `Ignored`.
    #[serde(
        default,
        deserialize_with = "crate::null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub conditions: Vec<Condition>,
    /// The generation the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Nodes the selector matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matching_nodes: Option<i32>,
    /// Matching nodes configured successfully.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available_nodes: Option<i32>,
    /// Matching nodes being configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progressing_nodes: Option<i32>,
    /// Matching nodes waiting for their turn under `maxUnavailable`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_nodes: Option<i32>,
    /// Matching nodes that failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failing_nodes: Option<i32>,
    /// Matching nodes not attempted because failures reached
    /// `maxUnavailable`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aborted_nodes: Option<i32>,
    /// Upstream: nodes currently applying the policy. Kept for compatibility;
    /// the counts above say more.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unavailable_node_count: Option<i32>,
    /// Upstream: nodes applying the policy, by generation. Kept for
    /// compatibility.
    #[serde(
        default,
        deserialize_with = "crate::null_as_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub unavailable_node_count_map: BTreeMap<String, i32>,
    /// Upstream: when the unavailable node count last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = crate::openapi_doc::meta::TimeSchema)]
    pub last_unavailable_node_count_update: Option<Time>,
}

impl NodeNetworkConfigurationPolicy {
    /// A policy named `name` with `spec`, typed as `nmstate.io/v1`.
    pub fn new(name: &str, spec: NodeNetworkConfigurationPolicySpec) -> Self {
        let (api_version, kind) =
            type_meta(ResourceKind::NodeNetworkConfigurationPolicy, crate::V1);
        Self {
            api_version,
            kind,
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                ..ObjectMeta::default()
            },
            spec,
            status: None,
        }
    }
}

impl NodeNetworkConfigurationPolicySpec {
    /// `maxUnavailable`, or the default `"50%"`.
    pub fn max_unavailable_or_default(&self) -> IntOrString {
        self.max_unavailable
            .clone()
            .unwrap_or_else(|| IntOrString::from(DEFAULT_MAX_UNAVAILABLE))
    }

    /// How many of `matching` nodes may be configured at once: the
    /// percentage rounded up, at least 1; an unusable value falls back to the
    /// default, as upstream does.
    pub fn max_unavailable_nodes(&self, matching: usize) -> usize {
        let total = u64::try_from(matching).unwrap_or(u64::MAX);
        let scaled = self
            .max_unavailable_or_default()
            .scaled_value(total, true)
            .or_else(|_| IntOrString::from(DEFAULT_MAX_UNAVAILABLE).scaled_value(total, true))
            .unwrap_or(1);
        usize::try_from(scaled).unwrap_or(0).max(1)
    }

    /// Whether a node with `labels` is selected: it has every selector label
    /// with the same value.
    pub fn selects(&self, labels: &BTreeMap<String, String>) -> bool {
        self.node_selector
            .iter()
            .all(|(key, value)| labels.get(key) == Some(value))
    }
}

impl Resource for NodeNetworkConfigurationPolicy {
    const KIND: ResourceKind = ResourceKind::NodeNetworkConfigurationPolicy;

    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }

    fn set_type_meta(&mut self, version: &str) {
        (self.api_version, self.kind) = type_meta(Self::KIND, version);
    }

    /// Metadata and spec; status is checked by
    /// [`validate_policy_status`](crate::validation::validate_policy_status)
    /// on status writes.
    fn validate(&self) -> Vec<FieldError> {
        validate_policy(self)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn max_unavailable_nodes() {
        let cases: [(&str, Option<IntOrString>, usize, usize); 10] = [
            ("default half rounded up", None, 5, 3),
            ("default of one node", None, 1, 1),
            ("default of no node is still one", None, 0, 1),
            ("count", Some(2.into()), 10, 2),
            ("zero means one", Some(0.into()), 10, 1),
            ("negative means one", Some((-3).into()), 10, 1),
            ("percent rounded up", Some("10%".into()), 11, 2),
            ("zero percent means one", Some("0%".into()), 11, 1),
            ("count above total kept", Some(20.into()), 3, 20),
            (
                "not a percent falls back to default",
                Some("abc".into()),
                4,
                2,
            ),
        ];
        for (name, max_unavailable, matching, expected) in cases {
            let spec = NodeNetworkConfigurationPolicySpec {
                max_unavailable,
                ..Default::default()
            };
            assert_eq!(spec.max_unavailable_nodes(matching), expected, "{name}");
        }
    }

    #[test]
    fn selects() {
        let labels: BTreeMap<String, String> = [("a", "1"), ("b", "")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        type Case = (&'static str, &'static [(&'static str, &'static str)], bool);
        let cases: [Case; 5] = [
            ("empty selects all", &[], true),
            ("equal", &[("a", "1")], true),
            ("empty value", &[("b", "")], true),
            ("other value", &[("a", "2")], false),
            ("missing label", &[("a", "1"), ("c", "")], false),
        ];
        for (name, selector, expected) in cases {
            let spec = NodeNetworkConfigurationPolicySpec {
                node_selector: selector
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
                ..Default::default()
            };
            assert_eq!(spec.selects(&labels), expected, "{name}");
        }
    }

    #[test]
    fn wire_format() {
        let json = r#"{"apiVersion":"nmstate.io/v1","kind":"NodeNetworkConfigurationPolicy","metadata":{"generation":2,"name":"p"},"spec":{"nodeSelector":{"kubernetes.io/hostname":"node01"},"capture":{"a":"interfaces.type==\"ethernet\"","b":"capture.a | interfaces.state==\"up\""},"desiredState":{"interfaces":"{{ capture.b.interfaces }}"},"maxUnavailable":"25%"},"status":{"conditions":[{"type":"Available","status":"True","reason":"SuccessfullyConfigured","message":"1/1 nodes successfully configured","lastHeartbeatTime":"2024-05-01T10:00:00Z","lastTransitionTime":"2024-05-01T10:00:00Z","observedGeneration":2}],"observedGeneration":2,"matchingNodes":1,"availableNodes":1,"lastUnavailableNodeCountUpdate":"2024-05-01T10:00:00Z"}}"#;
        let policy: NodeNetworkConfigurationPolicy = serde_json::from_str(json).unwrap();
        assert_eq!(serde_json::to_string(&policy).unwrap(), json);
        assert_eq!(
            policy.spec.max_unavailable,
            Some(IntOrString::String("25%".into()))
        );

        let empty =
            NodeNetworkConfigurationPolicy::new("p", NodeNetworkConfigurationPolicySpec::default());
        assert_eq!(
            serde_json::to_string(&empty).unwrap(),
            r#"{"apiVersion":"nmstate.io/v1","kind":"NodeNetworkConfigurationPolicy","metadata":{"name":"p"},"spec":{}}"#
        );
        // Upstream objects carry the old distributed counters; they survive.
        let upstream =
            r#"{"spec":{},"status":{"unavailableNodeCount":1,"unavailableNodeCountMap":{"3":1}}}"#;
        let policy: NodeNetworkConfigurationPolicy = serde_json::from_str(upstream).unwrap();
        assert_eq!(
            serde_json::to_string(&policy).unwrap(),
            r#"{"metadata":{},"spec":{},"status":{"unavailableNodeCount":1,"unavailableNodeCountMap":{"3":1}}}"#
        );
    }
}
