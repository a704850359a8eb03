//! Reading a YAML request body into a JSON [`Value`] under limits, shared
//! by request bodies (`api::codec`) and server-side apply bodies
//! ([`super::patch`]).

use serde_json::Value;

use crate::request::MAX_BODY_BYTES;

/// How deeply a YAML body may nest. The reader recurses once per level
/// with large frames: 128 levels (`serde_json`'s limit for JSON) overflowed
/// a 2 MiB thread stack in a debug build, 64 leave half of it free. No
/// object of this API comes near this depth.
pub const MAX_YAML_DEPTH: usize = 64;
/// How many nodes aliases may replay in one YAML body. A 3 MiB body without
/// aliases has far fewer nodes than this, so only alias expansion (the
/// "billion laughs") reaches it.
pub const MAX_YAML_ALIAS_REPLAY: usize = 100_000;
/// How many nodes (scalars, sequences, mappings) one YAML body may hold.
pub const MAX_YAML_NODES: usize = 250_000;

/// Reads one YAML document as a JSON value under limits on depth, alias
/// expansion and size, so that a small hostile body cannot cost the server
/// more than a large honest one. Duplicate keys are an error, as they are
/// for kube-apiserver's YAML reader, and so are YAML 1.1 booleans (`yes`
/// is `true`). The message says what failed and where.
pub fn decode_yaml(bytes: &[u8]) -> std::result::Result<Value, String> {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_depth = MAX_YAML_DEPTH;
    budget.max_nodes = MAX_YAML_NODES;
    budget.max_documents = 1;
    budget.max_total_scalar_bytes = MAX_BODY_BYTES;
    let mut aliases = serde_saphyr::options::AliasLimits::default();
    aliases.max_total_replayed_events = MAX_YAML_ALIAS_REPLAY;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options.alias_limits = aliases;
    options.duplicate_keys = serde_saphyr::options::DuplicateKeyPolicy::Error;
    // One line per error: the message goes into a Status, not a terminal.
    options.with_snippet = false;
    serde_saphyr::from_slice_with_options::<Value>(bytes, options).map_err(|e| e.to_string())
}
