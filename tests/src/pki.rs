//! Certificates tests make of their own: a CA that issues client
//! identities (a cluster's client CA, a front-proxy CA).

use crate::https::ClientIdentity;

/// A CA of the test's own.
#[derive(Debug)]
pub struct TestCa {
    params: rcgen::CertificateParams,
    key: rcgen::KeyPair,
    /// The CA certificate, PEM.
    pub pem: String,
}

impl TestCa {
    /// A new CA whose certificate is named `common_name`.
    pub fn new(common_name: &str) -> Self {
        let key = rcgen::KeyPair::generate().expect("generating a CA key");
        let mut params =
            rcgen::CertificateParams::new(Vec::<String>::new()).expect("empty CA parameters");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        let pem = params.self_signed(&key).expect("self-signing the CA").pem();
        Self { params, key, pem }
    }

    /// A client certificate for `common_name`, with `organization` as its
    /// group when given.
    pub fn issue(&self, common_name: &str, organization: Option<&str>) -> ClientIdentity {
        let issuer = rcgen::Issuer::new(self.params.clone(), &self.key);
        let key = rcgen::KeyPair::generate().expect("generating a client key");
        let mut params =
            rcgen::CertificateParams::new(Vec::<String>::new()).expect("empty client parameters");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        if let Some(organization) = organization {
            params
                .distinguished_name
                .push(rcgen::DnType::OrganizationName, organization);
        }
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params
            .signed_by(&key, &issuer)
            .expect("signing a client certificate");
        ClientIdentity {
            cert_pem: cert.pem().into_bytes(),
            key_pem: key.serialize_pem().into_bytes(),
        }
    }
}
