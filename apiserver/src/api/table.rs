//! Server-side printing: the `meta.k8s.io/v1` `Table` that `kubectl get`
//! asks for with `Accept: application/json;as=Table;v=v1;g=meta.k8s.io`.
//!
//! This module owns the printer columns of each kind and how each cell is
//! computed from an object's stored JSON, formatted as kube-apiserver
//! formats custom resources: a `Name` column first, JSONPath-like cells
//! (`null` when the field is missing, which kubectl prints blank), and ages
//! as Kubernetes' `HumanDuration` (`5s`, `3m20s`, `2d3h`). It does no IO,
//! no content negotiation and no conversion: handlers choose the Table,
//! parse [`TableOptions`], hand in objects that already carry the
//! `apiVersion` the client asked for, and pass the current time.
//!
//! The columns, after `Name`:
//!
//! | kind | columns | with `-o wide` (priority 1) |
//! | --- | --- | --- |
//! | NodeNetworkState | Interfaces, Last Update, Age | NetworkManager, Nmstate |
//! | NodeNetworkConfigurationPolicy | Status, Reason, Nodes, Age | Max Unavailable, Node Selector |
//! | NodeNetworkConfigurationEnactment | Status, Status Age, Reason | Node, Policy |
//!
//! Status, Reason and Status Age are upstream kubernetes-nmstate's printer
//! columns (`.status.conditions[?(@.status=="True")].type`, `.reason`,
//! `.lastTransitionTime`): the first condition whose status is `True` that
//! has the field. Nodes (`available/matching`) is ours, from the policy's
//! node counts. The wide columns answer the next question a reader has:
//! where a policy applies and how fast it rolls out, which node and policy
//! an enactment belongs to (its name is hashed when long), and which
//! NetworkManager and nmstate versions reported a state.

use jiff::{SignedDuration, Timestamp};
use nmstate_openapi::{
    ENACTMENT_NODE_LABEL, ENACTMENT_POLICY_LABEL, ResourceKind, policy::DEFAULT_MAX_UNAVAILABLE,
    validation::BadValue,
};
use serde::Serialize;
use serde_json::{Map, Value, json, value::RawValue};

use crate::cache::{CachedObject, Texts, interface_count, metadata_of, whole};

/// `apiVersion` of tables and of the `PartialObjectMetadata` in their rows.
pub const TABLE_API_VERSION: &str = "meta.k8s.io/v1";

/// Results of this module.
pub type Result<T, E = TableError> = std::result::Result<T, E>;

/// Why table options were rejected (a 400 BadRequest, message as
/// kube-apiserver words it).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TableError {
    /// `includeObject` is none of `None`, `Metadata` and `Object`.
    #[error("unrecognized includeObject value: {}", BadValue::String(.0.clone()))]
    UnrecognizedIncludeObject(String),
}

/// What each row carries in `object` (the `includeObject` parameter).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IncludeObject {
    /// Nothing: `"object": null`.
    None,
    /// The object's metadata as a `PartialObjectMetadata` (the default).
    #[default]
    Metadata,
    /// The whole object.
    Object,
}

impl IncludeObject {
    /// The policy named by `includeObject`; empty means the default.
    pub fn parse(value: &str) -> Result<Self> {
        match value {
            "None" => Ok(Self::None),
            "" | "Metadata" => Ok(Self::Metadata),
            "Object" => Ok(Self::Object),
            other => Err(TableError::UnrecognizedIncludeObject(other.to_owned())),
        }
    }
}

/// The `meta.k8s.io/v1` `TableOptions` of a request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableOptions {
    /// What rows carry in `object`.
    pub include_object: IncludeObject,
    /// Leave out `columnDefinitions` (`null`); watches send them only with
    /// the first event.
    pub no_headers: bool,
}

impl TableOptions {
    /// The options from the `includeObject` and `noHeaders` query
    /// parameters. As in Kubernetes, `noHeaders` is true unless absent, `0`
    /// or `false` (in any case).
    pub fn from_query(include_object: Option<&str>, no_headers: Option<&str>) -> Result<Self> {
        Ok(Self {
            include_object: IncludeObject::parse(include_object.unwrap_or_default())?,
            no_headers: no_headers
                .is_some_and(|value| value != "0" && !value.eq_ignore_ascii_case("false")),
        })
    }
}

/// A column of a kind's table.
#[derive(Clone, Copy, Debug)]
pub struct Column {
    /// The header (kubectl prints it upper-cased).
    pub name: &'static str,
    /// The OpenAPI type of the cells: `string`, `integer` or `date` (ages,
    /// sent as `HumanDuration` text as for custom resources).
    pub type_: &'static str,
    /// `name` for the object name column, else empty.
    pub format: &'static str,
    /// What the column shows.
    pub description: &'static str,
    /// 0 for default columns, 1 for those `-o wide` adds.
    pub priority: i32,
    /// The cell of an object, given the current time.
    cell: fn(&Printed<'_>, Timestamp) -> Value,
}

/// What a row is printed from: an object and the subtrees the watch
/// cache keeps apart from it as JSON text (then `null` in the object).
/// Dereferences to the object.
#[derive(Clone, Copy, Debug)]
pub struct Printed<'a> {
    object: &'a Value,
    texts: Texts<'a>,
    /// The cached object it comes from, whose memos the cells use.
    cached: Option<&'a CachedObject>,
}

impl<'a> Printed<'a> {
    /// `object`, with the subtrees in `texts` kept apart.
    pub fn new(object: &'a Value, texts: Texts<'a>) -> Self {
        Printed {
            object,
            texts,
            cached: None,
        }
    }

    /// A cached object, read in place.
    pub fn cached(object: &'a CachedObject) -> Self {
        Printed {
            object: object.summary(),
            texts: object.texts(),
            cached: Some(object),
        }
    }

    /// The length of `status.currentState.interfaces`, if it is a list.
    fn interface_count(&self) -> Option<usize> {
        match self.cached {
            Some(cached) => cached.interface_count(),
            None => interface_count(self.object, self.texts),
        }
    }

    /// The whole object.
    fn to_value(self) -> Value {
        whole(self.object, self.texts)
    }

    /// The whole `metadata`.
    fn metadata(self) -> Value {
        metadata_of(self.object, self.texts)
    }
}

impl<'a> From<&'a Value> for Printed<'a> {
    fn from(object: &'a Value) -> Self {
        Printed::new(object, Texts::default())
    }
}

impl std::ops::Deref for Printed<'_> {
    type Target = Value;

    fn deref(&self) -> &Value {
        self.object
    }
}

/// ObjectMeta's `name` documentation, as kube-apiserver describes the
/// `Name` column.
const NAME_DESCRIPTION: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
/// ObjectMeta's `creationTimestamp` documentation, as kube-apiserver
/// describes the `Age` column.
const AGE_DESCRIPTION: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

const NAME: Column = Column {
    name: "Name",
    type_: "string",
    format: "name",
    description: NAME_DESCRIPTION,
    priority: 0,
    cell: |object, _| Value::from(pointer_str(object, "/metadata/name").unwrap_or_default()),
};

const AGE: Column = Column {
    name: "Age",
    type_: "date",
    format: "",
    description: AGE_DESCRIPTION,
    priority: 0,
    cell: |object, now| {
        let age = match object.pointer("/metadata/creationTimestamp") {
            Some(Value::String(timestamp)) => age(timestamp, now),
            _ => UNKNOWN.to_owned(),
        };
        Value::from(age)
    },
};

const STATE_COLUMNS: &[Column] = &[
    NAME,
    Column {
        name: "Interfaces",
        type_: "integer",
        format: "",
        description: "Number of interfaces in the node's current network state.",
        priority: 0,
        cell: |state, _| state.interface_count().map_or(Value::Null, Value::from),
    },
    Column {
        name: "Last Update",
        type_: "date",
        format: "",
        description: "Time since the node's network state was last reported successfully.",
        priority: 0,
        cell: |state, now| date_cell(state.pointer("/status/lastSuccessfulUpdateTime"), now),
    },
    AGE,
    Column {
        name: "NetworkManager",
        type_: "string",
        format: "",
        description: "Version of NetworkManager on the node.",
        priority: 1,
        cell: |state, _| string_cell(state.pointer("/status/hostNetworkManagerVersion")),
    },
    Column {
        name: "Nmstate",
        type_: "string",
        format: "",
        description: "Version of nmstate in the agent that reported the state.",
        priority: 1,
        cell: |state, _| string_cell(state.pointer("/status/handlerNmstateVersion")),
    },
];

const POLICY_COLUMNS: &[Column] = &[
    NAME,
    Column {
        name: "Status",
        type_: "string",
        format: "",
        description: "Type of the first condition whose status is True: Available, Degraded, Progressing or Ignored.",
        priority: 0,
        cell: |policy, _| string_cell(true_condition_field(policy, "type")),
    },
    Column {
        name: "Reason",
        type_: "string",
        format: "",
        description: "Reason of the first condition whose status is True.",
        priority: 0,
        cell: |policy, _| string_cell(true_condition_field(policy, "reason")),
    },
    Column {
        name: "Nodes",
        type_: "string",
        format: "",
        description: "Nodes configured successfully, out of the nodes the policy selects (available/matching).",
        priority: 0,
        cell: |policy, _| {
            let count = |field: &str| policy.pointer(&format!("/status/{field}"))?.as_i64();
            count("matchingNodes").map_or(Value::Null, |matching| {
                let available = count("availableNodes").unwrap_or(0);
                Value::from(format!("{available}/{matching}"))
            })
        },
    },
    AGE,
    Column {
        name: "Max Unavailable",
        type_: "string",
        format: "",
        description: "How many selected nodes may be configured at the same time: a count or a percentage (default 50%).",
        priority: 1,
        cell: |policy, _| match policy.pointer("/spec/maxUnavailable") {
            None | Some(Value::Null) => Value::from(DEFAULT_MAX_UNAVAILABLE),
            value => string_cell(value),
        },
    },
    Column {
        name: "Node Selector",
        type_: "string",
        format: "",
        description: "Labels a node must have for the policy to apply to it; <none> selects every node.",
        priority: 1,
        cell: |policy, _| {
            let selector = policy
                .pointer("/spec/nodeSelector")
                .and_then(Value::as_object);
            Value::from(format_labels(selector))
        },
    },
];

const ENACTMENT_COLUMNS: &[Column] = &[
    NAME,
    Column {
        name: "Status",
        type_: "string",
        format: "",
        description: "Type of the first condition whose status is True: Available, Failing, Progressing, Pending or Aborted.",
        priority: 0,
        cell: |enactment, _| string_cell(true_condition_field(enactment, "type")),
    },
    Column {
        name: "Status Age",
        type_: "date",
        format: "",
        description: "Time since the Status condition last changed.",
        priority: 0,
        cell: |enactment, now| {
            date_cell(true_condition_field(enactment, "lastTransitionTime"), now)
        },
    },
    Column {
        name: "Reason",
        type_: "string",
        format: "",
        description: "Reason of the first condition whose status is True.",
        priority: 0,
        cell: |enactment, _| string_cell(true_condition_field(enactment, "reason")),
    },
    Column {
        name: "Node",
        type_: "string",
        format: "",
        description: "The node the enactment applies its policy to (label nmstate.io/node).",
        priority: 1,
        cell: |enactment, _| string_cell(label(enactment, ENACTMENT_NODE_LABEL)),
    },
    Column {
        name: "Policy",
        type_: "string",
        format: "",
        description: "The policy the enactment applies (label nmstate.io/policy).",
        priority: 1,
        cell: |enactment, _| string_cell(label(enactment, ENACTMENT_POLICY_LABEL)),
    },
];

/// The columns of `kind`, `Name` first.
pub fn columns(kind: ResourceKind) -> &'static [Column] {
    match kind {
        ResourceKind::NodeNetworkState => STATE_COLUMNS,
        ResourceKind::NodeNetworkConfigurationPolicy => POLICY_COLUMNS,
        ResourceKind::NodeNetworkConfigurationEnactment => ENACTMENT_COLUMNS,
    }
}

/// The `columnDefinitions` of `kind`'s tables.
pub fn column_definitions(kind: ResourceKind) -> Value {
    columns(kind)
        .iter()
        .map(|column| {
            json!({
                "name": column.name,
                "type": column.type_,
                "format": column.format,
                "description": column.description,
                "priority": column.priority,
            })
        })
        .collect()
}

/// The cells of `object`'s row, one per column (including the wide ones:
/// kubectl hides those unless asked).
pub fn cells(kind: ResourceKind, object: &Printed<'_>, now: Timestamp) -> Vec<Value> {
    columns(kind)
        .iter()
        .map(|column| (column.cell)(object, now))
        .collect()
}

/// The table of a list response: one row per object, in order.
/// `list_metadata` is the list's `metadata` (`resourceVersion`, `continue`,
/// `remainingItemCount`); `null` stands for `{}`.
pub fn table(
    kind: ResourceKind,
    objects: &[Printed<'_>],
    options: TableOptions,
    list_metadata: Value,
    now: Timestamp,
) -> Value {
    let metadata = match list_metadata {
        Value::Null => Value::Object(Map::new()),
        metadata => metadata,
    };
    let column_definitions = if options.no_headers {
        // Kubernetes sends its nil slice as `null`.
        Value::Null
    } else {
        column_definitions(kind)
    };
    let rows: Vec<Value> = objects
        .iter()
        .map(|object| row(kind, object, options.include_object, now))
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": TABLE_API_VERSION,
        "metadata": metadata,
        "columnDefinitions": column_definitions,
        "rows": rows,
    })
}

/// [`table`] as JSON bytes, the same document: each row of a cached
/// object embeds the metadata JSON the object keeps (made once per object
/// version, managed fields copied as text), where [`table`] builds a tree
/// for each row. For lists of thousands of objects.
pub fn table_json(
    kind: ResourceKind,
    objects: &[Printed<'_>],
    options: TableOptions,
    list_metadata: Value,
    now: Timestamp,
) -> serde_json::Result<Vec<u8>> {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct TableJson<'a> {
        kind: &'static str,
        api_version: &'static str,
        metadata: Value,
        column_definitions: Value,
        rows: Vec<RowJson<'a>>,
    }
    #[derive(Serialize)]
    struct RowJson<'a> {
        cells: Vec<Value>,
        object: RowObject<'a>,
    }
    #[derive(Serialize)]
    #[serde(untagged)]
    enum RowObject<'a> {
        Tree(Value),
        Metadata(PartialMetadata<'a>),
    }
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct PartialMetadata<'a> {
        kind: &'static str,
        api_version: &'static str,
        metadata: &'a RawValue,
    }
    let rows = objects
        .iter()
        .map(|object| RowJson {
            cells: cells(kind, object, now),
            object: match (options.include_object, object.cached) {
                (IncludeObject::Metadata, Some(cached)) => RowObject::Metadata(PartialMetadata {
                    kind: "PartialObjectMetadata",
                    api_version: TABLE_API_VERSION,
                    metadata: cached.metadata_json(),
                }),
                (include_object, _) => RowObject::Tree(row_object(object, include_object)),
            },
        })
        .collect();
    serde_json::to_vec(&TableJson {
        kind: "Table",
        api_version: TABLE_API_VERSION,
        metadata: match list_metadata {
            Value::Null => Value::Object(Map::new()),
            metadata => metadata,
        },
        column_definitions: if options.no_headers {
            Value::Null
        } else {
            column_definitions(kind)
        },
        rows,
    })
}

/// The table of a single-object response (get, watch events): one row,
/// with the object's `resourceVersion` as the table's.
pub fn object_table(
    kind: ResourceKind,
    object: &Value,
    options: TableOptions,
    now: Timestamp,
) -> Value {
    let mut metadata = Map::new();
    if let Some(resource_version) = object.pointer("/metadata/resourceVersion") {
        metadata.insert("resourceVersion".to_owned(), resource_version.clone());
    }
    table(
        kind,
        &[Printed::from(object)],
        options,
        Value::Object(metadata),
        now,
    )
}

fn row(
    kind: ResourceKind,
    object: &Printed<'_>,
    include_object: IncludeObject,
    now: Timestamp,
) -> Value {
    json!({
        "cells": cells(kind, object, now),
        "object": row_object(object, include_object),
    })
}

/// What a row carries in `object`.
fn row_object(object: &Printed<'_>, include_object: IncludeObject) -> Value {
    match include_object {
        IncludeObject::None => Value::Null,
        IncludeObject::Metadata => json!({
            "kind": "PartialObjectMetadata",
            "apiVersion": TABLE_API_VERSION,
            "metadata": object.metadata(),
        }),
        IncludeObject::Object => object.to_value(),
    }
}

/// What Kubernetes prints for a missing or zero timestamp.
const UNKNOWN: &str = "<unknown>";
/// What Kubernetes prints for an unreadable or future timestamp.
const INVALID: &str = "<invalid>";

/// The age of an RFC 3339 `timestamp` at `now`, as Kubernetes' tables
/// print it.
fn age(timestamp: &str, now: Timestamp) -> String {
    if timestamp.is_empty() || timestamp == "null" {
        return UNKNOWN.to_owned();
    }
    let Ok(timestamp) = timestamp.parse::<Timestamp>() else {
        return INVALID.to_owned();
    };
    // Go's zero time, 0001-01-01T00:00:00Z, means "not set".
    if timestamp.as_second() == -62_135_596_800 && timestamp.subsec_nanosecond() == 0 {
        return UNKNOWN.to_owned();
    }
    human_duration(now.duration_since(timestamp))
}

/// A `date` cell: the age of a timestamp string; `null` when missing.
fn date_cell(value: Option<&Value>, now: Timestamp) -> Value {
    match value {
        Some(Value::String(timestamp)) => Value::from(age(timestamp, now)),
        _ => Value::Null,
    }
}

/// A `string` cell: strings as they are, other scalars as their JSON text;
/// `null` when missing.
fn string_cell(value: Option<&Value>) -> Value {
    match value {
        None | Some(Value::Null) => Value::Null,
        Some(Value::String(text)) => Value::from(text.as_str()),
        Some(other) => Value::from(other.to_string()),
    }
}

fn pointer_str<'a>(object: &'a Value, pointer: &str) -> Option<&'a str> {
    object.pointer(pointer)?.as_str()
}

fn label<'a>(object: &'a Value, key: &str) -> Option<&'a Value> {
    object.pointer("/metadata/labels")?.get(key)
}

/// `field` of the first condition whose status is `True` and that has it:
/// what the JSONPath `.status.conditions[?(@.status=="True")].<field>`
/// prints first.
fn true_condition_field<'a>(object: &'a Value, field: &str) -> Option<&'a Value> {
    object
        .pointer("/status/conditions")?
        .as_array()?
        .iter()
        .filter(|condition| condition.get("status").and_then(Value::as_str) == Some("True"))
        .find_map(|condition| condition.get(field).filter(|value| !value.is_null()))
}

/// Kubernetes' `labels.FormatLabels`: `k=v` sorted by key and joined with
/// commas, `<none>` when empty.
fn format_labels(labels: Option<&Map<String, Value>>) -> String {
    let mut pairs: Vec<String> = labels
        .into_iter()
        .flatten()
        .map(|(key, value)| match value {
            Value::String(text) => format!("{key}={text}"),
            other => format!("{key}={other}"),
        })
        .collect();
    if pairs.is_empty() {
        return "<none>".to_owned();
    }
    // Sorting "k=v" sorts by key: keys cannot contain `=`.
    pairs.sort_unstable();
    pairs.join(",")
}

/// Kubernetes' `duration.HumanDuration`: a short, rounded-down age such as
/// `45s`, `3m20s`, `15m`, `5h30m`, `20h`, `3d4h`, `30d`, `2y45d`, `10y`.
/// Up to one second in the future is `0s` (clock skew); further is
/// `<invalid>`.
pub fn human_duration(duration: SignedDuration) -> String {
    let seconds = duration.as_secs();
    if seconds < -1 {
        return INVALID.to_owned();
    }
    if seconds < 0 {
        return "0s".to_owned();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let seconds = seconds % 60;
        if seconds == 0 {
            return format!("{minutes}m");
        }
        return format!("{minutes}m{seconds}s");
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        let minutes = minutes % 60;
        if minutes == 0 {
            return format!("{hours}h");
        }
        return format!("{hours}h{minutes}m");
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    let days = hours / 24;
    if hours < 24 * 8 {
        let hours = hours % 24;
        if hours == 0 {
            return format!("{days}d");
        }
        return format!("{days}d{hours}h");
    }
    if hours < 24 * 365 * 2 {
        return format!("{days}d");
    }
    let years = days / 365;
    if hours < 24 * 365 * 8 {
        let days = days % 365;
        if days == 0 {
            return format!("{years}y");
        }
        return format!("{years}y{days}d");
    }
    format!("{years}y")
}

#[cfg(test)]
mod tests;
