#![no_main]
//! See `mtrproto::fuzzing::session` for the property checked.
libfuzzer_sys::fuzz_target!(|data: &[u8]| mtrproto::fuzzing::session(data));
