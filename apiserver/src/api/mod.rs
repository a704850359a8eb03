//! The Kubernetes REST API for nmstate.io.

pub mod selector;
pub mod table;
