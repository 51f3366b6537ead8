//! `tern::fuzz_api::bolt_codec`; the stable tests in `src/fuzz_api/tests.rs` run the same
//! function over `fuzz/corpus/bolt_codec`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tern::fuzz_api::bolt_codec(data));
