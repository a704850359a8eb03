//! A hollow fleet: many simulated nodes in one process, each running the
//! real agent ([`nmstate_agent::agent::run_with_client`]) with the hollow
//! backend, as kubemark runs hollow kubelets. Every node has its own
//! client (so its own HTTP/2 connection, which carries its watches and
//! requests, as a real agent's), its own NodeNetworkState watch and
//! enactment watch, its own
//! `Ready` heartbeat, and a hollow network as big as a real node's
//! ([`crate::bench::objects::current_state`], about 19 KB of JSON) whose
//! applies take `apply_delay` and fail with `fail_probability`.
//!
//! What is not per node: the process, its Tokio runtime (one thread per
//! core), and no health server (`/healthz` is for a kubelet; a fleet of
//! 5 000 would hold 5 000 listening sockets for nothing).
//!
//! Each node's credentials are issued in memory from the server's local
//! CA (`<data-dir>/pki`): user `system:node:<node>` in `system:nodes`, as
//! `nmstate-apiserver kubeconfig` would write them, so node restriction
//! applies to every hollow node as to a real one.
//!
//! The binary is `nmstate-hollow-fleet` (the `scale` benchmark runs it).

use std::{path::PathBuf, time::Duration};

use anyhow::{Context, Result};
use nmstate_agent::{
    backend::{BackendKind, HollowOptions},
    config::Config,
};
use nmstate_apiserver::{kubeconfig::Kubeconfig, tls::LocalCa};
use serde_json::Value;
use tokio::{sync::watch, task::JoinSet};

use crate::bench::objects;

/// How the fleet runs.
#[derive(Clone, Debug)]
pub struct FleetOptions {
    /// The API server (or the balancer in front of its replicas), as an
    /// `https://` URL.
    pub server: String,
    /// A server data directory holding the local CA (`pki/`).
    pub data_dir: PathBuf,
    /// The first node's index: nodes are `node-<first>`.. (the names of
    /// [`objects::node_name`]).
    pub first: usize,
    /// How many nodes.
    pub nodes: usize,
    /// How long each apply takes.
    pub apply_delay: Duration,
    /// The probability that an apply fails (seeded per node).
    pub fail_probability: f64,
    /// The seed of node `i`'s failures is `seed + i`.
    pub seed: u64,
    /// The `Ready` heartbeat is renewed when older than this.
    pub ready_interval: Duration,
    /// Full state re-read period.
    pub resync: Duration,
    /// Nodes started per second (a fleet coming up at once would be a
    /// thundering herd of TLS handshakes and 19 KB first reports).
    pub start_rate: f64,
}

impl FleetOptions {
    /// The agent configuration of node `index`.
    fn agent_config(&self, index: usize) -> Config {
        let node = objects::node_name(index);
        let mut config = Config::new(node);
        config.backend = BackendKind::Hollow;
        config.health_address = None;
        config.ready_interval = self.ready_interval;
        config.resync = self.resync;
        config.node_labels = node_labels(index);
        config.hollow = HollowOptions {
            apply_delay: self.apply_delay,
            fail_probability: self.fail_probability,
            seed: self.seed.wrapping_add(index as u64),
            initial_state: Some(objects::current_state(index)),
            ..HollowOptions::default()
        };
        // nmstate's statistic of each apply, in this process: a helper
        // process per apply of thousands of nodes would be the fleet's
        // cost, not the server's.
        config.in_process_statistic = Some(|desired, current| desired.features(current));
        config
    }
}

/// The labels every benchmark node state carries
/// ([`objects::state_for_create`]'s).
fn node_labels(index: usize) -> std::collections::BTreeMap<String, String> {
    let object = objects::state_for_create(index);
    object["metadata"]["labels"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(key, value)| Some((key.clone(), value.as_str()?.to_owned())))
        .collect()
}

/// A client for node `node` with a certificate fresh from `ca`.
async fn node_client(ca: &LocalCa, server: &str, node: &str) -> Result<kube::Client> {
    let user = format!("system:node:{node}");
    let cert = ca.issue_client_cert(&user, &["system:nodes".to_owned()])?;
    let yaml = Kubeconfig::for_client(server, ca.cert_pem(), &user, &cert).to_yaml()?;
    let kubeconfig = kube::config::Kubeconfig::from_yaml(&yaml)?;
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await?;
    Ok(nmstate_agent::client::from_config(config)?)
}

/// Runs the fleet until `shutdown` turns true; `started` is called once
/// every node's agent is running.
pub async fn run(
    options: &FleetOptions,
    shutdown: watch::Receiver<bool>,
    started: impl FnOnce(),
) -> Result<()> {
    let ca = LocalCa::load(&options.data_dir)
        .with_context(|| format!("loading the CA of {}", options.data_dir.display()))?;
    let pause = Duration::from_secs_f64(1.0 / options.start_rate.max(1.0));
    let mut pacing = tokio::time::interval(pause);
    pacing.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut agents = JoinSet::new();
    for index in options.first..options.first + options.nodes {
        if *shutdown.borrow() {
            break;
        }
        pacing.tick().await;
        let config = options.agent_config(index);
        let client = node_client(&ca, &options.server, &config.node_name).await?;
        let shutdown = shutdown.clone();
        agents.spawn(async move {
            let node = config.node_name.clone();
            if let Err(error) =
                nmstate_agent::agent::run_with_client(config, client, shutdown).await
            {
                tracing::error!(%node, %error, "hollow agent failed");
            }
        });
    }
    started();
    while agents.join_next().await.is_some() {}
    Ok(())
}

/// Lifts the limit on open files to at least `wanted` when allowed (the
/// hard limit too, which only a privileged process may raise), else to the
/// hard limit; returns the limit now in force. Thousands of nodes hold
/// three or four connections each, in the fleet, in the server and in a
/// balancer between them; children inherit the limit.
pub fn raise_open_file_limit_to(wanted: u64) -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < wanted
        && setrlimit(Resource::RLIMIT_NOFILE, wanted, hard.max(wanted)).is_ok()
    {
        return wanted;
    }
    crate::bench::raise_open_file_limit()
}

/// Whether `state` (a NodeNetworkState as JSON) has a true `Ready`
/// condition: its agent has reported.
pub fn is_ready(state: &Value) -> bool {
    state["status"]["conditions"]
        .as_array()
        .is_some_and(|conditions| {
            conditions
                .iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_carry_the_benchmark_labels_and_a_big_state() {
        let options = FleetOptions {
            server: "https://127.0.0.1:1".to_owned(),
            data_dir: PathBuf::new(),
            first: 0,
            nodes: 1,
            apply_delay: Duration::from_secs(1),
            fail_probability: 0.0,
            seed: 7,
            ready_interval: Duration::from_secs(60),
            resync: Duration::from_secs(300),
            start_rate: 100.0,
        };
        let config = options.agent_config(3);
        assert_eq!(config.node_name, "node-3");
        assert_eq!(
            config
                .node_labels
                .get("node-role.kubernetes.io/worker")
                .map(String::as_str),
            Some("")
        );
        assert_eq!(config.hollow.seed, 10);
        assert_eq!(config.health_address, None);
        let state = config.hollow.initial_state.unwrap_or_default();
        assert!(state.to_string().len() > 15_000);
    }
}
