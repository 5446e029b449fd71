//! Random operation sequences against the session, through the same harness as the `session`
//! fuzz target (`mtrproto::fuzzing::session`): every token completes exactly once, the window
//! holds, nothing completes for a token never issued, buffers stay within their bounds; and a
//! session without a rate against one whose rate never binds: they never differ.

use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn session_invariants_hold(ops in prop::collection::vec(any::<u8>(), 0..600)) {
        mtrproto::fuzzing::session(&ops);
    }

    #[test]
    fn framer_chunking_and_line_round_trips(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        mtrproto::fuzzing::framer(&bytes);
        mtrproto::fuzzing::reply_line(&bytes);
        mtrproto::fuzzing::request_line(&bytes);
    }
}

/// Drives `sessions` through the same operations from `ops` and asserts after each that
/// everything they show agrees: what each call returned, the bytes to write, the events,
/// the counters, the deadlines, the queue and window figures.
fn agree(sessions: &mut [mtrproto::Session; 2], ops: &[u8]) {
    use std::time::{Duration, Instant};

    use mtrproto::{Feature, ProbeArgs, Token};

    let mut now = Instant::now();
    let start = now;
    // Tokens written so far, as answers pick them.
    let mut written: Vec<u32> = Vec::new();
    for step in ops.chunks(2) {
        let (op, arg) = (step[0], step.get(1).copied().unwrap_or(0));
        if op % 16 == 0 {
            now += Duration::from_millis(u64::from(arg) * 13);
        }
        let mut seen = Vec::new();
        let mut wrote = String::new();
        for session in sessions.iter_mut() {
            let out = match op % 16 {
                0 => {
                    session.handle_timeout(now);
                    String::new()
                }
                1..=6 => {
                    let timeout = Duration::from_millis(u64::from(arg) * 11);
                    let args = ProbeArgs::new([127, 0, 0, 1].into()).timeout(timeout);
                    format!("{:?}", session.send_probe(now, args.unwrap()))
                }
                7 => format!("{:?}", session.check_support(now, Feature::Version)),
                8..=10 => {
                    // Writes all of it, or half.
                    let bytes = session.poll_transmit(now).unwrap_or_default().to_vec();
                    let n = if arg % 3 == 0 {
                        bytes.len() / 2
                    } else {
                        bytes.len()
                    };
                    wrote = String::from_utf8_lossy(&bytes[..n]).into_owned();
                    session.consume(now, n);
                    wrote.clone()
                }
                11..=13 => {
                    let recent = written.len().saturating_sub(1 + usize::from(arg % 4));
                    let token = written
                        .get(recent)
                        .copied()
                        .unwrap_or(u32::from(arg % 8) + 1);
                    let line = match arg % 5 {
                        0 => format!("{token} probes-exhausted\n"),
                        1 => format!("{token} feature-support support ok\n"),
                        _ => format!("{token} reply ip-4 127.0.0.1 round-trip-time 5\n"),
                    };
                    session.handle_input(now, line.as_bytes());
                    String::new()
                }
                14 => {
                    let token = Token::new(u32::from(arg % 16) + 1).unwrap();
                    format!("{}", session.cancel(token))
                }
                _ => {
                    if arg % 8 == 0 {
                        session.handle_eof(now);
                    }
                    String::new()
                }
            };
            let events: Vec<String> =
                std::iter::from_fn(|| session.poll_event().map(|e| format!("{e:?}"))).collect();
            seen.push(format!(
                "{out:?} {events:?} {:?} {:?} queued {} {} in flight {} room {} {:?} capacity {:?}",
                session.counters(),
                session.poll_timeout().map(|at| at.duration_since(start)),
                session.queued(),
                session.probes_queued(),
                session.in_flight(),
                session.has_room(now),
                session.paced_room_at(now),
                session.helper_capacity(),
            ));
        }
        assert_eq!(seen[0], seen[1], "after op {op} {arg}");
        let tokens = wrote
            .lines()
            .filter_map(|line| line.split(' ').next()?.parse::<u32>().ok());
        written.extend(tokens);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    /// A rate too high to ever hold a probe back changes nothing: the session without a rate
    /// sends, answers and counts exactly as the one with it. This holds any shortcut the
    /// unpaced send path takes (4c2707e sent a probe that nothing waited ahead of from
    /// `send_probe`, without the queue; reverted in 62abccc) to what the queue and
    /// `release` do.
    #[test]
    fn a_rate_that_never_binds_changes_nothing(
        window in 1usize..6,
        max_queue in 0usize..5,
        max_retries in 0u8..3,
        history in 0usize..4,
        grace_ms in 0u64..3000,
        ops in prop::collection::vec(any::<u8>(), 0..200),
    ) {
        use mtrproto::{Rate, Session, SessionConfig};

        let config = SessionConfig {
            window,
            max_queue,
            max_retries,
            history,
            grace: std::time::Duration::from_millis(grace_ms),
            ..Default::default()
        };
        let unlimited = Rate { per_second: u32::MAX, burst: u32::MAX };
        let queued = SessionConfig { rate: Some(unlimited), ..config.clone() };
        agree(&mut [Session::new(config), Session::new(queued)], &ops);
    }
}
