//! Rendering a policy for a node: its capture expressions (nmpolicy) run
//! against the node's current state, and its templates are filled. Never a
//! panic, whatever the expressions, templates and state.
//!
//! Input: JSON `{"spec": <policy spec>, "current": <nmstate document>}`
//! (the seed corpus holds the nmpolicy conformance vectors in that form).

use nmstate_openapi::{
    NodeNetworkConfigurationPolicySpec, State, Time,
    render::{RenderOptions, render},
};
use serde_json::Value;

/// Panics when `data` breaks an invariant (see the module).
pub fn check(data: &[u8]) {
    let Ok(Value::Object(mut input)) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let Some(spec) = input.remove("spec") else {
        return;
    };
    let Ok(spec) = serde_json::from_value::<NodeNetworkConfigurationPolicySpec>(spec) else {
        return;
    };
    let current = State(input.remove("current").unwrap_or(Value::Null));
    let now: Time = serde_json::from_value("2026-12-07T00:00:00Z".into()).expect("a time");
    for default_bridge_vlan_filtering in [true, false] {
        let options = RenderOptions {
            default_bridge_vlan_filtering,
        };
        let _ = render(&spec, &current, &options, &now);
    }
}
