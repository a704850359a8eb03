//! The storage conformance suite: the behaviour every backend must share,
//! written once as async checks over a [`SharedStore`] and run against each
//! backend by [`storage_conformance_tests!`](crate::storage_conformance_tests).
//!
//! A check gets a fresh, empty store and panics on the first difference. It
//! must not assume absolute revisions (an empty etcd is at revision 1, an
//! empty embedded store at 0), only how they move, and must not assert
//! wall-clock times: the timeouts below only keep a broken backend from
//! hanging the test run.

use std::{collections::BTreeSet, time::Duration};

use futures::StreamExt;
use nmstate_apiserver::storage::{
    Error, KeyValue, ListOptions, PreviousValues, Revision, SharedStore, Watch, WatchEvent,
    object_key, resource_prefix,
};

/// The resource most checks use.
const PLURAL: &str = "nodenetworkstates";

/// A longer plural starting with [`PLURAL`], to prove prefixes end at `/`.
const LONGER_PLURAL: &str = "nodenetworkstatesextra";

/// Another resource, whose writes move the revision without events for
/// watchers of [`PLURAL`].
const OTHER_PLURAL: &str = "nodenetworkconfigurationpolicies";

/// Generous bound on waiting for one watch item.
const WAIT: Duration = Duration::from_secs(30);

/// Generates one `#[tokio::test]` per check, each taking its suite's turn
/// ([`crate::suite`]) and calling `$open().await` for a fresh store: `$open` returns `(SharedStore, guard)`, the guard
/// keeping whatever backs the store (a temporary directory, an etcd
/// process) alive until the check ends.
#[macro_export]
macro_rules! storage_conformance_tests {
    ($open:path) => {
        $crate::storage_conformance_tests!(@tests $open;
            revisions_increase_by_one_per_write,
            create_of_an_existing_key_is_already_exists,
            update_or_delete_of_a_missing_key_is_not_found,
            stale_revisions_conflict_with_the_actual_one,
            lists_at_a_past_revision_see_the_past,
            pagination_is_consistent_at_a_fixed_revision,
            prefixes_end_at_the_slash,
            watch_replays_exactly_the_events_after_a_revision,
            watch_follows_live_writes,
            watch_before_the_compaction_point_is_compacted,
            list_before_the_compaction_point_is_compacted,
            future_revisions_are_refused,
            progress_reports_the_current_revision,
            progress_waits_until_a_catching_up_watch_has_caught_up,
            concurrent_increments_lose_no_acknowledged_update,
        );
    };
    (@tests $open:path; $($check:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let _turn = $crate::suite::turn(module_path!());
                let (store, _guard) = $open().await;
                $crate::storage_conformance::$check(store).await;
            }
        )*
    };
}

fn key(name: &str) -> String {
    object_key(PLURAL, name)
}

fn prefix() -> String {
    resource_prefix(PLURAL)
}

fn value(text: &str) -> Vec<u8> {
    format!("{{\"v\":\"{text}\"}}").into_bytes()
}

fn list_options(revision: Option<Revision>, limit: Option<usize>) -> ListOptions {
    ListOptions {
        prefix: prefix(),
        revision,
        limit,
        start_after: None,
    }
}

/// The next watch item, or `None` when the stream ended; fails the check
/// rather than hanging.
pub async fn next_item(watch: &mut Watch) -> Option<Result<WatchEvent, Error>> {
    tokio::time::timeout(WAIT, watch.events.next())
        .await
        .unwrap_or_else(|_| panic!("no watch item within {WAIT:?}"))
}

/// The next watch event; fails the check on an error or the end.
pub async fn next_event(watch: &mut Watch) -> WatchEvent {
    match next_item(watch).await {
        Some(Ok(event)) => event,
        other => panic!("expected a watch event, got {other:?}"),
    }
}

/// Asks for progress and returns what the watch delivers up to and
/// including the progress notification.
pub async fn events_until_progress(watch: &mut Watch) -> (Vec<WatchEvent>, Revision) {
    watch.request_progress().await.expect("request progress");
    let mut events = Vec::new();
    loop {
        match next_event(watch).await {
            WatchEvent::Progress { revision } => return (events, revision),
            event => events.push(event),
        }
    }
}

async fn create(store: &SharedStore, key: &str, text: &str) -> KeyValue {
    store
        .create(key, value(text))
        .await
        .unwrap_or_else(|error| panic!("create {key}: {error}"))
}

async fn update(store: &SharedStore, kv: &KeyValue, text: &str) -> KeyValue {
    store
        .update(&kv.key, value(text), kv.mod_revision)
        .await
        .unwrap_or_else(|error| panic!("update {}: {error}", kv.key))
}

async fn delete(store: &SharedStore, kv: &KeyValue) -> Revision {
    let (_, revision) = store
        .delete(&kv.key, Some(kv.mod_revision))
        .await
        .unwrap_or_else(|error| panic!("delete {}: {error}", kv.key));
    revision
}

async fn current(store: &SharedStore) -> Revision {
    store.current_revision().await.expect("current revision")
}

/// Every successful write moves the revision by exactly one, failed ones
/// not at all, and a key's revision says when it last changed.
pub async fn revisions_increase_by_one_per_write(store: SharedStore) {
    let start = current(&store).await;
    let a = create(&store, &key("a"), "1").await;
    assert_eq!(a.mod_revision, start + 1);
    let a = update(&store, &a, "2").await;
    assert_eq!(a.mod_revision, start + 2);
    assert_eq!(
        store.get(&a.key).await.expect("get a"),
        Some(a.clone()),
        "a read returns what the update stored"
    );
    let b = create(&store, &key("b"), "1").await;
    assert_eq!(b.mod_revision, start + 3);
    let (deleted, revision) = store.delete(&a.key, None).await.expect("delete a");
    assert_eq!(revision, start + 4);
    assert_eq!(deleted, a, "delete returns the value it removed");

    assert!(store.create(&b.key, value("x")).await.is_err());
    assert!(
        store
            .update(&b.key, value("x"), a.mod_revision)
            .await
            .is_err()
    );
    assert!(store.delete(&a.key, None).await.is_err());
    assert_eq!(
        current(&store).await,
        start + 4,
        "failed writes move nothing"
    );

    assert_eq!(store.get(&a.key).await.expect("get a"), None);
    assert_eq!(store.get(&b.key).await.expect("get b"), Some(b.clone()));
    let a = create(&store, &a.key, "again").await;
    assert_eq!(a.mod_revision, start + 5, "a key can be created again");
}

pub async fn create_of_an_existing_key_is_already_exists(store: SharedStore) {
    let a = create(&store, &key("a"), "1").await;
    let error = store
        .create(&a.key, value("2"))
        .await
        .expect_err("second create");
    assert!(
        matches!(&error, Error::AlreadyExists { key } if key == &a.key),
        "{error:?}"
    );
    assert_eq!(error.to_string(), format!("key {} already exists", a.key));
    assert!(!error.is_retryable());
    assert_eq!(store.get(&a.key).await.expect("get"), Some(a));
}

pub async fn update_or_delete_of_a_missing_key_is_not_found(store: SharedStore) {
    let missing = key("missing");
    let not_found = |result: Result<_, Error>| match result {
        Err(Error::NotFound { key }) => assert_eq!(key, missing),
        other => panic!("expected NotFound, got {other:?}"),
    };
    not_found(store.update(&missing, value("1"), 1).await.map(|_| ()));
    not_found(store.delete(&missing, None).await.map(|_| ()));
    not_found(store.delete(&missing, Some(1)).await.map(|_| ()));

    // A deleted key is missing too, even with the revision it had.
    let gone = create(&store, &missing, "1").await;
    delete(&store, &gone).await;
    not_found(
        store
            .update(&missing, value("2"), gone.mod_revision)
            .await
            .map(|_| ()),
    );
    not_found(
        store
            .delete(&missing, Some(gone.mod_revision))
            .await
            .map(|_| ()),
    );
    let error = store
        .delete(&missing, None)
        .await
        .expect_err("delete of a missing key");
    assert_eq!(error.to_string(), format!("key {missing} not found"));
}

pub async fn stale_revisions_conflict_with_the_actual_one(store: SharedStore) {
    let old = create(&store, &key("a"), "1").await;
    let new = update(&store, &old, "2").await;
    let conflict = |result: Result<(), Error>| match result {
        Err(Error::Conflict {
            key,
            expected,
            actual,
        }) => {
            assert_eq!(key, old.key);
            assert_eq!((expected, actual), (old.mod_revision, new.mod_revision));
        }
        other => panic!("expected Conflict, got {other:?}"),
    };
    conflict(
        store
            .update(&old.key, value("3"), old.mod_revision)
            .await
            .map(|_| ()),
    );
    conflict(
        store
            .delete(&old.key, Some(old.mod_revision))
            .await
            .map(|_| ()),
    );
    let error = store
        .update(&old.key, value("3"), old.mod_revision)
        .await
        .expect_err("stale update");
    assert_eq!(
        error.to_string(),
        format!(
            "key {} was modified: expected revision {}, found {}",
            old.key, old.mod_revision, new.mod_revision
        )
    );
    assert_eq!(store.get(&old.key).await.expect("get"), Some(new.clone()));
    delete(&store, &new).await;
}

/// A list at a past revision sees the values of then, keys deleted since,
/// and not keys created since.
pub async fn lists_at_a_past_revision_see_the_past(store: SharedStore) {
    let a = create(&store, &key("a"), "a1").await;
    let b = create(&store, &key("b"), "b1").await;
    let then = b.mod_revision;
    let a2 = update(&store, &a, "a2").await;
    delete(&store, &b).await;
    let c = create(&store, &key("c"), "c1").await;
    create(&store, &object_key(OTHER_PLURAL, "x"), "x").await;

    let past = store
        .list(list_options(Some(then), None))
        .await
        .expect("list at the past revision");
    assert_eq!(past.revision, then);
    assert_eq!(past.remaining, 0);
    assert_eq!(past.items, vec![a.clone(), b.clone()]);

    let earlier = store
        .list(list_options(Some(a.mod_revision), None))
        .await
        .expect("list at a's creation");
    assert_eq!(earlier.items, vec![a.clone()]);

    let now = store
        .list(list_options(None, None))
        .await
        .expect("list now");
    assert_eq!(now.revision, current(&store).await);
    assert_eq!(now.items, vec![a2, c]);
}

/// Pages read at the revision of the first page see that revision, whatever
/// was written in between; `remaining` counts what is left.
pub async fn pagination_is_consistent_at_a_fixed_revision(store: SharedStore) {
    let mut created = Vec::new();
    for i in 0..7 {
        created.push(create(&store, &key(&format!("k{i:02}")), &format!("v{i}")).await);
    }
    let first = store
        .list(list_options(None, Some(3)))
        .await
        .expect("first page");
    assert_eq!(first.items, created[0..3]);
    assert_eq!(first.remaining, 4);

    // Writes after the first page: the later pages must not see them.
    create(&store, &key("k07"), "v7").await;
    delete(&store, &created[4]).await;
    update(&store, &created[5], "changed").await;
    create(&store, &key("k00a"), "between").await;

    let page = |start_after: &KeyValue| ListOptions {
        start_after: Some(start_after.key.clone()),
        ..list_options(Some(first.revision), Some(3))
    };
    let second = store.list(page(&created[2])).await.expect("second page");
    assert_eq!(second.revision, first.revision);
    assert_eq!(second.items, created[3..6]);
    assert_eq!(second.remaining, 1);
    let third = store.list(page(&created[5])).await.expect("third page");
    assert_eq!(third.items, created[6..7]);
    assert_eq!(third.remaining, 0);

    let whole = store
        .list(list_options(Some(first.revision), None))
        .await
        .expect("whole list");
    assert_eq!(whole.items, created);
    assert_eq!(whole.remaining, 0);

    let now = store.list(list_options(None, Some(2))).await.expect("now");
    let keys: Vec<&str> = now.items.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys, [key("k00"), key("k00a")]);
    assert_eq!(now.remaining, 6);
}

/// `nodenetworkstates/` never matches `nodenetworkstatesextra/`, in lists
/// and in watches.
pub async fn prefixes_end_at_the_slash(store: SharedStore) {
    let start = current(&store).await;
    let mut watch = store
        .watch(&prefix(), start, PreviousValues::Include)
        .await
        .expect("watch");
    let longer = create(&store, &object_key(LONGER_PLURAL, "a"), "longer").await;
    let ours = create(&store, &key("a"), "ours").await;

    let list = store.list(list_options(None, None)).await.expect("list");
    assert_eq!(list.items, vec![ours.clone()]);
    let longer_list = store
        .list(ListOptions {
            prefix: resource_prefix(LONGER_PLURAL),
            ..ListOptions::default()
        })
        .await
        .expect("list the longer plural");
    assert_eq!(longer_list.items, vec![longer]);

    match next_event(&mut watch).await {
        WatchEvent::Put { kv, prev: None } => assert_eq!(kv, ours),
        other => panic!("expected the put of {}, got {other:?}", ours.key),
    }
    let (events, _) = events_until_progress(&mut watch).await;
    assert_eq!(events, vec![]);
}

/// A watch from revision N delivers exactly the events after N, in order,
/// with the previous values of updates and deletes (or without, if asked).
pub async fn watch_replays_exactly_the_events_after_a_revision(store: SharedStore) {
    let a1 = create(&store, &key("a"), "a1").await;
    let b1 = create(&store, &key("b"), "b1").await;
    let a2 = update(&store, &a1, "a2").await;
    let b_deleted = delete(&store, &b1).await;
    create(&store, &object_key(OTHER_PLURAL, "x"), "x").await;
    let a3 = update(&store, &a2, "a3").await;

    let mut watch = store
        .watch(&prefix(), a1.mod_revision, PreviousValues::Include)
        .await
        .expect("watch");
    let expected = vec![
        WatchEvent::Put {
            kv: b1.clone(),
            prev: None,
        },
        WatchEvent::Put {
            kv: a2.clone(),
            prev: Some(a1.clone()),
        },
        WatchEvent::Delete {
            key: b1.key.clone(),
            revision: b_deleted,
            prev: Some(b1.clone()),
        },
        WatchEvent::Put {
            kv: a3.clone(),
            prev: Some(a2.clone()),
        },
    ];
    for want in &expected {
        assert_eq!(&next_event(&mut watch).await, want);
    }
    let (more, revision) = events_until_progress(&mut watch).await;
    assert_eq!(more, vec![], "nothing after the last write");
    assert_eq!(revision, a3.mod_revision);

    // From 0: everything, starting with the first write.
    let mut all = store
        .watch(&prefix(), 0, PreviousValues::Include)
        .await
        .expect("watch from 0");
    assert_eq!(
        next_event(&mut all).await,
        WatchEvent::Put {
            kv: a1.clone(),
            prev: None
        }
    );
    for want in &expected {
        assert_eq!(&next_event(&mut all).await, want);
    }

    // Without previous values (the watch cache's watch): the same events,
    // each with `prev: None`.
    let mut lean = store
        .watch(&prefix(), a1.mod_revision, PreviousValues::Omit)
        .await
        .expect("watch without previous values");
    for want in &expected {
        let want = PreviousValues::Omit.apply(want.clone());
        assert_eq!(next_event(&mut lean).await, want);
    }
}

/// A watch from the current revision sees the writes made after it started.
pub async fn watch_follows_live_writes(store: SharedStore) {
    let start = current(&store).await;
    let mut watch = store
        .watch(&prefix(), start, PreviousValues::Include)
        .await
        .expect("watch");
    let mut expected = Vec::new();
    let mut a = create(&store, &key("a"), "0").await;
    expected.push(WatchEvent::Put {
        kv: a.clone(),
        prev: None,
    });
    for i in 1..20 {
        let next = update(&store, &a, &i.to_string()).await;
        expected.push(WatchEvent::Put {
            kv: next.clone(),
            prev: Some(a.clone()),
        });
        a = next;
    }
    let revision = delete(&store, &a).await;
    expected.push(WatchEvent::Delete {
        key: a.key.clone(),
        revision,
        prev: Some(a.clone()),
    });
    for want in &expected {
        assert_eq!(&next_event(&mut watch).await, want);
    }
    let later = create(&store, &key("later"), "x").await;
    assert_eq!(
        next_event(&mut watch).await,
        WatchEvent::Put {
            kv: later,
            prev: None
        }
    );
}

/// Builds a history on key `a`: returns the revisions of five writes.
async fn five_writes(store: &SharedStore) -> Vec<KeyValue> {
    let mut kv = create(store, &key("a"), "0").await;
    let mut writes = vec![kv.clone()];
    for i in 1..5 {
        kv = update(store, &kv, &i.to_string()).await;
        writes.push(kv.clone());
    }
    writes
}

/// A watch whose next event was compacted away fails with `Compacted`
/// (from `watch` itself or as the stream's first item); one starting right
/// at the compaction point works, and sees the event at that point.
pub async fn watch_before_the_compaction_point_is_compacted(store: SharedStore) {
    let writes = five_writes(&store).await;
    let point = writes[2].mod_revision;
    store.compact(point).await.expect("compact");
    assert_eq!(store.compacted_revision().await.expect("compacted"), point);

    let too_old = writes[0].mod_revision;
    let error = match store
        .watch(&prefix(), too_old, PreviousValues::Include)
        .await
    {
        Err(error) => error,
        Ok(mut watch) => match next_item(&mut watch).await {
            Some(Err(error)) => error,
            other => panic!("expected Compacted, got {other:?}"),
        },
    };
    match error {
        Error::Compacted { compacted, .. } => assert_eq!(compacted, point),
        other => panic!("expected Compacted, got {other:?}"),
    }

    let mut watch = store
        .watch(&prefix(), point - 1, PreviousValues::Include)
        .await
        .expect("watch from the compaction point");
    for write in &writes[2..] {
        match next_event(&mut watch).await {
            WatchEvent::Put { kv, .. } => assert_eq!(&kv, write),
            other => panic!("expected the put at {}, got {other:?}", write.mod_revision),
        }
    }
}

/// A list below the compaction point fails with `Compacted` naming both
/// revisions; at the point and after, lists work. Compacting again lower is
/// a no-op.
pub async fn list_before_the_compaction_point_is_compacted(store: SharedStore) {
    let writes = five_writes(&store).await;
    let point = writes[2].mod_revision;
    store.compact(point).await.expect("compact");

    let requested = writes[1].mod_revision;
    match store.list(list_options(Some(requested), None)).await {
        Err(Error::Compacted {
            requested: asked,
            compacted,
        }) => assert_eq!((asked, compacted), (requested, point)),
        other => panic!("expected Compacted, got {other:?}"),
    }
    let at_point = store
        .list(list_options(Some(point), None))
        .await
        .expect("list at the compaction point");
    assert_eq!(at_point.items, vec![writes[2].clone()]);
    let now = store
        .list(list_options(None, None))
        .await
        .expect("list now");
    assert_eq!(now.items, vec![writes[4].clone()]);

    store
        .compact(requested)
        .await
        .expect("compacting lower is a no-op");
    assert_eq!(store.compacted_revision().await.expect("compacted"), point);
    store
        .compact(point)
        .await
        .expect("compacting again is a no-op");
}

pub async fn future_revisions_are_refused(store: SharedStore) {
    let a = create(&store, &key("a"), "1").await;
    let now = current(&store).await;
    assert_eq!(now, a.mod_revision);
    match store.list(list_options(Some(now + 10), None)).await {
        Err(Error::FutureRevision { requested, current }) => {
            assert_eq!((requested, current), (now + 10, now));
        }
        other => panic!("expected FutureRevision, got {other:?}"),
    }
    match store.compact(now + 10).await {
        Err(Error::FutureRevision { requested, current }) => {
            assert_eq!((requested, current), (now + 10, now));
        }
        other => panic!("expected FutureRevision, got {other:?}"),
    }
}

/// A progress request answers with the current revision, also when the
/// writes that moved it were elsewhere, and never before the watched events
/// up to it.
pub async fn progress_reports_the_current_revision(store: SharedStore) {
    let start = current(&store).await;
    let mut watch = store
        .watch(&prefix(), start, PreviousValues::Include)
        .await
        .expect("watch");
    let (events, revision) = events_until_progress(&mut watch).await;
    assert_eq!((events, revision), (vec![], start));

    create(&store, &object_key(OTHER_PLURAL, "x"), "1").await;
    let elsewhere = create(&store, &object_key(OTHER_PLURAL, "y"), "1").await;
    let (events, revision) = events_until_progress(&mut watch).await;
    assert_eq!((events, revision), (vec![], elsewhere.mod_revision));

    for round in 0..5 {
        let ours = create(&store, &key(&format!("a{round}")), "1").await;
        let (events, revision) = events_until_progress(&mut watch).await;
        assert_eq!(
            events,
            vec![WatchEvent::Put {
                kv: ours.clone(),
                prev: None
            }]
        );
        assert_eq!(revision, ours.mod_revision);
    }
}

/// A watch started far behind gets every event up to the current revision
/// before the progress notification it asked for right away.
pub async fn progress_waits_until_a_catching_up_watch_has_caught_up(store: SharedStore) {
    let start = current(&store).await;
    let mut expected = BTreeSet::new();
    for i in 0..200 {
        let kv = create(&store, &key(&format!("k{i:03}")), "1").await;
        expected.insert(kv.mod_revision);
    }
    let last = current(&store).await;
    let mut watch = store
        .watch(&prefix(), start, PreviousValues::Include)
        .await
        .expect("watch");
    let (events, revision) = events_until_progress(&mut watch).await;
    let seen: BTreeSet<Revision> = events.iter().map(WatchEvent::revision).collect();
    assert_eq!(events.len(), 200, "every event once");
    assert_eq!(seen, expected);
    assert_eq!(revision, last);
}

/// 100 writers each add one to a counter by read, compare-and-swap, retry:
/// the final count equals the increments acknowledged, and each one moved
/// the revision by one.
pub async fn concurrent_increments_lose_no_acknowledged_update(store: SharedStore) {
    const WRITERS: u64 = 100;
    let counter = create(&store, &key("counter"), "0").await;
    let mut tasks = Vec::new();
    for _ in 0..WRITERS {
        let store = store.clone();
        let key = counter.key.clone();
        tasks.push(tokio::spawn(async move { increment(&store, &key).await }));
    }
    let mut acknowledged = 0;
    for task in tasks {
        acknowledged += task.await.expect("writer task");
    }
    assert_eq!(acknowledged, WRITERS);
    let last = store
        .get(&counter.key)
        .await
        .expect("get")
        .expect("counter");
    assert_eq!(parse_counter(&last), acknowledged);
    assert_eq!(
        last.mod_revision,
        counter.mod_revision + WRITERS as Revision
    );
}

/// One increment, retried on conflicts; returns 1 once acknowledged.
async fn increment(store: &SharedStore, key: &str) -> u64 {
    loop {
        let kv = store.get(key).await.expect("get").expect("counter exists");
        let next = parse_counter(&kv) + 1;
        match store
            .update(key, value(&next.to_string()), kv.mod_revision)
            .await
        {
            Ok(_) => return 1,
            Err(Error::Conflict { .. }) => continue,
            Err(error) => panic!("increment: {error}"),
        }
    }
}

fn parse_counter(kv: &KeyValue) -> u64 {
    let json: serde_json::Value = serde_json::from_slice(&kv.value).expect("counter JSON");
    json["v"]
        .as_str()
        .and_then(|text| text.parse().ok())
        .expect("counter value")
}
