//! Fuzz target `channels`: see `fuzz_targets::channels` (crates/fuzz-targets).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_targets::channels(data));
