//! `list`: every node state listed through the API, as JSON and as a Table
//! (what `kubectl get` asks for), against one etcd range read of the same
//! keys. Each is timed from sending the request to having the whole answer;
//! the median of several runs is reported.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use bytes::Bytes;
use http::StatusCode;
use serde_json::Value;

use super::{
    Cluster, Counts, Report, STATES, progress, report_server_latencies, stats,
    write::{Payloads, write_through_api},
};
use crate::https::{Connection, HttpsClient};

/// The longest acceptable median time to list every node state.
const GOAL: Duration = Duration::from_secs(1);

/// What `kubectl get` asks for.
const TABLE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io";

/// The etcd prefix the server stores node states under.
const ETCD_PREFIX: &str = "/registry/nmstate.io/nodenetworkstates/";

pub(super) async fn run(cluster: &Cluster, counts: &Counts, report: &mut Report) -> Result<()> {
    let count = counts.list_objects;
    progress(format!("writing {count} node states through the API"));
    let payloads = Payloads::build(count);
    let mut connections = cluster.connections(counts.concurrency).await?;
    write_through_api(&mut connections, &payloads).await?;
    drop(payloads);
    let rss_written = cluster.apiserver_rss_bytes()?;

    let mut connection = cluster.client.connect().await?;
    let mut kv = cluster
        .etcd_client()
        .await?
        .kv_client()
        .max_decoding_message_size(usize::MAX);

    // Check once, untimed, that each way sees every object.
    let (first_json, json) = list(&mut connection, &[]).await?;
    let rss_first_json = cluster.apiserver_rss_bytes()?;
    check_count("the JSON list", &json, "items", count)?;
    let (first_table, table) = list(&mut connection, &[("accept", TABLE)]).await?;
    let rss_first_table = cluster.apiserver_rss_bytes()?;
    check_count("the Table", &table, "rows", count)?;
    let etcd_count = kv
        .get(
            ETCD_PREFIX,
            Some(etcd_client::GetOptions::new().with_prefix()),
        )
        .await?
        .kvs()
        .len();
    if etcd_count != count {
        bail!("etcd holds {etcd_count} node states, not {count}");
    }

    progress(format!("timing {} lists of each kind", counts.list_runs));
    let (mut json_times, mut table_times, mut etcd_times) = (Vec::new(), Vec::new(), Vec::new());
    let (mut json_bytes, mut table_bytes, mut etcd_bytes) = (0, 0, 0);
    for _ in 0..counts.list_runs {
        let start = Instant::now();
        let answer = kv
            .get(
                ETCD_PREFIX,
                Some(etcd_client::GetOptions::new().with_prefix()),
            )
            .await?;
        etcd_times.push(start.elapsed());
        etcd_bytes = answer.kvs().iter().map(|kv| kv.value().len()).sum();

        let (time, body) = list(&mut connection, &[]).await?;
        json_times.push(time);
        json_bytes = body.len();

        let (time, body) = list(&mut connection, &[("accept", TABLE)]).await?;
        table_times.push(time);
        table_bytes = body.len();
    }
    let rss_listed = cluster.apiserver_rss_bytes()?;
    let median = |times: &[Duration]| stats::median(times).unwrap_or_default();
    let (json_time, table_time, etcd_time) = (
        median(&json_times),
        median(&table_times),
        median(&etcd_times),
    );
    let ratio = |time: Duration| stats::round(time.as_secs_f64() / etcd_time.as_secs_f64(), 3);
    let goal = |time: Duration| if time <= GOAL { "met" } else { "MISSED" };

    report.line(format!(
        "list: {count} node states, median of {} runs (first untimed run in brackets)",
        counts.list_runs
    ));
    report.line(format!(
        "  API JSON:   {:>8.1} ms  [{:.1} ms]  {:.1} MB  (goal <= {} ms: {})",
        json_time.as_secs_f64() * 1000.0,
        first_json.as_secs_f64() * 1000.0,
        json_bytes as f64 / 1e6,
        GOAL.as_millis(),
        goal(json_time)
    ));
    report.line(format!(
        "  API Table:  {:>8.1} ms  [{:.1} ms]  {:.1} MB  (goal <= {} ms: {})",
        table_time.as_secs_f64() * 1000.0,
        first_table.as_secs_f64() * 1000.0,
        table_bytes as f64 / 1e6,
        GOAL.as_millis(),
        goal(table_time)
    ));
    report.line(format!(
        "  etcd range: {:>8.1} ms  {:.1} MB of values",
        etcd_time.as_secs_f64() * 1000.0,
        etcd_bytes as f64 / 1e6,
    ));
    report.line(format!(
        "  ratio API/etcd: JSON {:.3}, Table {:.3}",
        ratio(json_time),
        ratio(table_time)
    ));
    let mib = |bytes: u64| stats::round(bytes as f64 / f64::from(1 << 20), 1);
    report.line(format!(
        "  server RSS: {:.1} MiB with the objects written, {:.1} MiB after the first JSON list, \
         {:.1} MiB after the first Table, {:.1} MiB after all lists",
        mib(rss_written),
        mib(rss_first_json),
        mib(rss_first_table),
        mib(rss_listed)
    ));
    report_server_latencies(cluster, report).await?;
    report.figure("rss_written_mib", mib(rss_written));
    report.figure("rss_first_json_mib", mib(rss_first_json));
    report.figure("rss_first_table_mib", mib(rss_first_table));
    report.figure("rss_listed_mib", mib(rss_listed));
    report.figure("objects", count);
    report.figure("runs", counts.list_runs);
    report.figure("api_json_ms", stats::millis(json_time));
    report.figure("api_table_ms", stats::millis(table_time));
    report.figure("etcd_ms", stats::millis(etcd_time));
    report.figure("first_api_json_ms", stats::millis(first_json));
    report.figure("first_api_table_ms", stats::millis(first_table));
    report.figure("api_json_bytes", json_bytes);
    report.figure("api_table_bytes", table_bytes);
    report.figure("etcd_bytes", etcd_bytes);
    report.figure("ratio", ratio(json_time));
    report.figure("table_ratio", ratio(table_time));
    report.figure("goal_max_ms", stats::millis(GOAL));
    report.figure("goal_met", json_time <= GOAL && table_time <= GOAL);
    Ok(())
}

/// Lists of every node state through another server (see [`time_lists`]).
#[derive(Clone, Copy, Debug)]
pub(super) struct Lists {
    /// The first JSON list and the first Table, untimed in the medians.
    pub(super) first_json: Duration,
    pub(super) first_table: Duration,
    /// The medians of the timed runs.
    pub(super) json: Duration,
    pub(super) table: Duration,
    /// The size of the answers.
    pub(super) json_bytes: usize,
    pub(super) table_bytes: usize,
}

/// The lists of `run` through `client`: a first JSON list and Table,
/// checked to hold `count` node states, then `runs` timed lists of each.
pub(super) async fn time_lists(client: &HttpsClient, count: usize, runs: usize) -> Result<Lists> {
    let mut connection = client.connect().await?;
    let (first_json, json) = list(&mut connection, &[]).await?;
    check_count("the JSON list", &json, "items", count)?;
    let (first_table, table) = list(&mut connection, &[("accept", TABLE)]).await?;
    check_count("the Table", &table, "rows", count)?;
    let (mut json_times, mut table_times) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        json_times.push(list(&mut connection, &[]).await?.0);
        table_times.push(list(&mut connection, &[("accept", TABLE)]).await?.0);
    }
    let median = |times: &[Duration]| stats::median(times).unwrap_or_default();
    Ok(Lists {
        first_json,
        first_table,
        json: median(&json_times),
        table: median(&table_times),
        json_bytes: json.len(),
        table_bytes: table.len(),
    })
}

/// Lists node states on `connection` with `headers`: the time to the whole
/// answer, and the answer.
async fn list(connection: &mut Connection, headers: &[(&str, &str)]) -> Result<(Duration, Bytes)> {
    let start = Instant::now();
    let response = connection
        .request("GET", STATES, headers, Bytes::new())
        .await?;
    let time = start.elapsed();
    if response.status != StatusCode::OK {
        bail!(
            "listing: {} {}",
            response.status,
            String::from_utf8_lossy(&response.body)
        );
    }
    Ok((time, response.body))
}

/// Checks that `what` holds `count` entries in its list field `field`.
fn check_count(what: &str, body: &[u8], field: &str, count: usize) -> Result<()> {
    let value: Value = serde_json::from_slice(body)?;
    let found = value[field].as_array().map_or(0, Vec::len);
    if found != count {
        bail!("{what} has {found} {field}, not {count}");
    }
    Ok(())
}
