#![no_main]
//! See gost_fuzz::sni_rewrite.
libfuzzer_sys::fuzz_target!(|data: &[u8]| gost_fuzz::sni_rewrite(data));
