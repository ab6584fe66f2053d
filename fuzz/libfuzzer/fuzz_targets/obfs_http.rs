#![no_main]
//! See gost_fuzz::obfs_http.
libfuzzer_sys::fuzz_target!(|data: &[u8]| gost_fuzz::obfs_http(data));
