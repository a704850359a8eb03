//! The answers of the policy subresources `render` and `dry-run`, and the
//! pure decisions behind them: which nodes a policy matches, what each
//! would get, how that differs from what it has, and in which batches
//! `maxUnavailable` would roll it out.
//!
//! Nothing here reads or writes objects: the API server hands in the
//! policy and the node states it read, and serves what comes back.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{
    CapturedState, FieldError, NodeNetworkConfigurationPolicySpec, ObjectMeta, State, Time,
    render::{self, RenderError, RenderOptions},
    validation::{FieldErrorKind, FieldPath},
};

/// Kind of the `render` answer (and, optionally, of its request body).
pub const RENDER_KIND: &str = "NodeNetworkConfigurationPolicyRender";
/// Kind of the `dry-run` answer.
pub const DRY_RUN_KIND: &str = "NodeNetworkConfigurationPolicyDryRun";

/// The body of `POST .../nodenetworkconfigurationpolicies/{name}/render`:
/// the network state to render the policy against, in place of a node's
/// stored NodeNetworkState. `apiVersion` and `kind`
/// (`NodeNetworkConfigurationPolicyRender`) may be given or left out.
///
/// ```yaml
/// currentState:
///   interfaces:
///   - name: eth0
///     type: ethernet
///     state: up
///   routes:
///     running:
///     - destination: 0.0.0.0/0
///       next-hop-address: 192.0.2.1
///       next-hop-interface: eth0
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeNetworkConfigurationPolicyRenderRequest {
    /// `nmstate.io/v1` or `nmstate.io/v1beta1`, optional.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    /// `NodeNetworkConfigurationPolicyRender`, optional.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    /// The nmstate document the captures run against, as `nmstatectl show`
    /// prints it. Required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(inline)]
    pub current_state: Option<State>,
}

/// A policy rendered for one node (or for the state given in the request):
/// the result of each capture and the desired state with every template
/// filled and upstream's defaults added, exactly what the node's enactment
/// would hold. Nothing is written.
///
/// ```yaml
/// apiVersion: nmstate.io/v1
/// kind: NodeNetworkConfigurationPolicyRender
/// metadata:
///   name: br1-on-default-gw
/// node: node01
/// policyGeneration: 1
/// desiredState:
///   interfaces:
///   - name: br1
///     type: linux-bridge
///     state: up
///     bridge:
///       port:
///       - name: eth0
/// capturedStates:
///   default-gw:
///     state:
///       routes:
///         running:
///         - destination: 0.0.0.0/0
///           next-hop-interface: eth0
///     metaInfo:
///       version: "0"
///       time: "2024-05-01T10:00:00Z"
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeNetworkConfigurationPolicyRender {
    /// The `apiVersion` the request was made with: `nmstate.io/v1` or
    /// `nmstate.io/v1beta1`.
    pub api_version: String,
    /// `NodeNetworkConfigurationPolicyRender`.
    pub kind: String,
    /// The name of the policy rendered.
    #[serde(default)]
    #[schema(value_type = crate::openapi_doc::meta::ObjectMetaSchema)]
    pub metadata: ObjectMeta,
    /// The node whose stored NodeNetworkState was rendered against; absent
    /// when the state came in the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The generation of the policy rendered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_generation: Option<i64>,
    /// The desired state with its templates filled.
    #[serde(default)]
    #[schema(inline)]
    pub desired_state: State,
    /// The result of each capture, by capture name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub captured_states: BTreeMap<String, CapturedState>,
}

/// What applying a policy would do, without writing anything: the nodes it
/// matches (by the labels of their NodeNetworkState) and, for each, what
/// it would get; plus the batches in which `maxUnavailable` lets the
/// rollout proceed.
///
/// ```yaml
/// apiVersion: nmstate.io/v1
/// kind: NodeNetworkConfigurationPolicyDryRun
/// metadata:
///   name: br1-on-default-gw
/// matchingNodes: [node01, node02, node03]
/// maxUnavailable: 2
/// batches:
/// - [node01, node02]
/// - [node03]
/// nodes:
/// - node: node01
///   desiredState: {interfaces: [...]}
///   capturedStates: {default-gw: {...}}
///   difference: {interfaces: [...]}
/// - node: node03
///   error: "failed to run captures: PolicyError: ..."
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeNetworkConfigurationPolicyDryRun {
    /// The `apiVersion` the request was made with: `nmstate.io/v1` or
    /// `nmstate.io/v1beta1`.
    pub api_version: String,
    /// `NodeNetworkConfigurationPolicyDryRun`.
    pub kind: String,
    /// The name of the policy.
    #[serde(default)]
    #[schema(value_type = crate::openapi_doc::meta::ObjectMetaSchema)]
    pub metadata: ObjectMeta,
    /// The generation of the stored policy, when it was the one run (an
    /// empty request body).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_generation: Option<i64>,
    /// The names of the nodes the policy selects, sorted.
    #[serde(default)]
    pub matching_nodes: Vec<String>,
    /// How many matching nodes may be configured at once, from
    /// `maxUnavailable` (percentages rounded up, at least 1).
    pub max_unavailable: i32,
    /// The matching nodes in rollout order (by name), in batches of at most
    /// `maxUnavailable`.
    #[serde(default)]
    pub batches: Vec<Vec<String>>,
    /// What each matching node would get, in name order.
    #[serde(default)]
    pub nodes: Vec<NodeDryRun>,
}

/// What one node would get from a policy.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeDryRun {
    /// The node's name.
    pub node: String,
    /// The desired state rendered for this node; absent when rendering
    /// failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(inline)]
    pub desired_state: Option<State>,
    /// The result of each capture on this node's current state.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub captured_states: BTreeMap<String, CapturedState>,
    /// What would change on this node: nmstate's difference of the rendered
    /// desired state against the node's current state, an nmstate document
    /// holding only the interfaces (with only their changed properties),
    /// routes, route rules, DNS and hostname that differ. `{}` when
    /// applying would change nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(inline)]
    pub difference: Option<State>,
    /// Why the policy cannot be rendered for this node (a capture that
    /// fails on its state, an invalid resulting state), or why the
    /// difference could not be computed; nmstate's message with its caret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A node as the dry run sees it: its name, its labels (those of its
/// NodeNetworkState) and its reported current state, if any.
#[derive(Clone, Copy, Debug)]
pub struct NodeInput<'a> {
    /// The node's name.
    pub name: &'a str,
    /// The node's labels.
    pub labels: &'a BTreeMap<String, String>,
    /// `status.currentState` of its NodeNetworkState.
    pub current_state: Option<&'a State>,
}

/// The rollout batches of `nodes` (already in rollout order) when `size`
/// may be in flight at once.
pub fn rollout_batches(nodes: &[String], size: usize) -> Vec<Vec<String>> {
    nodes.chunks(size.max(1)).map(<[String]>::to_vec).collect()
}

/// nmstate's difference of `desired` against `current`: an nmstate document
/// holding only what applying `desired` would change.
pub fn difference(desired: &State, current: &State) -> Result<State, String> {
    let desired = desired
        .to_network_state()
        .map_err(|error| format!("invalid desired state: {error}"))?;
    let current = current
        .to_network_state()
        .map_err(|error| format!("invalid current state: {error}"))?;
    let diff = desired
        .gen_diff(&current)
        .map_err(|error| error.to_string())?;
    State::from_network_state(&diff).map_err(|error| error.to_string())
}

/// The dry run of policy `name` (spec `spec`) over `nodes`: those the
/// selector matches are rendered at `now`, compared with their current
/// state, and cut into rollout batches. `api_version` is echoed.
pub fn dry_run<'a>(
    api_version: &str,
    name: &str,
    spec: &NodeNetworkConfigurationPolicySpec,
    nodes: impl IntoIterator<Item = NodeInput<'a>>,
    options: &RenderOptions,
    now: &Time,
) -> NodeNetworkConfigurationPolicyDryRun {
    let mut matching: Vec<NodeInput<'a>> = nodes
        .into_iter()
        .filter(|node| spec.selects(node.labels))
        .collect();
    matching.sort_by(|a, b| a.name.cmp(b.name));
    let empty = State::default();
    let results = matching
        .iter()
        .map(|node| {
            let current = node.current_state.unwrap_or(&empty);
            let mut result = NodeDryRun {
                node: node.name.to_owned(),
                ..NodeDryRun::default()
            };
            match render::render(spec, current, options, now) {
                Ok(rendered) => {
                    match difference(&rendered.desired_state, current) {
                        Ok(diff) => result.difference = Some(diff),
                        Err(error) => {
                            result.error =
                                Some(format!("cannot compare with the current state: {error}"))
                        }
                    }
                    result.desired_state = Some(rendered.desired_state);
                    result.captured_states = rendered.captured_states;
                }
                Err(error) => result.error = Some(error.to_string()),
            }
            result
        })
        .collect();
    let names: Vec<String> = matching.iter().map(|node| node.name.to_owned()).collect();
    let max_unavailable = spec.max_unavailable_nodes(names.len());
    NodeNetworkConfigurationPolicyDryRun {
        api_version: api_version.to_owned(),
        kind: DRY_RUN_KIND.to_owned(),
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        policy_generation: None,
        batches: rollout_batches(&names, max_unavailable),
        max_unavailable: i32::try_from(max_unavailable).unwrap_or(i32::MAX),
        matching_nodes: names,
        nodes: results,
    }
}

/// The field error a render error is reported as, at the field of `spec`
/// it comes from: the capture whose expression nmstate's caret line shows
/// (`spec.capture[name]`), `spec.desiredState`, or `currentState` (the
/// state rendered against, named by `current_path`).
pub fn render_field_error(
    spec: &NodeNetworkConfigurationPolicySpec,
    error: &RenderError,
    current_path: &str,
) -> FieldError {
    let spec_path = FieldPath::new("spec");
    let (path, value) = match error {
        RenderError::Capture(message) => {
            // nmstate quotes the expression it failed on as `| <line>`.
            let line = message
                .lines()
                .find_map(|line| line.strip_prefix("| "))
                .filter(|line| !line.trim_start().starts_with('.'));
            let named = spec.capture.iter().find(|(_, expression)| {
                line.is_some_and(|line| expression.trim().replace('\u{A0}', " ").trim() == line)
            });
            match named {
                Some((name, _)) => (spec_path.child("capture").key(name), None),
                None => (spec_path.child("capture"), None),
            }
        }
        RenderError::CurrentState(_) | RenderError::CapturedState { .. } => {
            (FieldPath::new(current_path), None)
        }
        _ => (spec_path.child("desiredState"), None),
    };
    FieldError::new(
        FieldErrorKind::Invalid,
        path.as_str(),
        value,
        error.to_string(),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn now() -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(1_700_000_000).unwrap())
    }

    fn state(yaml: &str) -> State {
        serde_yaml::from_str(yaml).unwrap()
    }

    /// A node whose default route leaves through `gw_iface`.
    fn node_state(gw_iface: &str) -> State {
        state(&format!(
            r#"
interfaces:
- name: eth0
  type: ethernet
  state: up
  ipv4: {{enabled: true, address: [{{ip: 192.0.2.10, prefix-length: 24}}]}}
- name: eth1
  type: ethernet
  state: up
  ipv4: {{enabled: true, address: [{{ip: 198.51.100.10, prefix-length: 24}}]}}
routes:
  running:
  - destination: 0.0.0.0/0
    next-hop-address: 192.0.2.1
    next-hop-interface: {gw_iface}
"#
        ))
    }

    const POLICY: &str = r#"
nodeSelector:
  role: worker
maxUnavailable: 2
capture:
  default-gw: routes.running.destination=="0.0.0.0/0"
  base-iface: interfaces.name==capture.default-gw.routes.running.0.next-hop-interface
desiredState:
  interfaces:
  - name: br1
    type: linux-bridge
    state: up
    ipv4: "{{ capture.base-iface.interfaces.0.ipv4 }}"
    bridge:
      port:
      - name: "{{ capture.base-iface.interfaces.0.name }}"
"#;

    #[test]
    fn batches_cut_in_order() {
        let names: Vec<String> = ["a", "b", "c", "d", "e"].map(String::from).to_vec();
        let cases: [(&str, usize, Vec<Vec<&str>>); 4] = [
            ("two", 2, vec![vec!["a", "b"], vec!["c", "d"], vec!["e"]]),
            ("all", 9, vec![vec!["a", "b", "c", "d", "e"]]),
            (
                "one",
                1,
                vec![vec!["a"], vec!["b"], vec!["c"], vec!["d"], vec!["e"]],
            ),
            (
                "zero is one",
                0,
                vec![vec!["a"], vec!["b"], vec!["c"], vec!["d"], vec!["e"]],
            ),
        ];
        for (case, size, expected) in cases {
            assert_eq!(rollout_batches(&names, size), expected, "{case}");
        }
        assert!(rollout_batches(&[], 3).is_empty());
    }

    #[test]
    fn dry_run_matches_renders_and_batches() {
        let spec: NodeNetworkConfigurationPolicySpec = serde_yaml::from_str(POLICY).unwrap();
        let worker: BTreeMap<String, String> = [("role".into(), "worker".into())].into();
        let other = BTreeMap::new();
        let (s1, s2, broken) = (
            node_state("eth0"),
            node_state("eth1"),
            state("interfaces: []"),
        );
        let nodes = [
            NodeInput {
                name: "node-c",
                labels: &worker,
                current_state: Some(&broken),
            },
            NodeInput {
                name: "node-a",
                labels: &worker,
                current_state: Some(&s1),
            },
            NodeInput {
                name: "node-x",
                labels: &other,
                current_state: Some(&s1),
            },
            NodeInput {
                name: "node-b",
                labels: &worker,
                current_state: Some(&s2),
            },
        ];
        let options = RenderOptions {
            default_bridge_vlan_filtering: false,
        };
        let answer = dry_run("nmstate.io/v1beta1", "p", &spec, nodes, &options, &now());
        assert_eq!(answer.api_version, "nmstate.io/v1beta1");
        assert_eq!(answer.kind, DRY_RUN_KIND);
        assert_eq!(answer.matching_nodes, ["node-a", "node-b", "node-c"]);
        assert_eq!(answer.max_unavailable, 2);
        assert_eq!(
            answer.batches,
            vec![vec!["node-a", "node-b"], vec!["node-c"]]
        );
        let names: Vec<&str> = answer.nodes.iter().map(|n| n.node.as_str()).collect();
        assert_eq!(names, ["node-a", "node-b", "node-c"]);

        let a = &answer.nodes[0];
        assert_eq!(a.error, None);
        let bridge = &a.desired_state.as_ref().unwrap().0["interfaces"][0];
        assert_eq!(bridge["bridge"]["port"][0]["name"], "eth0");
        assert_eq!(bridge["ipv4"]["address"][0]["ip"], "192.0.2.10");
        assert!(a.captured_states.contains_key("default-gw"));
        let diff = &a.difference.as_ref().unwrap().0;
        let changed: Vec<&str> = diff["interfaces"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|i| i["name"].as_str())
            .collect();
        assert!(changed.contains(&"br1"), "{diff}");

        let b = &answer.nodes[1];
        let bridge = &b.desired_state.as_ref().unwrap().0["interfaces"][0];
        assert_eq!(bridge["bridge"]["port"][0]["name"], "eth1");

        let c = &answer.nodes[2];
        assert_eq!(c.desired_state, None);
        let error = c.error.as_deref().unwrap();
        assert!(
            error.starts_with("failed to run captures: PolicyError:") && error.contains("| ."),
            "{error}"
        );
    }

    #[test]
    fn no_difference_when_already_applied() {
        let current = node_state("eth0");
        let diff = difference(&current, &current).unwrap();
        assert_eq!(diff.interface_count().unwrap_or(0), 0, "{:?}", diff.0);
    }

    #[test]
    fn render_errors_name_the_capture() {
        let spec: NodeNetworkConfigurationPolicySpec = serde_yaml::from_str(POLICY).unwrap();
        let error = render::render(
            &spec,
            &state("interfaces: []"),
            &RenderOptions::default(),
            &now(),
        )
        .unwrap_err();
        let field = render_field_error(&spec, &error, "currentState");
        assert_eq!(field.path, "spec.capture[default-gw]");
        assert!(field.to_string().starts_with(
            "spec.capture[default-gw]: Invalid value: failed to run captures: PolicyError:"
        ));
        let error = RenderError::CurrentState("bad".into());
        assert_eq!(
            render_field_error(&spec, &error, "currentState").to_string(),
            "currentState: Invalid value: invalid current state: bad"
        );
    }
}
