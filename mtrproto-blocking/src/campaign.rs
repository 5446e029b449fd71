//! Campaigns: many mtr traces over one session, each target's report handed out when done.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use mtrproto::{Flow, ProbeResult, TraceConfig, TraceStats, Tracer};

use crate::error::Error;
use crate::options::ProbeOptions;
use crate::session::Session;

/// How to trace each target: mtr's options ([`TraceConfig`]) and the probes' own
/// ([`ProbeOptions`]: protocol, port, IP version, size...; its `ttl` and `timeout` are
/// ignored, the trace sets them).
///
/// ```
/// use std::time::Duration;
/// use mtrproto_blocking::{Protocol, TraceConfig, TraceOptions};
/// let mut options = TraceOptions::default();
/// options.trace = TraceConfig { cycles: 3, interval: Duration::from_millis(500), ..TraceConfig::default() };
/// options.probe.protocol = Protocol::Udp;
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceOptions {
    /// mtr's options: cycles, TTLs, interval, timeout, grace.
    pub trace: TraceConfig,
    /// The probes' options.
    pub probe: ProbeOptions,
}

/// How hard a campaign drives the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CampaignLimits {
    /// Probes in flight at most over the whole campaign. `None`: every helper's window
    /// ([`Session::window`] times the helpers), which the session keeps within the helpers'
    /// probe tables. Larger values are brought down to that.
    pub max_in_flight: Option<usize>,
    /// Probes sent per second at most over the whole campaign; `None`: no cap.
    pub rate: Option<u32>,
    /// Targets traced at once at most (default 4096): the others wait in the caller's
    /// iterator, so memory grows with this, not with the number of targets.
    pub max_active: usize,
}

impl Default for CampaignLimits {
    fn default() -> Self {
        CampaignLimits {
            max_in_flight: None,
            rate: None,
            max_active: 4096,
        }
    }
}

/// What a campaign tells its caller, on the caller's thread.
#[derive(Debug)]
pub enum CampaignEvent<'a> {
    /// A target's trace sent a round (its figures so far, probes of the round in flight).
    Round {
        /// The target's position in the caller's list, from 0.
        index: usize,
        /// The target as the caller gave it.
        host: &'a str,
        /// Rounds sent so far.
        round: u32,
        /// The figures so far.
        stats: &'a TraceStats,
    },
    /// A target's trace ended.
    Done(TargetReport),
}

/// The end of one target's trace.
#[derive(Debug)]
pub struct TargetReport {
    /// The target's position in the caller's list, from 0.
    pub index: usize,
    /// The target as the caller gave it.
    pub host: String,
    /// Its figures, every probe out of transit; or why it could not be traced (a name
    /// that does not resolve, an option the helper refuses, the session gone).
    pub stats: Result<TraceStats, Error>,
    /// Each flow's figures when the trace probes in fixed flows ([`TraceConfig::flows`]),
    /// flow `i` at index `i`: the one path that flow took through load balancers and its
    /// per-hop figures, every probe out of transit. Empty otherwise, and when `stats` is
    /// an error.
    pub flows: Vec<TraceStats>,
}

/// What a whole campaign did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CampaignSummary {
    /// Targets traced (reports handed out).
    pub targets: usize,
    /// Probes sent.
    pub probes: u64,
    /// Targets whose report is an error.
    pub failed: usize,
    /// The most probes in flight at once.
    pub peak_in_flight: usize,
    /// Probes answered `probes-exhausted`: the helper's table stayed full until their
    /// timeout (the session sends a refused probe again while its timeout lasts).
    pub exhausted: u64,
    /// Probes that ended without an answer from the helper (it failed or never answered).
    pub lost: u64,
    /// Probes the helper answered `no-reply` (nothing came back within their timeout).
    pub no_reply: u64,
}

/// A probe's completion, sent from the driver thread: the target's slot and generation,
/// the TTL and flow, the result.
type Answer = (usize, u64, u8, Option<Flow>, Result<ProbeResult, Error>);

/// One target being traced.
struct Active {
    index: usize,
    host: String,
    generation: u64,
    tracer: Tracer,
    /// The deadline last pushed on the heap for it.
    scheduled: Option<Instant>,
}

/// The longest wait between looks at answers and deadlines (every probe the session
/// accepted completes, so this only bounds how late a trace notices its end).
const BUDGET_WAIT: Duration = Duration::from_millis(100);

/// How late a campaign may send a due probe or take an answer, so that one wake-up serves
/// every target due within it.
const TICK: Duration = Duration::from_millis(5);

impl Session {
    /// Traces `host` as `mtr --report` does (see [`Tracer`]) and returns its figures, every
    /// probe out of transit, once the trace has ended.
    ///
    /// ```no_run
    /// use mtrproto_blocking::{Session, TraceOptions};
    /// let session = Session::open()?;
    /// let stats = session.trace("127.0.0.1", &TraceOptions::default())?;
    /// assert_eq!(stats.destination_ttl(), Some(1));
    /// # Ok::<(), mtrproto_blocking::Error>(())
    /// ```
    pub fn trace(&self, host: &str, options: &TraceOptions) -> Result<TraceStats, Error> {
        let mut stats = None;
        self.campaign([host], options, &CampaignLimits::default(), |event| {
            if let CampaignEvent::Done(report) = event {
                stats = Some(report.stats);
            }
        })?;
        stats.unwrap_or(Err(crate::StateError.into()))
    }

    /// Traces every host of `hosts` through this session, many at once, and calls
    /// `on_event` on this thread after each target's rounds and as soon as each target is
    /// done ([`CampaignEvent::Done`], in the order they finish). Returns once every
    /// target is done.
    ///
    /// Every target follows mtr's rules on its own ([`Tracer`]). Over them, the campaign
    /// keeps the probes in flight within [`CampaignLimits::max_in_flight`] and the send rate
    /// within [`CampaignLimits::rate`]; when either holds probes back, the target whose
    /// probe has been due longest goes first, so no target starves. At most
    /// [`CampaignLimits::max_active`] targets are traced at once; hosts are taken from the
    /// iterator as others end.
    ///
    /// A target that cannot be traced (its name does not resolve, the helper refuses an
    /// option) gets an error report and the others go on. An error is returned only when
    /// the session is closed.
    ///
    /// ```no_run
    /// use mtrproto_blocking::{CampaignEvent, CampaignLimits, Session, TraceOptions};
    /// let session = Session::builder().helpers(2).open()?;
    /// let hosts = ["127.0.0.1", "127.0.0.2", "127.0.0.3"];
    /// let summary = session.campaign(hosts, &TraceOptions::default(), &CampaignLimits::default(), |event| {
    ///     if let CampaignEvent::Done(report) = event {
    ///         match report.stats {
    ///             Ok(stats) => println!("{}: {} hops", report.host, stats.hops().len()),
    ///             Err(error) => println!("{}: {error}", report.host),
    ///         }
    ///     }
    /// })?;
    /// assert_eq!(summary.targets, 3);
    /// # Ok::<(), mtrproto_blocking::Error>(())
    /// ```
    pub fn campaign<I, S, F>(
        &self,
        hosts: I,
        options: &TraceOptions,
        limits: &CampaignLimits,
        on_event: F,
    ) -> Result<CampaignSummary, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
        F: FnMut(CampaignEvent<'_>),
    {
        let capacity = self.window() * self.helper_pids().len().max(1);
        let budget = limits.max_in_flight.unwrap_or(capacity).clamp(1, capacity);
        let (sender, answers) = crossbeam_channel::unbounded();
        let mut run = Run {
            session: self,
            options,
            budget,
            max_active: limits.max_active.max(1),
            period: limits.rate.map(|r| Duration::from_secs(1) / r.max(1)),
            next_allowed: Instant::now(),
            slots: Vec::new(),
            free: Vec::new(),
            active: 0,
            heap: BinaryHeap::new(),
            in_flight: 0,
            generation: 0,
            sender,
            summary: CampaignSummary::default(),
            on_event,
        };
        run.run(hosts.into_iter().enumerate(), &answers)?;
        Ok(run.summary)
    }
}

/// Wakes the driver if the caller's callback panics while a batch is being sent: the
/// probes sent so far must not wait for some later wake-up.
struct WakeOnUnwind<'s>(&'s Session);

impl Drop for WakeOnUnwind<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.wake_driver();
        }
    }
}

/// A campaign's state while it runs.
struct Run<'s, F> {
    session: &'s Session,
    options: &'s TraceOptions,
    budget: usize,
    max_active: usize,
    /// The time between probes under a rate cap.
    period: Option<Duration>,
    next_allowed: Instant,
    slots: Vec<Option<Active>>,
    free: Vec<usize>,
    active: usize,
    /// Each target's next deadline, earliest first: (deadline, slot, generation).
    heap: BinaryHeap<Reverse<(Instant, usize, u64)>>,
    in_flight: usize,
    generation: u64,
    sender: Sender<Answer>,
    summary: CampaignSummary,
    on_event: F,
}

impl<F: FnMut(CampaignEvent<'_>)> Run<'_, F> {
    fn run<S: AsRef<str>>(
        &mut self,
        mut hosts: impl Iterator<Item = (usize, S)>,
        answers: &Receiver<Answer>,
    ) -> Result<(), Error> {
        let mut hosts_left = true;
        loop {
            while hosts_left && self.active < self.max_active {
                match hosts.next() {
                    Some((index, host)) => self.start(index, host.as_ref(), Instant::now())?,
                    None => hosts_left = false,
                }
            }
            if self.active == 0 && !hosts_left {
                break;
            }
            while let Ok(answer) = answers.try_recv() {
                self.answer(answer);
            }
            let sent = self.summary.probes;
            let unwinding = WakeOnUnwind(self.session);
            let due = self.send_due();
            drop(unwinding);
            // One wake-up of the driver for the whole batch.
            if self.summary.probes != sent {
                self.session.wake_driver();
            }
            due?;
            // The campaign wakes at most once per TICK: a tracer reads answers only when its
            // next probe is due, and the driver delivers answers in batches too, so waking
            // for each answer would cost a wake-up per probe for nothing. With the budget
            // used up, only answers free room: look for them a TICK later (a slot stays
            // free at most about two TICKs of a probe's timeout). Otherwise sleep until the
            // next deadline (or rate slot), met within TICK.
            let now = Instant::now();
            let wait = if self.in_flight >= self.budget {
                TICK
            } else {
                let next = match self.heap.peek() {
                    Some(Reverse((deadline, ..))) => deadline.saturating_duration_since(now),
                    None => BUDGET_WAIT,
                };
                next.max(self.next_allowed.saturating_duration_since(now))
                    .clamp(TICK, BUDGET_WAIT)
            };
            std::thread::sleep(wait);
        }
        Ok(())
    }

    /// Starts tracing `host`, or reports at once why it cannot be traced. Fails only when
    /// the session is closed.
    fn start(&mut self, index: usize, host: &str, now: Instant) -> Result<(), Error> {
        // A trace in flows sets both ports: the release must answer such probes.
        let in_flows;
        let probe = match self.options.trace.flows {
            1.. if self.options.probe.flow.is_none() => {
                in_flows = ProbeOptions {
                    flow: Some(mtrproto::Flow::new(0)?),
                    ..self.options.probe.clone()
                };
                &in_flows
            }
            _ => &self.options.probe,
        };
        let started = self
            .session
            .probe_args(host.into(), probe)
            .and_then(|args| Ok(Tracer::new(args, &self.options.trace, now)?));
        let tracer = match started {
            Ok(tracer) => tracer,
            Err(error @ Error::State(_)) => return Err(error),
            Err(error) => {
                self.report(index, host.to_owned(), Err(error), Vec::new());
                return Ok(());
            }
        };
        self.generation += 1;
        let active = Active {
            index,
            host: host.to_owned(),
            generation: self.generation,
            tracer,
            scheduled: None,
        };
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot] = Some(active);
                slot
            }
            None => {
                self.slots.push(Some(active));
                self.slots.len() - 1
            }
        };
        self.active += 1;
        self.schedule(slot);
        Ok(())
    }

    /// Pushes the slot's next deadline if it changed.
    fn schedule(&mut self, slot: usize) {
        let Some(Some(active)) = self.slots.get_mut(slot) else {
            return;
        };
        let next = active.tracer.poll_timeout();
        if next != active.scheduled {
            active.scheduled = next;
            if let Some(deadline) = next {
                self.heap.push(Reverse((deadline, slot, active.generation)));
            }
        }
    }

    /// Folds a completed probe into its target's trace.
    fn answer(&mut self, (slot, generation, ttl, flow, result): Answer) {
        self.in_flight -= 1;
        match &result {
            Ok(r) if r.result == mtrproto::ReplyKind::ProbesExhausted => {
                self.summary.exhausted += 1
            }
            Ok(r) if r.result == mtrproto::ReplyKind::NoReply => self.summary.no_reply += 1,
            Ok(_) => {}
            Err(_) => self.summary.lost += 1,
        }
        let now = Instant::now();
        let Some(Some(active)) = self.slots.get_mut(slot) else {
            return;
        };
        // A probe of a target that already ended.
        if active.generation != generation {
            return;
        }
        match &result {
            Ok(result) => active.tracer.handle_flow_result(now, ttl, flow, result),
            Err(_) => active.tracer.handle_lost(now, ttl),
        }
        self.finish_or_schedule(slot);
    }

    /// Sends the probes that are due, earliest deadline first, within the budget and rate.
    fn send_due(&mut self) -> Result<(), Error> {
        loop {
            let now = Instant::now();
            if self.in_flight >= self.budget || self.next_allowed > now {
                return Ok(());
            }
            let Some(&Reverse((deadline, slot, generation))) = self.heap.peek() else {
                return Ok(());
            };
            if deadline > now {
                return Ok(());
            }
            self.heap.pop();
            let Some(Some(active)) = self.slots.get_mut(slot) else {
                continue;
            };
            if active.generation != generation || active.scheduled != Some(deadline) {
                continue;
            }
            active.scheduled = None;
            active.tracer.handle_timeout(now);
            let round = active.tracer.rounds_completed();
            if let Some(probe) = active.tracer.poll_probe(now) {
                let (ttl, flow) = (probe.ttl(), probe.flow());
                let sender = self.sender.clone();
                let sent = self
                    .session
                    .send_args_unwoken(probe.into_args(), move |result| {
                        let _ = sender.send((slot, generation, ttl, flow, result));
                    });
                if let Err(error) = sent {
                    active.tracer.handle_lost(now, ttl);
                    if matches!(error, Error::State(_)) {
                        return Err(error);
                    }
                    // The target cannot be probed any more: it ends with the error.
                    self.end(slot, Err(error));
                    continue;
                }
                self.in_flight += 1;
                self.summary.probes += 1;
                self.summary.peak_in_flight = self.summary.peak_in_flight.max(self.in_flight);
                if let Some(period) = self.period {
                    // Waking once per TICK, a rate above one probe per TICK needs up to a
                    // TICK's worth of probes at once.
                    let credit = TICK.saturating_sub(period);
                    let floor = now.checked_sub(credit).unwrap_or(now);
                    self.next_allowed = self.next_allowed.max(floor) + period;
                }
                if round < active.tracer.rounds_completed() {
                    (self.on_event)(CampaignEvent::Round {
                        index: active.index,
                        host: &active.host,
                        round: active.tracer.rounds_completed(),
                        stats: active.tracer.stats(),
                    });
                }
            }
            self.finish_or_schedule(slot);
        }
    }

    /// Ends the slot's trace if it is done, else pushes its next deadline.
    fn finish_or_schedule(&mut self, slot: usize) {
        match self.slots.get_mut(slot) {
            Some(entry) if entry.as_ref().is_some_and(|a| a.tracer.is_done()) => {
                if let Some(active) = entry.take() {
                    self.free.push(slot);
                    self.active -= 1;
                    let (stats, flows) = active.tracer.into_flow_stats();
                    self.report(active.index, active.host, Ok(stats), flows);
                }
            }
            _ => self.schedule(slot),
        }
    }

    /// Frees the slot and hands out its report.
    fn end(&mut self, slot: usize, stats: Result<TraceStats, Error>) {
        let Some(active) = self.slots.get_mut(slot).and_then(Option::take) else {
            return;
        };
        self.free.push(slot);
        self.active -= 1;
        self.report(active.index, active.host, stats, Vec::new());
    }

    fn report(
        &mut self,
        index: usize,
        host: String,
        stats: Result<TraceStats, Error>,
        flows: Vec<TraceStats>,
    ) {
        self.summary.targets += 1;
        if stats.is_err() {
            self.summary.failed += 1;
        }
        (self.on_event)(CampaignEvent::Done(TargetReport {
            index,
            host,
            stats,
            flows,
        }));
    }
}
