//! `rollout`: the policy controller converging a capture policy over many
//! fake nodes whose "agents" finish every released enactment at once (one
//! status write each). Measures the time from creating the policy to
//! `Available N/N`, the writes the controller made per node (the
//! no-reconcile-storm goal: a small constant), and, as the baseline, the
//! same number of writes straight into etcd: the floor any controller
//! making those writes would pay.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use futures::future::try_join_all;
use http::StatusCode;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::{Cluster, ENACTMENTS, POLICIES, Report, STATES, objects, progress, report_cpu, stats};
use crate::https::{HttpsClient, watch_lines};

const POLICY: &str = "bench-rollout";
/// The controller's writes per node and policy generation must stay a small
/// constant (create, release, and a share of the policy status writes), not
/// grow with the node count.
const GOAL_WRITES_PER_NODE: f64 = 3.0;
/// Concurrent connections of the simulated agents and of the setup.
const CONCURRENCY: usize = 16;

/// Runs the scenario over `nodes` fake nodes.
pub(super) async fn run(cluster: &Cluster, nodes: usize, report: &mut Report) -> Result<()> {
    progress(format!("rollout: registering {nodes} nodes"));
    register_nodes(cluster, nodes).await?;
    let agents = spawn_agents(cluster).await?;

    let before = cluster.cpu_times()?;
    let writes_before = controller_writes(cluster).await?;
    let started = Instant::now();
    create_policy(&cluster.client, POLICY).await?;
    progress("rollout: waiting for the policy to be Available");
    wait_available(&cluster.client, POLICY, nodes).await?;
    let converged = started.elapsed();
    let cpu = cluster.cpu_times()?.since(before);
    let controller_writes = controller_writes(cluster).await? - writes_before;
    let agent_writes = agents.load(Ordering::Relaxed);

    progress("rollout: baseline: the same number of writes straight into etcd");
    let baseline = etcd_floor(cluster, controller_writes + agent_writes).await?;

    let per_node = controller_writes as f64 / nodes.max(1) as f64;
    let ratio = stats::seconds(baseline) / stats::seconds(converged).max(f64::EPSILON);
    report.line(format!(
        "rollout: {nodes} nodes, maxUnavailable 10%, agents finish at once"
    ));
    report.line(format!(
        "  converged in {:.2} s; controller writes {controller_writes} ({per_node:.2} per node), agents {agent_writes}",
        stats::seconds(converged)
    ));
    report.line(format!(
        "  goal: at most {GOAL_WRITES_PER_NODE} controller writes per node: {}",
        if per_node <= GOAL_WRITES_PER_NODE {
            "met"
        } else {
            "MISSED"
        }
    ));
    report.line(format!(
        "  baseline: the same {} writes straight into etcd take {:.2} s: ratio {ratio:.2}",
        controller_writes + agent_writes,
        stats::seconds(baseline)
    ));
    report_cpu(report, "node", "rollout", cpu, nodes);
    report.figure("rollout_nodes", nodes);
    report.figure(
        "rollout_seconds",
        stats::round(stats::seconds(converged), 3),
    );
    report.figure("rollout_controller_writes", controller_writes);
    report.figure(
        "rollout_controller_writes_per_node",
        stats::round(per_node, 2),
    );
    report.figure("rollout_agent_writes", agent_writes);
    report.figure(
        "rollout_etcd_floor_seconds",
        stats::round(stats::seconds(baseline), 3),
    );
    report.figure("ratio", stats::round(ratio, 3));
    report.figure("goal_met", per_node <= GOAL_WRITES_PER_NODE);
    Ok(())
}

/// Creates `name`, the capture policy every rollout benchmark rolls out
/// at `maxUnavailable: 10%` to the worker nodes: a bridge over the
/// interface of the default route, with that interface's addresses.
pub(super) async fn create_policy(client: &HttpsClient, name: &str) -> Result<()> {
    let policy = json!({
        "apiVersion": "nmstate.io/v1",
        "kind": "NodeNetworkConfigurationPolicy",
        "metadata": {"name": name},
        "spec": {
            "nodeSelector": {"node-role.kubernetes.io/worker": ""},
            "maxUnavailable": "10%",
            "capture": {
                "default-gw": "routes.running.destination==\"0.0.0.0/0\"",
                "base-iface": "interfaces.name==capture.default-gw.routes.running.0.next-hop-interface",
            },
            "desiredState": {"interfaces": [{
                "name": "br-ex", "type": "linux-bridge", "state": "up",
                "ipv4": "{{ capture.base-iface.interfaces.0.ipv4 }}",
                "bridge": {"options": {"stp": {"enabled": false}},
                           "port": [{"name": "{{ capture.base-iface.interfaces.0.name }}"}]},
            }]},
        },
    });
    let created = client
        .request_with(
            "POST",
            POLICIES,
            &[("content-type", "application/json")],
            Some(policy.to_string().into_bytes()),
        )
        .await?;
    if created.status != StatusCode::CREATED {
        bail!("creating the policy: {} {}", created.status, created.body);
    }
    Ok(())
}

/// How often a long wait says how far the rollout is.
const NOTE_EVERY: Duration = Duration::from_secs(15);

/// Waits (at most 10 minutes) until policy `name` is `Available` on all
/// `nodes` nodes, saying how far it is every [`NOTE_EVERY`].
pub(super) async fn wait_available(client: &HttpsClient, name: &str, nodes: usize) -> Result<()> {
    let expected = format!("{nodes}/{nodes} nodes successfully configured");
    let started = Instant::now();
    let deadline = started + Duration::from_secs(600);
    let mut next_note = started + NOTE_EVERY;
    loop {
        let policy: Value =
            serde_json::from_str(&client.get(&format!("{POLICIES}/{name}")).await?.body)?;
        if Instant::now() > next_note {
            next_note += NOTE_EVERY;
            let progressing = policy["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|c| c["type"] == "Progressing");
            progress(format!(
                "rollout: {:.0} s: {}",
                started.elapsed().as_secs_f64(),
                progressing.map_or("no Progressing condition yet", |c| c["message"]
                    .as_str()
                    .unwrap_or_default())
            ));
        }
        let available = policy["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Available" && c["status"] == "True" && c["message"] == expected);
        if available {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the policy did not converge: {}", policy["status"]);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Creates each node's state with labels, a current state and a fresh
/// `Ready` heartbeat, as its agent would.
async fn register_nodes(cluster: &Cluster, nodes: usize) -> Result<()> {
    let next = AtomicUsize::new(0);
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let workers = (0..CONCURRENCY).map(|_| async {
        let mut connection = cluster.client.connect().await?;
        loop {
            let node = next.fetch_add(1, Ordering::Relaxed);
            if node >= nodes {
                return Ok::<(), anyhow::Error>(());
            }
            let create = objects::state_for_create(node).to_string();
            let response = connection
                .request(
                    "POST",
                    STATES,
                    &[("content-type", "application/json")],
                    Bytes::from(create),
                )
                .await?;
            if response.status != StatusCode::CREATED {
                bail!("creating node state {node}: {}", response.status);
            }
            let mut status = objects::state_status(node);
            status["conditions"]
                .as_array_mut()
                .context("conditions")?
                .push(json!({
                    "type": "Ready", "status": "True", "reason": "AgentReporting",
                    "lastHeartbeatTime": now, "lastTransitionTime": now,
                }));
            let patch = json!({"status": status}).to_string();
            let response = connection
                .request(
                    "PATCH",
                    &format!("{STATES}/{}/status", objects::node_name(node)),
                    &[("content-type", "application/merge-patch+json")],
                    Bytes::from(patch),
                )
                .await?;
            if response.status != StatusCode::OK {
                bail!("reporting node state {node}: {}", response.status);
            }
        }
    });
    try_join_all(workers).await?;
    Ok(())
}

/// Agents that finish every released enactment at once: one watch of all
/// enactments feeds a pool of writers that mark each released enactment
/// Available. Returns the count of their writes.
async fn spawn_agents(cluster: &Cluster) -> Result<Arc<AtomicUsize>> {
    let writes = Arc::new(AtomicUsize::new(0));
    let (sender, receiver) = mpsc::unbounded_channel::<Value>();
    let receiver = Arc::new(tokio::sync::Mutex::new(receiver));
    for _ in 0..CONCURRENCY {
        let mut connection = cluster.client.connect().await?;
        let receiver = receiver.clone();
        let writes = writes.clone();
        tokio::spawn(async move {
            loop {
                let Some(mut enactment) = receiver.lock().await.recv().await else {
                    return;
                };
                let name = enactment["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                let now = k8s_openapi::jiff::Timestamp::now().to_string();
                let condition = |type_: &str, status: &str| {
                    json!({"type": type_, "status": status, "reason": "SuccessfullyConfigured",
                           "message": if type_ == "Available" { "successfully reconciled" } else { "" },
                           "lastHeartbeatTime": now, "lastTransitionTime": now})
                };
                enactment["status"]["conditions"] = json!([
                    condition("Available", "True"),
                    condition("Failing", "False"),
                    condition("Progressing", "False"),
                    condition("Pending", "False"),
                    condition("Aborted", "False"),
                ]);
                // Retried on a fresh copy when the controller wrote in
                // between.
                for _ in 0..10 {
                    let Ok(response) = connection
                        .request(
                            "PUT",
                            &format!("{ENACTMENTS}/{name}/status"),
                            &[("content-type", "application/json")],
                            Bytes::from(enactment.to_string()),
                        )
                        .await
                    else {
                        return;
                    };
                    if response.status == StatusCode::OK {
                        writes.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    let Ok(fresh) = connection
                        .request("GET", &format!("{ENACTMENTS}/{name}"), &[], Bytes::new())
                        .await
                    else {
                        return;
                    };
                    let Ok(fresh) = serde_json::from_slice::<Value>(&fresh.body) else {
                        break;
                    };
                    enactment["metadata"]["resourceVersion"] =
                        fresh["metadata"]["resourceVersion"].clone();
                }
            }
        });
    }
    let mut connection = cluster.client.connect().await?;
    let response = connection
        .open("GET", &format!("{ENACTMENTS}?watch=1"), &[], Bytes::new())
        .await?;
    tokio::spawn(watch_lines(response.into_body(), move |line| {
        let Ok(event) = serde_json::from_slice::<Value>(line) else {
            return;
        };
        let released = event["object"]["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| {
                c["type"] == "Progressing"
                    && c["status"] == "True"
                    && c["message"] == nmstate_openapi::condition::ENACTMENT_RELEASED_MESSAGE
            });
        if event["type"] != "DELETED" && released {
            let _ = sender.send(event["object"].clone());
        }
    }));
    Ok(writes)
}

/// `nmstate_controller_writes_total{result="ok"}` from the server's
/// metrics.
async fn controller_writes(cluster: &Cluster) -> Result<usize> {
    let metrics = cluster.client.get("/metrics").await?;
    Ok(controller_writes_in(&metrics.body))
}

/// `nmstate_controller_writes_total{result="ok"}` in metrics text.
pub(super) fn controller_writes_in(metrics: &str) -> usize {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("nmstate_controller_writes_total{result=\"ok\"} "))
        .and_then(|value| value.trim().parse::<f64>().ok())
        .unwrap_or(0.0) as usize
}

/// The time `count` puts of enactment-sized values straight into etcd take
/// at the same concurrency.
async fn etcd_floor(cluster: &Cluster, count: usize) -> Result<Duration> {
    let client = cluster.etcd_client().await?;
    let value = objects::enactment_status(1).to_string().into_bytes();
    let next = AtomicUsize::new(0);
    let started = Instant::now();
    let workers = (0..CONCURRENCY).map(|_| {
        let mut client = client.clone();
        let value = value.clone();
        let next = &next;
        async move {
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= count {
                    return Ok::<(), anyhow::Error>(());
                }
                client
                    .put(
                        format!("/bench/rollout/{}", index % 1000),
                        value.clone(),
                        None,
                    )
                    .await?;
            }
        }
    });
    try_join_all(workers).await?;
    Ok(started.elapsed())
}
