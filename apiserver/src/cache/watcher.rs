//! Watchers of a cache: the registry the reflector dispatches events to,
//! and the [`CacheWatcher`] a request handler reads them from.
//!
//! The reflector only hands each interested watcher an `Arc` of the event
//! (never blocking: a watcher whose buffer is full is terminated, as
//! Kubernetes' cacher does); filtering, and so every predicate call, runs
//! in the watcher's own task when it reads. "Interested" is decided by the
//! index: an event goes to unindexed watchers and to those indexed on the
//! value the indexed label had before or after it, so watchers indexed on
//! other values cost nothing.

use std::{
    collections::{HashMap, VecDeque},
    fmt,
    sync::{Arc, OnceLock},
    time::Duration,
};

use futures::Stream;
use tokio::{
    sync::{
        mpsc::{self, error::TryRecvError, error::TrySendError},
        watch,
    },
    time::Instant,
};

use super::{
    CachedObject, Freshness, Shared,
    state::{EventKind, WindowEvent},
};
use crate::storage::Revision;

/// Which objects a watcher (or a list) wants.
#[derive(Clone)]
pub struct WatchFilter {
    /// Only objects whose label `.0` is `.1`. When `.0` is the cache's
    /// indexed label, the watcher is indexed: it is not even told about
    /// other objects. Either way the cache applies this condition itself.
    pub index: Option<(String, String)>,
    /// Any further condition (label and field selectors).
    pub predicate: Arc<dyn Fn(&CachedObject) -> bool + Send + Sync>,
}

impl WatchFilter {
    /// Every object.
    pub fn everything() -> Self {
        WatchFilter {
            index: None,
            predicate: Arc::new(|_| true),
        }
    }

    /// Objects whose label `key` is `value` (and that pass `predicate`).
    pub fn indexed(
        key: impl Into<String>,
        value: impl Into<String>,
        predicate: impl Fn(&CachedObject) -> bool + Send + Sync + 'static,
    ) -> Self {
        WatchFilter {
            index: Some((key.into(), value.into())),
            predicate: Arc::new(predicate),
        }
    }

    /// Objects that pass `predicate`.
    pub fn predicate(predicate: impl Fn(&CachedObject) -> bool + Send + Sync + 'static) -> Self {
        WatchFilter {
            index: None,
            predicate: Arc::new(predicate),
        }
    }

    /// Whether `object` passes the filter.
    pub fn matches(&self, object: &CachedObject) -> bool {
        let indexed = match &self.index {
            Some((key, value)) => object.label(key) == Some(value.as_str()),
            None => true,
        };
        indexed && (self.predicate)(object)
    }
}

impl fmt::Debug for WatchFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WatchFilter")
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

/// What a watcher is told, with Kubernetes' meaning under a filter.
#[derive(Clone, Debug)]
pub enum CacheEvent {
    /// The object is new to the watcher: created, or changed so that it now
    /// matches the filter.
    Added(Arc<CachedObject>),
    /// The object changed and matched before and after.
    Modified(Arc<CachedObject>),
    /// The object left the watcher's view: deleted, or changed so that it no
    /// longer matches. The object is its last matching state, with the
    /// revision of the event.
    Deleted(Arc<CachedObject>),
    /// Every event up to this revision has been delivered.
    Bookmark(Revision),
}

impl CacheEvent {
    /// The revision the event happened at (the `resourceVersion` of its
    /// object, or of the bookmark).
    pub fn revision(&self) -> Revision {
        match self {
            CacheEvent::Added(object)
            | CacheEvent::Modified(object)
            | CacheEvent::Deleted(object) => object.revision,
            CacheEvent::Bookmark(revision) => *revision,
        }
    }

    /// The watch event type on the wire: `ADDED`, `MODIFIED`, `DELETED`,
    /// `BOOKMARK`.
    pub fn type_name(&self) -> &'static str {
        match self {
            CacheEvent::Added(_) => "ADDED",
            CacheEvent::Modified(_) => "MODIFIED",
            CacheEvent::Deleted(_) => "DELETED",
            CacheEvent::Bookmark(_) => "BOOKMARK",
        }
    }

    /// The object, for all but bookmarks.
    pub fn object(&self) -> Option<&Arc<CachedObject>> {
        match self {
            CacheEvent::Added(object)
            | CacheEvent::Modified(object)
            | CacheEvent::Deleted(object) => Some(object),
            CacheEvent::Bookmark(_) => None,
        }
    }
}

/// Why a watcher ended. Events buffered before the end are all delivered
/// first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WatchEnd {
    /// The cache lost track of the store's history (compaction while it
    /// could not watch) and re-listed: the watcher's position can no longer
    /// be continued. The client must list again: answer with a `410
    /// Expired` error event.
    TooOld,
    /// The watcher did not read fast enough and its buffer filled up. The
    /// client may watch again from the last revision it saw: just end the
    /// response.
    TooSlow,
    /// The cache was shut down.
    Shutdown,
}

/// Converts a window event for one watcher, following Kubernetes' cacher
/// (`cacheWatcher.convertToWatchEvent`).
fn convert(event: &WindowEvent, filter: &WatchFilter) -> Option<CacheEvent> {
    let now = event.kind == EventKind::Put && filter.matches(&event.object);
    let before = event
        .prev
        .as_deref()
        .is_some_and(|prev| filter.matches(prev));
    match (before, now) {
        (false, true) => Some(CacheEvent::Added(event.object.clone())),
        (true, true) => Some(CacheEvent::Modified(event.object.clone())),
        (true, false) => event.departed().map(CacheEvent::Deleted),
        (false, false) => None,
    }
}

/// The registry's handle on one watcher.
#[derive(Debug)]
struct Slot {
    sender: mpsc::Sender<Arc<WindowEvent>>,
    end: Arc<OnceLock<WatchEnd>>,
}

impl Slot {
    fn terminate(self, end: WatchEnd) {
        // The first reason wins; dropping the sender ends the watcher once
        // it has read what is buffered.
        let _ = self.end.set(end);
    }
}

/// Every registered watcher, by index value.
#[derive(Debug, Default)]
pub(super) struct Registry {
    next_id: u64,
    unindexed: HashMap<u64, Slot>,
    indexed: HashMap<String, HashMap<u64, Slot>>,
    count: usize,
    terminated_slow: u64,
}

/// Where a watcher is registered.
#[derive(Clone, Debug)]
struct Registration {
    id: u64,
    index_value: Option<String>,
}

impl Registry {
    pub(super) fn len(&self) -> usize {
        self.count
    }

    pub(super) fn terminated_slow(&self) -> u64 {
        self.terminated_slow
    }

    fn register(&mut self, index_value: Option<String>, slot: Slot) -> Registration {
        let id = self.next_id;
        self.next_id += 1;
        match &index_value {
            Some(value) => self
                .indexed
                .entry(value.clone())
                .or_default()
                .insert(id, slot),
            None => self.unindexed.insert(id, slot),
        };
        self.count += 1;
        Registration { id, index_value }
    }

    fn deregister(&mut self, registration: &Registration) {
        let removed = match &registration.index_value {
            Some(value) => {
                let Some(slots) = self.indexed.get_mut(value) else {
                    return;
                };
                let removed = slots.remove(&registration.id);
                if slots.is_empty() {
                    self.indexed.remove(value);
                }
                removed
            }
            None => self.unindexed.remove(&registration.id),
        };
        if removed.is_some() {
            self.count -= 1;
        }
    }

    /// Hands `event` to every watcher it may matter to. A watcher whose
    /// buffer is full is terminated rather than waited for.
    pub(super) fn dispatch(&mut self, event: &Arc<WindowEvent>, index_label: Option<&str>) {
        let mut slow = 0;
        slow += send_all(&mut self.unindexed, event);
        if let Some(label) = index_label {
            for value in event.index_values(label).into_iter().flatten() {
                if let Some(slots) = self.indexed.get_mut(value) {
                    slow += send_all(slots, event);
                    if slots.is_empty() {
                        self.indexed.remove(value);
                    }
                }
            }
        }
        self.count -= slow;
        self.terminated_slow += slow as u64;
    }

    /// Ends every watcher.
    pub(super) fn terminate_all(&mut self, end: WatchEnd) {
        let indexed = self
            .indexed
            .drain()
            .flat_map(|(_, slots)| slots.into_values());
        for slot in self.unindexed.drain().map(|(_, slot)| slot).chain(indexed) {
            slot.terminate(end);
        }
        self.count = 0;
    }
}

/// Sends to every slot, removing (and counting) those that are full; those
/// whose watcher is gone are removed by the watcher's own drop.
fn send_all(slots: &mut HashMap<u64, Slot>, event: &Arc<WindowEvent>) -> usize {
    let mut full = Vec::new();
    for (id, slot) in slots.iter() {
        if let Err(TrySendError::Full(_)) = slot.sender.try_send(event.clone()) {
            full.push(*id);
        }
    }
    for id in &full {
        if let Some(slot) = slots.remove(id) {
            tracing::info!(watcher = id, "terminating a watcher that does not keep up");
            slot.terminate(WatchEnd::TooSlow);
        }
    }
    full.len()
}

/// Periodic bookmarks for one watcher.
#[derive(Debug)]
struct Bookmarks {
    interval: Duration,
    next_at: Instant,
}

/// One watch on a cache: the events after its start revision that pass its
/// filter, in revision order, until it ends. Dropping it deregisters it.
pub struct CacheWatcher {
    shared: Arc<Shared>,
    registration: Registration,
    filter: WatchFilter,
    /// Events from the window that predate the registration.
    backlog: VecDeque<Arc<WindowEvent>>,
    receiver: mpsc::Receiver<Arc<WindowEvent>>,
    end: Arc<OnceLock<WatchEnd>>,
    freshness: watch::Receiver<Freshness>,
    bookmarks: Option<Bookmarks>,
    /// Every event up to here has been handed out (or filtered away).
    position: Revision,
    ended: Option<WatchEnd>,
}

impl fmt::Debug for CacheWatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheWatcher")
            .field("id", &self.registration.id)
            .field("filter", &self.filter)
            .field("position", &self.position)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl CacheWatcher {
    /// Registers a watcher starting after `after`, with the window's later
    /// events as its backlog. The caller holds the registry lock and has
    /// checked the start against the state.
    pub(super) fn register(
        shared: Arc<Shared>,
        registry: &mut Registry,
        after: Revision,
        backlog: VecDeque<Arc<WindowEvent>>,
        filter: WatchFilter,
        index_value: Option<String>,
    ) -> CacheWatcher {
        let (sender, receiver) = mpsc::channel(shared.config.watcher_buffer.max(1));
        let end = Arc::new(OnceLock::new());
        let registration = registry.register(
            index_value,
            Slot {
                sender,
                end: end.clone(),
            },
        );
        let freshness = shared.freshness.subscribe();
        CacheWatcher {
            shared,
            registration,
            filter,
            backlog,
            receiver,
            end,
            freshness,
            bookmarks: None,
            position: after,
            ended: None,
        }
    }

    /// Asks for a [`CacheEvent::Bookmark`] whenever `interval` passes with
    /// the watcher caught up (also for watchers that see no event for a
    /// long time: indexed ones learn this way how far the cache has moved).
    pub fn with_bookmarks(mut self, interval: Duration) -> Self {
        self.bookmarks = Some(Bookmarks {
            interval,
            next_at: Instant::now() + interval,
        });
        self
    }

    /// The revision up to which every event has been handed out.
    pub fn position(&self) -> Revision {
        self.position
    }

    /// The next event, or why the watch ended (then again on every call).
    pub async fn next(&mut self) -> Result<CacheEvent, WatchEnd> {
        loop {
            if let Some(end) = self.ended {
                return Err(end);
            }
            if let Some(event) = self.backlog.pop_front() {
                if let Some(event) = self.accept(&event) {
                    return Ok(event);
                }
                continue;
            }
            let bookmark_at = self.bookmarks.as_ref().map(|bookmarks| bookmarks.next_at);
            tokio::select! {
                biased;
                event = self.receiver.recv() => match event {
                    Some(event) => {
                        if let Some(event) = self.accept(&event) {
                            return Ok(event);
                        }
                    }
                    None => self.end(),
                },
                () = sleep_until(bookmark_at), if bookmark_at.is_some() => {
                    if let Some(bookmark) = self.bookmark() {
                        return Ok(bookmark);
                    }
                }
            }
        }
    }

    /// The events as a stream that ends after its first `Err`.
    pub fn into_stream(self) -> impl Stream<Item = Result<CacheEvent, WatchEnd>> + Send {
        futures::stream::unfold(Some(self), |watcher| async move {
            let mut watcher = watcher?;
            match watcher.next().await {
                Ok(event) => Some((Ok(event), Some(watcher))),
                Err(end) => Some((Err(end), None)),
            }
        })
    }

    fn accept(&mut self, event: &WindowEvent) -> Option<CacheEvent> {
        self.position = self.position.max(event.revision);
        convert(event, &self.filter)
    }

    fn end(&mut self) {
        // Senders are only dropped after the reason is set, except when the
        // whole cache is dropped.
        self.ended = Some(self.end.get().copied().unwrap_or(WatchEnd::Shutdown));
    }

    /// A bookmark at the cache's revision for a watch that ends now, if
    /// nothing is waiting in the buffer (else `None`: the client resumes
    /// from the last event it got).
    pub fn closing_bookmark(&mut self) -> Option<CacheEvent> {
        if !self.backlog.is_empty() {
            return None;
        }
        self.bookmark()
    }

    /// A bookmark at the cache's revision, if nothing is waiting in the
    /// buffer. The reflector publishes a revision only after handing out
    /// every event up to it, so reading the revision first and then finding
    /// the buffer empty means the watcher has seen all of them.
    fn bookmark(&mut self) -> Option<CacheEvent> {
        let published = self.freshness.borrow().revision;
        match self.receiver.try_recv() {
            Ok(event) => {
                self.backlog.push_back(event);
                None
            }
            Err(TryRecvError::Disconnected) => {
                self.end();
                None
            }
            Err(TryRecvError::Empty) => {
                if let Some(bookmarks) = &mut self.bookmarks {
                    bookmarks.next_at = Instant::now() + bookmarks.interval;
                }
                self.position = self.position.max(published);
                Some(CacheEvent::Bookmark(self.position))
            }
        }
    }
}

impl Drop for CacheWatcher {
    fn drop(&mut self) {
        self.shared.registry().deregister(&self.registration);
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;
    use crate::cache::state::{CacheState, Change};

    fn object(name: &str, revision: Revision, role: &str) -> CachedObject {
        let value = json!({"metadata": {"name": name, "labels": {"role": role}}});
        CachedObject::from_value(name, revision, value).unwrap()
    }

    /// Applies puts of "a" with these roles, then a delete, and converts
    /// each event for a watcher of role "x".
    fn check(roles: &[&str], expected: &str) {
        let mut state = CacheState::new(None, 100);
        state.replace(1, vec![]);
        let filter = WatchFilter::predicate(|object| object.label("role") == Some("x"));
        let mut seen = Vec::new();
        let mut revision = 1;
        let mut changes: Vec<Change> = roles
            .iter()
            .map(|role| {
                revision += 1;
                Change::Put {
                    name: "a".into(),
                    revision,
                    object: Some(Arc::new(object("a", revision, role))),
                }
            })
            .collect();
        changes.push(Change::Delete {
            name: "a".into(),
            revision: revision + 1,
        });
        for change in changes {
            let event = state.apply(change).unwrap();
            if let Some(event) = convert(&event, &filter) {
                let object = event.object().unwrap();
                seen.push(format!(
                    "{}({}@{})",
                    event.type_name(),
                    object.label("role").unwrap(),
                    event.revision()
                ));
            }
        }
        assert_eq!(seen.join(" "), expected, "roles {roles:?}");
    }

    #[test]
    fn events_follow_kubernetes_semantics_under_a_filter() {
        check(&["x", "x"], "ADDED(x@2) MODIFIED(x@3) DELETED(x@4)");
        // Leaving the filter is a deletion of the last matching state, at
        // the revision of the change.
        check(&["x", "y"], "ADDED(x@2) DELETED(x@3)");
        check(&["y", "x"], "ADDED(x@3) DELETED(x@4)");
        check(&["y", "y"], "");
        check(
            &["x", "y", "x", "y"],
            "ADDED(x@2) DELETED(x@3) ADDED(x@4) DELETED(x@5)",
        );
    }

    #[test]
    fn the_index_condition_is_part_of_the_filter() {
        let filter = WatchFilter::indexed("role", "x", |_| true);
        assert!(filter.matches(&object("a", 1, "x")));
        assert!(!filter.matches(&object("a", 1, "y")));
        let filter = WatchFilter::indexed("role", "x", |object| object.name == "b");
        assert!(!filter.matches(&object("a", 1, "x")));
    }
}
