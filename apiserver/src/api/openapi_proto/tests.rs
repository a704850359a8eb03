#![allow(clippy::unwrap_used)]

use serde_json::json;

use super::*;

fn decoded(document: &Value) -> Document {
    Document::decode(encode(document).as_slice()).unwrap()
}

fn extension<'a>(extensions: &'a [NamedAny], name: &str) -> Option<Value> {
    let found: Option<&'a NamedAny> = extensions.iter().find(|e| e.name == name);
    found.map(|e| serde_json::from_str(&e.value.as_ref().unwrap().yaml).unwrap())
}

#[test]
fn the_served_document_survives_the_trip() {
    let json = nmstate_openapi::openapi_doc::openapi_v2();
    let document = decoded(&json);
    assert_eq!(document.swagger, "2.0");
    assert_eq!(document.info.as_ref().unwrap().title, json["info"]["title"]);

    // Every definition, in order, with its extensions and properties.
    let definitions = &document.definitions.as_ref().unwrap().additional_properties;
    let names: Vec<&str> = definitions.iter().map(|d| d.name.as_str()).collect();
    let expected: Vec<&str> = json["definitions"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(names, expected);
    for definition in definitions {
        let schema = definition.value.as_ref().unwrap();
        let original = &json["definitions"][&definition.name];
        assert_eq!(
            extension(&schema.vendor_extension, "x-kubernetes-group-version-kind"),
            original.get("x-kubernetes-group-version-kind").cloned(),
            "{}",
            definition.name
        );
        let properties: Vec<&str> = schema
            .properties
            .iter()
            .flat_map(|p| &p.additional_properties)
            .map(|p| p.name.as_str())
            .collect();
        let original_properties: Vec<&str> = original["properties"]
            .as_object()
            .into_iter()
            .flat_map(|p| p.keys())
            .map(String::as_str)
            .collect();
        assert_eq!(properties, original_properties, "{}", definition.name);
        assert_eq!(
            schema.required,
            texts(original.as_object().unwrap(), "required"),
            "{}",
            definition.name
        );
    }

    // Every path and operation, each with its GVK and parameters.
    let paths = &document.paths.as_ref().unwrap().path;
    assert_eq!(paths.len(), json["paths"].as_object().unwrap().len());
    for path in paths {
        let item = path.value.as_ref().unwrap();
        let original = &json["paths"][&path.name];
        for (method, operation) in [
            ("get", &item.get),
            ("put", &item.put),
            ("post", &item.post),
            ("delete", &item.delete),
            ("patch", &item.patch),
        ] {
            let Some(operation) = operation else {
                assert!(original.get(method).is_none(), "{} {method}", path.name);
                continue;
            };
            let original = &original[method];
            assert_eq!(operation.operation_id, original["operationId"]);
            assert_eq!(
                extension(&operation.vendor_extension, "x-kubernetes-action"),
                original.get("x-kubernetes-action").cloned()
            );
            assert_eq!(
                operation.parameters.len(),
                original["parameters"].as_array().map_or(0, Vec::len),
                "{} {method}",
                path.name
            );
            assert_eq!(
                operation.consumes,
                texts(original.as_object().unwrap(), "consumes")
            );
        }
    }
}

#[test]
fn schemas_keep_their_shapes() {
    let document = json!({
        "swagger": "2.0",
        "definitions": {"x": {
            "type": "object",
            "description": "d",
            "required": ["a"],
            "properties": {
                "a": {"type": "string", "format": "int-or-string", "enum": ["p", "q"], "default": "p"},
                "b": {"type": "array", "items": {"$ref": "#/definitions/y"}},
                "c": {"type": "object", "additionalProperties": {"type": "integer", "format": "int64"}},
                "d": {"type": "object", "additionalProperties": true, "x-kubernetes-preserve-unknown-fields": true},
            },
        }},
        "paths": {"/p/{name}": {
            "parameters": [{"in": "path", "name": "name", "required": true, "type": "string", "uniqueItems": true}],
            "patch": {
                "operationId": "o",
                "parameters": [
                    {"in": "body", "name": "body", "required": true, "schema": {"type": "object"}},
                    {"in": "query", "name": "dryRun", "type": "string", "uniqueItems": true},
                ],
                "responses": {"200": {"description": "OK", "schema": {"$ref": "#/definitions/x"}}},
            },
        }},
    });
    let decoded = decoded(&document);
    let x = decoded.definitions.unwrap().additional_properties[0]
        .value
        .clone()
        .unwrap();
    assert_eq!(x.r#type.unwrap().value, ["object"]);
    let properties = x.properties.unwrap().additional_properties;
    let property = |name: &str| {
        properties
            .iter()
            .find(|p| p.name == name)
            .unwrap()
            .value
            .clone()
            .unwrap()
    };
    let a = property("a");
    assert_eq!(a.format, "int-or-string");
    assert_eq!(
        a.r#enum.iter().map(|e| e.yaml.as_str()).collect::<Vec<_>>(),
        ["\"p\"", "\"q\""]
    );
    assert_eq!(a.default.unwrap().yaml, "\"p\"");
    assert_eq!(
        property("b").items.unwrap().schema[0].r#ref,
        "#/definitions/y"
    );
    let c = property("c").additional_properties.unwrap().oneof.unwrap();
    let additional_properties_item::Oneof::Schema(c) = c else {
        panic!("{c:?}");
    };
    assert_eq!(c.format, "int64");
    let d = property("d");
    assert_eq!(
        d.additional_properties.unwrap().oneof,
        Some(additional_properties_item::Oneof::Boolean(true))
    );
    assert_eq!(
        extension(&d.vendor_extension, "x-kubernetes-preserve-unknown-fields"),
        Some(json!(true))
    );

    let item = decoded.paths.unwrap().path[0].value.clone().unwrap();
    let parameter = |item: &ParametersItem| match item.oneof.clone().unwrap() {
        parameters_item::Oneof::Parameter(parameter) => parameter.oneof.unwrap(),
        other => panic!("{other:?}"),
    };
    let parameter::Oneof::NonBodyParameter(NonBodyParameter {
        oneof: Some(non_body_parameter::Oneof::Path(path)),
    }) = parameter(&item.parameters[0])
    else {
        panic!("path parameter");
    };
    assert_eq!((path.name.as_str(), path.required), ("name", true));
    assert!(path.unique_items);
    let patch = item.patch.unwrap();
    let parameter::Oneof::BodyParameter(body) = parameter(&patch.parameters[0]) else {
        panic!("body parameter");
    };
    assert_eq!(body.schema.unwrap().r#type.unwrap().value, ["object"]);
    let parameter::Oneof::NonBodyParameter(NonBodyParameter {
        oneof: Some(non_body_parameter::Oneof::Query(query)),
    }) = parameter(&patch.parameters[1])
    else {
        panic!("query parameter");
    };
    assert_eq!(
        (query.name.as_str(), query.r#type.as_str()),
        ("dryRun", "string")
    );
    assert!(query.unique_items);
    let response = &patch.responses.unwrap().response_code[0];
    assert_eq!(response.name, "200");
    let Some(response_value::Oneof::Response(response)) = response.value.clone().unwrap().oneof
    else {
        panic!("response");
    };
    assert_eq!(
        response.schema.unwrap().schema.unwrap().r#ref,
        "#/definitions/x"
    );
}
