//! The `agent` scenario: the footprint of one `nmstate-agent` (hollow
//! backend) against a local `nmstate-apiserver` (embedded store): resident
//! memory once it has published its state, CPU time to start and publish,
//! CPU time and NodeNetworkState writes while idle, and CPU time of one
//! apply (a policy the controller renders and releases to the node) with
//! the report that follows. The goal it is held against is 20 MiB of idle
//! RSS and zero idle writes.

use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use super::{POLICIES, Report, STATES, progress, rss_bytes, stats};
use crate::{
    agent::AgentProcess,
    apiserver::{ApiserverProcess, StartOptions},
    fleet::is_ready,
    https::HttpsClient,
};

/// The idle RSS goal of the issue, in MiB.
const RSS_GOAL_MIB: f64 = 20.0;
/// The node the agent runs as.
const NODE: &str = "bench-node";

/// Runs the scenario with the `nmstate-apiserver` at `apiserver` and the
/// `nmstate-agent` next to it.
pub(super) async fn run(apiserver: &Path, quick: bool, report: &mut Report) -> Result<()> {
    let agent_binary = apiserver.with_file_name("nmstate-agent");
    if !agent_binary.is_file() {
        bail!(
            "{} is missing; build it first: cargo build --release -p nmstate-agent",
            agent_binary.display()
        );
    }
    let idle_window = if quick {
        Duration::from_secs(5)
    } else {
        Duration::from_secs(30)
    };
    progress("starting nmstate-apiserver (embedded store)");
    let log_dir = tempfile::tempdir()?;
    let server = ApiserverProcess::start_with(
        &[],
        &StartOptions {
            binary: Some(apiserver.to_path_buf()),
            log_file: Some(log_dir.path().join("apiserver.log")),
            ..StartOptions::default()
        },
    )
    .await?;
    let admin = server.admin_client()?;
    let kubeconfig = issue_node_kubeconfig(apiserver, &server, NODE)?;

    progress("starting nmstate-agent --backend hollow");
    let started = Instant::now();
    let mut agent = AgentProcess::start_binary(
        &agent_binary,
        NODE,
        &kubeconfig,
        &["--backend", "hollow", "--hollow-apply-delay", "0ms"],
    )?;
    wait_for(&admin, "the first report", &agent, |state| is_ready(&state)).await?;
    let first_report = started.elapsed();
    // Let allocations from start-up settle before measuring.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pid = agent.pid().to_string();
    let start_cpu = cpu_time(&pid)?;
    let rss_idle = rss_bytes(agent.pid())?;

    progress(format!("idle for {idle_window:?}"));
    let writes_before = state_writes(&admin).await?;
    tokio::time::sleep(idle_window).await;
    let idle_writes = state_writes(&admin).await?.saturating_sub(writes_before);
    let idle_cpu = cpu_time(&pid)?.saturating_sub(start_cpu);
    let rss_after_idle = rss_bytes(agent.pid())?;

    progress("one apply");
    // With the nmstate helper's statistic of the apply, a child process.
    let before_apply = cpu_with_children(agent.pid())?;
    release_enactment(&admin).await?;
    wait_for(&admin, "the applied bridge in the state", &agent, |state| {
        state["status"]["currentState"]["interfaces"]
            .as_array()
            .is_some_and(|interfaces| interfaces.iter().any(|i| i["name"] == "br-bench"))
    })
    .await?;
    let apply_cpu = cpu_with_children(agent.pid())?.saturating_sub(before_apply);
    let rss_after_apply = rss_bytes(agent.pid())?;
    let exit = agent.terminate()?;
    if !exit.success() {
        bail!(
            "nmstate-agent exited with {exit} on SIGTERM:\n{}",
            agent.logs()
        );
    }

    let mib = |bytes: u64| stats::round(bytes as f64 / (1024.0 * 1024.0), 1);
    let ms = |time: Duration| stats::round(time.as_secs_f64() * 1000.0, 2);
    report.line("agent (hollow backend, embedded apiserver on loopback):");
    report.line(format!(
        "  start to first report: {:.0} ms wall, {} ms CPU",
        first_report.as_secs_f64() * 1000.0,
        ms(start_cpu)
    ));
    report.line(format!(
        "  idle RSS: {} MiB ({:.2}x the {RSS_GOAL_MIB} MiB goal); after {idle_window:?} idle: {} MiB; after one apply: {} MiB",
        mib(rss_idle),
        rss_idle as f64 / (RSS_GOAL_MIB * 1024.0 * 1024.0),
        mib(rss_after_idle),
        mib(rss_after_apply),
    ));
    report.line(format!(
        "  idle {idle_window:?}: {idle_writes} NodeNetworkState writes, {} ms CPU",
        ms(idle_cpu)
    ));
    report.line(format!(
        "  one apply and its report: {} ms CPU (with the nmstate helper's, in 10 ms ticks)",
        ms(apply_cpu)
    ));
    report.figure("first_report_ms", ms(first_report));
    report.figure("start_cpu_ms", ms(start_cpu));
    report.figure("rss_idle_mib", mib(rss_idle));
    report.figure("rss_after_idle_mib", mib(rss_after_idle));
    report.figure("rss_after_apply_mib", mib(rss_after_apply));
    let rss_goal_ratio = stats::round(rss_idle as f64 / (RSS_GOAL_MIB * 1024.0 * 1024.0), 2);
    report.figure("rss_goal_ratio", rss_goal_ratio);
    // Every scenario reports `ratio` and `goal_met`: here idle RSS against
    // the goal, and the goal is that RSS with no idle writes.
    report.figure("ratio", rss_goal_ratio);
    report.figure("goal_met", rss_goal_ratio <= 1.0 && idle_writes == 0);
    report.figure("idle_seconds", idle_window.as_secs());
    report.figure("idle_writes", idle_writes);
    report.figure("idle_cpu_ms", ms(idle_cpu));
    report.figure("apply_cpu_ms", ms(apply_cpu));
    Ok(())
}

/// A kubeconfig for `system:node:<node>` issued by the server binary.
pub(super) fn issue_node_kubeconfig(
    binary: &Path,
    server: &ApiserverProcess,
    node: &str,
) -> Result<std::path::PathBuf> {
    let out = server.data_dir().join(format!("{node}.kubeconfig"));
    let output = Command::new(binary)
        .arg("kubeconfig")
        .arg("--data-dir")
        .arg(server.data_dir())
        .args(["--user", &format!("system:node:{node}")])
        .args(["--group", "system:nodes"])
        .arg("--out")
        .arg(&out)
        .output()
        .context("running nmstate-apiserver kubeconfig")?;
    if !output.status.success() {
        bail!(
            "nmstate-apiserver kubeconfig failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(out)
}

/// Waits (at most a minute) until the node's state satisfies `check`.
async fn wait_for(
    admin: &HttpsClient,
    what: &str,
    agent: &AgentProcess,
    check: impl Fn(Value) -> bool,
) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let response = admin.get(&format!("{STATES}/{NODE}")).await?;
        if response.status.is_success() && check(serde_json::from_str(&response.body)?) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "{what} did not come within a minute; agent log:\n{}",
                agent.logs()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Creates a policy with a bridge as its desired state; the server's
/// controller renders and releases its enactment for the node (the only
/// one), as in a cluster. (An enactment made here by hand would belong to
/// no policy, and the controller deletes such orphans: it raced the agent.)
async fn release_enactment(admin: &HttpsClient) -> Result<()> {
    let created = admin
        .request_with(
            "POST",
            POLICIES,
            &[("content-type", "application/json")],
            Some(
                json!({
                    "apiVersion": "nmstate.io/v1",
                    "kind": "NodeNetworkConfigurationPolicy",
                    "metadata": {"name": "bench"},
                    "spec": {"desiredState": {"interfaces": [
                        {"name": "br-bench", "type": "linux-bridge", "state": "up"}
                    ]}},
                })
                .to_string()
                .into_bytes(),
            ),
        )
        .await?;
    if !created.status.is_success() {
        bail!("creating the policy: {}", created.body);
    }
    Ok(())
}

/// The apiserver's count of NodeNetworkState writes.
async fn state_writes(admin: &HttpsClient) -> Result<u64> {
    let metrics = admin.get("/metrics").await?;
    if !metrics.status.is_success() {
        bail!("/metrics answered {}", metrics.status);
    }
    Ok(crate::metrics::state_writes(&metrics.body))
}

/// CPU time of every thread of process `pid` so far, in nanoseconds of run
/// time from `/proc/<pid>/task/*/schedstat` (`/proc/<pid>/stat` counts in
/// 10 ms ticks, too coarse for an idle agent).
pub(super) fn cpu_time(pid: &str) -> Result<Duration> {
    let tasks = format!("/proc/{pid}/task");
    let mut total = 0u64;
    for task in std::fs::read_dir(&tasks).with_context(|| format!("reading {tasks}"))? {
        let path = task?.path().join("schedstat");
        // A thread may end between the listing and the read.
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        total += text
            .split_whitespace()
            .next()
            .and_then(|ns| ns.parse::<u64>().ok())
            .with_context(|| format!("no run time in {}", path.display()))?;
    }
    Ok(Duration::from_nanos(total))
}

/// CPU time of process `pid`'s threads (see [`cpu_time`]) plus that
/// of its children it has waited for (`cutime` and `cstime` of
/// `/proc/<pid>/stat`, in 10 ms ticks): upstream handler's `nmstatectl` runs,
/// our agent's `nmstate-helper` runs.
pub(super) fn cpu_with_children(pid: u32) -> Result<Duration> {
    let own = cpu_time(&pid.to_string())?;
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    Ok(own + children_cpu_from_stat(&stat).with_context(|| format!("no cutime in {path}"))?)
}

/// `cutime + cstime` from the text of `/proc/<pid>/stat` (fields 16 and
/// 17, counted after the command name's closing parenthesis).
pub(super) fn children_cpu_from_stat(stat: &str) -> Option<Duration> {
    let (_, after_name) = stat.rsplit_once(')')?;
    let mut fields = after_name.split_whitespace().skip(13);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis((user + system) * 10))
}
