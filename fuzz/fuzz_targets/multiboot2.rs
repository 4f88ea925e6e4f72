//! Fuzz target `multiboot2`: see `fuzz_targets::multiboot2` (crates/fuzz-targets).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_targets::multiboot2(data));
