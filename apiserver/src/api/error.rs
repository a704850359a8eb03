//! The one place where a failure becomes a Kubernetes `metav1.Status`.
//!
//! Handlers return [`ApiError`]; [`ApiError::into_status`] picks the code,
//! reason and message exactly as kube-apiserver words them, so that kubectl
//! and client libraries react as they do against Kubernetes (retry on 409
//! Conflict, re-list on 410 Expired, show field causes on 422 Invalid).
//! Errors that are not the client's fault become a 500 for the client and a
//! full log line here.

use http::{Method, StatusCode};
use nmstate_openapi::{FieldError, ResourceKind, validation::invalid_message};

use crate::{
    rules::{
        managed_fields::{ApplyError, InvalidOptions},
        object,
        patch::PatchError,
    },
    status::{Cause, Details, Status},
    storage,
};

pub use crate::request::MAX_BODY_BYTES;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// The named object does not exist.
    #[error("{} \"{name}\" not found", .kind.group_resource())]
    NotFound {
        /// Its kind.
        kind: ResourceKind,
        /// Its name.
        name: String,
    },
    /// The path names nothing this server serves.
    #[error("the server could not find the requested resource")]
    NoSuchPath,
    /// `create` of a name that exists.
    #[error("{} \"{name}\" already exists", .kind.group_resource())]
    AlreadyExists {
        /// Its kind.
        kind: ResourceKind,
        /// Its name.
        name: String,
    },
    /// A write lost an optimistic-concurrency race or a precondition failed.
    #[error("Operation cannot be fulfilled on {} \"{name}\": {message}", .kind.group_resource())]
    Conflict {
        /// Its kind.
        kind: ResourceKind,
        /// Its name.
        name: String,
        /// What conflicted.
        message: String,
    },
    /// The object fails validation; one error per bad field.
    #[error("{}", invalid_message(*.kind, .name, .errors))]
    Invalid {
        /// Its kind.
        kind: ResourceKind,
        /// Its name.
        name: String,
        /// Every problem found.
        errors: Vec<FieldError>,
    },
    /// The request itself is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// The method is not allowed on this path.
    #[error("the server does not allow this method on the requested resource")]
    MethodNotAllowed(Method),
    /// The request body's media type is not accepted here.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// None of the media types in `Accept` can be produced.
    #[error("{0}")]
    NotAcceptable(String),
    /// The request body is over [`MAX_BODY_BYTES`].
    #[error("Request entity too large: limit is {MAX_BODY_BYTES}")]
    TooLarge,
    /// A resource version or continue token is too old.
    #[error("{0}")]
    Expired(String),
    /// The request did not finish in time (e.g. waiting for a fresh cache).
    #[error("{0}")]
    Timeout(String),
    /// The store is unreachable: worth a retry.
    #[error("{0}")]
    Unavailable(String),
    /// The client did not authenticate.
    #[error("Unauthorized")]
    Unauthorized,
    /// Too many requests are in flight; worth a retry.
    #[error("Too many requests, please try again later.")]
    TooManyRequests,
    /// The client may not do this.
    #[error("{0}")]
    Forbidden(crate::auth::authorize::Forbidden),
    /// A bug or a corrupt store; the message is for the log only.
    #[error("internal error: {0}")]
    Internal(String),
    /// An error whose module already knows its code, reason and causes
    /// (patches, server-side apply, write options).
    #[error("{message}")]
    Other {
        /// HTTP status code.
        code: StatusCode,
        /// `Status.reason`.
        reason: &'static str,
        /// `Status.message`.
        message: String,
        /// `Status.details.causes`.
        causes: Vec<Cause>,
    },
}

/// API result.
pub type Result<T, E = ApiError> = std::result::Result<T, E>;

impl ApiError {
    /// An `Invalid` error, or `Ok` when there are no field errors.
    pub fn check(kind: ResourceKind, name: &str, errors: Vec<FieldError>) -> Result<()> {
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Invalid {
                kind,
                name: name.to_string(),
                errors,
            })
        }
    }

    /// The storage error of a write to `kind`/`name`, worded for clients.
    pub fn from_storage(kind: ResourceKind, name: &str, error: storage::Error) -> Self {
        match error {
            storage::Error::AlreadyExists { .. } => ApiError::AlreadyExists {
                kind,
                name: name.to_string(),
            },
            storage::Error::NotFound { .. } => ApiError::NotFound {
                kind,
                name: name.to_string(),
            },
            storage::Error::Conflict { .. } => ApiError::Conflict {
                kind,
                name: name.to_string(),
                message: MODIFIED.to_string(),
            },
            other => other.into(),
        }
    }

    /// The HTTP status code.
    pub fn code(&self) -> StatusCode {
        match self {
            ApiError::NotFound { .. } | ApiError::NoSuchPath => StatusCode::NOT_FOUND,
            ApiError::AlreadyExists { .. } | ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::NotAcceptable(_) => StatusCode::NOT_ACCEPTABLE,
            ApiError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Expired(_) => StatusCode::GONE,
            ApiError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Other { code, .. } => *code,
        }
    }

    /// The `metav1.Status` the client receives.
    pub fn into_status(self) -> Status {
        let code = self.code();
        let reason = match &self {
            ApiError::NotFound { .. } | ApiError::NoSuchPath => "NotFound",
            ApiError::AlreadyExists { .. } => "AlreadyExists",
            ApiError::Conflict { .. } => "Conflict",
            ApiError::Invalid { .. } => "Invalid",
            ApiError::BadRequest(_) => "BadRequest",
            ApiError::MethodNotAllowed(_) => "MethodNotAllowed",
            ApiError::UnsupportedMediaType(_) => "UnsupportedMediaType",
            ApiError::NotAcceptable(_) => "NotAcceptable",
            ApiError::TooLarge => "RequestEntityTooLarge",
            ApiError::Expired(_) => "Expired",
            ApiError::Timeout(_) => "Timeout",
            ApiError::Unavailable(_) => "ServiceUnavailable",
            ApiError::Unauthorized => "Unauthorized",
            ApiError::TooManyRequests => "TooManyRequests",
            ApiError::Forbidden(_) => "Forbidden",
            ApiError::Internal(_) => "InternalError",
            ApiError::Other { reason, .. } => reason,
        };
        let message = match &self {
            ApiError::Internal(detail) => {
                tracing::error!(error = %detail, "internal error");
                "an error on the server has prevented the request from succeeding".to_string()
            }
            other => other.to_string(),
        };
        let mut status = Status::failure(code, reason, message);
        status.details = match self {
            ApiError::NotFound { kind, name }
            | ApiError::AlreadyExists { kind, name }
            | ApiError::Conflict { kind, name, .. } => Some(details(kind, name, Vec::new())),
            ApiError::Invalid { kind, name, errors } => {
                let causes = errors
                    .iter()
                    .map(|error| Cause {
                        reason: error.kind.cause_type().to_string(),
                        message: error.body(),
                        field: error.path.clone(),
                    })
                    .collect();
                let mut details = details(kind, name, causes);
                // Kubernetes names the kind, not the resource, for Invalid.
                details.kind = Some(kind.kind().to_string());
                Some(details)
            }
            // As kube-apiserver's NewForbidden: always details, empty for
            // a path that names no resource.
            ApiError::Forbidden(forbidden) => Some(Details {
                name: forbidden.name,
                group: forbidden.kind.map(|_| nmstate_openapi::GROUP.to_string()),
                kind: forbidden.kind.map(|kind| kind.plural().to_string()),
                ..Details::default()
            }),
            // As k8s.io/apiserver's answer to a method with no route
            // (go-restful's 405 through NewGenericServerResponse): empty
            // details.
            ApiError::MethodNotAllowed(_) => Some(Details::default()),
            ApiError::Other { causes, .. } if !causes.is_empty() => Some(Details {
                causes,
                ..Details::default()
            }),
            _ => None,
        };
        status
    }
}

/// The message of a lost optimistic-concurrency race.
pub const MODIFIED: &str =
    "the object has been modified; please apply your changes to the latest version and try again";

fn details(kind: ResourceKind, name: String, causes: Vec<Cause>) -> Details {
    Details {
        name: Some(name),
        group: Some(nmstate_openapi::GROUP.to_string()),
        kind: Some(kind.plural().to_string()),
        uid: None,
        causes,
    }
}

/// The code and reason kube-apiserver answers an error of the write rules
/// with: the rules themselves know nothing of HTTP.
pub trait Answer {
    /// The HTTP status code.
    fn code(&self) -> StatusCode;
    /// The `Status` reason.
    fn reason(&self) -> &'static str;
}

impl Answer for PatchError {
    fn code(&self) -> StatusCode {
        match self {
            PatchError::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            PatchError::Decode(_)
            | PatchError::MergePatchNotAnObject { .. }
            | PatchError::DecodeYaml(_)
            | PatchError::ApplyNotAnObject { .. } => StatusCode::BAD_REQUEST,
            PatchError::TooManyOperations { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            PatchError::OperationFailed { .. } | PatchError::NotAnObject { .. } => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            PatchError::ApplyNotAPatch => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            PatchError::UnsupportedMediaType { .. } => "UnsupportedMediaType",
            PatchError::Decode(_)
            | PatchError::MergePatchNotAnObject { .. }
            | PatchError::DecodeYaml(_)
            | PatchError::ApplyNotAnObject { .. } => "BadRequest",
            PatchError::TooManyOperations { .. } => "RequestEntityTooLarge",
            PatchError::OperationFailed { .. } | PatchError::NotAnObject { .. } => "Invalid",
            PatchError::ApplyNotAPatch => "InternalError",
        }
    }
}

impl Answer for ApplyError {
    fn code(&self) -> StatusCode {
        match self {
            ApplyError::Conflict(_) => StatusCode::CONFLICT,
            ApplyError::ManagedFieldsInBody | ApplyError::WrongVersion { .. } => {
                StatusCode::BAD_REQUEST
            }
            ApplyError::LiveManagedFields(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            ApplyError::Conflict(_) => "Conflict",
            ApplyError::ManagedFieldsInBody | ApplyError::WrongVersion { .. } => "BadRequest",
            ApplyError::LiveManagedFields(_) => "InternalError",
        }
    }
}

impl From<PatchError> for ApiError {
    fn from(error: PatchError) -> Self {
        ApiError::Other {
            code: error.code(),
            reason: error.reason(),
            message: error.to_string(),
            causes: Vec::new(),
        }
    }
}

impl From<ApplyError> for ApiError {
    fn from(error: ApplyError) -> Self {
        ApiError::Other {
            code: error.code(),
            reason: error.reason(),
            causes: error.causes(),
            message: error.to_string(),
        }
    }
}

impl From<InvalidOptions> for ApiError {
    fn from(error: InvalidOptions) -> Self {
        ApiError::Other {
            code: StatusCode::UNPROCESSABLE_ENTITY,
            reason: "Invalid",
            causes: error.causes(),
            message: error.to_string(),
        }
    }
}

impl From<object::Error> for ApiError {
    fn from(error: object::Error) -> Self {
        match error {
            object::Error::Malformed(message) => ApiError::BadRequest(message),
            object::Error::Invalid { kind, name, errors } => {
                ApiError::Invalid { kind, name, errors }
            }
            object::Error::Conflict {
                kind,
                name,
                message,
            } => ApiError::Conflict {
                kind,
                name,
                message,
            },
        }
    }
}

impl From<storage::Error> for ApiError {
    fn from(error: storage::Error) -> Self {
        match error {
            storage::Error::Compacted {
                requested,
                compacted,
            } => ApiError::Expired(format!(
                "too old resource version: {requested} ({compacted})"
            )),
            storage::Error::FutureRevision { requested, current } => ApiError::Timeout(format!(
                "Too large resource version: {requested}, current: {current}"
            )),
            error @ storage::Error::Unavailable { .. } => {
                tracing::warn!(error = %error, "storage unavailable");
                ApiError::Unavailable(format!("storage is unavailable: {error}"))
            }
            other => ApiError::Internal(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        auth::authorize::{Forbidden, RequestAttributes, ResourceAttributes},
        request::{Subresource, Verb},
    };

    fn check(case: &str, error: ApiError, expected: serde_json::Value) {
        let status = serde_json::to_value(error.into_status()).unwrap_or_default();
        assert_eq!(status, expected, "case {case}");
    }

    #[test]
    fn statuses_read_like_kubernetes() {
        let policy = ResourceKind::NodeNetworkConfigurationPolicy;
        check(
            "not found",
            ApiError::NotFound {
                kind: policy,
                name: "br1".into(),
            },
            serde_json::json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": "nodenetworkconfigurationpolicies.nmstate.io \"br1\" not found",
                "reason": "NotFound",
                "details": {"name": "br1", "group": "nmstate.io", "kind": "nodenetworkconfigurationpolicies"},
                "code": 404
            }),
        );
        check(
            "conflict",
            ApiError::Conflict {
                kind: policy,
                name: "br1".into(),
                message: MODIFIED.into(),
            },
            serde_json::json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": "Operation cannot be fulfilled on nodenetworkconfigurationpolicies.nmstate.io \"br1\": the object has been modified; please apply your changes to the latest version and try again",
                "reason": "Conflict",
                "details": {"name": "br1", "group": "nmstate.io", "kind": "nodenetworkconfigurationpolicies"},
                "code": 409
            }),
        );
        check(
            "invalid",
            ApiError::Invalid {
                kind: policy,
                name: "br1".into(),
                errors: vec![FieldError::invalid("spec.maxUnavailable", "x", "bad")],
            },
            serde_json::json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": "NodeNetworkConfigurationPolicy.nmstate.io \"br1\" is invalid: spec.maxUnavailable: Invalid value: \"x\": bad",
                "reason": "Invalid",
                "details": {
                    "name": "br1", "group": "nmstate.io", "kind": "NodeNetworkConfigurationPolicy",
                    "causes": [{"reason": "FieldValueInvalid", "message": "Invalid value: \"x\": bad", "field": "spec.maxUnavailable"}]
                },
                "code": 422
            }),
        );
        let forbidden = |attributes: &RequestAttributes<'_>| {
            ApiError::Forbidden(Forbidden::new("system:node:a", attributes, "not a's"))
        };
        check(
            "forbidden object: the resource without its subresource",
            forbidden(&RequestAttributes::Resource(ResourceAttributes {
                verb: Verb::Patch,
                kind: ResourceKind::NodeNetworkState,
                subresource: Some(Subresource::Status),
                name: Some("b"),
                node_selector: None,
                name_selector: None,
            })),
            serde_json::json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": "nodenetworkstates.nmstate.io \"b\" is forbidden: User \"system:node:a\" cannot patch resource \"nodenetworkstates/status\" in API group \"nmstate.io\" at the cluster scope: not a's",
                "reason": "Forbidden",
                "details": {"name": "b", "group": "nmstate.io", "kind": "nodenetworkstates"},
                "code": 403
            }),
        );
        check(
            "forbidden list: no name",
            forbidden(&RequestAttributes::Resource(ResourceAttributes {
                verb: Verb::List,
                kind: policy,
                subresource: None,
                name: None,
                node_selector: None,
                name_selector: None,
            })),
            serde_json::json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": "nodenetworkconfigurationpolicies.nmstate.io is forbidden: User \"system:node:a\" cannot list resource \"nodenetworkconfigurationpolicies\" in API group \"nmstate.io\" at the cluster scope: not a's",
                "reason": "Forbidden",
                "details": {"group": "nmstate.io", "kind": "nodenetworkconfigurationpolicies"},
                "code": 403
            }),
        );
        check(
            "forbidden path: empty details",
            forbidden(&RequestAttributes::NonResource {
                path: "/metrics",
                verb: "get",
            }),
            serde_json::json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": "forbidden: User \"system:node:a\" cannot get path \"/metrics\": not a's",
                "reason": "Forbidden",
                "details": {},
                "code": 403
            }),
        );
        check(
            "too large",
            ApiError::TooLarge,
            serde_json::json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": "Request entity too large: limit is 3145728",
                "reason": "RequestEntityTooLarge", "code": 413
            }),
        );
        check(
            "unauthorized: word for word what kube-apiserver sends",
            ApiError::Unauthorized,
            serde_json::json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": "Unauthorized",
                "reason": "Unauthorized",
                "code": 401,
            }),
        );
        check(
            "too many requests",
            ApiError::TooManyRequests,
            serde_json::json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": "Too many requests, please try again later.",
                "reason": "TooManyRequests", "code": 429
            }),
        );
        check(
            "method not allowed: as k8s.io/apiserver's answer to a method with no route",
            ApiError::MethodNotAllowed(Method::POST),
            serde_json::json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": "the server does not allow this method on the requested resource",
                "reason": "MethodNotAllowed",
                "details": {},
                "code": 405
            }),
        );
        check(
            "internal errors hide their detail",
            ApiError::Internal("redb exploded".into()),
            serde_json::json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": "an error on the server has prevented the request from succeeding",
                "reason": "InternalError", "code": 500
            }),
        );
    }
}
