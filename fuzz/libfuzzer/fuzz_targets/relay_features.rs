#![no_main]
//! See gost_fuzz::relay_features.
libfuzzer_sys::fuzz_target!(|data: &[u8]| gost_fuzz::relay_features(data));
