#![no_main]
//! See `mtrproto::fuzzing::values` for the property checked.
libfuzzer_sys::fuzz_target!(|data: &[u8]| mtrproto::fuzzing::values(data));
