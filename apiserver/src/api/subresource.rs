//! The policy subresources `render` and `dry-run`: what a policy gives each
//! node, shown before anything is applied. Nothing here writes.
//!
//! - `GET .../nodenetworkconfigurationpolicies/{name}/render?node=N`
//!   renders the stored policy against node N's stored NodeNetworkState;
//! - `POST .../{name}/render` with `{"currentState": ...}` renders it
//!   against the given state;
//! - `POST .../{name}/dry-run` with a proposed policy (validated as a
//!   create would) or an empty body (the stored policy) renders it for
//!   every node it selects and cuts the rollout batches.
//!
//! Policies and node states are read from the watch caches after they have
//! caught up with the store, so a render sees every write that finished
//! before it. The decisions themselves are pure functions of
//! [`nmstate_openapi::subresources`] and [`nmstate_openapi::render`].

use std::collections::BTreeMap;

use http::{Response, StatusCode};
use nmstate_openapi::{
    FieldError, NodeNetworkConfigurationPolicy, ResourceKind, State, Time,
    render::render,
    subresources::{
        self, NodeInput, NodeNetworkConfigurationPolicyRender,
        NodeNetworkConfigurationPolicyRenderRequest, RENDER_KIND, render_field_error,
    },
    validation::{FieldPath, decode, validate_network_state},
};
use serde_json::Value;

use super::{
    codec::{RequestFormat, parse_document, respond},
    error::{ApiError, Result},
    rest::{self, with_warnings},
};
use crate::{
    body::Body,
    cache::{CachedObject, FRESHNESS_TIMEOUT},
    rules::object::{check_type_meta, decode_object, metadata_mut},
};

const POLICY: ResourceKind = ResourceKind::NodeNetworkConfigurationPolicy;
const STATE: ResourceKind = ResourceKind::NodeNetworkState;

/// `GET` or `POST .../{name}/render`.
pub async fn render_policy(
    request: &rest::Request<'_>,
    post: bool,
    bytes: &[u8],
) -> Result<Response<Body>> {
    let name = policy_name(request)?;
    // The body is checked before anything is read, so that a bad request
    // is told so whether or not the policy exists.
    let given = if post {
        Some(render_request_state(request, name, bytes)?)
    } else {
        None
    };
    let node = match &given {
        Some(_) => None,
        None => Some(request.query.node.clone().ok_or_else(|| {
            ApiError::BadRequest(
                "node: Required value: the query parameter \"node\" names the node whose NodeNetworkState to render against".into(),
            )
        })?),
    };
    wait_until_fresh(request).await?;
    let policy = stored_policy(request, name)?;
    let (current, current_path) =
        match (given, &node) {
            (Some(state), _) => (state, "currentState".to_owned()),
            (None, Some(node)) => {
                let cached = request.state.caches.get(STATE).get(node).ok_or_else(|| {
                    ApiError::NotFound {
                        kind: STATE,
                        name: node.clone(),
                    }
                })?;
                (
                    current_state(&cached),
                    format!("{}[{node}].status.currentState", STATE.plural()),
                )
            }
            (None, None) => return Err(ApiError::NoSuchPath),
        };
    let rendered =
        render(&policy.spec, &current, &request.state.render, &now()).map_err(|error| {
            ApiError::Invalid {
                kind: POLICY,
                name: name.to_owned(),
                errors: vec![render_field_error(&policy.spec, &error, &current_path)],
            }
        })?;
    let answer = NodeNetworkConfigurationPolicyRender {
        api_version: api_version(request),
        kind: RENDER_KIND.to_owned(),
        metadata: nmstate_openapi::ObjectMeta {
            name: Some(name.to_owned()),
            ..Default::default()
        },
        node,
        policy_generation: policy.metadata.generation,
        desired_state: rendered.desired_state,
        captured_states: rendered.captured_states,
    };
    reply(request, &answer, &[])
}

/// `POST .../{name}/dry-run`.
pub async fn dry_run(request: &rest::Request<'_>, bytes: &[u8]) -> Result<Response<Body>> {
    let name = policy_name(request)?;
    let proposed = if bytes.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        Some(proposed_policy(request, name, bytes)?)
    };
    wait_until_fresh(request).await?;
    let (policy, warnings, generation) = match proposed {
        Some((policy, warnings)) => (policy, warnings, None),
        None => {
            let policy = stored_policy(request, name)?;
            let generation = policy.metadata.generation;
            (policy, Vec::new(), generation)
        }
    };
    let (_, states) = request.state.caches.get(STATE).snapshot();
    let api_version = api_version(request);
    let name_owned = name.to_owned();
    let options = request.state.render;
    // Rendering and comparing every node is CPU work that grows with the
    // cluster: it runs off the threads that serve requests.
    let mut answer = tokio::task::spawn_blocking(move || {
        let nodes: Vec<(&str, BTreeMap<String, String>, State)> = states
            .iter()
            .map(|object| {
                (
                    object.name.as_str(),
                    object.labels.clone(),
                    current_state(object),
                )
            })
            .collect();
        let inputs = nodes.iter().map(|(node, labels, state)| NodeInput {
            name: node,
            labels,
            current_state: Some(state),
        });
        subresources::dry_run(
            &api_version,
            &name_owned,
            &policy.spec,
            inputs,
            &options,
            &now(),
        )
    })
    .await
    .map_err(|error| ApiError::Internal(format!("dry run task failed: {error}")))?;
    answer.policy_generation = generation;
    reply(request, &answer, &warnings)
}

fn policy_name<'a>(request: &'a rest::Request<'_>) -> Result<&'a str> {
    request.path.name.as_deref().ok_or(ApiError::NoSuchPath)
}

fn api_version(request: &rest::Request<'_>) -> String {
    nmstate_openapi::api_version(request.path.version)
        .unwrap_or_default()
        .to_owned()
}

fn now() -> Time {
    Time(jiff::Timestamp::now())
}

fn reply<T: serde::Serialize>(
    request: &rest::Request<'_>,
    answer: &T,
    warnings: &[String],
) -> Result<Response<Body>> {
    let value = serde_json::to_value(answer)
        .map_err(|error| ApiError::Internal(format!("encoding the answer: {error}")))?;
    Ok(with_warnings(
        respond(StatusCode::OK, &value, request.encoding),
        warnings,
    ))
}

/// Waits until the policy and node state caches hold every write the
/// store has acknowledged.
async fn wait_until_fresh(request: &rest::Request<'_>) -> Result<()> {
    let revision = request.state.store.current_revision().await?;
    for kind in [POLICY, STATE] {
        request
            .state
            .caches
            .get(kind)
            .wait_until_fresh(revision, FRESHNESS_TIMEOUT)
            .await
            .map_err(|error| match error {
                crate::cache::Error::TooLarge { .. } => ApiError::Timeout(error.to_string()),
                other => ApiError::Unavailable(other.to_string()),
            })?;
    }
    Ok(())
}

/// The stored policy `name`, or 404 naming it.
fn stored_policy(
    request: &rest::Request<'_>,
    name: &str,
) -> Result<NodeNetworkConfigurationPolicy> {
    let cached = request
        .state
        .caches
        .get(POLICY)
        .get(name)
        .ok_or_else(|| ApiError::NotFound {
            kind: POLICY,
            name: name.to_owned(),
        })?;
    serde_json::from_value(cached.to_value()).map_err(|error| {
        ApiError::Internal(format!("stored policy {name} does not decode: {error}"))
    })
}

/// `status.currentState` of a stored node state; `{}` when it has none
/// yet (its captures then fail as they would on an empty node).
fn current_state(object: &CachedObject) -> State {
    object
        .current_state()
        .and_then(|text| serde_json::from_str::<Value>(text).ok())
        .filter(Value::is_object)
        .map(State)
        .unwrap_or_default()
}

/// The body of `POST render`, parsed and checked: the state to render
/// against. 400 for a body that is no object of the right type, 422 naming
/// the field for a missing or invalid `currentState`.
fn render_request_state(request: &rest::Request<'_>, name: &str, bytes: &[u8]) -> Result<State> {
    let (body, _duplicates) = parse_body(request, bytes)?;
    let Some(object) = body.as_object() else {
        return Err(ApiError::BadRequest(format!(
            "the body of the request must be a {RENDER_KIND} object"
        )));
    };
    if let Some(given) = object.get("apiVersion").filter(|v| !v.is_null()) {
        let expected = nmstate_openapi::api_version(request.path.version).unwrap_or_default();
        if given.as_str() != Some(expected) {
            return Err(ApiError::BadRequest(format!(
                "the API version in the data ({}) does not match the expected API version ({expected})",
                given
                    .as_str()
                    .map_or_else(|| given.to_string(), str::to_owned)
            )));
        }
    }
    if let Some(given) = object.get("kind").filter(|v| !v.is_null())
        && given.as_str() != Some(RENDER_KIND)
    {
        return Err(ApiError::BadRequest(format!(
            "the kind in the data ({}) does not match the expected kind ({RENDER_KIND})",
            given
                .as_str()
                .map_or_else(|| given.to_string(), str::to_owned)
        )));
    }
    let invalid = |errors: Vec<FieldError>| ApiError::Invalid {
        kind: POLICY,
        name: name.to_owned(),
        errors,
    };
    let decoded: NodeNetworkConfigurationPolicyRenderRequest =
        decode(&body).map_err(|error| invalid(vec![error]))?;
    let Some(state) = decoded.current_state else {
        return Err(invalid(vec![FieldError::required(
            "currentState",
            "the network state to render against",
        )]));
    };
    let errors = validate_network_state(&state.0, &FieldPath::new("currentState"));
    if !errors.is_empty() {
        return Err(invalid(errors));
    }
    Ok(state)
}

/// The policy in a `dry-run` body, validated as a create would validate
/// it, with the warnings of dropped unknown fields.
fn proposed_policy(
    request: &rest::Request<'_>,
    name: &str,
    bytes: &[u8],
) -> Result<(NodeNetworkConfigurationPolicy, Vec<String>)> {
    let (mut body, duplicates) = parse_body(request, bytes)?;
    check_type_meta(&mut body, POLICY, request.path.version)?;
    let metadata = metadata_mut(&mut body);
    match metadata.get("name").and_then(Value::as_str) {
        None | Some("") => {
            metadata.insert("name".into(), name.into());
        }
        Some(given) if given == name => {}
        Some(given) => {
            return Err(ApiError::BadRequest(format!(
                "the name of the object ({given}) does not match the name on the URL ({name})"
            )));
        }
    }
    let (decoded, warnings) = decode_object(
        POLICY,
        name,
        body,
        &duplicates,
        request.query.field_validation,
        false,
    )?;
    ApiError::check(POLICY, name, decoded.errors)?;
    let policy = serde_json::from_value(decoded.value)
        .map_err(|error| ApiError::Internal(format!("decoded policy does not decode: {error}")))?;
    Ok((policy, warnings))
}

/// A JSON or YAML request body.
fn parse_body(request: &rest::Request<'_>, bytes: &[u8]) -> Result<(Value, Vec<String>)> {
    let format = RequestFormat::from_headers(request.headers)?;
    if !matches!(format, RequestFormat::Json | RequestFormat::Yaml) {
        return Err(ApiError::UnsupportedMediaType(
            "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml".into(),
        ));
    }
    parse_document(bytes, format)
}
