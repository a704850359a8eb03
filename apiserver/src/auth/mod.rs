//! Authentication: who is asking.
//!
//! This module turns credentials that were already verified into a
//! [`UserInfo`]: today the client certificate that rustls checked against
//! the client CA during the handshake (see [`crate::tls::server_config`]);
//! the front proxy and bearer tokens come next in the chain. It does not
//! verify certificate chains (rustls does, before any request is read), and
//! it never decides what a user may do: that is authorization's job.

use std::collections::BTreeMap;

use http::StatusCode;
use rustls_pki_types::CertificateDer;

use crate::server::status::Status;

pub mod authorize;
mod x509;

/// The group every authenticated user is in, as in Kubernetes.
pub const AUTHENTICATED_GROUP: &str = "system:authenticated";

/// Authentication errors.
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

/// Authentication result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An authenticated user, as Kubernetes' `user.Info`.
///
/// ```yaml
/// name: system:node:worker-1
/// groups: [system:nodes, system:authenticated]
/// extra: {}
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserInfo {
    /// The user name (a certificate's common name).
    pub name: String,
    /// The groups (a certificate's organizations), in order.
    pub groups: Vec<String>,
    /// Extra attributes (`X-Remote-Extra-*`, token claims); empty for
    /// certificates.
    pub extra: BTreeMap<String, Vec<String>>,
}

impl UserInfo {
    /// The identity a client certificate names: CN is the user, each O a
    /// group. Only the certificate's subject is read; the caller must have
    /// verified it.
    pub fn from_certificate(der: &CertificateDer<'_>) -> Result<Self> {
        x509::identity(der)
    }

    /// Adds [`AUTHENTICATED_GROUP`] unless the user is already in it.
    pub fn with_authenticated_group(mut self) -> Self {
        if !self.groups.iter().any(|g| g == AUTHENTICATED_GROUP) {
            self.groups.push(AUTHENTICATED_GROUP.to_string());
        }
        self
    }
}

/// The user of a TLS connection, from the certificate chain the client
/// presented (leaf first), which rustls has already verified against the
/// client CA. `None` when the client sent no certificate or one that names
/// no user.
pub fn authenticate_peer(chain: Option<&[CertificateDer<'_>]>) -> Option<UserInfo> {
    let leaf = chain?.first()?;
    match UserInfo::from_certificate(leaf) {
        Ok(user) => Some(user.with_authenticated_group()),
        Err(e) => {
            tracing::debug!(error = %e, "client certificate not accepted");
            None
        }
    }
}

/// The answer to a request without credentials, word for word what
/// kube-apiserver sends.
pub fn unauthorized() -> Status {
    Status::failure(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn authenticated_group_is_added_once() {
        let user = UserInfo {
            name: "u".into(),
            groups: vec!["g".into()],
            ..UserInfo::default()
        };
        let user = user.with_authenticated_group().with_authenticated_group();
        assert_eq!(user.groups, ["g", AUTHENTICATED_GROUP]);
    }

    #[test]
    fn no_certificate_is_anonymous() {
        assert_eq!(authenticate_peer(None), None);
        assert_eq!(authenticate_peer(Some(&[])), None);
        let garbage = CertificateDer::from(b"not DER".to_vec());
        assert_eq!(authenticate_peer(Some(&[garbage])), None);
    }

    fn certificate(subject: &[(rcgen::DnType, &str)]) -> CertificateDer<'static> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        for (attribute, value) in subject {
            params.distinguished_name.push(attribute.clone(), *value);
        }
        params.self_signed(&key).unwrap().der().clone()
    }

    #[test]
    fn certificate_subjects() {
        use rcgen::DnType::{CommonName, OrganizationName, OrganizationalUnitName};
        let check = |name: &str, subject: &[(rcgen::DnType, &str)], expected: Result<UserInfo>| {
            assert_eq!(
                UserInfo::from_certificate(&certificate(subject)),
                expected,
                "case {name}"
            );
        };
        let user = |name: &str, groups: &[&str]| UserInfo {
            name: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            extra: BTreeMap::new(),
        };
        check(
            "node",
            &[
                (OrganizationName, "system:nodes"),
                (CommonName, "system:node:n1"),
            ],
            Ok(user("system:node:n1", &["system:nodes"])),
        );
        check(
            "no group; OU is not a group",
            &[(CommonName, "jane"), (OrganizationalUnitName, "dev")],
            Ok(user("jane", &[])),
        );
        check(
            "no CN",
            &[(OrganizationName, "system:masters")],
            Err(Error::NoCommonName),
        );
        check("empty CN", &[(CommonName, "")], Err(Error::NoCommonName));
    }

    #[test]
    fn verified_peer_is_authenticated() {
        use rcgen::DnType::{CommonName, OrganizationName};
        let leaf = certificate(&[(OrganizationName, "g"), (CommonName, "u")]);
        let user = authenticate_peer(Some(&[leaf])).unwrap();
        assert_eq!(user.name, "u");
        assert_eq!(user.groups, ["g", AUTHENTICATED_GROUP]);
    }

    #[test]
    fn unauthorized_is_kube_apiservers_status() {
        let body = serde_json::to_value(unauthorized()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": "Unauthorized",
                "reason": "Unauthorized",
                "code": 401,
            })
        );
    }
}
