//! How this server reaches kube-apiserver for its reviews (TokenReview,
//! SubjectAccessReview) and the authentication ConfigMap: through a
//! kubeconfig (`--authentication-kubeconfig`, `--authorization-kubeconfig`)
//! or, in a pod without those flags, with the pod's service account, as
//! client-go's in-cluster configuration does.
//!
//! This file owns the HTTPS client and its credentials: a client
//! certificate, a bearer token, or a token file that is read again as the
//! kubelet rotates it. It does not know what the requests mean.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject};

use crate::kubeconfig::Kubeconfig;

/// Where the kubelet mounts a pod's service-account token and the cluster
/// CA.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// How long a token read from a file is used before the file is read again
/// (client-go's cached file token source does the same); a changed file is
/// read at once.
pub const TOKEN_REFRESH: Duration = Duration::from_secs(60);
/// Plain JSON.
const JSON: &str = "application/json";
/// How long one request to kube-apiserver may take (not the server's own
/// `--request-timeout`, nor etcd's).
const CLUSTER_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Cluster access errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The credentials (kubeconfig, service-account files) could not be
    /// loaded or name no usable cluster.
    #[error("{origin}: {message}")]
    Credentials {
        /// Where they came from: `kubeconfig PATH` or the service-account
        /// directory.
        origin: String,
        /// Why.
        message: String,
    },
    /// The request failed (connection, TLS, HTTP, timeout).
    #[error("review request failed: {0}")]
    Review(String),
}

/// Cluster access result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where the credentials to reach kube-apiserver come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClusterAccess {
    /// A kubeconfig file's current context.
    Kubeconfig(PathBuf),
    /// The service account of the pod this server runs in.
    InCluster(InCluster),
}

impl std::fmt::Display for ClusterAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClusterAccess::Kubeconfig(path) => write!(f, "kubeconfig {}", path.display()),
            ClusterAccess::InCluster(in_cluster) => write!(
                f,
                "in-cluster service account {}",
                in_cluster.token_file.display()
            ),
        }
    }
}

/// In-cluster access: `https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT`,
/// verified with the service account's `ca.crt`, authenticated with its
/// `token`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InCluster {
    /// `https://host:port`, an IPv6 host in brackets.
    pub server: String,
    /// The bearer token file (rotated by the kubelet).
    pub token_file: PathBuf,
    /// The CA bundle kube-apiserver's serving certificate chains to.
    pub ca_file: PathBuf,
}

impl InCluster {
    /// The in-cluster access of a pod whose environment names
    /// kube-apiserver's Service `host` and `port` and whose service-account
    /// directory `dir` holds `token` and `ca.crt`. `None` outside a pod
    /// (no host or port) or without a mounted service account; `Err` for a
    /// port that is no port number.
    pub fn detect(
        host: Option<&str>,
        port: Option<&str>,
        dir: &Path,
    ) -> Result<Option<Self>, String> {
        let (Some(host), Some(port)) = (
            host.map(str::trim).filter(|host| !host.is_empty()),
            port.map(str::trim).filter(|port| !port.is_empty()),
        ) else {
            return Ok(None);
        };
        let port: u16 = port
            .parse()
            .map_err(|_| format!("{port:?} is not a port number"))?;
        let token_file = dir.join("token");
        let ca_file = dir.join("ca.crt");
        if !token_file.is_file() || !ca_file.is_file() {
            tracing::warn!(
                dir = %dir.display(),
                "KUBERNETES_SERVICE_HOST is set but no service-account token and ca.crt are mounted: bearer tokens and delegated authorization stay off"
            );
            return Ok(None);
        }
        Ok(Some(Self {
            server: server_url(host, port),
            token_file,
            ca_file,
        }))
    }
}

/// `https://host:port`, with an IPv6 host in brackets.
pub fn server_url(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("https://[{host}]:{port}")
    } else {
        format!("https://{host}:{port}")
    }
}

/// What a file looked like when it was read; a different look means it was
/// replaced (the kubelet swaps a symlink to a new file).
#[derive(Clone, Debug, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

impl FileStamp {
    fn of(path: &Path) -> Option<Self> {
        use std::os::unix::fs::MetadataExt;
        let metadata = std::fs::metadata(path).ok()?;
        Some(Self {
            modified: metadata.modified().ok(),
            len: metadata.len(),
            inode: metadata.ino(),
        })
    }
}

/// A bearer token kept in a file that is replaced as it rotates: read again
/// every [`TOKEN_REFRESH`] and whenever the file changed. When a read
/// fails, the last token read (or the kubeconfig's `token`) stays in use.
#[derive(Debug)]
pub struct TokenFile {
    path: PathBuf,
    state: Mutex<TokenState>,
}

#[derive(Default)]
struct TokenState {
    token: Option<String>,
    read: Option<(Instant, Option<FileStamp>)>,
}

impl std::fmt::Debug for TokenState {
    // The token stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenState")
            .field("read", &self.read)
            .finish_non_exhaustive()
    }
}

impl TokenFile {
    /// A token file, with `fallback` used until a read succeeds.
    pub fn new(path: PathBuf, fallback: Option<String>) -> Self {
        Self {
            path,
            state: Mutex::new(TokenState {
                token: fallback,
                read: None,
            }),
        }
    }

    /// The current token, read from the file when it is due; `None` when
    /// it was never read and there is no fallback.
    pub fn token(&self) -> Option<String> {
        self.token_at(Instant::now())
    }

    fn token_at(&self, now: Instant) -> Option<String> {
        let stamp = FileStamp::of(&self.path);
        // The state holds no invariant a panic could break.
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // A file that is still missing is tried again only when due, so a
        // lost mount does not cost a read and a warning per request.
        let fresh = state.read.as_ref().is_some_and(|(read_at, read_stamp)| {
            now.saturating_duration_since(*read_at) < TOKEN_REFRESH && *read_stamp == stamp
        });
        if !fresh {
            match std::fs::read_to_string(&self.path) {
                Ok(text) if !text.trim().is_empty() => {
                    state.token = Some(text.trim().to_string());
                }
                Ok(_) => {
                    tracing::warn!(path = %self.path.display(), "token file is empty; keeping the last token")
                }
                Err(e) => {
                    tracing::warn!(path = %self.path.display(), error = %e, "cannot read token file; keeping the last token")
                }
            }
            state.read = Some((now, stamp));
        }
        state.token.clone()
    }
}

/// Where a request's bearer token comes from.
#[derive(Debug)]
enum Bearer {
    /// A kubeconfig's `token`.
    Static(String),
    /// A token file: the service account's, or a kubeconfig's `tokenFile`.
    File(TokenFile),
}

impl Bearer {
    fn token(&self) -> Option<String> {
        match self {
            Bearer::Static(token) => Some(token.clone()),
            Bearer::File(file) => file.token(),
        }
    }
}

/// An HTTPS client for kube-apiserver's review APIs (TokenReview,
/// SubjectAccessReview) and the authentication ConfigMap.
pub struct ReviewClient {
    server: String,
    authority: String,
    server_name: ServerName<'static>,
    tls: Arc<rustls::ClientConfig>,
    bearer: Option<Bearer>,
}

impl std::fmt::Debug for ReviewClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReviewClient")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

/// What a client needs, decoded, before it is built.
struct Parts {
    server: String,
    ca_pem: Vec<u8>,
    identity: Option<(Vec<u8>, Vec<u8>)>,
    bearer: Option<Bearer>,
}

impl ReviewClient {
    /// A client for `access`.
    pub fn new(access: &ClusterAccess) -> Result<Self> {
        let origin = access.to_string();
        let error = |message: String| Error::Credentials {
            origin: origin.clone(),
            message,
        };
        let parts = match access {
            ClusterAccess::Kubeconfig(path) => kubeconfig_parts(path).map_err(error)?,
            ClusterAccess::InCluster(in_cluster) => in_cluster_parts(in_cluster).map_err(error)?,
        };
        Self::build(parts).map_err(error)
    }

    fn build(parts: Parts) -> Result<Self, String> {
        let authority = parts
            .server
            .strip_prefix("https://")
            .map(|rest| rest.trim_end_matches('/').to_string())
            .ok_or_else(|| format!("server {} is not https://", parts.server))?;
        let host = match authority.parse::<SocketAddr>() {
            Ok(address) => address.ip().to_string(),
            Err(_) => authority
                .rsplit_once(':')
                .map_or(authority.as_str(), |(host, _)| host)
                .to_string(),
        };
        let server_name = ServerName::try_from(host).map_err(|e| e.to_string())?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&parts.ca_pem) {
            let cert = cert.map_err(|e| format!("certificate authority: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| format!("certificate authority: {e}"))?;
        }
        if roots.is_empty() {
            return Err("no certificate authority to verify the server with".into());
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots);
        let tls = match parts.identity {
            Some((cert, key)) => {
                let chain = CertificateDer::pem_slice_iter(&cert)
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(|e| format!("client certificate: {e}"))?;
                let key =
                    PrivateKeyDer::from_pem_slice(&key).map_err(|e| format!("client key: {e}"))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| e.to_string())?
            }
            None => builder.with_no_client_auth(),
        };
        Ok(Self {
            server: parts.server,
            authority,
            server_name,
            tls: Arc::new(tls),
            bearer: parts.bearer,
        })
    }

    /// The server's URL, for logs.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// POSTs a review object to `path` and decodes the answer, within the
    /// request timeout.
    pub async fn post<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<T> {
        let (status, bytes) = self
            .exchange(http::Method::POST, path, Some(body), JSON)
            .await?;
        decode(status, &bytes)
    }

    /// GETs `path` and decodes the answer, within the request timeout;
    /// `None` when the server answers 404 Not Found.
    pub async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<Option<T>> {
        self.get_as(path, JSON).await
    }

    /// Like [`Self::get`], asking for the representation `accept` (e.g.
    /// `application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1`,
    /// only the objects' metadata).
    pub async fn get_as<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        accept: &str,
    ) -> Result<Option<T>> {
        let (status, bytes) = self.exchange(http::Method::GET, path, None, accept).await?;
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
        accept: &str,
    ) -> Result<(http::StatusCode, Bytes)> {
        tokio::time::timeout(
            CLUSTER_REQUEST_TIMEOUT,
            self.send(method, path, body, accept),
        )
        .await
        .map_err(|_| Error::Review(format!("no answer within {CLUSTER_REQUEST_TIMEOUT:?}")))?
    }

    async fn send(
        &self,
        method: http::Method,
        path: &str,
        body: Option<&serde_json::Value>,
        accept: &str,
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
            .header(http::header::ACCEPT, accept);
        if body.is_some() {
            request = request.header(http::header::CONTENT_TYPE, "application/json");
        }
        if let Some(token) = self.bearer.as_ref().and_then(Bearer::token) {
            let mut value = http::HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| Error::Review("the bearer token is not a valid header".into()))?;
            value.set_sensitive(true);
            request = request.header(http::header::AUTHORIZATION, value);
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

/// The server, CA and credentials of a kubeconfig's current context; file
/// paths in it are relative to the kubeconfig's directory, as kubectl
/// reads them.
fn kubeconfig_parts(path: &Path) -> Result<Parts, String> {
    let credentials = Kubeconfig::read(path)
        .map_err(|e| e.to_string())?
        .credentials()?;
    let base = path.parent().unwrap_or(Path::new("."));
    let read = |field: &str, file: &Path| {
        let file = base.join(file);
        std::fs::read(&file).map_err(|e| format!("{field} {}: {e}", file.display()))
    };
    let ca_pem = match (credentials.ca_pem, &credentials.ca_file) {
        (Some(pem), _) => pem,
        (None, Some(file)) => read("certificate-authority", file)?,
        (None, None) => return Err("no certificate-authority-data or certificate-authority".into()),
    };
    let cert = match (credentials.client_cert_pem, &credentials.client_cert_file) {
        (Some(pem), _) => Some(pem),
        (None, Some(file)) => Some(read("client-certificate", file)?),
        (None, None) => None,
    };
    let key = match (credentials.client_key_pem, &credentials.client_key_file) {
        (Some(pem), _) => Some(pem),
        (None, Some(file)) => Some(read("client-key", file)?),
        (None, None) => None,
    };
    let identity = match (cert, key) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        _ => return Err("a client certificate needs its key and a key its certificate".into()),
    };
    // As client-go: a tokenFile is read periodically and wins over token,
    // which only stands in until the file could be read.
    let bearer = match (credentials.token_file, credentials.token) {
        (Some(file), token) => {
            let file = TokenFile::new(base.join(file), token);
            if file.token().is_none() {
                return Err(format!(
                    "tokenFile {}: cannot be read or is empty",
                    file.path.display()
                ));
            }
            Some(Bearer::File(file))
        }
        (None, Some(token)) => Some(Bearer::Static(token)),
        (None, None) => None,
    };
    Ok(Parts {
        server: credentials.server,
        ca_pem,
        identity,
        bearer,
    })
}

/// The service account's CA and token (read once now, so that a start
/// without them fails at once).
fn in_cluster_parts(in_cluster: &InCluster) -> Result<Parts, String> {
    let ca_pem = std::fs::read(&in_cluster.ca_file)
        .map_err(|e| format!("{}: {e}", in_cluster.ca_file.display()))?;
    let token = TokenFile::new(in_cluster.token_file.clone(), None);
    if token.token().is_none() {
        return Err(format!(
            "{}: cannot be read or is empty",
            in_cluster.token_file.display()
        ));
    }
    Ok(Parts {
        server: in_cluster.server.clone(),
        ca_pem,
        identity: None,
        bearer: Some(Bearer::File(token)),
    })
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn in_cluster_needs_host_port_and_the_mounted_files() {
        let dir = tempfile::tempdir().unwrap();
        let detect =
            |host: Option<&str>, port: Option<&str>| InCluster::detect(host, port, dir.path());
        assert_eq!(detect(None, None), Ok(None), "not in a pod");
        assert_eq!(detect(Some("10.96.0.1"), None), Ok(None));
        assert_eq!(detect(Some(""), Some("443")), Ok(None));
        assert_eq!(
            detect(Some("10.96.0.1"), Some("443")),
            Ok(None),
            "no service account mounted"
        );
        std::fs::write(dir.path().join("token"), "t").unwrap();
        std::fs::write(dir.path().join("ca.crt"), "c").unwrap();
        assert_eq!(
            detect(Some("10.96.0.1"), Some("443")),
            Ok(Some(InCluster {
                server: "https://10.96.0.1:443".into(),
                token_file: dir.path().join("token"),
                ca_file: dir.path().join("ca.crt"),
            }))
        );
        assert_eq!(
            detect(Some("fd00:10:96::1"), Some("443"))
                .unwrap()
                .unwrap()
                .server,
            "https://[fd00:10:96::1]:443",
            "IPv6 hosts in brackets"
        );
        assert_eq!(
            detect(Some("10.96.0.1"), Some("https")),
            Err("\"https\" is not a port number".into())
        );
    }

    #[test]
    fn token_files_are_read_again_when_due_or_changed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        // The kubelet replaces the file rather than writing into it.
        let rotate = |token: &str| {
            let next = dir.path().join("token.next");
            std::fs::write(&next, token).unwrap();
            std::fs::rename(&next, &path).unwrap();
        };
        let file = TokenFile::new(path.clone(), Some("from-kubeconfig".into()));
        let start = Instant::now();
        assert_eq!(
            file.token_at(start).as_deref(),
            Some("from-kubeconfig"),
            "the fallback until the file exists"
        );
        rotate("one\n");
        assert_eq!(file.token_at(start).as_deref(), Some("one"));
        rotate("two");
        assert_eq!(
            file.token_at(start).as_deref(),
            Some("two"),
            "a replaced file is read at once"
        );
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            file.token_at(start + TOKEN_REFRESH).as_deref(),
            Some("two"),
            "the last token while the file is gone"
        );
        rotate("three");
        assert_eq!(
            file.token_at(start + TOKEN_REFRESH * 2).as_deref(),
            Some("three")
        );
    }

    #[test]
    fn token_files_are_reused_for_a_minute() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "one").unwrap();
        let file = TokenFile::new(path.clone(), None);
        let start = Instant::now();
        assert_eq!(file.token_at(start).as_deref(), Some("one"));
        // Write into the file without changing what stat shows (same
        // inode, length and modification time): it is not read again
        // before the minute is up.
        let before = FileStamp::of(&path).unwrap();
        std::fs::write(&path, "uno").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(before.modified.unwrap())
            .unwrap();
        assert_eq!(FileStamp::of(&path), Some(before));
        assert_eq!(
            file.token_at(start + Duration::from_secs(59)).as_deref(),
            Some("one")
        );
        assert_eq!(
            file.token_at(start + TOKEN_REFRESH).as_deref(),
            Some("uno"),
            "read again after a minute"
        );
    }

    #[test]
    fn server_urls_bracket_ipv6() {
        assert_eq!(server_url("10.0.0.1", 443), "https://10.0.0.1:443");
        assert_eq!(server_url("::1", 6443), "https://[::1]:6443");
        assert_eq!(server_url("[::1]", 6443), "https://[::1]:6443");
        assert_eq!(
            server_url("kubernetes.default.svc", 443),
            "https://kubernetes.default.svc:443"
        );
    }
}
