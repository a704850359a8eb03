//! Storage: a small, etcd-shaped key-value store with revisions, history and
//! watches, behind one trait with two backends.
//!
//! This module owns the bytes at rest and the revision counter. It knows
//! nothing about Kubernetes objects: values are opaque bytes (the JSON of the
//! stored API version), and the layers above turn revisions into
//! `resourceVersion`s. Only this module talks to etcd or to the redb file.
//!
//! Semantics shared by both backends (and checked by one conformance suite):
//! - Every successful write (create, update, delete) bumps one global
//!   revision by exactly one; the written key's `mod_revision` is that
//!   revision.
//! - `list` with a revision reads the keys as they were at that revision, or
//!   fails with [`Error::Compacted`] when the history has been compacted past
//!   it.
//! - `watch(prefix, after)` delivers every event with a revision greater than
//!   `after`, in revision order, exactly once, then follows live writes; it
//!   fails with [`Error::Compacted`] when events after `after` are no longer
//!   kept.
//! - `compact(rev)` forgets the history before `rev`: afterwards lists at a
//!   revision below `rev` and watches with `after < rev - 1` fail with
//!   `Compacted` (as etcd does).

use std::{fmt, pin::Pin, sync::Arc};

use async_trait::async_trait;
use futures::Stream;

pub mod compactor;
pub mod embedded;
pub mod etcd;

/// A store revision. An empty embedded store is at revision 0 and its first
/// write gets revision 1; an empty etcd is at revision 1 already, so its
/// first write gets 2. Code must only rely on revisions moving by one per
/// write.
pub type Revision = i64;

/// The common prefix of every key this project stores.
pub const KEY_PREFIX: &str = "/registry/nmstate.io/";

/// The key of one object: `/registry/nmstate.io/<plural>/<name>`.
pub fn object_key(plural: &str, name: &str) -> String {
    format!("{KEY_PREFIX}{plural}/{name}")
}

/// The prefix under which all objects of one resource live, with the
/// trailing slash so that `nodenetworkstates` never matches a longer plural.
pub fn resource_prefix(plural: &str) -> String {
    format!("{KEY_PREFIX}{plural}/")
}

/// One stored key with its value and the revision of its last write.
///
/// No create revision: nothing above the store reads one, and on etcd an
/// update could learn it only by reading the old value in its transaction
/// (a 19 KB node state read and decoded by etcd on every update).
#[derive(Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The full key.
    pub key: String,
    /// The value bytes (JSON of the stored object).
    pub value: Vec<u8>,
    /// The revision of the last write to this key.
    pub mod_revision: Revision,
}

impl fmt::Debug for KeyValue {
    // Values can be large; show their size, not their bytes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyValue")
            .field("key", &self.key)
            .field("value_len", &self.value.len())
            .field("mod_revision", &self.mod_revision)
            .finish()
    }
}

/// What to list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListOptions {
    /// Only keys that start with this prefix.
    pub prefix: String,
    /// Read as of this revision; `None` (or, as in etcd, `Some(0)`) reads
    /// the current state.
    pub revision: Option<Revision>,
    /// At most this many items; `None` (or `Some(0)`) for all.
    pub limit: Option<usize>,
    /// Only keys strictly greater than this one (the continue point of a
    /// paginated list).
    pub start_after: Option<String>,
}

/// One page of a list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListResult {
    /// The keys, in ascending key order.
    pub items: Vec<KeyValue>,
    /// The revision the list was read at. Later pages must be read at the
    /// same revision to be consistent.
    pub revision: Revision,
    /// How many more keys match after this page (0 when this is the last).
    pub remaining: u64,
}

/// Whether a watch's events carry the value each key had before the event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PreviousValues {
    /// `prev` is filled in (etcd then reads and sends each old value too).
    Include,
    /// `prev` is always `None`: for watchers that keep their own copy, as
    /// the watch cache does, at half the bytes per event.
    Omit,
}

impl PreviousValues {
    /// `event` as a watch asking for `self` delivers it.
    pub fn apply(self, event: WatchEvent) -> WatchEvent {
        match (self, event) {
            (PreviousValues::Omit, WatchEvent::Put { kv, .. }) => {
                WatchEvent::Put { kv, prev: None }
            }
            (PreviousValues::Omit, WatchEvent::Delete { key, revision, .. }) => {
                WatchEvent::Delete {
                    key,
                    revision,
                    prev: None,
                }
            }
            (_, event) => event,
        }
    }
}

/// One change seen by a watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchEvent {
    /// A key was created or updated. `kv.mod_revision` is the event's
    /// revision; `prev` is the value before, if the key existed.
    Put {
        /// The new value.
        kv: KeyValue,
        /// The value before this write, if any.
        prev: Option<KeyValue>,
    },
    /// A key was deleted at `revision`; `prev` is the value it had.
    Delete {
        /// The deleted key.
        key: String,
        /// The revision of the deletion.
        revision: Revision,
        /// The value the key had before the deletion.
        prev: Option<KeyValue>,
    },
    /// No event in the watched range up to and including `revision`: the
    /// watcher is caught up to it. Sent in answer to
    /// [`Watch::request_progress`].
    Progress {
        /// The store revision the watcher has caught up with.
        revision: Revision,
    },
}

impl WatchEvent {
    /// The revision this event happened at (or is current to).
    pub fn revision(&self) -> Revision {
        match self {
            WatchEvent::Put { kv, .. } => kv.mod_revision,
            WatchEvent::Delete { revision, .. } | WatchEvent::Progress { revision } => *revision,
        }
    }

    /// The key the event is about (`None` for progress notifications).
    pub fn key(&self) -> Option<&str> {
        match self {
            WatchEvent::Put { kv, .. } => Some(&kv.key),
            WatchEvent::Delete { key, .. } => Some(key),
            WatchEvent::Progress { .. } => None,
        }
    }
}

/// A running watch: a stream of events plus a way to ask for a progress
/// notification. Dropping it stops the watch.
pub struct Watch {
    /// The events, in revision order. An `Err` ends the stream.
    pub events: Pin<Box<dyn Stream<Item = Result<WatchEvent>> + Send>>,
    /// Asks the backend to send a [`WatchEvent::Progress`] once the watcher
    /// has caught up with the current revision.
    pub progress: Box<dyn ProgressRequester>,
}

impl fmt::Debug for Watch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watch").finish_non_exhaustive()
    }
}

impl Watch {
    /// Asks for a progress notification (see [`WatchEvent::Progress`]).
    pub async fn request_progress(&self) -> Result<()> {
        self.progress.request_progress().await
    }
}

/// The backend half of [`Watch::request_progress`].
#[async_trait]
pub trait ProgressRequester: Send + Sync {
    /// Asks for one progress notification on the watch's stream. Requests
    /// made before the notification arrives may share it.
    async fn request_progress(&self) -> Result<()>;
}

/// The storage contract. Handlers hold an `Arc<dyn Store>`.
#[async_trait]
pub trait Store: Send + Sync + fmt::Debug {
    /// Reads one key at the current revision.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>>;

    /// Lists keys under a prefix, optionally at a past revision, paginated.
    async fn list(&self, options: ListOptions) -> Result<ListResult>;

    /// Creates a key. Fails with [`Error::AlreadyExists`] if it exists.
    /// The answer holds the value written (the write path serves it).
    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue>;

    /// Replaces a key's value if its `mod_revision` is still
    /// `expected_revision`. Fails with [`Error::NotFound`] if the key is
    /// gone and with [`Error::Conflict`] if it changed. The answer holds
    /// the value written.
    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected_revision: Revision,
    ) -> Result<KeyValue>;

    /// Deletes a key, if given only when its `mod_revision` is still
    /// `expected_revision`. Returns the deleted value and the revision of the
    /// deletion. Fails with [`Error::NotFound`] if the key does not exist.
    async fn delete(
        &self,
        key: &str,
        expected_revision: Option<Revision>,
    ) -> Result<(KeyValue, Revision)>;

    /// The store's current revision (also a cheap health check).
    async fn current_revision(&self) -> Result<Revision>;

    /// Watches keys under `prefix`, delivering every event with a revision
    /// greater than `after`. A start that is compacted away fails with
    /// [`Error::Compacted`] either here or as the stream's first item
    /// (etcd only says so after accepting the watch). The stream ends after
    /// its first `Err` (etcd gone, compacted while lagging): watch again
    /// from the last revision seen. Events carry previous values as
    /// `previous` says.
    async fn watch(&self, prefix: &str, after: Revision, previous: PreviousValues)
    -> Result<Watch>;

    /// Forgets history before `revision`.
    async fn compact(&self, revision: Revision) -> Result<()>;

    /// The oldest revision still kept (lists at revisions below it and
    /// watches from before it fail with [`Error::Compacted`]).
    async fn compacted_revision(&self) -> Result<Revision>;

    /// Campaigns for leadership of `election` as `identity`; returns once
    /// this process leads. The default, for stores that only one process
    /// can open (embedded), leads at once and forever.
    async fn elect(&self, election: &str, identity: &str) -> Result<Leadership> {
        let _ = (election, identity);
        Ok(Leadership::unconditional())
    }
}

/// Leadership won by [`Store::elect`]. Dropping it gives leadership up
/// (for etcd: the lease is revoked in the background).
pub struct Leadership {
    lost: tokio::sync::watch::Receiver<bool>,
    /// Held by unconditional leadership so that `lost` never fires.
    _never_lost: Option<tokio::sync::watch::Sender<bool>>,
    keeper: Option<tokio::task::JoinHandle<()>>,
    resign: Option<Pin<Box<dyn std::future::Future<Output = ()> + Send>>>,
}

impl fmt::Debug for Leadership {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Leadership")
            .field("lost", &*self.lost.borrow())
            .finish_non_exhaustive()
    }
}

impl Leadership {
    /// Leadership that is never lost.
    pub fn unconditional() -> Self {
        let (sender, lost) = tokio::sync::watch::channel(false);
        Self {
            lost,
            _never_lost: Some(sender),
            keeper: None,
            resign: None,
        }
    }

    /// Leadership kept alive by `keeper`, which sets `lost` when it ends;
    /// `resign` gives it up at once.
    pub fn new(
        lost: tokio::sync::watch::Receiver<bool>,
        keeper: tokio::task::JoinHandle<()>,
        resign: Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
    ) -> Self {
        Self {
            lost,
            _never_lost: None,
            keeper: Some(keeper),
            resign: Some(resign),
        }
    }

    /// Resolves when leadership is lost (lease expired, store unreachable).
    pub async fn lost(&mut self) {
        loop {
            if *self.lost.borrow_and_update() {
                return;
            }
            if self.lost.changed().await.is_err() {
                return;
            }
        }
    }

    /// Gives leadership up now, so another replica takes over without
    /// waiting for the lease to expire.
    pub async fn resign(mut self) {
        if let Some(keeper) = self.keeper.take() {
            keeper.abort();
        }
        if let Some(resign) = self.resign.take() {
            resign.await;
        }
    }
}

impl Drop for Leadership {
    fn drop(&mut self) {
        if let Some(keeper) = self.keeper.take() {
            keeper.abort();
        }
        if let Some(resign) = self.resign.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(resign);
        }
    }
}

/// A shared store handle.
pub type SharedStore = Arc<dyn Store>;

/// Storage failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `create` found the key already present.
    #[error("key {key} already exists")]
    AlreadyExists {
        /// The key.
        key: String,
    },
    /// The key does not exist.
    #[error("key {key} not found")]
    NotFound {
        /// The key.
        key: String,
    },
    /// A compare-and-swap precondition failed: the key's revision is not the
    /// expected one.
    #[error("key {key} was modified: expected revision {expected}, found {actual}")]
    Conflict {
        /// The key.
        key: String,
        /// The revision the caller expected.
        expected: Revision,
        /// The key's current modification revision.
        actual: Revision,
    },
    /// The requested revision has been compacted away.
    #[error("required revision {requested} has been compacted (oldest kept: {compacted})")]
    Compacted {
        /// The revision asked for.
        requested: Revision,
        /// The compaction point.
        compacted: Revision,
    },
    /// A revision in the future was asked for.
    #[error("revision {requested} is newer than the current revision {current}")]
    FutureRevision {
        /// The revision asked for.
        requested: Revision,
        /// The current revision.
        current: Revision,
    },
    /// The backend cannot be reached or failed (etcd down, disk error).
    /// Worth a retry.
    #[error("storage backend {backend} unavailable: {message}")]
    Unavailable {
        /// Which backend and endpoint.
        backend: String,
        /// What went wrong.
        message: String,
        /// The cause.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// The backend refused the request itself (too large, not permitted,
    /// malformed, bad TLS files): sending it again fails the same way. Not
    /// worth a retry.
    #[error("storage backend {backend} rejected the request: {message}")]
    Rejected {
        /// Which backend and endpoint.
        backend: String,
        /// What the backend said.
        message: String,
    },
    /// The stored data is not what this program wrote (corrupt record,
    /// foreign format). Not worth a retry.
    #[error("corrupt data in storage at {key}: {message}")]
    Corrupt {
        /// The key (or internal table) with bad data.
        key: String,
        /// What is wrong with it.
        message: String,
    },
}

impl Error {
    /// Whether retrying the same operation later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Unavailable { .. })
    }
}

/// Storage result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Which backend to open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StorageConfig {
    /// The redb file `<data_dir>/store.redb`.
    Embedded {
        /// The server's data directory.
        data_dir: std::path::PathBuf,
    },
    /// An etcd cluster.
    Etcd(etcd::EtcdConfig),
}

/// Opens the configured backend. For etcd this connects and checks that the
/// cluster answers, so a wrong endpoint fails here with a clear message.
pub async fn open(config: &StorageConfig) -> Result<SharedStore> {
    match config {
        StorageConfig::Embedded { data_dir } => {
            let store = embedded::EmbeddedStore::open(data_dir).await?;
            Ok(Arc::new(store))
        }
        StorageConfig::Etcd(config) => {
            let store = etcd::EtcdStore::connect(config).await?;
            Ok(Arc::new(store))
        }
    }
}
