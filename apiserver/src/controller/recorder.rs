//! Writes the controller's events ([`events::Announcement`]) to
//! kube-apiserver as `events.k8s.io/v1` Events, through kube's
//! [`Recorder`]: a repeat of an event within six minutes (same object,
//! reason, action and related object) patches that Event's `series`
//! (count, last observed time) instead of creating another one, as
//! client-go's recorder does. Events of cluster-scoped objects go to the
//! `default` namespace, where `kubectl get events` and `kubectl describe`
//! look for them (as upstream's).
//!
//! Only with a cluster: standalone there is no core API to write to, and
//! the controller makes no recorder at all. Writing never holds up the
//! controller: events wait in a bounded queue, one writer task sends them,
//! and when kube-apiserver refuses or cannot be reached the first failure
//! is a warning, the rest debug lines until one goes through again.
//!
//! [`events::Announcement`]: super::events::Announcement

use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType as KubeEventType, Recorder, Reporter};
use rustls_pki_types::{CertificateDer, pem::PemObject};
use tokio::sync::mpsc;

use super::events::{Announcement, EventType, REPORTING_CONTROLLER, Reference};
use crate::auth::cluster::ClusterAccess;

/// Events waiting to be written; more are dropped (a debug line each).
const QUEUE: usize = 4096;
/// How long one write may take.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why no client for events could be made.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The kubeconfig cannot be read or used.
    #[error("kubeconfig {path}: {source}")]
    Kubeconfig {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: kube::config::KubeconfigError,
    },
    /// The service account's CA bundle cannot be read.
    #[error("{path}: {message}")]
    CertificateAuthority {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
    /// The server URL is no URL.
    #[error("server {0:?} is no URL")]
    Server(String),
    /// The HTTP client cannot be built.
    #[error("building the Kubernetes client: {0}")]
    Client(#[source] kube::Error),
}

/// Where the controller hands its events.
#[derive(Clone, Debug)]
pub struct EventSink {
    sender: mpsc::Sender<Announcement>,
}

impl EventSink {
    /// Queues `event` for writing; drops it when the queue is full.
    pub fn send(&self, event: Announcement) {
        if let Err(error) = self.sender.try_send(event) {
            tracing::debug!(%error, "policy controller: event dropped");
        }
    }
}

/// A sink for events and the task that writes them to the cluster of
/// `access`, reporting as `instance`; the task ends when every sink is
/// dropped.
pub async fn connect(
    access: &ClusterAccess,
    instance: &str,
) -> Result<(EventSink, impl Future<Output = ()> + use<>), Error> {
    let client = client(access).await?;
    let recorder = Recorder::new(
        client,
        Reporter {
            controller: REPORTING_CONTROLLER.to_owned(),
            instance: Some(instance.to_owned()),
        },
    );
    let (sender, receiver) = mpsc::channel(QUEUE);
    Ok((EventSink { sender }, write_events(recorder, receiver)))
}

async fn write_events(recorder: Recorder, mut receiver: mpsc::Receiver<Announcement>) {
    let mut failing = false;
    while let Some(announcement) = receiver.recv().await {
        let (event, regarding) = to_kube(announcement);
        let result = tokio::time::timeout(WRITE_TIMEOUT, recorder.publish(&event, &regarding))
            .await
            .map_err(|_| format!("no answer within {WRITE_TIMEOUT:?}"))
            .and_then(|written| written.map_err(|error| error.to_string()));
        match result {
            Ok(()) if failing => {
                tracing::info!("policy controller: writing events again");
                failing = false;
            }
            Ok(()) => {}
            Err(error) if !failing => {
                tracing::warn!(%error, reason = event.reason, "policy controller: cannot write events (events.k8s.io in namespace default); further failures are debug lines");
                failing = true;
            }
            Err(error) => {
                tracing::debug!(%error, reason = event.reason, "policy controller: event not written");
            }
        }
    }
}

fn to_kube(announcement: Announcement) -> (Event, ObjectReference) {
    let event = Event {
        type_: match announcement.type_ {
            EventType::Normal => KubeEventType::Normal,
            EventType::Warning => KubeEventType::Warning,
        },
        reason: announcement.reason.to_owned(),
        note: Some(announcement.note),
        action: announcement.action.to_owned(),
        secondary: announcement.related.map(object_reference),
    };
    (event, object_reference(announcement.regarding))
}

fn object_reference(reference: Reference) -> ObjectReference {
    ObjectReference {
        api_version: Some(reference.api_version.to_owned()),
        kind: Some(reference.kind.to_owned()),
        name: Some(reference.name),
        uid: reference.uid,
        ..ObjectReference::default()
    }
}

/// A kube client for `access`: the kubeconfig's current context, or the
/// pod's service account (token file re-read as the kubelet rotates it).
async fn client(access: &ClusterAccess) -> Result<kube::Client, Error> {
    let mut config = match access {
        ClusterAccess::Kubeconfig(path) => {
            let kubeconfig_error = |source| Error::Kubeconfig {
                path: path.display().to_string(),
                source,
            };
            let kubeconfig = kube::config::Kubeconfig::read_from(path).map_err(kubeconfig_error)?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
                .await
                .map_err(kubeconfig_error)?
        }
        ClusterAccess::InCluster(in_cluster) => {
            let server = in_cluster
                .server
                .parse()
                .map_err(|_| Error::Server(in_cluster.server.clone()))?;
            let ca_error = |message: String| Error::CertificateAuthority {
                path: in_cluster.ca_file.display().to_string(),
                message,
            };
            let roots = CertificateDer::pem_file_iter(&in_cluster.ca_file)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|error| ca_error(error.to_string()))?;
            let mut config = kube::Config::new(server);
            config.root_cert = Some(roots.into_iter().map(|cert| cert.to_vec()).collect());
            config.root_cert_file = Some(in_cluster.ca_file.clone());
            config.auth_info.token_file = Some(in_cluster.token_file.display().to_string());
            config
        }
    };
    config.read_timeout = Some(WRITE_TIMEOUT);
    kube::Client::try_from(config).map_err(Error::Client)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn announcements_become_kube_events_about_the_right_objects() {
        let announcement = Announcement {
            type_: EventType::Warning,
            reason: "ReconcileFailed",
            action: "Abort",
            note: "reconciliation of enactment \"n1.p\" has aborted".into(),
            regarding: Reference {
                api_version: "nmstate.io/v1",
                kind: "NodeNetworkConfigurationPolicy",
                name: "p".into(),
                uid: Some("u1".into()),
            },
            related: Some(Reference {
                api_version: "nmstate.io/v1",
                kind: "NodeNetworkConfigurationEnactment",
                name: "n1.p".into(),
                uid: Some("u2".into()),
            }),
        };
        let (event, regarding) = to_kube(announcement);
        assert_eq!(event.type_, KubeEventType::Warning);
        assert_eq!(
            (event.reason.as_str(), event.action.as_str()),
            ("ReconcileFailed", "Abort")
        );
        assert_eq!(
            event.note.as_deref(),
            Some("reconciliation of enactment \"n1.p\" has aborted")
        );
        // Cluster-scoped: no namespace, so the recorder writes to default
        // and `kubectl describe` (which matches the uid) finds it.
        assert_eq!(
            regarding,
            ObjectReference {
                api_version: Some("nmstate.io/v1".into()),
                kind: Some("NodeNetworkConfigurationPolicy".into()),
                name: Some("p".into()),
                uid: Some("u1".into()),
                ..ObjectReference::default()
            }
        );
        let related = event.secondary.unwrap();
        assert_eq!(
            (
                related.kind.as_deref(),
                related.name.as_deref(),
                related.uid.as_deref()
            ),
            (
                Some("NodeNetworkConfigurationEnactment"),
                Some("n1.p"),
                Some("u2")
            )
        );
    }
}
