//! Front-proxy (request header) authentication: a proxy that already
//! authenticated the user, such as kube-apiserver's aggregator, says who
//! the user is in `X-Remote-User`, `X-Remote-Group` and `X-Remote-Extra-*`.
//!
//! Those headers are believed only on a connection whose client
//! certificate chains to `--requestheader-client-ca-file` and whose common
//! name is in `--requestheader-allowed-names` (any name when that list is
//! empty); [`super::Authenticator`] decides that per connection. This file
//! only reads the headers.

use std::{collections::BTreeMap, path::PathBuf};

use http::HeaderMap;

use super::UserInfo;

/// The `--requestheader-*` flags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestHeaderConfig {
    /// The CA bundle front-proxy client certificates chain to.
    pub client_ca_file: PathBuf,
    /// The common names a front proxy may have; empty: any.
    pub allowed_names: Vec<String>,
    /// Headers naming the user; the first present and non-empty wins.
    pub username_headers: Vec<String>,
    /// Headers naming groups; every value of every one, in order.
    pub group_headers: Vec<String>,
    /// Prefixes of headers carrying extra attributes.
    pub extra_headers_prefixes: Vec<String>,
}

impl RequestHeaderConfig {
    /// Kubernetes' defaults (`X-Remote-User`, `X-Remote-Group`,
    /// `X-Remote-Extra-`) for a CA file, any common name.
    pub fn new(client_ca_file: PathBuf) -> Self {
        Self {
            client_ca_file,
            allowed_names: Vec::new(),
            username_headers: vec!["X-Remote-User".into()],
            group_headers: vec!["X-Remote-Group".into()],
            extra_headers_prefixes: vec!["X-Remote-Extra-".into()],
        }
    }

    /// Whether a proxy whose certificate names `common_name` may speak for
    /// users.
    pub fn allows(&self, common_name: &str) -> bool {
        self.allowed_names.is_empty() || self.allowed_names.iter().any(|n| n == common_name)
    }

    /// The user the headers name, as kube-apiserver reads them; `None`
    /// without a user name (the request then falls through to the next
    /// authenticator).
    pub fn user_from_headers(&self, headers: &HeaderMap) -> Option<UserInfo> {
        let values = |name: &str| {
            headers
                .get_all(name)
                .into_iter()
                .filter_map(|value| value.to_str().ok())
                .map(str::to_string)
                .collect::<Vec<_>>()
        };
        let name = self
            .username_headers
            .iter()
            .find_map(|header| values(header).into_iter().find(|v| !v.is_empty()))?;
        let groups = self
            .group_headers
            .iter()
            .flat_map(|header| values(header))
            .collect();
        let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for prefix in &self.extra_headers_prefixes {
            let prefix = prefix.to_ascii_lowercase();
            // `HeaderMap` keys are lower case already.
            for (header, value) in headers {
                let Some(key) = header.as_str().strip_prefix(&prefix) else {
                    continue;
                };
                let Ok(value) = value.to_str() else { continue };
                let key = percent_encoding::percent_decode_str(key)
                    .decode_utf8_lossy()
                    .to_lowercase();
                extra.entry(key).or_default().push(value.to_string());
            }
        }
        Some(UserInfo {
            name,
            groups,
            extra,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        map
    }

    #[test]
    fn users_from_headers() {
        let config = RequestHeaderConfig::new(PathBuf::from("ca.crt"));
        let check = |case: &str, pairs: &[(&str, &str)], expected: Option<UserInfo>| {
            assert_eq!(
                config.user_from_headers(&headers(pairs)),
                expected,
                "case {case}"
            );
        };
        check("no user", &[("X-Remote-Group", "g")], None);
        check("empty user", &[("X-Remote-User", "")], None);
        check(
            "groups repeat, extras are unescaped and lower-cased",
            &[
                ("X-Remote-User", "system:serviceaccount:nmstate:handler"),
                ("X-Remote-Group", "system:serviceaccounts"),
                ("X-Remote-Group", "system:authenticated"),
                (
                    "X-Remote-Extra-Authentication.kubernetes.io%2fNode-Name",
                    "a",
                ),
                ("X-Remote-Extra-Scopes", "x"),
                ("X-Remote-Extra-Scopes", "y"),
                ("X-Other", "ignored"),
            ],
            Some(UserInfo {
                name: "system:serviceaccount:nmstate:handler".into(),
                groups: vec![
                    "system:serviceaccounts".into(),
                    "system:authenticated".into(),
                ],
                extra: BTreeMap::from([
                    (
                        "authentication.kubernetes.io/node-name".into(),
                        vec!["a".into()],
                    ),
                    ("scopes".into(), vec!["x".into(), "y".into()]),
                ]),
            }),
        );
    }

    #[test]
    fn allowed_names() {
        let mut config = RequestHeaderConfig::new(PathBuf::from("ca.crt"));
        assert!(config.allows("anyone"));
        config.allowed_names = vec!["front-proxy-client".into()];
        assert!(config.allows("front-proxy-client"));
        assert!(!config.allows("anyone"));
    }
}
