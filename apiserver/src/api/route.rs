//! Turning a request line into what it asks for: which endpoint, which
//! resource and verb, and the query parameters Kubernetes defines. Pure: no
//! IO, so every path and parameter rule is unit-tested here.

use http::Method;
use nmstate_openapi::{GROUP, ResourceKind, VERSIONS};

use super::error::{ApiError, Result};
pub use crate::request::{FieldValidation, Subresource, Verb};

/// What a path names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// `/version`
    Version,
    /// `/api`
    CoreApi,
    /// `/apis`
    Apis,
    /// `/apis/nmstate.io`
    Group,
    /// `/apis/nmstate.io/{version}`
    GroupVersion(&'static str),
    /// `/openapi/v2`
    OpenApiV2,
    /// `/openapi/v3`
    OpenApiV3Index,
    /// `/openapi/v3/apis/nmstate.io/{version}`
    OpenApiV3(&'static str),
    /// `/metrics`
    Metrics,
    /// `/apis/nmstate.io/{version}/{plural}[/{name}[/{subresource}]]`
    Resource(ResourcePath),
}

/// A resource path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourcePath {
    /// The served version asked for (`v1` or `v1beta1`).
    pub version: &'static str,
    /// The kind.
    pub kind: ResourceKind,
    /// The object name, if the path has one.
    pub name: Option<String>,
    /// The subresource, if any.
    pub subresource: Option<Subresource>,
}

/// Parses a request path. `None` when it names nothing this server serves.
pub fn parse_path(path: &str) -> Option<Route> {
    let path = path.strip_suffix('/').unwrap_or(path);
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let route = match segments.as_slice() {
        ["version"] => Route::Version,
        ["api"] => Route::CoreApi,
        ["apis"] => Route::Apis,
        ["apis", group] if *group == GROUP => Route::Group,
        ["apis", group, version] if *group == GROUP => Route::GroupVersion(served(version)?),
        ["openapi", "v2"] => Route::OpenApiV2,
        ["openapi", "v3"] => Route::OpenApiV3Index,
        ["openapi", "v3", "apis", group, version] if *group == GROUP => {
            Route::OpenApiV3(served(version)?)
        }
        ["metrics"] => Route::Metrics,
        ["apis", group, version, plural, rest @ ..] if *group == GROUP => {
            let version = served(version)?;
            let kind = ResourceKind::from_plural(plural)?;
            let (name, subresource) = match rest {
                [] => (None, None),
                [name] => (Some(decode_segment(name)?), None),
                [name, sub] => {
                    let subresource = match *sub {
                        "status" if kind.has_status() => Subresource::Status,
                        "render" if kind.has_render() => Subresource::Render,
                        "dry-run" if kind.has_dry_run() => Subresource::DryRun,
                        _ => return None,
                    };
                    (Some(decode_segment(name)?), Some(subresource))
                }
                _ => return None,
            };
            if name.as_deref() == Some("") {
                return None;
            }
            Route::Resource(ResourcePath {
                version,
                kind,
                name,
                subresource,
            })
        }
        _ => return None,
    };
    Some(route)
}

fn served(version: &str) -> Option<&'static str> {
    VERSIONS.into_iter().find(|v| *v == version)
}

fn decode_segment(segment: &str) -> Option<String> {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8()
        .ok()
        .map(|name| name.into_owned())
}

/// The verb of a method on a resource path, or 405.
pub fn verb(method: &Method, path: &ResourcePath, query: &Query) -> Result<Verb> {
    let collection = path.name.is_none();
    let verb = match (method.as_str(), collection) {
        ("GET" | "HEAD", true) if query.watch => Verb::Watch,
        ("GET" | "HEAD", true) => Verb::List,
        ("GET" | "HEAD", false) => Verb::Get,
        ("POST", true) => Verb::Create,
        ("PUT", false) => Verb::Update,
        ("PATCH", false) => Verb::Patch,
        ("DELETE", false) => Verb::Delete,
        ("DELETE", true) => Verb::DeleteCollection,
        // render and dry-run take POST on a named object.
        ("POST", false)
            if matches!(
                path.subresource,
                Some(Subresource::Render | Subresource::DryRun)
            ) =>
        {
            Verb::Create
        }
        _ => return Err(ApiError::MethodNotAllowed(method.clone())),
    };
    Ok(verb)
}

/// `resourceVersionMatch`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResourceVersionMatch {
    /// At least as new as the given version.
    NotOlderThan,
    /// Exactly at the given version.
    Exact,
}

/// The query parameters Kubernetes defines, checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Query {
    /// `watch=true|1`.
    pub watch: bool,
    /// `labelSelector`.
    pub label_selector: Option<String>,
    /// `fieldSelector`.
    pub field_selector: Option<String>,
    /// `limit` (0 = none).
    pub limit: Option<usize>,
    /// `continue`.
    pub continue_token: Option<String>,
    /// `resourceVersion`.
    pub resource_version: Option<String>,
    /// `resourceVersionMatch`.
    pub resource_version_match: Option<ResourceVersionMatch>,
    /// `allowWatchBookmarks`.
    pub allow_watch_bookmarks: bool,
    /// `sendInitialEvents`.
    pub send_initial_events: Option<bool>,
    /// `timeoutSeconds`.
    pub timeout_seconds: Option<u64>,
    /// `dryRun=All`.
    pub dry_run: bool,
    /// `fieldManager`.
    pub field_manager: Option<String>,
    /// `fieldValidation`.
    pub field_validation: FieldValidation,
    /// `force` (server-side apply).
    pub force: bool,
    /// `pretty`.
    pub pretty: bool,
    /// `node` (render).
    pub node: Option<String>,
    /// `verbose` (health).
    pub verbose: bool,
    /// `hash` (OpenAPI v3).
    pub hash: Option<String>,
    /// `includeObject` (tables).
    pub include_object: Option<String>,
    /// `noHeaders` (tables).
    pub no_headers: Option<String>,
}

/// Parses and checks the query string. Unknown parameters are ignored, as
/// Kubernetes does.
pub fn parse_query(query: Option<&str>) -> Result<Query> {
    let mut parsed = Query::default();
    let Some(query) = query else {
        return Ok(parsed);
    };
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        let value = value.into_owned();
        match key.as_ref() {
            "watch" => parsed.watch = parse_bool("watch", &value)?,
            "labelSelector" => parsed.label_selector = non_empty(value),
            "fieldSelector" => parsed.field_selector = non_empty(value),
            "limit" => {
                let limit: i64 = value
                    .parse()
                    .map_err(|_| bad_param("limit", &value, "must be an integer"))?;
                parsed.limit = usize::try_from(limit).ok().filter(|limit| *limit > 0);
            }
            "continue" => parsed.continue_token = non_empty(value),
            "resourceVersion" => parsed.resource_version = non_empty(value),
            "resourceVersionMatch" => {
                parsed.resource_version_match = match value.as_str() {
                    "" => None,
                    "NotOlderThan" => Some(ResourceVersionMatch::NotOlderThan),
                    "Exact" => Some(ResourceVersionMatch::Exact),
                    other => {
                        return Err(ApiError::BadRequest(format!(
                            "resourceVersionMatch: Unsupported value: \"{other}\": supported values: \"Exact\", \"NotOlderThan\""
                        )));
                    }
                }
            }
            "allowWatchBookmarks" => {
                parsed.allow_watch_bookmarks = parse_bool("allowWatchBookmarks", &value)?
            }
            "sendInitialEvents" => {
                parsed.send_initial_events = Some(parse_bool("sendInitialEvents", &value)?)
            }
            "timeoutSeconds" => {
                let seconds: u64 = value.parse().map_err(|_| {
                    bad_param("timeoutSeconds", &value, "must be a non-negative integer")
                })?;
                parsed.timeout_seconds = Some(seconds);
            }
            "dryRun" => match value.as_str() {
                "All" => parsed.dry_run = true,
                "" => {}
                other => {
                    return Err(ApiError::BadRequest(format!(
                        "dryRun: Unsupported value: \"{other}\": supported values: \"All\""
                    )));
                }
            },
            "fieldManager" => parsed.field_manager = non_empty(value),
            "fieldValidation" => {
                parsed.field_validation = match value.as_str() {
                    "Strict" => FieldValidation::Strict,
                    "Warn" | "" => FieldValidation::Warn,
                    "Ignore" => FieldValidation::Ignore,
                    other => {
                        return Err(ApiError::BadRequest(format!(
                            "fieldValidation: Unsupported value: \"{other}\": supported values: \"Ignore\", \"Strict\", \"Warn\""
                        )));
                    }
                }
            }
            "force" => parsed.force = parse_bool("force", &value)?,
            "pretty" => parsed.pretty = parse_bool("pretty", &value)?,
            "node" => parsed.node = non_empty(value),
            "verbose" => parsed.verbose = value.is_empty() || parse_bool("verbose", &value)?,
            "hash" => parsed.hash = non_empty(value),
            "includeObject" => parsed.include_object = Some(value),
            "noHeaders" => parsed.no_headers = Some(value),
            _ => {}
        }
    }
    Ok(parsed)
}

fn non_empty(value: String) -> Option<String> {
    (!value.is_empty()).then_some(value)
}

fn parse_bool(name: &str, value: &str) -> Result<bool> {
    // Go's strconv.ParseBool, which Kubernetes uses for these parameters.
    match value {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(bad_param(name, value, "must be a boolean")),
    }
}

fn bad_param(name: &str, value: &str, why: &str) -> ApiError {
    ApiError::BadRequest(format!("{name}: Invalid value: \"{value}\": {why}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource(
        version: &'static str,
        kind: ResourceKind,
        name: Option<&str>,
        sub: Option<Subresource>,
    ) -> Option<Route> {
        Some(Route::Resource(ResourcePath {
            version,
            kind,
            name: name.map(str::to_string),
            subresource: sub,
        }))
    }

    #[test]
    fn paths() {
        use ResourceKind::*;
        let cases = [
            ("/version", Some(Route::Version)),
            ("/api", Some(Route::CoreApi)),
            ("/apis/", Some(Route::Apis)),
            ("/apis/nmstate.io", Some(Route::Group)),
            (
                "/apis/nmstate.io/v1beta1",
                Some(Route::GroupVersion("v1beta1")),
            ),
            ("/apis/nmstate.io/v2", None),
            ("/apis/example.com/v1", None),
            (
                "/openapi/v3/apis/nmstate.io/v1",
                Some(Route::OpenApiV3("v1")),
            ),
            (
                "/apis/nmstate.io/v1/nodenetworkconfigurationpolicies",
                resource("v1", NodeNetworkConfigurationPolicy, None, None),
            ),
            (
                "/apis/nmstate.io/v1/nodenetworkstates/node-1/status",
                resource(
                    "v1",
                    NodeNetworkState,
                    Some("node-1"),
                    Some(Subresource::Status),
                ),
            ),
            (
                "/apis/nmstate.io/v1/nodenetworkconfigurationpolicies/p/dry-run",
                resource(
                    "v1",
                    NodeNetworkConfigurationPolicy,
                    Some("p"),
                    Some(Subresource::DryRun),
                ),
            ),
            ("/apis/nmstate.io/v1/nodenetworkstates/n/render", None),
            ("/apis/nmstate.io/v1/nodenetworkstates/n/status/x", None),
            ("/apis/nmstate.io/v1/pods", None),
            (
                "/apis/nmstate.io/v1/nodenetworkstates/a%2Fb",
                resource("v1", NodeNetworkState, Some("a/b"), None),
            ),
        ];
        for (path, expected) in cases {
            assert_eq!(parse_path(path), expected, "{path}");
        }
    }

    #[test]
    fn verbs() {
        let collection = ResourcePath {
            version: "v1",
            kind: ResourceKind::NodeNetworkState,
            name: None,
            subresource: None,
        };
        let named = ResourcePath {
            name: Some("n".into()),
            ..collection.clone()
        };
        let watch = Query {
            watch: true,
            ..Query::default()
        };
        let plain = Query::default();
        assert_eq!(
            verb(&Method::GET, &collection, &watch).ok(),
            Some(Verb::Watch)
        );
        assert_eq!(
            verb(&Method::GET, &collection, &plain).ok(),
            Some(Verb::List)
        );
        assert_eq!(
            verb(&Method::DELETE, &collection, &plain).ok(),
            Some(Verb::DeleteCollection)
        );
        assert_eq!(verb(&Method::PATCH, &named, &plain).ok(), Some(Verb::Patch));
        assert!(matches!(
            verb(&Method::POST, &named, &plain),
            Err(ApiError::MethodNotAllowed(_))
        ));
        assert!(matches!(
            verb(&Method::PUT, &collection, &plain),
            Err(ApiError::MethodNotAllowed(_))
        ));
    }

    #[test]
    fn queries() {
        let query = parse_query(Some(
            "watch=1&labelSelector=a%3Db&limit=500&resourceVersion=12&allowWatchBookmarks=true&timeoutSeconds=30&fieldValidation=Strict&dryRun=All",
        ))
        .unwrap_or_default();
        assert!(query.watch);
        assert_eq!(query.label_selector.as_deref(), Some("a=b"));
        assert_eq!(query.limit, Some(500));
        assert_eq!(query.resource_version.as_deref(), Some("12"));
        assert!(query.allow_watch_bookmarks && query.dry_run);
        assert_eq!(query.timeout_seconds, Some(30));
        assert_eq!(query.field_validation, FieldValidation::Strict);

        let errors = [
            ("limit=x", "limit: Invalid value: \"x\": must be an integer"),
            (
                "watch=yes",
                "watch: Invalid value: \"yes\": must be a boolean",
            ),
            (
                "dryRun=Some",
                "dryRun: Unsupported value: \"Some\": supported values: \"All\"",
            ),
            (
                "fieldValidation=Loud",
                "fieldValidation: Unsupported value: \"Loud\": supported values: \"Ignore\", \"Strict\", \"Warn\"",
            ),
        ];
        for (query, expected) in errors {
            match parse_query(Some(query)) {
                Err(ApiError::BadRequest(message)) => assert_eq!(message, expected, "{query}"),
                other => panic!("{query}: expected BadRequest, got {other:?}"),
            }
        }
    }
}
