//! The JSON evaluator (`json.rs`) must render exactly what nmstate's
//! engine renders, whenever it answers: checked over the nmpolicy
//! conformance vectors and over a cross product of awkward current states
//! and capture expressions. The only difference allowed is the documented
//! one: a current state nmstate cannot type as a whole.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use serde_json::json;

use super::*;

fn meta_info() -> MetaInfo {
    MetaInfo {
        version: Some(CAPTURED_STATE_VERSION.to_owned()),
        time: Some(Time(
            k8s_openapi::jiff::Timestamp::from_second(1_700_000_000).unwrap(),
        )),
    }
}

/// Renders both ways and asserts they agree; whether the JSON evaluator
/// answered.
fn agree(spec: &NodeNetworkConfigurationPolicySpec, current: &Value, what: &str) -> bool {
    let current = State(current.clone());
    let options = RenderOptions::default();
    let Some(ours) = render_on_json(spec, &current, &options, &meta_info()) else {
        return false;
    };
    match render_with_engine(spec, &current, &BTreeMap::new(), &options, &meta_info()) {
        Err(RenderError::CurrentState(_)) => {}
        engine => assert_eq!(ours, engine, "{what}"),
    }
    true
}

fn read_yaml(path: &Path) -> Value {
    match std::fs::read_to_string(path) {
        Ok(text) if !text.trim().is_empty() => serde_yaml::from_str(&text).unwrap(),
        _ => json!({}),
    }
}

#[test]
fn agrees_with_nmstate_on_the_conformance_vectors() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/nmpolicy");
    let mut dirs: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.join("policy.yaml").exists())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 90, "{} vectors", dirs.len());
    let mut answered = Vec::new();
    for dir in &dirs {
        let spec: NodeNetworkConfigurationPolicySpec =
            serde_json::from_value(read_yaml(&dir.join("policy.yaml"))).unwrap();
        let current = read_yaml(&dir.join("current.yaml"));
        if agree(&spec, &current, &dir.display().to_string()) {
            answered.push(dir.file_name().unwrap().to_string_lossy().into_owned());
        }
    }
    // The forms policies use, from the examples of nmstate and nmpolicy:
    // the JSON evaluator must keep answering them.
    for vector in [
        "008-go-cli-linux-bridge-default-gw-no-cache",
        "016-go-res-eqfilter-default-gw",
        "037-rs-ex-bridge-on-default-gw-dhcp",
        "038-rs-ex-bridge-on-default-gw-no-dhcp",
        "034-rs-ex-all-ethernet-up",
        "039-rs-ex-bridge_ref_port_by_mac",
        "043-rs-ex-enable_lldp",
        "041-rs-ex-change-gateway-iface-to-mac-identifier",
    ] {
        assert!(
            answered.iter().any(|name| name == vector),
            "{vector} went to nmstate's engine; answered: {answered:?}"
        );
    }
}

/// Current states with what nmstate's model changes, drops or rejects.
fn states() -> Vec<(&'static str, Value)> {
    let ethernet = |name: &str, ip: &str| {
        json!({
            "name": name, "type": "ethernet", "state": "up", "mtu": 1500,
            "mac-address": "02:00:00:00:00:01",
            "ipv4": {"enabled": true, "dhcp": false, "address": [{"ip": ip, "prefix-length": 24}]},
        })
    };
    let route = |destination: &str, interface: &str, gateway: &str| {
        json!({
            "destination": destination, "next-hop-interface": interface,
            "next-hop-address": gateway, "metric": 100, "table-id": 254,
        })
    };
    let base = json!({
        "interfaces": [ethernet("eth1", "10.0.1.2"), ethernet("eth0", "10.0.0.2")],
        "routes": {"running": [
            route("0.0.0.0/0", "eth1", "10.0.1.1"),
            route("10.0.1.0/24", "eth1", ""),
            route("10.0.0.0/24", "eth0", ""),
        ], "config": [route("0.0.0.0/0", "eth1", "10.0.1.1")]},
    });
    let with = |change: &dyn Fn(&mut Value)| {
        let mut state = base.clone();
        change(&mut state);
        state
    };
    vec![
        ("plain", base.clone()),
        (
            "duplicate interface name",
            with(&|state| {
                let mut twin = ethernet("eth1", "10.9.9.9");
                twin["mtu"] = json!(9000);
                state["interfaces"].as_array_mut().unwrap().push(twin);
            }),
        ),
        (
            "OVS bridge and interface of one name",
            with(&|state| {
                let interfaces = state["interfaces"].as_array_mut().unwrap();
                interfaces.push(json!({"name": "br0", "type": "ovs-bridge", "state": "up",
                    "bridge": {"port": [{"name": "br0"}, {"name": "eth0"}]}}));
                interfaces.push(json!({"name": "br0", "type": "ovs-interface", "state": "up"}));
            }),
        ),
        (
            "numeric interface name",
            with(&|state| state["interfaces"][0]["name"] = json!(1)),
        ),
        (
            "interface without name or type",
            with(&|state| {
                state["interfaces"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"state": "up"}));
                state["interfaces"][0]
                    .as_object_mut()
                    .unwrap()
                    .remove("type");
            }),
        ),
        (
            "route fields null and numeric",
            with(&|state| {
                state["routes"]["running"][1]["destination"] = Value::Null;
                state["routes"]["running"][2]["next-hop-interface"] = json!(7);
            }),
        ),
        (
            "route with a field nmstate does not know",
            with(&|state| state["routes"]["running"][2]["x-future"] = json!(true)),
        ),
        (
            "values nmstate rewrites",
            with(&|state| {
                state["interfaces"][0]["mtu"] = json!("1500");
                state["interfaces"][0]["mac-address"] = json!("02:00:00:00:00:0a");
                state["interfaces"][1]["ipv6"] = json!({"enabled": true,
                    "address": [{"ip": "2001:DB8:0:0::1", "prefix-length": 64}]});
                state["routes"]["running"][0]["metric"] = json!("100");
                state["routes"]["running"][2]["destination"] = json!("2001:DB8::0/64");
            }),
        ),
        (
            "interface types nmstate maps, knows not, or spells otherwise",
            with(&|state| {
                let interfaces = state["interfaces"].as_array_mut().unwrap();
                interfaces.push(json!({"name": "veth0", "type": "veth", "state": "up",
                    "veth": {"peer": "veth1"}}));
                interfaces.push(json!({"name": "x0", "type": "future-kind", "state": "up"}));
                interfaces.push(json!({"name": "x1", "type": "Ethernet", "state": "up"}));
                interfaces.push(json!({"name": "x2", "type": "unknown", "state": "up"}));
            }),
        ),
        (
            "sections missing or of the wrong kind",
            json!({"interfaces": {"eth0": {}}, "routes": {"running": "none"}}),
        ),
        ("empty", json!({})),
    ]
}

/// Capture sets: forms the JSON evaluator takes and forms it leaves to
/// nmstate, matching and not.
fn capture_sets() -> Vec<Value> {
    vec![
        json!({"gw": "routes.running.destination==\"0.0.0.0/0\""}),
        json!({"gw": "routes.config.destination==\"0.0.0.0/0\""}),
        json!({"gw": "routes.running.destination==\"192.0.2.0/24\""}),
        json!({"gw": "routes.running.next-hop-address==null"}),
        json!({"gw": "routes.running.next-hop-address==\"\""}),
        json!({"gw": "routes.running.metric==100"}),
        json!({"gw": "routes.running.destination == \"2001:DB8::0/64\""}),
        json!({"eth": "interfaces.name==\"eth1\""}),
        json!({"eth": "interfaces.name==eth0"}),
        json!({"eth": "interfaces.name==\"br0\""}),
        json!({"eth": "interfaces.name==\"1\""}),
        json!({"eth": "interfaces.mtu==1500"}),
        json!({"eth": "interfaces.mac-address==\"02:00:00:00:00:01\""}),
        json!({"eth": "interfaces.mac-address==\"02:00:00:00:00:0A\""}),
        json!({"eth": "interfaces.type==\"ethernet\""}),
        json!({"eth": "interfaces.type==\"veth\""}),
        json!({"eth": "interfaces.type==\"future-kind\""}),
        json!({"eth": "interfaces.type==\"Ethernet\""}),
        json!({"eth": "interfaces.type==\"unknown\""}),
        json!({
            "ethernets": "interfaces.type==\"ethernet\"",
            "ethernets-lldp": "capture.ethernets-up | interfaces.lldp.enabled:=true",
            "ethernets-up": "capture.ethernets | interfaces.state==\"up\"",
        }),
        json!({"eth": "interfaces.description==\"\""}),
        json!({"eth": "interfaces.ipv6.address.ip==\"2001:db8::1\""}),
        json!({
            "gw": "routes.running.destination==\"0.0.0.0/0\"",
            "eth": "interfaces.name==capture.gw.routes.running.0.next-hop-interface",
            "eth-routes": "routes.running.next-hop-interface==capture.eth.interfaces.0.name",
            "moved": "capture.eth-routes | routes.running.next-hop-interface:=\"br1\"",
            "static": "capture.eth | interfaces.ipv4.dhcp:=\"false\"",
            "cleared": "capture.eth | interfaces.mac-address:=null",
            "only-ipv4": "capture.eth | interfaces.ipv4",
            "by-mtu": "capture.eth | interfaces.mtu==1500",
            "by-ip": "capture.eth | interfaces.ipv4.address.ip==\"10.0.1.2\"",
            "by-mac": "capture.eth | interfaces.mac-address==\"02:00:00:00:00:01\"",
            "keyed": "capture.eth.interfaces.state==\"up\"",
            "keyed-routes": "capture.eth-routes.routes.running.destination==\"10.0.1.0/24\"",
        }),
        json!({
            "gw": "routes.running.destination==\"0.0.0.0/0\"",
            "eth": "interfaces.name==capture.gw.routes.running.3.next-hop-interface",
        }),
        json!({
            "eth": "interfaces.name==\"eth0\"",
            "two": "capture.eth | interfaces.name==capture.eth.interfaces.0.name",
        }),
        json!({"a": "capture.b | routes.running", "b": "capture.a | routes.running"}),
        json!({"a": "capture.missing | routes.running"}),
        json!({"a": "routes.running"}),
        json!({"a": "routes.running.destination!=\"0.0.0.0/0\""}),
        json!({"rule": "route-rules.config.priority==100"}),
    ]
}

/// Desired states whose templates refer to the captures of a set.
fn desired_states(captures: &Map<String, Value>) -> Vec<Value> {
    let mut states =
        vec![json!({"interfaces": [{"name": "br1", "type": "linux-bridge", "state": "up"}]})];
    for name in captures.keys() {
        states.push(json!({
            "interfaces": [{
                "name": "br1", "type": "linux-bridge", "state": "up",
                "description": format!("from {{{{ capture.{name}.interfaces.0.name }}}}"),
                "bridge": {"port": [{"name": format!("{{{{ capture.{name}.interfaces.0.name }}}}")}]},
            }],
            "routes": {"config": format!("{{{{ capture.{name}.routes.running }}}}")},
        }));
        states.push(json!({
            "interfaces": [{
                "name": format!("{{{{capture.{name}.interfaces.0.name}}}}"),
                "type": "ethernet",
                "ipv4": format!("  {{{{ capture.{name}.interfaces.0.ipv4 }}}}  "),
                "mtu": format!("{{{{ capture.{name}.interfaces.0.mtu }}}}"),
            }],
        }));
        states.push(json!({"routes": {"config": format!("{{{{ capture.{name} }}}}")}}));
    }
    states
}

#[test]
fn agrees_with_nmstate_on_awkward_states_and_expressions() {
    let mut answered = 0;
    let mut renders = 0;
    for captures in capture_sets() {
        let captures = captures.as_object().unwrap();
        for desired in desired_states(captures) {
            let spec: NodeNetworkConfigurationPolicySpec = serde_json::from_value(json!({
                "capture": captures,
                "desiredState": desired,
            }))
            .unwrap();
            for (state_name, current) in states() {
                renders += 1;
                let what = format!("{captures:?} / {desired} / {state_name}");
                if agree(&spec, &current, &what) {
                    answered += 1;
                }
            }
        }
    }
    // Both paths must have been exercised for the comparison to mean
    // anything (182 of 1 160 when written).
    assert!(
        answered >= 150 && answered * 2 < renders,
        "{answered} of {renders} answered by the JSON evaluator"
    );
}
