//! A helper killed with 1000 probes in flight: every caller has its error at once, a new
//! helper takes its place, and no thread or child process is left behind. Alone in its binary: it counts the process's threads.

use std::time::{Duration, Instant};

use mtrproto_blocking::{Error, ProbeOptions, ProcessError, Session};
use mtrproto_tests::{process_exists, thread_count};

#[test]
fn killed_helper_fails_every_caller_within_100ms() {
    let threads_before = thread_count();
    let session = Session::builder()
        .program(env!("CARGO_BIN_EXE_fake-mtr-packet"), ["--stall"])
        .window(1000)
        .open()
        .unwrap();
    let pid = session.helper_pid();
    let handles: Vec<_> = (0..1000)
        .map(|_| {
            session
                .probe("127.0.0.1", &ProbeOptions::default())
                .unwrap()
        })
        .collect();
    // Let the driver write them all.
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        handles.iter().all(|h| h.try_result().is_none()),
        "still in flight"
    );

    let killed = Instant::now();
    std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    for handle in handles {
        let result = handle
            .wait_timeout(Duration::from_secs(1))
            .expect("failed at once");
        assert!(
            matches!(result, Err(Error::Process(ProcessError::Exited { .. }))),
            "{result:?}"
        );
    }
    let elapsed = killed.elapsed();
    println!("1000 callers had ProcessError {elapsed:?} after the kill");
    assert!(
        elapsed < Duration::from_millis(100),
        "callers learned after {elapsed:?}"
    );

    // It had answered the opening checks: a new helper takes its place.
    let started = Instant::now();
    while !(session.helpers()[0].running && session.helper_pid() != pid)
        && started.elapsed() < Duration::from_secs(5)
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    let fresh = session.helper_pid();
    assert_ne!(fresh, pid, "{:?}", session.helpers());
    assert_eq!(session.helpers()[0].restarts, 1);

    drop(session);
    assert!(!process_exists(pid), "the helper was reaped");
    assert!(!process_exists(fresh), "its successor was reaped");
    assert_eq!(
        thread_count(),
        threads_before,
        "the driver thread was joined"
    );
}
