#![no_main]
//! See gost_fuzz::tunnel_features.
libfuzzer_sys::fuzz_target!(|data: &[u8]| gost_fuzz::tunnel_features(data));
