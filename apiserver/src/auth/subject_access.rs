//! Delegated authorization: with `--authorization-kubeconfig`, or in a pod
//! with its service account (see [`super::cluster`]), the server asks
//! kube-apiserver with an `authorization.k8s.io/v1`
//! SubjectAccessReview whether a user the standalone policy does not
//! already allow may do something, and remembers the answer for
//! [`super::token::CACHE_TTL`].
//!
//! Node identities are not asked about: node restriction is decided
//! locally, whatever RBAC would say (see [`super::authorize`]).

use std::{
    collections::{BTreeMap, HashMap},
    sync::Mutex,
};

use nmstate_openapi::GROUP;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::{
    UserInfo,
    authorize::{Decision, RequestAttributes},
    cluster::{ClusterAccess, Result, ReviewClient},
    token::{CACHE_CAPACITY, CACHE_TTL},
};

/// Asks a kube-apiserver what users may do.
#[derive(Debug)]
pub struct SubjectAccessReviewer {
    client: ReviewClient,
    cache: Mutex<HashMap<String, (Instant, Decision)>>,
}

/// The `spec` of a SubjectAccessReview for `user` doing `attributes`.
pub fn review_spec(user: &UserInfo, attributes: &RequestAttributes<'_>) -> Value {
    let extra: &BTreeMap<String, Vec<String>> = &user.extra;
    let mut spec = json!({
        "user": user.name,
        "groups": user.groups,
        "extra": extra,
    });
    match attributes {
        RequestAttributes::NonResource { path, verb } => {
            spec["nonResourceAttributes"] = json!({"path": path, "verb": verb});
        }
        RequestAttributes::Resource(resource) => {
            let mut attributes = json!({
                "verb": resource.verb.as_str(),
                "group": GROUP,
                "version": "v1",
                "resource": resource.kind.plural(),
            });
            if let Some(subresource) = resource.subresource {
                attributes["subresource"] = subresource.as_str().into();
            }
            if let Some(name) = resource.name {
                attributes["name"] = name.into();
            }
            spec["resourceAttributes"] = attributes;
        }
    }
    spec
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct SubjectAccessReview {
    status: ReviewStatus,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct ReviewStatus {
    allowed: bool,
    reason: String,
    evaluation_error: String,
}

impl SubjectAccessReviewer {
    /// A reviewer asking the cluster `access` reaches.
    pub fn new(access: &ClusterAccess) -> Result<Self> {
        Ok(Self {
            client: ReviewClient::new(access)?,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The cluster's answer; a failed review denies (and is not
    /// remembered).
    pub async fn authorize(&self, user: &UserInfo, attributes: &RequestAttributes<'_>) -> Decision {
        let spec = review_spec(user, attributes);
        let key = spec.to_string();
        let now = Instant::now();
        if let Some((deadline, decision)) = self.lock().get(&key)
            && now < *deadline
        {
            return decision.clone();
        }
        let body = json!({
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": spec,
        });
        match self
            .client
            .post::<SubjectAccessReview>(
                "/apis/authorization.k8s.io/v1/subjectaccessreviews",
                &body,
            )
            .await
        {
            Ok(review) => {
                let status = review.status;
                let decision = if status.allowed {
                    Decision::Allow
                } else if status.reason.is_empty() {
                    Decision::Deny(status.evaluation_error)
                } else {
                    Decision::Deny(status.reason)
                };
                let mut cache = self.lock();
                if cache.len() >= CACHE_CAPACITY {
                    cache.clear();
                }
                cache.insert(key, (Instant::now() + CACHE_TTL, decision.clone()));
                decision
            }
            Err(e) => {
                tracing::warn!(error = %e, server = self.client.server(), "subject access review failed");
                Decision::Deny("the authorization webhook could not be asked".into())
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, Decision)>> {
        // The cache holds no invariant a panic could break.
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use nmstate_openapi::ResourceKind;

    use super::*;
    use crate::auth::authorize::ResourceAttributes;
    use crate::request::{Subresource, Verb};

    #[test]
    fn specs_name_user_and_attributes() {
        let user = UserInfo {
            name: "jane".into(),
            groups: vec!["dev".into()],
            extra: BTreeMap::from([("scopes".into(), vec!["x".into()])]),
        };
        let attributes = RequestAttributes::Resource(ResourceAttributes {
            verb: Verb::Update,
            kind: ResourceKind::NodeNetworkConfigurationPolicy,
            subresource: Some(Subresource::Status),
            name: Some("p"),
            node_selector: None,
            name_selector: None,
        });
        assert_eq!(
            review_spec(&user, &attributes),
            json!({
                "user": "jane",
                "groups": ["dev"],
                "extra": {"scopes": ["x"]},
                "resourceAttributes": {
                    "verb": "update",
                    "group": "nmstate.io",
                    "version": "v1",
                    "resource": "nodenetworkconfigurationpolicies",
                    "subresource": "status",
                    "name": "p",
                },
            })
        );
        let metrics = RequestAttributes::NonResource {
            path: "/metrics",
            verb: "get",
        };
        assert_eq!(
            review_spec(&user, &metrics)["nonResourceAttributes"],
            json!({"path": "/metrics", "verb": "get"})
        );
    }
}
