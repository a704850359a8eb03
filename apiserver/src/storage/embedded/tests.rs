//! What only the embedded store can get wrong: bytes in the file that it
//! did not write. The behaviour both backends share is checked by the
//! conformance suite in `nmstate-e2e`.
#![allow(clippy::unwrap_used)]

use futures::StreamExt;
use redb::Database;

use super::*;

const KEY_A: &str = "/registry/nmstate.io/nodenetworkstates/a";
const KEY_B: &str = "/registry/nmstate.io/nodenetworkstates/b";
const PREFIX: &str = "/registry/nmstate.io/nodenetworkstates/";

/// Opens the closed store's file directly and lets `edit` write into it.
fn tamper(dir: &Path, edit: impl FnOnce(&redb::WriteTransaction)) {
    let db = Database::create(dir.join(FILE_NAME)).unwrap();
    let txn = db.begin_write().unwrap();
    edit(&txn);
    txn.commit().unwrap();
}

fn assert_corrupt(result: Result<impl fmt::Debug>, key: &str) {
    match result {
        Err(Error::Corrupt { key: found, .. }) => assert!(found.contains(key), "{found}"),
        other => panic!("expected Corrupt naming {key}, got {other:?}"),
    }
}

#[tokio::test]
async fn a_garbage_value_is_corrupt_for_that_key_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).await.unwrap();
    store.create(KEY_A, b"{}".to_vec()).await.unwrap();
    store.create(KEY_B, b"{}".to_vec()).await.unwrap();
    drop(store);
    tamper(dir.path(), |txn| {
        let mut kv = txn.open_table(KV).unwrap();
        kv.insert(KEY_A.as_bytes(), b"garbage".as_slice()).unwrap();
    });

    let store = EmbeddedStore::open(dir.path()).await.unwrap();
    assert_corrupt(store.get(KEY_A).await, KEY_A);
    assert_eq!(store.get(KEY_B).await.unwrap().unwrap().value, b"{}");
    let list = ListOptions {
        prefix: PREFIX.into(),
        ..ListOptions::default()
    };
    assert_corrupt(store.list(list).await, KEY_A);
    assert_corrupt(store.update(KEY_A, b"{}".to_vec(), 1).await, KEY_A);
    assert_corrupt(store.delete(KEY_A, None).await, KEY_A);
    // The writer keeps going: other keys are still writable.
    store.update(KEY_B, b"[]".to_vec(), 2).await.unwrap();
    let message = store.get(KEY_A).await.unwrap_err().to_string();
    assert!(
        message.starts_with(&format!("corrupt data in storage at {KEY_A}: ")),
        "{message}"
    );
}

#[tokio::test]
async fn a_garbage_history_record_is_corrupt_for_watches_and_past_lists() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).await.unwrap();
    store.create(KEY_A, b"1".to_vec()).await.unwrap();
    store.update(KEY_A, b"2".to_vec(), 1).await.unwrap();
    drop(store);
    tamper(dir.path(), |txn| {
        let mut history = txn.open_table(HISTORY).unwrap();
        history.insert(2, b"\x01\x07".as_slice()).unwrap();
    });

    let store = EmbeddedStore::open(dir.path()).await.unwrap();
    let mut watch = store
        .watch(PREFIX, 0, PreviousValues::Include)
        .await
        .unwrap();
    let first = watch.events.next().await.unwrap().unwrap();
    assert_eq!(first.revision(), 1);
    assert_corrupt(watch.events.next().await.unwrap(), "history/2");
    assert!(
        watch.events.next().await.is_none(),
        "the stream ends after an error"
    );
    let past = ListOptions {
        prefix: PREFIX.into(),
        revision: Some(1),
        ..ListOptions::default()
    };
    assert_corrupt(store.list(past).await, "history/2");
}

#[tokio::test]
async fn a_file_that_is_not_redb_is_corrupt_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(FILE_NAME), vec![0x5a; 8192]).unwrap();
    let error = EmbeddedStore::open(dir.path()).await.unwrap_err();
    assert!(
        matches!(error, Error::Corrupt { .. }),
        "expected Corrupt, got {error:?}"
    );
}

#[tokio::test]
async fn an_unknown_format_or_bad_meta_record_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(EmbeddedStore::open(dir.path()).await.unwrap());
    tamper(dir.path(), |txn| {
        let mut meta = txn.open_table(META).unwrap();
        meta.insert(META_FORMAT, [9u8].as_slice()).unwrap();
    });
    assert_corrupt(EmbeddedStore::open(dir.path()).await, "meta/format");

    tamper(dir.path(), |txn| {
        let mut meta = txn.open_table(META).unwrap();
        meta.insert(META_FORMAT, [codec::FORMAT].as_slice())
            .unwrap();
        meta.insert(META_REVISION, [1u8, 2, 3].as_slice()).unwrap();
    });
    assert_corrupt(EmbeddedStore::open(dir.path()).await, "meta/revision");
}

#[tokio::test]
async fn a_second_open_of_the_same_file_is_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let _store = EmbeddedStore::open(dir.path()).await.unwrap();
    let error = EmbeddedStore::open(dir.path()).await.unwrap_err();
    assert!(error.is_retryable(), "{error:?}");
    assert!(error.to_string().contains("already open"), "{error}");
}
