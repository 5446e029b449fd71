//! An idle open session sleeps in `poll`: it uses no measurable CPU. Alone in its binary: it
//! reads the CPU time of the whole process.

use std::time::Duration;

use mtrproto_blocking::Session;
use mtrproto_tests::stat_cpu_seconds;

/// CPU seconds this whole process has used.
fn cpu_seconds() -> f64 {
    stat_cpu_seconds("/proc/self/stat").unwrap_or(f64::MAX)
}

#[test]
fn an_idle_session_uses_no_cpu() {
    let session = Session::builder()
        .program(env!("CARGO_BIN_EXE_fake-mtr-packet"), [])
        .open()
        .unwrap();
    let before = cpu_seconds();
    std::thread::sleep(Duration::from_secs(1));
    let used = cpu_seconds() - before;
    // The clock ticks in 10 ms; a spinning driver would use about a second.
    assert!(used <= 0.0101, "{used} s of CPU while idle");
    drop(session);
}
