#![no_main]
//! See gost_fuzz::handlers.
libfuzzer_sys::fuzz_target!(|data: &[u8]| gost_fuzz::handlers(data));
