//! The `handler` scenario: one `nmstate-agent` (backend `nm`, built as it
//! is shipped, with the `release-agent` profile) next to
//! upstream kubernetes-nmstate's node handler, each on a namespace node of
//! its own with its own NetworkManager (`hack/netns-node.sh`), in one run:
//!
//! - ours: `nmstate-apiserver` (embedded store) and the agent as
//!   `system:node:node-1`;
//! - upstream: a real kube-apiserver on its own etcd, serving upstream's
//!   CRDs (from the module `hack/build-upstream-handler.sh` downloads, read
//!   from its cache), and the handler that script builds, started as its
//!   DaemonSet starts it (`NODE_NAME`, the lock file, `PROBE_DNS_HOST`,
//!   metrics on, `nmstatectl` on `PATH`), with a Ready Node object and a Pod
//!   of the handler on it (upstream counts a policy's nodes by those Pods).
//!   It needs no operator, no NMState object and no leader election.
//!
//! Both servers listen on the host's loopback; each node reaches its server
//! through a forward on the node's own loopback ([`NetnsForward`]). The hub
//! namespace answers DNS ([`dns_answer`]) and both nodes are given that
//! resolver, so that upstream's DNS probe passes at once, as in a cluster,
//! instead of waiting 120 s for a name server.
//!
//! Measured, both sides in the same window: idle RSS and CPU (the handler's
//! CPU includes its `nmstatectl` children: it runs `nmstatectl show` every
//! minute), NetworkManager change → NodeNetworkState latency (an address
//! added or removed on eth2 with `ip addr`, seen on a watch), and the time
//! to apply upstream's linux-bridge example from creating the policy to its
//! `Available` condition, with `vlan: {}` on the bridge port: this kernel
//! has no bridge VLAN filtering, and upstream's handler gives a port
//! without a `vlan` section a VLAN trunk that fails here.

use std::{
    ffi::OsString,
    fs::File,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use nix::{sys::signal, unistd::Pid};
use nmstate_apiserver::kubeconfig::Kubeconfig;
use serde_json::{Value, json};
use tokio::{sync::mpsc, task::JoinHandle};

use super::{
    POLICIES, Report, STATES, agent, agent::cpu_with_children, progress, rss_bytes, stats,
};
use crate::{
    agent::{AgentOptions, AgentProcess},
    apiserver::{ApiserverProcess, StartOptions},
    etcd::EtcdProcess,
    https::{HttpsClient, watch_lines},
    kube_apiserver::{KubeApiserverProcess, KubeOptions},
    netns::{HUB_ADDRESS, NetnsLab, NetnsNode},
};

/// Our node's name in the API.
const OURS: &str = "node-1";
/// Upstream's node's name in the API.
const UPSTREAM: &str = "node-2";
/// Upstream's node states (its CRD serves `v1beta1` only).
const UPSTREAM_STATES: &str = "/apis/nmstate.io/v1beta1/nodenetworkstates";
/// Policies, on both servers.
/// The name upstream's DNS probe resolves (the hub answers every name).
const PROBE_DNS_HOST: &str = "probe.nmstate-bench.test";
/// The address the latency runs add to and remove from eth2.
const LATENCY_ADDRESS: &str = "198.51.100.77";
/// How often upstream's handler runs `nmstatectl show` (±10 %).
const POLL_PERIOD: Duration = Duration::from_secs(60);
/// The idle RSS goal: the agent's over the handler's.
const RSS_RATIO_GOAL: f64 = 0.2;
/// The NetworkManager change → NodeNetworkState goal, on the median.
const LATENCY_GOAL: Duration = Duration::from_secs(1);

/// How much one run does.
struct Plan {
    idle: Duration,
    ours_runs: usize,
    upstream_runs: usize,
}

impl Plan {
    fn new(quick: bool) -> Plan {
        if quick {
            Plan {
                idle: Duration::from_secs(20),
                ours_runs: 2,
                upstream_runs: 1,
            }
        } else {
            Plan {
                idle: Duration::from_secs(300),
                ours_runs: 10,
                upstream_runs: 4,
            }
        }
    }
}

/// Runs the scenario with the `nmstate-apiserver` at `apiserver` and the
/// `nmstate-agent` next to it.
pub(super) async fn run(apiserver: &Path, quick: bool, report: &mut Report) -> Result<()> {
    let plan = Plan::new(quick);
    let agent_binary = shipped_agent(apiserver)?;
    let helper_binary = agent_binary.with_file_name("nmstate-helper");
    progress("building (or finding) upstream's handler: hack/build-upstream-handler.sh");
    let handler_binary = tokio::task::spawn_blocking(upstream_handler).await??;
    let crd_dir = handler_binary.with_file_name("crds");
    let crds = read_crds(&crd_dir)?;
    let load_start = load_average();
    let work = tempfile::Builder::new()
        .prefix("nmst-bench-handler")
        .tempdir()?;

    progress("starting two namespace nodes with NetworkManager");
    let lab = NetnsLab::start(2, true).await?;
    let ours_node = lab.node(1).clone();
    let upstream_node = lab.node(2).clone();
    let _dns = UdpResponder::start(lab.hub(), HUB_ADDRESS)?;
    for node in [&ours_node, &upstream_node] {
        use_hub_resolver(node, work.path()).await?;
    }

    progress("starting nmstate-apiserver (embedded store) and nmstate-agent --backend nm");
    let server = ApiserverProcess::start_with(
        &[],
        &StartOptions {
            binary: Some(apiserver.to_path_buf()),
            log_file: Some(work.path().join("apiserver.log")),
            ..StartOptions::default()
        },
    )
    .await?;
    let ours = server.admin_client()?;
    let ours_forward = NetnsForward::start(&ours_node.name, server.address())?;
    let agent_kubeconfig = retarget(
        &agent::issue_node_kubeconfig(apiserver, &server, OURS)?,
        &work.path().join("agent.kubeconfig"),
        ours_forward.port,
    )?;
    progress("starting etcd, kube-apiserver with upstream's CRDs, and upstream's handler");
    let etcd = EtcdProcess::try_start(false).await?;
    let kube = KubeApiserverProcess::start(&KubeOptions {
        etcd_servers: etcd.endpoint(),
        ..KubeOptions::default()
    })
    .await?;
    kube.create_crds(&crds).await?;
    register_upstream_node(&kube, UPSTREAM).await?;
    let upstream = kube.client().clone();
    let upstream_forward = NetnsForward::start(&upstream_node.name, kube.address())?;
    let mut handler_kubeconfig = Kubeconfig::read(&kube.admin_kubeconfig())?;
    for cluster in &mut handler_kubeconfig.clusters {
        cluster.cluster.server = format!("https://127.0.0.1:{}", upstream_forward.port);
    }
    // Both node processes start once both servers are up (kube-apiserver
    // takes the CPU for a while as it starts).
    let ours_started = Instant::now();
    let mut agent = AgentProcess::start_with(
        OURS,
        &agent_kubeconfig,
        &["--backend", "nm"],
        &AgentOptions {
            binary: Some(agent_binary),
            wrapper: ours_node.wrapper(),
            ..AgentOptions::default()
        },
    )?;

    let upstream_started = Instant::now();
    let mut handler = HandlerProcess::start(
        &upstream_node,
        &handler_binary,
        UPSTREAM,
        &handler_kubeconfig,
    )?;

    let ours_state = format!("{STATES}/{OURS}");
    let upstream_state = format!("{UPSTREAM_STATES}/{UPSTREAM}");
    let has_state = |state: &Value| state["status"]["currentState"]["interfaces"].is_array();
    wait_for(
        &ours,
        &ours_state,
        "our agent's first report",
        has_state,
        || agent.logs(),
    )
    .await?;
    let ours_first = ours_started.elapsed();
    wait_for(
        &upstream,
        &upstream_state,
        "the handler's first report",
        has_state,
        || handler.log_tail(30),
    )
    .await?;
    let upstream_first = upstream_started.elapsed();
    handler.check_running()?;

    // Idle: both sides in the same window.
    tokio::time::sleep(Duration::from_secs(5)).await;
    progress(format!(
        "both idle for {:?} (RSS sampled every second)",
        plan.idle
    ));
    let mut ours_events = StateWatch::open(&ours, STATES, OURS).await?;
    let mut upstream_events = StateWatch::open(&upstream, UPSTREAM_STATES, UPSTREAM).await?;
    let (agent_pid, handler_pid) = (agent.pid(), handler.pid());
    let cpu_before = (
        cpu_with_children(agent_pid)?,
        cpu_with_children(handler_pid)?,
    );
    let idle_started = Instant::now();
    let mut samples = IdleSamples::default();
    while idle_started.elapsed() < plan.idle {
        tokio::time::sleep(Duration::from_secs(1)).await;
        samples.agent.push(rss_bytes(agent_pid)?);
        samples
            .agent_tree
            .push(rss_bytes(agent_pid)? + children_rss(agent_pid));
        samples.handler.push(rss_bytes(handler_pid)?);
        samples
            .handler_tree
            .push(rss_bytes(handler_pid)? + children_rss(handler_pid));
    }
    let idle_seconds = idle_started.elapsed().as_secs_f64();
    let idle_cpu = (
        cpu_with_children(agent_pid)?.saturating_sub(cpu_before.0),
        cpu_with_children(handler_pid)?.saturating_sub(cpu_before.1),
    );
    let idle_writes = (ours_events.drain(), upstream_events.drain());
    drop((ours_events, upstream_events));
    let split = (rss_split(agent_pid)?, rss_split(handler_pid)?);
    let show = one_run_footprint(&upstream_node, &["nmstatectl", "show"])?;
    let helper_binary = helper_binary.to_string_lossy();
    let retrieve = one_run_footprint(&ours_node, &[&helper_binary, "retrieve"])?;

    progress(format!(
        "NetworkManager change → NodeNetworkState: {} runs on ours, {} on upstream (it polls every minute)",
        plan.ours_runs, plan.upstream_runs
    ));
    let ours_latency = nm_latency(
        &ours,
        STATES,
        OURS,
        &ours_node,
        plan.ours_runs,
        Duration::from_secs(1),
        Duration::from_secs(30),
    )
    .await?;
    let upstream_latency = nm_latency(
        &upstream,
        UPSTREAM_STATES,
        UPSTREAM,
        &upstream_node,
        plan.upstream_runs,
        POLL_PERIOD,
        Duration::from_secs(100),
    )
    .await?;

    progress("applying upstream's linux-bridge example on each");
    let policy = linux_bridge_policy()?;
    let ours_apply = apply(&ours, &policy, agent_pid, &ours_node).await?;
    let upstream_apply = apply(&upstream, &policy, handler_pid, &upstream_node)
        .await
        .with_context(|| format!("the handler's log ends:\n{}", handler.log_tail(30)))?;
    let load_end = load_average();

    let agent_exit = agent.terminate()?;
    handler.stop();

    let mib = |bytes: u64| stats::round(bytes as f64 / (1024.0 * 1024.0), 1);
    let ms = |time: Duration| stats::round(time.as_secs_f64() * 1000.0, 1);
    let ratio = |ours: f64, upstream: f64| stats::round(ours / upstream.max(f64::MIN_POSITIVE), 3);
    let agent_rss = median_u64(&samples.agent);
    let handler_rss = median_u64(&samples.handler);
    let rss_ratio = ratio(agent_rss as f64, handler_rss as f64);
    let cpu_ratio = ratio(idle_cpu.0.as_secs_f64(), idle_cpu.1.as_secs_f64());
    let ours_median = stats::median(&ours_latency).unwrap_or_default();
    let upstream_median = stats::median(&upstream_latency).unwrap_or_default();
    let latency_goal_met = ours_median <= LATENCY_GOAL;
    let rss_goal_met = rss_ratio <= RSS_RATIO_GOAL;

    report.line(format!(
        "handler: nmstate-agent (release-agent build, nm backend, nmstate-apiserver) against upstream's node handler (kubernetes-nmstate {}, kube-apiserver with its CRDs), one NetworkManager namespace node each",
        upstream_version(&handler_binary)
    ));
    report.line(format!(
        "  load average at start {} and at end {} (2 cores, shared)",
        load_start.join(" "),
        load_end.join(" ")
    ));
    report.line(format!(
        "  start to first NodeNetworkState: ours {} ms, upstream {} ms",
        ms(ours_first),
        ms(upstream_first)
    ));
    report.line(format!(
        "  idle RSS (median of {} samples, max): ours {} MiB ({} MiB), upstream {} MiB ({} MiB); ratio {rss_ratio} (goal <= {RSS_RATIO_GOAL}: {})",
        samples.agent.len(),
        mib(agent_rss),
        mib(max_u64(&samples.agent)),
        mib(handler_rss),
        mib(max_u64(&samples.handler)),
        met(rss_goal_met)
    ));
    report.line(format!(
        "    at the end of the window, anonymous + file-backed: ours {} + {} MiB, upstream {} + {} MiB",
        mib(split.0.0),
        mib(split.0.1),
        mib(split.1.0),
        mib(split.1.1)
    ));
    report.line(format!(
        "    ours with its live nmstate-helper children, max: {} MiB; one `nmstate-helper retrieve` in that node: peak RSS {} MiB, {} ms wall",
        mib(max_u64(&samples.agent_tree)),
        mib(retrieve.peak_rss),
        ms(retrieve.wall)
    ));
    report.line(format!(
        "    upstream with its live nmstatectl children, max: {} MiB; one `nmstatectl show` (its per-minute poll) in that node: peak RSS {} MiB, {} ms wall",
        mib(max_u64(&samples.handler_tree)),
        mib(show.peak_rss),
        ms(show.wall)
    ));
    report.line(format!(
        "  idle CPU over {idle_seconds:.0} s (children included): ours {} ms, upstream {} ms; ratio {cpu_ratio}",
        ms(idle_cpu.0),
        ms(idle_cpu.1)
    ));
    report.line(format!(
        "  NodeNetworkState writes seen while idle: ours {}, upstream {}",
        idle_writes.0, idle_writes.1
    ));
    report.line(format!(
        "  NetworkManager change → NodeNetworkState: ours median {} ms, max {} ms over {} runs; upstream median {} ms, max {} ms over {} runs; ratio {} (goal <= {} ms: {})",
        ms(ours_median),
        ms(max_duration(&ours_latency)),
        ours_latency.len(),
        ms(upstream_median),
        ms(max_duration(&upstream_latency)),
        upstream_latency.len(),
        ratio(ours_median.as_secs_f64(), upstream_median.as_secs_f64()),
        LATENCY_GOAL.as_millis(),
        met(latency_goal_met)
    ));
    report.line(format!(
        "  linux-bridge example, policy created → Available: ours {} ms ({} ms CPU), upstream {} ms ({} ms CPU, children included); ratio {}",
        ms(ours_apply.time),
        ms(ours_apply.cpu),
        ms(upstream_apply.time),
        ms(upstream_apply.cpu),
        ratio(
            ours_apply.time.as_secs_f64(),
            upstream_apply.time.as_secs_f64()
        )
    ));
    if !agent_exit.success() {
        report.line(format!(
            "  note: nmstate-agent exited with {agent_exit} on SIGTERM"
        ));
    }

    let one_minute = |load: &[String]| load.first().and_then(|l| l.parse::<f64>().ok());
    report.figure("load_avg_start", one_minute(&load_start));
    report.figure("load_avg_end", one_minute(&load_end));
    report.figure("idle_seconds", stats::round(idle_seconds, 0));
    report.figure("ours_first_report_ms", ms(ours_first));
    report.figure("upstream_first_report_ms", ms(upstream_first));
    report.figure("ours_rss_idle_mib", mib(agent_rss));
    report.figure("upstream_rss_idle_mib", mib(handler_rss));
    report.figure(
        "upstream_rss_with_children_max_mib",
        mib(max_u64(&samples.handler_tree)),
    );
    report.figure("nmstatectl_show_peak_rss_mib", mib(show.peak_rss));
    report.figure(
        "ours_rss_with_children_max_mib",
        mib(max_u64(&samples.agent_tree)),
    );
    report.figure("helper_retrieve_peak_rss_mib", mib(retrieve.peak_rss));
    report.figure("ours_rss_anon_mib", mib(split.0.0));
    report.figure("upstream_rss_anon_mib", mib(split.1.0));
    report.figure("rss_ratio", rss_ratio);
    report.figure("ours_idle_cpu_ms", ms(idle_cpu.0));
    report.figure("upstream_idle_cpu_ms", ms(idle_cpu.1));
    report.figure("idle_cpu_ratio", cpu_ratio);
    report.figure("ours_idle_writes", idle_writes.0);
    report.figure("upstream_idle_writes", idle_writes.1);
    report.figure("ours_nns_latency_median_ms", ms(ours_median));
    report.figure("ours_nns_latency_max_ms", ms(max_duration(&ours_latency)));
    report.figure("upstream_nns_latency_median_ms", ms(upstream_median));
    report.figure(
        "upstream_nns_latency_max_ms",
        ms(max_duration(&upstream_latency)),
    );
    report.figure("ours_apply_ms", ms(ours_apply.time));
    report.figure("upstream_apply_ms", ms(upstream_apply.time));
    report.figure("ours_apply_cpu_ms", ms(ours_apply.cpu));
    report.figure("upstream_apply_cpu_ms", ms(upstream_apply.cpu));
    // Every scenario reports `ratio` and `goal_met`: here the idle RSS
    // ratio, and both goals of the issue.
    report.figure("ratio", rss_ratio);
    report.figure("goal_met", rss_goal_met && latency_goal_met);
    Ok(())
}

fn met(goal_met: bool) -> &'static str {
    if goal_met { "met" } else { "missed" }
}

/// Where `hack/build-upstream-handler.sh` put upstream's handler, building
/// it first when it is not cached (minutes on 2 cores).
fn upstream_handler() -> Result<PathBuf> {
    crate::kube_apiserver::cached_build(
        "build-upstream-handler.sh",
        "upstream's handler cannot run here",
    )
}

/// The upstream version the cached build records (its `stamp`).
fn upstream_version(binary: &Path) -> String {
    std::fs::read_to_string(binary.with_file_name("stamp"))
        .ok()
        .and_then(|stamp| stamp.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "(unknown version)".to_owned())
}

/// Upstream's CRDs for the kinds the handler uses (the operator's NMState
/// kind is left out: nothing here runs the operator).
fn read_crds(dir: &Path) -> Result<Vec<Value>> {
    let mut crds = Vec::new();
    for kind in [
        "nodenetworkstates",
        "nodenetworkconfigurationpolicies",
        "nodenetworkconfigurationenactments",
    ] {
        let path = dir.join(format!("nmstate.io_{kind}.yaml"));
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        crds.push(
            serde_yaml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?,
        );
    }
    Ok(crds)
}

/// Upstream's linux-bridge example as a JSON policy, with `vlan: {}` on its
/// bridge ports (see [`without_default_vlan_trunk`]).
fn linux_bridge_policy() -> Result<Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/upstream/linux-bridge.yaml");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut policy: Value = serde_yaml::from_str(&text)?;
    without_default_vlan_trunk(&mut policy);
    Ok(policy)
}

/// Gives every linux-bridge port without a `vlan` section an empty one, so
/// that neither side adds upstream's default VLAN trunk, which needs bridge
/// VLAN filtering that this machine's kernel lacks.
fn without_default_vlan_trunk(policy: &mut Value) {
    let interfaces = policy["spec"]["desiredState"]["interfaces"].as_array_mut();
    for interface in interfaces.into_iter().flatten() {
        if interface["type"] != "linux-bridge" {
            continue;
        }
        let ports = interface["bridge"]["port"].as_array_mut();
        for port in ports.into_iter().flatten() {
            if let Some(port) = port.as_object_mut() {
                port.entry("vlan").or_insert_with(|| json!({}));
            }
        }
    }
}

/// Points a node at the hub's resolver, through nmstate, as a cluster
/// node has one: upstream's handler selects its DNS probe only when the
/// node's running state names a server.
async fn use_hub_resolver(node: &NetnsNode, dir: &Path) -> Result<()> {
    let file = dir.join(format!("{}-dns.yml", node.name));
    std::fs::write(
        &file,
        format!("dns-resolver:\n  config:\n    server:\n    - {HUB_ADDRESS}\n"),
    )?;
    node.run(
        "nmstatectl",
        &["apply", file.to_str().context("path is not UTF-8")?],
    )
    .await?;
    Ok(())
}

/// The Node object upstream's handler runs for (Ready, as its probes
/// require after an apply), and a Pod of the handler on it, as its
/// DaemonSet would make: upstream counts a policy's nodes by those Pods.
async fn register_upstream_node(kube: &KubeApiserverProcess, node: &str) -> Result<()> {
    kube.create(
        "/api/v1/nodes",
        &json!({"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": node, "labels": {"kubernetes.io/hostname": node}}}),
    )
    .await?;
    let ready = json!({"status": {"conditions": [{
        "type": "Ready", "status": "True", "reason": "KubeletReady",
        "message": "a namespace node of nmstate-bench",
        "lastHeartbeatTime": "2026-01-01T00:00:00Z",
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    }]}});
    let patched = kube
        .client()
        .send_json("PATCH", &format!("/api/v1/nodes/{node}/status"), &ready)
        .await?;
    if !patched.status.is_success() {
        bail!(
            "marking Node {node} Ready: {} {}",
            patched.status,
            patched.body
        );
    }
    kube.create(
        "/api/v1/namespaces",
        &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "nmstate"}}),
    )
    .await?;
    // No kube-controller-manager here makes the default ServiceAccount a
    // Pod needs.
    kube.create(
        "/api/v1/namespaces/nmstate/serviceaccounts",
        &json!({"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": "default", "namespace": "nmstate"}}),
    )
    .await?;
    kube.create(
        "/api/v1/namespaces/nmstate/pods",
        &json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("nmstate-handler-{node}"), "namespace": "nmstate",
                "labels": {"component": "kubernetes-nmstate-handler"}},
            "spec": {"nodeName": node, "automountServiceAccountToken": false,
                "containers": [{"name": "nmstate-handler", "image": "nmstate-handler"}]}}),
    )
    .await?;
    Ok(())
}

/// `kubeconfig` with its server moved to `127.0.0.1:port` (a node's
/// forward), written to `out`.
fn retarget(kubeconfig: &Path, out: &Path, port: u16) -> Result<PathBuf> {
    let mut config = Kubeconfig::read(kubeconfig)?;
    for cluster in &mut config.clusters {
        cluster.cluster.server = format!("https://127.0.0.1:{port}");
    }
    config.write(out)?;
    Ok(out.to_path_buf())
}

/// Waits (at most three minutes) until the object at `path` satisfies
/// `check`; `log` says what the process behind it logged, on failure.
async fn wait_for(
    client: &HttpsClient,
    path: &str,
    what: &str,
    check: impl Fn(&Value) -> bool,
    log: impl Fn() -> String,
) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let response = client.get(path).await?;
        if response.status.is_success() && check(&serde_json::from_str(&response.body)?) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{what} did not come within 3 minutes; log:\n{}", log());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Resident memory samples of the idle window.
#[derive(Default)]
struct IdleSamples {
    agent: Vec<u64>,
    /// The agent and its nmstate helper, when one runs at the sample.
    agent_tree: Vec<u64>,
    handler: Vec<u64>,
    /// The handler and its children alive at the sample.
    handler_tree: Vec<u64>,
}

fn median_u64(samples: &[u64]) -> u64 {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    sorted.get(sorted.len() / 2).copied().unwrap_or_default()
}

fn max_u64(samples: &[u64]) -> u64 {
    samples.iter().copied().max().unwrap_or_default()
}

fn max_duration(samples: &[Duration]) -> Duration {
    samples.iter().copied().max().unwrap_or_default()
}

/// The 1, 5 and 15 minute load averages.
fn load_average() -> Vec<String> {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .map(str::to_owned)
        .collect()
}

/// The agent as it is shipped: built with the `release-agent` profile
/// (root `Cargo.toml`, as `deploy/containers/agent.Containerfile` builds
/// it), in `target/release-agent/` beside the release directory of
/// `apiserver`.
fn shipped_agent(apiserver: &Path) -> Result<PathBuf> {
    let binary = apiserver
        .parent()
        .and_then(Path::parent)
        .context("the apiserver binary has no target directory")?
        .join("release-agent/nmstate-agent");
    for binary in [&binary, &binary.with_file_name("nmstate-helper")] {
        if !binary.is_file() {
            bail!(
                "{} is missing; build it first: cargo build --profile release-agent -p nmstate-agent",
                binary.display()
            );
        }
    }
    Ok(binary)
}

/// `RssAnon` and `RssFile` (with `RssShmem`) of process `pid`, in bytes.
fn rss_split(pid: u32) -> Result<(u64, u64)> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().strip_suffix("kB"))
            .and_then(|kib| kib.trim().parse::<u64>().ok())
            .map_or(0, |kib| kib * 1024)
    };
    Ok((field("RssAnon:"), field("RssFile:") + field("RssShmem:")))
}

/// The summed RSS of `pid`'s live children.
fn children_rss(pid: u32) -> u64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|child| {
            std::fs::read_to_string(format!("/proc/{child}/stat"))
                .ok()
                .and_then(|stat| {
                    let (_, after_name) = stat.rsplit_once(')')?;
                    after_name.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(pid)
        })
        .filter_map(|child| rss_bytes(child).ok())
        .sum()
}

/// What one run of a node's nmstate program costs.
struct RunFootprint {
    peak_rss: u64,
    wall: Duration,
}

/// Runs `command` in `node` (`nmstatectl show`, as upstream's handler
/// does once a minute; `nmstate-helper retrieve`, as our agent does on a
/// change), sampling its peak RSS (`VmHWM`) until it exits.
fn one_run_footprint(node: &NetnsNode, command: &[&str]) -> Result<RunFootprint> {
    let wrapper = node.wrapper();
    let name = command
        .first()
        .and_then(|program| Path::new(program).file_name())
        .map(|name| name.to_string_lossy().into_owned())
        .context("no command")?;
    let started = Instant::now();
    // The wrapper execs nsenter, which execs the command: the PID stays.
    let mut child = Command::new(&wrapper[0])
        .args(&wrapper[1..])
        .args(command)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("running {}", command.join(" ")))?;
    let status_path = format!("/proc/{}/status", child.id());
    let name_line = format!("Name:\t{name}");
    let mut peak = 0;
    loop {
        if let Some(status) = child.try_wait()? {
            if !status.success() {
                bail!("{} in {}: {status}", command.join(" "), node.name);
            }
            break;
        }
        if let Ok(status) = std::fs::read_to_string(&status_path)
            && status.lines().any(|line| line == name_line)
            && let Some(kib) = status
                .lines()
                .find_map(|line| line.strip_prefix("VmHWM:"))
                .and_then(|rest| rest.trim().strip_suffix("kB"))
                .and_then(|kib| kib.trim().parse::<u64>().ok())
        {
            peak = peak.max(kib * 1024);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(RunFootprint {
        peak_rss: peak,
        wall: started.elapsed(),
    })
}

/// How long NetworkManager changes take to show in the node's state:
/// `runs` times, after a random pause of up to `spread` (so that a change
/// falls anywhere in a polling period, not just after the poll that saw
/// the last one), an address added to (even runs) or removed from (odd
/// runs) eth2 with `ip addr` behind the agent's back, timed from just
/// before `ip` to the first watch event that shows the change.
async fn nm_latency(
    client: &HttpsClient,
    collection: &str,
    name: &str,
    node: &NetnsNode,
    runs: usize,
    spread: Duration,
    timeout: Duration,
) -> Result<Vec<Duration>> {
    let mut figures = Vec::with_capacity(runs);
    for run in 0..runs {
        let add = run % 2 == 0;
        let pause = uuid::Uuid::new_v4().as_u128() % spread.as_millis().max(1);
        tokio::time::sleep(Duration::from_millis(u64::try_from(pause)?)).await;
        let mut watch = StateWatch::open(client, collection, name).await?;
        let started = Instant::now();
        node.run(
            "ip",
            &[
                "addr",
                if add { "add" } else { "del" },
                &format!("{LATENCY_ADDRESS}/24"),
                "dev",
                "eth2",
            ],
        )
        .await?;
        let seen = watch
            .until(started + timeout, |object| {
                has_address(&object["status"]["currentState"], "eth2", LATENCY_ADDRESS) == add
            })
            .await
            .with_context(|| {
                format!(
                    "{name}: the address {} eth2 did not show within {timeout:?}",
                    if add { "added to" } else { "removed from" }
                )
            })?;
        let latency = seen.saturating_duration_since(started);
        progress(format!(
            "  {name} run {}: {} ms",
            run + 1,
            latency.as_millis()
        ));
        figures.push(latency);
    }
    // Leave eth2 as it was.
    if runs % 2 == 1 {
        node.run(
            "ip",
            &[
                "addr",
                "del",
                &format!("{LATENCY_ADDRESS}/24"),
                "dev",
                "eth2",
            ],
        )
        .await?;
    }
    Ok(figures)
}

/// Whether `state` (an nmstate document) shows `ip` on `interface`.
fn has_address(state: &Value, interface: &str, ip: &str) -> bool {
    state["interfaces"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|entry| entry["name"] == interface)
        .flat_map(|entry| {
            entry["ipv4"]["address"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .any(|address| address["ip"] == ip)
}

/// What one policy apply took.
struct Applied {
    time: Duration,
    cpu: Duration,
}

/// Creates `policy` and waits until it is Available; the time from the
/// create to the first read that shows it, and the node process's CPU
/// (children included) meanwhile. Checks the bridge in the kernel after.
async fn apply(
    client: &HttpsClient,
    policy: &Value,
    pid: u32,
    node: &NetnsNode,
) -> Result<Applied> {
    let name = policy["metadata"]["name"]
        .as_str()
        .context("a policy without a name")?;
    let cpu_before = cpu_with_children(pid)?;
    let started = Instant::now();
    let created = client.send_json("POST", POLICIES, policy).await?;
    if !created.status.is_success() {
        bail!(
            "creating policy {name}: {} {}",
            created.status,
            created.body
        );
    }
    let deadline = started + Duration::from_secs(300);
    let path = format!("{POLICIES}/{name}");
    loop {
        let response = client.get(&path).await?;
        let object: Value = serde_json::from_str(&response.body)?;
        let condition = |kind: &str| {
            object["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == kind && c["status"] == "True")
        };
        if condition("Available") {
            break;
        }
        if condition("Degraded") {
            bail!("policy {name} is Degraded: {}", object["status"]);
        }
        if Instant::now() > deadline {
            bail!(
                "policy {name} was not Available within 5 minutes: {}",
                object["status"]
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let time = started.elapsed();
    let cpu = cpu_with_children(pid)?.saturating_sub(cpu_before);
    let bridge = node.ip_link("br1").await?.context("no br1 in the kernel")?;
    if bridge["linkinfo"]["info_kind"] != "bridge" {
        bail!("br1 is no bridge: {bridge}");
    }
    let port = node.ip_link("eth1").await?.context("no eth1")?;
    if port["master"] != "br1" {
        bail!("eth1 is not a port of br1: {port}");
    }
    Ok(Applied { time, cpu })
}

/// A watch of one node state from its current version: each event with
/// the time it arrived.
struct StateWatch {
    events: mpsc::UnboundedReceiver<(Instant, Value)>,
    task: JoinHandle<()>,
}

impl StateWatch {
    async fn open(client: &HttpsClient, collection: &str, name: &str) -> Result<StateWatch> {
        let current = client.get(&format!("{collection}/{name}")).await?;
        if !current.status.is_success() {
            bail!(
                "GET {collection}/{name}: {} {}",
                current.status,
                current.body
            );
        }
        let current: Value = serde_json::from_str(&current.body)?;
        let version = current["metadata"]["resourceVersion"]
            .as_str()
            .context("no resourceVersion")?;
        let mut connection = client.connect().await?;
        let path = format!(
            "{collection}?watch=true&fieldSelector=metadata.name%3D{name}&resourceVersion={version}"
        );
        let response = connection.open("GET", &path, &[], Bytes::new()).await?;
        if !response.status().is_success() {
            bail!("watch {path}: {}", response.status());
        }
        let (sender, events) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            // The connection lives as long as the watch.
            let _connection = connection;
            watch_lines(response.into_body(), |line| {
                if let Ok(event) = serde_json::from_slice::<Value>(line) {
                    let _ = sender.send((Instant::now(), event));
                }
            })
            .await;
        });
        Ok(StateWatch { events, task })
    }

    /// When the first event whose object satisfies `check` arrived.
    async fn until(
        &mut self,
        deadline: Instant,
        check: impl Fn(&Value) -> bool,
    ) -> Result<Instant> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.events.recv()).await {
                Ok(Some((at, event))) if check(&event["object"]) => return Ok(at),
                Ok(Some(_)) => {}
                Ok(None) => bail!("the watch ended"),
                Err(_) => bail!("timed out"),
            }
        }
    }

    /// How many events arrived so far (and are not yet read).
    fn drain(&mut self) -> usize {
        let mut count = 0;
        while self.events.try_recv().is_ok() {
            count += 1;
        }
        count
    }
}

impl Drop for StateWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Runs `make` on a thread that entered network namespace `netns` (by its
/// `/run/netns` name): sockets it makes stay in that namespace.
fn in_netns<T: Send>(netns: &str, make: impl FnOnce() -> std::io::Result<T> + Send) -> Result<T> {
    let path = Path::new("/run/netns").join(netns);
    std::thread::scope(|scope| {
        scope
            .spawn(|| -> Result<T> {
                let file =
                    File::open(&path).with_context(|| format!("opening {}", path.display()))?;
                // Only this short-lived thread changes namespace.
                nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
                    .with_context(|| format!("entering {}", path.display()))?;
                Ok(make()?)
            })
            .join()
            .map_err(|_| anyhow::anyhow!("the thread entering {netns} panicked"))?
    })
}

/// A TCP listener on a namespace node's own loopback that forwards every
/// connection to `target` on the host's loopback: how a node reaches a
/// server that listens on the host's loopback.
struct NetnsForward {
    port: u16,
    task: JoinHandle<()>,
}

impl NetnsForward {
    fn start(netns: &str, target: SocketAddr) -> Result<NetnsForward> {
        let listener = in_netns(netns, || {
            let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
            listener.set_nonblocking(true)?;
            Ok(listener)
        })?;
        let port = listener.local_addr()?.port();
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = inbound.set_nodelay(true);
                        let _ = outbound.set_nodelay(true);
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Ok(NetnsForward { port, task })
    }
}

impl Drop for NetnsForward {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A DNS server on port 53 of an address of a namespace that answers every
/// A question with the hub's address and every other question with no
/// records.
struct UdpResponder {
    task: JoinHandle<()>,
}

impl UdpResponder {
    fn start(netns: &str, address: &str) -> Result<UdpResponder> {
        let address = format!("{address}:53");
        let socket = in_netns(netns, || {
            let socket = std::net::UdpSocket::bind(&address)?;
            socket.set_nonblocking(true)?;
            Ok(socket)
        })?;
        let socket = tokio::net::UdpSocket::from_std(socket)?;
        let task = tokio::spawn(async move {
            let mut buffer = [0u8; 512];
            while let Ok((length, peer)) = socket.recv_from(&mut buffer).await {
                if let Some(answer) = dns_answer(&buffer[..length]) {
                    let _ = socket.send_to(&answer, peer).await;
                }
            }
        });
        Ok(UdpResponder { task })
    }
}

impl Drop for UdpResponder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The answer to DNS query `query` (RFC 1035): its one question echoed,
/// with the hub's address for type A and no records otherwise; `None` for
/// what is no such query.
fn dns_answer(query: &[u8]) -> Option<Vec<u8>> {
    if query.len() < 12 || query[2] & 0x80 != 0 || query[4..6] != [0, 1] {
        return None;
    }
    let mut end = 12;
    while *query.get(end)? != 0 {
        end += 1 + usize::from(query[end]);
    }
    // The name's final zero, then type and class.
    let question = query.get(12..end + 5)?;
    let kind = u16::from_be_bytes([query[end + 1], query[end + 2]]);
    let a_record = kind == 1;
    let mut answer = Vec::with_capacity(question.len() + 32);
    answer.extend_from_slice(&query[..2]);
    // A response, authoritative, recursion desired as asked, available.
    answer.extend_from_slice(&[0x84 | (query[2] & 0x01), 0x80]);
    answer.extend_from_slice(&[0, 1, 0, u8::from(a_record), 0, 0, 0, 0]);
    answer.extend_from_slice(question);
    if a_record {
        // A pointer to the question's name, type A, class IN, TTL 60 s.
        answer.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
        let hub: std::net::Ipv4Addr = HUB_ADDRESS.parse().ok()?;
        answer.extend_from_slice(&hub.octets());
    }
    Some(answer)
}

/// Upstream's handler, run in a namespace node as its DaemonSet runs it,
/// with a private `/tmp` (where it writes `healthy` and `nmstatectl
/// policy` files) holding its kubeconfig and lock file.
struct HandlerProcess {
    child: Option<Child>,
    sandbox: tempfile::TempDir,
}

/// Bind-mounts `$1` on `/tmp` in a mount namespace of the handler's own,
/// then execs the rest.
const PRIVATE_TMP: &str = r#"mount -n --bind "$1" /tmp && shift && exec "$@""#;

impl HandlerProcess {
    fn start(
        node: &NetnsNode,
        binary: &Path,
        name: &str,
        kubeconfig: &Kubeconfig,
    ) -> Result<HandlerProcess> {
        let sandbox = tempfile::Builder::new().prefix("nmst-handler").tempdir()?;
        kubeconfig.write(&sandbox.path().join("kubeconfig"))?;
        let log = File::create(sandbox.path().join("handler.log"))?;
        let path = path_with_nmstatectl()?;
        let wrapper = node.wrapper();
        // Every step execs the next, so the PID ends up the handler's.
        let child = Command::new(&wrapper[0])
            .args(&wrapper[1..])
            .args(["unshare", "-m", "--propagation", "private"])
            .args(["sh", "-c", PRIVATE_TMP, "sh"])
            .arg(sandbox.path())
            .arg(binary)
            .arg("--zap-time-encoding=iso8601")
            .env("NODE_NAME", name)
            .env("KUBECONFIG", "/tmp/kubeconfig")
            .env("NMSTATE_INSTANCE_NODE_LOCK_FILE", "/tmp/handler_lock")
            .env("PROBE_DNS_HOST", PROBE_DNS_HOST)
            // The node's own loopback (the DaemonSet's default is :8089).
            .env("METRICS_BIND_ADDRESS", "127.0.0.1:8089")
            .env("ENABLE_PROFILER", "False")
            .env("PATH", path)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        Ok(HandlerProcess {
            child: Some(child),
            sandbox,
        })
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or_default()
    }

    /// Fails unless the process is the handler itself by now (not a step
    /// of the wrapper) and still running.
    fn check_running(&mut self) -> Result<()> {
        let pid = self.pid();
        if let Some(child) = self.child.as_mut()
            && let Some(status) = child.try_wait()?
        {
            bail!("the handler exited: {status}\n{}", self.log_tail(30));
        }
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm"))?;
        if comm.trim() != "handler" {
            bail!("PID {pid} is {comm:?}, not the handler");
        }
        Ok(())
    }

    fn log_tail(&self, lines: usize) -> String {
        let log =
            std::fs::read_to_string(self.sandbox.path().join("handler.log")).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// SIGTERM, then SIGKILL after 10 s; by its own PID.
    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
        let _ = signal::kill(pid, signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) | Err(_) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for HandlerProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `PATH` with the directory of `nmstatectl` in it (`cargo install` puts
/// it in `~/.cargo/bin`, which a root shell may not have on `PATH`).
fn path_with_nmstatectl() -> Result<OsString> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    if !dirs.iter().any(|dir| dir.join("nmstatectl").is_file()) {
        let cargo_bin = std::env::var_os("HOME")
            .map(|home| PathBuf::from(home).join(".cargo/bin"))
            .filter(|dir| dir.join("nmstatectl").is_file())
            .context("nmstatectl is not on PATH (hack/setup-deps.sh installs it)")?;
        dirs.insert(0, cargo_bin);
    }
    Ok(std::env::join_paths(dirs)?)
}

#[cfg(test)]
mod tests {
    use super::{super::agent::children_cpu_from_stat, *};

    #[test]
    fn bridge_ports_get_an_empty_vlan_section() {
        let mut policy = json!({"spec": {"desiredState": {"interfaces": [
            {"name": "br1", "type": "linux-bridge",
             "bridge": {"port": [{"name": "eth1"}, {"name": "eth2", "vlan": {"mode": "access"}}]}},
            {"name": "eth3", "type": "ethernet"},
        ]}}});
        without_default_vlan_trunk(&mut policy);
        let ports = &policy["spec"]["desiredState"]["interfaces"][0]["bridge"]["port"];
        assert_eq!(ports[0]["vlan"], json!({}));
        assert_eq!(ports[1]["vlan"], json!({"mode": "access"}));
        assert!(
            policy["spec"]["desiredState"]["interfaces"][1]
                .get("bridge")
                .is_none()
        );
    }

    #[test]
    fn dns_answers_a_with_the_hub() {
        // ID 0x1234, RD, one question: probe.test A IN.
        let mut query = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        query.extend_from_slice(b"\x05probe\x04test\x00\x00\x01\x00\x01");
        let answer = dns_answer(&query).expect("an answer");
        assert_eq!(&answer[..4], &[0x12, 0x34, 0x85, 0x80]);
        assert_eq!(&answer[4..12], &[0, 1, 0, 1, 0, 0, 0, 0]);
        assert_eq!(&answer[12..query.len()], &query[12..]);
        assert_eq!(&answer[answer.len() - 4..], &[10, 77, 0, 1]);
        // AAAA: no records.
        let last = query.len() - 3;
        query[last] = 28;
        let answer = dns_answer(&query).expect("an answer");
        assert_eq!(&answer[4..12], &[0, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(answer.len(), query.len());
        // Not a query: a response, or truncated.
        assert_eq!(dns_answer(&answer), None);
        assert_eq!(dns_answer(&query[..15]), None);
    }

    #[test]
    fn children_cpu_from_proc_stat() {
        // utime 250, stime 30, cutime 700, cstime 55 ticks.
        let stat =
            "4242 (handler (x)) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 30 700 55 20 0 8 0";
        assert_eq!(
            children_cpu_from_stat(stat),
            Some(Duration::from_millis(7_550))
        );
        assert_eq!(children_cpu_from_stat("4242 (short) S 1"), None);
    }

    #[test]
    fn addresses_in_a_state() {
        let state = json!({"interfaces": [
            {"name": "eth1", "ipv4": {"address": [{"ip": "198.51.100.77", "prefix-length": 24}]}},
            {"name": "eth2", "ipv4": {"enabled": false}},
        ]});
        assert!(has_address(&state, "eth1", "198.51.100.77"));
        assert!(!has_address(&state, "eth2", "198.51.100.77"));
        assert!(!has_address(&json!({}), "eth1", "198.51.100.77"));
    }
}
