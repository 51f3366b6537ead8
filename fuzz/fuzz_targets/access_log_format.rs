//! `tern::fuzz_api::access_log_format`; the stable tests in `src/fuzz_api/tests.rs` run the same
//! function over `fuzz/corpus/access_log_format`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tern::fuzz_api::access_log_format(data));
