//! Client certificates: CN is the user, each O a group, as Kubernetes'
//! x509 authenticator reads them. Reading a subject is no decision about
//! who may connect (that is `auth`'s): the local CA checks the
//! certificates it issued with it too.

use rustls_pki_types::CertificateDer;

/// Why a certificate's subject names no user.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// The client certificate could not be parsed.
    #[error("unreadable client certificate: {0}")]
    BadCertificate(String),
    /// The client certificate's subject has no common name, so it names no
    /// user.
    #[error("client certificate subject has no common name")]
    NoCommonName,
}

/// Subject reading result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The user and groups a certificate's subject names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subject {
    /// The common name (the last one, if several).
    pub name: String,
    /// The organizations, in order.
    pub groups: Vec<String>,
}

/// The identity in a certificate's subject.
pub fn subject(der: &CertificateDer<'_>) -> Result<Subject> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| Error::BadCertificate(e.to_string()))?;
    let subject = cert.subject();
    let attribute_text = |attribute: &x509_parser::x509::AttributeTypeAndValue<'_>| {
        attribute
            .as_str()
            .map(str::to_string)
            .map_err(|e| Error::BadCertificate(format!("subject attribute: {e}")))
    };
    // With several common names Go's `pkix.Name.CommonName`, which
    // Kubernetes reads, holds the last one: do the same.
    let name = match subject.iter_common_name().last() {
        Some(attribute) => attribute_text(attribute)?,
        None => return Err(Error::NoCommonName),
    };
    if name.is_empty() {
        return Err(Error::NoCommonName);
    }
    let groups = subject
        .iter_organization()
        .map(attribute_text)
        .collect::<Result<Vec<_>>>()?;
    Ok(Subject { name, groups })
}
