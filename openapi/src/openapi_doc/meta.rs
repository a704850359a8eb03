//! The apimachinery schemas (`io.k8s.apimachinery.pkg.…`) that every
//! Kubernetes document carries: object and list metadata, `Status`,
//! `DeleteOptions`, `Patch`, `WatchEvent` and their parts.
//!
//! `k8s-openapi` has no utoipa support, so they are written here by hand as
//! JSON, with descriptions in our own words. The derived schemas of our kinds
//! reach them through the marker types [`ObjectMetaSchema`] and
//! [`TimeSchema`] (`#[schema(value_type = …)]`), which only name them.

use std::borrow::Cow;

use serde_json::{Map, Value, json};
use utoipa::openapi::{
    RefOr,
    schema::{Object, Schema, Type},
};

use super::GVK_EXTENSION;

/// Prefix of every apimachinery `meta/v1` schema name.
const META_V1: &str = "io.k8s.apimachinery.pkg.apis.meta.v1";

/// Schema name of `metav1.ObjectMeta`.
pub(crate) const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";
/// Schema name of `metav1.ListMeta`.
pub(crate) const LIST_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta";
/// Schema name of `metav1.Time`.
pub(crate) const TIME: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Time";
/// Schema name of `metav1.Status`.
pub(crate) const STATUS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Status";
/// Schema name of `metav1.DeleteOptions`.
pub(crate) const DELETE_OPTIONS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions";
/// Schema name of `metav1.Patch`.
pub(crate) const PATCH: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch";
/// Schema name of `metav1.WatchEvent`.
pub(crate) const WATCH_EVENT: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.WatchEvent";
/// Schema name of `intstr.IntOrString`.
pub(crate) const INT_OR_STRING: &str = "io.k8s.apimachinery.pkg.util.intstr.IntOrString";

/// Names `metav1.ObjectMeta` for the derived schemas; the schema itself is
/// [`schemas`]' `ObjectMeta`.
#[derive(Debug)]
pub(crate) struct ObjectMetaSchema;

impl utoipa::PartialSchema for ObjectMetaSchema {
    fn schema() -> RefOr<Schema> {
        Object::with_type(Type::Object).into()
    }
}

impl utoipa::ToSchema for ObjectMetaSchema {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed(OBJECT_META)
    }
}

/// Names `metav1.Time` for the derived schemas; the schema itself is
/// [`schemas`]' `Time`.
#[derive(Debug)]
pub(crate) struct TimeSchema;

impl utoipa::PartialSchema for TimeSchema {
    fn schema() -> RefOr<Schema> {
        Object::with_type(Type::String).into()
    }
}

impl utoipa::ToSchema for TimeSchema {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed(TIME)
    }
}

/// `{"$ref": …}` to the schema named `name`, for the JSON below.
fn reference(name: &str) -> Value {
    json!({ "$ref": format!("{}{name}", super::V3_REF_PREFIX) })
}

/// A property that refers to `name` and says what it means here.
fn reference_with(name: &str, description: &str) -> Value {
    json!({ "allOf": [reference(name)], "description": description })
}

/// A `{group: "", version: "v1", kind}` list, as the core group's shared
/// kinds carry.
fn core_gvk(kind: &str) -> Value {
    json!([{ "group": "", "version": "v1", "kind": kind }])
}

/// Every apimachinery schema, by name.
pub(crate) fn schemas() -> Map<String, Value> {
    let time = |description: &str| reference_with(TIME, description);
    let string = |description: &str| json!({ "type": "string", "description": description });
    let string_map = |description: &str| {
        json!({
            "type": "object",
            "additionalProperties": { "type": "string" },
            "description": description,
        })
    };
    let api_version = string(
        "The versioned schema of this object, `<group>/<version>` (or `v1` for the core group).",
    );
    let kind = string("The kind of this object, in CamelCase.");

    let entries = [
        (
            "ObjectMeta",
            json!({
                "type": "object",
                "description": "Metadata that every stored object has: identity, version, labels, annotations, owners and deletion state.",
                "properties": {
                    "name": string("The object's name, unique among objects of its kind (and namespace). Required on create unless `generateName` is set; cannot be changed afterwards."),
                    "generateName": string("A prefix from which the server makes a unique name, by appending random characters, when `name` is empty on create."),
                    "namespace": string("The namespace of namespaced objects. Always empty for the nmstate.io kinds, which are cluster-scoped."),
                    "uid": string("A unique identifier the server assigns on create; it tells apart objects that reused a name. Read-only."),
                    "resourceVersion": string("An opaque version the server changes on every write. Send it back on update to make the write conditional (a stale value gives 409 Conflict), or use it to start a watch. Read-only."),
                    "generation": {
                        "type": "integer",
                        "format": "int64",
                        "description": "A number the server increments whenever the desired state (spec) changes. Read-only.",
                    },
                    "creationTimestamp": time("When the server created the object. Read-only."),
                    "deletionTimestamp": time("When the object will be gone: set when deletion was requested while finalizers remain; the object is removed once they are all cleared. Read-only."),
                    "deletionGracePeriodSeconds": {
                        "type": "integer",
                        "format": "int64",
                        "description": "The grace period, in seconds, granted when deletion was requested. Read-only.",
                    },
                    "labels": string_map("Key/value pairs that selectors match (`kubectl get -l`). Policies select nodes by the labels the agent copies onto each NodeNetworkState."),
                    "annotations": string_map("Key/value pairs for tools and people; not used for selection."),
                    "ownerReferences": {
                        "type": "array",
                        "items": reference("io.k8s.apimachinery.pkg.apis.meta.v1.OwnerReference"),
                        "description": "Objects this one depends on; when all owners are gone the garbage collector deletes it.",
                        "x-kubernetes-list-map-keys": ["uid"],
                        "x-kubernetes-list-type": "map",
                        "x-kubernetes-patch-merge-key": "uid",
                        "x-kubernetes-patch-strategy": "merge",
                    },
                    "finalizers": {
                        "type": "array",
                        "items": { "type": "string" },
                        "description": "Names of controllers that must finish cleaning up before the object is removed. Deletion only sets `deletionTimestamp` while this list is not empty.",
                        "x-kubernetes-list-type": "set",
                        "x-kubernetes-patch-strategy": "merge",
                    },
                    "managedFields": {
                        "type": "array",
                        "items": reference("io.k8s.apimachinery.pkg.apis.meta.v1.ManagedFieldsEntry"),
                        "description": "Which field manager set which fields, as server-side apply records it. Internal bookkeeping; clients normally leave it alone.",
                        "x-kubernetes-list-type": "atomic",
                    },
                },
            }),
        ),
        (
            "ListMeta",
            json!({
                "type": "object",
                "description": "Metadata of a list response.",
                "properties": {
                    "resourceVersion": string("The version of the store the list was read at; start a watch from it to see every later change."),
                    "continue": string("Set when the list was cut short by `limit`: pass it as the `continue` parameter to get the next page. Empty on the last page."),
                    "remainingItemCount": {
                        "type": "integer",
                        "format": "int64",
                        "description": "How many more items the following pages hold, when the server knows.",
                    },
                },
            }),
        ),
        (
            "OwnerReference",
            json!({
                "type": "object",
                "description": "Points to an object that owns this one.",
                "required": ["apiVersion", "kind", "name", "uid"],
                "properties": {
                    "apiVersion": string("The owner's apiVersion."),
                    "kind": string("The owner's kind."),
                    "name": string("The owner's name."),
                    "uid": string("The owner's uid."),
                    "controller": {
                        "type": "boolean",
                        "description": "Whether the owner is the managing controller; at most one owner may be.",
                    },
                    "blockOwnerDeletion": {
                        "type": "boolean",
                        "description": "With foreground deletion, whether the owner waits until this object is deleted.",
                    },
                },
                "x-kubernetes-map-type": "atomic",
            }),
        ),
        (
            "ManagedFieldsEntry",
            json!({
                "type": "object",
                "description": "The set of fields one manager owns, recorded by server-side apply.",
                "properties": {
                    "manager": string("The name of the field manager (the `fieldManager` parameter or the client's name)."),
                    "operation": string("`Apply` or `Update`: how the manager wrote the fields."),
                    "apiVersion": string("The apiVersion the fields are expressed in."),
                    "time": time("When the manager last changed these fields."),
                    "fieldsType": string("The format of `fieldsV1`; always `FieldsV1`."),
                    "fieldsV1": reference_with(
                        "io.k8s.apimachinery.pkg.apis.meta.v1.FieldsV1",
                        "The owned fields.",
                    ),
                    "subresource": string("The subresource the fields were written through (`status`), or empty for the object itself."),
                },
            }),
        ),
        (
            "FieldsV1",
            json!({
                "type": "object",
                "description": "A set of field paths in server-side apply's trie format.",
            }),
        ),
        (
            "Time",
            json!({
                "type": "string",
                "format": "date-time",
                "description": "A UTC timestamp in RFC 3339 form with second precision, e.g. `2024-05-01T10:00:00Z`.",
            }),
        ),
        (
            "Status",
            json!({
                "type": "object",
                "description": "The outcome of a request that returns no object: every error, and some deletions.",
                "properties": {
                    "apiVersion": api_version.clone(),
                    "kind": kind.clone(),
                    "metadata": reference_with(LIST_META, "Standard list metadata; usually empty."),
                    "status": string("`Success` or `Failure`."),
                    "message": string("What happened, for humans."),
                    "reason": string("Why it failed, as a CamelCase word for machines (`NotFound`, `AlreadyExists`, `Conflict`, `Invalid`, …)."),
                    "details": reference_with(
                        "io.k8s.apimachinery.pkg.apis.meta.v1.StatusDetails",
                        "More about the failure, depending on `reason`.",
                    ),
                    "code": {
                        "type": "integer",
                        "format": "int32",
                        "description": "The HTTP status code of the response.",
                    },
                },
                GVK_EXTENSION: core_gvk("Status"),
            }),
        ),
        (
            "StatusDetails",
            json!({
                "type": "object",
                "description": "The object a failure is about, and the individual problems found.",
                "properties": {
                    "name": string("The name of the object concerned."),
                    "group": string("The API group of the object concerned."),
                    "kind": string("The kind (or resource) of the object concerned."),
                    "uid": string("The uid of the object concerned."),
                    "causes": {
                        "type": "array",
                        "items": reference("io.k8s.apimachinery.pkg.apis.meta.v1.StatusCause"),
                        "description": "One entry per problem, e.g. one per invalid field.",
                        "x-kubernetes-list-type": "atomic",
                    },
                    "retryAfterSeconds": {
                        "type": "integer",
                        "format": "int32",
                        "description": "How long a client should wait before retrying, when the failure is temporary.",
                    },
                },
            }),
        ),
        (
            "StatusCause",
            json!({
                "type": "object",
                "description": "One problem behind a failure.",
                "properties": {
                    "reason": string("The kind of problem, e.g. `FieldValueInvalid`, `FieldValueRequired`, `FieldValueDuplicate`."),
                    "message": string("The problem, for humans."),
                    "field": string("The path of the field at fault, e.g. `spec.maxUnavailable` or `spec.capture[default-gw]`."),
                },
            }),
        ),
        (
            "DeleteOptions",
            json!({
                "type": "object",
                "description": "Options of a delete request, sent as its body.",
                "properties": {
                    "apiVersion": api_version.clone(),
                    "kind": kind.clone(),
                    "gracePeriodSeconds": {
                        "type": "integer",
                        "format": "int64",
                        "description": "Seconds to wait before deleting; 0 deletes at once.",
                    },
                    "preconditions": reference_with(
                        "io.k8s.apimachinery.pkg.apis.meta.v1.Preconditions",
                        "Delete only if the object still has this uid and resourceVersion; otherwise answer 409 Conflict.",
                    ),
                    "propagationPolicy": string("What happens to dependents: `Orphan`, `Background` or `Foreground`."),
                    "orphanDependents": {
                        "type": "boolean",
                        "description": "Deprecated form of `propagationPolicy: Orphan`.",
                    },
                    "dryRun": {
                        "type": "array",
                        "items": { "type": "string" },
                        "description": "`[All]` checks the request without deleting anything.",
                        "x-kubernetes-list-type": "atomic",
                    },
                },
                GVK_EXTENSION: core_gvk("DeleteOptions"),
            }),
        ),
        (
            "Preconditions",
            json!({
                "type": "object",
                "description": "Conditions an object must meet for a delete to go ahead.",
                "properties": {
                    "uid": string("The uid the object must have."),
                    "resourceVersion": string("The resourceVersion the object must have."),
                },
            }),
        ),
        (
            "Patch",
            json!({
                "type": "object",
                "description": "A patch document, in the format the Content-Type names: JSON Patch (`application/json-patch+json`), JSON Merge Patch (`application/merge-patch+json`) or a server-side apply configuration (`application/apply-patch+yaml`).",
            }),
        ),
        (
            "WatchEvent",
            json!({
                "type": "object",
                "description": "One event of a watch stream.",
                "required": ["type", "object"],
                "properties": {
                    "type": string("`ADDED`, `MODIFIED`, `DELETED`, `BOOKMARK` or `ERROR`."),
                    "object": reference_with(
                        "io.k8s.apimachinery.pkg.runtime.RawExtension",
                        "The object after the change (before it, for `DELETED`); a Status for `ERROR`; only the resourceVersion for `BOOKMARK`.",
                    ),
                },
                GVK_EXTENSION: core_gvk("WatchEvent"),
            }),
        ),
    ];

    let mut schemas: Map<String, Value> = entries
        .into_iter()
        .map(|(name, schema)| (format!("{META_V1}.{name}"), schema))
        .collect();
    schemas.insert(
        "io.k8s.apimachinery.pkg.runtime.RawExtension".to_owned(),
        json!({
            "type": "object",
            "description": "An embedded object of any kind, as JSON.",
        }),
    );
    schemas.insert(
        INT_OR_STRING.to_owned(),
        json!({
            "description": "Either a 32-bit integer or a string, written as whichever it holds (`3` or `\"25%\"`).",
            "anyOf": [{ "type": "integer" }, { "type": "string" }],
            "x-kubernetes-int-or-string": true,
        }),
    );
    schemas
}
