//! The client CA and front-proxy settings read from kube-apiserver's
//! `kube-system/extension-apiserver-authentication` ConfigMap when
//! `--authentication-kubeconfig` is given without `--client-ca-file` or
//! `--requestheader-client-ca-file`. A test double of kube-apiserver serves
//! the ConfigMap over HTTPS with CAs generated here; a client certificate
//! from its client CA and a front proxy speaking its headers are
//! authenticated; an unreachable cluster stops the start with exit 1.
#![allow(clippy::unwrap_used)]

use std::{convert::Infallible, net::SocketAddr};

use bytes::Bytes;
use http::StatusCode;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use nmstate_apiserver::{kubeconfig::Kubeconfig, tls::ClientCert};
use nmstate_e2e::{
    apiserver::{ApiserverProcess, free_port, workspace_binary},
    https::{ClientIdentity, HttpsClient},
    pki::TestCa,
};
use serde_json::json;

const CONFIGMAP: &str =
    "/api/v1/namespaces/kube-system/configmaps/extension-apiserver-authentication";
const POLICIES: &str = "/apis/nmstate.io/v1/nodenetworkconfigurationpolicies";

/// A stand-in for kube-apiserver that serves only the ConfigMap, with
/// `data`, over HTTPS.
struct ConfigMapDouble {
    address: SocketAddr,
    ca_pem: String,
}

impl ConfigMapDouble {
    async fn start(data: serde_json::Value) -> Self {
        let (acceptor, ca_pem) = nmstate_e2e::pki::self_signed_acceptor();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let configmap = Bytes::from(
            json!({
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "extension-apiserver-authentication", "namespace": "kube-system"},
                "data": data,
            })
            .to_string(),
        );
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                let configmap = configmap.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(
                        move |request: http::Request<hyper::body::Incoming>| {
                            let found = request.method() == http::Method::GET
                                && request.uri().path() == CONFIGMAP;
                            let configmap = configmap.clone();
                            async move {
                                let response = if found {
                                    http::Response::builder()
                                        .header("content-type", "application/json")
                                        .body(Full::new(configmap))
                                } else {
                                    http::Response::builder()
                                        .status(StatusCode::NOT_FOUND)
                                        .body(Full::new(Bytes::new()))
                                };
                                Ok::<_, Infallible>(response.unwrap())
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Self { address, ca_pem }
    }
}

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
    let client_ca = TestCa::new("kubernetes");
    let proxy_ca = TestCa::new("front-proxy-ca");
    let double = ConfigMapDouble::start(json!({
        "client-ca-file": client_ca.pem,
        "requestheader-client-ca-file": proxy_ca.pem,
        "requestheader-allowed-names": "[\"front-proxy-client\"]",
        "requestheader-username-headers": "[\"X-Proxy-User\"]",
        "requestheader-group-headers": "[\"X-Proxy-Group\"]",
        "requestheader-extra-headers-prefix": "[\"X-Proxy-Extra-\"]",
    }))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = kubeconfig(dir.path(), double.address, &double.ca_pem);
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
    let admin = client_ca.issue("admin", Some("system:masters"));
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
