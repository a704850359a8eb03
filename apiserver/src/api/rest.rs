//! The verbs on nmstate.io objects: get, list, create, update, patch,
//! delete, deletecollection, and their `/status` forms, with Kubernetes'
//! semantics (optimistic concurrency on `resourceVersion`, finalizers,
//! dry run, field validation, managed fields). Watches live in
//! [`super::watch`].
//!
//! Reads of single objects go to the store; lists and watches are served by
//! the watch cache. Every write is one compare-and-swap on the store, so two
//! replicas of the server can never lose each other's writes.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use nmstate_openapi::ResourceKind;
use serde_json::{Value, json};

use super::{
    codec::{
        self, Encoding, RequestFormat, ResponseFormat, parse_document,
        parse_document_setting_aside_current_state, respond,
    },
    error::{ApiError, MODIFIED, Result},
    route::{Query, ResourcePath, ResourceVersionMatch, Subresource},
    table,
};
use crate::{
    auth::authorize::Obligation,
    body::Body,
    cache::{self, CachedObject, Expected, FRESHNESS_TIMEOUT, WatchFilter},
    rules::{
        current_state::{self, SetAside},
        managed_fields::{self, Manager, Options},
        object::{
            self, Decoded, UpdateScope, check_type_meta, creation_name, decode_object,
            for_response, mark_deleted, meta_str, name_of, prepare_create, prepare_update,
            ready_to_delete,
        },
        patch::{self, PatchType},
        selector::{FieldSelector, LabelSelector},
    },
    state::AppState,
    status::{Details, Status},
    storage::{self, KeyValue, ListOptions, Revision, object_key, resource_prefix},
};

/// How many times a patch is applied again when another writer wins the
/// race. Every lost race is another writer's success, so this bounds only
/// a pathological stream of writers; Kubernetes retries without bound.
const PATCH_ATTEMPTS: usize = 64;

/// Everything a verb needs about its request.
#[derive(Debug)]
pub struct Request<'a> {
    /// Shared server state.
    pub state: &'a Arc<AppState>,
    /// Which resource, name and subresource.
    pub path: &'a ResourcePath,
    /// Query parameters.
    pub query: &'a Query,
    /// Request headers.
    pub headers: &'a HeaderMap,
    /// The chosen response format.
    pub format: ResponseFormat,
    /// How to encode the response.
    pub encoding: Encoding,
    /// Table options, when the response is a Table.
    pub table: table::TableOptions,
    /// What authorization left for the verb to check on the object itself.
    pub obligation: Option<&'a Obligation>,
}

impl Request<'_> {
    pub(crate) fn kind(&self) -> ResourceKind {
        self.path.kind
    }

    fn name(&self) -> Result<&str> {
        self.path.name.as_deref().ok_or(ApiError::NoSuchPath)
    }

    fn key(&self) -> Result<String> {
        Ok(object_key(self.kind().plural(), self.name()?))
    }

    fn scope(&self) -> UpdateScope {
        match self.path.subresource {
            Some(Subresource::Status) => UpdateScope::Status,
            _ => UpdateScope::Main,
        }
    }

    /// The field manager: `?fieldManager=`, else derived from the
    /// User-Agent as Kubernetes does (`kubectl/v1.32.4 (linux/amd64)` →
    /// `kubectl`).
    fn field_manager(&self) -> String {
        let agent = self
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok());
        managed_fields::field_manager(self.query.field_manager.as_deref(), agent)
    }

    /// Records the write's field ownership in `new.metadata.managedFields`
    /// (an `Update` operation; server-side apply records its own).
    /// `aside`: the current states set aside from `old` and `new`.
    fn track_fields(&self, old: Option<&Value>, new: &mut Value, now: &str, aside: SetAside<'_>) {
        let name = self.field_manager();
        let manager = Manager {
            name: &name,
            api_version: nmstate_openapi::api_version(self.path.version).unwrap_or_default(),
            subresource: (self.scope() == UpdateScope::Status).then_some("status"),
        };
        managed_fields::update_managed_fields_setting_aside(old, new, &manager, now, aside);
    }

    /// One object in the response format asked for.
    fn reply_object(&self, code: StatusCode, object: Value, warnings: &[String]) -> Response<Body> {
        let body = match self.format {
            ResponseFormat::Table => {
                table::object_table(self.kind(), &object, self.table, jiff::Timestamp::now())
            }
            ResponseFormat::Metadata => partial_metadata(&object),
            _ => object,
        };
        with_warnings(respond(code, &body, self.encoding), warnings)
    }

    fn read_format(&self) -> Result<RequestFormat> {
        RequestFormat::from_headers(self.headers)
    }
}

fn partial_metadata(object: &Value) -> Value {
    partial_metadata_of(object.get("metadata").cloned().unwrap_or(json!({})))
}

fn partial_metadata_of(metadata: Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
    })
}

/// Adds `Warning: 299 - "..."` headers, as Kubernetes sends for dropped
/// unknown fields under `fieldValidation=Warn`.
pub(crate) fn with_warnings(mut response: Response<Body>, warnings: &[String]) -> Response<Body> {
    for warning in warnings {
        let escaped = warning.replace('\\', "\\\\").replace('"', "\\\"");
        if let Ok(value) = HeaderValue::from_str(&format!("299 - \"{escaped}\"")) {
            response.headers_mut().append("warning", value);
        }
    }
    response
}

/// Decodes a stored value; bytes that are not a JSON object of this kind
/// are reported for that key, never a panic.
pub fn decode_stored(kind: ResourceKind, kv: &KeyValue) -> Result<Value> {
    let value: Value = serde_json::from_slice(&kv.value)
        .map_err(|e| ApiError::Internal(format!("stored value at {} is not JSON: {e}", kv.key)))?;
    check_stored_kind(kind, kv, &value)?;
    Ok(value)
}

/// A stored object of another kind than its key's is the store's fault.
fn check_stored_kind(kind: ResourceKind, kv: &KeyValue, object: &Value) -> Result<()> {
    if object.get("kind").and_then(Value::as_str) == Some(kind.kind()) {
        return Ok(());
    }
    Err(ApiError::Internal(format!(
        "stored value at {} is not a {}",
        kv.key,
        kind.kind()
    )))
}

/// The stored value of the request's object (404 if there is none).
async fn read_stored(request: &Request<'_>) -> Result<KeyValue> {
    request
        .state
        .store
        .get(&request.key()?)
        .await?
        .ok_or_else(|| ApiError::NotFound {
            kind: request.kind(),
            name: request.name().unwrap_or_default().to_string(),
        })
}

async fn read(request: &Request<'_>) -> Result<(KeyValue, Value)> {
    let kind = request.kind();
    let name = request.name()?;
    let kv = read_stored(request).await?;
    let object = decode_stored(kind, &kv)?;
    check_obligation(request, name, &object)?;
    Ok((kv, object))
}

/// As [`read`], for a write that leaves a node state's current state as
/// it is: the object comes with `{}` in the current state's place and the
/// current state's text beside it (see
/// [`CachedObject::to_value_setting_aside_current_state`]); the text is
/// never parsed.
async fn read_setting_aside_current_state(
    request: &Request<'_>,
) -> Result<(KeyValue, Value, Option<String>)> {
    let kind = request.kind();
    let name = request.name()?;
    let kv = read_stored(request).await?;
    let cached = CachedObject::decode(name, kv.mod_revision, &kv.value).map_err(|e| {
        ApiError::Internal(format!("stored value at {} cannot be read: {e}", kv.key))
    })?;
    check_stored_kind(kind, &kv, cached.summary())?;
    let (mut object, text) = cached.to_value_setting_aside_current_state();
    // As stored: the revision is the key's, not a field.
    object::metadata_mut(&mut object).remove("resourceVersion");
    check_obligation(request, name, &object)?;
    Ok((kv, object, text))
}

/// Whether a patch of `kind` leaves `status.currentState` alone, so that
/// it can be set aside while the patch is applied: a merge patch of a
/// node state that does not name it (an agent's heartbeat, a label). A
/// JSON patch may test or move anything, and server-side apply owns what
/// it names, so both take the whole object.
fn leaves_current_state(kind: ResourceKind, patch_type: PatchType, bytes: &[u8]) -> bool {
    kind == ResourceKind::NodeNetworkState
        && patch_type == PatchType::Merge
        && serde_json::from_slice::<Value>(bytes).is_ok_and(|patch| {
            patch.is_object()
                && patch
                    .get("status")
                    .and_then(Value::as_object)
                    .is_none_or(|status| !status.contains_key("currentState"))
        })
}

/// The part of authorization that depends on the stored object (a node may
/// only touch enactments labelled for it), checked on every read of it.
fn check_obligation(request: &Request<'_>, name: &str, object: &Value) -> Result<()> {
    match request.obligation {
        Some(obligation) => obligation
            .check_object(name, object)
            .map_err(ApiError::Forbidden),
        None => Ok(()),
    }
}

/// GET one object (or its status).
pub async fn get(request: &Request<'_>) -> Result<Response<Body>> {
    let (kv, object) = read(request).await?;
    let object = for_response(object, request.path.version, kv.mod_revision);
    Ok(request.reply_object(StatusCode::OK, object, &[]))
}

/// The parsed selectors of a list or watch.
#[derive(Clone, Debug, Default)]
pub struct Selectors {
    /// `labelSelector`.
    pub labels: LabelSelector,
    /// `fieldSelector`.
    pub fields: FieldSelector,
}

impl Selectors {
    /// Parses both selectors; 400 naming the problem.
    pub fn parse(kind: ResourceKind, query: &Query) -> Result<Self> {
        let labels = match &query.label_selector {
            Some(selector) => {
                LabelSelector::parse(selector).map_err(|e| ApiError::BadRequest(e.to_string()))?
            }
            None => LabelSelector::default(),
        };
        let fields = match &query.field_selector {
            Some(selector) => FieldSelector::parse(selector, kind)
                .map_err(|e| ApiError::BadRequest(e.to_string()))?,
            None => FieldSelector::default(),
        };
        Ok(Self { labels, fields })
    }

    /// Whether an object passes both.
    pub fn matches(&self, object: &Value) -> bool {
        self.labels.matches_object(object) && self.fields.matches_object(object)
    }

    /// Whether both are empty.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.fields.is_empty()
    }

    /// The watch-cache filter: indexed by name when the field selector pins
    /// `metadata.name` (an agent's watch of its own node state), else by
    /// node when the selectors pin the enactment's node (so a node agent's
    /// watches cost nothing for the others), with the full selectors as the
    /// predicate.
    pub fn filter(&self, kind: ResourceKind) -> WatchFilter {
        let node = (kind == ResourceKind::NodeNetworkConfigurationEnactment)
            .then(|| {
                self.labels
                    .exact_value(nmstate_openapi::ENACTMENT_NODE_LABEL)
                    .or_else(|| self.fields.exact_value("node"))
            })
            .flatten()
            .map(str::to_string);
        let name = self.fields.exact_value("metadata.name").map(str::to_string);
        let selectors = self.clone();
        let predicate = move |object: &CachedObject| selectors.matches(object.summary());
        let filter = match node {
            Some(node) => {
                WatchFilter::indexed(nmstate_openapi::ENACTMENT_NODE_LABEL, node, predicate)
            }
            None => WatchFilter::predicate(predicate),
        };
        filter.named(name)
    }
}

/// The state of a paginated list, carried in the `continue` token.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct ContinueToken {
    /// Token format version, as Kubernetes writes it.
    v: String,
    /// The revision the first page was read at.
    rv: Revision,
    /// The name after which the next page starts, followed by NUL.
    start: String,
}

fn encode_continue(revision: Revision, last_name: &str) -> String {
    use base64::Engine;
    let token = ContinueToken {
        v: "meta.k8s.io/v1".into(),
        rv: revision,
        start: format!("{last_name}\u{0}"),
    };
    base64::engine::general_purpose::URL_SAFE.encode(serde_json::to_vec(&token).unwrap_or_default())
}

fn decode_continue(token: &str) -> Result<(Revision, String)> {
    use base64::Engine;
    let bad = || {
        ApiError::BadRequest("continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)".into())
    };
    let bytes = base64::engine::general_purpose::URL_SAFE
        .decode(token)
        .or_else(|_| base64::engine::general_purpose::STANDARD.decode(token))
        .map_err(|_| bad())?;
    let token: ContinueToken = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    if token.v != "meta.k8s.io/v1" || token.rv <= 0 {
        return Err(bad());
    }
    let start = token.start.trim_end_matches('\u{0}').to_string();
    Ok((token.rv, start))
}

/// Objects of one list page, at one revision.
#[derive(Debug)]
pub struct Page {
    /// The objects, in name order, with `resourceVersion` set.
    pub items: Vec<Arc<CachedObject>>,
    /// The revision the list was read at.
    pub revision: Revision,
    /// The continue token for the next page, if any.
    pub continue_token: Option<String>,
    /// How many objects follow, when known (no selector).
    pub remaining: Option<u64>,
}

/// Reads one page of matching objects: from the watch cache when it can
/// answer (consistent reads wait until it has caught up with the store),
/// else from the store.
pub async fn list_page(
    state: &AppState,
    kind: ResourceKind,
    query: &Query,
    selectors: &Selectors,
) -> Result<Page> {
    let cache = state.caches.get(kind);
    let limit = query.limit;
    // A continue token or an exact read names one revision: the cache's
    // window may still hold it.
    let exact = match &query.continue_token {
        Some(token) => Some(decode_continue(token)?),
        None => match (&query.resource_version, query.resource_version_match) {
            (Some(rv), Some(ResourceVersionMatch::Exact)) => {
                Some((object::parse_resource_version(rv)?, String::new()))
            }
            _ => None,
        },
    };
    if let Some((revision, start_after)) = exact {
        return match cache.list_at(revision) {
            Ok(objects) => {
                let matching = objects
                    .into_iter()
                    .filter(|o| selectors.matches(o.summary()))
                    .collect();
                Ok(paginate(matching, revision, &start_after, limit, selectors))
            }
            Err(_) => {
                store_page(
                    state,
                    kind,
                    query,
                    selectors,
                    Some(revision),
                    Some(start_after),
                )
                .await
            }
        };
    }
    let wanted = match &query.resource_version {
        // "Any" freshness: whatever the cache holds.
        Some(rv) if rv == "0" => Some(0),
        Some(rv) => Some(object::parse_resource_version(rv)?),
        // Consistent: at least the store's current revision.
        None => None,
    };
    let minimum = match wanted {
        Some(rv) => rv,
        None => state.store.current_revision().await?,
    };
    match cache.wait_until_fresh(minimum, FRESHNESS_TIMEOUT).await {
        Ok(_) => {}
        Err(cache::Error::TooLarge { requested, current }) if wanted.is_some() => {
            return Err(ApiError::Timeout(format!(
                "Too large resource version: {requested}, current: {current}"
            )));
        }
        Err(e) => {
            tracing::debug!(error = %e, resource = kind.plural(), "watch cache cannot answer; listing from the store");
            return store_page(state, kind, query, selectors, None, None).await;
        }
    }
    let (revision, objects) = cache.snapshot_matching(&selectors.filter(kind));
    Ok(paginate(objects, revision, "", limit, selectors))
}

/// The page of `objects` (sorted by name, already filtered) after
/// `start_after`.
fn paginate(
    objects: Vec<Arc<CachedObject>>,
    revision: Revision,
    start_after: &str,
    limit: Option<usize>,
    selectors: &Selectors,
) -> Page {
    let from = if start_after.is_empty() {
        0
    } else {
        objects.partition_point(|object| object.name.as_str() <= start_after)
    };
    let rest = objects.len() - from;
    let take = limit.map_or(rest, |limit| limit.min(rest));
    let items: Vec<Arc<CachedObject>> = objects[from..from + take].to_vec();
    let left = (rest - take) as u64;
    let continue_token = match items.last() {
        Some(last) if left > 0 => Some(encode_continue(revision, &last.name)),
        _ => None,
    };
    Page {
        remaining: (left > 0 && selectors.is_empty()).then_some(left),
        items,
        revision,
        continue_token,
    }
}

/// Reads one page from the store, at `revision` if given.
async fn store_page(
    state: &AppState,
    kind: ResourceKind,
    query: &Query,
    selectors: &Selectors,
    mut revision: Option<Revision>,
    mut start_after: Option<String>,
) -> Result<Page> {
    start_after = start_after.filter(|name| !name.is_empty());
    let prefix = resource_prefix(kind.plural());
    let limit = query.limit;
    let mut items = Vec::new();
    // After the loop: whether keys remain after the last one looked at, and
    // how many (before filtering).
    let (more, remaining) = 'pages: loop {
        let page = state
            .store
            .list(ListOptions {
                prefix: prefix.clone(),
                revision,
                limit,
                start_after: start_after.as_ref().map(|name| format!("{prefix}{name}")),
            })
            .await
            .map_err(|e| match e {
                storage::Error::Compacted { .. } if query.continue_token.is_some() => {
                    ApiError::Expired(CONTINUE_EXPIRED.into())
                }
                other => other.into(),
            })?;
        revision = Some(page.revision);
        let fetched = page.items.len();
        for (index, kv) in page.items.iter().enumerate() {
            let name = kv.key.trim_start_matches(&prefix).to_string();
            match CachedObject::decode(&name, kv.mod_revision, &kv.value) {
                Ok(object) if selectors.matches(object.summary()) => items.push(Arc::new(object)),
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(key = %kv.key, error = %e, "skipping undecodable object in list")
                }
            }
            start_after = Some(name);
            if limit.is_some_and(|limit| items.len() >= limit) {
                let left = (fetched - index - 1) as u64 + page.remaining;
                break 'pages (left > 0, left);
            }
        }
        if page.remaining == 0 || fetched == 0 {
            break 'pages (false, 0);
        }
    };
    let revision = revision.unwrap_or_default();
    let continue_token = match (&start_after, more) {
        (Some(last), true) => Some(encode_continue(revision, last)),
        _ => None,
    };
    Ok(Page {
        items,
        revision,
        remaining: (more && selectors.is_empty()).then_some(remaining),
        continue_token,
    })
}

/// Kubernetes' message for a continue token whose revision was compacted.
const CONTINUE_EXPIRED: &str = "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.";

/// GET a collection.
pub async fn list(request: &Request<'_>) -> Result<Response<Body>> {
    let kind = request.kind();
    let selectors = Selectors::parse(kind, request.query)?;
    let page = list_page(request.state, kind, request.query, &selectors).await?;
    let mut list_meta = json!({"resourceVersion": page.revision.to_string()});
    if let Some(token) = &page.continue_token {
        list_meta["continue"] = token.clone().into();
    }
    if let Some(remaining) = page.remaining {
        list_meta["remainingItemCount"] = remaining.into();
    }
    let version = request.path.version;
    let api_version = nmstate_openapi::api_version(version).unwrap_or_default();
    let body = match request.format {
        ResponseFormat::Table => {
            // Rows read the cached objects in place; only whole objects
            // embedded in another version need a copy with that apiVersion.
            let converted: Vec<Value> = if request.table.include_object
                == table::IncludeObject::Object
                && version != nmstate_openapi::STORAGE_VERSION
            {
                page.items
                    .iter()
                    .map(|object| for_response(object.to_value(), version, object.revision))
                    .collect()
            } else {
                Vec::new()
            };
            let printed: Vec<table::Printed<'_>> = if converted.is_empty() {
                page.items
                    .iter()
                    .map(|object| table::Printed::cached(object))
                    .collect()
            } else {
                converted.iter().map(table::Printed::from).collect()
            };
            if !request.encoding.yaml && !request.encoding.pretty {
                // kubectl's case, for thousands of rows: straight to bytes.
                let now = jiff::Timestamp::now();
                return table::table_json(kind, &printed, request.table, list_meta, now)
                    .map(|bytes| {
                        codec::respond_bytes(
                            StatusCode::OK,
                            bytes,
                            "application/json",
                            request.encoding.gzip,
                        )
                    })
                    .map_err(|error| ApiError::Internal(format!("encoding a Table: {error}")));
            }
            table::table(
                kind,
                &printed,
                request.table,
                list_meta,
                jiff::Timestamp::now(),
            )
        }
        ResponseFormat::Metadata => json!({
            "kind": "PartialObjectMetadataList",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": list_meta,
            "items": page.items.iter().map(|o| partial_metadata_of(o.metadata())).collect::<Vec<_>>(),
        }),
        ResponseFormat::Json if !request.encoding.pretty => {
            // The common case, and the one that must be fast for thousands
            // of objects: each object's cached serialisation, sent as it
            // is (shared, not copied), between the list's head and end.
            let head =
                json!({"apiVersion": api_version, "kind": kind.list_kind(), "metadata": list_meta});
            let mut head = serde_json::to_vec(&head).unwrap_or_default();
            head.pop();
            head.extend_from_slice(b",\"items\":[");
            let mut pieces = Vec::with_capacity(2 * page.items.len() + 2);
            pieces.push(Bytes::from(head));
            for (index, object) in page.items.iter().enumerate() {
                if index > 0 {
                    pieces.push(Bytes::from_static(b","));
                }
                pieces.extend_from_slice(object.json(api_version).pieces());
            }
            pieces.push(Bytes::from_static(b"]}"));
            return Ok(codec::respond_pieces(
                StatusCode::OK,
                pieces,
                "application/json",
                request.encoding.gzip,
            ));
        }
        _ => json!({
            "apiVersion": api_version,
            "kind": kind.list_kind(),
            "metadata": list_meta,
            "items": page.items.iter().map(|o| for_response(o.to_value(), version, o.revision)).collect::<Vec<_>>(),
        }),
    };
    Ok(respond(StatusCode::OK, &body, request.encoding))
}

/// Parses a create or update body: a node state's current state (an
/// object) comes as text beside it, `{}` in its place, and is never made a
/// tree (see [`parse_document_setting_aside_current_state`]).
fn parse_body(
    kind: ResourceKind,
    bytes: &[u8],
    format: RequestFormat,
) -> Result<(Value, Vec<String>, Option<String>)> {
    if kind == ResourceKind::NodeNetworkState {
        parse_document_setting_aside_current_state(bytes, format)
    } else {
        let (body, duplicates) = parse_document(bytes, format)?;
        Ok((body, duplicates, None))
    }
}

/// Parses and decodes an update body, with its current state set aside
/// (see [`parse_body`]).
fn decode_body(
    request: &Request<'_>,
    bytes: &[u8],
    name: &str,
) -> Result<(Decoded, Vec<String>, Option<String>)> {
    let format = request.read_format()?;
    if !matches!(format, RequestFormat::Json | RequestFormat::Yaml) {
        return Err(ApiError::UnsupportedMediaType(format!(
            "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml (got {format:?})"
        )));
    }
    let (mut body, duplicates, current_state) = parse_body(request.kind(), bytes, format)?;
    check_type_meta(&mut body, request.kind(), request.path.version)?;
    if !name.is_empty() {
        object::metadata_mut(&mut body)
            .entry("name")
            .or_insert_with(|| name.into());
    }
    let (decoded, warnings) = decode_object(
        request.kind(),
        name,
        body,
        &duplicates,
        request.query.field_validation,
        request.scope() == UpdateScope::Status,
    )?;
    Ok((decoded, warnings, current_state))
}

/// POST a new object.
pub async fn create(request: &Request<'_>, bytes: &[u8]) -> Result<Response<Body>> {
    let kind = request.kind();
    managed_fields::validate_options(
        Options::Create,
        request.query.field_manager.as_deref(),
        request.query.force.then_some(true),
    )?;
    let format = request.read_format()?;
    if !matches!(format, RequestFormat::Json | RequestFormat::Yaml) {
        return Err(ApiError::UnsupportedMediaType(
            "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml".into(),
        ));
    }
    // A create drops the status: a current state in the body is read as
    // text (checked as JSON, never a tree) and left there.
    let (mut body, duplicates, _) = parse_body(kind, bytes, format)?;
    check_type_meta(&mut body, kind, request.path.version)?;
    let name = creation_name(&mut body, kind)?;
    if let Some(obligation) = request.obligation {
        obligation.check_name(&name).map_err(ApiError::Forbidden)?;
    }
    let (decoded, warnings) = decode_object(
        kind,
        &name,
        body,
        &duplicates,
        request.query.field_validation,
        false,
    )?;
    ApiError::check(kind, &name, decoded.errors)?;
    let now = object::now();
    let mut created = prepare_create(kind, decoded.value, &now)?;
    request.track_fields(None, &mut created, &now, SetAside::default());
    store_new(request, &name, created, &warnings).await
}

/// Writes a prepared new object (unless dry run) and answers 201.
async fn store_new(
    request: &Request<'_>,
    name: &str,
    created: Value,
    warnings: &[String],
) -> Result<Response<Body>> {
    let kind = request.kind();
    if request.query.dry_run {
        let object = for_response(created, request.path.version, 0);
        return Ok(request.reply_object(StatusCode::CREATED, without_rv(object), warnings));
    }
    let bytes = encode(&created)?;
    let expected = expect_written(request, name, created, None, &bytes)?;
    let kv = request
        .state
        .store
        .create(&object_key(kind.plural(), name), bytes)
        .await
        .map_err(|e| ApiError::from_storage(kind, name, e))?;
    reply_stored(request, StatusCode::CREATED, name, &kv, expected, warnings)
}

/// Registers a write with the watch cache before it goes to the store
/// (see [`WatchCache::expect`](crate::cache::WatchCache::expect)): the
/// object it stores, as the cache and the answer serve it, made from
/// `object` (its current state set aside as `current_state`, if given)
/// when that is cheap, else decoded from `bytes`, the bytes to be written.
/// Decoding copies the subtrees the cache keeps as text (a node state's
/// current state) as they are, where making them from a tree would
/// serialise them a second time. Both give the same object (a `Value`
/// survives its JSON unchanged).
fn expect_written(
    request: &Request<'_>,
    name: &str,
    object: Value,
    current_state: Option<&str>,
    bytes: &[u8],
) -> Result<Expected> {
    let small = current_state.is_some() || object.pointer(current_state::POINTER).is_none();
    let made = if small {
        CachedObject::from_value_with_current_state(name, 0, object, current_state)
    } else {
        drop(object);
        CachedObject::decode(name, 0, bytes)
    }
    .map_err(|error| ApiError::Internal(format!("not stored: it could not be served: {error}")))?;
    Ok(request.state.caches.get(request.kind()).expect(made, bytes))
}

/// The answer to a write the store took (`stored`: the key, the bytes
/// written and their revision), with the object registered for it: the
/// watch cache need not parse the stored value when the store's event
/// arrives, and plain JSON answers are the serialisation the cache keeps
/// for its watchers anyway.
fn reply_stored(
    request: &Request<'_>,
    code: StatusCode,
    name: &str,
    stored: &KeyValue,
    expected: Expected,
    warnings: &[String],
) -> Result<Response<Body>> {
    let revision = stored.mod_revision;
    let object = match expected.written(revision) {
        Some(object) => object,
        None => Arc::new(
            CachedObject::decode(name, revision, &stored.value).map_err(|error| {
                ApiError::Internal(format!(
                    "stored at revision {revision}, but cannot be served: {error}"
                ))
            })?,
        ),
    };
    let version = request.path.version;
    if request.format == ResponseFormat::Json && !request.encoding.pretty {
        let api_version = nmstate_openapi::api_version(version).unwrap_or_default();
        let response = codec::respond_pieces(
            code,
            object.json(api_version).pieces().to_vec(),
            "application/json",
            request.encoding.gzip,
        );
        return Ok(with_warnings(response, warnings));
    }
    let served = for_response(object.to_value(), version, revision);
    Ok(request.reply_object(code, served, warnings))
}

fn without_rv(mut object: Value) -> Value {
    object::metadata_mut(&mut object).remove("resourceVersion");
    object
}

/// The object as stored. No stored object is larger than a request body
/// may be: a patch (a JSON patch's `copy`, say) could otherwise grow one
/// without limit, and every list and watch would then carry it (413, as
/// kube-apiserver answers when etcd refuses a write that large).
fn encode(object: &Value) -> Result<Vec<u8>> {
    let bytes = serde_json::to_vec(object)
        .map_err(|e| ApiError::Internal(format!("encoding object: {e}")))?;
    if bytes.len() > super::error::MAX_BODY_BYTES {
        return Err(ApiError::TooLarge);
    }
    Ok(bytes)
}

/// [`encode`], with a set-aside current state's text written in its place
/// as it is (see [`cache::write_with_current_state`]).
fn encode_with_current_state(object: &Value, current_state: Option<&str>) -> Result<Vec<u8>> {
    let Some(text) = current_state else {
        return encode(object);
    };
    let bytes = cache::write_with_current_state(object, text)
        .map_err(|e| ApiError::Internal(format!("encoding object: {e}")))?;
    if bytes.len() > super::error::MAX_BODY_BYTES {
        return Err(ApiError::TooLarge);
    }
    Ok(bytes)
}

/// PUT an object (or its status).
pub async fn update(request: &Request<'_>, bytes: &[u8]) -> Result<Response<Body>> {
    let kind = request.kind();
    managed_fields::validate_options(
        Options::Update,
        request.query.field_manager.as_deref(),
        request.query.force.then_some(true),
    )?;
    let name = request.name()?.to_string();
    let (decoded, warnings, new_state) = decode_body(request, bytes, &name)?;
    ApiError::check(kind, &name, decoded.errors.clone())?;
    let Some(given_rv) = meta_str(&decoded.value, "resourceVersion")
        .filter(|rv| !rv.is_empty())
        .map(str::to_string)
    else {
        return Err(ApiError::Invalid {
            kind,
            name,
            errors: vec![nmstate_openapi::FieldError::invalid(
                "metadata.resourceVersion",
                "",
                "must be specified for an update",
            )],
        });
    };
    let given_rv = object::parse_resource_version(&given_rv)?;
    // The watch cache usually holds the object at the client's revision:
    // then the store need not be read first (the compare-and-swap still
    // refuses a stale copy), as Kubernetes does.
    // The old current state is set aside too: neither version's is parsed
    // (see `write_update`).
    let (kv, old, old_state) = match request.state.caches.get(kind).get(&name) {
        Some(cached) if cached.revision == given_rv => {
            check_obligation(request, &name, cached.summary())?;
            let (mut old, old_state) = cached.to_value_setting_aside_current_state();
            object::metadata_mut(&mut old).remove("resourceVersion");
            let kv = KeyValue {
                key: request.key()?,
                value: Vec::new(),
                mod_revision: cached.revision,
            };
            (kv, old, old_state)
        }
        _ if kind == ResourceKind::NodeNetworkState => {
            read_setting_aside_current_state(request).await?
        }
        _ => {
            let (kv, old) = read(request).await?;
            (kv, old, None)
        }
    };
    if given_rv != kv.mod_revision {
        return Err(ApiError::Conflict {
            kind,
            name,
            message: MODIFIED.into(),
        });
    }
    let aside = SetAside {
        old: old_state.as_deref(),
        new: new_state.as_deref(),
    };
    let written = write_update(request, &kv, &old, decoded.value, false, aside).await?;
    reply_written(request, &name, written, &warnings)
}

/// What an update came to.
enum Written {
    /// Not stored (nothing changed, a dry run, or the object went away
    /// with its last finalizer): the object as served.
    Served(Value),
    /// Stored: the key, the bytes written and their revision, and the
    /// object registered for the write.
    Stored(KeyValue, Expected),
}

/// The 200 answer to an update.
fn reply_written(
    request: &Request<'_>,
    name: &str,
    written: Written,
    warnings: &[String],
) -> Result<Response<Body>> {
    match written {
        Written::Served(object) => Ok(request.reply_object(StatusCode::OK, object, warnings)),
        Written::Stored(stored, expected) => {
            reply_stored(request, StatusCode::OK, name, &stored, expected, warnings)
        }
    }
}

/// Merges, validates and writes an update of `old` (read at `kv`). An
/// update that changes nothing is not written. `aside`: the current
/// states' texts where `old` or `new` has its set aside (`{}` in its
/// place); the merged object's (the old one for the main resource, the new
/// one for `/status`) is written in its place as it is.
async fn write_update<'a>(
    request: &Request<'_>,
    kv: &KeyValue,
    old: &Value,
    new: Value,
    already_tracked: bool,
    aside: SetAside<'a>,
) -> Result<Written> {
    let kind = request.kind();
    let name = request.name()?.to_string();
    let scope = request.scope();
    let mut merged = prepare_update(kind, old, new, scope)?;
    // `prepare_update` takes the status, and the current state in it, from
    // the old object for the main resource and from the new one for
    // `/status`.
    let merged_state = match scope {
        UpdateScope::Main => aside.old,
        UpdateScope::Status => aside.new,
    };
    let aside = SetAside {
        old: aside.old,
        new: merged_state,
    };
    let now = object::now();
    if !already_tracked {
        request.track_fields(Some(old), &mut merged, &now, aside);
    }
    let version = request.path.version;
    if object::unchanged_setting_aside(old, &merged, aside) {
        return Ok(Written::Served(for_response(
            current_state::restore(old.clone(), aside.old),
            version,
            kv.mod_revision,
        )));
    }
    if request.query.dry_run {
        return Ok(Written::Served(for_response(
            current_state::restore(merged, merged_state),
            version,
            kv.mod_revision,
        )));
    }
    let store = &request.state.store;
    let key = request.key()?;
    if ready_to_delete(&merged) {
        let (_, revision) = store
            .delete(&key, Some(kv.mod_revision))
            .await
            .map_err(|e| ApiError::from_storage(kind, &name, e))?;
        return Ok(Written::Served(for_response(
            current_state::restore(merged, merged_state),
            version,
            revision,
        )));
    }
    let bytes = encode_with_current_state(&merged, merged_state)?;
    let expected = expect_written(request, &name, merged, merged_state, &bytes)?;
    let written = store
        .update(&key, bytes, kv.mod_revision)
        .await
        .map_err(|e| ApiError::from_storage(kind, &name, e))?;
    Ok(Written::Stored(written, expected))
}

/// PATCH an object (or its status): JSON patch, merge patch, or
/// server-side apply. A lost race is retried on the new object; a patch
/// that names a `resourceVersion` then fails its precondition, as in
/// Kubernetes.
pub async fn patch(request: &Request<'_>, bytes: &[u8]) -> Result<Response<Body>> {
    let kind = request.kind();
    let name = request.name()?.to_string();
    let patch_type = match request.read_format()? {
        RequestFormat::JsonPatch => PatchType::Json,
        RequestFormat::MergePatch => PatchType::Merge,
        RequestFormat::ApplyPatch => PatchType::Apply,
        _ => {
            return Err(ApiError::UnsupportedMediaType(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml".into(),
            ));
        }
    };
    managed_fields::validate_options(
        Options::Patch(patch_type),
        request.query.field_manager.as_deref(),
        request.query.force.then_some(true),
    )?;
    let version = request.path.version;
    let manager_name = request.field_manager();
    let manager = Manager {
        name: &manager_name,
        api_version: nmstate_openapi::api_version(version).unwrap_or_default(),
        subresource: (request.scope() == UpdateScope::Status).then_some("status"),
    };
    let set_aside = leaves_current_state(request.kind(), patch_type, bytes);
    for attempt in 0..PATCH_ATTEMPTS {
        let now = object::now();
        let current = if set_aside {
            read_setting_aside_current_state(request).await
        } else {
            read(request).await.map(|(kv, old)| (kv, old, None))
        };
        let (kv, old, aside) = match current {
            Ok(current) => current,
            Err(ApiError::NotFound { .. }) if patch_type == PatchType::Apply => {
                return apply_create(request, bytes, &manager, &now).await;
            }
            Err(e) => return Err(e),
        };
        let live = for_response(old.clone(), version, kv.mod_revision);
        let (mut patched, duplicates) = match patch_type {
            PatchType::Apply => {
                let applied = patch::parse_apply_body(bytes)?;
                let applied = managed_fields::server_side_apply(
                    Some(&live),
                    &applied,
                    &manager,
                    request.query.force,
                    &now,
                )?;
                (applied, Vec::new())
            }
            other => patch::apply_patch_noting_duplicates(&live, other, bytes)?,
        };
        // A resourceVersion the patch sets is a precondition: the patched
        // object keeps the live one otherwise.
        if meta_str(&patched, "resourceVersion").is_some_and(|rv| rv != kv.mod_revision.to_string())
        {
            return Err(ApiError::Conflict {
                kind,
                name,
                message: MODIFIED.into(),
            });
        }
        check_type_meta(&mut patched, kind, version)?;
        let (decoded, warnings) = decode_object(
            kind,
            &name,
            patched,
            &duplicates,
            request.query.field_validation,
            request.scope() == UpdateScope::Status,
        )?;
        ApiError::check(kind, &name, decoded.errors.clone())?;
        let mut new = decoded.value;
        if patch_type != PatchType::Apply {
            managed_fields::update_managed_fields(Some(&live), &mut new, &manager, &now);
        }
        let aside = SetAside {
            old: aside.as_deref(),
            new: aside.as_deref(),
        };
        match write_update(request, &kv, &old, new, true, aside).await {
            Ok(written) => return reply_written(request, &name, written, &warnings),
            Err(ApiError::Conflict { .. }) if attempt + 1 < PATCH_ATTEMPTS => continue,
            Err(e) => return Err(e),
        }
    }
    Err(ApiError::Conflict {
        kind,
        name,
        message: MODIFIED.into(),
    })
}

/// Server-side apply of an object that does not exist yet creates it.
async fn apply_create(
    request: &Request<'_>,
    bytes: &[u8],
    manager: &Manager<'_>,
    now: &str,
) -> Result<Response<Body>> {
    let kind = request.kind();
    let name = request.name()?.to_string();
    if request.scope() == UpdateScope::Status {
        return Err(ApiError::NotFound { kind, name });
    }
    let applied = patch::parse_apply_body(bytes)?;
    let mut object =
        managed_fields::server_side_apply(None, &applied, manager, request.query.force, now)?;
    check_type_meta(&mut object, kind, request.path.version)?;
    object::metadata_mut(&mut object).insert("name".into(), name.clone().into());
    let (decoded, warnings) = decode_object(
        kind,
        &name,
        object,
        &[],
        request.query.field_validation,
        false,
    )?;
    ApiError::check(kind, &name, decoded.errors)?;
    let created = prepare_create(kind, decoded.value, now)?;
    store_new(request, &name, created, &warnings).await
}

/// `DeleteOptions` fields this server honours.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeleteOptions {
    #[serde(default)]
    preconditions: Option<Preconditions>,
    #[serde(default)]
    dry_run: Vec<String>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Preconditions {
    uid: Option<String>,
    resource_version: Option<String>,
}

fn delete_options(bytes: &[u8]) -> Result<DeleteOptions> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(DeleteOptions::default());
    }
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::BadRequest(format!("error decoding DeleteOptions: {e}")))
}

/// DELETE one object: removed at once, or marked with `deletionTimestamp`
/// while finalizers remain. As kube-apiserver, a write that lands between
/// the read and the delete (a controller's status update) is no conflict
/// for the client: the delete is tried again on the new revision, and only
/// the client's own preconditions can fail it with 409.
pub async fn delete(request: &Request<'_>, bytes: &[u8]) -> Result<Response<Body>> {
    let options = delete_options(bytes)?;
    let dry_run = request.query.dry_run || options.dry_run.iter().any(|d| d == "All");
    let mut attempt = 0;
    loop {
        attempt += 1;
        let (kv, old) = read(request).await?;
        match delete_one(request, &kv, old, options.preconditions.as_ref(), dry_run).await {
            // Preconditions are checked again on the fresh read.
            Err(ApiError::Conflict { .. }) if attempt < PATCH_ATTEMPTS => continue,
            result => {
                let (code, body) = result?;
                return Ok(respond(code, &body, request.encoding));
            }
        }
    }
}

async fn delete_one(
    request: &Request<'_>,
    kv: &KeyValue,
    old: Value,
    preconditions: Option<&Preconditions>,
    dry_run: bool,
) -> Result<(StatusCode, Value)> {
    let kind = request.kind();
    let name = name_of(&old).to_string();
    let version = request.path.version;
    if let Some(preconditions) = preconditions {
        let uid = meta_str(&old, "uid").unwrap_or_default();
        if let Some(expected) = &preconditions.uid
            && expected != uid
        {
            return Err(ApiError::Conflict {
                kind,
                name,
                message: format!(
                    "Precondition failed: UID in precondition: {expected}, UID in object meta: {uid}"
                ),
            });
        }
        if let Some(expected) = &preconditions.resource_version
            && *expected != kv.mod_revision.to_string()
        {
            return Err(ApiError::Conflict {
                kind,
                name,
                message: format!(
                    "Precondition failed: ResourceVersion in precondition: {expected}, ResourceVersion in object meta: {}",
                    kv.mod_revision
                ),
            });
        }
    }
    let store = &request.state.store;
    let key = object_key(kind.plural(), &name);
    if !object::finalizers(&old).is_empty() {
        let mut marked = old.clone();
        mark_deleted(&mut marked, &object::now());
        if marked == old || dry_run {
            return Ok((
                StatusCode::OK,
                for_response(marked, version, kv.mod_revision),
            ));
        }
        let written = store
            .update(&key, encode(&marked)?, kv.mod_revision)
            .await
            .map_err(|e| ApiError::from_storage(kind, &name, e))?;
        return Ok((
            StatusCode::OK,
            for_response(marked, version, written.mod_revision),
        ));
    }
    if !dry_run {
        store
            .delete(&key, Some(kv.mod_revision))
            .await
            .map_err(|e| ApiError::from_storage(kind, &name, e))?;
    }
    let status = Status::success(Details {
        name: Some(name),
        group: Some(nmstate_openapi::GROUP.into()),
        kind: Some(kind.plural().into()),
        uid: meta_str(&old, "uid").map(str::to_string),
        causes: Vec::new(),
    });
    Ok((
        StatusCode::OK,
        serde_json::to_value(status).unwrap_or_default(),
    ))
}

/// DELETE a collection: every object matching the selectors; answers the
/// list of what was deleted (or marked for deletion).
pub async fn delete_collection(request: &Request<'_>, bytes: &[u8]) -> Result<Response<Body>> {
    let options = delete_options(bytes)?;
    let dry_run = request.query.dry_run || options.dry_run.iter().any(|d| d == "All");
    let kind = request.kind();
    let selectors = Selectors::parse(kind, request.query)?;
    let mut query = request.query.clone();
    query.limit = None;
    query.continue_token = None;
    let page = list_page(request.state, kind, &query, &selectors).await?;
    let mut deleted = Vec::new();
    for object in page.items {
        let name = object.name.clone();
        let key = object_key(kind.plural(), &name);
        let Some(kv) = request.state.store.get(&key).await? else {
            continue;
        };
        let current = decode_stored(kind, &kv)?;
        let path = ResourcePath {
            name: Some(name),
            ..request.path.clone()
        };
        let one = Request {
            path: &path,
            ..*request
        };
        match delete_one(&one, &kv, current.clone(), None, dry_run).await {
            Ok(_) => deleted.push(for_response(current, request.path.version, kv.mod_revision)),
            Err(ApiError::NotFound { .. } | ApiError::Conflict { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    let body = json!({
        "apiVersion": nmstate_openapi::api_version(request.path.version).unwrap_or_default(),
        "kind": kind.list_kind(),
        "metadata": {},
        "items": deleted,
    });
    Ok(respond(StatusCode::OK, &body, request.encoding))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn continue_tokens_round_trip() {
        let token = encode_continue(42, "node-7");
        assert_eq!(
            decode_continue(&token).ok(),
            Some((42, "node-7".to_string()))
        );
        assert!(matches!(
            decode_continue("garbage"),
            Err(ApiError::BadRequest(_))
        ));
    }

    #[test]
    fn only_merge_patches_of_node_states_that_do_not_name_the_current_state_set_it_aside() {
        use PatchType::{Apply, Json, Merge};
        let state = ResourceKind::NodeNetworkState;
        let policy = ResourceKind::NodeNetworkConfigurationPolicy;
        let cases: [(ResourceKind, PatchType, &str, bool); 9] = [
            (state, Merge, r#"{"status":{"conditions":[]}}"#, true),
            (state, Merge, r#"{"metadata":{"labels":{"a":"b"}}}"#, true),
            (state, Merge, r#"{"status":null}"#, true),
            (state, Merge, r#"{"status":{"currentState":{}}}"#, false),
            (state, Merge, r#"{"status":{"currentState":null}}"#, false),
            (state, Merge, r#"[1]"#, false),
            (state, Merge, r#"{"status":"#, false),
            (state, Json, r#"[]"#, false),
            (policy, Merge, r#"{"status":{"conditions":[]}}"#, false),
        ];
        for (kind, patch_type, body, expected) in cases {
            assert_eq!(
                leaves_current_state(kind, patch_type, body.as_bytes()),
                expected,
                "{kind} {patch_type:?} {body}"
            );
        }
        assert!(!leaves_current_state(state, Apply, b"{}"));
    }

    #[test]
    fn a_set_aside_current_state_is_written_back_as_it_was() {
        let stored = r#"{"apiVersion":"nmstate.io/v1beta1","kind":"NodeNetworkState","metadata":{"name":"n1","labels":{"a":"b"}},"status":{"currentState":{"interfaces":[{"name":"eth0","mtu":1500}],"z":"\u00e9"},"conditions":[{"type":"Ready","status":"True"}]}}"#;
        let cached = CachedObject::decode("n1", 7, stored.as_bytes()).unwrap();
        let (mut object, aside) = cached.to_value_setting_aside_current_state();
        assert_eq!(object["status"]["currentState"], json!({}));
        let aside = aside.unwrap();
        // What a heartbeat changes.
        object["status"]["conditions"][0]["status"] = json!("False");
        let bytes = encode_with_current_state(&object, Some(&aside)).unwrap();
        let written: Value = serde_json::from_slice(&bytes).unwrap();
        let mut expected: Value = serde_json::from_str(stored).unwrap();
        expected["status"]["conditions"][0]["status"] = json!("False");
        expected["metadata"]["resourceVersion"] = json!("7");
        assert_eq!(written, expected);
        // The text itself, byte for byte (escapes and all).
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(
            text.contains(
                r#""currentState":{"interfaces":[{"name":"eth0","mtu":1500}],"z":"\u00e9"}"#
            ),
            "{text}"
        );
        // The object the cache is offered after the write is the one its
        // bytes decode to.
        let made =
            CachedObject::from_value_with_current_state("n1", 8, object.clone(), Some(&aside))
                .unwrap();
        let decoded = CachedObject::decode("n1", 8, &bytes).unwrap();
        for version in ["nmstate.io/v1", "nmstate.io/v1beta1"] {
            assert_eq!(
                made.json(version).to_bytes(),
                decoded.json(version).to_bytes()
            );
        }
        assert_eq!(made.to_value(), decoded.to_value());
        // Served unstored, the current state is there again, parsed.
        let served = current_state::restore(object, Some(&aside));
        assert_eq!(
            served["status"]["currentState"],
            expected["status"]["currentState"]
        );
        // Without a status there is nothing to write back.
        let bare = json!({"kind": "NodeNetworkState", "metadata": {"name": "n1"}});
        let bytes = encode_with_current_state(&bare, Some(&aside)).unwrap();
        assert_eq!(serde_json::from_slice::<Value>(&bytes).unwrap(), bare);
    }
}
