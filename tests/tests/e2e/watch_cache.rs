//! The watch cache against both backends: the embedded store and a real
//! etcd. Each check gets a fresh store and runs once per backend.
//!
//! No check asserts on wall-clock time: every wait has a generous bound
//! only so that a broken cache fails instead of hanging.
#![allow(clippy::unwrap_used)]

use std::{
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use futures::StreamExt;
use nmstate_apiserver::{
    cache::{CacheConfig, CacheEvent, CacheWatcher, Error, WatchCache, WatchEnd, WatchFilter},
    storage::{
        self, KeyValue, ListOptions, ListResult, PreviousValues, Revision, SharedStore, Store,
        Watch, object_key,
    },
};
use nmstate_openapi::{API_VERSION_V1BETA1, ResourceKind};
use serde_json::{Value, json};

const STATES: &str = "nodenetworkstates";
const POLICIES: &str = "nodenetworkconfigurationpolicies";
const ENACTMENTS: &str = "nodenetworkconfigurationenactments";
const NODE: &str = "nmstate.io/node";

/// Generous bound on any one wait.
const PATIENCE: Duration = Duration::from_secs(30);

/// Runs each check once against a fresh embedded store and once against a
/// fresh etcd.
macro_rules! on_both_backends {
    ($($check:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    let _turn = nmstate_e2e::suite::turn(module_path!());
                    let dir = tempfile::tempdir().unwrap();
                    let store = nmstate_apiserver::storage::embedded::EmbeddedStore::open(dir.path())
                        .await
                        .unwrap();
                    super::$check(std::sync::Arc::new(store)).await;
                }
            )*
        }
        mod etcd {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    let _turn = nmstate_e2e::suite::turn(module_path!());
                    let etcd = nmstate_e2e::etcd::EtcdProcess::start().await;
                    let store = nmstate_apiserver::storage::etcd::EtcdStore::connect(&etcd.config())
                        .await
                        .unwrap();
                    super::$check(std::sync::Arc::new(store)).await;
                }
            )*
        }
    };
}

on_both_backends!(
    the_first_list_serves_every_object_with_its_revision,
    watchers_get_exactly_the_events_after_their_revision_in_order,
    a_watch_from_before_the_window_is_too_old,
    leaving_or_entering_a_filter_is_deleted_or_added,
    the_node_index_reaches_only_that_nodes_watchers,
    a_watch_by_name_reaches_only_that_objects_watchers,
    reads_wait_for_writes_to_other_resources,
    bookmarks_tell_idle_watchers_how_far_the_cache_is,
    compaction_while_not_watching_lists_again_and_expires_watchers,
    undecodable_values_are_skipped,
    a_slow_watcher_is_terminated_without_holding_back_others,
    shutdown_ends_every_watcher,
    written_objects_are_taken_for_their_write_only,
);

// ---------------------------------------------------------------- helpers

/// The JSON of an object as the API layer stores it, with a stale
/// `resourceVersion` the cache must not serve.
fn object(name: &str, labels: &[(&str, &str)], data: &str) -> Vec<u8> {
    let labels: serde_json::Map<String, Value> = labels
        .iter()
        .map(|(key, value)| ((*key).to_owned(), Value::String((*value).to_owned())))
        .collect();
    json!({
        "apiVersion": "nmstate.io/v1",
        "kind": "NodeNetworkState",
        "metadata": {"name": name, "labels": labels, "resourceVersion": "999999"},
        "status": {"data": data},
    })
    .to_string()
    .into_bytes()
}

async fn create(
    store: &SharedStore,
    plural: &str,
    name: &str,
    labels: &[(&str, &str)],
) -> KeyValue {
    store
        .create(&object_key(plural, name), object(name, labels, "0"))
        .await
        .unwrap()
}

async fn update(
    store: &SharedStore,
    kv: &KeyValue,
    labels: &[(&str, &str)],
    data: &str,
) -> KeyValue {
    let name = kv.key.rsplit('/').next().unwrap();
    store
        .update(&kv.key, object(name, labels, data), kv.mod_revision)
        .await
        .unwrap()
}

async fn delete(store: &SharedStore, kv: &KeyValue) -> Revision {
    store.delete(&kv.key, None).await.unwrap().1
}

/// Starts a cache and waits until it has caught up with the store.
async fn started(store: &SharedStore, config: CacheConfig) -> WatchCache {
    let cache = WatchCache::start(store.clone(), config);
    fresh(store, &cache).await;
    cache
}

/// Waits until the cache has reached the store's current revision.
async fn fresh(store: &SharedStore, cache: &WatchCache) -> Revision {
    let revision = store.current_revision().await.unwrap();
    cache.wait_until_fresh(revision, PATIENCE).await.unwrap()
}

async fn next(watcher: &mut CacheWatcher) -> Result<CacheEvent, WatchEnd> {
    tokio::time::timeout(PATIENCE, watcher.next())
        .await
        .unwrap_or_else(|_| panic!("no watch event within {PATIENCE:?}"))
}

/// `ADDED a@5`, or `BOOKMARK@5`.
fn describe(event: &CacheEvent) -> String {
    match event.object() {
        Some(object) => {
            let served = &object.summary()["metadata"]["resourceVersion"];
            assert_eq!(
                served,
                &Value::String(object.revision.to_string()),
                "resourceVersion is the revision"
            );
            format!("{} {}@{}", event.type_name(), object.name, object.revision)
        }
        None => format!("{}@{}", event.type_name(), event.revision()),
    }
}

async fn next_described(watcher: &mut CacheWatcher) -> String {
    describe(&next(watcher).await.expect("an event, not the end"))
}

/// The next `count` events, described.
async fn take(watcher: &mut CacheWatcher, count: usize) -> Vec<String> {
    let mut events = Vec::new();
    for _ in 0..count {
        events.push(next_described(watcher).await);
    }
    events
}

fn label<'a>(key: &'a str, value: &'a str) -> [(&'a str, &'a str); 1] {
    [(key, value)]
}

/// A predicate that counts its calls.
fn counting(
    calls: &Arc<AtomicUsize>,
) -> impl Fn(&nmstate_apiserver::cache::CachedObject) -> bool + Send + Sync + 'static {
    let calls = calls.clone();
    move |_| {
        calls.fetch_add(1, Ordering::SeqCst);
        true
    }
}

// ----------------------------------------------------------------- checks

/// What the write path does around a write through the API: register the
/// object it is about to store, so that the cache need not parse the
/// value again, whether the store's event comes before or after the
/// store's answer. Here each registered object says what it is in
/// `status.data`, unlike the stored value, to show which one the cache
/// serves.
async fn written_objects_are_taken_for_their_write_only(store: SharedStore) {
    let cache = started(
        &store,
        CacheConfig::for_kind(ResourceKind::NodeNetworkState),
    )
    .await;
    let made = |name: &str, data: &str| {
        nmstate_apiserver::cache::CachedObject::decode(name, 0, &object(name, &[], data)).unwrap()
    };
    let data = |name: &str| {
        cache
            .get(name)
            .map(|object| object.summary()["status"]["data"].clone())
    };

    // Taken, the event before the answer (the cache has passed the write
    // when the writer learns its revision)...
    let expected = cache.expect(made("a", "made"), &object("a", &[], "0"));
    let a = create(&store, STATES, "a", &[]).await;
    fresh(&store, &cache).await;
    let written = expected.written(a.mod_revision).unwrap();
    assert_eq!(data("a"), Some(json!("made")));
    assert!(
        Arc::ptr_eq(&written, &cache.get("a").unwrap()),
        "one object"
    );
    assert_eq!(
        written.summary()["metadata"]["resourceVersion"],
        json!(a.mod_revision.to_string())
    );
    // ... or in whichever order they come.
    let expected = cache.expect(made("a", "made again"), &object("a", &[], "1"));
    let a = update(&store, &a, &[], "1").await;
    let written = expected.written(a.mod_revision).unwrap();
    fresh(&store, &cache).await;
    assert_eq!(data("a"), Some(json!("made again")));
    assert!(Arc::ptr_eq(&written, &cache.get("a").unwrap()));

    // Not taken: other bytes under the name (another writer's), another
    // name, and a write that failed (its registration dropped).
    let other = cache.expect(made("b", "made"), &object("b", &[], "not stored"));
    let elsewhere = cache.expect(made("x", "made"), &object("b", &[], "0"));
    let b = create(&store, STATES, "b", &[]).await;
    fresh(&store, &cache).await;
    assert_eq!(data("b"), Some(json!("0")));
    drop((other, elsewhere));
    let failed = cache.expect(made("a", "failed"), &object("a", &[], "2"));
    assert!(store.create(&a.key, object("a", &[], "2")).await.is_err());
    drop(failed);
    update(&store, &a, &[], "2").await;
    update(&store, &b, &[], "1").await;
    fresh(&store, &cache).await;
    assert_eq!(data("a"), Some(json!("2")));
    assert_eq!(data("b"), Some(json!("1")));
    assert!(cache.get("x").is_none());
}

async fn the_first_list_serves_every_object_with_its_revision(store: SharedStore) {
    let b = create(&store, STATES, "b", &[]).await;
    let a = create(&store, STATES, "a", &label("x", "1")).await;
    let a = update(&store, &a, &label("x", "2"), "1").await;
    let c = create(&store, STATES, "c", &[]).await;
    create(&store, POLICIES, "p", &[]).await;
    // Pages of one object each, so the list takes several pages.
    let mut config = CacheConfig::new(STATES);
    config.page_size = 1;
    let cache = started(&store, config).await;

    assert!(cache.is_ready());
    assert_eq!(cache.list_count(), 1);
    let (revision, objects) = cache.snapshot();
    assert!(revision >= store.current_revision().await.unwrap() - 1);
    let listed: Vec<_> = objects
        .iter()
        .map(|object| (object.name.as_str(), object.revision))
        .collect();
    assert_eq!(
        listed,
        [
            ("a", a.mod_revision),
            ("b", b.mod_revision),
            ("c", c.mod_revision)
        ],
        "sorted by name, each at its own revision, nothing from other resources"
    );
    let a_cached = cache.get("a").unwrap();
    assert_eq!(a_cached.label("x"), Some("2"));
    assert_eq!(
        a_cached.summary()["metadata"]["resourceVersion"],
        a.mod_revision.to_string()
    );
    let beta: Value =
        serde_json::from_slice(&a_cached.json(API_VERSION_V1BETA1).to_bytes()).unwrap();
    assert_eq!(beta["apiVersion"], "nmstate.io/v1beta1");
    assert_eq!(
        beta["metadata"]["resourceVersion"],
        a.mod_revision.to_string()
    );
    assert!(cache.get("p").is_none());
    cache.shutdown().await;
}

async fn watchers_get_exactly_the_events_after_their_revision_in_order(store: SharedStore) {
    let cache = started(&store, CacheConfig::new(STATES)).await;
    let start = cache.revision();
    let a = create(&store, STATES, "a", &[]).await;
    let b = create(&store, STATES, "b", &[]).await;
    let a2 = update(&store, &a, &[], "2").await;
    let b_deleted = delete(&store, &b).await;
    let c = create(&store, STATES, "c", &[]).await;
    fresh(&store, &cache).await;

    let mut from_start = cache.watch(start, WatchFilter::everything()).unwrap();
    assert_eq!(
        take(&mut from_start, 5).await,
        [
            format!("ADDED a@{}", a.mod_revision),
            format!("ADDED b@{}", b.mod_revision),
            format!("MODIFIED a@{}", a2.mod_revision),
            format!("DELETED b@{b_deleted}"),
            format!("ADDED c@{}", c.mod_revision),
        ]
    );
    let mut from_b = cache
        .watch(b.mod_revision, WatchFilter::everything())
        .unwrap();
    assert_eq!(
        take(&mut from_b, 3).await,
        [
            format!("MODIFIED a@{}", a2.mod_revision),
            format!("DELETED b@{b_deleted}"),
            format!("ADDED c@{}", c.mod_revision),
        ]
    );

    // Both follow live writes after the window's events.
    let c2 = update(&store, &c, &[], "2").await;
    let live = format!("MODIFIED c@{}", c2.mod_revision);
    assert_eq!(next_described(&mut from_start).await, live);
    assert_eq!(next_described(&mut from_b).await, live);
    assert_eq!(cache.watcher_count(), 2);
    drop(from_b);
    assert_eq!(cache.watcher_count(), 1);

    // A list exactly at a past revision, from the window.
    let at_b = cache.list_at(b.mod_revision).unwrap();
    let at_b: Vec<_> = at_b.iter().map(|o| (o.name.as_str(), o.revision)).collect();
    assert_eq!(at_b, [("a", a.mod_revision), ("b", b.mod_revision)]);

    // Objects and a watch taken together: nothing falls between them.
    let (revision, objects, mut watcher) =
        cache.snapshot_and_watch(WatchFilter::everything()).unwrap();
    assert_eq!(revision, c2.mod_revision);
    assert_eq!(objects.len(), 2);
    delete(&store, &a2).await;
    assert!(next_described(&mut watcher).await.starts_with("DELETED a@"));

    // A revision the cache has not reached yet.
    let current = fresh(&store, &cache).await;
    let ahead = current + 10;
    assert_eq!(
        cache.watch(ahead, WatchFilter::everything()).unwrap_err(),
        Error::TooLarge {
            requested: ahead,
            current
        }
    );
    cache.shutdown().await;
}

async fn a_watch_from_before_the_window_is_too_old(store: SharedStore) {
    let mut config = CacheConfig::new(STATES);
    config.window = 3;
    let cache = started(&store, config).await;
    let start = cache.revision();
    let mut kv = create(&store, STATES, "a", &[]).await;
    let mut revisions = vec![kv.mod_revision];
    for data in ["1", "2", "3", "4"] {
        kv = update(&store, &kv, &[], data).await;
        revisions.push(kv.mod_revision);
    }
    fresh(&store, &cache).await;
    assert_eq!(cache.window_len(), 3);
    let error = cache.watch(start, WatchFilter::everything()).unwrap_err();
    assert_eq!(
        error,
        Error::TooOld {
            requested: start,
            oldest: revisions[1]
        }
    );
    assert_eq!(
        error.to_string(),
        format!("too old resource version: {start} ({})", revisions[1])
    );
    assert!(cache.list_at(start).is_err());
    let mut watcher = cache
        .watch(revisions[1], WatchFilter::everything())
        .unwrap();
    assert_eq!(
        take(&mut watcher, 3).await,
        revisions[2..]
            .iter()
            .map(|revision| format!("MODIFIED a@{revision}"))
            .collect::<Vec<_>>()
    );
    cache.shutdown().await;
}

async fn leaving_or_entering_a_filter_is_deleted_or_added(store: SharedStore) {
    let cache = started(&store, CacheConfig::new(STATES)).await;
    let filter = WatchFilter::predicate(|object| object.label("role") == Some("x"));
    let mut watcher = cache.watch(cache.revision(), filter).unwrap();

    let x = label("role", "x");
    let y = label("role", "y");
    let a1 = create(&store, STATES, "a", &x).await;
    create(&store, STATES, "other", &y).await;
    let a2 = update(&store, &a1, &x, "2").await;
    let a3 = update(&store, &a2, &y, "3").await;
    let a4 = update(&store, &a3, &x, "4").await;
    let a_deleted = delete(&store, &a4).await;
    assert_eq!(
        take(&mut watcher, 2).await,
        [
            format!("ADDED a@{}", a1.mod_revision),
            format!("MODIFIED a@{}", a2.mod_revision),
        ]
    );
    // Leaving the filter: the last matching state, at the change's revision.
    let left = next(&mut watcher).await.unwrap();
    assert_eq!(describe(&left), format!("DELETED a@{}", a3.mod_revision));
    let left = left.object().unwrap();
    assert_eq!(left.label("role"), Some("x"));
    assert_eq!(left.summary()["status"]["data"], "2");
    assert_eq!(
        take(&mut watcher, 2).await,
        [
            format!("ADDED a@{}", a4.mod_revision),
            format!("DELETED a@{a_deleted}"),
        ]
    );
    cache.shutdown().await;
}

async fn the_node_index_reaches_only_that_nodes_watchers(store: SharedStore) {
    let mut config = CacheConfig::for_kind(ResourceKind::NodeNetworkConfigurationEnactment);
    assert_eq!(config.index_label.as_deref(), Some(NODE));
    // A watcher that never reads is terminated after two events: the idle
    // watcher of node n2 proves that n1's events never reached it.
    config.watcher_buffer = 2;
    let cache = started(&store, config).await;
    let start = cache.revision();
    let n1_calls = Arc::new(AtomicUsize::new(0));
    let n2_calls = Arc::new(AtomicUsize::new(0));
    let all_calls = Arc::new(AtomicUsize::new(0));
    let mut n1 = cache
        .watch(start, WatchFilter::indexed(NODE, "n1", counting(&n1_calls)))
        .unwrap();
    let mut n2 = cache
        .watch(start, WatchFilter::indexed(NODE, "n2", counting(&n2_calls)))
        .unwrap();
    let mut all = cache
        .watch(start, WatchFilter::predicate(counting(&all_calls)))
        .unwrap();

    let on_n1 = label(NODE, "n1");
    let mut e1 = create(&store, ENACTMENTS, "n1.p", &on_n1).await;
    let mut seen = vec![describe(&next(&mut n1).await.unwrap())];
    next(&mut all).await.unwrap();
    for data in ["1", "2", "3", "4"] {
        e1 = update(&store, &e1, &on_n1, data).await;
        seen.push(describe(&next(&mut n1).await.unwrap()));
        next(&mut all).await.unwrap();
    }
    assert_eq!(seen.len(), 5);
    assert_eq!(cache.terminated_slow_count(), 0, "n2 was sent nothing");
    assert_eq!(cache.watcher_count(), 3);
    assert_eq!(n2_calls.load(Ordering::SeqCst), 0);
    assert!(n1_calls.load(Ordering::SeqCst) >= 5);
    assert!(all_calls.load(Ordering::SeqCst) >= 5);
    let (_, on_node) = cache.snapshot_matching(&WatchFilter::indexed(NODE, "n1", |_| true));
    assert_eq!(on_node.len(), 1);

    // Moving the object to n2 is a deletion for n1 and an addition for n2
    // (the event reaches both through the old and the new label value).
    let on_n2 = label(NODE, "n2");
    let moved = update(&store, &e1, &on_n2, "5").await;
    let e2 = create(&store, ENACTMENTS, "n2.p", &on_n2).await;
    assert_eq!(
        next_described(&mut n1).await,
        format!("DELETED n1.p@{}", moved.mod_revision)
    );
    assert_eq!(
        take(&mut n2, 2).await,
        [
            format!("ADDED n1.p@{}", moved.mod_revision),
            format!("ADDED n2.p@{}", e2.mod_revision),
        ]
    );
    // n2's predicate ran for n2's two events only (the old state of the
    // moved object fails the index condition before the predicate).
    assert_eq!(n2_calls.load(Ordering::SeqCst), 2);
    let (_, on_node) = cache.snapshot_matching(&WatchFilter::indexed(NODE, "n2", |_| true));
    assert_eq!(on_node.len(), 2);
    let (_, on_node) = cache.snapshot_matching(&WatchFilter::indexed(NODE, "n1", |_| true));
    assert!(on_node.is_empty());

    // A watch from the start on n2, served from the window, sees only n2's
    // events too.
    let mut late = cache
        .watch(start, WatchFilter::indexed(NODE, "n2", |_| true))
        .unwrap();
    assert_eq!(
        take(&mut late, 2).await,
        [
            format!("ADDED n1.p@{}", moved.mod_revision),
            format!("ADDED n2.p@{}", e2.mod_revision),
        ]
    );
    drop(all);
    cache.shutdown().await;
}

/// What an agent's watch of its own node state is: a watch by name. The
/// events of other objects never reach it, as 5 000 agents' watches must
/// not each be handed every node's heartbeat.
async fn a_watch_by_name_reaches_only_that_objects_watchers(store: SharedStore) {
    let mut config = CacheConfig::new(STATES);
    // A watcher that never reads is terminated after two events: the idle
    // watcher of `b` proves that `a`'s events never reached it.
    config.watcher_buffer = 2;
    let cache = started(&store, config).await;
    let start = cache.revision();
    let named = |name: &str, calls: &Arc<AtomicUsize>| {
        WatchFilter::predicate(counting(calls)).named(Some(name.to_owned()))
    };
    let (a_calls, b_calls) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut a = cache.watch(start, named("a", &a_calls)).unwrap();
    let _b = cache.watch(start, named("b", &b_calls)).unwrap();

    let mut written = create(&store, STATES, "a", &[]).await;
    let mut seen = vec![next_described(&mut a).await];
    for data in ["1", "2", "3", "4"] {
        written = update(&store, &written, &[], data).await;
        seen.push(next_described(&mut a).await);
    }
    assert_eq!(seen.len(), 5);
    assert_eq!(seen[4], format!("MODIFIED a@{}", written.mod_revision));
    assert_eq!(cache.terminated_slow_count(), 0, "b was sent nothing");
    assert_eq!(b_calls.load(Ordering::SeqCst), 0);
    assert!(a_calls.load(Ordering::SeqCst) >= 5);
    let (_, only_a) = cache.snapshot_matching(&WatchFilter::everything().named(Some("a".into())));
    assert_eq!(only_a.len(), 1);

    // A watch by name from the start, served from the window, sees only
    // that object's events too.
    let b = create(&store, STATES, "b", &[]).await;
    let mut late = cache.watch(start, named("b", &Arc::default())).unwrap();
    assert_eq!(
        next_described(&mut late).await,
        format!("ADDED b@{}", b.mod_revision)
    );
    cache.shutdown().await;
}

async fn reads_wait_for_writes_to_other_resources(store: SharedStore) {
    let cache = Arc::new(started(&store, CacheConfig::new(STATES)).await);
    create(&store, STATES, "a", &[]).await;
    for name in ["p1", "p2", "p3"] {
        create(&store, POLICIES, name, &[]).await;
    }
    // No event of this resource carries this revision: only a progress
    // notification from the store watch can bring the cache there. Many
    // readers wait at once and share the requests.
    let target = store.current_revision().await.unwrap();
    let waiters: Vec<_> = (0..50)
        .map(|_| {
            let cache = cache.clone();
            tokio::spawn(async move { cache.wait_until_fresh(target, PATIENCE).await })
        })
        .collect();
    for waiter in waiters {
        assert!(waiter.await.unwrap().unwrap() >= target);
    }
    let (revision, objects) = cache.snapshot();
    assert!(revision >= target);
    assert_eq!(objects.len(), 1);

    // Again, after more writes elsewhere.
    create(&store, POLICIES, "p4", &[]).await;
    assert!(fresh(&store, &cache).await > target);

    // A revision the store has not reached is a timeout, with Kubernetes'
    // message.
    let ahead = store.current_revision().await.unwrap() + 100;
    let error = cache
        .wait_until_fresh(ahead, Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with(&format!("Too large resource version: {ahead}, current: ")),
        "{error}"
    );
}

async fn bookmarks_tell_idle_watchers_how_far_the_cache_is(store: SharedStore) {
    let cache = started(
        &store,
        CacheConfig::for_kind(ResourceKind::NodeNetworkConfigurationEnactment),
    )
    .await;
    let mut watcher = cache
        .watch(cache.revision(), WatchFilter::indexed(NODE, "n1", |_| true))
        .unwrap()
        .with_bookmarks(Duration::from_millis(20));
    let e = create(&store, ENACTMENTS, "n2.p", &label(NODE, "n2")).await;
    create(&store, POLICIES, "p", &[]).await;
    let target = fresh(&store, &cache).await;
    assert!(target > e.mod_revision);
    // Bookmarks never go back, and reach the cache's revision although no
    // event reached this watcher.
    let mut last = 0;
    loop {
        match next(&mut watcher).await.unwrap() {
            CacheEvent::Bookmark(revision) => {
                assert!(revision >= last);
                last = revision;
                if revision >= target {
                    break;
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    // An event still comes before any later bookmark.
    let mine = create(&store, ENACTMENTS, "n1.p", &label(NODE, "n1")).await;
    loop {
        let event = next(&mut watcher).await.unwrap();
        if let CacheEvent::Bookmark(revision) = event {
            assert!(
                revision < mine.mod_revision,
                "bookmark {revision} before the event"
            );
            continue;
        }
        assert_eq!(
            describe(&event),
            format!("ADDED n1.p@{}", mine.mod_revision)
        );
        break;
    }
    cache.shutdown().await;
}

async fn compaction_while_not_watching_lists_again_and_expires_watchers(store: SharedStore) {
    let interruptible = Arc::new(Interruptible::new(store.clone()));
    let through: SharedStore = interruptible.clone();
    let a = create(&store, STATES, "a", &[]).await;
    let b = create(&store, STATES, "b", &[]).await;
    let cache = started(&through, CacheConfig::new(STATES)).await;
    let before = cache.revision();
    let mut old = cache.watch(before, WatchFilter::everything()).unwrap();

    // The cache's watch breaks and cannot be opened again while the store
    // moves on and forgets its history.
    interruptible.hold_watches();
    interruptible.cut_watches();
    let a2 = update(&store, &a, &[], "2").await;
    delete(&store, &b).await;
    let c = create(&store, STATES, "c", &[]).await;
    store.compact(c.mod_revision).await.unwrap();
    interruptible.release_watches();

    // The old watcher cannot be continued: the client must list again.
    assert_eq!(next(&mut old).await.unwrap_err(), WatchEnd::TooOld);
    assert_eq!(next(&mut old).await.unwrap_err(), WatchEnd::TooOld);
    let revision = fresh(&store, &cache).await;
    assert_eq!(cache.list_count(), 2);
    let (_, objects) = cache.snapshot();
    let listed: Vec<_> = objects
        .iter()
        .map(|o| (o.name.as_str(), o.revision))
        .collect();
    assert_eq!(listed, [("a", a2.mod_revision), ("c", c.mod_revision)]);
    assert!(matches!(
        cache.watch(before, WatchFilter::everything()),
        Err(Error::TooOld { requested, .. }) if requested == before
    ));

    // The new list is followed as before.
    let mut new = cache.watch(revision, WatchFilter::everything()).unwrap();
    let d = create(&store, STATES, "d", &[]).await;
    assert_eq!(
        next_described(&mut new).await,
        format!("ADDED d@{}", d.mod_revision)
    );
    cache.shutdown().await;
}

async fn undecodable_values_are_skipped(store: SharedStore) {
    let key = |name| object_key(STATES, name);
    let a = create(&store, STATES, "a", &[]).await;
    store
        .create(&key("garbage"), b"\xff\xfe{".to_vec())
        .await
        .unwrap();
    store
        .create(&key("stranger"), object("someone-else", &[], "0"))
        .await
        .unwrap();
    let cache = started(&store, CacheConfig::new(STATES)).await;
    assert!(cache.is_ready());
    assert_eq!(cache.corrupt_count(), 2);
    let (_, objects) = cache.snapshot();
    assert_eq!(objects.len(), 1);
    assert_eq!(objects[0].name, "a");

    let mut watcher = cache
        .watch(cache.revision(), WatchFilter::everything())
        .unwrap();
    store.create(&key("bad"), b"[]".to_vec()).await.unwrap();
    // An object overwritten with garbage is gone from the cache.
    let broken = store
        .update(&a.key, b"nope".to_vec(), a.mod_revision)
        .await
        .unwrap();
    let b = create(&store, STATES, "b", &[]).await;
    assert_eq!(
        take(&mut watcher, 2).await,
        [
            format!("DELETED a@{}", broken.mod_revision),
            format!("ADDED b@{}", b.mod_revision),
        ]
    );
    assert_eq!(cache.corrupt_count(), 4);
    assert!(cache.get("a").is_none());
    assert!(cache.is_ready());
    cache.shutdown().await;
}

async fn a_slow_watcher_is_terminated_without_holding_back_others(store: SharedStore) {
    let mut config = CacheConfig::new(STATES);
    config.watcher_buffer = 4;
    let cache = started(&store, config).await;
    let mut slow = cache
        .watch(cache.revision(), WatchFilter::everything())
        .unwrap();
    let mut fast = cache
        .watch(cache.revision(), WatchFilter::everything())
        .unwrap();
    let mut kv = create(&store, STATES, "a", &[]).await;
    let mut expected = vec![format!("ADDED a@{}", kv.mod_revision)];
    assert_eq!(next_described(&mut fast).await, expected[0]);
    for data in 1..10 {
        kv = update(&store, &kv, &[], &data.to_string()).await;
        expected.push(format!("MODIFIED a@{}", kv.mod_revision));
        assert_eq!(next_described(&mut fast).await, expected[data]);
    }
    assert_eq!(cache.terminated_slow_count(), 1);
    assert_eq!(cache.watcher_count(), 1);
    // The slow watcher gets what was buffered, then the end.
    assert_eq!(take(&mut slow, 4).await, expected[..4]);
    assert_eq!(next(&mut slow).await.unwrap_err(), WatchEnd::TooSlow);
    cache.shutdown().await;
}

async fn shutdown_ends_every_watcher(store: SharedStore) {
    let cache = started(&store, CacheConfig::new(STATES)).await;
    let watcher = cache
        .watch(cache.revision(), WatchFilter::everything())
        .unwrap();
    let mut stream = Box::pin(watcher.into_stream());
    cache.shutdown().await;
    let item = tokio::time::timeout(PATIENCE, stream.next()).await.unwrap();
    assert!(matches!(item, Some(Err(WatchEnd::Shutdown))), "{item:?}");
    assert!(stream.next().await.is_none());

    // Dropping a cache ends its watchers too.
    let cache = started(&store, CacheConfig::new(STATES)).await;
    let mut watcher = cache
        .watch(cache.revision(), WatchFilter::everything())
        .unwrap();
    drop(cache);
    assert_eq!(next(&mut watcher).await.unwrap_err(), WatchEnd::Shutdown);
}

// ------------------------------------------------ an interruptible store

/// A real store whose watches the test can break (as a lost connection
/// would) and keep from reopening, to bring the cache into the one state
/// real backends cannot be made to reach on demand: not watching while the
/// history it needs is compacted. Everything else goes to the real store.
#[derive(Debug)]
struct Interruptible {
    inner: SharedStore,
    cuts: tokio::sync::watch::Sender<u64>,
    open: tokio::sync::watch::Sender<bool>,
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = storage::Result<T>> + Send + 'a>>;

impl Interruptible {
    fn new(inner: SharedStore) -> Self {
        Interruptible {
            inner,
            cuts: tokio::sync::watch::channel(0).0,
            open: tokio::sync::watch::channel(true).0,
        }
    }

    /// Ends every open watch with an `Unavailable` error.
    fn cut_watches(&self) {
        self.cuts.send_modify(|cuts| *cuts += 1);
    }

    /// New watches wait until [`release_watches`](Self::release_watches).
    fn hold_watches(&self) {
        self.open.send_replace(false);
    }

    fn release_watches(&self) {
        self.open.send_replace(true);
    }
}

// `Store` is declared with `async_trait`; these signatures are what it
// expands to, written out so that this test needs no macro crate.
impl Store for Interruptible {
    fn get<'s, 'k, 'f>(&'s self, key: &'k str) -> BoxFuture<'f, Option<KeyValue>>
    where
        's: 'f,
        'k: 'f,
        Self: 'f,
    {
        self.inner.get(key)
    }

    fn list<'s, 'f>(&'s self, options: ListOptions) -> BoxFuture<'f, ListResult>
    where
        's: 'f,
        Self: 'f,
    {
        self.inner.list(options)
    }

    fn create<'s, 'k, 'f>(&'s self, key: &'k str, value: Vec<u8>) -> BoxFuture<'f, KeyValue>
    where
        's: 'f,
        'k: 'f,
        Self: 'f,
    {
        self.inner.create(key, value)
    }

    fn update<'s, 'k, 'f>(
        &'s self,
        key: &'k str,
        value: Vec<u8>,
        expected_revision: Revision,
    ) -> BoxFuture<'f, KeyValue>
    where
        's: 'f,
        'k: 'f,
        Self: 'f,
    {
        self.inner.update(key, value, expected_revision)
    }

    fn delete<'s, 'k, 'f>(
        &'s self,
        key: &'k str,
        expected_revision: Option<Revision>,
    ) -> BoxFuture<'f, (KeyValue, Revision)>
    where
        's: 'f,
        'k: 'f,
        Self: 'f,
    {
        self.inner.delete(key, expected_revision)
    }

    fn current_revision<'s, 'f>(&'s self) -> BoxFuture<'f, Revision>
    where
        's: 'f,
        Self: 'f,
    {
        self.inner.current_revision()
    }

    fn watch<'s, 'p, 'f>(
        &'s self,
        prefix: &'p str,
        after: Revision,
        previous: PreviousValues,
    ) -> BoxFuture<'f, Watch>
    where
        's: 'f,
        'p: 'f,
        Self: 'f,
    {
        Box::pin(async move {
            let mut open = self.open.subscribe();
            let _ = open.wait_for(|open| *open).await;
            let mut cuts = self.cuts.subscribe();
            let watch = self.inner.watch(prefix, after, previous).await?;
            let cut = async move {
                let _ = cuts.changed().await;
            };
            let broken = futures::stream::once(async {
                Err(storage::Error::Unavailable {
                    backend: "test".into(),
                    message: "watch cut by the test".into(),
                    source: None,
                })
            });
            Ok(Watch {
                events: Box::pin(watch.events.take_until(cut).chain(broken)),
                progress: watch.progress,
            })
        })
    }

    fn compact<'s, 'f>(&'s self, revision: Revision) -> BoxFuture<'f, ()>
    where
        's: 'f,
        Self: 'f,
    {
        self.inner.compact(revision)
    }

    fn compacted_revision<'s, 'f>(&'s self) -> BoxFuture<'f, Revision>
    where
        's: 'f,
        Self: 'f,
    {
        self.inner.compacted_revision()
    }
}
