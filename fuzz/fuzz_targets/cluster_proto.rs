//! `tern::fuzz_api::cluster_proto`; the stable tests in `src/fuzz_api/tests.rs` run the same function
//! over `fuzz/corpus/cluster_proto`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tern::fuzz_api::cluster_proto(data));
