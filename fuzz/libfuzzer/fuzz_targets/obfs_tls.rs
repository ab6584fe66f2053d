#![no_main]
//! See gost_fuzz::obfs_tls.
libfuzzer_sys::fuzz_target!(|data: &[u8]| gost_fuzz::obfs_tls(data));
