//! Bearer tokens and access reviewed by a kube-apiserver
//! (`--authentication-kubeconfig`, `--authorization-kubeconfig`), here a
//! test double speaking `authentication.k8s.io/v1` TokenReview and
//! `authorization.k8s.io/v1` SubjectAccessReview over HTTPS. A token bound
//! to node a gets node a's rights (decided locally); an unknown token gets
//! 401; another user gets what the double's RBAC says; answers are cached,
//! so repeated requests ask once.
#![allow(clippy::unwrap_used)]

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use nmstate_apiserver::{kubeconfig::Kubeconfig, tls::ClientCert};
use nmstate_e2e::apiserver::ApiserverProcess;
use serde_json::{Value, json};

const STATES: &str = "/apis/nmstate.io/v1/nodenetworkstates";
const POLICIES: &str = "/apis/nmstate.io/v1/nodenetworkconfigurationpolicies";

/// A stand-in for kube-apiserver's review endpoints: token `node-a-token`
/// belongs to a service account bound to node a, `jane-token` to jane;
/// every other token is unknown. Jane may get and list policies, nothing
/// else. Counts the token reviews and access reviews it answers.
struct ReviewDouble {
    address: SocketAddr,
    ca_pem: String,
    reviews: Arc<Counters>,
}

#[derive(Default)]
struct Counters {
    tokens: AtomicUsize,
    access: AtomicUsize,
}

impl ReviewDouble {
    async fn start() -> Self {
        let (acceptor, ca_pem) = nmstate_e2e::pki::self_signed_acceptor();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let reviews = Arc::new(Counters::default());
        let counter = reviews.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                let counter = counter.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |request| {
                        let counter = counter.clone();
                        async move { Ok::<_, Infallible>(review(request, &counter).await) }
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
            reviews,
        }
    }

    fn reviews(&self) -> usize {
        self.reviews.tokens.load(Ordering::SeqCst)
    }

    fn access_reviews(&self) -> usize {
        self.reviews.access.load(Ordering::SeqCst)
    }

    /// A kubeconfig naming this double, with a client certificate it does
    /// not check.
    fn kubeconfig(&self, dir: &std::path::Path) -> std::path::PathBuf {
        // One kubeconfig serves for both flags.
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
            &format!("https://{}", self.address),
            &self.ca_pem,
            "nmstate-apiserver",
            &client,
        );
        let path = dir.join("authentication.kubeconfig");
        std::fs::write(&path, kubeconfig.to_yaml().unwrap()).unwrap();
        path
    }
}

async fn review(
    request: http::Request<hyper::body::Incoming>,
    counters: &Counters,
) -> http::Response<Full<Bytes>> {
    let path = request.uri().path().to_string();
    let body = request.into_body().collect().await.unwrap().to_bytes();
    // GETs (the authentication ConfigMap) have no body and get 404 below.
    let review: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let answer = match path.as_str() {
        "/apis/authentication.k8s.io/v1/tokenreviews" => {
            counters.tokens.fetch_add(1, Ordering::SeqCst);
            token_review(review)
        }
        "/apis/authorization.k8s.io/v1/subjectaccessreviews" => {
            counters.access.fetch_add(1, Ordering::SeqCst);
            access_review(review)
        }
        _ => {
            return http::Response::builder()
                .status(StatusCode::NOT_FOUND)
                .body(Full::new(Bytes::new()))
                .unwrap();
        }
    };
    http::Response::builder()
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(answer.to_string())))
        .unwrap()
}

fn access_review(review: Value) -> Value {
    let spec = &review["spec"];
    let attributes = &spec["resourceAttributes"];
    let allowed = spec["user"] == "jane"
        && attributes["resource"] == "nodenetworkconfigurationpolicies"
        && (attributes["verb"] == "get" || attributes["verb"] == "list");
    json!({
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": spec,
        "status": if allowed {
            json!({"allowed": true, "reason": "RBAC: allowed by ClusterRoleBinding \"nncp-readers\""})
        } else {
            json!({"allowed": false, "reason": "no RBAC policy matched"})
        },
    })
}

fn token_review(review: Value) -> Value {
    let status = match review["spec"]["token"].as_str() {
        Some("node-a-token") => json!({
            "authenticated": true,
            "user": {
                "username": "system:serviceaccount:nmstate:handler",
                "uid": "0c4a",
                "groups": ["system:serviceaccounts", "system:serviceaccounts:nmstate"],
                "extra": {"authentication.kubernetes.io/node-name": ["a"]},
            },
        }),
        Some("jane-token") => json!({
            "authenticated": true,
            "user": {"username": "jane", "groups": ["dev"]},
        }),
        _ => json!({"authenticated": false, "error": "invalid bearer token"}),
    };
    json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenReview",
        "spec": review["spec"],
        "status": status,
    })
}

#[tokio::test]
async fn bearer_tokens_are_reviewed_and_cached() {
    let double = ReviewDouble::start().await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = double.kubeconfig(dir.path());
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
    assert_eq!(double.reviews(), 1, "the answer is cached");

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
        "nodenetworkstates.nmstate.io \"b\" is forbidden: User \"system:serviceaccount:nmstate:handler\" cannot get resource \"nodenetworkstates\" in API group \"nmstate.io\" at the cluster scope: node \"a\" may only read its own NodeNetworkState"
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
    assert_eq!(double.reviews(), 2, "a no is cached too");

    let response = client.get(STATES).await.unwrap();
    assert_eq!(response.status, StatusCode::UNAUTHORIZED, "no token");
    assert_eq!(
        double.access_reviews(),
        0,
        "node identities are decided locally"
    );

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
    assert_eq!(double.access_reviews(), 1, "the answer is cached");
    let response = client
        .request_with("DELETE", &format!("{POLICIES}/p"), &jane, None)
        .await
        .unwrap();
    assert_eq!(response.status, StatusCode::FORBIDDEN, "{}", response.body);
    let status: Value = serde_json::from_str(&response.body).unwrap();
    assert_eq!(
        status["message"],
        "nodenetworkconfigurationpolicies.nmstate.io \"p\" is forbidden: User \"jane\" cannot delete resource \"nodenetworkconfigurationpolicies\" in API group \"nmstate.io\" at the cluster scope: no RBAC policy matched"
    );
    assert_eq!(double.access_reviews(), 2);
}
