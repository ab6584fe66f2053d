#![no_main]
//! See gost_fuzz::smux_frames.
libfuzzer_sys::fuzz_target!(|data: &[u8]| gost_fuzz::smux_frames(data));
