//! Patch tests: one table per group, each row a named case, each group
//! checked by one helper that asserts on the result or on the status code
//! and message a client would read.

#![allow(clippy::unwrap_used)]

use serde_json::{Value, json};

use super::*;
use crate::api::error::Answer;

/// What a case expects: the patched object, or the code and message.
type Expected = Result<Value, (u16, &'static str)>;

fn live() -> Value {
    json!({
        "apiVersion": "nmstate.io/v1",
        "kind": "NodeNetworkConfigurationPolicy",
        "metadata": {
            "name": "br1",
            "resourceVersion": "7",
            "labels": {"app": "net", "tier": "edge"},
        },
        "spec": {
            "maxUnavailable": 3,
            "nodeSelector": {"kubernetes.io/hostname": "node01"},
            "desiredState": {
                "interfaces": [
                    {"name": "eth1", "type": "ethernet", "state": "up"},
                ],
            },
        },
    })
}

/// `live()` with `change` applied to it.
fn live_with(change: impl FnOnce(&mut Value)) -> Value {
    let mut object = live();
    change(&mut object);
    object
}

fn outcome(result: Result<Value, PatchError>) -> Result<Value, (u16, String)> {
    result.map_err(|error| (error.code().as_u16(), error.to_string()))
}

fn same(actual: Result<Value, (u16, String)>, expected: Expected) -> bool {
    match (&actual, &expected) {
        (Ok(actual), Ok(expected)) => actual == expected,
        (Err((code, message)), Err((expected_code, expected_message))) => {
            code == expected_code && message == expected_message
        }
        _ => false,
    }
}

#[test]
fn content_types() {
    fn check(name: &str, content_type: &str, expected: Result<PatchType, (u16, &str, &str)>) {
        let actual = PatchType::from_content_type(content_type)
            .map_err(|error| (error.code().as_u16(), error.reason(), error.to_string()));
        let matches = match (&actual, &expected) {
            (Ok(actual), Ok(expected)) => actual == expected,
            (Err((code, reason, message)), Err((c, r, m))) => {
                code == c && reason == r && message == m
            }
            _ => false,
        };
        assert!(matches, "{name}: got {actual:?}, expected {expected:?}");
    }
    const UNSUPPORTED: &str = "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml";

    check(
        "json patch",
        "application/json-patch+json",
        Ok(PatchType::Json),
    );
    check(
        "merge patch",
        "application/merge-patch+json",
        Ok(PatchType::Merge),
    );
    check(
        "apply patch",
        "application/apply-patch+yaml",
        Ok(PatchType::Apply),
    );
    check(
        "charset parameter is ignored",
        "application/merge-patch+json; charset=utf-8",
        Ok(PatchType::Merge),
    );
    check(
        "strategic merge patch is refused as for a CRD",
        "application/strategic-merge-patch+json",
        Err((415, "UnsupportedMediaType", UNSUPPORTED)),
    );
    check(
        "plain json is no patch",
        "application/json",
        Err((415, "UnsupportedMediaType", UNSUPPORTED)),
    );
    check(
        "no content type",
        "",
        Err((415, "UnsupportedMediaType", UNSUPPORTED)),
    );
}

#[test]
fn json_patches() {
    fn check(name: &str, patch: &str, expected: Expected) {
        let actual = outcome(apply_patch(&live(), PatchType::Json, patch.as_bytes()));
        assert!(
            same(actual.clone(), expected.clone()),
            "{name}: got {actual:#?}, expected {expected:#?}"
        );
    }

    check(
        "add a label",
        r#"[{"op": "add", "path": "/metadata/labels/zone", "value": "a"}]"#,
        Ok(live_with(|object| {
            object["metadata"]["labels"]["zone"] = json!("a")
        })),
    );
    check(
        "add replaces an existing member",
        r#"[{"op": "add", "path": "/spec/maxUnavailable", "value": "50%"}]"#,
        Ok(live_with(|object| {
            object["spec"]["maxUnavailable"] = json!("50%")
        })),
    );
    check(
        "add appends to a list with -",
        r#"[{"op": "add", "path": "/spec/desiredState/interfaces/-", "value": {"name": "eth2"}}]"#,
        Ok(live_with(|object| {
            object["spec"]["desiredState"]["interfaces"]
                .as_array_mut()
                .unwrap()
                .push(json!({"name": "eth2"}));
        })),
    );
    check(
        "replace after a passing test",
        r#"[{"op": "test", "path": "/metadata/resourceVersion", "value": "7"},
            {"op": "replace", "path": "/spec/maxUnavailable", "value": 1}]"#,
        Ok(live_with(|object| {
            object["spec"]["maxUnavailable"] = json!(1)
        })),
    );
    check(
        "remove a label (~1 escapes a slash)",
        r#"[{"op": "remove", "path": "/spec/nodeSelector/kubernetes.io~1hostname"}]"#,
        Ok(live_with(|object| {
            object["spec"]["nodeSelector"] = json!({})
        })),
    );
    check(
        "move and copy",
        r#"[{"op": "copy", "from": "/metadata/labels/app", "path": "/metadata/labels/copy"},
            {"op": "move", "from": "/metadata/labels/tier", "path": "/metadata/labels/moved"}]"#,
        Ok(live_with(|object| {
            object["metadata"]["labels"] = json!({"app": "net", "copy": "net", "moved": "edge"});
        })),
    );
    check("empty patch", "[]", Ok(live()));

    check(
        "failing test names the path",
        r#"[{"op": "test", "path": "/spec/maxUnavailable", "value": 4}]"#,
        Err((
            422,
            "testing value /spec/maxUnavailable failed: test failed",
        )),
    );
    check(
        "test of a missing member fails",
        r#"[{"op": "test", "path": "/spec/capture", "value": {}}]"#,
        Err((422, "testing value /spec/capture failed: test failed")),
    );
    check(
        "test below a missing member",
        r#"[{"op": "test", "path": "/status/conditions", "value": []}]"#,
        Err((
            422,
            "test operation does not apply: is missing path: /status/conditions: missing value",
        )),
    );
    check(
        "a failing operation undoes the earlier ones",
        r#"[{"op": "replace", "path": "/spec/maxUnavailable", "value": 1},
            {"op": "test", "path": "/spec/maxUnavailable", "value": 3}]"#,
        Err((
            422,
            "testing value /spec/maxUnavailable failed: test failed",
        )),
    );
    check(
        "add below a missing member",
        r#"[{"op": "add", "path": "/spec/capture/base", "value": "x"}]"#,
        Err((
            422,
            r#"add operation does not apply: doc is missing path: "/spec/capture/base": missing value"#,
        )),
    );
    check(
        "add at an index past the end",
        r#"[{"op": "add", "path": "/spec/desiredState/interfaces/5", "value": {}}]"#,
        Err((
            422,
            "error in add for path: '/spec/desiredState/interfaces/5': Unable to access invalid index: 5: invalid index referenced",
        )),
    );
    check(
        "remove a missing key",
        r#"[{"op": "remove", "path": "/metadata/labels/zone"}]"#,
        Err((
            422,
            "error in remove for path: '/metadata/labels/zone': Unable to remove nonexistent key: zone: missing value",
        )),
    );
    check(
        "remove below a missing member",
        r#"[{"op": "remove", "path": "/status/conditions/0"}]"#,
        Err((
            422,
            r#"remove operation does not apply: doc is missing path: "/status/conditions/0": missing value"#,
        )),
    );
    check(
        "replace a missing key",
        r#"[{"op": "replace", "path": "/spec/capture", "value": {}}]"#,
        Err((
            422,
            "replace operation does not apply: doc is missing key: /spec/capture: missing value",
        )),
    );
    check(
        "replace below a missing member",
        r#"[{"op": "replace", "path": "/status/observedGeneration", "value": 1}]"#,
        Err((
            422,
            "replace operation does not apply: doc is missing path: /status/observedGeneration: missing value",
        )),
    );
    check(
        "move from a missing path",
        r#"[{"op": "move", "from": "/metadata/labels/zone", "path": "/metadata/labels/region"}]"#,
        Err((
            422,
            "move operation does not apply: doc is missing from path: /metadata/labels/zone: missing value",
        )),
    );
    check(
        "copy to a missing parent",
        r#"[{"op": "copy", "from": "/metadata/labels/app", "path": "/status/app"}]"#,
        Err((
            422,
            "copy operation does not apply: doc is missing destination path: /status/app: missing value",
        )),
    );
    check(
        "replacing the whole object with a list",
        r#"[{"op": "replace", "path": "", "value": []}]"#,
        Err((
            422,
            "the patched object must be a JSON object, not an array",
        )),
    );

    check(
        "malformed JSON gives the position",
        r#"[{"op": "add", "path": "/spec/x" "value": 1}]"#,
        Err((
            400,
            "error decoding patch: expected `,` or `}` at line 1 column 34",
        )),
    );
    check(
        "unknown operation",
        r#"[{"op": "frobnicate", "path": "/spec"}]"#,
        Err((
            400,
            "error decoding patch: unknown variant `frobnicate`, expected one of `add`, `remove`, `replace`, `move`, `copy`, `test` at line 1 column 20",
        )),
    );
    check(
        "an object is not a JSON patch",
        r#"{"spec": {}}"#,
        Err((
            400,
            "error decoding patch: invalid type: map, expected a sequence at line 1 column 0",
        )),
    );
}

#[test]
fn too_many_json_patch_operations() {
    let operation = r#"{"op": "test", "path": "/kind", "value": "NodeNetworkConfigurationPolicy"}"#;
    let at_limit = format!("[{}]", vec![operation; MAX_JSON_PATCH_OPERATIONS].join(","));
    assert_eq!(
        apply_patch(&live(), PatchType::Json, at_limit.as_bytes()).unwrap(),
        live()
    );

    let over = format!(
        "[{}]",
        vec![operation; MAX_JSON_PATCH_OPERATIONS + 1].join(",")
    );
    let error = apply_patch(&live(), PatchType::Json, over.as_bytes()).unwrap_err();
    assert_eq!(error.code().as_u16(), 413);
    assert_eq!(error.reason(), "RequestEntityTooLarge");
    assert_eq!(
        error.to_string(),
        "Request entity too large: The allowed maximum operations in a JSON patch is 10000, got 10001"
    );
}

#[test]
fn merge_patches() {
    fn check(name: &str, patch: &str, expected: Expected) {
        let actual = outcome(apply_patch(&live(), PatchType::Merge, patch.as_bytes()));
        assert!(
            same(actual.clone(), expected.clone()),
            "{name}: got {actual:#?}, expected {expected:#?}"
        );
    }

    check(
        "set a nested field",
        r#"{"spec": {"maxUnavailable": "50%"}}"#,
        Ok(live_with(|object| {
            object["spec"]["maxUnavailable"] = json!("50%")
        })),
    );
    check(
        "null removes a member",
        r#"{"metadata": {"labels": {"tier": null}}, "spec": {"nodeSelector": null}}"#,
        Ok(live_with(|object| {
            object["metadata"]["labels"] = json!({"app": "net"});
            object["spec"]
                .as_object_mut()
                .unwrap()
                .remove("nodeSelector");
        })),
    );
    check(
        "null for a missing member changes nothing",
        r#"{"spec": {"capture": null}}"#,
        Ok(live()),
    );
    check(
        "lists are replaced whole",
        r#"{"spec": {"desiredState": {"interfaces": [{"name": "eth2"}]}}}"#,
        Ok(live_with(|object| {
            object["spec"]["desiredState"]["interfaces"] = json!([{"name": "eth2"}]);
        })),
    );
    check(
        "nulls inside an added member are dropped",
        r#"{"spec": {"capture": {"base": "x", "gone": null}}}"#,
        Ok(live_with(|object| {
            object["spec"]["capture"] = json!({"base": "x"})
        })),
    );
    check("empty patch", "{}", Ok(live()));
    check(
        "a list is not a merge patch",
        r#"[{"op": "add"}]"#,
        Err((
            400,
            "error decoding patch: a merge patch must be a JSON object, not an array",
        )),
    );
    check(
        "null is not a merge patch",
        "null",
        Err((
            400,
            "error decoding patch: a merge patch must be a JSON object, not null",
        )),
    );
    check(
        "malformed JSON gives the position",
        "{\"spec\": {\n  \"maxUnavailable\": 3,\n}}",
        Err((
            400,
            "error decoding patch: trailing comma at line 3 column 1",
        )),
    );
}

#[test]
fn apply_patch_refuses_apply() {
    let error = apply_patch(&live(), PatchType::Apply, b"{}").unwrap_err();
    assert_eq!(error.code().as_u16(), 500);
}

#[test]
fn apply_bodies() {
    fn check(name: &str, body: &str, expected: Expected) {
        let actual = outcome(parse_apply_body(body.as_bytes()));
        assert!(
            same(actual.clone(), expected.clone()),
            "{name}: got {actual:#?}, expected {expected:#?}"
        );
    }
    let applied = json!({
        "apiVersion": "nmstate.io/v1",
        "kind": "NodeNetworkConfigurationPolicy",
        "metadata": {"name": "br1"},
        "spec": {"maxUnavailable": 3, "desiredState": {"interfaces": [{"name": "eth1", "state": "up"}]}},
    });

    check(
        "YAML",
        "apiVersion: nmstate.io/v1\nkind: NodeNetworkConfigurationPolicy\nmetadata:\n  name: br1\nspec:\n  maxUnavailable: 3\n  desiredState:\n    interfaces:\n    - name: eth1\n      state: up\n",
        Ok(applied.clone()),
    );
    check(
        "JSON, as kubectl sends it",
        &applied.to_string(),
        Ok(applied.clone()),
    );
    check("empty body", "", Ok(json!({})));
    check("null", "~\n", Ok(json!({})));
    check(
        "bad YAML gives line and column",
        "metadata:\n  name: br1\n spec: {}\n",
        Err((
            400,
            "error decoding YAML: while parsing a block mapping, did not find expected key at line 3, column 2",
        )),
    );
    check(
        "bad JSON gives line and column",
        "{\"metadata\": {\"name\": \"br1\"},\n \"spec\": }",
        Err((
            400,
            "error decoding YAML: expected value at line 2 column 10",
        )),
    );
    check(
        "a list is no configuration",
        "- a\n- b\n",
        Err((
            400,
            "error decoding YAML: the applied configuration must be an object, not an array",
        )),
    );
}
