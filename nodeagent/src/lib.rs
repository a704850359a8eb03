//! The nmstate.io node agent (DESIGN.md section 7).
//!
//! It reports the node's network state as NodeNetworkState `<node>`
//! ([`reporter`]) and applies the enactments the controller released to its
//! node ([`enactor`]) through a [`backend`], guarded by [`probe`]s and
//! checkpoints. [`agent::run`] wires the parts; `main.rs` only parses flags.
//! nmstate itself runs in a binary of its own, `nmstate-helper`
//! ([`helper`]), so that the resident agent does not carry its code.
//! The crate also holds the core of `nmpolicyctl gen` ([`nmpolicyctl`]).

pub mod agent;
pub mod backend;
pub mod client;
pub mod config;
pub mod enactor;
pub mod filter;
pub mod health;
pub mod helper;
pub mod metrics;
pub mod nmpolicyctl;
pub mod probe;
pub mod reporter;
