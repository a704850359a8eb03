//! The embedded backend: one redb file, `<data_dir>/store.redb`, with the
//! same revision, history, watch and compaction semantics as etcd, so that a
//! single machine needs nothing else running.
//!
//! This module owns the file. Everything it keeps lives in three tables:
//! - `meta`: the format marker, the current revision and the compaction
//!   point;
//! - `kv`: every live key with its value and revisions;
//! - `history`: one record per revision (the key, the new value or the
//!   deletion, and the previous value), kept until compacted, so that lists
//!   at past revisions and watches from past revisions work, also after a
//!   restart.
//!
//! All writes go through one writer thread (the `writer` submodule), which
//! commits with `Durability::Immediate` before it answers, so an
//! acknowledged write survives `kill -9`. Reads run on tokio's blocking pool against redb's
//! snapshots. It must not hold any state in memory that the file does not
//! also hold (other than the committed revision and the live event feed):
//! reopening the file gives back the same store.

/// Public only for the fuzz target `record_codec` (`fuzz/`).
#[doc(hidden)]
pub mod codec;
mod watch;
mod writer;

use std::{
    collections::BTreeMap,
    fmt,
    ops::Bound,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    },
};

use async_trait::async_trait;
use redb::{Database, ReadTransaction, ReadableDatabase, ReadableTable, Table, TableDefinition};
use tokio::sync::{broadcast, oneshot};

use self::codec::{DecodeError, StoredValue};
use self::writer::{WriteOp, WriteOutcome, WriteRequest};
use crate::storage::{
    Error, KeyValue, ListOptions, ListResult, PreviousValues, Result, Revision, Store, Watch,
    WatchEvent,
};

/// The file name inside the data directory.
pub const FILE_NAME: &str = "store.redb";

/// Table names and types. Keys and values are raw bytes so that whatever is
/// in the file decodes through [`codec`], which reports bad bytes instead of
/// panicking (redb's own `&str` type would panic on non-UTF-8).
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const KV: TableDefinition<&[u8], &[u8]> = TableDefinition::new("kv");
const HISTORY: TableDefinition<u64, &[u8]> = TableDefinition::new("history");

const META_FORMAT: &str = "format";
const META_REVISION: &str = "revision";
const META_COMPACTED: &str = "compacted";

/// How many history records one blocking read hands to a catching-up
/// watcher, so that a watcher far behind neither blocks a thread for long
/// nor loads the whole history into memory.
const HISTORY_CHUNK: usize = 512;

/// How many commits the live event feed buffers per watcher before a slow
/// watcher falls back to reading the history from the file.
const LIVE_FEED_CAPACITY: usize = 1024;

/// The embedded store. Cheap to share behind an `Arc`; dropping it stops the
/// writer thread (after the writes already queued) and closes the file once
/// the last watch on it is dropped too.
pub struct EmbeddedStore {
    shared: Arc<Shared>,
    writer: Option<writer::Writer>,
    /// Kept to subscribe new watchers; the writer thread holds the other
    /// sender, so the feed closes when both the store and the writer are
    /// gone.
    live: broadcast::Sender<Arc<[WatchEvent]>>,
}

/// What readers, the writer and watchers share.
struct Shared {
    db: Database,
    path: PathBuf,
    /// The revision of the last commit whose events have been sent on the
    /// live feed. Stored after the send, so a watcher that reads it knows the
    /// events up to it are already in its feed (or in the file).
    committed: AtomicI64,
}

impl fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("path", &self.shared.path)
            .field("committed", &self.shared.committed.load(Ordering::Acquire))
            .finish_non_exhaustive()
    }
}

impl EmbeddedStore {
    /// Opens (or creates) `<data_dir>/store.redb`, creating `data_dir` if
    /// needed, and checks that the file is one this version wrote.
    pub async fn open(data_dir: &Path) -> Result<Self> {
        let data_dir = data_dir.to_path_buf();
        let shared = blocking(move || Shared::open(&data_dir)).await?;
        let shared = Arc::new(shared);
        let (live, _) = broadcast::channel(LIVE_FEED_CAPACITY);
        let writer = writer::Writer::start(shared.clone(), live.clone())?;
        Ok(EmbeddedStore {
            shared,
            writer: Some(writer),
            live,
        })
    }

    /// The path of the redb file.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    async fn write(&self, op: WriteOp) -> Result<WriteOutcome> {
        let writer = self
            .writer
            .as_ref()
            .ok_or_else(|| unavailable(&self.shared.path, "the store is closing", None))?;
        let (reply, answer) = oneshot::channel();
        writer
            .send(WriteRequest { op, reply })
            .await
            .map_err(|_| unavailable(&self.shared.path, "the writer thread has stopped", None))?;
        answer.await.map_err(|_| {
            unavailable(
                &self.shared.path,
                "the writer thread stopped before answering",
                None,
            )
        })?
    }

    async fn read<T, F>(&self, read: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Shared) -> Result<T> + Send + 'static,
    {
        let shared = self.shared.clone();
        blocking(move || read(&shared)).await
    }
}

impl Drop for EmbeddedStore {
    fn drop(&mut self) {
        // Join the writer so that the file is closed (or only held by live
        // watches) when this returns: reopening the same file right after
        // dropping the store must not find it still locked.
        if let Some(writer) = self.writer.take() {
            writer.stop();
        }
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let key = key.to_owned();
        self.read(move |shared| shared.get(&key)).await
    }

    async fn list(&self, options: ListOptions) -> Result<ListResult> {
        self.read(move |shared| shared.list(&options)).await
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue> {
        let op = WriteOp::Create {
            key: key.to_owned(),
            value,
        };
        self.write(op).await?.into_put()
    }

    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected_revision: Revision,
    ) -> Result<KeyValue> {
        let op = WriteOp::Update {
            key: key.to_owned(),
            value,
            expected: expected_revision,
        };
        self.write(op).await?.into_put()
    }

    async fn delete(
        &self,
        key: &str,
        expected_revision: Option<Revision>,
    ) -> Result<(KeyValue, Revision)> {
        let op = WriteOp::Delete {
            key: key.to_owned(),
            expected: expected_revision,
        };
        self.write(op).await?.into_deleted()
    }

    async fn current_revision(&self) -> Result<Revision> {
        Ok(self.shared.committed.load(Ordering::Acquire))
    }

    async fn watch(
        &self,
        prefix: &str,
        after: Revision,
        previous: PreviousValues,
    ) -> Result<Watch> {
        // Subscribe before looking at the file: every commit after the
        // revision the watcher reads next is then certain to be in its feed.
        let live = self.live.subscribe();
        // Fail now rather than on the first poll when the start is compacted.
        self.read(move |shared| shared.check_watch_start(after))
            .await?;
        Ok(watch::start(
            self.shared.clone(),
            live,
            prefix.to_owned(),
            after,
            previous,
        ))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        match self.write(WriteOp::Compact { revision }).await? {
            WriteOutcome::Compacted => Ok(()),
            other => Err(internal_mismatch(&self.shared.path, &other)),
        }
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        self.read(|shared| {
            let txn = shared.begin_read()?;
            shared.meta_revision(&txn, META_COMPACTED)
        })
        .await
    }
}

impl WriteOutcome {
    fn into_put(self) -> Result<KeyValue> {
        match self {
            WriteOutcome::Put(kv) => Ok(kv),
            other => Err(internal_mismatch(Path::new(FILE_NAME), &other)),
        }
    }

    fn into_deleted(self) -> Result<(KeyValue, Revision)> {
        match self {
            WriteOutcome::Deleted(kv, revision) => Ok((kv, revision)),
            other => Err(internal_mismatch(Path::new(FILE_NAME), &other)),
        }
    }
}

/// The writer answered a request with the outcome of another kind: a bug,
/// reported rather than panicking.
fn internal_mismatch(path: &Path, outcome: &WriteOutcome) -> Error {
    unavailable(
        path,
        &format!("internal error: unexpected write outcome {outcome:?}"),
        None,
    )
}

impl Shared {
    fn open(data_dir: &Path) -> Result<Shared> {
        std::fs::create_dir_all(data_dir).map_err(|error| {
            unavailable(
                data_dir,
                "cannot create the data directory",
                Some(Box::new(error)),
            )
        })?;
        let path = data_dir.join(FILE_NAME);
        let db = Database::builder()
            // The cache is a ceiling, not an allocation; objects are small.
            .set_cache_size(64 * 1024 * 1024)
            .create(&path)
            .map_err(|error| map_redb_error(&path, &path.display().to_string(), error))?;
        let revision = initialise(&db, &path)?;
        Ok(Shared {
            db,
            path,
            committed: AtomicI64::new(revision),
        })
    }

    fn begin_read(&self) -> Result<ReadTransaction> {
        self.db
            .begin_read()
            .map_err(|error| map_redb_error(&self.path, "read transaction", error))
    }

    fn meta_revision(&self, txn: &ReadTransaction, name: &str) -> Result<Revision> {
        let meta = txn
            .open_table(META)
            .map_err(|error| map_redb_error(&self.path, "meta", error))?;
        read_meta_revision(&meta, &self.path, name)
    }

    fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let txn = self.begin_read()?;
        let kv = txn
            .open_table(KV)
            .map_err(|error| map_redb_error(&self.path, "kv", error))?;
        let found = kv
            .get(key.as_bytes())
            .map_err(|error| map_redb_error(&self.path, key, error))?;
        match found {
            None => Ok(None),
            Some(bytes) => {
                let stored = codec::decode_value(bytes.value()).map_err(|e| corrupt(key, &e))?;
                Ok(Some(stored.into_key_value(key.to_owned())))
            }
        }
    }

    /// Lists at the current or a past revision. A past state is the current
    /// one with the writes after it undone: for each key written since, its
    /// value before the first such write.
    fn list(&self, options: &ListOptions) -> Result<ListResult> {
        let txn = self.begin_read()?;
        let current = self.meta_revision(&txn, META_REVISION)?;
        let compacted = self.meta_revision(&txn, META_COMPACTED)?;
        let revision = match options.revision {
            // etcd reads revision 0 as "now"; so do we.
            Some(requested) if requested > 0 => requested,
            _ => current,
        };
        if revision > current {
            return Err(Error::FutureRevision {
                requested: revision,
                current,
            });
        }
        if revision < compacted {
            return Err(Error::Compacted {
                requested: revision,
                compacted,
            });
        }
        let range = KeyRange::new(&options.prefix, options.start_after.as_deref());
        let undone = self.undo_since(&txn, revision, current, &range)?;
        let merged = self.merge_current(&txn, &range, undone)?;
        let limit = options
            .limit
            .filter(|limit| *limit > 0)
            .unwrap_or(usize::MAX);
        let total = merged.len();
        let mut items = Vec::new();
        for (key, entry) in merged.into_iter().take(limit) {
            items.push(self.resolve(&txn, key, entry)?);
        }
        let remaining = u64::try_from(total - items.len()).unwrap_or(u64::MAX);
        Ok(ListResult {
            items,
            revision,
            remaining,
        })
    }

    /// For every key in `range` written after `revision`, its state at
    /// `revision` (`None`: it did not exist then).
    fn undo_since(
        &self,
        txn: &ReadTransaction,
        revision: Revision,
        current: Revision,
        range: &KeyRange<'_>,
    ) -> Result<BTreeMap<String, Option<StoredValue>>> {
        let mut undone = BTreeMap::new();
        if revision >= current {
            return Ok(undone);
        }
        let history = txn
            .open_table(HISTORY)
            .map_err(|error| map_redb_error(&self.path, "history", error))?;
        let from = revision_key(revision + 1);
        let records = history
            .range(from..)
            .map_err(|error| map_redb_error(&self.path, "history", error))?;
        for record in records {
            let (at, bytes) =
                record.map_err(|error| map_redb_error(&self.path, "history", error))?;
            let record = codec::decode_history(bytes.value())
                .map_err(|e| corrupt(&history_name(at.value()), &e))?;
            if range.contains(&record.key) {
                // Records come oldest first: the first one seen for a key
                // holds its value as of `revision`.
                undone.entry(record.key).or_insert(record.prev);
            }
        }
        Ok(undone)
    }

    /// Merges the current keys in `range` with the undone ones, in key
    /// order, without decoding values that the page will not return.
    fn merge_current(
        &self,
        txn: &ReadTransaction,
        range: &KeyRange<'_>,
        undone: BTreeMap<String, Option<StoredValue>>,
    ) -> Result<BTreeMap<String, ListEntry>> {
        let kv = txn
            .open_table(KV)
            .map_err(|error| map_redb_error(&self.path, "kv", error))?;
        let mut merged = BTreeMap::new();
        let rows = kv
            .range::<&[u8]>((range.lower(), Bound::Unbounded))
            .map_err(|error| map_redb_error(&self.path, "kv", error))?;
        for row in rows {
            let (key, _) = row.map_err(|error| map_redb_error(&self.path, "kv", error))?;
            let key = key.value();
            if !key.starts_with(range.prefix.as_bytes()) {
                break;
            }
            let key = key_string(key)?;
            if !undone.contains_key(&key) {
                merged.insert(key, ListEntry::Current);
            }
        }
        for (key, state) in undone {
            if let Some(stored) = state {
                merged.insert(key, ListEntry::Past(stored));
            }
        }
        Ok(merged)
    }

    fn resolve(&self, txn: &ReadTransaction, key: String, entry: ListEntry) -> Result<KeyValue> {
        match entry {
            ListEntry::Past(stored) => Ok(stored.into_key_value(key)),
            ListEntry::Current => {
                let kv = txn
                    .open_table(KV)
                    .map_err(|error| map_redb_error(&self.path, "kv", error))?;
                let bytes = kv
                    .get(key.as_bytes())
                    .map_err(|error| map_redb_error(&self.path, &key, error))?
                    .ok_or_else(|| Error::Corrupt {
                        key: key.clone(),
                        message: "key vanished inside one read snapshot".into(),
                    })?;
                let stored = codec::decode_value(bytes.value()).map_err(|e| corrupt(&key, &e))?;
                Ok(stored.into_key_value(key))
            }
        }
    }

    /// Fails with [`Error::Compacted`] when events after `after` are gone.
    fn check_watch_start(&self, after: Revision) -> Result<()> {
        let txn = self.begin_read()?;
        let compacted = self.meta_revision(&txn, META_COMPACTED)?;
        check_not_compacted(after, compacted)
    }

    /// Reads up to [`HISTORY_CHUNK`] history records after `position` and
    /// returns the events under `prefix` among them. A corrupt record is
    /// reported once the events before it have been handed out.
    fn read_history(&self, prefix: &str, position: Revision) -> Result<HistoryChunk> {
        let txn = self.begin_read()?;
        let current = self.meta_revision(&txn, META_REVISION)?;
        let compacted = self.meta_revision(&txn, META_COMPACTED)?;
        check_not_compacted(position, compacted)?;
        let history = txn
            .open_table(HISTORY)
            .map_err(|error| map_redb_error(&self.path, "history", error))?;
        let records = history
            .range(revision_key(position + 1)..)
            .map_err(|error| map_redb_error(&self.path, "history", error))?;
        let mut chunk = HistoryChunk {
            events: Vec::new(),
            read_up_to: position,
            current,
        };
        for (count, record) in records.enumerate() {
            if count == HISTORY_CHUNK {
                return Ok(chunk);
            }
            let (at, bytes) =
                record.map_err(|error| map_redb_error(&self.path, "history", error))?;
            let at = at.value();
            let record = match codec::decode_history(bytes.value()) {
                Ok(record) => record,
                Err(_) if count > 0 => return Ok(chunk),
                Err(error) => return Err(corrupt(&history_name(at), &error)),
            };
            let revision = Revision::try_from(at).unwrap_or(Revision::MAX);
            if record.key.starts_with(prefix) {
                chunk.events.push(record.into_event(revision));
            }
            chunk.read_up_to = revision;
        }
        // This snapshot's history has been read to its end.
        chunk.read_up_to = chunk.read_up_to.max(current);
        Ok(chunk)
    }
}

/// A watcher's read of the history file.
struct HistoryChunk {
    /// The events under the watched prefix, in revision order.
    events: Vec<WatchEvent>,
    /// Every record up to this revision has been read.
    read_up_to: Revision,
    /// The store's revision in the snapshot read.
    current: Revision,
}

/// Mirrors etcd: a watch may start right at the compaction point (`after + 1
/// == compacted`) but not before it.
fn check_not_compacted(after: Revision, compacted: Revision) -> Result<()> {
    if after + 1 < compacted {
        return Err(Error::Compacted {
            requested: after + 1,
            compacted,
        });
    }
    Ok(())
}

/// One item of a list before its value is read.
enum ListEntry {
    /// The value is the current one in the `kv` table.
    Current,
    /// The value as it was at the listed revision.
    Past(StoredValue),
}

/// The keys a list covers: under `prefix`, strictly after `start_after`.
struct KeyRange<'a> {
    prefix: &'a str,
    start_after: Option<&'a str>,
}

impl<'a> KeyRange<'a> {
    fn new(prefix: &'a str, start_after: Option<&'a str>) -> Self {
        KeyRange {
            prefix,
            start_after,
        }
    }

    fn contains(&self, key: &str) -> bool {
        key.starts_with(self.prefix) && self.start_after.is_none_or(|after| key > after)
    }

    fn lower(&self) -> Bound<&'a [u8]> {
        match self.start_after {
            Some(after) if after >= self.prefix => Bound::Excluded(after.as_bytes()),
            _ => Bound::Included(self.prefix.as_bytes()),
        }
    }
}

/// Creates the tables of a new file, or checks the format marker and reads
/// the revision of an existing one.
fn initialise(db: &Database, path: &Path) -> Result<Revision> {
    let map = |context: &str, error: redb::Error| map_redb_error(path, context, error);
    let txn = db
        .begin_write()
        .map_err(|error| map("write transaction", error.into()))?;
    let revision = {
        let mut meta = txn
            .open_table(META)
            .map_err(|error| map("meta", error.into()))?;
        txn.open_table(KV)
            .map_err(|error| map("kv", error.into()))?;
        txn.open_table(HISTORY)
            .map_err(|error| map("history", error.into()))?;
        let format = meta
            .get(META_FORMAT)
            .map_err(|error| map(META_FORMAT, error.into()))?
            .map(|bytes| bytes.value().to_vec());
        match format.as_deref() {
            None => {
                meta.insert(META_FORMAT, [codec::FORMAT].as_slice())
                    .map_err(|error| map(META_FORMAT, error.into()))?;
                for name in [META_REVISION, META_COMPACTED] {
                    write_meta_revision(&mut meta, name, 0)
                        .map_err(|error| map(name, error.into()))?;
                }
            }
            Some([codec::FORMAT]) => {}
            Some(other) => {
                return Err(Error::Corrupt {
                    key: format!("{}: meta/{META_FORMAT}", path.display()),
                    message: format!(
                        "unknown store format {other:?} (this version reads [{}])",
                        codec::FORMAT
                    ),
                });
            }
        }
        read_meta_revision(&meta, path, META_REVISION)?
    };
    txn.commit().map_err(|error| map("commit", error.into()))?;
    Ok(revision)
}

fn read_meta_revision(
    meta: &impl ReadableTable<&'static str, &'static [u8]>,
    path: &Path,
    name: &str,
) -> Result<Revision> {
    let bytes = meta
        .get(name)
        .map_err(|error| map_redb_error(path, name, error))?
        .ok_or_else(|| Error::Corrupt {
            key: format!("meta/{name}"),
            message: "missing".into(),
        })?;
    codec::decode_revision(bytes.value()).map_err(|e| corrupt(&format!("meta/{name}"), &e))
}

fn write_meta_revision(
    meta: &mut Table<'_, &'static str, &'static [u8]>,
    name: &str,
    revision: Revision,
) -> Result<(), redb::StorageError> {
    meta.insert(name, codec::encode_revision(revision).as_slice())
        .map(|_| ())
}

/// History keys are `u64`; revisions are never negative.
fn revision_key(revision: Revision) -> u64 {
    u64::try_from(revision).unwrap_or(0)
}

fn history_name(revision: u64) -> String {
    format!("history/{revision}")
}

fn key_string(key: &[u8]) -> Result<String> {
    String::from_utf8(key.to_vec()).map_err(|_| Error::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        message: "stored key is not UTF-8".into(),
    })
}

fn corrupt(key: &str, error: &DecodeError) -> Error {
    Error::Corrupt {
        key: key.to_owned(),
        message: error.to_string(),
    }
}

fn unavailable(
    path: &Path,
    message: &str,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
) -> Error {
    Error::Unavailable {
        backend: format!("embedded ({})", path.display()),
        message: message.to_owned(),
        source,
    }
}

/// The one place a redb error becomes a storage error: damage redb detects
/// in its own structures is [`Error::Corrupt`] (naming what was being read),
/// everything else (IO, locks, a closed database) is [`Error::Unavailable`].
fn map_redb_error(path: &Path, context: &str, error: impl Into<redb::Error>) -> Error {
    let error: redb::Error = error.into();
    match error {
        redb::Error::Corrupted(message) => Error::Corrupt {
            key: context.to_owned(),
            message: format!("redb reports corruption in {}: {message}", path.display()),
        },
        redb::Error::TableTypeMismatch { .. }
        | redb::Error::TableIsMultimap(_)
        | redb::Error::TableIsNotMultimap(_)
        | redb::Error::TypeDefinitionChanged { .. }
        | redb::Error::UpgradeRequired(_) => Error::Corrupt {
            key: context.to_owned(),
            message: format!(
                "{} was not written by this program: {error}",
                path.display()
            ),
        },
        redb::Error::DatabaseAlreadyOpen => unavailable(
            path,
            "the file is already open (is another server using this data directory?)",
            Some(Box::new(error)),
        ),
        // redb reports a file that is not a redb database as invalid data.
        redb::Error::Io(io) if io.kind() == std::io::ErrorKind::InvalidData => Error::Corrupt {
            key: context.to_owned(),
            message: format!("{} is not a store this program wrote: {io}", path.display()),
        },
        other => unavailable(path, &format!("{context}: {other}"), Some(Box::new(other))),
    }
}

/// Runs blocking redb work on tokio's blocking pool.
async fn blocking<T, F>(work: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| Error::Unavailable {
            backend: "embedded".into(),
            message: "a storage task failed".into(),
            source: Some(Box::new(error)),
        })?
}

#[cfg(test)]
mod tests;
