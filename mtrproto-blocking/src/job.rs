//! A campaign's tracers as the driver thread runs them: which probes are due, the in-flight
//! budget, the rate cap, each probe's answer folded into its target's trace.
//!
//! The driver owns every running campaign, so a probe costs no channel message, no boxed
//! callback and no wake-up of another thread: it leaves from here to a helper, and its answer
//! comes back here keyed by a [`ProbeKey`]. Only per-target news crosses to the caller's
//! thread ([`JobEvent`]): a round's figures, a finished trace.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use mtrproto::{Flow, Hop, ProbeArgs, ProbeResult, ReplyKind, TraceStats, Tracer};

use crate::error::Error;

/// How late a campaign with room may send a due probe, so that one wake-up of the driver
/// serves every target due within it (the driver's other wake-ups send what is due at
/// once). A trace's probes go out one gap after the last, so this delay adds up along a
/// trace: the last targets of a campaign end later by it.
pub(crate) const TICK: Duration = Duration::from_millis(5);

/// About how often a campaign whose budget is used up wakes the driver, to use the room
/// answers freed: the longest period of its wake-ups' grid ([`grid_period`]), and the
/// length of a helper's rest while a campaign runs, so that a rest begun at one point
/// ends after the next. Longer leaves window slots idle for longer after an answer frees
/// them (at scale, 20 ms against 10 ms cost about 1% of probes/s), shorter costs a wake-up
/// more often (at scale, 10 ms against 20 ms nearly doubled the wake-ups and cost the
/// driver thread about 50% more CPU).
pub(crate) const FULL_TICK: Duration = Duration::from_millis(20);

/// How long its probes must hold their window slots on average for its wake-ups with the
/// budget used up to fall on its grid ([`Job::gridded`]): five of its periods, so that the
/// grid's longer wait for freed room (half a period less half a [`TICK`], 7.5 ms on
/// average) costs at most about 7.5% of its probes/s, and about 1% at scale, where they
/// hold their slots about 340 ms and the no-replies wait for no point. Ten periods kept a
/// scale run off the grid for longer at its start, where the first answers come fast and
/// the no-replies a timeout later (K=1: 78 wake-ups/s against 63/s).
const GRID_HOLD: Duration = Duration::from_millis(100);

/// How long after a probe's timeout the helper's no-reply is read: the grid's points fall
/// this long after the timeouts of the probes sent at an earlier point, so that those
/// answers are read at once instead of a tick later on average (the helper sends and times
/// out a batch within about a millisecond, and a wake-up may be a millisecond late).
const REACTION: Duration = Duration::from_millis(2);

/// The period of a campaign's grid: at most [`FULL_TICK`] and near it, and dividing the
/// probes' timeout plus [`REACTION`] (their helper-side timeout is in whole seconds), so
/// that probes sent at a point of the grid time out just before a later point. Never above
/// [`FULL_TICK`], the length of a helper's rest while a campaign runs: a rest begun at a
/// wake-up then ends after the grid's next point, whose wake-up reads the output anyway,
/// and so makes no wake-up of its own.
fn grid_period(timeout: Duration) -> Duration {
    let span = timeout.saturating_add(REACTION).as_nanos();
    let points = span.div_ceil(FULL_TICK.as_nanos()).max(1);
    u64::try_from(span / points).map_or(FULL_TICK, Duration::from_nanos)
}

/// The bits of a heap entry that hold the slot: targets traced at once are at most
/// [`MAX_ACTIVE`].
const SLOT_BITS: u32 = 24;

/// Waiting targets whose state one turn reads ahead at most ([`Job::warm_waiting`]): about
/// what a turn sends at scale, several times over.
const WARM_AHEAD: usize = 64;

/// Targets one campaign traces at once at most.
pub(crate) const MAX_ACTIVE: usize = 1 << SLOT_BITS;

/// Round events waiting for the caller at most: past this, rounds go unreported until it
/// catches up (each holds a copy of a target's figures; a finished trace is always reported).
pub(crate) const ROUNDS_WAITING: usize = 256;

/// Who a campaign probe's answer is for: the campaign, the target's slot and generation
/// (a slot is reused once its target ends), the TTL and flow it was sent at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProbeKey {
    pub(crate) job: u32,
    slot: u32,
    generation: u64,
    ttl: u8,
    flow: Option<Flow>,
}

#[cfg(test)]
impl ProbeKey {
    /// A key of campaign `job`, for the driver's tests.
    pub(crate) fn for_test(job: u32) -> ProbeKey {
        ProbeKey {
            job,
            slot: 0,
            generation: 0,
            ttl: 1,
            flow: None,
        }
    }
}

/// The campaign's probe counts so far.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Counts {
    pub(crate) probes: u64,
    pub(crate) peak_in_flight: usize,
    pub(crate) answered: u64,
    pub(crate) exhausted: u64,
    pub(crate) lost: u64,
    pub(crate) no_reply: u64,
    pub(crate) refused: u64,
}

/// What a campaign tells the caller's thread.
pub(crate) enum JobEvent {
    /// A target's trace sent a round: a copy of its figures so far.
    Round {
        index: usize,
        round: u32,
        stats: TraceStats,
    },
    /// A target's trace ended. Boxed: every event waiting in the channel takes the room of
    /// the largest, and rounds are the many.
    Done { index: usize, end: Box<TraceEnd> },
    /// No target is being traced and no probe is in flight: the campaign's counts are
    /// final unless more targets come.
    Settled { counts: Counts },
}

/// How a target's trace ended (at a probe the helper refused, if `refused`: its TTL and
/// reply), and the campaign's counts as of then.
pub(crate) struct TraceEnd {
    pub(crate) refused: Option<(u8, ReplyKind<'static>)>,
    pub(crate) stats: TraceStats,
    pub(crate) flows: Vec<TraceStats>,
    pub(crate) counts: Counts,
}

/// A slot's schedule, kept apart from its target in a dense table: every heap entry and
/// waiting target is checked here, and a target whose probe is due while the budget is used
/// up is parked in [`Job::waiting`] from here, its trace (several cache lines, seldom still
/// in the cache at scale) untouched until the probe is sent.
#[derive(Debug, Clone, Copy)]
struct Schedule {
    /// The generation of the slot's target (its last one's once it ended).
    generation: u64,
    /// The deadline, below [`Schedule::PROBE`], and two flags, in one word: 16 bytes per
    /// target where three fields take 24, and a campaign holds thousands.
    word: u64,
}

impl Schedule {
    /// Whether the deadline is a probe's ([`Tracer::is_sending`]), not a trace's end.
    const PROBE: u64 = 1 << 63;
    /// In [`Job::waiting`]: off the heap until it is served from there.
    const WAITING: u64 = 1 << 62;

    fn new(generation: u64) -> Schedule {
        Schedule {
            generation,
            word: UNSCHEDULED,
        }
    }

    /// The deadline last pushed on the heap for it ([`Job::millis`]), [`UNSCHEDULED`] when
    /// none.
    fn deadline(self) -> u64 {
        self.word & UNSCHEDULED
    }

    fn set_deadline(&mut self, deadline: u64) {
        self.word = self.word & !UNSCHEDULED | deadline & UNSCHEDULED;
    }

    fn probe(self) -> bool {
        self.word & Schedule::PROBE != 0
    }

    fn set_probe(&mut self, probe: bool) {
        self.set(Schedule::PROBE, probe);
    }

    fn waiting(self) -> bool {
        self.word & Schedule::WAITING != 0
    }

    fn set_waiting(&mut self, waiting: bool) {
        self.set(Schedule::WAITING, waiting);
    }

    fn set(&mut self, flag: u64, value: bool) {
        if value {
            self.word |= flag;
        } else {
            self.word &= !flag;
        }
    }
}

/// [`Schedule::deadline`] of a slot with nothing on the heap: above every deadline
/// [`Job::millis`] gives (at most `u64::MAX >> SLOT_BITS`), below the schedule's flags.
const UNSCHEDULED: u64 = Schedule::WAITING - 1;
const _: () = assert!(UNSCHEDULED > u64::MAX >> SLOT_BITS);

/// A running campaign, owned by the driver thread.
pub(crate) struct Job {
    id: u32,
    budget: usize,
    /// The time between probes under a rate cap.
    period: Option<Duration>,
    next_allowed: Instant,
    /// The targets being traced, each at its caller's ticket (`campaign.rs`: a dense table
    /// there too, a ticket reused only once its target's report came back, so after its
    /// slot here was freed), which its events name it by. Boxed, as they came: an entry is
    /// 8 bytes, so the table's room past its length (up to as much again, as it grows by
    /// doubling) costs little.
    slots: Vec<Option<Box<Tracer>>>,
    /// Each slot's schedule, at the slot's index.
    schedules: Vec<Schedule>,
    /// The slots holding a target.
    active: usize,
    /// What the heap's deadlines count from.
    base: Instant,
    /// Each target's next deadline, earliest first, as one number: the deadline in whole
    /// milliseconds from `base` (rounded up) above [`SLOT_BITS`], the slot below. Entries
    /// whose deadline is no longer their target's are skipped when popped.
    heap: BinaryHeap<Reverse<u64>>,
    /// Slots with a probe due while the budget was used up or the rate held it back, oldest
    /// first, with their generation: off the heap (so that the driver does not wake for
    /// them, and due traces' ends behind them are not held back) and served first, one per
    /// unit of room an answer frees or per slot of the rate (not all put back on the heap).
    waiting: VecDeque<(u32, u64)>,
    generation: u64,
    in_flight: usize,
    /// Probes it may have out now as the helpers' windows allow ([`Job::set_room`]): their
    /// room less the probes of ended campaigns still out, which no budget counts.
    room: usize,
    /// Answers it took: with the time its probes were out, they tell how long its probes
    /// hold their slots ([`Job::gridded`]).
    answers: u64,
    /// The time its probes were out, summed over them, in microseconds: its probes in
    /// flight over time, counted at each answer and each look ([`Job::count_hold`]).
    held_micros: u64,
    /// Up to when `held_micros` is counted.
    held_to: Option<Instant>,
    /// When it sent its first probe.
    first_probe: Option<Instant>,
    counts: Counts,
    /// When it last looked for due probes.
    last_look: Option<Instant>,
    /// The timeout of the probes it sends and the period of the grid, from `base`, that
    /// its wake-ups fall on ([`grid_period`]).
    grid: (Duration, Duration),
    /// Whether the caller wants round events.
    rounds: bool,
    events: Sender<JobEvent>,
    /// Round events sent and not yet taken by the caller.
    rounds_waiting: Arc<AtomicUsize>,
}

impl Job {
    pub(crate) fn new(
        id: u32,
        budget: usize,
        rate: Option<u32>,
        rounds: bool,
        events: Sender<JobEvent>,
        rounds_waiting: Arc<AtomicUsize>,
        now: Instant,
    ) -> Job {
        Job {
            id,
            budget: budget.max(1),
            period: rate.map(|r| Duration::from_secs(1) / r.max(1)),
            next_allowed: now,
            slots: Vec::new(),
            schedules: Vec::new(),
            active: 0,
            base: now,
            heap: BinaryHeap::new(),
            waiting: VecDeque::new(),
            generation: 0,
            in_flight: 0,
            room: usize::MAX,
            answers: 0,
            held_micros: 0,
            held_to: None,
            first_probe: None,
            counts: Counts::default(),
            last_look: None,
            grid: (Duration::ZERO, FULL_TICK),
            rounds,
            events,
            rounds_waiting,
        }
    }

    pub(crate) fn id(&self) -> u32 {
        self.id
    }

    /// Its probes handed to the helpers and not yet answered.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// How many probes the helpers' windows take now, less those other campaigns left out
    /// when they ended (still in the helpers' tables until answered): a probe sent past it
    /// would wait in a helper's backlog while its trace's clock runs, its answer then late
    /// for the trace's grace.
    pub(crate) fn set_room(&mut self, room: usize) {
        self.room = room;
    }

    /// Probes it may have out at once now: its budget, within the room.
    fn limit(&self) -> usize {
        self.budget.min(self.room)
    }

    /// Starts tracing a target under the caller's `ticket`: below [`MAX_ACTIVE`], and not
    /// one of a target still traced (the caller reuses a ticket once its report came).
    pub(crate) fn add(&mut self, ticket: usize, tracer: Box<Tracer>) {
        let Some(slot) = u32::try_from(ticket).ok().filter(|_| ticket < MAX_ACTIVE) else {
            return;
        };
        if self.slots.len() <= ticket {
            // Tickets are dense: the next one is at most the table's length.
            self.slots.resize_with(ticket + 1, || None);
            self.schedules.resize(ticket + 1, Schedule::new(0));
        }
        self.generation += 1;
        let entry = &mut self.slots[ticket];
        debug_assert!(entry.is_none(), "ticket {ticket} reused while traced");
        if entry.replace(tracer).is_none() {
            self.active += 1;
        }
        self.schedules[ticket] = Schedule::new(self.generation);
        self.schedule(slot);
    }

    /// When the driver must come back to send due probes or end a trace: the earliest
    /// target's deadline (or the rate's next slot for targets waiting), at most once per
    /// [`TICK`]. While the budget is used up, targets waiting to send are off the heap, so
    /// this is a trace's end or a probe to park, put off to the next point of its grid
    /// ([`grid_period`]), where the turn also uses the room the answers since freed.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        let full = self.in_flight >= self.limit();
        // The earliest target's deadline: a probe to send or to queue in `waiting` while
        // the budget or the rate holds it back, or a trace's end, which neither holds back.
        let due = self
            .heap
            .peek()
            .map(|&Reverse(entry)| self.base + Duration::from_millis(entry >> SLOT_BITS));
        let at = if !full && !self.waiting.is_empty() {
            // Room for a target that waited: due as the rate allows.
            Some(due.map_or(self.next_allowed, |due| due.min(self.next_allowed)))
        } else {
            due
        }?;
        if !full || !self.gridded() {
            return Some(self.last_look.map_or(at, |last| at.max(last + TICK)));
        }
        let after = self
            .last_look
            .map_or(at, |last| at.max(last + Duration::from_nanos(1)));
        Some(self.on_grid(after))
    }

    /// Whether targets wait for room with its budget used up.
    fn waits_for_room(&self) -> bool {
        self.in_flight >= self.limit() && !self.waiting.is_empty()
    }

    /// Whether its wake-ups with the budget used up fall on its grid: the helpers' windows
    /// bind, and its probes hold their slots [`GRID_HOLD`] or more on average, as at scale,
    /// where most of the slots' time goes to no-replies at the tables' timeouts. The hold is
    /// the time its probes were out over its answers (`held_micros`, not the room times
    /// the time since its first probe: a campaign whose windows bind in bursts, its
    /// targets due at once each round, spends most of its time with nothing out, and
    /// would seem to hold its slots long), judged once its first probes had [`GRID_HOLD`]
    /// to come back (before, without answers, any campaign would seem to hold its slots
    /// long). Under the caller's `max_in_flight` below the windows, or with small windows
    /// on paths that answer fast, answers come back within a tick, and the grid would
    /// leave the room idle four times as long as the [`TICK`] does.
    fn gridded(&self) -> bool {
        let since = match (self.first_probe, self.last_look) {
            (Some(first), Some(last)) => last.saturating_duration_since(first),
            _ => return false,
        };
        let hold = u64::try_from(GRID_HOLD.as_micros()).unwrap_or(u64::MAX);
        self.room <= self.budget
            && since >= GRID_HOLD
            && self.answers.saturating_mul(hold) <= self.held_micros
    }

    /// Adds the time since the last count, times its probes out meanwhile, to
    /// `held_micros`: called before `in_flight` changes, at an answer or a look.
    fn count_hold(&mut self, now: Instant) {
        if let Some(from) = self.held_to {
            let micros =
                u64::try_from(now.saturating_duration_since(from).as_micros()).unwrap_or(u64::MAX);
            let out = u64::try_from(self.in_flight).unwrap_or(u64::MAX);
            self.held_micros = self.held_micros.saturating_add(micros.saturating_mul(out));
        }
        self.held_to = Some(now);
    }

    /// While targets wait for room: the next point of its grid after its last look ([`TICK`]
    /// after it under the caller's own cap, [`Job::gridded`]). A resting stdout (out of the
    /// poll, `helper.rs`) holds the answers that free room until the driver's next wake-up,
    /// which [`Job::deadline`] may put a trace's gap or more later: the driver comes back
    /// for them at this while a helper rests.
    pub(crate) fn room_deadline(&self) -> Option<Instant> {
        let last = self.last_look?;
        if !self.waits_for_room() {
            return None;
        }
        Some(if self.gridded() {
            self.on_grid(last + Duration::from_nanos(1))
        } else {
            last + TICK
        })
    }

    /// The first point of its grid at or after `at` (`at` itself past what an `Instant`
    /// holds).
    fn on_grid(&self, at: Instant) -> Instant {
        let since = at.saturating_duration_since(self.base).as_nanos();
        let period = self.grid.1.as_nanos().max(1);
        u64::try_from(since.div_ceil(period).saturating_mul(period))
            .ok()
            .and_then(|nanos| self.base.checked_add(Duration::from_nanos(nanos)))
            .unwrap_or(at)
    }

    /// Folds a completed probe into its target's trace.
    pub(crate) fn answer(
        &mut self,
        now: Instant,
        key: ProbeKey,
        result: &Result<ProbeResult, Error>,
    ) {
        // Room again: the next `send_due` serves the targets that waited for it.
        self.count_hold(now);
        self.in_flight = self.in_flight.saturating_sub(1);
        self.answers += 1;
        if result.is_ok() {
            self.counts.answered += 1;
        }
        match result {
            Ok(r) if r.result == ReplyKind::ProbesExhausted => self.counts.exhausted += 1,
            Ok(r) if r.result == ReplyKind::NoReply => self.counts.no_reply += 1,
            Ok(r) if r.result.is_refusal() => self.counts.refused += 1,
            Ok(_) => {}
            Err(_) => self.counts.lost += 1,
        }
        let current = self
            .schedules
            .get(key.slot as usize)
            .is_some_and(|s| s.generation == key.generation);
        let Some(Some(active)) = self.slots.get_mut(key.slot as usize).filter(|_| current) else {
            // A probe of a target that already ended.
            return self.settle();
        };
        match result {
            Ok(result) => active.handle_flow_result(now, key.ttl, key.flow, result),
            Err(_) => active.handle_lost(now, key.ttl),
        }
        self.finish_or_schedule(key.slot);
    }

    /// Reads what folding `key`'s answer will read (its target's trace, the hop's figures)
    /// and changes nothing. The driver calls it for a whole batch of answers first: the
    /// cache misses on each target's state, at scale most of an answer's cost, then overlap
    /// instead of coming one after the other.
    pub(crate) fn warm(&self, key: &ProbeKey) {
        if let Some(Some(active)) = self.slots.get(key.slot as usize) {
            let stats = active.stats();
            std::hint::black_box(stats.hop(key.ttl).map(Hop::received));
        }
    }

    /// Reads what sending the probes of the first `room` waiting targets (at most
    /// [`WARM_AHEAD`]) will read, their schedules, traces and the hops they probe next, and
    /// changes nothing: as for a batch of answers ([`Job::warm`]), their cache misses then
    /// overlap. While the budget is used up, the room answers free is served from
    /// `waiting`, so at scale nearly every probe leaves from there.
    fn warm_waiting(&self, room: usize) {
        for &(slot, _) in self.waiting.iter().take(room.min(WARM_AHEAD)) {
            let generation = self.schedules.get(slot as usize).map(|s| s.generation);
            if let Some(Some(active)) = self.slots.get(slot as usize) {
                let tracer = &**active;
                let hop = tracer.next_ttl().and_then(|ttl| tracer.stats().hop(ttl));
                std::hint::black_box((generation, hop.map(Hop::in_flight)));
            }
        }
    }

    /// Sends the probes that are due, earliest deadline first, within the budget and rate,
    /// through `send` (which routes one to a helper, or fails when no helper takes it).
    pub(crate) fn send_due(
        &mut self,
        now: Instant,
        mut send: impl FnMut(ProbeArgs, ProbeKey) -> Result<(), Error>,
    ) {
        self.last_look = Some(now);
        self.count_hold(now);
        // Whole milliseconds, rounded down: a deadline (rounded up) is due at most this.
        let now_millis = self.millis(now, false);
        if self.next_allowed <= now {
            self.warm_waiting(self.limit().saturating_sub(self.in_flight));
        }
        loop {
            // No probe may leave now (no room, or the rate's next slot is later): due
            // traces still end, due probes wait in `waiting`.
            let held = self.in_flight >= self.limit() || self.next_allowed > now;
            if !held && let Some((slot, generation)) = self.waiting.pop_front() {
                if let Some(schedule) = self.schedules.get_mut(slot as usize)
                    && schedule.generation == generation
                    && schedule.waiting()
                    && let Some(Some(active)) = self.slots.get_mut(slot as usize)
                {
                    schedule.set_waiting(false);
                    active.handle_timeout(now);
                    self.send_one(now, slot, &mut send);
                }
                continue;
            }
            let Some(&Reverse(entry)) = self.heap.peek() else {
                return;
            };
            let deadline = entry >> SLOT_BITS;
            if deadline > now_millis {
                return;
            }
            self.heap.pop();
            let slot = (entry & ((1 << SLOT_BITS) - 1)) as u32;
            let Some(schedule) = self.schedules.get_mut(slot as usize) else {
                continue;
            };
            // A stale entry (even one of a target that held the slot before: its deadline
            // would then be this target's own).
            if schedule.deadline() != deadline {
                continue;
            }
            schedule.set_deadline(UNSCHEDULED);
            if held && schedule.probe() {
                // A probe waits for room or the rate, its trace untouched till then.
                schedule.set_waiting(true);
                self.waiting.push_back((slot, schedule.generation));
                continue;
            }
            let Some(Some(active)) = self.slots.get_mut(slot as usize) else {
                continue;
            };
            active.handle_timeout(now);
            if held {
                // Only a trace's end is due now; a probe waits for room or the rate.
                let probe_due =
                    !active.is_done() && active.poll_timeout().is_some_and(|at| at <= now);
                match self.schedules.get_mut(slot as usize) {
                    Some(schedule) if probe_due => {
                        schedule.set_waiting(true);
                        self.waiting.push_back((slot, schedule.generation));
                    }
                    _ => self.finish_or_schedule(slot),
                }
                continue;
            }
            self.send_one(now, slot, &mut send);
        }
    }

    /// Sends the slot's due probe, if its tracer has one, then ends its trace or schedules
    /// its next deadline.
    fn send_one(
        &mut self,
        now: Instant,
        slot: u32,
        send: &mut impl FnMut(ProbeArgs, ProbeKey) -> Result<(), Error>,
    ) {
        let (Some(Some(active)), Some(schedule)) = (
            self.slots.get_mut(slot as usize),
            self.schedules.get(slot as usize),
        ) else {
            return;
        };
        let generation = schedule.generation;
        let round = active.rounds_completed();
        if let Some(probe) = active.poll_probe(now) {
            let timeout = probe.args().effective_timeout();
            if timeout != self.grid.0 {
                self.grid = (timeout, grid_period(timeout));
            }
            let key = ProbeKey {
                job: self.id,
                slot,
                generation,
                ttl: probe.ttl(),
                flow: probe.flow(),
            };
            self.counts.probes += 1;
            match send(probe.into_args(), key) {
                Ok(()) => {
                    self.first_probe.get_or_insert(now);
                    self.in_flight += 1;
                    self.counts.peak_in_flight = self.counts.peak_in_flight.max(self.in_flight);
                }
                // No helper takes it: lost, as the helper's end would make it.
                Err(_) => {
                    self.counts.lost += 1;
                    active.handle_lost(now, key.ttl);
                }
            }
            if let Some(period) = self.period {
                // Sending at most once per TICK on its own, a rate above one probe per
                // TICK needs up to a TICK's worth of probes at once.
                let credit = TICK.saturating_sub(period);
                let floor = now.checked_sub(credit).unwrap_or(now);
                self.next_allowed = self.next_allowed.max(floor) + period;
            }
            let rounds = active.rounds_completed();
            if self.rounds
                && round < rounds
                && self.rounds_waiting.load(Ordering::Acquire) < ROUNDS_WAITING
            {
                self.rounds_waiting.fetch_add(1, Ordering::AcqRel);
                let _ = self.events.send(JobEvent::Round {
                    index: slot as usize,
                    round: rounds,
                    stats: active.stats().clone(),
                });
            }
        }
        self.finish_or_schedule(slot);
    }

    /// `at` in whole milliseconds from `base`, rounded up or down, within the heap
    /// entry's bits (about 34 years).
    fn millis(&self, at: Instant, up: bool) -> u64 {
        let since = at.saturating_duration_since(self.base);
        let mut millis = since.as_millis();
        if up && !since.subsec_nanos().is_multiple_of(1_000_000) {
            millis += 1;
        }
        u64::try_from(millis)
            .map_or(u64::MAX, |m| m)
            .min(u64::MAX >> SLOT_BITS)
    }

    /// Pushes the slot's next deadline if it changed.
    fn schedule(&mut self, slot: u32) {
        let (next, probe) = match self.slots.get(slot as usize) {
            Some(Some(active)) => (active.poll_timeout(), active.is_sending()),
            _ => return,
        };
        let next = next.map_or(UNSCHEDULED, |at| self.millis(at, true));
        let Some(schedule) = self.schedules.get_mut(slot as usize) else {
            return;
        };
        // A waiting target is served from `waiting`, whatever its deadline now.
        if schedule.waiting() {
            return;
        }
        // Set even when the deadline stays: it may now be a trace's end, not a probe's.
        schedule.set_probe(probe);
        if next != schedule.deadline() {
            schedule.set_deadline(next);
            if next != UNSCHEDULED {
                self.heap.push(Reverse(next << SLOT_BITS | u64::from(slot)));
            }
        }
    }

    /// Ends the slot's trace if it is done (its report goes to the caller), else pushes its
    /// next deadline.
    fn finish_or_schedule(&mut self, slot: u32) {
        match self.slots.get_mut(slot as usize) {
            Some(entry) if entry.as_ref().is_some_and(|a| a.is_done()) => {
                if let Some(active) = entry.take() {
                    self.active -= 1;
                    if let Some(schedule) = self.schedules.get_mut(slot as usize) {
                        // Its heap entry, if any, is stale from now on.
                        schedule.set_deadline(UNSCHEDULED);
                        schedule.set_waiting(false);
                    }
                    let refused = active.refused().map(|(ttl, r)| (ttl, r.clone()));
                    let (stats, flows) = active.into_flow_stats();
                    let end = TraceEnd {
                        refused,
                        stats,
                        flows,
                        counts: self.counts,
                    };
                    let _ = self.events.send(JobEvent::Done {
                        index: slot as usize,
                        end: Box::new(end),
                    });
                    self.settle();
                }
            }
            _ => self.schedule(slot),
        }
    }

    /// Tells the caller the final counts once no target is traced and no probe is in flight
    /// (answers after the last target's end count too).
    fn settle(&mut self) {
        if self.in_flight == 0 && self.active == 0 {
            let _ = self.events.send(JobEvent::Settled {
                counts: self.counts,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mtrproto::{ProbeArgs, TraceConfig};

    /// A campaign started at `now` with a budget of one probe and one target at 127.0.0.1
    /// probed with `timeout`, at a 3 s interval: its probes, each answered at the next
    /// one's wake-up, hold the budget's one slot longer than [`GRID_HOLD`], as at scale.
    fn job_with_target(now: Instant, timeout: Duration) -> Job {
        let (events, _) = crossbeam_channel::unbounded();
        let mut job = Job::new(1, 1, None, false, events, Arc::default(), now);
        // The helpers' windows hold one probe: they bind, not a cap of the caller's.
        job.set_room(1);
        let config = TraceConfig {
            timeout,
            cycles: 3,
            max_ttl: 8,
            interval: Duration::from_secs(3),
            ..TraceConfig::default()
        };
        let args = ProbeArgs::new("127.0.0.1".parse().unwrap());
        let tracer = Tracer::new(args, &config, now).unwrap();
        job.add(0, Box::new(tracer));
        // Its hold judged from `now`, as if an earlier probe had gone out then: its first
        // probe, at the trace's start, comes a GRID_HOLD and more later.
        job.first_probe = Some(now);
        job
    }

    /// Whether `at` is a point of the job's grid, to the nanosecond.
    fn on_grid(job: &Job, at: Instant) -> bool {
        let since = at.duration_since(job.base).as_nanos();
        since.is_multiple_of(job.grid.1.as_nanos())
    }

    #[test]
    fn an_event_waiting_for_the_caller_is_small() {
        // Each waiting event takes the room of the largest variant: a round's (its figures'
        // inline part), the report boxed.
        assert!(std::mem::size_of::<JobEvent>() <= 80);
    }

    #[test]
    fn a_schedule_is_two_words_and_keeps_its_flags_apart() {
        assert_eq!(std::mem::size_of::<Schedule>(), 16);
        let mut schedule = Schedule::new(7);
        assert_eq!(schedule.deadline(), UNSCHEDULED);
        schedule.set_probe(true);
        schedule.set_waiting(true);
        schedule.set_deadline(u64::MAX >> SLOT_BITS);
        assert_eq!(schedule.deadline(), u64::MAX >> SLOT_BITS);
        assert!(schedule.probe() && schedule.waiting());
        schedule.set_deadline(UNSCHEDULED);
        schedule.set_probe(false);
        assert_eq!(schedule.deadline(), UNSCHEDULED);
        assert!(!schedule.probe() && schedule.waiting());
        schedule.set_waiting(false);
        assert_eq!((schedule.word, schedule.generation), (UNSCHEDULED, 7));
    }

    #[test]
    fn the_grid_period_is_near_the_tick_and_divides_the_timeout_and_reaction() {
        for secs in [1, 2, 3, 7, 10, 60, 255] {
            let timeout = Duration::from_secs(secs);
            let period = grid_period(timeout);
            let span = (timeout + REACTION).as_nanos();
            let points = span / period.as_nanos();
            // Within a nanosecond per point of the span: a point falls that close to it.
            assert!(
                span - points * period.as_nanos() < points,
                "{secs} s: {period:?}"
            );
            // Never above a helper's rest, and within 2% of it (the span is 1 s or more).
            assert!(period <= FULL_TICK, "{secs} s: {period:?}");
            assert!(FULL_TICK - period <= FULL_TICK / 50, "{secs} s: {period:?}");
        }
    }

    #[test]
    fn a_campaign_with_its_budget_used_up_wakes_on_its_grid_just_after_its_probes_time_out() {
        let start = Instant::now();
        let timeout = Duration::from_secs(1);
        let mut job = job_with_target(start, timeout);
        let mut sent = Vec::new();
        let mut out = None;
        let mut now = start;
        // Each wake-up at the deadline the job asks for, late by 0.3 ms as a poll is; the
        // probe out is lost there, and the next one goes out.
        for _ in 0..200 {
            if let Some(key) = out.take() {
                job.answer(now, key, &Err(Error::QueueFull(0)));
            }
            job.send_due(now, |args, key| {
                sent.push((now, args.effective_timeout()));
                out = Some(key);
                Ok(())
            });
            let Some(next) = job.deadline() else { break };
            assert!(next > now, "a deadline at or before the last look");
            if job.in_flight() > 0 {
                assert!(on_grid(&job, next), "{:?} off the grid", next - start);
            }
            now = next + Duration::from_micros(300);
        }
        assert!(sent.len() >= 8, "{} probes sent", sent.len());
        assert_eq!(job.grid, (timeout, grid_period(timeout)));
        // A probe sent at a wake-up times out REACTION less the lateness before a point.
        for &(at, timeout) in &sent[1..] {
            let expiry = at + timeout;
            let wait = job.on_grid(expiry) - expiry;
            assert!(
                wait <= REACTION && wait >= REACTION - Duration::from_micros(301),
                "{wait:?}"
            );
        }
    }

    #[test]
    fn a_campaign_whose_targets_wait_for_room_wakes_at_its_grids_next_point() {
        let start = Instant::now();
        let (events, _) = crossbeam_channel::unbounded();
        // A budget of one probe and two targets: one probe goes out, the other target waits
        // for the room its answer frees.
        let mut job = Job::new(1, 1, None, false, events, Arc::default(), start);
        job.set_room(1);
        let args = ProbeArgs::new("127.0.0.1".parse().unwrap());
        let mut due = start;
        for index in 0..2 {
            let tracer = Tracer::new(args.clone(), &TraceConfig::default(), start).unwrap();
            due = tracer.poll_timeout().unwrap();
            job.add(index, Box::new(tracer));
        }
        // Its hold judged as if its first probe had gone out a GRID_HOLD before.
        job.first_probe = due.checked_sub(GRID_HOLD);
        job.send_due(due, |_, _| Ok(()));
        assert_eq!((job.in_flight(), job.waiting.len()), (1, 1));
        let next = job.on_grid(due + Duration::from_nanos(1));
        // A helper's stdout resting (out of the poll) holds the answer until a wake-up: the
        // grid's next point is one, not the first trace's next probe a gap later.
        assert!(job.waits_for_room() && job.gridded());
        let deadline = job.room_deadline();
        assert_eq!(deadline, Some(next), "{:?}", deadline.map(|d| d - due));
        assert!(job.deadline().is_some_and(|at| at > next));
        // Its answer frees the room: nothing waits for it any more.
        job.answer(due, ProbeKey::for_test(1), &Err(Error::QueueFull(0)));
        job.send_due(next, |_, _| Ok(()));
        assert_eq!((job.in_flight(), job.waiting.len()), (1, 0));
        assert_eq!(job.room_deadline(), None);
    }

    /// A job of `targets` traces of 127.0.0.1 by `config` with this budget and the helpers'
    /// room.
    fn job_of_loopback_targets(
        start: Instant,
        budget: usize,
        room: usize,
        targets: usize,
        config: &TraceConfig,
    ) -> Job {
        let (events, _) = crossbeam_channel::unbounded();
        let mut job = Job::new(1, budget, None, false, events, Arc::default(), start);
        job.set_room(room);
        let args = ProbeArgs::new("127.0.0.1".parse().unwrap());
        for index in 0..targets {
            let tracer = Tracer::new(args.clone(), config, start).unwrap();
            job.add(index, Box::new(tracer));
        }
        job
    }

    /// Drives `job` from `start` until `end`, at each wake-up the driver's next deadline,
    /// every probe sent answered with `result` at the next: when each probe went out. With
    /// `rests`, its answers are read as from a resting stdout, whose rest's end (a
    /// campaign's [`FULL_TICK`] after the last read) is a wake-up too.
    fn send_times(
        job: &mut Job,
        (start, end): (Instant, Instant),
        result: &Result<ProbeResult, Error>,
        rests: bool,
    ) -> Vec<Instant> {
        let mut sent = Vec::new();
        let mut out = Vec::new();
        let mut now = start;
        while now < end {
            for key in out.drain(..) {
                job.answer(now, key, result);
            }
            job.send_due(now, |_, key| {
                sent.push(now);
                out.push(key);
                Ok(())
            });
            let rest_end = (rests && !out.is_empty()).then_some(now + FULL_TICK);
            let next = [job.deadline(), job.room_deadline(), rest_end]
                .into_iter()
                .flatten()
                .min();
            let Some(next) = next else { break };
            assert!(next > now, "a deadline at or before the last look");
            now = next;
        }
        sent
    }

    /// A reply from 127.0.0.1 after 0.1 ms.
    fn fast_reply() -> Result<ProbeResult, Error> {
        Ok(ProbeResult {
            result: ReplyKind::Reply,
            time: Some(Duration::from_micros(100)),
            unusable_time_us: None,
            responder: Some("127.0.0.1".parse().unwrap()),
            mpls: Default::default(),
        })
    }

    /// Drives `job` for 200 ms of wake-ups ([`send_times`], no rests): how many probes went
    /// out in the first 100 ms after the first.
    fn probes_in_100_ms_answered_at_once(
        job: &mut Job,
        start: Instant,
        result: &Result<ProbeResult, Error>,
    ) -> usize {
        let sent = send_times(
            job,
            (start, start + Duration::from_millis(200)),
            result,
            false,
        );
        let first = sent[0];
        sent.iter()
            .filter(|&&at| at < first + Duration::from_millis(100))
            .count()
    }

    #[test]
    fn a_campaign_held_by_its_own_cap_below_the_windows_comes_back_within_a_tick() {
        let start = Instant::now();
        // The caller's cap of one probe, far below the helpers' windows: its answers come
        // back as fast as the path answers (here 0.1 ms), not at the tables' timeouts.
        let mut job = job_of_loopback_targets(start, 1, 1024, 50, &TraceConfig::default());
        // One probe out per tick, as with room: not one per point of a 10 ms grid.
        let within = probes_in_100_ms_answered_at_once(&mut job, start, &Err(Error::QueueFull(0)));
        assert!(within >= 19, "{within} probes in 100 ms");
        assert!(!job.gridded());
    }

    #[test]
    fn a_campaign_whose_small_windows_bind_on_fast_answers_comes_back_within_a_tick() {
        let start = Instant::now();
        // The helpers' windows hold two probes and bind (the default budget, their whole
        // room), but the path answers in 0.1 ms, not at the tables' timeouts.
        let mut job = job_of_loopback_targets(start, 2, 2, 100, &TraceConfig::default());
        // Two probes out per tick, as with room: not two per point of a 10 ms grid.
        let within = probes_in_100_ms_answered_at_once(&mut job, start, &fast_reply());
        assert!(within >= 36, "{within} probes in 100 ms");
        assert!(!job.gridded());
    }

    #[test]
    fn a_campaign_whose_small_windows_bind_in_bursts_on_fast_answers_comes_back_within_a_tick() {
        let start = Instant::now();
        // The helpers' windows hold two probes and bind; 100 targets answered in 0.1 ms,
        // each a probe every 10 s: every round, all of them are due at once, the windows
        // bind for about a quarter of a second, then nothing is out for ten seconds.
        let config = TraceConfig {
            cycles: 3,
            interval: Duration::from_secs(10),
            ..TraceConfig::default()
        };
        let mut job = job_of_loopback_targets(start, 2, 2, 100, &config);
        let end = start + Duration::from_secs(25);
        let sent = send_times(&mut job, (start, end), &fast_reply(), true);
        // The second round's burst: its probes hold their slots 0.1 ms, so two go out per
        // tick as in the first, not two per point of a 20 ms grid.
        let second = sent
            .iter()
            .find(|&&at| at > sent[0] + Duration::from_secs(5))
            .copied()
            .expect("no second round");
        let within = sent
            .iter()
            .filter(|&&at| at >= second && at < second + Duration::from_millis(100))
            .count();
        assert!(
            within >= 36,
            "{within} probes in the second round's first 100 ms"
        );
    }

    #[test]
    fn a_campaign_with_room_sends_a_due_probe_within_a_tick() {
        let start = Instant::now();
        let (events, _) = crossbeam_channel::unbounded();
        let mut job = Job::new(1, 16, None, false, events, Arc::default(), start);
        let args = ProbeArgs::new("127.0.0.1".parse().unwrap());
        let tracer = Tracer::new(args, &TraceConfig::default(), start).unwrap();
        let due = tracer.poll_timeout().unwrap();
        job.add(0, Box::new(tracer));
        job.send_due(start, |_, _| Ok(()));
        let next = job.deadline().unwrap();
        // Its deadline in whole milliseconds, rounded up, not put off to a grid.
        assert!(
            next >= due && next < due + Duration::from_millis(1),
            "{next:?}"
        );
    }
}
