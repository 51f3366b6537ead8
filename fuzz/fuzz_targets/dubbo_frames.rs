//! `tern::fuzz_api::dubbo_frames`; the stable tests in `src/fuzz_api/tests.rs` run the same
//! function over `fuzz/corpus/dubbo_frames`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tern::fuzz_api::dubbo_frames(data));
