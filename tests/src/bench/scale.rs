//! `scale`: thousands of hollow nodes (`nmstate-hollow-fleet`: the real
//! agent code, many times in one process, each node with its own
//! connections, watches, 19 KB state and `Ready` heartbeat) against the
//! server, twice: on the embedded store with one replica, then on a
//! 3-member etcd with 2 replicas behind a TCP balancer (as the fault
//! suite runs them). For each:
//!
//! - start: time until every node has reported (`Ready`), the server's
//!   RSS holding the nodes, their states and their watches;
//! - rollout: a capture policy at `maxUnavailable: 10%` whose applies take
//!   `apply_delay` on every node: time to `Available N/N` (the floor is
//!   10 waves of one apply), server and etcd CPU, server writes per node
//!   (the controller's and the agents');
//! - watch fan-out: with every node's watches open, the time from sending
//!   a write of one node's state to a watcher of that node (the same
//!   field selector as its agent's) receiving the event;
//! - list: every node state through the server (JSON and Table);
//! - idle: over a window as long as the heartbeat period, the requests and
//!   writes per second of the idle fleet (heartbeats, watch renewals) and
//!   the CPU they cost the server, etcd and the fleet.
//!
//! The goal is convergence within 30 s at 5 000 nodes with 1 s applies.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http::StatusCode;
use serde_json::{Value, json};
use tokio::{
    process::{Child, Command},
    sync::mpsc,
};

use super::{
    Report, STATES, objects, process_cpu, progress, rollout, rss_bytes,
    stats::{self, round},
};
use crate::{
    apiserver::{ApiserverProcess, StartOptions},
    faults::Control,
    fleet,
    https::{HttpsClient, watch_lines},
};

/// The policy rolled out.
const POLICY: &str = "bench-scale";
/// Waves of a rollout at `maxUnavailable: 10%`.
const WAVES: u32 = 10;
/// Convergence goal at full size, in seconds.
const GOAL_SECONDS: f64 = 30.0;
/// The label the fan-out probe writes.
const PROBE_LABEL: &str = "bench.nmstate.io/probe";
/// Overrides the node count.
const NODES_VARIABLE: &str = "NMSTATE_BENCH_SCALE_NODES";
/// Runs only these stores (`embedded`, `etcd`, comma-separated), to look
/// at one closely; the goal needs both.
const STORES_VARIABLE: &str = "NMSTATE_BENCH_SCALE_STORES";
/// Table output of a list.
const TABLE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io";

/// How big a run is.
#[derive(Clone, Copy, Debug)]
struct Sizes {
    nodes: usize,
    apply_delay: Duration,
    ready_interval: Duration,
    idle_window: Duration,
    probe_watchers: usize,
    probe_writes: usize,
    list_runs: usize,
    start_rate: u32,
}

impl Sizes {
    fn new(quick: bool) -> Self {
        if quick {
            Self {
                nodes: 100,
                apply_delay: Duration::from_millis(300),
                // The agent's default: a shorter one makes a debug server
                // spend the run on 19 KB heartbeats.
                ready_interval: Duration::from_secs(60),
                idle_window: Duration::from_secs(3),
                probe_watchers: 10,
                probe_writes: 20,
                list_runs: 2,
                start_rate: 500,
            }
        } else {
            Self {
                nodes: 5_000,
                apply_delay: Duration::from_secs(1),
                // The agent's default (and least) heartbeat interval.
                ready_interval: Duration::from_secs(60),
                // A heartbeat is due after 60 s and seen within 15 s more.
                idle_window: Duration::from_secs(75),
                probe_watchers: 100,
                probe_writes: 300,
                list_runs: 3,
                start_rate: 200,
            }
        }
    }

    /// The least convergence time: one apply per wave.
    fn floor(&self) -> Duration {
        self.apply_delay * WAVES
    }
}

/// Where the nodes' state is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Store {
    /// One replica on its embedded store.
    Embedded,
    /// Two replicas on a 3-member etcd, behind a balancer.
    Etcd,
}

impl Store {
    fn name(self) -> &'static str {
        match self {
            Store::Embedded => "embedded",
            Store::Etcd => "etcd",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Store::Embedded => "embedded store, 1 replica",
            Store::Etcd => "3-member etcd, 2 replicas behind a balancer",
        }
    }
}

/// Runs the scenario with the server at `apiserver` and the fleet next to
/// it.
pub(super) async fn run(apiserver: &Path, quick: bool, report: &mut Report) -> Result<()> {
    let fleet = apiserver.with_file_name("nmstate-hollow-fleet");
    if !fleet.is_file() {
        bail!(
            "{} is missing; build it first: cargo build --release -p nmstate-e2e",
            fleet.display()
        );
    }
    let mut sizes = Sizes::new(quick);
    // Fewer (or more) nodes where the open file limit cannot hold 5 000.
    if let Some(nodes) = std::env::var(NODES_VARIABLE)
        .ok()
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|n| *n >= 10)
    {
        sizes.nodes = nodes;
    }
    // Each node holds one HTTP/2 connection: a descriptor in the fleet, in
    // the server, and two in the balancer; children inherit this.
    let limit = fleet::raise_open_file_limit_to(sizes.nodes as u64 * 3 + 4096);
    progress(format!("scale: open file limit {limit}"));
    report.line(format!(
        "scale: {} hollow nodes in one process, capture policy at maxUnavailable 10%, {:?} applies (floor {:.1} s); load average {}",
        sizes.nodes,
        sizes.apply_delay,
        stats::seconds(sizes.floor()),
        load_average()
    ));
    let stores: Vec<Store> = match std::env::var(STORES_VARIABLE) {
        Ok(names) => names
            .split(',')
            .map(|name| match name.trim() {
                "embedded" => Ok(Store::Embedded),
                "etcd" => Ok(Store::Etcd),
                other => bail!("{STORES_VARIABLE}: unknown store {other:?} (embedded, etcd)"),
            })
            .collect::<Result<_>>()?,
        Err(_) => vec![Store::Embedded, Store::Etcd],
    };
    let every_store = stores.len() == 2;
    let mut slowest: f64 = 0.0;
    for store in stores {
        match run_store(store, apiserver, &fleet, &sizes, report).await {
            Ok(converged) => slowest = slowest.max(converged),
            Err(error) => {
                // What the stores before it measured is not lost.
                progress(format!("scale: the figures so far:\n{report}"));
                return Err(error);
            }
        }
    }
    let floor = stats::seconds(sizes.floor());
    let goal_met = every_store && slowest <= GOAL_SECONDS;
    report.line(format!(
        "  goal: converged within {GOAL_SECONDS} s on both stores: {} (slowest {slowest:.2} s)",
        if goal_met {
            "met"
        } else if !every_store {
            "not measured (one store only)"
        } else {
            "MISSED"
        }
    ));
    report.figure("nodes", sizes.nodes);
    report.figure("converge_seconds", round(slowest, 3));
    report.figure("floor_seconds", round(floor, 3));
    // The share of the floor's speed reached: 1 is the floor itself.
    report.figure("ratio", round(floor / slowest.max(f64::EPSILON), 3));
    report.figure("goal_met", goal_met);
    report.figure("load_average", load_average());
    Ok(())
}

/// The servers of one store: one replica, or etcd and two replicas.
struct Servers {
    single: Option<ApiserverProcess>,
    control: Option<Control>,
    etcd_pids: Vec<u32>,
    /// Through the balancer, if there is one.
    admin: HttpsClient,
    /// What the fleet connects to.
    url: String,
    _logs: tempfile::TempDir,
}

impl Servers {
    async fn start(store: Store, binary: &Path) -> Result<Self> {
        let logs = tempfile::tempdir()?;
        match store {
            Store::Embedded => {
                let server = ApiserverProcess::start_with(
                    &[],
                    &StartOptions {
                        binary: Some(binary.to_path_buf()),
                        log_file: Some(logs.path().join("apiserver.log")),
                        ..StartOptions::default()
                    },
                )
                .await?;
                Ok(Self {
                    admin: server.admin_client()?,
                    url: format!("https://{}", server.address()),
                    single: Some(server),
                    control: None,
                    etcd_pids: Vec::new(),
                    _logs: logs,
                })
            }
            Store::Etcd => {
                let mut control =
                    Control::start_binary(Some(binary), 3, 2, &[], None, logs.path()).await?;
                let etcd_pids = (0..control.etcd.size())
                    .filter_map(|i| control.etcd.member(i).pid())
                    .collect();
                Ok(Self {
                    admin: control.admin()?,
                    url: format!("https://{}", control.balancer().loopback()),
                    single: None,
                    control: Some(control),
                    etcd_pids,
                    _logs: logs,
                })
            }
        }
    }

    fn replicas(&self) -> Vec<&ApiserverProcess> {
        match &self.control {
            Some(control) => control.replicas().collect(),
            None => self.single.iter().collect(),
        }
    }

    /// The data directory whose CA issues the nodes' certificates.
    fn ca_dir(&self) -> PathBuf {
        match (&self.control, &self.single) {
            (Some(control), _) => control.ca_dir().to_path_buf(),
            (None, Some(server)) => server.data_dir().to_path_buf(),
            (None, None) => PathBuf::new(),
        }
    }

    /// CPU used so far by the replicas and by etcd (nothing for the
    /// embedded store, which is inside the replica).
    fn cpu(&self) -> Result<(Duration, Duration)> {
        let sum = |pids: &mut dyn Iterator<Item = u32>| -> Result<Duration> {
            pids.map(|pid| process_cpu(&pid.to_string())).sum()
        };
        Ok((
            sum(&mut self.replicas().into_iter().map(ApiserverProcess::pid))?,
            sum(&mut self.etcd_pids.iter().copied())?,
        ))
    }

    /// The replicas' resident memory, summed.
    fn rss(&self) -> Result<u64> {
        self.replicas()
            .into_iter()
            .map(|r| rss_bytes(r.pid()))
            .sum()
    }

    /// Every replica's `/metrics`, asked directly.
    async fn metrics(&self) -> Result<Counters> {
        let mut counters = Counters::default();
        for replica in self.replicas() {
            let text = replica.admin_client()?.get("/metrics").await?.body;
            counters.add(&text);
        }
        Ok(counters)
    }
}

/// Request counters summed over the replicas.
#[derive(Clone, Copy, Debug, Default)]
struct Counters {
    reads: u64,
    writes: u64,
    state_writes: u64,
    controller_writes: u64,
    /// Policy reconciles (one policy here: the controller's batches).
    reconciles: u64,
}

impl Counters {
    fn add(&mut self, metrics: &str) {
        for line in metrics
            .lines()
            .filter_map(|line| line.strip_prefix("nmstate_apiserver_requests_total{"))
        {
            let Some(count) = line.rsplit(' ').next().and_then(|v| v.parse::<u64>().ok()) else {
                continue;
            };
            let read = ["get", "list", "watch"]
                .iter()
                .any(|verb| line.contains(&format!(r#"verb="{verb}""#)));
            if read {
                self.reads += count;
            } else {
                self.writes += count;
            }
        }
        self.state_writes += crate::metrics::state_writes(metrics);
        self.controller_writes += rollout::controller_writes_in(metrics) as u64;
        self.reconciles += metrics
            .lines()
            .find_map(|line| line.strip_prefix("nmstate_controller_reconciles_total "))
            .and_then(|value| value.trim().parse::<f64>().ok())
            .unwrap_or(0.0) as u64;
    }

    fn since(self, earlier: Counters) -> Counters {
        Counters {
            reads: self.reads.saturating_sub(earlier.reads),
            writes: self.writes.saturating_sub(earlier.writes),
            state_writes: self.state_writes.saturating_sub(earlier.state_writes),
            controller_writes: self
                .controller_writes
                .saturating_sub(earlier.controller_writes),
            reconciles: self.reconciles.saturating_sub(earlier.reconciles),
        }
    }
}

/// One store's run; returns its convergence time in seconds.
async fn run_store(
    store: Store,
    apiserver: &Path,
    fleet_binary: &Path,
    sizes: &Sizes,
    report: &mut Report,
) -> Result<f64> {
    let name = store.name();
    progress(format!("scale/{name}: starting {}", store.describe()));
    let servers = Servers::start(store, apiserver).await?;
    let fleet_log = tempfile::NamedTempFile::new()?;
    let started = Instant::now();
    let mut fleet = start_fleet(fleet_binary, &servers, sizes, fleet_log.path())?;
    let fleet_pid = fleet.id().context("the fleet exited at once")?;
    let result = measure(
        store, &servers, &mut fleet, fleet_pid, sizes, started, report,
    )
    .await;
    let _ = fleet.start_kill();
    let _ = fleet.wait().await;
    result.map_err(|error| {
        let log = std::fs::read_to_string(fleet_log.path()).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        error.context(format!(
            "scale/{name} failed; the fleet's log ends:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        ))
    })
}

fn start_fleet(binary: &Path, servers: &Servers, sizes: &Sizes, log: &Path) -> Result<Child> {
    let millis = |d: Duration| format!("{}ms", d.as_millis());
    Command::new(binary)
        .args(["--server", &servers.url])
        .arg("--data-dir")
        .arg(servers.ca_dir())
        .args(["--nodes", &sizes.nodes.to_string()])
        .args(["--apply-delay", &millis(sizes.apply_delay)])
        .args(["--ready-interval", &millis(sizes.ready_interval)])
        .args(["--start-rate", &sizes.start_rate.to_string()])
        // Its standard input ends when this process does: it stops then.
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log)?)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("spawning {}", binary.display()))
}

/// The measurements of one store, with the fleet running.
async fn measure(
    store: Store,
    servers: &Servers,
    fleet: &mut Child,
    fleet_pid: u32,
    sizes: &Sizes,
    started: Instant,
    report: &mut Report,
) -> Result<f64> {
    let name = store.name();
    let nodes = sizes.nodes;
    progress(format!("scale/{name}: waiting for {nodes} nodes to report"));
    wait_for_nodes(servers, fleet, nodes).await?;
    let start_seconds = started.elapsed().as_secs_f64();
    let rss_started = servers.rss()?;

    progress(format!("scale/{name}: rolling out {POLICY}"));
    let counters_before = servers.metrics().await?;
    let (server_before, etcd_before) = servers.cpu()?;
    let fleet_before = process_cpu(&fleet_pid.to_string())?;
    let rollout_started = Instant::now();
    rollout::create_policy(&servers.admin, POLICY).await?;
    rollout::wait_available(&servers.admin, POLICY, nodes).await?;
    let converged = rollout_started.elapsed().as_secs_f64();
    progress(format!(
        "scale/{name}: {nodes} nodes reported in {start_seconds:.1} s; the rollout converged in {converged:.2} s"
    ));
    let (server_after, etcd_after) = servers.cpu()?;
    let fleet_cpu = process_cpu(&fleet_pid.to_string())?.saturating_sub(fleet_before);
    let counters = servers.metrics().await?.since(counters_before);
    let rss_rollout = servers.rss()?;
    let per_node = |count: u64| round(count as f64 / nodes as f64, 2);

    progress(format!("scale/{name}: watch fan-out"));
    let fanout = fan_out(servers, sizes).await?;

    progress(format!("scale/{name}: listing {nodes} node states"));
    let list_json = list(&servers.admin, "application/json", sizes.list_runs, nodes).await?;
    let list_table = list(&servers.admin, TABLE, sizes.list_runs, nodes).await?;

    progress(format!("scale/{name}: idle for {:?}", sizes.idle_window));
    let idle = idle(servers, fleet_pid, sizes.idle_window).await?;
    let fleet_rss = rss_bytes(fleet_pid)?;

    let mib = |bytes: u64| round(bytes as f64 / (1024.0 * 1024.0), 1);
    let cpu_s = |d: Duration| round(d.as_secs_f64(), 2);
    say(report, format!("{} ({name}):", store.describe()));
    say(
        report,
        format!(
            "  {nodes} nodes reported in {start_seconds:.1} s; server RSS {} MiB",
            mib(rss_started)
        ),
    );
    say(
        report,
        format!(
            "  rollout: converged in {converged:.2} s (floor {:.1} s); CPU: server {} s, etcd {} s, fleet {} s; server RSS {} MiB",
            stats::seconds(sizes.floor()),
            cpu_s(server_after.saturating_sub(server_before)),
            cpu_s(etcd_after.saturating_sub(etcd_before)),
            cpu_s(fleet_cpu),
            mib(rss_rollout)
        ),
    );
    say(
        report,
        format!(
            "  writes per node: {} ({} by the controller, {} NodeNetworkState); controller batches {} ({:.1}/s)",
            per_node(counters.writes),
            per_node(counters.controller_writes),
            per_node(counters.state_writes),
            counters.reconciles,
            counters.reconciles as f64 / converged.max(f64::EPSILON)
        ),
    );
    say(
        report,
        format!(
            "  watch fan-out, write sent → event at a node's watcher, {} writes with {nodes} nodes watching: p50 {:.2} ms, p99 {:.2} ms",
            fanout.len(),
            millis_at(&fanout, 50.0),
            millis_at(&fanout, 99.0)
        ),
    );
    say(
        report,
        format!(
            "  list of {nodes} node states: JSON {:.0} ms ({} MiB), Table {:.0} ms",
            stats::millis(list_json.0),
            mib(list_json.1),
            stats::millis(list_table.0)
        ),
    );
    say(
        report,
        format!(
            "  idle {:?}: {:.1} requests/s ({:.1} writes/s, {:.1} NodeNetworkState), CPU: server {:.1} %, etcd {:.1} %, fleet {:.1} % of a core",
            sizes.idle_window,
            idle.requests_per_s,
            idle.writes_per_s,
            idle.state_writes_per_s,
            idle.server_percent,
            idle.etcd_percent,
            idle.fleet_percent
        ),
    );
    say(
        report,
        format!(
            "  fleet RSS {} MiB ({:.0} KiB per node); server RSS {} MiB",
            mib(fleet_rss),
            fleet_rss as f64 / 1024.0 / nodes as f64,
            mib(idle.server_rss)
        ),
    );
    let figures: Vec<(&str, Value)> = vec![
        ("converge_seconds", round(converged, 3).into()),
        ("start_seconds", round(start_seconds, 2).into()),
        ("server_rss_started_mib", mib(rss_started).into()),
        ("server_rss_rollout_mib", mib(rss_rollout).into()),
        ("server_rss_idle_mib", mib(idle.server_rss).into()),
        (
            "rollout_server_cpu_s",
            cpu_s(server_after.saturating_sub(server_before)).into(),
        ),
        (
            "rollout_etcd_cpu_s",
            cpu_s(etcd_after.saturating_sub(etcd_before)).into(),
        ),
        ("rollout_fleet_cpu_s", cpu_s(fleet_cpu).into()),
        ("writes_per_node", per_node(counters.writes).into()),
        ("rollout_controller_batches", counters.reconciles.into()),
        (
            "controller_writes_per_node",
            per_node(counters.controller_writes).into(),
        ),
        (
            "state_writes_per_node",
            per_node(counters.state_writes).into(),
        ),
        ("fanout_writes", fanout.len().into()),
        ("fanout_p50_ms", round(millis_at(&fanout, 50.0), 2).into()),
        ("fanout_p99_ms", round(millis_at(&fanout, 99.0), 2).into()),
        ("list_json_ms", round(stats::millis(list_json.0), 1).into()),
        ("list_json_mib", mib(list_json.1).into()),
        (
            "list_table_ms",
            round(stats::millis(list_table.0), 1).into(),
        ),
        ("idle_requests_per_s", round(idle.requests_per_s, 2).into()),
        ("idle_writes_per_s", round(idle.writes_per_s, 2).into()),
        (
            "idle_server_cpu_percent",
            round(idle.server_percent, 2).into(),
        ),
        ("idle_etcd_cpu_percent", round(idle.etcd_percent, 2).into()),
        (
            "idle_fleet_cpu_percent",
            round(idle.fleet_percent, 2).into(),
        ),
        ("fleet_rss_mib", mib(fleet_rss).into()),
        (
            "fleet_rss_per_node_kib",
            round(fleet_rss as f64 / 1024.0 / nodes as f64, 1).into(),
        ),
    ];
    for (key, value) in figures {
        report.figure(&format!("{name}_{key}"), value);
    }
    Ok(converged)
}

/// Adds `line` to the report, and prints it now: a later store's failure
/// must not lose this one's figures.
fn say(report: &mut Report, line: String) {
    progress(&line);
    report.line(line);
}

/// Waits (at most 15 minutes) until the fleet's `nodes` node states are
/// all `Ready`: first cheaply, on the server's count of state writes (each
/// node creates its state and writes its status), then by listing them.
async fn wait_for_nodes(servers: &Servers, fleet: &mut Child, nodes: usize) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(900);
    let mut last_progress = Instant::now();
    loop {
        if let Some(status) = fleet.try_wait()? {
            bail!("the fleet exited with {status}");
        }
        if Instant::now() > deadline {
            bail!("the nodes did not all report within 15 minutes");
        }
        let writes = servers.metrics().await?.state_writes;
        if writes >= 2 * nodes as u64 {
            let list = servers.admin.get(STATES).await?;
            let list: Value = serde_json::from_str(&list.body)?;
            let ready = list["items"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|state| fleet::is_ready(state))
                .count();
            if ready >= nodes {
                return Ok(());
            }
        }
        if last_progress.elapsed() > Duration::from_secs(10) {
            progress(format!("  {writes} state writes so far"));
            last_progress = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The probe: watchers of a few nodes' states, with their agents' field
/// selector, and label writes to those states one at a time (their agents
/// see them and write nothing). Returns each write's time from sending to
/// its event reaching the watcher.
async fn fan_out(servers: &Servers, sizes: &Sizes) -> Result<Vec<Duration>> {
    let watched: Vec<usize> = (0..sizes.probe_watchers)
        .map(|i| i * sizes.nodes / sizes.probe_watchers)
        .collect();
    let (sender, mut events) = mpsc::unbounded_channel::<(usize, String, Instant)>();
    let mut tasks = Vec::new();
    for &node in &watched {
        let mut connection = servers.admin.connect().await?;
        let path = format!(
            "{STATES}?watch=1&fieldSelector=metadata.name%3D{}",
            objects::node_name(node)
        );
        let response = connection.open("GET", &path, &[], Bytes::new()).await?;
        if response.status() != StatusCode::OK {
            bail!("watching node {node}: {}", response.status());
        }
        let sender = sender.clone();
        tasks.push(tokio::spawn(async move {
            // The connection lives as long as its watch.
            let _connection = connection;
            watch_lines(response.into_body(), |line| {
                let Ok(event) = serde_json::from_slice::<Value>(line) else {
                    return;
                };
                let probe = event["object"]["metadata"]["labels"][PROBE_LABEL]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                let _ = sender.send((node, probe, Instant::now()));
            })
            .await;
        }));
    }
    // Every watch has delivered its first event: they are all open.
    let mut open = std::collections::HashSet::new();
    while open.len() < watched.len() {
        let (node, _, _) = tokio::time::timeout(Duration::from_secs(30), events.recv())
            .await
            .context("a probe watch did not start")?
            .context("the probe watches ended")?;
        open.insert(node);
    }
    let mut connection = servers.admin.connect().await?;
    let mut latencies = Vec::with_capacity(sizes.probe_writes);
    let mut throttled = 0usize;
    for round in 0..sizes.probe_writes {
        let node = watched[round % watched.len()];
        let value = format!("w{round}");
        let patch = json!({"metadata": {"labels": {PROBE_LABEL: value}}}).to_string();
        let (sent, response) = loop {
            let sent = Instant::now();
            let response = connection
                .request(
                    "PATCH",
                    &format!("{STATES}/{}", objects::node_name(node)),
                    &[("content-type", "application/merge-patch+json")],
                    Bytes::from(patch.clone()),
                )
                .await?;
            // The server sheds load past its in-flight limit: try again.
            if response.status != StatusCode::TOO_MANY_REQUESTS {
                break (sent, response);
            }
            throttled += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        if response.status != StatusCode::OK {
            bail!("labelling node {node}: {}", response.status);
        }
        loop {
            let (from, probe, at) = tokio::time::timeout(Duration::from_secs(30), events.recv())
                .await
                .context("a probe event did not come")?
                .context("the probe watches ended")?;
            if from == node && probe == value {
                latencies.push(at.saturating_duration_since(sent));
                break;
            }
        }
    }
    for task in tasks {
        task.abort();
    }
    if throttled > 0 {
        progress(format!(
            "  {throttled} probe writes answered 429 and sent again"
        ));
    }
    Ok(latencies)
}

/// The median time of `runs` lists of every node state as `accept`, and
/// the size of the answer.
async fn list(
    admin: &HttpsClient,
    accept: &str,
    runs: usize,
    nodes: usize,
) -> Result<(Duration, u64)> {
    let mut connection = admin.connect().await?;
    let mut times = Vec::with_capacity(runs);
    let mut bytes = 0;
    for _ in 0..runs.max(1) {
        let started = Instant::now();
        let response = connection
            .request("GET", STATES, &[("accept", accept)], Bytes::new())
            .await?;
        times.push(started.elapsed());
        if response.status != StatusCode::OK {
            bail!("listing node states as {accept}: {}", response.status);
        }
        bytes = response.body.len() as u64;
    }
    if accept == "application/json" {
        let list: Value = serde_json::from_slice(
            &connection
                .request("GET", STATES, &[], Bytes::new())
                .await?
                .body,
        )?;
        let count = list["items"].as_array().map_or(0, Vec::len);
        if count != nodes {
            bail!("the list holds {count} node states, not {nodes}");
        }
    }
    Ok((stats::median(&times).unwrap_or_default(), bytes))
}

/// What an idle fleet costs.
#[derive(Clone, Copy, Debug)]
struct Idle {
    requests_per_s: f64,
    writes_per_s: f64,
    state_writes_per_s: f64,
    server_percent: f64,
    etcd_percent: f64,
    fleet_percent: f64,
    server_rss: u64,
}

async fn idle(servers: &Servers, fleet_pid: u32, window: Duration) -> Result<Idle> {
    let before = servers.metrics().await?;
    let (server_before, etcd_before) = servers.cpu()?;
    let fleet_before = process_cpu(&fleet_pid.to_string())?;
    let started = Instant::now();
    tokio::time::sleep(window).await;
    let elapsed = started.elapsed().as_secs_f64();
    let (server_after, etcd_after) = servers.cpu()?;
    let fleet_after = process_cpu(&fleet_pid.to_string())?;
    // The metrics requests themselves are two reads per replica.
    let counters = servers.metrics().await?.since(before);
    let percent = |after: Duration, before: Duration| {
        after.saturating_sub(before).as_secs_f64() * 100.0 / elapsed
    };
    Ok(Idle {
        requests_per_s: (counters.reads + counters.writes) as f64 / elapsed,
        writes_per_s: counters.writes as f64 / elapsed,
        state_writes_per_s: counters.state_writes as f64 / elapsed,
        server_percent: percent(server_after, server_before),
        etcd_percent: percent(etcd_after, etcd_before),
        fleet_percent: percent(fleet_after, fleet_before),
        server_rss: servers.rss()?,
    })
}

fn millis_at(samples: &[Duration], percent: f64) -> f64 {
    stats::percentile(samples, percent).map_or(0.0, stats::millis)
}

/// The 1-minute load average, for reading the figures (the machine may
/// be shared).
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next().map(str::to_owned))
        .unwrap_or_default()
}
