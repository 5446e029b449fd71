//! A session waiting on something sleeps in `poll`: it uses no measurable CPU, whether idle or
//! stuck on a misbehaving helper. Alone in its binary: it reads the CPU time of the whole
//! process, and its tests take turns.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use mtrproto_blocking::{ProbeOptions, Session, SessionBuilder};
use mtrproto_tests::stat_cpu_seconds;

/// One test at a time: each measures the whole process.
static TURN: Mutex<()> = Mutex::new(());

/// CPU seconds this whole process has used.
fn cpu_seconds() -> f64 {
    stat_cpu_seconds("/proc/self/stat").unwrap_or(f64::MAX)
}

fn fake(args: &[&str]) -> SessionBuilder {
    Session::builder().program(env!("CARGO_BIN_EXE_fake-mtr-packet"), args.iter().copied())
}

/// CPU seconds used while `f` runs.
fn cpu_during(f: impl FnOnce()) -> f64 {
    let before = cpu_seconds();
    f();
    cpu_seconds() - before
}

#[test]
fn an_idle_session_uses_no_cpu() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let session = fake(&[]).open().unwrap();
    let used = cpu_during(|| std::thread::sleep(Duration::from_secs(1)));
    // The clock ticks in 10 ms; a spinning driver would use about a second.
    assert!(used <= 0.0101, "{used} s of CPU while idle");
    drop(session);
}

#[test]
fn a_paced_session_whose_helper_stops_reading_sleeps() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    // The helper reads the opening checks and one probe, then nothing. Probes expire after
    // 1.2 s and free window slots while the transmit buffer stays full: the pacer would
    // release more, but nothing can be written.
    let session = fake(&["--deaf-after", "3"])
        .rate(100_000, 1000)
        .window(64)
        .grace(Duration::from_millis(200))
        .open()
        .unwrap();
    let options = ProbeOptions {
        timeout: Some(Duration::from_secs(1)),
        ..ProbeOptions::default()
    };
    let _handles: Vec<_> = (0..20_000)
        .map(|_| session.probe("127.0.0.1", &options).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    let used = cpu_during(|| std::thread::sleep(Duration::from_secs(2)));
    println!("paced, helper not reading: {used} s of CPU in 2 s");
    assert!(used <= 0.05, "{used} s of CPU in 2 s");
    drop(session);
}

#[test]
fn closing_with_an_orphan_holding_stdout_does_not_spin() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let session = fake(&["--orphan-after", "2"])
        .close_grace(Duration::from_millis(200))
        .open()
        .unwrap();
    let _pending = session
        .probe("127.0.0.1", &ProbeOptions::default())
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let mut took = Duration::ZERO;
    let used = cpu_during(|| {
        let started = Instant::now();
        let closer = std::thread::spawn(move || session.close());
        while !closer.is_finished() && started.elapsed() < Duration::from_secs(3) {
            std::thread::sleep(Duration::from_millis(10));
        }
        took = started.elapsed();
    });
    println!("close with an orphan holding stdout: {took:?}, {used} s of CPU");
    assert!(took < Duration::from_secs(1), "close took {took:?}");
    assert!(used <= 0.1, "{used} s of CPU");
}
