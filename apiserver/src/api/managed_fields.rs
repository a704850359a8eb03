//! STUB
use serde_json::Value;
pub fn update_managed_fields(
    _o: Option<&Value>,
    _n: &mut Value,
    _m: &str,
    _s: Option<&str>,
    _now: &str,
) {
}
