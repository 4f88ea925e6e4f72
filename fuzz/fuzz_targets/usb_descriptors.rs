//! Fuzz target `usb_descriptors`: see `fuzz_targets::usb_descriptors` (crates/fuzz-targets).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_targets::usb_descriptors(data));
