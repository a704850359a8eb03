//! The reflector: the one task that feeds a cache from the store. A state
//! enum ([`Phase`]) and a step function: list the prefix (paginated, at one
//! revision), watch from the list's revision, apply each event, and on
//! failure watch again from where it stopped, or list again when the store
//! no longer has the history to continue.
//!
//! It is the only writer of the cache's state and registry. It must not
//! block on a watcher or a reader, and must not stop on bad data: a value
//! that does not decode is logged with its key and skipped.

use std::{sync::Arc, time::Duration};

use futures::StreamExt;
use tokio::{sync::oneshot, time::Instant};

use super::{
    CachedObject, Shared, WatchEnd,
    state::{CacheState, Change},
};
use crate::storage::{
    Error, KeyValue, ListOptions, PreviousValues, ProgressRequester, Revision, SharedStore, Watch,
    WatchEvent,
};

/// The first pause after a failure; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// How long a progress request may go unanswered before waiters are told
/// to ask again.
const PROGRESS_ANSWER_TIMEOUT: Duration = Duration::from_secs(2);

/// The least time between two progress requests, however many readers
/// wait (Kubernetes' cacher ticks at the same rate).
const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);

/// What the reflector does next.
enum Phase {
    /// Read every object and replace the cache's contents.
    List,
    /// Open a store watch after the cache's revision.
    Watch,
    /// Apply the events of an open watch.
    Follow(Watch),
    /// Pause after a failure, then list (`relist`) or watch again.
    Backoff { until: Instant, relist: bool },
}

/// The reflector's own state beside the phase.
pub(super) struct Reflector {
    shared: Arc<Shared>,
    store: SharedStore,
    prefix: String,
    /// Consecutive failures, for the backoff.
    failures: u32,
    progress: ProgressRequests,
}

/// Progress requests on the store watch: at most one unanswered, and at
/// most one per [`PROGRESS_INTERVAL`]. Waiters share each answer; those
/// still behind ask again when it comes.
#[derive(Debug, Default)]
struct ProgressRequests {
    /// When the unanswered request was sent.
    in_flight: Option<Instant>,
    /// When the last request was sent.
    last_sent: Option<Instant>,
    /// A request is wanted as soon as the interval allows.
    deferred: bool,
}

impl ProgressRequests {
    /// When the timer branch must run: to give up on an unanswered request,
    /// or to send a deferred one.
    fn deadline(&self) -> Option<Instant> {
        match (self.in_flight, self.deferred) {
            (Some(sent), _) => Some(sent + PROGRESS_ANSWER_TIMEOUT),
            (None, true) => self.last_sent.map(|sent| sent + PROGRESS_INTERVAL),
            (None, false) => None,
        }
    }

    /// Whether a request may go now; otherwise it is deferred (or shared
    /// with the one in flight).
    fn may_send(&mut self, now: Instant) -> bool {
        if self.in_flight.is_some() {
            return false;
        }
        if self
            .last_sent
            .is_some_and(|sent| now < sent + PROGRESS_INTERVAL)
        {
            self.deferred = true;
            return false;
        }
        true
    }

    fn sent(&mut self, now: Instant) {
        self.in_flight = Some(now);
        self.last_sent = Some(now);
        self.deferred = false;
    }

    fn answered(&mut self) {
        self.in_flight = None;
    }
}

impl Reflector {
    pub(super) fn new(shared: Arc<Shared>, store: SharedStore) -> Self {
        let prefix = shared.config.prefix();
        Reflector {
            shared,
            store,
            prefix,
            failures: 0,
            progress: ProgressRequests::default(),
        }
    }

    /// Runs until `stop` fires (or its sender is dropped), then ends every
    /// watcher.
    pub(super) async fn run(mut self, mut stop: oneshot::Receiver<()>) {
        let mut phase = Phase::List;
        loop {
            tokio::select! {
                biased;
                _ = &mut stop => break,
                next = self.step(phase) => phase = next,
            }
        }
        self.shared.stop();
    }

    /// The step function.
    async fn step(&mut self, phase: Phase) -> Phase {
        match phase {
            Phase::List => self.list().await,
            Phase::Watch => self.open_watch().await,
            Phase::Follow(watch) => self.follow(watch).await,
            Phase::Backoff { until, relist } => {
                tokio::time::sleep_until(until).await;
                if relist { Phase::List } else { Phase::Watch }
            }
        }
    }

    async fn list(&mut self) -> Phase {
        match self.read_all().await {
            Ok((revision, objects)) => {
                self.failures = 0;
                let count = objects.len();
                self.shared.replace(revision, objects);
                tracing::debug!(resource = %self.shared.config.plural, revision, count, "listed");
                Phase::Watch
            }
            Err(error) => {
                tracing::warn!(resource = %self.shared.config.plural, %error, "listing for the watch cache failed");
                self.backoff(true)
            }
        }
    }

    /// Lists the prefix page by page, all pages at the first page's
    /// revision.
    async fn read_all(&self) -> Result<(Revision, Vec<CachedObject>), Error> {
        let mut options = ListOptions {
            prefix: self.prefix.clone(),
            revision: None,
            limit: Some(self.shared.config.page_size.max(1)),
            start_after: None,
        };
        let mut objects = Vec::new();
        loop {
            let page = self.store.list(options.clone()).await?;
            options.revision = Some(page.revision);
            options.start_after = page.items.last().map(|kv| kv.key.clone());
            objects.extend(page.items.iter().filter_map(|kv| self.decode(kv)));
            if page.remaining == 0 || page.items.is_empty() {
                return Ok((page.revision, objects));
            }
        }
    }

    async fn open_watch(&mut self) -> Phase {
        let after = self.shared.read_state().revision();
        match self
            .store
            .watch(&self.prefix, after, PreviousValues::Omit)
            .await
        {
            Ok(watch) => {
                self.progress.answered();
                // Waiters that asked the previous watch for progress must
                // ask this one.
                self.shared.wake_waiters();
                Phase::Follow(watch)
            }
            Err(error) => self.watch_failed(error),
        }
    }

    async fn follow(&mut self, mut watch: Watch) -> Phase {
        let deadline = self.progress.deadline();
        tokio::select! {
            biased;
            item = watch.events.next() => match item {
                Some(Ok(event)) => {
                    self.failures = 0;
                    self.apply(event);
                    Phase::Follow(watch)
                }
                Some(Err(error)) => self.watch_failed(error),
                None => {
                    tracing::debug!(resource = %self.shared.config.plural, "the store watch ended");
                    self.backoff(false)
                }
            },
            () = self.shared.progress_wanted.notified() => {
                if self.progress.may_send(Instant::now()) {
                    self.request_progress(&*watch.progress).await;
                }
                Phase::Follow(watch)
            }
            () = sleep_until(deadline), if deadline.is_some() => {
                if self.progress.in_flight.is_some() {
                    // Unanswered: let waiters that still need it ask again.
                    self.progress.answered();
                    self.shared.wake_waiters();
                } else {
                    self.request_progress(&*watch.progress).await;
                }
                Phase::Follow(watch)
            }
        }
    }

    async fn request_progress(&mut self, progress: &dyn ProgressRequester) {
        self.progress.sent(Instant::now());
        if let Err(error) = progress.request_progress().await {
            // The stream reports the failure itself.
            tracing::debug!(%error, "progress request failed");
        }
    }

    fn watch_failed(&mut self, error: Error) -> Phase {
        if let Error::Compacted { .. } = error {
            tracing::warn!(
                resource = %self.shared.config.plural,
                %error,
                "the watch cache fell behind the store's history; listing again"
            );
            self.shared.invalidate();
            return Phase::List;
        }
        tracing::warn!(resource = %self.shared.config.plural, %error, "the watch cache's store watch failed");
        self.backoff(false)
    }

    fn backoff(&mut self, relist: bool) -> Phase {
        let delay = FIRST_BACKOFF
            .saturating_mul(1 << self.failures.min(16))
            .min(MAX_BACKOFF);
        self.failures = self.failures.saturating_add(1);
        Phase::Backoff {
            until: Instant::now() + delay,
            relist,
        }
    }

    fn apply(&mut self, event: WatchEvent) {
        let change = match event {
            WatchEvent::Put { kv, .. } => {
                let Some(name) = self.name_of(&kv.key) else {
                    return;
                };
                // A write through this server registered the object it
                // stored (the lock is not held while decoding).
                let offered = self.shared.offers().take(name, kv.mod_revision, &kv.value);
                let object = offered.or_else(|| self.decode(&kv).map(Arc::new));
                Change::Put {
                    name: name.to_owned(),
                    revision: kv.mod_revision,
                    object,
                }
            }
            WatchEvent::Delete { key, revision, .. } => {
                let Some(name) = self.name_of(&key) else {
                    return;
                };
                self.shared.offers().drop_until(revision);
                Change::Delete {
                    name: name.to_owned(),
                    revision,
                }
            }
            WatchEvent::Progress { revision } => {
                self.shared.offers().drop_until(revision);
                self.progress.answered();
                Change::Progress { revision }
            }
        };
        self.shared.apply(change);
    }

    /// The object name in a key of this prefix, or `None` (logged) for a
    /// key that cannot be one of ours.
    fn name_of<'k>(&self, key: &'k str) -> Option<&'k str> {
        let name = key.strip_prefix(&self.prefix)?;
        if name.is_empty() || name.contains('/') {
            tracing::warn!(key, "skipping a key that is not an object of this resource");
            self.shared.count_corrupt();
            return None;
        }
        Some(name)
    }

    fn decode(&self, kv: &KeyValue) -> Option<CachedObject> {
        let name = self.name_of(&kv.key)?;
        match CachedObject::decode(name, kv.mod_revision, &kv.value) {
            Ok(object) => Some(object),
            Err(error) => {
                tracing::warn!(key = %kv.key, revision = kv.mod_revision, %error, "skipping a stored value that cannot be decoded");
                self.shared.count_corrupt();
                None
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// What [`Shared`] does for the reflector, under its locks.
impl Shared {
    /// Replaces the contents with a fresh list; watchers from before can no
    /// longer be continued.
    fn replace(&self, revision: Revision, objects: Vec<CachedObject>) {
        let mut registry = self.registry();
        registry.terminate_all(WatchEnd::TooOld);
        self.offers().drop_until(revision);
        let mut state = self.write_state();
        state.replace(revision, objects);
        self.lists
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.publish(&state);
    }

    /// The store's history needed to continue is gone: end every watcher
    /// and refuse new ones until the next list.
    fn invalidate(&self) {
        let mut registry = self.registry();
        registry.terminate_all(WatchEnd::TooOld);
        let mut state = self.write_state();
        state.invalidate();
        self.publish(&state);
    }

    /// Applies one change and hands the resulting event to the watchers
    /// before publishing the new revision: watchers rely on that order for
    /// bookmarks (see `CacheWatcher::bookmark`), and the registry lock,
    /// held throughout, keeps new watchers from registering in between.
    fn apply(&self, change: Change) {
        let progress = matches!(change, Change::Progress { .. });
        let mut registry = self.registry();
        let (event, ready, revision) = {
            let mut state = self.write_state();
            let event = state.apply(change);
            (event, state.ready(), state.revision())
        };
        if let Some(event) = &event {
            registry.dispatch(event, self.config.index_label.as_deref());
        }
        self.freshness.send_if_modified(|freshness| {
            let changed = freshness.ready != ready || freshness.revision != revision;
            freshness.ready = ready;
            freshness.revision = revision;
            // A progress answer that moved nothing still wakes waiters, so
            // that those still behind can ask again.
            changed || progress
        });
        drop(registry);
    }

    fn publish(&self, state: &CacheState) {
        let ready = state.ready();
        let revision = state.revision();
        self.freshness.send_if_modified(|freshness| {
            let changed = freshness.ready != ready || freshness.revision != revision;
            freshness.ready = ready;
            freshness.revision = revision;
            changed
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_requests_are_shared_and_spaced() {
        let mut requests = ProgressRequests::default();
        let start = Instant::now();
        assert_eq!(requests.deadline(), None);
        assert!(requests.may_send(start));
        requests.sent(start);
        assert!(!requests.may_send(start), "the one in flight is shared");
        assert_eq!(requests.deadline(), Some(start + PROGRESS_ANSWER_TIMEOUT));

        requests.answered();
        assert_eq!(requests.deadline(), None);
        assert!(!requests.may_send(start + PROGRESS_INTERVAL / 2));
        assert_eq!(
            requests.deadline(),
            Some(start + PROGRESS_INTERVAL),
            "deferred to the end of the interval"
        );
        let later = start + PROGRESS_INTERVAL;
        assert!(requests.may_send(later));
        requests.sent(later);
        assert_eq!(requests.deadline(), Some(later + PROGRESS_ANSWER_TIMEOUT));
    }
}
