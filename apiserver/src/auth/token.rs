//! Bearer tokens, delegated: the server asks the kube-apiserver named in
//! `--authentication-kubeconfig` with a `authentication.k8s.io/v1`
//! TokenReview who a token belongs to, and remembers the answer for
//! [`CACHE_TTL`], as Kubernetes' delegating authenticator does.
//!
//! This file owns the review client and its cache; it does not decide what
//! the user may do.

use std::{
    collections::{BTreeMap, HashMap},
    net::SocketAddr,
    path::Path,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject};
use serde::Deserialize;
use tokio::time::Instant;

use super::UserInfo;
use crate::kubeconfig::Kubeconfig;

/// How long an answer (yes or no) is reused.
pub const CACHE_TTL: Duration = Duration::from_secs(10);
/// How long one review may take.
const REVIEW_TIMEOUT: Duration = Duration::from_secs(10);
/// Most tokens remembered; the cache is emptied when it grows past this.
const CACHE_CAPACITY: usize = 4096;

/// Token review errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The kubeconfig could not be read or names no usable cluster.
    #[error("kubeconfig {path}: {message}")]
    Kubeconfig {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
    /// The review request failed (connection, TLS, HTTP, timeout).
    #[error("review request failed: {0}")]
    Review(String),
}

/// Token review result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Answers remembered per token, each until its deadline.
#[derive(Debug, Default)]
pub struct ReviewCache {
    entries: HashMap<String, (Instant, Option<UserInfo>)>,
}

impl ReviewCache {
    /// The remembered answer for `token`, if still fresh at `now`.
    pub fn get(&self, token: &str, now: Instant) -> Option<Option<UserInfo>> {
        self.entries
            .get(token)
            .filter(|(deadline, _)| now < *deadline)
            .map(|(_, user)| user.clone())
    }

    /// Remembers `user` (or "not authenticated") for `token` until
    /// `now + CACHE_TTL`.
    pub fn put(&mut self, token: &str, user: Option<UserInfo>, now: Instant) {
        if self.entries.len() >= CACHE_CAPACITY {
            self.entries.retain(|_, (deadline, _)| now < *deadline);
            if self.entries.len() >= CACHE_CAPACITY {
                self.entries.clear();
            }
        }
        self.entries
            .insert(token.to_string(), (now + CACHE_TTL, user));
    }
}

/// Reviews tokens with a kube-apiserver.
#[derive(Debug)]
pub struct TokenReviewer {
    client: ReviewClient,
    cache: Mutex<ReviewCache>,
}

/// An HTTPS client for kube-apiserver's review APIs (TokenReview,
/// SubjectAccessReview), from a kubeconfig.
pub struct ReviewClient {
    server: String,
    authority: String,
    server_name: ServerName<'static>,
    tls: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for ReviewClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReviewClient")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

impl TokenReviewer {
    /// A reviewer for the cluster and credentials of a kubeconfig.
    pub fn from_kubeconfig(path: &Path) -> Result<Self> {
        Ok(Self {
            client: ReviewClient::from_kubeconfig(path)?,
            cache: Mutex::new(ReviewCache::default()),
        })
    }

    /// The user `token` belongs to; `None` when the reviewer says it is
    /// not authenticated or cannot be asked (then nothing is remembered).
    pub async fn authenticate(&self, token: &str) -> Option<UserInfo> {
        let now = Instant::now();
        if let Some(answer) = self.lock().get(token, now) {
            return answer;
        }
        let body = serde_json::json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": {"token": token},
        });
        match self
            .client
            .post::<TokenReview>("/apis/authentication.k8s.io/v1/tokenreviews", &body)
            .await
        {
            Ok(review) => {
                let user = review.into_user();
                self.lock().put(token, user.clone(), Instant::now());
                user
            }
            Err(e) => {
                tracing::warn!(error = %e, server = self.client.server, "token review failed");
                None
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ReviewCache> {
        // The cache holds no invariant a panic could break.
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl ReviewClient {
    /// A client for the cluster and credentials of a kubeconfig.
    pub fn from_kubeconfig(path: &Path) -> Result<Self> {
        let error = |message: String| Error::Kubeconfig {
            path: path.display().to_string(),
            message,
        };
        let credentials = Kubeconfig::read(path)
            .map_err(|e| error(e.to_string()))?
            .credentials()
            .map_err(error)?;
        let authority = credentials
            .server
            .strip_prefix("https://")
            .map(|rest| rest.trim_end_matches('/').to_string())
            .ok_or_else(|| error(format!("server {} is not https://", credentials.server)))?;
        let host = match authority.parse::<SocketAddr>() {
            Ok(address) => address.ip().to_string(),
            Err(_) => authority
                .rsplit_once(':')
                .map_or(authority.as_str(), |(host, _)| host)
                .to_string(),
        };
        let server_name = ServerName::try_from(host).map_err(|e| error(e.to_string()))?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(credentials.ca_pem.as_deref().unwrap_or(&[])) {
            let cert = cert.map_err(|e| error(format!("certificate-authority-data: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| error(format!("certificate-authority-data: {e}")))?;
        }
        if roots.is_empty() {
            return Err(error("no certificate-authority-data".into()));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| error(e.to_string()))?
            .with_root_certificates(roots);
        let tls = match (credentials.client_cert_pem, credentials.client_key_pem) {
            (Some(cert), Some(key)) => {
                let chain = CertificateDer::pem_slice_iter(&cert)
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(|e| error(format!("client-certificate-data: {e}")))?;
                let key = PrivateKeyDer::from_pem_slice(&key)
                    .map_err(|e| error(format!("client-key-data: {e}")))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| error(e.to_string()))?
            }
            _ => builder.with_no_client_auth(),
        };
        Ok(Self {
            server: credentials.server,
            authority,
            server_name,
            tls: Arc::new(tls),
        })
    }

    /// The server's URL, for logs.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// POSTs a review object to `path` and decodes the answer, within the
    /// review timeout.
    pub async fn post<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<T> {
        let (status, bytes) = self.exchange(http::Method::POST, path, Some(body)).await?;
        decode(status, &bytes)
    }

    /// GETs `path` and decodes the answer, within the review timeout;
    /// `None` when the server answers 404 Not Found.
    pub async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<Option<T>> {
        let (status, bytes) = self.exchange(http::Method::GET, path, None).await?;
        if status == http::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        decode(status, &bytes).map(Some)
    }

    async fn exchange(
        &self,
        method: http::Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<(http::StatusCode, Bytes)> {
        tokio::time::timeout(REVIEW_TIMEOUT, self.send(method, path, body))
            .await
            .map_err(|_| Error::Review(format!("no answer within {REVIEW_TIMEOUT:?}")))?
    }

    async fn send(
        &self,
        method: http::Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<(http::StatusCode, Bytes)> {
        let failed = |e: &dyn std::fmt::Display| Error::Review(e.to_string());
        let tcp = tokio::net::TcpStream::connect(&self.authority)
            .await
            .map_err(|e| failed(&e))?;
        let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
            .connect(self.server_name.clone(), tcp)
            .await
            .map_err(|e| failed(&e))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| failed(&e))?;
        let connection = tokio::spawn(connection);
        let mut request = http::Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, &self.authority)
            .header(http::header::ACCEPT, "application/json");
        if body.is_some() {
            request = request.header(http::header::CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(Full::new(body.map_or_else(Bytes::new, |body| {
                Bytes::from(body.to_string())
            })))
            .map_err(|e| failed(&e))?;
        let response = sender.send_request(request).await.map_err(|e| failed(&e))?;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| failed(&e))?
            .to_bytes();
        drop(sender);
        connection.abort();
        Ok((status, bytes))
    }
}

/// Decodes a successful answer; any other status is an error naming it.
fn decode<T: serde::de::DeserializeOwned>(status: http::StatusCode, bytes: &[u8]) -> Result<T> {
    if !status.is_success() {
        return Err(Error::Review(format!(
            "{status}: {}",
            String::from_utf8_lossy(bytes)
        )));
    }
    serde_json::from_slice(bytes).map_err(|e| Error::Review(e.to_string()))
}

/// The parts of a TokenReview answer that matter here.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct TokenReview {
    status: TokenReviewStatus,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct TokenReviewStatus {
    authenticated: bool,
    user: ReviewedUser,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ReviewedUser {
    username: String,
    groups: Vec<String>,
    extra: BTreeMap<String, Vec<String>>,
}

impl TokenReview {
    fn into_user(self) -> Option<UserInfo> {
        let status = self.status;
        if !status.authenticated || status.user.username.is_empty() {
            return None;
        }
        Some(
            UserInfo {
                name: status.user.username,
                groups: status.user.groups,
                extra: status.user.extra,
            }
            .with_authenticated_group(),
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn answers_are_remembered_for_ten_seconds() {
        let mut cache = ReviewCache::default();
        let user = UserInfo {
            name: "u".into(),
            ..UserInfo::default()
        };
        let start = Instant::now();
        assert_eq!(cache.get("t", start), None);
        cache.put("t", Some(user.clone()), start);
        cache.put("bad", None, start);
        assert_eq!(cache.get("t", start), Some(Some(user.clone())));
        assert_eq!(
            cache.get("bad", start),
            Some(None),
            "a no is remembered too"
        );
        let later = |seconds| start + Duration::from_secs(seconds);
        assert_eq!(cache.get("t", later(9)), Some(Some(user)));
        assert_eq!(cache.get("t", later(10)), None, "expired after 10 s");
    }

    #[test]
    fn reviews_become_users() {
        let review: TokenReview = serde_json::from_value(serde_json::json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "status": {
                "authenticated": true,
                "user": {
                    "username": "system:serviceaccount:nmstate:handler",
                    "uid": "1",
                    "groups": ["system:serviceaccounts"],
                    "extra": {"authentication.kubernetes.io/node-name": ["a"]},
                },
            },
        }))
        .unwrap();
        let user = review.into_user().unwrap();
        assert_eq!(user.name, "system:serviceaccount:nmstate:handler");
        assert_eq!(
            user.groups,
            ["system:serviceaccounts", "system:authenticated"]
        );
        assert_eq!(user.extra["authentication.kubernetes.io/node-name"], ["a"]);
        let denied: TokenReview = serde_json::from_value(serde_json::json!({
            "status": {"authenticated": false, "error": "invalid bearer token"},
        }))
        .unwrap();
        assert_eq!(denied.into_user(), None);
    }
}
