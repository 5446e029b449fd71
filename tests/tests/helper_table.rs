//! The real mtr-packet's limits: its table of probes in flight (1024 in 0.95), answered
//! `probes-exhausted` when full, and the packet sizes it refuses.
//!
//! The unanswered probes go to 127.0.0.1 inside a network namespace this test creates, with
//! echo requests ignored there (`net.ipv4.icmp_echo_ignore_all`), so each probe holds its
//! slot of the table until its timeout and ends `no-reply`. Nothing leaves the namespace.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mtrproto::{ProbeArgs, ReplyKind};
use mtrproto_blocking::{ProbeOptions, Session};
use mtrproto_tests::netns::Netns;

const PROBES: usize = 3000;
const WINDOW: usize = 1500;
const TIMEOUT: Duration = Duration::from_secs(2);
/// mtr-packet 0.95's `MAX_PROBES` (packet/probe.h).
const TABLE: usize = 1024;

/// 3000 unanswered probes with a window of 1500: the first 1500 go out together, 476 of them
/// past the helper's table. Those wait for a free slot; none of them, and none of the probes
/// after them, may end `probes-exhausted` before its own timeout has passed.
#[test]
#[ignore = "needs root: a network namespace that ignores echo requests, and mtr-packet"]
fn a_full_table_holds_probes_back_instead_of_failing_them() {
    mtrproto_tests::require_netns();
    mtrproto_tests::require_mtr_packet();
    let ns = Netns::new("table").expect("namespace");
    ns.sysctl("net.ipv4.icmp_echo_ignore_all", "1")
        .expect("sysctl");
    let session = Session::builder()
        .program("ip", ["netns", "exec", ns.name(), "mtr-packet"])
        .window(WINDOW)
        .max_queue(PROBES)
        .open()
        .expect("mtr-packet opens in the namespace");
    let options = ProbeOptions {
        timeout: Some(TIMEOUT),
        ..ProbeOptions::default()
    };
    let (done, results) = crossbeam_channel::bounded(PROBES);
    for _ in 0..PROBES {
        let done = done.clone();
        let submitted = Instant::now();
        session
            .probe_with("127.0.0.1", &options, move |result| {
                let _ = done.send((submitted.elapsed(), result));
            })
            .expect("probe taken");
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut no_reply, mut exhausted, mut early) = (0, 0, 0);
    for _ in 0..PROBES {
        let wait = deadline.saturating_duration_since(Instant::now());
        let (took, result) = results.recv_timeout(wait).expect("every probe completes");
        let result = result.expect("an answer from mtr-packet");
        match result.result {
            ReplyKind::NoReply => no_reply += 1,
            ReplyKind::ProbesExhausted => {
                exhausted += 1;
                early += usize::from(took < TIMEOUT);
            }
            other => panic!("unexpected {other}"),
        }
    }
    session.close();
    println!("{no_reply} no-reply, {exhausted} probes-exhausted, {early} of them early");
    assert_eq!(early, 0, "probes-exhausted before the probe's own timeout");
    // Only probes of the first burst can meet a full table: the session learns its size
    // there and keeps the window under it.
    assert!(exhausted <= WINDOW - TABLE, "{exhausted} probes-exhausted");
    assert_eq!(no_reply + exhausted, PROBES);
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
