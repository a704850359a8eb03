//! One cached object: the decoded JSON of a stored value, with its name,
//! revision and labels pulled out, and its wire form memoised per served
//! `apiVersion`.
//!
//! A node state's `status.currentState` (nmstate's whole report, tens of
//! kilobytes, nine tenths of the cache) is kept as JSON text, not parsed:
//! a parsed `Value` of it takes about fourteen times its text. It is
//! parsed only where it is read (rendering, merging an update, a full copy
//! of the object), and the served JSON is made of pieces that share that
//! text instead of copying it: the JSON before it, the text, the JSON
//! after it.
//!
//! Decoding is strict about what the rest of the cache relies on (a JSON
//! object whose `metadata.name` is the key's name, string labels) and
//! lenient about everything else: the schema is the API layer's business.

use std::{collections::BTreeMap, fmt, sync::OnceLock};

use bytes::Bytes;
use nmstate_openapi::{API_VERSION_V1, API_VERSION_V1BETA1};
use serde::{
    Deserialize, Deserializer,
    de::{self, MapAccess, SeqAccess, Visitor},
};
use serde_json::{Map, Value, value::RawValue};

use crate::storage::Revision;

/// Where a node state's current state sits in the object.
const STATUS: &str = "status";
const CURRENT_STATE: &str = "currentState";

/// An object as the cache serves it. Shared behind `Arc`: one instance per
/// stored version of an object, however many lists and watchers see it.
///
/// The object carries `metadata.resourceVersion` = `revision`, whatever the
/// stored bytes said.
pub struct CachedObject {
    /// `metadata.name` (the last segment of the key).
    pub name: String,
    /// The key's modification revision (the object's `resourceVersion`),
    /// or for a deletion the revision of the deletion.
    pub revision: Revision,
    /// `metadata.labels`.
    pub labels: BTreeMap<String, String>,
    /// The object, with `status.currentState` (if any) left `null` in its
    /// place and kept in `current_state`.
    summary: Value,
    /// `status.currentState` as JSON text (UTF-8, checked once).
    current_state: Option<Bytes>,
    /// The serialisation for `nmstate.io/v1` and `nmstate.io/v1beta1`,
    /// made on first use.
    json: [OnceLock<Json>; 2],
}

/// An object's JSON as pieces to send one after another: one piece, or
/// for an object with a current state, the JSON before it, its text
/// (shared with the cached object) and the JSON after it.
#[derive(Clone, Debug, Default)]
pub struct Json(Vec<Bytes>);

impl Json {
    /// The pieces, in order.
    pub fn pieces(&self) -> &[Bytes] {
        &self.0
    }

    /// The JSON in one buffer (a copy unless it is one piece).
    pub fn to_bytes(&self) -> Bytes {
        match self.0.as_slice() {
            [one] => one.clone(),
            pieces => Bytes::from(pieces.concat()),
        }
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.0.iter().map(Bytes::len).sum()
    }

    /// Whether it is empty (only when serialising failed).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
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
    /// `revision`. `status.currentState` is copied as text, not parsed.
    pub fn decode(name: &str, revision: Revision, bytes: &[u8]) -> Result<Self, DecodeError> {
        let split: Split = serde_json::from_slice(bytes)
            .map_err(|error| DecodeError::NotJson(error.to_string()))?;
        Self::new(name, revision, split.summary, split.current_state.map(text))
    }

    /// Builds a cached object from a decoded value (see [`decode`](Self::decode)).
    pub fn from_value(
        name: &str,
        revision: Revision,
        mut value: Value,
    ) -> Result<Self, DecodeError> {
        let current_state = value
            .get_mut(STATUS)
            .and_then(|status| status.get_mut(CURRENT_STATE))
            .and_then(|state| match serde_json::value::to_raw_value(state) {
                Ok(raw) => {
                    *state = Value::Null;
                    Some(text(raw))
                }
                // A `Value` always serialises; if it ever does not, it
                // stays parsed.
                Err(_) => None,
            });
        Self::new(name, revision, value, current_state)
    }

    fn new(
        name: &str,
        revision: Revision,
        mut summary: Value,
        current_state: Option<Bytes>,
    ) -> Result<Self, DecodeError> {
        let metadata = summary
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
            summary,
            current_state,
            json: Default::default(),
        })
    }

    /// The same object stamped with another revision: what a watcher is
    /// sent when the object leaves its view (deleted, or changed so that
    /// the watcher's filter no longer matches) at `revision`.
    pub(super) fn at_revision(&self, revision: Revision) -> CachedObject {
        let mut summary = self.summary.clone();
        if let Some(metadata) = summary.get_mut("metadata").and_then(Value::as_object_mut) {
            metadata.insert(
                "resourceVersion".to_owned(),
                Value::String(revision.to_string()),
            );
        }
        CachedObject {
            name: self.name.clone(),
            revision,
            labels: self.labels.clone(),
            summary,
            current_state: self.current_state.clone(),
            json: Default::default(),
        }
    }

    /// The object without its current state: `status.currentState`, if the
    /// object has one, is `null` here (see
    /// [`current_state`](Self::current_state)). Everything else (metadata,
    /// spec, conditions) is as stored.
    pub fn summary(&self) -> &Value {
        &self.summary
    }

    /// `status.currentState` as JSON text, if the object has one.
    pub fn current_state(&self) -> Option<&str> {
        // Made from a `str`; never fails.
        self.current_state
            .as_deref()
            .and_then(|text| std::str::from_utf8(text).ok())
    }

    /// The whole object, current state included: a copy, which parses the
    /// current state.
    pub fn to_value(&self) -> Value {
        with_current_state(&self.summary, self.current_state())
    }

    /// The value of one label.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key).map(String::as_str)
    }

    /// The object's JSON with `apiVersion` set to `api_version` (such as
    /// `nmstate.io/v1beta1`), written first as Kubernetes does, and the
    /// current state in its place. The two served versions are serialised
    /// once per object and then shared; any other string is serialised on
    /// each call.
    pub fn json(&self, api_version: &str) -> Json {
        let slot = match api_version {
            API_VERSION_V1 => &self.json[0],
            API_VERSION_V1BETA1 => &self.json[1],
            _ => return self.serialize(api_version),
        };
        slot.get_or_init(|| self.serialize(api_version)).clone()
    }

    fn serialize(&self, api_version: &str) -> Json {
        let Some(fields) = self.summary.as_object() else {
            // `new` only accepts objects.
            return Json::default();
        };
        match write_object(api_version, fields, self.current_state.as_ref()) {
            Ok(pieces) => Json(pieces),
            // A `Value` with string keys always serialises; keep the branch
            // loud rather than panic if that ever changes.
            Err(error) => {
                tracing::error!(name = %self.name, %error, "cannot serialise a cached object");
                Json::default()
            }
        }
    }
}

/// The text of a current state, kept as bytes that pieces can share.
fn text(raw: Box<RawValue>) -> Bytes {
    let text: Box<str> = raw.into();
    Bytes::from(text.into_string())
}

/// Writes an object's fields with `apiVersion` first; `current_state`, if
/// given, stands for the `null` at `status.currentState` and becomes a
/// piece of its own.
fn write_object(
    api_version: &str,
    fields: &Map<String, Value>,
    current_state: Option<&Bytes>,
) -> serde_json::Result<Vec<Bytes>> {
    let mut pieces = Vec::new();
    let mut out = b"{\"apiVersion\":".to_vec();
    serde_json::to_writer(&mut out, api_version)?;
    for (key, value) in fields.iter().filter(|(key, _)| *key != "apiVersion") {
        out.push(b',');
        serde_json::to_writer(&mut out, key)?;
        out.push(b':');
        match (key.as_str(), value, current_state) {
            (STATUS, Value::Object(status), Some(text)) => {
                out.push(b'{');
                for (index, (key, value)) in status.iter().enumerate() {
                    if index > 0 {
                        out.push(b',');
                    }
                    serde_json::to_writer(&mut out, key)?;
                    out.push(b':');
                    if key == CURRENT_STATE {
                        pieces.push(Bytes::from(std::mem::take(&mut out)));
                        pieces.push(text.clone());
                    } else {
                        serde_json::to_writer(&mut out, value)?;
                    }
                }
                out.push(b'}');
            }
            _ => serde_json::to_writer(&mut out, value)?,
        }
    }
    out.push(b'}');
    pieces.push(Bytes::from(out));
    Ok(pieces)
}

/// `summary` with `current_state` parsed into `status.currentState`: the
/// whole object again. Text that does not parse (the cache only keeps what
/// it parsed once) leaves `null`.
pub fn with_current_state(summary: &Value, current_state: Option<&str>) -> Value {
    let mut value = summary.clone();
    if let Some(text) = current_state
        && let Some(status) = value.get_mut(STATUS).and_then(Value::as_object_mut)
    {
        let state = serde_json::from_str(text).unwrap_or_else(|error| {
            tracing::error!(%error, "a cached current state does not parse");
            Value::Null
        });
        status.insert(CURRENT_STATE.to_owned(), state);
    }
    value
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

/// A stored object parsed in one pass, `status.currentState` copied as
/// text and `null` in its place; any other JSON parses as a `Value`.
struct Split {
    summary: Value,
    current_state: Option<Box<RawValue>>,
}

impl<'de> Deserialize<'de> for Split {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(SplitVisitor { key: STATUS })
    }
}

/// Visits an object, setting aside the value of `key`: at the top level
/// `key` is `status`, whose own `currentState` is then copied as text.
struct SplitVisitor {
    key: &'static str,
}

/// Seeds the visit of the value of `status`.
struct StatusSeed;

impl<'de> de::DeserializeSeed<'de> for StatusSeed {
    type Value = Split;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Split, D::Error> {
        deserializer.deserialize_any(SplitVisitor { key: CURRENT_STATE })
    }
}

impl<'de> Visitor<'de> for SplitVisitor {
    type Value = Split;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Split, A::Error> {
        let mut fields = Map::new();
        let mut current_state = None;
        while let Some(key) = map.next_key::<String>()? {
            let value = if key != self.key {
                map.next_value::<Value>()?
            } else if self.key == CURRENT_STATE {
                current_state = Some(map.next_value::<Box<RawValue>>()?);
                Value::Null
            } else {
                let status = map.next_value_seed(StatusSeed)?;
                current_state = status.current_state;
                status.summary
            };
            fields.insert(key, value);
        }
        Ok(Split {
            summary: Value::Object(fields),
            current_state,
        })
    }

    // Anything else is no object to split: parsed as it is.
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Split, A::Error> {
        whole(Value::deserialize(de::value::SeqAccessDeserializer::new(
            seq,
        ))?)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Split, E> {
        whole(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Split, E> {
        whole(Value::from(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Split, E> {
        whole(Value::from(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Split, E> {
        whole(Value::from(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Split, E> {
        whole(Value::from(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Split, E> {
        whole(Value::Null)
    }
}

fn whole<E>(summary: Value) -> Result<Split, E> {
    Ok(Split {
        summary,
        current_state: None,
    })
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
        assert_eq!(object.summary()["metadata"]["resourceVersion"], "7");
        assert_eq!(object.revision, 7);
        assert_eq!(object.label("x"), Some("1"));
        let later = object.at_revision(9);
        assert_eq!(later.summary()["metadata"]["resourceVersion"], "9");
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
        let beta = object.json(API_VERSION_V1BETA1).to_bytes();
        let parsed: Value = serde_json::from_slice(&beta).unwrap();
        assert_eq!(parsed["apiVersion"], "nmstate.io/v1beta1");
        assert_eq!(parsed["kind"], "NodeNetworkState");
        assert_eq!(parsed["metadata"]["resourceVersion"], "7");
        assert!(beta.starts_with(br#"{"apiVersion":"nmstate.io/v1beta1""#));
        // The same allocation each time: serialised once.
        assert_eq!(
            object.json(API_VERSION_V1BETA1).to_bytes().as_ptr(),
            beta.as_ptr(),
            "memoised"
        );
        let v1: Value = serde_json::from_slice(&object.json(API_VERSION_V1).to_bytes()).unwrap();
        assert_eq!(v1["apiVersion"], "nmstate.io/v1");
    }

    fn node_state() -> Value {
        json!({
            "apiVersion": "nmstate.io/v1beta1",
            "kind": "NodeNetworkState",
            "metadata": {"name": "a", "labels": {"x": "1"}},
            "status": {
                "currentState": {
                    "interfaces": [{"name": "eth0", "type": "ethernet", "mtu": 1500, "ipv4": {"enabled": true, "address": [{"ip": "10.0.0.1", "prefix-length": 24}]}}],
                    "routes": {"running": [], "config": []},
                    "dns-resolver": {"running": {}, "config": null},
                },
                "lastSuccessfulUpdateTime": "2026-11-23T00:00:00Z",
                "conditions": [{"type": "Available", "status": "True"}],
            },
        })
    }

    #[test]
    fn the_current_state_is_kept_as_text_and_served_verbatim_in_place() {
        let stored = node_state();
        let text = stored.to_string();
        let decoded = CachedObject::decode("a", 7, text.as_bytes()).unwrap();
        let built = CachedObject::from_value("a", 7, stored.clone()).unwrap();
        let mut expected = stored.clone();
        expected["apiVersion"] = "nmstate.io/v1".into();
        expected["metadata"]["resourceVersion"] = "7".into();
        for object in [&decoded, &built] {
            // Apart, and `null` in the summary.
            assert_eq!(object.summary()["status"]["currentState"], Value::Null);
            assert_eq!(
                object.summary()["status"]["lastSuccessfulUpdateTime"],
                stored["status"]["lastSuccessfulUpdateTime"]
            );
            let state: Value = serde_json::from_str(object.current_state().unwrap()).unwrap();
            assert_eq!(state, stored["status"]["currentState"]);
            // Whole again, in the stored order of keys.
            // Three pieces, the middle one the kept text itself.
            let pieces = object.json(API_VERSION_V1);
            assert_eq!(pieces.pieces().len(), 3);
            assert_eq!(
                pieces.pieces()[1].as_ptr(),
                object.current_state().unwrap().as_ptr(),
                "shared, not copied"
            );
            let json = pieces.to_bytes();
            assert_eq!(json.len(), pieces.len());
            let served: Value = serde_json::from_slice(&json).unwrap();
            assert_eq!(served, expected);
            let keys = |value: &Value| -> Vec<String> {
                value["status"]
                    .as_object()
                    .unwrap()
                    .keys()
                    .cloned()
                    .collect()
            };
            assert_eq!(keys(&served), keys(&stored));
            let mut whole = object.to_value();
            whole["apiVersion"] = "nmstate.io/v1".into();
            assert_eq!(whole, expected);
            // A watcher's copy at another revision keeps it too.
            let later: Value =
                serde_json::from_slice(&object.at_revision(9).json(API_VERSION_V1).to_bytes())
                    .unwrap();
            assert_eq!(
                later["status"]["currentState"],
                stored["status"]["currentState"]
            );
            assert_eq!(later["metadata"]["resourceVersion"], "9");
        }
        // The decoded text is the stored text of that subtree.
        assert_eq!(
            decoded.current_state().unwrap(),
            stored["status"]["currentState"].to_string()
        );
    }

    #[test]
    fn objects_without_a_current_state_object_decode_as_before() {
        for status in [
            json!(null),
            json!(5),
            json!(["x"]),
            json!({"conditions": []}),
            json!({"currentState": null, "x": 1.5}),
        ] {
            let stored = json!({"metadata": {"name": "a"}, "spec": {"n": -1}, "status": status});
            let decoded = CachedObject::decode("a", 3, stored.to_string().as_bytes()).unwrap();
            let mut expected = stored.clone();
            expected["metadata"]["resourceVersion"] = "3".into();
            assert_eq!(decoded.to_value(), expected, "{status}");
            let served: Value = serde_json::from_slice(&decoded.json("x/v1").to_bytes()).unwrap();
            expected["apiVersion"] = "x/v1".into();
            assert_eq!(served, expected, "{status}");
        }
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
