//! What every request handler and the controller share: the store, the
//! watch caches, metrics, the cluster's authorizer and the shutdown
//! signal. Below `api`, `controller` and `server`, which all take it.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use tokio::sync::watch;

use crate::{
    auth::subject_access::SubjectAccessReviewer,
    cache::Caches,
    metrics::{MeteredStore, Metrics},
    storage::SharedStore,
};

/// What every request handler may use.
#[derive(Debug)]
pub struct AppState {
    /// The store.
    pub store: SharedStore,
    /// Metrics registry and instruments.
    pub metrics: Metrics,
    /// One watch cache per kind, serving lists and watches.
    pub caches: Caches,
    /// How long a request (up to its response headers) may take.
    pub request_timeout: Duration,
    /// The cluster asked about users the standalone policy does not allow
    /// (`--authorization-kubeconfig`).
    pub subject_access: Option<SubjectAccessReviewer>,
    /// How policies are rendered for nodes (controller, render, dry-run).
    pub render: nmstate_openapi::render::RenderOptions,
    shutting_down: AtomicBool,
    /// Flipped to `true` when shutdown begins, so long-running responses
    /// (watches) end and connections can drain.
    shutdown: watch::Sender<bool>,
}

impl AppState {
    /// State over a store. The store is wrapped so that its operations are
    /// timed into `metrics`.
    pub fn new(store: SharedStore, metrics: Metrics, request_timeout: Duration) -> Self {
        let store: SharedStore = Arc::new(MeteredStore::new(store, metrics.clone()));
        Self {
            request_timeout,
            subject_access: None,
            render: nmstate_openapi::render::RenderOptions::default(),
            caches: Caches::start(store.clone()),
            store,
            metrics,
            shutting_down: AtomicBool::new(false),
            shutdown: watch::Sender::new(false),
        }
    }

    /// Also asks `reviewer` about users the standalone policy does not
    /// allow.
    pub fn with_subject_access(mut self, reviewer: SubjectAccessReviewer) -> Self {
        self.subject_access = Some(reviewer);
        self
    }

    /// Whether shutdown has begun (readiness then fails).
    pub fn shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Relaxed)
    }

    /// Resolves once shutdown has begun.
    pub async fn shutdown_requested(&self) {
        let mut receiver = self.shutdown.subscribe();
        let _ = receiver.wait_for(|stopping| *stopping).await;
    }

    /// Begins shutdown: readiness fails and long-running responses end.
    pub(crate) fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Relaxed);
        self.shutdown.send_replace(true);
    }
}
