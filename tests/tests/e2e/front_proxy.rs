//! Front-proxy authentication against a real server: `X-Remote-*` headers
//! name the user only on a connection whose client certificate chains to
//! `--requestheader-client-ca-file` and has an allowed common name; from
//! anyone else they are ignored.
#![allow(clippy::unwrap_used)]

use http::StatusCode;
use nmstate_e2e::{
    apiserver::ApiserverProcess,
    https::{ClientIdentity, HttpsClient, TestResponse},
    pki::TestCa,
};
use serde_json::Value;

const POLICIES: &str = "/apis/nmstate.io/v1/nodenetworkconfigurationpolicies";
const STATES: &str = "/apis/nmstate.io/v1/nodenetworkstates";
const AS_ADMIN: &[(&str, &str)] = &[
    ("X-Remote-User", "admin"),
    ("X-Remote-Group", "system:masters"),
];

fn message(response: &TestResponse) -> String {
    let status: Value = serde_json::from_str(&response.body).unwrap();
    status["message"].as_str().unwrap_or_default().to_string()
}

#[tokio::test]
async fn only_an_allowed_proxy_names_the_user() {
    let _turn = nmstate_e2e::suite::turn(module_path!());
    let ca = TestCa::new("front-proxy-ca");
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("front-proxy-ca.crt");
    std::fs::write(&ca_file, &ca.pem).unwrap();
    let server = ApiserverProcess::start(&[
        &format!("--requestheader-client-ca-file={}", ca_file.display()),
        "--requestheader-allowed-names=front-proxy-client,aggregator",
    ])
    .await
    .unwrap();
    let server_ca = std::fs::read(server.data_dir().join("pki/ca.crt")).unwrap();
    let client = |identity: Option<&ClientIdentity>| {
        HttpsClient::with_identity(server.address(), &server_ca, "localhost", identity).unwrap()
    };

    // Without a certificate the headers count for nothing: 401.
    let response = client(None)
        .request_with("GET", POLICIES, AS_ADMIN, None)
        .await
        .unwrap();
    assert_eq!(
        response.status,
        StatusCode::UNAUTHORIZED,
        "{}",
        response.body
    );

    // With a certificate from the client CA the user is the certificate's.
    let node = HttpsClient::from_kubeconfig(
        &server
            .issue_kubeconfig("system:node:a", &["system:nodes"])
            .unwrap(),
    )
    .unwrap();
    let response = node
        .request_with("GET", "/metrics", AS_ADMIN, None)
        .await
        .unwrap();
    assert_eq!(response.status, StatusCode::FORBIDDEN, "{}", response.body);
    assert_eq!(
        message(&response),
        "forbidden: User \"system:node:a\" cannot get path \"/metrics\": only system:masters may read metrics"
    );

    // A certificate from the front-proxy CA with a name not allowed: 401.
    let stranger = client(Some(&ca.issue("someone-else", None)));
    let response = stranger
        .request_with("GET", POLICIES, AS_ADMIN, None)
        .await
        .unwrap();
    assert_eq!(
        response.status,
        StatusCode::UNAUTHORIZED,
        "{}",
        response.body
    );

    // The allowed proxy speaks for the user in the headers.
    let proxy = client(Some(&ca.issue("front-proxy-client", None)));
    let response = proxy
        .request_with("GET", "/metrics", AS_ADMIN, None)
        .await
        .unwrap();
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    let response = proxy
        .request_with(
            "GET",
            &format!("{STATES}/b"),
            &[
                ("X-Remote-User", "system:node:a"),
                ("X-Remote-Group", "system:nodes"),
            ],
            None,
        )
        .await
        .unwrap();
    assert_eq!(response.status, StatusCode::FORBIDDEN, "{}", response.body);
    assert!(
        message(&response)
            .contains("User \"system:node:a\" cannot get resource \"nodenetworkstates\""),
        "{}",
        response.body
    );
    // A service account bound to node a, named through an extra header.
    let response = proxy
        .request_with(
            "GET",
            &format!("{STATES}?fieldSelector=metadata.name%3Da"),
            &[
                ("X-Remote-User", "system:serviceaccount:nmstate:handler"),
                (
                    "X-Remote-Extra-Authentication.kubernetes.io%2fnode-name",
                    "a",
                ),
            ],
            None,
        )
        .await
        .unwrap();
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    // Without a user header the proxy itself is nobody: 401.
    let response = proxy.get(POLICIES).await.unwrap();
    assert_eq!(
        response.status,
        StatusCode::UNAUTHORIZED,
        "{}",
        response.body
    );
}
