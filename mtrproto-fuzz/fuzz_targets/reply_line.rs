#![no_main]
//! See `mtrproto::fuzzing::reply_line` for the property checked.
libfuzzer_sys::fuzz_target!(|data: &[u8]| mtrproto::fuzzing::reply_line(data));
