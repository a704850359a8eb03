//! A node state's `status.currentState` kept as JSON text beside the
//! object instead of inside it: nmstate's whole report, tens of kilobytes
//! that a write stores as it came and otherwise never looks into. The
//! object then holds `{}` in its place.
//!
//! The rules that do look (managed fields compare an old and a new
//! version; a write that changes nothing is skipped) take the texts beside
//! the objects ([`SetAside`]) and read each version's current state as a
//! [`Side`]. Equal texts are equal values; unequal ones are read only as
//! far as needed, so that `1` and `1.0` compare as they do in a `Value`.

use std::{borrow::Cow, collections::BTreeMap};

use serde_json::{Value, value::RawValue};

/// Where the current state is, as a JSON pointer.
pub const POINTER: &str = "/status/currentState";

/// The current states set aside from an old and a new version of an
/// object: `Some(text)` where that version has `{}` standing for `text`
/// at [`POINTER`]; `None` where it has its current state in place, if any.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SetAside<'a> {
    /// The old version's.
    pub old: Option<&'a str>,
    /// The new version's.
    pub new: Option<&'a str>,
}

impl SetAside<'_> {
    /// Whether anything is set aside.
    pub fn is_empty(&self) -> bool {
        self.old.is_none() && self.new.is_none()
    }
}

/// One version's current state.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Side<'a> {
    /// The object has none.
    Absent,
    /// Set aside: this text.
    Text(&'a str),
    /// In the object, parsed.
    Value(&'a Value),
}

impl<'a> Side<'a> {
    /// The current state of `object`, whose text is `text` if set aside.
    pub fn of(object: &'a Value, text: Option<&'a str>) -> Self {
        match (object.pointer(POINTER), text) {
            (None, _) => Side::Absent,
            (Some(_), Some(text)) => Side::Text(text),
            (Some(value), None) => Side::Value(value),
        }
    }

    /// The value, parsed if need be (`None` when absent). A text that does
    /// not parse (texts come from parsed JSON) reads as `null`.
    pub fn to_value(self) -> Option<Value> {
        match self {
            Side::Absent => None,
            Side::Text(text) => Some(parse(text)),
            Side::Value(value) => Some(value.clone()),
        }
    }

    /// Whether two versions' current states are equal as `Value`s are.
    pub fn same(self, other: Side<'_>) -> bool {
        match (self, other) {
            (Side::Absent, Side::Absent) => true,
            (Side::Absent, _) | (_, Side::Absent) => false,
            (Side::Text(a), Side::Text(b)) => same_texts(a, b, &|a, b| a == b),
            (Side::Value(a), Side::Value(b)) => a == b,
            (a, b) => a.to_value() == b.to_value(),
        }
    }
}

/// `text` parsed; `null` (and an error logged) if it does not parse.
pub fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|error| {
        tracing::error!(%error, "a current state set aside does not parse");
        Value::Null
    })
}

/// Whether two JSON texts hold equal values, as `scalars` compares
/// scalars (and values of different kinds) once parsed: what comparing the
/// two parsed `Value`s recursively with `scalars` at the leaves gives
/// (arrays element by element, objects by their keys, the last of
/// duplicate keys counting), without parsing either text into a tree.
/// Equal texts are equal; otherwise arrays and objects are only split into
/// the texts of their members (so that two reports whose interface lists
/// differ in length are told apart without reading the interfaces), and
/// only members whose texts differ are looked into.
pub fn same_texts(a: &str, b: &str, scalars: &dyn Fn(&Value, &Value) -> bool) -> bool {
    if a == b {
        return true;
    }
    let kind = |text: &str| text.trim_start().bytes().next();
    match (kind(a), kind(b)) {
        (Some(b'['), Some(b'[')) => {
            if let (Ok(a), Ok(b)) = (
                serde_json::from_str::<Vec<&RawValue>>(a),
                serde_json::from_str::<Vec<&RawValue>>(b),
            ) {
                return a.len() == b.len()
                    && a.iter()
                        .zip(&b)
                        .all(|(a, b)| same_texts(a.get(), b.get(), scalars));
            }
        }
        (Some(b'{'), Some(b'{')) => {
            if let (Some(a), Some(b)) = (members(a), members(b)) {
                return a.len() == b.len()
                    && a.iter().all(|(key, a)| {
                        b.get(key)
                            .is_some_and(|b| same_texts(a.get(), b.get(), scalars))
                    });
            }
        }
        _ => {}
    }
    // Scalars, values of different kinds, and (never from parsed JSON)
    // texts that do not parse.
    scalars(&parse(a), &parse(b))
}

/// The members of the JSON object `text`, as the texts of their values,
/// by key (the last of duplicate keys counting, as in a `Value`); `None`
/// if `text` is not an object.
pub fn members(text: &str) -> Option<BTreeMap<Cow<'_, str>, &RawValue>> {
    serde_json::from_str(text).ok()
}

/// Puts a set-aside current state back (parsed) where `object` has its
/// place.
pub fn restore(mut object: Value, text: Option<&str>) -> Value {
    if let (Some(text), Some(slot)) = (text, object.pointer_mut(POINTER)) {
        *slot = parse(text);
    }
    object
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use serde_json::Value;

    use super::{Side, parse, restore, same_texts};
    use crate::rules::managed_fields::fieldset::same_value;

    #[test]
    fn sides_compare_as_their_values() {
        let placeholder = json!({"status": {"currentState": {}}});
        let parsed = json!({"status": {"currentState": {"a": 1}}});
        let none = json!({"status": {}});
        let text = |t| Side::of(&placeholder, Some(t));
        assert!(text(r#"{"a":1}"#).same(text(r#"{"a":1}"#)));
        assert!(text(r#"{"a":1,"b":2}"#).same(text(r#"{"b":2,"a":1}"#)));
        assert!(!text(r#"{"a":1}"#).same(text(r#"{"a":1.0}"#)));
        assert!(text(r#"{"a":1}"#).same(Side::of(&parsed, None)));
        assert!(!text(r#"{"a":2}"#).same(Side::of(&parsed, None)));
        assert_eq!(Side::of(&none, Some("{}")), Side::Absent);
        assert!(!text("{}").same(Side::of(&none, None)));
        assert_eq!(
            restore(placeholder.clone(), Some(r#"{"a":1}"#)),
            json!({"status": {"currentState": {"a": 1}}})
        );
        assert_eq!(restore(none.clone(), Some(r#"{"a":1}"#)), none);
    }

    /// The texts compare as their parsed values do, with `==` and with
    /// structured-merge-diff's numbers by value, whatever the kinds, key
    /// orders, duplicates, escapes, spaces or lengths.
    #[test]
    fn texts_compare_as_their_parsed_values() {
        let texts = [
            r#"{"a":1,"b":[1,2,{"c":"d"}]}"#,
            r#"{"b":[1,2,{"c":"d"}],"a":1}"#,
            r#"{ "a" : 1 , "b" : [ 1 , 2 , { "c" : "d" } ] }"#,
            r#"{"a":1.0,"b":[1,2,{"c":"d"}]}"#,
            r#"{"a":1,"b":[1,2,{"c":"\u0064"}]}"#,
            r#"{"a":1,"b":[1,2,{"c":"e"}]}"#,
            r#"{"a":1,"b":[1,2]}"#,
            r#"{"a":1,"b":[2,1,{"c":"d"}]}"#,
            r#"{"a":0,"a":1,"b":[1,2,{"c":"d"}]}"#,
            r#"{"a":1,"a":0,"b":[1,2,{"c":"d"}]}"#,
            r#"{"a":1,"b":{"0":1}}"#,
            r#"{"a":1}"#,
            r#"{"a":1,"b":null}"#,
            r#"[1,2,{"c":"d"}]"#,
            r#"[1.0,2,{"c":"d"}]"#,
            r#"[1,2,{"c":"d"},3]"#,
            r#""d""#,
            r#""\u0064""#,
            "1",
            "1.0",
            "1e0",
            "true",
            "null",
            "{}",
            "[]",
        ];
        let mut equal = 0;
        for a in &texts {
            for b in &texts {
                let (x, y): (Value, Value) = (parse(a), parse(b));
                assert_eq!(same_texts(a, b, &|a, b| a == b), x == y, "{a} == {b}");
                assert_eq!(
                    same_texts(a, b, &same_value),
                    same_value(&x, &y),
                    "{a} same as {b}"
                );
                equal += usize::from(a != b && x == y);
            }
        }
        assert!(equal >= 8, "the table has unequal texts of equal values");
    }
}
