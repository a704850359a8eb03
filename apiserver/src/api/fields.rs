//! Managed fields on writes that are not server-side apply: the adapter
//! between the verbs and [`super::managed_fields`].

use serde_json::Value;

/// Records in `new.metadata.managedFields` that `manager` now owns the
/// fields it changed relative to `old` (an `Update` operation).
pub fn track(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    subresource: Option<&str>,
    now: &str,
) {
    super::managed_fields::update_managed_fields(old, new, manager, subresource, now);
}

/// Whether two objects differ only in managed-field timestamps: such a
/// write changes nothing a client can observe and is skipped, as
/// Kubernetes skips no-op updates.
pub fn same_ignoring_timestamps(old: &Value, new: &Value) -> bool {
    fn strip(object: &Value) -> Value {
        let mut object = object.clone();
        if let Some(entries) = object
            .get_mut("metadata")
            .and_then(|m| m.get_mut("managedFields"))
            .and_then(Value::as_array_mut)
        {
            for entry in entries {
                if let Some(entry) = entry.as_object_mut() {
                    entry.remove("time");
                }
            }
        }
        object
    }
    strip(old) == strip(new)
}
