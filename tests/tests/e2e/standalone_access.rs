//! Reaching a standalone server (generated certificates, no flags): the
//! admin kubeconfig works with the real kubectl, requests without a client
//! certificate from the local CA get 401 (health checks excepted), and the
//! `kubeconfig` subcommand issues working node credentials.
#![allow(clippy::unwrap_used)]

use std::{path::Path, time::Duration};

use http::StatusCode;
use nmstate_apiserver::{auth::UserInfo, kubeconfig::Kubeconfig};
use nmstate_e2e::{
    apiserver::ApiserverProcess,
    https::{ClientIdentity, HttpsClient},
};
use rustls_pki_types::{CertificateDer, pem::PemObject};

/// Runs the machine's kubectl with `kubeconfig`; returns (success, stdout,
/// stderr).
async fn kubectl(kubeconfig: &Path, args: &[&str]) -> (bool, String, String) {
    let cache = tempfile::tempdir().unwrap();
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .arg("--cache-dir")
            .arg(cache.path())
            .args(args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("kubectl did not finish within 60s")
    .expect("running kubectl");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn assert_unauthorized(response: &nmstate_e2e::https::TestResponse, what: &str) {
    assert_eq!(response.status, StatusCode::UNAUTHORIZED, "{what}");
    assert_eq!(
        response.content_type.as_deref(),
        Some("application/json"),
        "{what}"
    );
    let status: serde_json::Value = serde_json::from_str(&response.body).unwrap();
    assert_eq!(
        status,
        serde_json::json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": "Unauthorized",
            "reason": "Unauthorized",
            "code": 401,
        }),
        "{what}"
    );
}

#[tokio::test]
async fn admin_kubeconfig_works_with_kubectl() {
    let _turn = nmstate_e2e::suite::turn(module_path!());
    let server = ApiserverProcess::start(&[]).await.unwrap();
    let kubeconfig = server.admin_kubeconfig();

    let (ok, stdout, stderr) = kubectl(&kubeconfig, &["get", "--raw", "/readyz"]).await;
    assert!(ok, "kubectl get --raw /readyz failed: {stderr}");
    assert_eq!(stdout, "ok");

    // Authenticated, so the answer is the route's own (no API yet: 404),
    // not 401.
    let (ok, _, stderr) = kubectl(&kubeconfig, &["get", "--raw", "/apis/nmstate.io/v1/x"]).await;
    assert!(!ok);
    assert!(
        stderr.contains("Error from server (NotFound)"),
        "expected NotFound, got: {stderr}"
    );

    let credentials = Kubeconfig::read(&kubeconfig)
        .unwrap()
        .credentials()
        .unwrap();
    assert_eq!(credentials.server, format!("https://{}", server.address()));
}

#[tokio::test]
async fn only_health_checks_answer_without_a_client_certificate() {
    let _turn = nmstate_e2e::suite::turn(module_path!());
    let server = ApiserverProcess::start(&[]).await.unwrap();
    // As `curl -k` (or `--cacert`) without a certificate.
    let anonymous = server.anonymous_client().unwrap();
    for path in ["/readyz", "/livez", "/healthz", "/readyz/storage"] {
        let response = anonymous.get(path).await.unwrap();
        assert_eq!(
            (response.status, response.body.as_str()),
            (StatusCode::OK, "ok"),
            "{path}"
        );
    }
    for path in [
        "/apis",
        "/api",
        "/version",
        "/apis/nmstate.io/v1/nodenetworkstates",
    ] {
        assert_unauthorized(&anonymous.get(path).await.unwrap(), path);
    }
    let post = anonymous
        .request(
            "POST",
            "/apis/nmstate.io/v1/nodenetworkconfigurationpolicies",
            Some(b"{}".to_vec()),
        )
        .await
        .unwrap();
    assert_unauthorized(&post, "POST");

    let admin = server.admin_client().unwrap();
    let response = admin.get("/apis/nmstate.io/v1/x").await.unwrap();
    assert_eq!(response.status, StatusCode::NOT_FOUND, "{}", response.body);
}

#[tokio::test]
async fn certificate_from_another_ca_is_refused() {
    let _turn = nmstate_e2e::suite::turn(module_path!());
    let server = ApiserverProcess::start(&[]).await.unwrap();

    // A CA of its own that issues an admin-looking client certificate.
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "impostor-ca");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, &ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "system:masters");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "admin");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, &issuer).unwrap();
    let identity = ClientIdentity {
        cert_pem: format!("{}{}", cert.pem(), ca_cert.pem()).into_bytes(),
        key_pem: key.serialize_pem().into_bytes(),
    };

    let server_ca = std::fs::read(server.data_dir().join("pki/ca.crt")).unwrap();
    let client =
        HttpsClient::with_identity(server.address(), &server_ca, "localhost", Some(&identity))
            .unwrap();
    match client.get("/apis").await {
        // The server's rustls refuses the chain with an `unknown_ca` alert;
        // with TLS 1.3 it reaches the client only after the client believes
        // the handshake is done, so it surfaces on the request.
        Err(e) => {
            let message = format!("{e:#}");
            assert!(
                message.contains("received fatal alert: UnknownCA"),
                "unexpected error: {message}"
            );
        }
        Ok(response) => assert_unauthorized(&response, "foreign CA"),
    }
}

#[tokio::test]
async fn issued_node_kubeconfig_is_accepted() {
    let _turn = nmstate_e2e::suite::turn(module_path!());
    let server = ApiserverProcess::start(&[]).await.unwrap();
    let kubeconfig = server
        .issue_kubeconfig("system:node:n1", &["system:nodes"])
        .unwrap();

    let credentials = Kubeconfig::read(&kubeconfig)
        .unwrap()
        .credentials()
        .unwrap();
    assert_eq!(
        credentials.server,
        format!("https://{}", server.address()),
        "the admin kubeconfig's server"
    );
    let der = CertificateDer::from_pem_slice(&credentials.client_cert_pem.unwrap()).unwrap();
    let user = UserInfo::from_certificate(&der).unwrap();
    assert_eq!(
        (user.name.as_str(), user.groups.as_slice()),
        ("system:node:n1", ["system:nodes".to_string()].as_slice())
    );

    let node = HttpsClient::from_kubeconfig(&kubeconfig).unwrap();
    let response = node.get("/apis/nmstate.io/v1/x").await.unwrap();
    assert_eq!(response.status, StatusCode::NOT_FOUND, "{}", response.body);

    let (ok, stdout, stderr) = kubectl(&kubeconfig, &["get", "--raw", "/readyz"]).await;
    assert!(ok, "kubectl with the node kubeconfig failed: {stderr}");
    assert_eq!(stdout, "ok");
}

#[tokio::test]
async fn admin_kubeconfig_follows_the_port_across_restarts() {
    let _turn = nmstate_e2e::suite::turn(module_path!());
    let mut first = ApiserverProcess::start(&[]).await.unwrap();
    let dir = first.data_dir().to_path_buf();
    let before = Kubeconfig::read(&first.admin_kubeconfig()).unwrap();
    assert!(first.terminate().unwrap().success());

    let second = ApiserverProcess::start_in(&dir, &[]).await.unwrap();
    let after = Kubeconfig::read(&second.admin_kubeconfig()).unwrap();
    assert_eq!(
        after.credentials().unwrap().server,
        format!("https://{}", second.address())
    );
    assert_eq!(after.users, before.users, "the admin certificate is kept");
    assert_eq!(
        after.clusters[0].cluster.certificate_authority_data,
        before.clusters[0].cluster.certificate_authority_data
    );
    let response = second.client().unwrap().get("/apis/x").await.unwrap();
    assert_eq!(response.status, StatusCode::NOT_FOUND);
    drop(second);
    drop(first);
}

#[tokio::test]
async fn kubectl_without_credentials_is_told_it_is_unauthorized() {
    let _turn = nmstate_e2e::suite::turn(module_path!());
    let server = ApiserverProcess::start(&[]).await.unwrap();
    // The admin kubeconfig with its client certificate replaced by a token
    // the server cannot check (with no credentials at all kubectl would
    // prompt for a password instead of asking the server).
    let text = std::fs::read_to_string(server.admin_kubeconfig()).unwrap();
    let mut config: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    for user in config["users"].as_sequence_mut().unwrap() {
        let mut credentials = serde_yaml::Mapping::new();
        credentials.insert("token".into(), "not-a-token-this-server-knows".into());
        user["user"] = serde_yaml::Value::Mapping(credentials);
    }
    let dir = tempfile::tempdir().unwrap();
    let anonymous = dir.path().join("anonymous.kubeconfig");
    std::fs::write(&anonymous, serde_yaml::to_string(&config).unwrap()).unwrap();

    let (ok, _, stderr) = kubectl(&anonymous, &["get", "nncp"]).await;
    assert!(!ok, "kubectl must fail without credentials");
    assert!(
        stderr.contains("error: You must be logged in to the server (the server has asked for the client to provide credentials)"),
        "kubectl should say the server refused the credentials: {stderr}"
    );
}
