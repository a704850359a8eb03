//! `watch`: one enactment watch per node, each with the per-node label
//! selector an agent uses, on its own HTTP/1.1 connection. Enactments are
//! created (one per node) and then each one's status is updated; for every
//! update we measure the time from the write's acknowledgement (its
//! response fully read by the writer) to the node's watcher receiving the
//! MODIFIED event, and the server's resident memory before the watches are
//! opened and after the updates.
//!
//! The baseline is a raw etcd watch on the enactment prefix, open during
//! the same updates: what the server adds to etcd's own delivery. Most
//! events reach both watchers before the writer has read its response, so
//! latencies from the acknowledgement are mostly 0 and their ratio is
//! noise; the ratio is therefore taken between the p99s from sending the
//! write, which both share. A second round of updates watched by one
//! watcher of all enactments (no selector) shows the cost of one stream
//! carrying every event.

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt, future::try_join_all, stream};
use http::StatusCode;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::Value;
use tokio::task::JoinSet;

use super::{
    Cluster, Counts, ENACTMENTS, Report, connections, objects, progress, report_server_latencies,
    rss_bytes, stats,
};
use crate::https::{Connection, HttpsClient};

/// The highest acceptable p99 delivery latency with every watch open.
const GOAL_P99: Duration = Duration::from_millis(50);
/// The highest acceptable growth of the server's memory for the watches.
const GOAL_RSS_GROWTH: u64 = 50 << 20;
/// How many watches are being opened at once.
const OPENING: usize = 32;
/// A bound on every wait, so that a broken server fails the run instead of
/// hanging it.
const PATIENCE: Duration = Duration::from_secs(120);
/// Where the server stores enactments in etcd.
const ETCD_PREFIX: &str = "/registry/nmstate.io/nodenetworkconfigurationenactments/";

pub(super) async fn run(cluster: &Cluster, counts: &Counts, report: &mut Report) -> Result<()> {
    let nodes = counts.watches;
    let clock = Clock::new();
    let mut writers = cluster.connections(counts.concurrency).await?;
    let rss_before = cluster.apiserver_rss_bytes()?;

    progress(format!("opening {nodes} per-node enactment watches"));
    let many = Round::new(nodes);
    let mut watchers = JoinSet::new();
    let opened = stream::iter(0..nodes)
        .map(|node| open_watch(&cluster.client, Some(node), None))
        .buffer_unordered(OPENING)
        .try_collect::<Vec<_>>()
        .await?;
    for (node, connection, body) in opened {
        watchers.spawn(read_events(connection, body, node, many.clone(), clock));
    }
    let rss_watching = cluster.apiserver_rss_bytes()?;

    progress(format!("creating {nodes} enactments"));
    let versions = Versions::new(nodes);
    write_all(&mut writers, &clock, &versions, &many, create).await?;
    wait_for("ADDED events", &many.added, nodes, &mut watchers).await?;
    let added = latencies(&many.write_acks, &many.added).summary()?;

    progress(format!(
        "updating {nodes} enactments, with a raw etcd watch too"
    ));
    let raw = Round::new(nodes);
    watch_etcd(cluster, raw.clone(), clock, &mut watchers).await?;
    many.write_starts.clear();
    many.write_acks.clear();
    write_all(&mut writers, &clock, &versions, &many, status_update(1)).await?;
    wait_for("MODIFIED events", &many.modified, nodes, &mut watchers).await?;
    wait_for("etcd events", &raw.modified, nodes, &mut watchers).await?;
    let rss_after = cluster.apiserver_rss_bytes()?;
    let api = latencies(&many.write_acks, &many.modified);
    let etcd = latencies(&many.write_acks, &raw.modified);
    let api_from_send = latencies(&many.write_starts, &many.modified).summary()?;
    let etcd_from_send = latencies(&many.write_starts, &raw.modified).summary()?;
    watchers.shutdown().await;

    progress("a second round of updates with one watcher of all enactments");
    let single = Round::new(nodes);
    let (node, connection, body) = open_watch(&cluster.client, None, None).await?;
    watchers.spawn(read_events(connection, body, node, single.clone(), clock));
    // Without a resourceVersion the watch starts with an ADDED per object:
    // once all are in, it is live.
    wait_for("initial ADDED events", &single.added, nodes, &mut watchers).await?;
    write_all(&mut writers, &clock, &versions, &single, status_update(2)).await?;
    wait_for("MODIFIED events", &single.modified, nodes, &mut watchers).await?;
    let one = latencies(&single.write_acks, &single.modified).summary()?;
    watchers.shutdown().await;

    let (early, etcd_early) = (api.early, etcd.early);
    let (api, etcd) = (api.summary()?, etcd.summary()?);
    let ms = stats::millis;
    let mib = |bytes: u64| stats::round(bytes as f64 / f64::from(1 << 20), 1);
    let growth = rss_after.saturating_sub(rss_before);
    let ratio = stats::round(
        api_from_send.p99.as_secs_f64() / etcd_from_send.p99.as_secs_f64(),
        3,
    );
    let p99_met = api.p99 <= GOAL_P99;
    let rss_met = growth <= GOAL_RSS_GROWTH;
    let verdict = |met: bool| if met { "met" } else { "MISSED" };

    report.line(format!(
        "watch: {nodes} watches (labelSelector=nmstate.io/node=node-i, one HTTP/1.1 connection each); \
         {nodes} enactments created, then each one's status updated, by {} writers",
        counts.concurrency
    ));
    report.line(format!(
        "  MODIFIED after the write's ack, API watches:   {api} (goal p99 <= {} ms: {})",
        GOAL_P99.as_millis(),
        verdict(p99_met)
    ));
    report.line(format!(
        "  MODIFIED after the write's ack, raw etcd watch: {etcd}"
    ));
    report.line(format!(
        "  events before their write's ack (counted as 0 ms): API {early} of {nodes}, etcd {etcd_early}"
    ));
    report.line(format!(
        "  MODIFIED after the write was sent, API watches:   {api_from_send}"
    ));
    report.line(format!(
        "  MODIFIED after the write was sent, raw etcd watch: {etcd_from_send}"
    ));
    report.line(format!(
        "  ratio p99 API/etcd, from the write's send: {ratio:.3}"
    ));
    report.line(format!(
        "  ADDED after the create's ack, API watches:     {added}"
    ));
    report.line(format!(
        "  second round, one watcher of all enactments, MODIFIED after the ack: {one}"
    ));
    report.line(format!(
        "  server RSS: {:.1} MiB before, {:.1} MiB with the watches open, {:.1} MiB after the updates: \
         +{:.1} MiB (goal <= {} MiB: {})",
        mib(rss_before),
        mib(rss_watching),
        mib(rss_after),
        mib(growth),
        GOAL_RSS_GROWTH >> 20,
        verdict(rss_met)
    ));
    report_server_latencies(cluster, report).await?;
    report.figure("watches", nodes);
    report.figure("events", nodes);
    report.figure("writers", counts.concurrency);
    report.figure("p50_ms", ms(api.p50));
    report.figure("p99_ms", ms(api.p99));
    report.figure("etcd_p50_ms", ms(etcd.p50));
    report.figure("etcd_p99_ms", ms(etcd.p99));
    report.figure("early_events", early);
    report.figure("etcd_early_events", etcd_early);
    report.figure("from_send_p50_ms", ms(api_from_send.p50));
    report.figure("from_send_p99_ms", ms(api_from_send.p99));
    report.figure("etcd_from_send_p50_ms", ms(etcd_from_send.p50));
    report.figure("etcd_from_send_p99_ms", ms(etcd_from_send.p99));
    report.figure(
        "baseline",
        "raw etcd watch on the same writes; ratio of p99s from the write's send",
    );
    report.figure("ratio", ratio);
    report.figure("added_p50_ms", ms(added.p50));
    report.figure("added_p99_ms", ms(added.p99));
    report.figure("single_watcher_p50_ms", ms(one.p50));
    report.figure("single_watcher_p99_ms", ms(one.p99));
    report.figure("rss_before_mib", mib(rss_before));
    report.figure("rss_watching_mib", mib(rss_watching));
    report.figure("rss_after_mib", mib(rss_after));
    report.figure("rss_growth_mib", mib(growth));
    report.figure("goal_max_p99_ms", ms(GOAL_P99));
    report.figure("goal_max_rss_growth_mib", mib(GOAL_RSS_GROWTH));
    report.figure("goal_met", p99_met && rss_met);
    Ok(())
}

/// What the per-node watches measured on another server (see
/// [`peer_round`]).
#[derive(Debug)]
pub(super) struct PeerRound {
    /// MODIFIED after the write's acknowledgement.
    pub(super) modified: Summary,
    /// The resident memory of each process asked for, before the watches
    /// were opened and after the updates.
    pub(super) rss_before: Vec<u64>,
    pub(super) rss_after: Vec<u64>,
}

/// The status generation [`peer_round`] writes: one the main run has not
/// written, so that every update changes the object.
const PEER_GENERATION: i64 = 3;

/// The main figures of `run` on another server, through `client`: one
/// per-node enactment watch per node, each enactment created (or, when
/// `existing`, its initial ADDED awaited and its `resourceVersion` listed),
/// then each one's status updated; the delivery latencies after the
/// updates' acknowledgements, and the resident memory of `pids`.
pub(super) async fn peer_round(
    client: &HttpsClient,
    counts: &Counts,
    pids: &[u32],
    existing: bool,
) -> Result<PeerRound> {
    let nodes = counts.watches;
    let clock = Clock::new();
    let mut writers = connections(client, counts.concurrency).await?;
    let rss = || {
        pids.iter()
            .map(|pid| rss_bytes(*pid))
            .collect::<Result<Vec<_>>>()
    };
    let rss_before = rss()?;
    progress(format!("opening {nodes} per-node enactment watches"));
    // With no objects yet, the watches start where a list ends, as an
    // informer's do: kube-apiserver refuses a watch from "now" (no
    // resourceVersion) while a new resource's watch cache lags behind etcd.
    let versions = Versions::new(nodes);
    let start = if existing {
        None
    } else {
        Some(versions.list(client).await?)
    };
    let round = Round::new(nodes);
    let mut watchers = JoinSet::new();
    let opened = stream::iter(0..nodes)
        .map(|node| open_watch(client, Some(node), start.as_deref()))
        .buffer_unordered(OPENING)
        .try_collect::<Vec<_>>()
        .await?;
    for (node, connection, body) in opened {
        watchers.spawn(read_events(connection, body, node, round.clone(), clock));
    }
    if existing {
        wait_for("initial ADDED events", &round.added, nodes, &mut watchers).await?;
        versions.list(client).await?;
    } else {
        progress(format!("creating {nodes} enactments"));
        write_all(&mut writers, &clock, &versions, &round, create).await?;
        wait_for("ADDED events", &round.added, nodes, &mut watchers).await?;
    }
    progress(format!("updating {nodes} enactments"));
    round.write_starts.clear();
    round.write_acks.clear();
    write_all(
        &mut writers,
        &clock,
        &versions,
        &round,
        status_update(PEER_GENERATION),
    )
    .await?;
    wait_for("MODIFIED events", &round.modified, nodes, &mut watchers).await?;
    let rss_after = rss()?;
    watchers.shutdown().await;
    Ok(PeerRound {
        modified: latencies(&round.write_acks, &round.modified).summary()?,
        rss_before,
        rss_after,
    })
}

/// A monotonic clock shared by writers and watchers: nanoseconds since the
/// run began, never 0 (0 means "not yet" in [`Stamps`]).
#[derive(Clone, Copy, Debug)]
struct Clock {
    start: Instant,
}

impl Clock {
    fn new() -> Clock {
        Clock {
            start: Instant::now(),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos())
            .unwrap_or(u64::MAX)
            .max(1)
    }
}

/// One time stamp per node, set once, and how many are set.
#[derive(Debug)]
struct Stamps {
    times: Vec<AtomicU64>,
    count: AtomicUsize,
}

impl Stamps {
    fn new(nodes: usize) -> Stamps {
        Stamps {
            times: (0..nodes).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicUsize::new(0),
        }
    }

    /// Sets node's stamp unless it is set already.
    fn record(&self, node: usize, now: u64) {
        if let Some(time) = self.times.get(node)
            && time
                .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.count.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn get(&self, node: usize) -> u64 {
        self.times[node].load(Ordering::Relaxed)
    }

    fn count(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    fn clear(&self) {
        for time in &self.times {
            time.store(0, Ordering::Relaxed);
        }
        self.count.store(0, Ordering::Relaxed);
    }
}

/// The stamps of one round: when each write was sent and acknowledged, and
/// when each node's first ADDED and MODIFIED events arrived.
#[derive(Debug)]
struct Round {
    write_starts: Stamps,
    write_acks: Stamps,
    added: Stamps,
    modified: Stamps,
}

/// Delivery latencies of one round.
#[derive(Debug)]
struct Latencies {
    samples: Vec<Duration>,
    /// Events that arrived before the writer had its acknowledgement.
    early: usize,
}

impl Round {
    fn new(nodes: usize) -> Arc<Round> {
        Arc::new(Round {
            write_starts: Stamps::new(nodes),
            write_acks: Stamps::new(nodes),
            added: Stamps::new(nodes),
            modified: Stamps::new(nodes),
        })
    }
}

/// The median and 99th percentile of some latencies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Summary {
    pub(super) p50: Duration,
    pub(super) p99: Duration,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "p50 {:.2} ms, p99 {:.2} ms",
            stats::millis(self.p50),
            stats::millis(self.p99)
        )
    }
}

impl Latencies {
    fn summary(&self) -> Result<Summary> {
        match (
            stats::percentile(&self.samples, 50.0),
            stats::percentile(&self.samples, 99.0),
        ) {
            (Some(p50), Some(p99)) => Ok(Summary { p50, p99 }),
            _ => bail!("no latencies were measured"),
        }
    }
}

/// The time from each node's stamp in `acks` to its stamp in `arrivals`;
/// an arrival before the ack counts as 0 and as early.
fn latencies(acks: &Stamps, arrivals: &Stamps) -> Latencies {
    let mut samples = Vec::with_capacity(acks.times.len());
    let mut early = 0;
    for node in 0..acks.times.len() {
        let (ack, arrival) = (acks.get(node), arrivals.get(node));
        if ack == 0 || arrival == 0 {
            continue;
        }
        if arrival < ack {
            early += 1;
        }
        samples.push(Duration::from_nanos(arrival.saturating_sub(ack)));
    }
    Latencies { samples, early }
}

/// A request for one node's enactment: method, path, body and the status
/// that means success.
#[derive(Debug)]
struct Write {
    method: &'static str,
    path: String,
    body: Value,
    expected: StatusCode,
}

/// The creation of node's enactment.
fn create(node: usize, _resource_version: u64) -> Write {
    Write {
        method: "POST",
        path: ENACTMENTS.to_owned(),
        body: objects::enactment(node),
        expected: StatusCode::CREATED,
    }
}

/// The update of node's enactment status to `generation`, as its agent
/// writes it: the whole object at the `resourceVersion` last written.
fn status_update(generation: i64) -> impl Fn(usize, u64) -> Write {
    move |node, resource_version| {
        let mut body = objects::enactment(node);
        body["metadata"]["resourceVersion"] = resource_version.to_string().into();
        body["status"] = objects::enactment_status(generation);
        Write {
            method: "PUT",
            path: format!("{ENACTMENTS}/{}/status", objects::enactment_name(node)),
            body,
            expected: StatusCode::OK,
        }
    }
}

/// The `resourceVersion` of each node's enactment, as the last write
/// returned it.
#[derive(Debug)]
struct Versions(Vec<AtomicU64>);

impl Versions {
    fn new(nodes: usize) -> Versions {
        Versions((0..nodes).map(|_| AtomicU64::new(0)).collect())
    }

    /// Takes each node's `resourceVersion` from a list of the enactments;
    /// returns the list's.
    async fn list(&self, client: &HttpsClient) -> Result<String> {
        let response = client.get(ENACTMENTS).await?;
        if !response.status.is_success() {
            bail!("listing enactments: {} {}", response.status, response.body);
        }
        let list: Value = serde_json::from_str(&response.body)?;
        for item in list["items"].as_array().into_iter().flatten() {
            let metadata = &item["metadata"];
            if let (Some(version), Some(rv)) = (
                metadata["name"]
                    .as_str()
                    .and_then(node_of)
                    .and_then(|node| self.0.get(node)),
                metadata["resourceVersion"]
                    .as_str()
                    .and_then(|rv| rv.parse().ok()),
            ) {
                version.store(rv, Ordering::Relaxed);
            }
        }
        list["metadata"]["resourceVersion"]
            .as_str()
            .map(str::to_owned)
            .context("a list without a resourceVersion")
    }
}

/// Sends `request(node, resourceVersion)` for every node over
/// `connections`, stamping when each was sent and acknowledged in `round`
/// and keeping the `resourceVersion` each response carries in `versions`.
async fn write_all(
    connections: &mut [Connection],
    clock: &Clock,
    versions: &Versions,
    round: &Round,
    request: impl Fn(usize, u64) -> Write,
) -> Result<()> {
    let next = AtomicUsize::new(0);
    let (next, request) = (&next, &request);
    try_join_all(connections.iter_mut().map(|connection| async move {
        loop {
            let node = next.fetch_add(1, Ordering::Relaxed);
            let Some(version) = versions.0.get(node) else {
                return anyhow::Ok(());
            };
            let write = request(node, version.load(Ordering::Relaxed));
            let body = Bytes::from(write.body.to_string());
            round.write_starts.record(node, clock.now());
            let response = connection
                .request(
                    write.method,
                    &write.path,
                    &[("content-type", "application/json")],
                    body,
                )
                .await?;
            if response.status != write.expected {
                bail!(
                    "{} {}: {} {}",
                    write.method,
                    write.path,
                    response.status,
                    String::from_utf8_lossy(&response.body)
                );
            }
            round.write_acks.record(node, clock.now());
            let written: Value = serde_json::from_slice(&response.body)?;
            let written = written["metadata"]["resourceVersion"]
                .as_str()
                .and_then(|rv| rv.parse().ok())
                .with_context(|| format!("{} {}: no resourceVersion", write.method, write.path))?;
            version.store(written, Ordering::Relaxed);
        }
    }))
    .await?;
    Ok(())
}

/// Opens an enactment watch on a connection of its own: node `node`'s, or
/// with `None` all enactments; from `resource_version` when given.
/// Returns once the server has answered.
async fn open_watch(
    client: &HttpsClient,
    node: Option<usize>,
    resource_version: Option<&str>,
) -> Result<(Option<usize>, Connection, Incoming)> {
    let mut connection = client.connect().await?;
    let mut path = match node {
        Some(node) => format!(
            "{ENACTMENTS}?watch=true&labelSelector=nmstate.io%2Fnode%3D{}",
            objects::node_name(node)
        ),
        None => format!("{ENACTMENTS}?watch=true"),
    };
    if let Some(resource_version) = resource_version {
        path.push_str(&format!("&resourceVersion={resource_version}"));
    }
    let response = connection.open("GET", &path, &[], Bytes::new()).await?;
    if response.status() != StatusCode::OK {
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        bail!("GET {path}: {status} {}", String::from_utf8_lossy(&body));
    }
    Ok((node, connection, response.into_body()))
}

/// Reads a watch's events, stamping each node's first ADDED and first
/// MODIFIED in `round`. A per-node watch (`node` given) must only see that
/// node's enactment.
async fn read_events(
    connection: Connection,
    mut body: Incoming,
    node: Option<usize>,
    round: Arc<Round>,
    clock: Clock,
) -> Result<()> {
    let mut pending = Vec::new();
    while let Some(frame) = body.frame().await {
        let now = clock.now();
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        pending.extend_from_slice(&data);
        while let Some(end) = pending.iter().position(|byte| *byte == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let event: Value = serde_json::from_slice(&line)
                .with_context(|| format!("a watch event: {}", String::from_utf8_lossy(&line)))?;
            let name = event["object"]["metadata"]["name"].as_str().unwrap_or("");
            let stamps = match event["type"].as_str() {
                Some("ADDED") => &round.added,
                Some("MODIFIED") => &round.modified,
                Some("BOOKMARK") => continue,
                _ => bail!("unexpected watch event {event}"),
            };
            let index = node_of(name).with_context(|| format!("an event for {name:?}"))?;
            if node.is_some_and(|node| node != index) {
                bail!("node-{node:?}'s watch got an event for {name}");
            }
            stamps.record(index, now);
        }
    }
    drop(connection);
    Ok(())
}

/// The node index in an enactment name `node-<index>.<policy>`.
fn node_of(enactment: &str) -> Option<usize> {
    enactment
        .strip_prefix("node-")?
        .split('.')
        .next()?
        .parse()
        .ok()
}

/// Starts a raw etcd watch on the enactment prefix that stamps each node's
/// first put in `round.modified`; returns once etcd has created it.
async fn watch_etcd(
    cluster: &Cluster,
    round: Arc<Round>,
    clock: Clock,
    tasks: &mut JoinSet<Result<()>>,
) -> Result<()> {
    let mut etcd = cluster.etcd_client().await?;
    let options = etcd_client::WatchOptions::new().with_prefix();
    let mut stream = etcd.watch(ETCD_PREFIX, Some(options)).await?;
    match stream.message().await? {
        Some(response) if response.created() => {}
        other => bail!("etcd did not create the watch: {other:?}"),
    }
    tasks.spawn(async move {
        let _etcd = etcd;
        while let Some(response) = stream.message().await? {
            let now = clock.now();
            for event in response.events() {
                let key = event.kv().map(|kv| kv.key_str()).transpose()?.unwrap_or("");
                let name = key.strip_prefix(ETCD_PREFIX).unwrap_or(key);
                if let Some(index) = node_of(name) {
                    round.modified.record(index, now);
                }
            }
        }
        Ok(())
    });
    Ok(())
}

/// Waits until `stamps` holds `count` stamps; fails if a watcher task ended
/// with an error, or after [`PATIENCE`].
async fn wait_for(
    what: &str,
    stamps: &Stamps,
    count: usize,
    watchers: &mut JoinSet<Result<()>>,
) -> Result<()> {
    let deadline = Instant::now() + PATIENCE;
    while stamps.count() < count {
        if let Some(ended) = watchers.try_join_next() {
            ended??;
            bail!("a watch ended while waiting for {what}");
        }
        if Instant::now() > deadline {
            bail!(
                "only {} of {count} {what} within {PATIENCE:?}",
                stamps.count()
            );
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_indexes_from_enactment_names() {
        assert_eq!(node_of("node-17.p"), Some(17));
        assert_eq!(node_of("node-0.p"), Some(0));
        assert_eq!(node_of("other.p"), None);
    }

    #[test]
    fn latencies_count_from_the_ack_and_clamp_early_events() {
        let (acks, arrivals) = (Stamps::new(3), Stamps::new(3));
        acks.record(0, 1_000_000);
        arrivals.record(0, 3_000_000);
        acks.record(1, 5_000_000);
        arrivals.record(1, 4_000_000);
        // Node 2 has no event: no sample.
        acks.record(2, 1);
        arrivals.record(0, 9_000_000);
        let latencies = latencies(&acks, &arrivals);
        assert_eq!(
            latencies.samples,
            vec![Duration::from_millis(2), Duration::ZERO]
        );
        assert_eq!(latencies.early, 1);
        assert_eq!(acks.count(), 3);
    }
}
