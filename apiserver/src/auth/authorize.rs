//! Authorization: may this user do this? The standalone policy, for a server
//! that runs without a kube-apiserver to delegate to.
//!
//! - `system:masters` may do anything.
//! - A node identity (user `system:node:N` in group `system:nodes`, or a
//!   user whose extra `authentication.kubernetes.io/node-name` is `[N]`) is
//!   held to what its node agent needs, like Kubernetes' Node authorizer and
//!   NodeRestriction admission together: it reads policies, reads and
//!   writes NodeNetworkState `N` (and its status), reads the enactments
//!   labelled `nmstate.io/node=N` and writes only their status.
//! - Every other user may read discovery, OpenAPI and `/version`, nothing
//!   else.
//!
//! [`authorize`] is a pure function over the request's attributes. Some
//! answers depend on the object itself (the name in a create's body, the
//! node label of a stored enactment); those come back as
//! [`Decision::AllowIf`] with a [`Condition`] that the verb checks once it
//! has the object. This module never reads a request or the store.

use nmstate_openapi::{ENACTMENT_NODE_LABEL, GROUP, ResourceKind};
use serde_json::Value;

use super::UserInfo;
use crate::request::{Subresource, Verb};
pub use crate::tls::MASTERS_GROUP;

/// The group of node identities.
pub const NODES_GROUP: &str = "system:nodes";
/// The prefix of a node identity's user name.
pub const NODE_USER_PREFIX: &str = "system:node:";
/// The extra key a service-account token bound to a node carries.
pub const NODE_NAME_EXTRA: &str = "authentication.kubernetes.io/node-name";

/// What a request asks to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestAttributes<'a> {
    /// A verb on nmstate.io objects.
    Resource(ResourceAttributes<'a>),
    /// A path that names no object: discovery, OpenAPI, `/version`,
    /// `/metrics`.
    NonResource {
        /// The path asked for.
        path: &'a str,
        /// The lower-case HTTP method (`get` for GET and HEAD), as
        /// Kubernetes names non-resource verbs.
        verb: &'a str,
    },
}

/// A verb on nmstate.io objects, with what pins the objects it touches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceAttributes<'a> {
    /// The Kubernetes verb.
    pub verb: Verb,
    /// The kind.
    pub kind: ResourceKind,
    /// The subresource, if any.
    pub subresource: Option<Subresource>,
    /// The object name from the path, if any.
    pub name: Option<&'a str>,
    /// The node a list or watch of enactments is pinned to, by
    /// `labelSelector=nmstate.io/node=N` or `fieldSelector=node=N`.
    pub node_selector: Option<&'a str>,
    /// The name a list or watch is pinned to by
    /// `fieldSelector=metadata.name=N`.
    pub name_selector: Option<&'a str>,
}

/// The answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Go ahead.
    Allow,
    /// Go ahead if the object passes the condition.
    AllowIf(Condition),
    /// 403, for the reason given (empty when there is nothing to add to
    /// "cannot VERB resource").
    Deny(String),
}

/// What an object must satisfy for a conditional [`Decision::AllowIf`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Condition {
    /// The object created must have this name (a node creating its own
    /// NodeNetworkState).
    Named {
        /// The node, and so the only name allowed.
        node: String,
    },
    /// The stored object must carry the label `nmstate.io/node=N`.
    LabelledForNode {
        /// The node.
        node: String,
    },
}

impl Condition {
    /// Checks the name a create gives its object; the reason on failure.
    pub fn check_name(&self, name: &str) -> Result<(), String> {
        match self {
            Condition::Named { node } if name == node => Ok(()),
            Condition::Named { node } => Err(format!(
                "node \"{node}\" may only create its own NodeNetworkState \"{node}\""
            )),
            Condition::LabelledForNode { .. } => Ok(()),
        }
    }

    /// Checks an object read from the store; the reason on failure.
    pub fn check_object(&self, object: &Value) -> Result<(), String> {
        match self {
            Condition::Named { .. } => Ok(()),
            Condition::LabelledForNode { node } => {
                let label = object
                    .pointer("/metadata/labels")
                    .and_then(|labels| labels.get(ENACTMENT_NODE_LABEL))
                    .and_then(Value::as_str);
                if label == Some(node.as_str()) {
                    Ok(())
                } else {
                    Err(format!(
                        "node \"{node}\" may only access enactments labelled {ENACTMENT_NODE_LABEL}={node}"
                    ))
                }
            }
        }
    }
}

/// A [`Condition`] the verb must check once it has the object, with what
/// the 403 message needs when the object fails it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Obligation {
    condition: Condition,
    user: String,
    verb: Verb,
    kind: ResourceKind,
    subresource: Option<Subresource>,
}

impl Obligation {
    /// The obligation of a conditional decision on `attributes` for `user`.
    pub fn new(condition: Condition, user: &UserInfo, attributes: &ResourceAttributes<'_>) -> Self {
        Self {
            condition,
            user: user.name.clone(),
            verb: attributes.verb,
            kind: attributes.kind,
            subresource: attributes.subresource,
        }
    }

    /// Checks the name a create gives its object; the 403 on failure.
    pub fn check_name(&self, name: &str) -> Result<(), Forbidden> {
        self.condition
            .check_name(name)
            .map_err(|reason| self.message(name, &reason))
    }

    /// Checks the stored object `name`; the 403 on failure.
    pub fn check_object(&self, name: &str, object: &Value) -> Result<(), Forbidden> {
        self.condition
            .check_object(object)
            .map_err(|reason| self.message(name, &reason))
    }

    fn message(&self, name: &str, reason: &str) -> Forbidden {
        let attributes = RequestAttributes::Resource(ResourceAttributes {
            verb: self.verb,
            kind: self.kind,
            subresource: self.subresource,
            name: Some(name),
            node_selector: None,
            name_selector: None,
        });
        Forbidden::new(&self.user, &attributes, reason)
    }
}

/// The node a user is bound to, if it is a node identity.
pub fn node_of(user: &UserInfo) -> Option<&str> {
    if let Some(node) = user.name.strip_prefix(NODE_USER_PREFIX)
        && !node.is_empty()
        && user.groups.iter().any(|group| group == NODES_GROUP)
    {
        return Some(node);
    }
    match user.extra.get(NODE_NAME_EXTRA).map(Vec::as_slice) {
        Some([node]) if !node.is_empty() => Some(node),
        _ => None,
    }
}

/// Decides whether `user` may do what `attributes` describe.
pub fn authorize(user: &UserInfo, attributes: &RequestAttributes<'_>) -> Decision {
    if user.groups.iter().any(|group| group == MASTERS_GROUP) {
        return Decision::Allow;
    }
    match attributes {
        RequestAttributes::NonResource { path, verb } => {
            let metrics = *path == "/metrics" || path.starts_with("/metrics/");
            if metrics {
                Decision::Deny(format!("only {MASTERS_GROUP} may read metrics"))
            } else if *verb == "get" {
                Decision::Allow
            } else {
                Decision::Deny(String::new())
            }
        }
        RequestAttributes::Resource(resource) => match node_of(user) {
            Some(node) => authorize_node(node, resource),
            None => Decision::Deny(
                "the standalone policy grants this only to system:masters".to_string(),
            ),
        },
    }
}

fn authorize_node(node: &str, attributes: &ResourceAttributes<'_>) -> Decision {
    use ResourceKind::{
        NodeNetworkConfigurationEnactment as Enactment, NodeNetworkConfigurationPolicy as Policy,
        NodeNetworkState as State,
    };
    let reading = matches!(attributes.verb, Verb::Get | Verb::List | Verb::Watch);
    let collection = matches!(attributes.verb, Verb::List | Verb::Watch);
    let plain_or_status = matches!(attributes.subresource, None | Some(Subresource::Status));
    let deny = |reason: String| Decision::Deny(reason);
    match attributes.kind {
        Policy if reading && plain_or_status => Decision::Allow,
        Policy => deny(format!("node \"{node}\" may only read policies")),
        State => {
            let allowed_verb =
                reading || matches!(attributes.verb, Verb::Create | Verb::Update | Verb::Patch);
            if !allowed_verb || !plain_or_status {
                return deny(format!(
                    "node \"{node}\" may only read and write its own NodeNetworkState"
                ));
            }
            if collection {
                return if attributes.name_selector == Some(node) {
                    Decision::Allow
                } else {
                    deny(format!(
                        "node \"{node}\" may only {} its own NodeNetworkState: add fieldSelector=metadata.name={node}",
                        attributes.verb.as_str()
                    ))
                };
            }
            match attributes.name {
                Some(name) if name == node => Decision::Allow,
                Some(_) if reading => deny(format!(
                    "node \"{node}\" may only read its own NodeNetworkState"
                )),
                Some(_) => deny(format!(
                    "node \"{node}\" may only write its own NodeNetworkState"
                )),
                // A create names its object in the body.
                None => Decision::AllowIf(Condition::Named {
                    node: node.to_string(),
                }),
            }
        }
        Enactment if collection && attributes.subresource.is_none() => {
            if attributes.node_selector == Some(node) {
                Decision::Allow
            } else {
                deny(format!(
                    "node \"{node}\" may only {} enactments labelled {ENACTMENT_NODE_LABEL}={node}: add labelSelector={ENACTMENT_NODE_LABEL}={node} or fieldSelector=node={node}",
                    attributes.verb.as_str()
                ))
            }
        }
        Enactment if attributes.verb == Verb::Get && plain_or_status => {
            Decision::AllowIf(Condition::LabelledForNode {
                node: node.to_string(),
            })
        }
        Enactment
            if matches!(attributes.verb, Verb::Update | Verb::Patch)
                && attributes.subresource == Some(Subresource::Status) =>
        {
            Decision::AllowIf(Condition::LabelledForNode {
                node: node.to_string(),
            })
        }
        Enactment => deny(format!(
            "node \"{node}\" may only read its own enactments and write their status"
        )),
    }
}

/// A 403: its message, and the object it names for the Status `details`
/// (kube-apiserver's `NewForbidden`: the group, the resource without its
/// subresource as `kind`, the name; all empty for a non-resource path).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Forbidden {
    /// The message, see [`forbidden_message`].
    pub message: String,
    /// The resource asked for; `None` for a non-resource path.
    pub kind: Option<ResourceKind>,
    /// The object's name, when the request names one.
    pub name: Option<String>,
}

impl Forbidden {
    /// The 403 for `user` doing `attributes`, denied for `reason`.
    pub fn new(user: &str, attributes: &RequestAttributes<'_>, reason: &str) -> Self {
        let (kind, name) = match attributes {
            RequestAttributes::Resource(resource) => {
                (Some(resource.kind), resource.name.map(str::to_string))
            }
            RequestAttributes::NonResource { .. } => (None, None),
        };
        Self {
            message: forbidden_message(user, attributes, reason),
            kind,
            name,
        }
    }
}

impl std::fmt::Display for Forbidden {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// The message of a 403, in Kubernetes' words:
///
/// ```text
/// nodenetworkstates.nmstate.io "b" is forbidden: User "system:node:a" cannot update resource "nodenetworkstates" in API group "nmstate.io" at the cluster scope: node "a" may only write its own NodeNetworkState
/// ```
pub fn forbidden_message(user: &str, attributes: &RequestAttributes<'_>, reason: &str) -> String {
    let mut message = match attributes {
        RequestAttributes::NonResource { path, verb } => {
            format!("forbidden: User \"{user}\" cannot {verb} path \"{path}\"")
        }
        RequestAttributes::Resource(resource) => {
            let plural = resource.kind.plural();
            let subject = match resource.name {
                Some(name) => format!("{plural}.{GROUP} \"{name}\""),
                None => format!("{plural}.{GROUP}"),
            };
            let resource_name = match resource.subresource {
                Some(subresource) => format!("{plural}/{}", subresource.as_str()),
                None => plural.to_string(),
            };
            format!(
                "{subject} is forbidden: User \"{user}\" cannot {} resource \"{resource_name}\" in API group \"{GROUP}\" at the cluster scope",
                resource.verb.as_str()
            )
        }
    };
    if !reason.is_empty() {
        message.push_str(": ");
        message.push_str(reason);
    }
    message
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;

    fn user(name: &str, groups: &[&str]) -> UserInfo {
        UserInfo {
            name: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            extra: BTreeMap::new(),
        }
    }

    fn node_a() -> UserInfo {
        user("system:node:a", &[NODES_GROUP, "system:authenticated"])
    }

    fn resource(
        verb: Verb,
        kind: ResourceKind,
        subresource: Option<Subresource>,
        name: Option<&'static str>,
    ) -> ResourceAttributes<'static> {
        ResourceAttributes {
            verb,
            kind,
            subresource,
            name,
            node_selector: None,
            name_selector: None,
        }
    }

    /// Checks one row: the decision, and for a denial the full message.
    fn check(case: &str, user: &UserInfo, attributes: RequestAttributes<'_>, expected: Expected) {
        let decision = authorize(user, &attributes);
        match (&decision, expected) {
            (Decision::Allow, Expected::Allow) => {}
            (Decision::AllowIf(condition), Expected::AllowIf(expected)) => {
                assert_eq!(condition, &expected, "case {case}")
            }
            (Decision::Deny(reason), Expected::Deny(message)) => assert_eq!(
                forbidden_message(&user.name, &attributes, reason),
                message,
                "case {case}"
            ),
            (decision, expected) => panic!("case {case}: got {decision:?}, want {expected:?}"),
        }
    }

    #[derive(Clone, Debug)]
    enum Expected {
        Allow,
        AllowIf(Condition),
        Deny(&'static str),
    }

    #[test]
    fn decisions() {
        use Expected::{Allow, AllowIf, Deny};
        use ResourceKind::{
            NodeNetworkConfigurationEnactment as Enactment,
            NodeNetworkConfigurationPolicy as Policy, NodeNetworkState as State,
        };
        use Subresource::Status;
        let r = |verb, kind, subresource, name| {
            RequestAttributes::Resource(resource(verb, kind, subresource, name))
        };
        let selected = |verb, kind, node: Option<&'static str>, name: Option<&'static str>| {
            RequestAttributes::Resource(ResourceAttributes {
                node_selector: node,
                name_selector: name,
                ..resource(verb, kind, None, None)
            })
        };
        let admin = user("admin", &[MASTERS_GROUP]);
        let jane = user("jane", &["dev", "system:authenticated"]);
        let node = node_a();
        let labelled = AllowIf(Condition::LabelledForNode { node: "a".into() });

        check(
            "masters delete anything",
            &admin,
            r(Verb::DeleteCollection, Policy, None, None),
            Allow,
        );
        check(
            "masters read metrics",
            &admin,
            RequestAttributes::NonResource {
                path: "/metrics",
                verb: "get",
            },
            Allow,
        );
        check(
            "anyone reads discovery",
            &jane,
            RequestAttributes::NonResource {
                path: "/apis/nmstate.io/v1",
                verb: "get",
            },
            Allow,
        );
        check(
            "others may not read metrics",
            &jane,
            RequestAttributes::NonResource {
                path: "/metrics",
                verb: "get",
            },
            Deny(
                "forbidden: User \"jane\" cannot get path \"/metrics\": only system:masters may read metrics",
            ),
        );
        check(
            "others read no objects",
            &jane,
            r(Verb::Get, Policy, None, Some("p")),
            Deny(
                "nodenetworkconfigurationpolicies.nmstate.io \"p\" is forbidden: User \"jane\" cannot get resource \"nodenetworkconfigurationpolicies\" in API group \"nmstate.io\" at the cluster scope: the standalone policy grants this only to system:masters",
            ),
        );
        check(
            "a node-like name outside system:nodes is no node",
            &user("system:node:a", &["system:authenticated"]),
            r(Verb::Get, State, None, Some("a")),
            Deny(
                "nodenetworkstates.nmstate.io \"a\" is forbidden: User \"system:node:a\" cannot get resource \"nodenetworkstates\" in API group \"nmstate.io\" at the cluster scope: the standalone policy grants this only to system:masters",
            ),
        );

        check(
            "node lists policies",
            &node,
            r(Verb::List, Policy, None, None),
            Allow,
        );
        check(
            "node watches policies",
            &node,
            r(Verb::Watch, Policy, None, None),
            Allow,
        );
        check(
            "node gets a policy's status",
            &node,
            r(Verb::Get, Policy, Some(Status), Some("p")),
            Allow,
        );
        check(
            "node may not write policies",
            &node,
            r(Verb::Create, Policy, None, None),
            Deny(
                "nodenetworkconfigurationpolicies.nmstate.io is forbidden: User \"system:node:a\" cannot create resource \"nodenetworkconfigurationpolicies\" in API group \"nmstate.io\" at the cluster scope: node \"a\" may only read policies",
            ),
        );
        check(
            "node may not write policy status",
            &node,
            r(Verb::Update, Policy, Some(Status), Some("p")),
            Deny(
                "nodenetworkconfigurationpolicies.nmstate.io \"p\" is forbidden: User \"system:node:a\" cannot update resource \"nodenetworkconfigurationpolicies/status\" in API group \"nmstate.io\" at the cluster scope: node \"a\" may only read policies",
            ),
        );

        check(
            "node gets its state",
            &node,
            r(Verb::Get, State, None, Some("a")),
            Allow,
        );
        check(
            "node updates its state",
            &node,
            r(Verb::Update, State, None, Some("a")),
            Allow,
        );
        check(
            "node patches its status",
            &node,
            r(Verb::Patch, State, Some(Status), Some("a")),
            Allow,
        );
        check(
            "node creates a state named in the body",
            &node,
            r(Verb::Create, State, None, None),
            AllowIf(Condition::Named { node: "a".into() }),
        );
        check(
            "node may not update another's state",
            &node,
            r(Verb::Update, State, None, Some("b")),
            Deny(
                "nodenetworkstates.nmstate.io \"b\" is forbidden: User \"system:node:a\" cannot update resource \"nodenetworkstates\" in API group \"nmstate.io\" at the cluster scope: node \"a\" may only write its own NodeNetworkState",
            ),
        );
        check(
            "node may not read another's state",
            &node,
            r(Verb::Get, State, None, Some("b")),
            Deny(
                "nodenetworkstates.nmstate.io \"b\" is forbidden: User \"system:node:a\" cannot get resource \"nodenetworkstates\" in API group \"nmstate.io\" at the cluster scope: node \"a\" may only read its own NodeNetworkState",
            ),
        );
        check(
            "node may not delete its state",
            &node,
            r(Verb::Delete, State, None, Some("a")),
            Deny(
                "nodenetworkstates.nmstate.io \"a\" is forbidden: User \"system:node:a\" cannot delete resource \"nodenetworkstates\" in API group \"nmstate.io\" at the cluster scope: node \"a\" may only read and write its own NodeNetworkState",
            ),
        );
        check(
            "node lists its state by name",
            &node,
            selected(Verb::List, State, None, Some("a")),
            Allow,
        );
        check(
            "node may not list every state",
            &node,
            selected(Verb::List, State, None, None),
            Deny(
                "nodenetworkstates.nmstate.io is forbidden: User \"system:node:a\" cannot list resource \"nodenetworkstates\" in API group \"nmstate.io\" at the cluster scope: node \"a\" may only list its own NodeNetworkState: add fieldSelector=metadata.name=a",
            ),
        );

        check(
            "node lists its enactments",
            &node,
            selected(Verb::List, Enactment, Some("a"), None),
            Allow,
        );
        check(
            "node watches its enactments",
            &node,
            selected(Verb::Watch, Enactment, Some("a"), None),
            Allow,
        );
        check(
            "node may not list every enactment",
            &node,
            selected(Verb::List, Enactment, None, None),
            Deny(
                "nodenetworkconfigurationenactments.nmstate.io is forbidden: User \"system:node:a\" cannot list resource \"nodenetworkconfigurationenactments\" in API group \"nmstate.io\" at the cluster scope: node \"a\" may only list enactments labelled nmstate.io/node=a: add labelSelector=nmstate.io/node=a or fieldSelector=node=a",
            ),
        );
        check(
            "node may not watch another's enactments",
            &node,
            selected(Verb::Watch, Enactment, Some("b"), None),
            Deny(
                "nodenetworkconfigurationenactments.nmstate.io is forbidden: User \"system:node:a\" cannot watch resource \"nodenetworkconfigurationenactments\" in API group \"nmstate.io\" at the cluster scope: node \"a\" may only watch enactments labelled nmstate.io/node=a: add labelSelector=nmstate.io/node=a or fieldSelector=node=a",
            ),
        );
        check(
            "node gets an enactment if labelled",
            &node,
            r(Verb::Get, Enactment, None, Some("a.p")),
            labelled.clone(),
        );
        check(
            "node writes enactment status if labelled",
            &node,
            r(Verb::Update, Enactment, Some(Status), Some("a.p")),
            labelled.clone(),
        );
        check(
            "node patches enactment status if labelled",
            &node,
            r(Verb::Patch, Enactment, Some(Status), Some("a.p")),
            labelled.clone(),
        );
        check(
            "node may not write an enactment's spec",
            &node,
            r(Verb::Update, Enactment, None, Some("a.p")),
            Deny(
                "nodenetworkconfigurationenactments.nmstate.io \"a.p\" is forbidden: User \"system:node:a\" cannot update resource \"nodenetworkconfigurationenactments\" in API group \"nmstate.io\" at the cluster scope: node \"a\" may only read its own enactments and write their status",
            ),
        );
        check(
            "node may not create enactments",
            &node,
            r(Verb::Create, Enactment, None, None),
            Deny(
                "nodenetworkconfigurationenactments.nmstate.io is forbidden: User \"system:node:a\" cannot create resource \"nodenetworkconfigurationenactments\" in API group \"nmstate.io\" at the cluster scope: node \"a\" may only read its own enactments and write their status",
            ),
        );

        let mut bound = user(
            "system:serviceaccount:nmstate:handler",
            &["system:serviceaccounts"],
        );
        bound.extra.insert(NODE_NAME_EXTRA.into(), vec!["a".into()]);
        check(
            "a token bound to node a is node a",
            &bound,
            r(Verb::Update, State, None, Some("a")),
            Allow,
        );
        check(
            "a token bound to node a may not write b",
            &bound,
            r(Verb::Update, State, None, Some("b")),
            Deny(
                "nodenetworkstates.nmstate.io \"b\" is forbidden: User \"system:serviceaccount:nmstate:handler\" cannot update resource \"nodenetworkstates\" in API group \"nmstate.io\" at the cluster scope: node \"a\" may only write its own NodeNetworkState",
            ),
        );
    }

    #[test]
    fn conditions() {
        let named = Condition::Named { node: "a".into() };
        assert_eq!(named.check_name("a"), Ok(()));
        assert_eq!(
            named.check_name("b"),
            Err("node \"a\" may only create its own NodeNetworkState \"a\"".to_string())
        );
        let labelled = Condition::LabelledForNode { node: "a".into() };
        let enactment = |node: &str| json!({"metadata": {"labels": {ENACTMENT_NODE_LABEL: node}}});
        assert_eq!(labelled.check_object(&enactment("a")), Ok(()));
        assert_eq!(
            labelled.check_object(&enactment("b")),
            Err("node \"a\" may only access enactments labelled nmstate.io/node=a".to_string())
        );
        assert!(labelled.check_object(&json!({"metadata": {}})).is_err());
    }

    #[test]
    fn obligations_name_the_object() {
        let attributes = resource(Verb::Create, ResourceKind::NodeNetworkState, None, None);
        let obligation = Obligation::new(
            Condition::Named { node: "a".into() },
            &node_a(),
            &attributes,
        );
        assert_eq!(obligation.check_name("a"), Ok(()));
        let forbidden = obligation.check_name("b").unwrap_err();
        assert_eq!(forbidden.kind, Some(ResourceKind::NodeNetworkState));
        assert_eq!(forbidden.name.as_deref(), Some("b"));
        assert_eq!(
            forbidden.message,
            "nodenetworkstates.nmstate.io \"b\" is forbidden: User \"system:node:a\" cannot create resource \"nodenetworkstates\" in API group \"nmstate.io\" at the cluster scope: node \"a\" may only create its own NodeNetworkState \"a\""
        );
    }

    #[test]
    fn node_identities() {
        assert_eq!(node_of(&node_a()), Some("a"));
        assert_eq!(node_of(&user("system:node:", &[NODES_GROUP])), None);
        assert_eq!(node_of(&user("system:node:a", &[])), None);
        let mut two = user("sa", &[]);
        two.extra
            .insert(NODE_NAME_EXTRA.into(), vec!["a".into(), "b".into()]);
        assert_eq!(node_of(&two), None);
    }
}
