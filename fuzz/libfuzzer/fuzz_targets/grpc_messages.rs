#![no_main]
//! See gost_fuzz::grpc_messages.
libfuzzer_sys::fuzz_target!(|data: &[u8]| gost_fuzz::grpc_messages(data));
