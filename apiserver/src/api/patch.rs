//! STUB
use super::error::ApiError;
use nmstate_openapi::ResourceKind;
use serde_json::Value;
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchType {
    Json,
    Merge,
    Apply,
}
pub fn apply_patch(_l: &Value, _t: PatchType, _b: &[u8]) -> Result<Value, ApiError> {
    todo!()
}
pub fn parse_apply_body(_b: &[u8]) -> Result<Value, ApiError> {
    todo!()
}
#[derive(Debug)]
pub struct ApplyConflict;
impl ApplyConflict {
    pub fn into_api_error(self, _k: ResourceKind, _n: &str) -> ApiError {
        todo!()
    }
}
pub fn server_side_apply(
    _l: Option<&Value>,
    _a: &Value,
    _m: &str,
    _f: bool,
    _s: Option<&str>,
    _now: &str,
) -> Result<Value, ApplyConflict> {
    todo!()
}
