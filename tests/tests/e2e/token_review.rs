//! Bearer tokens and access reviewed by a kube-apiserver
//! (`--authentication-kubeconfig`, `--authorization-kubeconfig`), here a
//! test double speaking `authentication.k8s.io/v1` TokenReview and
//! `authorization.k8s.io/v1` SubjectAccessReview over HTTPS. A token bound
//! to node a gets node a's rights (decided locally); an unknown token gets
//! 401; another user gets what the double's RBAC says; answers are cached,
//! so repeated requests ask once.
#![allow(clippy::unwrap_used)]

use http::StatusCode;
use nmstate_e2e::{
    apiserver::ApiserverProcess,
    kube_double::{ACCESS_REVIEWS, KubeApiserverDouble, TOKEN_REVIEWS},
};
use serde_json::Value;

const STATES: &str = "/apis/nmstate.io/v1/nodenetworkstates";
const POLICIES: &str = "/apis/nmstate.io/v1/nodenetworkconfigurationpolicies";

#[tokio::test]
async fn bearer_tokens_are_reviewed_and_cached() {
    let _turn = nmstate_e2e::suite::turn(module_path!());
    // Token `node-a-token` belongs to a service account bound to node a,
    // `jane-token` to jane, who may get and list policies (see the double).
    let double = KubeApiserverDouble::start(None, None).await;
    let reviews = || double.calls_to(TOKEN_REVIEWS).len();
    let access_reviews = || double.calls_to(ACCESS_REVIEWS).len();
    let dir = tempfile::tempdir().unwrap();
    // One kubeconfig serves for both flags.
    let kubeconfig = double.client_certificate_kubeconfig(dir.path(), "authentication.kubeconfig");
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
                &[("authorization", &bearer("node-a-token"))],
                None,
            )
            .await
            .unwrap();
        assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    }
    assert_eq!(reviews(), 1, "the answer is cached");

    let response = client
        .request_with(
            "GET",
            &format!("{STATES}/b"),
            &[("authorization", &bearer("node-a-token"))],
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
    assert_eq!(reviews(), 2, "a no is cached too");

    let response = client.get(STATES).await.unwrap();
    assert_eq!(response.status, StatusCode::UNAUTHORIZED, "no token");
    assert_eq!(access_reviews(), 0, "node identities are decided locally");

    // Jane is no node and no master: the cluster decides, once per question.
    let jane = [("authorization", bearer("jane-token"))];
    let jane: Vec<(&str, &str)> = jane.iter().map(|(k, v)| (*k, v.as_str())).collect();
    for _ in 0..2 {
        let response = client
            .request_with("GET", POLICIES, &jane, None)
            .await
            .unwrap();
        assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    }
    assert_eq!(access_reviews(), 1, "the answer is cached");
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
    assert_eq!(access_reviews(), 2);
}
