//! One cached object: the decoded JSON of a stored value, with its name,
//! revision and labels pulled out, and its wire form memoised per served
//! `apiVersion`.
//!
//! Two subtrees are kept as JSON text, not parsed: a node state's
//! `status.currentState` (nmstate's whole report, tens of kilobytes, nine
//! tenths of the cache) and every object's `metadata.managedFields` (field
//! sets, nested maps that only writes read). A parsed `Value` takes about
//! fourteen times its text. They are parsed only where they are read
//! (rendering, merging an update, a full copy of the object, metadata
//! answers), and the served JSON is made of pieces that share the texts
//! instead of copying them.
//!
//! Decoding is strict about what the rest of the cache relies on (a JSON
//! object whose `metadata.name` is the key's name, string labels) and
//! lenient about everything else: the schema is the API layer's business.

use std::{
    collections::BTreeMap,
    fmt,
    sync::{Arc, OnceLock},
};

use bytes::Bytes;
use nmstate_openapi::{API_VERSION_V1, API_VERSION_V1BETA1};
use serde::{
    Deserialize, Deserializer,
    de::{self, MapAccess, SeqAccess, Visitor},
};
use serde_json::{Map, Value, value::RawValue};

use crate::storage::Revision;

/// The subtrees kept as JSON text: (top-level field, field inside it).
const TEXT_FIELDS: [(&str, &str); 2] = [("metadata", "managedFields"), ("status", "currentState")];
/// Index of `metadata.managedFields` in [`TEXT_FIELDS`].
const MANAGED_FIELDS: usize = 0;
/// Index of `status.currentState` in [`TEXT_FIELDS`].
const CURRENT_STATE: usize = 1;

/// The length of `status.currentState.interfaces` of `object` (its current
/// state in `texts` when kept as text there), if it is a list.
pub fn interface_count(object: &Value, texts: Texts<'_>) -> Option<usize> {
    /// Counts the list without keeping its items.
    #[derive(Deserialize)]
    struct Interfaces {
        interfaces: Vec<de::IgnoredAny>,
    }
    match texts.current_state() {
        Some(text) => serde_json::from_str::<Interfaces>(text)
            .ok()
            .map(|state| state.interfaces.len()),
        None => object
            .pointer("/status/currentState/interfaces")
            .and_then(Value::as_array)
            .map(Vec::len),
    }
}

/// The subtrees an object keeps as JSON text, if it has them.
#[derive(Clone, Copy, Debug, Default)]
pub struct Texts<'a>([Option<&'a str>; 2]);

impl<'a> Texts<'a> {
    /// `status.currentState`.
    pub fn current_state(self) -> Option<&'a str> {
        self.0[CURRENT_STATE]
    }

    /// `metadata.managedFields`.
    pub fn managed_fields(self) -> Option<&'a str> {
        self.0[MANAGED_FIELDS]
    }
}

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
    /// The object, with the subtrees of [`TEXT_FIELDS`] (if any) left
    /// `null` in their place and kept in `texts`.
    summary: Value,
    /// The subtrees of [`TEXT_FIELDS`] as JSON text (UTF-8).
    texts: [Option<Text>; 2],
    /// The serialisation for each served version, made on first use.
    served: Served,
}

/// What is made of an object on first use: its JSON for each served
/// `apiVersion`, and what a Table's row reads.
#[derive(Default)]
struct Served {
    /// `nmstate.io/v1`.
    v1: OnceLock<Json>,
    /// `nmstate.io/v1beta1`.
    v1beta1: OnceLock<Json>,
    /// The length of `status.currentState.interfaces` (a node state's
    /// Interfaces column), if it is a list: counting it reads the whole
    /// current state, so a Table of thousands of node states reads each
    /// once, not once per list.
    interfaces: OnceLock<Option<usize>>,
    /// The whole `metadata` as JSON (a Table row's `PartialObjectMetadata`),
    /// managed fields copied in as text.
    metadata: OnceLock<Box<RawValue>>,
}

/// An object's JSON as pieces to send one after another: the JSON around
/// the texts the object keeps and those texts themselves (shared with the
/// cached object).
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
    /// `revision`. The subtrees kept as text are copied, not parsed.
    pub fn decode(name: &str, revision: Revision, bytes: &[u8]) -> Result<Self, DecodeError> {
        let split: Split = serde_json::from_slice(bytes)
            .map_err(|error| DecodeError::NotJson(error.to_string()))?;
        let texts = split.texts.map(|raw| raw.map(text));
        Self::new(name, revision, split.summary, texts)
    }

    /// Builds a cached object from a decoded value (see [`decode`](Self::decode)).
    pub fn from_value(
        name: &str,
        revision: Revision,
        mut value: Value,
    ) -> Result<Self, DecodeError> {
        let texts = TEXT_FIELDS.map(|(top, inner)| {
            value
                .get_mut(top)
                .and_then(|top| top.get_mut(inner))
                .and_then(|subtree| match serde_json::value::to_raw_value(subtree) {
                    Ok(raw) => {
                        *subtree = Value::Null;
                        Some(text(raw))
                    }
                    // A `Value` always serialises; if it ever does not, it
                    // stays parsed.
                    Err(_) => None,
                })
        });
        Self::new(name, revision, value, texts)
    }

    /// [`from_value`](Self::from_value) for an object whose current state
    /// may be set aside: `value` has `{}` in its place and `current_state`
    /// is its JSON text, kept as it is.
    pub fn from_value_with_current_state(
        name: &str,
        revision: Revision,
        mut value: Value,
        current_state: Option<&str>,
    ) -> Result<Self, DecodeError> {
        let place = current_state.and_then(|text| {
            let slot = value.pointer_mut("/status/currentState")?;
            // Nothing to serialise in its place.
            *slot = Value::Null;
            Some(text)
        });
        let mut object = Self::from_value(name, revision, value)?;
        if let Some(text) = place {
            object.texts[CURRENT_STATE] = Some(Text(Arc::from(text)));
        }
        Ok(object)
    }

    fn new(
        name: &str,
        revision: Revision,
        mut summary: Value,
        texts: [Option<Text>; 2],
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
            texts,
            served: Served::default(),
        })
    }

    /// The same object stamped with another revision: what a watcher is
    /// sent when the object leaves its view (deleted, or changed so that
    /// the watcher's filter no longer matches) at `revision`.
    pub(super) fn at_revision(&self, revision: Revision) -> CachedObject {
        let mut object = CachedObject {
            name: self.name.clone(),
            revision: self.revision,
            labels: self.labels.clone(),
            summary: self.summary.clone(),
            texts: self.texts.clone(),
            served: Served::default(),
        };
        object.set_revision(revision);
        object
    }

    /// Stamps the object with `revision`: for an object made before its
    /// write had one (see [`super::WatchCache::expect`]).
    pub(super) fn set_revision(&mut self, revision: Revision) {
        self.revision = revision;
        if let Some(metadata) = self
            .summary
            .get_mut("metadata")
            .and_then(Value::as_object_mut)
        {
            metadata.insert(
                "resourceVersion".to_owned(),
                Value::String(revision.to_string()),
            );
        }
        // Serialised with the old revision, if at all.
        self.served = Served::default();
    }

    /// The object without the subtrees it keeps as text:
    /// `metadata.managedFields` and `status.currentState`, where the object
    /// has them, are `null` here (see [`texts`](Self::texts)). Everything
    /// else (name, labels, spec, conditions) is as stored.
    pub fn summary(&self) -> &Value {
        &self.summary
    }

    /// The subtrees kept as JSON text.
    pub fn texts(&self) -> Texts<'_> {
        Texts(
            self.texts
                .each_ref()
                .map(|text| text.as_ref().map(Text::as_str)),
        )
    }

    /// `status.currentState` as JSON text, if the object has one.
    pub fn current_state(&self) -> Option<&str> {
        self.texts().current_state()
    }

    /// The whole object: a copy, which parses the texts.
    pub fn to_value(&self) -> Value {
        whole(&self.summary, self.texts())
    }

    /// The whole object but its current state: a copy with `{}` in the
    /// current state's place, and the current state's text beside it
    /// (`None`: the object has none, and nothing was set aside). A write
    /// that leaves the current state as it is (an agent's heartbeat, a
    /// label) works on this and writes the text back as it was, instead of
    /// parsing, comparing and serialising tens of kilobytes it does not
    /// touch.
    pub fn to_value_setting_aside_current_state(&self) -> (Value, Option<String>) {
        let texts = self.texts();
        let mut value = whole(&self.summary, Texts([texts.managed_fields(), None]));
        let text = texts.current_state().map(str::to_owned);
        if text.is_some()
            && let Some(slot) = value.pointer_mut("/status/currentState")
        {
            *slot = Value::Object(Map::new());
        }
        (value, text)
    }

    /// The length of `status.currentState.interfaces`, if it is a list;
    /// counted on first use.
    pub fn interface_count(&self) -> Option<usize> {
        *self
            .served
            .interfaces
            .get_or_init(|| interface_count(&self.summary, self.texts()))
    }

    /// The whole `metadata` as JSON, made on first use: what a Table row
    /// embeds, without parsing the managed fields or building a tree.
    pub fn metadata_json(&self) -> &RawValue {
        self.served.metadata.get_or_init(|| {
            let fields = self.summary.get("metadata").and_then(Value::as_object);
            let managed_fields = self
                .texts()
                .managed_fields()
                .and_then(|text| serde_json::from_str::<&RawValue>(text).ok());
            let json = serde_json::to_string(&MetadataJson {
                fields,
                managed_fields,
            })
            .and_then(RawValue::from_string);
            // A map with string keys always serialises; should that ever
            // change, fall back to the parsed copy.
            json.unwrap_or_else(|_| {
                serde_json::value::to_raw_value(&self.metadata()).unwrap_or_default()
            })
        })
    }

    /// The whole `metadata` (managed fields parsed): a copy.
    pub fn metadata(&self) -> Value {
        metadata_of(&self.summary, self.texts())
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
            API_VERSION_V1 => &self.served.v1,
            API_VERSION_V1BETA1 => &self.served.v1beta1,
            _ => return self.serialize(api_version),
        };
        slot.get_or_init(|| self.serialize(api_version)).clone()
    }

    fn serialize(&self, api_version: &str) -> Json {
        let Some(fields) = self.summary.as_object() else {
            // `new` only accepts objects.
            return Json::default();
        };
        match write_object(api_version, fields, &self.texts) {
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

/// A subtree's text as the decoder found it (see [`Text`]).
fn text(raw: Box<RawValue>) -> Text {
    let text: Box<str> = raw.into();
    Text(text.into())
}

/// A subtree's JSON text: read as `str` (the controller reads every node
/// state's current state in every batch, so it is not checked as UTF-8 at
/// each read) and served as shared bytes.
#[derive(Clone)]
struct Text(Arc<str>);

impl Text {
    fn as_str(&self) -> &str {
        &self.0
    }

    /// The text as a piece of a response, sharing this text.
    fn piece(&self) -> Bytes {
        Bytes::from_owner(self.clone())
    }
}

impl AsRef<[u8]> for Text {
    fn as_ref(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

/// Writes an object's fields with `apiVersion` first; each text, if
/// given, stands for the `null` in its place and becomes a piece of its
/// own.
fn write_object(
    api_version: &str,
    fields: &Map<String, Value>,
    texts: &[Option<Text>; 2],
) -> serde_json::Result<Vec<Bytes>> {
    let mut pieces = Vec::new();
    let has = texts.each_ref().map(Option::is_some);
    let out = write_fields(Some(api_version), fields, has, 0, |out, index| {
        if let Some(text) = &texts[index] {
            pieces.push(Bytes::from(std::mem::take(out)));
            pieces.push(text.piece());
        }
    })?;
    pieces.push(Bytes::from(out));
    Ok(pieces)
}

/// An object's JSON with `current_state` (JSON text) written in place of
/// what `object` holds at `status.currentState`, as it is: the bytes a
/// write stores when it kept the current state as text. `apiVersion` comes
/// first, as in every object this server serves.
pub fn write_with_current_state(
    object: &Value,
    current_state: &str,
) -> serde_json::Result<Vec<u8>> {
    let Some(fields) = object.as_object() else {
        return serde_json::to_vec(object);
    };
    let api_version = fields.get("apiVersion").and_then(Value::as_str);
    let mut has = [false; 2];
    has[CURRENT_STATE] = true;
    // The rest of a node state is a few hundred bytes, or a few kilobytes
    // with its managed fields: room for it, so that the buffer (tens of
    // kilobytes) is not copied to grow.
    let capacity = current_state.len() + 8192;
    write_fields(api_version, fields, has, capacity, |out, _| {
        out.extend_from_slice(current_state.as_bytes());
    })
}

/// Writes an object's fields (`apiVersion` first when given, in place of
/// the object's own) into a buffer, calling `text(buffer, index)` to write
/// the subtree `TEXT_FIELDS[index]` wherever `has[index]` and the object
/// has a place for it; `capacity`: the buffer's to begin with.
fn write_fields(
    api_version: Option<&str>,
    fields: &Map<String, Value>,
    has: [bool; 2],
    capacity: usize,
    mut text: impl FnMut(&mut Vec<u8>, usize),
) -> serde_json::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(capacity);
    out.push(b'{');
    if let Some(api_version) = api_version {
        out.extend_from_slice(b"\"apiVersion\":");
        serde_json::to_writer(&mut out, api_version)?;
    }
    let rest = fields
        .iter()
        .filter(|(key, _)| api_version.is_none() || *key != "apiVersion");
    for (index, (key, value)) in rest.enumerate() {
        if index > 0 || api_version.is_some() {
            out.push(b',');
        }
        serde_json::to_writer(&mut out, key)?;
        out.push(b':');
        let inside = TEXT_FIELDS
            .iter()
            .zip(has)
            .position(|((top, _), has)| has && top == key);
        match (value, inside) {
            (Value::Object(subtree), Some(index)) => {
                out.push(b'{');
                for (position, (key, value)) in subtree.iter().enumerate() {
                    if position > 0 {
                        out.push(b',');
                    }
                    serde_json::to_writer(&mut out, key)?;
                    out.push(b':');
                    if key == TEXT_FIELDS[index].1 {
                        text(&mut out, index);
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
    Ok(out)
}

/// `summary` with `texts` parsed into their places: the whole object
/// again.
pub fn whole(summary: &Value, texts: Texts<'_>) -> Value {
    let mut value = summary.clone();
    for ((top, inner), text) in TEXT_FIELDS.iter().zip(texts.0) {
        if let Some(top) = value.get_mut(*top) {
            put_text(top, inner, text);
        }
    }
    value
}

/// The whole `metadata` of `summary` (managed fields parsed): a copy.
pub fn metadata_of(summary: &Value, texts: Texts<'_>) -> Value {
    let mut metadata = summary
        .get("metadata")
        .cloned()
        .unwrap_or_else(|| Value::Object(Map::new()));
    put_text(
        &mut metadata,
        TEXT_FIELDS[MANAGED_FIELDS].1,
        texts.managed_fields(),
    );
    metadata
}

/// `metadata` serialised with its managed fields' text in their place.
struct MetadataJson<'a> {
    fields: Option<&'a Map<String, Value>>,
    managed_fields: Option<&'a RawValue>,
}

impl serde::Serialize for MetadataJson<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let key = TEXT_FIELDS[MANAGED_FIELDS].1;
        let mut map = serializer.serialize_map(None)?;
        let mut placed = false;
        for (name, value) in self.fields.into_iter().flatten() {
            match self.managed_fields {
                Some(text) if name == key => {
                    map.serialize_entry(name, text)?;
                    placed = true;
                }
                _ => map.serialize_entry(name, value)?,
            }
        }
        if let (Some(text), false) = (self.managed_fields, placed) {
            map.serialize_entry(key, text)?;
        }
        map.end()
    }
}

/// Parses `text` into `object[key]`. Text that does not parse (the cache
/// only keeps what it parsed once) leaves `null`.
fn put_text(object: &mut Value, key: &str, text: Option<&str>) {
    if let (Some(text), Some(object)) = (text, object.as_object_mut()) {
        let parsed = serde_json::from_str(text).unwrap_or_else(|error| {
            tracing::error!(%error, key, "a cached text does not parse");
            Value::Null
        });
        object.insert(key.to_owned(), parsed);
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

/// A stored object parsed in one pass, the subtrees of [`TEXT_FIELDS`]
/// copied as text and `null` in their place; any other JSON parses as a
/// `Value`.
struct Split {
    summary: Value,
    texts: [Option<Box<RawValue>>; 2],
}

impl<'de> Deserialize<'de> for Split {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(SplitVisitor(Level::Top))
    }
}

/// Where a [`SplitVisitor`] is.
#[derive(Clone, Copy)]
enum Level {
    /// The object: fields of [`TEXT_FIELDS`] are visited `Inside`.
    Top,
    /// Inside the top-level field of `TEXT_FIELDS[index]`: the value of
    /// its inner key is text, kept at the same index.
    Inside(usize),
}

struct SplitVisitor(Level);

impl<'de> de::DeserializeSeed<'de> for SplitVisitor {
    type Value = Split;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Split, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for SplitVisitor {
    type Value = Split;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Split, A::Error> {
        let mut fields = Map::new();
        let mut texts = [None, None];
        while let Some(key) = map.next_key::<String>()? {
            let value = match self.0 {
                Level::Top => match TEXT_FIELDS.iter().position(|(top, _)| *top == key) {
                    Some(index) => {
                        let mut inside = map.next_value_seed(SplitVisitor(Level::Inside(index)))?;
                        texts[index] = inside.texts[index].take();
                        inside.summary
                    }
                    None => map.next_value::<Value>()?,
                },
                Level::Inside(index) if key == TEXT_FIELDS[index].1 => {
                    texts[index] = Some(map.next_value::<Box<RawValue>>()?);
                    Value::Null
                }
                Level::Inside(_) => map.next_value::<Value>()?,
            };
            fields.insert(key, value);
        }
        Ok(Split {
            summary: Value::Object(fields),
            texts,
        })
    }

    // Anything else is no object to split: parsed as it is.
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Split, A::Error> {
        whole_value(Value::deserialize(de::value::SeqAccessDeserializer::new(
            seq,
        ))?)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Split, E> {
        whole_value(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Split, E> {
        whole_value(Value::from(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Split, E> {
        whole_value(Value::from(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Split, E> {
        whole_value(Value::from(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Split, E> {
        whole_value(Value::from(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Split, E> {
        whole_value(Value::Null)
    }
}

fn whole_value<E>(summary: Value) -> Result<Split, E> {
    Ok(Split {
        summary,
        texts: [None, None],
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
            "metadata": {
                "name": "a",
                "labels": {"x": "1"},
                "managedFields": [{"manager": "nmstate-agent", "operation": "Update", "subresource": "status",
                                   "fieldsType": "FieldsV1", "fieldsV1": {"f:status": {".": {}, "f:currentState": {}}}}],
                "uid": "u-1",
            },
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

    /// The write path offers the object decoded from the bytes it wrote,
    /// where it used to build it from the value it serialised: the two
    /// must be the same object, escapes and numbers included.
    #[test]
    fn decoding_the_written_bytes_gives_the_object_built_from_the_value() {
        let mut stored = node_state();
        stored["status"]["currentState"]["interfaces"][0]["description"] =
            json!("<a & b> \u{e9} \"q\" \\ \u{1}");
        stored["status"]["currentState"]["numbers"] =
            json!([1.0, 1e300, -0.5, 0.1, u64::MAX, i64::MIN]);
        let bytes = serde_json::to_vec(&stored).unwrap();
        let decoded = CachedObject::decode("a", 7, &bytes).unwrap();
        let built = CachedObject::from_value("a", 7, stored).unwrap();
        assert_eq!(decoded.summary(), built.summary());
        assert_eq!(decoded.current_state(), built.current_state());
        assert_eq!(
            decoded.texts().managed_fields(),
            built.texts().managed_fields()
        );
        assert_eq!(
            decoded.json(API_VERSION_V1).to_bytes(),
            built.json(API_VERSION_V1).to_bytes()
        );
    }

    #[test]
    fn the_current_state_and_managed_fields_are_kept_as_text_and_served_verbatim_in_place() {
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
            assert_eq!(object.summary()["metadata"]["managedFields"], Value::Null);
            assert_eq!(object.summary()["metadata"]["uid"], "u-1");
            let mut metadata = stored["metadata"].clone();
            metadata["resourceVersion"] = "7".into();
            assert_eq!(object.metadata(), metadata);
            assert_eq!(
                object.summary()["status"]["lastSuccessfulUpdateTime"],
                stored["status"]["lastSuccessfulUpdateTime"]
            );
            let state: Value = serde_json::from_str(object.current_state().unwrap()).unwrap();
            assert_eq!(state, stored["status"]["currentState"]);
            // Whole again, in the stored order of keys: five pieces, the
            // second and fourth the kept texts themselves.
            let pieces = object.json(API_VERSION_V1);
            assert_eq!(pieces.pieces().len(), 5);
            let texts = object.texts();
            assert_eq!(
                pieces.pieces()[1].as_ptr(),
                texts.managed_fields().unwrap().as_ptr(),
                "shared, not copied"
            );
            assert_eq!(
                pieces.pieces()[3].as_ptr(),
                texts.current_state().unwrap().as_ptr(),
                "shared, not copied"
            );
            let json = pieces.to_bytes();
            assert_eq!(json.len(), pieces.len());
            let served: Value = serde_json::from_slice(&json).unwrap();
            assert_eq!(served, expected);
            let keys = |value: &Value, top: &str| -> Vec<String> {
                value[top].as_object().unwrap().keys().cloned().collect()
            };
            assert_eq!(keys(&served, "status"), keys(&stored, "status"));
            let mut metadata_keys = keys(&stored, "metadata");
            metadata_keys.push("resourceVersion".to_owned());
            assert_eq!(keys(&served, "metadata"), metadata_keys);
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
        for (managed, status) in [
            (json!(null), json!(null)),
            (json!("x"), json!(5)),
            (json!([]), json!(["x"])),
            (json!([{"manager": "m"}]), json!({"conditions": []})),
            (json!(1), json!({"currentState": null, "x": 1.5})),
        ] {
            let stored = json!({"metadata": {"name": "a", "managedFields": managed}, "spec": {"n": -1}, "status": status});
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
