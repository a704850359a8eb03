//! Managed fields and server-side apply tests.
//!
//! The scenario table replays writes as a handler would make them (create,
//! update, merge patch, apply; main resource or `/status`) and compares the
//! final object, `managedFields` included, with what kube-apiserver stores
//! for a custom resource. Step `n` happens at second `n`.

#![allow(clippy::unwrap_used)]

use http::StatusCode;
use serde_json::{Value, json};

use super::*;
use crate::{
    api::error::Answer,
    rules::patch::{PatchType, apply_patch},
};

const V1: &str = "nmstate.io/v1";
const CSA: &str = "kubectl-client-side-apply";

fn yaml(text: &str) -> Value {
    serde_yaml::from_str(text).unwrap()
}

fn time(step: usize) -> String {
    format!("2025-01-01T00:00:{step:02}Z")
}

/// The policy most scenarios start from.
fn policy() -> Value {
    yaml(
        r#"
apiVersion: nmstate.io/v1
kind: NodeNetworkConfigurationPolicy
metadata:
  name: br1
  labels:
    app: net
spec:
  maxUnavailable: 3
  nodeSelector:
    kubernetes.io/hostname: node01
  desiredState:
    interfaces:
    - name: eth1
      type: ethernet
      state: up
"#,
    )
}

/// `value` with `change` applied to it.
fn with(mut value: Value, change: impl FnOnce(&mut Value)) -> Value {
    change(&mut value);
    value
}

/// What `policy()` owns when created with an update: every field, and the
/// maps that appeared with it.
fn created_policy_fields() -> Value {
    yaml(
        r#"
f:metadata:
  f:labels:
    .: {}
    f:app: {}
f:spec:
  .: {}
  f:desiredState:
    .: {}
    f:interfaces: {}
  f:maxUnavailable: {}
  f:nodeSelector:
    .: {}
    f:kubernetes.io/hostname: {}
"#,
    )
}

fn entry(
    manager: &str,
    operation: &str,
    time: Option<String>,
    subresource: &str,
    fields: Value,
) -> Value {
    let mut entry = json!({
        "manager": manager,
        "operation": operation,
        "apiVersion": V1,
        "fieldsType": "FieldsV1",
        "fieldsV1": fields,
    });
    if let Some(time) = time {
        entry["time"] = json!(time);
    }
    if !subresource.is_empty() {
        entry["subresource"] = json!(subresource);
    }
    entry
}

fn with_managed_fields(object: Value, entries: Vec<Value>) -> Value {
    with(object, |object| {
        object["metadata"]["managedFields"] = Value::Array(entries)
    })
}

/// An applied configuration for `br1`: `body` is merged into the type and
/// object meta every configuration carries.
fn config(body: &str) -> Value {
    let mut config = json!({
        "apiVersion": V1,
        "kind": "NodeNetworkConfigurationPolicy",
        "metadata": {"name": "br1"},
    });
    if !body.trim().is_empty() {
        json_patch::merge(&mut config, &yaml(body));
    }
    config
}

enum Step {
    /// `POST` of this object.
    Create {
        manager: &'static str,
        object: Value,
    },
    /// `PUT` of this object (without `managedFields`, as most clients send).
    Put {
        manager: &'static str,
        subresource: Option<&'static str>,
        object: Value,
    },
    /// `PATCH` with this merge patch.
    Patch { manager: &'static str, patch: Value },
    /// `PATCH` with this JSON patch.
    JsonPatch { manager: &'static str, patch: Value },
    /// `PATCH` with this applied configuration; `conflict` is the message
    /// the apply must fail with, leaving the object as it was.
    Apply {
        manager: &'static str,
        subresource: Option<&'static str>,
        force: bool,
        config: Value,
        conflict: Option<&'static str>,
    },
}

fn create(manager: &'static str, object: Value) -> Step {
    Step::Create { manager, object }
}

fn put(manager: &'static str, object: Value) -> Step {
    Step::Put {
        manager,
        subresource: None,
        object,
    }
}

fn put_status(manager: &'static str, object: Value) -> Step {
    Step::Put {
        manager,
        subresource: Some("status"),
        object,
    }
}

fn patch(manager: &'static str, patch: &str) -> Step {
    Step::Patch {
        manager,
        patch: yaml(patch),
    }
}

fn apply(manager: &'static str, config: Value) -> Step {
    Step::Apply {
        manager,
        subresource: None,
        force: false,
        config,
        conflict: None,
    }
}

fn force_apply(manager: &'static str, config: Value) -> Step {
    Step::Apply {
        manager,
        subresource: None,
        force: true,
        config,
        conflict: None,
    }
}

fn apply_conflicts(manager: &'static str, config: Value, conflict: &'static str) -> Step {
    Step::Apply {
        manager,
        subresource: None,
        force: false,
        config,
        conflict: Some(conflict),
    }
}

/// Replays the steps and compares the final object with `expected`.
fn check(name: &str, steps: Vec<Step>, expected: Value) {
    let mut object: Option<Value> = None;
    for (index, step) in steps.into_iter().enumerate() {
        let now = time(index + 1);
        let writer = |name, subresource| Manager {
            name,
            api_version: V1,
            subresource,
        };
        match step {
            Step::Create {
                manager,
                object: mut new,
            } => {
                update_managed_fields(None, &mut new, &writer(manager, None), &now);
                object = Some(new);
            }
            Step::Put {
                manager,
                subresource,
                object: mut new,
            } => {
                update_managed_fields(
                    object.as_ref(),
                    &mut new,
                    &writer(manager, subresource),
                    &now,
                );
                object = Some(new);
            }
            Step::Patch { manager, patch } | Step::JsonPatch { manager, patch } => {
                let live = object.as_ref().unwrap();
                let patch_type = if patch.is_array() {
                    PatchType::Json
                } else {
                    PatchType::Merge
                };
                let mut new = apply_patch(live, patch_type, patch.to_string().as_bytes()).unwrap();
                update_managed_fields(Some(live), &mut new, &writer(manager, None), &now);
                object = Some(new);
            }
            Step::Apply {
                manager,
                subresource,
                force,
                config,
                conflict,
            } => {
                let result = server_side_apply(
                    object.as_ref(),
                    &config,
                    &writer(manager, subresource),
                    force,
                    &now,
                );
                match (result, conflict) {
                    (Ok(new), None) => object = Some(new),
                    (Err(error), Some(message)) => {
                        assert_eq!(error.to_string(), message, "{name}: step {}", index + 1);
                        assert_eq!(
                            error.code(),
                            StatusCode::CONFLICT,
                            "{name}: step {}",
                            index + 1
                        );
                    }
                    (Ok(new), Some(message)) => panic!(
                        "{name}: step {} should fail with {message:?}, but gave\n{}",
                        index + 1,
                        serde_yaml::to_string(&new).unwrap()
                    ),
                    (Err(error), None) => panic!("{name}: step {} failed: {error}", index + 1),
                }
            }
        }
    }
    let actual = object.unwrap();
    assert!(
        actual == expected,
        "{name}: got\n{}\nexpected\n{}",
        serde_yaml::to_string(&actual).unwrap(),
        serde_yaml::to_string(&expected).unwrap()
    );
}

#[test]
fn scenarios() {
    check(
        "create by client-side apply",
        vec![create(CSA, policy())],
        with_managed_fields(
            policy(),
            vec![entry(
                CSA,
                "Update",
                Some(time(1)),
                "",
                created_policy_fields(),
            )],
        ),
    );

    check(
        "an update by another manager takes the field it changed",
        vec![
            create(CSA, policy()),
            patch("kubectl-edit", "spec: {maxUnavailable: 4}"),
        ],
        with_managed_fields(
            with(policy(), |p| p["spec"]["maxUnavailable"] = json!(4)),
            vec![
                entry(
                    CSA,
                    "Update",
                    Some(time(1)),
                    "",
                    with(created_policy_fields(), |f| {
                        f["f:spec"]
                            .as_object_mut()
                            .unwrap()
                            .remove("f:maxUnavailable");
                    }),
                ),
                entry(
                    "kubectl-edit",
                    "Update",
                    Some(time(2)),
                    "",
                    yaml("f:spec: {f:maxUnavailable: {}}"),
                ),
            ],
        ),
    );

    check(
        "a PUT that changes nothing records nothing",
        vec![create(CSA, policy()), put("kubectl-replace", policy())],
        with_managed_fields(
            policy(),
            vec![entry(
                CSA,
                "Update",
                Some(time(1)),
                "",
                created_policy_fields(),
            )],
        ),
    );

    check(
        "an update removing a field takes it from its owner",
        vec![
            create(CSA, policy()),
            patch("kubectl-label", "metadata: {labels: {app: null}}"),
        ],
        with_managed_fields(
            with(policy(), |p| p["metadata"]["labels"] = json!({})),
            vec![entry(
                CSA,
                "Update",
                Some(time(1)),
                "",
                with(created_policy_fields(), |f| {
                    f["f:metadata"] = yaml("f:labels: {}");
                }),
            )],
        ),
    );

    check(
        "apply conflicts with the updater owning the field",
        vec![
            create(CSA, policy()),
            apply_conflicts(
                "nmstate-operator",
                config("spec: {maxUnavailable: 50%}"),
                r#"Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using nmstate.io/v1: .spec.maxUnavailable"#,
            ),
        ],
        with_managed_fields(
            policy(),
            vec![entry(
                CSA,
                "Update",
                Some(time(1)),
                "",
                created_policy_fields(),
            )],
        ),
    );

    check(
        "a forced apply takes the field over",
        vec![
            create(CSA, policy()),
            force_apply("nmstate-operator", config("spec: {maxUnavailable: 50%}")),
        ],
        with_managed_fields(
            with(policy(), |p| p["spec"]["maxUnavailable"] = json!("50%")),
            vec![
                entry(
                    "nmstate-operator",
                    "Apply",
                    Some(time(2)),
                    "",
                    yaml("f:spec: {f:maxUnavailable: {}}"),
                ),
                entry(
                    CSA,
                    "Update",
                    Some(time(1)),
                    "",
                    with(created_policy_fields(), |f| {
                        f["f:spec"]
                            .as_object_mut()
                            .unwrap()
                            .remove("f:maxUnavailable");
                    }),
                ),
            ],
        ),
    );

    check(
        "applying the value a field has is no conflict and shares it",
        vec![
            create(CSA, policy()),
            apply("nmstate-operator", config("spec: {maxUnavailable: 3}")),
        ],
        with_managed_fields(
            policy(),
            vec![
                // The object did not change, so kube stamps no time.
                entry(
                    "nmstate-operator",
                    "Apply",
                    None,
                    "",
                    yaml("f:spec: {f:maxUnavailable: {}}"),
                ),
                entry(CSA, "Update", Some(time(1)), "", created_policy_fields()),
            ],
        ),
    );

    check(
        "apply creates a missing object",
        vec![apply("nmstate-operator", with(policy(), |_| {}))],
        with_managed_fields(
            policy(),
            vec![entry(
                "nmstate-operator",
                "Apply",
                Some(time(1)),
                "",
                yaml(
                    r#"
f:metadata: {f:labels: {f:app: {}}}
f:spec:
  f:desiredState: {f:interfaces: {}}
  f:maxUnavailable: {}
  f:nodeSelector: {f:kubernetes.io/hostname: {}}
"#,
                ),
            )],
        ),
    );

    check(
        "a field dropped from the applied configuration is removed",
        vec![
            apply(
                "nmstate-operator",
                config(
                    "metadata: {labels: {app: net, tier: edge}}\nspec: {maxUnavailable: 3, desiredState: {dns-resolver: {config: {server: [8.8.8.8]}}}}",
                ),
            ),
            apply("nmstate-operator", config("metadata: {labels: {app: net}}")),
        ],
        with_managed_fields(
            config("metadata: {labels: {app: net}}"),
            vec![entry(
                "nmstate-operator",
                "Apply",
                Some(time(2)),
                "",
                yaml("f:metadata: {f:labels: {f:app: {}}}"),
            )],
        ),
    );

    check(
        "two appliers share a field, which stays when one drops it",
        vec![
            apply(
                "applier-a",
                config("metadata: {labels: {shared: x, a: '1'}}"),
            ),
            apply("applier-b", config("metadata: {labels: {shared: x}}")),
            apply("applier-a", config("metadata: {labels: {a: '1'}}")),
        ],
        with_managed_fields(
            config("metadata: {labels: {shared: x, a: '1'}}"),
            vec![
                // Neither later apply changed the object: B never got a time,
                // A keeps its first one.
                entry(
                    "applier-b",
                    "Apply",
                    None,
                    "",
                    yaml("f:metadata: {f:labels: {f:shared: {}}}"),
                ),
                entry(
                    "applier-a",
                    "Apply",
                    Some(time(1)),
                    "",
                    yaml("f:metadata: {f:labels: {f:a: {}}}"),
                ),
            ],
        ),
    );

    check(
        "a field an updater also owns stays when the applier drops it",
        vec![
            create(CSA, policy()),
            apply(
                "nmstate-operator",
                config("spec: {maxUnavailable: 3, capture: {base: x}}"),
            ),
            apply("nmstate-operator", config("spec: {capture: {base: x}}")),
        ],
        with_managed_fields(
            with(policy(), |p| p["spec"]["capture"] = json!({"base": "x"})),
            vec![
                entry(
                    "nmstate-operator",
                    "Apply",
                    Some(time(2)),
                    "",
                    yaml("f:spec: {f:capture: {f:base: {}}}"),
                ),
                entry(CSA, "Update", Some(time(1)), "", created_policy_fields()),
            ],
        ),
    );

    check(
        "a forced apply leaves the updater nothing, and dropping the field then removes it",
        vec![
            apply(
                "nmstate-operator",
                config("spec: {maxUnavailable: 3, capture: {base: x}}"),
            ),
            patch("kubectl-edit", "spec: {maxUnavailable: 4}"),
            force_apply("nmstate-operator", config("spec: {maxUnavailable: 5}")),
            apply("nmstate-operator", config("spec: {}")),
        ],
        with_managed_fields(
            config("spec: {}"),
            vec![entry(
                "nmstate-operator",
                "Apply",
                Some(time(4)),
                "",
                yaml("f:spec: {}"),
            )],
        ),
    );

    let handler_status =
        yaml("conditions: [{type: Available, status: 'True'}]\nobservedGeneration: 1");
    check(
        "status is owned through /status only",
        vec![
            create(CSA, policy()),
            put_status(
                "nmstate-handler",
                with(policy(), |p| p["status"] = handler_status.clone()),
            ),
            patch(
                "kubectl-edit",
                "spec: {maxUnavailable: 4}\nstatus: {observedGeneration: 2}",
            ),
            Step::Apply {
                manager: "handler-ssa",
                subresource: Some("status"),
                force: false,
                config: config("spec: {maxUnavailable: 9}\nstatus: {observedGeneration: 3}"),
                conflict: Some(
                    r#"Apply failed with 1 conflict: conflict with "nmstate-handler" with subresource "status" using nmstate.io/v1: .status.observedGeneration"#,
                ),
            },
            Step::Apply {
                manager: "handler-ssa",
                subresource: Some("status"),
                force: true,
                config: config(
                    "metadata: {labels: {ignored: x}}\nspec: {maxUnavailable: 9}\nstatus: {observedGeneration: 3}",
                ),
                conflict: None,
            },
        ],
        with_managed_fields(
            with(policy(), |p| {
                p["spec"]["maxUnavailable"] = json!(4);
                p["status"] = handler_status.clone();
                p["status"]["observedGeneration"] = json!(3);
            }),
            vec![
                entry(
                    "handler-ssa",
                    "Apply",
                    Some(time(5)),
                    "status",
                    yaml("f:status: {f:observedGeneration: {}}"),
                ),
                entry(
                    CSA,
                    "Update",
                    Some(time(1)),
                    "",
                    with(created_policy_fields(), |f| {
                        f["f:spec"]
                            .as_object_mut()
                            .unwrap()
                            .remove("f:maxUnavailable");
                    }),
                ),
                entry(
                    "nmstate-handler",
                    "Update",
                    Some(time(2)),
                    "status",
                    yaml("f:status: {.: {}, f:conditions: {}}"),
                ),
                entry(
                    "kubectl-edit",
                    "Update",
                    Some(time(3)),
                    "",
                    yaml("f:spec: {f:maxUnavailable: {}}"),
                ),
            ],
        ),
    );

    check(
        "cleared managed fields stay cleared until an apply",
        vec![
            create(CSA, policy()),
            patch("kubectl-edit", "metadata: {managedFields: []}"),
            patch("kubectl-edit", "spec: {maxUnavailable: 4}"),
            apply(
                "nmstate-operator",
                config("metadata: {labels: {zone: a}}\nspec: {maxUnavailable: 4}"),
            ),
        ],
        with_managed_fields(
            with(policy(), |p| {
                p["spec"]["maxUnavailable"] = json!(4);
                p["metadata"]["labels"]["zone"] = json!("a");
            }),
            vec![
                entry(
                    "nmstate-operator",
                    "Apply",
                    Some(time(4)),
                    "",
                    yaml("f:metadata: {f:labels: {f:zone: {}}}\nf:spec: {f:maxUnavailable: {}}"),
                ),
                entry(
                    "before-first-apply",
                    "Update",
                    Some(time(4)),
                    "",
                    created_policy_fields(),
                ),
            ],
        ),
    );

    check(
        "[{}] clears managed fields too",
        vec![
            create(CSA, policy()),
            patch("kubectl-edit", "metadata: {managedFields: [{}]}"),
        ],
        policy(),
    );

    check(
        "several conflicts are grouped by manager",
        vec![
            create(CSA, policy()),
            patch("kubectl-edit", "spec: {maxUnavailable: 4}"),
            apply("zz-applier", config("metadata: {labels: {zone: a}}")),
            apply_conflicts(
                "nmstate-operator",
                config(
                    "metadata: {labels: {app: web, zone: b}}\nspec: {maxUnavailable: 5, nodeSelector: {kubernetes.io/hostname: node02}}",
                ),
                "Apply failed with 4 conflicts: conflicts with \"kubectl-client-side-apply\" using nmstate.io/v1:\n\
                 - .metadata.labels.app\n\
                 - .spec.nodeSelector.kubernetes.io/hostname\n\
                 conflicts with \"kubectl-edit\" using nmstate.io/v1:\n\
                 - .spec.maxUnavailable\n\
                 conflicts with \"zz-applier\":\n\
                 - .metadata.labels.zone",
            ),
        ],
        with_managed_fields(
            with(policy(), |p| {
                p["spec"]["maxUnavailable"] = json!(4);
                p["metadata"]["labels"]["zone"] = json!("a");
            }),
            vec![
                entry(
                    "zz-applier",
                    "Apply",
                    Some(time(3)),
                    "",
                    yaml("f:metadata: {f:labels: {f:zone: {}}}"),
                ),
                entry(
                    CSA,
                    "Update",
                    Some(time(1)),
                    "",
                    with(created_policy_fields(), |f| {
                        f["f:spec"]
                            .as_object_mut()
                            .unwrap()
                            .remove("f:maxUnavailable");
                    }),
                ),
                entry(
                    "kubectl-edit",
                    "Update",
                    Some(time(2)),
                    "",
                    yaml("f:spec: {f:maxUnavailable: {}}"),
                ),
            ],
        ),
    );
}

/// `kubectl apply --server-side` after `kubectl apply`: kube lets manager
/// `kubectl` take over what the last-applied annotation still describes.
#[test]
fn upgrade_from_client_side_apply() {
    let last_applied = |config: &Value| format!("{config}\n");
    let first = policy();
    let second = with(policy(), |p| p["spec"]["maxUnavailable"] = json!(5));
    let annotated = |config: &Value| {
        with(config.clone(), |p| {
            p["metadata"]["annotations"] = json!({LAST_APPLIED_ANNOTATION: last_applied(config)});
        })
    };
    let created_fields = with(created_policy_fields(), |f| {
        f["f:metadata"]["f:annotations"] =
            json!({".": {}, format!("f:{LAST_APPLIED_ANNOTATION}"): {}});
    });
    let kubectl_fields = yaml(
        r#"
f:metadata: {f:labels: {f:app: {}}}
f:spec:
  f:desiredState: {f:interfaces: {}}
  f:maxUnavailable: {}
  f:nodeSelector: {f:kubernetes.io/hostname: {}}
"#,
    );

    check(
        "kubectl takes over fields unchanged since the last client-side apply",
        vec![
            create(CSA, annotated(&first)),
            apply("kubectl", second.clone()),
        ],
        with_managed_fields(
            // The annotation now holds what kubectl applied.
            annotated(&second),
            vec![
                entry(
                    "kubectl",
                    "Apply",
                    Some(time(2)),
                    "",
                    kubectl_fields.clone(),
                ),
                entry(
                    CSA,
                    "Update",
                    Some(time(1)),
                    "",
                    with(created_fields.clone(), |f| {
                        f["f:spec"]
                            .as_object_mut()
                            .unwrap()
                            .remove("f:maxUnavailable");
                    }),
                ),
            ],
        ),
    );

    check(
        "kubectl conflicts on a field changed since",
        vec![
            create(CSA, annotated(&first)),
            patch("kubectl-edit", "spec: {maxUnavailable: 4}"),
            apply_conflicts(
                "kubectl",
                second.clone(),
                r#"Apply failed with 1 conflict: conflict with "kubectl-edit" using nmstate.io/v1: .spec.maxUnavailable"#,
            ),
        ],
        with_managed_fields(
            with(annotated(&first), |p| {
                p["spec"]["maxUnavailable"] = json!(4)
            }),
            vec![
                entry(
                    CSA,
                    "Update",
                    Some(time(1)),
                    "",
                    with(created_fields.clone(), |f| {
                        f["f:spec"]
                            .as_object_mut()
                            .unwrap()
                            .remove("f:maxUnavailable");
                    }),
                ),
                entry(
                    "kubectl-edit",
                    "Update",
                    Some(time(2)),
                    "",
                    yaml("f:spec: {f:maxUnavailable: {}}"),
                ),
            ],
        ),
    );

    // What kubectl 1.32 sends for `kubectl apply --server-side` on an
    // object it applied client-side before: the apply, the annotation
    // re-applied by its own manager so that it survives, a JSON patch that
    // folds the client-side entry into kubectl's (with the resource version
    // as a precondition), and the apply once more.
    let annotation_only = |config: &Value| {
        json!({
            "apiVersion": V1,
            "kind": "NodeNetworkConfigurationPolicy",
            "metadata": {"name": "br1", "annotations": {LAST_APPLIED_ANNOTATION: last_applied(config)}},
        })
    };
    let annotation_fields =
        json!({"f:metadata": {"f:annotations": {format!("f:{LAST_APPLIED_ANNOTATION}"): {}}}});
    let migrated = vec![
        entry("kubectl", "Apply", Some(time(2)), "", {
            let mut fields = created_fields.clone();
            json_patch::merge(&mut fields, &kubectl_fields);
            fields
        }),
        entry(
            "kubectl-last-applied",
            "Apply",
            None,
            "",
            annotation_fields.clone(),
        ),
    ];
    check(
        "kubectl's whole upgrade sequence",
        vec![
            create(CSA, annotated(&first)),
            apply("kubectl", second.clone()),
            apply("kubectl-last-applied", annotation_only(&second)),
            Step::JsonPatch {
                manager: "kubectl",
                patch: json!([
                    {"op": "replace", "path": "/metadata/managedFields", "value": migrated},
                ]),
            },
            apply("kubectl", second.clone()),
        ],
        with_managed_fields(
            annotated(&second),
            vec![
                entry("kubectl-last-applied", "Apply", None, "", annotation_fields),
                entry(
                    "kubectl",
                    "Apply",
                    Some(time(2)),
                    "",
                    kubectl_fields.clone(),
                ),
            ],
        ),
    );

    check(
        "another applier gets no such leeway",
        vec![
            create(CSA, annotated(&first)),
            apply_conflicts(
                "nmstate-operator",
                second,
                r#"Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using nmstate.io/v1: .spec.maxUnavailable"#,
            ),
        ],
        with_managed_fields(
            annotated(&first),
            vec![entry(CSA, "Update", Some(time(1)), "", created_fields)],
        ),
    );
}

#[test]
fn conflict_causes() {
    let manager = Manager {
        name: CSA,
        api_version: V1,
        subresource: None,
    };
    let mut live = policy();
    update_managed_fields(None, &mut live, &manager, &time(1));
    let operator = Manager {
        name: "nmstate-operator",
        ..manager
    };
    let applied = config("metadata: {labels: {app: web}}\nspec: {maxUnavailable: 5}");

    let error = server_side_apply(Some(&live), &applied, &operator, false, &time(2)).unwrap_err();
    assert_eq!(error.code(), StatusCode::CONFLICT);
    assert_eq!(error.reason(), "Conflict");
    let causes: Vec<(String, String, String)> = error
        .causes()
        .into_iter()
        .map(|cause| (cause.reason, cause.message, cause.field))
        .collect();
    let expected = |field: &str| {
        (
            "FieldManagerConflict".to_owned(),
            r#"conflict with "kubectl-client-side-apply" using nmstate.io/v1"#.to_owned(),
            field.to_owned(),
        )
    };
    assert_eq!(
        causes,
        vec![
            expected(".metadata.labels.app"),
            expected(".spec.maxUnavailable")
        ]
    );
}

#[test]
fn apply_refusals() {
    fn check(name: &str, live: Option<Value>, applied: Value, expected: (StatusCode, &str)) {
        let manager = Manager {
            name: "nmstate-operator",
            api_version: V1,
            subresource: None,
        };
        let error =
            server_side_apply(live.as_ref(), &applied, &manager, false, &time(1)).unwrap_err();
        assert_eq!(
            (error.code(), error.to_string().as_str()),
            expected,
            "{name}"
        );
    }
    check(
        "another version than the request's",
        None,
        with(config(""), |c| {
            c["apiVersion"] = json!("nmstate.io/v1beta1")
        }),
        (
            StatusCode::BAD_REQUEST,
            "Incorrect version specified in apply patch. Specified patch version: nmstate.io/v1beta1, expected: nmstate.io/v1",
        ),
    );
    check(
        "no version at all (an empty body)",
        None,
        json!({}),
        (
            StatusCode::BAD_REQUEST,
            "Incorrect version specified in apply patch. Specified patch version: , expected: nmstate.io/v1",
        ),
    );
    check(
        "managed fields in the configuration",
        None,
        config("metadata: {managedFields: []}"),
        (
            StatusCode::BAD_REQUEST,
            "metadata.managedFields must be nil",
        ),
    );
    check(
        "unreadable managed fields on the live object",
        Some(config(
            "metadata: {managedFields: [{manager: x, operation: Delete, apiVersion: v1, fieldsType: FieldsV1}]}",
        )),
        config(""),
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "failed to decode managed fields: operation must be `Apply` or `Update`",
        ),
    );
}

#[test]
fn update_keeps_managed_fields_a_client_sends() {
    let manager = Manager {
        name: CSA,
        api_version: V1,
        subresource: None,
    };
    let mut live = policy();
    update_managed_fields(None, &mut live, &manager, &time(1));

    // A client may rewrite the entries; an update then starts from them.
    let rewritten = vec![entry(
        "someone",
        "Update",
        Some(time(1)),
        "",
        yaml("f:spec: {f:maxUnavailable: {}}"),
    )];
    let mut new = with_managed_fields(policy(), rewritten.clone());
    update_managed_fields(
        Some(&live),
        &mut new,
        &Manager {
            name: "kubectl-replace",
            ..manager
        },
        &time(2),
    );
    assert_eq!(new, with_managed_fields(policy(), rewritten));

    // Unreadable entries fall back to the live ones.
    let mut new = with_managed_fields(
        policy(),
        vec![json!({"manager": "x", "operation": "Delete"})],
    );
    update_managed_fields(
        Some(&live),
        &mut new,
        &Manager {
            name: "kubectl-replace",
            ..manager
        },
        &time(2),
    );
    assert_eq!(new, live);

    // Through /status, the request's entries are ignored.
    let mut new = with_managed_fields(policy(), vec![]);
    let status = Manager {
        name: "handler",
        subresource: Some("status"),
        ..manager
    };
    update_managed_fields(Some(&live), &mut new, &status, &time(2));
    assert_eq!(new, live);
}

#[test]
fn update_entries_are_capped() {
    let mut object = policy();
    let creator = Manager {
        name: CSA,
        api_version: V1,
        subresource: None,
    };
    update_managed_fields(None, &mut object, &creator, &time(1));
    let names: Vec<String> = (1..=11).map(|n| format!("labeller-{n:02}")).collect();
    for (n, name) in names.iter().enumerate() {
        let mut new = with(object.clone(), |o| {
            o["metadata"]["labels"][format!("l{n:02}")] = json!("x")
        });
        let manager = Manager { name, ..creator };
        update_managed_fields(Some(&object), &mut new, &manager, &time(n + 2));
        object = new;
    }
    let entries = object["metadata"]["managedFields"].as_array().unwrap();
    let managers: Vec<&str> = entries
        .iter()
        .map(|e| e["manager"].as_str().unwrap())
        .collect();
    // The oldest three (the creator and the first two labellers) became one
    // bucket, stamped with the newest time merged into it.
    assert_eq!(
        managers,
        vec![
            "ancient-changes",
            "labeller-03",
            "labeller-04",
            "labeller-05",
            "labeller-06",
            "labeller-07",
            "labeller-08",
            "labeller-09",
            "labeller-10",
            "labeller-11",
        ]
    );
    assert_eq!(entries[0]["time"], json!(time(3)));
    assert_eq!(
        entries[0]["fieldsV1"],
        with(created_policy_fields(), |f| {
            f["f:metadata"]["f:labels"]["f:l00"] = json!({});
            f["f:metadata"]["f:labels"]["f:l01"] = json!({});
        })
    );
}

#[test]
fn fields_of_objects() {
    fn check(name: &str, object: &str, expected: &str) {
        let actual = fields_of(&yaml(object)).to_fields_v1();
        assert_eq!(actual, yaml(expected), "{name}");
    }
    check(
        "type and system metadata are nobody's",
        "apiVersion: nmstate.io/v1\nkind: NodeNetworkState\nmetadata: {name: node01, uid: u, resourceVersion: '3', generation: 2, creationTimestamp: t, managedFields: []}",
        "{}",
    );
    check(
        "map keys holding maps are members, struct fields are not",
        "metadata: {labels: {app: net}, annotations: {}}\nspec: {capture: {base: x}, desiredState: {routes: {config: [{destination: 0.0.0.0/0}]}, interfaces: []}}",
        r#"
f:metadata: {f:annotations: {}, f:labels: {f:app: {}}}
f:spec:
  f:capture: {f:base: {}}
  f:desiredState:
    f:interfaces: {}
    f:routes: {.: {}, f:config: {}}
"#,
    );
    check(
        "captured states are structs inside a map",
        "status:\n  capturedStates:\n    gw:\n      state: {routes: {running: []}}\n      metaInfo: {version: '1', time: t}\n  conditions: [{type: Available}]",
        r#"
f:status:
  f:capturedStates:
    f:gw:
      .: {}
      f:metaInfo: {f:time: {}, f:version: {}}
      f:state: {f:routes: {.: {}, f:running: {}}}
  f:conditions: {}
"#,
    );
    check(
        "null is a value",
        "spec: {maxUnavailable: null}",
        "f:spec: {f:maxUnavailable: {}}",
    );
}

#[test]
fn comparisons() {
    fn check(name: &str, old: &str, new: &str, expected: [&[&[&str]]; 3]) {
        let actual = compare(&yaml(old), &yaml(new));
        let set = |paths: &[&[&str]]| {
            paths
                .iter()
                .map(|p| Path::fields(p.iter()))
                .collect::<FieldSet>()
        };
        let expected = Comparison {
            added: set(expected[0]),
            modified: set(expected[1]),
            removed: set(expected[2]),
        };
        assert_eq!(actual, expected, "{name}");
    }
    check("same", "a: {b: 1}", "a: {b: 1}", [&[], &[], &[]]);
    check(
        "integer and float are the same number",
        "a: 1",
        "a: 1.0",
        [&[], &[], &[]],
    );
    check(
        "a map appears",
        "{}",
        "a: {b: 1}",
        [&[&["a"], &["a", "b"]], &[], &[]],
    );
    check(
        "a map goes",
        "a: {b: 1}",
        "{}",
        [&[], &[], &[&["a"], &["a", "b"]]],
    );
    check(
        "lists compare whole",
        "a: [1, 2]",
        "a: [1, 3]",
        [&[], &[&["a"]], &[]],
    );
    check(
        "a map becomes a scalar",
        "a: {b: 1}",
        "a: 2",
        [&[], &[&["a"]], &[&["a", "b"]]],
    );
    check("an empty map appears", "{}", "a: {}", [&[&["a"]], &[], &[]]);
}

#[test]
fn fields_v1_encoding() {
    // A set as kube writes it, with the element kinds only built-in types
    // produce: it must read and write back unchanged.
    let encoded = yaml(
        r#"
f:metadata:
  f:finalizers:
    .: {}
    v:"nmstate.io/finalizer": {}
  f:labels: {.: {}, f:app: {}}
f:spec:
  f:containers:
    k:{"name":"app"}:
      .: {}
      f:image: {}
    i:0: {}
"#,
    );
    let set = FieldSet::from_fields_v1(&encoded).unwrap();
    assert_eq!(set.to_fields_v1(), encoded);
    let printed: Vec<String> = set.iter().map(ToString::to_string).collect();
    assert_eq!(
        printed,
        vec![
            ".metadata.finalizers",
            ".metadata.labels",
            ".metadata.finalizers[=\"nmstate.io/finalizer\"]",
            ".metadata.labels.app",
            ".spec.containers[0]",
            ".spec.containers[name=\"app\"]",
            ".spec.containers[name=\"app\"].image",
        ]
    );

    let error = FieldSet::from_fields_v1(&yaml("f:spec: {f:x: 1}")).unwrap_err();
    assert_eq!(
        error.to_string(),
        "error decoding set: f:spec.f:x: expected an object, found a number"
    );
    let error = FieldSet::from_fields_v1(&yaml("spec: {}")).unwrap_err();
    assert_eq!(
        error.to_string(),
        "error decoding set: unknown path element \"spec\": expected a prefix of f:, k:, v: or i:"
    );
}

#[test]
fn paths_order_members_before_subtrees() {
    let mut set = FieldSet::new();
    for path in [
        &["spec", "z"][..],
        &["spec", "b", "c"],
        &["spec", "a"],
        &["metadata", "labels", "x"],
        &["spec"],
    ] {
        set.insert(Path::fields(path));
    }
    let printed: Vec<String> = set.iter().map(ToString::to_string).collect();
    assert_eq!(
        printed,
        vec![
            ".spec",
            ".metadata.labels.x",
            ".spec.a",
            ".spec.z",
            ".spec.b.c"
        ]
    );
}

#[test]
fn field_managers() {
    fn check(name: &str, requested: Option<&str>, user_agent: Option<&str>, expected: &str) {
        assert_eq!(field_manager(requested, user_agent), expected, "{name}");
    }
    check(
        "the query parameter wins",
        Some("kubectl-edit"),
        Some("kubectl/v1.32.0"),
        "kubectl-edit",
    );
    check(
        "an empty parameter is no parameter",
        Some(""),
        Some("curl/8.5.0"),
        "curl",
    );
    check(
        "user agent up to the first slash",
        None,
        Some("kubectl/v1.32.0 (linux/amd64) kubernetes/70d3cc9"),
        "kubectl",
    );
    check("no slash", None, Some("my tool"), "my tool");
    check(
        "unprintable characters dropped",
        None,
        Some("to\u{7}ol\t/1"),
        "tool",
    );
    check("nothing at all", None, None, "");
    let long = "x".repeat(200);
    assert_eq!(
        field_manager(None, Some(&long)).len(),
        FIELD_MANAGER_MAX_LENGTH
    );
}

#[test]
fn options() {
    type Problems<'a> = Vec<(&'a str, String, &'a str)>;
    fn check(
        name: &str,
        options: Options,
        field_manager: Option<&str>,
        force: Option<bool>,
        expected: Result<(), (String, Problems<'_>)>,
    ) {
        let actual = validate_options(options, field_manager, force).map_err(|error| {
            let causes: Vec<(String, String, String)> = error
                .causes()
                .into_iter()
                .map(|c| (c.reason, c.message, c.field))
                .collect();
            (error.to_string(), causes)
        });
        let expected = expected.map_err(|(message, causes)| {
            let causes: Vec<(String, String, String)> = causes
                .into_iter()
                .map(|(reason, message, field)| (reason.to_owned(), message, field.to_owned()))
                .collect();
            (message, causes)
        });
        assert_eq!(actual, expected, "{name}");
    }
    check(
        "apply with a manager",
        Options::Patch(PatchType::Apply),
        Some("kubectl"),
        Some(true),
        Ok(()),
    );
    check(
        "merge patch without one",
        Options::Patch(PatchType::Merge),
        None,
        None,
        Ok(()),
    );
    check(
        "create",
        Options::Create,
        Some("kubectl-create"),
        None,
        Ok(()),
    );
    check(
        "apply needs a field manager",
        Options::Patch(PatchType::Apply),
        None,
        None,
        Err((
            r#"PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for apply patch"#.to_owned(),
            vec![("FieldValueRequired", "Required value: is required for apply patch".to_owned(), "fieldManager")],
        )),
    );
    check(
        "force is for apply only",
        Options::Patch(PatchType::Json),
        Some("kubectl-patch"),
        Some(false),
        Err((
            r#"PatchOptions.meta.k8s.io "" is invalid: force: Forbidden: may not be specified for non-apply patch"#.to_owned(),
            vec![("FieldValueForbidden", "Forbidden: may not be specified for non-apply patch".to_owned(), "force")],
        )),
    );
    let manager = format!("{}\u{1}", "m".repeat(129));
    let invalid = format!("Invalid value: {manager:?}: invalid character U+0001 (at position 129)");
    check(
        "too long and unprintable",
        Options::Update,
        Some(&manager),
        None,
        Err((
            format!(
                "UpdateOptions.meta.k8s.io \"\" is invalid: [fieldManager: Too long: may not be more than 128 bytes, fieldManager: {invalid}]"
            ),
            vec![
                (
                    "FieldValueTooLong",
                    "Too long: may not be more than 128 bytes".to_owned(),
                    "fieldManager",
                ),
                ("FieldValueInvalid", invalid.clone(), "fieldManager"),
            ],
        )),
    );
}

/// Comparing versions whose current states are set aside as text gives
/// what comparing them with the states in place gives, whichever side is
/// text, absent or in place, and `1` against `1.0` stays the same field.
#[test]
fn a_comparison_of_current_states_set_aside_is_the_comparison_of_their_values() {
    use crate::rules::current_state::SetAside;
    let states = [
        None,
        Some(r#"{}"#),
        Some(
            r#"{"interfaces":[{"name":"eth0","mtu":1500}],"dns-resolver":{"config":{},"running":{"server":["192.0.2.53"]}}}"#,
        ),
        Some(
            r#"{"interfaces":[{"mtu":1500.0,"name":"eth0"}],"dns-resolver":{"running":{"server":["192.0.2.53"]},"config":{}}}"#,
        ),
        Some(
            r#"{"interfaces":[{"name":"eth0","mtu":9000}],"dns-resolver":{"config":{"server":[]},"running":"x"},"routes":{"running":[],"config":[]}}"#,
        ),
        Some(r#"{"interfaces":{"eth0":{}},"dns-resolver":null,"a":1,"a":{"b":2}}"#),
        Some(r#"{"ovs-db":{"external_ids":{"k":1}},"routes":{"running":[1,2]}}"#),
        Some(r#"[1,2]"#),
        Some(r#""text""#),
    ];
    let with_state = |state: Option<&str>| {
        let mut object = json!({"kind": "NodeNetworkState", "metadata": {"name": "n"}, "status": {"conditions": []}});
        if let Some(state) = state {
            object["status"]["currentState"] = serde_json::from_str(state).unwrap();
        }
        object
    };
    let set_aside = |state: Option<&str>| {
        let mut object = with_state(None);
        if state.is_some() {
            object["status"]["currentState"] = json!({});
        }
        object
    };
    for old in states {
        for new in states {
            let expected = compare(&with_state(old), &with_state(new));
            let both = SetAside { old, new };
            assert_eq!(
                compare_setting_aside(&set_aside(old), &set_aside(new), both),
                expected,
                "{old:?} → {new:?}, both set aside"
            );
            // One side in place.
            let only_new = SetAside { old: None, new };
            assert_eq!(
                compare_setting_aside(&with_state(old), &set_aside(new), only_new),
                expected,
                "{old:?} → {new:?}, the new one set aside"
            );
            let only_old = SetAside { old, new: None };
            assert_eq!(
                compare_setting_aside(&set_aside(old), &with_state(new), only_old),
                expected,
                "{old:?} → {new:?}, the old one set aside"
            );
            assert_eq!(
                crate::rules::object::unchanged_setting_aside(
                    &set_aside(old),
                    &set_aside(new),
                    both
                ),
                crate::rules::object::unchanged(&with_state(old), &with_state(new)),
                "{old:?} → {new:?}: unchanged"
            );
        }
    }
}
