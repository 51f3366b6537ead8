//! `tern::fuzz_api::request_path`; the stable tests in `src/fuzz_api/tests.rs` run the same function
//! over `fuzz/corpus/request_path`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tern::fuzz_api::request_path(data));
