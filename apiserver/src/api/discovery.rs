//! Discovery documents: `/api`, `/apis` (legacy `APIGroupList` and
//! aggregated `APIGroupDiscoveryList`), `/apis/nmstate.io`,
//! `/apis/nmstate.io/{version}` and `/version`. Pure: built from the
//! resource kinds of `nmstate-openapi`.

use nmstate_openapi::{GROUP, ResourceKind, V1, VERSIONS};
use serde_json::{Value, json};

/// The Kubernetes API level this server implements (the machine's kubectl
/// picks a matching client from the reported minor version).
pub const KUBE_MAJOR: &str = "1";
/// See [`KUBE_MAJOR`].
pub const KUBE_MINOR: &str = "32";

/// `/version`.
pub fn version() -> Value {
    json!({
        "major": KUBE_MAJOR,
        "minor": KUBE_MINOR,
        "gitVersion": format!("v{KUBE_MAJOR}.{KUBE_MINOR}.0+nmstate-apiserver-{}", env!("CARGO_PKG_VERSION")),
        "gitCommit": "",
        "gitTreeState": "",
        "buildDate": "",
        "goVersion": "",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, arch()),
    })
}

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// `/api`: no core versions. A kubeconfig pointed straight at this server
/// still works, because clients only need the document to exist.
pub fn core_api() -> Value {
    json!({
        "kind": "APIVersions",
        "versions": [],
        "serverAddressByClientCIDRs": [],
    })
}

fn group_versions() -> Vec<Value> {
    VERSIONS
        .iter()
        .map(|version| json!({"groupVersion": format!("{GROUP}/{version}"), "version": version}))
        .collect()
}

/// The `APIGroup` of nmstate.io (`/apis/nmstate.io`).
pub fn group() -> Value {
    json!({
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": GROUP,
        "versions": group_versions(),
        "preferredVersion": {"groupVersion": format!("{GROUP}/{V1}"), "version": V1},
    })
}

/// `/apis`, legacy form.
pub fn group_list() -> Value {
    let mut group = group();
    if let Some(object) = group.as_object_mut() {
        object.remove("kind");
        object.remove("apiVersion");
    }
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [group]})
}

const VERBS: [&str; 8] = [
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// `/apis/nmstate.io/{version}`: the `APIResourceList`.
pub fn resource_list(version: &str) -> Value {
    let mut resources = Vec::new();
    for kind in ResourceKind::ALL {
        resources.push(json!({
            "name": kind.plural(),
            "singularName": kind.singular(),
            "namespaced": false,
            "kind": kind.kind(),
            "verbs": VERBS,
            "shortNames": [kind.short_name()],
            "categories": kind.categories(),
        }));
        for subresource in kind.subresources() {
            let (verbs, sub_kind): (&[&str], &str) = match *subresource {
                "status" => (&["get", "patch", "update"], kind.kind()),
                "render" => (&["create", "get"], "NodeNetworkConfigurationPolicyRender"),
                _ => (&["create"], "NodeNetworkConfigurationPolicyDryRun"),
            };
            resources.push(json!({
                "name": format!("{}/{subresource}", kind.plural()),
                "singularName": "",
                "namespaced": false,
                "kind": sub_kind,
                "verbs": verbs,
            }));
        }
    }
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": format!("{GROUP}/{version}"),
        "resources": resources,
    })
}

/// `/apis` in the aggregated form (`apidiscovery.k8s.io/v2`), which kubectl
/// asks for first: one request instead of one per group-version.
pub fn aggregated(api_version: &str) -> Value {
    let versions: Vec<Value> = VERSIONS
        .iter()
        .map(|version| {
            let resources: Vec<Value> = ResourceKind::ALL
                .iter()
                .map(|kind| {
                    let subresources: Vec<Value> = kind
                        .subresources()
                        .iter()
                        .map(|sub| {
                            let (verbs, sub_kind): (&[&str], &str) = match *sub {
                                "status" => (&["get", "patch", "update"], kind.kind()),
                                "render" => (&["create", "get"], "NodeNetworkConfigurationPolicyRender"),
                                _ => (&["create"], "NodeNetworkConfigurationPolicyDryRun"),
                            };
                            json!({
                                "subresource": sub,
                                "responseKind": {"group": GROUP, "version": version, "kind": sub_kind},
                                "verbs": verbs,
                            })
                        })
                        .collect();
                    json!({
                        "resource": kind.plural(),
                        "responseKind": {"group": GROUP, "version": version, "kind": kind.kind()},
                        "scope": "Cluster",
                        "singularResource": kind.singular(),
                        "verbs": VERBS,
                        "shortNames": [kind.short_name()],
                        "categories": kind.categories(),
                        "subresources": subresources,
                    })
                })
                .collect();
            json!({"version": version, "resources": resources, "freshness": "Current"})
        })
        .collect();
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": api_version,
        "metadata": {},
        "items": [{"metadata": {"name": GROUP}, "versions": versions}],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_list_names_every_kind_and_subresource() {
        let list = resource_list("v1");
        let names: Vec<&str> = list["resources"]
            .as_array()
            .map(|r| r.iter().filter_map(|r| r["name"].as_str()).collect())
            .unwrap_or_default();
        assert_eq!(
            names,
            [
                "nodenetworkconfigurationenactments",
                "nodenetworkconfigurationenactments/status",
                "nodenetworkconfigurationpolicies",
                "nodenetworkconfigurationpolicies/status",
                "nodenetworkconfigurationpolicies/render",
                "nodenetworkconfigurationpolicies/dry-run",
                "nodenetworkstates",
                "nodenetworkstates/status",
            ]
        );
        assert_eq!(list["resources"][2]["shortNames"], json!(["nncp"]));
        assert_eq!(list["resources"][2]["categories"], json!(["nmstate"]));
    }

    #[test]
    fn version_reports_the_kubernetes_level() {
        let version = version();
        assert_eq!(version["major"], "1");
        assert_eq!(version["minor"], "32");
        assert!(
            version["gitVersion"]
                .as_str()
                .is_some_and(|v| v.starts_with("v1.32.0+nmstate-apiserver-"))
        );
    }
}
