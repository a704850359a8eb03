//! See `nmstate_fuzz::decode`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| nmstate_fuzz::decode::check(data));
