//! Turning a request body (already parsed as JSON) into a typed object:
//! type mismatches become field errors naming the path, and fields the
//! types do not know are listed for `fieldValidation=Strict|Warn`.

use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;

use super::{BadValue, FieldError, FieldErrorKind, FieldPath};

/// Decodes the JSON object `value` as `T`. A field of the wrong type is
/// reported at its path: `spec.maxUnavailable: Invalid value: true: invalid
/// type: boolean `true`, expected a 32-bit integer or a string`.
pub fn decode<T: DeserializeOwned>(value: &Value) -> Result<T, FieldError> {
    // serde would also accept a struct written as a list of its fields.
    if !value.is_object() {
        return Err(FieldError::new(
            FieldErrorKind::TypeInvalid,
            "",
            BadValue::from_json(value),
            "must be an object",
        ));
    }
    // Tracking the path costs on every field; it is only needed to say
    // where a decode failed, so a failed decode is run again with it.
    if let Ok(decoded) = T::deserialize(value) {
        return Ok(decoded);
    }
    serde_path_to_error::deserialize(value).map_err(|error| {
        let mut path = FieldPath::default();
        let mut node = Some(value);
        for segment in error.path().iter() {
            match segment {
                serde_path_to_error::Segment::Seq { index } => {
                    path = path.index(*index);
                    node = node.and_then(|node| node.get(*index));
                }
                serde_path_to_error::Segment::Map { key }
                | serde_path_to_error::Segment::Enum { variant: key } => {
                    path = path.child(key);
                    node = node.and_then(|node| node.get(key));
                }
                serde_path_to_error::Segment::Unknown => break,
            }
        }
        FieldError::new(
            FieldErrorKind::TypeInvalid,
            path,
            node.and_then(BadValue::from_json),
            error.into_inner().to_string(),
        )
    })
}

/// Paths (`spec.foo`, `metadata.bar`) of members of `input` that `decoded`
/// (the result of decoding `input`) dropped because the types have no such
/// field. Empty members (`null`, `""`, `{}`, `[]`) are not reported: the
/// types omit empty values when serialising. nmstate documents are kept
/// verbatim, so nothing inside them is ever reported here; validation
/// checks them against nmstate's schema instead.
pub fn unknown_fields<T: Serialize>(input: &Value, decoded: &T) -> Vec<String> {
    let Ok(output) = serde_json::to_value(decoded) else {
        return Vec::new();
    };
    unknown_fields_between(input, &output)
}

/// Like [`unknown_fields`], for a caller that already holds the decoded
/// object's serialisation (`output`), saving a second serialisation of
/// large objects.
pub fn unknown_fields_between(input: &Value, output: &Value) -> Vec<String> {
    let mut unknown = Vec::new();
    compare(input, output, &FieldPath::default(), &mut unknown);
    unknown
}

fn compare(input: &Value, output: &Value, path: &FieldPath, unknown: &mut Vec<String>) {
    match (input, output) {
        (Value::Object(input), Value::Object(output)) => {
            for (key, value) in input {
                match output.get(key) {
                    Some(kept) => compare(value, kept, &path.child(key), unknown),
                    None if is_empty(value) => {}
                    None => unknown.push(path.child(key).into()),
                }
            }
        }
        (Value::Array(input), Value::Array(output)) if input.len() == output.len() => {
            for (index, (value, kept)) in input.iter().zip(output).enumerate() {
                compare(value, kept, &path.index(index), unknown);
            }
        }
        _ => {}
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(text) => text.is_empty(),
        Value::Array(items) => items.is_empty(),
        Value::Object(object) => object.is_empty(),
        Value::Bool(_) | Value::Number(_) => false,
    }
}
