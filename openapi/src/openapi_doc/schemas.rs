//! The schemas of the nmstate.io kinds in one version: derived by utoipa
//! from the Rust types (doc comments become descriptions), renamed to
//! Kubernetes' `io.nmstate.<version>.<Name>`, plus the list kinds; the bodies of
//! the `render` and `dry-run` subresources are derived the same way.

use serde_json::{Map, Value, json};
use utoipa::{
    PartialSchema, ToSchema,
    openapi::{
        RefOr,
        extensions::ExtensionsBuilder,
        schema::{AllOfBuilder, ObjectBuilder, Ref, Schema, Type},
    },
};

use super::{GVK_EXTENSION, V3_REF_PREFIX, meta};
use crate::{
    GROUP, IntOrString, NodeNetworkConfigurationEnactment, NodeNetworkConfigurationPolicy,
    NodeNetworkState, ResourceKind, State,
    subresources::{
        NodeNetworkConfigurationPolicyDryRun, NodeNetworkConfigurationPolicyRender,
        NodeNetworkConfigurationPolicyRenderRequest,
    },
};

/// An nmstate document: any JSON object, kept as written. Fields of this
/// type are marked `#[schema(inline)]`, as Kubernetes inlines such subtrees.
impl PartialSchema for State {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .extensions(Some(
                ExtensionsBuilder::new()
                    .add("x-kubernetes-preserve-unknown-fields", true)
                    .build(),
            ))
            .into()
    }
}

impl ToSchema for State {}

/// A reference to apimachinery's `IntOrString`, which `kubectl explain`
/// shows as `<IntOrString>`, marked `x-kubernetes-int-or-string` itself so
/// that tools reading only the field see it too. Fields of this type are
/// marked `#[schema(inline)]`.
impl PartialSchema for IntOrString {
    fn schema() -> RefOr<Schema> {
        AllOfBuilder::new()
            .item(Ref::from_schema_name(meta::INT_OR_STRING))
            .extensions(Some(
                ExtensionsBuilder::new()
                    .add("x-kubernetes-int-or-string", true)
                    .build(),
            ))
            .into()
    }
}

impl ToSchema for IntOrString {}

/// The name of our schema `name` in `version`, e.g.
/// `io.nmstate.v1.NodeNetworkConfigurationPolicy`.
pub(crate) fn schema_name(version: &str, name: &str) -> String {
    let reversed_group: Vec<&str> = GROUP.rsplit('.').collect();
    format!("{}.{version}.{name}", reversed_group.join("."))
}

/// `{"$ref": …}` to our schema `name` in `version`.
pub(crate) fn reference(version: &str, name: &str) -> Value {
    json!({ "$ref": format!("{V3_REF_PREFIX}{}", schema_name(version, name)) })
}

/// The `x-kubernetes-group-version-kind` value of a schema.
fn gvk_list(version: &str, kind: &str) -> Value {
    json!([{ "group": GROUP, "version": version, "kind": kind }])
}

/// Every schema of group nmstate.io in `version`, by full name. References
/// to apimachinery schemas are left dangling; the caller adds those.
pub(crate) fn schemas(version: &str) -> Map<String, Value> {
    let mut derived = Vec::new();
    collect::<NodeNetworkState>(&mut derived);
    collect::<NodeNetworkConfigurationPolicy>(&mut derived);
    collect::<NodeNetworkConfigurationEnactment>(&mut derived);
    collect::<NodeNetworkConfigurationPolicyRenderRequest>(&mut derived);
    collect::<NodeNetworkConfigurationPolicyRender>(&mut derived);
    collect::<NodeNetworkConfigurationPolicyDryRun>(&mut derived);

    // utoipa names our types by their Rust names; Kubernetes prefixes the
    // reversed group and the version.
    let renames: Vec<(String, String)> = derived
        .iter()
        .map(|(name, _)| {
            (
                format!("{V3_REF_PREFIX}{name}"),
                format!("{V3_REF_PREFIX}{}", schema_name(version, name)),
            )
        })
        .collect();
    let mut schemas = Map::new();
    for (name, mut schema) in derived {
        rename_references(&mut schema, &renames);
        schemas.insert(schema_name(version, &name), schema);
    }

    for kind in ResourceKind::ALL {
        if let Some(Value::Object(schema)) = schemas.get_mut(&schema_name(version, kind.kind())) {
            schema.insert(GVK_EXTENSION.to_owned(), gvk_list(version, kind.kind()));
        }
        schemas.insert(
            schema_name(version, kind.list_kind()),
            list_schema(version, kind),
        );
    }
    for kind in [RENDER, DRY_RUN] {
        if let Some(Value::Object(schema)) = schemas.get_mut(&schema_name(version, kind)) {
            schema.insert(GVK_EXTENSION.to_owned(), gvk_list(version, kind));
        }
    }
    schemas
}

/// Adds `T`'s schema and every schema it refers to, serialised.
fn collect<T: ToSchema>(into: &mut Vec<(String, Value)>) {
    let mut found = vec![(T::name().into_owned(), T::schema())];
    T::schemas(&mut found);
    for (name, schema) in found {
        // Marker types of apimachinery schemas: written by hand in `meta`.
        if name.starts_with("io.k8s.") || into.iter().any(|(known, _)| *known == name) {
            continue;
        }
        let value = serde_json::to_value(&schema).unwrap_or(Value::Null);
        into.push((name, value));
    }
}

/// Points every `$ref` equal to a `from` at its `to`.
fn rename_references(value: &mut Value, renames: &[(String, String)]) {
    match value {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                match child {
                    Value::String(target) if key == "$ref" => {
                        if let Some((_, to)) = renames.iter().find(|(from, _)| from == target) {
                            *target = to.clone();
                        }
                    }
                    _ => rename_references(child, renames),
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                rename_references(item, renames);
            }
        }
        _ => {}
    }
}

/// The `<Kind>List` schema, built like kube-apiserver builds a custom
/// resource's.
fn list_schema(version: &str, kind: ResourceKind) -> Value {
    json!({
        "type": "object",
        "description": format!("{} is a list of {}.", kind.list_kind(), kind.kind()),
        "required": ["items"],
        "properties": {
            "apiVersion": {
                "type": "string",
                "description": format!("`{GROUP}/{version}`."),
            },
            "kind": {
                "type": "string",
                "description": format!("`{}`.", kind.list_kind()),
            },
            "metadata": {
                "allOf": [{ "$ref": format!("{V3_REF_PREFIX}{}", meta::LIST_META) }],
                "description": "Standard list metadata: the resourceVersion the list was read at and the continue token of the next page.",
            },
            "items": {
                "type": "array",
                "items": reference(version, kind.kind()),
                "description": format!("The {}.", kind.plural()),
            },
        },
        GVK_EXTENSION: gvk_list(version, kind.list_kind()),
    })
}

/// Schema name of the `render` request body.
pub(crate) const RENDER_REQUEST: &str = "NodeNetworkConfigurationPolicyRenderRequest";
/// Schema name (and kind) of the `render` answer.
pub(crate) const RENDER: &str = crate::subresources::RENDER_KIND;
/// Schema name (and kind) of the `dry-run` answer.
pub(crate) const DRY_RUN: &str = crate::subresources::DRY_RUN_KIND;
