//! The nmstate.io API server.
//!
//! `main` parses flags into a [`config::Config`] and calls [`start`]; tests
//! build a `Config` directly and do the same. Everything that decides
//! something lives in a module below, each owning one concern:
//! [`storage`] (bytes at rest, revisions, watches), [`tls`] (certificates),
//! [`server`] (connections, routing, health), [`api`] (what a request does
//! to an object: patches, managed fields, server-side apply).

use std::sync::Arc;

pub mod api;
pub mod config;
pub mod server;
pub mod storage;
pub mod tls;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The serving certificate could not be loaded or generated.
    #[error("TLS: {0}")]
    Tls(#[from] tls::Error),
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

/// A started server.
#[derive(Debug)]
pub struct Running {
    listening: server::Listening,
    /// The shared state (store and shutdown flag).
    pub state: Arc<server::AppState>,
}

impl Running {
    /// The bound HTTPS address.
    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.listening.local_addr()
    }

    /// Stops accepting and drains in-flight requests.
    pub async fn shutdown(self) {
        self.listening.shutdown().await;
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
    let tls = tls::server_config(cert)?;
    let store = storage::open(&config.storage).await?;
    let state = Arc::new(server::AppState::new(store));
    let listening = server::serve(config.listen, tls, state.clone(), config.shutdown_timeout)
        .await
        .map_err(|source| StartError::Bind {
            address: config.listen,
            source,
        })?;
    Ok(Running { listening, state })
}
