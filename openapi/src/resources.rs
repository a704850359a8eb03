//! The three resource kinds as data: names (kind, plural, singular, short
//! name), scope, subresources, plus the [`Resource`] trait that lets the API
//! server handle every kind with one generic code path and the [`List`]
//! envelope of list responses.
//!
//! Discovery documents, storage keys and URL routing are built from these
//! values, so a name is spelt in exactly one place.

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::{GROUP, ListMeta, ObjectMeta, api_version, validation::FieldError};

/// Subresource holding the observed state; written by controllers and agents.
pub const SUBRESOURCE_STATUS: &str = "status";
/// Policy subresource rendering the policy for one node.
pub const SUBRESOURCE_RENDER: &str = "render";
/// Policy subresource showing what every node would get, without writing.
pub const SUBRESOURCE_DRY_RUN: &str = "dry-run";

/// One of the kinds served in group `nmstate.io`. All are cluster-scoped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceKind {
    /// `NodeNetworkState` (`nns`): a node's reported network state.
    NodeNetworkState,
    /// `NodeNetworkConfigurationPolicy` (`nncp`): desired state for a set of
    /// nodes.
    NodeNetworkConfigurationPolicy,
    /// `NodeNetworkConfigurationEnactment` (`nnce`): one policy on one node.
    NodeNetworkConfigurationEnactment,
}

impl ResourceKind {
    /// Every kind, in the order discovery lists them.
    pub const ALL: [ResourceKind; 3] = [
        Self::NodeNetworkConfigurationEnactment,
        Self::NodeNetworkConfigurationPolicy,
        Self::NodeNetworkState,
    ];

    /// The `kind` field value, e.g. `NodeNetworkConfigurationPolicy`.
    pub const fn kind(self) -> &'static str {
        match self {
            Self::NodeNetworkState => "NodeNetworkState",
            Self::NodeNetworkConfigurationPolicy => "NodeNetworkConfigurationPolicy",
            Self::NodeNetworkConfigurationEnactment => "NodeNetworkConfigurationEnactment",
        }
    }

    /// The `kind` of list responses, e.g. `NodeNetworkConfigurationPolicyList`.
    pub const fn list_kind(self) -> &'static str {
        match self {
            Self::NodeNetworkState => "NodeNetworkStateList",
            Self::NodeNetworkConfigurationPolicy => "NodeNetworkConfigurationPolicyList",
            Self::NodeNetworkConfigurationEnactment => "NodeNetworkConfigurationEnactmentList",
        }
    }

    /// The resource name used in URLs and storage keys.
    pub const fn plural(self) -> &'static str {
        match self {
            Self::NodeNetworkState => "nodenetworkstates",
            Self::NodeNetworkConfigurationPolicy => "nodenetworkconfigurationpolicies",
            Self::NodeNetworkConfigurationEnactment => "nodenetworkconfigurationenactments",
        }
    }

    /// The lower-case singular name (`kubectl get nodenetworkstate`).
    pub const fn singular(self) -> &'static str {
        match self {
            Self::NodeNetworkState => "nodenetworkstate",
            Self::NodeNetworkConfigurationPolicy => "nodenetworkconfigurationpolicy",
            Self::NodeNetworkConfigurationEnactment => "nodenetworkconfigurationenactment",
        }
    }

    /// The short name (`kubectl get nncp`).
    pub const fn short_name(self) -> &'static str {
        match self {
            Self::NodeNetworkState => "nns",
            Self::NodeNetworkConfigurationPolicy => "nncp",
            Self::NodeNetworkConfigurationEnactment => "nnce",
        }
    }

    /// Categories for `kubectl get <category>`.
    pub const fn categories(self) -> &'static [&'static str] {
        &[crate::CATEGORY]
    }

    /// Whether objects live in a namespace; none do.
    pub const fn namespaced(self) -> bool {
        false
    }

    /// Whether the kind has a user-written `spec` (only policies do; states
    /// and enactments are all status).
    pub const fn has_spec(self) -> bool {
        matches!(self, Self::NodeNetworkConfigurationPolicy)
    }

    /// Whether the kind has the `status` subresource (all do).
    pub const fn has_status(self) -> bool {
        true
    }

    /// Whether the kind has the `render` subresource.
    pub const fn has_render(self) -> bool {
        matches!(self, Self::NodeNetworkConfigurationPolicy)
    }

    /// Whether the kind has the `dry-run` subresource.
    pub const fn has_dry_run(self) -> bool {
        matches!(self, Self::NodeNetworkConfigurationPolicy)
    }

    /// The subresources, as they appear after `<plural>/` in discovery.
    pub const fn subresources(self) -> &'static [&'static str] {
        match self {
            Self::NodeNetworkConfigurationPolicy => {
                &[SUBRESOURCE_STATUS, SUBRESOURCE_RENDER, SUBRESOURCE_DRY_RUN]
            }
            Self::NodeNetworkState | Self::NodeNetworkConfigurationEnactment => {
                &[SUBRESOURCE_STATUS]
            }
        }
    }

    /// The group-qualified resource, e.g. `nodenetworkstates.nmstate.io`, as
    /// Kubernetes prints it in NotFound and Conflict messages.
    pub fn group_resource(self) -> String {
        format!("{}.{GROUP}", self.plural())
    }

    /// The group-qualified kind, e.g. `NodeNetworkState.nmstate.io`, as
    /// Kubernetes prints it in Invalid messages.
    pub fn group_kind(self) -> String {
        format!("{}.{GROUP}", self.kind())
    }

    /// The kind whose plural is `plural` (URL routing).
    pub fn from_plural(plural: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.plural() == plural)
    }

    /// The kind whose `kind` field value is `kind`.
    pub fn from_kind(kind: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.kind() == kind)
    }

    /// The kind named by any of the names kubectl accepts: plural, singular,
    /// short name or kind, case-insensitively.
    pub fn from_any_name(name: &str) -> Option<Self> {
        let name = name.to_ascii_lowercase();
        Self::ALL.into_iter().find(|kind| {
            name == kind.plural()
                || name == kind.singular()
                || name == kind.short_name()
                || name == kind.kind().to_ascii_lowercase()
        })
    }
}

impl std::fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.kind())
    }
}

/// What the API server needs from every object type to serve it generically.
pub trait Resource: Clone + std::fmt::Debug + Serialize + DeserializeOwned {
    /// Which kind this type is.
    const KIND: ResourceKind;

    /// The object's metadata.
    fn metadata(&self) -> &ObjectMeta;

    /// The object's metadata, mutable (the server sets `resourceVersion`,
    /// `uid`, `generation`, timestamps).
    fn metadata_mut(&mut self) -> &mut ObjectMeta;

    /// Set `apiVersion` to `nmstate.io/<version>` and `kind` to this kind, as
    /// responses carry the version the client asked for.
    fn set_type_meta(&mut self, version: &str);

    /// Every problem with the object as a whole (metadata and, for kinds
    /// without a spec, the status they consist of).
    fn validate(&self) -> Vec<FieldError>;

    /// The object's name, or `""` when it has none yet.
    fn name(&self) -> &str {
        self.metadata().name.as_deref().unwrap_or_default()
    }
}

/// The `apiVersion` and `kind` of an object of `kind` in `version`; shared
/// by the [`Resource`] impls.
pub(crate) fn type_meta(kind: ResourceKind, version: &str) -> (String, String) {
    let api_version = api_version(version)
        .map(str::to_owned)
        .unwrap_or_else(|| format!("{GROUP}/{version}"));
    (api_version, kind.kind().to_owned())
}

/// The body of a list response, e.g. `NodeNetworkConfigurationPolicyList`.
///
/// ```yaml
/// apiVersion: nmstate.io/v1
/// kind: NodeNetworkConfigurationPolicyList
/// metadata:
///   resourceVersion: "42"
/// items: []
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", bound(deserialize = "T: Deserialize<'de>"))]
pub struct List<T> {
    /// `nmstate.io/<version>`.
    #[serde(default)]
    pub api_version: String,
    /// `<Kind>List`.
    #[serde(default)]
    pub kind: String,
    /// `resourceVersion`, `continue`, `remainingItemCount`.
    #[serde(default)]
    pub metadata: ListMeta,
    /// The objects; always present, possibly empty.
    #[serde(default = "Vec::new", deserialize_with = "crate::null_as_default")]
    pub items: Vec<T>,
}

impl<T: Resource> List<T> {
    /// A list of `items` in `version`, with its type fields filled in.
    pub fn new(version: &str, items: Vec<T>, metadata: ListMeta) -> Self {
        let (api_version, _) = type_meta(T::KIND, version);
        Self {
            api_version,
            kind: T::KIND.list_kind().to_owned(),
            metadata,
            items,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::NodeNetworkConfigurationPolicy;

    #[test]
    fn names_are_upstream_spellings() {
        let rows: Vec<_> = ResourceKind::ALL
            .into_iter()
            .map(|kind| {
                (
                    kind.kind(),
                    kind.list_kind(),
                    kind.plural(),
                    kind.singular(),
                    kind.short_name(),
                    kind.subresources().to_vec(),
                )
            })
            .collect();
        assert_eq!(
            rows,
            vec![
                (
                    "NodeNetworkConfigurationEnactment",
                    "NodeNetworkConfigurationEnactmentList",
                    "nodenetworkconfigurationenactments",
                    "nodenetworkconfigurationenactment",
                    "nnce",
                    vec!["status"],
                ),
                (
                    "NodeNetworkConfigurationPolicy",
                    "NodeNetworkConfigurationPolicyList",
                    "nodenetworkconfigurationpolicies",
                    "nodenetworkconfigurationpolicy",
                    "nncp",
                    vec!["status", "render", "dry-run"],
                ),
                (
                    "NodeNetworkState",
                    "NodeNetworkStateList",
                    "nodenetworkstates",
                    "nodenetworkstate",
                    "nns",
                    vec!["status"],
                ),
            ]
        );
        for kind in ResourceKind::ALL {
            assert!(!kind.namespaced());
            assert_eq!(kind.categories(), &["nmstate"]);
        }
    }

    #[test]
    fn lookups() {
        for kind in ResourceKind::ALL {
            assert_eq!(ResourceKind::from_plural(kind.plural()), Some(kind));
            assert_eq!(ResourceKind::from_kind(kind.kind()), Some(kind));
            for name in [
                kind.plural(),
                kind.singular(),
                kind.short_name(),
                kind.kind(),
            ] {
                assert_eq!(ResourceKind::from_any_name(name), Some(kind), "{name}");
            }
        }
        assert_eq!(
            ResourceKind::from_any_name("NNCP"),
            Some(ResourceKind::NodeNetworkConfigurationPolicy)
        );
        assert_eq!(ResourceKind::from_plural("nodes"), None);
        assert_eq!(
            ResourceKind::NodeNetworkState.group_resource(),
            "nodenetworkstates.nmstate.io"
        );
        assert_eq!(
            ResourceKind::NodeNetworkState.group_kind(),
            "NodeNetworkState.nmstate.io"
        );
    }

    #[test]
    fn list_envelope() {
        let list =
            List::<NodeNetworkConfigurationPolicy>::new("v1beta1", vec![], ListMeta::default());
        assert_eq!(
            serde_json::to_string(&list).unwrap(),
            r#"{"apiVersion":"nmstate.io/v1beta1","kind":"NodeNetworkConfigurationPolicyList","metadata":{},"items":[]}"#
        );
    }
}
