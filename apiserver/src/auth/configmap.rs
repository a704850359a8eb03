//! The `kube-system/extension-apiserver-authentication` ConfigMap, which
//! kube-apiserver publishes for extension API servers: when the server
//! reaches a cluster for authentication (`--authentication-kubeconfig`, or
//! in a pod its service account) but `--client-ca-file` or
//! `--requestheader-client-ca-file` is not, the missing settings are read
//! from it at start, as Kubernetes' own extension servers do. Flags given
//! explicitly win. A ConfigMap that does not exist gives nothing (with a
//! warning); one that cannot be read stops the start.

use std::{collections::BTreeMap, path::Path};

use super::cluster::ClusterAccess;

use serde::Deserialize;

use super::{cluster::ReviewClient, front_proxy::RequestHeaderConfig};
use crate::tls::ClientCa;

/// Where kube-apiserver publishes the ConfigMap.
pub const PATH: &str =
    "/api/v1/namespaces/kube-system/configmaps/extension-apiserver-authentication";

/// Why the ConfigMap could not be used.
#[derive(Debug, thiserror::Error)]
#[error("reading {url}: {message}")]
pub struct Error {
    /// The ConfigMap's URL.
    pub url: String,
    /// Why.
    pub message: String,
}

/// The settings the ConfigMap carries.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct AuthenticationConfigMap {
    /// `client-ca-file`: the PEM bundle client certificates chain to.
    pub client_ca: Option<String>,
    /// The `requestheader-*` keys, when `requestheader-client-ca-file` is
    /// present.
    pub request_header: Option<RequestHeaderData>,
}

/// The `requestheader-*` keys.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RequestHeaderData {
    /// `requestheader-client-ca-file`: PEM bundle of front-proxy CAs.
    pub client_ca: String,
    /// `requestheader-allowed-names`.
    pub allowed_names: Vec<String>,
    /// `requestheader-username-headers`.
    pub username_headers: Vec<String>,
    /// `requestheader-group-headers`.
    pub group_headers: Vec<String>,
    /// `requestheader-extra-headers-prefix`.
    pub extra_headers_prefixes: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ConfigMap {
    data: BTreeMap<String, String>,
}

/// A list key: a JSON array of strings, as kube-apiserver writes them
/// (`["front-proxy-client"]`); missing or empty means none.
fn strings(data: &BTreeMap<String, String>, key: &str) -> Result<Vec<String>, String> {
    match data.get(key).map(|value| value.trim()) {
        None | Some("") => Ok(Vec::new()),
        Some(value) => serde_json::from_str(value)
            .map_err(|e| format!("{key}: not a JSON array of strings: {e}")),
    }
}

fn pem(data: &BTreeMap<String, String>, key: &str) -> Option<String> {
    data.get(key)
        .filter(|value| !value.trim().is_empty())
        .cloned()
}

impl AuthenticationConfigMap {
    /// The settings in a ConfigMap's `data`.
    pub fn parse(data: &BTreeMap<String, String>) -> Result<Self, String> {
        let request_header = match pem(data, "requestheader-client-ca-file") {
            None => None,
            Some(client_ca) => Some(RequestHeaderData {
                client_ca,
                allowed_names: strings(data, "requestheader-allowed-names")?,
                username_headers: strings(data, "requestheader-username-headers")?,
                group_headers: strings(data, "requestheader-group-headers")?,
                extra_headers_prefixes: strings(data, "requestheader-extra-headers-prefix")?,
            }),
        };
        Ok(Self {
            client_ca: pem(data, "client-ca-file"),
            request_header,
        })
    }
}

/// Why [`resolve`] failed: the server does not start.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The credentials to reach kube-apiserver (kubeconfig, service
    /// account) are unusable.
    #[error(transparent)]
    Cluster(#[from] super::cluster::Error),
    /// The ConfigMap could not be read, or its CA bundles not written.
    #[error(transparent)]
    ConfigMap(#[from] Error),
}

/// Fills in the client CA and front-proxy settings the flags left out from
/// the ConfigMap, writing its CA bundles under
/// `<data_dir>/extension-apiserver-authentication/`. Returns the settings
/// unchanged when no cluster is reached for authentication or both CA
/// flags were given.
pub async fn resolve(
    access: Option<&ClusterAccess>,
    data_dir: &Path,
    client_ca: &ClientCa,
    request_header: Option<&RequestHeaderConfig>,
) -> Result<(ClientCa, Option<RequestHeaderConfig>), ResolveError> {
    let unchanged = (client_ca.clone(), request_header.cloned());
    let client_ca_given = matches!(client_ca, ClientCa::File(_));
    let Some(access) = access else {
        return Ok(unchanged);
    };
    if client_ca_given && request_header.is_some() {
        return Ok(unchanged);
    }
    let client = ReviewClient::new(access)?;
    let url = format!("{}{PATH}", client.server().trim_end_matches('/'));
    let error = |message: String| Error {
        url: url.clone(),
        message,
    };
    let Some(configmap) = client
        .get::<ConfigMap>(PATH)
        .await
        .map_err(|e| error(e.to_string()))?
    else {
        tracing::warn!(
            url,
            "ConfigMap kube-system/extension-apiserver-authentication not found: client CA and front-proxy settings come from flags only"
        );
        return Ok(unchanged);
    };
    let settings = AuthenticationConfigMap::parse(&configmap.data).map_err(error)?;
    let dir = data_dir.join("extension-apiserver-authentication");
    let write = |name: &str, pem: &str| {
        std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::write(dir.join(name), pem))
            .map(|()| dir.join(name))
            .map_err(|e| error(format!("writing {}: {e}", dir.join(name).display())))
    };
    let client_ca = match (client_ca_given, settings.client_ca) {
        (false, Some(pem)) => {
            tracing::info!(
                url,
                "client CA from the extension-apiserver-authentication ConfigMap"
            );
            ClientCa::File(write("client-ca.crt", &pem)?)
        }
        _ => client_ca.clone(),
    };
    let request_header = match (request_header, settings.request_header) {
        (Some(given), _) => Some(given.clone()),
        (None, Some(data)) => {
            tracing::info!(
                url,
                "front-proxy settings from the extension-apiserver-authentication ConfigMap"
            );
            Some(RequestHeaderConfig {
                client_ca_file: write("requestheader-client-ca.crt", &data.client_ca)?,
                allowed_names: data.allowed_names,
                username_headers: data.username_headers,
                group_headers: data.group_headers,
                extra_headers_prefixes: data.extra_headers_prefixes,
            })
        }
        (None, None) => {
            tracing::warn!(
                url,
                "the ConfigMap has no requestheader-client-ca-file (is kube-apiserver's aggregation layer configured?): requests forwarded by kube-apiserver will get 401"
            );
            None
        }
    };
    Ok((client_ca, request_header))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Name, ConfigMap data, the settings or the start of the error.
    type Case = (
        &'static str,
        Vec<(&'static str, &'static str)>,
        Result<AuthenticationConfigMap, &'static str>,
    );

    #[test]
    fn configmap_data_is_parsed_as_kubernetes_writes_it() {
        let full = AuthenticationConfigMap {
            client_ca: Some("CA".into()),
            request_header: Some(RequestHeaderData {
                client_ca: "PROXY CA".into(),
                allowed_names: vec!["front-proxy-client".into()],
                username_headers: vec!["X-Remote-User".into()],
                group_headers: vec!["X-Remote-Group".into()],
                extra_headers_prefixes: vec!["X-Remote-Extra-".into()],
            }),
        };
        let cases: Vec<Case> = vec![
            ("empty", vec![], Ok(AuthenticationConfigMap::default())),
            (
                "client CA only",
                vec![("client-ca-file", "CA")],
                Ok(AuthenticationConfigMap {
                    client_ca: Some("CA".into()),
                    request_header: None,
                }),
            ),
            (
                "blank CA is none",
                vec![("client-ca-file", " \n")],
                Ok(AuthenticationConfigMap::default()),
            ),
            (
                "everything",
                vec![
                    ("client-ca-file", "CA"),
                    ("requestheader-client-ca-file", "PROXY CA"),
                    ("requestheader-allowed-names", "[\"front-proxy-client\"]"),
                    ("requestheader-username-headers", "[\"X-Remote-User\"]"),
                    ("requestheader-group-headers", "[\"X-Remote-Group\"]"),
                    (
                        "requestheader-extra-headers-prefix",
                        "[\"X-Remote-Extra-\"]",
                    ),
                ],
                Ok(full),
            ),
            (
                "request header lists may be empty or missing",
                vec![
                    ("requestheader-client-ca-file", "PROXY CA"),
                    ("requestheader-allowed-names", ""),
                    ("requestheader-username-headers", "[]"),
                ],
                Ok(AuthenticationConfigMap {
                    client_ca: None,
                    request_header: Some(RequestHeaderData {
                        client_ca: "PROXY CA".into(),
                        ..RequestHeaderData::default()
                    }),
                }),
            ),
            (
                "lists without a CA are ignored",
                vec![("requestheader-allowed-names", "not json")],
                Ok(AuthenticationConfigMap::default()),
            ),
            (
                "a list that is no JSON array",
                vec![
                    ("requestheader-client-ca-file", "PROXY CA"),
                    ("requestheader-group-headers", "X-Remote-Group"),
                ],
                Err("requestheader-group-headers: not a JSON array of strings"),
            ),
        ];
        for (name, pairs, want) in cases {
            let got = AuthenticationConfigMap::parse(&data(&pairs));
            match want {
                Ok(want) => assert_eq!(got.unwrap(), want, "{name}"),
                Err(prefix) => {
                    let message = got.unwrap_err();
                    assert!(message.starts_with(prefix), "{name}: {message}");
                }
            }
        }
    }
}
