//! The nmstate.io node agent (DESIGN.md section 7).
//!
//! It reports the node's network state as NodeNetworkState `<node>`
//! ([`reporter`]) and applies the enactments the controller released to its
//! node ([`enactor`]) through a [`backend`], guarded by [`probe`]s and
//! checkpoints. [`agent::run`] wires the parts; `main.rs` only parses flags.
//! The crate also holds the core of `nmpolicyctl gen` ([`nmpolicyctl`]).

pub mod agent;
pub mod backend;
pub mod client;
pub mod config;
pub mod enactor;
pub mod filter;
pub mod health;
pub mod metrics;
pub mod nmpolicyctl;
pub mod probe;
pub mod reporter;
