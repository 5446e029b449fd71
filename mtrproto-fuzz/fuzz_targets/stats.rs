#![no_main]
//! See `mtrproto::fuzzing::stats` for the property checked.
libfuzzer_sys::fuzz_target!(|data: &[u8]| mtrproto::fuzzing::stats(data));
