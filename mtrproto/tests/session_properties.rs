//! Random operation sequences against the session, checking its invariants after each step:
//! every token completes exactly once, the window holds, nothing completes for a token never
//! issued, buffers stay within their bounds.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use mtrproto::{
    Event, Feature, LineFramer, ProbeArgs, Request, SendError, Session, SessionConfig, Token,
};
use proptest::prelude::*;
use proptest::sample::Index;

#[derive(Debug, Clone)]
enum Op {
    Send {
        count: u8,
        timeout_secs: u32,
    },
    CheckSupport,
    Cancel(Index),
    /// The helper reads at most this many transmitted bytes.
    Read(usize),
    /// The helper answers some requests it has read, in this order, possibly twice, in
    /// chunks cut at these points.
    Answer {
        picks: Vec<Index>,
        twice: bool,
        cuts: Vec<Index>,
        exhausted: bool,
    },
    Garbage(Vec<u8>),
    Advance(u64),
    Eof,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1u8..6, 1u32..4).prop_map(|(count, timeout_secs)| Op::Send { count, timeout_secs }),
        1 => Just(Op::CheckSupport),
        1 => any::<Index>().prop_map(Op::Cancel),
        4 => (1usize..400).prop_map(Op::Read),
        4 => (prop::collection::vec(any::<Index>(), 0..6), any::<bool>(), prop::collection::vec(any::<Index>(), 0..4), prop::bool::weighted(0.1))
            .prop_map(|(picks, twice, cuts, exhausted)| Op::Answer { picks, twice, cuts, exhausted }),
        1 => prop::collection::vec(any::<u8>(), 0..40).prop_map(Op::Garbage),
        2 => (0u64..8000).prop_map(Op::Advance),
        1 => Just(Op::Eof),
    ]
}

/// The test's side of the pipe: a scripted mtr-packet with the session's bookkeeping.
struct Harness {
    session: Session,
    now: Instant,
    window: usize,
    max_line: usize,
    issued: Vec<Token>,
    /// Completions per token (events, or a successful cancel).
    completions: HashMap<Token, u32>,
    /// The helper's read side: partial lines, then requests read and not yet answered.
    helper_input: LineFramer,
    outstanding: Vec<Token>,
}

impl Harness {
    fn new(window: usize, max_queue: usize) -> Harness {
        let config = SessionConfig {
            window,
            max_queue,
            grace: Duration::from_secs(1),
            max_line: 128,
            ..SessionConfig::default()
        };
        Harness {
            session: Session::new(config),
            now: Instant::now(),
            window,
            max_line: 128,
            issued: Vec::new(),
            completions: HashMap::new(),
            helper_input: LineFramer::new(),
            outstanding: Vec::new(),
        }
    }

    fn apply(&mut self, op: Op) -> Result<(), TestCaseError> {
        match op {
            Op::Send {
                count,
                timeout_secs,
            } => {
                for _ in 0..count {
                    let args = ProbeArgs::new("127.0.0.1".parse().unwrap())
                        .timeout_secs(timeout_secs)
                        .unwrap();
                    let sent = self.session.send_probe(self.now, args);
                    self.record_send(sent)?;
                }
            }
            Op::CheckSupport => {
                let sent = self.session.check_support(self.now, Feature::Version);
                self.record_send(sent)?;
            }
            Op::Cancel(i) if !self.issued.is_empty() => {
                let token = *i.get(&self.issued);
                if self.session.cancel(token) {
                    *self.completions.entry(token).or_default() += 1;
                }
            }
            Op::Cancel(_) => {}
            Op::Read(max) => {
                if let Some(bytes) = self.session.poll_transmit() {
                    let n = bytes.len().min(max);
                    let chunk = bytes[..n].to_vec();
                    self.session.consume(n);
                    let mut lines = Vec::new();
                    self.helper_input
                        .feed(&chunk, |l| lines.push(l.unwrap().to_owned()));
                    for line in lines {
                        let (token, _) = Request::parse(&line).unwrap();
                        self.outstanding.push(token);
                    }
                }
            }
            Op::Answer {
                picks,
                twice,
                cuts,
                exhausted,
            } if !self.outstanding.is_empty() => {
                let mut text = String::new();
                for pick in picks {
                    if self.outstanding.is_empty() {
                        break;
                    }
                    let i = pick.index(self.outstanding.len());
                    let token = self.outstanding.remove(i);
                    let line = if exhausted {
                        format!("{token} probes-exhausted\n")
                    } else {
                        format!("{token} reply ip-4 127.0.0.1 round-trip-time 9\n")
                    };
                    text.push_str(&line);
                    if twice {
                        text.push_str(&line);
                    }
                }
                let bytes = text.as_bytes();
                let mut points: Vec<usize> =
                    cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
                points.sort_unstable();
                let mut start = 0;
                for p in points.into_iter().chain([bytes.len()]) {
                    self.session.handle_input(self.now, &bytes[start..p]);
                    start = p;
                }
            }
            Op::Answer { .. } => {}
            Op::Garbage(bytes) => self.session.handle_input(self.now, &bytes),
            Op::Advance(ms) => {
                self.now += Duration::from_millis(ms);
                self.session.handle_timeout(self.now);
            }
            Op::Eof => {
                self.session.handle_eof(self.now);
                self.outstanding.clear();
            }
        }
        self.drain()?;
        self.check_bounds()
    }

    fn record_send(&mut self, sent: Result<Token, SendError>) -> Result<(), TestCaseError> {
        match sent {
            Ok(token) => {
                prop_assert!(
                    !self.issued.contains(&token) || self.completions.contains_key(&token)
                );
                self.issued.push(token);
                self.completions.remove(&token);
            }
            Err(SendError::Closed) => prop_assert!(self.session.is_closed()),
            Err(SendError::QueueFull(_)) => {}
            Err(other) => prop_assert!(false, "unexpected {other:?}"),
        }
        Ok(())
    }

    fn drain(&mut self) -> Result<(), TestCaseError> {
        while let Some(event) = self.session.poll_event() {
            let token = match event {
                Event::Probe { token, .. } | Event::Support { token, .. } => token,
                _ => continue,
            };
            prop_assert!(
                self.issued.contains(&token),
                "completion for {token}, never issued"
            );
            let count = self.completions.entry(token).or_default();
            *count += 1;
            prop_assert_eq!(*count, 1, "token {} completed twice", token);
        }
        Ok(())
    }

    fn check_bounds(&self) -> Result<(), TestCaseError> {
        prop_assert!(self.session.in_flight() <= self.window);
        prop_assert!(self.session.input_buffered() <= self.max_line);
        prop_assert!(self.session.transmit_buffered() <= self.window * Request::MAX_LINE);
        let at_helper = self
            .outstanding
            .iter()
            .filter(|t| !self.completions.contains_key(t))
            .count();
        // Once the watchdog gave up on a request the helper never answered, the helper is
        // misbehaving and the slot is reused: the bound holds until then.
        if self.session.counters().unanswered == 0 {
            prop_assert!(
                at_helper <= self.window,
                "{at_helper} unanswered at the helper"
            );
        }
        Ok(())
    }

    /// Ends the stream and checks that every issued token completed exactly once.
    fn finish(mut self) -> Result<(), TestCaseError> {
        self.session.handle_eof(self.now);
        self.drain()?;
        for token in &self.issued {
            prop_assert_eq!(self.completions.get(token), Some(&1), "token {}", token);
        }
        prop_assert_eq!(self.session.in_flight(), 0);
        prop_assert_eq!(self.session.poll_timeout(), None);
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn session_invariants_hold(
        window in 1usize..6,
        max_queue in 0usize..8,
        ops in prop::collection::vec(op(), 0..60),
    ) {
        let mut harness = Harness::new(window, max_queue);
        for op in ops {
            harness.apply(op)?;
        }
        harness.finish()?;
    }
}
