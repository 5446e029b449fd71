//! One mtr-packet process as the driver sees it: its pipes, its sans-IO session, the callers
//! waiting on it, the watchdogs that decide it is broken, and how it ends.
//!
//! Nothing here blocks: pipes are non-blocking, reads stop after a budget, and the process
//! is reaped with `try_wait` on a timer after its whole process group was killed.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command as Process, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use mio::unix::pipe;
use mio::{Interest, Registry, Token as PollToken};
use mtrproto::{
    Diagnostic, Event, Failure, Feature, ProbeArgs, ProbeResult, SendError, Session, SessionConfig,
    TokenSlots,
};

use crate::completion::Completion;
use crate::driver::{SHARED, pinned_slot};
use crate::error::{Error, ProcessError};
use crate::job::ProbeKey;
use crate::status::{DIAGNOSTIC_TEXT, HelperStatus, RECENT_DIAGNOSTICS, cut};
use crate::sys;

/// How long a helper whose output ended may take to exit by itself before it is killed: its
/// exit status then tells the callers why.
const EXIT_WAIT: Duration = Duration::from_millis(20);

/// How often a helper with requests pending is checked for having exited while something it
/// started keeps its pipes open: at most this far apart.
const LIVENESS_CHECK: Duration = Duration::from_millis(100);

/// How early a liveness check is due before [`LIVENESS_CHECK`] passes: it is done at the
/// first of the driver's wake-ups from then on, and the driver wakes for it only at the
/// end. A busy driver (a campaign's tick) then checks at a wake-up it makes anyway,
/// instead of making one more every [`LIVENESS_CHECK`] per helper.
const LIVENESS_SLACK: Duration = Duration::from_millis(20);

/// The first interval between two `try_wait`s of an ended helper; it doubles up to
/// [`LIVENESS_CHECK`].
const REAP_STEP: Duration = Duration::from_millis(1);

/// How long an ended helper is waited for after SIGKILL before it is left to the system (a
/// process in uninterruptible sleep cannot be reaped any sooner).
pub(crate) const REAP_GIVE_UP: Duration = Duration::from_secs(2);

/// Bytes read from one helper per wake-up: a helper flooding its output cannot starve the
/// other helpers, the callers' commands or the timers.
const READ_BUDGET: usize = 256 * 1024;

/// A probe in the backlog: its request, its caller, and when it ends unsent if it is still
/// held back by the gate then ([`Helper::expire_gated`]).
type Backlogged = (ProbeArgs, Caller, Instant);

/// When a probe sent at `now` and still unsent gives up: its own timeout and the grace
/// later, as the watchdog would end it had it gone out at once.
pub(crate) fn give_up_at(now: Instant, args: &ProbeArgs, grace: Duration) -> Instant {
    let wait = args.effective_timeout().saturating_add(grace);
    now.checked_add(wait).unwrap_or(now + mtrproto::FAR_FUTURE)
}

/// A campaign probe's answer, for the driver to hand to its campaign.
pub(crate) type Answer = (ProbeKey, Result<ProbeResult, Error>);

/// How many tokens of late or second answers a helper remembers ([`Helper::strays`]).
const STRAYS_KEPT: usize = 64;

/// How long a helper's output rests after a read while nothing waits for room in its
/// window: the answers of that time are then read in one wake-up instead of one each. The
/// helper timestamps every answer, so reading it later changes no figure.
const READ_REST: Duration = Duration::from_millis(10);

/// A rest while a campaign runs: at least one period of the grid its wake-ups fall on with
/// the budget used up, so that its end, due after the grid's next point, makes no wake-up
/// of its own (its wake-ups read the output anyway).
const CAMPAIGN_REST: Duration = crate::job::FULL_TICK;

/// Who gets a probe's outcome: a caller's callback, or a campaign the driver runs (its
/// answers are collected for the driver, no allocation or call per probe).
pub(crate) enum Caller {
    Callback(Completion),
    Campaign(ProbeKey),
}

/// Why a check-support has no answer: the session's failure, or no room for it in the
/// helper's queue (`SessionConfig::max_queue`; the helper is fine).
#[derive(Debug)]
pub(crate) enum Unchecked {
    Failed(Failure),
    QueueFull(usize),
    /// The helper ended with the check in flight: the error its probes get too (how it
    /// exited, or why it was ended), which the caller's thread could not tell yet.
    Gone(Error),
}

impl From<Failure> for Unchecked {
    fn from(failure: Failure) -> Unchecked {
        Unchecked::Failed(failure)
    }
}

/// The answer to a check-support, as its caller gets it.
pub(crate) type SupportAnswer = Result<String, Unchecked>;

/// Who gets the answer to a request.
pub(crate) enum Waiter {
    /// A probe, with its pin ([`pinned_slot`]) if it has one.
    Probe(Caller, Option<usize>),
    Support(Sender<SupportAnswer>),
    /// The driver's own `check-support feature version` to a restarted helper
    /// ([`Helper::ask_version`]).
    Version,
}

/// Why a helper stopped being used: what its callers are told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Why {
    /// Its output ended.
    OutputEnded,
    /// The process exited while something it started kept its pipes open.
    Exited,
    /// It read nothing for the grace while bytes waited in its stdin, or answered nothing
    /// while a request went unanswered past its timeout and the grace.
    Stalled,
    /// For the grace, it wrote only lines that answer nothing.
    Junk,
    /// The session closed and the close grace ran out.
    Closing,
    /// Talking to it failed.
    Failed,
}

/// A helper process and everything the driver tracks about it.
pub(crate) struct Helper {
    program: String,
    stdin_token: PollToken,
    child: Child,
    pid: u32,
    stdin: Option<pipe::Sender>,
    stdin_registered: bool,
    /// A write to its stdin failed (it closed it): it takes no more probes
    /// ([`Helper::takes_probes`]), and ends once it holds none.
    stdin_failed: bool,
    stdout: Option<pipe::Receiver>,
    stdout_token: PollToken,
    /// Its stdout may hold more bytes: it was readable and not read to `WouldBlock`.
    readable: bool,
    /// Its stdout is out of the poll until then ([`READ_REST`]).
    resting: Option<Instant>,
    /// Whether a campaign runs: its rests are then [`CAMPAIGN_REST`] long.
    campaign_rest: bool,
    /// The last read got bytes: the next turn rests its stdout.
    got_output: bool,
    session: Session,
    /// Who waits for each request, by the session's token (indexed, no hashing per probe).
    waiting: TokenSlots<Waiter>,
    /// Campaign probes' outcomes not yet taken by the driver ([`Helper::take_answers`]).
    answers: Vec<Answer>,
    /// Pinned probes ([`pinned_slot`]) queued or in flight here, counted per pin: while
    /// any are, the probes of that pin come here ([`Helper::holds`]).
    pins: HashMap<usize, u32>,
    /// Probes queued or in flight here whose answers any helper may take ([`SHARED`]).
    shared: u32,
    /// Probes wait in the backlog, none enters the session: other helpers still have
    /// probes that could take the answers of its [`SHARED`] ones (set by the driver).
    gated: bool,
    /// UDP probes are [`SHARED`] too (the release matches their answers by sequence alone).
    udp_by_sequence: bool,
    /// The longest timeout of a pinned probe sent here since it last held none (queued or
    /// in flight): how long after its end the answers of its pinned probes in flight may
    /// still come. A bound, kept in O(1) per probe: the exact longest of those in flight
    /// would need each one's timeout kept beside it.
    longest_pinned: Duration,
    /// Set when it ends with probes in flight: their pins, and until when their answers
    /// may come ([`Helper::take_left_behind`]).
    left_behind: Option<(Vec<usize>, Instant)>,
    /// Probes waiting for the session's window, oldest first: a probe enters the session
    /// (its token map, its queue) only when the window can take it. A channel is a FIFO
    /// that grows by fixed blocks, so a waiting probe costs its own bytes and no more
    /// (a map or a deque doubling its room would double that).
    backlog: (Sender<Backlogged>, Receiver<Backlogged>),
    /// The earliest time a backlogged probe ends unsent while gated (or earlier: a probe
    /// that went since leaves it behind, and the next look recomputes it).
    backlog_until: Option<Instant>,
    /// Probes waiting at most, here and in the session (`SessionConfig::max_queue`).
    max_queue: usize,
    grace: Duration,
    /// Why it is being ended, and when it is killed if it has not exited by then.
    ending: Option<(Why, Instant)>,
    /// Its requests were completed: it takes no more.
    finished: Option<Instant>,
    status: Option<ExitStatus>,
    /// Reaped, or given up on.
    done: bool,
    /// The next `try_wait`, or when the liveness check is due ([`LIVENESS_SLACK`]).
    next_check: Option<Instant>,
    reap_step: Duration,
    /// Bytes written to its stdin, and how many of them it had read at the last look.
    written: u64,
    read_seen: u64,
    /// While bytes it has not read wait in its stdin: the last time it read some (or they
    /// began to wait).
    stdin_progress: Option<Instant>,
    /// When the pipe was last asked for its unread bytes ([`Helper::look_at_stdin`]).
    stdin_looked: Instant,
    /// Since when it has written only lines that answer nothing.
    junk_since: Option<Instant>,
    /// Requests it answered: a helper that never answered is restarted only after a pause.
    answered: u64,
    /// It was given a caller's request (a probe or a check), not only the driver's own
    /// version check: one that ended before answering anything and served no caller is
    /// started again only when a request comes (`Driver::restart`).
    served: bool,
    /// When it last answered anything (late and second answers included, once per token).
    last_answer: Option<Instant>,
    /// The tokens of the last few late or second answers ([`STRAYS_KEPT`]): another line
    /// for one of them is a helper repeating itself, not a sign of life.
    strays: VecDeque<mtrproto::Token>,
    diagnostics: u64,
    recent: VecDeque<String>,
    /// Its answer to the driver's `check-support feature version`, if asked and answered.
    version: Option<String>,
    /// Something [`Helper::status`] reports changed.
    changed: bool,
}

impl Helper {
    /// Starts `command` in a process group of its own, with piped, non-blocking stdin and
    /// stdout, and registers its stdout with `registry` under the poll tokens of slot `slot`.
    pub(crate) fn spawn(
        command: &[String],
        config: SessionConfig,
        registry: &Registry,
        slot: usize,
    ) -> Result<Helper, ProcessError> {
        let program = &command[0];
        let mut child = Process::new(program)
            .args(&command[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            // Its own group: killing the group also kills what it started (a wrapper's child,
            // a grandchild holding its pipes).
            .process_group(0)
            .spawn()
            .map_err(|source| match source.kind() {
                io::ErrorKind::NotFound => ProcessError::NotFound {
                    program: program.clone(),
                },
                _ => ProcessError::Spawn {
                    program: program.clone(),
                    source,
                },
            })?;
        let pid = child.id();
        let abandon = |mut child: Child, e: io::Error| {
            let _ = sys::kill_group(pid);
            let _ = child.kill();
            // Reaped on a thread of its own: this may run on the driver thread, which waits
            // only in `poll`. (Should no thread start, it stays a zombie until we exit.)
            let _ = std::thread::Builder::new()
                .name("mtr-packet reap".into())
                .spawn(move || child.wait());
            ProcessError::Io(e)
        };
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(abandon(child, io::Error::other("child has no pipes")));
        };
        let stdin = pipe::Sender::from(stdin);
        let mut stdout = pipe::Receiver::from(stdout);
        let ready = stdin
            .set_nonblocking(true)
            .and_then(|()| stdout.set_nonblocking(true))
            .and_then(|()| registry.register(&mut stdout, PollToken(2 * slot), Interest::READABLE));
        if let Err(e) = ready {
            return Err(abandon(child, e));
        }
        Ok(Helper {
            program: program.clone(),
            stdin_token: PollToken(2 * slot + 1),
            child,
            pid,
            stdin: Some(stdin),
            stdin_registered: false,
            stdin_failed: false,
            stdout: Some(stdout),
            stdout_token: PollToken(2 * slot),
            readable: false,
            resting: None,
            campaign_rest: false,
            got_output: false,
            grace: config.grace,
            max_queue: config.max_queue,
            session: Session::new(config),
            waiting: TokenSlots::default(),
            answers: Vec::new(),
            pins: HashMap::new(),
            shared: 0,
            gated: false,
            udp_by_sequence: false,
            longest_pinned: Duration::ZERO,
            left_behind: None,
            backlog: crossbeam_channel::unbounded(),
            backlog_until: None,
            ending: None,
            finished: None,
            status: None,
            done: false,
            next_check: None,
            reap_step: REAP_STEP,
            written: 0,
            read_seen: 0,
            stdin_progress: None,
            stdin_looked: Instant::now(),
            junk_since: None,
            answered: 0,
            served: false,
            last_answer: None,
            strays: VecDeque::new(),
            diagnostics: 0,
            recent: VecDeque::new(),
            version: None,
            changed: true,
        })
    }

    /// Kills and reaps it at once, on the caller's thread: for opening, when a later helper
    /// could not be started. Just killed, it is reaped quickly.
    pub(crate) fn kill_and_wait(mut self) {
        let _ = sys::kill_group(self.pid);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The slot whose stdout a poll token stands for, if it is one.
    pub(crate) fn slot_of_stdout(token: PollToken) -> Option<usize> {
        token.0.is_multiple_of(2).then_some(token.0 / 2)
    }

    /// Its process id.
    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// Requests in flight or queued: what "least loaded" compares.
    pub(crate) fn load(&self) -> usize {
        self.session.in_flight() + self.waiting_probes()
    }

    /// Probes it can hold out now: its window, under the helper's table once a
    /// `probes-exhausted` taught its size ([`Session::helper_capacity`]), and the refused
    /// probes waiting for their timeout, which hold no slot ([`Session::refused_waiting`]).
    pub(crate) fn room(&self) -> usize {
        let window = self.session.config().window;
        let window = self
            .session
            .helper_capacity()
            .map_or(window, |table| table.min(window));
        window.saturating_add(self.session.refused_waiting())
    }

    /// Probes waiting for the window, in the session and in the backlog.
    fn waiting_probes(&self) -> usize {
        self.session.queued() + self.backlog.1.len()
    }

    /// Whether probes pinned to `pin` are queued or in flight here.
    pub(crate) fn holds(&self, pin: usize) -> bool {
        if pin == SHARED {
            return self.shared > 0;
        }
        self.pins.contains_key(&pin)
    }

    /// Holds probes back in the backlog (`true`) or lets them into the session again.
    pub(crate) fn set_gated(&mut self, gated: bool) {
        self.gated = gated;
    }

    /// Takes UDP probes for [`SHARED`] ones ([`pinned_slot`]).
    pub(crate) fn set_udp_by_sequence(&mut self, yes: bool) {
        self.udp_by_sequence = yes;
    }

    /// A probe's pin ([`pinned_slot`]).
    fn pin_of(&self, args: &ProbeArgs) -> Option<usize> {
        pinned_slot(args, self.udp_by_sequence)
    }

    /// Whether probes are held back in the backlog.
    pub(crate) fn is_gated(&self) -> bool {
        self.gated
    }

    /// Whether it takes requests.
    pub(crate) fn accepts(&self) -> bool {
        self.ending.is_none() && !self.session.is_closed()
    }

    /// Whether it takes new probes and checks: it accepts, and its stdin still takes writes.
    pub(crate) fn takes_probes(&self) -> bool {
        self.accepts() && !self.stdin_failed
    }

    /// Whether it has ended, its requests are completed and it was reaped (or given up on).
    pub(crate) fn is_done(&self) -> bool {
        self.done
    }

    /// Whether it ever answered a request.
    pub(crate) fn has_answered(&self) -> bool {
        self.answered > 0
    }

    /// Whether it was given a caller's request ([`Helper::served`]).
    pub(crate) fn has_served(&self) -> bool {
        self.served
    }

    /// How it exited, once reaped.
    pub(crate) fn exit_status(&self) -> Option<ExitStatus> {
        self.status
    }

    /// Its stdout was reported readable.
    pub(crate) fn set_readable(&mut self) {
        self.readable = self.stdout.is_some();
    }

    /// Whether its stdout may hold more bytes right now.
    pub(crate) fn is_readable(&self) -> bool {
        self.readable
    }

    /// Whether what [`Helper::take_status`] reports changed since it was last taken.
    pub(crate) fn status_changed(&self) -> bool {
        self.changed
    }

    /// What [`Session::helpers`](crate::Session::helpers) reports, if it changed since the
    /// last call.
    pub(crate) fn take_status(&mut self) -> Option<HelperStatus> {
        if !std::mem::take(&mut self.changed) {
            return None;
        }
        Some(HelperStatus {
            pid: self.pid,
            running: self.accepts(),
            last_exit: self.status,
            restarts: 0,
            diagnostics: self.diagnostics,
            recent_diagnostics: self.recent.clone(),
            version: self.version.clone(),
        })
    }

    /// Queues a probe, or completes it at once with the error of a helper that takes none.
    /// `held_until`: the driver held it while its pin was quiet, after it passed the caller's
    /// bounds: it waits here whatever `max_queue`, as a campaign's does, and, while gated,
    /// until the time it gives up at, set when it was first held.
    pub(crate) fn probe(
        &mut self,
        now: Instant,
        args: ProbeArgs,
        done: Caller,
        held_until: Option<Instant>,
    ) {
        let accepted = held_until.is_some();
        self.served = true;
        if !self.takes_probes() {
            let gone = self.gone();
            return self.finish(done, None, Err(gone));
        }
        let pin = self.pin_of(&args);
        match pin {
            Some(SHARED) => self.shared += 1,
            Some(pin) => *self.pins.entry(pin).or_default() += 1,
            None => {}
        }
        // A campaign's probes wait here whatever `max_queue`: its in-flight budget bounds
        // them, and a pinned one may find its helper full while others have room (it must
        // not go elsewhere), so refusing it would lose a probe that only had to wait. So
        // do a caller's the driver held (at most `max_queue` per helper): `QueueFull` is
        // for refusing at the door, never after acceptance.
        let uncapped = accepted || matches!(done, Caller::Campaign(_));
        if !self.gated
            && self.backlog.1.is_empty()
            && self.session.probes_queued() == 0
            && (!uncapped || self.session.has_room(now))
        {
            return self.submit(now, args, done);
        }
        let waiting = self.waiting_probes();
        if !uncapped && waiting >= self.max_queue {
            return self.finish(done, pin, Err(Error::QueueFull(waiting)));
        }
        let until = held_until.unwrap_or_else(|| give_up_at(now, &args, self.grace));
        self.backlog_until = Some(self.backlog_until.map_or(until, |at| at.min(until)));
        // The backlog's receiver lives as long as its sender: this cannot fail.
        let _ = self.backlog.0.send((args, done, until));
    }

    /// While gated, ends unsent the backlogged probes whose own timeout and the grace have
    /// passed since they came (with `Unresponsive`, as the watchdog would have ended them
    /// had they gone out then): the gate lasts until other helpers' probes are done, which
    /// may take their far longer timeouts. O(backlog), once per such time.
    fn expire_gated(&mut self, now: Instant) {
        if !self.gated || self.backlog_until.is_none_or(|at| at > now) {
            return;
        }
        self.backlog_until = None;
        let waiting: Vec<Backlogged> = self.backlog.1.try_iter().collect();
        for (args, done, until) in waiting {
            if until <= now {
                let pin = self.pin_of(&args);
                self.finish(done, pin, Err(ProcessError::Unresponsive.into()));
            } else {
                self.backlog_until = Some(self.backlog_until.map_or(until, |at| at.min(until)));
                // The backlog's receiver lives as long as its sender: this cannot fail.
                let _ = self.backlog.0.send((args, done, until));
            }
        }
    }

    /// Hands a probe to the session.
    fn submit(&mut self, now: Instant, args: ProbeArgs, done: Caller) {
        let pin = self.pin_of(&args);
        if pin.is_some() {
            self.longest_pinned = self.longest_pinned.max(args.effective_timeout());
        }
        match self.session.send_probe(now, args) {
            Ok(token) => {
                self.waiting.insert(token, Waiter::Probe(done, pin));
                self.next_check
                    .get_or_insert(now + LIVENESS_CHECK - LIVENESS_SLACK);
            }
            Err(SendError::QueueFull(n)) => self.finish(done, pin, Err(Error::QueueFull(n))),
            Err(_) => {
                let gone = self.gone();
                self.finish(done, pin, Err(gone));
            }
        }
    }

    /// Gives a probe's outcome to its caller: calls the callback, or keeps a campaign's
    /// answer for the driver; a pinned probe counted in [`Helper::holds`] no longer is.
    fn finish(&mut self, done: Caller, pin: Option<usize>, result: Result<ProbeResult, Error>) {
        if pin == Some(SHARED) {
            self.shared = self.shared.saturating_sub(1);
        } else if let Some(pin) = pin
            && let Some(count) = self.pins.get_mut(&pin)
        {
            *count -= 1;
            if *count == 0 {
                self.pins.remove(&pin);
            }
        }
        // None left: an answered long-timeout probe no longer lengthens a later end's wait.
        if pin.is_some() && self.shared == 0 && self.pins.is_empty() {
            self.longest_pinned = Duration::ZERO;
        }
        match done {
            Caller::Callback(done) => done.complete(result),
            Caller::Campaign(key) => self.answers.push((key, result)),
        }
    }

    /// The campaign answers collected so far.
    pub(crate) fn answers(&self) -> &[Answer] {
        &self.answers
    }

    /// The campaign answers collected so far, taken out.
    pub(crate) fn take_answers(&mut self) -> std::vec::Drain<'_, Answer> {
        self.answers.drain(..)
    }

    /// Whether campaign answers wait for the driver.
    pub(crate) fn has_answers(&self) -> bool {
        !self.answers.is_empty()
    }

    /// Drops campaign `job`'s probes waiting in the backlog (the campaign ended): O(backlog),
    /// once per campaign. Those already in the session's queue or in flight end as usual,
    /// their answers dropped by the driver.
    pub(crate) fn drop_campaign(&mut self, job: u32) {
        if self.backlog.1.is_empty() {
            return;
        }
        let waiting: Vec<Backlogged> = self.backlog.1.try_iter().collect();
        for (args, done, until) in waiting {
            match done {
                Caller::Campaign(key) if key.job == job => {
                    let pin = self.pin_of(&args);
                    let ended = ProcessError::Exited { status: None };
                    self.finish(Caller::Campaign(key), pin, Err(ended.into()));
                }
                // The backlog's receiver lives as long as its sender: this cannot fail.
                done => {
                    let _ = self.backlog.0.send((args, done, until));
                }
            }
        }
    }

    /// Moves probes from the backlog to the session while its window takes them at once
    /// (and its stdin is open to write them), one at a time into its queue (none with a
    /// `max_queue` of 0: campaign probes wait here for the window then).
    fn feed(&mut self, now: Instant) {
        while self.ending.is_none()
            && !self.gated
            && self.stdin.is_some()
            && self.session.probes_queued() == 0
            && self.session.has_room(now)
        {
            let Ok((args, done, _)) = self.backlog.1.try_recv() else {
                return;
            };
            self.submit(now, args, done);
        }
    }

    /// Asks its version (`check-support feature version`) as its first request, for
    /// [`HelperStatus::version`]: the driver's own request, answered as any other (bounded
    /// by the request timeout), never waited for. The session's release stays the one it
    /// looked up at open (see [`Session`](crate::Session)); this only shows a program that
    /// changed.
    pub(crate) fn ask_version(&mut self, now: Instant) {
        if let Ok(token) = self.session.check_support(now, Feature::Version) {
            self.waiting.insert(token, Waiter::Version);
        }
    }

    pub(crate) fn support(&mut self, now: Instant, feature: Feature, done: Sender<SupportAnswer>) {
        self.served = true;
        if !self.takes_probes() {
            let _ = done.send(Err(Failure::HelperGone.into()));
            return;
        }
        match self.session.check_support(now, feature) {
            Ok(token) => {
                self.waiting.insert(token, Waiter::Support(done));
            }
            Err(SendError::QueueFull(n)) => {
                let _ = done.send(Err(Unchecked::QueueFull(n)));
            }
            Err(_) => {
                let _ = done.send(Err(Failure::HelperGone.into()));
            }
        }
    }

    /// One turn of the driver loop: timers and watchdogs, writing, completing requests, and
    /// the steps of ending. `closing`: close stdin once everything is written.
    pub(crate) fn drive(&mut self, now: Instant, registry: &Registry, closing: bool) {
        if self.ending.is_none() {
            self.wake_stdout(now, registry);
            self.session.handle_timeout(now);
            self.watch(now);
            self.expire_gated(now);
        }
        if self.ending.is_none() {
            self.flush(now, registry);
            if closing && self.session.transmit_buffered() == 0 {
                self.close_stdin(registry);
            }
        }
        self.dispatch(now);
        if std::mem::take(&mut self.got_output) && !self.readable {
            self.rest_stdout(now, registry);
        }
        self.progress_end(now, registry);
    }

    /// After a read that got output, while requests are still in flight and no probe waits
    /// for room (answers then only complete callers, they free no room anyone waits for):
    /// its stdout leaves the poll and stays out while the driver's wake-ups keep finding
    /// output, until [`READ_REST`] passes without any. With nothing in flight, no rest: a
    /// caller probing one at a time would wait for it at every probe.
    fn rest_stdout(&mut self, now: Instant, registry: &Registry) {
        if self.waiting_probes() > 0 || self.session.in_flight() == 0 || self.ending.is_some() {
            return;
        }
        let until = now
            + if self.campaign_rest {
                CAMPAIGN_REST
            } else {
                READ_REST
            };
        if self.resting.is_some() {
            self.resting = Some(until);
            return;
        }
        let Some(stdout) = &mut self.stdout else {
            return;
        };
        match registry.deregister(stdout) {
            Ok(()) => self.resting = Some(until),
            Err(_) => self.end(now, Why::Failed),
        }
    }

    /// Ends a rest once it is over, probes wait for room or nothing is in flight (the next
    /// request's answer is then read as it comes): back in the poll, and read at once
    /// (output may have come meanwhile). A rest whose last wake-up found output goes on
    /// ([`Helper::rest_stdout`] extends it in this turn): the output did not pause, and back
    /// in the poll its next line would wake the driver once more only to rest again.
    fn wake_stdout(&mut self, now: Instant, registry: &Registry) {
        match self.resting {
            Some(until)
                if (until <= now && !self.got_output)
                    || self.waiting_probes() > 0
                    || self.session.in_flight() == 0 =>
            {
                self.resting = None
            }
            _ => return,
        }
        let Some(stdout) = &mut self.stdout else {
            return;
        };
        match registry.register(stdout, self.stdout_token, Interest::READABLE) {
            Ok(()) => self.readable = true,
            Err(_) => self.end(now, Why::Failed),
        }
    }

    /// Whether a campaign runs (its wake-ups read a resting stdout often): rests then last
    /// [`CAMPAIGN_REST`]. Once none runs, a rest begun meanwhile ends [`READ_REST`] after
    /// its last output (or at once), as nothing else may wake the driver before its end.
    pub(crate) fn set_campaign_rest(&mut self, campaign: bool) {
        if self.campaign_rest
            && !campaign
            && let Some(until) = &mut self.resting
        {
            *until = until
                .checked_sub(CAMPAIGN_REST.saturating_sub(READ_REST))
                .unwrap_or(*until);
        }
        self.campaign_rest = campaign;
    }

    /// Whether its stdout rests out of the poll: its output then wakes no one.
    pub(crate) fn is_resting(&self) -> bool {
        self.resting.is_some()
    }

    /// After the driver's poll returned, whatever woke it: a resting stdout is read then.
    pub(crate) fn after_poll(&mut self) {
        if self.resting.is_some() {
            self.readable = self.stdout.is_some();
        }
    }

    /// The stdin watchdog and the liveness check.
    fn watch(&mut self, now: Instant) {
        self.look_at_stdin(now);
        if let Some(since) = self.stdin_progress
            && since.checked_add(self.grace).is_some_and(|at| at <= now)
        {
            return self.end(now, Why::Stalled);
        }
        if self.stdin_failed && self.load() == 0 {
            // It can be sent nothing more: its slot starts another.
            return self.end(now, Why::Failed);
        }
        match self.next_check {
            Some(at) if at <= now && self.load() > 0 => {
                if sys::has_exited(self.pid).unwrap_or(true) {
                    return self.end(now, Why::Exited);
                }
                self.next_check = Some(now + LIVENESS_CHECK - LIVENESS_SLACK);
            }
            // Idle: no timer, so that an idle session sleeps.
            Some(_) if self.load() == 0 => self.next_check = None,
            _ => {}
        }
    }

    /// Notes whether it reads its stdin: the pipe holds bytes it has not read, and how many
    /// it read since the last look. A helper that reads nothing for the grace is stalled.
    fn look_at_stdin(&mut self, now: Instant) {
        // Once it was seen to have read all that was written, nothing is unread until more
        // is written: no need to ask the pipe.
        let unseen = self.stdin.is_some() && self.load() > 0 && self.read_seen != self.written;
        // Asking is a system call, and a busy driver writes at every turn: the clock starts
        // when bytes begin to wait, and the pipe is asked at most once per `stdin_look`, and
        // when the grace is over (where the look decides).
        if unseen {
            match self.stdin_progress {
                None => {
                    self.stdin_progress = Some(now);
                    self.stdin_looked = now;
                    return;
                }
                Some(since)
                    if now < self.stdin_looked + self.stdin_look()
                        && since.checked_add(self.grace).is_none_or(|end| now < end) =>
                {
                    return;
                }
                Some(_) => {}
            }
        }
        let unread = match &self.stdin {
            Some(stdin) if unseen => {
                self.stdin_looked = now;
                sys::pipe_unread(stdin.as_raw_fd()).unwrap_or(0)
            }
            _ => 0,
        };
        if unread == 0 && self.session.transmit_buffered() == 0 {
            self.read_seen = self.written;
            self.stdin_progress = None;
            return;
        }
        let read = self.written.saturating_sub(unread as u64);
        if read != self.read_seen || self.stdin_progress.is_none() {
            self.read_seen = read;
            self.stdin_progress = Some(now);
        }
    }

    /// How often the pipe is asked for its unread bytes while they wait
    /// ([`Helper::look_at_stdin`]): a stalled helper is caught this much after the grace at
    /// most.
    fn stdin_look(&self) -> Duration {
        (self.grace / 8).min(LIVENESS_CHECK)
    }

    /// When the driver must come back for this helper, if ever (`now`: the pacer's next
    /// release, where only it keeps probes in the backlog).
    pub(crate) fn deadline(&self, now: Instant) -> Option<Instant> {
        if self.done {
            return None;
        }
        if self.finished.is_some() {
            return self.next_check;
        }
        if let Some((_, kill_at)) = self.ending {
            return Some(self.next_check.map_or(kill_at, |at| at.min(kill_at)));
        }
        let stdin = self
            .stdin_progress
            .and_then(|since| since.checked_add(self.grace));
        // Probes waiting here for the pacer: the session has none queued to wake for.
        let paced = (!self.gated && !self.backlog.1.is_empty())
            .then(|| self.session.paced_room_at(now))
            .flatten();
        let gated = self.backlog_until.filter(|_| self.gated);
        // The liveness check, due from `next_check` on, wakes the driver only at its end.
        let check = self.next_check.map(|at| at + LIVENESS_SLACK);
        [
            self.session.poll_timeout(),
            stdin,
            check,
            self.resting,
            paced,
            gated,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Writes pending bytes until the pipe is full, taking probes from the backlog as the
    /// window and the transmit buffer make room.
    fn flush(&mut self, now: Instant, registry: &Registry) {
        loop {
            self.feed(now);
            let Some(stdin) = &mut self.stdin else {
                return;
            };
            let Some(bytes) = self.session.poll_transmit(now) else {
                return;
            };
            match stdin.write(bytes) {
                Ok(0) => break,
                Ok(n) => {
                    self.session.consume(now, n);
                    self.written += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // It closed its stdin (it is exiting, or broken; SIGPIPE is blocked on this
                // thread): no new probes, those in its backlog fail now; its output's end, the
                // watchdogs or its holding none ([`Helper::watch`]) end it.
                Err(_) => {
                    self.close_stdin(registry);
                    self.stdin_failed = true;
                    self.changed = true;
                    while let Ok((args, done, _)) = self.backlog.1.try_recv() {
                        let gone = self.gone();
                        let pin = self.pin_of(&args);
                        self.finish(done, pin, Err(gone));
                    }
                    break;
                }
            }
        }
    }

    /// Reads at most [`READ_BUDGET`] bytes; if more may wait, stays readable for the next turn.
    pub(crate) fn read(&mut self, now: Instant, buf: &mut [u8]) {
        let mut total = 0;
        while total < READ_BUDGET {
            let Some(stdout) = &mut self.stdout else {
                self.readable = false;
                return;
            };
            match stdout.read(buf) {
                Ok(0) => {
                    self.readable = false;
                    return self.end(now, Why::OutputEnded);
                }
                Ok(n) => {
                    total += n;
                    self.got_output = true;
                    self.session.handle_input(now, &buf[..n]);
                    // Completed at once, so that the session's event queue stays small.
                    self.dispatch(now);
                    // An endless line is one diagnostic, and no line follows: a read of its
                    // bytes (skipped, none kept: a part of an answer is kept) counts for
                    // the junk watchdog.
                    if self.ending.is_none()
                        && self.session.input_buffered() == 0
                        && self.junk_for_grace(now)
                    {
                        self.readable = false;
                        return self.end(now, Why::Junk);
                    }
                    // Read on to `WouldBlock` even after a short read of a resting stdout:
                    // the next read may be the end (a helper that wrote its last answers
                    // and died). Left for the next wake-up, the end would be seen a whole
                    // rest late, the output just read having extended the rest.
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.readable = false;
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.readable = false;
                    return self.end(now, Why::Failed);
                }
            }
        }
    }

    /// Hands finished requests to their callers; counts diagnostics; ends a helper that has
    /// written only junk for the grace, or that answered nothing at all while a request went
    /// unanswered past its timeout and the grace (mtr-packet answers every probe by its
    /// timeout, so such a helper is hung: what it holds would only expire in turn).
    fn dispatch(&mut self, now: Instant) {
        let mut junk_for_grace = false;
        let mut silent = false;
        while let Some(event) = self.session.poll_event() {
            let unanswered = match event {
                Event::Probe { token, outcome } => {
                    let unanswered = outcome == Err(Failure::Unanswered);
                    if let Some(Waiter::Probe(done, pin)) = self.waiting.remove(token) {
                        self.note_answer(now, outcome.is_ok());
                        let outcome = outcome.map_err(|f| self.failure(f));
                        self.finish(done, pin, outcome);
                    }
                    unanswered
                }
                Event::Support { token, outcome, .. } => {
                    let unanswered = outcome == Err(Failure::Unanswered);
                    match self.waiting.remove(token) {
                        Some(Waiter::Support(done)) => {
                            self.note_answer(now, outcome.is_ok());
                            let outcome = outcome.map_err(|failure| match failure {
                                Failure::HelperGone => Unchecked::Gone(self.gone()),
                                failure => Unchecked::Failed(failure),
                            });
                            let _ = done.send(outcome);
                            unanswered
                        }
                        // The driver's own check counts for no watchdog or restart rule: a
                        // helper is judged by its callers' requests, as before it was asked.
                        Some(Waiter::Version) => {
                            if let Ok(version) = outcome {
                                self.version = Some(cut(&version, DIAGNOSTIC_TEXT));
                                self.changed = true;
                            }
                            false
                        }
                        _ => unanswered,
                    }
                }
                Event::Diagnostic(diagnostic) => {
                    junk_for_grace |= self.note_diagnostic(now, &diagnostic);
                    false
                }
                _ => false,
            };
            silent |= unanswered
                && self
                    .last_answer
                    .is_none_or(|at| now.saturating_duration_since(at) >= self.grace);
        }
        if junk_for_grace {
            self.end(now, Why::Junk);
        }
        if silent {
            self.end(now, Why::Stalled);
        }
    }

    fn note_answer(&mut self, now: Instant, answered: bool) {
        if answered {
            self.answered += 1;
            self.junk_since = None;
            self.last_answer = Some(now);
        }
    }

    /// Counts a diagnostic and keeps its text in the small ring. Returns whether the helper
    /// has now written only junk for the grace.
    fn note_diagnostic(&mut self, now: Instant, diagnostic: &Diagnostic) -> bool {
        self.diagnostics += 1;
        self.changed = true;
        if self.recent.len() >= RECENT_DIAGNOSTICS {
            self.recent.pop_front();
        }
        self.recent
            .push_back(cut(&format!("{diagnostic:?}"), DIAGNOSTIC_TEXT));
        // A late or second answer is a slow helper, not a broken one; the same token's
        // again and again is a helper looping on an old line, as junk as any.
        if let Diagnostic::Late(reply) | Diagnostic::Duplicate(reply) = diagnostic
            && !self.strays.contains(&reply.token)
        {
            if self.strays.len() >= STRAYS_KEPT {
                self.strays.pop_front();
            }
            self.strays.push_back(reply.token);
            // It counts as an answer: the junk clock of earlier stray lines stops too.
            self.junk_since = None;
            self.last_answer = Some(now);
            return false;
        }
        self.junk_since.get_or_insert(now);
        self.junk_for_grace(now)
    }

    /// Whether it has written only junk for the grace.
    fn junk_for_grace(&self, now: Instant) -> bool {
        self.junk_since
            .and_then(|since| since.checked_add(self.grace))
            .is_some_and(|at| at <= now)
    }

    /// The error for a request that ended without an answer it could use.
    fn failure(&self, failure: Failure) -> Error {
        match failure {
            Failure::Unanswered => ProcessError::Unresponsive.into(),
            // It answered, and lives on: what it wrote, not an exit.
            Failure::Malformed { kind, error } => ProcessError::NotMtrPacket {
                program: self.program.clone(),
                detail: format!("it answered `{kind}` in a line that does not parse: {error}"),
            }
            .into(),
            _ => self.gone(),
        }
    }

    /// The error for requests of a helper that ended (or is ending).
    fn gone(&self) -> Error {
        match self.ending {
            Some((Why::Stalled, _)) => ProcessError::Unresponsive.into(),
            Some((Why::Junk, _)) => ProcessError::NotMtrPacket {
                program: self.program.clone(),
                detail: format!(
                    "for {:?} it wrote only lines that answer no request, the last: {}",
                    self.grace,
                    self.recent.back().map_or("", String::as_str)
                ),
            }
            .into(),
            _ => ProcessError::Exited {
                status: self.status,
            }
            .into(),
        }
    }

    /// Stops using the helper: no more reading or writing. Its requests complete, and it is
    /// killed and reaped, in [`Helper::progress_end`]. Idempotent: the first reason stays.
    pub(crate) fn end(&mut self, now: Instant, why: Why) {
        if self.ending.is_some() {
            return;
        }
        // Whose output merely ended may exit by itself and say how; the others are killed
        // at once.
        let kill_at = match why {
            Why::OutputEnded => now + EXIT_WAIT,
            _ => now,
        };
        self.ending = Some((why, kill_at));
        // Routers may still answer its pinned probes in flight, and a helper sending probes
        // of their pins (the next in its slot numbers from 33000 again) would take them.
        if self.session.in_flight() > 0 && (self.shared > 0 || !self.pins.is_empty()) {
            let mut pins: Vec<usize> = self.pins.keys().copied().collect();
            if self.shared > 0 {
                pins.push(SHARED);
            }
            let until = now
                .checked_add(self.longest_pinned)
                .unwrap_or(now + mtrproto::FAR_FUTURE);
            self.left_behind = Some((pins, until));
        }
        self.next_check = Some(now);
        self.readable = false;
        self.changed = true;
    }

    /// The pins of the pinned probes it had in flight when it ended (with [`SHARED`] for
    /// TCP and SCTP ones), and until when their answers may still come: its end plus the
    /// longest timeout of its pinned probes sent since it last held none
    /// ([`Helper::longest_pinned`]; mtr-packet's own horizon for an answer).
    pub(crate) fn take_left_behind(&mut self) -> Option<(Vec<usize>, Instant)> {
        self.left_behind.take()
    }

    /// The steps of ending: wait a little for the process to exit by itself, kill its
    /// whole group, complete its requests, reap it on a timer.
    fn progress_end(&mut self, now: Instant, registry: &Registry) {
        let Some((_, kill_at)) = self.ending else {
            return;
        };
        if self.finished.is_none() {
            self.close_stdin(registry);
            if let Some(mut stdout) = self.stdout.take() {
                let _ = registry.deregister(&mut stdout);
            }
            if !sys::has_exited(self.pid).unwrap_or(true) && now < kill_at {
                self.next_check = Some((now + REAP_STEP).min(kill_at));
                return;
            }
            // Killed while the process is unreaped, so that its group's id is still its own;
            // this also ends whatever it started.
            let _ = sys::kill_group(self.pid);
            let _ = self.child.kill();
            self.try_reap(now);
            self.finished = Some(now);
            self.session.handle_eof(now);
            self.dispatch(now);
            while let Ok((args, done, _)) = self.backlog.1.try_recv() {
                let gone = self.gone();
                let pin = self.pin_of(&args);
                self.finish(done, pin, Err(gone));
            }
            self.changed = true;
        }
        if self.next_check.is_some_and(|at| at <= now) {
            self.try_reap(now);
        }
    }

    /// One `try_wait`; schedules the next one, or gives up [`REAP_GIVE_UP`] after the end.
    fn try_reap(&mut self, now: Instant) {
        if self.status.is_none() {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    self.status = Some(status);
                    self.changed = true;
                }
                Ok(None) => {
                    let give_up = self
                        .finished
                        .is_some_and(|at| now.saturating_duration_since(at) >= REAP_GIVE_UP);
                    if !give_up {
                        self.next_check = Some(now + self.reap_step);
                        self.reap_step = (self.reap_step * 2).min(LIVENESS_CHECK);
                        return;
                    }
                }
                // Not our child any more: nothing to reap.
                Err(_) => {}
            }
        }
        if self.finished.is_some() {
            self.done = true;
            self.next_check = None;
            self.changed = true;
        }
    }

    /// Registers interest in writability exactly while output is pending.
    pub(crate) fn update_interest(&mut self, registry: &Registry) {
        let Some(stdin) = &mut self.stdin else {
            return;
        };
        let want = self.session.transmit_buffered() > 0;
        let changed = if want && !self.stdin_registered {
            registry.register(stdin, self.stdin_token, Interest::WRITABLE)
        } else if !want && self.stdin_registered {
            registry.deregister(stdin)
        } else {
            Ok(())
        };
        match changed {
            Ok(()) => self.stdin_registered = want,
            Err(_) => self.end(Instant::now(), Why::Failed),
        }
    }

    /// Closes its stdin: mtr-packet then exits once its probes are answered.
    fn close_stdin(&mut self, registry: &Registry) {
        if let Some(mut stdin) = self.stdin.take()
            && self.stdin_registered
        {
            let _ = registry.deregister(&mut stdin);
        }
        self.stdin_registered = false;
        self.stdin_progress = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A helper that never reads its stdin (`sleep`), with one 30 s probe written to it.
    fn sleeping_helper_with_a_probe(poll: &mio::Poll, grace: Duration) -> (Helper, Instant) {
        let config = SessionConfig {
            grace,
            ..SessionConfig::default()
        };
        // `sleep` never reads its stdin: the probe line stays in the pipe.
        let command = ["sleep".to_owned(), "30".to_owned()];
        let mut helper = Helper::spawn(&command, config, poll.registry(), 0).unwrap();
        let start = Instant::now();
        let args = ProbeArgs::new([127, 0, 0, 1].into())
            .timeout(Duration::from_secs(30))
            .unwrap();
        helper.probe(start, args, Caller::Campaign(ProbeKey::for_test(1)), None);
        (helper, start)
    }

    #[test]
    fn a_helper_that_never_reads_is_caught_without_asking_the_pipe_at_every_turn() {
        let poll = mio::Poll::new().unwrap();
        let grace = Duration::from_millis(800);
        let (mut helper, start) = sleeping_helper_with_a_probe(&poll, grace);
        // Turns 5 ms apart in virtual time, as a busy driver's.
        let tick = Duration::from_millis(5);
        let (mut turns, mut looks) = (0, 0);
        let mut looked = helper.stdin_looked;
        let mut now = start;
        while helper.ending.is_none() && now < start + 4 * grace {
            helper.drive(now, poll.registry(), false);
            turns += 1;
            looks += u32::from(helper.stdin_looked != looked);
            looked = helper.stdin_looked;
            now += tick;
        }
        let ended = now - tick - start;
        assert!(
            matches!(helper.ending, Some((Why::Stalled, _))),
            "not ended as stalled after {turns} turns"
        );
        // The clock starts at the first turn after the write; the stall is seen within one
        // interval between looks (and a turn) after the grace.
        assert!(
            ended >= grace && ended <= grace + helper.stdin_look() + 2 * tick,
            "ended after {ended:?}"
        );
        // Every turn saw bytes unread; the pipe was asked once per interval, not each time.
        assert!(turns > 150, "{turns} turns");
        assert!(looks <= 10, "{looks} looks in {turns} turns");
        helper.kill_and_wait();
    }

    #[test]
    fn a_busy_driver_checks_liveness_at_its_own_turns_and_at_most_100_ms_apart() {
        let poll = mio::Poll::new().unwrap();
        // A grace long enough that the stdin watchdog stays out of the way.
        let (mut helper, start) = sleeping_helper_with_a_probe(&poll, Duration::from_secs(30));
        // Turns 7 ms apart in virtual time, as a busy driver's (not a divisor of 100 ms).
        let tick = Duration::from_millis(7);
        let mut checks = Vec::new();
        let mut due = helper.next_check;
        let mut now = start;
        while now < start + Duration::from_secs(2) {
            helper.drive(now, poll.registry(), false);
            assert!(helper.ending.is_none(), "ended at {:?}", now - start);
            if helper.next_check != due {
                checks.push(now);
                due = helper.next_check;
            }
            // Nothing in the helper needs a wake-up of its own before the next turn.
            let wake = helper.deadline(now).expect("a probe is pending");
            assert!(
                wake >= now + tick,
                "a wake-up {:?} after a turn",
                wake - now
            );
            now += tick;
        }
        // Checked all along, never more than LIVENESS_CHECK apart.
        assert!(checks.len() >= 18, "{} checks in 2 s", checks.len());
        let gaps = std::iter::once(start).chain(checks.iter().copied());
        for (before, after) in gaps.clone().zip(checks.iter()) {
            assert!(
                *after - before <= LIVENESS_CHECK,
                "{:?} apart",
                *after - before
            );
        }
        helper.kill_and_wait();
    }

    /// A helper running `sh -c script`, one campaign probe written to it at the time returned.
    fn holding_a_campaign_probe(poll: &mio::Poll, script: String) -> (Helper, Instant) {
        let config = SessionConfig {
            grace: Duration::from_secs(30),
            ..SessionConfig::default()
        };
        let command = ["sh".to_owned(), "-c".to_owned(), script];
        let mut helper = Helper::spawn(&command, config, poll.registry(), 0).unwrap();
        let args = ProbeArgs::new([127, 0, 0, 1].into())
            .timeout(Duration::from_secs(30))
            .unwrap();
        let now = Instant::now();
        helper.probe(now, args, Caller::Campaign(ProbeKey::for_test(1)), None);
        (helper, now)
    }

    /// A turn as the driver makes it at `now`, after its poll returned.
    fn turn(helper: &mut Helper, registry: &Registry, buf: &mut [u8], now: Instant) {
        helper.after_poll();
        if helper.is_readable() {
            helper.read(now, buf);
        }
        helper.drive(now, registry, false);
    }

    /// Turns every 10 ms (in real time, at most 100) until the helper's output has been
    /// read and its stdout rests; returns the time of that turn.
    fn rest_after_output(helper: &mut Helper, registry: &Registry, buf: &mut [u8]) -> Instant {
        for _ in 0..100 {
            std::thread::sleep(Duration::from_millis(10));
            let now = Instant::now();
            helper.set_readable();
            turn(helper, registry, buf, now);
            if helper.resting.is_some() {
                return now;
            }
        }
        panic!("no rest after output");
    }

    /// The flag file of a test's script, removed however the test ends; on a panic the
    /// script's process group is killed too (not reaped then, so its id is still its own).
    struct Flag(std::path::PathBuf, u32);

    impl Drop for Flag {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
            if std::thread::panicking() && self.1 != 0 {
                let _ = sys::kill_group(self.1);
            }
        }
    }

    /// Waits (at most 5 s in real time) until `ready` holds.
    fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
        let started = Instant::now();
        while !ready() {
            assert!(started.elapsed() < Duration::from_secs(5), "never {what}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn a_rest_goes_on_while_its_wake_ups_find_output_and_ends_when_they_find_none() {
        use std::os::fd::AsRawFd;
        let poll = mio::Poll::new().unwrap();
        // Output every 2 ms while the flag file exists, then `sleep` in the shell's place;
        // its stdin unread (the probe stays in flight).
        let mut flag = Flag(
            std::env::temp_dir().join(format!("mtrproto-rest-{}", std::process::id())),
            0,
        );
        std::fs::write(&flag.0, b"").unwrap();
        let script = format!(
            "while [ -e '{}' ]; do echo junk; sleep 0.002; done; exec sleep 30",
            flag.0.display()
        );
        let (mut helper, _) = holding_a_campaign_probe(&poll, script);
        flag.1 = helper.pid;
        let fd = helper.stdout.as_ref().unwrap().as_raw_fd();
        let mut buf = vec![0u8; 64 * 1024];
        let registry = poll.registry();
        let mut now = rest_after_output(&mut helper, registry, &mut buf);
        // Each rest's end finds output: the rest goes on, stdout stays out of the poll.
        // (Waited for: on busy cores the script once wrote nothing for 20 ms.)
        for _ in 0..3 {
            wait_until("output", || sys::pipe_unread(fd).unwrap_or(0) > 0);
            now += READ_REST;
            turn(&mut helper, registry, &mut buf, now);
            assert_eq!(helper.resting, Some(now + READ_REST));
        }
        // Output stops (the shell has become `sleep`): the first rest's end that finds none
        // ends it (the one after the stop may still find the last lines).
        std::fs::remove_file(&flag.0).unwrap();
        let comm = format!("/proc/{}/comm", helper.pid);
        wait_until("stopped", || {
            std::fs::read_to_string(&comm).is_ok_and(|name| name.trim() == "sleep")
        });
        let mut ends = 0;
        while helper.resting.is_some() && ends < 5 {
            now += READ_REST;
            turn(&mut helper, registry, &mut buf, now);
            ends += 1;
        }
        assert_eq!(
            helper.resting, None,
            "still resting after {ends} ends without output"
        );
        assert!(ends <= 2, "{ends} rests' ends");
        helper.kill_and_wait();
    }

    /// A helper that writes a last line and dies while its stdout rests: the wake-up that
    /// reads the line (one within the rest, a campaign's) sees the end too, instead of
    /// taking the line for more output and resting on, the end seen only at the next
    /// wake-up (a whole rest later).
    #[test]
    fn a_death_after_a_last_line_is_seen_at_the_wake_up_that_reads_the_line() {
        let poll = mio::Poll::new().unwrap();
        let (mut helper, _) =
            holding_a_campaign_probe(&poll, "echo junk; sleep 0.2; echo junk".to_owned());
        let mut buf = vec![0u8; 64 * 1024];
        helper.set_campaign_rest(true);
        let mut now = rest_after_output(&mut helper, poll.registry(), &mut buf);
        // The last line written and the process gone (bounded wait in real time).
        let waited = Instant::now();
        while !sys::has_exited(helper.pid).unwrap_or(true) {
            assert!(
                waited.elapsed() < Duration::from_secs(5),
                "the script never ended"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        // A wake-up within the rest reads the last line, and the end after it.
        now += CAMPAIGN_REST / 2;
        turn(&mut helper, poll.registry(), &mut buf, now);
        assert!(
            matches!(helper.ending, Some((Why::OutputEnded, _))),
            "the end not seen: still resting until {:?} from now",
            helper.resting.map(|until| until - now)
        );
        helper.kill_and_wait();
    }

    #[test]
    fn a_rest_begun_while_a_campaign_runs_ends_a_read_rest_after_output_once_none_runs() {
        let poll = mio::Poll::new().unwrap();
        // One line of output, then silence; its stdin unread (the probe stays in flight).
        let (mut helper, _) = holding_a_campaign_probe(&poll, "echo junk; sleep 30".to_owned());
        let mut buf = vec![0u8; 64 * 1024];
        // A campaign runs: a rest lasts CAMPAIGN_REST.
        helper.set_campaign_rest(true);
        let now = rest_after_output(&mut helper, poll.registry(), &mut buf);
        assert_eq!(
            helper.resting,
            Some(now + CAMPAIGN_REST),
            "no rest after output"
        );
        // The campaign ended: nothing wakes the driver before the rest's end, so a death
        // or a caller's answer must be seen within READ_REST.
        helper.set_campaign_rest(false);
        let end = helper.deadline(now);
        assert!(
            end.is_some_and(|end| end <= now + READ_REST),
            "the rest ends {:?} after the output",
            end.map(|end| end - now)
        );
        helper.kill_and_wait();
    }

    #[test]
    fn a_gated_helper_refuses_a_probe_past_max_queue_at_the_door_only() {
        let poll = mio::Poll::new().unwrap();
        let config = SessionConfig {
            max_queue: 1,
            ..SessionConfig::default()
        };
        let command = ["sleep".to_owned(), "30".to_owned()];
        let mut helper = Helper::spawn(&command, config, poll.registry(), 0).unwrap();
        // Held back, as every helper is while an ended one's TCP answers may come.
        helper.set_gated(true);
        let now = Instant::now();
        let tcp = ProbeArgs::new([127, 0, 0, 1].into()).protocol(mtrproto::Protocol::Tcp);
        let (sent, outcomes) = crossbeam_channel::unbounded();
        let caller = |name: &'static str| {
            let sent = sent.clone();
            Caller::Callback(Completion::new(move |result| {
                let _ = sent.send((name, result));
            }))
        };
        helper.probe(now, tcp.clone(), caller("waits"), None);
        helper.probe(now, tcp.clone(), caller("refused"), None);
        // Held by the driver while its pin was quiet: accepted already.
        helper.probe(now, tcp, caller("accepted"), Some(now));
        let completed: Vec<_> = outcomes.try_iter().collect();
        assert!(
            matches!(completed[..], [("refused", Err(Error::QueueFull(1)))]),
            "{completed:?}"
        );
        assert_eq!(helper.load(), 2);
        assert!(helper.holds(SHARED));
        helper.kill_and_wait();
    }
}
