//! Rendering a policy for one node: run its captures against the node's
//! current state, fill the `{{ capture.<name>.<path> }}` templates of its
//! desired state, and add upstream kubernetes-nmstate's default VLAN
//! filtering to linux-bridge ports.
//!
//! The result is the filled template, which is what upstream stores in an
//! enactment's `desiredState`, not a difference against the current state
//! (nmstate's `NetworkState::try_from(NetworkPolicy)` answers the latter).
//!
//! The desired state stays the JSON the user wrote: only the templated
//! strings are replaced and the VLAN defaults added, so key order, spelling
//! and fields nmstate would normalise away are kept. The filled document is
//! then typed with nmstate's model, as nmstate's own
//! `fill_with_captured_data` does.
//!
//! Captures run one of two ways, with the same results. The expression
//! forms policies nearly always use run on the JSON of the current state
//! (`render/json.rs`: a few tens of microseconds for a 50-interface node,
//! where typing that state alone takes nmstate about 200). Everything
//! else, including every expression that fails, runs in nmstate's policy
//! engine, so what an expression means and how it fails (message and
//! caret) is nmstate's. `agreement_tests` holds the first to the second.
//!
//! Pure: no IO; the caller gives the time.

use std::collections::{BTreeMap, HashMap};

use nmstate::{NetworkCaptureRules, NetworkState, NetworkStateTemplate, NmstateError};
use serde_json::{Map, Value};

#[cfg(test)]
mod agreement_tests;
mod json;

use crate::{
    CapturedState, MetaInfo, NodeNetworkConfigurationPolicySpec, State, Time,
    validation::nmpolicy::{capture_references, desired_state_has_templates},
};

/// The `metaInfo.version` of captured states. nmpolicy (which upstream
/// kubernetes-nmstate renders with) always writes `"0"`: it versions the
/// captured-state format, not the policy.
pub const CAPTURED_STATE_VERSION: &str = "0";

/// How rendering treats what the user left out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RenderOptions {
    /// Give every port of an `up` linux-bridge that has no `vlan` section
    /// the upstream default trunk (`mode: trunk`, `trunk-tags: [{id-range:
    /// {min: 2, max: 4094}}]`). Ports with `vlan: {}` keep none. Turn off
    /// for kernels without bridge VLAN filtering.
    pub default_bridge_vlan_filtering: bool,
}

impl Default for RenderOptions {
    /// Upstream's behaviour: VLAN filtering defaults on.
    fn default() -> Self {
        Self {
            default_bridge_vlan_filtering: true,
        }
    }
}

/// A policy rendered for one node.
#[derive(Clone, Debug, PartialEq)]
pub struct Rendered {
    /// The desired state with its templates filled and defaults added.
    pub desired_state: State,
    /// The result of each capture, stamped with `metaInfo`.
    pub captured_states: BTreeMap<String, CapturedState>,
}

/// Why a policy could not be rendered for a node. Messages from nmstate's
/// policy engine are kept whole, with their `| line` and `| ...^` caret.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum RenderError {
    /// The node's current state is not an nmstate document.
    #[error("invalid current state: {0}")]
    CurrentState(String),
    /// A pre-captured state given to [`render_with_captured`] is not an
    /// nmstate document.
    #[error("invalid captured state {name}: {message}")]
    CapturedState {
        /// The capture's name.
        name: String,
        /// What is wrong with it.
        message: String,
    },
    /// A capture expression does not parse or fails on this node's state.
    #[error("failed to run captures: {0}")]
    Capture(String),
    /// A template of the desired state does not resolve.
    #[error("failed to fill the desired state: {0}")]
    Template(String),
    /// The filled desired state is not a valid nmstate document.
    #[error("invalid rendered desired state: {0}")]
    DesiredState(String),
}

/// Renders `spec` for a node whose current state is `current`, at `now`.
pub fn render(
    spec: &NodeNetworkConfigurationPolicySpec,
    current: &State,
    options: &RenderOptions,
    now: &Time,
) -> Result<Rendered, RenderError> {
    render_with_captured(spec, current, &BTreeMap::new(), options, now)
}

/// Like [`render`], but the captures named in `captured` are not run: their
/// given states are used (nmpolicy's captured-state cache, as `nmpolicyctl
/// gen -c` reads it). Templates may refer to given entries that have no
/// capture expression, but only the policy's captures are returned. Given
/// entries are returned as they are, stamped `now` when without `metaInfo`.
///
/// nmstate can only run a whole set of captures against one current state.
/// So when some captures are given, the others run one at a time in
/// dependency order, after references to already known captures are
/// replaced by their values: `capture.x | <rest>` runs `<rest>` against x's
/// state, and `capture.x.<path>` becomes the quoted value at that path.
/// Error carets then point into the rewritten expression.
pub fn render_with_captured(
    spec: &NodeNetworkConfigurationPolicySpec,
    current: &State,
    captured: &BTreeMap<String, CapturedState>,
    options: &RenderOptions,
    now: &Time,
) -> Result<Rendered, RenderError> {
    let meta_info = MetaInfo {
        version: Some(CAPTURED_STATE_VERSION.to_owned()),
        time: Some(now.clone()),
    };
    if captured.is_empty()
        && let Some(rendered) = render_on_json(spec, current, options, &meta_info)
    {
        return rendered;
    }
    render_with_engine(spec, current, captured, options, &meta_info)
}

/// Renders with the captures run on the current state's JSON
/// ([`json::run_captures`]), or `None` when nmstate's engine must run them.
fn render_on_json(
    spec: &NodeNetworkConfigurationPolicySpec,
    current: &State,
    options: &RenderOptions,
    meta_info: &MetaInfo,
) -> Option<Result<Rendered, RenderError>> {
    if spec.capture.is_empty() {
        return None;
    }
    let captures = json::run_captures(&spec.capture, &current.0)?;
    let captured_states = captures
        .iter()
        .map(|(name, capture)| {
            let state = CapturedState {
                state: Some(State(capture.json.clone())),
                meta_info: Some(meta_info.clone()),
            };
            (name.clone(), state)
        })
        .collect();
    // nmstate's template engine needs the typed captures, for the
    // templates resolved by it.
    let mut typed = None;
    let desired = desired_state(spec, options, &mut |text| {
        if let Some(value) = json::resolve_reference(text, &captures) {
            return Ok(value);
        }
        let typed = typed.get_or_insert_with(|| {
            captures
                .iter()
                .map(|(name, capture)| (name.clone(), capture.typed.clone()))
                .collect()
        });
        resolve_string(text, typed)
    });
    Some(desired.map(|desired_state| Rendered {
        desired_state,
        captured_states,
    }))
}

/// Renders with nmstate's policy engine.
fn render_with_engine(
    spec: &NodeNetworkConfigurationPolicySpec,
    current: &State,
    captured: &BTreeMap<String, CapturedState>,
    options: &RenderOptions,
    meta_info: &MetaInfo,
) -> Result<Rendered, RenderError> {
    let captures = if spec.capture.is_empty() && captured.is_empty() {
        HashMap::new()
    } else {
        let current = current
            .to_network_state()
            .map_err(|error| RenderError::CurrentState(error.to_string()))?;
        run_captures(&spec.capture, &current, captured)?
    };
    let mut captured_states = BTreeMap::new();
    // Only the policy's own captures are reported, as nmpolicy does with a
    // cache that holds more.
    for (name, state) in captures
        .iter()
        .filter(|(name, _)| spec.capture.contains_key(*name))
    {
        let captured_state = match captured.get(name) {
            Some(given) => CapturedState {
                meta_info: given.meta_info.clone().or_else(|| Some(meta_info.clone())),
                ..given.clone()
            },
            None => CapturedState {
                state: Some(
                    State::from_network_state(state)
                        .map_err(|error| RenderError::Capture(error.to_string()))?,
                ),
                meta_info: Some(meta_info.clone()),
            },
        };
        captured_states.insert(name.clone(), captured_state);
    }
    let desired = desired_state(spec, options, &mut |text| resolve_string(text, &captures))?;
    Ok(Rendered {
        desired_state: desired,
        captured_states,
    })
}

/// The policy's desired state with every templated string replaced by what
/// `resolve` makes of it, typed with nmstate's model, and the VLAN defaults
/// added.
fn desired_state(
    spec: &NodeNetworkConfigurationPolicySpec,
    options: &RenderOptions,
    resolve: &mut dyn FnMut(&str) -> Result<Value, RenderError>,
) -> Result<State, RenderError> {
    let mut desired = spec.desired_state.clone().unwrap_or_default();
    if desired_state_has_templates(&desired) {
        fill(&mut desired.0, resolve)?;
        serde_path_to_error::deserialize::<_, NetworkState>(&desired.0)
            .map_err(|error| RenderError::DesiredState(error.to_string()))?;
    }
    if options.default_bridge_vlan_filtering {
        apply_default_vlan_filtering(&mut desired.0);
    }
    Ok(desired)
}

/// Runs the captures, all by nmstate at once when none is given, else one
/// at a time (see [`render_with_captured`]).
fn run_captures(
    expressions: &BTreeMap<String, String>,
    current: &NetworkState,
    captured: &BTreeMap<String, CapturedState>,
) -> Result<HashMap<String, NetworkState>, RenderError> {
    // Syntax errors first, in nmstate's words.
    let rules = parse(
        expressions
            .iter()
            .map(|(name, expression)| (name.clone(), expression.clone())),
    )?;
    // nmstate reports a reference to an undefined capture as a failure to
    // order the captures; say which one, with a caret, as validation does.
    for expression in expressions.values() {
        for (reference, position) in capture_references(expression) {
            if !expressions.contains_key(&reference) && !captured.contains_key(&reference) {
                let line = expression.trim().replace('\u{A0}', " ").trim().to_owned();
                let error = NmstateError::new_policy_error(
                    format!("Capture {reference} not found"),
                    &line,
                    position,
                );
                return Err(RenderError::Capture(error.to_string()));
            }
        }
    }
    if captured.is_empty() {
        // The common case: nmstate runs them all, parsed once.
        return rules
            .execute(current)
            .map_err(|error| RenderError::Capture(error.to_string()));
    }
    let mut known = HashMap::new();
    for (name, given) in captured {
        let state = given.state.clone().unwrap_or_default();
        let state = state
            .to_network_state()
            .map_err(|error| RenderError::CapturedState {
                name: name.clone(),
                message: error.to_string(),
            })?;
        known.insert(name.clone(), state);
    }
    let mut remaining: Vec<(&String, &String)> = expressions
        .iter()
        .filter(|(name, _)| !known.contains_key(*name))
        .collect();
    while !remaining.is_empty() {
        let ready = remaining.iter().position(|(_, expression)| {
            capture_references(expression)
                .iter()
                .all(|(reference, _)| known.contains_key(reference))
        });
        let Some(index) = ready else {
            // A reference to an undefined capture or a cycle: let nmstate
            // report it in its own words.
            let rest: Vec<(String, String)> = remaining
                .iter()
                .map(|(name, expression)| ((*name).clone(), (*expression).clone()))
                .collect();
            execute(rest, current)?;
            return Err(RenderError::Capture(
                "captures refer to each other in a cycle".to_owned(),
            ));
        };
        let (name, expression) = remaining.remove(index);
        let (input, rewritten) = substitute_known(expression, &known)?;
        let input = input.map_or(current, |source| &known[&source]);
        let state = execute([(name.clone(), rewritten)], input)?
            .remove(name)
            .unwrap_or_default();
        known.insert(name.clone(), state);
    }
    Ok(known)
}

/// Runs capture expressions with nmstate's policy engine.
fn execute(
    expressions: impl IntoIterator<Item = (String, String)>,
    current: &NetworkState,
) -> Result<HashMap<String, NetworkState>, RenderError> {
    parse(expressions)?
        .execute(current)
        .map_err(|error| RenderError::Capture(error.to_string()))
}

/// Parses capture expressions with nmstate's policy engine.
fn parse(
    expressions: impl IntoIterator<Item = (String, String)>,
) -> Result<NetworkCaptureRules, RenderError> {
    let rules: Map<String, Value> = expressions
        .into_iter()
        .map(|(name, expression)| (name, Value::String(expression)))
        .collect();
    serde_json::from_value(Value::Object(rules))
        .map_err(|error| RenderError::Capture(error.to_string()))
}

/// Rewrites `expression` so that it refers to no known capture: a leading
/// `capture.<x> |` is dropped and x named as the input, and each
/// `capture.<x>.<path>` becomes the quoted value at that path.
fn substitute_known(
    expression: &str,
    known: &HashMap<String, NetworkState>,
) -> Result<(Option<String>, String), RenderError> {
    let line = expression.trim().replace('\u{A0}', " ").trim().to_owned();
    let mut input = None;
    let mut rest = line.as_str();
    if let Some((source, after)) = line.split_once('|')
        && let Some(name) = source.trim().strip_prefix("capture.")
        && known.contains_key(name)
    {
        input = Some(name.to_owned());
        rest = after.trim();
    }
    let mut rewritten = rest.to_owned();
    // Replace from the end so earlier positions stay valid.
    let mut references = capture_references(rest);
    references.reverse();
    for (name, position) in references {
        let start = position - "capture.".len();
        let end = rewritten[start..]
            .find([' ', '=', '!', '|', '"', ':'])
            .map_or(rewritten.len(), |offset| start + offset);
        let reference = &rewritten[start..end];
        if !known.contains_key(&name) {
            continue;
        }
        let value = resolve_string(&format!("{{{{ {reference} }}}}"), known)?;
        let literal = match value {
            Value::String(text) => text,
            other => other.to_string(),
        };
        rewritten.replace_range(start..end, &format!("\"{literal}\""));
    }
    Ok((input, rewritten))
}

/// Replaces, in place, every string holding a brace by what `resolve`
/// makes of it.
fn fill(
    value: &mut Value,
    resolve: &mut dyn FnMut(&str) -> Result<Value, RenderError>,
) -> Result<(), RenderError> {
    match value {
        Value::String(text) if text.contains(['{', '}']) => {
            *value = resolve(text)?;
        }
        Value::Array(items) => {
            for item in items {
                fill(item, resolve)?;
            }
        }
        Value::Object(object) => {
            for item in object.values_mut() {
                fill(item, resolve)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// The name of the holder interface in `resolve_string`.
const HOLDER_NAME: &str = "nmstate-openapi-render-holder";
/// The key of the holder interface that carries the value.
const HOLDER_KEY: &str = "value";

/// What nmstate's template engine makes of one string: the captured value
/// it refers to (any JSON), or the string with the reference spliced in.
///
/// nmstate only fills whole `NetworkState` documents. The string is put as
/// a property of an interface without a type, which nmstate keeps as an
/// `UnknownInterface` whose extra properties may hold any JSON, so the
/// resolved value comes back unchanged whatever its type.
fn resolve_string(
    text: &str,
    captures: &HashMap<String, NetworkState>,
) -> Result<Value, RenderError> {
    let template = serde_json::json!({
        "interfaces": [{"name": HOLDER_NAME, HOLDER_KEY: text}],
    });
    let template: NetworkStateTemplate = serde_json::from_value(template)
        .map_err(|error| RenderError::Template(error.to_string()))?;
    let state = template
        .fill_with_captured_data(captures)
        .map_err(|error| RenderError::Template(error.to_string()))?;
    let state =
        serde_json::to_value(&state).map_err(|error| RenderError::Template(error.to_string()))?;
    state
        .get("interfaces")
        .and_then(|interfaces| interfaces.get(0))
        .and_then(|interface| interface.get(HOLDER_KEY))
        .cloned()
        .ok_or_else(|| {
            RenderError::Template(format!("nmstate dropped the value of template {text:?}"))
        })
}

/// Upstream kubernetes-nmstate's `bridge.ApplyDefaultVlanFiltering`: every
/// port of a linux-bridge with `state: up` that has no `vlan` key gets a
/// trunk of VLANs 2-4094. A port with `vlan: {}` (or any `vlan`) is kept.
pub fn apply_default_vlan_filtering(document: &mut Value) {
    let Some(interfaces) = document.get_mut("interfaces").and_then(Value::as_array_mut) else {
        return;
    };
    for interface in interfaces {
        let is_bridge_up = interface.get("type").and_then(Value::as_str) == Some("linux-bridge")
            && interface.get("state").and_then(Value::as_str) == Some("up");
        if !is_bridge_up {
            continue;
        }
        let Some(ports) = interface
            .get_mut("bridge")
            .and_then(|bridge| bridge.get_mut("port"))
            .and_then(Value::as_array_mut)
        else {
            continue;
        };
        for port in ports.iter_mut().filter_map(Value::as_object_mut) {
            if !port.contains_key("vlan") {
                port.insert("vlan".to_owned(), default_vlan());
            }
        }
    }
}

/// The trunk upstream gives ports without a `vlan` section.
fn default_vlan() -> Value {
    serde_json::json!({
        "mode": "trunk",
        "trunk-tags": [{"id-range": {"min": 2, "max": 4094}}],
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const CURRENT: &str = r#"
interfaces:
- name: eth1
  type: ethernet
  state: up
  mac-address: "00:00:5E:00:00:01"
routes:
  running:
  - destination: 0.0.0.0/0
    next-hop-address: 192.168.100.1
    next-hop-interface: eth1
    table-id: 254
"#;

    fn spec(yaml: &str) -> NodeNetworkConfigurationPolicySpec {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn now() -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(1_700_000_000).unwrap())
    }

    fn current() -> State {
        serde_yaml::from_str(CURRENT).unwrap()
    }

    fn check(policy: &str, options: RenderOptions, expected_desired: &str) {
        let rendered = render(&spec(policy), &current(), &options, &now()).unwrap();
        let expected: Value = serde_yaml::from_str(expected_desired).unwrap();
        assert_eq!(
            rendered.desired_state.0,
            expected,
            "{}",
            serde_yaml::to_string(&rendered.desired_state).unwrap()
        );
    }

    const BRIDGE: &str = r#"
desiredState:
  interfaces:
  - name: br1
    type: linux-bridge
    state: up
    bridge:
      port:
      - name: eth1
      - name: eth2
        vlan: {}
  - name: br2
    type: linux-bridge
    state: down
    bridge:
      port:
      - name: eth3
"#;

    #[test]
    fn default_vlan_filtering_on() {
        check(
            BRIDGE,
            RenderOptions::default(),
            r#"
interfaces:
- name: br1
  type: linux-bridge
  state: up
  bridge:
    port:
    - name: eth1
      vlan:
        mode: trunk
        trunk-tags:
        - id-range: {min: 2, max: 4094}
    - name: eth2
      vlan: {}
- name: br2
  type: linux-bridge
  state: down
  bridge:
    port:
    - name: eth3
"#,
        );
    }

    #[test]
    fn default_vlan_filtering_off() {
        let options = RenderOptions {
            default_bridge_vlan_filtering: false,
        };
        let expected = spec(BRIDGE).desired_state.unwrap();
        check(BRIDGE, options, &serde_yaml::to_string(&expected).unwrap());
    }

    #[test]
    fn vlan_default_applies_to_templated_ports() {
        check(
            r#"
capture:
  gw: routes.running.destination=="0.0.0.0/0"
desiredState:
  interfaces:
  - name: br1
    type: linux-bridge
    state: up
    bridge:
      port:
      - name: "{{ capture.gw.routes.running.0.next-hop-interface }}"
"#,
            RenderOptions::default(),
            r#"
interfaces:
- name: br1
  type: linux-bridge
  state: up
  bridge:
    port:
    - name: eth1
      vlan:
        mode: trunk
        trunk-tags:
        - id-range: {min: 2, max: 4094}
"#,
        );
    }

    #[test]
    fn state_without_templates_is_kept_as_written() {
        // nmstate's template engine would reject the lone brace.
        let policy = r#"
desiredState:
  interfaces:
  - name: eth1
    type: ethernet
    state: up
    description: "uses { as a bullet"
"#;
        let expected = serde_yaml::to_string(&spec(policy).desired_state.unwrap()).unwrap();
        check(policy, RenderOptions::default(), &expected);
    }

    #[test]
    fn templates_take_any_captured_value() {
        check(
            r#"
capture:
  eth: interfaces.name=="eth1"
  gw: routes.running.destination=="0.0.0.0/0"
desiredState:
  interfaces:
  - name: "{{ capture.eth.interfaces.0.name }}.10"
    type: vlan
    state: up
    vlan:
      base-iface: "{{ capture.eth.interfaces.0.name }}"
      id: 10
  routes:
    config: "{{ capture.gw.routes.running }}"
"#,
            RenderOptions::default(),
            r#"
interfaces:
- name: eth1.10
  type: vlan
  state: up
  vlan:
    base-iface: eth1
    id: 10
routes:
  config:
  - destination: 0.0.0.0/0
    next-hop-interface: eth1
    next-hop-address: 192.168.100.1
    table-id: 254
"#,
        );
    }

    #[test]
    fn capture_error_keeps_nmstate_caret() {
        let policy = spec(
            r#"
capture:
  gw: routes.running.destination=="10.0.0.0/8"
"#,
        );
        let error = render(&policy, &current(), &RenderOptions::default(), &now()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "failed to run captures: PolicyError: route with 'destination=10.0.0.0/8' not found\n\
             | routes.running.destination==\"10.0.0.0/8\"\n\
             | .......^"
        );
        assert!(matches!(error, RenderError::Capture(_)));
    }

    #[test]
    fn undefined_capture_reference_is_named() {
        let policy = spec(
            r#"
capture:
  gw: capture.void | routes.running.destination=="0.0.0.0/0"
"#,
        );
        let error = render(&policy, &current(), &RenderOptions::default(), &now()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "failed to run captures: PolicyError: Capture void not found\n\
             | capture.void | routes.running.destination==\"0.0.0.0/0\"\n\
             | ........^"
        );
    }

    #[test]
    fn template_error_keeps_nmstate_caret() {
        let policy = spec(
            r#"
capture:
  eth: interfaces.name=="eth1"
desiredState:
  interfaces:
  - name: "{{ capture.eth.interfaces.3.name }}"
"#,
        );
        let error = render(&policy, &current(), &RenderOptions::default(), &now()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "failed to fill the desired state: PolicyError: Failed to find index 3 from interfaces\n\
             | {{ capture.eth.interfaces.3.name }}\n\
             | ............................^"
        );
    }

    #[test]
    fn captured_states_carry_meta_info() {
        let policy = spec(
            r#"
capture:
  gw: routes.running.destination=="0.0.0.0/0"
"#,
        );
        let rendered = render(&policy, &current(), &RenderOptions::default(), &now()).unwrap();
        let captured = &rendered.captured_states["gw"];
        assert_eq!(
            captured.meta_info,
            Some(MetaInfo {
                version: Some("0".to_owned()),
                time: Some(now()),
            })
        );
        let routes = &captured.state.as_ref().unwrap().0["routes"]["running"];
        assert_eq!(routes[0]["next-hop-interface"], "eth1");
        assert_eq!(rendered.captured_states.len(), 1);
    }

    #[test]
    fn given_captures_are_not_run() {
        let policy = spec(
            r#"
capture:
  gw: routes.running.destination=="0.0.0.0/0"
  base: interfaces.name==capture.gw.routes.running.0.next-hop-interface
  bridged: capture.gw | routes.running.next-hop-interface:="br1"
desiredState:
  interfaces:
  - name: "{{ capture.base.interfaces.0.name }}"
    type: ethernet
    state: up
"#,
        );
        // The given gw names eth2, which the current state also has; the
        // current state's default route is via eth1.
        let mut current = current();
        current.0["interfaces"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"name": "eth2", "type": "ethernet", "state": "up"}));
        let given: CapturedState = serde_yaml::from_str(
            r#"
state:
  routes:
    running:
    - destination: 0.0.0.0/0
      next-hop-interface: eth2
metaInfo:
  version: "0"
"#,
        )
        .unwrap();
        let captured = BTreeMap::from([("gw".to_owned(), given.clone())]);
        let rendered = render_with_captured(
            &policy,
            &current,
            &captured,
            &RenderOptions::default(),
            &now(),
        )
        .unwrap();
        assert_eq!(rendered.desired_state.0["interfaces"][0]["name"], "eth2");
        assert_eq!(rendered.captured_states["gw"], given);
        let bridged = &rendered.captured_states["bridged"]
            .state
            .as_ref()
            .unwrap()
            .0;
        assert_eq!(bridged["routes"]["running"][0]["next-hop-interface"], "br1");
    }
}
