//! The storage conformance suite against a real etcd, and what only a
//! networked store must do: fail fast and clearly when etcd is not there,
//! recover by itself when it comes back, and speak TLS with client
//! certificates.
#![allow(clippy::unwrap_used)]

use std::{net::TcpListener, sync::Arc, time::Duration};

use nmstate_apiserver::storage::{
    Error, ListOptions, PreviousValues, SharedStore, Store,
    etcd::{EtcdConfig, EtcdStore},
    object_key, resource_prefix,
};
use nmstate_e2e::{etcd::EtcdProcess, storage_conformance::next_item};

async fn fresh_etcd() -> (SharedStore, EtcdProcess) {
    let etcd = EtcdProcess::start().await;
    let store = EtcdStore::connect(&etcd.config()).await.unwrap();
    (Arc::new(store), etcd)
}

nmstate_e2e::storage_conformance_tests!(fresh_etcd);

const PLURAL: &str = "nodenetworkstates";

/// Generous bound, only so that a broken client cannot hang the run.
const PATIENCE: Duration = Duration::from_secs(60);

fn assert_unavailable<T: std::fmt::Debug>(result: Result<T, Error>, endpoint: &str) {
    match result {
        Err(error @ Error::Unavailable { .. }) => {
            assert!(error.is_retryable());
            assert!(error.to_string().contains(endpoint), "{error}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

#[tokio::test]
async fn connecting_to_a_closed_port_is_unavailable_naming_the_endpoint() {
    let _turn = nmstate_e2e::suite::turn(module_path!());
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let config = EtcdConfig {
        endpoints: vec![endpoint.clone()],
        ..EtcdConfig::default()
    };
    let result = tokio::time::timeout(PATIENCE, EtcdStore::connect(&config))
        .await
        .expect("connect gives up by itself");
    assert_unavailable(result, &endpoint);
}

/// With several endpoints, a dead one costs nothing: requests that cannot
/// reach it go to the next (etcd-client's own balancer kept picking it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_endpoint_among_live_ones_fails_no_request() {
    let _turn = nmstate_e2e::suite::turn(module_path!());
    let etcd = EtcdProcess::start().await;
    let dead = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = EtcdConfig {
        endpoints: vec![format!("http://127.0.0.1:{dead}"), etcd.endpoint()],
        ..EtcdConfig::default()
    };
    let store = EtcdStore::connect(&config).await.unwrap();
    let mut kv = store
        .create(&object_key(PLURAL, "a"), b"0".to_vec())
        .await
        .unwrap();
    for i in 1..40 {
        assert_eq!(store.get(&kv.key).await.unwrap(), Some(kv.clone()));
        kv = store
            .update(&kv.key, i.to_string().into_bytes(), kv.mod_revision)
            .await
            .unwrap();
    }
    let mut watch = store
        .watch(
            &resource_prefix(PLURAL),
            kv.mod_revision,
            PreviousValues::Include,
        )
        .await
        .unwrap();
    let (events, revision) =
        nmstate_e2e::storage_conformance::events_until_progress(&mut watch).await;
    assert_eq!((events, revision), (vec![], kv.mod_revision));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_fail_while_etcd_is_down_and_work_again_after_it_restarts() {
    let _turn = nmstate_e2e::suite::turn(module_path!());
    let mut etcd = EtcdProcess::start().await;
    let endpoint = etcd.endpoint();
    let store = EtcdStore::connect(&etcd.config()).await.unwrap();
    let a = store
        .create(&object_key(PLURAL, "a"), b"1".to_vec())
        .await
        .unwrap();
    let mut watch = store
        .watch(
            &resource_prefix(PLURAL),
            a.mod_revision,
            PreviousValues::Include,
        )
        .await
        .unwrap();

    etcd.kill();
    assert_unavailable(store.get(&a.key).await, &endpoint);
    assert_unavailable(
        store.create(&object_key(PLURAL, "b"), b"1".to_vec()).await,
        &endpoint,
    );
    assert_unavailable(
        store.update(&a.key, b"2".to_vec(), a.mod_revision).await,
        &endpoint,
    );
    assert_unavailable(store.current_revision().await, &endpoint);
    let list = ListOptions {
        prefix: resource_prefix(PLURAL),
        ..ListOptions::default()
    };
    assert_unavailable(store.list(list.clone()).await, &endpoint);
    match next_item(&mut watch).await {
        Some(Err(error)) => assert!(error.is_retryable(), "{error:?}"),
        other => panic!("expected the watch to end with Unavailable, got {other:?}"),
    }

    etcd.restart().await.unwrap();
    // The same store object: the client reconnects by itself.
    let found = tokio::time::timeout(PATIENCE, async {
        loop {
            match store.get(&a.key).await {
                Ok(found) => return found,
                Err(error) if error.is_retryable() => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(error) => panic!("{error:?}"),
            }
        }
    })
    .await
    .expect("etcd answers again after its restart");
    assert_eq!(found, Some(a.clone()));
    let a2 = store
        .update(&a.key, b"2".to_vec(), a.mod_revision)
        .await
        .unwrap();
    assert_eq!(
        a2.mod_revision,
        a.mod_revision + 1,
        "no write happened while etcd was down"
    );
    assert_eq!(store.list(list).await.unwrap().items, vec![a2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_client_certificate() {
    let _turn = nmstate_e2e::suite::turn(module_path!());
    let etcd = EtcdProcess::start_tls().await;
    let store = EtcdStore::connect(&etcd.config()).await.unwrap();
    let a = store
        .create(&object_key(PLURAL, "a"), b"1".to_vec())
        .await
        .unwrap();
    assert_eq!(store.get(&a.key).await.unwrap(), Some(a));

    // etcd requires a client certificate: without one, no connection.
    let anonymous = EtcdConfig {
        cert_file: None,
        key_file: None,
        ..etcd.config()
    };
    let result = tokio::time::timeout(PATIENCE, EtcdStore::connect(&anonymous))
        .await
        .expect("connect gives up by itself");
    assert_unavailable(result, &etcd.endpoint());

    // A key file without its certificate is a configuration mistake.
    let half = EtcdConfig {
        cert_file: None,
        ..etcd.config()
    };
    match EtcdStore::connect(&half).await {
        Err(error @ Error::Rejected { .. }) => {
            assert!(
                error
                    .to_string()
                    .contains("--etcd-certfile and --etcd-keyfile"),
                "{error}"
            );
        }
        other => panic!("expected Rejected, got {other:?}"),
    }
}
