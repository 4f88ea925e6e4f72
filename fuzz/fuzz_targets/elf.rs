//! Fuzz target `elf`: see `fuzz_targets::elf` (crates/fuzz-targets).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_targets::elf(data));
