//! The session against a scripted mtr-packet (`mtrproto::fuzzing::Pair`): the test reads
//! what the session transmits and answers line by line, on a virtual clock.

use std::time::Duration;

use mtrproto::fuzzing::Pair;
use mtrproto::{
    ConfigError, Diagnostic, Event, Failure, Feature, FrameError, ParseError, ProbeArgs, Rate,
    ReplyKind, SendError, Session, SessionConfig, Token,
};

fn reply(token: Token) -> String {
    format!(
        "{token} reply ip-4 127.0.0.1 round-trip-time {}\n",
        token.get() * 10
    )
}

fn probe_token(event: &Event) -> Option<Token> {
    match event {
        Event::Probe { token, .. } => Some(*token),
        _ => None,
    }
}

#[test]
fn out_of_order_answers_reach_their_own_probes() {
    let mut peer = Pair::new(SessionConfig::default());
    let tokens: Vec<Token> = (0..5).map(|_| peer.probe()).collect();
    assert_eq!(peer.read(), tokens);
    for &t in tokens.iter().rev() {
        peer.answer(&reply(t));
    }
    let events = peer.events();
    assert_eq!(events.len(), 5);
    for (event, &t) in events.iter().zip(tokens.iter().rev()) {
        let Event::Probe {
            token,
            outcome: Ok(result),
        } = event
        else {
            panic!("{event:?}")
        };
        assert_eq!(*token, t);
        assert_eq!(
            result.time,
            Some(Duration::from_micros(u64::from(t.get()) * 10))
        );
    }
    assert_eq!(peer.session.in_flight(), 0);
    assert_eq!(peer.session.counters().succeeded, 5);
}

#[test]
fn answers_split_anywhere_are_reassembled() {
    let mut peer = Pair::new(SessionConfig::default());
    let a = peer.probe();
    let b = peer.probe();
    peer.read();
    let text = format!(
        "{}{b} ttl-expired ip-6 ::1 round-trip-time 4 mpls 1,2,1,3\r\n",
        reply(a)
    );
    for byte in text.as_bytes() {
        peer.session
            .handle_input(peer.now, std::slice::from_ref(byte));
    }
    let events = peer.events();
    assert_eq!(
        events.iter().filter_map(probe_token).collect::<Vec<_>>(),
        [a, b]
    );
    let Event::Probe {
        outcome: Ok(result),
        ..
    } = &events[1]
    else {
        panic!()
    };
    assert_eq!(result.result, ReplyKind::TtlExpired);
    assert_eq!(result.mpls[0].label(), 1);
}

#[test]
fn duplicates_garbage_and_strangers_are_diagnostics_only() {
    let mut peer = Pair::new(SessionConfig::default());
    let a = peer.probe();
    let b = peer.probe();
    peer.read();
    peer.answer(&reply(a));
    peer.answer(&reply(a));
    peer.answer("this is not a reply\n0 command-parse-error\n999 reply\n999 reply ip-4 x\n");
    let events = peer.events();
    assert_eq!(events.len(), 6, "{events:#?}");
    assert_eq!(probe_token(&events[0]), Some(a));
    assert!(matches!(&events[1], Event::Diagnostic(Diagnostic::Duplicate(r)) if r.token == a));
    assert!(matches!(
        &events[2],
        Event::Diagnostic(Diagnostic::Unparsable { .. })
    ));
    assert!(
        matches!(&events[3], Event::Diagnostic(Diagnostic::Unsolicited(r)) if r.kind == ReplyKind::CommandParseError)
    );
    assert!(
        matches!(&events[4], Event::Diagnostic(Diagnostic::UnknownToken(r)) if r.token.get() == 999)
    );
    // A bad line for a token nobody waits for stays a diagnostic.
    assert!(matches!(
        &events[5],
        Event::Diagnostic(Diagnostic::Unparsable { .. })
    ));
    // b is still waiting for its real answer, and gets it.
    assert_eq!(peer.session.in_flight(), 1);
    peer.answer(&reply(b));
    assert_eq!(
        peer.events()
            .iter()
            .filter_map(probe_token)
            .collect::<Vec<_>>(),
        [b]
    );
    assert_eq!(peer.session.counters().diagnostics, 5);
}

#[test]
fn a_negative_round_trip_time_completes_the_probe_with_an_unusable_time() {
    let mut peer = Pair::new(SessionConfig::default());
    let a = peer.probe();
    peer.read();
    peer.answer(&format!(
        "{a} reply ip-4 127.0.0.1 round-trip-time -39772\n"
    ));
    let events = peer.events();
    let [
        Event::Probe {
            token,
            outcome: Ok(result),
        },
    ] = &events[..]
    else {
        panic!("{events:#?}")
    };
    assert_eq!(*token, a);
    assert!(result.success());
    assert_eq!(result.responder, Some("127.0.0.1".parse().unwrap()));
    assert_eq!((result.time, result.unusable_time_us), (None, Some(-39772)));
    assert_eq!(peer.session.in_flight(), 0);
    assert_eq!(peer.session.counters().answered, 1);
}

#[test]
fn an_answer_with_a_bad_argument_completes_its_probe_at_once() {
    let mut peer = Pair::new(SessionConfig::default());
    let a = peer.probe();
    let b = peer.probe();
    let c = peer.probe();
    peer.read();
    peer.answer(&format!(
        "{a} reply ip-4 1.2.3.999\n{b} ttl-expired ip-4 10.0.0.1 mpls 1,2\n{c} probes-exhausted ip-4 x\n"
    ));
    let events = peer.events();
    assert_eq!(events.len(), 2, "{events:#?}");
    assert!(matches!(
        &events[0],
        Event::Probe { token, outcome: Err(Failure::Malformed { kind: ReplyKind::Reply, error: ParseError::InvalidValue { argument: "ip-4", .. } }) } if *token == a
    ));
    assert!(matches!(
        &events[1],
        Event::Probe { token, outcome: Err(Failure::Malformed { kind: ReplyKind::TtlExpired, error: ParseError::Mpls(_) }) } if *token == b
    ));
    // probes-exhausted keeps its meaning whatever follows it: c is queued again.
    assert_eq!(peer.session.counters().retries, 1);
    assert_eq!(peer.session.counters().malformed, 2);
    // A malformed `reply` is neither answered nor succeeded.
    assert_eq!(peer.session.counters().answered, 0);
    assert_eq!(peer.session.counters().succeeded, 0);
    assert_eq!(peer.session.counters().diagnostics, 0);
    assert_eq!(peer.read().len(), 1);
}

#[test]
fn an_over_long_line_is_dropped_and_the_next_one_counts() {
    let config = SessionConfig {
        max_line: 64,
        ..SessionConfig::default()
    };
    let mut peer = Pair::new(config);
    let a = peer.probe();
    peer.read();
    peer.answer(&format!("{a} reply {}\n", "x".repeat(100)));
    assert!(peer.session.input_buffered() <= 64);
    peer.answer(&reply(a));
    let events = peer.events();
    assert!(matches!(
        events[0],
        Event::Diagnostic(Diagnostic::Frame(FrameError::LineTooLong { max: 64 }))
    ));
    assert_eq!(probe_token(&events[1]), Some(a));
}

#[test]
fn eof_completes_everything_pending_and_queued() {
    let config = SessionConfig {
        window: 2,
        ..SessionConfig::default()
    };
    let mut peer = Pair::new(config);
    let tokens: Vec<Token> = (0..5).map(|_| peer.probe()).collect();
    let feature = peer
        .session
        .check_support(peer.now, Feature::Version)
        .unwrap();
    // The window's two probes, and the check, which goes past it.
    assert_eq!(peer.read().len(), 3);
    peer.answer(&reply(tokens[0]));
    peer.answer("7 partial li");
    peer.session.handle_eof(peer.now);
    let events = peer.events();
    assert_eq!(probe_token(&events[0]), Some(tokens[0]));
    assert_eq!(
        events[1],
        Event::Diagnostic(Diagnostic::Frame(FrameError::Unterminated { len: 12 }))
    );
    let gone: Vec<_> = events[2..].iter().filter_map(probe_token).collect();
    assert_eq!(gone, tokens[1..]);
    assert!(events[2..6].iter().all(|e| matches!(
        e,
        Event::Probe {
            outcome: Err(Failure::HelperGone),
            ..
        }
    )));
    assert!(
        matches!(&events[6], Event::Support { token, outcome: Err(Failure::HelperGone), .. } if *token == feature)
    );
    assert_eq!(
        peer.session
            .send_probe(peer.now, ProbeArgs::new("::1".parse().unwrap())),
        Err(SendError::Closed)
    );
    assert_eq!(peer.session.poll_transmit(peer.now), None);
    assert_eq!(peer.session.poll_timeout(), None);
}

#[test]
fn the_window_holds_requests_back_and_the_queue_is_bounded() {
    let config = SessionConfig {
        window: 3,
        max_queue: 4,
        ..SessionConfig::default()
    };
    let mut peer = Pair::new(config);
    let tokens: Vec<Token> = (0..7).map(|_| peer.probe()).collect();
    let refused = peer
        .session
        .send_probe(peer.now, ProbeArgs::new("127.0.0.1".parse().unwrap()));
    assert_eq!(refused, Err(SendError::QueueFull(4)));
    assert_eq!(peer.read(), tokens[..3]);
    assert_eq!(peer.session.queued(), 4);
    peer.answer(&reply(tokens[1]));
    assert_eq!(peer.read(), tokens[3..4]);
    assert_eq!(peer.session.in_flight(), 3);
}

#[test]
fn probes_exhausted_is_retried_under_a_fresh_token_then_surfaced_at_its_timeout() {
    let config = SessionConfig {
        max_retries: 2,
        ..SessionConfig::default()
    };
    let mut peer = Pair::new(config);
    let a = peer.probe();
    let mut wire = peer.read();
    assert_eq!(wire, [a]);
    for attempt in 0..3 {
        assert_eq!(wire.len(), 1, "attempt {attempt}");
        peer.answer(&format!("{} probes-exhausted\n", wire[0]));
        let next = peer.read();
        if attempt < 2 {
            assert_ne!(next, wire, "a re-send uses a new token on the wire");
        }
        wire = next;
    }
    // A stray second answer to the first attempt completes nothing.
    peer.answer(&format!("{a} probes-exhausted\n"));
    let events = peer.events();
    assert_eq!(events.len(), 1, "{events:#?}");
    assert!(matches!(&events[0], Event::Diagnostic(Diagnostic::Duplicate(r)) if r.token == a));
    // Its re-sends are spent, but it ends only when its own timeout (10 s) has passed.
    assert_eq!(
        peer.session.poll_timeout(),
        Some(peer.now + ProbeArgs::DEFAULT_TIMEOUT)
    );
    peer.advance(ProbeArgs::DEFAULT_TIMEOUT - Duration::from_millis(1));
    assert!(peer.events().is_empty());
    peer.advance(Duration::from_millis(1));
    let events = peer.events();
    let [
        Event::Probe {
            token,
            outcome: Ok(result),
        },
    ] = &events[..]
    else {
        panic!("{events:#?}")
    };
    assert_eq!(*token, a, "the caller's token");
    assert_eq!(result.result, ReplyKind::ProbesExhausted);
    assert_eq!(peer.session.counters().retries, 2);
    assert_eq!(peer.session.counters().sent, 3);
    assert_eq!(peer.session.poll_timeout(), None);
}

#[test]
fn a_resent_probe_is_cancelled_by_the_callers_token() {
    let config = SessionConfig {
        window: 1,
        ..SessionConfig::default()
    };
    let mut peer = Pair::new(config);
    let a = peer.probe();
    let b = peer.probe();
    peer.read();
    peer.answer(&format!("{a} probes-exhausted\n"));
    let resent = peer.read();
    assert_eq!(resent.len(), 1);
    assert_ne!(resent[0], a);
    assert_ne!(resent[0], b);
    assert!(
        !peer.session.cancel(resent[0]),
        "the wire token is not the caller's"
    );
    assert!(peer.session.cancel(a));
    peer.answer(&reply(resent[0]));
    assert!(peer.events().is_empty());
    assert_eq!(peer.read(), [b]);
}

#[test]
fn driving_to_each_deadline_ends_every_silent_probe_at_its_own_timeout() {
    let config = SessionConfig {
        grace: Duration::from_secs(2),
        ..SessionConfig::default()
    };
    let mut peer = Pair::new(config);
    let start = peer.now;
    let mut tokens = Vec::new();
    for secs in [3, 1] {
        let args = ProbeArgs::new("127.0.0.1".parse().unwrap()).timeout_secs(secs);
        tokens.push(peer.session.send_probe(peer.now, args.unwrap()).unwrap());
    }
    peer.read();
    let mut ended = Vec::new();
    while peer.drive() {
        for event in peer.events() {
            assert!(matches!(
                &event,
                Event::Probe {
                    outcome: Err(Failure::Unanswered),
                    ..
                }
            ));
            ended.push((probe_token(&event).unwrap(), peer.now - start));
        }
        assert!(ended.len() <= 2, "the clock stops once nothing is pending");
    }
    assert_eq!(
        ended,
        [
            (tokens[1], Duration::from_secs(3)),
            (tokens[0], Duration::from_secs(5))
        ]
    );
}

#[test]
fn the_watchdog_completes_a_silent_probe_and_a_late_answer_is_a_diagnostic() {
    let config = SessionConfig {
        grace: Duration::from_secs(2),
        ..SessionConfig::default()
    };
    let mut peer = Pair::new(config);
    let args = ProbeArgs::new("127.0.0.1".parse().unwrap())
        .timeout_secs(3)
        .unwrap();
    let a = peer.session.send_probe(peer.now, args).unwrap();
    let b = peer.probe();
    peer.read();
    let start = peer.now;
    assert_eq!(
        peer.session.poll_timeout(),
        Some(start + Duration::from_secs(5))
    );
    peer.advance(Duration::from_millis(4999));
    peer.session.handle_timeout(peer.now);
    assert!(
        peer.events().is_empty(),
        "early or repeated handle_timeout is harmless"
    );
    peer.advance(Duration::from_millis(1));
    let events = peer.events();
    assert_eq!(
        events,
        [Event::Probe {
            token: a,
            outcome: Err(Failure::Unanswered)
        }]
    );
    // b (default 10 s timeout) is next.
    assert_eq!(
        peer.session.poll_timeout(),
        Some(start + Duration::from_secs(12))
    );
    peer.answer(&reply(a));
    peer.answer(&reply(b));
    let events = peer.events();
    assert!(matches!(&events[0], Event::Diagnostic(Diagnostic::Late(r)) if r.token == a));
    assert_eq!(probe_token(&events[1]), Some(b));
    assert_eq!(peer.session.poll_timeout(), None);
}

#[test]
fn pacing_spaces_releases_and_says_when_the_next_is_due() {
    let config = SessionConfig {
        rate: Some(Rate {
            per_second: 10,
            burst: 2,
        }),
        ..SessionConfig::default()
    };
    let mut peer = Pair::new(config);
    let tokens: Vec<Token> = (0..5).map(|_| peer.probe()).collect();
    assert_eq!(peer.read(), tokens[..2], "the burst");
    let start = peer.now;
    let due = peer.session.poll_timeout().unwrap();
    assert_eq!(due, start + Duration::from_millis(100));
    peer.advance(Duration::from_millis(50));
    assert!(peer.read().is_empty());
    peer.advance(Duration::from_millis(50));
    assert_eq!(peer.read(), tokens[2..3]);
    peer.advance(Duration::from_millis(100));
    assert_eq!(peer.read(), tokens[3..4]);
}

#[test]
fn cancel_withdraws_queued_and_silences_sent_requests() {
    let config = SessionConfig {
        window: 1,
        ..SessionConfig::default()
    };
    let mut peer = Pair::new(config);
    let a = peer.probe();
    let b = peer.probe();
    let c = peer.probe();
    assert_eq!(peer.read(), [a]);
    assert!(peer.session.cancel(b), "queued");
    assert!(peer.session.cancel(a), "in flight");
    assert!(!peer.session.cancel(a), "twice");
    assert!(
        !peer.session.cancel(Token::new(77).unwrap()),
        "never issued"
    );
    // a still holds the helper's slot until it answers.
    assert!(peer.read().is_empty());
    peer.answer(&reply(a));
    assert!(peer.events().is_empty());
    assert_eq!(peer.read(), [c]);
    assert_eq!(peer.session.counters().cancelled, 2);
}

#[test]
fn check_support_answers_and_refusals() {
    let mut peer = Pair::new(SessionConfig::default());
    let v = peer
        .session
        .check_support(peer.now, Feature::Version)
        .unwrap();
    let s = peer.session.check_support(peer.now, Feature::Sctp).unwrap();
    let q = peer
        .session
        .check_support(peer.now, Feature::from_name("quic").unwrap())
        .unwrap();
    assert_eq!(peer.read(), [v, s, q]);
    peer.answer(&format!(
        "{v} feature-support support 0.95\n{s} feature-support support no\n{q} unknown-command\n"
    ));
    let events = peer.events();
    assert_eq!(
        events,
        [
            Event::Support {
                token: v,
                feature: Feature::Version,
                outcome: Ok("0.95".into())
            },
            Event::Support {
                token: s,
                feature: Feature::Sctp,
                outcome: Ok("no".into())
            },
            Event::Support {
                token: q,
                feature: Feature::from_name("quic").unwrap(),
                outcome: Err(Failure::UnexpectedReply(ReplyKind::UnknownCommand)),
            },
        ]
    );
}

#[test]
fn partial_writes_resume_where_they_stopped() {
    let mut peer = Pair::new(SessionConfig::default());
    let a = peer.probe();
    let b = peer.probe();
    let all = peer.session.poll_transmit(peer.now).unwrap().to_vec();
    peer.session.consume(peer.now, 5);
    let a_line = format!("{a} send-probe ip-4 127.0.0.1\n");
    let b_line = format!("{b} send-probe ip-4 127.0.0.1\n");
    assert_eq!(all, format!("{a_line}{b_line}").as_bytes());
    assert_eq!(peer.session.poll_transmit(peer.now).unwrap(), &all[5..]);
    peer.session.consume(peer.now, all.len() - 5);
    assert_eq!(peer.session.poll_transmit(peer.now), None);
}

#[test]
fn a_huge_grace_does_not_overflow() {
    let config = SessionConfig {
        grace: Duration::MAX,
        ..SessionConfig::default()
    };
    let mut peer = Pair::new(config);
    let a = peer.probe();
    assert_eq!(peer.read(), [a]);
    assert!(peer.session.poll_timeout().is_some());
}

#[test]
fn a_config_out_of_range_is_refused_with_its_limit() {
    let config = |window, max_queue| SessionConfig {
        window,
        max_queue,
        ..SessionConfig::default()
    };
    let refused = |config: SessionConfig, field: &str| match Session::try_new(config.clone()) {
        Err(ConfigError::OutOfRange { field: f, .. }) if f == field => {
            assert_eq!(config.validate(), Session::try_new(config).map(|_| ()));
        }
        other => panic!("{field}: {other:?}"),
    };
    refused(config(0, 10), "window");
    refused(config(usize::MAX, 10), "window");
    refused(config(SessionConfig::MAX_WINDOW + 1, 10), "window");
    refused(config(1, SessionConfig::MAX_QUEUE + 1), "max_queue");
    refused(
        SessionConfig {
            rate: Some(Rate {
                per_second: 0,
                burst: 1,
            }),
            ..SessionConfig::default()
        },
        "rate.per_second",
    );
    refused(
        SessionConfig {
            rate: Some(Rate {
                per_second: 1,
                burst: 0,
            }),
            ..SessionConfig::default()
        },
        "rate.burst",
    );
    assert_eq!(
        Session::try_new(config(0, 10)).unwrap_err().to_string(),
        format!(
            "SessionConfig::window must be in 1..={}, got 0",
            SessionConfig::MAX_WINDOW
        )
    );
    assert_eq!(SessionConfig::default().validate(), Ok(()));
}

#[test]
fn the_largest_window_works_without_overflow() {
    let mut peer = Pair::new(SessionConfig {
        window: SessionConfig::MAX_WINDOW,
        max_queue: SessionConfig::MAX_QUEUE,
        ..SessionConfig::default()
    });
    let tokens: Vec<Token> = (0..100).map(|_| peer.probe()).collect();
    assert_eq!(peer.read(), tokens);
    assert_eq!(peer.session.in_flight(), 100);
}

/// `max_queue` 0: a request is taken only when it can be released at once.
#[test]
fn max_queue_zero_means_no_waiting_not_no_sending() {
    let mut peer = Pair::new(SessionConfig {
        window: 1,
        max_queue: 0,
        ..SessionConfig::default()
    });
    let a = peer.probe();
    let args = ProbeArgs::new("127.0.0.1".parse().unwrap());
    assert_eq!(
        peer.session.send_probe(peer.now, args.clone()),
        Err(SendError::QueueFull(0))
    );
    assert_eq!(peer.read(), [a]);
    peer.answer(&reply(a));
    let b = peer.session.send_probe(peer.now, args).unwrap();
    assert_eq!(peer.read(), [b]);
    assert_eq!(peer.session.queued(), 0);
}

/// Answers a refusal for each of `tokens`.
fn refuse(tokens: &[Token]) -> String {
    tokens
        .iter()
        .map(|t| format!("{t} probes-exhausted\n"))
        .collect()
}

#[test]
fn probes_exhausted_holds_resends_until_a_slot_frees_and_learns_the_table_size() {
    let mut peer = Pair::new(SessionConfig {
        window: 8,
        ..SessionConfig::default()
    });
    let tokens: Vec<Token> = (0..10).map(|_| peer.probe()).collect();
    assert_eq!(peer.read(), tokens[..8]);
    // The helper holds three; the five after them meet a full table.
    peer.answer(&refuse(&tokens[3..8]));
    assert_eq!(peer.read(), [], "nothing goes out before a slot frees");
    assert!(peer.events().is_empty(), "a refused probe does not end yet");
    assert_eq!(peer.session.helper_capacity(), Some(3));
    assert_eq!(peer.session.in_flight(), 3);
    assert_eq!(peer.session.queued(), 7);
    assert_eq!(
        peer.session.poll_timeout(),
        Some(peer.now + ProbeArgs::DEFAULT_TIMEOUT)
    );
    // Each answer frees one slot, taken by the earliest refused probe, under a new token.
    for (i, &done) in tokens[..3].iter().enumerate() {
        peer.answer(&reply(done));
        let resent = peer.read();
        assert_eq!(resent.len(), 1, "answer {i}");
        assert!(!tokens.contains(&resent[0]));
        assert_eq!(peer.session.in_flight(), 3);
    }
    assert_eq!(peer.session.counters().retries, 5);
    assert_eq!(peer.session.counters().sent, 8 + 3);
    assert_eq!(
        peer.events()
            .iter()
            .filter_map(probe_token)
            .collect::<Vec<_>>(),
        tokens[..3]
    );
}

#[test]
fn a_refused_probe_ends_probes_exhausted_only_when_its_own_timeout_passed() {
    let mut peer = Pair::new(SessionConfig {
        window: 2,
        ..SessionConfig::default()
    });
    let a = peer.probe();
    let short = ProbeArgs::new("127.0.0.1".parse().unwrap())
        .timeout_secs(2)
        .unwrap();
    let b = peer.session.send_probe(peer.now, short).unwrap();
    assert_eq!(peer.read(), [a, b]);
    peer.advance(Duration::from_millis(500));
    peer.answer(&refuse(&[b]));
    peer.advance(Duration::from_millis(1499));
    assert!(peer.events().is_empty());
    assert_eq!(peer.read(), []);
    peer.advance(Duration::from_millis(1));
    let events = peer.events();
    assert!(
        matches!(&events[..], [Event::Probe { token, outcome: Ok(r) }] if *token == b && r.result == ReplyKind::ProbesExhausted),
        "{events:#?}"
    );
    // a still holds its slot; b never went out again.
    assert_eq!(peer.session.in_flight(), 1);
    assert_eq!(peer.session.counters().sent, 2);
    assert!(!peer.session.cancel(b));
}

/// The measurement against the real mtr-packet 0.95 that showed the defect, on a virtual
/// clock: 3000 unanswered probes, window 1500, timeout 2 s, a table of 1024 probes.
#[test]
fn a_full_table_is_back_pressure_on_a_virtual_clock() {
    const TABLE: usize = 1024;
    let timeout = Duration::from_secs(2);
    let mut peer = Pair::new(SessionConfig {
        window: 1500,
        max_queue: 3000,
        ..SessionConfig::default()
    });
    let start = peer.now;
    let args = ProbeArgs::new("127.0.0.1".parse().unwrap())
        .timeout(timeout)
        .unwrap();
    for _ in 0..3000 {
        peer.session.send_probe(peer.now, args.clone()).unwrap();
    }
    // The helper's table: tokens held and when each times out.
    let mut table: Vec<(Token, std::time::Instant)> = Vec::new();
    let (mut refused, mut no_reply, mut exhausted) = (0, 0, 0);
    for step in 0..100 {
        if step > 0 {
            peer.advance(Duration::from_millis(100));
        }
        let mut answers = String::new();
        for token in peer.read() {
            if table.len() < TABLE {
                table.push((token, peer.now + timeout));
            } else {
                refused += 1;
                answers.push_str(&refuse(&[token]));
            }
        }
        table.retain(|&(token, due)| {
            let keep = due > peer.now;
            if !keep {
                answers.push_str(&format!("{token} no-reply\n"));
            }
            keep
        });
        peer.answer(&answers);
        for event in peer.events() {
            let Event::Probe {
                outcome: Ok(result),
                ..
            } = event
            else {
                panic!("{event:?}")
            };
            match result.result {
                ReplyKind::NoReply => no_reply += 1,
                ReplyKind::ProbesExhausted => {
                    exhausted += 1;
                    assert!(peer.now >= start + timeout, "ended early");
                }
                other => panic!("{other}"),
            }
        }
        assert!(peer.session.in_flight() <= 1500);
    }
    assert_eq!(no_reply + exhausted, 3000);
    // Only the first burst met a full table; after it, nothing was sent past the table.
    assert_eq!(refused, 1500 - TABLE);
    assert_eq!(exhausted, refused);
    assert_eq!(peer.session.helper_capacity(), Some(TABLE));
}

#[test]
fn a_cancelled_probes_refusal_still_says_the_table_is_full() {
    let mut peer = Pair::new(SessionConfig {
        window: 4,
        ..SessionConfig::default()
    });
    let tokens: Vec<Token> = (0..5).map(|_| peer.probe()).collect();
    assert_eq!(peer.read(), tokens[..4]);
    assert!(peer.session.cancel(tokens[3]));
    peer.answer(&refuse(&tokens[3..4]));
    assert_eq!(peer.session.helper_capacity(), Some(3));
    assert_eq!(peer.read(), [], "held until a probe in flight completes");
    peer.answer(&reply(tokens[0]));
    assert_eq!(peer.read(), [tokens[4]]);
    assert!(
        peer.events()
            .iter()
            .all(|e| probe_token(e) == Some(tokens[0]))
    );
}

#[test]
fn bytes_written_release_queued_requests_at_once() {
    let config = SessionConfig {
        window: 2,
        grace: Duration::from_secs(1),
        ..SessionConfig::default()
    };
    let mut peer = Pair::new(config);
    let args = ProbeArgs::new("127.0.0.1".parse().unwrap())
        .timeout_secs(1)
        .unwrap();
    for _ in 0..60 {
        peer.session.send_probe(peer.now, args.clone()).unwrap();
    }
    // The helper reads nothing: the watchdog frees window slots until the transmit buffer
    // is full, and the rest waits for room.
    for _ in 0..60 {
        peer.advance(Duration::from_secs(2));
    }
    let queued = peer.session.queued();
    assert!(queued > 0, "some requests wait for room");
    // Later, the helper reads everything: the freed room takes queued requests at once.
    peer.now += Duration::from_secs(1);
    let written = peer.session.transmit_buffered();
    peer.session.consume(peer.now, written);
    assert!(peer.session.queued() < queued, "released by the write");
    assert!(peer.session.poll_transmit(peer.now).is_some());
    assert!(
        peer.session
            .poll_timeout()
            .is_none_or(|due| due >= peer.now),
        "never in the past"
    );
}

/// The last instant an `Instant` holds, from now on.
fn end_of_the_clock() -> std::time::Instant {
    let mut at = std::time::Instant::now();
    let mut step = Duration::from_secs(1 << 62);
    while !step.is_zero() {
        match at.checked_add(step) {
            Some(next) => at = next,
            None => step /= 2,
        }
    }
    at
}

/// A virtual clock may start anywhere. Every deadline within 136 years of the clock's end
/// panicked (`FAR_FUTURE` was added to `now` even when the deadline fitted), and so did
/// the pacer's schedule there: no input may panic.
#[test]
fn a_clock_near_its_end_panics_nowhere() {
    use mtrproto::{MultipathConfig, MultipathTracer, ProbeResult, Protocol, TraceConfig, Tracer};
    let end = end_of_the_clock();
    let target = "127.0.0.1".parse().unwrap();
    for before_end in [
        Duration::from_secs(100),
        Duration::from_millis(1),
        Duration::ZERO,
    ] {
        let now = end - before_end;
        for (grace, rate) in [
            (Duration::from_secs(5), None),
            (Duration::MAX, None),
            (
                Duration::ZERO,
                Some(Rate {
                    per_second: 1,
                    burst: 1,
                }),
            ),
        ] {
            let config = SessionConfig {
                grace,
                rate,
                ..SessionConfig::default()
            };
            let mut session = Session::new(config);
            let token = session.send_probe(now, ProbeArgs::new(target)).unwrap();
            session.send_probe(now, ProbeArgs::new(target)).unwrap();
            let written = session.poll_transmit(now).map_or(0, <[u8]>::len);
            session.consume(now, written);
            let due = session.poll_timeout().expect("a watchdog deadline");
            assert!(due >= now, "{due:?} before {now:?}");
            if before_end == Duration::from_secs(100) && grace == Duration::from_secs(5) {
                // The deadline fitted: it is the probe's timeout and the grace.
                assert_eq!(due, now + Duration::from_secs(15));
            }
            session.handle_timeout(end);
            session.handle_input(end, reply(token).as_bytes());
            while session.poll_event().is_some() {}
        }
        let mut tracer = Tracer::new(ProbeArgs::new(target), &TraceConfig::default(), now).unwrap();
        let at = tracer.poll_timeout().unwrap();
        if let Some(probe) = tracer.poll_probe(at) {
            let lost = ProbeResult::from_reply(&mtrproto::Reply::parse("1 no-reply").unwrap());
            tracer.handle_result(at, probe.ttl(), &lost);
        }
        tracer.handle_timeout(end);
        let udp = ProbeArgs::new(target).protocol(Protocol::Udp);
        let mut paths = MultipathTracer::new(udp, &MultipathConfig::default(), now).unwrap();
        if let Some(probe) = paths.poll_probe(now) {
            paths.handle_lost(now, probe.id());
        }
        paths.handle_timeout(end);
    }
}

/// A refused probe whose re-sends are spent waits out its timeout holding no window slot
/// and no place in the queue. A helper refusing every probe (its table held by something
/// else) had them pile up without bound for a driver that sends whenever `has_room` says
/// so: one more per round trip, each kept for its timeout (up to `i32::MAX` seconds).
/// They are held to `window + max_queue`, the requests the session holds otherwise; past
/// that, the refusal stands at once.
#[test]
fn refused_probes_waiting_out_their_timeout_are_bounded() {
    let config = SessionConfig {
        window: 2,
        max_queue: 3,
        max_retries: 0,
        ..SessionConfig::default()
    };
    let bound = config.window + config.max_queue;
    let mut peer = Pair::new(config);
    let args = ProbeArgs::new("127.0.0.1".parse().unwrap());
    let mut sent = 0;
    let mut ended = Vec::new();
    for _ in 0..1000 {
        while peer.session.has_room(peer.now) {
            peer.session.send_probe(peer.now, args.clone()).unwrap();
            sent += 1;
        }
        let read = peer.read();
        peer.answer(&refuse(&read));
        ended.extend(peer.events());
        peer.now += Duration::from_millis(1);
        assert!(
            peer.session.refused_waiting() <= bound,
            "{} refused probes waiting",
            peer.session.refused_waiting()
        );
    }
    // Each ended once, with the refusal; the rest end at their timeout.
    peer.advance(ProbeArgs::DEFAULT_TIMEOUT);
    ended.extend(peer.events());
    assert_eq!(peer.session.refused_waiting(), 0);
    assert_eq!(
        ended.len() + peer.session.in_flight() + peer.session.queued(),
        sent
    );
    assert!(ended.iter().all(|e| matches!(
        e,
        Event::Probe { outcome: Ok(r), .. } if r.result == ReplyKind::ProbesExhausted
    )));
}
