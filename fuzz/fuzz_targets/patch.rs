//! See `nmstate_fuzz::patch`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| nmstate_fuzz::patch::check(data));
