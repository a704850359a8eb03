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
    rest::{Request, Selectors},
    route::{Query, ResourceVersionMatch},
    table,
};
use crate::{
    body::Body,
    cache::{self, CacheEvent, CacheWatcher, CachedObject, FRESHNESS_TIMEOUT, WatchEnd},
    rules::object::{for_response, meta_str, parse_resource_version},
    state::AppState,
    storage::Revision,
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
                let table = table::object_table(
                    self.kind,
                    &object,
                    self.table_options,
                    jiff::Timestamp::now(),
                );
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

    /// An event for a cached object: for plain JSON, its cached
    /// serialisation is spliced in, so a thousand watchers of one change
    /// serialise it once.
    fn cached_event(&mut self, event_type: &str, object: &CachedObject) -> Bytes {
        if self.format == ResponseFormat::Json {
            let api_version = api_version(self.version).unwrap_or_default();
            let json = object.json(api_version);
            let mut line = Vec::with_capacity(json.len() + 32);
            line.extend_from_slice(b"{\"type\":\"");
            line.extend_from_slice(event_type.as_bytes());
            line.extend_from_slice(b"\",\"object\":");
            for piece in json.pieces() {
                line.extend_from_slice(piece);
            }
            line.extend_from_slice(b"}\n");
            return Bytes::from(line);
        }
        self.event(event_type, object.to_value())
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
        if query.resource_version_match != Some(ResourceVersionMatch::NotOlderThan)
            || !query.allow_watch_bookmarks
        {
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
            "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided"
                .into(),
        ));
    }
    Ok(match rv {
        None | Some(0) => Start::Current {
            bookmark_end: false,
        },
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
        let deadline = tokio::time::Instant::now() + timeout;
        let produce = run(
            &state,
            kind,
            selectors,
            start,
            Ending {
                deadline,
                allow_bookmarks,
            },
            &mut encoder,
            &sender,
        );
        tokio::select! {
            () = produce => {}
            // `run` ends at the deadline itself, with a last bookmark; this
            // bounds a watch still sending its initial events, or whose
            // client does not read the last bookmark.
            () = tokio::time::sleep_until(deadline + CLOSING_GRACE) => {}
            () = state.shutdown_requested() => {}
            () = sender.closed() => {}
        }
    });
    let stream = tokio_stream::wrappers::ReceiverStream::new(receiver)
        .map(|bytes| Ok::<_, std::convert::Infallible>(Frame::data(bytes)));
    let mut response = Response::new(BodyExt::boxed(StreamBody::new(stream)));
    *response.status_mut() = StatusCode::OK;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
    Ok(response)
}

/// How a watch ends: at `deadline` (its `timeoutSeconds`), with a last
/// bookmark if the client allows them.
struct Ending {
    deadline: tokio::time::Instant,
    allow_bookmarks: bool,
}

/// How long past its deadline a watch may take to send its last bookmark.
const CLOSING_GRACE: Duration = Duration::from_secs(1);

/// Produces the events of one watch, from the watch cache, until its
/// deadline, the client goes away, the cache can no longer continue it, or
/// the server stops.
async fn run(
    state: &Arc<AppState>,
    kind: ResourceKind,
    selectors: Selectors,
    start: Start,
    ending: Ending,
    encoder: &mut Encoder,
    sender: &mpsc::Sender<Bytes>,
) {
    match watch_from_cache(state, kind, &selectors, start, encoder, sender).await {
        Ok(Some(mut watcher)) => {
            if ending.allow_bookmarks {
                watcher = watcher.with_bookmarks(BOOKMARK_INTERVAL);
            }
            loop {
                let next = tokio::select! {
                    next = watcher.next() => next,
                    () = tokio::time::sleep_until(ending.deadline) => {
                        // Time is up. A last bookmark tells the client the
                        // revision to watch again from, as kube-apiserver's
                        // watch cache sends one before a watch times out:
                        // without it a client whose objects did not change
                        // for a while resumes from a revision the window
                        // may have lost (410), and lists again. Thousands
                        // of nodes watching their own state did that every
                        // few minutes.
                        if ending.allow_bookmarks
                            && let Some(CacheEvent::Bookmark(revision)) = watcher.closing_bookmark()
                        {
                            let _ = sender.send(encoder.bookmark(revision, false)).await;
                        }
                        return;
                    }
                };
                let line = match next {
                    Ok(CacheEvent::Bookmark(revision)) => encoder.bookmark(revision, false),
                    Ok(event) => match event.object() {
                        Some(object) => encoder.cached_event(event.type_name(), object),
                        None => continue,
                    },
                    Err(WatchEnd::TooOld) => {
                        let error = ApiError::Expired(format!(
                            "too old resource version: {} (the watch cache re-listed)",
                            watcher.position()
                        ));
                        let _ = sender.send(encoder.error(error)).await;
                        return;
                    }
                    // The client re-watches from the last revision it saw.
                    Err(_) => return,
                };
                if sender.send(line).await.is_err() {
                    return;
                }
            }
        }
        Ok(None) => {}
        Err(error) => {
            let _ = sender.send(encoder.error(error)).await;
        }
    }
}

/// Sends the initial events (if any) and returns the watcher of the events
/// after them; `None` when the client went away meanwhile.
async fn watch_from_cache(
    state: &Arc<AppState>,
    kind: ResourceKind,
    selectors: &Selectors,
    start: Start,
    encoder: &mut Encoder,
    sender: &mpsc::Sender<Bytes>,
) -> Result<Option<CacheWatcher>> {
    let cache = state.caches.get(kind);
    let filter = selectors.filter(kind);
    match start {
        Start::Current { bookmark_end } => {
            // Like a consistent list: the initial state is at least as new
            // as the store.
            let current = state.store.current_revision().await?;
            cache
                .wait_until_fresh(current, FRESHNESS_TIMEOUT)
                .await
                .map_err(cache_error)?;
            let (revision, objects, watcher) =
                cache.snapshot_and_watch(filter).map_err(cache_error)?;
            for object in &objects {
                if sender
                    .send(encoder.cached_event("ADDED", object))
                    .await
                    .is_err()
                {
                    return Ok(None);
                }
            }
            if bookmark_end && sender.send(encoder.bookmark(revision, true)).await.is_err() {
                return Ok(None);
            }
            Ok(Some(watcher))
        }
        Start::After(revision) => match cache.watch(revision, filter.clone()) {
            Err(cache::Error::TooLarge { .. }) => {
                cache
                    .wait_until_fresh(revision, FRESHNESS_TIMEOUT)
                    .await
                    .map_err(cache_error)?;
                Ok(Some(cache.watch(revision, filter).map_err(cache_error)?))
            }
            other => Ok(Some(other.map_err(cache_error)?)),
        },
    }
}

/// A watch-cache error as clients see it.
fn cache_error(error: cache::Error) -> ApiError {
    match error {
        cache::Error::TooOld { .. } => ApiError::Expired(error.to_string()),
        cache::Error::TooLarge { .. } => ApiError::Timeout(error.to_string()),
        other => ApiError::Unavailable(other.to_string()),
    }
}
