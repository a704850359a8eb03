//! The watch cache: every object of one resource in memory, fed by one
//! store watch, serving all lists and watches of that resource.
//!
//! One [`WatchCache`] per resource kind. Its reflector task (the only
//! writer) lists the resource's prefix, then follows a store watch from the
//! list's revision, keeping:
//! - the objects by name (and by the value of one indexed label, for
//!   enactments `nmstate.io/node`), each a shared [`CachedObject`] whose
//!   `resourceVersion` is its revision and whose JSON is serialised once
//!   per served `apiVersion`;
//! - a bounded window of recent events, each with the object before it, so
//!   that a watch may start from any revision in the window;
//! - the registered watchers, indexed like the objects, so that an event
//!   only reaches the watchers it may matter to.
//!
//! Consistent reads: read the store's `current_revision()`, then
//! [`WatchCache::wait_until_fresh`]; the cache asks its store watch for a
//! progress notification when other resources' writes moved the revision
//! without an event here. When the store's history needed to continue is
//! gone (compaction while the watch was down), the cache lists again and
//! ends its watchers with [`WatchEnd::TooOld`].
//!
//! It owns no HTTP: it does not parse selectors or write responses. It
//! never writes to the store, never blocks on a slow watcher, and never
//! stops on a value it cannot decode (it logs the key and skips it).

use std::{
    sync::{
        Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use nmstate_openapi::{ResourceKind, enactment::ENACTMENT_NODE_LABEL};
use tokio::{
    sync::{Notify, oneshot, watch},
    task::JoinHandle,
};

use crate::storage::{Revision, SharedStore, resource_prefix};

pub mod gauges;
mod object;
mod offers;
mod reflector;
mod state;
mod watcher;

pub use object::{
    CachedObject, DecodeError, Json, Texts, interface_count, metadata_of, whole,
    write_with_current_state,
};
pub use watcher::{CacheEvent, CacheWatcher, WatchEnd, WatchFilter};

use self::{
    offers::Offers,
    state::{CacheState, Index},
    watcher::Registry,
};

/// Default number of events kept in the window.
pub const DEFAULT_WINDOW: usize = 10_000;
/// Default window of the NodeNetworkState cache. Each event pins two full
/// network states (the new one and the one before), tens of kilobytes each
/// as JSON and more as a parsed value; a smaller window bounds that, at the
/// price of earlier `410 Expired` for watchers that reconnect late.
pub const DEFAULT_STATE_WINDOW: usize = 1_000;
/// Default number of events buffered per watcher before it is terminated
/// as too slow.
pub const DEFAULT_WATCHER_BUFFER: usize = 1_000;
/// Default page size of the reflector's lists.
pub const DEFAULT_PAGE_SIZE: usize = 500;
/// How long a request waits for the cache to reach a revision the store
/// already has ([`WatchCache::wait_until_fresh`]): a consistent list then
/// reads the store itself; a watch from that revision, or a render that
/// needs the node's state, answers 504.
pub const FRESHNESS_TIMEOUT: Duration = Duration::from_secs(3);
/// How many objects written through this server may wait for their event
/// (see [`WatchCache::expect`]).
pub const MAX_OFFERS: usize = 1_024;

/// How one cache is set up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheConfig {
    /// The resource (`nodenetworkstates`); the cache covers
    /// [`resource_prefix`] of it.
    pub plural: String,
    /// The label whose value indexes objects and watchers.
    pub index_label: Option<String>,
    /// How many recent events are kept (at least 1).
    pub window: usize,
    /// How many events a watcher may have unread before it is terminated.
    pub watcher_buffer: usize,
    /// How many objects each page of a list reads.
    pub page_size: usize,
}

impl CacheConfig {
    /// Defaults for a resource, without an index.
    pub fn new(plural: impl Into<String>) -> Self {
        CacheConfig {
            plural: plural.into(),
            index_label: None,
            window: DEFAULT_WINDOW,
            watcher_buffer: DEFAULT_WATCHER_BUFFER,
            page_size: DEFAULT_PAGE_SIZE,
        }
    }

    /// Defaults for one of our kinds: enactments are indexed by node, node
    /// states keep a smaller window ([`DEFAULT_STATE_WINDOW`]).
    pub fn for_kind(kind: ResourceKind) -> Self {
        let mut config = Self::new(kind.plural());
        match kind {
            ResourceKind::NodeNetworkConfigurationEnactment => {
                config.index_label = Some(ENACTMENT_NODE_LABEL.to_owned());
            }
            ResourceKind::NodeNetworkState => config.window = DEFAULT_STATE_WINDOW,
            ResourceKind::NodeNetworkConfigurationPolicy => {}
        }
        config
    }

    fn prefix(&self) -> String {
        resource_prefix(&self.plural)
    }
}

/// Why the cache cannot answer. The messages are Kubernetes' own.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The cache has not finished its first list, or is listing again after
    /// losing track of the store. Kubernetes answers 429 with Retry-After.
    #[error("storage is (re)initializing: the {resource} cache is not ready")]
    NotReady {
        /// The resource.
        resource: String,
    },
    /// A watch (or read at a revision) from before the window: the client
    /// must list again (410 Expired).
    #[error("too old resource version: {requested} ({oldest})")]
    TooOld {
        /// The revision asked for.
        requested: Revision,
        /// The oldest revision the cache can start from.
        oldest: Revision,
    },
    /// A revision the cache has not reached (in time, for
    /// [`WatchCache::wait_until_fresh`]): 504 Timeout with cause
    /// `ResourceVersionTooLarge`.
    #[error("Too large resource version: {requested}, current: {current}")]
    TooLarge {
        /// The revision asked for.
        requested: Revision,
        /// The cache's revision.
        current: Revision,
    },
    /// The cache has been shut down.
    #[error("the {resource} cache has been shut down")]
    Stopped {
        /// The resource.
        resource: String,
    },
}

/// Cache result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What the cache has reached, published by the reflector after it handed
/// every event up to `revision` to the watchers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Freshness {
    ready: bool,
    revision: Revision,
    stopped: bool,
}

/// What the cache handle, its reflector and its watchers share. Lock order:
/// `registry`, then `state`. Readers of objects only take `state` for
/// reading, so they never wait for a dispatch.
struct Shared {
    config: CacheConfig,
    registry: Mutex<Registry>,
    state: RwLock<CacheState>,
    freshness: watch::Sender<Freshness>,
    /// Readers waiting in `wait_until_fresh` ask here for a progress
    /// request; the permit coalesces them.
    progress_wanted: Notify,
    lists: AtomicU64,
    corrupt: AtomicU64,
    /// Objects written through this server, for the reflector to take
    /// instead of parsing the stored value again (see
    /// [`WatchCache::expect`]).
    offers: Mutex<Offers>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("config", &self.config)
            .field("freshness", &*self.freshness.borrow())
            .finish_non_exhaustive()
    }
}

impl Shared {
    // A panic while holding a lock leaves data that is still consistent
    // (every mutation is completed before anything can panic), so poisoning
    // is ignored rather than spread.
    fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn offers(&self) -> MutexGuard<'_, Offers> {
        self.offers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn read_state(&self) -> RwLockReadGuard<'_, CacheState> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_state(&self) -> RwLockWriteGuard<'_, CacheState> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wakes every `wait_until_fresh` so that it checks (and asks) again.
    fn wake_waiters(&self) {
        self.freshness.send_modify(|_| {});
    }

    fn count_corrupt(&self) {
        self.corrupt.fetch_add(1, Ordering::Relaxed);
    }

    /// Ends every watcher and waiter for good.
    fn stop(&self) {
        self.registry().terminate_all(WatchEnd::Shutdown);
        self.freshness
            .send_modify(|freshness| freshness.stopped = true);
    }

    fn resource(&self) -> String {
        self.config.plural.clone()
    }

    /// What a filter's watcher registers under: the object's name when
    /// the filter names one (nothing is narrower), or the value of this
    /// cache's indexed label when the filter asks for one.
    fn index(&self, filter: &WatchFilter) -> Option<Index> {
        if let Some(name) = &filter.name {
            return Some(Index::Name(name.clone()));
        }
        let (key, value) = filter.index.as_ref()?;
        (self.config.index_label.as_ref() == Some(key)).then(|| Index::Label(value.clone()))
    }
}

/// The watch cache of one resource. Dropping it stops its reflector and ends
/// its watchers; [`shutdown`](Self::shutdown) does the same and waits.
#[derive(Debug)]
pub struct WatchCache {
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl WatchCache {
    /// Starts the reflector (on the current tokio runtime). The cache is
    /// not ready until its first list is complete.
    pub fn start(store: SharedStore, config: CacheConfig) -> WatchCache {
        let (freshness, _) = watch::channel(Freshness::default());
        let shared = Arc::new(Shared {
            registry: Mutex::new(Registry::default()),
            state: RwLock::new(CacheState::new(config.index_label.clone(), config.window)),
            config,
            freshness,
            progress_wanted: Notify::new(),
            lists: AtomicU64::new(0),
            corrupt: AtomicU64::new(0),
            offers: Mutex::new(Offers::default()),
        });
        let (stop, stopped) = oneshot::channel();
        let reflector = reflector::Reflector::new(shared.clone(), store);
        let task = tokio::spawn(reflector.run(stopped));
        WatchCache {
            shared,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &CacheConfig {
        &self.shared.config
    }

    /// Whether the cache holds a complete list it is keeping up to date.
    pub fn is_ready(&self) -> bool {
        let freshness = *self.shared.freshness.borrow();
        freshness.ready && !freshness.stopped
    }

    /// Registers a write through this server before it goes to the store:
    /// `object` is what decoding `value`, the bytes to be stored, gives
    /// ([`CachedObject::decode`], or [`CachedObject::from_value`] of the
    /// value that was encoded), at any revision. When the store's event of
    /// the write arrives, the cache takes this object instead of parsing
    /// the stored value again, whether the store has answered the writer
    /// yet or not. At most [`MAX_OFFERS`] writes are registered at once;
    /// dropping the answer unused (the write failed) withdraws it.
    pub fn expect(&self, object: CachedObject, value: &[u8]) -> Expected {
        let mut offers = self.shared.offers();
        let made = if offers.len() < MAX_OFFERS {
            Ok(offers.expect(object, value))
        } else {
            Err(Box::new(object))
        };
        Expected {
            shared: self.shared.clone(),
            made: Some(made),
        }
    }

    /// The revision up to which the cache has applied (and handed to its
    /// watchers) every event; 0 before the first list.
    pub fn revision(&self) -> Revision {
        self.shared.freshness.borrow().revision
    }

    /// Waits until the cache is ready and has reached `revision` (which the
    /// caller read from the store's `current_revision()`), asking the store
    /// for progress when needed. Fails with [`Error::TooLarge`] (or
    /// [`Error::NotReady`]) after `timeout`. Returns the cache's revision.
    pub async fn wait_until_fresh(
        &self,
        revision: Revision,
        timeout: Duration,
    ) -> Result<Revision> {
        let mut freshness = self.shared.freshness.subscribe();
        let wait = async {
            loop {
                let now = *freshness.borrow_and_update();
                if now.stopped {
                    return Err(Error::Stopped {
                        resource: self.shared.resource(),
                    });
                }
                if now.ready && now.revision >= revision {
                    return Ok(now.revision);
                }
                if now.ready {
                    self.shared.progress_wanted.notify_one();
                }
                if freshness.changed().await.is_err() {
                    return Err(Error::Stopped {
                        resource: self.shared.resource(),
                    });
                }
            }
        };
        match tokio::time::timeout(timeout, wait).await {
            Ok(result) => result,
            Err(_) => {
                let now = *self.shared.freshness.borrow();
                Err(if now.ready {
                    Error::TooLarge {
                        requested: revision,
                        current: now.revision,
                    }
                } else {
                    Error::NotReady {
                        resource: self.shared.resource(),
                    }
                })
            }
        }
    }

    /// Every object, sorted by name, and the revision they are current at.
    /// Before the first list this is `(0, [])`; while listing again after
    /// losing track of the store it is the last state known (check
    /// [`is_ready`](Self::is_ready), or use
    /// [`wait_until_fresh`](Self::wait_until_fresh) first).
    pub fn snapshot(&self) -> (Revision, Vec<Arc<CachedObject>>) {
        self.reader().snapshot()
    }

    /// A handle that reads this cache without owning it (for the metrics'
    /// collector); once the cache has stopped it reads the last state.
    pub fn reader(&self) -> CacheReader {
        CacheReader {
            shared: self.shared.clone(),
        }
    }

    /// The objects that pass `filter`, sorted by name; uses the index when
    /// the filter is on the indexed label.
    pub fn snapshot_matching(&self, filter: &WatchFilter) -> (Revision, Vec<Arc<CachedObject>>) {
        let state = self.shared.read_state();
        (state.revision(), matching(&state, filter))
    }

    /// One object, as of [`revision`](Self::revision).
    pub fn get(&self, name: &str) -> Option<Arc<CachedObject>> {
        self.shared.read_state().get(name)
    }

    /// Every object as it was exactly at `revision`, sorted by name, if the
    /// window reaches back that far ([`Error::TooOld`] otherwise: read the
    /// store instead).
    pub fn list_at(&self, revision: Revision) -> Result<Vec<Arc<CachedObject>>> {
        self.check_running()?;
        self.shared
            .read_state()
            .objects_at(&self.shared.config.plural, revision)
    }

    /// Watches the events after `after` that pass `filter`. `after` must be
    /// within the window ([`Error::TooOld`]: the client must list again)
    /// and not beyond the cache ([`Error::TooLarge`]: call
    /// [`wait_until_fresh`](Self::wait_until_fresh) first). A watch "from
    /// now" with initial objects is
    /// [`snapshot_and_watch`](Self::snapshot_and_watch).
    pub fn watch(&self, after: Revision, filter: WatchFilter) -> Result<CacheWatcher> {
        self.check_running()?;
        let index = self.shared.index(&filter);
        let mut registry = self.shared.registry();
        let backlog = {
            let state = self.shared.read_state();
            state.check_start(&self.shared.config.plural, after)?;
            state.events_after(after, index.as_ref())
        };
        Ok(CacheWatcher::register(
            self.shared.clone(),
            &mut registry,
            after,
            backlog,
            filter,
            index,
        ))
    }

    /// The objects that pass `filter` and a watcher of every later event,
    /// taken together: what a watch without `resourceVersion` (or with
    /// `sendInitialEvents`) sends as synthetic `ADDED` events, then follows.
    pub fn snapshot_and_watch(
        &self,
        filter: WatchFilter,
    ) -> Result<(Revision, Vec<Arc<CachedObject>>, CacheWatcher)> {
        self.check_running()?;
        let index = self.shared.index(&filter);
        let mut registry = self.shared.registry();
        let (revision, objects) = {
            let state = self.shared.read_state();
            state.check_start(&self.shared.config.plural, state.revision())?;
            (state.revision(), matching(&state, &filter))
        };
        let watcher = CacheWatcher::register(
            self.shared.clone(),
            &mut registry,
            revision,
            Default::default(),
            filter,
            index,
        );
        Ok((revision, objects, watcher))
    }

    /// How many watchers are registered.
    pub fn watcher_count(&self) -> usize {
        self.shared.registry().len()
    }

    /// How many watchers were terminated for not keeping up.
    pub fn terminated_slow_count(&self) -> u64 {
        self.shared.registry().terminated_slow()
    }

    /// How many events the window holds.
    pub fn window_len(&self) -> usize {
        self.shared.read_state().window_len()
    }

    /// How many objects the cache holds.
    pub fn object_count(&self) -> usize {
        self.shared.read_state().len()
    }

    /// How many complete lists the reflector has made (1 after the start;
    /// more after losing track of the store).
    pub fn list_count(&self) -> u64 {
        self.shared.lists.load(Ordering::Relaxed)
    }

    /// How many stored values were skipped because they could not be
    /// decoded.
    pub fn corrupt_count(&self) -> u64 {
        self.shared.corrupt.load(Ordering::Relaxed)
    }

    /// Stops the reflector, waits for it, and ends every watcher with
    /// [`WatchEnd::Shutdown`].
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take()
            && let Err(error) = task.await
        {
            tracing::error!(resource = %self.shared.config.plural, %error, "the watch cache's reflector failed");
        }
        self.shared.stop();
    }

    fn check_running(&self) -> Result<()> {
        if self.shared.freshness.borrow().stopped {
            return Err(Error::Stopped {
                resource: self.shared.resource(),
            });
        }
        Ok(())
    }
}

impl Drop for WatchCache {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            self.shared.stop();
        }
    }
}

fn matching(state: &CacheState, filter: &WatchFilter) -> Vec<Arc<CachedObject>> {
    let candidates = match (&filter.name, &filter.index) {
        (Some(name), _) => Some(state.get(name).into_iter().collect()),
        (None, Some((key, value))) => state.indexed(key, value),
        (None, None) => None,
    };
    candidates
        .unwrap_or_else(|| state.objects())
        .into_iter()
        .filter(|object| filter.matches(object))
        .collect()
}

/// A write registered with [`WatchCache::expect`].
pub struct Expected {
    shared: Arc<Shared>,
    /// The registration, or the object when too many were registered.
    made: Option<std::result::Result<u64, Box<CachedObject>>>,
}

impl Expected {
    /// The store took the write at `revision`: the object written, shared
    /// with the cache (`None` only if the registration was lost, which
    /// would be a bug; decode the stored bytes then).
    pub fn written(mut self, revision: Revision) -> Option<Arc<CachedObject>> {
        match self.made.take()? {
            Ok(id) => {
                let passed = self.shared.freshness.borrow().revision >= revision;
                self.shared.offers().written(id, revision, passed)
            }
            Err(mut object) => {
                object.set_revision(revision);
                Some(Arc::new(*object))
            }
        }
    }
}

impl Drop for Expected {
    fn drop(&mut self) {
        if let Some(Ok(id)) = self.made.take() {
            self.shared.offers().withdraw(id);
        }
    }
}

impl std::fmt::Debug for Expected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Expected").finish_non_exhaustive()
    }
}

/// Reads a [`WatchCache`]'s objects; cheap to clone.
#[derive(Clone, Debug)]
pub struct CacheReader {
    shared: Arc<Shared>,
}

impl CacheReader {
    /// As [`WatchCache::snapshot`].
    pub fn snapshot(&self) -> (Revision, Vec<Arc<CachedObject>>) {
        let state = self.shared.read_state();
        (state.revision(), state.objects())
    }
}

/// One cache per kind, started together over one store.
#[derive(Debug)]
pub struct Caches {
    states: WatchCache,
    policies: WatchCache,
    enactments: WatchCache,
}

impl Caches {
    /// Starts the three caches (each lists, then watches, in the
    /// background).
    pub fn start(store: SharedStore) -> Self {
        let start = |kind| WatchCache::start(store.clone(), CacheConfig::for_kind(kind));
        Self {
            states: start(ResourceKind::NodeNetworkState),
            policies: start(ResourceKind::NodeNetworkConfigurationPolicy),
            enactments: start(ResourceKind::NodeNetworkConfigurationEnactment),
        }
    }

    /// The cache of `kind`.
    pub fn get(&self, kind: ResourceKind) -> &WatchCache {
        match kind {
            ResourceKind::NodeNetworkState => &self.states,
            ResourceKind::NodeNetworkConfigurationPolicy => &self.policies,
            ResourceKind::NodeNetworkConfigurationEnactment => &self.enactments,
        }
    }

    /// Whether every cache has finished its first list.
    pub fn all_ready(&self) -> bool {
        ResourceKind::ALL
            .iter()
            .all(|kind| self.get(*kind).is_ready())
    }
}
