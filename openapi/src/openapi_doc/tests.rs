#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use serde_json::Value;

use super::{paths::PATCH_TYPES, *};
use crate::{ResourceKind, V1, V1BETA1};

/// Every document with its golden file name.
fn documents() -> Vec<(&'static str, Value)> {
    vec![
        ("v3-nmstate.io-v1.json", openapi_v3(V1).unwrap()),
        ("v3-nmstate.io-v1beta1.json", openapi_v3(V1BETA1).unwrap()),
        ("v2.json", openapi_v2()),
    ]
}

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/openapi")
}

/// The generated documents are the golden files, pretty-printed.
/// `UPDATE_EXPECT=1` rewrites them.
#[test]
fn golden() {
    let update = std::env::var_os("UPDATE_EXPECT").is_some();
    let mut mismatches = Vec::new();
    for (file, document) in documents() {
        let actual = serde_json::to_string_pretty(&document).unwrap() + "\n";
        let path = golden_dir().join(file);
        if update {
            std::fs::create_dir_all(golden_dir()).unwrap();
            std::fs::write(&path, &actual).unwrap();
        } else if std::fs::read_to_string(&path).unwrap_or_default() != actual {
            mismatches.push(path.display().to_string());
        }
    }
    assert!(
        mismatches.is_empty(),
        "generated OpenAPI differs from {mismatches:?}; rerun with UPDATE_EXPECT=1 and review the diff"
    );
}

/// Calls `visit` on every object in `value` with its JSON path.
fn walk_objects(
    value: &Value,
    path: &str,
    visit: &mut dyn FnMut(&str, &serde_json::Map<String, Value>),
) {
    match value {
        Value::Object(map) => {
            visit(path, map);
            for (key, child) in map {
                walk_objects(child, &format!("{path}/{key}"), visit);
            }
        }
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                walk_objects(item, &format!("{path}/{index}"), visit);
            }
        }
        _ => {}
    }
}

/// kubectl 1.32 misreads `type: [T, "null"]` and `oneOf: [{type: null}, X]`
/// (see the lab notes); neither, nor any other 3.1-only form, may remain.
#[test]
fn no_null_types_or_3_1_idioms() {
    for (file, document) in documents() {
        let mut problems = Vec::new();
        walk_objects(&document, "", &mut |path, map| {
            if path.ends_with("/properties") {
                return; // a map of field names, not a schema
            }
            match map.get("type") {
                Some(Value::Array(_)) => problems.push(format!("{path}: type list")),
                Some(Value::String(t)) if t == "null" => {
                    problems.push(format!("{path}: null type"))
                }
                _ => {}
            }
            for keyword in ["oneOf", "propertyNames", "nullable", "const", "examples"] {
                if map.contains_key(keyword) {
                    problems.push(format!("{path}: {keyword}"));
                }
            }
            if map.contains_key("$ref") && map.len() > 1 && !file.starts_with("v2") {
                problems.push(format!("{path}: $ref with siblings"));
            }
        });
        assert_eq!(problems, Vec::<String>::new(), "{file}");
    }
    assert_eq!(openapi_v3(V1).unwrap()["openapi"], "3.0.0");
    assert_eq!(openapi_v2()["swagger"], "2.0");
}

/// The `$ref` targets of `document`, with `prefix` stripped, that do not
/// name one of its schemas.
fn dangling_refs(document: &Value, prefix: &str, schemas: &Value) -> Vec<String> {
    let mut dangling = Vec::new();
    walk_objects(document, "", &mut |path, map| {
        if let Some(Value::String(target)) = map.get("$ref") {
            let known = target
                .strip_prefix(prefix)
                .is_some_and(|name| schemas.get(name).is_some());
            if !known {
                dangling.push(format!("{path}: {target}"));
            }
        }
    });
    dangling
}

#[test]
fn no_dangling_references() {
    for version in [V1, V1BETA1] {
        let document = openapi_v3(version).unwrap();
        let schemas = &document["components"]["schemas"];
        assert_eq!(
            dangling_refs(&document, V3_REF_PREFIX, schemas),
            Vec::<String>::new(),
            "{version}"
        );
    }
    let v2 = openapi_v2();
    assert_eq!(
        dangling_refs(&v2, V2_REF_PREFIX, &v2["definitions"]),
        Vec::<String>::new()
    );
    assert!(
        !serde_json::to_string(&v2)
            .unwrap()
            .contains("#/components/")
    );
}

/// Every kind and list kind carries its GVK, and every operation the GVK of
/// its kind: that is how `kubectl explain` finds the schema of a resource.
#[test]
fn group_version_kinds() {
    for version in [V1, V1BETA1] {
        let document = openapi_v3(version).unwrap();
        let schemas = &document["components"]["schemas"];
        for kind in ResourceKind::ALL {
            for name in [kind.kind(), kind.list_kind()] {
                let schema = &schemas[schemas::schema_name(version, name)];
                assert_eq!(
                    schema[GVK_EXTENSION],
                    serde_json::json!([{"group": "nmstate.io", "version": version, "kind": name}]),
                    "{version} {name}"
                );
            }
            let prefix = format!("/apis/nmstate.io/{version}/{}", kind.plural());
            let operations = operations(&document, &prefix);
            assert!(
                operations.len() >= 10,
                "{version} {kind}: {}",
                operations.len()
            );
            for (path, method, operation) in operations {
                assert_eq!(
                    operation[GVK_EXTENSION],
                    serde_json::json!({"group": "nmstate.io", "version": version, "kind": kind.kind()}),
                    "{method} {path}"
                );
                let action = operation["x-kubernetes-action"].as_str().unwrap();
                assert!(
                    [
                        "get",
                        "list",
                        "post",
                        "put",
                        "patch",
                        "delete",
                        "deletecollection"
                    ]
                    .contains(&action),
                    "{method} {path}: {action}"
                );
            }
        }
    }
}

/// `(path, method, operation)` of every operation on a path under `prefix`.
fn operations<'a>(document: &'a Value, prefix: &str) -> Vec<(&'a str, &'a str, &'a Value)> {
    let mut found = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        if path != prefix && !path.starts_with(&format!("{prefix}/")) {
            continue;
        }
        for (method, operation) in item.as_object().unwrap() {
            if method != "parameters" {
                found.push((path.as_str(), method.as_str(), operation));
            }
        }
    }
    found
}

fn parameter_names(operation: &Value) -> Vec<&str> {
    operation["parameters"]
        .as_array()
        .map(|parameters| {
            parameters
                .iter()
                .filter_map(|parameter| parameter["name"].as_str())
                .collect()
        })
        .unwrap_or_default()
}

/// PATCH offers no strategic merge patch (kubectl then sends merge
/// patches), and every write declares `fieldValidation` (without it,
/// kubectl's client-side validation fetches `/openapi/v2` as protobuf).
#[test]
fn writes() {
    let document = openapi_v3(V1).unwrap();
    let mut patches = 0;
    let mut writes = 0;
    for (path, method, operation) in operations(&document, "/apis/nmstate.io/v1") {
        let action = operation["x-kubernetes-action"].as_str().unwrap();
        if method == "patch" {
            patches += 1;
            let media_types: Vec<&str> = operation["requestBody"]["content"]
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            let mut expected = PATCH_TYPES.to_vec();
            expected.sort_unstable();
            assert_eq!(media_types, expected, "{path}");
            assert!(parameter_names(operation).contains(&"force"), "{path}");
        }
        // Writes of objects; `render` and `dry-run` write nothing.
        let subresource_of_policy = path.ends_with("/render") || path.ends_with("/dry-run");
        if ["post", "put", "patch"].contains(&action) && !subresource_of_policy {
            writes += 1;
            let parameters = parameter_names(operation);
            for name in ["dryRun", "fieldManager", "fieldValidation"] {
                assert!(parameters.contains(&name), "{method} {path}: {name}");
            }
        }
    }
    // Object and status of three kinds; create, replace and patch of each.
    assert_eq!(patches, 6);
    assert_eq!(writes, 3 + 6 + 6);
    assert!(
        !serde_json::to_string(&document)
            .unwrap()
            .contains("strategic-merge-patch")
    );
}

/// Operation ids follow kube-apiserver's spelling.
#[test]
fn operation_ids() {
    let document = openapi_v3(V1BETA1).unwrap();
    let mut ids: Vec<&str> = operations(
        &document,
        "/apis/nmstate.io/v1beta1/nodenetworkconfigurationpolicies",
    )
    .into_iter()
    .map(|(_, _, operation)| operation["operationId"].as_str().unwrap())
    .collect();
    ids.sort_unstable();
    assert_eq!(
        ids,
        [
            "createNmstateIoV1beta1NodeNetworkConfigurationPolicy",
            "createNmstateIoV1beta1NodeNetworkConfigurationPolicyDryRun",
            "createNmstateIoV1beta1NodeNetworkConfigurationPolicyRender",
            "deleteNmstateIoV1beta1NodeNetworkConfigurationPolicy",
            "deletecollectionNmstateIoV1beta1NodeNetworkConfigurationPolicy",
            "listNmstateIoV1beta1NodeNetworkConfigurationPolicy",
            "patchNmstateIoV1beta1NodeNetworkConfigurationPolicy",
            "patchNmstateIoV1beta1NodeNetworkConfigurationPolicyStatus",
            "readNmstateIoV1beta1NodeNetworkConfigurationPolicy",
            "readNmstateIoV1beta1NodeNetworkConfigurationPolicyRender",
            "readNmstateIoV1beta1NodeNetworkConfigurationPolicyStatus",
            "replaceNmstateIoV1beta1NodeNetworkConfigurationPolicy",
            "replaceNmstateIoV1beta1NodeNetworkConfigurationPolicyStatus",
        ]
    );
}

/// The free-form and int-or-string fields carry the extensions Kubernetes
/// clients look for.
#[test]
fn field_extensions() {
    let document = openapi_v3(V1).unwrap();
    let schemas = &document["components"]["schemas"];
    let spec = &schemas["io.nmstate.v1.NodeNetworkConfigurationPolicySpec"]["properties"];
    assert_eq!(spec["maxUnavailable"]["x-kubernetes-int-or-string"], true);
    for (schema, field) in [
        ("NodeNetworkConfigurationPolicySpec", "desiredState"),
        ("NodeNetworkStateStatus", "currentState"),
        ("NodeNetworkConfigurationEnactmentStatus", "desiredState"),
        ("CapturedState", "state"),
    ] {
        let property = &schemas[format!("io.nmstate.v1.{schema}")]["properties"][field];
        assert_eq!(property["type"], "object", "{schema}.{field}");
        assert_eq!(
            property["x-kubernetes-preserve-unknown-fields"], true,
            "{schema}.{field}"
        );
        assert!(property["description"].is_string(), "{schema}.{field}");
    }
    let v2 = openapi_v2();
    assert_eq!(
        v2["definitions"]["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]["format"],
        "int-or-string"
    );
}

#[test]
fn index_and_hashes() {
    assert_eq!(openapi_v3("v2"), None);
    let index = openapi_v3_index("/openapi/v3/");
    let paths = index["paths"].as_object().unwrap();
    assert_eq!(
        paths.keys().collect::<Vec<_>>(),
        ["apis/nmstate.io/v1", "apis/nmstate.io/v1beta1"]
    );
    for version in [V1, V1BETA1] {
        let bytes = to_json_bytes(&openapi_v3(version).unwrap());
        assert_eq!(bytes, to_json_bytes(&openapi_v3(version).unwrap()));
        let hash = content_hash(&bytes);
        assert_eq!(hash.len(), 16);
        assert_eq!(
            paths[&openapi_v3_path(version)]["serverRelativeURL"],
            format!("/openapi/v3/apis/nmstate.io/{version}?hash={hash}")
        );
    }
    assert_ne!(
        paths["apis/nmstate.io/v1"],
        paths["apis/nmstate.io/v1beta1"]
    );
    assert_eq!(content_hash(b""), "CBF29CE484222325");
}

/// Swagger 2.0 shapes: bodies are parameters, media types are lists.
#[test]
fn v2_operations() {
    let v2 = openapi_v2();
    let patch =
        &v2["paths"]["/apis/nmstate.io/v1/nodenetworkconfigurationpolicies/{name}"]["patch"];
    let body = &patch["parameters"][0];
    assert_eq!(body["in"], "body");
    assert_eq!(
        body["schema"]["$ref"],
        "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.Patch"
    );
    assert_eq!(patch["consumes"].as_array().unwrap().len(), 3);
    assert_eq!(patch["produces"], serde_json::json!(["application/json"]));
    assert_eq!(patch["parameters"][1]["type"], "string");
    assert!(patch["parameters"][1].get("schema").is_none());
    assert_eq!(
        patch["responses"]["200"]["schema"]["$ref"],
        "#/definitions/io.nmstate.v1.NodeNetworkConfigurationPolicy"
    );
    assert!(v2["paths"]["/apis/nmstate.io/v1beta1/nodenetworkstates"]["get"].is_object());
}
