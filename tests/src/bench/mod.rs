//! `nmstate-bench`: measures the API server against a baseline taken in the
//! same run (raw etcd, or one watcher), so that figures from different
//! machines compare as ratios. Each scenario but `render` starts its own
//! etcd and `nmstate-apiserver` and stops them at the end.
//!
//! - `write`: create + status update of node states through the API against
//!   the same puts straight into etcd;
//! - `list`: listing every node state (JSON and Table) against one etcd range
//!   read;
//! - `watch`: many per-node enactment watches: event delivery latency and
//!   the server's memory, against one watcher of all enactments;
//! - `rollout`: the policy controller rolling a capture policy out to many
//!   fake nodes: convergence time and writes per node;
//! - `render`: rendering a policy with captures for a node, in process,
//!   against upstream's path (an `nmstatectl policy` process per node); it
//!   needs no server.
//! - `agent`: one hollow `nmstate-agent` against an embedded-store server:
//!   idle RSS against the 20 MiB goal, idle writes, CPU of start and apply.
//! - `handler`: `nmstate-agent` next to upstream's node handler, each on a
//!   NetworkManager namespace node: idle RSS and CPU, NetworkManager change
//!   → NodeNetworkState latency, applying upstream's linux-bridge example.
//! - `scale`: 5 000 hollow nodes (`nmstate-hollow-fleet`) on the embedded
//!   store and on a 3-member etcd with 2 replicas: rollout convergence,
//!   server cost, watch fan-out, list, and the idle cost of heartbeats.
//!
//! With `--peer crd`, `write`, `list` and `watch` also run against
//! kube-apiserver serving the three kinds as CRDs (on an etcd of its own),
//! and `list` and `watch` through kube-apiserver's aggregator to our server
//! (see `peer.rs`).
//!
//! Progress goes to stderr, the report to stdout; with `--json` the report
//! ends with one line holding a JSON object of the figures. The figures are
//! only meaningful from a release build; nothing here asserts on them.

pub mod crds;
pub mod objects;
pub mod stats;

mod agent;
mod handler;
mod list;
mod peer;
mod render;
mod rollout;
mod scale;
mod watch;
mod write;

use std::{
    fmt,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, Result, bail};
use clap::{Parser, ValueEnum};
use serde_json::{Map, Value};

use crate::{
    apiserver::{ApiserverProcess, StartOptions},
    etcd::EtcdProcess,
    https::{Connection, HttpsClient},
    kube_apiserver::{AGGREGATED_SERVER_NAME, FRONT_PROXY_CLIENT},
    pki::TestCa,
};

/// The API path of node states.
const STATES: &str = "/apis/nmstate.io/v1/nodenetworkstates";
/// The API path of enactments.
const ENACTMENTS: &str = "/apis/nmstate.io/v1/nodenetworkconfigurationenactments";
/// The policies' collection path.
const POLICIES: &str = "/apis/nmstate.io/v1/nodenetworkconfigurationpolicies";

/// Command-line arguments of `nmstate-bench`.
#[derive(Debug, Parser)]
#[command(
    name = "nmstate-bench",
    about = "Benchmarks nmstate-apiserver against raw etcd"
)]
pub struct Args {
    /// What to measure.
    #[arg(value_enum)]
    pub scenario: Scenario,
    /// Small counts, for a smoke test in a debug build.
    #[arg(long)]
    pub quick: bool,
    /// End the output with one line holding a JSON object of the figures.
    #[arg(long)]
    pub json: bool,
    /// Also measure what users run today, in the same run (`write`,
    /// `list` and `watch` only).
    #[arg(long, value_enum)]
    pub peer: Option<Peer>,
}

/// A server to compare with, besides raw etcd.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
#[non_exhaustive]
pub enum Peer {
    /// kube-apiserver serving the three kinds as CRDs; and, for `list` and
    /// `watch`, kube-apiserver's aggregator in front of our server.
    Crd,
}

/// A benchmark scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
#[non_exhaustive]
pub enum Scenario {
    /// Create and update node states: API against raw etcd puts.
    Write,
    /// List every node state (JSON and Table): API against an etcd range read.
    List,
    /// Per-node enactment watches: delivery latency and server memory.
    Watch,
    /// The policy controller rolling a capture policy out to many fake
    /// nodes: convergence time and writes per node.
    Rollout,
    /// Rendering a policy for a node: in process against `nmstatectl policy`.
    Render,
    /// One hollow node agent: idle memory, idle writes, CPU.
    Agent,
    /// nmstate-agent next to upstream's node handler on NetworkManager
    /// namespace nodes (root; builds the handler with Go if not cached).
    Handler,
    /// 5 000 hollow nodes in one process rolling a policy out, on both
    /// stores.
    Scale,
}

impl Scenario {
    /// The name on the command line and in the JSON report.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Write => "write",
            Scenario::List => "list",
            Scenario::Watch => "watch",
            Scenario::Rollout => "rollout",
            Scenario::Render => "render",
            Scenario::Agent => "agent",
            Scenario::Handler => "handler",
            Scenario::Scale => "scale",
        }
    }
}

/// How much work a run does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counts {
    /// Node states created and updated by `write`.
    pub write_objects: usize,
    /// Node states listed by `list`.
    pub list_objects: usize,
    /// Timed lists of each kind in `list`; the median is reported.
    pub list_runs: usize,
    /// Watches (and enactments) in `watch`.
    pub watches: usize,
    /// Concurrent client connections (and etcd requests) for writes.
    pub concurrency: usize,
    /// Fake nodes in `rollout`.
    pub rollout_nodes: usize,
}

impl Counts {
    /// The counts of a full run, or of a `--quick` one.
    pub fn new(quick: bool) -> Counts {
        if quick {
            Counts {
                write_objects: 200,
                list_objects: 200,
                list_runs: 3,
                watches: 100,
                concurrency: 16,
                rollout_nodes: 50,
            }
        } else {
            Counts {
                write_objects: 2_000,
                list_objects: 5_000,
                list_runs: 7,
                watches: 1_000,
                concurrency: 16,
                rollout_nodes: 1_000,
            }
        }
    }
}

/// What one run measured: lines for people and figures for machines.
#[derive(Debug)]
pub struct Report {
    lines: Vec<String>,
    figures: Map<String, Value>,
}

impl Report {
    fn new(scenario: Scenario, quick: bool) -> Report {
        let mut report = Report {
            lines: Vec::new(),
            figures: Map::new(),
        };
        report.figure("scenario", scenario.name());
        report.figure("quick", quick);
        report.figure("release_build", !cfg!(debug_assertions));
        report
    }

    /// Adds a line for people.
    fn line(&mut self, line: impl Into<String>) {
        self.lines.push(line.into());
    }

    /// Records a figure for the JSON line.
    fn figure(&mut self, key: &str, value: impl Into<Value>) {
        self.figures.insert(key.to_owned(), value.into());
    }

    /// The figures as one JSON object.
    pub fn json(&self) -> Value {
        Value::Object(self.figures.clone())
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for line in &self.lines {
            writeln!(f, "{line}")?;
        }
        Ok(())
    }
}

/// Runs `scenario` with `counts` against the `nmstate-apiserver` binary at
/// `apiserver`, and against `peer` when given.
pub async fn run(
    scenario: Scenario,
    quick: bool,
    peer: Option<Peer>,
    apiserver: &Path,
) -> Result<Report> {
    if peer.is_some() && !peer::compares(scenario) {
        bail!(
            "--peer applies to write, list and watch, not {}",
            scenario.name()
        );
    }
    raise_open_file_limit();
    let counts = Counts::new(quick);
    let mut report = Report::new(scenario, quick);
    if scenario == Scenario::Render {
        // Pure CPU work in this process: no server to start.
        render::run(quick, &mut report)?;
        return Ok(report);
    }
    if scenario == Scenario::Agent {
        // The agent runs against the embedded store: no etcd to start.
        agent::run(apiserver, quick, &mut report).await?;
        return Ok(report);
    }
    if scenario == Scenario::Handler {
        // Its own servers, nodes and peer: no shared etcd to start.
        handler::run(apiserver, quick, &mut report).await?;
        return Ok(report);
    }
    if scenario == Scenario::Scale {
        // It starts its own servers, on each store.
        scale::run(apiserver, quick, &mut report).await?;
        return Ok(report);
    }
    let controller = scenario == Scenario::Rollout;
    let cluster = Cluster::start(apiserver, controller, peer.is_some()).await?;
    let result = match scenario {
        Scenario::Write => write::run(&cluster, &counts, &mut report).await,
        Scenario::List => list::run(&cluster, &counts, &mut report).await,
        Scenario::Watch => watch::run(&cluster, &counts, &mut report).await,
        Scenario::Rollout => rollout::run(&cluster, counts.rollout_nodes, &mut report).await,
        Scenario::Render | Scenario::Agent | Scenario::Handler | Scenario::Scale => {
            unreachable!("handled above")
        }
    };
    let result = match (result, peer) {
        (Ok(()), Some(peer)) => peer::run(peer, scenario, &cluster, &counts, &mut report).await,
        (result, _) => result,
    };
    if let Err(error) = result {
        return Err(error.context(format!(
            "scenario {} failed; the server's log ends:\n{}",
            scenario.name(),
            cluster.log_tail()
        )));
    }
    Ok(report)
}

/// `nmstate-apiserver` next to the running executable, or an error saying
/// how to build it.
pub fn apiserver_binary() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("finding the running executable")?;
    let dir = exe.parent().context("the executable has no directory")?;
    let binary = dir.join("nmstate-apiserver");
    if !binary.is_file() {
        let profile = if cfg!(debug_assertions) {
            ""
        } else {
            " --release"
        };
        bail!(
            "{} is missing; build it first: cargo build{profile} -p nmstate-apiserver",
            binary.display()
        );
    }
    Ok(binary)
}

/// Lifts the soft limit on open files to the hard one, and returns the
/// limit now in force: the watch scenario (and the hostile tests) hold a
/// connection per watch, in this process and in the server, which inherits
/// the limit.
pub fn raise_open_file_limit() -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return 1024;
    };
    if soft < hard {
        if let Err(error) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            eprintln!("nmstate-bench: cannot raise the open file limit from {soft}: {error}");
            return soft;
        }
        return hard;
    }
    soft
}

/// The processes one run measures: an etcd and an API server on it.
#[derive(Debug)]
struct Cluster {
    etcd: EtcdProcess,
    apiserver: ApiserverProcess,
    client: HttpsClient,
    log_dir: tempfile::TempDir,
    /// The CA of the front proxy the server trusts, when a kube-apiserver
    /// aggregator is to stand in front of it.
    front_proxy_ca: Option<TestCa>,
}

impl Cluster {
    /// Starts etcd and the server; the policy controller only when asked;
    /// ready to sit behind kube-apiserver's aggregator when `aggregated`.
    async fn start(binary: &Path, controller: bool, aggregated: bool) -> Result<Cluster> {
        progress("starting etcd and nmstate-apiserver");
        let etcd = EtcdProcess::try_start(false).await?;
        let log_dir = tempfile::tempdir()?;
        let etcd_servers = format!("--etcd-servers={}", etcd.endpoint());
        let options = StartOptions {
            binary: Some(binary.to_path_buf()),
            log_file: Some(log_dir.path().join("apiserver.log")),
            ..StartOptions::default()
        };
        // The API scenarios write enactments of no policy: measure the API,
        // not the controller cleaning them up.
        let controller = format!("--controller={controller}");
        let mut flags = vec![etcd_servers, controller];
        let front_proxy_ca = aggregated.then(|| TestCa::new("front-proxy-ca"));
        if let Some(ca) = &front_proxy_ca {
            let ca_file = log_dir.path().join("front-proxy-ca.crt");
            std::fs::write(&ca_file, &ca.pem)?;
            flags.extend([
                format!("--requestheader-client-ca-file={}", ca_file.display()),
                format!("--requestheader-allowed-names={FRONT_PROXY_CLIENT}"),
                format!("--tls-sni-hosts={AGGREGATED_SERVER_NAME}"),
            ]);
        }
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let apiserver = ApiserverProcess::start_with(&flags, &options).await?;
        let client = apiserver.client()?;
        let cluster = Cluster {
            etcd,
            apiserver,
            client,
            log_dir,
            front_proxy_ca,
        };
        cluster.wait_until_ready().await?;
        Ok(cluster)
    }

    /// Waits for `/readyz`: the watch caches have their first list.
    async fn wait_until_ready(&self) -> Result<()> {
        for _ in 0..600 {
            if self.client.get("/readyz").await?.status.is_success() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("nmstate-apiserver did not become ready within 30 s")
    }

    /// `count` kept-alive connections to the API server.
    async fn connections(&self, count: usize) -> Result<Vec<Connection>> {
        connections(&self.client, count).await
    }

    /// A client straight to etcd, for baselines.
    async fn etcd_client(&self) -> Result<etcd_client::Client> {
        Ok(etcd_client::Client::connect([self.etcd.endpoint()], None).await?)
    }

    /// The API server's resident memory.
    fn apiserver_rss_bytes(&self) -> Result<u64> {
        rss_bytes(self.apiserver.pid())
    }

    /// CPU time used so far by the server, etcd and this process.
    fn cpu_times(&self) -> Result<CpuTimes> {
        cpu_times(self.apiserver.pid(), &self.etcd)
    }

    /// The server's mean latency per label set of the histogram `name`
    /// from `/metrics` (`verb="create",resource="..."` → seconds), for
    /// explaining where time goes.
    async fn mean_latencies(&self, name: &str) -> Result<Vec<(String, f64, u64)>> {
        let metrics = self.client.get("/metrics").await?;
        if !metrics.status.is_success() {
            bail!("/metrics answered {}", metrics.status);
        }
        Ok(mean_latencies(&metrics.body, name))
    }

    fn log_tail(&self) -> String {
        let log =
            std::fs::read_to_string(self.log_dir.path().join("apiserver.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

/// `count` kept-alive connections through `client`.
async fn connections(client: &HttpsClient, count: usize) -> Result<Vec<Connection>> {
    let mut connections = Vec::with_capacity(count);
    for _ in 0..count {
        connections.push(client.connect().await?);
    }
    Ok(connections)
}

/// CPU time used so far by the API server `apiserver`, `etcd` and this
/// process.
fn cpu_times(apiserver: u32, etcd: &EtcdProcess) -> Result<CpuTimes> {
    let etcd = etcd.pid().context("etcd is not running")?;
    Ok(CpuTimes {
        apiserver: process_cpu(&apiserver.to_string())?,
        etcd: process_cpu(&etcd.to_string())?,
        bench: process_cpu("self")?,
    })
}

/// CPU time (user and system) of the processes of a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct CpuTimes {
    apiserver: Duration,
    etcd: Duration,
    bench: Duration,
}

impl CpuTimes {
    /// The CPU time used between `earlier` and `self`.
    fn since(self, earlier: CpuTimes) -> CpuTimes {
        CpuTimes {
            apiserver: self.apiserver.saturating_sub(earlier.apiserver),
            etcd: self.etcd.saturating_sub(earlier.etcd),
            bench: self.bench.saturating_sub(earlier.bench),
        }
    }

    /// Each process's CPU milliseconds per unit of work, for `count` units.
    fn per_unit_ms(self, count: usize) -> [(&'static str, f64); 3] {
        let per =
            |time: Duration| stats::round(time.as_secs_f64() * 1000.0 / count.max(1) as f64, 3);
        [
            ("apiserver", per(self.apiserver)),
            ("etcd", per(self.etcd)),
            ("bench", per(self.bench)),
        ]
    }
}

/// The user and system CPU time of process `pid` (or `self`), from
/// `/proc/<pid>/stat`.
/// Resident memory of process `pid`, from `/proc/<pid>/status`.
fn rss_bytes(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .and_then(|kib| kib.trim().parse::<u64>().ok())
        .with_context(|| format!("no VmRSS in {path}"))?;
    Ok(kib * 1024)
}

fn process_cpu(pid: &str) -> Result<Duration> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    cpu_from_stat(&stat).with_context(|| format!("no CPU times in {path}"))
}

/// `utime + stime` from the text of `/proc/<pid>/stat`. The command name
/// in parentheses may hold spaces, so fields are counted after its `)`:
/// `utime` and `stime` are the 14th and 15th fields, in clock ticks of
/// 1/100 s (USER_HZ, 100 on every Linux architecture we run on).
fn cpu_from_stat(stat: &str) -> Option<Duration> {
    let (_, after_name) = stat.rsplit_once(')')?;
    let mut fields = after_name.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis((user + system) * 10))
}

/// Adds each process's CPU time per unit of work to the report as a line
/// and as figures `<prefix>_cpu_ms_<process>`.
fn report_cpu(report: &mut Report, what: &str, prefix: &str, cpu: CpuTimes, count: usize) {
    let per_unit = cpu.per_unit_ms(count);
    report.line(format!(
        "  CPU per {what}: {}",
        per_unit
            .iter()
            .map(|(process, ms)| format!("{process} {ms:.3} ms"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    for (process, ms) in per_unit {
        report.figure(&format!("{prefix}_cpu_ms_{process}"), ms);
    }
}

/// From Prometheus text, the mean of each series of histogram `name`:
/// (labels, mean seconds, count), series without observations left out.
fn mean_latencies(text: &str, name: &str) -> Vec<(String, f64, u64)> {
    let series = |suffix: &str| -> Vec<(String, f64)> {
        let prefix = format!("{name}_{suffix}{{");
        text.lines()
            .filter_map(|line| line.strip_prefix(&prefix))
            .filter_map(|rest| {
                let (labels, value) = rest.rsplit_once("} ")?;
                Some((labels.to_owned(), value.trim().parse().ok()?))
            })
            .collect()
    };
    let sums = series("sum");
    series("count")
        .into_iter()
        .filter(|(_, count)| *count > 0.0)
        .filter_map(|(labels, count)| {
            let sum = sums.iter().find(|(l, _)| *l == labels)?.1;
            Some((labels, sum / count, count as u64))
        })
        .collect()
}

/// Adds the server's mean request and store latencies to the report, as
/// lines only: they explain the figures, they are not figures themselves.
async fn report_server_latencies(cluster: &Cluster, report: &mut Report) -> Result<()> {
    for name in [
        "nmstate_apiserver_request_duration_seconds",
        "nmstate_apiserver_storage_operation_duration_seconds",
    ] {
        for (labels, mean, count) in cluster.mean_latencies(name).await? {
            report.line(format!(
                "  server: {name} {{{labels}}}: mean {:.2} ms over {count}",
                mean * 1000.0
            ));
        }
    }
    Ok(())
}

/// A progress message on stderr.
fn progress(message: impl fmt::Display) {
    eprintln!("nmstate-bench: {message}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn means_from_prometheus_text() {
        let text = "\
# HELP x_seconds latency
x_seconds_sum{verb=\"create\",resource=\"a\"} 0.5
x_seconds_count{verb=\"create\",resource=\"a\"} 10
x_seconds_bucket{le=\"0.001\",verb=\"create\",resource=\"a\"} 1
x_seconds_sum{verb=\"get\",resource=\"a\"} 0.0
x_seconds_count{verb=\"get\",resource=\"a\"} 0
y_seconds_count{verb=\"create\",resource=\"a\"} 3
";
        assert_eq!(
            mean_latencies(text, "x_seconds"),
            vec![("verb=\"create\",resource=\"a\"".to_owned(), 0.05, 10)]
        );
    }

    #[test]
    fn cpu_times_from_proc_stat() {
        // A command name with spaces and a parenthesis; utime 250 and
        // stime 30 ticks.
        let stat =
            "4242 (tokio (rt) x) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 30 0 0 20 0 8 0 100 0 0";
        assert_eq!(cpu_from_stat(stat), Some(Duration::from_millis(2_800)));
        assert_eq!(cpu_from_stat("4242 (short) S 1"), None);
    }

    #[test]
    fn quick_runs_are_smaller() {
        let (full, quick) = (Counts::new(false), Counts::new(true));
        assert!(quick.write_objects < full.write_objects);
        assert!(quick.list_objects < full.list_objects);
        assert!(quick.watches < full.watches);
        assert_eq!(full.write_objects, 2_000);
        assert_eq!(full.list_objects, 5_000);
        assert_eq!(full.watches, 1_000);
    }
}
