//! Bearer tokens, delegated: the server asks kube-apiserver (through
//! `--authentication-kubeconfig`, or in a pod with its service account, see
//! [`super::cluster`]) with an `authentication.k8s.io/v1` TokenReview who a
//! token belongs to, and remembers the answer for [`CACHE_TTL`], as
//! Kubernetes' delegating authenticator does.
//!
//! This file owns the review and its cache; it does not decide what the
//! user may do.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Mutex,
    time::Duration,
};

use serde::Deserialize;
use tokio::time::Instant;

pub use super::cluster::{Error, Result};
use super::{
    UserInfo,
    cluster::{ClusterAccess, ReviewClient},
};

/// How long an answer (yes or no) is reused.
pub const CACHE_TTL: Duration = Duration::from_secs(10);
/// Most answers a review cache (tokens here, subject access reviews in
/// [`super::subject_access`]) remembers; it is emptied when it grows past
/// this.
pub const CACHE_CAPACITY: usize = 4096;

/// Answers remembered per token, each until its deadline.
#[derive(Debug, Default)]
pub struct ReviewCache {
    entries: HashMap<String, (Instant, Option<UserInfo>)>,
}

impl ReviewCache {
    /// The remembered answer for `token`, if still fresh at `now`.
    pub fn get(&self, token: &str, now: Instant) -> Option<Option<UserInfo>> {
        self.entries
            .get(token)
            .filter(|(deadline, _)| now < *deadline)
            .map(|(_, user)| user.clone())
    }

    /// Remembers `user` (or "not authenticated") for `token` until
    /// `now + CACHE_TTL`.
    pub fn put(&mut self, token: &str, user: Option<UserInfo>, now: Instant) {
        if self.entries.len() >= CACHE_CAPACITY {
            self.entries.retain(|_, (deadline, _)| now < *deadline);
            if self.entries.len() >= CACHE_CAPACITY {
                self.entries.clear();
            }
        }
        self.entries
            .insert(token.to_string(), (now + CACHE_TTL, user));
    }
}

/// Reviews tokens with a kube-apiserver.
#[derive(Debug)]
pub struct TokenReviewer {
    client: ReviewClient,
    cache: Mutex<ReviewCache>,
}

impl TokenReviewer {
    /// A reviewer asking the cluster `access` reaches.
    pub fn new(access: &ClusterAccess) -> Result<Self> {
        Ok(Self {
            client: ReviewClient::new(access)?,
            cache: Mutex::new(ReviewCache::default()),
        })
    }

    /// The user `token` belongs to; `None` when the reviewer says it is
    /// not authenticated or cannot be asked (then nothing is remembered).
    pub async fn authenticate(&self, token: &str) -> Option<UserInfo> {
        let now = Instant::now();
        if let Some(answer) = self.lock().get(token, now) {
            return answer;
        }
        let body = serde_json::json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": {"token": token},
        });
        match self
            .client
            .post::<TokenReview>("/apis/authentication.k8s.io/v1/tokenreviews", &body)
            .await
        {
            Ok(review) => {
                let user = review.into_user();
                self.lock().put(token, user.clone(), Instant::now());
                user
            }
            Err(e) => {
                tracing::warn!(error = %e, server = self.client.server(), "token review failed");
                None
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ReviewCache> {
        // The cache holds no invariant a panic could break.
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The parts of a TokenReview answer that matter here.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct TokenReview {
    status: TokenReviewStatus,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct TokenReviewStatus {
    authenticated: bool,
    user: ReviewedUser,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ReviewedUser {
    username: String,
    groups: Vec<String>,
    extra: BTreeMap<String, Vec<String>>,
}

impl TokenReview {
    fn into_user(self) -> Option<UserInfo> {
        let status = self.status;
        if !status.authenticated || status.user.username.is_empty() {
            return None;
        }
        Some(
            UserInfo {
                name: status.user.username,
                groups: status.user.groups,
                extra: status.user.extra,
            }
            .with_authenticated_group(),
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn answers_are_remembered_for_ten_seconds() {
        let mut cache = ReviewCache::default();
        let user = UserInfo {
            name: "u".into(),
            ..UserInfo::default()
        };
        let start = Instant::now();
        assert_eq!(cache.get("t", start), None);
        cache.put("t", Some(user.clone()), start);
        cache.put("bad", None, start);
        assert_eq!(cache.get("t", start), Some(Some(user.clone())));
        assert_eq!(
            cache.get("bad", start),
            Some(None),
            "a no is remembered too"
        );
        let later = |seconds| start + Duration::from_secs(seconds);
        assert_eq!(cache.get("t", later(9)), Some(Some(user)));
        assert_eq!(cache.get("t", later(10)), None, "expired after 10 s");
    }

    #[test]
    fn reviews_become_users() {
        let review: TokenReview = serde_json::from_value(serde_json::json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "status": {
                "authenticated": true,
                "user": {
                    "username": "system:serviceaccount:nmstate:handler",
                    "uid": "1",
                    "groups": ["system:serviceaccounts"],
                    "extra": {"authentication.kubernetes.io/node-name": ["a"]},
                },
            },
        }))
        .unwrap();
        let user = review.into_user().unwrap();
        assert_eq!(user.name, "system:serviceaccount:nmstate:handler");
        assert_eq!(
            user.groups,
            ["system:serviceaccounts", "system:authenticated"]
        );
        assert_eq!(user.extra["authentication.kubernetes.io/node-name"], ["a"]);
        let denied: TokenReview = serde_json::from_value(serde_json::json!({
            "status": {"authenticated": false, "error": "invalid bearer token"},
        }))
        .unwrap();
        assert_eq!(denied.into_user(), None);
    }
}
