//! The rules Kubernetes applies to an object on every write, as pure
//! functions over JSON values: type checks, decoding and validation through
//! the `nmstate-openapi` types, server-owned metadata (`uid`,
//! `creationTimestamp`, `generation`, `deletionTimestamp`), status only
//! through `/status`, and finalizers.
//!
//! Stored objects are the JSON of `nmstate.io/v1` without
//! `metadata.resourceVersion`: the store's revision is the resource version,
//! and it is set on the way out.

use nmstate_openapi::{
    FieldError, NodeNetworkConfigurationEnactment, NodeNetworkConfigurationPolicy,
    NodeNetworkState, Resource, ResourceKind, STORAGE_VERSION, api_version,
    validation::{
        decode, invalid_message, unknown_fields_between, validate_object_meta,
        validate_policy_status,
    },
};
use serde_json::{Map, Value};

use crate::{
    request::FieldValidation,
    rules::current_state::{self, SetAside, Side},
};

/// Why a write breaks the object rules. `api::error` gives each the
/// `Status` kube-apiserver answers with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The body or a parameter is malformed (400 BadRequest).
    #[error("{0}")]
    Malformed(String),
    /// The object fails validation; one error per bad field (422 Invalid).
    #[error("{}", invalid_message(*.kind, .name, .errors))]
    Invalid {
        /// Its kind.
        kind: ResourceKind,
        /// Its name.
        name: String,
        /// Every problem found.
        errors: Vec<FieldError>,
    },
    /// A precondition in the object does not hold (409 Conflict).
    #[error("Operation cannot be fulfilled on {} \"{name}\": {message}", .kind.group_resource())]
    Conflict {
        /// Its kind.
        kind: ResourceKind,
        /// Its name.
        name: String,
        /// What conflicted.
        message: String,
    },
}

/// Object rules result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An object after decoding: the canonical JSON and what the types dropped.
#[derive(Clone, Debug, PartialEq)]
pub struct Decoded {
    /// The object as the types serialise it (unknown fields pruned; nmstate
    /// documents kept verbatim).
    pub value: Value,
    /// Paths of fields the types do not know.
    pub unknown: Vec<String>,
    /// Every validation problem of the decoded object (see [`validate`]).
    pub errors: Vec<FieldError>,
}

/// Checks `apiVersion` and `kind` of a request body against the URL, filling
/// them in when absent.
pub fn check_type_meta(body: &mut Value, kind: ResourceKind, version: &str) -> Result<()> {
    let Some(object) = body.as_object_mut() else {
        return Err(Error::Malformed(format!(
            "the body of the request must be a {} object",
            kind.kind()
        )));
    };
    let expected = api_version(version).unwrap_or_default();
    match object.get("apiVersion") {
        None | Some(Value::Null) => {
            object.insert("apiVersion".into(), expected.into());
        }
        Some(Value::String(given)) if given == expected => {}
        Some(given) => {
            let given = given
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| given.to_string());
            return Err(Error::Malformed(format!(
                "the API version in the data ({given}) does not match the expected API version ({expected})"
            )));
        }
    }
    match object.get("kind") {
        None | Some(Value::Null) => {
            object.insert("kind".into(), kind.kind().into());
        }
        Some(Value::String(given)) if given == kind.kind() => {}
        Some(given) => {
            let given = given
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| given.to_string());
            return Err(Error::Malformed(format!(
                "the kind in the data ({given}) does not match the expected kind ({})",
                kind.kind()
            )));
        }
    }
    Ok(())
}

/// Decodes `value` as an object of `kind`: a wrong type is a 422 naming
/// the field; `duplicates` (the paths of keys the body held twice, see
/// `codec::parse_document`) and unknown fields are an error under
/// `Strict`, warnings under `Warn`, nothing under `Ignore`, as in
/// kube-apiserver.
pub fn decode_object(
    kind: ResourceKind,
    name: &str,
    mut value: Value,
    duplicates: &[String],
    field_validation: FieldValidation,
    status_only: bool,
) -> Result<(Decoded, Vec<String>)> {
    let decoded = match kind {
        ResourceKind::NodeNetworkState => {
            // The current state is tens of kilobytes of nmstate document,
            // kept verbatim (`State`) and only required to be an object:
            // typing it would copy it three times for nothing. It is set
            // aside while the rest is decoded and put back as it came.
            let current = set_aside(&mut value, &["status", "currentState"]);
            decode_as::<NodeNetworkState>(&value, |state| state.validate()).map(|mut decoded| {
                if let Some(current) = current {
                    put_back(&mut decoded.value, &["status", "currentState"], current);
                }
                decoded
            })
        }
        ResourceKind::NodeNetworkConfigurationPolicy => {
            decode_as::<NodeNetworkConfigurationPolicy>(&value, |policy| {
                validate_policy(policy, status_only)
            })
        }
        ResourceKind::NodeNetworkConfigurationEnactment => {
            decode_as::<NodeNetworkConfigurationEnactment>(&value, |enactment| enactment.validate())
        }
    }
    .map_err(|error| Error::Invalid {
        kind,
        name: name.to_string(),
        errors: vec![error],
    })?;
    let problems: Vec<String> = duplicates
        .iter()
        .map(|path| format!("duplicate field \"{path}\""))
        .chain(
            decoded
                .unknown
                .iter()
                .map(|path| format!("unknown field \"{path}\"")),
        )
        .collect();
    let warnings = match field_validation {
        FieldValidation::Strict if !problems.is_empty() => {
            let version = value
                .get("apiVersion")
                .and_then(Value::as_str)
                .and_then(nmstate_openapi::version_of)
                .unwrap_or(STORAGE_VERSION);
            return Err(Error::Malformed(format!(
                "{kind} in version \"{version}\" cannot be handled as a {kind}: strict decoding error: {}",
                problems.join(", ")
            )));
        }
        FieldValidation::Warn => problems,
        _ => Vec::new(),
    };
    Ok((decoded, warnings))
}

/// Decodes once into the typed object, validates that object, and
/// serialises it once: node states are tens of kilobytes, so every pass
/// over them counts.
fn decode_as<T: Resource>(
    value: &Value,
    validate: impl FnOnce(&T) -> Vec<FieldError>,
) -> Result<Decoded, FieldError> {
    let typed: T = decode(value)?;
    let errors = validate(&typed);
    let mut output = serde_json::to_value(&typed).map_err(|e| {
        FieldError::new(
            nmstate_openapi::FieldErrorKind::Internal,
            "",
            None,
            e.to_string(),
        )
    })?;
    let unknown = unknown_fields_between(value, &output);
    drop_empty_metadata(&mut output);
    Ok(Decoded {
        value: output,
        unknown,
        errors,
    })
}

/// Takes the object at `path` out of `value`, leaving an empty object in
/// its place; `None` (and nothing taken) when there is no object there.
fn set_aside(value: &mut Value, path: &[&str]) -> Option<Value> {
    let (last, parents) = path.split_last()?;
    let mut parent = value;
    for key in parents {
        parent = parent.get_mut(*key)?;
    }
    let slot = parent.get_mut(*last)?;
    slot.is_object()
        .then(|| std::mem::replace(slot, Value::Object(Map::new())))
}

/// Puts `taken` back at `path` (see [`set_aside`]) in the decoded object.
fn put_back(value: &mut Value, path: &[&str], taken: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut parent = Some(value);
    for key in parents {
        parent = parent.and_then(|value| value.get_mut(*key));
    }
    if let Some(parent) = parent.and_then(Value::as_object_mut) {
        parent.insert((*last).to_owned(), taken);
    }
}

/// Drops empty maps and lists from `metadata`, as Kubernetes' `omitempty`
/// does: removing the last label leaves no `labels: {}` behind.
fn drop_empty_metadata(object: &mut Value) {
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.retain(|_, field| match field {
            Value::Object(map) => !map.is_empty(),
            Value::Array(list) => !list.is_empty(),
            Value::Null => false,
            _ => true,
        });
    }
}

/// A policy's problems. On a status write only the metadata and the status
/// are checked, so a policy stored under older rules can still have its
/// status updated.
fn validate_policy(policy: &NodeNetworkConfigurationPolicy, status_only: bool) -> Vec<FieldError> {
    if !status_only {
        return policy.validate();
    }
    let mut errors = validate_object_meta(
        ResourceKind::NodeNetworkConfigurationPolicy,
        &policy.metadata,
    );
    if let Some(status) = &policy.status {
        errors.extend(validate_policy_status(status));
    }
    errors
}

/// The current time as Kubernetes writes timestamps (RFC 3339, seconds, UTC).
pub fn now() -> String {
    let now = jiff::Timestamp::now();
    now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// `metadata` of an object, created when missing (a non-object value is
/// replaced by an empty object first; callers have checked the type).
pub fn metadata_mut(object: &mut Value) -> &mut Map<String, Value> {
    if !object.is_object() {
        *object = Value::Object(Map::new());
    }
    let Value::Object(map) = object else {
        unreachable!("made an object above")
    };
    let metadata = map
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !metadata.is_object() {
        *metadata = Value::Object(Map::new());
    }
    let Value::Object(metadata) = metadata else {
        unreachable!("made an object above")
    };
    metadata
}

/// A string field of `metadata`.
pub fn meta_str<'a>(object: &'a Value, field: &str) -> Option<&'a str> {
    object.get("metadata")?.get(field)?.as_str()
}

/// The object's name (`""` when missing).
pub fn name_of(object: &Value) -> &str {
    meta_str(object, "name").unwrap_or_default()
}

/// The name a create will use: `metadata.name`, or `generateName` plus five
/// random characters (from Kubernetes' alphabet without vowels).
pub fn creation_name(body: &mut Value, kind: ResourceKind) -> Result<String> {
    if let Some(name) = meta_str(body, "name").filter(|n| !n.is_empty()) {
        return Ok(name.to_string());
    }
    let Some(prefix) = meta_str(body, "generateName").filter(|p| !p.is_empty()) else {
        return Err(Error::Invalid {
            kind,
            name: String::new(),
            errors: vec![FieldError::required(
                "metadata.name",
                "name or generateName is required",
            )],
        });
    };
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let random = uuid::Uuid::new_v4();
    let suffix: String = random.as_bytes()[..5]
        .iter()
        .map(|byte| ALPHABET[usize::from(*byte) % ALPHABET.len()] as char)
        .collect();
    // Kubernetes truncates the prefix so the result stays within 63 + 5.
    let prefix: String = prefix.chars().take(58).collect();
    let name = format!("{prefix}{suffix}");
    metadata_mut(body).insert("name".into(), name.clone().into());
    Ok(name)
}

/// Prepares a new object for storage: server-owned metadata set, status
/// dropped (it is written through `/status` only).
pub fn prepare_create(kind: ResourceKind, mut object: Value, now: &str) -> Result<Value> {
    let name = name_of(&object).to_string();
    if meta_str(&object, "resourceVersion").is_some_and(|rv| !rv.is_empty()) {
        return Err(Error::Malformed(
            "resourceVersion should not be set on objects to be created".into(),
        ));
    }
    set_type_meta(&mut object, kind);
    if let Some(map) = object.as_object_mut() {
        map.remove("status");
    }
    let metadata = metadata_mut(&mut object);
    metadata.insert("uid".into(), uuid::Uuid::new_v4().to_string().into());
    metadata.insert("creationTimestamp".into(), now.into());
    metadata.insert("generation".into(), 1.into());
    for field in [
        "resourceVersion",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "selfLink",
        "namespace",
    ] {
        metadata.remove(field);
    }
    let _ = name;
    Ok(object)
}

/// Sets `apiVersion` to the stored version and `kind`.
pub fn set_type_meta(object: &mut Value, kind: ResourceKind) {
    if let Some(map) = object.as_object_mut() {
        map.insert(
            "apiVersion".into(),
            api_version(STORAGE_VERSION).unwrap_or_default().into(),
        );
        map.insert("kind".into(), kind.kind().into());
    }
}

/// Which part of an object an update writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpdateScope {
    /// The main resource: everything but status.
    Main,
    /// `/status`: only status.
    Status,
}

/// Merges an update into the stored object: the main resource keeps the
/// old status; `/status` keeps everything but the status; server-owned
/// metadata always comes from the old object; `generation` moves when the
/// spec changes. Fails on a name or uid mismatch and on new finalizers of an
/// object being deleted.
pub fn prepare_update(
    kind: ResourceKind,
    old: &Value,
    mut new: Value,
    scope: UpdateScope,
) -> Result<Value> {
    let name = name_of(old).to_string();
    let new_name = name_of(&new);
    if !new_name.is_empty() && new_name != name {
        return Err(Error::Malformed(format!(
            "the name of the object ({new_name}) does not match the name on the URL ({name})"
        )));
    }
    if let (Some(old_uid), Some(new_uid)) = (meta_str(old, "uid"), meta_str(&new, "uid"))
        && !new_uid.is_empty()
        && old_uid != new_uid
    {
        return Err(Error::Conflict {
            kind,
            name,
            message: format!(
                "Precondition failed: UID in precondition: {new_uid}, UID in object meta: {old_uid}"
            ),
        });
    }
    let mut merged = match scope {
        UpdateScope::Main => {
            let mut merged = new.clone();
            if let Some(map) = merged.as_object_mut() {
                map.remove("status");
                if let Some(status) = old.get("status") {
                    map.insert("status".into(), status.clone());
                }
            }
            merged
        }
        UpdateScope::Status => {
            let mut merged = old.clone();
            if let Some(map) = merged.as_object_mut() {
                map.remove("status");
                if let Some(status) = new.as_object_mut().and_then(|n| n.remove("status")) {
                    map.insert("status".into(), status);
                }
                // managedFields are the one piece of metadata a status write
                // carries (its manager's entry for the status subresource).
                if let Some(managed) = new.get("metadata").and_then(|m| m.get("managedFields")) {
                    metadata_mut(&mut merged).insert("managedFields".into(), managed.clone());
                }
            }
            merged
        }
    };
    set_type_meta(&mut merged, kind);
    let old_meta = old.get("metadata").and_then(Value::as_object);
    let metadata = metadata_mut(&mut merged);
    metadata.insert("name".into(), name.clone().into());
    for field in [
        "uid",
        "creationTimestamp",
        "generation",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
    ] {
        metadata.remove(field);
        if let Some(value) = old_meta.and_then(|m| m.get(field)) {
            metadata.insert(field.into(), value.clone());
        }
    }
    metadata.remove("resourceVersion");
    metadata.remove("selfLink");
    metadata.remove("namespace");

    if meta_str(old, "deletionTimestamp").is_some() {
        let old_finalizers = finalizers(old);
        let added: Vec<String> = finalizers(&merged)
            .into_iter()
            .filter(|f| !old_finalizers.contains(f))
            .collect();
        if !added.is_empty() {
            return Err(Error::Invalid {
                kind,
                name,
                errors: vec![FieldError::forbidden(
                    "metadata.finalizers",
                    format!(
                        "no new finalizers can be added if the object is being deleted, found new finalizers {added:?}"
                    ),
                )],
            });
        }
    }

    if scope == UpdateScope::Main && spec_of(old) != spec_of(&merged) {
        let generation = old
            .get("metadata")
            .and_then(|m| m.get("generation"))
            .and_then(Value::as_i64)
            .unwrap_or(0);
        metadata_mut(&mut merged).insert("generation".into(), (generation + 1).into());
    }
    Ok(merged)
}

/// Everything that is neither type, metadata nor status: what bumps
/// `generation` when it changes.
fn spec_of(object: &Value) -> Map<String, Value> {
    let mut rest = object.as_object().cloned().unwrap_or_default();
    for field in ["apiVersion", "kind", "metadata", "status"] {
        rest.remove(field);
    }
    rest
}

/// Whether two objects differ only in managed-field timestamps: such a
/// write changes nothing a client can observe and is skipped, as
/// Kubernetes skips no-op updates. Compares in place: objects can be large.
pub fn unchanged(old: &Value, new: &Value) -> bool {
    same_map_but(old, new, "metadata", &|old, new| {
        same_map_but(old, new, "managedFields", &same_managed_fields)
    })
}

/// [`unchanged`], for versions whose current states may be set aside (see
/// [`SetAside`]): equal texts are equal states, unequal ones are parsed.
pub fn unchanged_setting_aside(old: &Value, new: &Value, aside: SetAside<'_>) -> bool {
    let (old_side, new_side) = (Side::of(old, aside.old), Side::of(new, aside.new));
    if !matches!(old_side, Side::Value(_)) && !matches!(new_side, Side::Value(_)) {
        return unchanged(old, new) && old_side.same(new_side);
    }
    if aside.is_empty() {
        return unchanged(old, new);
    }
    // One set aside, the other in place: compared with both in place.
    unchanged(
        &current_state::restore(old.clone(), aside.old),
        &current_state::restore(new.clone(), aside.new),
    )
}

/// Whether two JSON objects are equal, comparing the member `special` with
/// `compare` instead of `==`.
fn same_map_but(
    old: &Value,
    new: &Value,
    special: &str,
    compare: &dyn Fn(&Value, &Value) -> bool,
) -> bool {
    let (Some(old), Some(new)) = (old.as_object(), new.as_object()) else {
        return old == new;
    };
    old.len() == new.len()
        && old.iter().all(|(key, value)| match new.get(key) {
            Some(other) if key == special => compare(value, other),
            Some(other) => value == other,
            None => false,
        })
}

/// Managed-field entries equal but for their `time`.
fn same_managed_fields(old: &Value, new: &Value) -> bool {
    let (Some(old), Some(new)) = (old.as_array(), new.as_array()) else {
        return old == new;
    };
    old.len() == new.len()
        && old
            .iter()
            .zip(new)
            .all(|(a, b)| match (a.as_object(), b.as_object()) {
                (Some(a), Some(b)) => {
                    let significant =
                        |entry: &Map<String, Value>| entry.keys().filter(|k| *k != "time").count();
                    significant(a) == significant(b)
                        && a.iter()
                            .filter(|(key, _)| *key != "time")
                            .all(|(key, value)| b.get(key) == Some(value))
                }
                _ => a == b,
            })
}

/// `metadata.finalizers`.
pub fn finalizers(object: &Value) -> Vec<String> {
    object
        .get("metadata")
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Whether an object is being deleted and has no finalizers left: it must
/// then be removed from the store instead of written.
pub fn ready_to_delete(object: &Value) -> bool {
    meta_str(object, "deletionTimestamp").is_some() && finalizers(object).is_empty()
}

/// Marks an object with finalizers as being deleted.
pub fn mark_deleted(object: &mut Value, now: &str) {
    let metadata = metadata_mut(object);
    if !metadata.contains_key("deletionTimestamp") {
        metadata.insert("deletionTimestamp".into(), now.into());
        metadata.insert("deletionGracePeriodSeconds".into(), 0.into());
    }
}

/// The object as served: `apiVersion` of the version asked for and
/// `resourceVersion` of the revision it was read at.
pub fn for_response(mut object: Value, version: &str, revision: i64) -> Value {
    if let Some(map) = object.as_object_mut() {
        map.insert(
            "apiVersion".into(),
            api_version(version).unwrap_or_default().into(),
        );
    }
    metadata_mut(&mut object).insert("resourceVersion".into(), revision.to_string().into());
    object
}

/// Parses a `resourceVersion` string; 400 when it is not a number.
pub fn parse_resource_version(value: &str) -> Result<i64> {
    value
        .parse::<i64>()
        .ok()
        .filter(|rv| *rv >= 0)
        .ok_or_else(|| Error::Malformed(format!("invalid resource version: {value:?}")))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;

    const POLICY: ResourceKind = ResourceKind::NodeNetworkConfigurationPolicy;

    fn stored() -> Value {
        json!({
            "apiVersion": "nmstate.io/v1", "kind": "NodeNetworkConfigurationPolicy",
            "metadata": {"name": "p", "uid": "u-1", "creationTimestamp": "2026-01-01T00:00:00Z", "generation": 3},
            "spec": {"desiredState": {"interfaces": []}},
            "status": {"conditions": [{"type": "Available", "status": "True"}]}
        })
    }

    #[test]
    fn type_meta_is_checked_and_filled() {
        let mut body = json!({"metadata": {"name": "p"}});
        check_type_meta(&mut body, POLICY, "v1beta1").unwrap();
        assert_eq!(body["apiVersion"], "nmstate.io/v1beta1");
        assert_eq!(body["kind"], "NodeNetworkConfigurationPolicy");

        let mut body =
            json!({"apiVersion": "nmstate.io/v1beta1", "kind": "NodeNetworkConfigurationPolicy"});
        let err = check_type_meta(&mut body, POLICY, "v1").unwrap_err();
        assert_eq!(
            err.to_string(),
            "the API version in the data (nmstate.io/v1beta1) does not match the expected API version (nmstate.io/v1)"
        );
        let mut body = json!({"apiVersion": "nmstate.io/v1", "kind": "NodeNetworkState"});
        let err = check_type_meta(&mut body, POLICY, "v1").unwrap_err();
        assert_eq!(
            err.to_string(),
            "the kind in the data (NodeNetworkState) does not match the expected kind (NodeNetworkConfigurationPolicy)"
        );
    }

    #[test]
    fn create_sets_server_fields_and_drops_status() {
        let created = prepare_create(POLICY, stored(), "2026-02-02T00:00:00Z").unwrap();
        assert_eq!(created["metadata"]["generation"], 1);
        assert_eq!(
            created["metadata"]["creationTimestamp"],
            "2026-02-02T00:00:00Z"
        );
        assert_ne!(created["metadata"]["uid"], "u-1");
        assert!(created.get("status").is_none());

        let mut with_rv = stored();
        with_rv["metadata"]["resourceVersion"] = "5".into();
        assert_eq!(
            prepare_create(POLICY, with_rv, "t")
                .unwrap_err()
                .to_string(),
            "resourceVersion should not be set on objects to be created"
        );
    }

    #[test]
    fn updates_keep_status_and_bump_generation_on_spec_change() {
        let mut new = stored();
        new["status"] = json!({"conditions": []});
        new["metadata"]["labels"] = json!({"a": "b"});
        new["metadata"]["generation"] = 99.into();
        let merged = prepare_update(POLICY, &stored(), new.clone(), UpdateScope::Main).unwrap();
        assert_eq!(
            merged["status"],
            stored()["status"],
            "status only through /status"
        );
        assert_eq!(merged["metadata"]["generation"], 3, "labels are not spec");
        assert_eq!(merged["metadata"]["labels"], json!({"a": "b"}));

        new["spec"]["maxUnavailable"] = 1.into();
        let merged = prepare_update(POLICY, &stored(), new.clone(), UpdateScope::Main).unwrap();
        assert_eq!(merged["metadata"]["generation"], 4);

        let merged = prepare_update(POLICY, &stored(), new, UpdateScope::Status).unwrap();
        assert_eq!(merged["status"], json!({"conditions": []}));
        assert_eq!(merged["spec"], stored()["spec"], "/status keeps the spec");
        assert_eq!(merged["metadata"]["generation"], 3);
        assert!(merged["metadata"].get("labels").is_none());
    }

    #[test]
    fn objects_being_deleted_take_no_new_finalizers() {
        let mut old = stored();
        old["metadata"]["deletionTimestamp"] = "2026-01-02T00:00:00Z".into();
        old["metadata"]["finalizers"] = json!(["a"]);
        let mut new = old.clone();
        new["metadata"]["finalizers"] = json!(["a", "b"]);
        let err = prepare_update(POLICY, &old, new, UpdateScope::Main).unwrap_err();
        assert_eq!(
            err.to_string(),
            "NodeNetworkConfigurationPolicy.nmstate.io \"p\" is invalid: metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers [\"b\"]"
        );
        let mut new = old.clone();
        new["metadata"]["finalizers"] = json!([]);
        let merged = prepare_update(POLICY, &old, new, UpdateScope::Main).unwrap();
        assert!(ready_to_delete(&merged));
    }

    #[test]
    fn strict_field_validation_names_unknown_fields() {
        let body = json!({
            "apiVersion": "nmstate.io/v1", "kind": "NodeNetworkConfigurationPolicy",
            "metadata": {"name": "p"}, "spec": {"desiredState": {}, "nodeSelecter": {"a": "b"}}
        });
        let err = decode_object(
            POLICY,
            "p",
            body.clone(),
            &[],
            FieldValidation::Strict,
            false,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "NodeNetworkConfigurationPolicy in version \"v1\" cannot be handled as a NodeNetworkConfigurationPolicy: strict decoding error: unknown field \"spec.nodeSelecter\""
        );
        let (decoded, warnings) =
            decode_object(POLICY, "p", body, &[], FieldValidation::Warn, false).unwrap();
        assert_eq!(warnings, ["unknown field \"spec.nodeSelecter\""]);
        assert!(decoded.value["spec"].get("nodeSelecter").is_none());
    }

    #[test]
    fn duplicate_fields_come_before_unknown_ones_as_in_kube_apiserver() {
        let body = json!({
            "apiVersion": "nmstate.io/v1", "kind": "NodeNetworkConfigurationPolicy",
            "metadata": {"name": "p", "labels": {"a": "2"}}, "spec": {"desiredState": {}, "x": 1}
        });
        let duplicates = ["metadata.labels.a".to_owned(), "spec".to_owned()];
        let decode =
            |validation| decode_object(POLICY, "p", body.clone(), &duplicates, validation, false);
        assert_eq!(
            decode(FieldValidation::Strict).unwrap_err().to_string(),
            "NodeNetworkConfigurationPolicy in version \"v1\" cannot be handled as a NodeNetworkConfigurationPolicy: strict decoding error: duplicate field \"metadata.labels.a\", duplicate field \"spec\", unknown field \"spec.x\""
        );
        let (decoded, warnings) = decode(FieldValidation::Warn).unwrap();
        assert_eq!(
            warnings,
            [
                "duplicate field \"metadata.labels.a\"",
                "duplicate field \"spec\"",
                "unknown field \"spec.x\""
            ]
        );
        assert_eq!(decoded.value["metadata"]["labels"]["a"], "2");
        let (_, warnings) = decode(FieldValidation::Ignore).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
    }

    #[test]
    fn node_state_current_state_is_kept_as_written() {
        let current = json!({
            "routes": {"running": []},
            "interfaces": [{"type": "ethernet", "name": "eth1", "x-future": {"b": 1, "a": 2}}],
            "dns-resolver": {},
        });
        let body = json!({
            "apiVersion": "nmstate.io/v1", "kind": "NodeNetworkState",
            "metadata": {"name": "node01"},
            "status": {"currentState": current, "handlerNmstateVersion": "2.2.62", "x": 1},
        });
        let (decoded, warnings) = decode_object(
            ResourceKind::NodeNetworkState,
            "node01",
            body,
            &[],
            FieldValidation::Warn,
            true,
        )
        .unwrap();
        // Nothing inside the nmstate document is an unknown field.
        assert_eq!(warnings, ["unknown field \"status.x\""]);
        assert!(decoded.errors.is_empty(), "{:?}", decoded.errors);
        // Same value, same key order.
        assert_eq!(
            serde_json::to_string(&decoded.value["status"]["currentState"]).unwrap(),
            serde_json::to_string(&current).unwrap()
        );

        let body = json!({
            "apiVersion": "nmstate.io/v1", "kind": "NodeNetworkState",
            "metadata": {"name": "node01"}, "status": {"currentState": ["eth1"]},
        });
        let (decoded, _) = decode_object(
            ResourceKind::NodeNetworkState,
            "node01",
            body,
            &[],
            FieldValidation::Strict,
            true,
        )
        .unwrap();
        let errors: Vec<String> = decoded.errors.iter().map(ToString::to_string).collect();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].starts_with("status.currentState"), "{errors:?}");
    }

    #[test]
    fn generate_name() {
        let mut body = json!({"metadata": {"generateName": "br-"}});
        let name = creation_name(&mut body, POLICY).unwrap();
        assert!(name.starts_with("br-") && name.len() == 8, "{name}");
        assert_eq!(body["metadata"]["name"], name);
        let err = creation_name(&mut json!({"metadata": {}}), POLICY).unwrap_err();
        assert_eq!(
            err.to_string(),
            "NodeNetworkConfigurationPolicy.nmstate.io \"\" is invalid: metadata.name: Required value: name or generateName is required"
        );
    }

    #[test]
    fn unchanged_ignores_only_managed_field_times() {
        let entry = |time: &str| json!({"manager": "m", "operation": "Update", "time": time, "fieldsV1": {"f:spec": {}}});
        let object = |time: &str, team: &str| json!({"metadata": {"name": "p", "labels": {"team": team}, "managedFields": [entry(time)]}, "spec": {"a": 1}});
        assert!(unchanged(&object("t1", "net"), &object("t2", "net")));
        assert!(!unchanged(&object("t1", "net"), &object("t1", "ops")));
        let mut other_manager = object("t1", "net");
        other_manager["metadata"]["managedFields"][0]["manager"] = "n".into();
        assert!(!unchanged(&object("t1", "net"), &other_manager));
        let mut more = object("t1", "net");
        more["status"] = json!({});
        assert!(!unchanged(&object("t1", "net"), &more));
    }
}
