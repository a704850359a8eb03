//! The storage conformance suite against the embedded (redb) store, and
//! what only a file-backed store must do: keep data, revisions, history and
//! the compaction point across a reopen, and every acknowledged write
//! across `kill -9` of the process that made it.
#![allow(clippy::unwrap_used)]

use std::{
    collections::BTreeMap, os::unix::process::ExitStatusExt, process::Stdio, sync::Arc,
    time::Duration,
};

use nmstate_apiserver::storage::{
    Error, ListOptions, PreviousValues, SharedStore, Store, WatchEvent, embedded::EmbeddedStore,
    object_key, resource_prefix,
};
use nmstate_e2e::storage_conformance::{events_until_progress, next_event};
use tokio::io::{AsyncBufReadExt, BufReader};

async fn fresh_store() -> (SharedStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).await.unwrap();
    (Arc::new(store), dir)
}

nmstate_e2e::storage_conformance_tests!(fresh_store);

const PLURAL: &str = "nodenetworkstates";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopening_keeps_data_revisions_history_and_the_compaction_point() {
    let _turn = nmstate_e2e::suite::turn(module_path!());
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).await.unwrap();
    let a1 = store
        .create(&object_key(PLURAL, "a"), b"1".to_vec())
        .await
        .unwrap();
    let a2 = store
        .update(&a1.key, b"2".to_vec(), a1.mod_revision)
        .await
        .unwrap();
    let b = store
        .create(&object_key(PLURAL, "b"), b"1".to_vec())
        .await
        .unwrap();
    let (_, b_deleted) = store.delete(&b.key, None).await.unwrap();
    store.compact(a2.mod_revision).await.unwrap();
    let before = store.current_revision().await.unwrap();
    drop(store);

    let store = EmbeddedStore::open(dir.path()).await.unwrap();
    assert_eq!(store.current_revision().await.unwrap(), before);
    assert_eq!(store.compacted_revision().await.unwrap(), a2.mod_revision);
    assert_eq!(store.get(&a1.key).await.unwrap(), Some(a2.clone()));
    assert_eq!(store.get(&b.key).await.unwrap(), None);

    // The history after the compaction point is still there to replay.
    let mut watch = store
        .watch(
            &resource_prefix(PLURAL),
            a1.mod_revision,
            PreviousValues::Include,
        )
        .await
        .unwrap();
    let expected = [
        WatchEvent::Put {
            kv: a2.clone(),
            prev: Some(a1.clone()),
        },
        WatchEvent::Put {
            kv: b.clone(),
            prev: None,
        },
        WatchEvent::Delete {
            key: b.key.clone(),
            revision: b_deleted,
            prev: Some(b.clone()),
        },
    ];
    for want in &expected {
        assert_eq!(&next_event(&mut watch).await, want);
    }
    let past = ListOptions {
        prefix: resource_prefix(PLURAL),
        revision: Some(b.mod_revision),
        ..ListOptions::default()
    };
    assert_eq!(
        store.list(past).await.unwrap().items,
        vec![a2.clone(), b.clone()]
    );
    let compacted = ListOptions {
        prefix: resource_prefix(PLURAL),
        revision: Some(a1.mod_revision),
        ..ListOptions::default()
    };
    assert!(matches!(
        store.list(compacted).await,
        Err(Error::Compacted { .. })
    ));

    // And it carries on counting from where it was.
    let c = store
        .create(&object_key(PLURAL, "c"), b"1".to_vec())
        .await
        .unwrap();
    assert_eq!(c.mod_revision, before + 1);
    assert_eq!(
        next_event(&mut watch).await,
        WatchEvent::Put { kv: c, prev: None }
    );
}

/// A child process writes as fast as it can and is SIGKILLed mid-stream:
/// every write it reported as acknowledged is in the file afterwards, and
/// the history is whole. (This proves commit-before-acknowledge; a power
/// loss also needs the disk to honour fsync, which no test here can show.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9() {
    let _turn = nmstate_e2e::suite::turn(module_path!());
    const ACKS_BEFORE_KILL: usize = 300;
    let dir = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_embedded_writer"))
        .arg(dir.path())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut acknowledged = BTreeMap::new();
    while acknowledged.len() < ACKS_BEFORE_KILL {
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .expect("the writer reports acknowledgements")
            .unwrap()
            .expect("the writer exited early");
        let (key, revision) = line.split_once(' ').unwrap();
        acknowledged.insert(key.to_owned(), revision.parse::<i64>().unwrap());
    }
    child.start_kill().unwrap();
    let status = child.wait().await.unwrap();
    assert_eq!(status.signal(), Some(9), "killed by SIGKILL, not exited");

    let store = EmbeddedStore::open(dir.path()).await.unwrap();
    for (key, revision) in &acknowledged {
        let kv = store.get(key).await.unwrap();
        let kv = kv.unwrap_or_else(|| panic!("acknowledged {key} lost"));
        assert_eq!(kv.mod_revision, *revision, "{key}");
    }
    let current = store.current_revision().await.unwrap();
    assert!(current >= *acknowledged.values().max().unwrap());

    // One create per revision, no gap, no duplicate: the history is whole.
    let mut watch = store
        .watch(&resource_prefix(PLURAL), 0, PreviousValues::Include)
        .await
        .unwrap();
    let (events, progress) = events_until_progress(&mut watch).await;
    let revisions: Vec<i64> = events.iter().map(WatchEvent::revision).collect();
    assert_eq!(revisions, (1..=current).collect::<Vec<_>>());
    assert_eq!(progress, current);
    let list = store
        .list(ListOptions {
            prefix: resource_prefix(PLURAL),
            ..ListOptions::default()
        })
        .await
        .unwrap();
    assert_eq!(list.items.len() as i64, current);

    let next = store
        .create(&object_key(PLURAL, "after"), b"1".to_vec())
        .await
        .unwrap();
    assert_eq!(next.mod_revision, current + 1);
}
