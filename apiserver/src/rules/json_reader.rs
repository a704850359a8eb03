//! Reading a JSON request body into a [`Value`] while noting duplicate
//! keys, in one pass: `serde_json` keeps the last of duplicate keys without
//! a word, but `fieldValidation` makes them an error (`Strict`) or a warning
//! (`Warn`), as in kube-apiserver.
//!
//! The duplicates are named by their path as kube-apiserver names them
//! (`metadata.labels.x`, `spec.containers[0].name`), in document order.
//! A path is built only for a duplicate: the reader keeps the way down as a
//! chain of borrowed keys on the stack.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value, map::Entry};

/// `bytes` as a JSON value, with the paths of the keys that appeared more
/// than once in an object (the last value of each is kept).
pub(crate) fn from_slice(bytes: &[u8]) -> serde_json::Result<(Value, Vec<String>)> {
    let mut duplicates = Vec::new();
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = Reader {
        at: &Place::Root,
        duplicates: &mut duplicates,
    }
    .deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok((value, duplicates))
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

/// Reads the value at `at`, adding duplicate keys below it to `duplicates`.
#[derive(Debug)]
struct Reader<'a, 'd> {
    at: &'a Place<'a>,
    duplicates: &'d mut Vec<String>,
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
                duplicates: &mut *self.duplicates,
            };
            match seq.next_element_seed(reader)? {
                Some(item) => items.push(item),
                None => return Ok(Value::Array(items)),
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            // One lookup per key: the entry both tells a duplicate and
            // takes the value. A duplicate's value replaces the first in its
            // place, as `Map::insert` does.
            let entry = object.entry(key);
            let at = Place::Key(self.at, entry.key());
            // Named when the key comes, before what its value holds.
            if matches!(entry, Entry::Occupied(_)) {
                self.duplicates.push(at.to_string());
            }
            let value = map.next_value_seed(Reader {
                at: &at,
                duplicates: &mut *self.duplicates,
            })?;
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::from_slice;

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
}
