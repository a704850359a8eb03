//! The nmstate.io node agent.
//!
//! It will report the node's network state as a NodeNetworkState and apply
//! the enactments released to its node (DESIGN.md section 7). For now it
//! holds the core of `nmpolicyctl gen` ([`nmpolicyctl`]).

pub mod backend;
pub mod nmpolicyctl;
