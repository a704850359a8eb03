//! Fault injection: policies roll out while the suite breaks the parts
//! they depend on, and invariants are checked on every event the watches
//! deliver (issue 12; the fault model in ARCHITECTURE.md is written from
//! what this suite shows).
//!
//! The cluster: a 3-member etcd, two `nmstate-apiserver` replicas behind a
//! balancer (one leads the controller), 50 hollow nodes (`nmstate-agent
//! --backend hollow`, two of them failing every apply of one policy) and
//! four NetworkManager namespace nodes (`edge-1`..`edge-4`), whose agents
//! reach the replicas through their `eth0` into the hub.
//!
//! Faults, all in the middle of rollouts: SIGKILL of the leading replica
//! (twice, each restarted), SIGKILL of the etcd raft leader (restarted),
//! SIGKILL of three hollow agents in the middle of an apply (restarted),
//! SIGSTOP of a hollow agent in the middle of an apply until its heartbeat
//! is past the grace period (then SIGCONT), `edge-3`'s link to the hub cut
//! in the middle of an apply until its heartbeat is past the grace period,
//! and the policy that gives `edge-1`'s uplink a /32 nobody routes to
//! (`maxUnavailable: 1` over `edge-1` and `edge-2`).
//!
//! The invariants are in `nmstate_e2e::faults::invariants`; on top of
//! them this suite checks acknowledged writes (a ledger of annotation
//! writes made throughout), that `edge-2` keeps its address the whole
//! time, and the NetworkManager nodes' addresses at the end. It prints a
//! report and fails on any violation.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    ffi::OsString,
    io::Write,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use nmstate_e2e::{
    agent::{AgentOptions, AgentProcess},
    faults::{
        Control,
        invariants::{Checker, Expected},
        order::Merger,
        watch::{Kind, Seen, follow, revision_of},
    },
    https::HttpsClient,
    netns::{HUB_ADDRESS, NetnsLab, NetnsNode},
};
use nmstate_openapi::{EnactmentPhase, condition::ENACTMENT_PROGRESSING_MESSAGE};
use serde_json::{Value, json};

const HOLLOW_NODES: usize = 50;
const EDGE_NODES: usize = 4;
/// The servers' `--node-heartbeat-grace-period`: agents renew their
/// heartbeat once a minute (checked every 15 s), so a live node's is at
/// most about 75 s old.
const GRACE: Duration = Duration::from_secs(90);
/// How often the controller re-plans without events (expired heartbeats
/// have none).
const CONTROLLER_RESYNC: Duration = Duration::from_secs(30);
/// The agents' probe timeout: a cut-off node knows it in seconds.
const PROBE_TIMEOUT: &str = "5s";
/// A bound for the whole rollout to settle once the faults are healed.
const SETTLE_LIMIT: Duration = Duration::from_secs(150);
/// A bound for the whole test, before the final checks.
const TEST_LIMIT: Duration = Duration::from_secs(330);
const STATES: &str = "/apis/nmstate.io/v1/nodenetworkstates";
const POLICIES: &str = "/apis/nmstate.io/v1/nodenetworkconfigurationpolicies";
const LEDGER: &str = "ledger";
const SEQ: &str = "faults.nmstate.io/seq";
/// The uplink address nobody routes to (TEST-NET-1).
const CUT_OFF_ADDRESS: &str = "192.0.2.254";

fn hollow_name(i: usize) -> String {
    format!("hollow-{i:02}")
}

/// Hollow nodes 1-30 take two policies at once, 31-40 a policy two of
/// them fail, 41-50 a policy with `maxUnavailable: 1`.
fn hollow_group(i: usize) -> &'static str {
    match i {
        1..=30 => "wave",
        31..=40 => "doomed",
        _ => "hold",
    }
}

fn edge_group(i: usize) -> &'static str {
    if i <= 2 { "uplink" } else { "link" }
}

/// What the suite did and found outside the checker.
#[derive(Default)]
struct Log {
    started: Option<Instant>,
    faults: Vec<String>,
    injected: usize,
    violations: Vec<String>,
}

type Shared<T> = Arc<Mutex<T>>;

fn lock<T>(shared: &Shared<T>) -> std::sync::MutexGuard<'_, T> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

/// Records a fault injected.
fn fault(log: &Shared<Log>, what: String) {
    note(log, what, true);
}

/// Records a step that is not a fault (a restart, a heal).
fn step(log: &Shared<Log>, what: String) {
    note(log, what, false);
}

fn note(log: &Shared<Log>, what: String, is_fault: bool) {
    let mut log = lock(log);
    let at = log
        .started
        .map(|s| s.elapsed().as_secs_f32())
        .unwrap_or_default();
    let mark = if is_fault { "fault" } else { "     " };
    log.faults.push(format!("{at:6.1}s {mark}  {what}"));
    if is_fault {
        log.injected += 1;
    }
}

fn violation(log: &Shared<Log>, what: String) {
    lock(log).violations.push(what);
}

/// The newest status of each enactment as the watches delivered it (not
/// yet in revision order): what the fault triggers look at.
#[derive(Default)]
struct Latest {
    enactments: HashMap<String, Value>,
    revisions: BTreeMap<String, i64>,
}

impl Latest {
    /// Whether the agent of `enactment` has said it is applying.
    fn applying(&self, enactment: &str) -> bool {
        self.enactments.get(enactment).is_some_and(|object| {
            object["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| {
                    c["type"] == "Progressing"
                        && c["status"] == "True"
                        && c["message"] == ENACTMENT_PROGRESSING_MESSAGE
                })
        })
    }
}

/// The agents, by node; replaced ones are kept for their logs.
#[derive(Default)]
struct Agents {
    running: BTreeMap<String, (AgentProcess, Vec<String>, AgentOptions)>,
    replaced: Vec<AgentProcess>,
    kubeconfigs: BTreeMap<String, PathBuf>,
}

impl Agents {
    fn start(&mut self, node: &str, args: Vec<String>, options: AgentOptions) -> Result<()> {
        let kubeconfig = &self.kubeconfigs[node];
        let borrowed: Vec<&str> = args.iter().map(String::as_str).collect();
        let agent = AgentProcess::start_with(node, kubeconfig, &borrowed, &options)?;
        if let Some((old, _, _)) = self.running.insert(node.to_owned(), (agent, args, options)) {
            self.replaced.push(old);
        }
        Ok(())
    }

    fn restart(&mut self, node: &str) -> Result<()> {
        let (_, args, options) = self.running.get(node).context("no such agent")?;
        let (args, options) = (args.clone(), options.clone());
        self.start(node, args, options)
    }

    fn get(&self, node: &str) -> &AgentProcess {
        &self.running[node].0
    }

    fn get_mut(&mut self, node: &str) -> &mut AgentProcess {
        &mut self.running.get_mut(node).expect("a started agent").0
    }
}

fn policy(name: &str, group: &str, max_unavailable: Value, desired: Value) -> Value {
    json!({
        "apiVersion": "nmstate.io/v1",
        "kind": "NodeNetworkConfigurationPolicy",
        "metadata": {"name": name},
        "spec": {
            "nodeSelector": {"faults.nmstate.io/group": group},
            "maxUnavailable": max_unavailable,
            "desiredState": desired,
        },
    })
}

fn address(interface: &str, ip: &str, prefix: u8) -> Value {
    json!({"interfaces": [{
        "name": interface, "state": "up",
        "ipv4": {"enabled": true, "dhcp": false, "address": [{"ip": ip, "prefix-length": prefix}]},
    }]})
}

/// The policies, with what each must end as.
fn policies() -> Vec<(Value, Expected)> {
    let hollow = |group: &str| -> BTreeSet<String> {
        (1..=HOLLOW_NODES)
            .filter(|i| hollow_group(*i) == group)
            .map(hollow_name)
            .collect()
    };
    let edges = |group: &str| -> BTreeSet<String> {
        (1..=EDGE_NODES)
            .filter(|i| edge_group(*i) == group)
            .map(|i| format!("edge-{i}"))
            .collect()
    };
    let expected = |nodes, max_unavailable, ends| Expected {
        nodes,
        max_unavailable,
        ends,
        never_available: false,
    };
    let mut uplink = address("eth0", CUT_OFF_ADDRESS, 32);
    uplink["interfaces"][0]["type"] = json!("veth");
    vec![
        (
            policy("wave-a", "wave", json!(3), address("eth1", "10.10.0.1", 24)),
            expected(hollow("wave"), 3, Some("Available")),
        ),
        (
            policy(
                "wave-b",
                "wave",
                json!("7%"),
                address("eth2", "10.20.0.1", 24),
            ),
            expected(hollow("wave"), 3, Some("Available")),
        ),
        (
            policy(
                "doomed",
                "doomed",
                json!(2),
                json!({"interfaces": [{"name": "eth1", "type": "ethernet", "state": "up",
                                       "description": "doomed-marker"}]}),
            ),
            expected(hollow("doomed"), 2, Some("Degraded")),
        ),
        (
            policy(
                "hold",
                "hold",
                json!(1),
                json!({"interfaces": [{"name": "eth1", "type": "ethernet", "state": "up",
                                       "description": "hold"}]}),
            ),
            expected(hollow("hold"), 1, Some("Available")),
        ),
        (
            policy(
                "linkdown",
                "link",
                json!(1),
                address("eth1", "198.51.100.1", 24),
            ),
            // edge-3's link goes down in the middle of its apply: its
            // probes still fail after the rollback, so the failure is not
            // the policy's and is retried once the link is back.
            expected(edges("link"), 1, Some("Available")),
        ),
        (
            policy("uplink", "uplink", json!(1), uplink),
            Expected {
                never_available: true,
                ..expected(edges("uplink"), 1, Some("Degraded"))
            },
        ),
        (
            policy(LEDGER, "none", json!(1), address("eth1", "10.30.0.1", 24)),
            expected(BTreeSet::new(), 1, Some("Ignored")),
        ),
    ]
}

/// Writes the report where the test harness does not capture it.
fn print(text: &str) {
    let _ = std::io::stderr().write_all(text.as_bytes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollouts_keep_their_invariants_under_faults() -> Result<()> {
    let _turn = nmstate_e2e::suite::turn(module_path!());
    let started = Instant::now();
    let log: Shared<Log> = Arc::new(Mutex::new(Log {
        started: Some(started),
        ..Log::default()
    }));
    let logs = tempfile::Builder::new().prefix("nmst-faults").tempdir()?;
    let lab = NetnsLab::start(EDGE_NODES, true).await?;
    let hub = PathBuf::from("/run/netns").join(lab.hub());
    let grace = format!("{}s", GRACE.as_secs());
    let control = Control::start(
        3,
        2,
        &[
            "--tls-sni-hosts",
            HUB_ADDRESS,
            "--node-heartbeat-grace-period",
            &grace,
        ],
        Some((&hub, HUB_ADDRESS)),
        logs.path(),
    )
    .await?;
    let admin = control.admin()?;
    let loopback = control.balancer().loopback();
    let in_hub = control.balancer().namespace().context("no hub listener")?;

    // Agents.
    let agents: Shared<Agents> = Arc::new(Mutex::new(Agents::default()));
    for i in 1..=HOLLOW_NODES {
        let node = hollow_name(i);
        let kubeconfig = logs.path().join(format!("{node}.kubeconfig"));
        control.node_kubeconfig(&node, loopback, &kubeconfig)?;
        let group = hollow_group(i);
        let delay = match group {
            "wave" => "1s",
            "hold" => "3s",
            _ => "300ms",
        };
        let mut args: Vec<String> = [
            "--backend",
            "hollow",
            "--probe-timeout",
            PROBE_TIMEOUT,
            "--hollow-apply-delay",
            delay,
            "--node-labels",
        ]
        .map(str::to_owned)
        .to_vec();
        args.push(format!(
            "kubernetes.io/hostname={node},faults.nmstate.io/group={group}"
        ));
        if i == 31 || i == 32 {
            args.extend([
                "--hollow-fail-marker".to_owned(),
                "doomed-marker".to_owned(),
            ]);
        }
        let mut agents = lock(&agents);
        agents.kubeconfigs.insert(node.clone(), kubeconfig);
        agents.start(&node, args, AgentOptions::default())?;
    }
    let mut edge_addresses = BTreeMap::new();
    for i in 1..=EDGE_NODES {
        let node = format!("edge-{i}");
        let netns_node = lab.node(i);
        edge_addresses.insert(node.clone(), format!("{}/24", netns_node.address));
        let kubeconfig = logs.path().join(format!("{node}.kubeconfig"));
        control.node_kubeconfig(&node, in_hub, &kubeconfig)?;
        let args: Vec<String> = vec![
            "--backend".into(),
            "nm".into(),
            "--probe-timeout".into(),
            PROBE_TIMEOUT.into(),
            "--node-labels".into(),
            format!(
                "kubernetes.io/hostname={node},faults.nmstate.io/group={}",
                edge_group(i)
            ),
        ];
        let options = AgentOptions {
            wrapper: wrapper(netns_node),
            ..AgentOptions::default()
        };
        let mut agents = lock(&agents);
        agents.kubeconfigs.insert(node.clone(), kubeconfig);
        agents.start(&node, args, options)?;
    }
    let nodes = HOLLOW_NODES + EDGE_NODES;
    wait_for_ready_nodes(&admin, nodes, &agents).await?;
    let setup = started.elapsed();

    // Watches, the merge and the checker.
    let mut expected_by_name = BTreeMap::new();
    let policies = policies();
    for (policy, expected) in &policies {
        expected_by_name.insert(
            policy["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            expected.clone(),
        );
    }
    let mut checker = Checker::new(expected_by_name);
    checker.never_before_end("edge-1.uplink", "edge-2.uplink");
    let checker = Arc::new(Mutex::new(checker));
    let latest: Shared<Latest> = Arc::default();
    let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel::<Seen>();
    let watches = [
        follow(admin.clone(), Kind::Policy, 20, sender.clone()),
        follow(admin.clone(), Kind::Enactment, 25, sender.clone()),
    ];
    drop(sender);
    let (stop_checking, mut stopping) = tokio::sync::watch::channel(false);
    let merger_task = {
        let checker = checker.clone();
        let latest = latest.clone();
        tokio::spawn(async move {
            let mut merger = Merger::new(&[Kind::Policy, Kind::Enactment], Duration::from_secs(1));
            let take = |seen: Seen, merger: &mut Merger| {
                if let Seen::Event {
                    kind,
                    object,
                    revision,
                    ..
                } = &seen
                {
                    let mut latest = lock(&latest);
                    let name = object["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned();
                    latest
                        .revisions
                        .insert(format!("{kind:?}/{name}"), *revision);
                    if *kind == Kind::Enactment {
                        latest.enactments.insert(name, object.clone());
                    }
                }
                merger.push(seen, Instant::now());
            };
            loop {
                tokio::select! {
                    seen = receiver.recv() => match seen {
                        Some(seen) => take(seen, &mut merger),
                        None => break,
                    },
                    _ = stopping.changed() => break,
                    () = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
                for seen in merger.ready(Instant::now()) {
                    lock(&checker).apply(&seen);
                }
            }
            while let Ok(seen) = receiver.try_recv() {
                take(seen, &mut merger);
            }
            for seen in merger.flush() {
                lock(&checker).apply(&seen);
            }
            (merger.late, merger.longest_reconnect, merger.most_waiting)
        })
    };

    // The ledger: acknowledged writes throughout the faults.
    let ledger_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ledger = {
        let admin = admin.clone();
        let stop = ledger_stop.clone();
        tokio::spawn(async move {
            let mut acknowledged: Vec<(u64, i64)> = Vec::new();
            let mut unanswered = 0u64;
            let mut seq = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                seq += 1;
                let patch = json!({"metadata": {"annotations": {SEQ: seq.to_string()}}});
                let path = format!("{POLICIES}/{LEDGER}");
                let write = admin.send_json("PATCH", &path, &patch);
                match tokio::time::timeout(Duration::from_secs(10), write).await {
                    Ok(Ok(response)) if response.status.is_success() => {
                        let object: Value =
                            serde_json::from_str(&response.body).unwrap_or_default();
                        acknowledged.push((seq, revision_of(&object).unwrap_or_default()));
                    }
                    _ => unanswered += 1,
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            (acknowledged, unanswered)
        })
    };

    // The policies, all at once.
    for (policy, _) in &policies {
        let response = admin.send_json("POST", POLICIES, policy).await?;
        if !response.status.is_success() {
            bail!(
                "creating {}: {} {}",
                policy["metadata"]["name"],
                response.status,
                response.body
            );
        }
    }
    let rollout_started = Instant::now();
    step(&log, "created 7 policies (maxUnavailable 1 to 3)".into());
    fault(
        &log,
        format!("policy uplink: edge-1's uplink eth0 gets {CUT_OFF_ADDRESS}/32"),
    );

    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    // Edge-2 keeps its address the whole time; how often edge-1 loses its
    // own is counted (each time is one cut-off of the node).
    let sampler = {
        let (first, second) = (lab.node(1).clone(), lab.node(2).clone());
        let original = edge_addresses["edge-2"].clone();
        let log = log.clone();
        let sampling = sampling.clone();
        tokio::spawn(async move {
            let (mut samples, mut cut_offs, mut was_cut_off) = (0u64, 0u64, false);
            let cut_off = format!("{CUT_OFF_ADDRESS}/32");
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                match second.ipv4_addresses("eth0").await {
                    Ok(addresses) if addresses == vec![original.clone()] => {}
                    Ok(addresses) => violation(
                        &log,
                        format!("edge-2's eth0 has {addresses:?}, not [{original}]"),
                    ),
                    Err(error) => violation(&log, format!("reading edge-2's eth0: {error:#}")),
                }
                let is_cut_off = first
                    .ipv4_addresses("eth0")
                    .await
                    .is_ok_and(|addresses| addresses.contains(&cut_off));
                if is_cut_off && !was_cut_off {
                    cut_offs += 1;
                }
                was_cut_off = is_cut_off;
                samples += 1;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            (samples, cut_offs)
        })
    };

    // The faults, concurrently.
    let control = Arc::new(tokio::sync::Mutex::new(control));
    let leader_kills = {
        let control = control.clone();
        let log = log.clone();
        async move {
            for at in [3, 40] {
                sleep_until(rollout_started + Duration::from_secs(at)).await;
                kill_leader(&control, &log).await?;
            }
            anyhow::Ok(())
        }
    };
    let etcd_kill = {
        let control = control.clone();
        let log = log.clone();
        async move {
            sleep_until(rollout_started + Duration::from_secs(14)).await;
            let member = control.lock().await.etcd.leader().await?;
            control.lock().await.etcd.member(member).kill();
            fault(
                &log,
                format!("SIGKILL etcd member-{member} (the raft leader)"),
            );
            tokio::time::sleep(Duration::from_secs(5)).await;
            control.lock().await.etcd.member(member).restart().await?;
            step(&log, format!("restarted etcd member-{member}"));
            anyhow::Ok(())
        }
    };
    let agent_kills = {
        let agents = agents.clone();
        let latest = latest.clone();
        let log = log.clone();
        async move {
            // Three wave nodes, one after another, each caught applying
            // (its agent said so; the hollow apply takes a second).
            let mut killed: Vec<String> = Vec::new();
            for _ in 0..3 {
                let mut node = String::new();
                wait_for("a wave node applying", Duration::from_secs(120), || {
                    let latest = lock(&latest);
                    let found = (1..=HOLLOW_NODES)
                        .filter(|i| hollow_group(*i) == "wave")
                        .map(hollow_name)
                        .filter(|n| !killed.contains(n))
                        .find(|n| {
                            latest.applying(&format!("{n}.wave-a"))
                                || latest.applying(&format!("{n}.wave-b"))
                        });
                    if let Some(found) = found {
                        node = found;
                        return true;
                    }
                    false
                })
                .await?;
                killed.push(node.clone());
                lock(&agents).get_mut(&node).kill()?;
                fault(
                    &log,
                    format!("SIGKILL agent {node} in the middle of an apply"),
                );
                tokio::time::sleep(Duration::from_secs(1)).await;
                lock(&agents).restart(&node)?;
                step(&log, format!("restarted agent {node}"));
                // Spread over the rollout, but well within it: the two
                // wave policies (30 nodes, 3 at a time, 1 s applies) can
                // be done 25 s after the start, and a third kill 11 s
                // after the second once found no wave node left to catch.
                tokio::time::sleep(Duration::from_secs(4)).await;
            }
            anyhow::Ok(())
        }
    };
    let pause = {
        let agents = agents.clone();
        let latest = latest.clone();
        let log = log.clone();
        let admin = admin.clone();
        async move {
            let hold: Vec<String> = (1..=HOLLOW_NODES)
                .filter(|i| hollow_group(*i) == "hold")
                .map(hollow_name)
                .collect();
            let mut paused = String::new();
            wait_for("a hold node applying", Duration::from_secs(120), || {
                let latest = lock(&latest);
                if let Some(node) = hold.iter().find(|n| latest.applying(&format!("{n}.hold"))) {
                    paused = node.clone();
                    return true;
                }
                false
            })
            .await?;
            lock(&agents).get(&paused).pause()?;
            fault(
                &log,
                format!("SIGSTOP agent {paused} in the middle of an apply"),
            );
            let dark = wait_until_dark(&admin, &paused).await?;
            lock(&agents).get(&paused).resume()?;
            step(
                &log,
                format!("SIGCONT agent {paused} (heartbeat {dark}s old)"),
            );
            anyhow::Ok(())
        }
    };
    let link_cut = {
        let latest = latest.clone();
        let log = log.clone();
        let admin = admin.clone();
        let node = lab.node(3).clone();
        let hub = lab.hub().to_owned();
        async move {
            wait_for("edge-3 applying", Duration::from_secs(120), || {
                lock(&latest).applying("edge-3.linkdown")
            })
            .await?;
            let port = hub_port(&node.name).await?;
            ip(&["-n", &hub, "link", "set", &port, "nomaster"]).await?;
            fault(
                &log,
                "cut edge-3's link to the hub in the middle of an apply".into(),
            );
            let dark = wait_until_dark(&admin, "edge-3").await;
            ip(&["-n", &hub, "link", "set", &port, "master", "hub0"]).await?;
            step(
                &log,
                format!("restored edge-3's link (heartbeat {}s old)", dark?),
            );
            anyhow::Ok(())
        }
    };
    let faults = tokio::try_join!(leader_kills, etcd_kill, agent_kills, pause, link_cut);
    let faults_took = rollout_started.elapsed();

    // Settle, then catch the watches up with the store and finish.
    // Bounded: the whole test stays within about five and a half minutes.
    let limit = SETTLE_LIMIT.min((started + TEST_LIMIT).saturating_duration_since(Instant::now()));
    let settled = if faults.is_ok() {
        wait_for("every policy settled", limit, || lock(&checker).settled())
            .await
            .is_ok()
    } else {
        false
    };
    // As the checker saw it then (before the final catch-up).
    let unsettled = lock(&checker).unsettled();
    let rollout_took = rollout_started.elapsed();
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    ledger_stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (samples, cut_offs) = sampler.await?;
    let (acknowledged, unanswered) = ledger.await?;
    let caught_up = catch_up(&admin, &latest).await;
    for watch in &watches {
        watch.abort();
    }
    let _ = stop_checking.send(true);
    let (late, longest_reconnect, most_waiting) = merger_task.await?;

    // The checks outside the checker.
    let mut checker = Arc::try_unwrap(checker)
        .map_err(|_| anyhow::anyhow!("checker still shared"))?
        .into_inner()
        .unwrap_or_else(|e| e.into_inner());
    if let Err(error) = &faults {
        checker.violation(format!("a fault could not be injected: {error:#}"));
    }
    if !settled {
        checker.violation(format!(
            "the policies did not settle within {limit:?} of the last fault: {}",
            unsettled.join("; ")
        ));
    }
    if let Err(error) = caught_up {
        checker.violation(format!(
            "the watches did not catch up with the store: {error:#}"
        ));
    }
    checker.finish();
    check_ledger(&mut checker, &acknowledged);
    let uplink = checker.enactment_conditions("edge-1.uplink");
    let probe_reported = uplink.as_array().into_iter().flatten().any(|c| {
        c["type"] == "Failing"
            && c["status"] == "True"
            && c["message"].as_str().is_some_and(|m| m.contains("probe"))
    });
    if checker.phase("edge-1.uplink") != Some(EnactmentPhase::Failed) || !probe_reported {
        checker.violation(format!(
            "edge-1.uplink does not end Failing with the probe's failure: {uplink}"
        ));
    }
    // docs/api.md: a probe failure is not retried, so the policy cuts
    // edge-1 off once, not once per retry.
    if cut_offs > 1 {
        checker.violation(format!(
            "edge-1 was cut off {cut_offs} times: a probe failure must not be retried"
        ));
    }
    for i in 1..=EDGE_NODES {
        let node = format!("edge-{i}");
        let addresses = lab.node(i).ipv4_addresses("eth0").await?;
        if addresses != vec![edge_addresses[&node].clone()] {
            checker.violation(format!("{node}'s eth0 ends with {addresses:?}"));
        }
    }
    for message in std::mem::take(&mut lock(&log).violations) {
        checker.violation(message);
    }

    // The report.
    let report = checker.report().clone();
    let log = lock(&log);
    let mut text = String::from("\n== fault-injection report\n");
    text += &format!(
        "cluster: 3 etcd members, 2 apiserver replicas, {HOLLOW_NODES} hollow nodes, \
         {EDGE_NODES} NetworkManager nodes (set up in {:.1}s)\n",
        setup.as_secs_f32()
    );
    text += &format!("faults injected: {}\n", log.injected);
    for line in &log.faults {
        text += &format!("  {line}\n");
    }
    text += &format!(
        "events checked: {} (watch connections {:?}, re-lists {}, out of order {late})\n",
        report.events, report.connections, report.relists
    );
    text += &format!(
        "watch ends: {:?}; longest reconnect {:.1}s; most events waiting for order {most_waiting}\n",
        report.ends,
        longest_reconnect.as_secs_f32()
    );
    text += &format!("most in flight per policy: {:?}\n", report.max_in_flight);
    text += "policies at the end:\n";
    for (name, expected) in checker.expected() {
        text += &format!(
            "  {name:<8} maxUnavailable {} over {} nodes: {}\n",
            expected.max_unavailable,
            expected.nodes.len(),
            checker.policy_summary(name)
        );
    }
    text += &format!(
        "uplink: edge-1 {:?} {}, seen cut off {cut_offs} time(s); edge-2 {:?}\n",
        checker.phase("edge-1.uplink"),
        failing_message(&uplink),
        checker.phase("edge-2.uplink")
    );
    text += &format!(
        "acknowledged writes: {} (unanswered {unanswered}); edge-2 address samples: {samples}\n",
        acknowledged.len()
    );
    text += &format!(
        "durations: faults {:.1}s, rollout settled after {:.1}s, whole test {:.1}s\n",
        faults_took.as_secs_f32(),
        rollout_took.as_secs_f32(),
        started.elapsed().as_secs_f32()
    );
    text += &format!("invariant violations: {}\n", report.violations);
    for message in &report.messages {
        text += &format!("  - {message}\n");
    }
    print(&text);
    if report.violations > 0 {
        let agents = lock(&agents);
        let tails: String = ["edge-1", "edge-3"]
            .iter()
            .map(|node| {
                let logs = agents.get(node).logs();
                let lines: Vec<&str> = logs.lines().collect();
                format!(
                    "--- {node} (last lines)\n{}\n",
                    lines[lines.len().saturating_sub(15)..].join("\n")
                )
            })
            .collect();
        bail!(
            "{} invariant violations (see the report above)\n{tails}",
            report.violations
        );
    }
    Ok(())
}

/// `netns-node.sh exec DIR NODE`, to run an agent inside `node`.
fn wrapper(node: &NetnsNode) -> Vec<OsString> {
    let command = node.command("nmstate-agent");
    let command = command.as_std();
    let mut wrapper = vec![command.get_program().to_owned()];
    wrapper.extend(command.get_args().map(ToOwned::to_owned));
    // The program placeholder: AgentProcess appends the binary itself.
    wrapper.pop();
    wrapper
}

async fn sleep_until(at: Instant) {
    tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await;
}

/// Polls `check` every 20 ms (fault triggers must catch an apply in its
/// stride); a bound for failing, not a measurement.
async fn wait_for(what: &str, limit: Duration, mut check: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + limit;
    while !check() {
        if Instant::now() > deadline {
            bail!("{what}: not within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

async fn kill_leader(control: &tokio::sync::Mutex<Control>, log: &Shared<Log>) -> Result<()> {
    let leader = wait_for_leader(control).await?;
    control.lock().await.kill(leader)?;
    let killed = Instant::now();
    fault(
        log,
        format!("SIGKILL apiserver replica {leader} (the controller's leader)"),
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    control.lock().await.restart(leader).await?;
    step(log, format!("restarted apiserver replica {leader}"));
    let next = wait_for_leader(control).await?;
    step(
        log,
        format!(
            "replica {next} leads the controller, {:.1}s after the kill",
            killed.elapsed().as_secs_f32()
        ),
    );
    Ok(())
}

/// The replica that leads the controller, once one does.
async fn wait_for_leader(control: &tokio::sync::Mutex<Control>) -> Result<usize> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(leader) = control.lock().await.leader().await {
            return Ok(leader);
        }
        if Instant::now() > deadline {
            bail!("no replica leads the controller");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until every node has reported a NodeNetworkState with `Ready`.
async fn wait_for_ready_nodes(
    admin: &HttpsClient,
    nodes: usize,
    agents: &Shared<Agents>,
) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let ready = match admin.get(STATES).await {
            Ok(response) if response.status.is_success() => {
                let list: Value = serde_json::from_str(&response.body)?;
                list["items"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|state| heartbeat_age(state).is_some())
                    .count()
            }
            _ => 0,
        };
        if ready == nodes {
            return Ok(());
        }
        if Instant::now() > deadline {
            let agents = lock(agents);
            bail!(
                "{ready}/{nodes} nodes ready; edge-1's agent:\n{}",
                agents.get("edge-1").logs()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// How old a NodeNetworkState's `Ready` heartbeat is, in seconds (if it is
/// `Ready`).
fn heartbeat_age(state: &Value) -> Option<i64> {
    let ready = state["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready" && c["status"] == "True")?;
    let heartbeat: k8s_openapi::jiff::Timestamp =
        ready["lastHeartbeatTime"].as_str()?.parse().ok()?;
    Some(k8s_openapi::jiff::Timestamp::now().as_second() - heartbeat.as_second())
}

/// Waits until `node`'s heartbeat is older than the grace period plus the
/// controller's resync (so the controller has planned at least once with
/// the node NotReady); returns its age.
async fn wait_until_dark(admin: &HttpsClient, node: &str) -> Result<i64> {
    let dark = i64::try_from((GRACE + CONTROLLER_RESYNC + Duration::from_secs(5)).as_secs())?;
    let deadline = Instant::now() + GRACE + CONTROLLER_RESYNC + Duration::from_secs(60);
    loop {
        if let Ok(response) = admin.get(&format!("{STATES}/{node}")).await
            && response.status.is_success()
        {
            let state: Value = serde_json::from_str(&response.body)?;
            if let Some(age) = heartbeat_age(&state)
                && age > dark
            {
                return Ok(age);
            }
        }
        if Instant::now() > deadline {
            bail!("{node}'s heartbeat did not age past {dark}s");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The hub-side name of a node's eth0 (as `hack/netns-node.sh` names it).
async fn hub_port(namespace: &str) -> Result<String> {
    let output = tokio::process::Command::new("sh")
        .args(["-c", "printf '%s' \"$1\" | md5sum", "sh", namespace])
        .output()
        .await?;
    let digest = String::from_utf8(output.stdout)?;
    Ok(format!("p{}", digest.get(..12).context("md5sum output")?))
}

async fn ip(args: &[&str]) -> Result<()> {
    let output = tokio::process::Command::new("ip")
        .args(args)
        .output()
        .await?;
    if !output.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// Waits until the watches have delivered every object the store holds
/// now, at its current revision.
async fn catch_up(admin: &HttpsClient, latest: &Shared<Latest>) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    for kind in [Kind::Policy, Kind::Enactment] {
        let response = admin.get(kind.path()).await?;
        if !response.status.is_success() {
            bail!("listing: {} {}", response.status, response.body);
        }
        let list: Value = serde_json::from_str(&response.body)?;
        for item in list["items"].as_array().into_iter().flatten() {
            let name = item["metadata"]["name"].as_str().unwrap_or_default();
            let revision = revision_of(item).unwrap_or_default();
            let key = format!("{kind:?}/{name}");
            let left = deadline.saturating_duration_since(Instant::now());
            wait_for(&format!("{key} at {revision}"), left, || {
                lock(latest)
                    .revisions
                    .get(&key)
                    .is_some_and(|seen| *seen >= revision)
            })
            .await?;
        }
    }
    // What is waiting in the merge is handed on by the flush.
    Ok(())
}

/// The message of a true `Failing` condition among `conditions`.
fn failing_message(conditions: &Value) -> String {
    conditions
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Failing" && c["status"] == "True")
        .map(|c| format!("Failing: {:?}", c["message"].as_str().unwrap_or_default()))
        .unwrap_or_else(|| "not Failing".to_owned())
}

/// The ledger's sequence number in a policy's annotations.
fn ledger_seq(annotations: &Value) -> Option<u64> {
    annotations[SEQ].as_str()?.parse().ok()
}

/// Every acknowledged ledger write was seen by the watch at its revision
/// with its value, and the last one survived.
fn check_ledger(checker: &mut Checker, acknowledged: &[(u64, i64)]) {
    let history: HashMap<i64, Value> = checker.policy_history(LEDGER).iter().cloned().collect();
    let relisted = checker.report().relists > 0;
    let mut messages = Vec::new();
    for (seq, revision) in acknowledged {
        match history.get(revision) {
            Some(annotations) if ledger_seq(annotations) == Some(*seq) => {}
            Some(annotations) => messages.push(format!(
                "acknowledged ledger write {seq} reads {} at its revision {revision}",
                annotations[SEQ]
            )),
            None if relisted => {}
            None => messages.push(format!(
                "acknowledged ledger write {seq} (revision {revision}) never seen by the watch"
            )),
        }
    }
    let last_seen = checker
        .policy_history(LEDGER)
        .last()
        .and_then(|(_, annotations)| ledger_seq(annotations))
        .unwrap_or_default();
    if let Some((seq, _)) = acknowledged.last()
        && last_seen < *seq
    {
        messages.push(format!(
            "the ledger ends at {last_seen}, {seq} was acknowledged"
        ));
    }
    for message in messages {
        checker.violation(message);
    }
}
