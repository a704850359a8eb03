//! The pass that turns what utoipa emits (OpenAPI 3.1 idioms, Rust doc
//! comments) into what Kubernetes clients read (kube-apiserver's OpenAPI
//! 3.0 idioms), and makes the bytes stable.
//!
//! Measured with kubectl 1.32 (see the lab notes): `type: [T, "null"]`
//! breaks `kubectl explain` outright, and `oneOf: [{type: null}, X]` hides
//! X's fields. `explain` also drops every newline of a description without
//! putting a space in its place, so descriptions become single lines.

use serde_json::{Map, Value};

/// Normalises every schema and description in `document`, then sorts every
/// object's keys (as Go's encoder does), so equal documents serialise to
/// equal bytes.
pub(crate) fn normalize(document: &mut Value) {
    walk(document);
    sort_keys(document);
}

/// Applies the schema rules to `value` if it is an object, then to
/// everything below it. The keys of a `properties` map are field names, not
/// keywords: only their values are visited as schemas.
fn walk(value: &mut Value) {
    match value {
        Value::Object(map) => {
            rewrite_schema(map);
            for (key, child) in map.iter_mut() {
                match (key.as_str(), child) {
                    ("properties", Value::Object(properties)) => {
                        properties.values_mut().for_each(walk);
                    }
                    ("description", Value::String(text)) => *text = plain_description(text),
                    (_, child) => walk(child),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(walk),
        _ => {}
    }
}

/// The rewrites of one schema object.
fn rewrite_schema(map: &mut Map<String, Value>) {
    // `type: ["integer", "null"]` → `type: "integer"`.
    if let Some(Value::Array(types)) = map.get("type") {
        let mut concrete = types.iter().filter(|t| t.as_str() != Some("null"));
        if let (Some(only), None) = (concrete.next().cloned(), concrete.next()) {
            map.insert("type".to_owned(), only);
        }
    }

    // `oneOf`/`anyOf` with `{type: null}` members: drop those; a single
    // remaining member is merged into this schema, whose own keys (its
    // description in particular) win.
    for keyword in ["oneOf", "anyOf"] {
        let Some(Value::Array(members)) = map.get_mut(keyword) else {
            continue;
        };
        members.retain(|member| !is_null_type(member));
        if members.len() == 1 {
            let Some(Value::Object(only)) = members.pop() else {
                continue;
            };
            map.remove(keyword);
            for (key, value) in only {
                map.entry(key).or_insert(value);
            }
        }
    }

    // 3.1's `propertyNames` on maps says no more than `additionalProperties`
    // does for JSON objects; 3.0 has no such keyword.
    map.remove("propertyNames");

    // A `$ref` with anything beside it: 3.0 ignores siblings of `$ref`, and
    // `kubectl explain` shows the referred schema's description instead of
    // the field's. kube-apiserver writes `allOf: [{$ref}]` there.
    if map.len() > 1
        && let Some(reference) = map.remove("$ref")
    {
        let mut only_ref = Map::new();
        only_ref.insert("$ref".to_owned(), reference);
        map.insert(
            "allOf".to_owned(),
            Value::Array(vec![Value::Object(only_ref)]),
        );
    }
}

/// Whether `schema` is `{"type": "null"}`.
fn is_null_type(schema: &Value) -> bool {
    schema.as_object().is_some_and(|schema| {
        schema.len() == 1 && schema.get("type").and_then(Value::as_str) == Some("null")
    })
}

/// A doc comment made into one line of plain text: code blocks (the YAML
/// examples) dropped, lines and paragraphs joined by single spaces, rustdoc
/// links reduced to their text.
pub(crate) fn plain_description(text: &str) -> String {
    let mut words = Vec::new();
    let mut in_code_block = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_code_block = !in_code_block;
            continue;
        }
        if !in_code_block {
            words.extend(line.split_whitespace());
        }
    }
    strip_doc_links(&words.join(" "))
}

/// ``[`name`]`` and ``[`name`](path)`` → `` `name` ``.
fn strip_doc_links(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("[`") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let Some(end) = after.find("`]") else {
            out.push_str(&rest[start..]);
            return out;
        };
        out.push_str(&after[..=end]);
        rest = &after[end + 2..];
        if rest.starts_with('(')
            && let Some(close) = rest.find(')')
        {
            rest = &rest[close + 1..];
        }
    }
    out.push_str(rest);
    out
}

/// Sorts the keys of every object in `value` (arrays keep their order).
pub(crate) fn sort_keys(value: &mut Value) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = std::mem::take(map).into_iter().collect();
            entries.sort_by(|(a, _), (b, _)| a.cmp(b));
            for (key, mut child) in entries {
                sort_keys(&mut child);
                map.insert(key, child);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(sort_keys),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn rewrites() {
        type Case = (&'static str, Value, Value);
        let cases: [Case; 7] = [
            (
                "nullable primitive",
                json!({"type": ["integer", "null"], "format": "int32"}),
                json!({"type": "integer", "format": "int32"}),
            ),
            (
                "nullable reference keeps the field's description",
                json!({"oneOf": [{"type": "null"}, {"$ref": "#/x", "description": "field"}]}),
                json!({"allOf": [{"$ref": "#/x"}], "description": "field"}),
            ),
            (
                "single-member oneOf is merged, outer description wins",
                json!({"oneOf": [{"type": "string", "enum": ["A"], "description": "inner"}], "description": "outer"}),
                json!({"type": "string", "enum": ["A"], "description": "outer"}),
            ),
            (
                "real alternatives are kept",
                json!({"anyOf": [{"type": "integer"}, {"type": "string"}]}),
                json!({"anyOf": [{"type": "integer"}, {"type": "string"}]}),
            ),
            (
                "bare reference stays bare",
                json!({"items": {"$ref": "#/x"}}),
                json!({"items": {"$ref": "#/x"}}),
            ),
            (
                "map loses propertyNames",
                json!({"type": "object", "additionalProperties": {"type": "string"}, "propertyNames": {"type": "string"}}),
                json!({"type": "object", "additionalProperties": {"type": "string"}}),
            ),
            (
                "field names are not keywords",
                json!({"properties": {"type": {"type": "string"}, "description": {"type": ["string", "null"]}}}),
                json!({"properties": {"type": {"type": "string"}, "description": {"type": "string"}}}),
            ),
        ];
        for (name, mut input, expected) in cases {
            normalize(&mut input);
            assert_eq!(input, expected, "{name}");
        }
    }

    #[test]
    fn descriptions() {
        let cases = [
            ("one line", "one line"),
            (
                "Labels a node must all have\nto apply.\n\nSecond paragraph.",
                "Labels a node must all have to apply. Second paragraph.",
            ),
            ("A policy.\n\n```yaml\nkind: X\nspec: {}\n```", "A policy."),
            (
                "name from [`enactment_name`], see [`check`](crate::check).",
                "name from `enactment_name`, see `check`.",
            ),
            ("`spec.capture[x]` stays", "`spec.capture[x]` stays"),
            ("unclosed [`link", "unclosed [`link"),
        ];
        for (input, expected) in cases {
            assert_eq!(plain_description(input), expected, "{input}");
        }
    }

    #[test]
    fn sorted_keys() {
        let mut value = json!({"b": 1, "a": {"d": [{"z": 1, "y": 2}], "c": 3}});
        sort_keys(&mut value);
        assert_eq!(
            serde_json::to_string(&value).unwrap_or_default(),
            r#"{"a":{"c":3,"d":[{"y":2,"z":1}]},"b":1}"#
        );
    }
}
