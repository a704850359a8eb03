//! TLS material for the HTTPS server.
//!
//! Either the operator gives a certificate and key (`--tls-cert-file`,
//! `--tls-private-key-file`), or the server keeps a local CA and a serving
//! certificate under `<data-dir>/pki/`, creating them on first start and
//! renewing the serving certificate when it nears expiry or no longer names
//! the address the server is reached at. The local CA also issues client
//! certificates (the admin's, kept under `pki/`, and those of the
//! `kubeconfig` subcommand), and the rustls configuration asks clients for a
//! certificate from the client CA without requiring one.
//!
//! This module only reads and writes those files, issues certificates and
//! builds the rustls configuration; turning a verified certificate into a
//! user is `auth`'s job (with [`x509::subject`]), and it never decides who
//! may do what. It depends on no other module of the server.

use std::{
    fs,
    io::Write,
    net::IpAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, SystemTime},
};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};

pub mod x509;

/// How long a generated CA is valid.
const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// How long a generated serving certificate is valid.
const SERVING_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);
/// How long an issued client certificate is valid.
const CLIENT_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);
/// A generated serving or admin certificate is renewed at start when it
/// expires within this window.
const RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 3600);

/// The user of the generated admin client certificate.
pub const ADMIN_USER: &str = "admin";
/// The group whose members may do anything, as in Kubernetes: the group of
/// the generated admin client certificate.
pub const MASTERS_GROUP: &str = "system:masters";

/// TLS errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A certificate or key file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A PEM file holds no usable certificate or key.
    #[error("{path}: {message}")]
    BadPem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Certificate generation failed.
    #[error("generating {what}: {source}")]
    Generate {
        /// Which certificate.
        what: &'static str,
        /// The cause.
        #[source]
        source: rcgen::Error,
    },
    /// rustls refused the certificate or key.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client CA cannot verify client certificates.
    #[error("client CA {path}: {source}")]
    ClientVerifier {
        /// The CA file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: rustls::server::VerifierBuilderError,
    },
    /// A client certificate was asked for before the server ever created
    /// its local CA.
    #[error(
        "no local CA at {path}: start nmstate-apiserver once with --data-dir {data_dir} \
         (and without --tls-cert-file) to create it"
    )]
    NoLocalCa {
        /// The CA certificate that is missing.
        path: PathBuf,
        /// The data directory asked for.
        data_dir: PathBuf,
    },
    /// A client certificate cannot carry the identity asked for.
    #[error("client certificate for {user:?}: {message}")]
    BadIdentity {
        /// The user asked for.
        user: String,
        /// What is wrong.
        message: String,
    },
}

/// TLS result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where the serving certificate comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TlsSource {
    /// Operator-provided PEM files.
    Files {
        /// Certificate chain, leaf first.
        cert_file: PathBuf,
        /// The leaf's private key.
        key_file: PathBuf,
    },
    /// A local CA and serving certificate kept under `<data_dir>/pki/`.
    Generated {
        /// The server's data directory.
        data_dir: PathBuf,
        /// DNS names and IP addresses the certificate must name.
        hosts: Vec<String>,
    },
}

/// Which CA client certificates must chain to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientCa {
    /// Operator-provided CA bundle (`--client-ca-file`).
    File(PathBuf),
    /// The local CA under `<data_dir>/pki/` (standalone mode): the server
    /// also keeps an admin client certificate and writes
    /// `<data_dir>/admin.kubeconfig`.
    Local {
        /// The server's data directory.
        data_dir: PathBuf,
    },
    /// No client certificates are accepted: only the health endpoints
    /// answer until another authenticator exists.
    None,
}

/// The paths of the generated PKI under a data directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PkiPaths {
    /// The local CA certificate (also the trust root clients are given).
    pub ca_cert: PathBuf,
    /// The local CA key.
    pub ca_key: PathBuf,
    /// The serving certificate.
    pub serving_cert: PathBuf,
    /// The serving key.
    pub serving_key: PathBuf,
    /// The admin client certificate (CN `admin`, O `system:masters`).
    pub admin_cert: PathBuf,
    /// The admin client key.
    pub admin_key: PathBuf,
}

impl PkiPaths {
    /// The file names under `<data_dir>/pki/`.
    pub fn new(data_dir: &Path) -> Self {
        let pki = data_dir.join("pki");
        Self {
            ca_cert: pki.join("ca.crt"),
            ca_key: pki.join("ca.key"),
            serving_cert: pki.join("apiserver.crt"),
            serving_key: pki.join("apiserver.key"),
            admin_cert: pki.join("admin.crt"),
            admin_key: pki.join("admin.key"),
        }
    }
}

/// A client certificate and its key, as PEM text (what kubeconfig files
/// carry).
#[derive(Clone, PartialEq, Eq)]
pub struct ClientCert {
    /// The leaf certificate.
    pub cert_pem: String,
    /// Its private key (PKCS#8).
    pub key_pem: String,
}

impl std::fmt::Debug for ClientCert {
    // Keys stay out of logs and test failure messages.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCert")
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

/// A certificate chain and its key, ready for rustls.
#[derive(Debug)]
pub struct ServingCert {
    /// Leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf's key.
    pub key: PrivateKeyDer<'static>,
}

/// The hosts a generated serving certificate names by default: loopback
/// names, plus the bind address when it is a specific one (the address
/// generated kubeconfigs point at, see [`crate::kubeconfig::server_url`]).
pub fn default_hosts(bind: IpAddr) -> Vec<String> {
    let mut hosts = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    let named = bind.to_string();
    if !bind.is_unspecified() && !hosts.contains(&named) {
        hosts.push(named);
    }
    hosts
}

/// Loads the configured certificate, or creates/renews the generated one.
pub fn load_or_generate(source: &TlsSource) -> Result<ServingCert> {
    match source {
        TlsSource::Files {
            cert_file,
            key_file,
        } => load_pem_pair(cert_file, key_file),
        TlsSource::Generated { data_dir, hosts } => {
            let paths = PkiPaths::new(data_dir);
            let ca = ensure_ca(&paths)?;
            ensure_serving_cert(&paths, &ca, hosts)?;
            load_pem_pair(&paths.serving_cert, &paths.serving_key)
        }
    }
}

/// The rustls server configuration: HTTP/2 and HTTP/1.1 by ALPN, and a
/// client certificate asked for (not required) when there are client CA
/// files (the client CA and the front-proxy CA; which one a certificate
/// chains to is [`crate::auth::Authenticator::peer`]'s question).
///
/// A certificate that chains to none of them fails the handshake;
/// a client without one gets through, because the health endpoints answer
/// anyone (`curl -k .../readyz`) and other authenticators (bearer tokens,
/// front proxy) come later in the chain. Requests without an identity are
/// refused with 401 above TLS.
pub fn server_config(
    cert: ServingCert,
    client_ca_files: &[PathBuf],
) -> Result<Arc<rustls::ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?;
    let builder = match client_verifier(client_ca_files)? {
        None => builder.with_no_client_auth(),
        Some(verifier) => builder.with_client_cert_verifier(verifier),
    };
    let mut config = builder.with_single_cert(cert.chain, cert.key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

impl ClientCa {
    /// The CA bundle client certificates are verified against, if any.
    pub fn file(&self) -> Option<PathBuf> {
        match self {
            ClientCa::File(path) => Some(path.clone()),
            ClientCa::Local { data_dir } => Some(PkiPaths::new(data_dir).ca_cert),
            ClientCa::None => None,
        }
    }
}

/// A verifier of client certificates that chain to any CA in `ca_files`
/// (`None` when there are none). Clients without a certificate pass: they
/// are refused, or not, above TLS.
pub fn client_verifier(
    ca_files: &[PathBuf],
) -> Result<Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>> {
    let Some(first) = ca_files.first() else {
        return Ok(None);
    };
    let mut roots = rustls::RootCertStore::empty();
    for path in ca_files {
        for cert in read_certificates(path)? {
            roots
                .add(cert)
                .map_err(|e| bad_pem(path, format!("unusable CA certificate: {e}")))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
            .allow_unauthenticated()
            .build()
            .map_err(|source| Error::ClientVerifier {
                path: first.clone(),
                source,
            })?;
    Ok(Some(verifier))
}

/// The local CA kept under `<data_dir>/pki/`, able to issue client
/// certificates.
pub struct LocalCa {
    cert_pem: String,
    key: KeyPair,
}

impl std::fmt::Debug for LocalCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalCa")
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

impl LocalCa {
    /// Loads the CA a server created earlier in `data_dir`;
    /// [`Error::NoLocalCa`] when there is none.
    pub fn load(data_dir: &Path) -> Result<Self> {
        let paths = PkiPaths::new(data_dir);
        if !paths.ca_cert.exists() || !paths.ca_key.exists() {
            return Err(Error::NoLocalCa {
                path: paths.ca_cert,
                data_dir: data_dir.to_path_buf(),
            });
        }
        ensure_ca(&paths)
    }

    /// Loads the CA in `data_dir`, creating it when there is none.
    pub fn load_or_create(data_dir: &Path) -> Result<Self> {
        ensure_ca(&PkiPaths::new(data_dir))
    }

    /// The CA certificate (what clients trust the server with).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Issues a client certificate for `user` (CN) in `groups` (O), valid
    /// for a year, with the `clientAuth` extended key usage.
    ///
    /// At most one group: rcgen 0.14 keeps one value per attribute type in a
    /// subject (rustls/rcgen#81), and silently dropping groups would be
    /// worse than refusing.
    pub fn issue_client_cert(&self, user: &str, groups: &[String]) -> Result<ClientCert> {
        let bad = |message: &str| Error::BadIdentity {
            user: user.to_string(),
            message: message.to_string(),
        };
        if user.is_empty() {
            return Err(bad("the user name is empty"));
        }
        if groups.len() > 1 {
            return Err(bad(
                "at most one group can be encoded (the certificate library keeps one O per subject)",
            ));
        }
        if groups.iter().any(String::is_empty) {
            return Err(bad("a group name is empty"));
        }
        let issuer = self.issuer()?;
        let key = KeyPair::generate().map_err(|source| Error::Generate {
            what: "client key",
            source,
        })?;
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        for group in groups {
            name.push(DnType::OrganizationName, group.as_str());
        }
        name.push(DnType::CommonName, user);
        params.distinguished_name = name;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        set_validity(&mut params, CLIENT_VALIDITY);
        let cert = params
            .signed_by(&key, &issuer)
            .map_err(|source| Error::Generate {
                what: "client certificate",
                source,
            })?;
        Ok(ClientCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// The admin client certificate under `<data_dir>/pki/`: kept across
    /// restarts, issued anew when missing, unreadable, near expiry or signed
    /// by another CA.
    pub fn ensure_admin_cert(&self, data_dir: &Path) -> Result<ClientCert> {
        let paths = PkiPaths::new(data_dir);
        let groups = [MASTERS_GROUP.to_string()];
        if paths.admin_cert.exists() && paths.admin_key.exists() {
            let cert_pem = read_string(&paths.admin_cert)?;
            match client_cert_is_fresh(&cert_pem, &self.cert_pem, ADMIN_USER, &groups) {
                Ok(true) => {
                    let key_pem = read_string(&paths.admin_key)?;
                    return Ok(ClientCert { cert_pem, key_pem });
                }
                Ok(false) => tracing::info!(
                    "admin client certificate expires soon or is not from the local CA; renewing"
                ),
                Err(message) => {
                    tracing::warn!(%message, "admin client certificate unreadable; renewing")
                }
            }
        }
        let cert = self.issue_client_cert(ADMIN_USER, &groups)?;
        write_private(&paths.admin_key, cert.key_pem.as_bytes())?;
        write_public(&paths.admin_cert, cert.cert_pem.as_bytes())?;
        tracing::info!(path = %paths.admin_cert.display(), "generated admin client certificate");
        Ok(cert)
    }

    fn issuer(&self) -> Result<Issuer<'static, &KeyPair>> {
        Issuer::from_ca_cert_pem(&self.cert_pem, &self.key).map_err(|source| Error::Generate {
            what: "issuer from local CA",
            source,
        })
    }
}

fn load_pem_pair(cert_file: &Path, key_file: &Path) -> Result<ServingCert> {
    let chain = read_certificates(cert_file)?;
    let key_pem = read(key_file)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| bad_pem(key_file, format!("no usable private key: {e}")))?;
    Ok(ServingCert { chain, key })
}

/// Every certificate in a PEM file; at least one.
fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad_pem(path, format!("invalid certificate PEM: {e}")))?;
    if certs.is_empty() {
        return Err(bad_pem(path, "no certificate found".to_string()));
    }
    Ok(certs)
}

fn ensure_ca(paths: &PkiPaths) -> Result<LocalCa> {
    if paths.ca_cert.exists() && paths.ca_key.exists() {
        let cert_pem = read_string(&paths.ca_cert)?;
        let key_pem = read_string(&paths.ca_key)?;
        let key = KeyPair::from_pem(&key_pem)
            .map_err(|e| bad_pem(&paths.ca_key, format!("invalid CA key: {e}")))?;
        return Ok(LocalCa { cert_pem, key });
    }
    let key = KeyPair::generate().map_err(|source| Error::Generate {
        what: "CA key",
        source,
    })?;
    let mut params = CertificateParams::default();
    params.distinguished_name =
        distinguished_name(&format!("nmstate-apiserver-ca@{}", unix_now().as_secs()));
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    set_validity(&mut params, CA_VALIDITY);
    let cert = params.self_signed(&key).map_err(|source| Error::Generate {
        what: "CA certificate",
        source,
    })?;
    write_private(&paths.ca_key, key.serialize_pem().as_bytes())?;
    write_public(&paths.ca_cert, cert.pem().as_bytes())?;
    tracing::info!(path = %paths.ca_cert.display(), "generated local CA");
    Ok(LocalCa {
        cert_pem: cert.pem(),
        key,
    })
}

fn ensure_serving_cert(paths: &PkiPaths, ca: &LocalCa, hosts: &[String]) -> Result<()> {
    if paths.serving_cert.exists() && paths.serving_key.exists() {
        let pem = read(&paths.serving_cert)?;
        match serving_cert_is_fresh(&pem, hosts) {
            Ok(true) => return Ok(()),
            Ok(false) => {
                tracing::info!("serving certificate expires soon or misses a host; renewing")
            }
            Err(message) => tracing::warn!(%message, "serving certificate unreadable; renewing"),
        }
    }
    let issuer = ca.issuer()?;
    let key = KeyPair::generate().map_err(|source| Error::Generate {
        what: "serving key",
        source,
    })?;
    let mut params = CertificateParams::default();
    params.distinguished_name = distinguished_name("nmstate-apiserver");
    params.subject_alt_names = hosts.iter().map(|host| san(host)).collect::<Result<_>>()?;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    set_validity(&mut params, SERVING_VALIDITY);
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(|source| Error::Generate {
            what: "serving certificate",
            source,
        })?;
    // The chain carries the CA too, so clients that pin only the leaf's
    // issuer by name can still build the path.
    let chain = format!("{}{}", cert.pem(), ca.cert_pem);
    write_private(&paths.serving_key, key.serialize_pem().as_bytes())?;
    write_public(&paths.serving_cert, chain.as_bytes())?;
    tracing::info!(path = %paths.serving_cert.display(), ?hosts, "generated serving certificate");
    Ok(())
}

/// Whether a generated serving certificate can be kept: valid for longer
/// than [`RENEW_BEFORE`] and naming every host.
fn serving_cert_is_fresh(pem: &[u8], hosts: &[String]) -> Result<bool, String> {
    let der = CertificateDer::pem_slice_iter(pem)
        .next()
        .ok_or("no certificate")?
        .map_err(|e| e.to_string())?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).map_err(|e| e.to_string())?;
    let not_after = cert.validity().not_after.timestamp();
    let renew_at = unix_now().as_secs() as i64 + RENEW_BEFORE.as_secs() as i64;
    if not_after < renew_at {
        return Ok(false);
    }
    let mut named: Vec<String> = Vec::new();
    if let Ok(Some(sans)) = cert.subject_alternative_name() {
        for name in &sans.value.general_names {
            match name {
                x509_parser::extensions::GeneralName::DNSName(dns) => named.push(dns.to_string()),
                x509_parser::extensions::GeneralName::IPAddress(bytes) => {
                    if let Some(ip) = ip_from_bytes(bytes) {
                        named.push(ip.to_string());
                    }
                }
                _ => {}
            }
        }
    }
    Ok(hosts.iter().all(|host| {
        named
            .iter()
            .any(|n| match (host.parse::<IpAddr>(), n.parse::<IpAddr>()) {
                (Ok(a), Ok(b)) => a == b,
                _ => n.eq_ignore_ascii_case(host),
            })
    }))
}

/// Whether a kept client certificate can be used again: signed by the
/// current CA, valid for longer than [`RENEW_BEFORE`], and naming the same
/// user and groups.
fn client_cert_is_fresh(
    cert_pem: &str,
    ca_pem: &str,
    user: &str,
    groups: &[String],
) -> Result<bool, String> {
    let first_der = |pem: &str| -> Result<CertificateDer<'static>, String> {
        CertificateDer::pem_slice_iter(pem.as_bytes())
            .next()
            .ok_or("no certificate")?
            .map_err(|e| e.to_string())
    };
    let der = first_der(cert_pem)?;
    let ca_der = first_der(ca_pem)?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).map_err(|e| e.to_string())?;
    let (_, ca) = x509_parser::parse_x509_certificate(&ca_der).map_err(|e| e.to_string())?;
    let renew_at = unix_now().as_secs() as i64 + RENEW_BEFORE.as_secs() as i64;
    if cert.validity().not_after.timestamp() < renew_at
        || cert.issuer().as_raw() != ca.subject().as_raw()
        || cert.verify_signature(Some(ca.public_key())).is_err()
    {
        return Ok(false);
    }
    let identity = x509::subject(&der).map_err(|e| e.to_string())?;
    Ok(identity.name == user && identity.groups == groups)
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

fn san(host: &str) -> Result<SanType> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    let name = host
        .to_string()
        .try_into()
        .map_err(|source| Error::Generate {
            what: "serving certificate DNS name",
            source,
        })?;
    Ok(SanType::DnsName(name))
}

fn distinguished_name(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name
}

fn set_validity(params: &mut CertificateParams, validity: Duration) {
    let now = SystemTime::now();
    // Back-date by an hour to tolerate clock skew between machines.
    params.not_before = (now - Duration::from_secs(3600)).into();
    params.not_after = (now + validity).into();
}

fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
}

fn read(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn read_string(path: &Path) -> Result<String> {
    fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn bad_pem(path: &Path, message: String) -> Error {
    Error::BadPem {
        path: path.to_path_buf(),
        message,
    }
}

/// Writes a file readable by its owner only (keys, kubeconfigs), through a
/// temporary file and a rename.
pub(crate) fn write_private(path: &Path, contents: &[u8]) -> Result<()> {
    write_with_mode(path, contents, 0o600)
}

/// Writes a file readable by everyone (certificates).
fn write_public(path: &Path, contents: &[u8]) -> Result<()> {
    write_with_mode(path, contents, 0o644)
}

/// Writes through a temporary file and a rename, so a crash never leaves a
/// half-written key or certificate behind.
fn write_with_mode(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(io)?;
    }
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io)?;
    file.write_all(contents).map_err(io)?;
    file.sync_all().map_err(io)?;
    fs::rename(&tmp, path).map_err(io)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn generated(dir: &Path, hosts: &[&str]) -> TlsSource {
        TlsSource::Generated {
            data_dir: dir.to_path_buf(),
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
        }
    }

    #[test]
    fn generated_pki_is_kept_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let source = generated(dir.path(), &["localhost", "127.0.0.1"]);
        let first = load_or_generate(&source).unwrap();
        let second = load_or_generate(&source).unwrap();
        assert_eq!(
            first.chain, second.chain,
            "an unchanged host list must reuse the certificate"
        );
        assert_eq!(first.chain.len(), 2, "leaf and CA");
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let paths = PkiPaths::new(dir.path());
        assert_eq!(mode(&paths.ca_key), 0o600);
        assert_eq!(mode(&paths.serving_key), 0o600);
        server_config(first, &[]).unwrap();
    }

    #[test]
    fn new_host_renews_serving_cert_but_keeps_ca() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_generate(&generated(dir.path(), &["localhost"])).unwrap();
        let second = load_or_generate(&generated(dir.path(), &["localhost", "10.1.2.3"])).unwrap();
        assert_ne!(first.chain[0], second.chain[0]);
        assert_eq!(first.chain[1], second.chain[1], "the CA stays");
        let pem = fs::read(PkiPaths::new(dir.path()).serving_cert).unwrap();
        assert_eq!(
            serving_cert_is_fresh(&pem, &["10.1.2.3".into(), "localhost".into()]),
            Ok(true)
        );
        assert_eq!(
            serving_cert_is_fresh(&pem, &["example.com".into()]),
            Ok(false)
        );
    }

    #[test]
    fn default_hosts_name_a_specific_bind_address() {
        let check = |bind: &str, extra: Option<&str>| {
            let mut expected = vec!["localhost", "127.0.0.1", "::1"];
            expected.extend(extra);
            assert_eq!(
                default_hosts(bind.parse().unwrap()),
                expected,
                "bind {bind}"
            );
        };
        check("0.0.0.0", None);
        check("::", None);
        check("127.0.0.1", None);
        check("::1", None);
        check("127.0.0.5", Some("127.0.0.5"));
        check("10.1.2.3", Some("10.1.2.3"));
    }

    #[test]
    fn client_certificates_carry_user_and_group() {
        let dir = tempfile::tempdir().unwrap();
        let ca = LocalCa::load_or_create(dir.path()).unwrap();
        let check = |user: &str, groups: &[&str]| {
            let groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
            let cert = ca.issue_client_cert(user, &groups).unwrap();
            let der = CertificateDer::from_pem_slice(cert.cert_pem.as_bytes()).unwrap();
            let identity = x509::subject(&der).unwrap();
            assert_eq!((identity.name.as_str(), identity.groups), (user, groups));
            let (_, parsed) = x509_parser::parse_x509_certificate(&der).unwrap();
            let eku = parsed.extended_key_usage().unwrap().unwrap().value;
            assert!(eku.client_auth && !eku.server_auth, "{user}");
            assert!(!parsed.is_ca());
        };
        check("system:node:worker-1", &["system:nodes"]);
        check("jane", &[]);

        let err = ca
            .issue_client_cert("jane", &["a".to_string(), "b".to_string()])
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "client certificate for \"jane\": at most one group can be encoded \
             (the certificate library keeps one O per subject)"
        );
        let err = ca.issue_client_cert("", &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "client certificate for \"\": the user name is empty"
        );
    }

    #[test]
    fn admin_cert_is_kept_until_the_ca_changes() {
        let dir = tempfile::tempdir().unwrap();
        let paths = PkiPaths::new(dir.path());
        let ca = LocalCa::load_or_create(dir.path()).unwrap();
        let first = ca.ensure_admin_cert(dir.path()).unwrap();
        let again = LocalCa::load(dir.path())
            .unwrap()
            .ensure_admin_cert(dir.path())
            .unwrap();
        assert_eq!(first, again);
        assert_eq!(
            fs::read_to_string(&paths.admin_cert).unwrap(),
            first.cert_pem
        );
        assert_eq!(
            fs::metadata(&paths.admin_key).unwrap().permissions().mode() & 0o777,
            0o600
        );

        // A new CA (the old one deleted by hand) cannot verify the old
        // admin certificate: it is issued anew.
        fs::remove_file(&paths.ca_cert).unwrap();
        fs::remove_file(&paths.ca_key).unwrap();
        let new_ca = LocalCa::load_or_create(dir.path()).unwrap();
        let renewed = new_ca.ensure_admin_cert(dir.path()).unwrap();
        assert_ne!(renewed.cert_pem, first.cert_pem);
        assert_eq!(
            client_cert_is_fresh(
                &renewed.cert_pem,
                new_ca.cert_pem(),
                ADMIN_USER,
                &[MASTERS_GROUP.to_string()]
            ),
            Ok(true)
        );
        assert_eq!(
            client_cert_is_fresh(
                &renewed.cert_pem,
                new_ca.cert_pem(),
                "someone-else",
                &[MASTERS_GROUP.to_string()]
            ),
            Ok(false)
        );
    }

    #[test]
    fn client_ca_sources() {
        let dir = tempfile::tempdir().unwrap();
        let source = generated(dir.path(), &["localhost"]);
        let local = ClientCa::Local {
            data_dir: dir.path().to_path_buf(),
        };
        server_config(
            load_or_generate(&source).unwrap(),
            &local.file().into_iter().collect::<Vec<_>>(),
        )
        .unwrap();
        let file = ClientCa::File(PkiPaths::new(dir.path()).ca_cert);
        server_config(
            load_or_generate(&source).unwrap(),
            &file.file().into_iter().collect::<Vec<_>>(),
        )
        .unwrap();

        let empty = dir.path().join("empty.crt");
        fs::write(&empty, "").unwrap();
        let err = server_config(
            load_or_generate(&source).unwrap(),
            std::slice::from_ref(&empty),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("{}: no certificate found", empty.display())
        );
    }

    #[test]
    fn bad_files_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("tls.crt");
        let key = dir.path().join("tls.key");
        fs::write(&cert, "not a certificate").unwrap();
        fs::write(&key, "not a key").unwrap();
        let err = load_or_generate(&TlsSource::Files {
            cert_file: cert.clone(),
            key_file: key,
        })
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("{}: no certificate found", cert.display())
        );

        let missing = dir.path().join("missing.crt");
        let err = load_or_generate(&TlsSource::Files {
            cert_file: missing.clone(),
            key_file: dir.path().join("missing.key"),
        })
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&format!("{}: ", missing.display())),
            "{err}"
        );
    }
}
