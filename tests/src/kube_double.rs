//! A test double of kube-apiserver (which cannot run here), named as one:
//! it speaks HTTPS and the documented wire format of the few endpoints an
//! extension API server calls — `authentication.k8s.io/v1` TokenReview,
//! `authorization.k8s.io/v1` SubjectAccessReview, and the
//! `kube-system/extension-apiserver-authentication` ConfigMap — and, like
//! kube-apiserver, answers 401 to a caller without the service-account
//! token it currently accepts (when started with one; otherwise it takes
//! every caller, e.g. one with a client certificate it does not check). It
//! records every call, with the bearer token it carried.
//!
//! Its users: token `node-a-token` belongs to a service account bound to
//! node a, `jane-token` to jane (group `dev`); every other token is
//! unknown. Jane may get and list policies, nothing else. It has one Node,
//! `a` (the policy controller lists Nodes when it has a cluster).
//!
//! The acceptance suite runs against a real kube-apiserver
//! (`tests/tests/e2e/aggregated.rs`); where the two disagree, this double was
//! made to follow the real one.

use std::{
    convert::Infallible,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use nmstate_apiserver::{kubeconfig::Kubeconfig, tls::ClientCert};
use serde_json::{Value, json};

/// The ConfigMap's path.
pub const CONFIGMAP: &str =
    "/api/v1/namespaces/kube-system/configmaps/extension-apiserver-authentication";
/// TokenReview's path.
pub const TOKEN_REVIEWS: &str = "/apis/authentication.k8s.io/v1/tokenreviews";
/// The Node list's path.
pub const NODES: &str = "/api/v1/nodes";
/// SubjectAccessReview's path.
pub const ACCESS_REVIEWS: &str = "/apis/authorization.k8s.io/v1/subjectaccessreviews";

/// One call the double received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    /// The HTTP method.
    pub method: String,
    /// The path.
    pub path: String,
    /// The bearer token in `Authorization`, if any.
    pub bearer: Option<String>,
    /// Whether the double answered 401 (the token was not the accepted
    /// service-account token).
    pub rejected: bool,
}

#[derive(Debug)]
struct Shared {
    service_token: Mutex<Option<String>>,
    configmap: Option<Bytes>,
    calls: Mutex<Vec<Call>>,
}

/// A running double; it stops when the test's runtime ends.
#[derive(Debug)]
pub struct KubeApiserverDouble {
    /// Where it listens (`127.0.0.1`, a free port).
    pub address: SocketAddr,
    /// The PEM of its self-signed serving certificate: the CA a client of
    /// the double trusts.
    pub ca_pem: String,
    shared: Arc<Shared>,
}

impl KubeApiserverDouble {
    /// Starts a double that accepts calls carrying `service_token` (any
    /// call when `None`) and serves the ConfigMap with `configmap_data`
    /// (404 when `None`).
    pub async fn start(service_token: Option<&str>, configmap_data: Option<Value>) -> Self {
        let (acceptor, ca_pem) = crate::pki::self_signed_acceptor();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the double");
        let address = listener.local_addr().expect("the double's address");
        let configmap = configmap_data.map(|data| {
            Bytes::from(
                json!({
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": "extension-apiserver-authentication", "namespace": "kube-system"},
                    "data": data,
                })
                .to_string(),
            )
        });
        let shared = Arc::new(Shared {
            service_token: Mutex::new(service_token.map(str::to_string)),
            configmap,
            calls: Mutex::new(Vec::new()),
        });
        let serving = shared.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                let shared = serving.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |request| {
                        let shared = shared.clone();
                        async move { Ok::<_, Infallible>(answer(request, &shared).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Self {
            address,
            ca_pem,
            shared,
        }
    }

    /// From now on, accepts only `token` (the old one is revoked), as after
    /// the kubelet rotated the service-account token.
    pub fn rotate_service_token(&self, token: &str) {
        *lock(&self.shared.service_token) = Some(token.to_string());
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<Call> {
        lock(&self.shared.calls).clone()
    }

    /// A kubeconfig at `dir/name` naming this double, with a client
    /// certificate (which the double does not check).
    pub fn client_certificate_kubeconfig(&self, dir: &Path, name: &str) -> PathBuf {
        let key = rcgen::KeyPair::generate().expect("generating a client key");
        let mut params =
            rcgen::CertificateParams::new(Vec::<String>::new()).expect("empty client parameters");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "nmstate-apiserver");
        let cert = params.self_signed(&key).expect("self-signing");
        let client = ClientCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        };
        let kubeconfig = Kubeconfig::for_client(
            &format!("https://{}", self.address),
            &self.ca_pem,
            "nmstate-apiserver",
            &client,
        );
        let path = dir.join(name);
        std::fs::write(&path, kubeconfig.to_yaml().expect("rendering a kubeconfig"))
            .expect("writing a kubeconfig");
        path
    }

    /// The calls to `path` so far.
    pub fn calls_to(&self, path: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|call| call.path == path)
            .collect()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn json_response(status: StatusCode, body: &Value) -> http::Response<Full<Bytes>> {
    http::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("a valid response")
}

async fn answer(
    request: http::Request<hyper::body::Incoming>,
    shared: &Shared,
) -> http::Response<Full<Bytes>> {
    let method = request.method().to_string();
    let path = request.uri().path().to_string();
    let bearer = request
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::to_string);
    let rejected = lock(&shared.service_token)
        .as_deref()
        .is_some_and(|accepted| bearer.as_deref() != Some(accepted));
    lock(&shared.calls).push(Call {
        method: method.clone(),
        path: path.clone(),
        bearer,
        rejected,
    });
    if rejected {
        return json_response(
            StatusCode::UNAUTHORIZED,
            &json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {},
                "status": "Failure", "message": "Unauthorized", "reason": "Unauthorized", "code": 401,
            }),
        );
    }
    let body = match request.into_body().collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let review: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    match (method.as_str(), path.as_str()) {
        ("GET", CONFIGMAP) => match &shared.configmap {
            Some(configmap) => http::Response::builder()
                .header("content-type", "application/json")
                .body(Full::new(configmap.clone()))
                .expect("a valid response"),
            None => json_response(
                StatusCode::NOT_FOUND,
                &json!({
                    "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "message": "configmaps \"extension-apiserver-authentication\" not found",
                    "reason": "NotFound", "code": 404,
                }),
            ),
        },
        ("GET", NODES) => json_response(
            StatusCode::OK,
            &json!({
                "kind": "NodeList", "apiVersion": "v1", "metadata": {"resourceVersion": "1"},
                "items": [{"metadata": {"name": "a", "uid": "5f1e", "labels": {"kubernetes.io/hostname": "a"}}}],
            }),
        ),
        ("POST", TOKEN_REVIEWS) => json_response(StatusCode::CREATED, &token_review(&review)),
        ("POST", ACCESS_REVIEWS) => json_response(StatusCode::CREATED, &access_review(&review)),
        _ => json_response(
            StatusCode::NOT_FOUND,
            &json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": "the server could not find the requested resource",
                "reason": "NotFound", "code": 404,
            }),
        ),
    }
}

fn token_review(review: &Value) -> Value {
    let status = match review["spec"]["token"].as_str() {
        // As kube-apiserver v1.34 answers for a token bound to a Pod on
        // Node a: the pod's and node's names and uids and the token's id
        // as extras, and system:authenticated among the groups.
        Some("node-a-token") => json!({
            "authenticated": true,
            "user": {
                "username": "system:serviceaccount:nmstate:nmstate-agent",
                "uid": "0c4a",
                "groups": ["system:serviceaccounts", "system:serviceaccounts:nmstate", "system:authenticated"],
                "extra": {
                    "authentication.kubernetes.io/credential-id": ["JTI=9d2f"],
                    "authentication.kubernetes.io/node-name": ["a"],
                    "authentication.kubernetes.io/node-uid": ["5f1e"],
                    "authentication.kubernetes.io/pod-name": ["nmstate-agent-a"],
                    "authentication.kubernetes.io/pod-uid": ["77b3"],
                },
            },
            "audiences": ["https://kubernetes.default.svc.cluster.local"],
        }),
        Some("jane-token") => json!({
            "authenticated": true,
            "user": {"username": "jane", "groups": ["dev", "system:authenticated"]},
            "audiences": ["https://kubernetes.default.svc.cluster.local"],
        }),
        // kube-apiserver leaves out `authenticated: false`.
        _ => json!({"user": {}, "error": "invalid bearer token"}),
    };
    json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenReview",
        "spec": review["spec"],
        "status": status,
    })
}

fn access_review(review: &Value) -> Value {
    let spec = &review["spec"];
    let attributes = &spec["resourceAttributes"];
    let allowed = spec["user"] == "jane"
        && attributes["resource"] == "nodenetworkconfigurationpolicies"
        && (attributes["verb"] == "get" || attributes["verb"] == "list");
    json!({
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": spec,
        // As kube-apiserver (Node,RBAC) answers: RBAC names the binding
        // that allowed, and a denial carries no reason at all.
        "status": if allowed {
            json!({"allowed": true, "reason": "RBAC: allowed by ClusterRoleBinding \"nncp-readers\" of ClusterRole \"view\" to User \"jane\""})
        } else {
            json!({"allowed": false})
        },
    })
}
