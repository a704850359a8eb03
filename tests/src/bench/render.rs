//! `render`: how fast a policy is rendered for a node, in process with
//! [`nmstate_openapi::render::render`] (what the controller and the
//! `render`/`dry-run` subresources do once per policy generation and
//! node), against upstream's path measured in the same run: one
//! `nmstatectl policy POLICY_FILE -c CURRENT_STATE_FILE` process per node.
//!
//! The policy is upstream's bridge on the default-gateway interface
//! (nmpolicy's example): captures find the default route, its interface and
//! that interface's routes; the bridge takes the interface as its port and
//! its IPv4 addresses, and the routes move to the bridge. Each node has a
//! 50-interface state whose default route leaves through a different
//! interface, and every rendered state is checked to have picked the
//! node's own interface.
//!
//! Both paths run one render at a time, so renders per second of wall time
//! are renders per second per core.

use std::{
    path::{Path, PathBuf},
    time::Instant,
};

use anyhow::{Context, Result, bail, ensure};
use nmstate_openapi::{
    NodeNetworkConfigurationPolicySpec, State, Time,
    render::{RenderOptions, render},
};
use serde_json::{Value, json};

use super::{Report, progress, stats};

/// Interfaces of each node's state (the loopback included).
pub(super) const INTERFACES: usize = 50;
/// Distinct node states rendered against in turn.
const NODES: usize = 64;
/// Renders per core the project aims at.
const GOAL_RENDERS_PER_S: f64 = 10_000.0;
/// How many times faster than upstream's path the project aims to be.
const GOAL_RATIO: f64 = 50.0;

/// How much work the scenario does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct RenderCounts {
    /// In-process renders timed.
    pub(super) renders: usize,
    /// `nmstatectl policy` processes timed.
    pub(super) upstream_nodes: usize,
}

impl RenderCounts {
    /// The counts of a full run, or of a `--quick` one.
    pub(super) fn new(quick: bool) -> RenderCounts {
        if quick {
            RenderCounts {
                renders: 200,
                upstream_nodes: 3,
            }
        } else {
            RenderCounts {
                renders: 50_000,
                upstream_nodes: 100,
            }
        }
    }
}

/// The capture expressions and desired state of the benchmark's policy.
pub(super) fn policy_spec() -> Value {
    crate::policies::bridge_on_default_gateway()
}

/// The name of the interface node `node`'s default route leaves through.
fn gateway_interface(node: usize) -> String {
    format!("eth{}", node % (INTERFACES - 1))
}

/// Node `node`'s current state: a loopback and `INTERFACES - 1` ethernets
/// with an address each, a connected route per ethernet, and the default
/// route through [`gateway_interface`].
pub(super) fn node_state(node: usize) -> Value {
    let mut interfaces = vec![json!({
        "name": "lo", "type": "loopback", "state": "up", "mtu": 65536,
        "ipv4": {"enabled": true, "address": [{"ip": "127.0.0.1", "prefix-length": 8}]},
        "ipv6": {"enabled": true, "address": [{"ip": "::1", "prefix-length": 128}]},
    })];
    let mut routes = Vec::new();
    let octet = node % 250;
    for index in 0..INTERFACES - 1 {
        let name = format!("eth{index}");
        interfaces.push(json!({
            "name": name, "type": "ethernet", "state": "up", "mtu": 1500,
            "mac-address": format!("02:00:00:00:{:02X}:{:02X}", node % 256, index),
            "ipv4": {
                "enabled": true, "dhcp": false,
                "address": [{"ip": format!("10.{index}.{octet}.10"), "prefix-length": 24}],
            },
            "ipv6": {"enabled": false},
            "ethernet": {"auto-negotiation": true, "speed": 10000, "duplex": "full"},
        }));
        routes.push(json!({
            "destination": format!("10.{index}.{octet}.0/24"),
            "next-hop-interface": name, "metric": 100, "table-id": 254,
        }));
    }
    let gateway = gateway_interface(node);
    let index: usize = gateway
        .trim_start_matches("eth")
        .parse()
        .unwrap_or_default();
    routes.push(json!({
        "destination": "0.0.0.0/0", "next-hop-address": format!("10.{index}.{octet}.1"),
        "next-hop-interface": gateway, "metric": 100, "table-id": 254,
    }));
    json!({
        "dns-resolver": {"config": {}, "running": {"server": ["10.0.0.53"]}},
        "interfaces": interfaces,
        "routes": {"config": [], "running": routes},
    })
}

/// Runs the scenario, adding its lines and figures to `report`.
pub(super) fn run(quick: bool, report: &mut Report) -> Result<()> {
    let counts = RenderCounts::new(quick);
    let spec: NodeNetworkConfigurationPolicySpec =
        serde_json::from_value(policy_spec()).context("the benchmark policy")?;
    let states: Vec<State> = (0..NODES).map(|node| State(node_state(node))).collect();
    let options = RenderOptions::default();
    // A fixed time: the captured states' `metaInfo.time`.
    let now: Time = serde_json::from_value(json!("2024-05-01T10:00:00Z"))?;

    progress(format!(
        "rendering {} times in process ({INTERFACES}-interface states)",
        counts.renders
    ));
    // One untimed round checks every node's result (and warms up).
    for (node, state) in states.iter().enumerate() {
        let rendered = render(&spec, state, &options, &now)
            .with_context(|| format!("rendering for node {node}"))?;
        check_port(&rendered.desired_state.0, node)?;
    }
    let started = Instant::now();
    for index in 0..counts.renders {
        let rendered = render(&spec, &states[index % NODES], &options, &now);
        std::hint::black_box(&rendered);
        if let Err(error) = rendered {
            bail!("render {index} failed: {error}");
        }
    }
    let ours_seconds = started.elapsed().as_secs_f64();
    let ours_per_s = counts.renders as f64 / ours_seconds.max(f64::EPSILON);
    // For comparison: typing the node's JSON state with nmstate's model,
    // which nmstate's engine does before it runs any capture (the JSON
    // evaluator types only what the captures keep).
    let started = Instant::now();
    for index in 0..counts.renders {
        let typed = states[index % NODES].to_network_state();
        std::hint::black_box(&typed);
        typed.with_context(|| format!("typing state {index}"))?;
    }
    let typing_us = started.elapsed().as_secs_f64() * 1e6 / counts.renders as f64;

    let nmstatectl = nmstatectl()?;
    progress(format!(
        "running {} nmstatectl policy processes ({})",
        counts.upstream_nodes,
        nmstatectl.display()
    ));
    let dir = tempfile::tempdir()?;
    let policy_file = dir.path().join("policy.json");
    std::fs::write(&policy_file, policy_spec().to_string())?;
    let mut state_files = Vec::new();
    for node in 0..counts.upstream_nodes {
        let file = dir.path().join(format!("current-{node}.json"));
        std::fs::write(&file, node_state(node % NODES).to_string())?;
        state_files.push(file);
    }
    let mut per_node_ms = Vec::with_capacity(counts.upstream_nodes);
    let started = Instant::now();
    for (node, file) in state_files.iter().enumerate() {
        let one = Instant::now();
        let output = upstream_render(&nmstatectl, &policy_file, file)?;
        per_node_ms.push(one.elapsed().as_secs_f64() * 1000.0);
        check_upstream(&output, node)?;
    }
    let upstream_seconds = started.elapsed().as_secs_f64();
    let upstream_per_s = counts.upstream_nodes as f64 / upstream_seconds.max(f64::EPSILON);
    per_node_ms.sort_by(f64::total_cmp);
    let upstream_median_ms = per_node_ms[per_node_ms.len() / 2];

    let ratio = ours_per_s / upstream_per_s.max(f64::EPSILON);
    let goal_met = ours_per_s >= GOAL_RENDERS_PER_S && ratio >= GOAL_RATIO;
    report.line(format!(
        "render: upstream's default-gateway bridge policy (4 captures) against {INTERFACES}-interface node states, one render at a time"
    ));
    report.line(format!(
        "  in process (nmstate_openapi::render): {} renders in {:.3} s: {:.0} renders/s per core, {:.1} µs each",
        counts.renders,
        ours_seconds,
        ours_per_s,
        ours_seconds * 1e6 / counts.renders as f64
    ));
    report.line(format!(
        "    for comparison, typing the {INTERFACES}-interface current state with nmstate's model (where nmstate's engine starts): {typing_us:.1} µs"
    ));
    report.line(format!(
        "  upstream (one `nmstatectl policy` process per node): {} nodes in {:.3} s: {:.1} renders/s per core, median {:.2} ms per node",
        counts.upstream_nodes, upstream_seconds, upstream_per_s, upstream_median_ms
    ));
    report.line(format!(
        "  ratio: {ratio:.0}x upstream (goal >= {GOAL_RATIO:.0}x and >= {GOAL_RENDERS_PER_S:.0} renders/s per core: {})",
        if goal_met { "met" } else { "NOT met" }
    ));
    report.figure("interfaces", INTERFACES);
    report.figure("renders", counts.renders);
    report.figure("renders_per_s", stats::round(ours_per_s, 1));
    report.figure(
        "render_us",
        stats::round(ours_seconds * 1e6 / counts.renders as f64, 2),
    );
    report.figure("typing_us", stats::round(typing_us, 2));
    report.figure("upstream_nodes", counts.upstream_nodes);
    report.figure("upstream_renders_per_s", stats::round(upstream_per_s, 2));
    report.figure("upstream_median_ms", stats::round(upstream_median_ms, 3));
    report.figure("ratio", stats::round(ratio, 1));
    report.figure("goal_met", goal_met);
    Ok(())
}

/// Checks that the rendered bridge took node `node`'s own gateway
/// interface as its port.
fn check_port(desired: &Value, node: usize) -> Result<()> {
    let port = &desired["interfaces"][0]["bridge"]["port"][0]["name"];
    ensure!(
        *port == json!(gateway_interface(node)),
        "node {node}: the bridge port is {port}, not {}",
        gateway_interface(node)
    );
    Ok(())
}

/// Checks that `nmstatectl policy`'s output (YAML) names node `node`'s
/// gateway interface as the bridge port.
fn check_upstream(output: &str, node: usize) -> Result<()> {
    let gateway = gateway_interface(node % NODES);
    let port = format!("- name: {gateway}\n");
    ensure!(
        output.contains("name: br1") && output.contains(&port),
        "nmstatectl policy for node {node} did not bridge {gateway}:\n{output}"
    );
    Ok(())
}

/// One upstream render: `nmstatectl policy POLICY -c CURRENT`.
fn upstream_render(nmstatectl: &Path, policy: &Path, current: &Path) -> Result<String> {
    let output = std::process::Command::new(nmstatectl)
        .arg("policy")
        .arg(policy)
        .arg("-c")
        .arg(current)
        .output()
        .with_context(|| format!("running {}", nmstatectl.display()))?;
    if !output.status.success() {
        bail!(
            "nmstatectl policy failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// `nmstatectl` on the PATH or where `cargo install` puts it.
fn nmstatectl() -> Result<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join("nmstatectl"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")));
    on_path
        .into_iter()
        .chain(cargo_home.map(|home| home.join("bin/nmstatectl")))
        .find(|candidate| candidate.is_file())
        .context("nmstatectl is not installed; run hack/setup-deps.sh")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_states_have_fifty_interfaces_and_their_own_gateway() {
        let state = node_state(3);
        assert_eq!(state["interfaces"].as_array().map(Vec::len), Some(50));
        let routes = state["routes"]["running"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let default = routes
            .iter()
            .find(|route| route["destination"] == "0.0.0.0/0")
            .cloned()
            .unwrap_or_default();
        assert_eq!(default["next-hop-interface"], "eth3");
        assert_eq!(gateway_interface(49), "eth0");
    }
}
