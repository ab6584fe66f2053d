#![no_main]
//! See gost_fuzz::http1_body.
libfuzzer_sys::fuzz_target!(|data: &[u8]| gost_fuzz::http1_body(data));
