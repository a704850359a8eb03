//! The embedded store's single writer: one thread owns every write
//! transaction, so revisions are handed out in commit order and live events
//! leave in that order.
//!
//! Requests that queue up while a commit is being synced to disk go into the
//! next transaction together (group commit), each with its own revision, and
//! are all answered after that one fsync. The writer must not answer a write
//! before its transaction has committed with `Durability::Immediate`, and
//! must not send an event to watchers before that either.

use std::{
    sync::{Arc, atomic::Ordering},
    thread::JoinHandle,
};

use redb::{Durability, ReadableTable, Table, WriteTransaction};
use tokio::sync::{broadcast, mpsc, oneshot};

use super::{
    HISTORY, KV, META, META_COMPACTED, META_REVISION, Shared,
    codec::{self, HistoryRecord, StoredValue},
    corrupt, map_redb_error, read_meta_revision, revision_key, unavailable, write_meta_revision,
};
use crate::storage::{Error, KeyValue, Result, Revision, WatchEvent};

/// How many queued requests one transaction takes at most, so that one
/// commit stays short even under a flood of writes.
const MAX_BATCH: usize = 256;

/// How many requests may wait for the writer before callers wait to queue.
const QUEUE_CAPACITY: usize = 1024;

/// One write to perform.
#[derive(Debug)]
pub(super) enum WriteOp {
    Create {
        key: String,
        value: Vec<u8>,
    },
    Update {
        key: String,
        value: Vec<u8>,
        expected: Revision,
    },
    Delete {
        key: String,
        expected: Option<Revision>,
    },
    Compact {
        revision: Revision,
    },
}

/// What a successful write did.
#[derive(Debug)]
pub(super) enum WriteOutcome {
    /// The key now has this value.
    Put(KeyValue),
    /// The key had this value and was deleted at this revision.
    Deleted(KeyValue, Revision),
    /// History before the requested revision is gone (or already was).
    Compacted,
}

/// A write and where to send its outcome.
#[derive(Debug)]
pub(super) struct WriteRequest {
    pub(super) op: WriteOp,
    pub(super) reply: oneshot::Sender<Result<WriteOutcome>>,
}

/// The handle of the writer thread.
#[derive(Debug)]
pub(super) struct Writer {
    requests: mpsc::Sender<WriteRequest>,
    thread: JoinHandle<()>,
}

impl Writer {
    pub(super) fn start(
        shared: Arc<Shared>,
        live: broadcast::Sender<Arc<[WatchEvent]>>,
    ) -> Result<Writer> {
        let (requests, queue) = mpsc::channel(QUEUE_CAPACITY);
        let path = shared.path.clone();
        let thread = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || run(&shared, &live, queue))
            .map_err(|error| {
                unavailable(
                    &path,
                    "cannot start the writer thread",
                    Some(Box::new(error)),
                )
            })?;
        Ok(Writer { requests, thread })
    }

    pub(super) async fn send(
        &self,
        request: WriteRequest,
    ) -> Result<(), mpsc::error::SendError<WriteRequest>> {
        self.requests.send(request).await
    }

    /// Lets the writer finish what is queued, then waits for its thread.
    pub(super) fn stop(self) {
        drop(self.requests);
        if self.thread.join().is_err() {
            tracing::error!("the embedded store's writer thread panicked");
        }
    }
}

fn run(
    shared: &Shared,
    live: &broadcast::Sender<Arc<[WatchEvent]>>,
    mut queue: mpsc::Receiver<WriteRequest>,
) {
    while let Some(first) = queue.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        commit_batch(shared, live, batch);
    }
}

/// Commits one batch and answers it: outcomes after the commit, the same
/// failure to everyone when the transaction itself fails.
fn commit_batch(
    shared: &Shared,
    live: &broadcast::Sender<Arc<[WatchEvent]>>,
    batch: Vec<WriteRequest>,
) {
    let ops: Vec<&WriteOp> = batch.iter().map(|request| &request.op).collect();
    match apply_batch(shared, &ops) {
        Ok(Committed {
            outcomes,
            events,
            revision,
        }) => {
            // Order matters: events first, then the committed revision, then
            // the answers (see `Shared::committed`).
            if !events.is_empty() {
                // No receiver is fine: nobody is watching.
                let _ = live.send(events.into());
            }
            shared.committed.store(revision, Ordering::Release);
            for (request, outcome) in batch.into_iter().zip(outcomes) {
                let _ = request.reply.send(outcome);
            }
        }
        Err(error) => {
            tracing::warn!(%error, writes = batch.len(), "embedded store commit failed");
            for request in batch {
                let _ = request.reply.send(Err(duplicate(&error)));
            }
        }
    }
}

/// The result of one committed transaction.
struct Committed {
    /// One per request, in request order.
    outcomes: Vec<Result<WriteOutcome>>,
    /// The events of the successful writes, in revision order.
    events: Vec<WatchEvent>,
    /// The store revision after the commit.
    revision: Revision,
}

/// The three tables a write touches, open in one transaction.
struct Tables<'txn> {
    meta: Table<'txn, &'static str, &'static [u8]>,
    kv: Table<'txn, &'static [u8], &'static [u8]>,
    history: Table<'txn, u64, &'static [u8]>,
}

/// The store's counters as this transaction changes them.
struct Counters {
    revision: Revision,
    compacted: Revision,
}

/// A write's own result: `Err` is that write's failure (conflict, missing
/// key, corrupt record) and leaves the rest of the batch alone.
type Applied = Result<(WriteOutcome, Option<WatchEvent>)>;

fn apply_batch(shared: &Shared, ops: &[&WriteOp]) -> Result<Committed> {
    let path = &shared.path;
    let mut txn = shared
        .db
        .begin_write()
        .map_err(|error| map_redb_error(path, "write transaction", error))?;
    // The default, stated because acknowledged writes rely on it.
    txn.set_durability(Durability::Immediate)
        .map_err(|error| map_redb_error(path, "write transaction", error))?;
    let (outcomes, events, revision) = apply_all(shared, &txn, ops)?;
    txn.commit()
        .map_err(|error| map_redb_error(path, "commit", error))?;
    Ok(Committed {
        outcomes,
        events,
        revision,
    })
}

type BatchResult = (Vec<Result<WriteOutcome>>, Vec<WatchEvent>, Revision);

fn apply_all(shared: &Shared, txn: &WriteTransaction, ops: &[&WriteOp]) -> Result<BatchResult> {
    let path = &shared.path;
    let open_error = |name: &'static str| move |error| map_redb_error(path, name, error);
    let mut tables = Tables {
        meta: txn.open_table(META).map_err(open_error("meta"))?,
        kv: txn.open_table(KV).map_err(open_error("kv"))?,
        history: txn.open_table(HISTORY).map_err(open_error("history"))?,
    };
    let start = read_meta_revision(&tables.meta, path, META_REVISION)?;
    let mut counters = Counters {
        revision: start,
        compacted: read_meta_revision(&tables.meta, path, META_COMPACTED)?,
    };
    let mut outcomes = Vec::with_capacity(ops.len());
    let mut events = Vec::new();
    for op in ops {
        match apply(shared, &mut tables, &mut counters, op)? {
            Ok((outcome, event)) => {
                events.extend(event);
                outcomes.push(Ok(outcome));
            }
            Err(error) => outcomes.push(Err(error)),
        }
    }
    if counters.revision != start {
        write_meta_revision(&mut tables.meta, META_REVISION, counters.revision)
            .map_err(|error| map_redb_error(path, META_REVISION, error))?;
    }
    Ok((outcomes, events, counters.revision))
}

/// Applies one write inside the batch's transaction. The outer `Err` is a
/// failure of the transaction (disk, redb) and fails the whole batch.
fn apply(
    shared: &Shared,
    tables: &mut Tables<'_>,
    counters: &mut Counters,
    op: &WriteOp,
) -> Result<Applied> {
    match op {
        WriteOp::Create { key, value } => {
            if read_current(shared, tables, key)?.is_some() {
                return Ok(Err(Error::AlreadyExists { key: key.clone() }));
            }
            put(shared, tables, counters, key, value, None)
        }
        WriteOp::Update {
            key,
            value,
            expected,
        } => {
            let old = match current_or_error(shared, tables, key, Some(*expected))? {
                Ok(old) => old,
                Err(error) => return Ok(Err(error)),
            };
            put(shared, tables, counters, key, value, Some(old))
        }
        WriteOp::Delete { key, expected } => {
            let old = match current_or_error(shared, tables, key, *expected)? {
                Ok(old) => old,
                Err(error) => return Ok(Err(error)),
            };
            delete(shared, tables, counters, key, old)
        }
        WriteOp::Compact { revision } => compact(shared, tables, counters, *revision),
    }
}

/// The key's current value, or the error a conditional write reports:
/// missing key, corrupt record, or a revision other than `expected`.
fn current_or_error(
    shared: &Shared,
    tables: &Tables<'_>,
    key: &str,
    expected: Option<Revision>,
) -> Result<Result<StoredValue>> {
    let Some(bytes) = read_current(shared, tables, key)? else {
        return Ok(Err(Error::NotFound {
            key: key.to_owned(),
        }));
    };
    let old = match codec::decode_value(&bytes) {
        Ok(old) => old,
        Err(error) => return Ok(Err(corrupt(key, &error))),
    };
    if let Some(expected) = expected
        && old.mod_revision != expected
    {
        return Ok(Err(Error::Conflict {
            key: key.to_owned(),
            expected,
            actual: old.mod_revision,
        }));
    }
    Ok(Ok(old))
}

fn read_current(shared: &Shared, tables: &Tables<'_>, key: &str) -> Result<Option<Vec<u8>>> {
    let found = tables
        .kv
        .get(key.as_bytes())
        .map_err(|error| map_redb_error(&shared.path, key, error))?;
    Ok(found.map(|bytes| bytes.value().to_vec()))
}

fn put(
    shared: &Shared,
    tables: &mut Tables<'_>,
    counters: &mut Counters,
    key: &str,
    value: &[u8],
    prev: Option<StoredValue>,
) -> Result<Applied> {
    let revision = counters.revision + 1;
    let stored = StoredValue {
        create_revision: prev.as_ref().map_or(revision, |prev| prev.create_revision),
        mod_revision: revision,
        value: value.to_vec(),
    };
    tables
        .kv
        .insert(key.as_bytes(), codec::encode_value(&stored).as_slice())
        .map_err(|error| map_redb_error(&shared.path, key, error))?;
    let record = HistoryRecord {
        key: key.to_owned(),
        put: Some(stored.clone()),
        prev,
    };
    append_history(shared, tables, revision, &record)?;
    counters.revision = revision;
    let outcome = WriteOutcome::Put(stored.into_key_value(key.to_owned()));
    Ok(Ok((outcome, Some(record.into_event(revision)))))
}

fn delete(
    shared: &Shared,
    tables: &mut Tables<'_>,
    counters: &mut Counters,
    key: &str,
    old: StoredValue,
) -> Result<Applied> {
    let revision = counters.revision + 1;
    tables
        .kv
        .remove(key.as_bytes())
        .map_err(|error| map_redb_error(&shared.path, key, error))?;
    let record = HistoryRecord {
        key: key.to_owned(),
        put: None,
        prev: Some(old.clone()),
    };
    append_history(shared, tables, revision, &record)?;
    counters.revision = revision;
    let outcome = WriteOutcome::Deleted(old.into_key_value(key.to_owned()), revision);
    Ok(Ok((outcome, Some(record.into_event(revision)))))
}

fn append_history(
    shared: &Shared,
    tables: &mut Tables<'_>,
    revision: Revision,
    record: &HistoryRecord,
) -> Result<()> {
    tables
        .history
        .insert(
            revision_key(revision),
            codec::encode_history(record).as_slice(),
        )
        .map_err(|error| map_redb_error(&shared.path, "history", error))?;
    Ok(())
}

/// Drops the history before `revision`. Like etcd, the event at `revision`
/// itself stays, so a watch from `revision - 1` still works; unlike etcd, a
/// compaction at or below the current point is a no-op, not an error.
fn compact(
    shared: &Shared,
    tables: &mut Tables<'_>,
    counters: &mut Counters,
    revision: Revision,
) -> Result<Applied> {
    if revision > counters.revision {
        return Ok(Err(Error::FutureRevision {
            requested: revision,
            current: counters.revision,
        }));
    }
    if revision <= counters.compacted {
        return Ok(Ok((WriteOutcome::Compacted, None)));
    }
    tables
        .history
        .retain_in(..revision_key(revision), |_, _| false)
        .map_err(|error| map_redb_error(&shared.path, "history", error))?;
    write_meta_revision(&mut tables.meta, META_COMPACTED, revision)
        .map_err(|error| map_redb_error(&shared.path, META_COMPACTED, error))?;
    counters.compacted = revision;
    Ok(Ok((WriteOutcome::Compacted, None)))
}

/// The same failure for every request of a failed batch (errors carry a
/// boxed source and cannot be cloned).
fn duplicate(error: &Error) -> Error {
    match error {
        Error::Corrupt { key, message } => Error::Corrupt {
            key: key.clone(),
            message: message.clone(),
        },
        Error::Unavailable {
            backend, message, ..
        } => Error::Unavailable {
            backend: backend.clone(),
            message: message.clone(),
            source: None,
        },
        other => Error::Unavailable {
            backend: "embedded".into(),
            message: other.to_string(),
            source: None,
        },
    }
}
