//! The Swagger 2.0 document (`/openapi/v2`), converted from the OpenAPI 3
//! documents of every version, the way kube-apiserver's v2 differs from its
//! v3: `definitions` instead of `components/schemas`, request bodies as
//! `in: body` parameters, media types as `consumes`/`produces`, `$ref` with
//! siblings instead of `allOf: [{$ref}]`, and int-or-string as
//! `type: string, format: int-or-string` (2.0 has no `anyOf`).

use serde_json::{Map, Value, json};

use super::{V2_REF_PREFIX, V3_REF_PREFIX};

/// The Swagger 2.0 document holding the paths and schemas of every
/// OpenAPI 3 document in `documents`.
pub(crate) fn convert(documents: &[Value]) -> Value {
    let mut paths = Map::new();
    let mut definitions = Map::new();
    let mut security_definitions = Map::new();
    for document in documents {
        if let Some(Value::Object(document_paths)) = document.get("paths") {
            for (path, item) in document_paths {
                paths.insert(path.clone(), path_item(item));
            }
        }
        let components = document.get("components");
        if let Some(Value::Object(schemas)) = components.and_then(|c| c.get("schemas")) {
            for (name, schema_v3) in schemas {
                definitions.insert(name.clone(), schema(schema_v3));
            }
        }
        if let Some(Value::Object(schemes)) = components.and_then(|c| c.get("securitySchemes")) {
            security_definitions.extend(schemes.clone());
        }
    }
    let first = documents.first();
    json!({
        "swagger": "2.0",
        "info": first.and_then(|d| d.get("info")).cloned().unwrap_or_else(|| json!({})),
        "paths": paths,
        "definitions": definitions,
        "securityDefinitions": security_definitions,
        "security": first.and_then(|d| d.get("security")).cloned().unwrap_or_else(|| json!([])),
    })
}

/// A path item: its parameters and each operation converted.
fn path_item(item: &Value) -> Value {
    let Value::Object(item) = item else {
        return item.clone();
    };
    item.iter()
        .map(|(key, value)| {
            let converted = match key.as_str() {
                "parameters" => parameters(value),
                "get" | "put" | "post" | "delete" | "patch" | "head" | "options" => {
                    operation(value)
                }
                _ => value.clone(),
            };
            (key.clone(), converted)
        })
        .collect::<Map<_, _>>()
        .into()
}

/// An operation: the request body becomes the first parameter, media
/// types move to `consumes` and `produces`.
fn operation(operation: &Value) -> Value {
    let Value::Object(operation) = operation else {
        return operation.clone();
    };
    let mut converted = Map::new();
    let mut body_parameter = None;
    let mut produces: Vec<String> = Vec::new();
    for (key, value) in operation {
        match key.as_str() {
            "requestBody" => {
                let media_types = media_types(value.get("content"));
                converted.insert("consumes".to_owned(), json!(media_types));
                body_parameter = Some(json!({
                    "name": "body",
                    "in": "body",
                    "required": value.get("required").cloned().unwrap_or(Value::Bool(false)),
                    "schema": first_schema(value.get("content")),
                }));
            }
            "responses" => {
                let Value::Object(responses) = value else {
                    continue;
                };
                let mut converted_responses = Map::new();
                for (code, response) in responses {
                    for media_type in media_types(response.get("content")) {
                        if !produces.contains(&media_type) {
                            produces.push(media_type);
                        }
                    }
                    let mut converted_response = Map::new();
                    if let Some(description) = response.get("description") {
                        converted_response.insert("description".to_owned(), description.clone());
                    }
                    if response.get("content").is_some() {
                        converted_response
                            .insert("schema".to_owned(), first_schema(response.get("content")));
                    }
                    converted_responses.insert(code.clone(), converted_response.into());
                }
                converted.insert("responses".to_owned(), converted_responses.into());
            }
            "parameters" => {
                converted.insert(key.clone(), parameters(value));
            }
            _ => {
                converted.insert(key.clone(), value.clone());
            }
        }
    }
    if let Some(body) = body_parameter {
        let mut all = vec![body];
        if let Some(Value::Array(others)) = converted.remove("parameters") {
            all.extend(others);
        }
        converted.insert("parameters".to_owned(), Value::Array(all));
    }
    if !produces.is_empty() {
        converted.insert("produces".to_owned(), json!(produces));
    }
    converted.into()
}

/// Non-body parameters: 2.0 puts the type beside the name, not in a schema.
fn parameters(parameters: &Value) -> Value {
    let Value::Array(parameters) = parameters else {
        return parameters.clone();
    };
    parameters
        .iter()
        .map(|parameter| {
            let Value::Object(parameter) = parameter else {
                return parameter.clone();
            };
            let mut converted = Map::new();
            for (key, value) in parameter {
                match (key.as_str(), value) {
                    ("schema", Value::Object(schema)) => {
                        converted.extend(schema.iter().map(|(k, v)| (k.clone(), v.clone())));
                    }
                    _ => {
                        converted.insert(key.clone(), value.clone());
                    }
                }
            }
            Value::Object(converted)
        })
        .collect::<Vec<_>>()
        .into()
}

/// The media types of a `content` map, in order.
fn media_types(content: Option<&Value>) -> Vec<String> {
    content
        .and_then(Value::as_object)
        .map(|content| content.keys().cloned().collect())
        .unwrap_or_default()
}

/// The schema of the first media type of a `content` map, converted.
fn first_schema(content: Option<&Value>) -> Value {
    content
        .and_then(Value::as_object)
        .and_then(|content| content.values().next())
        .and_then(|media| media.get("schema"))
        .map(schema)
        .unwrap_or_else(|| json!({}))
}

/// A schema and everything in it.
fn schema(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut converted: Map<String, Value> = map
                .iter()
                .map(|(key, child)| {
                    let child = match (key.as_str(), child) {
                        ("$ref", Value::String(target)) => {
                            Value::String(target.replacen(V3_REF_PREFIX, V2_REF_PREFIX, 1))
                        }
                        // Extension values are data, not schemas.
                        (key, child) if key.starts_with("x-") => child.clone(),
                        ("properties", Value::Object(properties)) => properties
                            .iter()
                            .map(|(name, property)| (name.clone(), schema(property)))
                            .collect::<Map<_, _>>()
                            .into(),
                        (_, child) => schema(child),
                    };
                    (key.clone(), child)
                })
                .collect();
            // `allOf: [{$ref}]` beside a description → `$ref` beside it.
            let single_ref = match converted.get("allOf") {
                Some(Value::Array(members)) if members.len() == 1 => members[0]
                    .as_object()
                    .filter(|member| member.len() == 1)
                    .and_then(|member| member.get("$ref"))
                    .cloned(),
                _ => None,
            };
            if let Some(reference) = single_ref {
                converted.remove("allOf");
                converted.insert("$ref".to_owned(), reference);
            }
            if converted.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true))
                && converted.remove("anyOf").is_some()
            {
                converted.insert("type".to_owned(), json!("string"));
                converted.insert("format".to_owned(), json!("int-or-string"));
            }
            converted.into()
        }
        Value::Array(items) => items.iter().map(schema).collect::<Vec<_>>().into(),
        other => other.clone(),
    }
}
