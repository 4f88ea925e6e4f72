//! Fuzz target `fat_volume`: see `fuzz_targets::fat_volume` (crates/fuzz-targets).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_targets::fat_volume(data));
