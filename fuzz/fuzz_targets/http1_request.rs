//! `tern::fuzz_api::http1_request`; the stable tests in `src/fuzz_api/tests.rs` run the same
//! function over `fuzz/corpus/http1_request`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tern::fuzz_api::http1_request(data));
