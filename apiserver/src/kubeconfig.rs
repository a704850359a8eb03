//! Kubeconfig files for reaching a standalone server with kubectl:
//! `<data-dir>/admin.kubeconfig`, which the server writes at every start,
//! and the files the `kubeconfig` subcommand issues (node identities such as
//! `system:node:worker-1` in `system:nodes`). The same format is read for
//! `--authentication-kubeconfig` and `--authorization-kubeconfig`, whose
//! users may also carry a bearer `token` or `tokenFile`, and whose files
//! may be named by path instead of inlined.
//!
//! This module owns the file format and the URL a kubeconfig points at; the
//! certificates come from [`crate::tls::LocalCa`]. It touches no network.
//!
//! ```yaml
//! apiVersion: v1
//! kind: Config
//! clusters:
//! - name: nmstate
//!   cluster:
//!     server: https://127.0.0.1:6443
//!     certificate-authority-data: LS0tLS1CRUdJTi...
//! users:
//! - name: admin
//!   user:
//!     client-certificate-data: LS0tLS1CRUdJTi...
//!     client-key-data: LS0tLS1CRUdJTi...
//! contexts:
//! - name: nmstate
//!   context:
//!     cluster: nmstate
//!     user: admin
//! current-context: nmstate
//! ```

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
};

use base64::{Engine, engine::general_purpose::STANDARD as BASE64};
use serde::{Deserialize, Serialize};

use crate::tls::{self, ADMIN_USER, ClientCert, LocalCa};

/// The admin kubeconfig's file name under the data directory.
pub const ADMIN_KUBECONFIG: &str = "admin.kubeconfig";
/// The name of the cluster entry in generated kubeconfigs.
pub const CLUSTER: &str = "nmstate";
/// The name of the (only, current) context in generated kubeconfigs.
pub const CONTEXT: &str = "nmstate";

/// Kubeconfig errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The local CA or a client certificate failed.
    #[error(transparent)]
    Tls(#[from] tls::Error),
    /// A kubeconfig could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A kubeconfig is not valid YAML of the expected shape.
    #[error("{path}: not a kubeconfig: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_yaml::Error,
    },
    /// A kubeconfig could not be rendered as YAML.
    #[error("rendering kubeconfig: {0}")]
    Render(#[source] serde_yaml::Error),
    /// A kubeconfig lacks what is needed (context, cluster, server...).
    #[error("{path}: {message}")]
    Incomplete {
        /// The file.
        path: PathBuf,
        /// What is missing.
        message: String,
    },
    /// No server URL was given and there is no admin kubeconfig to take it
    /// from.
    #[error(
        "no --server given and {path} does not exist to take it from; pass --server https://HOST:PORT"
    )]
    NoServer {
        /// The admin kubeconfig that is missing.
        path: PathBuf,
    },
}

/// Kubeconfig result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The subset of kubectl's `Config` that generated files use. Reading
/// ignores the fields it does not know.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kubeconfig {
    /// Always `v1`.
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    /// Always `Config`.
    pub kind: String,
    /// Servers and the CA to trust them with.
    #[serde(default)]
    pub clusters: Vec<NamedCluster>,
    /// Client credentials.
    #[serde(default)]
    pub users: Vec<NamedUser>,
    /// Cluster and user pairs.
    #[serde(default)]
    pub contexts: Vec<NamedContext>,
    /// The context kubectl uses.
    #[serde(rename = "current-context", default)]
    pub current_context: String,
}

/// A `clusters[]` entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedCluster {
    /// Entry name.
    pub name: String,
    /// The cluster.
    pub cluster: Cluster,
}

/// Where the server is and which CA signed its certificate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Cluster {
    /// `https://host:port`.
    pub server: String,
    /// Base64 of the CA certificate PEM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_authority_data: Option<String>,
    /// A CA certificate file, when not inlined.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_authority: Option<String>,
}

/// A `users[]` entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedUser {
    /// Entry name.
    pub name: String,
    /// The credentials.
    pub user: User,
}

/// Client credentials: a client certificate, a bearer token, or both.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct User {
    /// Base64 of the client certificate PEM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate_data: Option<String>,
    /// Base64 of the client key PEM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key_data: Option<String>,
    /// A client certificate file, when not inlined.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<String>,
    /// A client key file, when not inlined.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key: Option<String>,
    /// A bearer token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// A file holding a bearer token, read again as it rotates (kubectl
    /// spells this field in camel case).
    #[serde(default, rename = "tokenFile", skip_serializing_if = "Option::is_none")]
    pub token_file: Option<String>,
}

impl std::fmt::Debug for User {
    // Keys and tokens stay out of logs and test failure messages.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("client_certificate_data", &self.client_certificate_data)
            .field("client_certificate", &self.client_certificate)
            .field("token_file", &self.token_file)
            .finish_non_exhaustive()
    }
}

/// A `contexts[]` entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedContext {
    /// Entry name.
    pub name: String,
    /// The pair.
    pub context: Context,
}

/// A cluster and user pair.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Context {
    /// A `clusters[].name`.
    pub cluster: String,
    /// A `users[].name`.
    pub user: String,
}

/// What the current context says, decoded: enough for a client to connect.
/// File paths are as written (relative ones are relative to the
/// kubeconfig's directory); inlined data wins over a file, as in kubectl.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    /// `https://host:port`.
    pub server: String,
    /// The CA certificate PEM, if given.
    pub ca_pem: Option<Vec<u8>>,
    /// The CA certificate file, if given.
    pub ca_file: Option<PathBuf>,
    /// The client certificate PEM, if given.
    pub client_cert_pem: Option<Vec<u8>>,
    /// The client certificate file, if given.
    pub client_cert_file: Option<PathBuf>,
    /// The client key PEM, if given.
    pub client_key_pem: Option<Vec<u8>>,
    /// The client key file, if given.
    pub client_key_file: Option<PathBuf>,
    /// The bearer token, if given.
    pub token: Option<String>,
    /// The bearer token file, if given.
    pub token_file: Option<PathBuf>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

impl Kubeconfig {
    /// A kubeconfig with one cluster `nmstate` at `server` trusted through
    /// `ca_pem`, one user `user_entry` with `cert`, and context `nmstate`
    /// tying them together as the current context.
    pub fn for_client(server: &str, ca_pem: &str, user_entry: &str, cert: &ClientCert) -> Self {
        Self {
            api_version: "v1".to_string(),
            kind: "Config".to_string(),
            clusters: vec![NamedCluster {
                name: CLUSTER.to_string(),
                cluster: Cluster {
                    server: server.to_string(),
                    certificate_authority_data: Some(BASE64.encode(ca_pem)),
                    certificate_authority: None,
                },
            }],
            users: vec![NamedUser {
                name: user_entry.to_string(),
                user: User {
                    client_certificate_data: Some(BASE64.encode(&cert.cert_pem)),
                    client_key_data: Some(BASE64.encode(&cert.key_pem)),
                    ..User::default()
                },
            }],
            contexts: vec![NamedContext {
                name: CONTEXT.to_string(),
                context: Context {
                    cluster: CLUSTER.to_string(),
                    user: user_entry.to_string(),
                },
            }],
            current_context: CONTEXT.to_string(),
        }
    }

    /// The YAML text.
    pub fn to_yaml(&self) -> Result<String> {
        serde_yaml::to_string(self).map_err(Error::Render)
    }

    /// Reads a kubeconfig file.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        serde_yaml::from_str(&text).map_err(|source| Error::Parse {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Writes the file atomically, readable by its owner only (it holds a
    /// private key). Returns whether anything changed: an identical file is
    /// left alone.
    pub fn write(&self, path: &Path) -> Result<bool> {
        let text = self.to_yaml()?;
        if std::fs::read(path).is_ok_and(|old| old == text.as_bytes()) {
            return Ok(false);
        }
        tls::write_private(path, text.as_bytes())?;
        Ok(true)
    }

    /// The current context's server, CA and client credentials, decoded
    /// (files named in it are not read). `Err` says what is missing or
    /// malformed.
    pub fn credentials(&self) -> Result<Credentials, String> {
        let context = self
            .contexts
            .iter()
            .find(|c| c.name == self.current_context)
            .ok_or_else(|| format!("no context {:?}", self.current_context))?;
        let cluster = self
            .clusters
            .iter()
            .find(|c| c.name == context.context.cluster)
            .ok_or_else(|| format!("no cluster {:?}", context.context.cluster))?;
        let user = self
            .users
            .iter()
            .find(|u| u.name == context.context.user)
            .ok_or_else(|| format!("no user {:?}", context.context.user))?;
        let decode = |field: &str, data: &Option<String>| -> Result<Option<Vec<u8>>, String> {
            data.as_deref()
                .map(|data| BASE64.decode(data).map_err(|e| format!("{field}: {e}")))
                .transpose()
        };
        Ok(Credentials {
            server: cluster.cluster.server.clone(),
            ca_pem: decode(
                "certificate-authority-data",
                &cluster.cluster.certificate_authority_data,
            )?,
            client_cert_pem: decode(
                "client-certificate-data",
                &user.user.client_certificate_data,
            )?,
            client_key_pem: decode("client-key-data", &user.user.client_key_data)?,
            ca_file: cluster
                .cluster
                .certificate_authority
                .as_ref()
                .map(PathBuf::from),
            client_cert_file: user.user.client_certificate.as_ref().map(PathBuf::from),
            client_key_file: user.user.client_key.as_ref().map(PathBuf::from),
            token: user.user.token.clone().filter(|token| !token.is_empty()),
            token_file: user.user.token_file.as_ref().map(PathBuf::from),
        })
    }
}

/// The URL clients on this machine reach a server bound to `addr` at: the
/// bind address itself, or `127.0.0.1` when bound to all addresses. Every
/// such host is named by the generated serving certificate (see
/// [`tls::default_hosts`]).
pub fn server_url(addr: SocketAddr) -> String {
    let ip = if addr.ip().is_unspecified() {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        addr.ip()
    };
    format!("https://{}", SocketAddr::new(ip, addr.port()))
}

/// `<data_dir>/admin.kubeconfig`.
pub fn admin_path(data_dir: &Path) -> PathBuf {
    data_dir.join(ADMIN_KUBECONFIG)
}

/// Writes `<data_dir>/admin.kubeconfig` for `server`, with the admin client
/// certificate (kept across restarts, see [`LocalCa::ensure_admin_cert`]).
/// The file is rewritten only when it changes, e.g. when the port does.
pub fn write_admin(data_dir: &Path, server: &str) -> Result<PathBuf> {
    let ca = LocalCa::load_or_create(data_dir)?;
    let cert = ca.ensure_admin_cert(data_dir)?;
    let path = admin_path(data_dir);
    if Kubeconfig::for_client(server, ca.cert_pem(), ADMIN_USER, &cert).write(&path)? {
        tracing::info!(path = %path.display(), server, "wrote admin kubeconfig");
    }
    Ok(path)
}

/// What the `kubeconfig` subcommand is asked for, already checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssueRequest {
    /// The server's data directory (where the local CA is).
    pub data_dir: PathBuf,
    /// The user name (certificate CN).
    pub user: String,
    /// The groups (certificate O).
    pub groups: Vec<String>,
    /// The kubeconfig file to write.
    pub out: PathBuf,
    /// The server URL; the admin kubeconfig's when `None`.
    pub server: Option<String>,
}

/// Issues a client certificate from the local CA and writes a kubeconfig
/// with it to `request.out` (mode 0600).
pub fn issue(request: &IssueRequest) -> Result<()> {
    let ca = LocalCa::load(&request.data_dir)?;
    let server = match &request.server {
        Some(server) => server.clone(),
        None => admin_server(&request.data_dir)?,
    };
    let cert = ca.issue_client_cert(&request.user, &request.groups)?;
    Kubeconfig::for_client(&server, ca.cert_pem(), &request.user, &cert).write(&request.out)?;
    tracing::info!(
        path = %request.out.display(),
        user = request.user,
        groups = ?request.groups,
        server,
        "wrote kubeconfig"
    );
    Ok(())
}

/// The server URL of the admin kubeconfig in `data_dir`.
fn admin_server(data_dir: &Path) -> Result<String> {
    let path = admin_path(data_dir);
    if !path.exists() {
        return Err(Error::NoServer { path });
    }
    let credentials =
        Kubeconfig::read(&path)?
            .credentials()
            .map_err(|message| Error::Incomplete {
                path: path.clone(),
                message,
            })?;
    Ok(credentials.server)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use rustls_pki_types::{CertificateDer, pem::PemObject};

    use super::*;
    use crate::tls::x509;

    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn server_urls() {
        let check = |bind: &str, expected: &str| {
            assert_eq!(server_url(bind.parse().unwrap()), expected, "bind {bind}");
        };
        check("0.0.0.0:6443", "https://127.0.0.1:6443");
        check("[::]:6443", "https://127.0.0.1:6443");
        check("127.0.0.1:8443", "https://127.0.0.1:8443");
        check("[::1]:6443", "https://[::1]:6443");
        check("10.1.2.3:6443", "https://10.1.2.3:6443");
        check("[fd00::7]:6443", "https://[fd00::7]:6443");
    }

    #[test]
    fn admin_kubeconfig_has_kubectls_shape() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_admin(dir.path(), "https://127.0.0.1:6443").unwrap();
        assert_eq!(path, dir.path().join("admin.kubeconfig"));
        assert_eq!(mode(&path), 0o600);

        let text = std::fs::read_to_string(&path).unwrap();
        let yaml: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
        let ca_pem = std::fs::read_to_string(dir.path().join("pki/ca.crt")).unwrap();
        let admin_pem = std::fs::read_to_string(dir.path().join("pki/admin.crt")).unwrap();
        let decode = |value: &serde_yaml::Value| {
            String::from_utf8(BASE64.decode(value.as_str().unwrap()).unwrap()).unwrap()
        };
        assert_eq!(yaml["apiVersion"], "v1");
        assert_eq!(yaml["kind"], "Config");
        assert_eq!(yaml["current-context"], "nmstate");
        assert_eq!(yaml["contexts"][0]["name"], "nmstate");
        assert_eq!(yaml["contexts"][0]["context"]["cluster"], "nmstate");
        assert_eq!(yaml["contexts"][0]["context"]["user"], "admin");
        assert_eq!(yaml["clusters"][0]["name"], "nmstate");
        assert_eq!(
            yaml["clusters"][0]["cluster"]["server"],
            "https://127.0.0.1:6443"
        );
        assert_eq!(
            decode(&yaml["clusters"][0]["cluster"]["certificate-authority-data"]),
            ca_pem
        );
        assert_eq!(yaml["users"][0]["name"], "admin");
        assert_eq!(
            decode(&yaml["users"][0]["user"]["client-certificate-data"]),
            admin_pem
        );
        let key_pem = decode(&yaml["users"][0]["user"]["client-key-data"]);
        assert!(
            key_pem.starts_with("-----BEGIN PRIVATE KEY-----"),
            "{key_pem}"
        );

        let credentials = Kubeconfig::read(&path).unwrap().credentials().unwrap();
        let der = CertificateDer::from_pem_slice(&credentials.client_cert_pem.unwrap()).unwrap();
        let user = x509::subject(&der).unwrap();
        assert_eq!(user.name, "admin");
        assert_eq!(user.groups, ["system:masters"]);
    }

    #[test]
    fn admin_kubeconfig_follows_the_port_and_keeps_the_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_admin(dir.path(), "https://127.0.0.1:6443").unwrap();
        let first = Kubeconfig::read(&path).unwrap();
        let modified = std::fs::metadata(&path).unwrap().modified().unwrap();

        write_admin(dir.path(), "https://127.0.0.1:6443").unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().modified().unwrap(),
            modified,
            "an unchanged kubeconfig is not rewritten"
        );

        write_admin(dir.path(), "https://127.0.0.1:7443").unwrap();
        let second = Kubeconfig::read(&path).unwrap();
        assert_eq!(second.clusters[0].cluster.server, "https://127.0.0.1:7443");
        assert_eq!(second.users, first.users, "the admin certificate is kept");
        assert_eq!(mode(&path), 0o600);
    }

    #[test]
    fn issued_kubeconfig_names_the_node() {
        let dir = tempfile::tempdir().unwrap();
        write_admin(dir.path(), "https://10.0.0.1:6443").unwrap();
        let out = dir.path().join("nodes/worker-1.kubeconfig");
        issue(&IssueRequest {
            data_dir: dir.path().to_path_buf(),
            user: "system:node:worker-1".into(),
            groups: vec!["system:nodes".into()],
            out: out.clone(),
            server: None,
        })
        .unwrap();
        assert_eq!(mode(&out), 0o600);
        let kubeconfig = Kubeconfig::read(&out).unwrap();
        assert_eq!(kubeconfig.users[0].name, "system:node:worker-1");
        let credentials = kubeconfig.credentials().unwrap();
        assert_eq!(
            credentials.server, "https://10.0.0.1:6443",
            "the admin kubeconfig's server by default"
        );
        let der = CertificateDer::from_pem_slice(&credentials.client_cert_pem.unwrap()).unwrap();
        let user = x509::subject(&der).unwrap();
        assert_eq!(user.name, "system:node:worker-1");
        assert_eq!(user.groups, ["system:nodes"]);
    }

    #[test]
    fn bearer_token_users_are_read() {
        let yaml = r#"
apiVersion: v1
kind: Config
clusters:
- name: c
  cluster:
    server: https://10.96.0.1:443
    certificate-authority: /var/run/secrets/kubernetes.io/serviceaccount/ca.crt
users:
- name: u
  user:
    token: static
    tokenFile: token
contexts:
- name: x
  context: {cluster: c, user: u}
current-context: x
"#;
        let kubeconfig: Kubeconfig = serde_yaml::from_str(yaml).unwrap();
        let credentials = kubeconfig.credentials().unwrap();
        assert_eq!(credentials.server, "https://10.96.0.1:443");
        assert_eq!(credentials.ca_pem, None);
        assert_eq!(
            credentials.ca_file,
            Some("/var/run/secrets/kubernetes.io/serviceaccount/ca.crt".into())
        );
        assert_eq!(credentials.token.as_deref(), Some("static"));
        assert_eq!(credentials.token_file, Some("token".into()));
        assert_eq!(credentials.client_cert_pem, None);
        let debug = format!("{:?}", kubeconfig.users[0].user);
        assert!(!debug.contains("static"), "no token in {debug}");
    }

    #[test]
    fn issue_explains_what_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let request = IssueRequest {
            data_dir: dir.path().to_path_buf(),
            user: "u".into(),
            groups: vec![],
            out: dir.path().join("u.kubeconfig"),
            server: None,
        };
        let err = issue(&request).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "no local CA at {}: start nmstate-apiserver once with --data-dir {} \
                 (and without --tls-cert-file) to create it",
                dir.path().join("pki/ca.crt").display(),
                dir.path().display()
            )
        );

        LocalCa::load_or_create(dir.path()).unwrap();
        let err = issue(&request).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "no --server given and {} does not exist to take it from; \
                 pass --server https://HOST:PORT",
                dir.path().join("admin.kubeconfig").display()
            )
        );

        issue(&IssueRequest {
            server: Some("https://nmstate.example:6443".into()),
            ..request.clone()
        })
        .unwrap();
        assert!(request.out.exists());
        assert!(!dir.path().join("admin.kubeconfig").exists());
    }
}
