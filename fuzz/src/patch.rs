//! PATCH bodies against a stored policy: JSON patch, merge patch and
//! server-side apply, then the rules every write passes. Never a panic; a
//! patched object the rules accept reads back as valid.
//!
//! Input: one byte (bits 0-1: 0 JSON patch, 1 merge patch, 2 and 3
//! server-side apply; bit 2: `force`; bit 3: to `/status`), then the body.

use nmstate_apiserver::{
    request::FieldValidation,
    rules::{
        managed_fields::{Manager, server_side_apply},
        object::decode_object,
        patch::{PatchType, apply_patch_noting_duplicates, parse_apply_body},
    },
};
use nmstate_openapi::ResourceKind;
use serde_json::{Value, json};

const NOW: &str = "2026-12-07T00:00:00Z";

/// A stored policy as the server keeps it, with an owner of its fields.
fn live() -> Value {
    json!({
        "apiVersion": "nmstate.io/v1",
        "kind": "NodeNetworkConfigurationPolicy",
        "metadata": {
            "name": "p", "uid": "9c1f5a56-0000-4000-8000-000000000001",
            "resourceVersion": "7", "generation": 1,
            "creationTimestamp": NOW,
            "labels": {"a": "b"},
            "managedFields": [{
                "manager": "kubectl", "operation": "Apply", "apiVersion": "nmstate.io/v1",
                "time": NOW, "fieldsType": "FieldsV1",
                "fieldsV1": {"f:metadata": {"f:labels": {"f:a": {}}},
                             "f:spec": {"f:desiredState": {}, "f:maxUnavailable": {}}}
            }]
        },
        "spec": {
            "maxUnavailable": "50%",
            "nodeSelector": {"kubernetes.io/hostname": "node01"},
            "desiredState": {"interfaces": [
                {"name": "eth1", "type": "ethernet", "state": "up", "mtu": 1500}
            ]}
        },
        "status": {"conditions": []}
    })
}

/// Panics when `data` breaks an invariant (see the module).
pub fn check(data: &[u8]) {
    let Some((&flags, body)) = data.split_first() else {
        return;
    };
    let live = live();
    let to_status = flags & 8 != 0;
    let manager = Manager {
        name: "fuzz",
        api_version: "nmstate.io/v1",
        subresource: to_status.then_some("status"),
    };
    let patched = match flags & 3 {
        0 => apply_patch_noting_duplicates(&live, PatchType::Json, body).ok(),
        1 => apply_patch_noting_duplicates(&live, PatchType::Merge, body).ok(),
        _ => parse_apply_body(body).ok().and_then(|applied| {
            server_side_apply(Some(&live), &applied, &manager, flags & 4 != 0, NOW)
                .ok()
                .map(|object| (object, Vec::new()))
        }),
    };
    let Some((patched, duplicates)) = patched else {
        return;
    };
    let kind = ResourceKind::NodeNetworkConfigurationPolicy;
    let Ok((decoded, _)) = decode_object(
        kind,
        "p",
        patched,
        &duplicates,
        FieldValidation::Strict,
        to_status,
    ) else {
        return;
    };
    if decoded.errors.is_empty() {
        // What would be stored reads back as valid.
        let (again, _) = decode_object(
            kind,
            "p",
            decoded.value.clone(),
            &[],
            FieldValidation::Ignore,
            to_status,
        )
        .expect("a stored object decodes");
        assert!(again.errors.is_empty(), "{:?}", again.errors);
        assert_eq!(again.value, decoded.value);
    }
}
