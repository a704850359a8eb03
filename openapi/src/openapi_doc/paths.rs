//! The operations of one version, laid out as kube-apiserver documents a
//! cluster-scoped custom resource (its `apiextensions` OpenAPI builder):
//! the same paths, operation ids, descriptions, actions, parameters and
//! responses, plus the policy subresources `render` and `dry-run`.
//!
//! Two deliberate differences: PATCH lists no strategic merge patch (so
//! kubectl sends merge patches, as for custom resources), and every PATCH,
//! POST and PUT declares `fieldValidation`, without which kubectl's
//! client-side validation falls back to `/openapi/v2` as protobuf.

use utoipa::openapi::{
    Content, HttpMethod, Ref, RefOr, Required, Response,
    extensions::{Extensions, ExtensionsBuilder},
    path::{
        OperationBuilder, Parameter, ParameterBuilder, ParameterIn, PathItem, Paths, PathsBuilder,
    },
    request_body::{RequestBody, RequestBodyBuilder},
    response::{ResponseBuilder, Responses, ResponsesBuilder},
    schema::{Object, Type},
};

use super::{
    GVK_EXTENSION, V3_REF_PREFIX, meta,
    schemas::{DRY_RUN, RENDER, RENDER_REQUEST, schema_name},
};
use crate::{
    GROUP,
    resources::{ResourceKind, SUBRESOURCE_DRY_RUN, SUBRESOURCE_RENDER, SUBRESOURCE_STATUS},
};

/// The `x-kubernetes-action` extension of operations.
const ACTION_EXTENSION: &str = "x-kubernetes-action";
/// The body and answer media type.
const JSON: &str = "application/json";
/// A watch answers newline-delimited JSON events.
const JSON_WATCH: &str = "application/json;stream=watch";
/// The patch media types served; strategic merge patch is not one of them.
pub(crate) const PATCH_TYPES: [&str; 3] = [
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/apply-patch+yaml",
];

/// Every path of `version`.
pub(crate) fn paths(version: &str) -> Paths {
    let mut paths = PathsBuilder::new();
    for kind in ResourceKind::ALL {
        let api = Api { version, kind };
        for (path, item) in api.path_items() {
            paths = paths.path(path, item);
        }
    }
    paths.build()
}

/// One kind in one version: builds its operations.
struct Api<'a> {
    version: &'a str,
    kind: ResourceKind,
}

impl Api<'_> {
    /// Every path of the kind with its operations.
    fn path_items(&self) -> Vec<(String, PathItem)> {
        let collection = format!("/apis/{GROUP}/{}/{}", self.version, self.kind.plural());
        let object = format!("{collection}/{{name}}");
        let kind = self.kind.kind();
        let mut items = vec![
            (
                collection,
                path_item(
                    vec![pretty()],
                    vec![
                        (HttpMethod::Get, self.list()),
                        (HttpMethod::Post, self.create()),
                        (HttpMethod::Delete, self.delete_collection()),
                    ],
                ),
            ),
            (
                object.clone(),
                path_item(
                    vec![self.name_parameter(), pretty()],
                    vec![
                        (HttpMethod::Get, self.read(None)),
                        (HttpMethod::Put, self.replace(None)),
                        (HttpMethod::Patch, self.patch(None)),
                        (HttpMethod::Delete, self.delete()),
                    ],
                ),
            ),
        ];
        if self.kind.has_status() {
            let status = Some(SUBRESOURCE_STATUS);
            items.push((
                format!("{object}/{SUBRESOURCE_STATUS}"),
                path_item(
                    vec![self.name_parameter(), pretty()],
                    vec![
                        (HttpMethod::Get, self.read(status)),
                        (HttpMethod::Put, self.replace(status)),
                        (HttpMethod::Patch, self.patch(status)),
                    ],
                ),
            ));
        }
        if self.kind.has_render() {
            let render = Some(SUBRESOURCE_RENDER);
            let get = self
                .operation("get", "read", render)
                .description(Some(format!(
                    "render the specified {kind} for one node against its stored NodeNetworkState, without writing anything"
                )))
                .parameter(query(
                    "node",
                    Type::String,
                    "The node to render the policy for.",
                    Required::True,
                ))
                .responses(ok(&self.subresource_answer(RENDER)));
            let post = self
                .operation("post", "create", render)
                .description(Some(format!(
                    "render the specified {kind} against the network state in the body, without writing anything"
                )))
                .request_body(Some(body(
                    &[JSON],
                    &self.own(RENDER_REQUEST),
                    Required::True,
                )))
                .responses(ok(&self.subresource_answer(RENDER)));
            items.push((
                format!("{object}/{SUBRESOURCE_RENDER}"),
                path_item(
                    vec![self.name_parameter(), pretty()],
                    vec![(HttpMethod::Get, get), (HttpMethod::Post, post)],
                ),
            ));
        }
        if self.kind.has_dry_run() {
            let post = self
                .operation("post", "create", Some(SUBRESOURCE_DRY_RUN))
                .description(Some(format!(
                    "show what the {kind} in the body (or, with an empty body, the stored one) would do on every node it selects, without writing anything"
                )))
                .request_body(Some(body(&[JSON], &self.own(kind), Required::False)))
                .responses(ok(&self.subresource_answer(DRY_RUN)));
            items.push((
                format!("{object}/{SUBRESOURCE_DRY_RUN}"),
                path_item(
                    vec![self.name_parameter(), pretty()],
                    vec![(HttpMethod::Post, post)],
                ),
            ));
        }
        items
    }

    fn list(&self) -> OperationBuilder {
        // A list, or with `watch` a stream of events.
        let mut answers = content(&[JSON], &self.own(self.kind.list_kind()));
        answers.extend(content(&[JSON_WATCH], &meta_ref(meta::WATCH_EVENT)));
        self.operation("list", "list", None)
            .description(Some(format!(
                "list or watch objects of kind {}",
                self.kind.kind()
            )))
            .parameters(Some(list_parameters(true)))
            .responses(responses([("200", "OK", answers)]))
    }

    fn create(&self) -> OperationBuilder {
        let kind = self.kind.kind();
        let object = self.own(kind);
        self.operation("post", "create", None)
            .description(Some(format!("create a {kind}")))
            .parameters(Some(write_parameters()))
            .request_body(Some(body(&[JSON], &object, Required::True)))
            .responses(responses([
                ("200", "OK", content(&[JSON], &object)),
                ("201", "Created", content(&[JSON], &object)),
                ("202", "Accepted", content(&[JSON], &object)),
            ]))
    }

    fn delete_collection(&self) -> OperationBuilder {
        let mut parameters = delete_parameters();
        parameters.extend(list_parameters(false));
        self.operation("deletecollection", "deletecollection", None)
            .description(Some(format!("delete collection of {}", self.kind.kind())))
            .parameters(Some(parameters))
            .request_body(Some(body(
                &[JSON],
                &meta_ref(meta::DELETE_OPTIONS),
                Required::False,
            )))
            .responses(ok(&meta_ref(meta::STATUS)))
    }

    fn read(&self, subresource: Option<&str>) -> OperationBuilder {
        self.operation("get", "read", subresource)
            .description(Some(format!(
                "read{} the specified {}",
                of(subresource),
                self.kind.kind()
            )))
            .responses(ok(&self.own(self.kind.kind())))
    }

    fn replace(&self, subresource: Option<&str>) -> OperationBuilder {
        let object = self.own(self.kind.kind());
        self.operation("put", "replace", subresource)
            .description(Some(format!(
                "replace{} the specified {}",
                of(subresource),
                self.kind.kind()
            )))
            .parameters(Some(write_parameters()))
            .request_body(Some(body(&[JSON], &object, Required::True)))
            .responses(responses([
                ("200", "OK", content(&[JSON], &object)),
                ("201", "Created", content(&[JSON], &object)),
            ]))
    }

    fn patch(&self, subresource: Option<&str>) -> OperationBuilder {
        let object = self.own(self.kind.kind());
        let mut parameters = write_parameters();
        parameters.push(query(
            "force",
            Type::Boolean,
            "Server-side apply only: take over fields other managers own instead of failing with a conflict.",
            Required::False,
        ));
        self.operation("patch", "patch", subresource)
            .description(Some(format!(
                "partially update{} the specified {}",
                of(subresource),
                self.kind.kind()
            )))
            .parameters(Some(parameters))
            .request_body(Some(body(
                &PATCH_TYPES,
                &meta_ref(meta::PATCH),
                Required::True,
            )))
            .responses(responses([
                ("200", "OK", content(&[JSON], &object)),
                ("201", "Created", content(&[JSON], &object)),
            ]))
    }

    fn delete(&self) -> OperationBuilder {
        let status = meta_ref(meta::STATUS);
        self.operation("delete", "delete", None)
            .description(Some(format!("delete a {}", self.kind.kind())))
            .parameters(Some(delete_parameters()))
            .request_body(Some(body(
                &[JSON],
                &meta_ref(meta::DELETE_OPTIONS),
                Required::False,
            )))
            .responses(responses([
                ("200", "OK", content(&[JSON], &status)),
                ("202", "Accepted", content(&[JSON], &status)),
            ]))
    }

    /// An operation with kube-apiserver's id, tag and extensions: `action`
    /// is the `x-kubernetes-action`, `verb` starts the operation id.
    fn operation(&self, action: &str, verb: &str, subresource: Option<&str>) -> OperationBuilder {
        let operation_id = format!(
            "{verb}{}{}{}{}",
            camel_words(GROUP),
            capitalize(self.version),
            self.kind.kind(),
            subresource.map(camel_words).unwrap_or_default()
        );
        OperationBuilder::new()
            .operation_id(Some(operation_id))
            .tag(format!(
                "{}_{}",
                lower_first(&camel_words(GROUP)),
                self.version
            ))
            .extensions(Some(self.extensions(action)))
    }

    /// `x-kubernetes-action` and `x-kubernetes-group-version-kind` (an
    /// object on operations, a list on schemas).
    fn extensions(&self, action: &str) -> Extensions {
        ExtensionsBuilder::new()
            .add(ACTION_EXTENSION, action)
            .add(
                GVK_EXTENSION,
                serde_json::json!({
                    "group": GROUP,
                    "version": self.version,
                    "kind": self.kind.kind(),
                }),
            )
            .build()
    }

    /// The `{name}` path parameter.
    fn name_parameter(&self) -> Parameter {
        ParameterBuilder::new()
            .name("name")
            .parameter_in(ParameterIn::Path)
            .description(Some(format!("name of the {}", self.kind.kind())))
            .required(Required::True)
            .schema(Some(Object::with_type(Type::String)))
            .build()
    }

    /// A reference to our schema `name` in this version.
    fn own(&self, name: &str) -> Ref {
        Ref::new(format!(
            "{V3_REF_PREFIX}{}",
            schema_name(self.version, name)
        ))
    }

    /// The subresources answer objects of the version asked.
    fn subresource_answer(&self, name: &str) -> Ref {
        self.own(name)
    }
}

/// A path item with path-level `parameters` and its operations.
fn path_item(
    parameters: Vec<Parameter>,
    operations: Vec<(HttpMethod, OperationBuilder)>,
) -> PathItem {
    let mut operations = operations.into_iter();
    let Some((method, first)) = operations.next() else {
        return PathItem::default();
    };
    let mut item = PathItem::new(method, first.build());
    for (method, operation) in operations {
        item.merge_operations(PathItem::new(method, operation.build()));
    }
    item.parameters = Some(parameters);
    item
}

/// A reference to an apimachinery schema.
fn meta_ref(name: &str) -> Ref {
    Ref::new(format!("{V3_REF_PREFIX}{name}"))
}

/// `" status of"` for the status subresource, as in "read status of the
/// specified …".
fn of(subresource: Option<&str>) -> String {
    subresource
        .map(|subresource| format!(" {subresource} of"))
        .unwrap_or_default()
}

/// A content map with `schema` under each of `media_types`.
fn content(media_types: &[&str], schema: &Ref) -> ContentMap {
    media_types
        .iter()
        .map(|media_type| {
            (
                (*media_type).to_owned(),
                Content::new(Some(RefOr::Ref(schema.clone()))),
            )
        })
        .collect()
}

/// A request body of `schema` in each of `media_types`.
fn body(media_types: &[&str], schema: &Ref, required: Required) -> RequestBody {
    content(media_types, schema)
        .into_iter()
        .fold(RequestBodyBuilder::new(), |body, (media_type, content)| {
            body.content(media_type, content)
        })
        .required(Some(required))
        .build()
}

/// Media types with their content.
type ContentMap = Vec<(String, Content)>;

/// The responses: each code with its description and content, plus the
/// 401 every Kubernetes operation documents.
fn responses<const N: usize>(entries: [(&str, &str, ContentMap); N]) -> Responses {
    let mut responses = ResponsesBuilder::new();
    for (code, description, content) in entries {
        let response: Response = content
            .into_iter()
            .fold(
                ResponseBuilder::new().description(description),
                |response, (media_type, content)| response.content(media_type, content),
            )
            .build();
        responses = responses.response(code, response);
    }
    responses
        .response("401", Response::new("Unauthorized"))
        .build()
}

/// A 200 answering `schema` as JSON.
fn ok(schema: &Ref) -> Responses {
    responses([("200", "OK", content(&[JSON], schema))])
}

/// A query parameter.
fn query(name: &str, schema_type: Type, description: &str, required: Required) -> Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Query)
        .description(Some(description))
        .required(required)
        .schema(Some(Object::with_type(schema_type)))
        .build()
}

/// An optional query parameter.
fn optional(name: &str, schema_type: Type, description: &str) -> Parameter {
    query(name, schema_type, description, Required::False)
}

/// `pretty`, declared on every path.
fn pretty() -> Parameter {
    optional(
        "pretty",
        Type::String,
        "If 'true', the answer is indented for people to read.",
    )
}

/// `dryRun`.
fn dry_run() -> Parameter {
    optional(
        "dryRun",
        Type::String,
        "`All` runs every check (validation, conflicts) and answers as if the request succeeded, without storing anything.",
    )
}

/// The parameters of create, update and patch.
fn write_parameters() -> Vec<Parameter> {
    vec![
        dry_run(),
        optional(
            "fieldManager",
            Type::String,
            "The name of the actor making the change, recorded in managedFields; at most 128 printable characters. Required for server-side apply.",
        ),
        optional(
            "fieldValidation",
            Type::String,
            "What to do with unknown or duplicate fields in the body: `Ignore` drops them, `Warn` drops them and answers a warning for each, `Strict` rejects the request.",
        ),
    ]
}

/// The parameters of delete and delete-collection.
fn delete_parameters() -> Vec<Parameter> {
    vec![
        dry_run(),
        optional(
            "gracePeriodSeconds",
            Type::Integer,
            "Seconds to wait before deleting; 0 deletes at once.",
        ),
        optional(
            "propagationPolicy",
            Type::String,
            "What happens to dependents: `Orphan`, `Background` or `Foreground`.",
        ),
        optional(
            "orphanDependents",
            Type::Boolean,
            "Deprecated form of `propagationPolicy=Orphan`.",
        ),
    ]
}

/// The parameters of list (with the watch ones when `watch`) and
/// delete-collection.
fn list_parameters(watch: bool) -> Vec<Parameter> {
    let mut parameters = vec![
        optional(
            "labelSelector",
            Type::String,
            "Only objects whose labels match, e.g. `a=b,c!=d,e in (f,g),!h`. Defaults to everything.",
        ),
        optional(
            "fieldSelector",
            Type::String,
            "Only objects whose fields match, e.g. `metadata.name=x`. Defaults to everything.",
        ),
    ];
    if watch {
        parameters.extend([
            optional(
                "watch",
                Type::Boolean,
                "Instead of a list, stream the changes (ADDED, MODIFIED, DELETED) after `resourceVersion` as newline-delimited watch events.",
            ),
            optional(
                "allowWatchBookmarks",
                Type::Boolean,
                "Let the server send BOOKMARK events, which carry only a newer resourceVersion to resume from. Ignored unless watching.",
            ),
        ]);
    }
    parameters.extend([
        optional(
            "resourceVersion",
            Type::String,
            "Which version of the store to read: unset for the latest, `0` for any, or a version to list at (or watch from).",
        ),
        optional(
            "resourceVersionMatch",
            Type::String,
            "How `resourceVersion` applies to a list: `NotOlderThan` or `Exact`.",
        ),
        optional(
            "sendInitialEvents",
            Type::Boolean,
            "With `watch`, start the stream with an ADDED event per existing object, then a BOOKMARK marking the end of them.",
        ),
        optional(
            "timeoutSeconds",
            Type::Integer,
            "End the list or watch after this many seconds.",
        ),
        optional(
            "limit",
            Type::Integer,
            "Answer at most this many items; if more remain, the list's `metadata.continue` holds a token for the next page. Not used with `watch`.",
        ),
        optional(
            "continue",
            Type::String,
            "The token of the next page, from a previous answer's `metadata.continue`, with the other parameters unchanged. An expired token answers 410 Gone.",
        ),
    ]);
    parameters
}

/// `nmstate.io` → `NmstateIo`; `dry-run` → `DryRun`.
fn camel_words(text: &str) -> String {
    text.split(['.', '-']).map(capitalize).collect()
}

/// `v1beta1` → `V1beta1`.
fn capitalize(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// `NmstateIo` → `nmstateIo`.
fn lower_first(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|first| first.to_lowercase().chain(chars).collect())
        .unwrap_or_default()
}
