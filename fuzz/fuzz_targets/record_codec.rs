//! See `nmstate_fuzz::record_codec`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| nmstate_fuzz::record_codec::check(data));
