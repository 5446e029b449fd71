//! An idle open session sleeps in `poll`: it uses no measurable CPU. Alone in its binary: it
//! reads the CPU time of the whole process.

use std::time::Duration;

use mtrproto_blocking::Session;
use mtrproto_tests::cpu_ticks;

#[test]
fn an_idle_session_uses_no_cpu() {
    let session = Session::builder()
        .program(env!("CARGO_BIN_EXE_fake-mtr-packet"), [])
        .open()
        .unwrap();
    let before = cpu_ticks();
    std::thread::sleep(Duration::from_secs(1));
    let used = cpu_ticks() - before;
    // A tick is 10 ms; a spinning driver would use about 100 in a second.
    assert!(used <= 1, "{used} ticks of CPU while idle");
    drop(session);
}
