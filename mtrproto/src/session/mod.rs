//! The session: a state machine that turns requests into bytes for mtr-packet and its
//! output into events, with no I/O of its own. The driving contract is on [`Session`].

use std::collections::{BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use thiserror::Error;

mod deadlines;
mod pacer;
// Public for drivers as `TokenSlots` (lib.rs), the rest private.
pub(crate) mod slots;
use deadlines::Deadlines;
use pacer::Pacer;
use slots::Slots;

use crate::error::{FrameError, ParseError};
use crate::protocol::command::{Feature, ProbeArgs, Request};
use crate::protocol::framer::LineFramer;
use crate::protocol::grammar;
use crate::protocol::reply::{Reply, ReplyKind};
use crate::protocol::result::ProbeResult;
use crate::protocol::token::{Token, TokenMap};
use crate::protocol::word::Word;

/// How a [`Session`] paces, bounds and watches its requests.
///
/// Build one with struct update syntax: `SessionConfig { window: 64, ..Default::default() }`.
/// [`SessionConfig::validate`] says whether the values are in range; [`Session::try_new`]
/// refuses a config that is not, and [`Session::new`] panics on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    /// Probes in flight at most (sent and not yet answered), `1..=MAX_WINDOW`. A
    /// check-support holds no slot of it ([`Session::MAX_CHECKS`]).
    ///
    /// Default 256: mtr-packet 0.95 holds at most 1024 probes and aborts past about 1016
    /// TCP probes (each holds a socket below `FD_SETSIZE`), and 256 already reaches its full
    /// speed on loopback. A larger window than the helper's table is held under the table's
    /// size once the helper answers `probes-exhausted`.
    pub window: usize,
    /// Requests waiting behind the window at most, `0..=MAX_QUEUE`; past it, sending fails
    /// with [`SendError::QueueFull`]. A request released at once does not wait, so with 0
    /// a request is taken exactly when it can go out at once: for a probe, the window has
    /// room for it and the `rate` lets it out ([`Session::has_room`]); for a check-support,
    /// fewer than [`Session::MAX_CHECKS`] are out. Default 65536.
    pub max_queue: usize,
    /// Probes released per second at most, with `burst` at once; `None` (the default)
    /// releases as fast as the window allows. A check-support, which sends no packet, is
    /// not paced (nor counted).
    pub rate: Option<Rate>,
    /// How long past its own timeout a probe may go unanswered before the watchdog
    /// completes it with [`Failure::Unanswered`]; a `check-support` gets this long in all.
    /// Default 5 s.
    pub grace: Duration,
    /// How many times a probe answered `probes-exhausted` (mtr-packet's table of probes is
    /// full) is sent again at most. Default 3.
    ///
    /// A refused probe waits, ahead of new requests, until a request in flight completes,
    /// and the session keeps its window under the number in flight at that refusal (the
    /// table's size, [`Session::helper_capacity`]). It ends with the `probes-exhausted`
    /// answer only once its own timeout, counted from its first release, has passed
    /// without an attempt being taken: with its re-sends spent it waits for that moment
    /// ([`Session::refused_waiting`]), unless `window + max_queue` refused probes already
    /// wait so (a helper refusing every probe), when it ends at once.
    pub max_retries: u8,
    /// The longest line accepted from the helper. Default [`LineFramer::DEFAULT_MAX_LINE`].
    pub max_line: usize,
    /// How many completed tokens are remembered, to tell a late or second answer from an
    /// unknown token. Default 1024.
    pub history: usize,
}

impl SessionConfig {
    /// The largest `window`: ten times mtr-packet 0.96's table of 10240 probes, rounded up to
    /// a power of two.
    pub const MAX_WINDOW: usize = 1 << 17;
    /// The largest `max_queue`. With `MAX_WINDOW`, it keeps the tokens in use (at most two
    /// per request) far below the 2^31 tokens there are.
    pub const MAX_QUEUE: usize = 1 << 24;

    /// Checks every value is in its range: `window` in `1..=MAX_WINDOW` (0 could never send),
    /// `max_queue` in `0..=MAX_QUEUE`, and a `rate` of at least one release per second and
    /// a burst of at least one.
    ///
    /// ```
    /// use mtrproto::{ConfigError, SessionConfig};
    /// let config = SessionConfig { window: 0, ..Default::default() };
    /// assert!(matches!(config.validate(), Err(ConfigError::OutOfRange { field: "window", .. })));
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        let check = |field, value: usize, min: usize, max: usize| {
            if (min..=max).contains(&value) {
                Ok(())
            } else {
                Err(ConfigError::OutOfRange {
                    field,
                    value: value as u64,
                    min: min as u64,
                    max: max as u64,
                })
            }
        };
        check("window", self.window, 1, SessionConfig::MAX_WINDOW)?;
        check("max_queue", self.max_queue, 0, SessionConfig::MAX_QUEUE)?;
        if let Some(rate) = self.rate {
            let max = u32::MAX as usize;
            check("rate.per_second", rate.per_second as usize, 1, max)?;
            check("rate.burst", rate.burst as usize, 1, max)?;
        }
        Ok(())
    }
}

/// A [`SessionConfig`] value out of its range.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A value outside the range the session accepts.
    #[error("SessionConfig::{field} must be in {min}..={max}, got {value}")]
    OutOfRange {
        /// The field, as `window` or `rate.burst`.
        field: &'static str,
        /// The value given.
        value: u64,
        /// Smallest accepted value.
        min: u64,
        /// Largest accepted value.
        max: u64,
    },
}

/// A release rate for [`SessionConfig::rate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Average releases per second.
    pub per_second: u32,
    /// Releases allowed back to back after an idle time.
    pub burst: u32,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            window: 256,
            max_queue: 65536,
            rate: None,
            grace: Duration::from_secs(5),
            max_retries: 3,
            max_line: LineFramer::DEFAULT_MAX_LINE,
            history: 1024,
        }
    }
}

/// Why a request could not be taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SendError {
    /// The queue behind the window is full; retry after some requests complete.
    #[error("request queue full ({0} waiting); wait for answers before sending more")]
    QueueFull(usize),
    /// The helper's output ended; open a new session.
    #[error("session closed: mtr-packet's output ended")]
    Closed,
}

/// A request that completed without an answer from mtr-packet.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum Failure {
    /// mtr-packet's output ended before it answered.
    #[error("mtr-packet exited before answering")]
    HelperGone,
    /// mtr-packet did not answer within the request's timeout plus the grace.
    #[error("mtr-packet did not answer in time")]
    Unanswered,
    /// A `check-support` was answered with something other than `feature-support`.
    #[error("unexpected answer `{0}` to check-support")]
    UnexpectedReply(ReplyKind<'static>),
    /// mtr-packet answered, but an argument of its line does not parse (the line is
    /// [`ParseError`]'s subject). The request completes at once rather than waiting for
    /// the watchdog.
    #[error("mtr-packet answered `{kind}` in a line that does not parse: {error}")]
    Malformed {
        /// The reply name of the line.
        kind: ReplyKind<'static>,
        /// What is wrong with the rest of it.
        error: ParseError,
    },
}

/// Something the caller should know about, from [`Session::poll_event`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A probe completed: mtr-packet's answer, or why there is none.
    Probe {
        /// The token `send_probe` returned.
        token: Token,
        /// The result, or why there is none.
        outcome: Result<ProbeResult, Failure>,
    },
    /// A `check-support` completed.
    Support {
        /// The token `check_support` returned.
        token: Token,
        /// The feature asked about.
        feature: Feature,
        /// The `support` text (`ok`, `no`, or the version), or why there is none.
        outcome: Result<String, Failure>,
    },
    /// A line that belongs to no request. It never completes a request.
    Diagnostic(Diagnostic),
}

/// A line from the helper that answers no request of this session.
///
/// Its replies are boxed: diagnostics are rare, and a `Reply` inline would make every
/// [`Event`], a probe's included, as large as one (192 bytes against 120), copied twice
/// per probe on its way out of the session.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Diagnostic {
    /// A token-0 line such as `0 command-parse-error`.
    Unsolicited(Box<Reply<'static>>),
    /// A reply for a token not in flight and not recently completed.
    UnknownToken(Box<Reply<'static>>),
    /// A second answer for a token that was already answered.
    Duplicate(Box<Reply<'static>>),
    /// An answer for a request the watchdog had already completed.
    Late(Box<Reply<'static>>),
    /// A line that does not parse.
    Unparsable {
        /// The line.
        line: String,
        /// What is wrong with it.
        error: ParseError,
    },
    /// Bytes that do not form a line: too long, not UTF-8, or cut off by the end of output.
    Frame(FrameError),
}

/// What the session has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Counters {
    /// Request lines released to the transmit buffer, re-sends included.
    pub sent: u64,
    /// Probes completed with mtr-packet's answer.
    pub answered: u64,
    /// Requests completed by an answer whose arguments do not parse ([`Failure::Malformed`]).
    pub malformed: u64,
    /// Probes of `answered` whose answer was `reply` (the target answered); a malformed
    /// `reply` line is not one.
    pub succeeded: u64,
    /// Feature checks completed with an answer.
    pub supports: u64,
    /// Requests the watchdog gave up on, cancelled ones included: each is a slot reused while
    /// the helper may still hold its line (a cancelled request counts in `cancelled` too).
    pub unanswered: u64,
    /// Requests completed because the helper's output ended.
    pub helper_gone: u64,
    /// Requests cancelled by the caller.
    pub cancelled: u64,
    /// Probes queued again after `probes-exhausted`.
    pub retries: u64,
    /// Diagnostic events.
    pub diagnostics: u64,
}

/// The sans-IO mtr-packet session: a state machine that turns requests into bytes for
/// mtr-packet and its output into events, with no I/O of its own.
///
/// # The contract
///
/// Feed every input, then drain every output, in this order, and repeat:
///
/// 1. inputs: [`Session::send_probe`], [`Session::check_support`], [`Session::cancel`],
///    [`Session::handle_input`] (bytes read from the helper's stdout),
///    [`Session::handle_eof`] (its stdout closed), [`Session::handle_timeout`] (the deadline
///    from `poll_timeout` passed; calling it early or twice is harmless);
/// 2. [`Session::poll_transmit`] with the current instant: write those bytes to the
///    helper's stdin, then [`Session::consume`] as many as were written (bytes written free
///    room that queued requests take at once, so both take `now`);
/// 3. [`Session::poll_timeout`]: wake up at that instant and call `handle_timeout`;
/// 4. [`Session::poll_event`] until it returns `None`.
///
/// Time only ever comes in as an `Instant` argument: the session never reads a clock, so tests
/// drive it with a virtual one.
///
/// ```
/// use std::time::Instant;
/// use mtrproto::{Event, ProbeArgs, Session, SessionConfig};
///
/// let mut session = Session::new(SessionConfig::default());
/// let now = Instant::now();
/// let token = session.send_probe(now, ProbeArgs::new("127.0.0.1".parse()?))?;
///
/// // A driver writes this to mtr-packet's stdin...
/// let line = session.poll_transmit(now).unwrap().to_vec();
/// assert_eq!(line, format!("{token} send-probe ip-4 127.0.0.1\n").as_bytes());
/// session.consume(now, line.len());
///
/// // ...and hands back what mtr-packet answered.
/// session.handle_input(now, format!("{token} reply ip-4 127.0.0.1 round-trip-time 80\n").as_bytes());
/// match session.poll_event() {
///     Some(Event::Probe { token: t, outcome: Ok(result) }) => {
///         assert_eq!(t, token);
///         assert!(result.success());
///     }
///     other => panic!("unexpected {other:?}"),
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Session {
    config: SessionConfig,
    next_token: u32,
    /// Pending requests by the token on the wire.
    requests: Slots<Pending>,
    /// For re-sent probes: the caller's token to the token of the current attempt.
    resent: TokenMap<Token>,
    /// Probes waiting for the window.
    queue: VecDeque<Token>,
    /// Check-supports waiting for room of their own ([`Session::MAX_CHECKS`]): kept apart
    /// from the probes, so that releasing a probe never asks what a request is.
    checks_queue: VecDeque<Token>,
    /// Probes refused with `probes-exhausted`, released before `queue`.
    resend: VecDeque<Token>,
    /// When each refused probe gives up: its first release plus its timeout.
    expiries: BTreeSet<(Instant, Token)>,
    in_flight: usize,
    /// The check-supports among them: mtr-packet answers one at once and keeps no probe for
    /// it, so it holds no window slot ([`Session::release`]).
    checks: usize,
    /// The in-flight count at which mtr-packet last said `probes-exhausted`, the least seen.
    capacity: Option<usize>,
    /// Set by a `probes-exhausted` while other requests were in flight: nothing is released
    /// until one of them completes.
    held: bool,
    /// The watchdog's deadline of each request in flight (and of some that completed).
    deadlines: Deadlines,
    pacer: Option<Pacer>,
    transmit: Vec<u8>,
    transmitted: usize,
    framer: LineFramer,
    events: VecDeque<Event>,
    recent: VecDeque<(Token, Ended)>,
    closed: bool,
    counters: Counters,
    /// Requests that left flight, ever: the fuzz harness tells by it when junk it fed in
    /// answered a request.
    #[cfg(feature = "fuzzing")]
    pub(crate) settled: u64,
}

#[derive(Debug)]
struct Pending {
    /// The token the caller holds: that of the first attempt.
    origin: Token,
    request: Request,
    /// The watchdog's deadline while `state` is in flight or cancelled (the state and its
    /// deadline apart, not an enum holding it: 8 bytes less per request).
    deadline: Instant,
    state: State,
    retries: u8,
    /// The first release plus the probe's timeout: a refused probe gives up then.
    expires: Option<Instant>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting in `queue` or `resend`; or refused with its re-sends spent, waiting for its
    /// expiry.
    Queued,
    /// Released to the transmit buffer; the watchdog fires at `deadline`.
    InFlight,
    /// Cancelled after release: still holds a slot of mtr-packet until answered or due.
    Cancelled,
}

/// How a remembered token ended, to classify a later line for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    Answered,
    TimedOut,
}

impl Session {
    /// Check-supports in flight at most. They go out past the window (mtr-packet answers
    /// one at once and keeps no probe for it), so that a check never waits for probes'
    /// answers; past this many they wait (counted against `max_queue`), holding back no probe.
    pub const MAX_CHECKS: usize = 8;

    /// A session with no request yet.
    ///
    /// # Panics
    ///
    /// If [`SessionConfig::validate`] refuses `config` (a caller's mistake, not a runtime
    /// condition); [`Session::try_new`] returns that error instead.
    pub fn new(config: SessionConfig) -> Session {
        match Session::try_new(config) {
            Ok(session) => session,
            Err(error) => panic!("{error}"),
        }
    }

    /// A session with no request yet, or why `config` is refused.
    pub fn try_new(config: SessionConfig) -> Result<Session, ConfigError> {
        config.validate()?;
        Ok(Session {
            pacer: config.rate.map(|r| Pacer::new(r.per_second, r.burst)),
            framer: LineFramer::with_max_line(config.max_line),
            config,
            next_token: 1,
            requests: Slots::default(),
            resent: TokenMap::default(),
            queue: VecDeque::new(),
            checks_queue: VecDeque::new(),
            resend: VecDeque::new(),
            expiries: BTreeSet::new(),
            in_flight: 0,
            checks: 0,
            capacity: None,
            held: false,
            deadlines: Deadlines::default(),
            transmit: Vec::new(),
            transmitted: 0,
            events: VecDeque::new(),
            recent: VecDeque::new(),
            closed: false,
            counters: Counters::default(),
            #[cfg(feature = "fuzzing")]
            settled: 0,
        })
    }

    /// Queues a probe and returns the token its [`Event::Probe`] will carry.
    pub fn send_probe(&mut self, now: Instant, args: ProbeArgs) -> Result<Token, SendError> {
        self.submit(now, Request::SendProbe(args))
    }

    /// Queues a `check-support` and returns the token its [`Event::Support`] will carry.
    pub fn check_support(&mut self, now: Instant, feature: Feature) -> Result<Token, SendError> {
        self.submit(now, Request::CheckSupport(feature))
    }

    fn submit(&mut self, now: Instant, request: Request) -> Result<Token, SendError> {
        if self.closed {
            return Err(SendError::Closed);
        }
        // Requests waiting before this one, for the error.
        let waiting = self.waiting();
        let token = self.allocate_token();
        let pending = Pending {
            origin: token,
            request,
            // Set at release.
            deadline: now,
            state: State::Queued,
            retries: 0,
            expires: None,
        };
        // A check needs no window slot: it waits apart, released ahead of the probes.
        let check = matches!(pending.request, Request::CheckSupport(_));
        self.requests.insert(token, pending);
        self.queue_for(check).push_back(token);
        self.release(now);
        // Taken if released at once or if there is room to wait. Released in order, so one
        // still waiting is the last of its queue.
        let full = self.waiting() > self.config.max_queue;
        let queue = self.queue_for(check);
        if full && queue.back() == Some(&token) {
            queue.pop_back();
            self.requests.remove(token);
            return Err(SendError::QueueFull(waiting));
        }
        Ok(token)
    }

    /// The next token in 1..=i32::MAX not in use (on the wire or held by a caller), wrapping
    /// to 1.
    fn allocate_token(&mut self) -> Token {
        loop {
            let candidate = Token::new(self.next_token).unwrap_or(Token::MAX);
            self.next_token = if candidate == Token::MAX {
                1
            } else {
                candidate.get() + 1
            };
            // The window and queue bounds keep far fewer than i32::MAX tokens in use, so this
            // finds a free one. A token whose slot another request holds is skipped too: the
            // table then never needs to grow for lack of a free slot.
            let held = !self.resent.is_empty() && self.resent.contains_key(&candidate);
            if self.requests.is_vacant(candidate) && !held {
                return candidate;
            }
        }
    }

    /// Withdraws a request. Returns `false` if the token is not pending (never issued,
    /// completed, or already cancelled). A cancelled request produces no event; if it was
    /// already sent it keeps its place in the window until mtr-packet answers or its
    /// deadline passes, and that answer is dropped.
    pub fn cancel(&mut self, token: Token) -> bool {
        let wire = self.resent.get(&token).copied().unwrap_or(token);
        let Some(pending) = self.requests.get_mut(wire).filter(|p| p.origin == token) else {
            return false;
        };
        match pending.state {
            State::Queued => {
                if let Some(expires) = pending.expires {
                    self.expiries.remove(&(expires, wire));
                }
                self.requests.remove(wire);
                self.resent.remove(&token);
                self.queue.retain(|&t| t != wire);
                self.checks_queue.retain(|&t| t != wire);
                self.resend.retain(|&t| t != wire);
            }
            State::InFlight => pending.state = State::Cancelled,
            State::Cancelled => return false,
        }
        self.counters.cancelled += 1;
        true
    }

    /// Takes bytes read from the helper's stdout, in any chunking.
    pub fn handle_input(&mut self, now: Instant, bytes: &[u8]) {
        let mut framer = std::mem::take(&mut self.framer);
        framer.feed(bytes, |line| match line {
            Ok(line) => match Reply::parse(line) {
                Ok(reply) => self.handle_reply(now, reply, None),
                Err(error) => self.handle_unparsable(now, line, error),
            },
            Err(error) => self.diagnostic(Diagnostic::Frame(error)),
        });
        self.framer = framer;
        self.release(now);
    }

    /// A line that does not parse. When its token and name do and the token is in flight,
    /// the request completes now with [`Failure::Malformed`] instead of waiting for the
    /// watchdog; a `probes-exhausted` keeps its meaning whatever its arguments.
    fn handle_unparsable(&mut self, now: Instant, line: &str, error: ParseError) {
        if let Ok((token, name, _)) = grammar::head(line) {
            let sent = self
                .requests
                .get(token)
                .is_some_and(|p| p.state != State::Queued);
            if token != Token::UNSOLICITED && sent {
                let reply = Reply::new(token, ReplyKind::from_name(Word::parsed(name)));
                let error = (reply.kind != ReplyKind::ProbesExhausted).then_some(error);
                return self.handle_reply(now, reply, error);
            }
        }
        self.diagnostic(Diagnostic::Unparsable {
            line: line.to_owned(),
            error,
        });
    }

    /// An answer to a token; `malformed` says what did not parse in its line. Strays become
    /// diagnostics, a refused probe is retried, anything else completes its request.
    fn handle_reply(&mut self, now: Instant, reply: Reply<'_>, malformed: Option<ParseError>) {
        if reply.token == Token::UNSOLICITED {
            return self.diagnostic(Diagnostic::Unsolicited(Box::new(reply.into_owned())));
        }
        let token = reply.token;
        let Some(pending) = self.requests.get(token) else {
            return self.stray(reply);
        };
        match pending.state {
            // mtr-packet cannot answer what it was never sent.
            State::Queued => {
                return self.diagnostic(Diagnostic::UnknownToken(Box::new(reply.into_owned())));
            }
            State::Cancelled => return self.cancelled_answered(token, &reply),
            State::InFlight => {}
        }
        let refused = reply.kind == ReplyKind::ProbesExhausted
            && matches!(pending.request, Request::SendProbe(_));
        let Some(pending) = self.requests.remove(token) else {
            return;
        };
        self.settle(token, is_check(&pending), Ended::Answered);
        if refused {
            self.back_off();
            if let Some(pending) = self.retry(now, pending) {
                self.complete(pending, reply, malformed);
            }
        } else {
            self.complete(pending, reply, malformed);
        }
    }

    /// An answer to a token no pending request holds: a duplicate, a late answer, or a
    /// stranger.
    fn stray(&mut self, reply: Reply<'_>) {
        let diagnostic = match self.recent.iter().find(|(t, _)| *t == reply.token) {
            Some((_, Ended::Answered)) => Diagnostic::Duplicate(Box::new(reply.into_owned())),
            Some((_, Ended::TimedOut)) => Diagnostic::Late(Box::new(reply.into_owned())),
            None => Diagnostic::UnknownToken(Box::new(reply.into_owned())),
        };
        self.diagnostic(diagnostic);
    }

    /// The answer to a request the caller cancelled once sent: it frees the slot, and a
    /// refusal still says the helper's table is full.
    fn cancelled_answered(&mut self, token: Token, reply: &Reply<'_>) {
        if let Some(pending) = self.requests.remove(token) {
            self.settle(token, is_check(&pending), Ended::Answered);
            self.forget_resent(pending.origin);
        }
        if reply.kind == ReplyKind::ProbesExhausted {
            self.back_off();
        }
    }

    /// Queues a refused probe again under a fresh wire token while its time lasts (its
    /// re-sends spent, it waits there for its expiry); gives it back once its time is up.
    fn retry(&mut self, now: Instant, mut pending: Pending) -> Option<Pending> {
        let expires = pending.expires.unwrap_or(now);
        if now >= expires {
            return Some(pending);
        }
        // Its re-sends spent, it would wait out its timeout holding no slot: a helper
        // refusing every probe would pile these up with each probe sent. At most the
        // requests the session holds otherwise wait so; past them, the refusal stands.
        let spent = pending.retries >= self.config.max_retries;
        if spent && self.refused_waiting() >= self.config.window + self.config.max_queue {
            return Some(pending);
        }
        // A fresh wire token, so that a stray second answer to this attempt cannot be
        // taken for the answer to the next one.
        let wire = self.allocate_token();
        self.resent.insert(pending.origin, wire);
        pending.state = State::Queued;
        if pending.retries < self.config.max_retries {
            pending.retries += 1;
            self.resend.push_back(wire);
            self.counters.retries += 1;
        }
        self.requests.insert(wire, pending);
        self.expiries.insert((expires, wire));
        None
    }

    /// Completes a request with its answer: a probe's result, a feature's support, or
    /// [`Failure::Malformed`].
    fn complete(&mut self, pending: Pending, reply: Reply<'_>, malformed: Option<ParseError>) {
        self.forget_resent(pending.origin);
        let token = pending.origin;
        if let Some(error) = malformed {
            self.counters.malformed += 1;
            let kind = reply.kind.into_owned();
            return self
                .events
                .push_back(failed(pending, Failure::Malformed { kind, error }));
        }
        let event = match pending.request {
            Request::SendProbe(_) => {
                self.counters.answered += 1;
                self.counters.succeeded += u64::from(reply.kind == ReplyKind::Reply);
                Event::Probe {
                    token,
                    outcome: Ok(ProbeResult::from_reply(&reply)),
                }
            }
            Request::CheckSupport(feature) => {
                self.counters.supports += 1;
                let outcome = match (&reply.kind, &reply.support) {
                    (ReplyKind::FeatureSupport, Some(support)) => Ok(support.as_str().to_owned()),
                    (kind, _) => Err(Failure::UnexpectedReply(kind.clone().into_owned())),
                };
                Event::Support {
                    token,
                    feature,
                    outcome,
                }
            }
        };
        self.events.push_back(event);
    }

    /// mtr-packet's table is full: its size is at most the requests still in flight, and
    /// nothing more goes out until one of them completes. A refusal with nothing else in
    /// flight says nothing about the table (and holding would wait forever).
    fn back_off(&mut self) {
        let probes = self.probes_in_flight();
        if probes > 0 {
            let capacity = self.capacity.map_or(probes, |c| c.min(probes));
            self.capacity = Some(capacity);
            self.held = true;
        }
    }

    /// The window in effect: the configured one, under the helper's table once known.
    fn window(&self) -> usize {
        self.capacity
            .map_or(self.config.window, |c| c.min(self.config.window))
    }

    /// Whether the window lets one more request go out.
    fn window_open(&self) -> bool {
        let probes = self.probes_in_flight();
        probes < self.window() && !(self.held && probes > 0)
    }

    /// Probes sent and not yet completed: the window's count.
    pub(crate) fn probes_in_flight(&self) -> usize {
        self.in_flight - self.checks
    }

    /// The queue a new request waits in: check-supports apart from the probes.
    fn queue_for(&mut self, check: bool) -> &mut VecDeque<Token> {
        if check {
            &mut self.checks_queue
        } else {
            &mut self.queue
        }
    }

    /// Requests waiting in the queues, the bound `max_queue` applies to.
    fn waiting(&self) -> usize {
        self.queue.len() + self.checks_queue.len()
    }

    /// Frees the window slot of a request that left flight (already out of `requests`), and
    /// remembers how it ended.
    fn settle(&mut self, token: Token, check: bool, ended: Ended) {
        #[cfg(feature = "fuzzing")]
        {
            self.settled += 1;
        }
        self.in_flight -= 1;
        if check {
            self.checks -= 1;
        }
        let requests = &self.requests;
        self.deadlines.prune(self.in_flight, |deadline, token| {
            watched(requests, deadline, token)
        });
        self.held = false;
        if self.config.history > 0 {
            if self.recent.len() >= self.config.history {
                self.recent.pop_front();
            }
            self.recent.push_back((token, ended));
        }
    }

    /// Drops the re-sent token of a completed request, if it had one.
    fn forget_resent(&mut self, origin: Token) {
        // Re-sends are rare: most completions skip the lookup.
        if !self.resent.is_empty() {
            self.resent.remove(&origin);
        }
    }

    fn diagnostic(&mut self, diagnostic: Diagnostic) {
        self.counters.diagnostics += 1;
        self.events.push_back(Event::Diagnostic(diagnostic));
    }

    /// The helper's stdout ended: every pending and queued request completes at once with
    /// [`Failure::HelperGone`], and later sends fail with [`SendError::Closed`].
    pub fn handle_eof(&mut self, _now: Instant) {
        if let Some(error) = self.framer.finish() {
            self.diagnostic(Diagnostic::Frame(error));
        }
        self.closed = true;
        self.queue.clear();
        self.checks_queue.clear();
        self.resend.clear();
        self.expiries.clear();
        self.held = false;
        self.resent.clear();
        self.deadlines.clear();
        self.in_flight = 0;
        self.checks = 0;
        self.transmit.clear();
        self.transmitted = 0;
        let mut pending: Vec<_> = self.requests.drain().collect();
        pending.sort_unstable_by_key(|p| p.origin);
        for pending in pending {
            if !matches!(pending.state, State::Cancelled) {
                self.counters.helper_gone += 1;
                self.events.push_back(failed(pending, Failure::HelperGone));
            }
        }
    }

    /// Completes requests whose deadline passed and releases paced ones that are due.
    /// Harmless when called early or twice.
    pub fn handle_timeout(&mut self, now: Instant) {
        // Refused probes whose own timeout passed without a slot: mtr-packet's answer stands.
        while let Some(&(expires, wire)) = self.expiries.first() {
            if expires > now {
                break;
            }
            self.expiries.pop_first();
            let Some(pending) = self.requests.remove(wire) else {
                continue;
            };
            if let Some(i) = self.resend.iter().position(|&t| t == wire) {
                self.resend.remove(i);
            }
            self.forget_resent(pending.origin);
            self.counters.answered += 1;
            self.events.push_back(Event::Probe {
                token: pending.origin,
                outcome: Ok(ProbeResult::from_kind(ReplyKind::ProbesExhausted)),
            });
        }
        while let Some((deadline, token)) = self.deadlines.first() {
            if deadline > now {
                break;
            }
            self.deadlines.pop_first();
            // An entry left by a request that completed since is dropped.
            if !watched(&self.requests, deadline, token) {
                continue;
            }
            let Some(pending) = self.requests.remove(token) else {
                continue;
            };
            self.settle(token, is_check(&pending), Ended::TimedOut);
            self.forget_resent(pending.origin);
            self.counters.unanswered += 1;
            if !matches!(pending.state, State::Cancelled) {
                self.events.push_back(failed(pending, Failure::Unanswered));
            }
        }
        self.release(now);
    }

    /// Moves queued requests into the transmit buffer while the window, the transmit bound and
    /// the pacer allow.
    fn release(&mut self, now: Instant) {
        // Check-supports first, whatever the window.
        while self.check_has_room() {
            let Some(token) = self.checks_queue.pop_front() else {
                break;
            };
            self.send_queued(now, token);
        }
        while self.window_open() && self.transmit_has_room() {
            let resend = !self.resend.is_empty();
            let Some(&token) = self.resend.front().or(self.queue.front()) else {
                return;
            };
            // A refused probe whose timeout passed is not sent again: `handle_timeout` ends
            // it with mtr-packet's answer.
            let expired = |p: &Pending| p.expires.is_some_and(|expires| expires <= now);
            if resend && self.requests.get(token).is_some_and(expired) {
                self.resend.pop_front();
                continue;
            }
            // The rate is the probes': a check-support sends no packet (and opening a
            // driver waits for several, which a burst of one would refuse with no queue).
            let probe = |p: &Pending| matches!(p.request, Request::SendProbe(_));
            if let Some(pacer) = &mut self.pacer
                && self.requests.get(token).is_some_and(probe)
                && !pacer.try_take(now)
            {
                return;
            }
            if resend {
                self.resend.pop_front();
            } else {
                self.queue.pop_front();
            }
            self.send_queued(now, token);
        }
    }

    /// Writes a request taken off the queue and starts its watchdog.
    fn send_queued(&mut self, now: Instant, token: Token) {
        let Some(pending) = self.requests.get_mut(token) else {
            return;
        };
        let timeout = match &pending.request {
            Request::SendProbe(args) => args.effective_timeout(),
            Request::CheckSupport(_) => {
                self.checks += 1;
                Duration::ZERO
            }
        };
        match pending.expires {
            Some(expires) => {
                self.expiries.remove(&(expires, token));
            }
            None => pending.expires = Some(later(now, timeout)),
        }
        // A grace too large to add means, in effect, no watchdog.
        let deadline = later(now, timeout.saturating_add(self.config.grace));
        pending.deadline = deadline;
        pending.state = State::InFlight;
        pending.request.encode(token, &mut self.transmit);
        self.deadlines.push(deadline, token);
        self.in_flight += 1;
        self.counters.sent += 1;
    }

    /// Whether one more request line fits the transmit bound: a window's worth of lines.
    ///
    /// Without it, a helper that stops reading would let the watchdog free window slots for
    /// requests that were never written, and the buffer would grow without end.
    fn transmit_has_room(&self) -> bool {
        self.transmit_buffered().saturating_add(Request::MAX_LINE) <= self.transmit_bound()
    }

    /// Whether a check-support may go out past the window: fewer than [`Session::MAX_CHECKS`]
    /// are in flight, and its line fits the room each one brings.
    fn check_has_room(&self) -> bool {
        self.checks < Session::MAX_CHECKS
            && self.transmit_buffered().saturating_add(Request::MAX_LINE)
                <= self.transmit_bound().saturating_add(Request::MAX_LINE)
    }

    /// The transmit bound: a line per window slot and per check-support in flight (at most
    /// `window + MAX_CHECKS` lines, whatever completes meanwhile).
    fn transmit_bound(&self) -> usize {
        (self.config.window + self.checks).saturating_mul(Request::MAX_LINE)
    }

    /// Bytes to write to the helper's stdin at `now`, if any (what the pacer allows by then
    /// is released first). Call [`Session::consume`] after writing.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<&[u8]> {
        self.release(now);
        let rest = &self.transmit[self.transmitted..];
        (!rest.is_empty()).then_some(rest)
    }

    /// Marks `n` bytes of [`Session::poll_transmit`] as written at `now`; the room they free
    /// takes queued requests at once.
    ///
    /// # Panics
    ///
    /// If `n` is more than `poll_transmit` offered (a driver bug).
    pub fn consume(&mut self, now: Instant, n: usize) {
        // Checked, not added: a huge `n` must not wrap past the assertion in a release build.
        let end = self.transmitted.checked_add(n);
        let Some(end) = end.filter(|&end| end <= self.transmit.len()) else {
            panic!("consumed more than poll_transmit offered");
        };
        self.transmitted = end;
        if self.transmitted == self.transmit.len() {
            self.transmit.clear();
            self.transmitted = 0;
        } else if self.transmitted > self.transmit.len() / 2 {
            self.transmit.drain(..self.transmitted);
            self.transmitted = 0;
        }
        self.release(now);
    }

    /// When [`Session::handle_timeout`] should next be called, if ever: a deadline or the
    /// pacer's next release. It may be at or before the latest `now` given (a deadline that
    /// just came due); it is never an instant the session already acted on.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let watchdog = [self.deadlines.first(), self.expiries.first().copied()]
            .into_iter()
            .flatten()
            .map(|(deadline, _)| deadline)
            .min();
        // Every input, write included, released what it could at its instant: what is still
        // releasable waits for the pacer only (a full transmit buffer waits for the driver's
        // write, which releases by itself).
        // Checks are not paced.
        let releasable = self.probes_queued() > 0 && self.window_open() && self.transmit_has_room();
        let paced = match &self.pacer {
            Some(pacer) if releasable => pacer.due(),
            _ => None,
        };
        match (watchdog, paced) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Requests sent and not yet completed or expired (cancelled ones included), the
    /// check-supports past the window too.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Requests waiting behind the window, refused probes waiting to be sent again included.
    pub fn queued(&self) -> usize {
        self.waiting() + self.resend.len()
    }

    /// Probes waiting behind the window, refused ones waiting to be sent again included: a
    /// probe sent now goes out after them (check-supports wait for room of their own and
    /// hold no probe back).
    pub fn probes_queued(&self) -> usize {
        self.queue.len() + self.resend.len()
    }

    /// Whether [`Session::send_probe`] at `now` would take a request instead of refusing
    /// it with [`SendError::QueueFull`]: the queue has room, or nothing waits and the
    /// window, the transmit buffer and the pacer let it out at once. A driver with probes
    /// of its own waiting asks this before handing one over.
    pub fn has_room(&self, now: Instant) -> bool {
        if self.closed {
            return false;
        }
        self.waiting() < self.config.max_queue
            || (self.queue.is_empty()
                && self.resend.is_empty()
                && self.window_open()
                && self.transmit_has_room()
                && self.pacer.as_ref().is_none_or(|p| p.ready_at(now) <= now))
    }

    /// When [`Session::has_room`] turns true by the pacer alone: `Some` (after `now`)
    /// exactly when the pacer is all that keeps a probe from being taken at `now`. A
    /// driver holding probes until there is room wakes then: no other deadline of the
    /// session says so, as nothing waits in it.
    pub fn paced_room_at(&self, now: Instant) -> Option<Instant> {
        let pacer = self.pacer.as_ref()?;
        let otherwise = self.queue.is_empty()
            && self.resend.is_empty()
            && self.window_open()
            && self.transmit_has_room();
        if self.closed || self.waiting() < self.config.max_queue || !otherwise {
            return None;
        }
        let at = pacer.ready_at(now);
        (at > now).then_some(at)
    }

    /// Refused probes waiting for their own timeout to end with the refusal, their re-sends
    /// spent ([`SessionConfig::max_retries`]) or their time up before one went out: still
    /// pending, in neither the window nor a queue. A refused probe joins them only while
    /// fewer than `window + max_queue` wait so ([`SessionConfig::max_retries`]); those whose
    /// time ran out before a re-send went out join regardless, until the next
    /// [`Session::handle_timeout`] ends them, so the count may briefly pass that bound. A driver counting its probes out against the window
    /// counts these apart, as they hold no slot.
    pub fn refused_waiting(&self) -> usize {
        // Every refused probe not out again has an expiry; those to be sent again are in
        // `resend` too.
        self.expiries.len().saturating_sub(self.resend.len())
    }

    /// The size of mtr-packet's table of probes, as learned from its `probes-exhausted`
    /// answers: the fewest requests in flight when it refused one. `None` until it has.
    /// The window stays at most this.
    pub fn helper_capacity(&self) -> Option<usize> {
        self.capacity
    }

    /// Whether the helper's output has ended.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Bytes waiting in the transmit buffer.
    pub fn transmit_buffered(&self) -> usize {
        self.transmit.len() - self.transmitted
    }

    /// Bytes held for an unfinished line from the helper.
    pub fn input_buffered(&self) -> usize {
        self.framer.buffered()
    }

    /// What the session has done so far.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// The configuration.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }
}

/// How far on a deadline is put when it is past what an `Instant` holds: 136 years, which
/// no process waits for, and which any platform's `Instant` holds.
pub const FAR_FUTURE: Duration = Duration::from_secs(u32::MAX as u64);

/// `now + by`, or [`FAR_FUTURE`] on when that is past what an `Instant` holds; for a `now`
/// closer than that to the end of what it holds (a virtual clock), the last instant it holds.
pub(crate) fn later(now: Instant, by: Duration) -> Instant {
    now.checked_add(by)
        .or_else(|| now.checked_add(FAR_FUTURE))
        .unwrap_or_else(|| last_instant(now))
}

/// The last instant an `Instant` holds from `now` on: steps halved as they overflow, about
/// a hundred additions, taken only at the end of the clock.
fn last_instant(now: Instant) -> Instant {
    let mut at = now;
    let mut step = FAR_FUTURE;
    while !step.is_zero() {
        match at.checked_add(step) {
            Some(next) => at = next,
            None => step /= 2,
        }
    }
    at
}

/// Whether `deadline` is the watchdog's deadline of request `token`, which is in flight
/// (or cancelled in flight): entries of requests that completed since are not.
/// Whether `pending` is a check-support (which holds no window slot).
fn is_check(pending: &Pending) -> bool {
    matches!(pending.request, Request::CheckSupport(_))
}

fn watched(requests: &Slots<Pending>, deadline: Instant, token: Token) -> bool {
    requests
        .get(token)
        .is_some_and(|p| p.state != State::Queued && p.deadline == deadline)
}

/// The event for a request that ended without an answer.
fn failed(pending: Pending, failure: Failure) -> Event {
    let token = pending.origin;
    match pending.request {
        Request::SendProbe(_) => Event::Probe {
            token,
            outcome: Err(failure),
        },
        Request::CheckSupport(feature) => Event::Support {
            token,
            feature,
            outcome: Err(failure),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `consume` of more than was offered is a driver bug, and panics as documented: a huge
    /// count after a partial write wrapped past the check in a release build, marking
    /// written bytes unwritten (sent twice), and overflowed in a debug one.
    #[test]
    #[should_panic(expected = "consumed more than poll_transmit offered")]
    fn consuming_more_than_offered_panics_as_documented_however_much() {
        let now = Instant::now();
        let mut session = Session::new(SessionConfig::default());
        session
            .send_probe(now, ProbeArgs::new("127.0.0.1".parse().unwrap()))
            .unwrap();
        session
            .send_probe(now, ProbeArgs::new("::1".parse().unwrap()))
            .unwrap();
        session.consume(now, 3);
        session.consume(now, usize::MAX);
    }

    #[test]
    fn an_event_is_no_larger_than_a_probe_result_and_its_token() {
        // Every probe's event is moved into the queue and out of it: a rare variant
        // (a diagnostic's reply) must not make them all larger.
        let probe = std::mem::size_of::<(Token, Result<ProbeResult, Failure>)>();
        assert!(std::mem::size_of::<Event>() <= probe);
        // A request's slot stays within the 128 bytes the compiler still copies inline.
        assert!(std::mem::size_of::<Option<(Token, Pending)>>() <= 128);
    }

    #[test]
    fn tokens_wrap_to_one_and_skip_pending_ones() {
        let now = Instant::now();
        let mut session = Session::new(SessionConfig::default());
        let args = ProbeArgs::new("127.0.0.1".parse().unwrap());
        let first = session.send_probe(now, args.clone()).unwrap();
        assert_eq!(first.get(), 1);
        session.next_token = Token::MAX.get() - 1;
        let tokens: Vec<u32> = (0..3)
            .map(|_| session.send_probe(now, args.clone()).unwrap().get())
            .collect();
        assert_eq!(tokens, [Token::MAX.get() - 1, Token::MAX.get(), 2]);
    }

    #[test]
    fn a_refused_probe_waiting_out_its_timeout_is_counted_apart_from_the_window() {
        let now = Instant::now();
        let config = SessionConfig {
            max_retries: 1,
            ..SessionConfig::default()
        };
        let mut session = Session::new(config);
        let args = ProbeArgs::new("127.0.0.1".parse().unwrap());
        let token = session.send_probe(now, args).unwrap();
        let refuse = |session: &mut Session| {
            let line = written(session, now);
            let wire = line.split(' ').next().unwrap().to_owned();
            session.handle_input(now, format!("{wire} probes-exhausted\n").as_bytes());
        };
        // Refused once: sent again at once, so not waiting.
        refuse(&mut session);
        assert_eq!((session.in_flight(), session.refused_waiting()), (1, 0));
        // Refused again, its re-send spent: it waits for its timeout, out of the window.
        refuse(&mut session);
        assert_eq!(session.in_flight(), 0);
        assert_eq!((session.probes_queued(), session.refused_waiting()), (0, 1));
        session.handle_timeout(now + ProbeArgs::DEFAULT_TIMEOUT);
        assert_eq!(session.refused_waiting(), 0);
        assert!(matches!(
            session.poll_event(),
            Some(Event::Probe { token: t, outcome: Ok(result) })
                if t == token && result.result == ReplyKind::ProbesExhausted
        ));
    }

    /// Writes what the session transmits at `now`, as a helper reading it all would.
    fn written(session: &mut Session, now: Instant) -> String {
        let Some(bytes) = session.poll_transmit(now) else {
            return String::new();
        };
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        session.consume(now, text.len());
        text
    }

    #[test]
    fn a_check_support_goes_past_a_full_window_and_leaves_its_slots_to_probes() {
        // mtr-packet answers a check-support at once and keeps no probe for it: a check
        // waits neither for the probes that fill the window nor for room in the queue, and
        // a check out takes no slot a probe could have.
        let now = Instant::now();
        let args = ProbeArgs::new("127.0.0.1".parse().unwrap());
        let mut session = Session::new(SessionConfig {
            window: 1,
            max_queue: 0,
            ..SessionConfig::default()
        });
        let probe = session.send_probe(now, args.clone()).unwrap();
        let check = session
            .check_support(now, Feature::Ip6)
            .expect("a check is taken past a full window");
        let text = written(&mut session, now);
        assert!(
            text.contains(&format!("{check} check-support feature ip-6\n")),
            "{text:?}"
        );
        session.handle_input(
            now,
            format!("{probe} reply ip-4 127.0.0.1 round-trip-time 9\n").as_bytes(),
        );
        // The check is still out; the window's one slot is free for the next probe.
        let next = session
            .send_probe(now, args.clone())
            .expect("a check out holds no probe's slot");
        let text = written(&mut session, now);
        assert!(text.starts_with(&format!("{next} send-probe")), "{text:?}");
        assert!(matches!(
            session.send_probe(now, args),
            Err(SendError::QueueFull(0))
        ));
        // A probes-exhausted with the check and one probe out: the table holds one probe.
        session.handle_input(now, format!("{next} probes-exhausted\n").as_bytes());
        assert_eq!(
            session.helper_capacity(),
            None,
            "nothing else of the table out"
        );
    }

    #[test]
    fn a_check_waiting_for_room_of_its_own_holds_no_probe_back() {
        // Past `MAX_CHECKS` checks out, the next waits for one of them to be answered;
        // a probe behind it has a free window slot and goes out at once.
        let now = Instant::now();
        let mut session = Session::new(SessionConfig {
            window: 2,
            max_queue: 4,
            ..SessionConfig::default()
        });
        let checks: Vec<_> = (0..=Session::MAX_CHECKS)
            .map(|_| session.check_support(now, Feature::Version).unwrap())
            .collect();
        let probe = session
            .send_probe(now, ProbeArgs::new("127.0.0.1".parse().unwrap()))
            .unwrap();
        let text = written(&mut session, now);
        assert_eq!(text.lines().count(), Session::MAX_CHECKS + 1, "{text:?}");
        assert!(text.contains(&format!("{probe} send-probe")), "{text:?}");
        assert_eq!(session.queued(), 1);
        // One check answered: the last goes out.
        session.handle_input(
            now,
            format!("{} feature-support support 0.95\n", checks[0]).as_bytes(),
        );
        let last = checks[Session::MAX_CHECKS];
        let text = written(&mut session, now);
        assert_eq!(text, format!("{last} check-support feature version\n"));
        assert_eq!(session.queued(), 0);
    }

    #[test]
    fn a_driver_s_own_check_leaves_a_window_of_one_to_its_caller() {
        // A driver asks a started helper its version first. With a window of 1 and no queue,
        // its caller's check and probe were refused with QueueFull until it was answered.
        let now = Instant::now();
        let mut session = Session::new(SessionConfig {
            window: 1,
            max_queue: 0,
            ..SessionConfig::default()
        });
        let version = session.check_support(now, Feature::Version).unwrap();
        let check = session.check_support(now, Feature::Sctp);
        assert!(check.is_ok(), "{check:?}");
        let probe = session.send_probe(now, ProbeArgs::new("127.0.0.1".parse().unwrap()));
        assert!(probe.is_ok(), "{probe:?}");
        let text = written(&mut session, now);
        assert_eq!(text.lines().count(), 3, "{text:?}");
        session.handle_input(
            now,
            format!("{version} feature-support support 0.95\n").as_bytes(),
        );
        assert!(matches!(
            session.poll_event(),
            Some(Event::Support { token, .. }) if token == version
        ));
        assert_eq!(session.in_flight(), 2);
    }

    #[test]
    fn a_check_support_is_not_paced() {
        // The rate is the probes' (a check-support sends no packet): with the burst spent
        // and no queue, a check-support is still taken and written at once.
        let now = Instant::now();
        let mut session = Session::new(SessionConfig {
            max_queue: 0,
            rate: Some(crate::Rate {
                per_second: 1,
                burst: 1,
            }),
            ..SessionConfig::default()
        });
        let args = ProbeArgs::new("127.0.0.1".parse().unwrap());
        session.send_probe(now, args.clone()).unwrap();
        assert!(matches!(
            session.send_probe(now, args),
            Err(SendError::QueueFull(0))
        ));
        let token = session.check_support(now, Feature::Version).unwrap();
        let written = String::from_utf8(session.poll_transmit(now).unwrap().to_vec()).unwrap();
        assert!(
            written.ends_with(&format!("{token} check-support feature version\n")),
            "{written:?}"
        );
    }

    #[test]
    fn paced_room_at_is_when_the_pacer_alone_lets_a_probe_in() {
        let now = Instant::now();
        let args = ProbeArgs::new("127.0.0.1".parse().unwrap());
        let config = |window| SessionConfig {
            window,
            max_queue: 0,
            rate: Some(crate::Rate {
                per_second: 100,
                burst: 1,
            }),
            ..SessionConfig::default()
        };
        let mut session = Session::new(config(2));
        assert_eq!(session.paced_room_at(now), None);
        session.send_probe(now, args.clone()).unwrap();
        let at = session
            .paced_room_at(now)
            .expect("the pacer holds the next one");
        assert!(!session.has_room(now) && at > now && at <= now + Duration::from_millis(10));
        assert!(session.has_room(at) && session.paced_room_at(at).is_none());
        session.send_probe(at, args.clone()).unwrap();
        // The window is full: the pacer is not all that holds a probe back.
        let later = at + Duration::from_millis(5);
        assert!(!session.has_room(later) && session.paced_room_at(later).is_none());
        // Without a rate, never.
        let mut session = Session::new(SessionConfig {
            max_queue: 0,
            ..SessionConfig::default()
        });
        session.send_probe(now, args).unwrap();
        assert_eq!(session.paced_room_at(now), None);
    }

    #[test]
    fn has_room_says_whether_send_probe_takes_a_request() {
        let now = Instant::now();
        let args = ProbeArgs::new("127.0.0.1".parse().unwrap());
        let config = |max_queue| SessionConfig {
            window: 1,
            max_queue,
            ..SessionConfig::default()
        };
        let mut session = Session::new(config(0));
        assert!(session.has_room(now));
        session.send_probe(now, args.clone()).unwrap();
        // The window is full and nothing may wait.
        assert!(!session.has_room(now));
        assert!(matches!(
            session.send_probe(now, args.clone()),
            Err(SendError::QueueFull(0))
        ));
        let mut session = Session::new(config(1));
        session.send_probe(now, args.clone()).unwrap();
        assert!(session.has_room(now));
        session.send_probe(now, args.clone()).unwrap();
        assert!(!session.has_room(now));
        session.handle_eof(now);
        assert!(!session.has_room(now));
    }

    #[test]
    fn a_paced_session_with_a_full_transmit_buffer_asks_for_no_past_wake_up() {
        // The helper reads nothing: probes expire, freeing window slots, while their lines
        // stay in the transmit buffer until it is full. The pacer would release more, but
        // nothing can be released until the driver writes, so there is no reason to wake.
        let config = SessionConfig {
            window: 4,
            rate: Some(crate::Rate {
                per_second: 1000,
                burst: 1,
            }),
            grace: Duration::ZERO,
            ..SessionConfig::default()
        };
        let mut session = Session::new(config);
        let mut now = Instant::now();
        let args = ProbeArgs::new("127.0.0.1".parse().unwrap());
        for _ in 0..200 {
            session.send_probe(now, args.clone()).unwrap();
        }
        for _ in 0..100 {
            now += Duration::from_secs(4);
            session.handle_timeout(now);
        }
        assert!(!session.transmit_has_room(), "the buffer filled up");
        assert!(session.in_flight() < 4 && session.queued() > 0);
        let wake = session.poll_timeout();
        assert!(
            wake.is_none_or(|at| at > now),
            "{wake:?} is not after {now:?}"
        );
    }
}
