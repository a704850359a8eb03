//! `nmstatectl show | nmpolicyctl gen policy.yaml | nmstatectl apply` as a
//! shell pipe, with upstream's own `nmstatectl` (installed by
//! hack/setup-deps.sh) in kernel-only mode inside a network namespace this
//! test creates and deletes: the policy captures the interface that carries
//! the default route and puts it into a new bridge with its address. The
//! result is checked with `ip -j`, independently of nmstate.

// Test helpers panic with what failed, which is what a failure should say.
#![allow(clippy::unwrap_used)]

use std::process::Command;

use serde_json::Value;

/// A network namespace with a veth pair `eth1`/`eth1-peer` (the peer stays
/// inside), `eth1` addressed and carrying the default route. Deleted on
/// drop, also when the test fails.
struct Namespace {
    name: String,
}

impl Namespace {
    fn new() -> Namespace {
        let name = format!("nmpolicyctl-pipe-{}", std::process::id());
        let namespace = Namespace { name };
        namespace.ip(&["netns", "add", &namespace.name]);
        for args in [
            "link add eth1 type veth peer name eth1-peer",
            "link set lo up",
            "link set eth1 up",
            "link set eth1-peer up",
            "address add 192.0.2.10/24 dev eth1",
            "route add default via 192.0.2.1 dev eth1",
        ] {
            let mut full = vec!["-n", &namespace.name];
            full.extend(args.split(' '));
            namespace.ip(&full);
        }
        namespace
    }

    fn ip(&self, args: &[&str]) -> String {
        let output = Command::new("ip").args(args).output().unwrap();
        assert!(
            output.status.success(),
            "ip {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    fn links(&self) -> Vec<Value> {
        serde_json::from_str(&self.ip(&["-n", &self.name, "-j", "-d", "address", "show"])).unwrap()
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .status();
    }
}

const POLICY: &str = r#"
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
      options:
        stp:
          enabled: false
      port:
      - name: "{{ capture.base-iface.interfaces.0.name }}"
        vlan: {}
"#;

#[test]
fn nmstatectl_show_gen_apply_pipe() {
    let namespace = Namespace::new();
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, POLICY).unwrap();
    let script = format!(
        "set -o pipefail; \
         ip netns exec {ns} nmstatectl show -q --kernel \
         | {gen} gen {policy} \
         | ip netns exec {ns} nmstatectl apply -q --kernel --memory-only",
        ns = namespace.name,
        gen = env!("CARGO_BIN_EXE_nmpolicyctl"),
        policy = policy.display(),
    );
    let output = Command::new("bash")
        .args(["-c", &script])
        .env("HOME", dir.path())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "the pipe failed ({}): {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );

    let links = namespace.links();
    let link = |name: &str| {
        links
            .iter()
            .find(|link| link["ifname"] == name)
            .unwrap_or_else(|| panic!("no {name} in {links:#?}"))
            .clone()
    };
    let bridge = link("br1");
    assert_eq!(bridge["linkinfo"]["info_kind"], "bridge");
    let addresses: Vec<&str> = bridge["addr_info"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["family"] == "inet")
        .map(|a| a["local"].as_str().unwrap())
        .collect();
    assert_eq!(addresses, ["192.0.2.10"], "the bridge took eth1's address");
    let eth1 = link("eth1");
    assert_eq!(eth1["master"], "br1", "eth1 is a port of br1");
    // The captured states landed in the default cache file.
    let cache = dir.path().join(".cache/nmpolicy/cache.yaml");
    let cached = std::fs::read_to_string(&cache).unwrap();
    assert!(
        cached.contains("default-gw") && cached.contains("base-iface"),
        "{cached}"
    );
}
