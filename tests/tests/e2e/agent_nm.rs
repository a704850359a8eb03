//! The agent's `nm` and `kernel` backends against real NetworkManager and
//! the real kernel, inside network-namespace nodes (`nmstate_e2e::netns`).
//! What the backend did is checked independently of our code: with
//! `ip -j link` and with upstream's own `nmstatectl show` run in the node.
//!
//! The kernel of the machines this runs on lacks bonding and 802.1Q (VLAN);
//! the bond and VLAN tests find that out at run time and print it plainly.
//!
//! The `cluster_*` tests run the whole system: `hack/local-up.sh` (the
//! apiserver in a hub namespace, the real agent in each namespace node),
//! policies through real kubectl. They need the binaries built:
//! `cargo build -p nmstate-apiserver -p nmstate-agent`.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use nmstate_e2e::{
    cluster::{
        EVENTUALLY, enactment_condition, eventually, interface, ipv4_addresses, kernel_bridge,
        node_reported, node_state, policy_yaml, wait_for_condition,
    },
    kubectl::Kubectl,
    netns::{BackendDriver, LocalUp, NetnsLab, NetnsNode},
};
use nmstate_openapi::State;
use serde_json::{Value, json};

/// The driver binary of this package, built by cargo for these tests.
const DRIVER: &str = env!("CARGO_BIN_EXE_nmstate-backend-driver");

/// A checkpoint timeout long enough never to expire during a test step.
const LONG_TIMEOUT_MS: u64 = 120_000;

fn driver(node: &NetnsNode, backend: &str) -> Result<BackendDriver> {
    BackendDriver::start(node, Path::new(DRIVER), &["--backend", backend])
}

/// upstream's linux-bridge example, on eth1, with `vlan: {}` on the port
/// (this kernel has no bridge VLAN filtering) and a static address.
/// Applies bridge br1 over eth1 (192.0.2.1/24) through `backend`, with a
/// checkpoint of `timeout_ms`; the checkpoint's id.
async fn apply_br1(backend: &mut BackendDriver, timeout_ms: u64) -> Result<Value> {
    let state = bridge_state("br1", "eth1", "192.0.2.1");
    backend
        .call_ok(json!({"op": "apply", "state": state, "timeout_ms": timeout_ms}))
        .await
}

fn bridge_state(name: &str, port: &str, address: &str) -> Value {
    json!({
        "interfaces": [{
            "name": name,
            "type": "linux-bridge",
            "state": "up",
            "ipv4": {
                "enabled": true,
                "dhcp": false,
                "address": [{"ip": address, "prefix-length": 24}],
            },
            "bridge": {
                "options": {"stp": {"enabled": false}},
                "port": [{"name": port, "vlan": {}}],
            },
        }]
    })
}

/// (name, type, state) of every interface, sorted: what must agree between
/// our retrieve and `nmstatectl show`.
fn interface_summary(state: &Value) -> Vec<(String, String, String)> {
    let mut summary: Vec<_> = state["interfaces"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|iface| {
            let field = |key: &str| iface[key].as_str().unwrap_or_default().to_owned();
            (field("name"), field("type"), field("state"))
        })
        .collect();
    summary.sort();
    summary
}

#[tokio::test]
async fn nm_backend_retrieves_what_nmstatectl_shows() -> Result<()> {
    let _turn = nmstate_e2e::suite::turn(module_path!());
    let lab = NetnsLab::start(1, true).await?;
    let node = lab.node(1);
    let mut backend = driver(node, "nm")?;

    let ours = backend.call_ok(json!({"op": "retrieve"})).await?;
    let theirs = node.nmstatectl_show().await?;

    let eth1 = interface(&ours, "eth1").context("eth1 in the retrieved state")?;
    assert_eq!(eth1["type"], "veth", "{eth1}");
    assert_eq!(eth1["veth"]["peer"], "eth1-peer", "{eth1}");
    assert_eq!(interface_summary(&ours), interface_summary(&theirs));
    assert_eq!(
        ipv4_addresses(&ours, "eth0"),
        vec![format!("{}/24", node.address)]
    );
    assert_eq!(
        ipv4_addresses(&ours, "eth0"),
        ipv4_addresses(&theirs, "eth0")
    );
    assert_eq!(ours["routes"]["running"], theirs["routes"]["running"]);

    let versions = backend.call_ok(json!({"op": "versions"})).await?;
    let network_manager =
        String::from_utf8(node.run("NetworkManager", &["--version"]).await?.stdout)?;
    let nmstatectl = String::from_utf8(node.run("nmstatectl", &["--version"]).await?.stdout)?;
    assert_eq!(
        versions["handlerNetworkManagerVersion"],
        network_manager.trim()
    );
    assert_eq!(
        versions["hostNetworkManagerVersion"],
        network_manager.trim()
    );
    assert_eq!(
        Some(nmstatectl.trim()),
        versions["handlerNmstateVersion"]
            .as_str()
            .map(|version| format!("nmstatectl {version}"))
            .as_deref()
    );
    Ok(())
}

#[tokio::test]
async fn nm_backend_applies_a_bridge_and_commits_it() -> Result<()> {
    let _turn = nmstate_e2e::suite::turn(module_path!());
    let lab = NetnsLab::start(1, true).await?;
    let node = lab.node(1);
    let mut backend = driver(node, "nm")?;

    let checkpoint = apply_br1(&mut backend, LONG_TIMEOUT_MS).await?;
    let checkpoint = checkpoint.as_str().context("checkpoint id")?.to_owned();
    assert!(
        checkpoint.starts_with("/org/freedesktop/NetworkManager/Checkpoint/"),
        "{checkpoint}"
    );
    assert_eq!(
        kernel_bridge(node, "br1").await?,
        Some(vec!["eth1".to_owned()])
    );
    backend
        .call_ok(json!({"op": "commit", "checkpoint": checkpoint}))
        .await?;

    // Committed: nothing is left to roll back, and the bridge stays.
    backend.call_ok(json!({"op": "rollback-stale"})).await?;
    assert_eq!(
        kernel_bridge(node, "br1").await?,
        Some(vec!["eth1".to_owned()])
    );
    assert_eq!(
        node.ipv4_addresses("br1")
            .await?
            .first()
            .map(String::as_str),
        Some("192.0.2.1/24")
    );
    let theirs = node.nmstatectl_show().await?;
    let bridge = interface(&theirs, "br1").context("br1 in nmstatectl show")?;
    assert_eq!(bridge["type"], "linux-bridge");
    assert_eq!(bridge["state"], "up");
    assert_eq!(
        ipv4_addresses(&theirs, "br1"),
        vec!["192.0.2.1/24".to_owned()]
    );
    let ours = backend.call_ok(json!({"op": "retrieve"})).await?;
    assert_eq!(
        ipv4_addresses(&ours, "br1"),
        vec!["192.0.2.1/24".to_owned()]
    );
    // A second commit of the same checkpoint is refused by NetworkManager.
    let again = backend
        .call(json!({"op": "commit", "checkpoint": checkpoint}))
        .await?;
    assert!(again.is_err(), "{again:?}");
    Ok(())
}

#[tokio::test]
async fn nm_backend_rolls_back_an_apply() -> Result<()> {
    let _turn = nmstate_e2e::suite::turn(module_path!());
    let lab = NetnsLab::start(1, true).await?;
    let node = lab.node(1);
    let mut backend = driver(node, "nm")?;

    let checkpoint = apply_br1(&mut backend, LONG_TIMEOUT_MS).await?;
    assert!(kernel_bridge(node, "br1").await?.is_some());
    backend
        .call_ok(json!({"op": "rollback", "checkpoint": checkpoint}))
        .await?;

    assert_eq!(kernel_bridge(node, "br1").await?, None);
    let eth1 = node.ip_link("eth1").await?.context("eth1 is still there")?;
    assert_eq!(eth1.get("master"), None, "{eth1}");
    let theirs = node.nmstatectl_show().await?;
    assert!(interface(&theirs, "br1").is_none());
    Ok(())
}

#[tokio::test]
async fn network_manager_rolls_back_by_itself_when_the_checkpoint_times_out() -> Result<()> {
    let _turn = nmstate_e2e::suite::turn(module_path!());
    let lab = NetnsLab::start(1, true).await?;
    let node = lab.node(1);
    let mut backend = driver(node, "nm")?;

    let checkpoint = apply_br1(&mut backend, 3_000).await?;
    assert!(kernel_bridge(node, "br1").await?.is_some());
    // No commit, no rollback: NetworkManager's own timer undoes the change.
    eventually("br1 removed by NetworkManager", || async {
        Ok(kernel_bridge(node, "br1").await?.is_none())
    })
    .await?;
    let late = backend
        .call(json!({"op": "commit", "checkpoint": checkpoint}))
        .await?;
    assert!(
        late.is_err(),
        "a timed-out checkpoint cannot be committed: {late:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_checkpoint_left_by_a_killed_agent_is_rolled_back_on_start() -> Result<()> {
    let _turn = nmstate_e2e::suite::turn(module_path!());
    let lab = NetnsLab::start(1, true).await?;
    let node = lab.node(1);
    let mut first = driver(node, "nm")?;
    apply_br1(&mut first, LONG_TIMEOUT_MS).await?;
    first.kill().await?;
    assert!(
        kernel_bridge(node, "br1").await?.is_some(),
        "the killed apply stays until rolled back"
    );

    let mut second = driver(node, "nm")?;
    second.call_ok(json!({"op": "rollback-stale"})).await?;
    assert_eq!(kernel_bridge(node, "br1").await?, None);
    Ok(())
}

#[tokio::test]
async fn nm_backend_reports_network_manager_changes() -> Result<()> {
    let _turn = nmstate_e2e::suite::turn(module_path!());
    let lab = NetnsLab::start(1, true).await?;
    let node = lab.node(1);
    let mut backend = driver(node, "nm")?;
    let before = backend.call_ok(json!({"op": "changes"})).await?;
    // A change NetworkManager sees but our code did not make.
    node.run("ip", &["addr", "add", "198.51.100.7/24", "dev", "eth2"])
        .await?;
    let before = before.as_u64().context("a counter")?;
    let deadline = Instant::now() + EVENTUALLY;
    loop {
        let now = backend.call_ok(json!({"op": "changes"})).await?;
        if now.as_u64().context("a counter")? > before {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("no change signal from NetworkManager within {EVENTUALLY:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn nm_backend_reports_a_refused_state_with_nmstate_s_message() -> Result<()> {
    let _turn = nmstate_e2e::suite::turn(module_path!());
    let lab = NetnsLab::start(1, true).await?;
    let node = lab.node(1);
    let mut backend = driver(node, "nm")?;
    let state = json!({"interfaces": [{
        "name": "br1", "type": "linux-bridge", "state": "up",
        "bridge": {"port": [{"name": "no-such-nic", "vlan": {}}]},
    }]});
    let error = backend
        .call(json!({"op": "apply", "state": state, "timeout_ms": LONG_TIMEOUT_MS}))
        .await?
        .expect_err("a port that does not exist");
    assert!(error.contains("no-such-nic"), "{error}");
    assert_eq!(kernel_bridge(node, "br1").await?, None);
    Ok(())
}

/// Prints `message` on the test's real stderr, past libtest's output
/// capture, so that a test the kernel cannot run is visible in every run.
fn say(message: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{message}");
}

/// Whether the node's kernel can create links of `kind` (`bond`, `vlan`).
async fn kernel_supports(
    node: &NetnsNode,
    kind: &str,
    link: &[&str],
    options: &[&str],
) -> Result<bool> {
    let probe = format!("probe-{kind}");
    let mut args = vec!["link", "add"];
    args.extend_from_slice(link);
    args.extend(["name", probe.as_str(), "type", kind]);
    args.extend_from_slice(options);
    match node.run("ip", &args).await {
        Ok(_) => {
            node.run("ip", &["link", "del", &probe]).await?;
            Ok(true)
        }
        Err(e) if e.to_string().contains("Unknown device type") => Ok(false),
        Err(e) => Err(e),
    }
}

#[tokio::test]
async fn nm_backend_applies_an_active_backup_bond_where_the_kernel_has_bonding() -> Result<()> {
    let _turn = nmstate_e2e::suite::turn(module_path!());
    let lab = NetnsLab::start(1, true).await?;
    let node = lab.node(1);
    if !kernel_supports(node, "bond", &[], &[]).await? {
        say(
            "NOT RUN: this kernel has no bonding driver (`ip link add ... type bond`: \
             Unknown device type); the active-backup bond test cannot run on this machine",
        );
        return Ok(());
    }
    let mut backend = driver(node, "nm")?;
    let state = json!({"interfaces": [{
        "name": "bond99", "type": "bond", "state": "up",
        "link-aggregation": {"mode": "active-backup", "port": ["eth1", "eth2"]},
    }]});
    let checkpoint = backend
        .call_ok(json!({"op": "apply", "state": state, "timeout_ms": LONG_TIMEOUT_MS}))
        .await?;
    backend
        .call_ok(json!({"op": "commit", "checkpoint": checkpoint}))
        .await?;
    let bond = node.ip_link("bond99").await?.context("bond99 exists")?;
    assert_eq!(bond["linkinfo"]["info_kind"], "bond");
    assert_eq!(bond["linkinfo"]["info_data"]["mode"], "active-backup");
    Ok(())
}

#[tokio::test]
async fn nm_backend_applies_a_vlan_where_the_kernel_has_8021q() -> Result<()> {
    let _turn = nmstate_e2e::suite::turn(module_path!());
    let lab = NetnsLab::start(1, true).await?;
    let node = lab.node(1);
    if !kernel_supports(node, "vlan", &["link", "eth1"], &["id", "4000"]).await? {
        say(
            "NOT RUN: this kernel has no 802.1Q (VLAN) support (`ip link add ... type vlan`: \
             Unknown device type); the VLAN test cannot run on this machine",
        );
        return Ok(());
    }
    let mut backend = driver(node, "nm")?;
    let state = json!({"interfaces": [{
        "name": "eth1.102", "type": "vlan", "state": "up",
        "vlan": {"base-iface": "eth1", "id": 102},
    }]});
    let checkpoint = backend
        .call_ok(json!({"op": "apply", "state": state, "timeout_ms": LONG_TIMEOUT_MS}))
        .await?;
    backend
        .call_ok(json!({"op": "commit", "checkpoint": checkpoint}))
        .await?;
    let vlan = node.ip_link("eth1.102").await?.context("eth1.102 exists")?;
    assert_eq!(vlan["linkinfo"]["info_kind"], "vlan");
    assert_eq!(vlan["linkinfo"]["info_data"]["id"], 102);
    Ok(())
}

#[tokio::test]
async fn kernel_backend_applies_rolls_back_and_times_out_without_network_manager() -> Result<()> {
    let _turn = nmstate_e2e::suite::turn(module_path!());
    let lab = NetnsLab::start(1, false).await?;
    let node = lab.node(1);
    let snapshot = tempfile::tempdir()?;
    let snapshot_file = snapshot.path().join("snapshot.json");
    let mut backend = BackendDriver::start(
        node,
        Path::new(DRIVER),
        &[
            "--backend",
            "kernel",
            "--kernel-snapshot-file",
            snapshot_file.to_str().context("UTF-8")?,
        ],
    )?;

    let versions = backend.call_ok(json!({"op": "versions"})).await?;
    assert_eq!(versions["handlerNetworkManagerVersion"], Value::Null);
    let ours = backend.call_ok(json!({"op": "retrieve"})).await?;
    assert!(interface(&ours, "eth1").is_some(), "{ours}");

    // Apply, then roll back.
    let checkpoint = apply_br1(&mut backend, LONG_TIMEOUT_MS).await?;
    assert_eq!(
        kernel_bridge(node, "br1").await?,
        Some(vec!["eth1".to_owned()])
    );
    assert!(snapshot_file.exists(), "the open snapshot is kept on disk");
    backend
        .call_ok(json!({"op": "rollback", "checkpoint": checkpoint}))
        .await?;
    assert_eq!(kernel_bridge(node, "br1").await?, None);
    assert!(!snapshot_file.exists());

    // Apply and commit.
    let checkpoint = backend
        .call_ok(json!({"op": "apply", "state": bridge_state("br2", "eth2", "192.0.2.2"), "timeout_ms": LONG_TIMEOUT_MS}))
        .await?;
    backend
        .call_ok(json!({"op": "commit", "checkpoint": checkpoint}))
        .await?;
    assert_eq!(
        kernel_bridge(node, "br2").await?,
        Some(vec!["eth2".to_owned()])
    );
    assert_eq!(
        node.ipv4_addresses("br2").await?,
        vec!["192.0.2.2/24".to_owned()]
    );

    // Apply without commit: the backend's timer rolls back.
    apply_br1(&mut backend, 2_000).await?;
    assert!(kernel_bridge(node, "br1").await?.is_some());
    eventually("br1 removed at the checkpoint timeout", || async {
        Ok(kernel_bridge(node, "br1").await?.is_none())
    })
    .await?;
    assert!(
        kernel_bridge(node, "br2").await?.is_some(),
        "the committed bridge stays"
    );

    // An agent killed with a checkpoint open: the next one restores the snapshot.
    apply_br1(&mut backend, LONG_TIMEOUT_MS).await?;
    backend.kill().await?;
    assert!(kernel_bridge(node, "br1").await?.is_some());
    let mut restarted = BackendDriver::start(
        node,
        Path::new(DRIVER),
        &[
            "--backend",
            "kernel",
            "--kernel-snapshot-file",
            snapshot_file.to_str().context("UTF-8")?,
        ],
    )?;
    restarted.call_ok(json!({"op": "rollback-stale"})).await?;
    assert_eq!(kernel_bridge(node, "br1").await?, None);
    assert!(kernel_bridge(node, "br2").await?.is_some());
    Ok(())
}

/// Waits until node-1's NodeNetworkState gives `interface` exactly the
/// IPv4 `addresses`.
async fn reported_addresses(kubectl: &Kubectl, interface: &str, addresses: &[&str]) -> Result<()> {
    eventually(
        &format!("{interface} with {addresses:?} in NodeNetworkState node-1"),
        || async {
            Ok(ipv4_addresses(&node_state(kubectl, "node-1").await?, interface) == addresses)
        },
    )
    .await
}

/// Applies policy `cut-off`: node-1's eth0 loses the address its agent
/// reaches the API server with, so the API-server probe cannot pass.
async fn apply_cut_off(kubectl: &Kubectl) {
    let cut_off = json!({"interfaces": [{
        "name": "eth0", "type": "veth", "state": "up",
        "ipv4": {"enabled": false},
    }]});
    kubectl
        .run_stdin(&["apply", "-f", "-"], &policy_yaml("cut-off", &cut_off))
        .await
        .ok();
}

#[tokio::test]
async fn cluster_a_bridge_policy_is_available_and_the_node_state_agrees_with_nmstatectl()
-> Result<()> {
    let _turn = nmstate_e2e::suite::turn(module_path!());
    let cluster = LocalUp::start(1, &[]).await?;
    let kubectl = Kubectl::new(&cluster.admin_kubeconfig())?;
    let node = cluster.node(1)?;
    node_reported(&kubectl, "node-1").await?;

    kubectl
        .run_stdin(
            &["apply", "-f", "-"],
            &policy_yaml("br1-eth1", &bridge_state("br1", "eth1", "192.0.2.1")),
        )
        .await
        .ok();
    let wait = kubectl
        .run(&[
            "wait",
            "--for=condition=Available",
            "nncp/br1-eth1",
            "--timeout=120s",
        ])
        .await;
    assert!(
        wait.success(),
        "{wait}\n--- agent log\n{}",
        cluster.process_log("node-1")
    );
    let (enactment, available) =
        enactment_condition(&kubectl, "node-1.br1-eth1", "Available").await;
    assert_eq!(available["status"], "True", "{enactment}");
    assert_eq!(available["reason"], "SuccessfullyConfigured", "{enactment}");

    // Independently of our code: the kernel and upstream's nmstatectl.
    assert_eq!(
        kernel_bridge(&node, "br1").await?,
        Some(vec!["eth1".to_owned()])
    );
    assert_eq!(
        node.ipv4_addresses("br1").await?,
        vec!["192.0.2.1/24".to_owned()]
    );
    let theirs = node.nmstatectl_show().await?;
    assert_eq!(
        ipv4_addresses(&theirs, "br1"),
        vec!["192.0.2.1/24".to_owned()]
    );

    // The node state shows it, and agrees with nmstatectl after the
    // agent's own filtering.
    reported_addresses(&kubectl, "br1", &["192.0.2.1/24"]).await?;
    let reported = node_state(&kubectl, "node-1").await?;
    let filtered = nmstate_agent::filter::filter_state(&State(theirs)).0;
    assert_eq!(interface_summary(&reported), interface_summary(&filtered));
    assert!(
        interface(&reported, "eth1-peer").is_none(),
        "unmanaged veth peers are filtered out: {reported}"
    );
    for name in ["eth0", "eth1", "br1"] {
        assert_eq!(
            ipv4_addresses(&reported, name),
            ipv4_addresses(&filtered, name),
            "{name}"
        );
    }

    // The agent's log file, after reads and an apply: plain text (no
    // colour codes in a file), without the libraries' repeated warnings;
    // the NetworkManager version is logged once, at start.
    let log = cluster.process_log("node-1");
    for noise in [
        "\u{1b}[",
        "Failed to query WIFI information",
        "Unsupported NetworkManager version",
    ] {
        assert!(!log.contains(noise), "{noise:?} in the agent's log:\n{log}");
    }
    assert_eq!(
        log.matches("backend versions").count(),
        1,
        "the versions once:\n{log}"
    );
    Ok(())
}

#[tokio::test]
async fn cluster_a_policy_that_cuts_the_node_off_is_rolled_back_and_the_policy_degraded()
-> Result<()> {
    let _turn = nmstate_e2e::suite::turn(module_path!());
    // Short probe timeout: the API-server probe cannot succeed.
    let cluster = LocalUp::start(1, &["--probe-timeout=5s"]).await?;
    let kubectl = Kubectl::new(&cluster.admin_kubeconfig())?;
    let node = cluster.node(1)?;
    node_reported(&kubectl, "node-1").await?;
    let address = format!("{}/24", node.address);
    assert_eq!(node.ipv4_addresses("eth0").await?, vec![address.clone()]);

    apply_cut_off(&kubectl).await;
    let limit = Duration::from_secs(180);
    let degraded = wait_for_condition(&kubectl, "nncp/cut-off", "Degraded", limit).await;
    assert!(
        degraded.is_ok(),
        "{degraded:?}\n--- agent log\n{}",
        cluster.process_log("node-1")
    );

    let (enactment, failing) = enactment_condition(&kubectl, "node-1.cut-off", "Failing").await;
    assert_eq!(failing["status"], "True", "{enactment}");
    assert_eq!(failing["reason"], "FailedToConfigure", "{enactment}");
    // The probe's own message (the gateway's route went with the address,
    // so that probe fails first), and the rule: a probe failure is not
    // retried (one try, not five cut-offs).
    let message = failing["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("rolling back desired state configuration: probe default-gateway failed: ")
            && message.ends_with("(a probe failure is not retried: change the policy, or delete this enactment, to try again)"),
        "{enactment}"
    );
    assert_eq!(
        enactment["status"]["retryCount"],
        json!({"1": 1}),
        "{enactment}"
    );
    // Rolled back: the address is there again, and the node reports it
    // (its state report may follow the enactment's by a moment).
    assert_eq!(node.ipv4_addresses("eth0").await?, vec![address.clone()]);
    reported_addresses(&kubectl, "eth0", &[&address]).await?;
    Ok(())
}

#[tokio::test]
async fn cluster_an_agent_killed_before_commit_is_undone_by_network_manager() -> Result<()> {
    let _turn = nmstate_e2e::suite::turn(module_path!());
    // The checkpoint expires long before the probe gives up: NetworkManager
    // rolls back on its own while the agent is gone.
    let cluster = LocalUp::start(1, &["--checkpoint-timeout=8s", "--probe-timeout=120s"]).await?;
    let kubectl = Kubectl::new(&cluster.admin_kubeconfig())?;
    let node = cluster.node(1)?;
    node_reported(&kubectl, "node-1").await?;
    let address = format!("{}/24", node.address);

    apply_cut_off(&kubectl).await;
    // Applied, not committed: the agent is waiting for its probe.
    eventually("eth0 without its address", || async {
        Ok(node.ipv4_addresses("eth0").await?.is_empty())
    })
    .await?;
    let agent = nix::unistd::Pid::from_raw(cluster.agent_pid(1)?);
    nix::sys::signal::kill(agent, nix::sys::signal::Signal::SIGKILL)?;

    eventually("eth0's address restored by NetworkManager", || async {
        Ok(node.ipv4_addresses("eth0").await? == vec![address.clone()])
    })
    .await?;

    // The restarted agent reports the node as it is, and tries again (the
    // enactment was still in flight; a restart re-applies it), fails on
    // the probe, and does not retry: the policy ends Degraded.
    cluster.restart_agent(1, &["--probe-timeout=5s"])?;
    reported_addresses(&kubectl, "eth0", &[&address]).await?;
    let degraded = wait_for_condition(
        &kubectl,
        "nncp/cut-off",
        "Degraded",
        Duration::from_secs(180),
    )
    .await;
    assert!(
        degraded.is_ok(),
        "{degraded:?}\n--- agent log\n{}",
        cluster.process_log("node-1")
    );
    assert_eq!(node.ipv4_addresses("eth0").await?, vec![address]);
    Ok(())
}

/// The apiserver's count of NodeNetworkState writes, from its `/metrics`.
async fn state_writes(kubectl: &Kubectl) -> Result<u64> {
    let output = kubectl.run(&["get", "--raw", "/metrics"]).await;
    if !output.success() {
        bail!("{output}");
    }
    Ok(nmstate_e2e::metrics::state_writes(&output.stdout))
}

#[tokio::test]
async fn cluster_an_idle_node_writes_nothing() -> Result<()> {
    let _turn = nmstate_e2e::suite::turn(module_path!());
    // The Ready heartbeat (a write by design, at most once a minute) is put
    // out of the window; a short resync re-reads the real state often.
    let cluster = LocalUp::start(1, &["--ready-interval=10m", "--resync=5s"]).await?;
    let kubectl = Kubectl::new(&cluster.admin_kubeconfig())?;
    node_reported(&kubectl, "node-1").await?;
    // Let the first reports settle.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let writes_before = state_writes(&kubectl).await?;
    assert!(
        writes_before >= 1,
        "the create was counted: {writes_before}"
    );
    let before = kubectl
        .run(&["get", "nns", "node-1", "-o", "json"])
        .await
        .ok()
        .json();

    // Six resync periods of a real NetworkManager node with nothing changing.
    tokio::time::sleep(Duration::from_secs(30)).await;
    let after = kubectl
        .run(&["get", "nns", "node-1", "-o", "json"])
        .await
        .ok()
        .json();
    assert_eq!(
        state_writes(&kubectl).await?,
        writes_before,
        "--- agent log\n{}",
        cluster.process_log("node-1")
    );
    assert_eq!(
        after["metadata"]["resourceVersion"],
        before["metadata"]["resourceVersion"]
    );
    assert_eq!(
        after["status"]["lastSuccessfulUpdateTime"],
        before["status"]["lastSuccessfulUpdateTime"]
    );
    Ok(())
}

/// Applies `desired` as policy `name` for node-1 and waits until it is
/// Available.
async fn apply_available(cluster: &LocalUp, kubectl: &Kubectl, name: &str, desired: &Value) {
    kubectl
        .run_stdin(&["apply", "-f", "-"], &policy_yaml(name, desired))
        .await
        .ok();
    let available = wait_for_condition(
        kubectl,
        &format!("nncp/{name}"),
        "Available",
        Duration::from_secs(120),
    )
    .await;
    assert!(
        available.is_ok(),
        "{available:?}\n--- agent log\n{}",
        cluster.process_log("node-1")
    );
}

#[tokio::test]
async fn cluster_bridges_a_macvlan_a_static_route_dns_and_an_address_change_become_available()
-> Result<()> {
    let _turn = nmstate_e2e::suite::turn(module_path!());
    let cluster = LocalUp::start(1, &[]).await?;
    let kubectl = Kubectl::new(&cluster.admin_kubeconfig())?;
    let node = cluster.node(1)?;
    node_reported(&kubectl, "node-1").await?;

    // Two bridges.
    apply_available(
        &cluster,
        &kubectl,
        "br1",
        &bridge_state("br1", "eth1", "192.0.2.1"),
    )
    .await;
    apply_available(
        &cluster,
        &kubectl,
        "br2",
        &bridge_state("br2", "eth2", "203.0.113.1"),
    )
    .await;
    assert_eq!(
        kernel_bridge(&node, "br1").await?,
        Some(vec!["eth1".to_owned()])
    );
    assert_eq!(
        kernel_bridge(&node, "br2").await?,
        Some(vec!["eth2".to_owned()])
    );

    // A macvlan on the first bridge.
    let macvlan = json!({"interfaces": [{
        "name": "mac0", "type": "mac-vlan", "state": "up",
        "mac-vlan": {"base-iface": "br1", "mode": "bridge", "promiscuous": true},
    }]});
    apply_available(&cluster, &kubectl, "mac0", &macvlan).await;
    let link = node.ip_link("mac0").await?.context("mac0 exists")?;
    assert_eq!(link["linkinfo"]["info_kind"], "macvlan", "{link}");
    assert_eq!(link["linkinfo"]["info_data"]["mode"], "bridge", "{link}");

    // A static route through the first bridge.
    let route = json!({"routes": {"config": [{
        "destination": "198.51.100.0/24",
        "next-hop-address": "192.0.2.254",
        "next-hop-interface": "br1",
    }]}});
    apply_available(&cluster, &kubectl, "route", &route).await;
    let routes: Vec<Value> = serde_json::from_slice(
        &node
            .run("ip", &["-j", "route", "show", "198.51.100.0/24"])
            .await?
            .stdout,
    )?;
    assert_eq!(routes.len(), 1, "{routes:?}");
    assert_eq!(routes[0]["gateway"], "192.0.2.254");
    assert_eq!(routes[0]["dev"], "br1");

    // DNS, as NetworkManager keeps it (nmstatectl reads it back).
    let dns = json!({"dns-resolver": {"config": {
        "server": ["192.0.2.53"],
        "search": ["example.com"],
    }}});
    apply_available(&cluster, &kubectl, "dns", &dns).await;
    let theirs = node.nmstatectl_show().await?;
    assert_eq!(
        theirs["dns-resolver"]["config"]["server"],
        json!(["192.0.2.53"]),
        "{}",
        theirs["dns-resolver"]
    );
    assert_eq!(
        theirs["dns-resolver"]["config"]["search"],
        json!(["example.com"])
    );

    // An address change of the first bridge.
    apply_available(
        &cluster,
        &kubectl,
        "br1",
        &bridge_state("br1", "eth1", "192.0.2.10"),
    )
    .await;
    assert_eq!(
        node.ipv4_addresses("br1").await?,
        vec!["192.0.2.10/24".to_owned()]
    );
    reported_addresses(&kubectl, "br1", &["192.0.2.10/24"]).await?;
    Ok(())
}

#[tokio::test]
async fn cluster_bond_and_vlan_policies_become_available_where_the_kernel_allows() -> Result<()> {
    let _turn = nmstate_e2e::suite::turn(module_path!());
    let cluster = LocalUp::start(1, &[]).await?;
    let kubectl = Kubectl::new(&cluster.admin_kubeconfig())?;
    let node = cluster.node(1)?;
    if kernel_supports(&node, "bond", &[], &[]).await? {
        let bond = json!({"interfaces": [{
            "name": "bond99", "type": "bond", "state": "up",
            "link-aggregation": {"mode": "active-backup", "port": ["eth1", "eth2"]},
        }]});
        apply_available(&cluster, &kubectl, "bond99", &bond).await;
        let link = node.ip_link("bond99").await?.context("bond99 exists")?;
        assert_eq!(link["linkinfo"]["info_data"]["mode"], "active-backup");
        kubectl.run(&["delete", "nncp", "bond99"]).await.ok();
    } else {
        say(
            "NOT RUN: this kernel has no bonding driver; the active-backup bond policy \
             test cannot run on this machine",
        );
    }
    if kernel_supports(&node, "vlan", &["link", "eth1"], &["id", "4000"]).await? {
        let vlan = json!({"interfaces": [{
            "name": "eth1.102", "type": "vlan", "state": "up",
            "vlan": {"base-iface": "eth1", "id": 102},
        }]});
        apply_available(&cluster, &kubectl, "vlan102", &vlan).await;
        let link = node.ip_link("eth1.102").await?.context("eth1.102 exists")?;
        assert_eq!(link["linkinfo"]["info_data"]["id"], 102);
    } else {
        say(
            "NOT RUN: this kernel has no 802.1Q (VLAN) support; the VLAN policy test \
             cannot run on this machine",
        );
    }
    Ok(())
}
