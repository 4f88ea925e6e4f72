//! Fuzz target `partition_blob`: see `fuzz_targets::partition_blob` (crates/fuzz-targets).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_targets::partition_blob(data));
