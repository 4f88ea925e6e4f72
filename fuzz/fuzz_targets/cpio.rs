//! Fuzz target `cpio`: see `fuzz_targets::cpio` (crates/fuzz-targets).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_targets::cpio(data));
