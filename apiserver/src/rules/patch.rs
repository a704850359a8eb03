//! The bodies of `PATCH`: RFC 6902 JSON patch, RFC 7386 merge patch, and the
//! applied configuration of server-side apply, with the errors
//! kube-apiserver gives for custom resources.
//!
//! Strategic merge patch is refused with 415, as for every custom resource:
//! kubectl learns from the OpenAPI documents (which must not list it) to
//! send merge patches instead.
//!
//! Pure functions over `serde_json::Value`; the patching itself is the
//! `json-patch` crate's. Managed fields and apply are
//! [`managed_fields`](super::managed_fields)' business.

use json_patch::{PatchErrorKind, PatchOperation};
use serde_json::Value;

#[cfg(test)]
mod tests;

/// `application/json-patch+json`.
pub const JSON_PATCH: &str = "application/json-patch+json";
/// `application/merge-patch+json`.
pub const MERGE_PATCH: &str = "application/merge-patch+json";
/// `application/apply-patch+yaml`.
pub const APPLY_PATCH: &str = "application/apply-patch+yaml";

/// The most operations a JSON patch may hold, as in kube.
pub const MAX_JSON_PATCH_OPERATIONS: usize = 10_000;

/// What a `PATCH` body is, from its `Content-Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PatchType {
    /// RFC 6902, `application/json-patch+json`.
    Json,
    /// RFC 7386, `application/merge-patch+json`.
    Merge,
    /// Server-side apply, `application/apply-patch+yaml`: see
    /// [`parse_apply_body`] and
    /// [`server_side_apply`](super::managed_fields::server_side_apply).
    Apply,
}

impl PatchType {
    /// Reads a `Content-Type` header; parameters (`; charset=utf-8`) are
    /// ignored, as kube does. Anything else, strategic merge patch included,
    /// is [`PatchError::UnsupportedMediaType`].
    pub fn from_content_type(content_type: &str) -> Result<Self, PatchError> {
        let media_type = content_type.split(';').next().unwrap_or_default().trim();
        if media_type.eq_ignore_ascii_case(JSON_PATCH) {
            Ok(PatchType::Json)
        } else if media_type.eq_ignore_ascii_case(MERGE_PATCH) {
            Ok(PatchType::Merge)
        } else if media_type.eq_ignore_ascii_case(APPLY_PATCH) {
            Ok(PatchType::Apply)
        } else {
            Err(PatchError::UnsupportedMediaType {
                content_type: content_type.to_owned(),
            })
        }
    }

    /// The media type.
    pub fn content_type(self) -> &'static str {
        match self {
            PatchType::Json => JSON_PATCH,
            PatchType::Merge => MERGE_PATCH,
            PatchType::Apply => APPLY_PATCH,
        }
    }
}

/// Why a patch could not be applied. The messages are kube-apiserver's.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PatchError {
    /// The `Content-Type` is not one of the three patch types served (415).
    #[error(
        "the body of the request was in an unknown format - accepted media types include: {JSON_PATCH}, {MERGE_PATCH}, {APPLY_PATCH}"
    )]
    UnsupportedMediaType {
        /// The header as sent.
        content_type: String,
    },
    /// The body is not valid JSON, or not a JSON patch; the message gives
    /// line and column (400).
    #[error("error decoding patch: {0}")]
    Decode(#[source] serde_json::Error),
    /// A merge patch that is not a JSON object (400).
    #[error("error decoding patch: a merge patch must be a JSON object, not {found}")]
    MergePatchNotAnObject {
        /// What it is instead.
        found: &'static str,
    },
    /// A JSON patch with more than [`MAX_JSON_PATCH_OPERATIONS`] operations
    /// (413).
    #[error(
        "Request entity too large: The allowed maximum operations in a JSON patch is {MAX_JSON_PATCH_OPERATIONS}, got {count}"
    )]
    TooManyOperations {
        /// How many it has.
        count: usize,
    },
    /// A JSON patch operation does not apply: a `test` that fails, a path
    /// that is missing, an index out of range (422). The message names the
    /// operation and path as kube's json-patch library does, e.g.
    /// `testing value /spec/maxUnavailable failed: test failed`.
    #[error("{message}")]
    OperationFailed {
        /// The position of the failing operation.
        operation: usize,
        /// What failed.
        message: String,
    },
    /// The patch turned the object into something that is not a JSON object
    /// (422).
    #[error("the patched object must be a JSON object, not {found}")]
    NotAnObject {
        /// What it became.
        found: &'static str,
    },
    /// The apply body is neither YAML nor JSON; the message gives line and
    /// column (400).
    #[error("error decoding YAML: {0}")]
    DecodeYaml(String),
    /// The apply body is not a mapping (400).
    #[error("error decoding YAML: the applied configuration must be an object, not {found}")]
    ApplyNotAnObject {
        /// What it is instead.
        found: &'static str,
    },
    /// [`apply_patch`] was handed an apply patch, which only
    /// [`server_side_apply`](super::managed_fields::server_side_apply) can
    /// handle: a bug in the caller (500).
    #[error("apply patches need a field manager: use server-side apply")]
    ApplyNotAPatch,
}

/// Applies a JSON patch or a merge patch to the live object and returns the
/// patched object. The live object is the full stored object (with
/// `metadata.resourceVersion` and `managedFields`), so a JSON patch may
/// `test` them.
///
/// A JSON patch applies all or nothing. A merge patch removes the members it
/// sets to `null` and replaces lists whole.
pub fn apply_patch(live: &Value, patch_type: PatchType, body: &[u8]) -> Result<Value, PatchError> {
    apply_patch_noting_duplicates(live, patch_type, body).map(|(patched, _)| patched)
}

/// [`apply_patch`], with the paths of the keys a merge patch's body held
/// twice (for `fieldValidation`, as kube-apiserver checks them).
pub fn apply_patch_noting_duplicates(
    live: &Value,
    patch_type: PatchType,
    body: &[u8],
) -> Result<(Value, Vec<String>), PatchError> {
    let (patched, duplicates) = match patch_type {
        PatchType::Json => (json_patch(live, body)?, Vec::new()),
        PatchType::Merge => merge_patch(live, body)?,
        PatchType::Apply => return Err(PatchError::ApplyNotAPatch),
    };
    if !patched.is_object() {
        return Err(PatchError::NotAnObject {
            found: json_type(&patched),
        });
    }
    Ok((patched, duplicates))
}

fn json_patch(live: &Value, body: &[u8]) -> Result<Value, PatchError> {
    let patch: json_patch::Patch = serde_json::from_slice(body).map_err(PatchError::Decode)?;
    if patch.len() > MAX_JSON_PATCH_OPERATIONS {
        return Err(PatchError::TooManyOperations { count: patch.len() });
    }
    // One operation at a time, so that a failure can be explained against
    // the document as the earlier operations left it. The copy is thrown
    // away on failure, which keeps the patch all or nothing.
    let mut document = live.clone();
    for (index, operation) in patch.iter().enumerate() {
        if let Err(error) = json_patch::patch(&mut document, std::slice::from_ref(operation)) {
            return Err(PatchError::OperationFailed {
                operation: index,
                message: explain(&document, operation, &error.kind),
            });
        }
    }
    Ok(document)
}

fn merge_patch(live: &Value, body: &[u8]) -> Result<(Value, Vec<String>), PatchError> {
    let (patch, duplicates) = super::json_reader::from_slice(body).map_err(PatchError::Decode)?;
    if !patch.is_object() {
        return Err(PatchError::MergePatchNotAnObject {
            found: json_type(&patch),
        });
    }
    let mut document = live.clone();
    json_patch::merge(&mut document, &patch);
    Ok((document, duplicates))
}

/// Words a failed operation as kube's json-patch library (evanphx/json-patch
/// v4) does, so that users see the messages they know. `document` is the
/// state the operation was applied to.
fn explain(document: &Value, operation: &PatchOperation, kind: &PatchErrorKind) -> String {
    // What the step above the target is: missing, an object, an array, or
    // something else (which cannot hold the target either).
    enum Parent {
        Missing,
        Object,
        Array,
    }
    let parent_of = |path: &json_patch::jsonptr::Pointer| -> (Parent, String) {
        let Some((parent, last)) = path.split_back() else {
            return (Parent::Missing, String::new());
        };
        let token = last.decoded().into_owned();
        match document.pointer(parent.as_str()) {
            Some(Value::Object(_)) => (Parent::Object, token),
            Some(Value::Array(_)) => (Parent::Array, token),
            _ => (Parent::Missing, token),
        }
    };
    let bad_index = |verb: &str, path: &str, token: &str| {
        format!(
            "error in {verb} for path: '{path}': Unable to access invalid index: {token}: invalid index referenced"
        )
    };
    match operation {
        PatchOperation::Test(test) => {
            let path = test.path.as_str();
            match (kind, parent_of(&test.path).0) {
                (PatchErrorKind::TestFailed, _) | (_, Parent::Object) => {
                    format!("testing value {path} failed: test failed")
                }
                (_, Parent::Array) => bad_index("test", path, &parent_of(&test.path).1),
                (_, Parent::Missing) => {
                    format!("test operation does not apply: is missing path: {path}: missing value")
                }
            }
        }
        PatchOperation::Add(add) => {
            let path = add.path.as_str();
            match parent_of(&add.path) {
                (Parent::Array, token) => bad_index("add", path, &token),
                _ => format!(
                    "add operation does not apply: doc is missing path: \"{path}\": missing value"
                ),
            }
        }
        PatchOperation::Remove(remove) => {
            let path = remove.path.as_str();
            match parent_of(&remove.path) {
                (Parent::Object, key) => format!(
                    "error in remove for path: '{path}': Unable to remove nonexistent key: {key}: missing value"
                ),
                (Parent::Array, token) => bad_index("remove", path, &token),
                (Parent::Missing, _) => format!(
                    "remove operation does not apply: doc is missing path: \"{path}\": missing value"
                ),
            }
        }
        PatchOperation::Replace(replace) => {
            let path = replace.path.as_str();
            match parent_of(&replace.path) {
                (Parent::Array, token) => bad_index("replace", path, &token),
                (Parent::Object, _) => format!(
                    "replace operation does not apply: doc is missing key: {path}: missing value"
                ),
                (Parent::Missing, _) => format!(
                    "replace operation does not apply: doc is missing path: {path}: missing value"
                ),
            }
        }
        PatchOperation::Move(moved) => {
            explain_transfer("move", &moved.from, &moved.path, document, kind)
        }
        PatchOperation::Copy(copied) => {
            explain_transfer("copy", &copied.from, &copied.path, document, kind)
        }
    }
}

fn explain_transfer(
    verb: &str,
    from: &json_patch::jsonptr::Pointer,
    path: &json_patch::jsonptr::Pointer,
    document: &Value,
    kind: &PatchErrorKind,
) -> String {
    match kind {
        PatchErrorKind::CannotMoveInsideItself => {
            format!("{verb} operation does not apply: cannot move {from} into its own child {path}")
        }
        _ if document.pointer(from.as_str()).is_none() => format!(
            "{verb} operation does not apply: doc is missing from path: {from}: missing value"
        ),
        _ => format!(
            "{verb} operation does not apply: doc is missing destination path: {path}: missing value"
        ),
    }
}

/// Reads the body of an `application/apply-patch+yaml` request: YAML, or
/// JSON (what kubectl sends). An empty body (or `null`) is an empty
/// configuration, which
/// [`server_side_apply`](super::managed_fields::server_side_apply) then
/// refuses for its missing `apiVersion`, as kube does.
///
/// YAML is read as kube's reader reads it, with YAML 1.1 booleans (`yes`
/// is `true`), under the limits of [`decode_yaml`](super::yaml_reader::decode_yaml);
/// JSON bodies are unaffected.
pub fn parse_apply_body(body: &[u8]) -> Result<Value, PatchError> {
    let starts_like_json = body
        .iter()
        .find(|byte| !byte.is_ascii_whitespace())
        .is_some_and(|byte| *byte == b'{');
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(serde_json::Map::new()));
    }
    let value: Value = if starts_like_json {
        serde_json::from_slice(body).map_err(|error| PatchError::DecodeYaml(error.to_string()))?
    } else {
        super::yaml_reader::decode_yaml(body).map_err(PatchError::DecodeYaml)?
    };
    match value {
        Value::Object(_) => Ok(value),
        Value::Null => Ok(Value::Object(serde_json::Map::new())),
        other => Err(PatchError::ApplyNotAnObject {
            found: json_type(&other),
        }),
    }
}

/// How error messages name the type of a JSON value.
pub(crate) fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
