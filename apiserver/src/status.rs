//! Kubernetes `metav1.Status` responses: the one shape every error takes on
//! the wire, so that kubectl and client libraries can read it. The bottom
//! of the API layers: only the wire types, which the write rules
//! (`rules`) use for field causes; which code, reason and message an error
//! gets is decided in `api::error` alone.

use http::{Response, StatusCode, header};
use serde::Serialize;

use crate::body::{Body, full};

/// A `metav1.Status` with `status: Failure`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    kind: &'static str,
    api_version: &'static str,
    metadata: Metadata,
    status: &'static str,
    /// Human-readable description.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// Machine-readable reason (`NotFound`, `Invalid`, ...).
    #[serde(skip_serializing_if = "str::is_empty")]
    pub reason: &'static str,
    /// Extra data about the failed object.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<Details>,
    /// HTTP status code.
    pub code: u16,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
struct Metadata {}

/// `metav1.StatusDetails`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Details {
    /// Object name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// API group.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Resource (plural).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Object uid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// One entry per problem.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub causes: Vec<Cause>,
}

/// `metav1.StatusCause`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Cause {
    /// `FieldValueInvalid`, `FieldValueRequired`, ...
    pub reason: String,
    /// What is wrong.
    pub message: String,
    /// The field path.
    pub field: String,
}

impl Status {
    /// A failure with a code, reason and message.
    pub fn failure(code: StatusCode, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            kind: "Status",
            api_version: "v1",
            metadata: Metadata::default(),
            status: "Failure",
            message: message.into(),
            reason,
            details: None,
            code: code.as_u16(),
        }
    }

    /// `status: Success`, as a delete that removed the object answers.
    pub fn success(details: Details) -> Self {
        Self {
            kind: "Status",
            api_version: "v1",
            metadata: Metadata::default(),
            status: "Success",
            message: String::new(),
            reason: "",
            details: Some(details),
            code: 200,
        }
    }

    /// The JSON response.
    pub fn into_response(self) -> Response<Body> {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        // Serialising this struct cannot fail: it holds only strings and
        // numbers.
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut response = Response::new(full(body));
        *response.status_mut() = code;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/json"),
        );
        response
    }
}
