//! The real server binary over HTTPS: health endpoints, errors as
//! `metav1.Status`, generated certificates kept across restarts, and a clean
//! exit on SIGTERM.
#![allow(clippy::unwrap_used)]

use http::StatusCode;
use nmstate_e2e::apiserver::ApiserverProcess;

#[tokio::test]
async fn embedded_server_is_ready_and_stops_on_sigterm() {
    let _turn = nmstate_e2e::suite::turn(module_path!());
    let mut server = ApiserverProcess::start(&[]).await.unwrap();
    let client = server.client().unwrap();

    for path in ["/readyz", "/livez", "/healthz"] {
        let response = client.get(path).await.unwrap();
        assert_eq!(response.status, StatusCode::OK, "{path}");
        assert_eq!(response.body, "ok", "{path}");
        assert_eq!(
            response.content_type.as_deref(),
            Some("text/plain; charset=utf-8")
        );
    }

    let verbose = client.get("/readyz?verbose").await.unwrap();
    assert_eq!(
        verbose.body,
        "[+]ping ok\n[+]storage ok\n[+]watch-cache ok\n[+]shutdown ok\nreadyz check passed\n"
    );
    let one = client.get("/readyz/storage").await.unwrap();
    assert_eq!((one.status, one.body.as_str()), (StatusCode::OK, "ok"));

    let missing = client.get("/apis/nmstate.io/v1/nosuchthing").await.unwrap();
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.content_type.as_deref(), Some("application/json"));
    let status: serde_json::Value = serde_json::from_str(&missing.body).unwrap();
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["reason"], "NotFound");
    assert_eq!(status["code"], 404);

    let post = client
        .request("POST", "/readyz", Some(b"{}".to_vec()))
        .await
        .unwrap();
    assert_eq!(post.status, StatusCode::METHOD_NOT_ALLOWED);
    let status: serde_json::Value = serde_json::from_str(&post.body).unwrap();
    assert_eq!(status["reason"], "MethodNotAllowed");
    // k8s.io/apiserver's answer to a method with no route, the same as
    // the API's own 405.
    assert_eq!(
        status["message"],
        "the server does not allow this method on the requested resource"
    );

    let exit = server.terminate().unwrap();
    assert!(
        exit.success(),
        "SIGTERM must end in a clean exit, got {exit}"
    );
}

#[tokio::test]
async fn generated_ca_survives_a_restart() {
    let _turn = nmstate_e2e::suite::turn(module_path!());
    let mut first = ApiserverProcess::start(&[]).await.unwrap();
    // The second life runs on the first one's directory, which `first`
    // keeps alive until the end of the test.
    let dir = first.data_dir().to_path_buf();
    let ca_before = std::fs::read(dir.join("pki/ca.crt")).unwrap();
    assert!(first.terminate().unwrap().success());

    let second = ApiserverProcess::start_in(&dir, &[]).await.unwrap();
    let ca_after = std::fs::read(dir.join("pki/ca.crt")).unwrap();
    assert_eq!(
        ca_before, ca_after,
        "the local CA must not change across restarts"
    );
    let response = second.client().unwrap().get("/readyz").await.unwrap();
    assert_eq!(response.body, "ok");
    drop(second);
    drop(first);
}

/// Polls `/readyz` until it answers `want` or the deadline passes; returns
/// the last answer.
async fn readyz_until(
    client: &nmstate_e2e::https::HttpsClient,
    want: StatusCode,
) -> nmstate_e2e::https::TestResponse {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let response = client.get("/readyz?verbose").await.unwrap();
        if response.status == want || std::time::Instant::now() > deadline {
            return response;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn readiness_follows_etcd_and_recovers_by_itself() {
    let _turn = nmstate_e2e::suite::turn(module_path!());
    let mut etcd = nmstate_e2e::etcd::EtcdProcess::start().await;
    let server = ApiserverProcess::start(&["--etcd-servers", &etcd.endpoint()])
        .await
        .unwrap();
    let client = server.client().unwrap();
    assert_eq!(client.get("/readyz").await.unwrap().body, "ok");

    etcd.kill();
    let down = readyz_until(&client, StatusCode::INTERNAL_SERVER_ERROR).await;
    assert_eq!(
        down.status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "{}",
        down.body
    );
    assert_eq!(
        down.body,
        "[+]ping ok\n[-]storage failed: reason withheld\n[+]watch-cache ok\n[+]shutdown ok\nreadyz check failed\n"
    );
    let live = client.get("/livez").await.unwrap();
    assert_eq!(
        (live.status, live.body.as_str()),
        (StatusCode::OK, "ok"),
        "liveness does not depend on etcd: restarting would not help"
    );

    etcd.restart().await.unwrap();
    let up = readyz_until(&client, StatusCode::OK).await;
    assert_eq!(up.status, StatusCode::OK, "{}", up.body);
}
