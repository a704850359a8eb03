//! Bearer tokens and access reviewed by a real kube-apiserver
//! (`--authentication-kubeconfig`, `--authorization-kubeconfig` with deploy/'s
//! ServiceAccount and RBAC): TokenReview and SubjectAccessReview. A token
//! bound to a Pod on node a gets node a's rights (decided locally); an
//! unknown token gets 401; another user gets what the cluster's RBAC says;
//! answers are cached, so repeated requests ask once (counted in
//! kube-apiserver's audit log).
#![allow(clippy::unwrap_used)]

use http::StatusCode;
use nmstate_e2e::{
    apiserver::ApiserverProcess,
    delegation::{ACCESS_REVIEWS, DelegatedCluster, JANE_TOKEN, TOKEN_REVIEWS},
};
use serde_json::Value;

const STATES: &str = "/apis/nmstate.io/v1/nodenetworkstates";
const POLICIES: &str = "/apis/nmstate.io/v1/nodenetworkconfigurationpolicies";

#[tokio::test]
async fn bearer_tokens_are_reviewed_and_cached() {
    let _turn = nmstate_e2e::suite::turn(module_path!());
    // The node token belongs to the agent's ServiceAccount, bound to its
    // Pod on node a; jane may get and list policies (see the cluster).
    let cluster = DelegatedCluster::start(None, None).await.unwrap();
    let node_a_token = cluster.node_token().await.unwrap();
    let reviews = async || cluster.server_calls(TOKEN_REVIEWS).await.unwrap().len();
    let access_reviews = async || cluster.server_calls(ACCESS_REVIEWS).await.unwrap().len();
    let dir = tempfile::tempdir().unwrap();
    // One kubeconfig serves for both flags.
    let (kubeconfig, _) = cluster
        .server_kubeconfig(dir.path(), "server.kubeconfig")
        .await
        .unwrap();
    let server = ApiserverProcess::start(&[
        &format!("--authentication-kubeconfig={}", kubeconfig.display()),
        &format!("--authorization-kubeconfig={}", kubeconfig.display()),
    ])
    .await
    .unwrap();
    // No client certificate: the token is the only credential.
    let client = server.anonymous_client().unwrap();
    let bearer = |token: &str| format!("Bearer {token}");

    let own = format!("{STATES}?fieldSelector=metadata.name%3Da");
    for _ in 0..3 {
        let response = client
            .request_with(
                "GET",
                &own,
                &[("authorization", &bearer(&node_a_token))],
                None,
            )
            .await
            .unwrap();
        assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    }
    assert_eq!(reviews().await, 1, "the answer is cached");

    let response = client
        .request_with(
            "GET",
            &format!("{STATES}/b"),
            &[("authorization", &bearer(&node_a_token))],
            None,
        )
        .await
        .unwrap();
    assert_eq!(response.status, StatusCode::FORBIDDEN, "{}", response.body);
    let status: Value = serde_json::from_str(&response.body).unwrap();
    assert_eq!(
        status["message"],
        "nodenetworkstates.nmstate.io \"b\" is forbidden: User \"system:serviceaccount:nmstate:nmstate-agent\" cannot get resource \"nodenetworkstates\" in API group \"nmstate.io\" at the cluster scope: node \"a\" may only read its own NodeNetworkState"
    );

    for _ in 0..2 {
        let response = client
            .request_with("GET", STATES, &[("authorization", &bearer("stolen"))], None)
            .await
            .unwrap();
        assert_eq!(
            response.status,
            StatusCode::UNAUTHORIZED,
            "{}",
            response.body
        );
    }
    assert_eq!(reviews().await, 2, "a no is cached too");

    let response = client.get(STATES).await.unwrap();
    assert_eq!(response.status, StatusCode::UNAUTHORIZED, "no token");
    assert_eq!(
        access_reviews().await,
        0,
        "node identities are decided locally"
    );

    // Jane is no node and no master: the cluster decides, once per question.
    let jane = [("authorization", bearer(JANE_TOKEN))];
    let jane: Vec<(&str, &str)> = jane.iter().map(|(k, v)| (*k, v.as_str())).collect();
    for _ in 0..2 {
        let response = client
            .request_with("GET", POLICIES, &jane, None)
            .await
            .unwrap();
        assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    }
    assert_eq!(access_reviews().await, 1, "the answer is cached");
    let response = client
        .request_with("DELETE", &format!("{POLICIES}/p"), &jane, None)
        .await
        .unwrap();
    assert_eq!(response.status, StatusCode::FORBIDDEN, "{}", response.body);
    let status: Value = serde_json::from_str(&response.body).unwrap();
    assert_eq!(
        status["message"],
        "nodenetworkconfigurationpolicies.nmstate.io \"p\" is forbidden: User \"jane\" cannot delete resource \"nodenetworkconfigurationpolicies\" in API group \"nmstate.io\" at the cluster scope"
    );
    assert_eq!(access_reviews().await, 2);
}
