//! What a dry run changes on a node, as both sides of a diff, the way
//! `kubectl diff` shows an object: the node's current values of what
//! nmstate's difference touches (`-`) against the difference itself (`+`).
//!
//! nmstate's difference holds only the interfaces, routes, route rules, DNS
//! and hostname that would change, each with only its changed properties
//! (and the name, type and state that say which interface it is). The
//! other side is cut from the node's reported current state to the same
//! shape, so that the two YAML texts line up and a line diff between them
//! shows what goes away, what comes and what stays as context. Plain
//! functions over values, with no IO.

use serde_json::{Map, Value};
use similar::{ChangeTag, TextDiff};

/// One line of the diff.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Line {
    /// In both sides: context.
    Same(String),
    /// Only in the current state: changed or removed.
    Removed(String),
    /// Only in the difference: added or the new value.
    Added(String),
}

/// The current side of `difference` (nmstate's difference of a desired
/// state against `current`): for each thing the difference names, what
/// `current` has there now.
///
/// - an interface is matched by name (and type, when two share a name);
///   one the current state lacks has no current side;
/// - of a matched interface, the properties the difference names, with
///   objects cut recursively and lists and values taken whole;
/// - an interface, or an object, that the difference marks `state:
///   absent` or `enabled: false` is taken whole: all of it goes away;
/// - a route or route rule marked `state: absent` brings the configured
///   ones it matches (equal on every property it names);
/// - DNS, hostname and anything else are cut like an interface.
pub fn current_side(difference: &Value, current: &Value) -> Value {
    let mut side = Map::new();
    let Some(difference) = difference.as_object() else {
        return Value::Object(side);
    };
    for (key, changed) in difference {
        let now = &current[key];
        let cut = match key.as_str() {
            "interfaces" => {
                let interfaces: Vec<Value> = changed
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|iface| {
                        current_interface(iface, now).and_then(|found| cut(found, iface))
                    })
                    .collect();
                (!interfaces.is_empty()).then_some(Value::Array(interfaces))
            }
            "routes" | "route-rules" => {
                let removed: Vec<Value> = changed["config"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|entry| is_absent(entry))
                    .flat_map(|entry| matching_entries(entry, &now["config"]))
                    .collect();
                (!removed.is_empty()).then(|| {
                    let mut section = Map::new();
                    section.insert("config".to_owned(), Value::Array(removed));
                    Value::Object(section)
                })
            }
            _ => cut(now, changed),
        };
        if let Some(cut) = cut {
            side.insert(key.clone(), cut);
        }
    }
    Value::Object(side)
}

/// The interface of `current` (a list) that `iface` names: same name, and
/// the same type when there is one of that name and type.
fn current_interface<'a>(iface: &Value, current: &'a Value) -> Option<&'a Value> {
    let named: Vec<&Value> = current
        .as_array()
        .into_iter()
        .flatten()
        .filter(|candidate| candidate["name"] == iface["name"])
        .collect();
    named
        .iter()
        .find(|candidate| candidate["type"] == iface["type"])
        .or_else(|| named.first())
        .copied()
}

fn is_absent(value: &Value) -> bool {
    value["state"] == "absent"
}

/// The entries of `current` (a list of routes or rules) that `absent`
/// matches: equal on each property it names but `state`.
fn matching_entries(absent: &Value, current: &Value) -> Vec<Value> {
    let Some(absent) = absent.as_object() else {
        return Vec::new();
    };
    current
        .as_array()
        .into_iter()
        .flatten()
        .filter(|entry| {
            absent
                .iter()
                .filter(|(key, _)| key.as_str() != "state")
                .all(|(key, value)| &entry[key] == value)
        })
        .cloned()
        .collect()
}

/// `current` cut to the shape of `changed`; `None` when it has none of it.
fn cut(current: &Value, changed: &Value) -> Option<Value> {
    match (current, changed) {
        (Value::Null, _) => None,
        (Value::Object(now), Value::Object(shape)) => {
            if is_absent(changed) || shape.get("enabled") == Some(&Value::Bool(false)) {
                return Some(current.clone());
            }
            let mut out = Map::new();
            for (key, sub) in shape {
                if let Some(value) = now.get(key).and_then(|value| cut(value, sub)) {
                    out.insert(key.clone(), value);
                }
            }
            (!out.is_empty()).then_some(Value::Object(out))
        }
        _ => Some(current.clone()),
    }
}

/// The line diff from `before` to `after` (texts of whole lines).
pub fn lines(before: &str, after: &str) -> Vec<Line> {
    TextDiff::from_lines(before, after)
        .iter_all_changes()
        .map(|change| {
            let text = change.value().trim_end_matches('\n').to_owned();
            match change.tag() {
                ChangeTag::Equal => Line::Same(text),
                ChangeTag::Delete => Line::Removed(text),
                ChangeTag::Insert => Line::Added(text),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;

    fn check(case: &str, difference: Value, current: Value, expected: Value) {
        assert_eq!(current_side(&difference, &current), expected, "{case}");
    }

    #[test]
    fn current_side_of_each_kind_of_change() {
        let current = json!({
            "interfaces": [
                {"name": "eth1", "type": "ethernet", "state": "up", "mtu": 1500,
                 "ipv4": {"enabled": true, "dhcp": false,
                          "address": [{"ip": "192.0.2.5", "prefix-length": 24}]}},
                {"name": "br0", "type": "ovs-bridge", "state": "up"},
                {"name": "br0", "type": "ovs-interface", "state": "up", "mtu": 1400},
            ],
            "routes": {"config": [
                {"destination": "0.0.0.0/0", "next-hop-interface": "eth1", "next-hop-address": "192.0.2.1"},
                {"destination": "198.51.100.0/24", "next-hop-interface": "eth1"},
            ]},
            "dns-resolver": {"config": {"server": ["192.0.2.53"]}, "running": {"server": ["192.0.2.53"]}},
        });
        check(
            "a changed property, cut to the difference's shape",
            json!({"interfaces": [{"name": "eth1", "type": "ethernet", "state": "up", "mtu": 9000}]}),
            current.clone(),
            json!({"interfaces": [{"name": "eth1", "type": "ethernet", "state": "up", "mtu": 1500}]}),
        );
        check(
            "a disabled section is removed whole",
            json!({"interfaces": [{"name": "eth1", "type": "ethernet", "state": "up", "ipv4": {"enabled": false}}]}),
            current.clone(),
            json!({"interfaces": [{"name": "eth1", "type": "ethernet", "state": "up",
                                   "ipv4": current["interfaces"][0]["ipv4"].clone()}]}),
        );
        check(
            "an absent interface is removed whole",
            json!({"interfaces": [{"name": "eth1", "type": "ethernet", "state": "absent"}]}),
            current.clone(),
            json!({"interfaces": [current["interfaces"][0].clone()]}),
        );
        check(
            "a new interface has no current side; same names go by type",
            json!({"interfaces": [
                {"name": "br9", "type": "linux-bridge", "state": "up"},
                {"name": "br0", "type": "ovs-interface", "state": "up", "mtu": 9000},
            ]}),
            current.clone(),
            json!({"interfaces": [{"name": "br0", "type": "ovs-interface", "state": "up", "mtu": 1400}]}),
        );
        check(
            "an absent route brings the configured routes it matches; a new one none",
            json!({"routes": {"config": [
                {"destination": "0.0.0.0/0", "state": "absent"},
                {"destination": "203.0.113.0/24", "next-hop-interface": "eth1"},
            ]}}),
            current.clone(),
            json!({"routes": {"config": [current["routes"]["config"][0].clone()]}}),
        );
        check(
            "DNS is cut like an interface",
            json!({"dns-resolver": {"config": {"server": ["192.0.2.54"]}}}),
            current,
            json!({"dns-resolver": {"config": {"server": ["192.0.2.53"]}}}),
        );
    }

    #[test]
    fn current_side_of_nmstates_own_difference() {
        let current = json!({"interfaces": [
            {"name": "eth1", "type": "ethernet", "state": "up", "mtu": 1500,
             "ipv4": {"enabled": true, "dhcp": false,
                      "address": [{"ip": "192.0.2.5", "prefix-length": 24}]}},
        ]});
        let desired = json!({"interfaces": [
            {"name": "eth1", "type": "ethernet", "state": "up", "mtu": 9000,
             "ipv4": {"enabled": true, "dhcp": false,
                      "address": [{"ip": "192.0.2.6", "prefix-length": 24}]}},
        ]});
        let difference = nmstate_openapi::subresources::difference(
            &nmstate_openapi::State(desired),
            &nmstate_openapi::State(current.clone()),
        )
        .unwrap()
        .0;
        let before = crate::print::yaml(&current_side(&difference, &current));
        let after = crate::print::yaml(&difference);
        use Line::{Added, Removed, Same};
        let text = |line: &str| line.to_owned();
        assert_eq!(
            lines(&before, &after),
            [
                Same(text("interfaces:")),
                Same(text("- name: eth1")),
                Same(text("  type: ethernet")),
                Same(text("  state: up")),
                Removed(text("  mtu: 1500")),
                Added(text("  mtu: 9000")),
                Same(text("  ipv4:")),
                Same(text("    address:")),
                Removed(text("    - ip: 192.0.2.5")),
                Added(text("    - ip: 192.0.2.6")),
                Same(text("      prefix-length: 24")),
            ]
        );
    }
}
