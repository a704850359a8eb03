#![allow(clippy::unwrap_used)]

use serde_json::json;

use super::*;

/// The clock every test reads.
fn now() -> Timestamp {
    "2024-05-03T10:00:00Z".parse().unwrap()
}

fn state() -> Value {
    json!({
        "apiVersion": "nmstate.io/v1beta1",
        "kind": "NodeNetworkState",
        "metadata": {
            "name": "node01",
            "resourceVersion": "7",
            "creationTimestamp": "2024-05-01T10:00:00Z",
        },
        "status": {
            "currentState": {"interfaces": [{"name": "eth0"}, {"name": "lo"}, {"name": "br1"}]},
            "lastSuccessfulUpdateTime": "2024-05-03T09:59:30Z",
            "hostNetworkManagerVersion": "1.46.0",
            "handlerNmstateVersion": "2.2.62",
        },
    })
}

fn policy() -> Value {
    json!({
        "apiVersion": "nmstate.io/v1",
        "kind": "NodeNetworkConfigurationPolicy",
        "metadata": {
            "name": "br1",
            "resourceVersion": "42",
            "creationTimestamp": "2024-05-03T09:56:40Z",
            "generation": 2,
        },
        "spec": {
            "nodeSelector": {"node-role.kubernetes.io/worker": "", "kubernetes.io/arch": "amd64"},
            "maxUnavailable": 3,
            "desiredState": {"interfaces": []},
        },
        "status": {
            "matchingNodes": 3,
            "availableNodes": 2,
            "conditions": [
                {"type": "Degraded", "status": "False", "reason": "ConfigurationProgressing"},
                {"type": "Progressing", "status": "True", "reason": "ConfigurationProgressing",
                 "message": "Policy is progressing 2/3 nodes finished"},
                {"type": "Available", "status": "Unknown", "reason": "ConfigurationProgressing"},
            ],
        },
    })
}

fn enactment() -> Value {
    json!({
        "apiVersion": "nmstate.io/v1beta1",
        "kind": "NodeNetworkConfigurationEnactment",
        "metadata": {
            "name": "node01.br1",
            "creationTimestamp": "2024-05-03T09:00:00Z",
            "labels": {"nmstate.io/node": "node01", "nmstate.io/policy": "br1"},
        },
        "status": {
            "conditions": [
                {"type": "Failing", "status": "False", "reason": "SuccessfullyConfigured"},
                {"type": "Available", "status": "True", "reason": "SuccessfullyConfigured",
                 "lastTransitionTime": "2024-05-03T09:57:00Z"},
            ],
        },
    })
}

/// A node state as the watch cache keeps it (its current state as text)
/// prints as the parsed one does, and embeds the whole object.
#[test]
fn rows_of_a_cached_node_state_read_its_current_state_text() {
    let mut whole = state();
    whole["metadata"]["managedFields"] = json!([{"manager": "agent", "operation": "Update"}]);
    let cached = crate::cache::CachedObject::from_value("node01", 7, whole.clone()).unwrap();
    assert!(cached.current_state().is_some());
    let printed = Printed::new(cached.summary(), cached.texts());
    let kind = ResourceKind::NodeNetworkState;
    assert_eq!(
        cells(kind, &printed, now()),
        cells(kind, &Printed::from(&whole), now())
    );
    assert_eq!(cells(kind, &printed, now())[1], 3, "interfaces");
    let options = TableOptions {
        include_object: IncludeObject::Object,
        no_headers: true,
    };
    let table = table(kind, &[printed], options, Value::Null, now());
    assert_eq!(table["rows"][0]["object"], whole);
    // The row's metadata has the managed fields too.
    let options = TableOptions {
        include_object: IncludeObject::Metadata,
        no_headers: true,
    };
    let rows = super::table(kind, &[printed], options, Value::Null, now());
    assert_eq!(rows["rows"][0]["object"]["metadata"], whole["metadata"]);
}

/// The bytes of [`table_json`] are the document [`table`] builds, for
/// cached objects (rows embedding each object's metadata JSON, managed
/// fields or not) and plain ones, every kind, every `includeObject`, with
/// and without headers.
#[test]
fn table_json_is_the_table() {
    let managed =
        json!([{"manager": "agent", "operation": "Update", "fieldsV1": {"f:status": {}}}]);
    let with_managed = |mut object: Value| {
        object["metadata"]["managedFields"] = managed.clone();
        object
    };
    let cases = [
        (
            ResourceKind::NodeNetworkState,
            vec![with_managed(state()), state()],
        ),
        (
            ResourceKind::NodeNetworkConfigurationPolicy,
            vec![policy(), with_managed(policy())],
        ),
        (
            ResourceKind::NodeNetworkConfigurationEnactment,
            vec![with_managed(enactment())],
        ),
    ];
    for (kind, objects) in cases {
        let cached: Vec<_> = objects
            .iter()
            .enumerate()
            .map(|(i, object)| {
                let name = object["metadata"]["name"].as_str().unwrap();
                crate::cache::CachedObject::from_value(name, 7 + i as i64, object.clone()).unwrap()
            })
            .collect();
        for include_object in [
            IncludeObject::None,
            IncludeObject::Metadata,
            IncludeObject::Object,
        ] {
            for no_headers in [false, true] {
                let options = TableOptions {
                    include_object,
                    no_headers,
                };
                let list_metadata = json!({"resourceVersion": "9"});
                for printed in [
                    cached.iter().map(Printed::cached).collect::<Vec<_>>(),
                    objects.iter().map(Printed::from).collect(),
                ] {
                    let expected = table(kind, &printed, options, list_metadata.clone(), now());
                    let bytes =
                        table_json(kind, &printed, options, list_metadata.clone(), now()).unwrap();
                    assert_eq!(
                        String::from_utf8(bytes).unwrap(),
                        serde_json::to_string(&expected).unwrap(),
                        "{kind:?} {options:?}"
                    );
                }
            }
        }
    }
}

/// An object of any kind with nothing but a name.
fn bare(name: &str) -> Value {
    json!({"metadata": {"name": name}})
}

/// Computes the row of `object` and compares its cells with `expected`.
fn check(name: &str, kind: ResourceKind, object: &Value, expected: Value) {
    assert_eq!(
        Value::from(cells(kind, &Printed::from(object), now())),
        expected,
        "{name}"
    );
}

#[test]
fn rows() {
    use ResourceKind::{
        NodeNetworkConfigurationEnactment as Nnce, NodeNetworkConfigurationPolicy as Nncp,
        NodeNetworkState as Nns,
    };
    let mut enactment_without_time = enactment();
    enactment_without_time["status"]["conditions"][1]
        .as_object_mut()
        .unwrap()
        .remove("lastTransitionTime");
    let mut policy_with_percent = policy();
    policy_with_percent["spec"]["maxUnavailable"] = json!("25%");
    let cases = [
        (
            "state",
            Nns,
            state(),
            json!(["node01", 3, "30s", "2d", "1.46.0", "2.2.62"]),
        ),
        (
            "state without status",
            Nns,
            bare("node02"),
            json!(["node02", null, null, "<unknown>", null, null]),
        ),
        (
            "state without interfaces",
            Nns,
            json!({"metadata": {"name": "n"}, "status": {"currentState": {}}}),
            json!(["n", null, null, "<unknown>", null, null]),
        ),
        (
            "policy",
            Nncp,
            policy(),
            json!([
                "br1",
                "Progressing",
                "ConfigurationProgressing",
                "2/3",
                "3m20s",
                "3",
                "kubernetes.io/arch=amd64,node-role.kubernetes.io/worker="
            ]),
        ),
        (
            "policy with a percentage",
            Nncp,
            policy_with_percent,
            json!([
                "br1",
                "Progressing",
                "ConfigurationProgressing",
                "2/3",
                "3m20s",
                "25%",
                "kubernetes.io/arch=amd64,node-role.kubernetes.io/worker="
            ]),
        ),
        (
            "new policy",
            Nncp,
            bare("p"),
            json!(["p", null, null, null, "<unknown>", "50%", "<none>"]),
        ),
        (
            "policy matching no node yet",
            Nncp,
            json!({"metadata": {"name": "p"}, "status": {"matchingNodes": 0, "conditions": []}}),
            json!(["p", null, null, "0/0", "<unknown>", "50%", "<none>"]),
        ),
        (
            "enactment",
            Nnce,
            enactment(),
            json!([
                "node01.br1",
                "Available",
                "3m",
                "SuccessfullyConfigured",
                "node01",
                "br1"
            ]),
        ),
        (
            "enactment condition without transition time",
            Nnce,
            enactment_without_time,
            json!([
                "node01.br1",
                "Available",
                null,
                "SuccessfullyConfigured",
                "node01",
                "br1"
            ]),
        ),
        (
            "new enactment",
            Nnce,
            bare("e"),
            json!(["e", null, null, null, null, null]),
        ),
        (
            "fields taken from the first True condition that has them",
            Nnce,
            json!({"metadata": {"name": "e"}, "status": {"conditions": [
                {"type": "Failing", "status": "True"},
                {"type": "Progressing", "status": "True", "reason": "Retrying"},
                {"type": "Available", "status": "true", "reason": "Lowercase"},
            ]}}),
            json!(["e", "Failing", null, "Retrying", null, null]),
        ),
        (
            "unreadable fields",
            Nnce,
            json!({"metadata": {"name": "e", "creationTimestamp": 5, "labels": {"nmstate.io/node": 7}},
                   "status": {"conditions": [{"type": "Available", "status": "True",
                                              "lastTransitionTime": "yesterday"}]}}),
            json!(["e", "Available", "<invalid>", null, "7", null]),
        ),
        (
            "not an object",
            Nns,
            json!(null),
            json!(["", null, null, "<unknown>", null, null]),
        ),
    ];
    for (name, kind, object, expected) in cases {
        check(name, kind, &object, expected);
    }
}

#[test]
fn column_definitions_per_kind() {
    let cases = [
        (
            ResourceKind::NodeNetworkState,
            "Name/string/name/0 Interfaces/integer//0 Last Update/date//0 Age/date//0 NetworkManager/string//1 Nmstate/string//1",
        ),
        (
            ResourceKind::NodeNetworkConfigurationPolicy,
            "Name/string/name/0 Status/string//0 Reason/string//0 Nodes/string//0 Age/date//0 Max Unavailable/string//1 Node Selector/string//1",
        ),
        (
            ResourceKind::NodeNetworkConfigurationEnactment,
            "Name/string/name/0 Status/string//0 Status Age/date//0 Reason/string//0 Node/string//1 Policy/string//1",
        ),
    ];
    for (kind, expected) in cases {
        let definitions = column_definitions(kind);
        let summary: Vec<String> = definitions
            .as_array()
            .unwrap()
            .iter()
            .map(|column| {
                assert!(!column["description"].as_str().unwrap().is_empty());
                format!(
                    "{}/{}/{}/{}",
                    column["name"].as_str().unwrap(),
                    column["type"].as_str().unwrap(),
                    column["format"].as_str().unwrap(),
                    column["priority"]
                )
            })
            .collect();
        assert_eq!(summary.join(" "), expected, "{kind}");
    }
    assert_eq!(
        column_definitions(ResourceKind::NodeNetworkState)[0]["description"],
        NAME_DESCRIPTION
    );
}

#[test]
fn list_table_with_metadata_rows() {
    let (first, second) = (state(), bare("node02"));
    let table = table(
        ResourceKind::NodeNetworkState,
        &[Printed::from(&first), Printed::from(&second)],
        TableOptions::default(),
        json!({"resourceVersion": "9", "continue": "abc", "remainingItemCount": 1}),
        now(),
    );
    assert_eq!(table["kind"], "Table");
    assert_eq!(table["apiVersion"], "meta.k8s.io/v1");
    assert_eq!(
        table["metadata"],
        json!({"resourceVersion": "9", "continue": "abc", "remainingItemCount": 1})
    );
    assert_eq!(table["columnDefinitions"].as_array().unwrap().len(), 6);
    assert_eq!(
        table["rows"],
        json!([
            {
                "cells": ["node01", 3, "30s", "2d", "1.46.0", "2.2.62"],
                "object": {
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": state()["metadata"],
                },
            },
            {
                "cells": ["node02", null, null, "<unknown>", null, null],
                "object": {
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": {"name": "node02"},
                },
            },
        ])
    );
}

#[test]
fn include_object_and_headers() {
    let kind = ResourceKind::NodeNetworkConfigurationEnactment;
    let object = enactment();
    let cases = [
        (
            "whole object",
            IncludeObject::Object,
            false,
            object.clone(),
            object.clone(),
        ),
        (
            "nothing",
            IncludeObject::None,
            false,
            object.clone(),
            Value::Null,
        ),
        (
            "metadata, no headers",
            IncludeObject::Metadata,
            true,
            object.clone(),
            json!({
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": object["metadata"],
            }),
        ),
        (
            "metadata of an object without any",
            IncludeObject::Metadata,
            false,
            json!({}),
            json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": {}}),
        ),
    ];
    for (name, include_object, no_headers, source, expected) in cases {
        let options = TableOptions {
            include_object,
            no_headers,
        };
        let table = table(kind, &[Printed::from(&source)], options, Value::Null, now());
        assert_eq!(table["rows"][0]["object"], expected, "{name}");
        assert_eq!(table["metadata"], json!({}), "{name}");
        let headers = &table["columnDefinitions"];
        assert_eq!(headers.is_null(), no_headers, "{name}: {headers}");
    }
}

#[test]
fn single_object_table() {
    let object = policy();
    let table = object_table(
        ResourceKind::NodeNetworkConfigurationPolicy,
        &object,
        TableOptions {
            include_object: IncludeObject::Object,
            no_headers: false,
        },
        now(),
    );
    assert_eq!(table["metadata"], json!({"resourceVersion": "42"}));
    assert_eq!(table["rows"].as_array().unwrap().len(), 1);
    assert_eq!(table["rows"][0]["object"], object);
    assert_eq!(table["rows"][0]["cells"][3], "2/3");

    let table = object_table(
        ResourceKind::NodeNetworkConfigurationEnactment,
        &bare("e"),
        TableOptions::default(),
        now(),
    );
    assert_eq!(table["metadata"], json!({}));
    let empty = super::table(
        ResourceKind::NodeNetworkState,
        &[],
        TableOptions::default(),
        json!({"resourceVersion": "3"}),
        now(),
    );
    assert_eq!(empty["rows"], json!([]));
}

#[test]
fn options_from_query() {
    let cases = [
        ("defaults", None, None, Ok((IncludeObject::Metadata, false))),
        (
            "empty include",
            Some(""),
            None,
            Ok((IncludeObject::Metadata, false)),
        ),
        (
            "object",
            Some("Object"),
            Some("true"),
            Ok((IncludeObject::Object, true)),
        ),
        (
            "none",
            Some("None"),
            Some("false"),
            Ok((IncludeObject::None, false)),
        ),
        (
            "metadata",
            Some("Metadata"),
            Some("FALSE"),
            Ok((IncludeObject::Metadata, false)),
        ),
        (
            "zero",
            None,
            Some("0"),
            Ok((IncludeObject::Metadata, false)),
        ),
        (
            "any other text is true",
            None,
            Some("yes"),
            Ok((IncludeObject::Metadata, true)),
        ),
        (
            "empty is true",
            None,
            Some(""),
            Ok((IncludeObject::Metadata, true)),
        ),
        (
            "unknown include",
            Some("object"),
            None,
            Err(r#"unrecognized includeObject value: "object""#),
        ),
    ];
    for (name, include_object, no_headers, expected) in cases {
        let actual = TableOptions::from_query(include_object, no_headers)
            .map(|options| (options.include_object, options.no_headers))
            .map_err(|error| error.to_string());
        assert_eq!(actual, expected.map_err(str::to_owned), "{name}");
    }
}

#[test]
fn ages() {
    let cases = [
        ("past", "2024-05-03T09:00:00Z", "60m"),
        (
            "fractional seconds and offset",
            "2024-05-03T11:59:00.5+02:00",
            "59s",
        ),
        ("skew of one second", "2024-05-03T10:00:01Z", "0s"),
        ("future", "2024-05-03T10:00:02Z", "<invalid>"),
        ("empty", "", "<unknown>"),
        ("null text", "null", "<unknown>"),
        ("Go zero time", "0001-01-01T00:00:00Z", "<unknown>"),
        ("not a time", "yesterday", "<invalid>"),
        ("no offset", "2024-05-03T09:00:00", "<invalid>"),
    ];
    for (name, timestamp, expected) in cases {
        assert_eq!(age(timestamp, now()), expected, "{name}");
    }
}

#[test]
fn human_durations() {
    const MS: i64 = 1;
    const S: i64 = 1000 * MS;
    const M: i64 = 60 * S;
    const H: i64 = 60 * M;
    const D: i64 = 24 * H;
    const Y: i64 = 365 * D;
    // Kubernetes' own cases (duration_test.go), in milliseconds.
    let cases = [
        (S, "1s"),
        (70 * S, "70s"),
        (190 * S, "3m10s"),
        (70 * M, "70m"),
        (47 * H, "47h"),
        (49 * H, "2d1h"),
        (8 * D + 2 * H, "8d"),
        (367 * D, "367d"),
        (2 * Y + 25 * H, "2y1d"),
        (8 * Y + 2 * H, "8y"),
        (-2 * S, "<invalid>"),
        (-2 * S + MS, "0s"),
        (0, "0s"),
        (S - MS, "0s"),
        (2 * M - MS, "119s"),
        (2 * M, "2m"),
        (2 * M + S, "2m1s"),
        (10 * M - MS, "9m59s"),
        (10 * M, "10m"),
        (10 * M + S, "10m"),
        (3 * H - MS, "179m"),
        (3 * H, "3h"),
        (3 * H + M, "3h1m"),
        (8 * H - MS, "7h59m"),
        (8 * H, "8h"),
        (8 * H + 59 * M, "8h"),
        (2 * D - MS, "47h"),
        (2 * D, "2d"),
        (2 * D + H, "2d1h"),
        (8 * D - MS, "7d23h"),
        (8 * D, "8d"),
        (8 * D + 23 * H, "8d"),
        (2 * Y - MS, "729d"),
        (2 * Y, "2y"),
        (2 * Y + 23 * H, "2y"),
        (2 * Y + 23 * H + 59 * M, "2y"),
        (2 * Y + D - MS, "2y"),
        (2 * Y + D, "2y1d"),
        (3 * Y, "3y"),
        (7 * Y, "7y"),
        (8 * Y - MS, "7y364d"),
        (8 * Y, "8y"),
        (8 * Y + 364 * D, "8y"),
        (9 * Y, "9y"),
    ];
    for (milliseconds, expected) in cases {
        assert_eq!(
            human_duration(SignedDuration::from_millis(milliseconds)),
            expected,
            "{milliseconds}ms"
        );
    }
    // Just under two seconds in the future is still "now".
    assert_eq!(human_duration(SignedDuration::new(-1, -999_999_999)), "0s");
}
