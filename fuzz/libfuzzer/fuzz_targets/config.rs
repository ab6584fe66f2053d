#![no_main]
//! See gost_fuzz::config.
libfuzzer_sys::fuzz_target!(|data: &[u8]| gost_fuzz::config(data));
