//! The Kubernetes REST API for nmstate.io.
//!
//! Request handling lives here, split by concern. Everything in this folder
//! so far is pure: functions over `serde_json::Value` objects that decide
//! what a write does, with no IO and no `.await`.
//!
//! - [`patch`]: JSON patch, merge patch and the apply body of `PATCH`.
//! - [`managed_fields`]: `metadata.managedFields` bookkeeping and
//!   server-side apply.

pub mod managed_fields;
pub mod patch;
