//! The OpenAPI v2 document as protobuf: gnostic's `openapi.v2.Document`,
//! which kubectl up to 1.28 asks for (`Accept:
//! application/com.github.proto-openapi.spec.v2@v1.0+protobuf`) before it
//! validates, applies or explains, as kube-apiserver serves it.
//!
//! Only the messages and fields our JSON document uses are declared; their
//! field numbers are gnostic's (`openapiv2/OpenAPIv2.proto`), so any reader
//! of that schema decodes them. Values of free form (vendor extensions,
//! `default`, `enum`, `example`) travel as gnostic's `Any` with the value's
//! text in its `yaml` field; JSON text is YAML, and kube-openapi reads that
//! field with a YAML parser.

// The messages are built once per process, only to be encoded: boxing the
// large `oneof` variants would buy nothing.
#![allow(clippy::large_enum_variant)]

use prost::Message;
use serde_json::{Map, Value};

/// The protobuf encoding of an OpenAPI v2 JSON document.
pub(super) fn encode(document: &Value) -> Vec<u8> {
    to_document(document).encode_to_vec()
}

#[derive(Clone, PartialEq, Message)]
pub(crate) struct Document {
    #[prost(string, tag = "1")]
    pub(crate) swagger: String,
    #[prost(message, optional, tag = "2")]
    pub(crate) info: Option<Info>,
    #[prost(string, repeated, tag = "6")]
    pub(crate) consumes: Vec<String>,
    #[prost(string, repeated, tag = "7")]
    pub(crate) produces: Vec<String>,
    #[prost(message, optional, tag = "8")]
    pub(crate) paths: Option<Paths>,
    #[prost(message, optional, tag = "9")]
    pub(crate) definitions: Option<Definitions>,
    #[prost(message, repeated, tag = "12")]
    pub(crate) security: Vec<SecurityRequirement>,
    #[prost(message, optional, tag = "13")]
    pub(crate) security_definitions: Option<SecurityDefinitions>,
    #[prost(message, repeated, tag = "16")]
    pub(crate) vendor_extension: Vec<NamedAny>,
}

#[derive(Clone, PartialEq, Message)]
pub(crate) struct Info {
    #[prost(string, tag = "1")]
    pub(crate) title: String,
    #[prost(string, tag = "2")]
    pub(crate) version: String,
    #[prost(string, tag = "3")]
    pub(crate) description: String,
    #[prost(message, repeated, tag = "7")]
    pub(crate) vendor_extension: Vec<NamedAny>,
}

#[derive(Clone, PartialEq, Message)]
pub(crate) struct Any {
    #[prost(string, tag = "2")]
    pub(crate) yaml: String,
}

#[derive(Clone, PartialEq, Message)]
pub(crate) struct NamedAny {
    #[prost(string, tag = "1")]
    pub(crate) name: String,
    #[prost(message, optional, tag = "2")]
    pub(crate) value: Option<Any>,
}

#[derive(Clone, PartialEq, Message)]
pub(crate) struct Paths {
    #[prost(message, repeated, tag = "1")]
    pub(crate) vendor_extension: Vec<NamedAny>,
    #[prost(message, repeated, tag = "2")]
    pub(crate) path: Vec<NamedPathItem>,
}

#[derive(Clone, PartialEq, Message)]
pub(crate) struct NamedPathItem {
    #[prost(string, tag = "1")]
    pub(crate) name: String,
    #[prost(message, optional, tag = "2")]
    pub(crate) value: Option<PathItem>,
}

#[derive(Clone, PartialEq, Message)]
pub(crate) struct PathItem {
    #[prost(string, tag = "1")]
    pub(crate) r#ref: String,
    #[prost(message, optional, tag = "2")]
    pub(crate) get: Option<Operation>,
    #[prost(message, optional, tag = "3")]
    pub(crate) put: Option<Operation>,
    #[prost(message, optional, tag = "4")]
    pub(crate) post: Option<Operation>,
    #[prost(message, optional, tag = "5")]
    pub(crate) delete: Option<Operation>,
    #[prost(message, optional, tag = "6")]
    pub(crate) options: Option<Operation>,
    #[prost(message, optional, tag = "7")]
    pub(crate) head: Option<Operation>,
    #[prost(message, optional, tag = "8")]
    pub(crate) patch: Option<Operation>,
    #[prost(message, repeated, tag = "9")]
    pub(crate) parameters: Vec<ParametersItem>,
    #[prost(message, repeated, tag = "10")]
    pub(crate) vendor_extension: Vec<NamedAny>,
}

#[derive(Clone, PartialEq, Message)]
pub(crate) struct Operation {
    #[prost(string, repeated, tag = "1")]
    pub(crate) tags: Vec<String>,
    #[prost(string, tag = "2")]
    pub(crate) summary: String,
    #[prost(string, tag = "3")]
    pub(crate) description: String,
    #[prost(string, tag = "5")]
    pub(crate) operation_id: String,
    #[prost(string, repeated, tag = "6")]
    pub(crate) produces: Vec<String>,
    #[prost(string, repeated, tag = "7")]
    pub(crate) consumes: Vec<String>,
    #[prost(message, repeated, tag = "8")]
    pub(crate) parameters: Vec<ParametersItem>,
    #[prost(message, optional, tag = "9")]
    pub(crate) responses: Option<Responses>,
    #[prost(string, repeated, tag = "10")]
    pub(crate) schemes: Vec<String>,
    #[prost(bool, tag = "11")]
    pub(crate) deprecated: bool,
    #[prost(message, repeated, tag = "13")]
    pub(crate) vendor_extension: Vec<NamedAny>,
}

#[derive(Clone, PartialEq, Message)]
pub(crate) struct ParametersItem {
    #[prost(oneof = "parameters_item::Oneof", tags = "1, 2")]
    pub(crate) oneof: Option<parameters_item::Oneof>,
}

pub(crate) mod parameters_item {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub(crate) enum Oneof {
        #[prost(message, tag = "1")]
        Parameter(super::Parameter),
        #[prost(message, tag = "2")]
        JsonReference(super::JsonReference),
    }
}

#[derive(Clone, PartialEq, Message)]
pub(crate) struct JsonReference {
    #[prost(string, tag = "1")]
    pub(crate) r#ref: String,
    #[prost(string, tag = "2")]
    pub(crate) description: String,
}

#[derive(Clone, PartialEq, Message)]
pub(crate) struct Parameter {
    #[prost(oneof = "parameter::Oneof", tags = "1, 2")]
    pub(crate) oneof: Option<parameter::Oneof>,
}

pub(crate) mod parameter {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub(crate) enum Oneof {
        #[prost(message, tag = "1")]
        BodyParameter(super::BodyParameter),
        #[prost(message, tag = "2")]
        NonBodyParameter(super::NonBodyParameter),
    }
}

#[derive(Clone, PartialEq, Message)]
pub(crate) struct BodyParameter {
    #[prost(string, tag = "1")]
    pub(crate) description: String,
    #[prost(string, tag = "2")]
    pub(crate) name: String,
    #[prost(string, tag = "3")]
    pub(crate) r#in: String,
    #[prost(bool, tag = "4")]
    pub(crate) required: bool,
    #[prost(message, optional, tag = "5")]
    pub(crate) schema: Option<Schema>,
    #[prost(message, repeated, tag = "6")]
    pub(crate) vendor_extension: Vec<NamedAny>,
}

#[derive(Clone, PartialEq, Message)]
pub(crate) struct NonBodyParameter {
    #[prost(oneof = "non_body_parameter::Oneof", tags = "1, 3, 4")]
    pub(crate) oneof: Option<non_body_parameter::Oneof>,
}

pub(crate) mod non_body_parameter {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub(crate) enum Oneof {
        #[prost(message, tag = "1")]
        Header(super::HeaderParameterSubSchema),
        #[prost(message, tag = "3")]
        Query(super::QueryParameterSubSchema),
        #[prost(message, tag = "4")]
        Path(super::PathParameterSubSchema),
    }
}

/// `HeaderParameterSubSchema` and `PathParameterSubSchema` share their
/// field numbers.
macro_rules! located_parameter_message {
    ($name:ident) => {
        #[derive(Clone, PartialEq, Message)]
        pub(crate) struct $name {
            #[prost(bool, tag = "1")]
            pub(crate) required: bool,
            #[prost(string, tag = "2")]
            pub(crate) r#in: String,
            #[prost(string, tag = "3")]
            pub(crate) description: String,
            #[prost(string, tag = "4")]
            pub(crate) name: String,
            #[prost(string, tag = "5")]
            pub(crate) r#type: String,
            #[prost(string, tag = "6")]
            pub(crate) format: String,
            #[prost(bool, tag = "19")]
            pub(crate) unique_items: bool,
            #[prost(message, repeated, tag = "22")]
            pub(crate) vendor_extension: Vec<NamedAny>,
        }
    };
}
located_parameter_message!(HeaderParameterSubSchema);
located_parameter_message!(PathParameterSubSchema);

/// A path or header parameter from its JSON object.
macro_rules! located_parameter {
    ($name:ident, $parameter:expr) => {
        $name {
            required: flag($parameter, "required"),
            r#in: text($parameter, "in"),
            description: text($parameter, "description"),
            name: text($parameter, "name"),
            r#type: text($parameter, "type"),
            format: text($parameter, "format"),
            unique_items: flag($parameter, "uniqueItems"),
            vendor_extension: vendor_extensions($parameter),
        }
    };
}

#[derive(Clone, PartialEq, Message)]
pub(crate) struct QueryParameterSubSchema {
    #[prost(bool, tag = "1")]
    pub(crate) required: bool,
    #[prost(string, tag = "2")]
    pub(crate) r#in: String,
    #[prost(string, tag = "3")]
    pub(crate) description: String,
    #[prost(string, tag = "4")]
    pub(crate) name: String,
    #[prost(bool, tag = "5")]
    pub(crate) allow_empty_value: bool,
    #[prost(string, tag = "6")]
    pub(crate) r#type: String,
    #[prost(string, tag = "7")]
    pub(crate) format: String,
    #[prost(bool, tag = "20")]
    pub(crate) unique_items: bool,
    #[prost(message, repeated, tag = "23")]
    pub(crate) vendor_extension: Vec<NamedAny>,
}

#[derive(Clone, PartialEq, Message)]
pub(crate) struct Responses {
    #[prost(message, repeated, tag = "1")]
    pub(crate) response_code: Vec<NamedResponseValue>,
    #[prost(message, repeated, tag = "2")]
    pub(crate) vendor_extension: Vec<NamedAny>,
}

#[derive(Clone, PartialEq, Message)]
pub(crate) struct NamedResponseValue {
    #[prost(string, tag = "1")]
    pub(crate) name: String,
    #[prost(message, optional, tag = "2")]
    pub(crate) value: Option<ResponseValue>,
}

#[derive(Clone, PartialEq, Message)]
pub(crate) struct ResponseValue {
    #[prost(oneof = "response_value::Oneof", tags = "1, 2")]
    pub(crate) oneof: Option<response_value::Oneof>,
}

pub(crate) mod response_value {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub(crate) enum Oneof {
        #[prost(message, tag = "1")]
        Response(super::Response),
        #[prost(message, tag = "2")]
        JsonReference(super::JsonReference),
    }
}

#[derive(Clone, PartialEq, Message)]
pub(crate) struct Response {
    #[prost(string, tag = "1")]
    pub(crate) description: String,
    #[prost(message, optional, tag = "2")]
    pub(crate) schema: Option<SchemaItem>,
    #[prost(message, repeated, tag = "5")]
    pub(crate) vendor_extension: Vec<NamedAny>,
}

#[derive(Clone, PartialEq, Message)]
pub(crate) struct SchemaItem {
    #[prost(message, optional, tag = "1")]
    pub(crate) schema: Option<Schema>,
}

#[derive(Clone, PartialEq, Message)]
pub(crate) struct Schema {
    #[prost(string, tag = "1")]
    pub(crate) r#ref: String,
    #[prost(string, tag = "2")]
    pub(crate) format: String,
    #[prost(string, tag = "3")]
    pub(crate) title: String,
    #[prost(string, tag = "4")]
    pub(crate) description: String,
    #[prost(message, optional, tag = "5")]
    pub(crate) default: Option<Any>,
    #[prost(double, tag = "6")]
    pub(crate) multiple_of: f64,
    #[prost(double, tag = "7")]
    pub(crate) maximum: f64,
    #[prost(bool, tag = "8")]
    pub(crate) exclusive_maximum: bool,
    #[prost(double, tag = "9")]
    pub(crate) minimum: f64,
    #[prost(bool, tag = "10")]
    pub(crate) exclusive_minimum: bool,
    #[prost(int64, tag = "11")]
    pub(crate) max_length: i64,
    #[prost(int64, tag = "12")]
    pub(crate) min_length: i64,
    #[prost(string, tag = "13")]
    pub(crate) pattern: String,
    #[prost(int64, tag = "14")]
    pub(crate) max_items: i64,
    #[prost(int64, tag = "15")]
    pub(crate) min_items: i64,
    #[prost(bool, tag = "16")]
    pub(crate) unique_items: bool,
    #[prost(int64, tag = "17")]
    pub(crate) max_properties: i64,
    #[prost(int64, tag = "18")]
    pub(crate) min_properties: i64,
    #[prost(string, repeated, tag = "19")]
    pub(crate) required: Vec<String>,
    #[prost(message, repeated, tag = "20")]
    pub(crate) r#enum: Vec<Any>,
    #[prost(message, optional, boxed, tag = "21")]
    pub(crate) additional_properties: Option<Box<AdditionalPropertiesItem>>,
    #[prost(message, optional, tag = "22")]
    pub(crate) r#type: Option<TypeItem>,
    #[prost(message, optional, tag = "23")]
    pub(crate) items: Option<ItemsItem>,
    #[prost(message, repeated, tag = "24")]
    pub(crate) all_of: Vec<Schema>,
    #[prost(message, optional, tag = "25")]
    pub(crate) properties: Option<Properties>,
    #[prost(string, tag = "26")]
    pub(crate) discriminator: String,
    #[prost(bool, tag = "27")]
    pub(crate) read_only: bool,
    #[prost(message, optional, tag = "30")]
    pub(crate) example: Option<Any>,
    #[prost(message, repeated, tag = "31")]
    pub(crate) vendor_extension: Vec<NamedAny>,
}

#[derive(Clone, PartialEq, Message)]
pub(crate) struct AdditionalPropertiesItem {
    #[prost(oneof = "additional_properties_item::Oneof", tags = "1, 2")]
    pub(crate) oneof: Option<additional_properties_item::Oneof>,
}

pub(crate) mod additional_properties_item {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub(crate) enum Oneof {
        #[prost(message, tag = "1")]
        Schema(super::Schema),
        #[prost(bool, tag = "2")]
        Boolean(bool),
    }
}

#[derive(Clone, PartialEq, Message)]
pub(crate) struct TypeItem {
    #[prost(string, repeated, tag = "1")]
    pub(crate) value: Vec<String>,
}

#[derive(Clone, PartialEq, Message)]
pub(crate) struct ItemsItem {
    #[prost(message, repeated, tag = "1")]
    pub(crate) schema: Vec<Schema>,
}

#[derive(Clone, PartialEq, Message)]
pub(crate) struct Properties {
    #[prost(message, repeated, tag = "1")]
    pub(crate) additional_properties: Vec<NamedSchema>,
}

#[derive(Clone, PartialEq, Message)]
pub(crate) struct NamedSchema {
    #[prost(string, tag = "1")]
    pub(crate) name: String,
    #[prost(message, optional, tag = "2")]
    pub(crate) value: Option<Schema>,
}

#[derive(Clone, PartialEq, Message)]
pub(crate) struct Definitions {
    #[prost(message, repeated, tag = "1")]
    pub(crate) additional_properties: Vec<NamedSchema>,
}

#[derive(Clone, PartialEq, Message)]
pub(crate) struct SecurityRequirement {
    #[prost(message, repeated, tag = "1")]
    pub(crate) additional_properties: Vec<NamedStringArray>,
}

#[derive(Clone, PartialEq, Message)]
pub(crate) struct NamedStringArray {
    #[prost(string, tag = "1")]
    pub(crate) name: String,
    #[prost(message, optional, tag = "2")]
    pub(crate) value: Option<StringArray>,
}

#[derive(Clone, PartialEq, Message)]
pub(crate) struct StringArray {
    #[prost(string, repeated, tag = "1")]
    pub(crate) value: Vec<String>,
}

#[derive(Clone, PartialEq, Message)]
pub(crate) struct SecurityDefinitions {
    #[prost(message, repeated, tag = "1")]
    pub(crate) additional_properties: Vec<NamedSecurityDefinitionsItem>,
}

#[derive(Clone, PartialEq, Message)]
pub(crate) struct NamedSecurityDefinitionsItem {
    #[prost(string, tag = "1")]
    pub(crate) name: String,
    #[prost(message, optional, tag = "2")]
    pub(crate) value: Option<SecurityDefinitionsItem>,
}

#[derive(Clone, PartialEq, Message)]
pub(crate) struct SecurityDefinitionsItem {
    #[prost(message, optional, tag = "2")]
    pub(crate) api_key_security: Option<ApiKeySecurity>,
}

#[derive(Clone, PartialEq, Message)]
pub(crate) struct ApiKeySecurity {
    #[prost(string, tag = "1")]
    pub(crate) r#type: String,
    #[prost(string, tag = "2")]
    pub(crate) name: String,
    #[prost(string, tag = "3")]
    pub(crate) r#in: String,
    #[prost(string, tag = "4")]
    pub(crate) description: String,
    #[prost(message, repeated, tag = "5")]
    pub(crate) vendor_extension: Vec<NamedAny>,
}

// From JSON.

fn text(object: &Map<String, Value>, key: &str) -> String {
    object
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn flag(object: &Map<String, Value>, key: &str) -> bool {
    object.get(key).and_then(Value::as_bool).unwrap_or_default()
}

fn number(object: &Map<String, Value>, key: &str) -> f64 {
    object.get(key).and_then(Value::as_f64).unwrap_or_default()
}

fn integer(object: &Map<String, Value>, key: &str) -> i64 {
    object.get(key).and_then(Value::as_i64).unwrap_or_default()
}

fn texts(object: &Map<String, Value>, key: &str) -> Vec<String> {
    object
        .get(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect()
}

fn any(value: &Value) -> Any {
    Any {
        yaml: value.to_string(),
    }
}

fn vendor_extensions(object: &Map<String, Value>) -> Vec<NamedAny> {
    object
        .iter()
        .filter(|(key, _)| key.starts_with("x-"))
        .map(|(name, value)| NamedAny {
            name: name.clone(),
            value: Some(any(value)),
        })
        .collect()
}

fn to_document(document: &Value) -> Document {
    let empty = Map::new();
    let object = document.as_object().unwrap_or(&empty);
    let info = object
        .get("info")
        .and_then(Value::as_object)
        .map(|info| Info {
            title: text(info, "title"),
            version: text(info, "version"),
            description: text(info, "description"),
            vendor_extension: vendor_extensions(info),
        });
    let paths = object
        .get("paths")
        .and_then(Value::as_object)
        .map(|paths| Paths {
            vendor_extension: vendor_extensions(paths),
            path: paths
                .iter()
                .filter(|(name, _)| !name.starts_with("x-"))
                .filter_map(|(name, item)| {
                    Some(NamedPathItem {
                        name: name.clone(),
                        value: Some(to_path_item(item.as_object()?)),
                    })
                })
                .collect(),
        });
    let definitions = object
        .get("definitions")
        .and_then(Value::as_object)
        .map(|definitions| Definitions {
            additional_properties: named_schemas(definitions),
        });
    let security = object
        .get("security")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object)
        .map(|requirement| SecurityRequirement {
            additional_properties: requirement
                .iter()
                .map(|(name, scopes)| NamedStringArray {
                    name: name.clone(),
                    value: Some(StringArray {
                        value: scopes
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(Value::as_str)
                            .map(str::to_owned)
                            .collect(),
                    }),
                })
                .collect(),
        })
        .collect();
    let security_definitions = object
        .get("securityDefinitions")
        .and_then(Value::as_object)
        .map(|definitions| SecurityDefinitions {
            additional_properties: definitions
                .iter()
                .filter_map(|(name, definition)| {
                    let definition = definition.as_object()?;
                    (definition.get("type")? == "apiKey").then(|| NamedSecurityDefinitionsItem {
                        name: name.clone(),
                        value: Some(SecurityDefinitionsItem {
                            api_key_security: Some(ApiKeySecurity {
                                r#type: text(definition, "type"),
                                name: text(definition, "name"),
                                r#in: text(definition, "in"),
                                description: text(definition, "description"),
                                vendor_extension: vendor_extensions(definition),
                            }),
                        }),
                    })
                })
                .collect(),
        });
    Document {
        swagger: text(object, "swagger"),
        info,
        consumes: texts(object, "consumes"),
        produces: texts(object, "produces"),
        paths,
        definitions,
        security,
        security_definitions,
        vendor_extension: vendor_extensions(object),
    }
}

fn to_path_item(item: &Map<String, Value>) -> PathItem {
    let operation = |method: &str| {
        item.get(method)
            .and_then(Value::as_object)
            .map(to_operation)
    };
    PathItem {
        r#ref: text(item, "$ref"),
        get: operation("get"),
        put: operation("put"),
        post: operation("post"),
        delete: operation("delete"),
        options: operation("options"),
        head: operation("head"),
        patch: operation("patch"),
        parameters: parameters(item),
        vendor_extension: vendor_extensions(item),
    }
}

fn to_operation(operation: &Map<String, Value>) -> Operation {
    let responses = operation
        .get("responses")
        .and_then(Value::as_object)
        .map(|responses| Responses {
            response_code: responses
                .iter()
                .filter(|(code, _)| !code.starts_with("x-"))
                .filter_map(|(code, response)| {
                    let response = response.as_object()?;
                    Some(NamedResponseValue {
                        name: code.clone(),
                        value: Some(ResponseValue {
                            oneof: Some(response_value::Oneof::Response(Response {
                                description: text(response, "description"),
                                schema: response.get("schema").map(|schema| SchemaItem {
                                    schema: Some(to_schema(schema)),
                                }),
                                vendor_extension: vendor_extensions(response),
                            })),
                        }),
                    })
                })
                .collect(),
            vendor_extension: vendor_extensions(responses),
        });
    Operation {
        tags: texts(operation, "tags"),
        summary: text(operation, "summary"),
        description: text(operation, "description"),
        operation_id: text(operation, "operationId"),
        produces: texts(operation, "produces"),
        consumes: texts(operation, "consumes"),
        parameters: parameters(operation),
        responses,
        schemes: texts(operation, "schemes"),
        deprecated: flag(operation, "deprecated"),
        vendor_extension: vendor_extensions(operation),
    }
}

fn parameters(owner: &Map<String, Value>) -> Vec<ParametersItem> {
    owner
        .get("parameters")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object)
        .filter_map(|parameter| {
            let oneof = if parameter.contains_key("$ref") {
                parameters_item::Oneof::JsonReference(JsonReference {
                    r#ref: text(parameter, "$ref"),
                    description: text(parameter, "description"),
                })
            } else {
                parameters_item::Oneof::Parameter(Parameter {
                    oneof: Some(to_parameter(parameter)?),
                })
            };
            Some(ParametersItem { oneof: Some(oneof) })
        })
        .collect()
}

fn to_parameter(parameter: &Map<String, Value>) -> Option<parameter::Oneof> {
    use non_body_parameter::Oneof as Located;
    let located = |oneof| {
        Some(parameter::Oneof::NonBodyParameter(NonBodyParameter {
            oneof: Some(oneof),
        }))
    };
    let location = parameter.get("in").and_then(Value::as_str)?;
    match location {
        "body" => Some(parameter::Oneof::BodyParameter(BodyParameter {
            description: text(parameter, "description"),
            name: text(parameter, "name"),
            r#in: location.to_owned(),
            required: flag(parameter, "required"),
            schema: parameter.get("schema").map(to_schema),
            vendor_extension: vendor_extensions(parameter),
        })),
        "query" => located(Located::Query(QueryParameterSubSchema {
            required: flag(parameter, "required"),
            r#in: location.to_owned(),
            description: text(parameter, "description"),
            name: text(parameter, "name"),
            allow_empty_value: flag(parameter, "allowEmptyValue"),
            r#type: text(parameter, "type"),
            format: text(parameter, "format"),
            unique_items: flag(parameter, "uniqueItems"),
            vendor_extension: vendor_extensions(parameter),
        })),
        "path" => located(Located::Path(located_parameter!(
            PathParameterSubSchema,
            parameter
        ))),
        "header" => located(Located::Header(located_parameter!(
            HeaderParameterSubSchema,
            parameter
        ))),
        _ => None,
    }
}

fn named_schemas(schemas: &Map<String, Value>) -> Vec<NamedSchema> {
    schemas
        .iter()
        .map(|(name, schema)| NamedSchema {
            name: name.clone(),
            value: Some(to_schema(schema)),
        })
        .collect()
}

fn to_schema(schema: &Value) -> Schema {
    let empty = Map::new();
    let object = schema.as_object().unwrap_or(&empty);
    let additional_properties = object.get("additionalProperties").map(|value| {
        Box::new(AdditionalPropertiesItem {
            oneof: Some(match value {
                Value::Bool(allowed) => additional_properties_item::Oneof::Boolean(*allowed),
                schema => additional_properties_item::Oneof::Schema(to_schema(schema)),
            }),
        })
    });
    let r#type = object.get("type").map(|value| TypeItem {
        value: match value {
            Value::String(one) => vec![one.clone()],
            many => many
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
        },
    });
    let items = object.get("items").map(|value| ItemsItem {
        schema: match value {
            Value::Array(schemas) => schemas.iter().map(to_schema).collect(),
            schema => vec![to_schema(schema)],
        },
    });
    Schema {
        r#ref: text(object, "$ref"),
        format: text(object, "format"),
        title: text(object, "title"),
        description: text(object, "description"),
        default: object.get("default").map(any),
        multiple_of: number(object, "multipleOf"),
        maximum: number(object, "maximum"),
        exclusive_maximum: flag(object, "exclusiveMaximum"),
        minimum: number(object, "minimum"),
        exclusive_minimum: flag(object, "exclusiveMinimum"),
        max_length: integer(object, "maxLength"),
        min_length: integer(object, "minLength"),
        pattern: text(object, "pattern"),
        max_items: integer(object, "maxItems"),
        min_items: integer(object, "minItems"),
        unique_items: flag(object, "uniqueItems"),
        max_properties: integer(object, "maxProperties"),
        min_properties: integer(object, "minProperties"),
        required: texts(object, "required"),
        r#enum: object
            .get("enum")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(any)
            .collect(),
        additional_properties,
        r#type,
        items,
        all_of: object
            .get("allOf")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(to_schema)
            .collect(),
        properties: object
            .get("properties")
            .and_then(Value::as_object)
            .map(|properties| Properties {
                additional_properties: named_schemas(properties),
            }),
        discriminator: text(object, "discriminator"),
        read_only: flag(object, "readOnly"),
        example: object.get("example").map(any),
        vendor_extension: vendor_extensions(object),
    }
}

#[cfg(test)]
mod tests;
