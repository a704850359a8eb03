//! Media types: reading request bodies (size limit, JSON or YAML, patch
//! types) and choosing and writing the response format (`Accept`: JSON,
//! YAML, `as=Table`, `as=PartialObjectMetadata`, aggregated discovery),
//! with gzip when the client accepts it and the body is large.

use std::io::Write;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use serde_json::Value;

use super::error::{ApiError, MAX_BODY_BYTES, Result};
pub use crate::rules::yaml_reader::{
    MAX_YAML_ALIAS_REPLAY, MAX_YAML_DEPTH, MAX_YAML_NODES, decode_yaml,
};
use crate::{
    body::{self, Body, full},
    rules::json_reader,
};

/// Bodies larger than this are gzipped when the client accepts gzip (the
/// threshold kube-apiserver uses).
const GZIP_THRESHOLD: usize = 128 * 1024;

/// What a request body is, by its `Content-Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestFormat {
    /// `application/json` (or none given).
    Json,
    /// `application/yaml`.
    Yaml,
    /// `application/json-patch+json`.
    JsonPatch,
    /// `application/merge-patch+json`.
    MergePatch,
    /// `application/apply-patch+yaml` (server-side apply).
    ApplyPatch,
    /// `application/strategic-merge-patch+json` (not supported for these
    /// kinds, as for custom resources).
    StrategicMergePatch,
}

impl RequestFormat {
    /// The format of a `Content-Type` header; 415 for anything else, and
    /// for a compressed body: request bodies are not decompressed (a small
    /// gzip body may expand past any limit), so a `Content-Encoding` other
    /// than `identity` is refused before the body is read.
    pub fn from_headers(headers: &HeaderMap) -> Result<Self> {
        if let Some(encoding) = headers.get(header::CONTENT_ENCODING)
            && !encoding
                .to_str()
                .is_ok_and(|encoding| encoding.trim().eq_ignore_ascii_case("identity"))
        {
            return Err(ApiError::UnsupportedMediaType(format!(
                "unsupported Content-Encoding {:?}: request bodies must not be compressed",
                String::from_utf8_lossy(encoding.as_bytes())
            )));
        }
        let Some(value) = headers.get(header::CONTENT_TYPE) else {
            return Ok(RequestFormat::Json);
        };
        let value = value
            .to_str()
            .map_err(|_| ApiError::UnsupportedMediaType("invalid Content-Type header".into()))?;
        let media = value
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        Ok(match media.as_str() {
            "application/json" | "" => RequestFormat::Json,
            "application/yaml" | "application/x-yaml" | "text/yaml" => RequestFormat::Yaml,
            "application/json-patch+json" => RequestFormat::JsonPatch,
            "application/merge-patch+json" => RequestFormat::MergePatch,
            "application/apply-patch+yaml" | "application/apply-patch+json" => {
                RequestFormat::ApplyPatch
            }
            "application/strategic-merge-patch+json" => RequestFormat::StrategicMergePatch,
            other => {
                return Err(ApiError::UnsupportedMediaType(format!(
                    "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml (got {other:?})"
                )));
            }
        })
    }
}

/// Reads a whole request body, refusing more than [`MAX_BODY_BYTES`].
pub async fn read_body<B>(body: B) -> Result<Bytes>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(ApiError::TooLarge)
        }
        Err(e) => Err(ApiError::BadRequest(format!(
            "reading the request body: {e}"
        ))),
    }
}

/// Parses a JSON or YAML document into a JSON value, with the paths of
/// duplicate keys of a JSON document (`fieldValidation` decides what they
/// are; YAML forbids them); malformed input is a 400 that says where.
pub fn parse_document(bytes: &[u8], format: RequestFormat) -> Result<(Value, Vec<String>)> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::BadRequest("the request body is empty".into()));
    }
    match format {
        RequestFormat::Yaml | RequestFormat::ApplyPatch => decode_yaml(bytes)
            .map(|value| (value, Vec::new()))
            .map_err(|e| ApiError::BadRequest(format!("error decoding YAML: {e}"))),
        _ => json_reader::from_slice(bytes)
            .map_err(|e| ApiError::BadRequest(format!("error decoding JSON: {e}"))),
    }
}

/// [`parse_document`], with an object at `status.currentState` (a node
/// state's nmstate report) read as JSON text beside the value, `{}` in its
/// place: the text is what serialising its value gives, so a write can
/// store it without ever building its tree.
pub fn parse_document_setting_aside_current_state(
    bytes: &[u8],
    format: RequestFormat,
) -> Result<(Value, Vec<String>, Option<String>)> {
    if format == RequestFormat::Json && !bytes.iter().all(u8::is_ascii_whitespace) {
        let document = json_reader::from_slice_setting_aside_current_state(bytes)
            .map_err(|e| ApiError::BadRequest(format!("error decoding JSON: {e}")))?;
        return Ok((document.value, document.duplicates, document.current_state));
    }
    // YAML (or an empty body, refused there): the tree, then its text.
    let (mut value, duplicates) = parse_document(bytes, format)?;
    let text = match value.pointer_mut("/status/currentState") {
        Some(state) if state.is_object() => {
            let text = serde_json::to_string(state)
                .map_err(|e| ApiError::Internal(format!("encoding current state: {e}")))?;
            *state = Value::Object(serde_json::Map::new());
            Some(text)
        }
        _ => None,
    };
    Ok((value, duplicates, text))
}

/// How to write the response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseFormat {
    /// The object(s) as JSON.
    Json,
    /// The object(s) as YAML.
    Yaml,
    /// A `meta.k8s.io/v1` Table.
    Table,
    /// `PartialObjectMetadata` / `PartialObjectMetadataList`.
    Metadata,
    /// Aggregated discovery (`apidiscovery.k8s.io/v2`).
    DiscoveryV2,
}

/// Picks the response format from `Accept`, in the client's order of
/// preference. 406 when nothing asked for can be produced.
pub fn negotiate(headers: &HeaderMap) -> Result<ResponseFormat> {
    let accept = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(",");
    if accept.trim().is_empty() {
        return Ok(ResponseFormat::Json);
    }
    let mut clauses: Vec<(f32, usize, &str)> = Vec::new();
    for (index, clause) in accept.split(',').enumerate() {
        let q = clause
            .split(';')
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.parse::<f32>().ok())
            .unwrap_or(1.0);
        clauses.push((q, index, clause));
    }
    clauses.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    for (q, _, clause) in clauses {
        if q <= 0.0 {
            continue;
        }
        if let Some(format) = media_format(clause) {
            return Ok(format);
        }
    }
    Err(ApiError::NotAcceptable(format!(
        "only the following media types are accepted: application/json, application/yaml, application/json;as=Table;v=v1;g=meta.k8s.io (asked for {accept:?})"
    )))
}

fn media_format(clause: &str) -> Option<ResponseFormat> {
    let mut parts = clause.split(';').map(str::trim);
    let media = parts.next()?.to_ascii_lowercase();
    let mut as_kind = None;
    let mut group = None;
    let mut version = None;
    for param in parts {
        match param.split_once('=') {
            Some(("as", value)) => as_kind = Some(value),
            Some(("g", value)) => group = Some(value),
            Some(("v", value)) => version = Some(value),
            _ => {}
        }
    }
    match media.as_str() {
        "application/json" | "*/*" | "application/*" => {}
        "application/yaml" if as_kind.is_none() => return Some(ResponseFormat::Yaml),
        _ => return None,
    }
    match (as_kind, group, version) {
        (None, _, _) => Some(ResponseFormat::Json),
        (Some("Table"), Some("meta.k8s.io"), Some("v1" | "v1beta1")) => Some(ResponseFormat::Table),
        (
            Some("PartialObjectMetadata" | "PartialObjectMetadataList"),
            Some("meta.k8s.io"),
            Some("v1" | "v1beta1"),
        ) => Some(ResponseFormat::Metadata),
        (Some("APIGroupDiscoveryList"), Some("apidiscovery.k8s.io"), Some("v2" | "v2beta1")) => {
            Some(ResponseFormat::DiscoveryV2)
        }
        _ => None,
    }
}

/// Whether the client accepts gzip.
pub fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| coding.split(';').next().map(str::trim) == Some("gzip"))
}

/// Options for writing one response.
#[derive(Clone, Copy, Debug, Default)]
pub struct Encoding {
    /// YAML instead of JSON.
    pub yaml: bool,
    /// Indented JSON (`?pretty=true`).
    pub pretty: bool,
    /// gzip large bodies.
    pub gzip: bool,
}

/// A JSON (or YAML) response with `code`.
pub fn respond(code: StatusCode, value: &Value, encoding: Encoding) -> Response<Body> {
    let (bytes, content_type) = if encoding.yaml {
        match serde_yaml::to_string(value) {
            Ok(yaml) => (yaml.into_bytes(), "application/yaml"),
            Err(e) => {
                return ApiError::Internal(format!("encoding YAML: {e}"))
                    .into_status()
                    .into_response();
            }
        }
    } else if encoding.pretty {
        (
            serde_json::to_vec_pretty(value).unwrap_or_default(),
            "application/json",
        )
    } else {
        (
            serde_json::to_vec(value).unwrap_or_default(),
            "application/json",
        )
    };
    respond_bytes(code, bytes, content_type, encoding.gzip)
}

/// A response from ready bytes, gzipped when allowed and worth it.
pub fn respond_bytes(
    code: StatusCode,
    bytes: Vec<u8>,
    content_type: &'static str,
    gzip: bool,
) -> Response<Body> {
    respond_pieces(code, vec![Bytes::from(bytes)], content_type, gzip)
}

/// A response whose body is `pieces` one after another (a list's head,
/// then each object's shared serialisation), gzipped as
/// [`respond_bytes`] does; otherwise sent as they are, never copied into
/// one buffer.
pub fn respond_pieces(
    code: StatusCode,
    pieces: Vec<Bytes>,
    content_type: &'static str,
    gzip: bool,
) -> Response<Body> {
    let mut builder = Response::builder()
        .status(code)
        .header(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    let length: usize = pieces.iter().map(Bytes::len).sum();
    let body = if gzip && length > GZIP_THRESHOLD {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let compressed = pieces
            .iter()
            .try_for_each(|piece| encoder.write_all(piece))
            .and_then(|()| encoder.finish());
        match compressed {
            Ok(compressed) => {
                builder = builder
                    .header(header::CONTENT_ENCODING, "gzip")
                    .header(header::VARY, "Accept-Encoding");
                full(compressed)
            }
            Err(_) => body::pieces(pieces),
        }
    } else {
        body::pieces(pieces)
    };
    builder.body(body).unwrap_or_else(|_| {
        ApiError::Internal("building a response".into())
            .into_status()
            .into_response()
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn accept(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_str(value).unwrap_or(HeaderValue::from_static("")),
        );
        headers
    }

    #[test]
    fn negotiation() {
        let cases = [
            ("", Some(ResponseFormat::Json)),
            ("application/json", Some(ResponseFormat::Json)),
            ("*/*", Some(ResponseFormat::Json)),
            ("application/yaml", Some(ResponseFormat::Yaml)),
            (
                "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json",
                Some(ResponseFormat::Table),
            ),
            (
                "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json;q=0.9",
                Some(ResponseFormat::DiscoveryV2),
            ),
            (
                "application/json;as=Table;v=v2;g=meta.k8s.io, application/json",
                Some(ResponseFormat::Json),
            ),
            (
                "application/json;q=0.5, application/yaml",
                Some(ResponseFormat::Yaml),
            ),
            ("application/vnd.kubernetes.protobuf", None),
        ];
        for (value, expected) in cases {
            assert_eq!(negotiate(&accept(value)).ok(), expected, "{value}");
        }
    }

    #[test]
    fn compressed_bodies_are_refused() {
        for encoding in ["gzip", "br", "deflate, gzip", "x-unknown"] {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static(encoding));
            let error = RequestFormat::from_headers(&headers).unwrap_err();
            assert!(
                matches!(&error, ApiError::UnsupportedMediaType(message) if message.contains("must not be compressed")),
                "{encoding}: {error:?}"
            );
        }
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_ENCODING,
            HeaderValue::from_static("identity"),
        );
        assert_eq!(
            RequestFormat::from_headers(&headers).unwrap(),
            RequestFormat::Json
        );
    }

    #[test]
    fn content_types() {
        let mut headers = HeaderMap::new();
        for (value, expected) in [
            ("application/json; charset=utf-8", Some(RequestFormat::Json)),
            (
                "application/apply-patch+yaml",
                Some(RequestFormat::ApplyPatch),
            ),
            (
                "application/strategic-merge-patch+json",
                Some(RequestFormat::StrategicMergePatch),
            ),
            ("text/plain", None),
        ] {
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(value));
            assert_eq!(
                RequestFormat::from_headers(&headers).ok(),
                expected,
                "{value}"
            );
        }
    }

    #[test]
    fn malformed_documents_say_where() {
        let err = parse_document(b"{\"a\": }", RequestFormat::Json)
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("error decoding JSON: expected value at line 1 column 7")
        );
        let err = parse_document(b"a: [1,\nb", RequestFormat::Yaml)
            .err()
            .map(|e| e.to_string());
        assert!(
            err.as_deref()
                .is_some_and(|e| e.starts_with("error decoding YAML: ") && e.contains("line")),
            "{err:?}"
        );
    }

    #[test]
    fn yaml_bodies_are_read_within_limits() {
        let laughs = {
            let mut yaml = String::from(
                "a0: &a0 [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
            );
            for level in 1..10 {
                let previous = format!("*a{}", level - 1);
                let items = vec![previous; 10].join(",");
                yaml.push_str(&format!("a{level}: &a{level} [{items}]\n"));
            }
            yaml
        };
        let deep = |levels: usize| format!("{}1{}", "[".repeat(levels), "]".repeat(levels));
        let block_deep = |levels: usize| {
            (0..levels)
                .map(|level| format!("{}k:\n", "  ".repeat(level)))
                .collect::<String>()
        };
        let cases: Vec<(&str, String, Option<Value>)> = vec![
            (
                "mapping",
                "a: 1\nb: [x, 2]\n".into(),
                Some(serde_json::json!({"a": 1, "b": ["x", 2]})),
            ),
            // As kube's YAML reader (YAML 1.1 booleans).
            (
                "YAML 1.1 booleans",
                "a: yes\nb: \"yes\"\n".into(),
                Some(serde_json::json!({"a": true, "b": "yes"})),
            ),
            (
                "a few aliases",
                "a: &x {b: 1}\nc: *x\n".into(),
                Some(serde_json::json!({"a": {"b": 1}, "c": {"b": 1}})),
            ),
            (
                "nesting at the limit",
                deep(MAX_YAML_DEPTH - 1),
                Some(Value::Null),
            ),
            ("flow nesting past the limit", deep(10_000), None),
            ("block nesting past the limit", block_deep(1_000), None),
            ("billion laughs", laughs, None),
            ("duplicate keys", "a: 1\na: 2\n".into(), None),
            ("two documents", "a: 1\n---\nb: 2\n".into(), None),
            (
                "invalid UTF-8",
                "a: \"\u{fffd}\"".replace('\u{fffd}', "\u{0}"),
                None,
            ),
        ];
        for (name, yaml, expected) in cases {
            let decoded = decode_yaml(yaml.as_bytes());
            match expected {
                Some(Value::Null) => assert!(decoded.is_ok(), "{name}: {decoded:?}"),
                Some(expected) => assert_eq!(decoded.as_ref(), Ok(&expected), "{name}"),
                None => assert!(decoded.is_err(), "{name}: {decoded:?}"),
            }
        }
        assert!(decode_yaml(b"a: \xff\xfe").is_err(), "invalid UTF-8");
    }

    async fn body_of(response: Response<Body>) -> (Option<u64>, Vec<u8>) {
        let exact = hyper::body::Body::size_hint(response.body()).exact();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (exact, bytes.to_vec())
    }

    #[tokio::test]
    async fn pieces_are_sent_in_order_with_their_total_length() {
        let pieces = ["{\"items\":[", "", "{\"a\":1}", ",", "{\"b\":2}", "]}"];
        let response = respond_pieces(
            StatusCode::OK,
            pieces.iter().map(|piece| Bytes::from(*piece)).collect(),
            "application/json",
            true, // small: not worth gzip
        );
        assert!(response.headers().get(header::CONTENT_ENCODING).is_none());
        let (exact, bytes) = body_of(response).await;
        let whole = pieces.concat();
        assert_eq!(exact, Some(whole.len() as u64));
        assert_eq!(bytes, whole.as_bytes());
    }

    #[tokio::test]
    async fn large_pieces_are_gzipped_whole_when_the_client_accepts_it() {
        let object = Bytes::from(format!("{{\"x\":\"{}\"}}", "y".repeat(1000)));
        let mut pieces = vec![Bytes::from_static(b"[")];
        for index in 0..200 {
            if index > 0 {
                pieces.push(Bytes::from_static(b","));
            }
            pieces.push(object.clone());
        }
        pieces.push(Bytes::from_static(b"]"));
        let whole: Vec<u8> = pieces.concat();
        let response = respond_pieces(StatusCode::OK, pieces, "application/json", true);
        assert_eq!(response.headers()[header::CONTENT_ENCODING], "gzip");
        let (_, compressed) = body_of(response).await;
        let mut decoded = Vec::new();
        std::io::Read::read_to_end(
            &mut flate2::read::GzDecoder::new(&compressed[..]),
            &mut decoded,
        )
        .unwrap();
        assert_eq!(decoded, whole);
    }
}
