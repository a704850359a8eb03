//! Authentication: who is asking.
//!
//! This module turns credentials into a [`UserInfo`], in Kubernetes' order:
//! the front proxy first (a client certificate from
//! `--requestheader-client-ca-file` with an allowed common name makes the
//! `X-Remote-*` headers believed, see [`front_proxy`]), then the client
//! certificate itself (from the client CA: CN is the user, O the groups),
//! then a bearer token reviewed by kube-apiserver ([`token`]), which the
//! server reaches through a kubeconfig or, in a pod, with its service
//! account ([`cluster`]).
//! rustls verifies chains during the handshake against both CAs at once;
//! [`Authenticator::peer`] then tells which CA a certificate chains to. It
//! never decides what a user may do: that is [`authorize`]'s job.

use std::{collections::BTreeMap, sync::Arc};

use http::HeaderMap;
use rustls::server::danger::ClientCertVerifier;
use rustls_pki_types::{CertificateDer, UnixTime};

use self::front_proxy::RequestHeaderConfig;
use crate::tls;

pub mod authorize;
pub mod cluster;
pub mod configmap;
pub mod front_proxy;
pub mod subject_access;
pub mod token;

/// The group every authenticated user is in, as in Kubernetes.
pub const AUTHENTICATED_GROUP: &str = "system:authenticated";

/// Authentication errors: a client certificate that names no user.
pub use crate::tls::x509::Error;

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
        let subject = tls::x509::subject(der)?;
        Ok(UserInfo {
            name: subject.name,
            groups: subject.groups,
            extra: BTreeMap::new(),
        })
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

/// What a connection's client certificate proves, worked out once per
/// connection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Peer {
    /// The user the certificate names, when it chains to the client CA.
    pub certificate_user: Option<UserInfo>,
    /// Whether the certificate is an allowed front proxy's, whose
    /// `X-Remote-*` headers name the user.
    pub front_proxy: bool,
}

/// The authenticators of a server: client certificates and the front
/// proxy, each with a verifier for its own CA.
pub struct Authenticator {
    client_ca: Option<Arc<dyn ClientCertVerifier>>,
    front_proxy: Option<(Arc<dyn ClientCertVerifier>, RequestHeaderConfig)>,
    tokens: Option<token::TokenReviewer>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("client_ca", &self.client_ca.is_some())
            .field("front_proxy", &self.front_proxy.as_ref().map(|(_, c)| c))
            .field("tokens", &self.tokens)
            .finish()
    }
}

impl Authenticator {
    /// Loads the verifiers of the client CA bundle and the front-proxy
    /// configuration, if any.
    pub fn new(
        client_ca_file: Option<&std::path::Path>,
        front_proxy: Option<RequestHeaderConfig>,
    ) -> tls::Result<Self> {
        let client_ca = match client_ca_file {
            Some(path) => tls::client_verifier(&[path.to_path_buf()])?,
            None => None,
        };
        let front_proxy = match front_proxy {
            Some(config) => tls::client_verifier(std::slice::from_ref(&config.client_ca_file))?
                .map(|verifier| (verifier, config)),
            None => None,
        };
        Ok(Self {
            client_ca,
            front_proxy,
            tokens: None,
        })
    }

    /// Also accepts bearer tokens, reviewed by `reviewer`.
    pub fn with_tokens(mut self, reviewer: token::TokenReviewer) -> Self {
        self.tokens = Some(reviewer);
        self
    }

    /// Who the verified certificate chain of a connection (leaf first)
    /// speaks for. rustls accepted it against either CA; here each CA is
    /// asked on its own.
    pub fn peer(&self, chain: Option<&[CertificateDer<'_>]>) -> Peer {
        let Some((leaf, intermediates)) = chain.and_then(|chain| chain.split_first()) else {
            return Peer::default();
        };
        let now = UnixTime::now();
        let chains_to = |verifier: &Arc<dyn ClientCertVerifier>| {
            verifier
                .verify_client_cert(leaf, intermediates, now)
                .is_ok()
        };
        let certificate_user = self
            .client_ca
            .as_ref()
            .filter(|verifier| chains_to(verifier))
            .and_then(|_| authenticate_peer(chain));
        let front_proxy = self.front_proxy.as_ref().is_some_and(|(verifier, config)| {
            chains_to(verifier)
                && match UserInfo::from_certificate(leaf) {
                    Ok(proxy) if config.allows(&proxy.name) => true,
                    Ok(proxy) => {
                        tracing::debug!(
                            common_name = proxy.name,
                            "front-proxy certificate with a common name not allowed"
                        );
                        false
                    }
                    Err(_) => false,
                }
        });
        Peer {
            certificate_user,
            front_proxy,
        }
    }

    /// The user of one request on a connection from `peer`: the front
    /// proxy's headers when the peer is an allowed proxy and they name a
    /// user, else the certificate's user. `None`: 401.
    pub fn authenticate(&self, peer: &Peer, headers: &HeaderMap) -> Option<UserInfo> {
        if peer.front_proxy
            && let Some((_, config)) = &self.front_proxy
            && let Some(user) = config.user_from_headers(headers)
        {
            return Some(user.with_authenticated_group());
        }
        peer.certificate_user.clone()
    }

    /// [`Self::authenticate`], then, when that finds nobody, the bearer
    /// token in `Authorization`, if tokens are reviewed.
    pub async fn authenticate_request(&self, peer: &Peer, headers: &HeaderMap) -> Option<UserInfo> {
        if let Some(user) = self.authenticate(peer, headers) {
            return Some(user);
        }
        let reviewer = self.tokens.as_ref()?;
        let token = headers
            .get(http::header::AUTHORIZATION)?
            .to_str()
            .ok()?
            .strip_prefix("Bearer ")?
            .trim();
        if token.is_empty() {
            return None;
        }
        reviewer.authenticate(token).await
    }
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
}
