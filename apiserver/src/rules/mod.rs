//! The rules of Kubernetes objects, as pure functions over JSON values:
//! what a write may change ([`object`]: type checks, server-owned
//! metadata, status only through `/status`, finalizers), patches
//! ([`patch`]), managed fields and server-side apply ([`managed_fields`]),
//! label and field selectors ([`selector`]), a node state's current state
//! kept as text beside the object ([`current_state`]), and the readers of
//! JSON and YAML bodies they share with the codec.
//!
//! Below both the REST API (`api`) and the controller, which write
//! through the same rules. No IO and no HTTP: each module has its own
//! error type, and `api::error` alone turns those into a `metav1.Status`.

pub mod current_state;
pub(crate) mod json_reader;
pub mod managed_fields;
pub mod object;
pub mod patch;
pub mod selector;
pub mod yaml_reader;
