//! `write`: node states created and then given their ~20 KB status through
//! the API (the server on etcd), against the same two puts per object
//! straight into etcd with `etcd-client`, at the same concurrency.

use std::{
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use futures::future::try_join_all;
use http::StatusCode;
use serde_json::Value;

use super::{
    Cluster, Counts, Report, STATES, objects, progress, report_cpu, report_server_latencies, stats,
};
use crate::https::Connection;

/// The lowest acceptable ratio of API to etcd throughput.
const GOAL_RATIO: f64 = 0.5;

/// The most server CPU time one object (its create and its status update)
/// may cost through the API, in milliseconds.
const GOAL_SERVER_CPU_MS: f64 = 0.35;

/// Where the baseline puts its keys: outside the server's prefix, so that
/// its watch cache does not see them.
const BASELINE_PREFIX: &str = "/bench/nodenetworkstates/";

/// The bytes written for each object, built before any clock starts.
#[derive(Debug)]
pub(super) struct Payloads {
    objects: Vec<Payload>,
}

#[derive(Debug)]
struct Payload {
    name: String,
    /// The create body (metadata only).
    create: Bytes,
    /// The status, as JSON.
    status: Vec<u8>,
}

impl Payloads {
    /// Node states `0..count`.
    pub(super) fn build(count: usize) -> Payloads {
        let objects = (0..count)
            .map(|node| Payload {
                name: objects::node_name(node),
                create: Bytes::from(objects::state_for_create(node).to_string()),
                status: objects::state_status(node).to_string().into_bytes(),
            })
            .collect();
        Payloads { objects }
    }

    /// How many objects.
    pub(super) fn len(&self) -> usize {
        self.objects.len()
    }

    /// The mean size of a whole object (the update's body).
    fn mean_object_bytes(&self) -> usize {
        let total: usize = self
            .objects
            .iter()
            .map(|payload| payload.update_body("1").len())
            .sum();
        total / self.objects.len().max(1)
    }
}

impl Payload {
    /// The body of the status update: the object at `resource_version` with
    /// its status.
    fn update_body(&self, resource_version: &str) -> Bytes {
        let mut body = format!(
            r#"{{"apiVersion":"nmstate.io/v1","kind":"NodeNetworkState","metadata":{{"name":"{}","resourceVersion":"{resource_version}"}},"status":"#,
            self.name
        )
        .into_bytes();
        body.extend_from_slice(&self.status);
        body.push(b'}');
        Bytes::from(body)
    }
}

pub(super) async fn run(cluster: &Cluster, counts: &Counts, report: &mut Report) -> Result<()> {
    let payloads = Payloads::build(counts.write_objects);
    let concurrency = counts.concurrency;

    progress(format!(
        "etcd baseline: {} objects, {concurrency} concurrent",
        payloads.len()
    ));
    let etcd = cluster.etcd_client().await?;
    let cpu_before = cluster.cpu_times()?;
    let etcd_time = put_into_etcd(&etcd, &payloads, concurrency).await?;
    let cpu_between = cluster.cpu_times()?;

    progress(format!(
        "API: {} objects over {concurrency} connections",
        payloads.len()
    ));
    let mut connections = cluster.connections(concurrency).await?;
    let api_time = write_through_api(&mut connections, &payloads).await?;
    let cpu_after = cluster.cpu_times()?;

    let per_second = |time: Duration| stats::round(payloads.len() as f64 / time.as_secs_f64(), 1);
    let (api_rate, etcd_rate) = (per_second(api_time), per_second(etcd_time));
    let ratio = stats::round(api_rate / etcd_rate, 3);
    let object_bytes = payloads.mean_object_bytes();
    report.line(format!(
        "write: {} node states of {:.1} KB, each created then given its status, {concurrency} concurrent clients",
        payloads.len(),
        object_bytes as f64 / 1000.0
    ));
    report.line(format!(
        "  API (nmstate-apiserver on etcd): {api_rate:>8.1} objects/s ({:.2} s)",
        api_time.as_secs_f64()
    ));
    report.line(format!(
        "  etcd (etcd-client, 2 puts):      {etcd_rate:>8.1} objects/s ({:.2} s)",
        etcd_time.as_secs_f64()
    ));
    let met = |met: bool| if met { "met" } else { "MISSED" };
    report.line(format!(
        "  ratio API/etcd: {ratio:.3} (goal >= {GOAL_RATIO}: {})",
        met(ratio >= GOAL_RATIO)
    ));
    let api_cpu = cpu_after.since(cpu_between);
    let server_cpu_ms = stats::round(
        api_cpu.apiserver.as_secs_f64() * 1000.0 / payloads.len().max(1) as f64,
        3,
    );
    report_cpu(
        report,
        "object through the API",
        "api",
        api_cpu,
        payloads.len(),
    );
    report.line(format!(
        "  server CPU per object: {server_cpu_ms:.3} ms (goal <= {GOAL_SERVER_CPU_MS} ms: {})",
        met(server_cpu_ms <= GOAL_SERVER_CPU_MS)
    ));
    report_cpu(
        report,
        "object into etcd",
        "etcd",
        cpu_between.since(cpu_before),
        payloads.len(),
    );
    report_server_latencies(cluster, report).await?;
    report.figure("objects", payloads.len());
    report.figure("object_bytes", object_bytes);
    report.figure("concurrency", concurrency);
    report.figure("api_objects_per_s", api_rate);
    report.figure("etcd_objects_per_s", etcd_rate);
    report.figure("api_seconds", stats::seconds(api_time));
    report.figure("etcd_seconds", stats::seconds(etcd_time));
    report.figure("ratio", ratio);
    report.figure("goal_min_ratio", GOAL_RATIO);
    report.figure("goal_max_server_cpu_ms", GOAL_SERVER_CPU_MS);
    report.figure(
        "goal_met",
        ratio >= GOAL_RATIO && server_cpu_ms <= GOAL_SERVER_CPU_MS,
    );
    Ok(())
}

/// Creates every object through the API and then writes its status with the
/// `resourceVersion` the create returned, as an agent does; the
/// connections share the objects. Returns the elapsed time.
pub(super) async fn write_through_api(
    connections: &mut [Connection],
    payloads: &Payloads,
) -> Result<Duration> {
    let next = AtomicUsize::new(0);
    let start = Instant::now();
    try_join_all(connections.iter_mut().map(|connection| async {
        while let Some(payload) = payloads.objects.get(next.fetch_add(1, Ordering::Relaxed)) {
            let created = connection
                .request(
                    "POST",
                    STATES,
                    &[("content-type", "application/json")],
                    payload.create.clone(),
                )
                .await?;
            if created.status != StatusCode::CREATED {
                bail!(
                    "creating {}: {} {}",
                    payload.name,
                    created.status,
                    String::from_utf8_lossy(&created.body)
                );
            }
            let created: Value = serde_json::from_slice(&created.body)?;
            let resource_version = created["metadata"]["resourceVersion"]
                .as_str()
                .context("the created object has no resourceVersion")?;
            let updated = connection
                .request(
                    "PUT",
                    &format!("{STATES}/{}/status", payload.name),
                    &[("content-type", "application/json")],
                    payload.update_body(resource_version),
                )
                .await?;
            if updated.status != StatusCode::OK {
                bail!(
                    "updating the status of {}: {} {}",
                    payload.name,
                    updated.status,
                    String::from_utf8_lossy(&updated.body)
                );
            }
        }
        Ok(())
    }))
    .await?;
    Ok(start.elapsed())
}

/// The baseline: for each object a put of the create body and a put of the
/// whole object (at the revision the first put returned), `concurrency`
/// at a time on one etcd client, as the server has one.
async fn put_into_etcd(
    etcd: &etcd_client::Client,
    payloads: &Payloads,
    concurrency: usize,
) -> Result<Duration> {
    let next = AtomicUsize::new(0);
    let start = Instant::now();
    try_join_all((0..concurrency).map(|_| {
        let mut kv = etcd.kv_client();
        let next = &next;
        async move {
            while let Some(payload) = payloads.objects.get(next.fetch_add(1, Ordering::Relaxed)) {
                let key = format!("{BASELINE_PREFIX}{}", payload.name);
                let created = kv.put(key.as_str(), payload.create.to_vec(), None).await?;
                let revision = created.header().map_or(0, |header| header.revision());
                kv.put(
                    key,
                    payload.update_body(&revision.to_string()).to_vec(),
                    None,
                )
                .await?;
            }
            anyhow::Ok(())
        }
    }))
    .await?;
    Ok(start.elapsed())
}
