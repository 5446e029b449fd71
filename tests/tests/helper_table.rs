//! The real mtr-packet's limits: its table of probes in flight (1024 in 0.95), answered
//! `probes-exhausted` when full, and the packet sizes it refuses.
//!
//! The unanswered probes go to 127.0.0.1 inside a network namespace this test creates, with
//! echo requests ignored there (`net.ipv4.icmp_echo_ignore_all`), so each probe holds its
//! slot of the table until its timeout and ends `no-reply`. Nothing leaves the namespace.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mtrproto::{Event, ProbeArgs, ProbeResult, ReplyKind, SessionConfig};
use mtrproto_blocking::{ProbeOptions, Session};
use mtrproto_tests::netns::Netns;

const PROBES: usize = 3000;
const WINDOW: usize = 1500;
const TIMEOUT: Duration = Duration::from_secs(2);
/// mtr-packet 0.95's `MAX_PROBES` (packet/probe.h).
const TABLE: usize = 1024;

/// A namespace where echo requests go unanswered.
fn quiet_namespace(name: &str) -> Netns {
    mtrproto_tests::require_netns();
    mtrproto_tests::require_mtr_packet();
    let ns = Netns::new(name).expect("namespace");
    ns.sysctl("net.ipv4.icmp_echo_ignore_all", "1")
        .expect("sysctl");
    ns
}

/// What became of the probes: `(no-reply, probes-exhausted, probes-exhausted before the
/// probe's own timeout)`.
#[derive(Debug, Default, PartialEq, Eq)]
struct Tally {
    no_reply: usize,
    exhausted: usize,
    early: usize,
}

impl Tally {
    fn add(&mut self, took: Duration, result: &ProbeResult) {
        match result.result {
            ReplyKind::NoReply => self.no_reply += 1,
            ReplyKind::ProbesExhausted => {
                self.exhausted += 1;
                self.early += usize::from(took < TIMEOUT);
            }
            ref other => panic!("unexpected {other}"),
        }
    }
}

/// 3000 unanswered probes with a window of 1500, through the core session over the real
/// helper's pipes (the blocking session would clamp the window to the table): the first
/// 1500 go out together, 476 of them past the helper's table. Those wait for a free slot;
/// none of them, and none of the probes after them, may end `probes-exhausted` before its
/// own timeout has passed.
#[test]
#[ignore = "needs root: a network namespace that ignores echo requests, and mtr-packet"]
fn a_full_table_holds_probes_back_instead_of_failing_them() {
    let ns = quiet_namespace("table-core");
    let mut child = ns
        .command("mtr-packet")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("mtr-packet starts in the namespace");
    let mut stdin = child.stdin.take().unwrap();
    // Its output, read on a thread of its own, arrives here in chunks.
    let stdout = child.stdout.take().unwrap();
    let (chunks, output) = crossbeam_channel::bounded::<Vec<u8>>(64);
    let reader = std::thread::spawn(move || {
        let mut stdout = stdout;
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 || chunks.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });

    let mut session = mtrproto::Session::new(SessionConfig {
        window: WINDOW,
        max_queue: PROBES,
        ..SessionConfig::default()
    });
    let started = Instant::now();
    let args = ProbeArgs::new("127.0.0.1".parse().unwrap())
        .timeout(TIMEOUT)
        .unwrap();
    for _ in 0..PROBES {
        session
            .send_probe(started, args.clone())
            .expect("probe taken");
    }
    let deadline = started + Duration::from_secs(60);
    let mut tally = Tally::default();
    let mut ended = 0;
    let mut input_ended = false;
    while ended < PROBES && Instant::now() < deadline {
        // The helper reads its stdin while it answers: a blocking write cannot stall.
        while let Some(bytes) = session.poll_transmit(Instant::now()) {
            let n = stdin.write(bytes).expect("mtr-packet reads its stdin");
            session.consume(Instant::now(), n);
        }
        let now = Instant::now();
        let wait = session
            .poll_timeout()
            .map_or(Duration::from_millis(100), |at| {
                at.saturating_duration_since(now)
            })
            .min(Duration::from_millis(100));
        if !input_ended {
            match output.recv_timeout(wait) {
                Ok(bytes) => session.handle_input(Instant::now(), &bytes),
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                    input_ended = true;
                    session.handle_eof(Instant::now());
                }
            }
        } else {
            std::thread::sleep(wait);
        }
        session.handle_timeout(Instant::now());
        while let Some(event) = session.poll_event() {
            if let Event::Probe { outcome, .. } = event {
                let result = outcome.expect("an answer from mtr-packet");
                tally.add(started.elapsed(), &result);
                ended += 1;
            }
        }
    }
    drop(stdin);
    let _ = child.kill();
    let _ = child.wait();
    let _ = reader.join();
    println!(
        "core session, window {WINDOW}: {} no-reply, {} probes-exhausted, {} of them early, \
         table learned {:?}",
        tally.no_reply,
        tally.exhausted,
        tally.early,
        session.helper_capacity()
    );
    assert_eq!(ended, PROBES, "every probe completes within 60 s");
    assert_eq!(
        tally.early, 0,
        "probes-exhausted before the probe's own timeout"
    );
    // The table was met: the back-pressure path ran.
    assert_eq!(session.helper_capacity(), Some(TABLE));
    assert!(tally.exhausted > 0, "the helper's table never filled");
    // Only probes of the first burst can meet a full table: the session learns its size
    // there and keeps the window under it.
    assert!(
        tally.exhausted <= WINDOW - TABLE,
        "{} probes-exhausted",
        tally.exhausted
    );
    assert_eq!(tally.no_reply + tally.exhausted, PROBES);
}

/// The same probes through the blocking session: asked for a window of 1500, it holds the
/// window to 0.95's table from the start, so the helper never refuses a probe.
#[test]
#[ignore = "needs root: a network namespace that ignores echo requests, and mtr-packet"]
fn the_blocking_session_stays_within_the_table() {
    let ns = quiet_namespace("table-blocking");
    let session = Session::builder()
        .program("ip", ["netns", "exec", ns.name(), "mtr-packet"])
        .window(WINDOW)
        .max_queue(PROBES)
        .open()
        .expect("mtr-packet opens in the namespace");
    assert_eq!(session.window(), TABLE);
    let options = ProbeOptions {
        timeout: Some(TIMEOUT),
        ..ProbeOptions::default()
    };
    let (done, results) = crossbeam_channel::bounded(PROBES);
    let started = Instant::now();
    for _ in 0..PROBES {
        let done = done.clone();
        session
            .probe_with("127.0.0.1", &options, move |result| {
                let _ = done.send((started.elapsed(), result));
            })
            .expect("probe taken");
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut tally = Tally::default();
    for _ in 0..PROBES {
        let wait = deadline.saturating_duration_since(Instant::now());
        let (took, result) = results.recv_timeout(wait).expect("every probe completes");
        tally.add(took, &result.expect("an answer from mtr-packet"));
    }
    session.close();
    println!(
        "blocking session, window {}: {} no-reply, {} probes-exhausted",
        session.window(),
        tally.no_reply,
        tally.exhausted
    );
    assert_eq!(
        tally,
        Tally {
            no_reply: PROBES,
            exhausted: 0,
            early: 0
        }
    );
}

/// The size limits of [`ProbeArgs::size`] are mtr-packet's: the largest size each accepts
/// is accepted, one more is `invalid-argument`. On loopback, with the host's own mtr-packet.
#[test]
#[ignore = "needs mtr-packet: apt-get install mtr-tiny (root, or its cap_net_raw)"]
fn packet_size_limits_are_the_real_helpers() {
    mtrproto_tests::require_mtr_packet();
    let cases = [
        ("ip-4 127.0.0.1", ProbeArgs::MAX_SIZE_IPV4),
        ("ip-6 ::1", ProbeArgs::MAX_SIZE_IPV6),
    ];
    let mut child = Command::new("mtr-packet")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("mtr-packet starts");
    let mut stdin = child.stdin.take().unwrap();
    for (i, (target, max)) in cases.iter().enumerate() {
        for (j, size) in [*max, max + 1].iter().enumerate() {
            let token = 10 * (i + 1) + j;
            writeln!(stdin, "{token} send-probe {target} size {size} timeout 1").unwrap();
        }
    }
    // Stdin stays open until the answers are in: mtr-packet exits at its end.
    let stdout = child.stdout.take().unwrap();
    let (lines, answers) = crossbeam_channel::bounded(8);
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let mut answers: Vec<String> = (0..4)
        .map_while(|_| answers.recv_timeout(Duration::from_secs(10)).ok())
        .collect();
    drop(stdin);
    let _ = child.kill();
    let _ = child.wait();
    answers.sort();
    assert_eq!(answers.len(), 4, "{answers:?}");
    for (i, (target, max)) in cases.iter().enumerate() {
        let accepted = &answers[2 * i];
        let refused = &answers[2 * i + 1];
        assert!(
            accepted.starts_with(&format!("{} reply", 10 * (i + 1))),
            "{accepted}"
        );
        assert_eq!(refused, &format!("{} invalid-argument", 10 * (i + 1) + 1));
        let args = ProbeArgs::new(target.split(' ').nth(1).unwrap().parse().unwrap());
        assert!(args.clone().size(*max).is_ok());
        assert!(args.size(max + 1).is_err());
    }
}
