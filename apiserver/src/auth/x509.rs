//! Client certificates: CN is the user, each O a group, as Kubernetes'
//! x509 authenticator reads them.

use rustls_pki_types::CertificateDer;

use super::{Error, Result, UserInfo};

/// The identity in a certificate's subject.
pub(super) fn identity(der: &CertificateDer<'_>) -> Result<UserInfo> {
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
    Ok(UserInfo {
        name,
        groups,
        extra: Default::default(),
    })
}
