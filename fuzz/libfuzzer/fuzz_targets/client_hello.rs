#![no_main]
//! See gost_fuzz::client_hello.
libfuzzer_sys::fuzz_target!(|data: &[u8]| gost_fuzz::client_hello(data));
