#![no_main]
//! See gost_fuzz::values.
libfuzzer_sys::fuzz_target!(|data: &[u8]| gost_fuzz::values(data));
