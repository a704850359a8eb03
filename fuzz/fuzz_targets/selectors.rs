//! See `nmstate_fuzz::selectors`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| nmstate_fuzz::selectors::check(data));
