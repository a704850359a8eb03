//! The OpenAPI documents of group nmstate.io, generated from the Rust types
//! with utoipa, shaped as kube-apiserver shapes those of a cluster-scoped
//! custom resource, so that `kubectl explain`, `kubectl create -f` (its
//! client-side validation) and code generators read them.
//!
//! - [`openapi_v3`]: `/openapi/v3/apis/nmstate.io/<version>`, OpenAPI 3.0;
//! - [`openapi_v3_index`]: `/openapi/v3`, the index pointing at those with
//!   a content hash (clients cache by it);
//! - [`openapi_v2`]: `/openapi/v2`, Swagger 2.0, both versions in one.
//!
//! Pure and deterministic: the same build gives the same bytes (keys sorted,
//! as Go's encoder writes them), so hashes and ETags are stable. The golden
//! files under `testdata/openapi/` hold the current output; rewrite them
//! with `UPDATE_EXPECT=1 cargo test -p nmstate-openapi`.
//!
//! utoipa emits OpenAPI 3.1 idioms that kubectl 1.32 misreads; the
//! [`normalize`] pass turns them into kube-apiserver's 3.0 idioms.

pub(crate) mod meta;
mod normalize;
mod paths;
pub(crate) mod schemas;
mod v2;

#[cfg(test)]
mod tests;

use serde_json::{Map, Value, json};
use utoipa::openapi::{
    ComponentsBuilder, InfoBuilder, OpenApiBuilder,
    security::{ApiKey, ApiKeyValue, SecurityRequirement, SecurityScheme},
};

use crate::{GROUP, VERSIONS};

/// Where OpenAPI 3 `$ref`s point.
pub(crate) const V3_REF_PREFIX: &str = "#/components/schemas/";
/// Where Swagger 2.0 `$ref`s point.
pub(crate) const V2_REF_PREFIX: &str = "#/definitions/";
/// The extension naming the group, version and kind of a schema (a list)
/// or an operation (an object).
pub const GVK_EXTENSION: &str = "x-kubernetes-group-version-kind";
/// The `openapi` version written: what kube-apiserver writes, and what the
/// normalised document conforms to.
const OPENAPI_VERSION: &str = "3.0.0";
/// The security scheme kube-apiserver documents.
const BEARER_TOKEN: &str = "BearerToken";

/// The path of `version`'s document below `/openapi/v3/`, which is also its
/// key in the index: `apis/nmstate.io/<version>`.
pub fn openapi_v3_path(version: &str) -> String {
    format!("apis/{GROUP}/{version}")
}

/// The OpenAPI 3.0 document of `version` (served at
/// `/openapi/v3/apis/nmstate.io/<version>`), or `None` when `version` is
/// not served.
pub fn openapi_v3(version: &str) -> Option<Value> {
    if !VERSIONS.contains(&version) {
        return None;
    }
    let document = OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title(format!("{GROUP} API"))
                .version("unversioned")
                .build(),
        )
        .paths(paths::paths(version))
        .components(Some(
            ComponentsBuilder::new()
                .security_scheme(
                    BEARER_TOKEN,
                    SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                        "authorization",
                        "Bearer Token authentication",
                    ))),
                )
                .build(),
        ))
        .security(Some([SecurityRequirement::new(
            BEARER_TOKEN,
            Vec::<String>::new(),
        )]))
        .build();
    let mut document = serde_json::to_value(&document).ok()?;

    let mut components = meta::schemas();
    components.extend(schemas::schemas(version));
    let object = document.as_object_mut()?;
    object.insert("openapi".to_owned(), json!(OPENAPI_VERSION));
    let components_object = object
        .entry("components")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(components_object) = components_object {
        components_object.insert("schemas".to_owned(), Value::Object(components));
    }
    normalize::normalize(&mut document);
    Some(document)
}

/// The Swagger 2.0 document of every served version (served at
/// `/openapi/v2`).
pub fn openapi_v2() -> Value {
    let documents: Vec<Value> = VERSIONS.iter().filter_map(|v| openapi_v3(v)).collect();
    let mut document = v2::convert(&documents);
    normalize::sort_keys(&mut document);
    document
}

/// The bytes to serve for `document`: compact JSON. [`content_hash`] and
/// the hashes in [`openapi_v3_index`] are computed over these bytes.
pub fn to_json_bytes(document: &Value) -> Vec<u8> {
    // Serialising a `Value` only fails for non-string map keys, which a
    // `Value` cannot hold.
    serde_json::to_vec(document).unwrap_or_default()
}

/// A stable hash of `bytes`: 16 upper-case hex digits of their 64-bit
/// FNV-1a, for the `?hash=` of `/openapi/v3` and for ETags. Clients treat
/// it as opaque (kube-apiserver uses SHA-512); it only has to change when
/// the document does.
pub fn content_hash(bytes: &[u8]) -> String {
    format!("{:016X}", crate::enactment::fnv1a64(bytes))
}

/// The `/openapi/v3` index (kube-openapi's `OpenAPIV3Discovery`): for each
/// served version, `apis/nmstate.io/<version>` →
/// `{"serverRelativeURL": "<base>/apis/nmstate.io/<version>?hash=<hash>"}`,
/// where `base` is where the documents are served (`/openapi/v3`) and the
/// hash is [`content_hash`] of the [`to_json_bytes`] of [`openapi_v3`].
pub fn openapi_v3_index(base: &str) -> Value {
    let base = base.trim_end_matches('/');
    let paths: Map<String, Value> = VERSIONS
        .iter()
        .filter_map(|version| {
            let document = openapi_v3(version)?;
            let hash = content_hash(&to_json_bytes(&document));
            let path = openapi_v3_path(version);
            let url = format!("{base}/{path}?hash={hash}");
            Some((path, json!({ "serverRelativeURL": url })))
        })
        .collect();
    let mut index = json!({ "paths": paths });
    normalize::sort_keys(&mut index);
    index
}
