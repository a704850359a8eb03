//! Reading a JSON request body into a [`Value`] while noting duplicate
//! keys, in one pass: `serde_json` keeps the last of duplicate keys without
//! a word, but `fieldValidation` makes them an error (`Strict`) or a warning
//! (`Warn`), as in kube-apiserver.
//!
//! The duplicates are named by their path as kube-apiserver names them
//! (`metadata.labels.x`, `spec.containers[0].name`), in document order.
//! A path is built only for a duplicate: the reader keeps the way down as a
//! chain of borrowed keys on the stack.
//!
//! A node state's `status.currentState` (nmstate's whole report, tens of
//! kilobytes that nothing in a write looks into) can be read as text
//! instead of a tree ([`from_slice_setting_aside_current_state`]): the same
//! pass writes it out as serialising its `Value` would (same escapes,
//! numbers, key order, the last of duplicate keys in the first one's
//! place), so the stored bytes are what they would have been.

use std::{borrow::Cow, collections::HashMap, fmt, fmt::Write as _};

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value, map::Entry};

/// `bytes` as a JSON value, with the paths of the keys that appeared more
/// than once in an object (the last value of each is kept).
pub(crate) fn from_slice(bytes: &[u8]) -> serde_json::Result<(Value, Vec<String>)> {
    let document = read(bytes, false)?;
    Ok((document.value, document.duplicates))
}

/// A JSON document read with its current state set aside.
#[derive(Debug)]
pub(crate) struct Document {
    /// The document; `{}` stands at `status.currentState` when
    /// `current_state` holds its text.
    pub(crate) value: Value,
    /// The paths of duplicate keys, as [`from_slice`] gives them.
    pub(crate) duplicates: Vec<String>,
    /// `status.currentState`, when it is a JSON object, as
    /// `serde_json::to_string` of its `Value` would write it.
    pub(crate) current_state: Option<String>,
}

/// As [`from_slice`], with an object at `status.currentState` read as text
/// (see the module's documentation). Everything else, errors included, is
/// as [`from_slice`] reads it.
pub(crate) fn from_slice_setting_aside_current_state(bytes: &[u8]) -> serde_json::Result<Document> {
    let mut document = read(bytes, true)?;
    // A later duplicate `status` without a current state replaced the one
    // that had it.
    if document.value.pointer("/status/currentState").is_none() {
        document.current_state = None;
    }
    Ok(document)
}

fn read(bytes: &[u8], set_aside: bool) -> serde_json::Result<Document> {
    let mut context = Context {
        duplicates: Vec::new(),
        set_aside,
        current_state: None,
        body_bytes: bytes.len(),
    };
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = Reader {
        at: &Place::Root,
        context: &mut context,
    }
    .deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(Document {
        value,
        duplicates: context.duplicates,
        current_state: context.current_state,
    })
}

/// What a read collects besides the value.
#[derive(Debug)]
struct Context {
    duplicates: Vec<String>,
    /// Whether `status.currentState` is read as text.
    set_aside: bool,
    current_state: Option<String>,
    /// The length of the body: room enough for the current state's text,
    /// which is never longer than the JSON it was read from but for rare
    /// escapes, so that its buffer need not grow.
    body_bytes: usize,
}

/// Where in the document a value is.
#[derive(Clone, Copy, Debug)]
enum Place<'a> {
    Root,
    Key(&'a Place<'a>, &'a str),
    Index(&'a Place<'a>, usize),
}

impl fmt::Display for Place<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Place::Root => Ok(()),
            Place::Key(Place::Root, key) => f.write_str(key),
            Place::Key(parent, key) => write!(f, "{parent}.{key}"),
            Place::Index(parent, index) => write!(f, "{parent}[{index}]"),
        }
    }
}

/// Reads the value at `at`, adding duplicate keys below it to the context.
#[derive(Debug)]
struct Reader<'a, 'd> {
    at: &'a Place<'a>,
    context: &'d mut Context,
}

impl<'de> DeserializeSeed<'de> for Reader<'_, '_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Reader<'_, '_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_f64<E>(self, value: f64) -> Result<Value, E> {
        // JSON has no NaN or infinity; serde_json reads them as nothing else.
        Ok(Number::from_f64(value).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_owned()))
    }

    fn visit_string<E>(self, value: String) -> Result<Value, E> {
        Ok(Value::String(value))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        loop {
            let at = Place::Index(self.at, items.len());
            let reader = Reader {
                at: &at,
                context: &mut *self.context,
            };
            match seq.next_element_seed(reader)? {
                Some(item) => items.push(item),
                None => return Ok(Value::Array(items)),
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        let in_status =
            self.context.set_aside && matches!(self.at, Place::Key(Place::Root, "status"));
        while let Some(key) = map.next_key::<String>()? {
            // One lookup per key: the entry both tells a duplicate and
            // takes the value. A duplicate's value replaces the first in its
            // place, as `Map::insert` does.
            let entry = object.entry(key);
            let at = Place::Key(self.at, entry.key());
            // Named when the key comes, before what its value holds.
            if matches!(entry, Entry::Occupied(_)) {
                self.context.duplicates.push(at.to_string());
            }
            let reader = Reader {
                at: &at,
                context: &mut *self.context,
            };
            let value = if in_status && entry.key() == "currentState" {
                map.next_value_seed(SetAside(reader))?
            } else {
                map.next_value_seed(reader)?
            };
            match entry {
                Entry::Vacant(slot) => {
                    slot.insert(value);
                }
                Entry::Occupied(mut slot) => {
                    slot.insert(value);
                }
            }
        }
        Ok(Value::Object(object))
    }
}

/// Reads the current state: an object as text into the context, `{}` in
/// its place; anything else as [`Reader`] reads it.
struct SetAside<'a, 'd>(Reader<'a, 'd>);

impl<'de> DeserializeSeed<'de> for SetAside<'_, '_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for SetAside<'_, '_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<Value, E> {
        self.0.context.current_state = None;
        self.0.visit_bool(value)
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Value, E> {
        self.0.context.current_state = None;
        self.0.visit_i64(value)
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Value, E> {
        self.0.context.current_state = None;
        self.0.visit_u64(value)
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Value, E> {
        self.0.context.current_state = None;
        self.0.visit_f64(value)
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Value, E> {
        self.0.context.current_state = None;
        self.0.visit_str(value)
    }

    fn visit_string<E: de::Error>(self, value: String) -> Result<Value, E> {
        self.0.context.current_state = None;
        self.0.visit_string(value)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        self.0.context.current_state = None;
        self.0.visit_unit()
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Value, A::Error> {
        self.0.context.current_state = None;
        self.0.visit_seq(seq)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Value, A::Error> {
        let Reader { at, context } = self.0;
        let mut out = String::with_capacity(context.body_bytes);
        Transcoder {
            at,
            duplicates: &mut context.duplicates,
            out: &mut out,
        }
        .visit_map(map)?;
        context.current_state = Some(out);
        Ok(Value::Object(Map::new()))
    }
}

/// Writes the value at `at` to `out` as JSON, as serialising the `Value`
/// [`Reader`] would make of it, adding duplicate keys to `duplicates`.
///
/// Numbers are written as serde_json's serialiser writes them (`itoa`,
/// and `ryu` for floats, as `Number`'s `Display` does); a string is
/// written as it came when it came without escapes (it then holds nothing
/// the serialiser would escape: no quote, backslash or control character),
/// else by the serialiser.
struct Transcoder<'a, 'd> {
    at: &'a Place<'a>,
    duplicates: &'d mut Vec<String>,
    out: &'d mut String,
}

impl Transcoder<'_, '_> {
    /// Writes what `Display` gives for `value`.
    fn display<T: fmt::Display, E: de::Error>(self, value: T) -> Result<(), E> {
        write!(self.out, "{value}").map_err(E::custom)
    }
}

/// Writes a string that came with escapes as serde_json writes it.
fn write_escaped<E: de::Error>(out: &mut String, value: &str) -> Result<(), E> {
    out.push_str(&serde_json::to_string(value).map_err(E::custom)?);
    Ok(())
}

/// Writes a string that came without escapes: as it came.
fn write_plain(out: &mut String, value: &str) {
    out.push('"');
    out.push_str(value);
    out.push('"');
}

impl<'de> DeserializeSeed<'de> for Transcoder<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

/// A map's member already written: its key and where its value is.
struct Member<'de> {
    key: Cow<'de, str>,
    start: usize,
    end: usize,
}

/// Above this many members a map's keys are looked up in a hash map.
const SCANNED_MEMBERS: usize = 16;

impl<'de> Visitor<'de> for Transcoder<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<(), E> {
        self.display(value)
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<(), E> {
        self.display(value)
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<(), E> {
        self.display(value)
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<(), E> {
        // As a `Value` would hold it: NaN and infinity (which JSON cannot
        // spell) as null.
        match Number::from_f64(value) {
            Some(number) => self.display(number),
            None => self.visit_unit(),
        }
    }

    fn visit_borrowed_str<E: de::Error>(self, value: &'de str) -> Result<(), E> {
        write_plain(self.out, value);
        Ok(())
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<(), E> {
        write_escaped(self.out, value)
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.out.push_str("null");
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.out.push('[');
        let mut index = 0;
        loop {
            let mark = self.out.len();
            if index > 0 {
                self.out.push(',');
            }
            let at = Place::Index(self.at, index);
            let item = Transcoder {
                at: &at,
                duplicates: &mut *self.duplicates,
                out: &mut *self.out,
            };
            if seq.next_element_seed(item)?.is_none() {
                self.out.truncate(mark);
                break;
            }
            index += 1;
        }
        self.out.push(']');
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.out.push('{');
        let mut members: Vec<Member<'de>> = Vec::new();
        // Built once the map is too large to scan.
        let mut index: Option<HashMap<Cow<'de, str>, usize>> = None;
        while let Some(key) = map.next_key_seed(Key)? {
            let found = match &index {
                Some(index) => index.get(key.as_ref()).copied(),
                None => members.iter().position(|member| member.key == key),
            };
            let start = match found {
                Some(_) => self.out.len(),
                None => {
                    if !members.is_empty() {
                        self.out.push(',');
                    }
                    match &key {
                        Cow::Borrowed(key) => write_plain(self.out, key),
                        Cow::Owned(key) => write_escaped::<A::Error>(self.out, key)?,
                    }
                    self.out.push(':');
                    self.out.len()
                }
            };
            {
                let at = Place::Key(self.at, &key);
                // Named when the key comes, before what its value holds.
                if found.is_some() {
                    self.duplicates.push(at.to_string());
                }
                map.next_value_seed(Transcoder {
                    at: &at,
                    duplicates: &mut *self.duplicates,
                    out: &mut *self.out,
                })?;
            }
            match found {
                None => {
                    if let Some(index) = &mut index {
                        index.insert(key.clone(), members.len());
                    }
                    members.push(Member {
                        key,
                        start,
                        end: self.out.len(),
                    });
                    if index.is_none() && members.len() > SCANNED_MEMBERS {
                        index = Some(
                            members
                                .iter()
                                .enumerate()
                                .map(|(position, member)| (member.key.clone(), position))
                                .collect(),
                        );
                    }
                }
                // The last value in the first one's place, as `Map::insert`
                // keeps it: moved there from the end, where it was written;
                // the members after it move with it.
                Some(position) => {
                    let value = self.out.split_off(start);
                    let (old_start, old_end) = (members[position].start, members[position].end);
                    let length = value.len();
                    let after = self.out.split_off(old_end);
                    self.out.truncate(old_start);
                    self.out.push_str(&value);
                    self.out.push_str(&after);
                    members[position].end = old_start + length;
                    for member in &mut members[position + 1..] {
                        member.start = member.start - (old_end - old_start) + length;
                        member.end = member.end - (old_end - old_start) + length;
                    }
                }
            }
        }
        self.out.push('}');
        Ok(())
    }
}

/// A map key, borrowed from the body when it has no escapes.
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E>(self, value: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(value))
    }

    fn visit_str<E>(self, value: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(value.to_owned()))
    }

    fn visit_string<E>(self, value: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(value))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::{from_slice, from_slice_setting_aside_current_state};

    #[test]
    fn reads_what_serde_json_reads_and_names_duplicates_as_kube_apiserver() {
        let cases: &[(&str, &[&str])] = &[
            (r#"{"a":1,"b":[true,null,"s",-2,1.5]}"#, &[]),
            (
                r#"{"metadata":{"name":"a","name":"b","labels":{"x":"1","x":"2"}},"data":{"k":"v"},"data":{"k":"w","k":"z"}}"#,
                &["metadata.name", "metadata.labels.x", "data", "data.k"],
            ),
            (
                r#"{"spec":{"containers":[{"name":"c","name":"d"}]}}"#,
                &["spec.containers[0].name"],
            ),
            (r#"[{"a":1,"a":2},[{"b":1,"b":1}]]"#, &["[0].a", "[1][0].b"]),
            (r#"{"a.b":1,"a.b":2}"#, &["a.b"]),
            (
                r#"{"big":18446744073709551615,"neg":-9223372036854775808}"#,
                &[],
            ),
        ];
        for (body, expected) in cases {
            let (value, duplicates) = from_slice(body.as_bytes()).unwrap();
            let plain: serde_json::Value = serde_json::from_str(body).unwrap();
            assert_eq!(value, plain, "{body}: the value serde_json reads");
            assert_eq!(duplicates, *expected, "{body}");
        }
    }

    #[test]
    fn refuses_what_serde_json_refuses() {
        for body in ["{\"a\":}", "{} {}", "[1,]", "nul", &"[".repeat(200)] {
            let ours = from_slice(body.as_bytes()).unwrap_err().to_string();
            let theirs = serde_json::from_str::<serde_json::Value>(body)
                .unwrap_err()
                .to_string();
            assert_eq!(ours, theirs, "{body}");
        }
        assert_eq!(from_slice(b" {\"a\":[]} ").unwrap().0, json!({"a": []}));
    }

    /// What setting the current state aside gives: the same document with
    /// `{}` in its place, the same duplicates, and the text serialising its
    /// value gives.
    fn assert_sets_aside_as_the_value_reads(body: &str) {
        let (mut value, duplicates) = from_slice(body.as_bytes()).unwrap();
        let document = from_slice_setting_aside_current_state(body.as_bytes()).unwrap();
        assert_eq!(document.duplicates, duplicates, "{body}");
        match value.pointer_mut("/status/currentState") {
            Some(state) if state.is_object() => {
                let text = serde_json::to_string(state).unwrap();
                assert_eq!(document.current_state.as_deref(), Some(&*text), "{body}");
                *state = json!({});
            }
            _ => assert_eq!(document.current_state, None, "{body}"),
        }
        assert_eq!(document.value, value, "{body}");
    }

    #[test]
    fn a_current_state_set_aside_is_the_text_of_its_value() {
        let many: String = (0..40)
            .map(|i| format!(r#""k{}":{i}"#, i % 23))
            .collect::<Vec<_>>()
            .join(",");
        let bodies = [
            r#"{"status":{"currentState":{}}}"#.to_string(),
            r#"{"kind":"NodeNetworkState","status":{"conditions":[],"currentState":{"interfaces":[{"name":"eth0","mtu":1500,"ipv4":{"address":[{"ip":"10.0.0.1","prefix-length":24}],"enabled":true}}],"dns-resolver":{"config":null,"running":{"server":["8.8.8.8"]}}}}}"#.to_string(),
            // Escapes: Go's `\u003c`, raw and escaped non-ASCII, control
            // characters, surrogate pairs, slashes.
            r#" { "status" : { "currentState" : { "a\u003cb" : "\u003c\u003e\u0026 é \u00e9 \n\t\u0001 \ud83d\ude00 \/ \\ \"" , "b" : [ ] } } } "#.to_string(),
            // Numbers as a `Value` holds them.
            r#"{"status":{"currentState":{"n":[1e2,1.0,-0,-0.0,1E-7,0.1,1.5e300,18446744073709551615,-9223372036854775808,12345678901234567890123,100,2.50]}}}"#.to_string(),
            // Duplicates: the last value in the first one's place, at every
            // depth, named once each as the tree reader names them.
            r#"{"status":{"currentState":{"a":1,"b":{"x":[1,2,3],"y":true,"x":{"z":"long long value","z":0}},"c":"c","a":[{"q":1,"q":22222}],"d":null,"b":"short"}}}"#.to_string(),
            format!(r#"{{"status":{{"currentState":{{{many},"k3":"again"}}}}}}"#),
            // The current state itself twice, and a status without one after
            // a status with one.
            r#"{"status":{"currentState":{"a":1},"currentState":{"b":2}}}"#.to_string(),
            r#"{"status":{"currentState":{"a":1},"currentState":"text"}}"#.to_string(),
            r#"{"status":{"currentState":5,"currentState":{"b":[2]}}}"#.to_string(),
            r#"{"status":{"currentState":{"a":1}},"status":{"conditions":[]}}"#.to_string(),
            r#"{"status":{"currentState":{"a":1}},"status":{"currentState":{"a":2,"a":3}}}"#.to_string(),
            // Not an object: read as a value.
            r#"{"status":{"currentState":[{"a":1,"a":2}]}}"#.to_string(),
            r#"{"status":{"currentState":null}}"#.to_string(),
            // Elsewhere: not set aside.
            r#"{"spec":{"currentState":{"a":1}},"status":[{"currentState":{}}]}"#.to_string(),
            r#"{"metadata":{"name":"n","name":"m"},"status":{"currentState":{"i":[{"n":"a","n":"b"}]}}}"#.to_string(),
        ];
        for body in &bodies {
            assert_sets_aside_as_the_value_reads(body);
        }
    }

    #[test]
    fn a_current_state_set_aside_refuses_what_serde_json_refuses() {
        for body in [
            r#"{"status":{"currentState":{"a":}}}"#,
            r#"{"status":{"currentState":{"a":1e400}}}"#,
            r#"{"status":{"currentState":{"a":"\ud800"}}}"#,
            r#"{"status":{"currentState":{"a":[1,]}}}"#,
            r#"{"status":{"currentState":{"a":1}} x"#,
            r#"{"status":{"currentState":{"a":"\x"}}}"#,
        ] {
            let ours = from_slice_setting_aside_current_state(body.as_bytes())
                .unwrap_err()
                .to_string();
            let theirs = from_slice(body.as_bytes()).unwrap_err().to_string();
            assert_eq!(ours, theirs, "{body}");
        }
        let deep = format!(
            r#"{{"status":{{"currentState":{}1{}}}}}"#,
            "[".repeat(200),
            "]".repeat(200)
        );
        assert_eq!(
            from_slice_setting_aside_current_state(deep.as_bytes())
                .unwrap_err()
                .to_string(),
            from_slice(deep.as_bytes()).unwrap_err().to_string()
        );
    }
}
