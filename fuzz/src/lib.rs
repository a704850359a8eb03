//! The checks of the fuzz targets, one module a target, over the bytes
//! libFuzzer makes: each reads the input as the server would and panics
//! when an invariant breaks. `fuzz_targets/` calls them under cargo-fuzz;
//! `tests/replay.rs` runs them on stable over the seed corpus and over
//! every input a fuzzer once failed on (`regressions/`), in
//! `hack/test.sh`.

pub mod decode;
pub mod patch;
pub mod record_codec;
pub mod render;
pub mod selectors;
