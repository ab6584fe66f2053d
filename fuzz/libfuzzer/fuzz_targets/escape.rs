#![no_main]
//! See gost_fuzz::escape.
libfuzzer_sys::fuzz_target!(|data: &[u8]| gost_fuzz::escape(data));
