//! The blocking session against the fake mtr-packet: faults the real one rarely shows.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mtrproto_blocking::{
    Error, Feature, ProbeOptions, ProcessError, ReplyKind, Session, SessionBuilder, StateError,
};

const FAKE: &str = env!("CARGO_BIN_EXE_fake-mtr-packet");

fn fake(args: &[&str]) -> SessionBuilder {
    Session::builder().program(FAKE, args.iter().copied())
}

fn options() -> ProbeOptions {
    ProbeOptions::default()
}

#[test]
fn out_of_order_answers_reach_their_callers() {
    let session = Arc::new(fake(&["--reverse", "8"]).open().unwrap());
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let session = Arc::clone(&session);
            std::thread::spawn(move || {
                let host = format!("127.0.0.{}", i + 1);
                let result = session.probe_blocking(&host, &options()).unwrap();
                assert_eq!(result.responder, Some(host.parse().unwrap()));
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn duplicates_garbage_and_partial_writes_do_not_disturb_the_session() {
    let session = fake(&["--twice", "--garbage", "--partial"]).open().unwrap();
    let handles: Vec<_> = (0..200)
        .map(|i| {
            session
                .probe(&format!("127.0.{}.{}", i / 200, i % 200 + 1), &options())
                .unwrap()
        })
        .collect();
    for (i, handle) in handles.into_iter().enumerate() {
        let result = handle.wait().unwrap();
        assert!(result.success);
        assert_eq!(
            result.responder.unwrap().to_string(),
            format!("127.0.0.{}", i + 1)
        );
    }
    assert!(session.probe_blocking("::1", &options()).unwrap().success);
}

#[test]
fn a_stalled_helper_is_caught_by_the_watchdog() {
    let session = fake(&["--stall"])
        .grace(Duration::from_millis(300))
        .open()
        .unwrap();
    let options = ProbeOptions {
        timeout: Some(Duration::from_secs(1)),
        ..options()
    };
    let started = Instant::now();
    let handle = session.probe("127.0.0.1", &options).unwrap();
    assert!(
        handle.wait_timeout(Duration::from_millis(900)).is_none(),
        "not before its timeout"
    );
    let error = handle
        .wait_timeout(Duration::from_secs(5))
        .expect("the watchdog fires");
    assert!(
        matches!(error, Err(Error::Process(ProcessError::Unresponsive))),
        "{error:?}"
    );
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1300) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
}

#[test]
fn a_helper_that_exits_fails_its_pending_callers() {
    let session = fake(&["--exit-after", "5", "--stall"]).open().unwrap();
    // Two requests were the opening checks; three probes reach it, and it exits when the
    // fourth arrives.
    // A probe sent after the driver saw the exit fails at once; the others when it sees it.
    let sent: Vec<_> = (0..6)
        .map(|_| session.probe("127.0.0.1", &options()))
        .collect();
    for probe in sent {
        let result = match probe {
            Ok(handle) => handle
                .wait_timeout(Duration::from_secs(5))
                .expect("answered at once"),
            Err(e) => Err(e),
        };
        assert!(
            matches!(result, Err(Error::Process(ProcessError::Exited { .. }))),
            "{result:?}"
        );
    }
    let later = session.probe_blocking("127.0.0.1", &options());
    assert!(
        matches!(later, Err(Error::Process(ProcessError::Exited { .. }))),
        "{later:?}"
    );
}

#[test]
fn version_093_gets_the_source_address_filled_in() {
    let old = fake(&["--version", "0.93", "--require-local-ip"])
        .open()
        .unwrap();
    assert_eq!(old.version(), "0.93");
    let result = old.probe_blocking("127.0.0.1", &options()).unwrap();
    assert!(result.success, "{result:?}");
    assert!(old.probe_blocking("::1", &options()).unwrap().success);
    // The same helper reporting 0.95 gets no source address, and refuses: the fill-in is what
    // made the difference.
    let new = fake(&["--version", "0.95", "--require-local-ip"])
        .open()
        .unwrap();
    let result = new.probe_blocking("127.0.0.1", &options()).unwrap();
    assert_eq!(result.result, ReplyKind::InvalidArgument);
}

#[test]
fn refused_features() {
    let session = fake(&["--refuse", "sctp"]).open().unwrap();
    assert!(!session.check_support(Feature::Sctp).unwrap());
    assert!(session.check_support(Feature::Udp).unwrap());
    assert!(
        !session
            .check_support(Feature::from_name("quic").unwrap())
            .unwrap()
    );
    let refused = fake(&["--refuse", "send-probe"]).open();
    assert!(matches!(
        refused,
        Err(Error::Process(ProcessError::NotMtrPacket { .. }))
    ));
}

#[test]
fn programs_that_do_not_speak_the_protocol_fail_quickly() {
    for (program, args) in [("true", vec![]), ("cat", vec![]), ("sleep", vec!["100"])] {
        let started = Instant::now();
        let opened = Session::builder()
            .program(program, args)
            .grace(Duration::from_millis(500))
            .open();
        let error = opened.expect_err(program);
        assert!(
            matches!(error, Error::Process(ProcessError::NotMtrPacket { .. })),
            "{program}: {error}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{program}: {:?}",
            started.elapsed()
        );
    }
}

#[test]
fn a_missing_program_says_how_to_install_it() {
    let error = Session::builder()
        .program("no-such-mtr-packet", [])
        .open()
        .unwrap_err();
    let message = error.to_string();
    assert!(matches!(
        error,
        Error::Process(ProcessError::NotFound { .. })
    ));
    assert!(
        message.contains("no-such-mtr-packet") && message.contains("apt-get install mtr-tiny"),
        "{message}"
    );
}

#[test]
fn close_ends_the_helper_and_later_calls_are_state_errors() {
    let session = fake(&["--delay-ms", "100"]).open().unwrap();
    let pid = session.helper_pid();
    let pending = session.probe("127.0.0.1", &options()).unwrap();
    session.close();
    // The in-flight probe finished within the close grace.
    assert!(pending.wait().unwrap().success);
    assert!(!mtrproto_tests::process_exists(pid), "helper reaped");
    assert!(matches!(
        session.probe_blocking("127.0.0.1", &options()),
        Err(Error::State(StateError))
    ));
    session.close();
}

#[test]
fn names_resolve_and_bad_options_are_typed_errors() {
    let session = fake(&[]).open().unwrap();
    let result = session.probe_blocking("localhost", &options()).unwrap();
    assert_eq!(result.responder, Some("127.0.0.1".parse().unwrap()));
    let v6_only = ProbeOptions {
        ip_version: Some(mtrproto_blocking::IpVersion::V6),
        ..options()
    };
    assert!(matches!(
        session.probe_blocking("127.0.0.1", &v6_only),
        Err(Error::HostResolve(_))
    ));
    let bad_port = ProbeOptions {
        local_port: Some(80),
        ..options()
    };
    assert!(matches!(
        session.probe_blocking("127.0.0.1", &bad_port),
        Err(Error::Argument(_))
    ));
    let mismatched = ProbeOptions {
        local_ip: Some("::1".into()),
        ..options()
    };
    assert!(matches!(
        session.probe_blocking("127.0.0.1", &mismatched),
        Err(Error::HostResolve(_))
    ));
    session.clear_dns_cache();
    assert!(
        session
            .probe_blocking("localhost", &options())
            .unwrap()
            .success
    );
}

#[test]
fn several_helpers_share_the_probes() {
    // Each helper answers one probe at a time after 200 ms: four probes take about 800 ms
    // on one helper, 400 ms on two.
    let session = fake(&["--delay-ms", "200"])
        .helpers(2)
        .window(1)
        .open()
        .unwrap();
    let started = Instant::now();
    let handles: Vec<_> = (0..4)
        .map(|_| session.probe("127.0.0.1", &options()).unwrap())
        .collect();
    for handle in handles {
        assert!(handle.wait().unwrap().success);
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_millis(700),
        "{elapsed:?}: not spread over two helpers"
    );
}

#[test]
fn one_dying_helper_of_several_fails_only_its_probes_and_is_restarted() {
    let session = fake(&["--exit-after", "6"]).helpers(2).open().unwrap();
    let mut failed = 0;
    for _ in 0..40 {
        match session.probe_blocking("127.0.0.1", &options()) {
            Ok(result) => assert!(result.success),
            Err(Error::Process(ProcessError::Exited { .. })) => failed += 1,
            Err(other) => panic!("{other}"),
        }
    }
    // Each death costs the one probe it had read; the helpers keep being restarted.
    assert!((1..=8).contains(&failed), "{failed} failed");
    assert!(
        session
            .probe_blocking("127.0.0.1", &options())
            .unwrap()
            .success
    );
}
