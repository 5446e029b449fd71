#![no_main]
//! See `mtrproto::fuzzing::framer` for the property checked.
libfuzzer_sys::fuzz_target!(|data: &[u8]| mtrproto::fuzzing::framer(data));
