//! Policies the tests and benches share.

use serde_json::{Value, json};

/// The spec of upstream's bridge on the default-gateway interface
/// (nmpolicy's example): captures find the default route, its interface
/// and that interface's routes; the bridge takes the interface as its port
/// and its IPv4 addresses, and the routes move to the bridge.
pub fn bridge_on_default_gateway() -> Value {
    json!({
        "capture": {
            "default-gw": "routes.running.destination==\"0.0.0.0/0\"",
            "base-iface": "interfaces.name==capture.default-gw.routes.running.0.next-hop-interface",
            "base-iface-routes": "routes.running.next-hop-interface==capture.base-iface.interfaces.0.name",
            "bridge-routes": "capture.base-iface-routes | routes.running.next-hop-interface:=\"br1\"",
        },
        "desiredState": {
            "interfaces": [{
                "name": "br1",
                "description": "Linux bridge with base interface as a port",
                "type": "linux-bridge",
                "state": "up",
                "ipv4": "{{ capture.base-iface.interfaces.0.ipv4 }}",
                "bridge": {
                    "options": {"stp": {"enabled": false}},
                    "port": [{"name": "{{ capture.base-iface.interfaces.0.name }}"}],
                },
            }],
            "routes": {"config": "{{ capture.bridge-routes.routes.running }}"},
        },
    })
}

/// A policy named `name` for one Linux bridge, labelled `team: net`: the
/// everyday object of the REST tests.
pub fn bridge_policy(name: &str) -> Value {
    json!({
        "apiVersion": "nmstate.io/v1",
        "kind": "NodeNetworkConfigurationPolicy",
        "metadata": {"name": name, "labels": {"team": "net"}},
        "spec": {
            "maxUnavailable": 3,
            "desiredState": {"interfaces": [{"name": "br1", "type": "linux-bridge", "state": "up"}]}
        }
    })
}
