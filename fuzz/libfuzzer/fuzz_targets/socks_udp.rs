#![no_main]
//! See gost_fuzz::socks_udp.
libfuzzer_sys::fuzz_target!(|data: &[u8]| gost_fuzz::socks_udp(data));
