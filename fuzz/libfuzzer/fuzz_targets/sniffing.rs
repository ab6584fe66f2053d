#![no_main]
//! See gost_fuzz::sniffing.
libfuzzer_sys::fuzz_target!(|data: &[u8]| gost_fuzz::sniffing(data));
