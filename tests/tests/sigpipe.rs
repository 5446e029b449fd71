//! A helper that exits while probes are being written, in a host that keeps SIGPIPE's
//! default action (C programs, some embedders; Rust programs ignore it): the process must
//! live on. Alone in its binary: it changes a process-wide signal disposition.

use std::time::Duration;

use mtrproto_blocking::{Error, ProbeOptions, ProcessError, Session};

/// Restores SIGPIPE's default action: the process dies of a write to a closed pipe.
#[allow(unsafe_code)]
fn default_sigpipe() {
    // SAFETY: setting a signal's disposition to the default touches no memory of ours.
    let previous = unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    assert_ne!(previous, libc::SIG_ERR);
}

#[test]
fn a_helper_exiting_mid_write_does_not_kill_the_process_with_sigpipe() {
    default_sigpipe();
    for round in 0..5 {
        // It exits after 100 requests while thousands more are on their way to its stdin.
        let session = Session::builder()
            .program(
                env!("CARGO_BIN_EXE_fake-mtr-packet"),
                ["--exit-after", "100"],
            )
            .window(1000)
            .open()
            .unwrap();
        let handles: Vec<_> = (0..20_000)
            .filter_map(|_| session.probe("127.0.0.1", &ProbeOptions::default()).ok())
            .collect();
        let mut exited = 0;
        for handle in handles {
            match handle.wait_timeout(Duration::from_secs(10)) {
                Some(Ok(_)) => {}
                Some(Err(Error::Process(ProcessError::Exited { .. }))) => exited += 1,
                other => panic!("round {round}: {other:?}"),
            }
        }
        assert!(exited > 0, "round {round}: the helper did not exit");
    }
}
