//! The HTTPS server: accepting TLS connections, serving HTTP/1.1 and HTTP/2
//! on them, routing requests, and draining on shutdown.
//!
//! It owns connections and their lifetimes, not the meaning of requests:
//! handlers for each path live in their own modules and get the shared
//! [`AppState`].

use std::{
    convert::Infallible,
    net::SocketAddr,
    panic::AssertUnwindSafe,
    sync::{Arc, PoisonError},
    time::Duration,
};

use futures::FutureExt;
use http::{Method, Request, Response, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto, graceful::GracefulShutdown},
};
use tokio::{net::TcpListener, sync::watch, task::JoinHandle};
use tokio_rustls::TlsAcceptor;

use self::priority::Admission;
use crate::{
    api::error::ApiError,
    auth::{Authenticator, Peer},
    body::{Body, RequestBody, full},
    state::AppState,
};

mod health;
pub mod priority;

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

/// Whether a request is a watch (`?watch=true` or `?watch=1`), which lives
/// long and is not counted in flight (see [`priority`]).
fn is_watch(uri: &http::Uri) -> bool {
    uri.query().is_some_and(|query| {
        form_urlencoded::parse(query.as_bytes())
            .any(|(key, value)| key == "watch" && matches!(&*value, "true" | "1"))
    })
}

/// 429 with `Retry-After: 1`, as kube-apiserver answers when a request's
/// priority level has no room (see [`priority`]).
fn too_many_requests() -> Response<Body> {
    let mut response = ApiError::TooManyRequests.into_status().into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, http::HeaderValue::from_static("1"));
    response
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
    let admission = Arc::new(Admission::default());
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
        let admission = admission.clone();
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
                let admission = admission.clone();
                let authenticator = authenticator.clone();
                let identity = identity.clone();
                // Boxed: hyper keeps a slot for the request future in every
                // connection, sized to the future's type; the handlers'
                // state machine is large and should cost memory only while
                // a request runs, not on each idle or watching connection.
                Box::pin(async move {
                    let (parts, body) = request.into_parts();
                    let (body, unread) = RequestBody::new(body);
                    let request = Request::from_parts(parts, body);
                    // A bug must cost one request a 500, not the
                    // connection: panics are caught here and logged.
                    let response = AssertUnwindSafe(handle(
                        &state,
                        &authenticator,
                        &admission,
                        &identity,
                        request,
                    ))
                    .catch_unwind()
                    .await
                    .unwrap_or_else(|_| {
                        ApiError::Internal("request handler panicked".into())
                            .into_status()
                            .into_response()
                    });
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
    admission: &Admission,
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
            return ApiError::MethodNotAllowed(request.method().clone())
                .into_status()
                .into_response();
        }
        let (code, body) = health::respond(state, endpoint, only, verbose).await;
        return Response::builder()
            .status(code)
            .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .header("x-content-type-options", "nosniff")
            .body(full(body))
            .unwrap_or_else(|_| {
                ApiError::Internal("building health response".into())
                    .into_status()
                    .into_response()
            });
    }
    // Everything but the health checks needs an authenticated user.
    let Some(user) = authenticator
        .authenticate_request(identity, request.headers())
        .await
    else {
        return ApiError::Unauthorized.into_status().into_response();
    };
    // Admitted before the body is read; a refused request's body is
    // drained like any other early answer's.
    let level = priority::classify(
        request.method(),
        request.uri().path(),
        is_watch(request.uri()),
        &user,
    );
    let _permit = match admission.admit(level).await {
        Ok(permit) => permit,
        Err(refusal) => {
            state
                .metrics
                .request_rejected(level.name(), refusal.reason());
            return too_many_requests();
        }
    };
    request.extensions_mut().insert(Arc::new(user));
    crate::api::handle(state, request).await
}
