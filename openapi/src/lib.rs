//! The nmstate.io API contract.
//!
//! This crate owns everything a client, the API server and the node agent
//! must agree on: the three resource kinds (`NodeNetworkState`,
//! `NodeNetworkConfigurationPolicy`, `NodeNetworkConfigurationEnactment`) with
//! their upstream kubernetes-nmstate JSON names, the condition vocabulary and
//! its update rules, the validation of every user-supplied field with
//! Kubernetes-style field errors, the rendering of a policy for one node
//! ([`render`]), the answers of the `render` and `dry-run` subresources
//! ([`subresources`]), the constants that name the API group, and
//! the OpenAPI documents generated from the types ([`openapi_doc`]).
//!
//! It is pure: no IO, no async, no HTTP. Functions take values (including the
//! current time) and return values, so every rule is unit-tested here.
//!
//! ```
//! use nmstate_openapi::{NodeNetworkConfigurationPolicy, validation::validate_policy};
//!
//! let policy: NodeNetworkConfigurationPolicy = serde_yaml::from_str(r#"
//! apiVersion: nmstate.io/v1
//! kind: NodeNetworkConfigurationPolicy
//! metadata:
//!   name: eth1
//! spec:
//!   desiredState:
//!     interfaces:
//!     - name: eth1
//!       type: ethernet
//!       state: up
//! "#).unwrap();
//! assert!(validate_policy(&policy).is_empty());
//! ```

pub mod condition;
pub mod enactment;
pub mod intorstr;
pub mod openapi_doc;
pub mod policy;
pub mod render;
pub mod resources;
pub mod state;
pub mod subresources;
pub mod validation;

pub use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ListMeta, ObjectMeta, Time};

pub use crate::{
    condition::{Condition, ConditionReason, ConditionStatus, ConditionType},
    enactment::{
        CapturedState, ENACTMENT_NODE_LABEL, ENACTMENT_POLICY_LABEL, EnactmentPhase, MetaInfo,
        NodeNetworkConfigurationEnactment, NodeNetworkConfigurationEnactmentStatus, enactment_name,
    },
    intorstr::IntOrString,
    policy::{
        NodeNetworkConfigurationPolicy, NodeNetworkConfigurationPolicySpec,
        NodeNetworkConfigurationPolicyStatus,
    },
    resources::{List, Resource, ResourceKind},
    state::{NodeNetworkState, NodeNetworkStateStatus, State},
    validation::{FieldError, FieldErrorKind},
};

/// The API group of every kind in this crate.
pub const GROUP: &str = "nmstate.io";
/// The preferred and stored version.
pub const V1: &str = "v1";
/// The older served version; same schema as `v1`, kept so that upstream
/// manifests written for `nmstate.io/v1beta1` keep working.
pub const V1BETA1: &str = "v1beta1";
/// Served versions, preferred first (the order discovery lists them in).
pub const VERSIONS: [&str; 2] = [V1, V1BETA1];
/// The version objects are stored in.
pub const STORAGE_VERSION: &str = V1;
/// `apiVersion` of the preferred version.
pub const API_VERSION_V1: &str = "nmstate.io/v1";
/// `apiVersion` of the older served version.
pub const API_VERSION_V1BETA1: &str = "nmstate.io/v1beta1";
/// The category all kinds belong to, so `kubectl get nmstate` lists them all.
pub const CATEGORY: &str = "nmstate";

/// The `apiVersion` string (`nmstate.io/<version>`) of a served version, or
/// `None` when `version` is not served.
pub fn api_version(version: &str) -> Option<&'static str> {
    match version {
        V1 => Some(API_VERSION_V1),
        V1BETA1 => Some(API_VERSION_V1BETA1),
        _ => None,
    }
}

/// The served version named by an `apiVersion` string such as
/// `nmstate.io/v1beta1`, or `None` when it is not one of ours.
pub fn version_of(api_version: &str) -> Option<&'static str> {
    match api_version {
        API_VERSION_V1 => Some(V1),
        API_VERSION_V1BETA1 => Some(V1BETA1),
        _ => None,
    }
}

/// Deserialises `null` as the default value: clients (Go ones in
/// particular) send `null` for empty lists and maps.
pub(crate) fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + serde::Deserialize<'de>,
{
    <Option<T> as serde::Deserialize>::deserialize(deserializer).map(Option::unwrap_or_default)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_versions_round_trip() {
        for version in VERSIONS {
            let api_version = api_version(version).expect("served");
            assert_eq!(version_of(api_version), Some(version));
        }
        assert_eq!(api_version("v2"), None);
        assert_eq!(version_of("nmstate.io/v1alpha1"), None);
        assert_eq!(version_of("v1"), None);
    }
}
