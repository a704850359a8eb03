//! Watchers of a cache: the registry the reflector dispatches events to,
//! and the [`CacheWatcher`] a request handler reads them from.
//!
//! The reflector only hands each interested watcher an `Arc` of the event
//! (never blocking: a watcher whose buffer is full is terminated, as
//! Kubernetes' cacher does); filtering, and so every predicate call, runs
//! in the watcher's own task when it reads. "Interested" is decided by the
//! index: an event goes to unindexed watchers, to those indexed on the
//! value the indexed label had before or after it, and to those of the
//! object's name (an exact `metadata.name` field selector, as each node's
//! agent watches its own state), so watchers indexed on other values or
//! names cost nothing: 5 000 agents' watches of their own states cost one
//! send per event, not 5 000 sends and 5 000 predicate calls.

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
    state::{EventKind, Index, WindowEvent},
};
use crate::storage::Revision;

/// Which objects a watcher (or a list) wants.
#[derive(Clone)]
pub struct WatchFilter {
    /// Only objects whose label `.0` is `.1`. When `.0` is the cache's
    /// indexed label, the watcher is indexed: it is not even told about
    /// other objects. Either way the cache applies this condition itself.
    pub index: Option<(String, String)>,
    /// Only the object of this name; the watcher is registered under it.
    /// Either way the cache applies this condition itself.
    pub name: Option<String>,
    /// Any further condition (label and field selectors).
    pub predicate: Arc<dyn Fn(&CachedObject) -> bool + Send + Sync>,
}

impl WatchFilter {
    /// Every object.
    pub fn everything() -> Self {
        WatchFilter {
            index: None,
            name: None,
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
            name: None,
            predicate: Arc::new(predicate),
        }
    }

    /// Objects that pass `predicate`.
    pub fn predicate(predicate: impl Fn(&CachedObject) -> bool + Send + Sync + 'static) -> Self {
        WatchFilter {
            index: None,
            name: None,
            predicate: Arc::new(predicate),
        }
    }

    /// The same filter, only for the object named `name` (when given).
    pub fn named(mut self, name: Option<String>) -> Self {
        self.name = name;
        self
    }

    /// Whether `object` passes the filter.
    pub fn matches(&self, object: &CachedObject) -> bool {
        let indexed = match &self.index {
            Some((key, value)) => object.label(key) == Some(value.as_str()),
            None => true,
        };
        let named = self.name.as_ref().is_none_or(|name| *name == object.name);
        indexed && named && (self.predicate)(object)
    }
}

impl fmt::Debug for WatchFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WatchFilter")
            .field("index", &self.index)
            .field("name", &self.name)
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

/// Every registered watcher, by index.
#[derive(Debug, Default)]
pub(super) struct Registry {
    next_id: u64,
    unindexed: HashMap<u64, Slot>,
    by_label: HashMap<String, HashMap<u64, Slot>>,
    by_name: HashMap<String, HashMap<u64, Slot>>,
    count: usize,
    terminated_slow: u64,
}

/// Where a watcher is registered.
#[derive(Clone, Debug)]
struct Registration {
    id: u64,
    index: Option<Index>,
}

impl Registry {
    pub(super) fn len(&self) -> usize {
        self.count
    }

    pub(super) fn terminated_slow(&self) -> u64 {
        self.terminated_slow
    }

    fn register(&mut self, index: Option<Index>, slot: Slot) -> Registration {
        let id = self.next_id;
        self.next_id += 1;
        match &index {
            Some(Index::Label(value)) => self
                .by_label
                .entry(value.clone())
                .or_default()
                .insert(id, slot),
            Some(Index::Name(name)) => self
                .by_name
                .entry(name.clone())
                .or_default()
                .insert(id, slot),
            None => self.unindexed.insert(id, slot),
        };
        self.count += 1;
        Registration { id, index }
    }

    fn deregister(&mut self, registration: &Registration) {
        let (slots, key) = match &registration.index {
            Some(Index::Label(value)) => (&mut self.by_label, value),
            Some(Index::Name(name)) => (&mut self.by_name, name),
            None => {
                if self.unindexed.remove(&registration.id).is_some() {
                    self.count -= 1;
                }
                return;
            }
        };
        let Some(group) = slots.get_mut(key) else {
            return;
        };
        let removed = group.remove(&registration.id);
        if group.is_empty() {
            slots.remove(key);
        }
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
                slow += send_group(&mut self.by_label, value, event);
            }
        }
        slow += send_group(&mut self.by_name, &event.object.name, event);
        self.count -= slow;
        self.terminated_slow += slow as u64;
    }

    /// Ends every watcher.
    pub(super) fn terminate_all(&mut self, end: WatchEnd) {
        let indexed = self
            .by_label
            .drain()
            .chain(self.by_name.drain())
            .flat_map(|(_, slots)| slots.into_values());
        for slot in self.unindexed.drain().map(|(_, slot)| slot).chain(indexed) {
            slot.terminate(end);
        }
        self.count = 0;
    }
}

/// Sends to the slots registered under `key`, as [`send_all`].
fn send_group(
    groups: &mut HashMap<String, HashMap<u64, Slot>>,
    key: &str,
    event: &Arc<WindowEvent>,
) -> usize {
    let Some(slots) = groups.get_mut(key) else {
        return 0;
    };
    let slow = send_all(slots, event);
    if slots.is_empty() {
        groups.remove(key);
    }
    slow
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
        index: Option<Index>,
    ) -> CacheWatcher {
        let (sender, receiver) = mpsc::channel(shared.config.watcher_buffer.max(1));
        let end = Arc::new(OnceLock::new());
        let registration = registry.register(
            index,
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

    /// Puts `name` with label `role` (`None`: deletes it).
    fn change(name: &str, revision: Revision, role: Option<&str>) -> Change {
        match role {
            Some(role) => Change::Put {
                name: name.into(),
                revision,
                object: Some(Arc::new(object(name, revision, role))),
            },
            None => Change::Delete {
                name: name.into(),
                revision,
            },
        }
    }

    #[test]
    fn events_reach_only_the_watchers_they_can_concern() {
        let mut state = CacheState::new(Some("role".into()), 100);
        state.replace(1, vec![]);
        let mut registry = Registry::default();
        let label = |value: &str| Some(Index::Label(value.into()));
        let name = |value: &str| Some(Index::Name(value.into()));
        let watchers = [
            ("all", None),
            ("role x", label("x")),
            ("role y", label("y")),
            ("name a", name("a")),
            ("name b", name("b")),
        ];
        let mut receivers = Vec::new();
        for (watcher, index) in watchers {
            let (sender, receiver) = mpsc::channel(16);
            let end = Arc::new(OnceLock::new());
            registry.register(index, Slot { sender, end });
            receivers.push((watcher, receiver));
        }
        let cases: [(Change, &[&str]); 5] = [
            (change("a", 2, Some("x")), &["all", "role x", "name a"]),
            // A label change concerns the watchers of both values.
            (
                change("a", 3, Some("y")),
                &["all", "role x", "role y", "name a"],
            ),
            (change("b", 4, Some("y")), &["all", "role y", "name b"]),
            (change("c", 5, Some("z")), &["all"]),
            (change("a", 6, None), &["all", "role y", "name a"]),
        ];
        for (change, expected) in cases {
            let event = state.apply(change).unwrap();
            let revision = event.revision;
            registry.dispatch(&event, Some("role"));
            let reached: Vec<&str> = receivers
                .iter_mut()
                .filter_map(|(watcher, receiver)| receiver.try_recv().ok().map(|_| *watcher))
                .collect();
            assert_eq!(reached, expected, "event at revision {revision}");
        }
        assert_eq!(registry.len(), 5);
    }

    #[test]
    fn the_name_condition_is_part_of_the_filter() {
        let filter = WatchFilter::everything().named(Some("a".into()));
        assert!(filter.matches(&object("a", 1, "x")));
        assert!(!filter.matches(&object("b", 1, "x")));
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
