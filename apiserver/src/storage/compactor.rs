//! Periodic compaction, as kube-apiserver does for etcd: every interval,
//! forget the history older than the revision seen one interval earlier.
//! Watches and paginated lists that started within the last interval keep
//! working; older ones get 410 Expired and start over. Without this the
//! embedded store's history and etcd's keyspace would grow forever.

use std::time::Duration;

use tokio::{sync::watch, task::JoinHandle};

use super::{Revision, SharedStore};

/// A running compactor; dropping it stops it.
#[derive(Debug)]
pub struct Compactor {
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl Compactor {
    /// Starts compacting `store` every `interval`.
    pub fn start(store: SharedStore, interval: Duration) -> Self {
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let mut previous: Option<Revision> = None;
            let mut ticks = tokio::time::interval(interval);
            loop {
                tokio::select! {
                    _ = ticks.tick() => {}
                    _ = stopped.changed() => return,
                }
                previous = compact_once(&store, previous).await;
            }
        });
        Self {
            stop,
            task: Some(task),
        }
    }

    /// Stops the compactor and waits for it.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Compactor {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// One round: compacts to `previous` (the revision read one interval ago)
/// and returns the current revision for the next round.
pub async fn compact_once(store: &SharedStore, previous: Option<Revision>) -> Option<Revision> {
    if let Some(revision) = previous.filter(|revision| *revision > 0) {
        match store.compact(revision).await {
            Ok(()) => tracing::debug!(revision, "compacted store history"),
            Err(e) => tracing::warn!(revision, error = %e, "compaction failed"),
        }
    }
    match store.current_revision().await {
        Ok(revision) => Some(revision),
        Err(e) => {
            tracing::warn!(error = %e, "compaction: cannot read the current revision");
            previous
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use super::*;
    use crate::storage::{Error, ListOptions, embedded::EmbeddedStore};

    #[tokio::test]
    async fn each_round_compacts_to_the_revision_of_the_round_before() {
        let dir = tempfile::tempdir().unwrap();
        let store: SharedStore = Arc::new(EmbeddedStore::open(dir.path()).await.unwrap());
        store
            .create("/registry/nmstate.io/x/a", b"1".to_vec())
            .await
            .unwrap();
        store
            .create("/registry/nmstate.io/x/b", b"2".to_vec())
            .await
            .unwrap();
        let first = compact_once(&store, None).await;
        let seen = first.unwrap();
        store
            .create("/registry/nmstate.io/x/c", b"3".to_vec())
            .await
            .unwrap();
        assert_eq!(
            store.compacted_revision().await.unwrap(),
            0,
            "nothing compacted in the first round"
        );

        let second = compact_once(&store, first).await.unwrap();
        assert!(second > seen);
        assert_eq!(store.compacted_revision().await.unwrap(), seen);
        let old = store
            .list(ListOptions {
                prefix: "/registry/nmstate.io/x/".into(),
                revision: Some(seen - 1),
                ..ListOptions::default()
            })
            .await;
        assert!(matches!(old, Err(Error::Compacted { .. })), "{old:?}");
        let kept = store
            .list(ListOptions {
                prefix: "/registry/nmstate.io/x/".into(),
                revision: Some(seen),
                ..ListOptions::default()
            })
            .await
            .unwrap();
        assert_eq!(
            kept.items.len(),
            2,
            "the state at the compaction point stays readable"
        );
    }
}
