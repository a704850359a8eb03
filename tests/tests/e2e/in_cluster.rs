//! In-cluster credentials: started as in a pod (`KUBERNETES_SERVICE_HOST`,
//! `KUBERNETES_SERVICE_PORT`, a service-account directory with `token` and
//! `ca.crt`) and without kubeconfig flags, the server reads the
//! authentication ConfigMap, reviews tokens and asks about access with the
//! service account's bearer token, verifies kube-apiserver (a real one,
//! with deploy/'s ServiceAccount and RBAC) with `ca.crt`, and picks up a
//! rotated token. Kubeconfigs whose user is a bearer `token` or `tokenFile`
//! work the same way. Which credential each call carried is read from
//! kube-apiserver's audit log (the token's `jti`).
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use http::StatusCode;
use nmstate_e2e::{
    apiserver::{ApiserverProcess, StartOptions, workspace_binary},
    delegation::{
        ACCESS_REVIEWS, CONFIGMAP, DelegatedCluster, JANE_TOKEN, TOKEN_REVIEWS, credential_id,
    },
    https::HttpsClient,
    kubectl::Kubectl,
    pki::TestCa,
};
use serde_json::{Value, json};

const STATES: &str = "/apis/nmstate.io/v1/nodenetworkstates";
const POLICIES: &str = "/apis/nmstate.io/v1/nodenetworkconfigurationpolicies";

/// Writes `token` the way the kubelet does: a new file moved into place.
fn write_token(dir: &Path, token: &str) {
    let next = dir.join("..token.next");
    std::fs::write(&next, token).unwrap();
    std::fs::rename(&next, dir.join("token")).unwrap();
}

/// A service-account directory with `token` and `ca.crt`.
fn service_account(dir: &Path, token: &str, ca_pem: &str) -> PathBuf {
    let serviceaccount = dir.join("serviceaccount");
    std::fs::create_dir_all(&serviceaccount).unwrap();
    std::fs::write(serviceaccount.join("ca.crt"), ca_pem).unwrap();
    write_token(&serviceaccount, token);
    serviceaccount
}

/// The environment of a pod whose kube-apiserver is the cluster's.
fn pod_environment(cluster: &DelegatedCluster, serviceaccount: &Path) -> Vec<(String, String)> {
    let address = cluster.kube().address();
    vec![
        ("KUBERNETES_SERVICE_HOST".into(), address.ip().to_string()),
        ("KUBERNETES_SERVICE_PORT".into(), address.port().to_string()),
        (
            "NMSTATE_SERVICEACCOUNT_DIR".into(),
            serviceaccount.display().to_string(),
        ),
    ]
}

async fn get(client: &HttpsClient, path: &str, token: &str) -> (StatusCode, String) {
    let response = client
        .request_with(
            "GET",
            path,
            &[("authorization", &format!("Bearer {token}"))],
            None,
        )
        .await
        .unwrap();
    (response.status, response.body)
}

#[tokio::test]
async fn a_pod_uses_its_service_account_and_follows_its_rotation() {
    let _turn = nmstate_e2e::suite::turn(module_path!());
    let proxy_ca = TestCa::new("front-proxy-ca");
    let cluster = DelegatedCluster::start(Some(&proxy_ca), None)
        .await
        .unwrap();
    // The kubelet's token: bound to a Secret here, so that deleting the
    // Secret revokes it.
    let token_1 = cluster.revocable_server_token("token-1").await.unwrap();
    let node_a_token = cluster.node_token().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let serviceaccount = service_account(dir.path(), &token_1, cluster.kube().serving_ca_pem());
    let options = StartOptions {
        env: pod_environment(&cluster, &serviceaccount),
        ..StartOptions::default()
    };
    let server = ApiserverProcess::start_with(&[], &options).await.unwrap();
    let client = server.anonymous_client().unwrap();

    // The ConfigMap was read with the service account's token, and its
    // client CA (kube-apiserver's) now authenticates users.
    let configmap = cluster.server_calls("configmaps").await.unwrap();
    assert_eq!(configmap.len(), 1, "{configmap:?}");
    assert_eq!(configmap[0].uri, CONFIGMAP);
    assert_eq!(
        configmap[0].credential_id,
        Some(credential_id(&token_1).unwrap())
    );
    assert_eq!(configmap[0].code, 200);
    let server_ca = std::fs::read(server.data_dir().join("pki/ca.crt")).unwrap();
    let admin = HttpsClient::with_identity(
        server.address(),
        &server_ca,
        "localhost",
        Some(&cluster.kube().issue_client("admin", Some("system:masters"))),
    )
    .unwrap();
    let response = admin.get(POLICIES).await.unwrap();
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);

    // What a cluster user's request looks like after kube-apiserver's
    // aggregation layer: the front proxy's certificate and the user in
    // headers. Jane is asked about (SubjectAccessReview, with the service
    // account's token); the agent's identity is held to its node locally.
    let proxy = HttpsClient::with_identity(
        server.address(),
        &server_ca,
        "localhost",
        Some(&proxy_ca.issue("front-proxy-client", None)),
    )
    .unwrap();
    let as_jane = [("X-Remote-User", "jane"), ("X-Remote-Group", "dev")];
    let response = proxy
        .request_with("GET", POLICIES, &as_jane, None)
        .await
        .unwrap();
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    let response = proxy
        .request_with("DELETE", &format!("{POLICIES}/p"), &as_jane, None)
        .await
        .unwrap();
    assert_eq!(response.status, StatusCode::FORBIDDEN, "{}", response.body);
    let access_reviews = cluster.server_calls(ACCESS_REVIEWS).await.unwrap();
    assert_eq!(access_reviews.len(), 2, "{access_reviews:?}");
    let as_agent = [
        (
            "X-Remote-User",
            "system:serviceaccount:nmstate:nmstate-agent",
        ),
        ("X-Remote-Group", "system:serviceaccounts"),
        (
            "X-Remote-Extra-Authentication.kubernetes.io%2fnode-name",
            "a",
        ),
    ];
    let response = proxy
        .request_with("GET", &format!("{STATES}/b"), &as_agent, None)
        .await
        .unwrap();
    assert_eq!(response.status, StatusCode::FORBIDDEN, "{}", response.body);
    let status: Value = serde_json::from_str(&response.body).unwrap();
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .ends_with("node \"a\" may only read its own NodeNetworkState"),
        "{status}"
    );
    assert_eq!(
        cluster.server_calls(ACCESS_REVIEWS).await.unwrap().len(),
        2,
        "node identities are decided locally"
    );

    // Jane's token is reviewed, then her access: every call carries the
    // service account's token.
    let (status, body) = get(&client, POLICIES, JANE_TOKEN).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = get(&client, &format!("{POLICIES}/p"), "unknown-token").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    for resource in [TOKEN_REVIEWS, ACCESS_REVIEWS] {
        let calls = cluster.server_calls(resource).await.unwrap();
        assert!(!calls.is_empty(), "{resource} asked");
        assert!(
            calls.iter().all(
                |call| call.credential_id == Some(credential_id(&token_1).unwrap())
                    && call.code == 201
            ),
            "{resource}: {calls:?}"
        );
    }

    // The kubelet rotates the token, and the old one is revoked: the next
    // review carries the new token.
    let token_2 = cluster.revocable_server_token("token-2").await.unwrap();
    write_token(&serviceaccount, &token_2);
    cluster.delete_secret("token-1").await.unwrap();
    let own = format!("{STATES}?fieldSelector=metadata.name%3Da");
    let (status, body) = get(&client, &own, &node_a_token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let last = cluster
        .server_calls(TOKEN_REVIEWS)
        .await
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!(last.credential_id, Some(credential_id(&token_2).unwrap()));
    assert_eq!(last.code, 201);
    let calls = cluster.all_server_calls().await.unwrap();
    assert!(
        calls
            .iter()
            .all(|call| call.code != 401 && call.code != 403),
        "no call was refused: {calls:?}"
    );

    // kubectl with each token shows kube-apiserver's 401 and 403 messages.
    let kubectl = |name: &str, token: &str| {
        let kubeconfig = json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "c", "cluster": {
                "server": format!("https://localhost:{}", server.address().port()),
                "certificate-authority": server.data_dir().join("pki/ca.crt"),
            }}],
            "users": [{"name": "u", "user": {"token": token}}],
            "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
            "current-context": "x",
        });
        let path = dir.path().join(format!("{name}.kubeconfig"));
        std::fs::write(&path, kubeconfig.to_string()).unwrap();
        Kubectl::new(&path).unwrap()
    };
    let jane = kubectl("jane", JANE_TOKEN);
    jane.run(&["get", "nncp"]).await.ok();
    let output = jane.run(&["delete", "nncp", "p"]).await.failed();
    assert!(
        output.stderr.contains(
            "Error from server (Forbidden): nodenetworkconfigurationpolicies.nmstate.io \"p\" is forbidden: User \"jane\" cannot delete resource \"nodenetworkconfigurationpolicies\" in API group \"nmstate.io\" at the cluster scope"
        ),
        "{output:?}"
    );
    let node_a = kubectl("node-a", &node_a_token);
    let output = node_a.run(&["get", "nnce"]).await.failed();
    assert!(
        output.stderr.contains("Error from server (Forbidden): nodenetworkconfigurationenactments.nmstate.io is forbidden: User \"system:serviceaccount:nmstate:nmstate-agent\" cannot list resource \"nodenetworkconfigurationenactments\" in API group \"nmstate.io\" at the cluster scope: node \"a\" may only list enactments labelled nmstate.io/node=a"),
        "{output:?}"
    );
    node_a
        .run(&["get", "nnce", "-l", "nmstate.io/node=a"])
        .await
        .ok();
    let output = kubectl("stolen", "stolen-token")
        .run(&["get", "nncp"])
        .await
        .failed();
    assert!(
        output.stderr.contains("error: You must be logged in to the server (the server has asked for the client to provide credentials)"),
        "{output:?}"
    );

    // The token bound to node a is held to node restriction.
    let (status, body) = get(&client, &format!("{STATES}/b"), &node_a_token).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let status: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        status["message"],
        "nodenetworkstates.nmstate.io \"b\" is forbidden: User \"system:serviceaccount:nmstate:nmstate-agent\" cannot get resource \"nodenetworkstates\" in API group \"nmstate.io\" at the cluster scope: node \"a\" may only read its own NodeNetworkState"
    );
}

#[tokio::test]
async fn kube_apiserver_is_verified_with_the_service_account_ca() {
    let _turn = nmstate_e2e::suite::turn(module_path!());
    let cluster = DelegatedCluster::start(None, None).await.unwrap();
    let token = cluster.token("nmstate-apiserver", None).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    // A CA that did not sign kube-apiserver's certificate.
    let other = TestCa::new("someone-else");
    let serviceaccount = service_account(dir.path(), &token, &other.pem);
    let output = tokio::process::Command::new(workspace_binary("nmstate-apiserver").unwrap())
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--bind-address", "127.0.0.1", "--secure-port", "0"])
        .envs(pod_environment(&cluster, &serviceaccount))
        .stdin(std::process::Stdio::null())
        .output();
    let output = tokio::time::timeout(std::time::Duration::from_secs(60), output)
        .await
        .expect("the server exits")
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("https://{}{CONFIGMAP}", cluster.kube().address())),
        "names the ConfigMap's URL: {stderr}"
    );
    assert!(
        stderr.contains("invalid peer certificate"),
        "says the certificate is not trusted: {stderr}"
    );
    assert_eq!(
        cluster.all_server_calls().await.unwrap(),
        [],
        "nothing is sent to an unverified server"
    );
}

#[tokio::test]
async fn kubeconfigs_with_bearer_tokens() {
    let _turn = nmstate_e2e::suite::turn(module_path!());
    let cluster = DelegatedCluster::start(None, None).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (authentication, static_token) = cluster
        .server_kubeconfig(dir.path(), "authentication.kubeconfig")
        .await
        .unwrap();
    let token_1 = cluster.revocable_server_token("token-1").await.unwrap();
    write_token(dir.path(), &token_1);
    // Relative file names are relative to the kubeconfig's directory.
    let authorization = cluster
        .kubeconfig(
            dir.path(),
            "authorization.kubeconfig",
            json!({"token": "stale", "tokenFile": "token"}),
        )
        .unwrap();
    let server = ApiserverProcess::start(&[
        &format!("--authentication-kubeconfig={}", authentication.display()),
        &format!("--authorization-kubeconfig={}", authorization.display()),
    ])
    .await
    .unwrap();
    let client = server.anonymous_client().unwrap();

    let (status, body) = get(&client, POLICIES, JANE_TOKEN).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let credentials = async |resource: &str| -> Vec<Option<String>> {
        let calls = cluster.server_calls(resource).await.unwrap();
        calls.into_iter().map(|call| call.credential_id).collect()
    };
    let static_id = Some(credential_id(&static_token).unwrap());
    assert_eq!(
        credentials("configmaps").await,
        std::slice::from_ref(&static_id)
    );
    assert_eq!(credentials(TOKEN_REVIEWS).await, [static_id]);
    assert_eq!(
        credentials(ACCESS_REVIEWS).await,
        [Some(credential_id(&token_1).unwrap())],
        "tokenFile wins over token"
    );

    // A rotated tokenFile is followed.
    let token_2 = cluster.revocable_server_token("token-2").await.unwrap();
    write_token(dir.path(), &token_2);
    cluster.delete_secret("token-1").await.unwrap();
    let (status, body) = get(&client, &format!("{POLICIES}/p"), JANE_TOKEN).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "jane may get: {body}");
    assert_eq!(
        credentials(ACCESS_REVIEWS).await.last(),
        Some(&Some(credential_id(&token_2).unwrap()))
    );
}
