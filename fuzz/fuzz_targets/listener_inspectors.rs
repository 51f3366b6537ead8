//! `tern::fuzz_api::listener_inspectors`; the stable tests in `src/fuzz_api/tests.rs` run the
//! same function over `fuzz/corpus/listener_inspectors`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tern::fuzz_api::listener_inspectors(data));
