//! The core of `nmpolicyctl gen`: from the text of a policy, a current state
//! and optionally cached captured states, the text of the generated desired
//! state and of the captured states. The binary only reads and writes files.
//!
//! The formats are nmpolicy's: a policy is a YAML document with a `capture`
//! map and a `desiredState`; captured states map each capture's name to
//! `{state, metaInfo: {version, time}}` (Go nmpolicy's capitalised `State`,
//! `MetaInfo`, `Version` and `TimeStamp` are read too).

use std::collections::BTreeMap;

use nmstate_openapi::{
    CapturedState, NodeNetworkConfigurationPolicySpec, State, Time,
    render::{RenderError, RenderOptions, render_with_captured},
};
use serde_json::Value;

/// What went wrong generating a state; the message is what the user reads.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The policy document is not YAML of the nmpolicy shape.
    #[error("invalid policy: {0}")]
    Policy(#[source] serde_yaml::Error),
    /// The current state is not a YAML document.
    #[error("invalid current state: {0}")]
    CurrentState(#[source] serde_yaml::Error),
    /// The captured-states file is not a map of captured states.
    #[error("invalid captured states: {0}")]
    CapturedStates(String),
    /// The policy does not render against the current state.
    #[error("failed to generate state: {0}")]
    Render(#[source] RenderError),
}

/// The result of `nmpolicyctl gen`.
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    /// The desired state as YAML; empty for an empty policy, as nmpolicy.
    pub desired_state: String,
    /// The captured states as YAML; empty when there are none.
    pub captured_states: String,
}

/// Renders `policy` against `current`, using the entries of `captured`
/// instead of running those captures.
pub fn generate(
    policy: &str,
    current: &str,
    captured: Option<&str>,
    options: &RenderOptions,
    now: &Time,
) -> Result<Generated, Error> {
    let spec: NodeNetworkConfigurationPolicySpec = if policy.trim().is_empty() {
        NodeNetworkConfigurationPolicySpec::default()
    } else {
        serde_yaml::from_str(policy).map_err(Error::Policy)?
    };
    let current: State = if current.trim().is_empty() {
        State::default()
    } else {
        serde_yaml::from_str(current).map_err(Error::CurrentState)?
    };
    let captured = captured
        .map(parse_captured)
        .transpose()?
        .unwrap_or_default();
    let rendered =
        render_with_captured(&spec, &current, &captured, options, now).map_err(Error::Render)?;
    let desired_state = if spec.desired_state.is_none() {
        String::new()
    } else {
        to_yaml(&rendered.desired_state)
    };
    let captured_states = if rendered.captured_states.is_empty() {
        String::new()
    } else {
        to_yaml(&rendered.captured_states)
    };
    Ok(Generated {
        desired_state,
        captured_states,
    })
}

fn to_yaml(value: &impl serde::Serialize) -> String {
    // Serialising JSON-shaped values to YAML cannot fail.
    serde_yaml::to_string(value).unwrap_or_default()
}

/// Reads a captured-states document, accepting Go nmpolicy's capitalised
/// keys.
fn parse_captured(text: &str) -> Result<BTreeMap<String, CapturedState>, Error> {
    if text.trim().is_empty() {
        return Ok(BTreeMap::new());
    }
    let document: Value =
        serde_yaml::from_str(text).map_err(|error| Error::CapturedStates(error.to_string()))?;
    let Value::Object(entries) = document else {
        return Err(Error::CapturedStates(
            "expected a map of capture names to captured states".to_owned(),
        ));
    };
    entries
        .into_iter()
        .map(|(name, entry)| {
            let entry = lower_keys(entry);
            let captured: CapturedState = serde_json::from_value(entry)
                .map_err(|error| Error::CapturedStates(format!("{name}: {error}")))?;
            Ok((name, captured))
        })
        .collect()
}

/// Go nmpolicy's field names to the kubernetes-nmstate ones, on the
/// captured-state envelope only (never inside the network state).
fn lower_keys(entry: Value) -> Value {
    let Value::Object(object) = entry else {
        return entry;
    };
    object
        .into_iter()
        .map(|(key, value)| match key.as_str() {
            "State" => ("state".to_owned(), value),
            "MetaInfo" | "metaInfo" => ("metaInfo".to_owned(), lower_meta(value)),
            _ => (key, value),
        })
        .collect::<serde_json::Map<_, _>>()
        .into()
}

fn lower_meta(meta: Value) -> Value {
    let Value::Object(object) = meta else {
        return meta;
    };
    object
        .into_iter()
        .map(|(key, value)| match key.as_str() {
            "Version" => ("version".to_owned(), value),
            "Time" | "TimeStamp" => ("time".to_owned(), value),
            _ => (key, value),
        })
        .collect::<serde_json::Map<_, _>>()
        .into()
}
