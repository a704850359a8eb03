//! Wires the agent together: the Kubernetes client, the backend, the
//! probes, the reporter, the enactor and the health server, and runs them
//! until shutdown.

use std::{collections::BTreeMap, net::SocketAddr, sync::Arc};

use k8s_openapi::{api::core::v1::Node, apimachinery::pkg::apis::meta::v1::OwnerReference};
use kube::Api;
use tokio::sync::{Notify, watch};

use crate::{
    backend::{self, BackendError, BackendOptions},
    client,
    config::Config,
    enactor::{Enactor, EnactorConfig},
    health,
    helper::Statistic,
    metrics::Metrics,
    probe,
    reporter::{Reporter, ReporterConfig},
};

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No usable Kubernetes client configuration.
    #[error(transparent)]
    Client(#[from] client::Error),
    /// The backend could not be started.
    #[error("backend: {0}")]
    Backend(#[source] BackendError),
    /// The health address cannot be bound.
    #[error("binding the health address {address}: {source}")]
    Health {
        /// The address.
        address: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Runs the agent until `shutdown` turns true. The health server's bound
/// address is logged (useful with port 0).
pub async fn run(config: Config, shutdown: watch::Receiver<bool>) -> Result<(), Error> {
    let client = client::connect(config.kubeconfig.as_deref()).await?;
    run_with_client(config, client, shutdown).await
}

/// As [`run`], through `client` instead of one built from
/// `config.kubeconfig`: a process that runs many hollow agents (the
/// benchmarks' fleet) builds each one's client from credentials in memory.
pub async fn run_with_client(
    config: Config,
    client: kube::Client,
    shutdown: watch::Receiver<bool>,
) -> Result<(), Error> {
    let backend = backend::build(
        config.backend,
        &BackendOptions {
            node_name: config.node_name.clone(),
            hollow: config.hollow.clone(),
            kernel_snapshot_file: config.kernel_snapshot_file.clone(),
            helper: config.helper.clone(),
        },
    )
    .await
    .map_err(Error::Backend)?;
    let metrics = Metrics::new(&config.node_name);
    let listener = match config.health_address {
        Some(address) => {
            let listener = health::bind(address)
                .await
                .map_err(|source| Error::Health { address, source })?;
            if let Ok(address) = listener.local_addr() {
                tracing::info!(%address, "serving /healthz and /metrics");
            }
            Some(listener)
        }
        None => None,
    };

    // Whatever an earlier run left uncommitted goes first: the node then
    // has its old configuration, and the enactments still in flight are
    // applied again.
    if let Err(error) = backend.rollback_stale().await {
        tracing::warn!(%error, "rolling back a stale checkpoint failed");
    }

    let (mut labels, owner) = node_object(&client, &config.node_name).await;
    labels.extend(config.node_labels.clone());

    // Once at start, what the libraries would otherwise warn about on every
    // read or apply (their repeated warnings are filtered out of the log).
    let versions = backend.versions().await;
    tracing::info!(
        network_manager = versions.host_network_manager.as_deref().unwrap_or("-"),
        nmstate = versions.handler_nmstate.as_deref().unwrap_or("-"),
        "backend versions (nmstate expects NetworkManager 1.46 or newer)"
    );
    let probes = probe::for_backend(
        config.backend.is_simulated(),
        &client,
        config.probe_timeout,
        &config.dns_probe_host,
    );

    let applied = Arc::new(Notify::new());
    let reporter = Reporter::new(
        ReporterConfig {
            node_name: config.node_name.clone(),
            labels,
            resync: config.resync,
            ready_interval: config.ready_interval,
            owner,
        },
        &client,
        Arc::clone(&backend),
        metrics.clone(),
        Arc::clone(&applied),
    );
    let enactor = Enactor::new(
        EnactorConfig {
            node_name: config.node_name.clone(),
            checkpoint_timeout: config.checkpoint_timeout,
            statistic: match config.in_process_statistic {
                Some(statistic) => Statistic::InProcess(statistic),
                None => Statistic::Helper(config.helper.clone()),
            },
        },
        &client,
        backend,
        probes,
        metrics.clone(),
        applied,
    );
    tracing::info!(node = %config.node_name, backend = config.backend.as_str(), "nmstate-agent started");
    tokio::join!(
        reporter.run(shutdown.clone()),
        enactor.run(shutdown.clone()),
        async {
            if let Some(listener) = listener {
                health::serve(listener, metrics, shutdown).await;
            }
        },
    );
    tracing::info!("nmstate-agent stopped");
    Ok(())
}

/// The labels of the Node object named `node` and an owner reference to
/// it, when the server has Nodes and lets the agent read its own (in a
/// cluster); nothing otherwise.
async fn node_object(
    client: &kube::Client,
    node: &str,
) -> (BTreeMap<String, String>, Option<OwnerReference>) {
    let nodes: Api<Node> = Api::all(client.clone());
    match nodes.get_opt(node).await {
        Ok(Some(object)) => {
            let owner = object.metadata.uid.clone().map(|uid| OwnerReference {
                api_version: "v1".to_owned(),
                kind: "Node".to_owned(),
                name: node.to_owned(),
                uid,
                ..OwnerReference::default()
            });
            (object.metadata.labels.unwrap_or_default(), owner)
        }
        Ok(None) => (BTreeMap::new(), None),
        Err(error) => {
            tracing::info!(%error, "the Node object is not readable: using --node-labels only");
            (BTreeMap::new(), None)
        }
    }
}
