//! One cached object: the decoded JSON of a stored value, with its name,
//! revision and labels pulled out, and its wire form memoised per served
//! `apiVersion`.
//!
//! Decoding is strict about what the rest of the cache relies on (a JSON
//! object whose `metadata.name` is the key's name, string labels) and
//! lenient about everything else: the schema is the API layer's business.

use std::{collections::BTreeMap, fmt, sync::OnceLock};

use bytes::Bytes;
use nmstate_openapi::{API_VERSION_V1, API_VERSION_V1BETA1};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value};

use crate::storage::Revision;

/// An object as the cache serves it. Shared behind `Arc`: one instance per
/// stored version of an object, however many lists and watchers see it.
///
/// `value` carries `metadata.resourceVersion` = `revision`, whatever the
/// stored bytes said.
pub struct CachedObject {
    /// `metadata.name` (the last segment of the key).
    pub name: String,
    /// The key's modification revision (the object's `resourceVersion`),
    /// or for a deletion the revision of the deletion.
    pub revision: Revision,
    /// `metadata.labels`.
    pub labels: BTreeMap<String, String>,
    /// The whole object.
    pub value: Value,
    /// The serialisation for `nmstate.io/v1` and `nmstate.io/v1beta1`,
    /// made on first use.
    json: [OnceLock<Bytes>; 2],
}

/// Why a stored value is not an object the cache can serve.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// The bytes are not JSON.
    #[error("not JSON: {0}")]
    NotJson(String),
    /// The JSON is not an object with a `metadata` object.
    #[error("not a Kubernetes object (no metadata object)")]
    NoMetadata,
    /// `metadata.name` is missing or differs from the name in the key.
    #[error("metadata.name is {found:?}, the key says {expected:?}")]
    NameMismatch {
        /// The name in the key.
        expected: String,
        /// What `metadata.name` holds.
        found: Option<String>,
    },
    /// `metadata.labels` is not a map of strings.
    #[error("metadata.labels is not a map of strings")]
    BadLabels,
}

impl CachedObject {
    /// Decodes a stored value of the object `name`, last modified at
    /// `revision`.
    pub fn decode(name: &str, revision: Revision, bytes: &[u8]) -> Result<Self, DecodeError> {
        let value: Value = serde_json::from_slice(bytes)
            .map_err(|error| DecodeError::NotJson(error.to_string()))?;
        Self::from_value(name, revision, value)
    }

    /// Builds a cached object from a decoded value (see [`decode`](Self::decode)).
    pub fn from_value(
        name: &str,
        revision: Revision,
        mut value: Value,
    ) -> Result<Self, DecodeError> {
        let metadata = value
            .get_mut("metadata")
            .and_then(Value::as_object_mut)
            .ok_or(DecodeError::NoMetadata)?;
        let found = metadata.get("name").and_then(Value::as_str);
        if found != Some(name) {
            return Err(DecodeError::NameMismatch {
                expected: name.to_owned(),
                found: found.map(str::to_owned),
            });
        }
        let labels = labels_of(metadata)?;
        metadata.insert(
            "resourceVersion".to_owned(),
            Value::String(revision.to_string()),
        );
        Ok(CachedObject {
            name: name.to_owned(),
            revision,
            labels,
            value,
            json: Default::default(),
        })
    }

    /// The same object stamped with another revision: what a watcher is
    /// sent when the object leaves its view (deleted, or changed so that
    /// the watcher's filter no longer matches) at `revision`.
    pub(super) fn at_revision(&self, revision: Revision) -> CachedObject {
        let mut value = self.value.clone();
        if let Some(metadata) = value.get_mut("metadata").and_then(Value::as_object_mut) {
            metadata.insert(
                "resourceVersion".to_owned(),
                Value::String(revision.to_string()),
            );
        }
        CachedObject {
            name: self.name.clone(),
            revision,
            labels: self.labels.clone(),
            value,
            json: Default::default(),
        }
    }

    /// The value of one label.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key).map(String::as_str)
    }

    /// The object's JSON with `apiVersion` set to `api_version` (such as
    /// `nmstate.io/v1beta1`). The two served versions are serialised once
    /// per object and then shared; any other string is serialised on each
    /// call.
    pub fn json(&self, api_version: &str) -> Bytes {
        let slot = match api_version {
            API_VERSION_V1 => &self.json[0],
            API_VERSION_V1BETA1 => &self.json[1],
            _ => return self.serialize(api_version),
        };
        slot.get_or_init(|| self.serialize(api_version)).clone()
    }

    fn serialize(&self, api_version: &str) -> Bytes {
        let Some(fields) = self.value.as_object() else {
            // `from_value` only accepts objects.
            return Bytes::new();
        };
        let object = WithApiVersion {
            api_version,
            fields,
        };
        match serde_json::to_vec(&object) {
            Ok(bytes) => Bytes::from(bytes),
            // A `Value` with string keys always serialises; keep the branch
            // loud rather than panic if that ever changes.
            Err(error) => {
                tracing::error!(name = %self.name, %error, "cannot serialise a cached object");
                Bytes::new()
            }
        }
    }
}

impl fmt::Debug for CachedObject {
    // The value can be large; show what identifies the object.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedObject")
            .field("name", &self.name)
            .field("revision", &self.revision)
            .field("labels", &self.labels)
            .finish_non_exhaustive()
    }
}

fn labels_of(metadata: &Map<String, Value>) -> Result<BTreeMap<String, String>, DecodeError> {
    match metadata.get("labels") {
        None | Some(Value::Null) => Ok(BTreeMap::new()),
        Some(Value::Object(labels)) => labels
            .iter()
            .map(|(key, value)| match value {
                Value::String(value) => Ok((key.clone(), value.clone())),
                _ => Err(DecodeError::BadLabels),
            })
            .collect(),
        Some(_) => Err(DecodeError::BadLabels),
    }
}

/// An object's fields with `apiVersion` replaced (and written first, as
/// Kubernetes does), without copying the value.
struct WithApiVersion<'a> {
    api_version: &'a str,
    fields: &'a Map<String, Value>,
}

impl Serialize for WithApiVersion<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let others = self.fields.iter().filter(|(key, _)| *key != "apiVersion");
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("apiVersion", self.api_version)?;
        for (key, value) in others {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;

    fn object(value: Value) -> Result<CachedObject, DecodeError> {
        CachedObject::decode("a", 7, value.to_string().as_bytes())
    }

    #[test]
    fn resource_version_is_the_revision_whatever_was_stored() {
        let stored = json!({
            "apiVersion": "nmstate.io/v1",
            "kind": "NodeNetworkState",
            "metadata": {"name": "a", "resourceVersion": "3", "labels": {"x": "1"}},
        });
        let object = object(stored).unwrap();
        assert_eq!(object.value["metadata"]["resourceVersion"], "7");
        assert_eq!(object.revision, 7);
        assert_eq!(object.label("x"), Some("1"));
        let later = object.at_revision(9);
        assert_eq!(later.value["metadata"]["resourceVersion"], "9");
        assert_eq!(later.labels, object.labels);
    }

    #[test]
    fn json_sets_the_asked_api_version_and_is_memoised() {
        let object = object(json!({
            "apiVersion": "nmstate.io/v1",
            "kind": "NodeNetworkState",
            "metadata": {"name": "a"},
        }))
        .unwrap();
        let beta = object.json(API_VERSION_V1BETA1);
        let parsed: Value = serde_json::from_slice(&beta).unwrap();
        assert_eq!(parsed["apiVersion"], "nmstate.io/v1beta1");
        assert_eq!(parsed["kind"], "NodeNetworkState");
        assert_eq!(parsed["metadata"]["resourceVersion"], "7");
        assert!(beta.starts_with(br#"{"apiVersion":"nmstate.io/v1beta1""#));
        // The same allocation each time: serialised once.
        assert_eq!(
            object.json(API_VERSION_V1BETA1).as_ptr(),
            beta.as_ptr(),
            "memoised"
        );
        let v1: Value = serde_json::from_slice(&object.json(API_VERSION_V1)).unwrap();
        assert_eq!(v1["apiVersion"], "nmstate.io/v1");
    }

    #[test]
    fn values_the_cache_cannot_serve_are_refused_with_the_reason() {
        let check = |bytes: &[u8], expected: &str| {
            let error = CachedObject::decode("a", 1, bytes).unwrap_err();
            assert!(
                error.to_string().contains(expected),
                "{bytes:?}: {error} does not say {expected:?}"
            );
        };
        check(b"\xff\x00garbage", "not JSON");
        check(b"[1,2]", "no metadata");
        check(br#"{"metadata":"x"}"#, "no metadata");
        check(
            br#"{"metadata":{}}"#,
            r#"metadata.name is None, the key says "a""#,
        );
        check(
            br#"{"metadata":{"name":"b"}}"#,
            r#"metadata.name is Some("b"), the key says "a""#,
        );
        check(
            br#"{"metadata":{"name":"a","labels":{"x":1}}}"#,
            "labels is not a map of strings",
        );
    }
}
