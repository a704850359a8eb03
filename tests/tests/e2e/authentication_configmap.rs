//! The client CA and front-proxy settings read from kube-apiserver's
//! `kube-system/extension-apiserver-authentication` ConfigMap when
//! `--authentication-kubeconfig` is given without `--client-ca-file` or
//! `--requestheader-client-ca-file`. A real kube-apiserver writes the
//! ConfigMap from its own flags (its client CA, a front-proxy CA made here
//! and header names that are not Kubernetes' defaults); a client
//! certificate from its client CA and a front proxy speaking its headers
//! are authenticated; an unreachable cluster stops the start with exit 1.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;

use http::StatusCode;
use nmstate_apiserver::{kubeconfig::Kubeconfig, tls::ClientCert};
use nmstate_e2e::{
    apiserver::{ApiserverProcess, free_port, workspace_binary},
    delegation::{CONFIGMAP, DelegatedCluster},
    https::{ClientIdentity, HttpsClient},
    pki::TestCa,
};
const POLICIES: &str = "/apis/nmstate.io/v1/nodenetworkconfigurationpolicies";

/// A kubeconfig naming `https://address`, trusting `ca_pem`.
fn kubeconfig(dir: &std::path::Path, address: SocketAddr, ca_pem: &str) -> std::path::PathBuf {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "nmstate-apiserver");
    let cert = params.self_signed(&key).unwrap();
    let client = ClientCert {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    };
    let kubeconfig = Kubeconfig::for_client(
        &format!("https://{address}"),
        ca_pem,
        "nmstate-apiserver",
        &client,
    );
    let path = dir.join("authentication.kubeconfig");
    std::fs::write(&path, kubeconfig.to_yaml().unwrap()).unwrap();
    path
}

#[tokio::test]
async fn client_ca_and_front_proxy_come_from_the_configmap() {
    let _turn = nmstate_e2e::suite::turn(module_path!());
    let proxy_ca = TestCa::new("front-proxy-ca");
    let cluster = DelegatedCluster::start(Some(&proxy_ca), Some("X-Proxy"))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (kubeconfig, _) = cluster
        .server_kubeconfig(dir.path(), "authentication.kubeconfig")
        .await
        .unwrap();
    let server = ApiserverProcess::start(&[&format!(
        "--authentication-kubeconfig={}",
        kubeconfig.display()
    )])
    .await
    .unwrap();
    let server_ca = std::fs::read(server.data_dir().join("pki/ca.crt")).unwrap();
    let client = |identity: Option<&ClientIdentity>| {
        HttpsClient::with_identity(server.address(), &server_ca, "localhost", identity).unwrap()
    };

    // A certificate from the ConfigMap's client CA names the user.
    let admin = cluster.kube().issue_client("admin", Some("system:masters"));
    let response = client(Some(&admin)).get(POLICIES).await.unwrap();
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);

    // The allowed front proxy names the user with the ConfigMap's headers.
    let proxy = proxy_ca.issue("front-proxy-client", None);
    let as_admin = [
        ("X-Proxy-User", "admin"),
        ("X-Proxy-Group", "system:masters"),
    ];
    let response = client(Some(&proxy))
        .request_with("GET", POLICIES, &as_admin, None)
        .await
        .unwrap();
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    // Kubernetes' default header names are not the ConfigMap's: no user.
    let response = client(Some(&proxy))
        .request_with(
            "GET",
            POLICIES,
            &[
                ("X-Remote-User", "admin"),
                ("X-Remote-Group", "system:masters"),
            ],
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        response.status,
        StatusCode::UNAUTHORIZED,
        "{}",
        response.body
    );
    // A proxy name not in requestheader-allowed-names is not believed.
    let other = proxy_ca.issue("someone-else", None);
    let response = client(Some(&other))
        .request_with("GET", POLICIES, &as_admin, None)
        .await
        .unwrap();
    assert_eq!(
        response.status,
        StatusCode::UNAUTHORIZED,
        "{}",
        response.body
    );
    // No certificate: 401.
    let response = client(None).get(POLICIES).await.unwrap();
    assert_eq!(
        response.status,
        StatusCode::UNAUTHORIZED,
        "{}",
        response.body
    );
}

#[tokio::test]
async fn an_unreachable_cluster_stops_the_start() {
    let _turn = nmstate_e2e::suite::turn(module_path!());
    let dir = tempfile::tempdir().unwrap();
    // A port nobody listens on.
    let address: SocketAddr = format!("127.0.0.1:{}", free_port().unwrap())
        .parse()
        .unwrap();
    let ca = TestCa::new("nobody");
    let kubeconfig = kubeconfig(dir.path(), address, &ca.pem);
    let output = tokio::process::Command::new(workspace_binary("nmstate-apiserver").unwrap())
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--bind-address", "127.0.0.1", "--secure-port", "0"])
        .arg(format!(
            "--authentication-kubeconfig={}",
            kubeconfig.display()
        ))
        .stdin(std::process::Stdio::null())
        .output();
    let output = tokio::time::timeout(std::time::Duration::from_secs(60), output)
        .await
        .expect("the server exits")
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let url = format!("https://{address}{CONFIGMAP}");
    assert!(stderr.contains(&url), "names {url}: {stderr}");
}
