//! [`State`], an nmstate document kept exactly as written, and the
//! `NodeNetworkState` kind: a node's reported network state, named after the
//! node.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{
    Condition, ObjectMeta, Time,
    resources::{Resource, ResourceKind, type_meta},
    validation::{FieldError, validate_state},
};

/// An nmstate network state document (the YAML `nmstatectl show` prints and
/// `nmstatectl apply` reads), stored as the JSON the user or agent wrote:
/// never normalised, key order kept. It is checked against the `nmstate`
/// crate's types by validation, not by decoding.
///
/// ```yaml
/// interfaces:
/// - name: eth1
///   type: ethernet
///   state: up
///   ipv4:
///     enabled: true
///     dhcp: true
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct State(pub serde_json::Value);

impl Default for State {
    /// The empty document `{}`.
    fn default() -> Self {
        Self(serde_json::Value::Object(serde_json::Map::new()))
    }
}

impl State {
    /// The document as JSON.
    pub fn as_value(&self) -> &serde_json::Value {
        &self.0
    }

    /// The number of entries in `interfaces`, when it is a list (the
    /// `Interfaces` printer column of node states).
    pub fn interface_count(&self) -> Option<usize> {
        self.0.get("interfaces")?.as_array().map(Vec::len)
    }

    /// Parses the document into nmstate's typed model. Validation reports
    /// errors with field paths; this is for code that already validated.
    pub fn to_network_state(&self) -> Result<nmstate::NetworkState, serde_json::Error> {
        nmstate::NetworkState::deserialize(&self.0)
    }

    /// The document of a typed nmstate state (for example one the agent
    /// retrieved), in nmstate's own serialisation.
    pub fn from_network_state(state: &nmstate::NetworkState) -> Result<Self, serde_json::Error> {
        serde_json::to_value(state).map(Self)
    }

    /// The nmstate features this desired state uses on a node whose state
    /// is `current`, by nmstate's names (`static-route`, `lldp`, ...), sorted
    /// and without repeats: what `nmstatectl statistic` says, and what an
    /// enactment's `status.features` holds.
    pub fn features(&self, current: &State) -> Result<Vec<String>, String> {
        let desired = self.to_network_state().map_err(|e| e.to_string())?;
        let current = current.to_network_state().map_err(|e| e.to_string())?;
        let statistic = desired.statistic(&current).map_err(|e| e.to_string())?;
        let mut names: Vec<String> = statistic
            .features
            .iter()
            .filter_map(|feature| match serde_json::to_value(feature) {
                Ok(serde_json::Value::String(name)) => Some(name),
                _ => None,
            })
            .collect();
        names.dedup();
        Ok(names)
    }
}

impl From<serde_json::Value> for State {
    fn from(value: serde_json::Value) -> Self {
        Self(value)
    }
}

/// The network state a node reports. Its name is the node's name and its
/// labels are the node's labels (the agent copies them), which is how
/// policies select nodes.
///
/// ```yaml
/// apiVersion: nmstate.io/v1
/// kind: NodeNetworkState
/// metadata:
///   name: node01
///   labels:
///     kubernetes.io/hostname: node01
/// status:
///   currentState:
///     interfaces:
///     - name: eth1
///       type: ethernet
///       state: up
///   lastSuccessfulUpdateTime: "2024-05-01T10:00:00Z"
///   hostNetworkManagerVersion: 1.46.0
///   handlerNetworkManagerVersion: 1.46.0
///   handlerNmstateVersion: 2.2.62
///   conditions:
///   - type: Ready
///     status: "True"
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeNetworkState {
    /// `nmstate.io/v1` or `nmstate.io/v1beta1`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    /// `NodeNetworkState`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    /// Standard object metadata; `name` is the node name.
    #[serde(default)]
    #[schema(value_type = crate::openapi_doc::meta::ObjectMetaSchema)]
    pub metadata: ObjectMeta,
    /// What the node's agent observed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<NodeNetworkStateStatus>,
}

/// The observed network state of a node.
///
/// ```yaml
/// currentState:
///   interfaces: []
/// lastSuccessfulUpdateTime: "2024-05-01T10:00:00Z"
/// hostNetworkManagerVersion: 1.46.0
/// handlerNetworkManagerVersion: 1.46.0
/// handlerNmstateVersion: 2.2.62
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeNetworkStateStatus {
    /// The node's network state as nmstate reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(inline)]
    pub current_state: Option<State>,
    /// When `currentState` was last reported successfully.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = crate::openapi_doc::meta::TimeSchema)]
    pub last_successful_update_time: Option<Time>,
    /// NetworkManager version running on the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_network_manager_version: Option<String>,
    /// NetworkManager version the agent talks to (the same as the host's when
    /// the agent uses the host's NetworkManager).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handler_network_manager_version: Option<String>,
    /// nmstate version the agent uses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handler_nmstate_version: Option<String>,
    /// The node state's conditions: `Ready` (the node's agent is alive and
    /// reporting), and upstream's `Available` and `Failing`.
    #[serde(
        default,
        deserialize_with = "crate::null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub conditions: Vec<Condition>,
}

impl NodeNetworkState {
    /// An empty state for node `node`, typed as `nmstate.io/v1`.
    pub fn new(node: &str) -> Self {
        let (api_version, kind) = type_meta(ResourceKind::NodeNetworkState, crate::V1);
        Self {
            api_version,
            kind,
            metadata: ObjectMeta {
                name: Some(node.to_owned()),
                ..ObjectMeta::default()
            },
            status: None,
        }
    }
}

impl Resource for NodeNetworkState {
    const KIND: ResourceKind = ResourceKind::NodeNetworkState;

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
        validate_state(self)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn features_are_nmstates_statistic() {
        let current = State(serde_json::json!({
            "interfaces": [{"name": "eth1", "type": "ethernet", "state": "up"}],
        }));
        let desired = State(serde_json::json!({
            "dns-resolver": {"config": {"server": ["192.0.2.53"], "search": ["example.com"]}},
            "routes": {"config": [{
                "destination": "198.51.100.0/24",
                "next-hop-interface": "eth1",
                "next-hop-address": "192.0.2.1",
            }]},
            "interfaces": [{
                "name": "eth1", "type": "ethernet", "state": "up",
                "ipv4": {"enabled": true, "address": [{"ip": "192.0.2.2", "prefix-length": 24}]},
                "lldp": {"enabled": true},
            }],
        }));
        assert_eq!(
            desired.features(&current).unwrap(),
            [
                "lldp",
                "static-dns-name-server",
                "static-dns-search",
                "static-route"
            ]
        );
        assert_eq!(
            State::default().features(&current).unwrap(),
            Vec::<String>::new()
        );
        assert!(
            State(serde_json::json!({"interfaces": "no list"}))
                .features(&current)
                .is_err()
        );
    }

    #[test]
    fn keeps_the_document_as_written() {
        // Key order, unknown keys, odd formatting all survive a round trip:
        // nmstate turns on serde_json's `preserve_order`, and this crate
        // relies on it.
        let json = r#"{"apiVersion":"nmstate.io/v1beta1","kind":"NodeNetworkState","metadata":{"name":"node01"},"status":{"currentState":{"routes":{"running":[]},"interfaces":[{"type":"ethernet","name":"eth1","x-future":{"b":1,"a":2}}],"dns-resolver":{}},"handlerNmstateVersion":"2.2.62","conditions":[{"type":"Ready","status":"True"}]}}"#;
        let state: NodeNetworkState = serde_json::from_str(json).unwrap();
        assert_eq!(serde_json::to_string(&state).unwrap(), json);
        let current = state
            .status
            .as_ref()
            .unwrap()
            .current_state
            .as_ref()
            .unwrap();
        assert_eq!(current.interface_count(), Some(1));
    }

    #[test]
    fn constructors() {
        let mut state = NodeNetworkState::new("node01");
        assert_eq!(
            serde_json::to_string(&state).unwrap(),
            r#"{"apiVersion":"nmstate.io/v1","kind":"NodeNetworkState","metadata":{"name":"node01"}}"#
        );
        state.set_type_meta("v1beta1");
        assert_eq!(state.api_version, "nmstate.io/v1beta1");
        assert_eq!(state.name(), "node01");
        assert_eq!(State::default().0, serde_json::json!({}));
        assert_eq!(State::default().interface_count(), None);

        let typed =
            State(serde_json::json!({"interfaces": [{"name": "eth1", "type": "ethernet"}]}))
                .to_network_state()
                .unwrap();
        let back = State::from_network_state(&typed).unwrap();
        assert_eq!(back.interface_count(), Some(1));
    }
}
