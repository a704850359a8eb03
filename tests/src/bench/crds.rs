//! The three `nmstate.io` kinds as CustomResourceDefinitions, for the
//! `--peer crd` runs: what kubernetes-nmstate users run today, served by
//! kube-apiserver.
//!
//! The schemas are generated from our own OpenAPI v3 documents
//! (`nmstate_openapi::openapi_doc`), made structural as CRDs require:
//! references inlined, `metadata` left to the server (`type: object`),
//! group-version-kind extensions dropped. Like upstream's, the states
//! (`currentState`, `desiredState`, captured states) keep unknown fields.
//! Both versions are served with the same schema, `v1` stored; every kind
//! has the status subresource and upstream's printer columns (none for
//! node states; Status and Reason for policies; Status, Status Age and
//! Reason for enactments).

use anyhow::{Context, Result};
use nmstate_openapi::{GROUP, STORAGE_VERSION, VERSIONS, resources::ResourceKind};
use serde_json::{Map, Value, json};

/// The component name of `ObjectMeta`, which a CRD schema leaves to the
/// server.
const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";
/// How a `$ref` to a component starts.
const COMPONENTS: &str = "#/components/schemas/";

/// The CRDs of every kind.
pub fn custom_resource_definitions() -> Result<Vec<Value>> {
    let documents = VERSIONS
        .iter()
        .map(|version| {
            let document = nmstate_openapi::openapi_doc::openapi_v3(version)
                .with_context(|| format!("no OpenAPI document for {version}"))?;
            Ok((*version, document))
        })
        .collect::<Result<Vec<_>>>()?;
    ResourceKind::ALL
        .iter()
        .map(|kind| {
            let versions = documents
                .iter()
                .map(|(version, document)| crd_version(*kind, version, document))
                .collect::<Result<Vec<_>>>()?;
            Ok(json!({
                "apiVersion": "apiextensions.k8s.io/v1",
                "kind": "CustomResourceDefinition",
                "metadata": {"name": kind.group_resource()},
                "spec": {
                    "group": GROUP,
                    "names": {
                        "kind": kind.kind(),
                        "listKind": kind.list_kind(),
                        "plural": kind.plural(),
                        "singular": kind.singular(),
                        "shortNames": [kind.short_name()],
                        "categories": kind.categories(),
                    },
                    "scope": "Cluster",
                    "versions": versions,
                },
            }))
        })
        .collect()
}

/// One entry of a CRD's `spec.versions`.
fn crd_version(kind: ResourceKind, version: &str, document: &Value) -> Result<Value> {
    let schemas = document["components"]["schemas"]
        .as_object()
        .context("an OpenAPI document without schemas")?;
    let name = format!("io.nmstate.{version}.{}", kind.kind());
    let schema = schemas
        .get(&name)
        .with_context(|| format!("no schema {name}"))?;
    Ok(json!({
        "name": version,
        "served": true,
        "storage": version == STORAGE_VERSION,
        "schema": {"openAPIV3Schema": structural(schema, schemas)},
        "subresources": {"status": {}},
        "additionalPrinterColumns": printer_columns(kind),
    }))
}

/// Upstream kubernetes-nmstate's printer columns of `kind`.
fn printer_columns(kind: ResourceKind) -> Value {
    let column = |name: &str, kind: &str, field: &str| {
        json!({
            "name": name,
            "type": kind,
            "description": name,
            "jsonPath": format!(".status.conditions[?(@.status==\"True\")].{field}"),
        })
    };
    match kind {
        ResourceKind::NodeNetworkState => json!([]),
        ResourceKind::NodeNetworkConfigurationPolicy => json!([
            column("Status", "string", "type"),
            column("Reason", "string", "reason"),
        ]),
        ResourceKind::NodeNetworkConfigurationEnactment => json!([
            column("Status", "string", "type"),
            column("Status Age", "date", "lastTransitionTime"),
            column("Reason", "string", "reason"),
        ]),
    }
}

/// `schema` with every reference inlined, `ObjectMeta` reduced to
/// `type: object`, one-element `allOf` wrappers merged into their
/// siblings, and group-version-kind extensions dropped.
fn structural(schema: &Value, schemas: &Map<String, Value>) -> Value {
    let Value::Object(object) = schema else {
        return schema.clone();
    };
    let wrapped = match object
        .get("allOf")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
    {
        Some([inner]) => Some(inner),
        _ => None,
    };
    let reference = |schema: &Value| {
        let reference = schema.get("$ref")?.as_str()?;
        Some(
            reference
                .strip_prefix(COMPONENTS)
                .unwrap_or(reference)
                .to_owned(),
        )
    };
    // The server owns metadata's schema: a CRD may not even describe it.
    if reference(schema).or_else(|| wrapped.and_then(reference)) == Some(OBJECT_META.to_owned()) {
        return json!({"type": "object"});
    }
    if let Some(name) = reference(schema) {
        return schemas
            .get(&name)
            .map_or_else(|| json!({}), |target| structural(target, schemas));
    }
    let mut out = Map::new();
    if let Some(Value::Object(inner)) = wrapped.map(|inner| structural(inner, schemas)) {
        out = inner;
    }
    for (key, value) in object {
        let value = match key.as_str() {
            "allOf" | "x-kubernetes-group-version-kind" => continue,
            "properties" => Value::Object(
                value
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(name, property)| (name.clone(), structural(property, schemas)))
                    .collect(),
            ),
            "items" | "additionalProperties" => structural(value, schemas),
            _ => value.clone(),
        };
        out.insert(key.clone(), value);
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every key anywhere in `value`.
    fn keys(value: &Value, found: &mut Vec<String>) {
        match value {
            Value::Object(object) => {
                for (key, value) in object {
                    found.push(key.clone());
                    keys(value, found);
                }
            }
            Value::Array(items) => items.iter().for_each(|item| keys(item, found)),
            _ => {}
        }
    }

    #[test]
    fn crds_are_structural_and_keep_the_states_open() {
        let crds = custom_resource_definitions().unwrap_or_default();
        assert_eq!(crds.len(), 3);
        let mut found = Vec::new();
        keys(&Value::Array(crds.clone()), &mut found);
        for key in ["$ref", "allOf", "x-kubernetes-group-version-kind"] {
            assert!(!found.iter().any(|k| k == key), "{key} left in the CRDs");
        }
        let state = crds
            .iter()
            .find(|crd| crd["spec"]["names"]["kind"] == "NodeNetworkState")
            .cloned()
            .unwrap_or_default();
        let v1 = &state["spec"]["versions"][0];
        assert_eq!(v1["name"], "v1");
        assert_eq!(v1["storage"], true);
        let schema = &v1["schema"]["openAPIV3Schema"];
        assert_eq!(schema["properties"]["metadata"], json!({"type": "object"}));
        let status = &schema["properties"]["status"]["properties"];
        assert_eq!(
            status["currentState"]["x-kubernetes-preserve-unknown-fields"],
            true
        );
        assert_eq!(
            status["lastSuccessfulUpdateTime"]["type"], "string",
            "{status}"
        );
        assert_eq!(v1["subresources"], json!({"status": {}}));
    }
}
