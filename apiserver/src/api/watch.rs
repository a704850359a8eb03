//! Watches: a chunked response of newline-delimited JSON events
//! (`{"type":"ADDED","object":{...}}`), with synthetic ADDED events for the
//! current objects when no resource version (or `0`) is given, bookmarks,
//! `sendInitialEvents`, `timeoutSeconds`, and a 410 Expired ERROR event when
//! the asked-for revision is gone. Selectors follow Kubernetes: an object
//! that stops matching is seen as DELETED, one that starts matching as
//! ADDED.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use futures::StreamExt;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use nmstate_openapi::{ResourceKind, api_version};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::{
    codec::ResponseFormat,
    error::{ApiError, Result},
    object::{for_response, meta_str, parse_resource_version},
    rest::{Request, Selectors, decode_stored, list_page},
    route::{Query, ResourceVersionMatch},
    table,
};
use crate::{
    server::{AppState, Body},
    storage::{Revision, WatchEvent, resource_prefix},
};

/// How often bookmarks are sent when the client allows them.
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(60);
/// A watch without `timeoutSeconds` ends after this long (Kubernetes picks
/// between 30 and 60 minutes), so clients re-establish it and load spreads.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);
/// Events buffered per watcher before back-pressure reaches the reader.
const BUFFER: usize = 64;

/// How one watch encodes its events.
#[derive(Clone, Debug)]
struct Encoder {
    kind: ResourceKind,
    version: &'static str,
    format: ResponseFormat,
    table_options: table::TableOptions,
}

impl Encoder {
    fn event(&mut self, event_type: &str, object: Value) -> Bytes {
        let revision = meta_str(&object, "resourceVersion")
            .and_then(|rv| rv.parse().ok())
            .unwrap_or(0);
        let object = for_response(object, self.version, revision);
        let object = match self.format {
            ResponseFormat::Table => {
                let table = table::object_table(self.kind, &object, self.table_options, jiff::Timestamp::now());
                // Column definitions go with the first event only, as
                // Kubernetes sends them.
                self.table_options.no_headers = true;
                table
            }
            ResponseFormat::Metadata => json!({
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": object.get("metadata").cloned().unwrap_or(json!({})),
            }),
            _ => object,
        };
        line(&json!({"type": event_type, "object": object}))
    }

    fn bookmark(&self, revision: Revision, initial_events_end: bool) -> Bytes {
        let mut metadata = json!({"resourceVersion": revision.to_string()});
        if initial_events_end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        line(&json!({
            "type": "BOOKMARK",
            "object": {
                "kind": self.kind.kind(),
                "apiVersion": api_version(self.version).unwrap_or_default(),
                "metadata": metadata,
            }
        }))
    }

    fn error(&self, error: ApiError) -> Bytes {
        let status = serde_json::to_value(error.into_status()).unwrap_or_default();
        line(&json!({"type": "ERROR", "object": status}))
    }
}

fn line(value: &Value) -> Bytes {
    let mut bytes = serde_json::to_vec(value).unwrap_or_default();
    bytes.push(b'\n');
    Bytes::from(bytes)
}

/// Where a watch starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Start {
    /// Send the current objects as ADDED, then changes after them.
    Current {
        /// Mark the end of the initial events with a bookmark.
        bookmark_end: bool,
    },
    /// Changes after this revision.
    After(Revision),
}

fn start(query: &Query) -> Result<Start> {
    let rv = query
        .resource_version
        .as_deref()
        .map(parse_resource_version)
        .transpose()?;
    if let Some(send_initial) = query.send_initial_events {
        if query.resource_version_match != Some(ResourceVersionMatch::NotOlderThan) || !query.allow_watch_bookmarks {
            return Err(ApiError::Invalid {
                kind: ResourceKind::NodeNetworkState,
                name: String::new(),
                errors: vec![nmstate_openapi::FieldError::forbidden(
                    "sendInitialEvents",
                    "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan and allowWatchBookmarks to true",
                )],
            });
        }
        return Ok(if send_initial {
            Start::Current { bookmark_end: true }
        } else {
            Start::After(rv.unwrap_or(0))
        });
    }
    if query.resource_version_match.is_some() {
        return Err(ApiError::BadRequest(
            "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided".into(),
        ));
    }
    Ok(match rv {
        None | Some(0) => Start::Current { bookmark_end: false },
        Some(rv) => Start::After(rv),
    })
}

/// GET a collection with `watch=true`.
pub async fn watch(request: &Request<'_>) -> Result<Response<Body>> {
    let kind = request.kind();
    let selectors = Selectors::parse(kind, request.query)?;
    let start = start(request.query)?;
    let mut encoder = Encoder {
        kind,
        version: request.path.version,
        format: request.format,
        table_options: request.table,
    };
    let timeout = request
        .query
        .timeout_seconds
        .map_or(DEFAULT_TIMEOUT, Duration::from_secs);
    let (sender, receiver) = mpsc::channel::<Bytes>(BUFFER);
    let state = request.state.clone();
    let allow_bookmarks = request.query.allow_watch_bookmarks;
    let open = state.metrics.watch_opened(kind.plural());
    tokio::spawn(async move {
        let _open = open;
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let produce = run(&state, kind, selectors, start, allow_bookmarks, &mut encoder, &sender);
        tokio::select! {
            () = produce => {}
            () = &mut deadline => {}
            () = state.shutdown_requested() => {}
            () = sender.closed() => {}
        }
    });
    let stream = tokio_stream::wrappers::ReceiverStream::new(receiver)
        .map(|bytes| Ok::<_, std::convert::Infallible>(Frame::data(bytes)));
    let mut response = Response::new(BodyExt::boxed(StreamBody::new(stream)));
    *response.status_mut() = StatusCode::OK;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache, private"));
    Ok(response)
}

/// Produces the events of one watch until the client goes away or the
/// store's history no longer covers it.
async fn run(
    state: &Arc<AppState>,
    kind: ResourceKind,
    selectors: Selectors,
    start: Start,
    allow_bookmarks: bool,
    encoder: &mut Encoder,
    sender: &mpsc::Sender<Bytes>,
) {
    let after = match start {
        Start::Current { bookmark_end } => {
            let query = Query::default();
            let page = match list_page(state, kind, &query, &selectors).await {
                Ok(page) => page,
                Err(e) => {
                    let _ = sender.send(encoder.error(e)).await;
                    return;
                }
            };
            for object in page.items {
                if sender.send(encoder.event("ADDED", object)).await.is_err() {
                    return;
                }
            }
            if bookmark_end && sender.send(encoder.bookmark(page.revision, true)).await.is_err() {
                return;
            }
            page.revision
        }
        Start::After(revision) => revision,
    };
    let watch = match state.store.watch(&resource_prefix(kind.plural()), after).await {
        Ok(watch) => watch,
        Err(e) => {
            let _ = sender.send(encoder.error(e.into())).await;
            return;
        }
    };
    let mut events = watch.events;
    let mut last_revision = after;
    let mut bookmarks = tokio::time::interval_at(
        tokio::time::Instant::now() + BOOKMARK_INTERVAL,
        BOOKMARK_INTERVAL,
    );
    loop {
        let event = tokio::select! {
            event = events.next() => event,
            _ = bookmarks.tick(), if allow_bookmarks => {
                if sender.send(encoder.bookmark(last_revision, false)).await.is_err() {
                    return;
                }
                continue;
            }
        };
        let line = match event {
            None => return,
            Some(Err(e)) => {
                let _ = sender.send(encoder.error(e.into())).await;
                return;
            }
            Some(Ok(event)) => {
                last_revision = last_revision.max(event.revision());
                match to_line(kind, &selectors, encoder, event) {
                    Some(line) => line,
                    None => continue,
                }
            }
        };
        if sender.send(line).await.is_err() {
            return;
        }
    }
}

/// The line for one store event under the watch's selectors, if any.
fn to_line(kind: ResourceKind, selectors: &Selectors, encoder: &mut Encoder, event: WatchEvent) -> Option<Bytes> {
    let decode = |kv: &crate::storage::KeyValue| match decode_stored(kind, kv) {
        Ok(object) => Some(for_response(object, nmstate_openapi::STORAGE_VERSION, kv.mod_revision)),
        Err(e) => {
            tracing::error!(key = %kv.key, error = %e, "skipping undecodable object in watch");
            None
        }
    };
    match event {
        WatchEvent::Put { kv, prev } => {
            let new = decode(&kv)?;
            let old_matches = prev
                .as_ref()
                .and_then(decode)
                .is_some_and(|old| selectors.matches(&old));
            let new_matches = selectors.matches(&new);
            match (old_matches, new_matches) {
                (false, true) => Some(encoder.event("ADDED", new)),
                (true, true) => Some(encoder.event("MODIFIED", new)),
                (true, false) => Some(encoder.event("DELETED", new)),
                (false, false) => None,
            }
        }
        WatchEvent::Delete { revision, prev, .. } => {
            let old = prev.as_ref().and_then(decode)?;
            if !selectors.matches(&old) {
                return None;
            }
            let old = for_response(old, nmstate_openapi::STORAGE_VERSION, revision);
            Some(encoder.event("DELETED", old))
        }
        WatchEvent::Progress { .. } => None,
    }
}
