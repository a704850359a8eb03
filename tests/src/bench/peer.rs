//! `--peer crd`: after a scenario's own run, the same work against what
//! kubernetes-nmstate users run today, in the same run.
//!
//! - **CRD**: kube-apiserver serving the three kinds as CustomResource
//!   Definitions (`crds.rs`), on an etcd of its own (the same binary,
//!   fresh, as our server's was), with the same objects, client and
//!   concurrency. `crd_speedup` is how many times better ours is on the
//!   scenario's main figure (throughput for `write`, list time for `list`,
//!   RSS growth for `watch`), so that higher is better everywhere.
//! - **Aggregated** (`list` and `watch`): a kube-apiserver on our server's
//!   etcd (under a prefix of its own) with our server registered as the
//!   `nmstate.io` APIServices; the same lists and watches through its
//!   proxy, to show what the hop costs.
//!
//! A CRD and an APIService of the same group and version cannot live in
//! one kube-apiserver, so each comparison has its own, started and stopped
//! in turn. The goals of issue 11 that apply are in the JSON object
//! `crd_goals`, one entry per goal with its `goal_met`.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::{Map, Value, json};

use super::{
    Cluster, Counts, Peer, Report, Scenario, connections, cpu_times, crds,
    list::{Lists, time_lists},
    progress, report_cpu, rss_bytes, stats,
    watch::peer_round,
    write::{Payloads, write_through_api},
};
use crate::{
    etcd::EtcdProcess,
    https::HttpsClient,
    kube_apiserver::{AggregatedServer, KubeApiserverProcess, KubeOptions},
};

/// Where the aggregating kube-apiserver keeps its own objects in our
/// server's etcd.
const AGGREGATOR_PREFIX: &str = "/kube-aggregator";

/// Whether `--peer` applies to `scenario`.
pub(super) fn compares(scenario: Scenario) -> bool {
    matches!(scenario, Scenario::Write | Scenario::List | Scenario::Watch)
}

/// Runs `scenario`'s comparison with `peer`, after its own run (whose
/// figures are in `report`).
pub(super) async fn run(
    peer: Peer,
    scenario: Scenario,
    cluster: &Cluster,
    counts: &Counts,
    report: &mut Report,
) -> Result<()> {
    match peer {
        Peer::Crd => {}
    }
    report.figure("peer", "crd");
    match scenario {
        Scenario::Write => write(counts, report).await,
        Scenario::List => {
            list_aggregated(cluster, counts, report).await?;
            list_crd(counts, report).await
        }
        Scenario::Watch => {
            watch_aggregated(cluster, counts, report).await?;
            watch_crd(counts, report).await
        }
        _ => bail!("--peer does not apply to {}", scenario.name()),
    }
}

/// kube-apiserver serving the CRDs, on an etcd of its own.
struct CrdServer {
    etcd: EtcdProcess,
    kube: KubeApiserverProcess,
}

impl CrdServer {
    async fn start() -> Result<CrdServer> {
        progress("starting etcd and kube-apiserver with the nmstate.io CRDs");
        let etcd = EtcdProcess::try_start(false).await?;
        let kube = KubeApiserverProcess::start(&KubeOptions {
            etcd_servers: etcd.endpoint(),
            ..KubeOptions::default()
        })
        .await?;
        kube.create_crds(&crds::custom_resource_definitions()?)
            .await?;
        Ok(CrdServer { etcd, kube })
    }

    fn client(&self) -> &HttpsClient {
        self.kube.client()
    }

    fn pid(&self) -> Result<u32> {
        self.kube.pid().context("kube-apiserver is not running")
    }

    /// Writes `payloads` as the main run writes them; returns the time.
    async fn write(&self, payloads: &Payloads, concurrency: usize) -> Result<Duration> {
        let mut connections = connections(self.client(), concurrency).await?;
        write_through_api(&mut connections, payloads).await
    }
}

/// A kube-apiserver on our server's etcd with our server behind its
/// aggregator.
async fn aggregator(cluster: &Cluster) -> Result<KubeApiserverProcess> {
    progress("starting kube-apiserver with nmstate-apiserver as the nmstate.io APIServices");
    let ca_file = cluster.apiserver.data_dir().join("pki/ca.crt");
    let ca_pem = std::fs::read_to_string(&ca_file)
        .with_context(|| format!("reading {}", ca_file.display()))?;
    KubeApiserverProcess::start(&KubeOptions {
        etcd_servers: cluster.etcd.endpoint(),
        etcd_prefix: Some(AGGREGATOR_PREFIX.to_owned()),
        front_proxy_ca: cluster.front_proxy_ca.as_ref(),
        aggregated: Some(AggregatedServer {
            port: cluster.apiserver.address().port(),
            ca_pem,
            versions: nmstate_openapi::VERSIONS.map(str::to_owned).to_vec(),
        }),
        ..KubeOptions::default()
    })
    .await
}

async fn write(counts: &Counts, report: &mut Report) -> Result<()> {
    let crd = CrdServer::start().await?;
    let payloads = Payloads::build(counts.write_objects);
    let objects = payloads.len();
    progress(format!(
        "CRD: {objects} objects over {} connections",
        counts.concurrency
    ));
    let cpu_before = cpu_times(crd.pid()?, &crd.etcd)?;
    let time = crd.write(&payloads, counts.concurrency).await?;
    let cpu = cpu_times(crd.pid()?, &crd.etcd)?.since(cpu_before);
    let rss = rss_bytes(crd.pid()?)?;

    let rate = stats::round(objects as f64 / time.as_secs_f64(), 1);
    let ours = figure(report, "api_objects_per_s")?;
    let etcd = figure(report, "etcd_objects_per_s")?;
    let speedup = stats::round(ours / rate, 3);
    report.line(format!(
        "  CRD (kube-apiserver on etcd):    {rate:>8.1} objects/s ({:.2} s); CRD/etcd {:.3}",
        time.as_secs_f64(),
        rate / etcd
    ));
    let verdict = goal(report, "writes_ours_over_crd", speedup, Bound::AtLeast(2.0));
    report.line(format!(
        "  ours/CRD: {speedup:.3} times the writes/s (goal >= 2: {verdict})"
    ));
    report_cpu(report, "object through the CRD", "crd", cpu, objects);
    report.line(format!(
        "  kube-apiserver RSS after the writes: {:.1} MiB",
        mib(rss)
    ));
    report.figure("crd_objects_per_s", rate);
    report.figure("crd_seconds", stats::seconds(time));
    report.figure("crd_etcd_ratio", stats::round(rate / etcd, 3));
    report.figure("crd_rss_written_mib", mib(rss));
    report.figure("crd_speedup", speedup);
    Ok(())
}

async fn list_aggregated(cluster: &Cluster, counts: &Counts, report: &mut Report) -> Result<()> {
    let kube = aggregator(cluster).await?;
    progress(format!(
        "aggregated: timing {} lists of each kind through kube-apiserver",
        counts.list_runs
    ));
    let lists = time_lists(kube.client(), counts.list_objects, counts.list_runs).await?;
    let direct_json = figure(report, "api_json_ms")?;
    let direct_table = figure(report, "api_table_ms")?;
    let (json, table) = (stats::millis(lists.json), stats::millis(lists.table));
    report.line(format!(
        "  through kube-apiserver's aggregator: JSON {json:.1} ms ({:.2} × direct), \
         Table {table:.1} ms ({:.2} × direct)",
        json / direct_json,
        table / direct_table
    ));
    report.figure("aggregated_json_ms", json);
    report.figure("aggregated_table_ms", table);
    report.figure(
        "aggregated_json_over_direct",
        stats::round(json / direct_json, 3),
    );
    report.figure(
        "aggregated_table_over_direct",
        stats::round(table / direct_table, 3),
    );
    Ok(())
}

async fn list_crd(counts: &Counts, report: &mut Report) -> Result<()> {
    let count = counts.list_objects;
    let crd = CrdServer::start().await?;
    progress(format!("CRD: writing {count} node states"));
    let payloads = Payloads::build(count);
    let write_time = crd.write(&payloads, counts.concurrency).await?;
    drop(payloads);
    let rss_written = rss_bytes(crd.pid()?)?;
    progress(format!(
        "CRD: timing {} lists of each kind",
        counts.list_runs
    ));
    let lists = time_lists(crd.client(), count, counts.list_runs).await?;
    let rss_listed = rss_bytes(crd.pid()?)?;
    report_crd_lists(report, &lists)?;

    let ours_rss = figure(report, "rss_written_mib")?;
    let rss_ratio = stats::round(ours_rss / mib(rss_written), 3);
    let verdict = at_most_half(report, "rss_holding_ours_over_kube", rss_ratio);
    report.line(format!(
        "  kube-apiserver RSS: {:.1} MiB with the objects written ({:.0} objects/s), \
         {:.1} MiB after all lists; ours/kube-apiserver holding them: {rss_ratio:.3} \
         (goal <= 0.5: {verdict})",
        mib(rss_written),
        count as f64 / write_time.as_secs_f64(),
        mib(rss_listed),
    ));
    report.figure("crd_rss_written_mib", mib(rss_written));
    report.figure("crd_rss_listed_mib", mib(rss_listed));
    report.figure(
        "crd_write_objects_per_s",
        stats::round(count as f64 / write_time.as_secs_f64(), 1),
    );
    Ok(())
}

/// The CRD's list figures next to ours and etcd's, and the list goals.
fn report_crd_lists(report: &mut Report, lists: &Lists) -> Result<()> {
    let (json, table) = (stats::millis(lists.json), stats::millis(lists.table));
    let ours_json = figure(report, "api_json_ms")?;
    let ours_table = figure(report, "api_table_ms")?;
    let etcd = figure(report, "etcd_ms")?;
    report.line(format!(
        "  CRD JSON:   {json:>8.1} ms  [{:.1} ms]  {:.1} MB; CRD/etcd {:.3}",
        stats::millis(lists.first_json),
        lists.json_bytes as f64 / 1e6,
        json / etcd
    ));
    report.line(format!(
        "  CRD Table:  {table:>8.1} ms  [{:.1} ms]  {:.1} MB; CRD/etcd {:.3}",
        stats::millis(lists.first_table),
        lists.table_bytes as f64 / 1e6,
        table / etcd
    ));
    let json_ratio = stats::round(ours_json / json, 3);
    let table_ratio = stats::round(ours_table / table, 3);
    let json_verdict = at_most_half(report, "list_json_ours_over_crd", json_ratio);
    let table_verdict = at_most_half(report, "list_table_ours_over_crd", table_ratio);
    report.line(format!(
        "  ours/CRD time: JSON {json_ratio:.3} (goal <= 0.5: {json_verdict}), \
         Table {table_ratio:.3} (goal <= 0.5: {table_verdict})"
    ));
    report.figure("crd_json_ms", json);
    report.figure("crd_table_ms", table);
    report.figure("crd_first_json_ms", stats::millis(lists.first_json));
    report.figure("crd_first_table_ms", stats::millis(lists.first_table));
    report.figure("crd_json_bytes", lists.json_bytes);
    report.figure("crd_table_bytes", lists.table_bytes);
    report.figure("crd_etcd_ratio", stats::round(json / etcd, 3));
    report.figure("crd_speedup", stats::round(json / ours_json, 3));
    report.figure("crd_table_speedup", stats::round(table / ours_table, 3));
    Ok(())
}

async fn watch_aggregated(cluster: &Cluster, counts: &Counts, report: &mut Report) -> Result<()> {
    let kube = aggregator(cluster).await?;
    let pids = [
        kube.pid().context("kube-apiserver is not running")?,
        cluster.apiserver.pid(),
    ];
    progress("aggregated: the watches through kube-apiserver");
    let round = peer_round(kube.client(), counts, &pids, true).await?;
    let growth = |i: usize| mib(round.rss_after[i].saturating_sub(round.rss_before[i]));
    report.line(format!(
        "  through kube-apiserver's aggregator, MODIFIED after the write's ack: {}; \
         RSS growth kube-apiserver +{:.1} MiB, nmstate-apiserver +{:.1} MiB",
        round.modified,
        growth(0),
        growth(1)
    ));
    report.figure("aggregated_p50_ms", stats::millis(round.modified.p50));
    report.figure("aggregated_p99_ms", stats::millis(round.modified.p99));
    report.figure("aggregated_kube_rss_growth_mib", growth(0));
    report.figure("aggregated_apiserver_rss_growth_mib", growth(1));
    Ok(())
}

async fn watch_crd(counts: &Counts, report: &mut Report) -> Result<()> {
    let crd = CrdServer::start().await?;
    let round = peer_round(crd.client(), counts, &[crd.pid()?], false).await?;
    let growth = mib(round.rss_after[0].saturating_sub(round.rss_before[0]));
    let ours = figure(report, "rss_growth_mib")?;
    let ours_p99 = figure(report, "p99_ms")?;
    let ratio = stats::round(ours / growth, 3);
    let rss_verdict = at_most_half(report, "watch_rss_growth_ours_over_kube", ratio);
    let p99_verdict = goal(report, "watch_p99_ms", ours_p99, Bound::AtMost(50.0));
    report.line(format!(
        "  CRD, MODIFIED after the write's ack: {}; kube-apiserver RSS {:.1} → {:.1} MiB: +{growth:.1} MiB",
        round.modified,
        mib(round.rss_before[0]),
        mib(round.rss_after[0]),
    ));
    report.line(format!(
        "  ours/CRD RSS growth: {ratio:.3} (goal <= 0.5: {rss_verdict}); ours p99 {ours_p99:.2} ms \
         (goal <= 50 ms: {p99_verdict})"
    ));
    report.figure("crd_p50_ms", stats::millis(round.modified.p50));
    report.figure("crd_p99_ms", stats::millis(round.modified.p99));
    report.figure("crd_rss_before_mib", mib(round.rss_before[0]));
    report.figure("crd_rss_after_mib", mib(round.rss_after[0]));
    report.figure("crd_rss_growth_mib", growth);
    report.figure("crd_speedup", stats::round(growth / ours, 3));
    Ok(())
}

/// Which side of its bound a goal's figure must be on.
#[derive(Clone, Copy, Debug)]
enum Bound {
    AtLeast(f64),
    AtMost(f64),
}

/// Records goal `name` (its figure, bound and `goal_met`) in the JSON
/// object `crd_goals`, keeps `crd_goals_met` the conjunction of all, and
/// returns the verdict for people.
fn goal(report: &mut Report, name: &str, value: f64, bound: Bound) -> &'static str {
    let (met, entry) = match bound {
        Bound::AtLeast(min) => (value >= min, json!({"value": value, "min": min})),
        Bound::AtMost(max) => (value <= max, json!({"value": value, "max": max})),
    };
    let mut entry = entry;
    entry["goal_met"] = met.into();
    let goals = report
        .figures
        .entry("crd_goals")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(goals) = goals {
        goals.insert(name.to_owned(), entry);
    }
    let all = report.figures["crd_goals"]
        .as_object()
        .is_some_and(|goals| goals.values().all(|goal| goal["goal_met"] == true));
    report.figure("crd_goals_met", all);
    if met { "met" } else { "MISSED" }
}

/// Records goal `name`: ours over the peer's at most 0.5 (see [`goal`]).
fn at_most_half(report: &mut Report, name: &str, ratio: f64) -> &'static str {
    goal(report, name, ratio, Bound::AtMost(0.5))
}

/// A figure the scenario's own run recorded.
fn figure(report: &Report, key: &str) -> Result<f64> {
    report
        .figures
        .get(key)
        .and_then(Value::as_f64)
        .with_context(|| format!("the run recorded no {key}"))
}

fn mib(bytes: u64) -> f64 {
    stats::round(bytes as f64 / f64::from(1 << 20), 1)
}
