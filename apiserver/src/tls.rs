//! TLS material for the HTTPS server.
//!
//! Either the operator gives a certificate and key (`--tls-cert-file`,
//! `--tls-private-key-file`), or the server keeps a local CA and a serving
//! certificate under `<data-dir>/pki/`, creating them on first start and
//! renewing the serving certificate when it nears expiry or no longer names
//! the address the server is reached at. This module only reads and writes
//! those files and builds the rustls configuration; it never decides who may
//! do what.

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

/// How long a generated CA is valid.
const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// How long a generated serving certificate is valid.
const SERVING_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);
/// A generated serving certificate is renewed at start when it expires
/// within this window.
const RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 3600);

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
        }
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
/// names, plus the bind address when it is a specific one.
pub fn default_hosts(bind: IpAddr) -> Vec<String> {
    let mut hosts = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    if !bind.is_unspecified() && !bind.is_loopback() {
        hosts.push(bind.to_string());
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

/// The rustls server configuration: HTTP/2 and HTTP/1.1 by ALPN, no client
/// certificates asked for yet (authentication comes later in the chain).
pub fn server_config(cert: ServingCert) -> Result<Arc<rustls::ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(cert.chain, cert.key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn load_pem_pair(cert_file: &Path, key_file: &Path) -> Result<ServingCert> {
    let cert_pem = read(cert_file)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad_pem(cert_file, format!("invalid certificate PEM: {e}")))?;
    if chain.is_empty() {
        return Err(bad_pem(cert_file, "no certificate found".to_string()));
    }
    let key_pem = read(key_file)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| bad_pem(key_file, format!("no usable private key: {e}")))?;
    Ok(ServingCert { chain, key })
}

/// A CA loaded from, or freshly written to, the data directory.
struct LocalCa {
    cert_pem: String,
    key: KeyPair,
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
    let issuer =
        Issuer::from_ca_cert_pem(&ca.cert_pem, &ca.key).map_err(|source| Error::Generate {
            what: "issuer from local CA",
            source,
        })?;
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

/// Writes a file readable by its owner only (keys).
fn write_private(path: &Path, contents: &[u8]) -> Result<()> {
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
    let tmp = path.with_extension("tmp");
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
        let mode = |p: &Path| {
            use std::os::unix::fs::PermissionsExt;
            fs::metadata(p).unwrap().permissions().mode() & 0o777
        };
        let paths = PkiPaths::new(dir.path());
        assert_eq!(mode(&paths.ca_key), 0o600);
        assert_eq!(mode(&paths.serving_key), 0o600);
        server_config(first).unwrap();
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
