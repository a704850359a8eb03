//! The Kubernetes REST API for nmstate.io: routing, discovery, OpenAPI,
//! the verbs on objects, watches, the policy subresources `render` and
//! `dry-run`, and the one mapping of errors to
//! `metav1.Status`.
//!
//! This module decides what a request means and answers it; it does not
//! own connections (that is [`crate::server`]) nor bytes at rest (that is
//! [`crate::storage`]).

pub mod codec;
pub mod discovery;
pub mod error;
pub mod openapi;
mod openapi_proto;
pub mod rest;
pub mod route;
pub mod subresource;
pub mod table;
pub mod watch;

use std::sync::Arc;

use http::{Method, Request, Response, StatusCode};

use self::{
    codec::{Encoding, ResponseFormat, accepts_gzip, negotiate, read_body, respond},
    error::{ApiError, Result},
    route::{Route, Verb, parse_path, parse_query, verb},
};
use crate::{
    auth::{
        UserInfo,
        authorize::{self, Decision, Obligation, RequestAttributes, ResourceAttributes},
    },
    body::{Body, RequestBody},
    metrics::RequestLabels,
    state::AppState,
};

/// Answers one API request. Never fails: errors become `Status` responses.
/// Every request is counted and timed, and logged at debug level.
pub async fn handle(state: &Arc<AppState>, request: Request<RequestBody>) -> Response<Body> {
    use tracing::Instrument;

    let started = std::time::Instant::now();
    let (verb, resource, name) = labels(&request);
    let user = request
        .extensions()
        .get::<Arc<crate::auth::UserInfo>>()
        .map(|user| user.name.clone())
        .unwrap_or_default();
    let span = tracing::debug_span!(
        "request",
        method = %request.method(),
        path = request.uri().path(),
        %user,
        verb,
        %resource,
        %name,
    );
    // The timeout covers the work up to the response headers; a watch's
    // stream runs on after that under its own `timeoutSeconds`.
    let work = tokio::time::timeout(state.request_timeout, dispatch(state, request));
    let response = match work.instrument(span.clone()).await {
        Ok(Ok(response)) => response,
        Ok(Err(error)) => error.into_status().into_response(),
        Err(_) => ApiError::Timeout(
            "request did not complete within requested timeout - context deadline exceeded".into(),
        )
        .into_status()
        .into_response(),
    };
    let code = response.status().as_u16();
    let elapsed = started.elapsed();
    span.in_scope(|| {
        tracing::debug!(
            code,
            elapsed_ms = elapsed.as_millis() as u64,
            "request done"
        )
    });
    state.metrics.observe_request(
        RequestLabels {
            verb: verb.to_string(),
            resource,
            code: code.to_string(),
        },
        elapsed,
    );
    response
}

/// The verb, resource and object name of a request, for metrics and logs.
fn labels(request: &Request<RequestBody>) -> (&'static str, String, String) {
    match parse_path(request.uri().path()) {
        Some(Route::Resource(path)) => {
            let query = parse_query(request.uri().query()).unwrap_or_default();
            let verb = verb(request.method(), &path, &query).map_or("unknown", Verb::as_str);
            let resource = match path.subresource {
                Some(sub) => format!("{}/{}", path.kind.plural(), sub.as_str()),
                None => path.kind.plural().to_string(),
            };
            (verb, resource, path.name.unwrap_or_default())
        }
        Some(Route::Metrics) => ("metrics", String::new(), String::new()),
        Some(Route::OpenApiV2 | Route::OpenApiV3(_) | Route::OpenApiV3Index) => {
            ("openapi", String::new(), String::new())
        }
        Some(_) => ("discovery", String::new(), String::new()),
        None => ("unknown", String::new(), String::new()),
    }
}

async fn dispatch(state: &Arc<AppState>, request: Request<RequestBody>) -> Result<Response<Body>> {
    let route = parse_path(request.uri().path()).ok_or(ApiError::NoSuchPath)?;
    let query = parse_query(request.uri().query())?;
    // Authorization runs once the request's meaning is known and before
    // any verb reads or writes; what depends on the object itself is left
    // to the verb as an obligation.
    let obligation = authorize(state, &request, &route, &query).await?;
    // The OpenAPI documents negotiate their own media types (v2 is also
    // served as protobuf).
    let format = match route {
        Route::OpenApiV2 | Route::OpenApiV3(_) | Route::OpenApiV3Index => ResponseFormat::Json,
        _ => negotiate(request.headers())?,
    };
    let encoding = Encoding {
        yaml: format == ResponseFormat::Yaml,
        pretty: query.pretty,
        gzip: accepts_gzip(request.headers()),
    };
    let read_only = |method: &Method| -> Result<()> {
        if method == Method::GET || method == Method::HEAD {
            Ok(())
        } else {
            Err(ApiError::MethodNotAllowed(method.clone()))
        }
    };
    let ok = |value: serde_json::Value| Ok(respond(StatusCode::OK, &value, encoding));
    match route {
        Route::Version => {
            read_only(request.method())?;
            ok(discovery::version())
        }
        Route::CoreApi => {
            read_only(request.method())?;
            ok(discovery::core_api())
        }
        Route::Apis => {
            read_only(request.method())?;
            if format == ResponseFormat::DiscoveryV2 {
                let api_version = discovery_version(request.headers());
                let mut response = respond(
                    StatusCode::OK,
                    &discovery::aggregated(api_version),
                    encoding,
                );
                response.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_str(&format!(
                        "application/json;g=apidiscovery.k8s.io;v={};as=APIGroupDiscoveryList",
                        api_version.trim_start_matches("apidiscovery.k8s.io/")
                    ))
                    .unwrap_or(http::HeaderValue::from_static("application/json")),
                );
                Ok(response)
            } else {
                ok(discovery::group_list())
            }
        }
        Route::Group => {
            read_only(request.method())?;
            ok(discovery::group())
        }
        Route::GroupVersion(version) => {
            read_only(request.method())?;
            ok(discovery::resource_list(version))
        }
        Route::OpenApiV2 => {
            read_only(request.method())?;
            openapi::v2(request.headers())
        }
        Route::OpenApiV3Index => {
            read_only(request.method())?;
            openapi::v3_index()
        }
        Route::OpenApiV3(version) => {
            read_only(request.method())?;
            openapi::v3(version, query.hash.as_deref(), request.headers())
        }
        Route::Metrics => {
            read_only(request.method())?;
            Ok(codec::respond_bytes(
                StatusCode::OK,
                state.metrics.encode().into_bytes(),
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                encoding.gzip,
            ))
        }
        Route::Resource(path) => {
            let verb = verb(request.method(), &path, &query)?;
            let (parts, body) = request.into_parts();
            let bytes = match verb {
                Verb::Create
                | Verb::Update
                | Verb::Patch
                | Verb::Delete
                | Verb::DeleteCollection => read_body(body).await?,
                _ => bytes::Bytes::new(),
            };
            let table = table::TableOptions::from_query(
                query.include_object.as_deref(),
                query.no_headers.as_deref(),
            )
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
            let rest = rest::Request {
                state,
                path: &path,
                query: &query,
                headers: &parts.headers,
                format,
                encoding,
                table,
                obligation: obligation.as_ref(),
            };
            match (verb, path.subresource) {
                (Verb::Get | Verb::Create, Some(route::Subresource::Render)) => {
                    subresource::render_policy(&rest, verb == Verb::Create, &bytes).await
                }
                (Verb::Create, Some(route::Subresource::DryRun)) => {
                    subresource::dry_run(&rest, &bytes).await
                }
                (_, Some(route::Subresource::Render | route::Subresource::DryRun)) => {
                    Err(ApiError::MethodNotAllowed(parts.method.clone()))
                }
                (Verb::Get, _) => rest::get(&rest).await,
                (Verb::List, _) => rest::list(&rest).await,
                (Verb::Watch, _) => watch::watch(&rest).await,
                (Verb::Create, _) => rest::create(&rest, &bytes).await,
                (Verb::Update, _) => rest::update(&rest, &bytes).await,
                (Verb::Patch, _) => rest::patch(&rest, &bytes).await,
                (Verb::Delete, None) => rest::delete(&rest, &bytes).await,
                (Verb::Delete, Some(_)) => Err(ApiError::MethodNotAllowed(Method::DELETE)),
                (Verb::DeleteCollection, _) => rest::delete_collection(&rest, &bytes).await,
            }
        }
    }
}

/// Asks the standalone policy whether the request's user may do what it
/// asks, then, for a user it does not allow and who is no node identity,
/// the cluster (SubjectAccessReview) when one is configured: 403 when not,
/// an obligation when the answer depends on the object.
async fn authorize(
    state: &AppState,
    request: &Request<RequestBody>,
    route: &Route,
    query: &route::Query,
) -> Result<Option<Obligation>> {
    let user = request
        .extensions()
        .get::<Arc<UserInfo>>()
        .ok_or(ApiError::Unauthorized)?;
    let method = request.method().as_str().to_ascii_lowercase();
    let selectors;
    let attributes = match route {
        Route::Resource(path) => {
            let verb = verb(request.method(), path, query)?;
            selectors = rest::Selectors::parse(path.kind, query)?;
            RequestAttributes::Resource(ResourceAttributes {
                verb,
                kind: path.kind,
                subresource: path.subresource,
                name: path.name.as_deref(),
                node_selector: selectors
                    .labels
                    .exact_value(nmstate_openapi::ENACTMENT_NODE_LABEL)
                    .or_else(|| selectors.fields.exact_value("node")),
                name_selector: selectors.fields.exact_value("metadata.name"),
            })
        }
        _ => RequestAttributes::NonResource {
            path: request.uri().path(),
            verb: if method == "head" { "get" } else { &method },
        },
    };
    let mut decision = authorize::authorize(user, &attributes);
    if let (Decision::Deny(_), Some(reviewer)) = (&decision, &state.subject_access)
        && authorize::node_of(user).is_none()
    {
        decision = reviewer.authorize(user, &attributes).await;
    }
    match (decision, &attributes) {
        (Decision::Allow, _) => Ok(None),
        (Decision::AllowIf(condition), RequestAttributes::Resource(resource)) => {
            Ok(Some(Obligation::new(condition, user, resource)))
        }
        // Conditions exist only for objects.
        (Decision::AllowIf(_), RequestAttributes::NonResource { .. }) => Ok(None),
        (Decision::Deny(reason), attributes) => Err(ApiError::Forbidden(
            authorize::Forbidden::new(&user.name, attributes, &reason),
        )),
    }
}

/// The aggregated discovery version the client asked for (v2 preferred).
fn discovery_version(headers: &http::HeaderMap) -> &'static str {
    let accept = headers
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let first = accept
        .split(',')
        .find(|clause| clause.contains("apidiscovery.k8s.io"))
        .unwrap_or("");
    if first.contains("v=v2beta1") && !first.contains("v=v2;") {
        "apidiscovery.k8s.io/v2beta1"
    } else {
        "apidiscovery.k8s.io/v2"
    }
}
