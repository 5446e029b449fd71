#![no_main]
//! See `mtrproto::fuzzing::request_line` for the property checked.
libfuzzer_sys::fuzz_target!(|data: &[u8]| mtrproto::fuzzing::request_line(data));
