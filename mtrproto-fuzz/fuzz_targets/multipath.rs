#![no_main]
//! See `mtrproto::fuzzing::multipath` for the property checked.
libfuzzer_sys::fuzz_target!(|data: &[u8]| mtrproto::fuzzing::multipath(data));
