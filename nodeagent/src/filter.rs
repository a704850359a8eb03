//! What the reporter leaves out of a node's state before publishing it, as
//! upstream kubernetes-nmstate's handler does (its `pkg/state` filter), so
//! that a node whose network does not change produces the same document
//! every time and therefore no writes:
//!
//! - veth interfaces in state `ignore` (container ends NetworkManager does
//!   not manage: they come and go with pods);
//! - routes, configured or running, whose next hop is an interface left
//!   out;
//! - the linux-bridge timers `gc-timer` and `hello-timer`, which count down
//!   all the time;
//! - address lifetimes (`valid-left`, `preferred-left`), which do too.
//!
//! Pure: a document in, a document out.

use nmstate_openapi::State;
use serde_json::Value;

/// Interface keys that are counters rather than configuration.
const BRIDGE_TIMERS: [&str; 2] = ["gc-timer", "hello-timer"];
/// Address keys that count down.
const ADDRESS_LIFETIMES: [&str; 2] = ["valid-left", "preferred-left"];

/// The state the reporter publishes for `state`.
pub fn filter_state(state: &State) -> State {
    let mut value = state.0.clone();
    let mut dropped: Vec<String> = Vec::new();
    if let Some(interfaces) = value.get_mut("interfaces").and_then(Value::as_array_mut) {
        interfaces.retain(|interface| {
            let ignored_veth = interface.get("type").and_then(Value::as_str) == Some("veth")
                && interface.get("state").and_then(Value::as_str) == Some("ignore");
            if ignored_veth && let Some(name) = interface.get("name").and_then(Value::as_str) {
                dropped.push(name.to_owned());
            }
            !ignored_veth
        });
        for interface in interfaces.iter_mut() {
            remove_dynamic_attributes(interface);
        }
    }
    if !dropped.is_empty()
        && let Some(routes) = value.get_mut("routes").and_then(Value::as_object_mut)
    {
        for kind in ["config", "running"] {
            if let Some(list) = routes.get_mut(kind).and_then(Value::as_array_mut) {
                list.retain(|route| {
                    route
                        .get("next-hop-interface")
                        .and_then(Value::as_str)
                        .is_none_or(|name| !dropped.iter().any(|d| d == name))
                });
            }
        }
    }
    State(value)
}

fn remove_dynamic_attributes(interface: &mut Value) {
    if interface.get("type").and_then(Value::as_str) == Some("linux-bridge")
        && let Some(options) = interface
            .get_mut("bridge")
            .and_then(|bridge| bridge.get_mut("options"))
            .and_then(Value::as_object_mut)
    {
        for timer in BRIDGE_TIMERS {
            options.remove(timer);
        }
    }
    for family in ["ipv4", "ipv6"] {
        if let Some(addresses) = interface
            .get_mut(family)
            .and_then(|ip| ip.get_mut("address"))
            .and_then(Value::as_array_mut)
        {
            for address in addresses.iter_mut().filter_map(Value::as_object_mut) {
                for key in ADDRESS_LIFETIMES {
                    address.remove(key);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[track_caller]
    fn check(input: Value, expected: Value) {
        assert_eq!(filter_state(&State(input)).0, expected);
    }

    #[test]
    fn leaves_a_static_state_alone() {
        let state = json!({
            "interfaces": [{"name": "eth0", "type": "ethernet", "state": "up",
                "ipv4": {"enabled": true, "address": [{"ip": "192.0.2.1", "prefix-length": 24}]}}],
            "routes": {"running": [{"destination": "0.0.0.0/0", "next-hop-interface": "eth0"}]},
        });
        check(state.clone(), state);
        check(json!({}), json!({}));
    }

    #[test]
    fn drops_ignored_veths_and_their_routes() {
        check(
            json!({
                "interfaces": [
                    {"name": "veth1", "type": "veth", "state": "ignore"},
                    {"name": "veth2", "type": "veth", "state": "up"},
                    {"name": "eth0", "type": "ethernet", "state": "ignore"},
                ],
                "routes": {
                    "config": [{"destination": "10.0.0.0/8", "next-hop-interface": "veth1"}],
                    "running": [
                        {"destination": "10.0.0.0/8", "next-hop-interface": "veth1"},
                        {"destination": "10.1.0.0/16", "next-hop-interface": "veth2"},
                        {"destination": "0.0.0.0/0", "next-hop-interface": "eth0"},
                        {"destination": "blackhole", "route-type": "blackhole"},
                    ],
                },
            }),
            json!({
                "interfaces": [
                    {"name": "veth2", "type": "veth", "state": "up"},
                    {"name": "eth0", "type": "ethernet", "state": "ignore"},
                ],
                "routes": {
                    "config": [],
                    "running": [
                        {"destination": "10.1.0.0/16", "next-hop-interface": "veth2"},
                        {"destination": "0.0.0.0/0", "next-hop-interface": "eth0"},
                        {"destination": "blackhole", "route-type": "blackhole"},
                    ],
                },
            }),
        );
    }

    #[test]
    fn drops_bridge_timers_and_address_lifetimes() {
        check(
            json!({"interfaces": [
                {"name": "br1", "type": "linux-bridge", "bridge": {"options": {
                    "gc-timer": 13715, "hello-timer": 0, "mac-ageing-time": 300}},
                 "ipv6": {"address": [{"ip": "2001:db8::1", "prefix-length": 64,
                    "valid-left": "3600sec", "preferred-left": "1800sec"}]}},
                {"name": "ovs", "type": "ovs-bridge", "bridge": {"options": {"gc-timer": 1}}},
            ]}),
            json!({"interfaces": [
                {"name": "br1", "type": "linux-bridge", "bridge": {"options": {"mac-ageing-time": 300}},
                 "ipv6": {"address": [{"ip": "2001:db8::1", "prefix-length": 64}]}},
                {"name": "ovs", "type": "ovs-bridge", "bridge": {"options": {"gc-timer": 1}}},
            ]}),
        );
    }

    #[test]
    fn tolerates_odd_shapes() {
        let odd = json!({"interfaces": "none", "routes": [1, 2]});
        check(odd.clone(), odd);
        let odd = json!({"interfaces": [1, {"name": 5, "type": "veth", "state": "ignore"}],
            "routes": {"running": [{"next-hop-interface": 7}]}});
        check(
            odd,
            json!({"interfaces": [1], "routes": {"running": [{"next-hop-interface": 7}]}}),
        );
    }
}
