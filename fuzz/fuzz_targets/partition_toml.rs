//! Fuzz target `partition_toml`: see `fuzz_targets::partition_toml` (crates/fuzz-targets).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_targets::partition_toml(data));
