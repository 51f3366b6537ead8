//! `tern::fuzz_api::bootstrap_text`; the stable tests in `src/fuzz_api/tests.rs` run the same function
//! over `fuzz/corpus/bootstrap_text`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tern::fuzz_api::bootstrap_text(data));
