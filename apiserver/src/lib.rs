//! The nmstate.io API server.
//!
//! `main` parses flags into a [`config::Config`] and calls [`start`]; tests
//! build a `Config` directly and do the same. Everything that decides
//! something lives in a module below, each owning one concern:
//! [`storage`] (bytes at rest, revisions, watches), [`cache`] (every object
//! of a resource in memory, serving lists and watches), [`rules`] (the pure
//! write rules), [`api`] (the Kubernetes REST API), [`controller`] (the
//! policy rollout), [`auth`] (who is asking), [`kubeconfig`] (client
//! files for standalone access), [`tls`] (certificates), [`metrics`], and
//! [`server`] (connections, health, shutdown), with what they share below
//! them: [`request`], [`body`], [`status`] and [`state`]. Their layers are
//! written once, in `layers.rs`, whose test holds the code to them.

use std::sync::Arc;

pub mod api;
pub mod auth;
pub mod body;
pub mod cache;
pub mod config;
pub mod controller;
pub mod kubeconfig;
#[cfg(test)]
mod layers;
pub mod metrics;
pub mod request;
pub mod rules;
pub mod server;
pub mod state;
pub mod status;
pub mod storage;
pub mod tls;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The serving certificate could not be loaded or generated.
    #[error("TLS: {0}")]
    Tls(#[from] tls::Error),
    /// The credentials to reach kube-apiserver (kubeconfig, service
    /// account) are unusable.
    #[error("{0}")]
    TokenReview(#[from] auth::token::Error),
    /// The extension-apiserver-authentication ConfigMap could not be read.
    #[error("authentication ConfigMap: {0}")]
    AuthenticationConfigMap(#[from] auth::configmap::Error),
    /// The store could not be opened (etcd unreachable, file locked...).
    #[error("opening storage: {0}")]
    Storage(#[from] storage::Error),
    /// The listen address could not be bound.
    #[error("binding {address}: {source}")]
    Bind {
        /// The address.
        address: std::net::SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The admin kubeconfig could not be written.
    #[error("admin kubeconfig: {0}")]
    Kubeconfig(#[from] kubeconfig::Error),
    /// The data directory could not be created.
    #[error("creating data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: std::path::PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl From<auth::configmap::ResolveError> for StartError {
    fn from(error: auth::configmap::ResolveError) -> Self {
        match error {
            auth::configmap::ResolveError::Cluster(error) => StartError::TokenReview(error),
            auth::configmap::ResolveError::ConfigMap(error) => {
                StartError::AuthenticationConfigMap(error)
            }
        }
    }
}

/// A started server.
#[derive(Debug)]
pub struct Running {
    listening: server::Listening,
    compactor: Option<storage::compactor::Compactor>,
    controller: Option<tokio::task::JoinHandle<()>>,
    /// The shared state (store and shutdown flag).
    pub state: Arc<state::AppState>,
}

impl Running {
    /// The bound HTTPS address.
    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.listening.local_addr()
    }

    /// Stops accepting and drains in-flight requests.
    pub async fn shutdown(self) {
        self.listening.shutdown().await;
        if let Some(controller) = self.controller {
            // The controller ends (and resigns) once shutdown has begun.
            let _ = controller.await;
        }
        if let Some(compactor) = self.compactor {
            compactor.stop().await;
        }
        tracing::info!("server stopped");
    }
}

/// Prepares the data directory, TLS and the store, then binds and serves.
pub async fn start(config: &config::Config) -> Result<Running, StartError> {
    std::fs::create_dir_all(&config.data_dir).map_err(|source| StartError::DataDir {
        path: config.data_dir.clone(),
        source,
    })?;
    let cert = tls::load_or_generate(&config.tls)?;
    let (client_ca, request_header) = auth::configmap::resolve(
        config.authentication.as_ref(),
        &config.data_dir,
        &config.client_ca,
        config.request_header.as_ref(),
    )
    .await?;
    if let tls::ClientCa::Local { data_dir } = &client_ca {
        // Before serving, so that the CA exists when the verifier loads it.
        tls::LocalCa::load_or_create(data_dir)?;
    }
    if client_ca == tls::ClientCa::None
        && request_header.is_none()
        && config.authentication.is_none()
    {
        tracing::warn!("no client CA: every request but the health checks will get 401");
    }
    // rustls accepts a certificate from either CA; the authenticator then
    // tells them apart.
    let client_ca_file = client_ca.file();
    let ca_files: Vec<_> = client_ca_file
        .iter()
        .chain(request_header.iter().map(|rh| &rh.client_ca_file))
        .cloned()
        .collect();
    let tls = tls::server_config(cert, &ca_files)?;
    let mut authenticator = auth::Authenticator::new(client_ca_file.as_deref(), request_header)?;
    if let Some(access) = &config.authentication {
        tracing::info!(%access, "bearer tokens are reviewed by kube-apiserver");
        authenticator = authenticator.with_tokens(auth::token::TokenReviewer::new(access)?);
    }
    let authenticator = Arc::new(authenticator);
    let subject_access = config
        .authorization
        .as_ref()
        .map(auth::subject_access::SubjectAccessReviewer::new)
        .transpose()?;
    let store = storage::open(&config.storage).await?;
    let metrics = metrics::Metrics::new(prometheus_client::registry::Registry::default());
    let mut state = state::AppState::new(store, metrics, config.request_timeout);
    state.render = config.render;
    if let Some(reviewer) = subject_access {
        state = state.with_subject_access(reviewer);
    }
    state
        .metrics
        .set_state_collector(cache::gauges::ClusterGauges::new(&state.caches));
    let state = Arc::new(state);
    let compactor = config
        .compaction_interval
        .map(|interval| storage::compactor::Compactor::start(state.store.clone(), interval));
    let listening = server::serve(
        config.listen,
        tls,
        state.clone(),
        authenticator,
        config.shutdown_timeout,
    )
    .await
    .map_err(|source| StartError::Bind {
        address: config.listen,
        source,
    })?;
    if let tls::ClientCa::Local { data_dir } = &client_ca {
        // After binding: the kubeconfig names the port actually bound.
        let server_url = kubeconfig::server_url(listening.local_addr());
        if let Err(e) = kubeconfig::write_admin(data_dir, &server_url) {
            listening.shutdown().await;
            return Err(e.into());
        }
    }
    let controller = config
        .controller
        .clone()
        .map(|controller| controller::start(state.clone(), controller));
    Ok(Running {
        listening,
        state,
        compactor,
        controller,
    })
}
