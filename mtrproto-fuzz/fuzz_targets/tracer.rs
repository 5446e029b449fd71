#![no_main]
//! See `mtrproto::fuzzing::tracer` for the property checked.
libfuzzer_sys::fuzz_target!(|data: &[u8]| mtrproto::fuzzing::tracer(data));
