//! The objects the benchmarks write, built as plain values: a node's
//! network state as big as a real node's (about 20 KB of JSON: 40
//! interfaces with addresses, routes, DNS) and minimal enactments.
//!
//! Every node gets its own addresses and MACs, so no two objects are the
//! same bytes.

use serde_json::{Value, json};

/// Interfaces in a node's state.
pub const INTERFACES: usize = 40;

/// The name of node `index`: `node-<index>`.
pub fn node_name(index: usize) -> String {
    format!("node-{index}")
}

/// The name of the policy every benchmark enactment belongs to.
pub const POLICY: &str = "p";

/// A `NodeNetworkState` as an agent creates it: metadata only (the server
/// drops the status on create; it is written through `/status`).
pub fn state_for_create(node: usize) -> Value {
    json!({
        "apiVersion": "nmstate.io/v1",
        "kind": "NodeNetworkState",
        "metadata": {
            "name": node_name(node),
            "labels": {
                "kubernetes.io/hostname": node_name(node),
                "kubernetes.io/os": "linux",
                "node-role.kubernetes.io/worker": "",
            },
        },
    })
}

/// The status an agent reports for `node`: its current state with
/// [`INTERFACES`] interfaces, routes and DNS, and the usual conditions.
pub fn state_status(node: usize) -> Value {
    json!({
        "currentState": current_state(node),
        "lastSuccessfulUpdateTime": "2025-01-01T10:00:00Z",
        "hostNetworkManagerVersion": "1.46.0",
        "handlerNetworkManagerVersion": "1.46.0",
        "handlerNmstateVersion": "2.2.62",
        "conditions": [
            {
                "type": "Available",
                "status": "True",
                "reason": "SuccessfullyConfigured",
                "message": "successfully reconciled",
                "lastHeartbeatTime": "2025-01-01T10:00:00Z",
                "lastTransitionTime": "2025-01-01T09:00:00Z",
            },
            {
                "type": "Failing",
                "status": "False",
                "reason": "SuccessfullyConfigured",
                "lastHeartbeatTime": "2025-01-01T10:00:00Z",
                "lastTransitionTime": "2025-01-01T09:00:00Z",
            },
        ],
    })
}

/// A minimal valid enactment of [`POLICY`] on `node`: its name and the two
/// labels agents and the controller find it by.
pub fn enactment(node: usize) -> Value {
    json!({
        "apiVersion": "nmstate.io/v1",
        "kind": "NodeNetworkConfigurationEnactment",
        "metadata": {
            "name": enactment_name(node),
            "labels": {
                "nmstate.io/node": node_name(node),
                "nmstate.io/policy": POLICY,
            },
        },
    })
}

/// The name of the enactment of [`POLICY`] on `node`.
pub fn enactment_name(node: usize) -> String {
    nmstate_openapi::enactment_name(&node_name(node), POLICY)
}

/// An enactment's status as an agent reports success for `generation`.
pub fn enactment_status(generation: i64) -> Value {
    json!({
        "policyGeneration": generation,
        "conditions": [{
            "type": "Available",
            "status": "True",
            "reason": "SuccessfullyConfigured",
            "message": "successfully reconciled",
            "lastTransitionTime": "2025-01-01T10:00:00Z",
        }],
    })
}

/// A node's current state in nmstate's format: loopback, four NICs, a bond
/// of two of them under a bridge, ten VLANs on the bond, and pod veths.
pub fn current_state(node: usize) -> Value {
    // Two bytes that tell nodes apart in MACs and addresses.
    let (high, low) = ((node >> 8) & 0xff, node & 0xff);
    let mac = |interface: usize| format!("52:54:{high:02X}:{low:02X}:{:02X}:01", interface & 0xff);
    let link_local = |interface: usize| json!({"ip": format!("fe80::5054:{high:x}ff:fe{low:02x}:{interface:x}01"), "prefix-length": 64});
    let mut interfaces = vec![json!({
        "name": "lo",
        "type": "loopback",
        "state": "up",
        "mtu": 65536,
        "accept-all-mac-addresses": false,
        "ipv4": {"enabled": true, "address": [{"ip": "127.0.0.1", "prefix-length": 8}]},
        "ipv6": {"enabled": true, "address": [{"ip": "::1", "prefix-length": 128}]},
    })];
    for nic in 0..4 {
        let in_bond = nic >= 2;
        let ipv4 = if in_bond {
            json!({"enabled": false})
        } else {
            json!({
                "enabled": true,
                "dhcp": nic == 0,
                "auto-dns": true,
                "auto-gateway": true,
                "auto-routes": true,
                "auto-route-table-id": 0,
                "address": [{
                    "ip": format!("10.{nic}.{high}.{low}"),
                    "prefix-length": 16,
                }],
            })
        };
        let ipv6 = if in_bond {
            json!({"enabled": false})
        } else {
            json!({
                "enabled": true,
                "dhcp": false,
                "autoconf": true,
                "address": [
                    {"ip": format!("fd00:{nic}::{high:x}:{low:x}"), "prefix-length": 64},
                    link_local(nic),
                ],
            })
        };
        interfaces.push(json!({
            "name": format!("eth{nic}"),
            "type": "ethernet",
            "state": "up",
            "mac-address": mac(nic),
            "permanent-mac-address": mac(nic),
            "mtu": 9000,
            "min-mtu": 68,
            "max-mtu": 9216,
            "accept-all-mac-addresses": false,
            "driver": "virtio_net",
            "ethernet": {"auto-negotiation": false, "duplex": "full", "speed": 25000},
            "lldp": {"enabled": false},
            "ethtool": {
                "feature": {
                    "rx-checksum": true,
                    "tx-checksum-ip-generic": true,
                    "tx-generic-segmentation": true,
                    "rx-gro": true,
                    "tx-tcp-segmentation": true,
                },
                "ring": {"rx": 1024, "tx": 1024},
            },
            "ipv4": ipv4,
            "ipv6": ipv6,
        }));
    }
    interfaces.push(json!({
        "name": "bond0",
        "type": "bond",
        "state": "up",
        "mac-address": mac(2),
        "mtu": 9000,
        "link-aggregation": {
            "mode": "802.3ad",
            "port": ["eth2", "eth3"],
            "options": {"miimon": 100, "lacp_rate": "fast", "xmit_hash_policy": "layer3+4"},
        },
        "ipv4": {"enabled": false},
        "ipv6": {"enabled": false},
    }));
    interfaces.push(json!({
        "name": "br1",
        "type": "linux-bridge",
        "state": "up",
        "mac-address": mac(2),
        "mtu": 9000,
        "bridge": {
            "options": {
                "stp": {"enabled": false, "forward-delay": 15, "hello-time": 2, "max-age": 20, "priority": 32768},
                "mac-ageing-time": 300,
                "multicast-snooping": true,
            },
            "port": [{"name": "bond0", "stp-hairpin-mode": false, "stp-path-cost": 100, "stp-priority": 32}],
        },
        "ipv4": {"enabled": true, "dhcp": false, "address": [{"ip": format!("192.168.{low}.1"), "prefix-length": 24}]},
        "ipv6": {"enabled": true, "dhcp": false, "autoconf": false, "address": [link_local(5)]},
    }));
    for vlan in 0..10 {
        let id = 100 + vlan;
        interfaces.push(json!({
            "name": format!("bond0.{id}"),
            "type": "vlan",
            "state": "up",
            "mac-address": mac(2),
            "mtu": 9000,
            "vlan": {"base-iface": "bond0", "id": id, "protocol": "802.1q"},
            "ipv4": {
                "enabled": true,
                "dhcp": false,
                "address": [{"ip": format!("172.{}.{high}.{low}", 16 + vlan), "prefix-length": 16}],
            },
            "ipv6": {
                "enabled": true,
                "dhcp": false,
                "autoconf": false,
                "address": [
                    {"ip": format!("fd{id:02x}::{high:x}:{low:x}"), "prefix-length": 64},
                    link_local(10 + vlan),
                ],
            },
        }));
    }
    while interfaces.len() < INTERFACES {
        let pod = interfaces.len();
        interfaces.push(json!({
            "name": format!("veth{low:02x}{pod:04x}"),
            "type": "veth",
            "state": "up",
            "mac-address": mac(pod),
            "mtu": 8950,
            "accept-all-mac-addresses": false,
            "veth": {"peer": "eth0"},
            "ipv4": {"enabled": false},
            "ipv6": {"enabled": true, "dhcp": false, "autoconf": false, "address": [link_local(pod)]},
        }));
    }

    let mut routes = Vec::new();
    for nic in 0..2 {
        routes.push(json!({
            "destination": "0.0.0.0/0",
            "next-hop-interface": format!("eth{nic}"),
            "next-hop-address": format!("10.{nic}.0.1"),
            "metric": 100 + nic,
            "table-id": 254,
        }));
        routes.push(json!({
            "destination": format!("10.{nic}.0.0/16"),
            "next-hop-interface": format!("eth{nic}"),
            "next-hop-address": "0.0.0.0",
            "metric": 100 + nic,
            "table-id": 254,
        }));
        routes.push(json!({
            "destination": "::/0",
            "next-hop-interface": format!("eth{nic}"),
            "next-hop-address": format!("fd00:{nic}::1"),
            "metric": 1024,
            "table-id": 254,
        }));
    }
    for vlan in 0..10 {
        routes.push(json!({
            "destination": format!("172.{}.0.0/16", 16 + vlan),
            "next-hop-interface": format!("bond0.{}", 100 + vlan),
            "next-hop-address": "0.0.0.0",
            "metric": 400,
            "table-id": 254,
        }));
        routes.push(json!({
            "destination": format!("10.{}.0.0/16", 100 + vlan),
            "next-hop-interface": format!("bond0.{}", 100 + vlan),
            "next-hop-address": format!("172.{}.0.1", 16 + vlan),
            "metric": 400,
            "table-id": 100 + vlan,
        }));
    }
    let config_routes: Vec<Value> = routes.iter().take(4).cloned().collect();

    json!({
        "interfaces": interfaces,
        "routes": {"running": routes, "config": config_routes},
        "route-rules": {"config": []},
        "dns-resolver": {
            "running": {
                "server": ["10.0.0.53", "10.1.0.53", "fd00:0::53"],
                "search": ["cluster.local", "svc.cluster.local", "example.com"],
            },
            "config": {"server": [], "search": []},
        },
        "ovs-db": {},
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use nmstate_openapi::{NodeNetworkConfigurationEnactment, NodeNetworkState, Resource};

    use super::*;

    #[test]
    fn a_state_is_about_20_kb_and_valid() {
        for node in [0, 1, 999, 4999] {
            let mut value = state_for_create(node);
            value["status"] = state_status(node);
            let size = serde_json::to_vec(&value).unwrap().len();
            assert!(
                (17_000..23_000).contains(&size),
                "node {node}: {size} bytes"
            );
            let state: NodeNetworkState = serde_json::from_value(value).unwrap();
            assert_eq!(state.validate(), vec![]);
            let current = state.status.unwrap().current_state.unwrap();
            assert_eq!(current.interface_count(), Some(INTERFACES));
            current.to_network_state().unwrap();
        }
    }

    #[test]
    fn states_differ_between_nodes() {
        assert_ne!(state_status(1), state_status(2));
        assert_ne!(state_status(1), state_status(257));
    }

    #[test]
    fn an_enactment_and_its_status_are_valid() {
        let mut value = enactment(7);
        assert_eq!(value["metadata"]["name"], "node-7.p");
        value["status"] = enactment_status(3);
        let enactment: NodeNetworkConfigurationEnactment = serde_json::from_value(value).unwrap();
        assert_eq!(enactment.validate(), vec![]);
    }
}
