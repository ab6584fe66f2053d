#![no_main]
//! See gost_fuzz::cli.
libfuzzer_sys::fuzz_target!(|data: &[u8]| gost_fuzz::cli(data));
