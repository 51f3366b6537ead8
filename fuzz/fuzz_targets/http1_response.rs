//! `tern::fuzz_api::http1_response`; the stable tests in `src/fuzz_api/tests.rs` run the same
//! function over `fuzz/corpus/http1_response`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tern::fuzz_api::http1_response(data));
