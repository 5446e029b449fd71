//! The driver thread: one `mio::Poll` over every helper's pipes and a waker.
//!
//! It blocks in `poll`, and nowhere else, until a helper writes (a helper whose output it
//! just read is out of the poll, and read at each wake-up, until 10 ms pass without
//! output: see `helper.rs`), a
//! helper can take more input (interest in writability is registered only while output is
//! pending), a caller sends a command (the waker), or the earliest deadline of the helpers:
//! their sessions' timers, the watchdogs, the end of a rest, and the timers that reap an
//! ended helper. Every deadline it waits for is acted on when reached, so it never spins.
//!
//! With several helpers, each probe goes to the least loaded one (first the fewest past its
//! room, for a helper taught a small table by a refusal; ties in turn), except a
//! UDP probe with fixed ports (a flow among them): all of a target's probes with the same
//! ports go to one helper ([`pinned_slot`]), since mtr-packet tells their answers apart only
//! by sequences each helper numbers alike from 33000, and every helper sees every answer
//! (while that helper restarts, a stand-in takes them, and keeps them as long as it has any
//! of them queued or in flight: [`route`]). TCP and SCTP probes (and UDP ones on a
//! release that matches UDP answers by sequence alone, 0.92) are worse: a router's answer
//! to one goes to whichever probe of the reading helper has its sequence, whatever its
//! target or protocol, so the helper holding such probes ([`SHARED`]) takes every probe
//! while it does, and sends none while another helper still has requests
//! ([`update_gates`]): one helper at a time. ARCHITECTURE.md ("Several helpers") gives
//! mtr-packet's matching rules, release by release. A helper
//! that ends fails only its own requests and is started again, one helper or several: at
//! once if it had answered (but after [`RESTART_PAUSE`] once its slot was started
//! [`RESTART_BURST`] times within [`RESTART_WINDOW`]), after [`RESTART_PAUSE`] if it never
//! answered and some helper of the session did. Otherwise the slot stays empty; the session
//! ends when every slot is. Requests sent while no helper takes them fail at once.

use std::collections::VecDeque;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io;
use std::process::ExitStatus;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use mio::{Events, Poll, Token as PollToken, Waker};
use mtrproto::{Failure, Feature, ProbeArgs, Protocol, SessionConfig, Tracer};

use crate::completion::Completion;
use crate::error::{Error, ProcessError};
use crate::helper::{Caller, Helper, SupportAnswer, Why, give_up_at};
use crate::job::Job;
use crate::status::Shared;
use crate::sys;

/// The waker's poll token; helpers use `2 * slot` (stdout) and `2 * slot + 1` (stdin).
const WAKER: PollToken = PollToken(usize::MAX);

/// How long in-flight probes may take to finish when the session is closed or dropped.
pub(crate) const DEFAULT_CLOSE_GRACE: Duration = Duration::from_secs(1);

/// How long a helper that never answered waits before it is started again: a command that
/// cannot work must not be restarted in a tight loop.
pub(crate) const RESTART_PAUSE: Duration = Duration::from_secs(1);

/// How many times a slot is started again at once within [`RESTART_WINDOW`]; beyond
/// that, each restart waits [`RESTART_PAUSE`], so a helper that crashes on every probe
/// cannot make the driver spin.
pub(crate) const RESTART_BURST: usize = 5;

/// The span over which [`RESTART_BURST`] counts restarts.
pub(crate) const RESTART_WINDOW: Duration = Duration::from_secs(10);

/// The size of one read from a helper.
const READ_CHUNK: usize = 64 * 1024;

/// Wakes the driver after a command is sent, once per batch: a caller wakes it only if no
/// wake-up is pending since the driver last drained its commands. This saves an eventfd
/// write and a poll round per probe when callers submit faster than the driver loops.
pub(crate) struct Wakeup {
    waker: Waker,
    pending: AtomicBool,
}

impl Wakeup {
    /// Called after sending a command.
    pub(crate) fn wake(&self) -> io::Result<()> {
        if self.pending.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        self.waker.wake()
    }

    /// Called by the driver before it drains the commands: any command sent after this
    /// wakes it again.
    fn rearm(&self) {
        self.pending.store(false, Ordering::Release);
    }
}

/// What callers ask of the driver.
pub(crate) enum Command {
    Probe {
        args: ProbeArgs,
        done: Completion,
    },
    Support {
        feature: Feature,
        done: Sender<SupportAnswer>,
    },
    /// Run a campaign's tracers on the driver thread.
    Campaign(Box<Job>),
    /// Start tracing a target in campaign `job`, named by the caller's `ticket`.
    Target {
        job: u32,
        ticket: usize,
        tracer: Box<Tracer>,
    },
    /// Stop campaign `job`: its caller is done with it (or gone).
    EndCampaign {
        job: u32,
    },
    /// The helper's release matches UDP answers by sequence alone
    /// ([`Release::udp_matched_by_sequence_alone`](crate::compat::Release)): route UDP
    /// probes as TCP ones ([`SHARED`]). Sent once the release is known, before any probe.
    UdpBySequence,
    /// Close the helpers' stdin once written, let in-flight requests finish, kill them
    /// after `grace`.
    Close {
        grace: Duration,
    },
}

/// One helper slot: its current process and when to start the next.
struct Slot {
    helper: Helper,
    restarts: u32,
    /// When the last (at most [`RESTART_BURST`]) restarts happened.
    recent_restarts: VecDeque<Instant>,
    restart_at: Option<Instant>,
    /// Its helper ended having answered nothing and served no caller (it died on the
    /// session's own version check, or by itself): it is started again only once a request
    /// comes, at this time at the earliest ([`Driver::wake_dormant`]), so that an idle
    /// session does not start a helper that cannot work again and again.
    dormant: Option<Instant>,
    last_exit: Option<ExitStatus>,
}

/// Where a UDP probe naming `local-port` or `port` goes whatever the load: a number the
/// same for every probe to its target with its ports (the slot is that modulo the helpers).
///
/// mtr-packet finds such a probe's answer by the sequence it numbers (in a port or the
/// checksum) and the ports; every helper numbers from 33000 and every helper's raw socket
/// sees every answer, so the same ports to one target on two helpers cross answers
/// ([`ProbeArgs::fixed_udp_ports`]). Consecutive flows of a target land on consecutive
/// helpers, and a flow stays on one, so its path is one helper's view.
///
/// A TCP or SCTP probe gets [`SHARED`]: a router's answer to it goes to any helper's probe
/// with its sequence ([`ProbeArgs::matched_by_sequence_alone`]), so with several helpers
/// the helper that holds such probes takes every probe, and sends none while another
/// helper still has probes ([`helper_for`], [`update_gates`]).
///
/// `udp_by_sequence`: the release matches UDP answers by sequence alone too (0.92).
pub(crate) fn pinned_slot(args: &ProbeArgs, udp_by_sequence: bool) -> Option<usize> {
    if args.matched_by_sequence_alone()
        || (udp_by_sequence && args.fields().protocol == Protocol::Udp)
    {
        return Some(SHARED);
    }
    let (local_port, port) = args.fixed_udp_ports()?;
    let mut hasher = DefaultHasher::new();
    args.target().hash(&mut hasher);
    let ports = usize::from(local_port.unwrap_or(0)) + usize::from(port.unwrap_or(0));
    // SHARED is never a flow's pin.
    Some(
        (hasher.finish() as usize)
            .wrapping_add(ports)
            .min(SHARED - 1),
    )
}

/// The pin ([`pinned_slot`]) of the probes whose answers any helper's probe may take: TCP
/// and SCTP.
pub(crate) const SHARED: usize = usize::MAX;

/// The thread's state.
pub(crate) struct Driver {
    poll: Poll,
    slots: Vec<Slot>,
    command: Vec<String>,
    config: SessionConfig,
    commands: Receiver<Command>,
    wakeup: Arc<Wakeup>,
    shared: Arc<Shared>,
    /// Set once closing: the helpers are killed then if they have not exited.
    kill_at: Option<Instant>,
    /// Where the search for the least loaded helper starts, so that ties take turns.
    next_slot: usize,
    /// Some helper answered a request: the command works, and a helper that ends is
    /// started again.
    any_answered: bool,
    /// The campaigns it runs.
    jobs: Vec<Job>,
    /// Probes of ended campaigns still in the helpers (a campaign may end with probes out:
    /// `CampaignLimits::wait_for_probes`): they hold room in the windows that no running
    /// campaign's budget counts ([`Driver::share_room`]).
    abandoned: usize,
    /// UDP answers are matched by sequence alone ([`Command::UdpBySequence`]).
    udp_by_sequence: bool,
    /// Pins whose probes an ended helper left in flight, each until their answers may no
    /// longer come ([`Helper::take_left_behind`]): no helper sends a probe of them till
    /// then (the one started in its place numbers from 33000 again, another's numbers
    /// may meet them too); [`SHARED`] among them holds back every probe.
    quiet: Vec<(usize, Instant)>,
    /// Probes held back for a quiet pin, oldest first: a caller's at most `max_queue` per
    /// helper, a campaign's bounded by its budget.
    held: VecDeque<Held>,
    /// The earliest [`Held::until`] (or earlier: a held probe that went since leaves it
    /// behind, and the next look recomputes it).
    held_until: Option<Instant>,
    /// Helpers started in a slot and killed at once, their pid clashing with another's
    /// ([`spawn_distinct`]): reaped on a timer like any ended helper, never waited for.
    discarded: Vec<Helper>,
}

impl Driver {
    /// Starts `count` helpers running `command`. Returns the driver and the wake-up callers
    /// use after sending a command; `shared` then names the helpers.
    pub(crate) fn start(
        command: Vec<String>,
        count: usize,
        config: SessionConfig,
        commands: Receiver<Command>,
        shared: Arc<Shared>,
    ) -> Result<(Driver, Arc<Wakeup>), ProcessError> {
        let poll = Poll::new()?;
        let wakeup = Arc::new(Wakeup {
            waker: Waker::new(poll.registry(), WAKER)?,
            pending: AtomicBool::new(false),
        });
        let mut slots = Vec::with_capacity(count);
        let mut taken = Vec::with_capacity(count);
        let mut clashing = Vec::new();
        for slot in 0..count.max(1) {
            let started = spawn_distinct(
                &command,
                &config,
                poll.registry(),
                slot,
                &taken,
                &mut clashing,
            );
            // Opening runs on the caller's thread: a just-killed helper is reaped at once.
            for helper in clashing.drain(..) {
                helper.kill_and_wait();
            }
            match started {
                Ok(helper) => {
                    taken.push(helper.pid());
                    slots.push(Slot {
                        helper,
                        restarts: 0,
                        recent_restarts: VecDeque::new(),
                        restart_at: None,
                        dormant: None,
                        last_exit: None,
                    });
                }
                Err(e) => {
                    for slot in slots {
                        slot.helper.kill_and_wait();
                    }
                    return Err(e);
                }
            }
        }
        let mut driver = Driver {
            poll,
            slots,
            command,
            config,
            commands,
            wakeup: Arc::clone(&wakeup),
            shared,
            kill_at: None,
            next_slot: 0,
            any_answered: false,
            jobs: Vec::new(),
            abandoned: 0,
            udp_by_sequence: false,
            quiet: Vec::new(),
            held: VecDeque::new(),
            held_until: None,
            discarded: Vec::new(),
        };
        driver.publish();
        Ok((driver, wakeup))
    }

    /// Runs until the session is closed or its helpers are gone, then completes every
    /// command still sent to it.
    pub(crate) fn run(mut self) {
        // A write to a helper that exited then fails with EPIPE, in any host process.
        sys::block_sigpipe();
        let mut events = Events::with_capacity(64);
        let mut buf = vec![0u8; READ_CHUNK];
        // One clock read per wake-up, for its reads, its turn and the next wait: a wait
        // timed from it ends late by the turn's length at most, never early.
        let mut now = Instant::now();
        loop {
            if self.turn(now) {
                break;
            }
            self.wait(&mut events, now);
            now = Instant::now();
            for slot in &mut self.slots {
                if slot.helper.is_readable() {
                    slot.helper.read(now, &mut buf);
                }
            }
        }
        self.fail_remaining_commands();
    }

    /// One turn of work at `now`: commands in, every helper driven, restarts, status out;
    /// true once the driver is finished.
    fn turn(&mut self, now: Instant) -> bool {
        note_left_behind(&mut self.slots, &mut self.quiet);
        self.end_quiet(now);
        self.expire_held(now);
        self.take_commands(now);
        self.run_jobs(now);
        let closing = self.kill_at.is_some();
        let kill = self.kill_at.is_some_and(|at| at <= now);
        let registry = self.poll.registry();
        let quiet_shared = self.quiet.iter().any(|&(pin, _)| pin == SHARED);
        update_gates(&mut self.slots, quiet_shared);
        // While a campaign runs, its wake-ups read resting stdouts often: rests last longer.
        let campaign = !self.jobs.is_empty();
        for slot in &mut self.slots {
            if kill {
                slot.helper.end(now, Why::Closing);
            }
            slot.helper.set_campaign_rest(campaign);
            slot.helper.drive(now, registry, closing);
            self.any_answered |= slot.helper.has_answered();
        }
        for helper in &mut self.discarded {
            helper.drive(now, registry, closing);
        }
        self.discarded.retain(|helper| !helper.is_done());
        // Before the gates open again and before a restart: what a helper that ended in this
        // turn left in flight is quiet.
        note_left_behind(&mut self.slots, &mut self.quiet);
        let quiet_shared = self.quiet.iter().any(|&(pin, _)| pin == SHARED);
        // The others' last probes ended in this turn: the helper they held back goes on.
        if update_gates(&mut self.slots, quiet_shared) {
            for slot in &mut self.slots {
                slot.helper.drive(now, registry, closing);
            }
        }
        // Before a restart replaces an ended helper: its requests' outcomes are in it.
        self.take_answers(now);
        self.restart(now);
        self.publish();
        if self.finished() {
            return true;
        }
        let registry = self.poll.registry();
        for slot in &mut self.slots {
            slot.helper.update_interest(registry);
        }
        false
    }

    /// Waits in `poll` until the earliest deadline (not at all when input was left unread),
    /// and marks the helpers whose output became readable.
    fn wait(&mut self, events: &mut Events, now: Instant) {
        let timeout = if self
            .slots
            .iter()
            .any(|s| s.helper.is_readable() || s.helper.has_answers())
        {
            // Input was left unread for fairness, or answers wait for their campaign: only
            // look for other work.
            Some(Duration::ZERO)
        } else {
            // Answers in a resting stdout wake no one: a campaign waiting for the room they
            // free comes back for them on its grid.
            let resting = self.slots.iter().any(|s| s.helper.is_resting());
            self.slots
                .iter()
                .filter_map(|s| s.helper.deadline(now))
                .chain(self.slots.iter().filter_map(|s| s.restart_at))
                .chain(self.quiet.iter().map(|&(_, until)| until))
                .chain(self.held_until)
                .chain(self.discarded.iter().filter_map(|h| h.deadline(now)))
                .chain(self.jobs.iter().filter_map(Job::deadline))
                .chain(
                    self.jobs
                        .iter()
                        .filter(|_| resting)
                        .filter_map(Job::room_deadline),
                )
                // Once passed, the kill time has been acted on.
                .chain(self.kill_at.filter(|&at| at > now))
                .min()
                .map(|d| d.saturating_duration_since(now))
        };
        if let Err(e) = self.poll.poll(events, timeout)
            && e.kind() != io::ErrorKind::Interrupted
        {
            // The poll itself failed: nothing can be driven any more.
            let now = Instant::now();
            for slot in &mut self.slots {
                slot.helper.end(now, Why::Failed);
            }
            self.kill_at.get_or_insert(now);
        }
        for slot in &mut self.slots {
            slot.helper.after_poll();
        }
        for event in events.iter() {
            if let Some(slot) =
                Helper::slot_of_stdout(event.token()).and_then(|s| self.slots.get_mut(s))
            {
                slot.helper.set_readable();
            }
        }
    }

    /// Moves every queued command to a helper.
    fn take_commands(&mut self, now: Instant) {
        self.wakeup.rearm();
        loop {
            let command = self.commands.try_recv();
            if let Ok(Command::Probe { .. } | Command::Support { .. } | Command::Campaign(_)) =
                &command
            {
                self.wake_dormant(now);
            }
            match command {
                Ok(Command::Probe { args, done }) => {
                    if let Err(Caller::Callback(done)) =
                        self.route_probe(now, args, Caller::Callback(done), None)
                    {
                        done.complete(Err(self.exited().into()));
                    }
                }
                Ok(Command::Support { feature, done }) => {
                    match least_loaded(&mut self.slots, &mut self.next_slot) {
                        Some(helper) => helper.support(now, feature, done),
                        None => {
                            let _ = done.send(Err(Failure::HelperGone.into()));
                        }
                    }
                }
                // While closing, no campaign runs: its caller sees the session closed.
                Ok(Command::Campaign(job)) if self.kill_at.is_none() => self.jobs.push(*job),
                Ok(Command::Campaign(_)) => {}
                Ok(Command::Target {
                    job,
                    ticket,
                    tracer,
                }) => {
                    if let Some(job) = self.jobs.iter_mut().find(|j| j.id() == job) {
                        job.add(ticket, tracer);
                    }
                }
                Ok(Command::EndCampaign { job }) => self.end_campaign(job),
                Ok(Command::UdpBySequence) => {
                    self.udp_by_sequence = true;
                    for slot in &mut self.slots {
                        slot.helper.set_udp_by_sequence(true);
                    }
                }
                Ok(Command::Close { grace }) => self.begin_close(now, grace),
                // Every Session handle is gone: close as `close()` would.
                Err(TryRecvError::Disconnected) => {
                    self.begin_close(now, DEFAULT_CLOSE_GRACE);
                    return;
                }
                Err(TryRecvError::Empty) => return,
            }
        }
    }

    /// After the loop: commands sent while it ended get the session's end as their result.
    fn fail_remaining_commands(&mut self) {
        while let Ok(command) = self.commands.try_recv() {
            match command {
                Command::Probe { done, .. } => done.complete(Err(self.exited().into())),
                Command::Support { done, .. } => {
                    let _ = done.send(Err(Failure::HelperGone.into()));
                }
                Command::Close { .. }
                | Command::UdpBySequence
                | Command::Campaign(_)
                | Command::Target { .. }
                | Command::EndCampaign { .. } => {}
            }
        }
    }

    /// The error for a request no helper can take.
    fn exited(&self) -> ProcessError {
        ProcessError::Exited {
            status: self.shared.last_exit(),
        }
    }

    /// Hands the answers the helpers collected to their campaigns, then sends each
    /// campaign's due probes to their helpers ([`helper_for`]).
    fn run_jobs(&mut self, now: Instant) {
        if self.jobs.is_empty() {
            return;
        }
        self.wake_dormant(now);
        self.take_answers(now);
        let mut jobs = std::mem::take(&mut self.jobs);
        for job in &mut jobs {
            job.send_due(now, |args, key| {
                self.route_probe(now, args, Caller::Campaign(key), None)
                    .map_err(|_| self.exited().into())
            });
        }
        self.jobs = jobs;
    }

    /// Stops campaign `job`, and drops its probes held for a quiet pin or waiting in a
    /// helper's backlog: sent later they would probe for no one, take a caller's room (the
    /// held cap, the window), and a caller starting and abandoning campaigns while they
    /// wait would grow `held` or a backlog without bound.
    fn end_campaign(&mut self, job: u32) {
        let out = self
            .jobs
            .iter()
            .find(|j| j.id() == job)
            .map_or(0, Job::in_flight);
        self.jobs.retain(|j| j.id() != job);
        let held = self.held.len();
        self.held
            .retain(|held| !matches!(held.caller, Caller::Campaign(key) if key.job == job));
        // The rest of its probes out come back through the helpers' answers (those in a
        // backlog at once, ended unsent), each then no longer counted.
        let dropped = held - self.held.len();
        self.abandoned = self.abandoned.saturating_add(out.saturating_sub(dropped));
        for slot in &mut self.slots {
            slot.helper.drop_campaign(job);
        }
        self.share_room();
    }

    /// Tells each campaign the room in the helpers' windows that ended campaigns' probes
    /// still out leave ([`Job::set_room`]).
    fn share_room(&mut self) {
        // Nothing out at all: none of them is (a bound on any miscount).
        if self.abandoned > 0 && self.slots.iter().all(|s| s.helper.load() == 0) {
            self.abandoned = 0;
        }
        // Each helper's window as its session holds it (under the table a refusal taught),
        // and its refused probes waiting out their timeout, which hold no slot.
        let capacity = self
            .slots
            .iter()
            .fold(0usize, |sum, s| sum.saturating_add(s.helper.room()));
        let room = capacity.saturating_sub(self.abandoned);
        for job in &mut self.jobs {
            job.set_room(room);
        }
    }

    /// Hands a probe to its helper ([`helper_for`]), or holds it back while its pin is
    /// quiet ([`Driver::quiet`]; a caller's is refused with `QueueFull` once `max_queue` per
    /// helper are held). `held_until`: a held probe sent again, which passed the caller's
    /// bounds once: neither the held cap nor its helper's queue refuses it now (`QueueFull`
    /// refuses at the door only), and held again it keeps the time it gives up at
    /// ([`Held::until`]). The caller back if no helper takes it.
    fn route_probe(
        &mut self,
        now: Instant,
        args: ProbeArgs,
        caller: Caller,
        held_until: Option<Instant>,
    ) -> Result<(), Caller> {
        let accepted = held_until.is_some();
        if !self.quiet.is_empty() {
            let pin = pinned_slot(&args, self.udp_by_sequence);
            if self
                .quiet
                .iter()
                .any(|&(quiet, _)| quiet == SHARED || Some(quiet) == pin)
            {
                let cap = self.config.max_queue.saturating_mul(self.slots.len());
                match caller {
                    Caller::Callback(done) if !accepted && self.held.len() >= cap => {
                        done.complete(Err(Error::QueueFull(self.held.len())));
                    }
                    caller => {
                        let until =
                            held_until.unwrap_or_else(|| give_up_at(now, &args, self.config.grace));
                        self.hold(Held {
                            args,
                            caller,
                            until,
                        });
                    }
                }
                return Ok(());
            }
        }
        let by_sequence = self.udp_by_sequence;
        match helper_for(&mut self.slots, &mut self.next_slot, &args, by_sequence) {
            Some(helper) => {
                helper.probe(now, args, caller, held_until);
                Ok(())
            }
            None => Err(caller),
        }
    }

    /// Ends the quiet of the pins whose time is over, and sends the probes held for them.
    fn end_quiet(&mut self, now: Instant) {
        let before = self.quiet.len();
        self.quiet.retain(|&(_, until)| until > now);
        if self.quiet.len() == before || self.held.is_empty() {
            return;
        }
        self.held_until = None;
        for held in std::mem::take(&mut self.held) {
            if let Err(caller) = self.route_probe(now, held.args, held.caller, Some(held.until)) {
                self.fail_unsent(now, caller);
            }
        }
    }

    /// Holds a probe back ([`Driver::held`]).
    fn hold(&mut self, held: Held) {
        self.held_until = Some(self.held_until.map_or(held.until, |at| at.min(held.until)));
        self.held.push_back(held);
    }

    /// Ends, unsent, the held probes whose own timeout and grace have passed
    /// ([`Held::until`]): the quiet they wait for may be another probe's far longer timeout.
    /// `Unresponsive`, as a probe held back behind another helper's probes ends
    /// (`Helper::expire_gated`): the same wait, and no helper exited then (a successor may
    /// run; the one whose probes made the quiet ended long before).
    fn expire_held(&mut self, now: Instant) {
        if self.held_until.is_none_or(|at| at > now) {
            return;
        }
        self.held_until = None;
        for held in std::mem::take(&mut self.held) {
            if held.until > now {
                self.hold(held);
            } else {
                self.complete_unsent(now, held.caller, ProcessError::Unresponsive.into());
            }
        }
    }

    /// Completes a probe no helper took: the error of the helpers' end, for a caller or as
    /// a campaign's lost probe.
    fn fail_unsent(&mut self, now: Instant, caller: Caller) {
        let error = self.exited().into();
        self.complete_unsent(now, caller, error);
    }

    /// Completes an unsent probe with `error`, for a caller or as a campaign's lost probe.
    fn complete_unsent(&mut self, now: Instant, caller: Caller, error: Error) {
        let lost = Err(error);
        match caller {
            Caller::Callback(done) => done.complete(lost),
            Caller::Campaign(key) => {
                if let Some(job) = self.jobs.iter_mut().find(|j| j.id() == key.job) {
                    job.answer(now, key, &lost);
                }
            }
        }
    }

    /// Moves the helpers' campaign answers to their campaigns (an ended campaign's are
    /// dropped).
    fn take_answers(&mut self, now: Instant) {
        for slot in &mut self.slots {
            // Every answer's target read first, so that their cache misses overlap.
            for (key, _) in slot.helper.answers() {
                if let Some(job) = self.jobs.iter().find(|j| j.id() == key.job) {
                    job.warm(key);
                }
            }
            for (key, result) in slot.helper.take_answers() {
                match self.jobs.iter_mut().find(|j| j.id() == key.job) {
                    Some(job) => job.answer(now, key, &result),
                    None => self.abandoned = self.abandoned.saturating_sub(1),
                }
            }
        }
        self.share_room();
    }

    /// Starts closing: once what was sent is written, each helper's stdin closes so that it
    /// exits when its probes are answered; it is killed if it has not after `grace`.
    fn begin_close(&mut self, now: Instant, grace: Duration) {
        // Their callers see the session closed; their probes in flight end with the helpers.
        self.jobs.clear();
        self.held_until = None;
        for held in std::mem::take(&mut self.held) {
            if let Caller::Callback(done) = held.caller {
                done.complete(Err(self.exited().into()));
            }
        }
        self.quiet.clear();
        if self.kill_at.is_none() {
            self.kill_at = Some(now.checked_add(grace).unwrap_or(now + mtrproto::FAR_FUTURE));
        }
        for slot in &mut self.slots {
            slot.restart_at = None;
        }
    }

    /// Unless closing, starts again each helper that ended: at once if it had answered (after
    /// [`RESTART_PAUSE`] if its slot already restarted [`RESTART_BURST`] times within
    /// [`RESTART_WINDOW`]), after [`RESTART_PAUSE`] if it never did but some helper of the
    /// session did; never if no helper ever answered (the command cannot work).
    fn restart(&mut self, now: Instant) {
        if self.kill_at.is_some() {
            return;
        }
        let registry = self.poll.registry();
        for index in 0..self.slots.len() {
            let slot = &mut self.slots[index];
            if !slot.helper.is_done() {
                continue;
            }
            if slot.restart_at.is_none() && slot.dormant.is_none() {
                let burst = slot.recent_restarts.len() >= RESTART_BURST
                    && slot
                        .recent_restarts
                        .front()
                        .is_some_and(|&at| now.saturating_duration_since(at) < RESTART_WINDOW);
                slot.restart_at = if slot.helper.has_answered() && !burst {
                    Some(now)
                } else if !self.any_answered {
                    None
                } else if !slot.helper.has_served() {
                    slot.dormant = Some(now + RESTART_PAUSE);
                    None
                } else {
                    Some(now + RESTART_PAUSE)
                };
            }
            if slot.restart_at.is_none_or(|at| at > now) {
                continue;
            }
            // Every slot's pid, the ended ones' too (their late answers carry theirs).
            let taken: Vec<u32> = self.slots.iter().map(|s| s.helper.pid()).collect();
            let mut clashing = Vec::new();
            let started = spawn_distinct(
                &self.command,
                &self.config,
                registry,
                index,
                &taken,
                &mut clashing,
            );
            for helper in clashing {
                discard(&mut self.discarded, registry, now, helper);
            }
            let slot = &mut self.slots[index];
            match started {
                Ok(mut fresh) => {
                    fresh.set_udp_by_sequence(self.udp_by_sequence);
                    // The program may have changed since the session opened (an upgrade at
                    // the same path): its version, for `Session::helpers`.
                    fresh.ask_version(now);
                    if let Some(status) = slot.helper.exit_status() {
                        slot.last_exit = Some(status);
                    }
                    slot.helper = fresh;
                    slot.restarts += 1;
                    slot.restart_at = None;
                    if slot.recent_restarts.len() >= RESTART_BURST {
                        slot.recent_restarts.pop_front();
                    }
                    slot.recent_restarts.push_back(now);
                }
                Err(_) => slot.restart_at = Some(now + RESTART_PAUSE),
            }
        }
    }

    /// A request came: the dormant slots ([`Slot::dormant`]) start their helper again, at
    /// once if their pause is over. Not while closing: `restart` starts nothing then, and a
    /// restart left pending would keep the driver from finishing (a caller's request that
    /// passed the open check as another thread closed comes after the close).
    fn wake_dormant(&mut self, now: Instant) {
        if self.kill_at.is_some() {
            return;
        }
        let mut woke = false;
        for slot in &mut self.slots {
            if let Some(at) = slot.dormant.take() {
                slot.restart_at = Some(at);
                woke = true;
            }
        }
        if woke {
            self.restart(now);
        }
    }

    /// Whether every helper is done and none is to be started again (a dormant one only
    /// while closing).
    fn finished(&self) -> bool {
        let closing = self.kill_at.is_some();
        self.slots.iter().all(|s| {
            s.helper.is_done() && s.restart_at.is_none() && (closing || s.dormant.is_none())
        })
    }

    /// Updates what `Session::helpers` reports.
    fn publish(&mut self) {
        // Most turns change nothing: no lock then.
        if !self.slots.iter().any(|s| s.helper.status_changed()) {
            return;
        }
        let mut helpers = self.shared.helpers();
        helpers.resize_with(self.slots.len(), Default::default);
        for (slot, published) in self.slots.iter_mut().zip(helpers.iter_mut()) {
            let Some(mut status) = slot.helper.take_status() else {
                continue;
            };
            if let Some(exit) = status.last_exit {
                self.shared.set_last_exit(exit);
            }
            status.last_exit = status.last_exit.or(slot.last_exit);
            status.restarts = slot.restarts;
            *published = status;
        }
    }
}

/// A probe held back while its pin is quiet ([`Driver::held`]).
struct Held {
    args: ProbeArgs,
    caller: Caller,
    /// When it ends unsent if still held: its own timeout and the grace after it was first
    /// held, when the watchdog would have ended it had it gone out at once. The quiet it
    /// waits for is the longest timeout of another helper's probes, which may be far longer.
    until: Instant,
}

/// Takes the pins that ended helpers left in flight into `quiet` ([`Driver::quiet`]).
fn note_left_behind(slots: &mut [Slot], quiet: &mut Vec<(usize, Instant)>) {
    for slot in slots {
        let Some((pins, until)) = slot.helper.take_left_behind() else {
            continue;
        };
        for pin in pins {
            match quiet.iter_mut().find(|(quiet, _)| *quiet == pin) {
                Some((_, at)) => *at = (*at).max(until),
                None => quiet.push((pin, until)),
            }
        }
    }
}

/// Kills a helper that must not be used, to be reaped on a timer from `discarded` like
/// any ended helper (the driver thread never waits for a process).
fn discard(
    discarded: &mut Vec<Helper>,
    registry: &mio::Registry,
    now: Instant,
    mut helper: Helper,
) {
    helper.end(now, Why::Closing);
    helper.drive(now, registry, false);
    discarded.push(helper);
}

/// Whether two helpers' probes carry the same ICMP identifier: mtr-packet puts
/// `htons(getpid())` there, and in the source port of a UDP probe naming no port, and
/// matches those answers by it first, so helpers whose pids are equal modulo 65536 would
/// take each other's (possible where `pid_max` is above 65535).
fn same_icmp_id(a: u32, b: u32) -> bool {
    a & 0xffff == b & 0xffff
}

/// Starts a helper in `slot` whose ICMP identifier no pid in `taken` has
/// ([`same_icmp_id`]): one that has goes to `clashing` (for the caller to kill and reap)
/// and another is started, 3 starts at most (pids are handed out in turn, so a second
/// clash in a row would take a full turn of them).
fn spawn_distinct(
    command: &[String],
    config: &SessionConfig,
    registry: &mio::Registry,
    slot: usize,
    taken: &[u32],
    clashing: &mut Vec<Helper>,
) -> Result<Helper, ProcessError> {
    let mut starts = 0;
    loop {
        let helper = Helper::spawn(command, config.clone(), registry, slot)?;
        starts += 1;
        if starts >= 3 || !taken.iter().any(|&pid| same_icmp_id(pid, helper.pid())) {
            return Ok(helper);
        }
        clashing.push(helper);
    }
}

/// The helper `args` goes to: the one holding [`SHARED`] probes if one does (every probe
/// then goes there: another helper's probe would take their answers), else its pinned one
/// ([`pinned_slot`]) or the least loaded. A helper that takes [`SHARED`] probes is held
/// back while another has probes ([`update_gates`]).
fn helper_for<'s>(
    slots: &'s mut [Slot],
    next_slot: &mut usize,
    args: &ProbeArgs,
    udp_by_sequence: bool,
) -> Option<&'s mut Helper> {
    let pin = pinned_slot(args, udp_by_sequence);
    let holder = (slots.len() > 1)
        .then(|| {
            slots
                .iter()
                .position(|s| s.helper.holds(SHARED) && s.helper.accepts())
        })
        .flatten();
    let slot = match (holder, pin) {
        (Some(holder), _) => holder,
        (None, None) => return least_loaded(slots, next_slot),
        (None, Some(pin)) => route(
            pin,
            slots.len(),
            |i| slots[i].helper.accepts(),
            |i| slots[i].helper.takes_probes(),
            |i| slots[i].helper.holds(pin),
        )?,
    };
    if pin == Some(SHARED) && slots.len() > 1 {
        let others_busy = others_busy(slots, slot);
        slots[slot].helper.set_gated(others_busy);
    }
    Some(&mut slots[slot].helper)
}

/// Whether a helper but `slot`'s has requests queued or in flight.
fn others_busy(slots: &[Slot], slot: usize) -> bool {
    slots
        .iter()
        .enumerate()
        .any(|(i, s)| i != slot && s.helper.load() > 0)
}

/// Holds back the helper with [`SHARED`] probes while another helper has requests (their
/// probes could take its answers, numbering alike), and lets it go once none has: from
/// then on every probe goes to it ([`helper_for`]) until its [`SHARED`] ones are done.
/// With `quiet_shared` (an ended helper left [`SHARED`] probes in flight), every helper is
/// held back: what waits in their backlogs was routed before that helper ended. Returns
/// whether a helper was let go.
fn update_gates(slots: &mut [Slot], quiet_shared: bool) -> bool {
    let busy = slots.iter().filter(|s| s.helper.load() > 0).count();
    let mut released = false;
    for slot in slots {
        let helper = &mut slot.helper;
        let others_busy = busy > usize::from(helper.load() > 0);
        let gated = quiet_shared || (helper.holds(SHARED) && others_busy);
        released |= helper.is_gated() && !gated;
        helper.set_gated(gated);
    }
    released
}

/// The slot of `count` a probe pinned to `pin` goes to: the one that `holds` probes of its
/// pin and `accepts` (even if it `takes` no new probe, its stdin broken: it refuses the
/// probe then, as no other may have the pin's probes in flight too), else its [`stand_in`]
/// among those that `take` probes. A stand-in keeps the pin until its probes of it are
/// done, so that the pinned helper, back from a restart, never has them in flight too.
fn route(
    pin: usize,
    count: usize,
    accepts: impl Fn(usize) -> bool,
    takes: impl Fn(usize) -> bool,
    holds: impl Fn(usize) -> bool,
) -> Option<usize> {
    let own = pin.checked_rem(count)?;
    (0..count)
        .map(|i| (own + i) % count)
        .find(|&i| accepts(i) && holds(i))
        .or_else(|| stand_in(pin, count, takes))
}

/// The slot of `count` a probe pinned to `pin` goes to when no helper holds its pin:
/// `pin`'s own, or, while that one takes no requests (restarting), the next that `accepts`,
/// the same one for every probe pinned there.
fn stand_in(pin: usize, count: usize, accepts: impl Fn(usize) -> bool) -> Option<usize> {
    // `pin` is a hash, anywhere up to usize::MAX: reduced first, so that adding cannot
    // overflow.
    let own = pin.checked_rem(count)?;
    (0..count).map(|i| (own + i) % count).find(|&i| accepts(i))
}

/// The helper that takes requests with the fewest past its room (`Helper::room`: a helper
/// taught a small table holds few), then the least loaded; among equals, the next in turn.
fn least_loaded<'s>(slots: &'s mut [Slot], next_slot: &mut usize) -> Option<&'s mut Helper> {
    let count = slots.len();
    let start = *next_slot % count;
    let best = (0..count)
        .map(|i| (start + i) % count)
        .filter(|&i| slots[i].helper.takes_probes())
        .min_by_key(|&i| {
            let helper = &slots[i].helper;
            let load = helper.load();
            (load.saturating_sub(helper.room()), load)
        })?;
    *next_slot = best + 1;
    Some(&mut slots[best].helper)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A driver over `count` helpers that never read a request (`sleep`), with `max_queue`.
    fn idle_driver(count: usize, max_queue: usize) -> Driver {
        let (_, commands) = crossbeam_channel::unbounded();
        let config = SessionConfig {
            max_queue,
            ..SessionConfig::default()
        };
        let command = vec!["sleep".to_owned(), "30".to_owned()];
        Driver::start(command, count, config, commands, Arc::default())
            .expect("sleep starts")
            .0
    }

    /// A caller's completion, and where its outcome arrives.
    fn watched() -> (Completion, Receiver<Result<mtrproto::ProbeResult, Error>>) {
        let (sent, outcome) = crossbeam_channel::unbounded();
        let done = Completion::new(move |result| {
            let _ = sent.send(result);
        });
        (done, outcome)
    }

    /// Kills the driver's helpers, so that no `sleep` outlives the test.
    fn kill(driver: Driver) {
        for slot in driver.slots {
            slot.helper.kill_and_wait();
        }
    }

    #[test]
    fn a_held_probe_still_quiet_when_another_pin_ends_is_held_again_not_refused() {
        let mut driver = idle_driver(1, 1);
        let now = Instant::now();
        let tcp = ProbeArgs::new([127, 0, 0, 1].into()).protocol(Protocol::Tcp);
        // A flow's pin ends its quiet now; SHARED stays quiet.
        driver.quiet = vec![(7, now), (SHARED, now + Duration::from_secs(60))];
        // A campaign's probe held first, then a caller's: the one that max_queue allows.
        let (done, outcome) = watched();
        let key = crate::job::ProbeKey::for_test(1);
        let until = now + Duration::from_secs(60);
        driver.hold(Held {
            args: tcp.clone(),
            caller: Caller::Campaign(key),
            until,
        });
        driver.hold(Held {
            args: tcp,
            caller: Caller::Callback(done),
            until,
        });
        driver.end_quiet(now);
        let early = outcome.try_recv();
        assert!(early.is_err(), "completed while held: {early:?}");
        assert_eq!(driver.held.len(), 2);
        kill(driver);
    }

    #[test]
    fn a_held_probe_ends_unsent_at_its_own_timeout_and_grace() {
        let mut driver = idle_driver(1, 1);
        let now = Instant::now();
        let tcp = ProbeArgs::new([127, 0, 0, 1].into())
            .protocol(Protocol::Tcp)
            .timeout_secs(1)
            .unwrap();
        // Another probe's hour-long timeout keeps every pin quiet.
        driver.quiet = vec![(SHARED, now + Duration::from_secs(3600))];
        let (done, outcome) = watched();
        assert!(
            driver
                .route_probe(now, tcp, Caller::Callback(done), None)
                .is_ok()
        );
        let until = now + Duration::from_secs(1) + driver.config.grace;
        assert_eq!(driver.held_until, Some(until));
        driver.expire_held(until - Duration::from_millis(1));
        assert_eq!(driver.held.len(), 1);
        driver.expire_held(until);
        assert!(driver.held.is_empty());
        assert_eq!(driver.held_until, None);
        let ended = outcome.try_recv();
        assert!(
            matches!(ended, Ok(Err(Error::Process(ProcessError::Unresponsive)))),
            "{ended:?}"
        );
        kill(driver);
    }

    #[test]
    fn a_discarded_helper_is_killed_and_reaped_without_a_wait() {
        let mut driver = idle_driver(1, 1);
        let command = ["sleep".to_owned(), "30".to_owned()];
        let registry = driver.poll.registry().try_clone().unwrap();
        let helper = Helper::spawn(&command, SessionConfig::default(), &registry, 0).unwrap();
        let pid = helper.pid();
        let started = Instant::now();
        discard(&mut driver.discarded, &registry, started, helper);
        assert_eq!(driver.discarded.len(), 1);
        // Turns until it is reaped: bounded by the reaper's give-up time and then some.
        while !driver.discarded.is_empty() && started.elapsed() < Duration::from_secs(5) {
            let now = Instant::now();
            driver.turn(now);
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(driver.discarded.is_empty(), "not reaped in 5 s");
        // Reaped: no process (not even a zombie) is left with its pid.
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        assert!(stat.is_empty(), "{pid} still there: {stat}");
        kill(driver);
    }

    #[test]
    fn an_ended_campaigns_held_probes_are_dropped_not_sent_later() {
        let mut driver = idle_driver(1, 1);
        let now = Instant::now();
        let tcp = ProbeArgs::new([127, 0, 0, 1].into()).protocol(Protocol::Tcp);
        driver.quiet = vec![(SHARED, now + Duration::from_secs(60))];
        // Campaign 1 is abandoned by its caller while its probe is held.
        let key = crate::job::ProbeKey::for_test(1);
        driver.hold(Held {
            args: tcp.clone(),
            caller: Caller::Campaign(key),
            until: now + Duration::from_secs(60),
        });
        driver.end_campaign(1);
        assert!(
            driver.held.is_empty(),
            "held for no campaign: {}",
            driver.held.len()
        );
        // So it takes no room from a caller's probe: the one max_queue allows is held.
        let (done, outcome) = watched();
        let routed = driver.route_probe(now, tcp, Caller::Callback(done), None);
        assert!(routed.is_ok());
        let early = outcome.try_recv();
        assert!(early.is_err(), "refused: {early:?}");
        assert_eq!(driver.held.len(), 1);
        kill(driver);
    }

    #[test]
    fn an_ended_campaigns_probes_waiting_in_a_helpers_backlog_are_dropped() {
        let mut driver = idle_driver(1, 1);
        let now = Instant::now();
        let tcp = ProbeArgs::new([127, 0, 0, 1].into()).protocol(Protocol::Tcp);
        // Held back in the backlog, as while another helper's probes are in flight.
        driver.slots[0].helper.set_gated(true);
        for job in [1, 1, 2] {
            let key = crate::job::ProbeKey::for_test(job);
            assert!(
                driver
                    .route_probe(now, tcp.clone(), Caller::Campaign(key), None)
                    .is_ok()
            );
        }
        assert_eq!(driver.slots[0].helper.load(), 3);
        driver.end_campaign(1);
        // Campaign 2's probe waits on; campaign 1's would have gone out for no one.
        assert_eq!(driver.slots[0].helper.load(), 1);
        assert!(driver.slots[0].helper.holds(SHARED));
        driver.end_campaign(2);
        assert_eq!(driver.slots[0].helper.load(), 0);
        assert!(!driver.slots[0].helper.holds(SHARED));
        kill(driver);
    }

    #[test]
    fn pids_equal_modulo_65536_share_an_icmp_id() {
        assert!(same_icmp_id(4242, 4242 + 65536));
        assert!(same_icmp_id(70000, 70000 + 3 * 65536));
        assert!(!same_icmp_id(4242, 4243));
        assert!(!same_icmp_id(65535, 65536));
    }

    #[test]
    fn a_pin_near_the_top_of_usize_finds_its_stand_in() {
        // usize::MAX is slot 1 of 2; slot 1 restarting, slot 0 stands in.
        assert_eq!(stand_in(usize::MAX, 2, |i| i == 0), Some(0));
        assert_eq!(stand_in(usize::MAX, 2, |_| true), Some(1));
        assert_eq!(stand_in(usize::MAX - 1, 3, |i| i == 1), Some(1));
        assert_eq!(stand_in(7, 3, |_| false), None);
        assert_eq!(stand_in(7, 0, |_| true), None);
    }

    #[test]
    fn a_pin_stays_with_its_stand_in_while_it_has_the_pin_in_flight() {
        // Slot 1 stood in for slot 0 and still has probes of the pin in flight: slot 0 is
        // back, yet they keep going to slot 1 (two helpers would cross their answers).
        assert_eq!(route(4, 2, |_| true, |_| true, |i| i == 1), Some(1));
        // Once they are done, the pin is slot 0's again.
        assert_eq!(route(4, 2, |_| true, |_| true, |_| false), Some(0));
        // A holder that takes no requests (ending) does not keep it.
        assert_eq!(route(4, 2, |i| i == 0, |i| i == 0, |i| i == 1), Some(0));
        // The pinned helper restarting: the stand-in, as before.
        assert_eq!(route(4, 3, |i| i != 1, |i| i != 1, |_| false), Some(2));
        // A holder whose stdin broke keeps it (and refuses the probe); with no holder, a
        // stand-in that takes probes.
        assert_eq!(route(4, 2, |_| true, |i| i == 0, |i| i == 1), Some(1));
        assert_eq!(route(5, 2, |_| true, |i| i == 0, |_| false), Some(0));
        assert_eq!(route(4, 0, |_| true, |_| true, |_| true), None);
    }

    #[test]
    fn a_request_racing_close_leaves_no_dormant_slot_to_restart_and_close_ends() {
        // One slot whose helper exits at once, having answered nothing and served no
        // caller, while some helper of the session did answer: dormant.
        let (send, commands) = crossbeam_channel::unbounded();
        let command = vec!["true".to_owned()];
        let (mut driver, _) = Driver::start(
            command,
            1,
            SessionConfig::default(),
            commands,
            Arc::default(),
        )
        .expect("true starts");
        driver.any_answered = true;
        let started = Instant::now();
        while driver.slots[0].dormant.is_none() && started.elapsed() < Duration::from_secs(5) {
            driver.slots[0].helper.set_readable();
            driver.slots[0].helper.read(Instant::now(), &mut [0u8; 64]);
            driver.turn(Instant::now());
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(driver.slots[0].dormant.is_some(), "not dormant in 5 s");
        // A caller's probe that passed the open check before another thread closed the
        // session arrives after the close.
        let close = Duration::from_millis(100);
        send.send(Command::Close { grace: close }).unwrap();
        let (done, outcome) = watched();
        let args = ProbeArgs::new([127, 0, 0, 1].into());
        send.send(Command::Probe { args, done }).unwrap();
        let closing = Instant::now();
        let mut finished = false;
        while !finished && closing.elapsed() < Duration::from_secs(3) {
            finished = driver.turn(Instant::now());
            std::thread::sleep(Duration::from_millis(5));
        }
        let ended = outcome.try_recv();
        assert!(
            matches!(ended, Ok(Err(Error::Process(ProcessError::Exited { .. })))),
            "{ended:?}"
        );
        // The driver stops (so `close` returns): no restart is pending while closing.
        assert!(
            finished,
            "not finished 3 s into a close of {close:?}: restart at {:?}",
            driver.slots[0]
                .restart_at
                .map(|at| at.saturating_duration_since(Instant::now()))
        );
        kill(driver);
    }
}
