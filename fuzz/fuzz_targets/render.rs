//! See `nmstate_fuzz::render`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| nmstate_fuzz::render::check(data));
