//! `tern::fuzz_api::route_config_proto`; the stable tests in `src/fuzz_api/tests.rs` run the same function
//! over `fuzz/corpus/route_config_proto`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tern::fuzz_api::route_config_proto(data));
