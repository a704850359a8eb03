//! The HTTPS server: accepting TLS connections, serving HTTP/1.1 and HTTP/2
//! on them, routing requests, and draining on shutdown.
//!
//! It owns connections and their lifetimes, not the meaning of requests:
//! handlers for each path live in their own modules and get the shared
//! [`AppState`].

use std::{
    collections::VecDeque,
    convert::Infallible,
    net::SocketAddr,
    panic::AssertUnwindSafe,
    pin::Pin,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use futures::FutureExt;
use http::{Method, Request, Response, header};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto, graceful::GracefulShutdown},
};
use tokio::{net::TcpListener, sync::watch, task::JoinHandle};
use tokio_rustls::TlsAcceptor;

use crate::{
    auth::{Authenticator, Peer},
    cache::Caches,
    metrics::{MeteredStore, Metrics},
    storage::SharedStore,
};

mod health;
pub mod status;

/// How long a client may take to finish the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to send request headers (slowloris guard).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Concurrent streams per HTTP/2 connection (Go's default, kept by
/// kube-apiserver's `--http2-max-streams-per-connection=0`).
pub const HTTP2_MAX_STREAMS: u32 = 250;
/// The most header bytes an HTTP/2 request may carry (Go's
/// `DefaultMaxHeaderBytes`); larger requests get 431. HTTP/1.1 requests are
/// bounded by hyper: at most 100 headers and about 400 KiB of head, else 431.
pub const MAX_HEADER_BYTES: u32 = 1 << 20;

/// The response body type of every handler.
pub type Body = BoxBody<Bytes, Infallible>;

/// A complete body from bytes.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

/// A complete body of shared pieces (such as the cached JSON of each
/// object of a list), sent one after another with their total length and
/// never copied into one buffer.
pub fn pieces(pieces: Vec<Bytes>) -> Body {
    let remaining = pieces.iter().map(|piece| piece.len() as u64).sum();
    Pieces {
        pieces: pieces.into(),
        remaining,
    }
    .boxed()
}

struct Pieces {
    pieces: VecDeque<Bytes>,
    /// Bytes not yet sent.
    remaining: u64,
}

impl hyper::body::Body for Pieces {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        let next = std::iter::from_fn(|| this.pieces.pop_front()).find(|piece| !piece.is_empty());
        Poll::Ready(next.map(|piece| {
            this.remaining -= piece.len() as u64;
            Ok(Frame::data(piece))
        }))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

/// A request's body as handlers get it.
///
/// What a handler leaves unread (it answered before reading: 413, 400, 401,
/// 403, ...) is not dropped with the request. Over HTTP/2, dropping an
/// unfinished request body resets the stream, and the reset goes out
/// before (or instead of) the queued answer: clients such as curl then
/// report "Stream error in the HTTP/2 framing layer" instead of the
/// `Status`. Over HTTP/1.1, closing the connection with the body unread
/// makes the client's send fail ("Broken pipe") before it reads the
/// answer. So the rest of the body is read and discarded after the answer,
/// up to a bound ([`drain`]), over both.
#[derive(Debug)]
pub struct RequestBody {
    body: Option<Incoming>,
    unread: Arc<Mutex<Option<Incoming>>>,
}

impl RequestBody {
    fn new(body: Incoming) -> (Self, Arc<Mutex<Option<Incoming>>>) {
        let unread = Arc::default();
        let body = Self {
            body: Some(body),
            unread: Arc::clone(&unread),
        };
        (body, unread)
    }
}

impl hyper::body::Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut().body.as_mut() {
            Some(body) => Pin::new(body).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body
            .as_ref()
            .is_none_or(hyper::body::Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.body
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), hyper::body::Body::size_hint)
    }
}

impl Drop for RequestBody {
    fn drop(&mut self) {
        if let Some(body) = self.body.take()
            && !hyper::body::Body::is_end_stream(&body)
        {
            *self.unread.lock().unwrap_or_else(PoisonError::into_inner) = Some(body);
        }
    }
}

/// How much of a request body a handler left unread is read and thrown
/// away after the answer (see [`RequestBody`]), and for how long.
const DRAIN_LIMIT: usize = 16 << 20;
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Reads and discards the rest of a request body the handler did not read,
/// within [`DRAIN_LIMIT`] and [`DRAIN_TIMEOUT`]; beyond them the stream is
/// reset or the connection closed (by then the answer has long been sent).
async fn drain(mut body: Incoming) {
    let mut left = DRAIN_LIMIT;
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while let Some(Ok(frame)) = body.frame().await {
            let Some(data) = frame.data_ref() else {
                continue;
            };
            let Some(rest) = left.checked_sub(data.len()) else {
                return false;
            };
            left = rest;
        }
        true
    })
    .await;
    if drained != Ok(true) {
        tracing::debug!("unread request body too large or too slow; resetting the stream");
    }
}

/// How many requests may be in flight at once, as kube-apiserver's
/// defaults (`--max-requests-inflight=400`,
/// `--max-mutating-requests-inflight=200`): reads and writes are counted
/// apart, so that slow writers (a body sent a byte a second) cannot starve
/// reads. Watches and health checks are not counted: a watch lasts for
/// minutes, and a health check must answer while the server is busy.
pub const MAX_READONLY_IN_FLIGHT: usize = 400;
/// See [`MAX_READONLY_IN_FLIGHT`].
pub const MAX_MUTATING_IN_FLIGHT: usize = 200;

/// The requests in flight, by class (see [`MAX_READONLY_IN_FLIGHT`]).
#[derive(Debug, Default)]
struct InFlight {
    readonly: AtomicUsize,
    mutating: AtomicUsize,
}

/// A request's place among those in flight, given back when dropped.
struct Slot<'a>(&'a AtomicUsize);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl InFlight {
    /// A slot for `request`: `Ok(None)` for requests that are not counted,
    /// `Err(())` when its class is full.
    fn admit<B>(&self, request: &Request<B>) -> Result<Option<Slot<'_>>, ()> {
        let path = request.uri().path();
        if health::Endpoint::parse(path).is_some() || is_watch(request.uri()) {
            return Ok(None);
        }
        let (counter, limit) = match *request.method() {
            Method::GET | Method::HEAD | Method::OPTIONS => {
                (&self.readonly, MAX_READONLY_IN_FLIGHT)
            }
            _ => (&self.mutating, MAX_MUTATING_IN_FLIGHT),
        };
        counter
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .map(|_| Some(Slot(counter)))
            .map_err(|_| ())
    }
}

/// Whether a request is a watch (`?watch=true` or `?watch=1`), which lives
/// long and is not counted in flight.
fn is_watch(uri: &http::Uri) -> bool {
    uri.query().is_some_and(|query| {
        form_urlencoded::parse(query.as_bytes())
            .any(|(key, value)| key == "watch" && matches!(&*value, "true" | "1"))
    })
}

/// 429 with `Retry-After: 1`, as kube-apiserver answers when too many
/// requests are in flight.
fn too_many_requests() -> Response<Body> {
    let mut response = status::Status::failure(
        http::StatusCode::TOO_MANY_REQUESTS,
        "TooManyRequests",
        "Too many requests, please try again later.",
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, http::HeaderValue::from_static("1"));
    response
}

/// What every request handler may use.
#[derive(Debug)]
pub struct AppState {
    /// The store.
    pub store: SharedStore,
    /// Metrics registry and instruments.
    pub metrics: Metrics,
    /// One watch cache per kind, serving lists and watches.
    pub caches: Caches,
    /// How long a request (up to its response headers) may take.
    pub request_timeout: Duration,
    /// The cluster asked about users the standalone policy does not allow
    /// (`--authorization-kubeconfig`).
    pub subject_access: Option<crate::auth::subject_access::SubjectAccessReviewer>,
    /// How policies are rendered for nodes (controller, render, dry-run).
    pub render: nmstate_openapi::render::RenderOptions,
    shutting_down: AtomicBool,
    in_flight: InFlight,
    /// Flipped to `true` when shutdown begins, so long-running responses
    /// (watches) end and connections can drain.
    shutdown: watch::Sender<bool>,
}

impl AppState {
    /// State over a store. The store is wrapped so that its operations are
    /// timed into `metrics`.
    pub fn new(store: SharedStore, metrics: Metrics, request_timeout: Duration) -> Self {
        let store: SharedStore = Arc::new(MeteredStore::new(store, metrics.clone()));
        Self {
            request_timeout,
            subject_access: None,
            render: nmstate_openapi::render::RenderOptions::default(),
            caches: Caches::start(store.clone()),
            store,
            metrics,
            shutting_down: AtomicBool::new(false),
            in_flight: InFlight::default(),
            shutdown: watch::Sender::new(false),
        }
    }

    /// Also asks `reviewer` about users the standalone policy does not
    /// allow.
    pub fn with_subject_access(
        mut self,
        reviewer: crate::auth::subject_access::SubjectAccessReviewer,
    ) -> Self {
        self.subject_access = Some(reviewer);
        self
    }

    /// Whether shutdown has begun (readiness then fails).
    pub fn shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Relaxed)
    }

    /// Resolves once shutdown has begun.
    pub async fn shutdown_requested(&self) {
        let mut receiver = self.shutdown.subscribe();
        let _ = receiver.wait_for(|stopping| *stopping).await;
    }

    fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Relaxed);
        self.shutdown.send_replace(true);
    }
}

/// A server accepting connections in the background.
#[derive(Debug)]
pub struct Listening {
    local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Listening {
    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting, lets in-flight requests finish within the drain
    /// timeout given to [`serve`], then closes the remaining connections.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "server task failed");
        }
    }
}

/// Binds `listen` and serves HTTPS in a background task.
pub async fn serve(
    listen: SocketAddr,
    tls: Arc<rustls::ServerConfig>,
    state: Arc<AppState>,
    authenticator: Arc<Authenticator>,
    drain_timeout: Duration,
) -> std::io::Result<Listening> {
    let listener = TcpListener::bind(listen).await?;
    let local_addr = listener.local_addr()?;
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(accept_loop(
        listener,
        TlsAcceptor::from(tls),
        state,
        authenticator,
        stopped,
        drain_timeout,
    ));
    tracing::info!(address = %local_addr, "serving HTTPS");
    Ok(Listening {
        local_addr,
        stop,
        task,
    })
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    state: Arc<AppState>,
    authenticator: Arc<Authenticator>,
    mut stopped: watch::Receiver<bool>,
    drain_timeout: Duration,
) {
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    builder
        .http2()
        .timer(TokioTimer::new())
        // Go's defaults, which kube-apiserver keeps: clients size their
        // connection pools to them.
        .max_concurrent_streams(HTTP2_MAX_STREAMS)
        .max_header_list_size(MAX_HEADER_BYTES);
    let builder = Arc::new(builder);

    loop {
        let (tcp, peer) = tokio::select! {
            // The borrow `wait_for` returns is not `Send`: drop it inside.
            _ = async { drop(stopped.wait_for(|stop| *stop).await) } => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Usually out of file descriptors: back off instead of
                    // spinning, and keep serving the connections we have.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let acceptor = acceptor.clone();
        let state = state.clone();
        let authenticator = authenticator.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
            {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            // The client certificate was verified during the handshake; what
            // it proves (a user, or a front proxy) holds for every request
            // on this connection.
            let identity = Arc::new(authenticator.peer(tls.get_ref().1.peer_certificates()));
            let service = hyper::service::service_fn(move |request| {
                let state = state.clone();
                let authenticator = authenticator.clone();
                let identity = identity.clone();
                // Boxed: hyper keeps a slot for the request future in every
                // connection, sized to the future's type; the handlers'
                // state machine is large and should cost memory only while
                // a request runs, not on each idle or watching connection.
                Box::pin(async move {
                    let admitted = state.in_flight.admit(&request);
                    let (parts, body) = request.into_parts();
                    let (body, unread) = RequestBody::new(body);
                    let request = Request::from_parts(parts, body);
                    let response = match admitted {
                        // Answered without reading the body, which is then
                        // drained like any other early answer's.
                        Err(()) => {
                            drop(request);
                            too_many_requests()
                        }
                        // A bug must cost one request a 500, not the
                        // connection: panics are caught here and logged.
                        Ok(_slot) => {
                            AssertUnwindSafe(handle(&state, &authenticator, &identity, request))
                                .catch_unwind()
                                .await
                                .unwrap_or_else(|_| {
                                    status::internal("request handler panicked").into_response()
                                })
                        }
                    };
                    let unread = unread.lock().unwrap_or_else(PoisonError::into_inner).take();
                    if let Some(unread) = unread {
                        tokio::spawn(drain(unread));
                    }
                    Ok::<_, Infallible>(response)
                })
            });
            let connection = builder
                .serve_connection(TokioIo::new(tls), service)
                .into_owned();
            if let Err(e) = watcher.watch(connection).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }

    drop(listener);
    state.begin_shutdown();
    let open = graceful.count();
    tracing::info!(open_connections = open, "stopped accepting; draining");
    if tokio::time::timeout(drain_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            ?drain_timeout,
            "connections still open after the drain timeout; closing them"
        );
    }
}

/// Routes one request. Never fails: every error becomes a response.
async fn handle(
    state: &Arc<AppState>,
    authenticator: &Authenticator,
    identity: &Peer,
    mut request: Request<RequestBody>,
) -> Response<Body> {
    let path = request.uri().path();
    if let Some((endpoint, only)) = health::Endpoint::parse(path) {
        let verbose = request.uri().query().is_some_and(|query| {
            query
                .split('&')
                .any(|pair| pair == "verbose" || pair.starts_with("verbose="))
        });
        if request.method() != Method::GET && request.method() != Method::HEAD {
            return status::method_not_allowed(request.method()).into_response();
        }
        let (code, body) = health::respond(state, endpoint, only, verbose).await;
        return Response::builder()
            .status(code)
            .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .header("x-content-type-options", "nosniff")
            .body(full(body))
            .unwrap_or_else(|_| status::internal("building health response").into_response());
    }
    // Everything but the health checks needs an authenticated user.
    let Some(user) = authenticator
        .authenticate_request(identity, request.headers())
        .await
    else {
        return crate::auth::unauthorized().into_response();
    };
    request.extensions_mut().insert(Arc::new(user));
    crate::api::handle(state, request).await
}
