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

/// A fixed UDP flow (one port pair) to the same target, with a timeout of `secs`.
fn udp_flow(secs: u64) -> ProbeOptions {
    ProbeOptions {
        protocol: mtrproto_blocking::Protocol::Udp,
        port: Some(33),
        timeout: Some(Duration::from_secs(secs)),
        ..options()
    }
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
        assert!(result.success());
        assert_eq!(
            result.responder.unwrap().to_string(),
            format!("127.0.0.{}", i + 1)
        );
    }
    assert!(session.probe_blocking("::1", &options()).unwrap().success());
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
    // Two requests were the opening checks; three probes reach it and wait, and it exits
    // when the fourth arrives. (Probes sent after that go to the helper started in its place.)
    let mut sent: Vec<_> = (0..3)
        .map(|_| session.probe("127.0.0.1", &options()).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    assert!(sent.iter().all(|h| h.try_result().is_none()), "pending");
    sent.push(session.probe("127.0.0.1", &options()).unwrap());
    for handle in sent {
        let result = handle
            .wait_timeout(Duration::from_secs(5))
            .expect("answered at once");
        assert!(
            matches!(result, Err(Error::Process(ProcessError::Exited { .. }))),
            "{result:?}"
        );
    }
    // It had answered the opening checks: a new helper takes its place, its exit recorded.
    let helper = restarted(&session, 1);
    assert_eq!(
        helper.last_exit.and_then(|s| s.code()),
        Some(0),
        "{helper:?}"
    );
}

/// A file the fake helper logs the requests it reads to (`--read-log`), removed on drop.
struct ReadLog(std::path::PathBuf);

impl ReadLog {
    fn new(name: &str) -> ReadLog {
        let path = std::env::temp_dir().join(format!(
            "mtrproto-fake-read-{}-{name}.log",
            std::process::id()
        ));
        let _ = std::fs::remove_file(&path);
        ReadLog(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("a temp path in UTF-8")
    }

    /// Waits (at most 10 s) until the helper has read `count` probe requests: they were
    /// written, so in flight, whatever the load.
    fn wait_probes(&self, count: usize) {
        let started = Instant::now();
        loop {
            let text = std::fs::read_to_string(&self.0).unwrap_or_default();
            let read = probe_requests(&text);
            if read >= count {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "the helper read {read} probes of {count}:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// The probe requests in a read log: `TOKEN send-probe ...` lines (the opening's
/// `check-support feature send-probe` is none).
fn probe_requests(log: &str) -> usize {
    log.lines()
        .filter(|l| l.split(' ').nth(1) == Some("send-probe"))
        .count()
}

impl Drop for ReadLog {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// One probe answered, then `change` swaps the program the next helper runs, and the next
/// probe finds the helper (set to exit there) gone.
fn answered_then_exited(session: &Session, change: impl FnOnce()) {
    assert!(
        session
            .probe_blocking("127.0.0.1", &options())
            .unwrap()
            .success()
    );
    change();
    let died = session.probe_blocking("127.0.0.1", &options());
    assert!(
        matches!(died, Err(Error::Process(ProcessError::Exited { .. }))),
        "{died:?}"
    );
}

/// The first helper slot once it has been started `restarts` times and runs, within 5 s.
fn restarted(session: &Session, restarts: u32) -> mtrproto_blocking::HelperStatus {
    let started = Instant::now();
    loop {
        let helper = session.helpers().remove(0);
        if helper.running && helper.restarts >= restarts
            || started.elapsed() > Duration::from_secs(5)
        {
            assert!(helper.running, "{helper:?}");
            assert_eq!(helper.restarts, restarts, "{helper:?}");
            return helper;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The first helper slot's answer to the driver's version check, asked when it was started
/// again, within 5 s.
fn version_of_restarted(session: &Session) -> String {
    let started = Instant::now();
    loop {
        if let Some(version) = session.helpers().remove(0).version {
            return version;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "no version");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn a_lone_helper_that_dies_is_started_again_and_later_probes_go_to_it() {
    // The opening checks and one probe are answered; it exits when the next probe arrives.
    let session = fake(&["--exit-after", "3"]).open().unwrap();
    let first = session.helper_pid();
    assert!(
        session
            .probe_blocking("127.0.0.1", &options())
            .unwrap()
            .success()
    );
    let died = session.probe_blocking("127.0.0.1", &options());
    match died {
        Err(Error::Process(ProcessError::Exited { status })) => {
            // Known once reaped: within the 20 ms its exit is waited for.
            assert!(status.is_none_or(|s| s.code() == Some(0)), "{status:?}");
        }
        other => panic!("{other:?}"),
    }
    let helper = restarted(&session, 1);
    assert_ne!(helper.pid, first);
    assert_eq!(helper.last_exit.and_then(|s| s.code()), Some(0));
    assert!(!mtrproto_tests::process_exists(first), "not reaped");
    assert_eq!(session.helper_pid(), helper.pid);
    // The new helper answers the driver's version check and two probes (it exits at its
    // fourth request).
    for _ in 0..2 {
        assert!(
            session
                .probe_blocking("127.0.0.1", &options())
                .unwrap()
                .success()
        );
    }
}

#[test]
fn a_helper_that_dies_at_every_few_probes_is_restarted_without_spinning() {
    // Each helper answers three requests and exits at the fourth (a restarted one's first
    // is the driver's version check): it always answered, so it is started again at once,
    // five times; then once a second.
    let session = fake(&["--exit-after", "3"]).open().unwrap();
    let quick = ProbeOptions {
        timeout: Some(Duration::from_secs(1)),
        ..options()
    };
    let started = Instant::now();
    let (mut answered, mut failed, mut slowest) = (0, 0, Duration::ZERO);
    while started.elapsed() < Duration::from_millis(2500) {
        let sent = Instant::now();
        match session.probe_blocking("127.0.0.1", &quick) {
            Ok(result) => answered += usize::from(result.success()),
            Err(Error::Process(ProcessError::Exited { .. })) => failed += 1,
            Err(other) => panic!("{other:?}"),
        }
        slowest = slowest.max(sent.elapsed());
        std::thread::sleep(Duration::from_millis(2));
    }
    let elapsed = started.elapsed();
    let restarts = session.helpers()[0].restarts;
    println!(
        "{answered} answered, {failed} failed, {restarts} restarts in {elapsed:?}, slowest {slowest:?}"
    );
    // Five at once, then one a second: 2 or 3 more in 2.5 s.
    assert!((6..=8).contains(&restarts), "{restarts} restarts");
    assert!(answered >= 2 * restarts as usize, "{answered} answered");
    // While no helper runs, probes fail at once rather than wait.
    assert!(failed > restarts as usize, "{failed} failed");
    assert!(slowest < Duration::from_millis(500), "{slowest:?}");
}

#[test]
fn version_093_gets_the_source_address_filled_in() {
    let old = fake(&["--version", "0.93", "--require-local-ip"])
        .open()
        .unwrap();
    assert_eq!(old.version(), "0.93");
    let result = old.probe_blocking("127.0.0.1", &options()).unwrap();
    assert!(result.success(), "{result:?}");
    assert!(old.probe_blocking("::1", &options()).unwrap().success());
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

/// A check answered with another reply than `feature-support` is `NotMtrPacket` naming the
/// program the session runs, as `open` names it; it named "mtr-packet" whatever the program.
#[test]
fn a_check_answered_otherwise_names_the_program() {
    let session = fake(&["--check-reply", "sctp:unknown-command"])
        .open()
        .unwrap();
    match session.check_support(Feature::Sctp) {
        Err(Error::Process(ProcessError::NotMtrPacket { program, detail })) => {
            assert_eq!(program, FAKE);
            assert!(detail.contains("unknown-command"), "{detail}");
        }
        other => panic!("{other:?}"),
    }
    // The same at open.
    match fake(&["--check-reply", "send-probe:unknown-command"]).open() {
        Err(Error::Process(ProcessError::NotMtrPacket { program, .. })) => {
            assert_eq!(program, FAKE)
        }
        other => panic!("{other:?}"),
    }
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
    assert!(pending.wait().unwrap().success());
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
            .success()
    );
}

#[test]
fn several_helpers_share_the_probes() {
    // Two helpers that read probes and answer none, each with a window of one: of four
    // probes, each helper reads one; on one helper only one would be read. (Timed instead,
    // four 200 ms answers in under 700 ms, it failed at 1 s, 1 run of the file in 10 on
    // busy cores.)
    let log = ReadLog::new("shared");
    let session = fake(&["--stall", "--read-log", log.path()])
        .helpers(2)
        .window(1)
        .close_grace(Duration::from_millis(100))
        .open()
        .unwrap();
    let _handles: Vec<_> = (0..4)
        .map(|_| session.probe("127.0.0.1", &one_second()).unwrap())
        .collect();
    log.wait_probes(2);
}

#[test]
fn one_dying_helper_of_several_fails_only_its_probes_and_is_restarted() {
    let session = fake(&["--exit-after", "6"]).helpers(2).open().unwrap();
    let mut failed = 0;
    for _ in 0..40 {
        match session.probe_blocking("127.0.0.1", &options()) {
            Ok(result) => assert!(result.success()),
            Err(Error::Process(ProcessError::Exited { .. })) => failed += 1,
            Err(other) => panic!("{other}"),
        }
    }
    // Each death costs the one probe it had read; the helpers keep being restarted.
    assert!((1..=8).contains(&failed), "{failed} failed");
    // Later probes are answered. Which probe a helper dies on depends on how the probes
    // fell between the helpers while one restarted (a restarted helper's first request is
    // the driver's version check), and one sent while both restart fails at once: a few
    // tries, 50 ms apart.
    let answered = (0..10).any(|_| {
        let ok = session
            .probe_blocking("127.0.0.1", &options())
            .is_ok_and(|r| r.success());
        if !ok {
            std::thread::sleep(Duration::from_millis(50));
        }
        ok
    });
    assert!(answered, "none of 10 probes answered after the restarts");
}

/// Probe options with a one-second timeout.
fn one_second() -> ProbeOptions {
    ProbeOptions {
        timeout: Some(Duration::from_secs(1)),
        ..options()
    }
}

/// The probe's result within `limit`, and how long it took.
fn result_within(
    handle: &mtrproto_blocking::ProbeHandle,
    limit: Duration,
) -> (Result<mtrproto_blocking::ProbeResult, Error>, Duration) {
    let started = Instant::now();
    let result = handle
        .wait_timeout(limit)
        .unwrap_or_else(|| panic!("no result within {limit:?}"));
    (result, started.elapsed())
}

#[test]
fn a_helper_that_closes_stdout_and_stays_alive_fails_its_probes_at_once() {
    // Two opening checks and one probe are answered; at the next request it closes stdout.
    let session = fake(&["--close-stdout-after", "3"])
        .grace(Duration::from_secs(1))
        .open()
        .unwrap();
    let pid = session.helper_pid();
    assert!(session.probe_blocking("127.0.0.1", &one_second()).is_ok());
    let handle = session.probe("127.0.0.1", &one_second()).unwrap();
    let (result, waited) = result_within(&handle, Duration::from_secs(10));
    println!("closed stdout: error after {waited:?}");
    assert!(
        matches!(result, Err(Error::Process(ProcessError::Exited { .. }))),
        "{result:?}"
    );
    assert!(waited < Duration::from_millis(500), "{waited:?}");
    // It was killed and reaped, not waited for.
    let started = Instant::now();
    while mtrproto_tests::process_exists(pid) && started.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(!mtrproto_tests::process_exists(pid), "helper left running");
}

#[test]
fn one_helper_closing_stdout_does_not_stall_the_others() {
    let session = fake(&["--close-stdout-after", "3"])
        .helpers(2)
        .open()
        .unwrap();
    // Probes one after another take turns between the helpers: each answers two, then
    // closes its stdout at the next, is killed and started again; the other goes on.
    let mut answered = 0;
    let mut slowest = Duration::ZERO;
    for _ in 0..12 {
        let handle = session.probe("127.0.0.1", &one_second()).unwrap();
        let (result, waited) = result_within(&handle, Duration::from_secs(10));
        answered += usize::from(result.is_ok());
        slowest = slowest.max(waited);
    }
    println!("one of two closed stdout: {answered} of 12 answered, slowest {slowest:?}");
    assert!(answered >= 6, "{answered} answered");
    assert!(slowest < Duration::from_millis(500), "{slowest:?}");
}

#[test]
fn a_helper_flooding_junk_is_killed_after_the_grace() {
    // Its heap meanwhile is bounded in memory.rs, which counts allocations one test at a time.
    // A grace of 2 s: opening and the restart wait one grace for check-support, which a
    // loaded machine (every test at once) has been seen to miss at 1 s.
    let session = fake(&["--junk-after", "3"])
        .grace(Duration::from_secs(2))
        .open()
        .unwrap();
    assert!(session.probe_blocking("127.0.0.1", &one_second()).is_ok());
    let handle = session.probe("127.0.0.1", &one_second()).unwrap();
    let (result, waited) = result_within(&handle, Duration::from_secs(10));
    println!("junk flood: error after {waited:?}");
    assert!(result.is_err(), "{result:?}");
    // The junk began with this probe: it is killed one grace later.
    assert!(waited < Duration::from_millis(3500), "{waited:?}");
    // It had answered: a new helper takes its place and answers.
    restarted(&session, 1);
    assert!(
        session
            .probe_blocking("127.0.0.1", &one_second())
            .unwrap()
            .success()
    );
}

#[test]
fn a_helper_writing_an_old_answer_again_and_again_is_killed_after_the_grace() {
    // It reads every request but answers none, and writes its last answer every 5 ms: a
    // helper looping on an old line. A second answer counts as a sign of life once per
    // token (a helper writing each answer twice is slow, not broken), not at every repeat.
    let session = fake(&["--repeat-after", "3"])
        .grace(Duration::from_secs(2))
        .open()
        .unwrap();
    assert!(session.probe_blocking("127.0.0.1", &one_second()).is_ok());
    let handle = session.probe("127.0.0.1", &one_second()).unwrap();
    let (result, waited) = result_within(&handle, Duration::from_secs(10));
    println!("repeated answer: {result:?} after {waited:?}");
    // Ended as a helper writing only lines that answer nothing, one grace after they
    // began, not left to time out each probe while it lives on.
    assert!(
        matches!(
            result,
            Err(Error::Process(ProcessError::NotMtrPacket { .. }))
        ),
        "{result:?}"
    );
    assert!(waited < Duration::from_millis(3500), "{waited:?}");
    // It had answered: a new helper takes its place and answers.
    restarted(&session, 1);
    assert!(
        session
            .probe_blocking("127.0.0.1", &one_second())
            .unwrap()
            .success()
    );
}

#[test]
fn a_check_refused_for_a_full_queue_says_so_not_that_the_helper_exited() {
    // max_queue 0: a request is taken only when it can go out at once. Check-supports go past
    // the window, `MAX_CHECKS` of them at once: with that many out (the helper answers the
    // `mark` ones a second after reading them), one more is refused.
    let log = ReadLog::new("check-room");
    let session = Arc::new(
        fake(&["--check-delay-ms", "1000", "--read-log", log.path()])
            .max_queue(0)
            .open()
            .unwrap(),
    );
    let out: Vec<_> = (0..mtrproto::Session::MAX_CHECKS)
        .map(|_| {
            let session = Arc::clone(&session);
            std::thread::spawn(move || session.check_support(Feature::Mark))
        })
        .collect();
    let started = Instant::now();
    while std::fs::read_to_string(log.path())
        .unwrap_or_default()
        .matches("check-support feature mark")
        .count()
        < out.len()
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "checks not read"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let refused = session.check_support(Feature::Version);
    assert!(matches!(refused, Err(Error::QueueFull(0))), "{refused:?}");
    // The helper is fine: the checks out are answered, and then this one.
    for check in out {
        let answer = check.join().unwrap();
        assert!(matches!(answer, Ok(true)), "{answer:?}");
    }
    assert!(session.check_support(Feature::Version).unwrap());
}

#[test]
fn a_helper_that_stops_reading_fails_every_queued_probe_in_time() {
    // The grace runs from the helper's last read, at the first of the probes below: it
    // must outlast submitting them all. With 20000 probes and a grace of 1 s, submitting
    // took over a second on busy cores and the helper was killed before the last ones came
    // (1 run of the file in 10): those failed `Exited` while no helper ran, or were answered
    // by the one started in its place. 5000 take a quarter of the time.
    const PROBES: usize = 5000;
    let grace = Duration::from_secs(3);
    let session = fake(&["--deaf-after", "3"]).grace(grace).open().unwrap();
    assert!(session.probe_blocking("127.0.0.1", &one_second()).is_ok());
    let handles: Vec<_> = (0..PROBES)
        .map(|_| session.probe("127.0.0.1", &one_second()).unwrap())
        .collect();
    // Each probe's bound runs from its own submission: the last one's is the latest.
    let started = Instant::now();
    // Timeout 1 s + grace, and two more for the stdin watchdog and the driver.
    let limit = Duration::from_secs(1) + grace + Duration::from_secs(2);
    let mut ended = 0;
    let mut unresponsive = 0;
    for handle in &handles {
        let left = limit.saturating_sub(started.elapsed());
        if let Some(result) = handle.wait_timeout(left) {
            ended += 1;
            unresponsive += usize::from(matches!(
                result,
                Err(Error::Process(ProcessError::Unresponsive))
            ));
        }
    }
    println!(
        "deaf helper: {ended} of {PROBES} probes ended ({unresponsive} unresponsive) after {:?}",
        started.elapsed()
    );
    assert_eq!(ended, PROBES);
    assert_eq!(unresponsive, PROBES);
}

#[test]
fn an_orphan_holding_stdout_does_not_hang_probes_or_close() {
    let session = fake(&["--orphan-after", "3"])
        .grace(Duration::from_secs(1))
        .close_grace(Duration::from_millis(200))
        .open()
        .unwrap();
    assert!(session.probe_blocking("127.0.0.1", &one_second()).is_ok());
    let handle = session.probe("127.0.0.1", &one_second()).unwrap();
    let (result, waited) = result_within(&handle, Duration::from_secs(10));
    println!("orphan holding stdout: error after {waited:?}");
    assert!(
        matches!(
            result,
            Err(Error::Process(ProcessError::Exited { status: Some(_) }))
        ),
        "{result:?}"
    );
    assert!(waited < Duration::from_millis(1500), "{waited:?}");
    let started = Instant::now();
    session.close();
    println!("orphan holding stdout: close took {:?}", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[test]
fn dropping_the_last_session_in_a_callback_ends_cleanly() {
    let session = Arc::new(fake(&["--delay-ms", "200"]).open().unwrap());
    let pid = session.helper_pid();
    let (called, wait_called) = crossbeam_channel::bounded(1);
    let inner = Arc::clone(&session);
    session
        .probe_with("127.0.0.1", &options(), move |result| {
            // The last handle to the session goes here, on the driver thread.
            drop(inner);
            let _ = called.send(result.is_ok());
        })
        .unwrap();
    drop(session);
    assert_eq!(wait_called.recv_timeout(Duration::from_secs(5)), Ok(true));
    let started = Instant::now();
    while mtrproto_tests::process_exists(pid) && started.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(!mtrproto_tests::process_exists(pid), "helper left a zombie");
}

#[test]
fn every_accepted_callback_is_called_exactly_once() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    // It exits at its first probe. That probe's callback holds the driver thread while more
    // probes are accepted; they fail with it, or go to the helper started in its place.
    let session = fake(&["--exit-after", "2"]).open().unwrap();
    let (inside, wait_inside) = crossbeam_channel::bounded(1);
    session
        .probe_with("127.0.0.1", &options(), move |_| {
            let _ = inside.send(());
            std::thread::sleep(Duration::from_millis(300));
        })
        .unwrap();
    wait_inside.recv_timeout(Duration::from_secs(5)).unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let mut accepted = 0;
    for _ in 0..100 {
        let calls = Arc::clone(&calls);
        let sent = session.probe_with("127.0.0.1", &options(), move |_| {
            calls.fetch_add(1, Ordering::SeqCst);
        });
        accepted += usize::from(sent.is_ok());
    }
    let started = Instant::now();
    while calls.load(Ordering::SeqCst) < accepted && started.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(10));
    }
    session.close();
    println!(
        "{accepted} accepted, {} called",
        calls.load(Ordering::SeqCst)
    );
    assert_eq!(calls.load(Ordering::SeqCst), accepted);
}

#[test]
fn builder_values_are_saturated() {
    let session = fake(&[]).max_queue(0).window(usize::MAX).open().unwrap();
    assert!(
        session
            .probe_blocking("127.0.0.1", &options())
            .unwrap()
            .success()
    );
    let session = fake(&[]).window(0).rate(0, 0).open().unwrap();
    assert!(
        session
            .probe_blocking("127.0.0.1", &options())
            .unwrap()
            .success()
    );
}

/// A directory removed on drop, whatever way the test ends (a copy of the fake is 23 MB).
struct RemovedDir(std::path::PathBuf);

impl Drop for RemovedDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn later_calls_report_the_exit_status() {
    // A copy of the fake, removed once the session is open: its helper cannot be started
    // again, so the slot stays empty and every later call says how the helper ended.
    let dir =
        RemovedDir(std::env::temp_dir().join(format!("mtrproto-later-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).unwrap();
    let program = dir.0.join("fake-mtr-packet");
    std::fs::copy(FAKE, &program).unwrap();
    let session = Session::builder()
        .program(program.to_str().unwrap(), ["--exit-after", "2"])
        .open()
        .unwrap();
    std::fs::remove_dir_all(&dir.0).unwrap();
    let first = session.probe_blocking("127.0.0.1", &options());
    let started = Instant::now();
    let later = loop {
        let later = session.probe_blocking("127.0.0.1", &options());
        if matches!(
            later,
            Err(Error::Process(ProcessError::Exited { status: Some(_) }))
        ) || started.elapsed() > Duration::from_secs(2)
        {
            break later;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    println!("first: {first:?}; later: {later:?}");
    match later {
        Err(Error::Process(ProcessError::Exited {
            status: Some(status),
        })) => {
            assert_eq!(status.code(), Some(0));
        }
        other => panic!("{other:?}"),
    }
    // Past the pause after a failed start, still the same answer, at once.
    std::thread::sleep(Duration::from_millis(1200));
    let started = Instant::now();
    let again = session.probe_blocking("127.0.0.1", &options());
    assert!(
        matches!(again, Err(Error::Process(ProcessError::Exited { status: Some(s) })) if s.code() == Some(0)),
        "{again:?}"
    );
    assert!(started.elapsed() < Duration::from_millis(500));
    assert_eq!(session.helpers()[0].restarts, 0);
}

#[test]
fn scope_ids_are_refused_and_long_names_cut() {
    let session = fake(&[]).open().unwrap();
    let scoped = session.probe_blocking("fe80::1%lo", &options());
    assert!(matches!(scoped, Err(Error::HostResolve(_))), "{scoped:?}");
    assert!(scoped.unwrap_err().to_string().contains("scope"));
    let long = "a".repeat(1 << 20);
    let error = session.probe_blocking(&long, &options()).unwrap_err();
    let message = error.to_string();
    assert!(message.len() < 1024, "{} bytes", message.len());
}

#[test]
fn every_helper_is_restarted_and_its_new_pid_offered() {
    use std::os::unix::process::ExitStatusExt;
    let session = fake(&[]).helpers(3).open().unwrap();
    let before = session.helper_pids();
    assert_eq!(before.len(), 3);
    assert!(
        before
            .iter()
            .all(|&pid| mtrproto_tests::process_exists(pid))
    );
    // Slot 0 answered the opening checks; slot 2 has answered nothing yet.
    for slot in [0, 2] {
        std::process::Command::new("kill")
            .args(["-KILL", &before[slot].to_string()])
            .status()
            .unwrap();
    }
    let started = Instant::now();
    let restarted = loop {
        // Probes go on meanwhile; one that reached a killed helper first fails.
        let _ = session.probe_blocking("127.0.0.1", &options());
        let now = session.helpers();
        if now.iter().all(|h| h.running && h.pid != 0)
            && now[0].pid != before[0]
            && now[2].pid != before[2]
            || started.elapsed() > Duration::from_secs(5)
        {
            break now;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    println!("restarted after {:?}: {restarted:?}", started.elapsed());
    for slot in [0, 2] {
        let helper = &restarted[slot];
        assert_ne!(helper.pid, before[slot], "slot {slot} not restarted");
        assert!(mtrproto_tests::process_exists(helper.pid));
        assert!(
            !mtrproto_tests::process_exists(before[slot]),
            "slot {slot}: not reaped"
        );
        assert_eq!(helper.restarts, 1);
        assert_eq!(helper.last_exit.and_then(|s| s.signal()), Some(9));
    }
    assert_eq!(restarted[1].pid, before[1]);
    assert_eq!(session.helper_pid(), restarted[0].pid);
    for _ in 0..6 {
        assert!(
            session
                .probe_blocking("127.0.0.1", &options())
                .unwrap()
                .success()
        );
    }
}

#[test]
fn a_panicking_callback_does_not_take_the_session_down() {
    let session = fake(&[]).open().unwrap();
    let (done, called) = crossbeam_channel::bounded(1);
    session
        .probe_with("127.0.0.1", &options(), move |_| {
            let _ = done.send(());
            panic!("a caller's bug");
        })
        .unwrap();
    called.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(
        session
            .probe_blocking("127.0.0.1", &options())
            .unwrap()
            .success()
    );
}

#[test]
fn a_silent_helper_fails_its_queued_probes_with_the_first_unanswered_one() {
    // It reads every request and answers no probe. With a window of 4, twenty probes would
    // otherwise expire four at a time, one timeout + grace after another.
    let session = fake(&["--stall"])
        .window(4)
        .grace(Duration::from_millis(300))
        .open()
        .unwrap();
    let started = Instant::now();
    let handles: Vec<_> = (0..20)
        .map(|_| session.probe("127.0.0.1", &one_second()).unwrap())
        .collect();
    for handle in &handles {
        let (result, _) = result_within(handle, Duration::from_secs(10));
        assert!(
            matches!(result, Err(Error::Process(ProcessError::Unresponsive))),
            "{result:?}"
        );
    }
    let took = started.elapsed();
    println!("silent helper: 20 probes, window 4, all Unresponsive after {took:?}");
    assert!(took < Duration::from_millis(2500), "{took:?}");
}

#[test]
fn probes_past_the_queue_bound_are_refused_and_the_waiting_ones_complete_once() {
    // A window of 2 and room for 3 waiting: of 8 probes to a helper that answers none, 5
    // are taken (2 written, 3 waiting for the window) and 3 refused as the queue is full.
    let session = fake(&["--stall"]).window(2).max_queue(3).open().unwrap();
    let (done, results) = crossbeam_channel::unbounded();
    for _ in 0..8 {
        let done = done.clone();
        session
            .probe_with("127.0.0.1", &options(), move |r| {
                let _ = done.send(r);
            })
            .unwrap();
    }
    let mut refused = 0;
    for _ in 0..3 {
        match results.recv_timeout(Duration::from_secs(5)) {
            Ok(Err(Error::QueueFull(waiting))) => {
                assert_eq!(waiting, 3);
                refused += 1;
            }
            other => panic!("expected QueueFull, got {other:?}"),
        }
    }
    assert_eq!(refused, 3);
    assert!(
        results.try_recv().is_err(),
        "only the refused probes completed"
    );
    // Closing ends the helper: the 2 written and the 3 waiting complete, each once.
    session.close();
    let ended: Vec<_> = results.try_iter().collect();
    assert_eq!(ended.len(), 5, "{ended:?}");
    assert!(
        ended
            .iter()
            .all(|r| matches!(r, Err(Error::Process(ProcessError::Exited { .. })))),
        "{ended:?}"
    );
}

#[test]
fn the_queue_bound_holds_per_helper() {
    // Two helpers that answer nothing, a window of 1 and room for 1 waiting: each takes one
    // probe in flight and one waiting, 4 in all; the next 2 are refused.
    let session = fake(&["--stall"])
        .helpers(2)
        .window(1)
        .max_queue(1)
        .open()
        .unwrap();
    let (done, results) = crossbeam_channel::unbounded();
    for _ in 0..6 {
        let done = done.clone();
        session
            .probe_with("127.0.0.1", &options(), move |r| {
                let _ = done.send(r);
            })
            .unwrap();
    }
    for _ in 0..2 {
        match results.recv_timeout(Duration::from_secs(5)) {
            Ok(Err(Error::QueueFull(1))) => {}
            other => panic!("expected QueueFull(1), got {other:?}"),
        }
    }
    assert!(results.try_recv().is_err(), "4 probes taken");
    session.close();
    assert_eq!(
        results.try_iter().count(),
        4,
        "each taken probe completes once"
    );
}

#[test]
fn a_caller_probing_one_at_a_time_gets_each_answer_when_it_comes() {
    // The helper answers at once. The driver rests a helper's output after reading some,
    // to read many answers per wake-up; an answer to the only probe in flight must not
    // wait for that rest (10 ms): nothing else would come in meanwhile. With the rest,
    // about every other probe here took 10 ms; without, about 0.1 ms each. A busy machine
    // delays some probes too (with two CPU hogs on two cores, up to 19 of 41 took 8 ms or
    // more), but at random, round by round, where the rest delays every round alike: so up
    // to 5 rounds of 41 probes, and the best round counts.
    let session = fake(&[]).open().unwrap();
    let mut rounds = Vec::new();
    for _ in 0..5 {
        let took: Vec<Duration> = (0..41)
            .map(|_| {
                let started = Instant::now();
                assert!(session.probe_blocking("127.0.0.1", &options()).is_ok());
                started.elapsed()
            })
            .collect();
        let slow = took
            .iter()
            .filter(|t| **t >= Duration::from_millis(8))
            .count();
        let total: Duration = took.iter().sum();
        println!("one probe at a time: 41 in {total:?}, {slow} of them 8 ms or more");
        rounds.push(slow);
        if slow <= 5 {
            return;
        }
    }
    panic!("in each round of 41, more than 5 probes took 8 ms or more: {rounds:?}");
}

/// A rate with a burst of one and no queue: opening sends its check-supports within the
/// window, unpaced (they send no packet), instead of failing as "not mtr-packet".
#[test]
fn a_paced_session_without_a_queue_opens_and_probes() {
    let session = fake(&[])
        .rate(200, 1)
        .max_queue(0)
        .open()
        .expect("open with rate 200/s, burst 1, no queue");
    assert!(session.check_support(Feature::Version).unwrap());
    let reply = session
        .probe("127.0.0.1", &options())
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(reply.result, ReplyKind::Reply, "{reply:?}");
}

#[test]
fn a_probe_held_while_its_flow_is_quiet_is_not_refused_when_it_goes_out() {
    // One helper answering after 3 s, a window of 1 and room for 1 waiting. A flow's probe
    // (timeout 2 s) is in flight when the helper is killed: its flow stays quiet for 2 s,
    // and a probe of it (timeout 10 s) sent meanwhile is held by the driver. Two ICMP
    // probes fill the restarted helper (one in flight, one waiting) until after the quiet
    // ends: the held probe, accepted, must then wait for the window, not fail with
    // QueueFull. (2 s of quiet leave the restart and the sends below 2 s under load; the
    // first ICMP probe's answer, 3 s after it, comes after the quiet ends whatever.)
    let log = ReadLog::new("held-not-refused");
    let session = fake(&["--delay-ms", "3000", "--read-log", log.path()])
        .window(1)
        .max_queue(1)
        .open()
        .unwrap();
    let (done, results) = crossbeam_channel::unbounded();
    let send = |name: &'static str, options: &ProbeOptions| {
        let done = done.clone();
        session
            .probe_with("127.0.0.1", options, move |r| {
                let _ = done.send((name, r));
            })
            .unwrap();
    };
    send("first", &udp_flow(2));
    // In flight (read by the helper) before the kill, however loaded the machine.
    log.wait_probes(1);
    let pid = session.helper_pid();
    std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    match results.recv_timeout(Duration::from_secs(5)) {
        Ok(("first", Err(Error::Process(ProcessError::Exited { .. })))) => {}
        other => panic!("the killed helper's probe: {other:?}"),
    }
    restarted(&session, 1);
    // Its first request, the driver's version check, answered at once: the window free.
    version_of_restarted(&session);
    send("icmp 1", &options());
    send("icmp 2", &options());
    send("held", &udp_flow(10));
    let mut answered = Vec::new();
    for _ in 0..3 {
        match results.recv_timeout(Duration::from_secs(10)) {
            Ok((name, Ok(result))) if result.success() => answered.push(name),
            other => panic!("after {answered:?}: {other:?}"),
        }
    }
    assert_eq!(answered, ["icmp 1", "icmp 2", "held"]);
}

#[test]
fn a_long_timeout_answered_earlier_does_not_lengthen_the_quiet_after_an_end() {
    // A flow's probe with a 10 s timeout is answered; later one with a 1 s timeout is in
    // flight when the helper is killed. Only the latter's answer may still come: the flow
    // is quiet for 1 s after the end, not 10 s, so a probe of it sent then is answered
    // within the helper's 1 s delay after that.
    let log = ReadLog::new("long-timeout-quiet");
    let session = fake(&["--delay-ms", "1000", "--read-log", log.path()])
        .open()
        .unwrap();
    assert!(
        session
            .probe_blocking("127.0.0.1", &udp_flow(10))
            .unwrap()
            .success()
    );
    let short = session.probe("127.0.0.1", &udp_flow(1)).unwrap();
    // In flight (read by the helper) before the kill, however loaded the machine.
    log.wait_probes(2);
    std::process::Command::new("kill")
        .args(["-KILL", &session.helper_pid().to_string()])
        .status()
        .unwrap();
    match short.wait_timeout(Duration::from_secs(5)) {
        Some(Err(Error::Process(ProcessError::Exited { .. }))) => {}
        other => panic!("the killed helper's probe: {other:?}"),
    }
    restarted(&session, 1);
    let held = session.probe("127.0.0.1", &udp_flow(1)).unwrap();
    match held.wait_timeout(Duration::from_secs(6)) {
        Some(Ok(result)) => assert!(result.success(), "{result:?}"),
        other => panic!("held past the 1 s quiet: {other:?}"),
    }
}

#[test]
fn a_probe_held_for_another_probes_long_quiet_ends_within_its_own_timeout() {
    // A TCP probe with a one-hour timeout is in flight when the helper is killed: every
    // probe is then held back for that hour (a TCP answer may go to any probe with its
    // sequence). A caller's ICMP probe with a 1 s timeout sent meanwhile must not wait for
    // it: it ends, unsent, once its own timeout and the grace have passed, `Unresponsive`
    // as a probe held back behind another helper's probes ends (it ended `Exited`, the
    // status of a helper that had died seconds before, while its successor ran).
    let log = ReadLog::new("held-own-timeout");
    let session = fake(&["--delay-ms", "5000", "--read-log", log.path()])
        .grace(Duration::from_secs(1))
        .open()
        .unwrap();
    let long_tcp = ProbeOptions {
        protocol: mtrproto_blocking::Protocol::Tcp,
        timeout: Some(Duration::from_secs(3600)),
        ..options()
    };
    let tcp = session.probe("127.0.0.1", &long_tcp).unwrap();
    // In flight (read by the helper) before the kill, however loaded the machine.
    log.wait_probes(1);
    std::process::Command::new("kill")
        .args(["-KILL", &session.helper_pid().to_string()])
        .status()
        .unwrap();
    match tcp.wait_timeout(Duration::from_secs(5)) {
        Some(Err(Error::Process(ProcessError::Exited { .. }))) => {}
        other => panic!("the killed helper's probe: {other:?}"),
    }
    restarted(&session, 1);
    let held = session.probe("127.0.0.1", &one_second()).unwrap();
    let (result, waited) = result_within(&held, Duration::from_secs(6));
    println!("held probe ended after {waited:?}: {result:?}");
    assert!(
        matches!(result, Err(Error::Process(ProcessError::Unresponsive))),
        "{result:?}"
    );
    // Its timeout and the grace, 2 s, and no more than a second later.
    assert!(waited >= Duration::from_millis(1900), "{waited:?}");
    assert!(waited < Duration::from_secs(3), "{waited:?}");
}

#[test]
fn probes_held_back_behind_another_helpers_long_probe_end_within_their_own_timeout() {
    // Two silent helpers, each with an ICMP probe of a one-hour timeout in flight. A TCP
    // probe then goes to the second and is held back there while the first has probes (a
    // TCP answer may go to any probe with its sequence), and every later probe goes there
    // too. A 2 s TCP probe and a 1 s ICMP probe sent then must not wait for the hour: each
    // ends, unsent, once its own timeout and the grace have passed. The TCP probe's longer
    // timeout keeps the gate shut past the ICMP probe's end however late the ICMP probe was
    // sent: with equal timeouts, an ICMP probe sent a few ms after the TCP one (a loaded
    // machine) was still waiting when the TCP probe ended and lifted the gate, so it went out
    // then and failed 2 s later, at 4 s (1 run of the file in 10 on busy cores).
    let log = ReadLog::new("gated-own-timeout");
    let session = fake(&["--stall", "--read-log", log.path()])
        .helpers(2)
        .grace(Duration::from_secs(1))
        .open()
        .unwrap();
    let long_icmp = ProbeOptions {
        timeout: Some(Duration::from_secs(3600)),
        ..options()
    };
    let _first = session.probe("127.0.0.1", &long_icmp).unwrap();
    let _second = session.probe("127.0.0.1", &long_icmp).unwrap();
    // One on each helper, in flight, however loaded the machine.
    log.wait_probes(2);
    let tcp = ProbeOptions {
        protocol: mtrproto_blocking::Protocol::Tcp,
        timeout: Some(Duration::from_secs(2)),
        ..options()
    };
    let tcp_sent = Instant::now();
    let tcp = session.probe("127.0.0.1", &tcp).unwrap();
    let icmp_sent = Instant::now();
    let icmp = session.probe("127.0.0.1", &one_second()).unwrap();
    // The ICMP probe first: it ends first.
    for (name, handle, sent, bound) in [
        ("icmp", &icmp, icmp_sent, Duration::from_secs(2)),
        ("tcp", &tcp, tcp_sent, Duration::from_secs(3)),
    ] {
        let (result, _) = result_within(handle, Duration::from_secs(8));
        let waited = sent.elapsed();
        println!("{name} ended after {waited:?}: {result:?}");
        assert!(
            matches!(result, Err(Error::Process(ProcessError::Unresponsive))),
            "{name}: {result:?}"
        );
        // Its timeout and the grace, not the hour: 2 s of slack for a loaded machine.
        assert!(
            waited < bound + Duration::from_secs(2),
            "{name}: {waited:?}"
        );
    }
    // Neither went out: the helpers read only the two long probes.
    let read = std::fs::read_to_string(log.path()).unwrap();
    assert_eq!(probe_requests(&read), 2, "{read}");
}

#[test]
fn a_helper_that_closes_stdin_and_stays_alive_fails_its_probes_within_the_grace() {
    // Two opening checks and one probe are answered; at the next request it closes its
    // stdin and lives on with stdout open, answering nothing more. The probe it read then,
    // and those sent after (whose write fails), end within their timeout and the grace;
    // the helper is killed and started again, and later probes are answered.
    let session = fake(&["--close-stdin-after", "3"])
        .grace(Duration::from_secs(1))
        .open()
        .unwrap();
    let pid = session.helper_pid();
    assert!(session.probe_blocking("127.0.0.1", &one_second()).is_ok());
    let sent = Instant::now();
    let handles: Vec<_> = (0..4)
        .map(|_| {
            std::thread::sleep(Duration::from_millis(100));
            session.probe("127.0.0.1", &one_second()).unwrap()
        })
        .collect();
    for handle in &handles {
        let (result, _) = result_within(handle, Duration::from_secs(6));
        let waited = sent.elapsed();
        println!("closed stdin: {result:?} after {waited:?}");
        assert!(result.is_err(), "{result:?}");
        // The last one's timeout and grace, 2 s after it was sent 400 ms in, and slack.
        assert!(waited < Duration::from_secs(4), "{waited:?}: {result:?}");
    }
    let helper = restarted(&session, 1);
    assert_ne!(helper.pid, pid);
    assert!(
        session
            .probe_blocking("127.0.0.1", &one_second())
            .unwrap()
            .success()
    );
}

/// A helper lacking IPv6 dies just as it is asked whether it has IPv6: no answer, which
/// must not be kept as yes for good. The restarted helper is asked again, and its `no`
/// refuses the next IPv6 probe up front.
#[test]
fn a_feature_check_the_helper_died_on_is_asked_again_of_its_successor() {
    // The opening checks are answered; it exits when the next request, the IPv6 check,
    // arrives. Its successor lives on.
    let program = ChangingProgram::new("feature", "--refuse ip-6 --exit-after 2");
    let session = program.builder().open().unwrap();
    program.set("--refuse ip-6");
    let first = session.probe_blocking("::1", &one_second());
    println!("while it dies: {first:?}");
    restarted(&session, 1);
    let probe = session.probe_blocking("::1", &one_second());
    assert!(matches!(probe, Err(Error::Unsupported { .. })), "{probe:?}");
}

/// A helper ended for junk while it holds the session's first IPv6 (or SCTP) check: the
/// probe fails with the error the check got (why the helper was ended), once the junk rule
/// ended it, not `Exited { status: None }` a grace later; the next probe asks again.
#[test]
fn a_first_probe_whose_feature_check_the_helper_was_ended_on_fails_with_its_error() {
    let grace = Duration::from_secs(1);
    let sctp = ProbeOptions {
        protocol: mtrproto_blocking::Protocol::Sctp,
        ..one_second()
    };
    for (target, options) in [("::1", one_second()), ("127.0.0.1", sctp)] {
        // The opening checks are answered; at the next request, the feature's check, it
        // writes only junk, and only its first process does so (the guard, dropped after
        // the session, removes the file that tells).
        let first_only = ReadLog::new("feature-junk-first");
        let session = fake(&["--junk-after", "2", "--first-only", first_only.path()])
            .grace(grace)
            .open()
            .unwrap();
        let started = Instant::now();
        let probe = session.probe_blocking(target, &options);
        let took = started.elapsed();
        println!("{target}: {probe:?} after {took:?}");
        // Ended by the junk rule, or (a busy machine) the stall rule first. Or the check's
        // own bound (sent + grace) came a few ms before the junk rule (first junk + grace):
        // an unanswered check counts as yes, and the probe, sent as the helper is ended,
        // fails `Exited` when no helper runs (1 in 8 runs under load).
        assert!(
            matches!(
                probe,
                Err(Error::Process(
                    ProcessError::NotMtrPacket { .. }
                        | ProcessError::Unresponsive
                        | ProcessError::Exited { .. }
                ))
            ),
            "{target}: {probe:?}"
        );
        // The grace (the junk rule), with room for a busy machine; a second grace for the
        // probe would take as long again.
        assert!(
            took < grace + Duration::from_millis(900),
            "{target}: {took:?}"
        );
        // Its successor is asked, and answers.
        restarted(&session, 1);
        let next = session.probe_blocking(target, &options);
        assert!(
            next.as_ref().is_ok_and(|r| r.success()),
            "{target}: {next:?}"
        );
        session.close();
    }
}

/// A helper ended for junk while it holds the IPv6 (or SCTP) check a trace, a campaign's
/// target or a multipath trace asked: unlike a single probe, the target carries on with
/// the restarted helper (a lost probe at worst, counted as such), as it did before single
/// probes failed with the check's error; the feature is asked again next time. (The trace
/// failed `NotMtrPacket` whole, the campaign reported its first target failed.)
#[test]
fn a_trace_whose_feature_check_the_helper_was_ended_on_carries_on() {
    use mtrproto_blocking::{CampaignLimits, MultipathOptions, Protocol, TraceOptions};
    let sctp = ProbeOptions {
        protocol: Protocol::Sctp,
        ..one_second()
    };
    let mut ipv6 = TraceOptions::default();
    ipv6.trace.cycles = 1;
    ipv6.trace.max_ttl = 2;
    ipv6.trace.timeout = Duration::from_secs(1);
    let over_sctp = TraceOptions {
        probe: sctp,
        ..ipv6.clone()
    };
    let mut paths = MultipathOptions::default();
    paths.trace.max_ttl = 2;
    paths.trace.timeout = Duration::from_secs(1);
    // Each call on a session of its own, whose first helper writes only junk at the
    // feature's check (0.96: the release that answers UDP flows over IPv6).
    type Call<'c> = &'c dyn Fn(&Session) -> Result<(), Error>;
    let calls: [(&str, Call); 4] = [
        ("trace ::1", &|s| s.trace("::1", &ipv6).map(drop)),
        ("trace sctp", &|s| {
            s.trace("127.0.0.1", &over_sctp).map(drop)
        }),
        ("campaign", &|s| {
            let mut failed = Vec::new();
            s.campaign_reports(["::1", "::2"], &ipv6, &CampaignLimits::default(), |r| {
                if let Err(e) = r.stats {
                    failed.push(format!("{}: {e}", r.host));
                }
            })?;
            assert!(failed.is_empty(), "{failed:?}");
            Ok(())
        }),
        ("multipath", &|s| s.multipath("::1", &paths).map(drop)),
    ];
    for (call, run) in calls {
        let first_only = ReadLog::new("trace-feature-junk-first");
        let session = fake(&[
            "--version",
            "0.96",
            "--junk-after",
            "2",
            "--first-only",
            first_only.path(),
        ])
        .grace(Duration::from_secs(1))
        .open()
        .unwrap();
        let outcome = run(&session);
        assert!(outcome.is_ok(), "{call}: {outcome:?}");
        // The helper was ended on the check, and started again.
        assert!(session.helpers()[0].restarts >= 1, "{call}");
        session.close();
    }
}

/// A helper closes its stdin and lives on: the first write that fails shows it. Probes sent
/// after that go to no helper that cannot read them (here the only one: they fail at once,
/// ahead of the probes it holds, which end at their timeout and the grace), and once those
/// are done it is started again.
#[test]
fn a_helper_whose_stdin_write_failed_gets_no_more_probes() {
    let session = fake(&["--close-stdin-after", "3"])
        .grace(Duration::from_secs(1))
        .open()
        .unwrap();
    assert!(session.probe_blocking("127.0.0.1", &one_second()).is_ok());
    // Read by the helper, which then closes its stdin.
    let read = session.probe("127.0.0.1", &one_second()).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    // Its write fails.
    let failed = session.probe("127.0.0.1", &one_second()).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let after = session.probe("127.0.0.1", &one_second()).unwrap();
    let (result, waited) = result_within(&after, Duration::from_secs(6));
    println!("sent after the failed write: {result:?} after {waited:?}");
    assert!(
        matches!(result, Err(Error::Process(ProcessError::Exited { .. }))),
        "{result:?}"
    );
    // It ended ahead of the probes the helper holds.
    assert!(failed.wait_timeout(Duration::ZERO).is_none());
    for handle in [&read, &failed] {
        let (result, _) = result_within(handle, Duration::from_secs(6));
        assert!(result.is_err(), "{result:?}");
    }
    restarted(&session, 1);
    assert!(
        session
            .probe_blocking("127.0.0.1", &one_second())
            .unwrap()
            .success()
    );
}

/// A helper program at a fixed path, a script running the fake helper with arguments that
/// `set` changes between starts; removed on drop.
struct ChangingProgram(std::path::PathBuf);

impl ChangingProgram {
    fn new(name: &str, args: &str) -> ChangingProgram {
        let dir = std::env::temp_dir().join(format!("mtrproto-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let program = ChangingProgram(dir);
        program.set(args);
        program
    }

    /// The next start runs the fake helper with `args`. Written aside and renamed in: a
    /// start never reads a half-written file.
    fn set(&self, args: &str) {
        self.set_script(&format!("exec '{FAKE}' {args}"));
    }

    /// The next start runs `script` (one line of `sh`).
    fn set_script(&self, script: &str) {
        let next = self.0.join("next");
        std::fs::write(&next, format!("{script}\n")).unwrap();
        std::fs::rename(&next, self.0.join("mtr-packet")).unwrap();
    }

    fn builder(&self) -> SessionBuilder {
        let script = self.0.join("mtr-packet");
        Session::builder().program("/bin/sh", [script.to_str().unwrap()])
    }
}

impl Drop for ChangingProgram {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The program at the helper's path changes while the session runs (another mtr build
/// installed there, an upgrade during a long campaign): the helper started again is asked
/// its version, which `Session::helpers` reports beside the session's own (the release
/// looked up at open, which the session keeps: a caller seeing them differ opens a new
/// session). Before, nothing told the new version.
#[test]
fn a_helper_started_again_from_a_changed_program_reports_its_version() {
    // The opening checks and one probe are answered; it exits at the next probe.
    let program = ChangingProgram::new("upgrade", "--version 0.95 --exit-after 3");
    let session = program.builder().open().unwrap();
    assert_eq!(session.version(), "0.95");
    assert_eq!(
        session.helpers()[0].version,
        None,
        "asked at open, by the session"
    );
    answered_then_exited(&session, || program.set("--version 0.96"));
    restarted(&session, 1);
    assert_eq!(version_of_restarted(&session), "0.96");
    // The session's release is the one looked up at open; probes go on.
    assert_eq!(session.version(), "0.95");
    assert_eq!(session.release().version, "0.95");
    assert!(
        session
            .probe_blocking("127.0.0.1", &options())
            .unwrap()
            .success()
    );
}

/// A caller that sends one probe at a time with a window of 1 and no queue never fills
/// them. A helper started again is asked its version first (answered here after 500 ms): a
/// probe sent meanwhile failed with `QueueFull` though the caller had nothing else out, then
/// waited for that answer; the check holds no window slot now, and the probe goes at once.
#[test]
fn a_probe_sent_while_a_restarted_helper_answers_its_version_check_goes_out_at_once() {
    // The opening checks and one probe are answered; it exits at the next probe.
    let program = ChangingProgram::new("version-room", "--exit-after 3");
    let session = program.builder().window(1).max_queue(0).open().unwrap();
    answered_then_exited(&session, || program.set("--check-delay-ms 500"));
    restarted(&session, 1);
    let start = Instant::now();
    let probe = session.probe_blocking("127.0.0.1", &options());
    assert!(probe.as_ref().is_ok_and(|r| r.success()), "{probe:?}");
    // It did not wait for the version check's answer.
    assert_eq!(session.helpers()[0].version, None, "{:?}", start.elapsed());
    assert_eq!(version_of_restarted(&session), "0.95");
}

/// A restarted helper's version check (answered here after 500 ms) held the one slot of a
/// window of 1: a caller's `check_support` sent meanwhile failed with `QueueFull` though the
/// caller had nothing out. A check takes no window slot (mtr-packet keeps no probe for it):
/// it goes out at once.
#[test]
fn a_check_sent_while_a_restarted_helper_answers_its_version_check_is_not_refused() {
    // The opening checks and one probe are answered; it exits at the next probe.
    let program = ChangingProgram::new("version-check-room", "--exit-after 3");
    let session = program.builder().window(1).max_queue(0).open().unwrap();
    answered_then_exited(&session, || {
        program.set("--check-delay-ms 500 --refuse sctp")
    });
    restarted(&session, 1);
    let check = session.check_support(Feature::Sctp);
    assert!(matches!(check, Ok(false)), "{check:?}");
    assert_eq!(version_of_restarted(&session), "0.95");
}

/// The first probe to an IPv6 target asks the helper `check-support feature ip-6` on the
/// caller's thread. That check waited behind a full window: here two probes answered after
/// 3 s held a window of 2, and `probe` to ::1 returned only once one was answered. The
/// check now goes past the window, and `probe` returns at once.
#[test]
fn a_first_ipv6_probe_does_not_wait_behind_a_full_window_for_its_check() {
    let session = fake(&["--delay-ms", "3000"]).window(2).open().unwrap();
    let slow: Vec<_> = (0..2)
        .map(|_| session.probe("127.0.0.1", &options()).unwrap())
        .collect();
    let start = Instant::now();
    let v6 = session.probe("::1", &options()).unwrap();
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "probe returned after {took:?}"
    );
    for probe in slow {
        let result = probe.wait();
        assert!(result.as_ref().is_ok_and(|r| r.success()), "{result:?}");
    }
    let result = v6.wait();
    assert!(result.as_ref().is_ok_and(|r| r.success()), "{result:?}");
}

/// A helper started again that never reads its stdin (here `sleep`): the session's own
/// version check, the only bytes written to it, ends unanswered at the grace before the
/// stdin watchdog's clock (started at a look after the write) runs out, so an idle session
/// leaves the helper be instead of starting it again every grace and second; a caller's
/// probe then finds it stalled within the grace.
#[test]
fn an_idle_session_leaves_a_helper_that_never_read_its_version_check_be() {
    // The opening checks and one probe are answered; it exits at the next probe.
    let program = ChangingProgram::new("deaf-idle", "--exit-after 3");
    let session = program
        .builder()
        .grace(Duration::from_millis(500))
        .open()
        .unwrap();
    answered_then_exited(&session, || program.set_script("exec sleep 60"));
    restarted(&session, 1);
    std::thread::sleep(Duration::from_secs(3));
    let helper = session.helpers().remove(0);
    assert!(helper.running && helper.restarts == 1, "{helper:?}");
    let start = Instant::now();
    let probe = session.probe_blocking("127.0.0.1", &one_second());
    let took = start.elapsed();
    assert!(
        matches!(probe, Err(Error::Process(ProcessError::Unresponsive))),
        "{probe:?}"
    );
    assert!(took < Duration::from_secs(5), "{took:?}");
}

/// A helper started again that dies on its first request, the session's own version check
/// (here it exits on reading a line), never answered: it was started again every second
/// for as long as the session sat idle (6 restarts in 6 s), where before the version check
/// existed it waited for a request. Such a slot now starts its helper only once a request
/// comes, which then fails with the helper's exit as before.
#[test]
fn a_helper_that_dies_on_the_version_check_is_not_restarted_while_the_session_is_idle() {
    // The opening checks and one probe are answered; it exits at the next probe.
    let program = ChangingProgram::new("dies-idle", "--exit-after 3");
    let session = program.builder().open().unwrap();
    answered_then_exited(&session, || program.set("--exit-after 0"));
    std::thread::sleep(Duration::from_millis(2500));
    let idle = session.helpers().remove(0);
    assert_eq!(idle.restarts, 1, "{idle:?}");
    // A probe starts it again, and fails as the helper dies on it.
    let probe = session.probe_blocking("127.0.0.1", &one_second());
    assert!(
        matches!(probe, Err(Error::Process(ProcessError::Exited { .. }))),
        "{probe:?}"
    );
    let after = session.helpers().remove(0).restarts;
    assert!(after > 1, "{after}");
    // The helper that took the probe ended having served a caller: started once more after
    // the pause, which dies on the version check; then nothing until the next request.
    std::thread::sleep(Duration::from_millis(2500));
    let settled = session.helpers().remove(0).restarts;
    assert!(settled <= after + 1, "{after} then {settled}");
    std::thread::sleep(Duration::from_millis(2000));
    assert_eq!(session.helpers().remove(0).restarts, settled);
    // A program that works again: the next request starts it, and it answers.
    program.set("");
    let probe = session.probe_blocking("127.0.0.1", &options());
    assert!(probe.as_ref().is_ok_and(|r| r.success()), "{probe:?}");
}

/// A helper that writes without end and never a newline (here `cat /dev/zero`, started
/// again in a dead one's place): the line is too long once, a single diagnostic, and no
/// line follows, so the junk watchdog, which looked only at lines, never fired. The driver
/// read it for as long as it ran, most of a core while the session sat idle. Every read
/// now counts: output that answers nothing for the grace ends the helper as junk.
#[test]
fn a_helper_writing_one_endless_line_is_ended_as_junk_after_the_grace() {
    // The opening checks and one probe are answered; it exits at the next probe.
    let program = ChangingProgram::new("endless-line", "--exit-after 3");
    let session = program
        .builder()
        .grace(Duration::from_millis(500))
        .open()
        .unwrap();
    answered_then_exited(&session, || program.set_script("exec cat /dev/zero"));
    let started = Instant::now();
    loop {
        let helper = session.helpers().remove(0);
        if helper.restarts == 1 && !helper.running {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "still read: {helper:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let ended = session.helpers().remove(0);
    assert!(
        ended
            .recent_diagnostics
            .iter()
            .any(|d| d.contains("LineTooLong")),
        "{ended:?}"
    );
}

/// A helper that wrote one stray line long ago and then answers a probe in two writes: the
/// first part of the answer is output that completes no line, and is no sign of junk (only
/// the bytes of a line longer than any answer are).
#[test]
fn an_answer_read_in_parts_after_an_old_stray_line_is_no_junk() {
    let program = ChangingProgram::new("stray-then-parts", "--exit-after 3");
    let session = program
        .builder()
        .grace(Duration::from_millis(300))
        .open()
        .unwrap();
    assert!(
        session
            .probe_blocking("127.0.0.1", &options())
            .unwrap()
            .success()
    );
    program.set_script(concat!(
        "echo 'a stray line'; ",
        "while read -r token command rest; do case \"$command $rest\" in ",
        "'check-support feature version') echo \"$token feature-support support 0.95\";; ",
        "check-support*) echo \"$token feature-support support ok\";; ",
        "*) printf '%s reply ip-4 127.0.0.1' \"$token\"; sleep 0.1; ",
        "echo ' round-trip-time 5';; esac; done"
    ));
    let died = session.probe_blocking("127.0.0.1", &options());
    assert!(
        matches!(died, Err(Error::Process(ProcessError::Exited { .. }))),
        "{died:?}"
    );
    assert_eq!(version_of_restarted(&session), "0.95");
    // Longer than the grace since the stray line.
    std::thread::sleep(Duration::from_millis(600));
    let probe = session.probe_blocking("127.0.0.1", &options());
    assert!(probe.as_ref().is_ok_and(|r| r.success()), "{probe:?}");
}

/// A helper that answers each probe, writes a stray line, and answers the same probe again
/// later than the grace (a second answer, which counts as an answer once per token). The
/// second answer is read alone, nothing kept after it: it must not find the stray line's
/// junk clock still running and end a helper that answered.
#[test]
fn a_second_answer_long_after_a_stray_line_is_no_junk() {
    let program = ChangingProgram::new("stray-then-second", "");
    program.set_script(concat!(
        "while read -r token command rest; do case \"$command $rest\" in ",
        "'check-support feature version') echo \"$token feature-support support 0.95\";; ",
        "check-support*) echo \"$token feature-support support ok\";; ",
        "*) echo \"$token reply ip-4 127.0.0.1 round-trip-time 5\"; echo 'a stray line'; ",
        "(sleep 0.5; echo \"$token reply ip-4 127.0.0.1 round-trip-time 5\") & ;; ",
        "esac; done"
    ));
    let session = program
        .builder()
        .grace(Duration::from_millis(300))
        .open()
        .unwrap();
    let probe = session.probe_blocking("127.0.0.1", &options());
    assert!(probe.as_ref().is_ok_and(|r| r.success()), "{probe:?}");
    // The second answer comes 0.5 s after the stray line, past the grace.
    let started = Instant::now();
    loop {
        let helper = session.helpers().remove(0);
        assert!(
            helper.running && helper.restarts == 0,
            "ended though it answered: {helper:?}"
        );
        if helper
            .recent_diagnostics
            .iter()
            .any(|d| d.contains("Duplicate"))
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "no second answer read: {helper:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The driver ends a junk helper in the same wake-up that read the line; a moment later
    // it would show.
    std::thread::sleep(Duration::from_millis(100));
    let helper = session.helpers().remove(0);
    assert!(helper.running && helper.restarts == 0, "{helper:?}");
    let probe = session.probe_blocking("127.0.0.1", &options());
    assert!(probe.as_ref().is_ok_and(|r| r.success()), "{probe:?}");
    assert_eq!(session.helpers().remove(0).restarts, 0);
}

/// Past `Session::MAX_CHECKS` check-supports out, the next ones wait for room of their own:
/// a probe has a free window slot and goes out at once, answered before any check is (the
/// helper answers checks 1.5 s late). It waited in the helper's backlog until the waiting
/// checks had gone out, after the first answers.
#[test]
fn a_probe_is_not_held_behind_check_supports_waiting_for_their_own_room() {
    let session = std::sync::Arc::new(
        fake(&["--check-delay-ms", "1500"])
            .window(2)
            .max_queue(64)
            .open()
            .unwrap(),
    );
    let checkers: Vec<_> = (0..12)
        .map(|_| {
            let session = session.clone();
            std::thread::spawn(move || session.check_support(mtrproto::Feature::Sctp))
        })
        .collect();
    // The checks reach the driver first: 8 go out, 4 wait.
    std::thread::sleep(Duration::from_millis(300));
    let probe = session.probe_blocking("127.0.0.1", &options());
    let answered = checkers.iter().filter(|c| c.is_finished()).count();
    assert!(probe.as_ref().is_ok_and(|r| r.success()), "{probe:?}");
    assert_eq!(
        answered, 0,
        "the probe waited for {answered} checks' answers"
    );
    for checker in checkers {
        let check = checker.join().unwrap();
        assert!(matches!(check, Ok(true)), "{check:?}");
    }
}

/// A helper whose answers name their probe but do not parse is alive and answering: its
/// callers are told what it wrote, not that it exited, and it is not started again.
#[test]
fn a_probe_answered_in_a_line_that_does_not_parse_is_no_exit() {
    let session = fake(&["--malformed"]).open().unwrap();
    let pid = session.helper_pid();
    for _ in 0..3 {
        let handle = session.probe("127.0.0.1", &one_second()).unwrap();
        let (result, waited) = result_within(&handle, Duration::from_secs(10));
        assert!(
            matches!(
                &result,
                Err(Error::Process(ProcessError::NotMtrPacket { detail, .. }))
                    if detail.contains("round-trip-time")
            ),
            "{result:?}"
        );
        // At once, not at the watchdog.
        assert!(waited < Duration::from_millis(900), "{waited:?}");
    }
    let helper = &session.helpers()[0];
    assert_eq!((helper.pid, helper.restarts), (pid, 0));
    assert!(helper.running);
}

/// A probe callback runs on the driver thread: every call that waits for the session fails
/// there at once with `OnDriverThread` (it waited for itself for ever, and so did the
/// session's close), and the session goes on.
#[test]
fn calls_that_wait_fail_in_a_probe_callback_instead_of_waiting_for_ever() {
    let session = Arc::new(fake(&[]).open().unwrap());
    let (sender, results) = crossbeam_channel::unbounded();
    let inner = Arc::clone(&session);
    session
        .probe_with("127.0.0.1", &options(), move |_| {
            let trace = mtrproto_blocking::TraceOptions::default();
            let limits = mtrproto_blocking::CampaignLimits::default();
            let multipath = mtrproto_blocking::MultipathOptions::default();
            let outcomes = [
                (
                    "probe_blocking",
                    inner.probe_blocking("127.0.0.1", &options()).err(),
                ),
                (
                    "wait",
                    inner.probe("127.0.0.1", &options()).unwrap().wait().err(),
                ),
                (
                    "wait_timeout",
                    inner
                        .probe("127.0.0.1", &options())
                        .unwrap()
                        .wait_timeout(Duration::from_secs(5))
                        .and_then(Result::err),
                ),
                ("check_support", inner.check_support(Feature::Version).err()),
                ("trace", inner.trace("127.0.0.1", &trace).err()),
                (
                    "campaign_reports",
                    inner
                        .campaign_reports(["127.0.0.1"], &trace, &limits, |_| {})
                        .err(),
                ),
                ("multipath", inner.multipath("127.0.0.1", &multipath).err()),
            ];
            for (call, outcome) in outcomes {
                let _ = sender.send((call, outcome));
            }
        })
        .unwrap();
    for _ in 0..7 {
        let (call, outcome) = results
            .recv_timeout(Duration::from_secs(10))
            .expect("the callback waits for itself");
        assert!(
            matches!(outcome, Some(Error::OnDriverThread)),
            "{call}: {outcome:?}"
        );
    }
    // The session goes on, and closes.
    assert!(
        session
            .probe_blocking("127.0.0.1", &options())
            .unwrap()
            .success()
    );
    session.close();
}

/// A check the helper dies on says how it exited, as a probe it dies on does: it said
/// `Exited { status: None }`, reading the session's last status on the caller's thread
/// before the driver had published the status it had just reaped.
#[test]
fn a_check_the_helper_dies_on_reports_its_exit_status() {
    // The opening checks and a probe are answered; it exits at the next request.
    let session = fake(&["--exit-after", "3"]).open().unwrap();
    session.probe_blocking("127.0.0.1", &options()).unwrap();
    let check = session.check_support(Feature::Udp);
    assert!(
        matches!(&check, Err(Error::Process(ProcessError::Exited { status: Some(s) })) if s.code() == Some(0)),
        "{check:?}"
    );
}

/// A check in flight when its helper is ended for writing only junk fails as the probe
/// ended with it does (`NotMtrPacket`, saying why), not as a plain exit. (The check waits
/// unread in the helper's stdin, so on a loaded machine the stall rule may end it first:
/// `Unresponsive`, for both alike.)
#[test]
fn a_check_fails_as_the_probes_of_its_helper_end_do() {
    // The opening checks and a probe are read; then it writes only junk, answering nothing.
    let session = fake(&["--junk-after", "3", "--delay-ms", "2000"])
        .grace(Duration::from_millis(300))
        .open()
        .unwrap();
    let probe = session
        .probe(
            "127.0.0.1",
            &ProbeOptions {
                timeout: Some(Duration::from_secs(5)),
                ..options()
            },
        )
        .unwrap();
    let check = session.check_support(Feature::Udp);
    let probe = probe.wait();
    assert!(
        matches!(
            &probe,
            Err(Error::Process(
                ProcessError::NotMtrPacket { .. } | ProcessError::Unresponsive
            ))
        ),
        "{probe:?}"
    );
    assert_eq!(format!("{:?}", check.err()), format!("{:?}", probe.err()));
}

/// A helper ended for junk while the session opens: `open` says why, or that its check
/// went unanswered (the check's own bound, as long, may come first); it said the helper
/// "exited", dropping the reason the driver had.
#[test]
fn an_open_on_a_helper_ended_for_junk_says_why() {
    for after in ["0", "1"] {
        let opened = fake(&["--junk-after", after])
            .grace(Duration::from_millis(300))
            .open();
        match opened {
            Err(Error::Process(ProcessError::NotMtrPacket { detail, .. })) => {
                assert!(!detail.contains("exited"), "{after}: {detail}")
            }
            other => panic!("{after}: {other:?}"),
        }
    }
}

/// `close` promises the helpers killed and reaped and every probe completed when it
/// returns: a second `close` on another thread while the first waited out the close grace
/// returned at once (the first had taken the driver's handle), helper alive, probe pending.
#[test]
fn a_close_concurrent_with_another_returns_once_the_helper_is_reaped() {
    // It answers 400 ms after each probe, and waits for its answers once its stdin closes.
    let session = Arc::new(
        fake(&["--delay-ms", "400"])
            .close_grace(Duration::from_secs(5))
            .open()
            .unwrap(),
    );
    let pid = session.helper_pid();
    let handle = session.probe("127.0.0.1", &options()).unwrap();
    let first = {
        let session = Arc::clone(&session);
        std::thread::spawn(move || session.close())
    };
    // The first close has begun: later calls are refused once it has.
    let started = Instant::now();
    while session.probe("127.0.0.1", &options()).is_ok() {
        assert!(started.elapsed() < Duration::from_secs(5), "never closed");
        std::thread::sleep(Duration::from_millis(1));
    }
    session.close();
    assert!(
        handle.try_result().is_some(),
        "close returned with a probe pending"
    );
    assert!(
        !mtrproto_tests::process_exists(pid),
        "close returned with the helper alive"
    );
    first.join().unwrap();
}
