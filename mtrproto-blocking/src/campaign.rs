//! Campaigns: many mtr traces over one session, each target's report handed out when done.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use mtrproto::{TraceConfig, TraceStats, Tracer};

use crate::driver::Command;
use crate::error::Error;
use crate::job::{Counts, Job, JobEvent, MAX_ACTIVE, TraceEnd};
use crate::options::ProbeOptions;
use crate::session::{IfCheckGone, Session};

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
    /// mtr's options: cycles, TTLs, interval, timeout, grace; and fixed flows.
    pub trace: TraceConfig,
    /// The probes' options.
    pub probe: ProbeOptions,
}

/// How hard a campaign drives the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CampaignLimits {
    /// Probes in flight at most over the whole campaign. `None`: every helper's window
    /// ([`Session::window`] times the helpers), which the session keeps within the helpers'
    /// probe tables. Larger values are brought down to that, 0 up to 1. A helper that
    /// refused a probe for a full table (`probes-exhausted`) counts from then on for what it
    /// held then ([`mtrproto::Session::helper_capacity`]; a helper started again counts for
    /// the whole window until it refuses one), and its refused probes waiting out their
    /// timeout: probes past that would only wait in its queue, a caller's probe behind
    /// them.
    ///
    /// The budget is this campaign's own: campaigns that run at once on one session each
    /// send up to theirs, and what the helpers' windows cannot take waits in the helpers'
    /// queues, whatever [`SessionBuilder::max_queue`](crate::SessionBuilder::max_queue):
    /// nothing is lost, but each campaign goes slower. To share the windows, give each
    /// campaign its part of them.
    pub max_in_flight: Option<usize>,
    /// Probes sent per second at most over the whole campaign (0 counts as 1); `None`: no
    /// cap.
    pub rate: Option<u32>,
    /// Targets traced at once at most (default 4096, at most 2^24): the others wait in the
    /// caller's iterator, so memory grows with this, not with the number of targets.
    pub max_active: usize,
    /// Whether the campaign returns only once the probes still out at its last report are
    /// done (default `true`: the summary then counts their outcomes). `false` returns at
    /// the last report, abandoning them as mtr does when its grace is over (the summary
    /// counts the outcomes known by then); [`Session::trace`] does so. The abandoned
    /// probes keep their room in the helpers' windows until answered (their timeout at
    /// most): a campaign started meanwhile sends within the room they leave.
    pub wait_for_probes: bool,
}

impl Default for CampaignLimits {
    fn default() -> Self {
        CampaignLimits {
            max_in_flight: None,
            rate: None,
            max_active: 4096,
            wait_for_probes: true,
        }
    }
}

/// What a campaign tells its caller, on the caller's thread.
#[derive(Debug)]
#[non_exhaustive]
pub enum CampaignEvent<'a> {
    /// A target's trace sent a round (its figures as of then, probes of the round in
    /// flight). While 256 of these wait for the caller's thread, further rounds go
    /// unreported until it catches up; [`CampaignEvent::Done`] never does.
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
    /// that does not resolve, an option the helper refuses, a probe the helper refused
    /// ([`Error::Refused`]), the session gone).
    pub stats: Result<TraceStats, Error>,
    /// Each flow's figures when the trace probes in fixed flows ([`TraceConfig::flows`]),
    /// flow `i` at index `i`: the one path that flow took through load balancers and its
    /// per-hop figures, every probe out of transit. Only the flows its rounds probe: the
    /// first `cycles` when `flows` is more. Empty otherwise, and when `stats` is an error.
    pub flows: Vec<TraceStats>,
}

/// What a whole campaign did.
///
/// `failed` counts every target whose report is an error; `refused` those of them whose
/// trace ended at a probe the helper refused ([`Error::Refused`]: a reason of this host,
/// such as a permission, a protocol or a source address it cannot use; the same probes to
/// other targets likely fail alike), apart from a name that does not resolve or an option
/// refused before any probe was sent ([`Error::Unsupported`]).
///
/// ```no_run
/// use mtrproto_blocking::{CampaignLimits, Session, TraceOptions};
/// let session = Session::open()?;
/// let summary = session.campaign_reports(["127.0.0.1"], &TraceOptions::default(), &CampaignLimits::default(), |_| {})?;
/// if summary.refused > 0 {
///     eprintln!("{} of {} targets refused by mtr-packet", summary.refused, summary.targets);
/// }
/// # Ok::<(), mtrproto_blocking::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CampaignSummary {
    /// Targets traced (reports handed out).
    pub targets: usize,
    /// Probes sent.
    pub probes: u64,
    /// Targets whose report is an error, `refused` ones included.
    pub failed: usize,
    /// Targets whose trace ended at a probe the helper refused: their report is
    /// [`Error::Refused`] (counted in `failed` too). Not a target refused with
    /// [`Error::Unsupported`]: the session's release table or feature answers ruled it out
    /// before any probe went out, so the helper refused nothing (`probes_refused` would
    /// not count it either); it is in `failed` only.
    pub refused: usize,
    /// Probes the helper refused ([`ReplyKind::is_refusal`](mtrproto::ReplyKind::is_refusal)):
    /// the ones that ended a trace, and any of the same targets' probes in flight then.
    pub probes_refused: u64,
    /// The most probes in flight at once.
    pub peak_in_flight: usize,
    /// Probes the helper answered, whatever the answer (`exhausted`, `no_reply` and
    /// `probes_refused` included). Once the campaign has waited for its probes
    /// ([`CampaignLimits::wait_for_probes`]), `answered + lost == probes`.
    pub answered: u64,
    /// Probes answered `probes-exhausted`: the helper's table stayed full until their
    /// timeout (the session sends a refused probe again while its timeout lasts), or
    /// sooner where the helper refuses so many that the session stops holding them (see
    /// `mtrproto::SessionConfig::max_retries`).
    pub exhausted: u64,
    /// Probes that ended without an answer from the helper (it failed or never answered).
    pub lost: u64,
    /// Probes the helper answered `no-reply` (nothing came back within their timeout).
    pub no_reply: u64,
}

impl Session {
    /// Traces `host` as `mtr --report` does (see [`Tracer`]) and returns its figures, every
    /// probe out of transit, once the trace has ended: probes still out then (their answer
    /// due after the trace's grace) are abandoned, as mtr abandons them (a campaign waits
    /// for them unless [`CampaignLimits::wait_for_probes`] is false). Fails with [`Error::Refused`] when the
    /// helper refuses one of its probes, as mtr stops then.
    ///
    /// These are the whole trace's figures. To have each flow's as well
    /// ([`TraceConfig::flows`]), trace through [`Session::campaign_reports`], one host or
    /// more: each [`TargetReport::flows`] holds them.
    ///
    /// ```no_run
    /// use mtrproto_blocking::{Session, TraceOptions};
    /// let session = Session::open()?;
    /// let stats = session.trace("127.0.0.1", &TraceOptions::default())?;
    /// assert_eq!(stats.destination_ttl(), Some(1));
    /// # Ok::<(), mtrproto_blocking::Error>(())
    /// ```
    ///
    /// Each of 4 UDP flows' path (a flow keeps one path through load balancers):
    ///
    /// ```no_run
    /// use mtrproto_blocking::{CampaignLimits, Protocol, Session, TraceOptions};
    /// let session = Session::open()?;
    /// let mut options = TraceOptions::default();
    /// options.trace.flows = 4;
    /// options.probe.protocol = Protocol::Udp;
    /// session.campaign_reports(["127.0.0.1"], &options, &CampaignLimits::default(), |report| {
    ///     for (flow, stats) in report.flows.iter().enumerate() {
    ///         let path: Vec<_> = stats.hops().iter().map(|hop| hop.host()).collect();
    ///         println!("flow {flow}: {path:?}");
    ///     }
    /// })?;
    /// # Ok::<(), mtrproto_blocking::Error>(())
    /// ```
    pub fn trace(&self, host: &str, options: &TraceOptions) -> Result<TraceStats, Error> {
        let mut stats = None;
        let limits = CampaignLimits {
            wait_for_probes: false,
            ..CampaignLimits::default()
        };
        self.run_campaign([host], options, &limits, false, |event| {
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
    /// The traces run on the session's driver thread, which sends their probes and takes
    /// their answers; this thread resolves the hosts, waits for news of each target and
    /// calls `on_event`, which may take its time without holding back any probe.
    ///
    /// Every target follows mtr's rules on its own ([`Tracer`]). Over them, the campaign
    /// keeps the probes in flight within [`CampaignLimits::max_in_flight`] and the send rate
    /// within [`CampaignLimits::rate`]; when either holds probes back, the target whose
    /// probe has been due longest goes first, so no target starves. At most
    /// [`CampaignLimits::max_active`] targets are traced at once; hosts are taken from the
    /// iterator as others end, on this thread, between calls of `on_event`: an iterator
    /// that waits for its next host (a channel's receiver) holds back every event until it
    /// yields, though the traces go on. To add targets while a campaign runs, start another
    /// campaign for them (campaigns run at once on one session, each within its own
    /// [`CampaignLimits`]).
    ///
    /// A target that cannot be traced (its name does not resolve, the helper refuses an
    /// option, or refuses one of its probes: [`Error::Refused`]) gets an error report and
    /// the others go on; network outcomes (no answer, unreachable) are figures, not errors. An error is returned only when
    /// the session is closed.
    ///
    /// It returns once every target is reported and the probes still in flight then (sent
    /// before a trace's grace ended) are done, so that the summary counts their outcomes;
    /// with [`CampaignLimits::wait_for_probes`] false, at the last report.
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
        self.run_campaign(hosts, options, limits, true, on_event)
    }

    /// [`Session::campaign`] without [`CampaignEvent::Round`]: `on_report` gets each
    /// target's report as soon as its trace ends, and nothing else. Cheaper when rounds are
    /// of no interest (path monitoring): no copy of a target's figures is made per round.
    ///
    /// ```no_run
    /// use mtrproto_blocking::{CampaignLimits, Session, TraceOptions};
    /// let session = Session::open()?;
    /// let hosts = ["127.0.0.1", "127.0.0.2"];
    /// session.campaign_reports(hosts, &TraceOptions::default(), &CampaignLimits::default(), |report| {
    ///     if let Ok(stats) = report.stats {
    ///         println!("{}: {} hops", report.host, stats.hops().len());
    ///     }
    /// })?;
    /// # Ok::<(), mtrproto_blocking::Error>(())
    /// ```
    pub fn campaign_reports<I, S, F>(
        &self,
        hosts: I,
        options: &TraceOptions,
        limits: &CampaignLimits,
        mut on_report: F,
    ) -> Result<CampaignSummary, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
        F: FnMut(TargetReport),
    {
        self.run_campaign(hosts, options, limits, false, |event| {
            if let CampaignEvent::Done(report) = event {
                on_report(report);
            }
        })
    }

    /// A campaign, with [`CampaignEvent::Round`]s if `rounds`.
    fn run_campaign<I, S, F>(
        &self,
        hosts: I,
        options: &TraceOptions,
        limits: &CampaignLimits,
        rounds: bool,
        on_event: F,
    ) -> Result<CampaignSummary, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
        F: FnMut(CampaignEvent<'_>),
    {
        let capacity = self.window() * self.helper_pids().len().max(1);
        let budget = limits.max_in_flight.unwrap_or(capacity).clamp(1, capacity);
        self.check_open()?;
        self.check_waitable()?;
        let id = NEXT_CAMPAIGN.fetch_add(1, Ordering::Relaxed);
        let (sender, events) = crossbeam_channel::unbounded();
        let rounds_waiting = Arc::new(AtomicUsize::new(0));
        let job = Job::new(
            id,
            budget,
            limits.rate,
            rounds,
            sender,
            Arc::clone(&rounds_waiting),
            Instant::now(),
        );
        // A driver that has stopped refuses it, and then each target (reported with the
        // error).
        let _ = self.send_unwoken(Command::Campaign(Box::new(job)));
        // Ends the campaign on the driver however this returns (a panic in `on_event`
        // included), so that it sends no more probes for it.
        let _end = EndOnDrop { session: self, id };
        let mut run = Run {
            session: self,
            options,
            id,
            max_active: limits.max_active.clamp(1, MAX_ACTIVE),
            active: Tickets::default(),
            rounds_waiting,
            summary: CampaignSummary::default(),
            settled: true,
            wait_for_probes: limits.wait_for_probes,
            on_event,
        };
        run.run(hosts.into_iter().enumerate(), &events)?;
        Ok(run.summary)
    }
}

/// Numbers campaigns, so that the driver tells apart the answers of several.
static NEXT_CAMPAIGN: AtomicU32 = AtomicU32::new(0);

/// The longest wait for news from the driver between looks at the session (every target
/// the driver took ends and is reported, so this only bounds each wait).
const EVENT_WAIT: Duration = Duration::from_secs(1);

/// Tells the driver the campaign is over, when the caller's side of it ends.
struct EndOnDrop<'s> {
    session: &'s Session,
    id: u32,
}

impl Drop for EndOnDrop<'_> {
    fn drop(&mut self) {
        let _ = self
            .session
            .send_unwoken(Command::EndCampaign { job: self.id });
        self.session.wake_driver();
    }
}

/// The targets of a campaign being traced, each under a ticket (its slot here, reused once
/// it ends), which the driver's events name it by: their index and host. Dense where a
/// hash map by index would take about 68 bytes per target (its entries, grown by doubling,
/// at most 7/8 full).
#[derive(Default)]
struct Tickets {
    slots: Vec<Option<(usize, Box<str>)>>,
    /// Slots free for reuse.
    free: Vec<usize>,
}

impl Tickets {
    /// The ticket [`Tickets::insert`] takes next.
    fn next_ticket(&self) -> usize {
        self.free.last().copied().unwrap_or(self.slots.len())
    }

    /// Adds a target under [`Tickets::next_ticket`].
    fn insert(&mut self, ticket: usize, index: usize, host: Box<str>) {
        debug_assert_eq!(ticket, self.next_ticket());
        match self.free.pop() {
            Some(slot) => self.slots[slot] = Some((index, host)),
            None => self.slots.push(Some((index, host))),
        }
    }

    fn get(&self, ticket: usize) -> Option<(usize, &str)> {
        let (index, host) = self.slots.get(ticket)?.as_ref()?;
        Some((*index, host))
    }

    fn remove(&mut self, ticket: usize) -> Option<(usize, String)> {
        let (index, host) = self.slots.get_mut(ticket)?.take()?;
        self.free.push(ticket);
        Some((index, host.into()))
    }

    /// Takes every target out.
    fn drain(&mut self) -> Vec<(usize, String)> {
        let ended = self.slots.drain(..).flatten();
        let ended = ended.map(|(index, host)| (index, host.into())).collect();
        self.free.clear();
        ended
    }

    fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A campaign's state on the caller's thread: the targets handed to the driver, and the
/// caller's callback. The tracers run on the driver thread (`job.rs`).
struct Run<'s, F> {
    session: &'s Session,
    options: &'s TraceOptions,
    id: u32,
    max_active: usize,
    /// The targets being traced: their index and host as the caller gave it.
    active: Tickets,
    rounds_waiting: Arc<AtomicUsize>,
    summary: CampaignSummary,
    /// No report from the driver since it said the counts are final ([`JobEvent::Settled`]),
    /// or no report yet.
    settled: bool,
    /// Whether to return only once `settled` (the summary then counts every probe).
    wait_for_probes: bool,
    on_event: F,
}

impl<F: FnMut(CampaignEvent<'_>)> Run<'_, F> {
    fn run<S: AsRef<str>>(
        &mut self,
        mut hosts: impl Iterator<Item = (usize, S)>,
        events: &Receiver<JobEvent>,
    ) -> Result<(), Error> {
        let mut hosts_left = true;
        loop {
            let mut started = false;
            while hosts_left && self.active.len() < self.max_active {
                match hosts.next() {
                    Some((index, host)) => started |= self.start(index, host.as_ref())?,
                    None => hosts_left = false,
                }
            }
            // One wake-up of the driver for the targets just handed over.
            if started {
                self.session.wake_driver();
            }
            // Every target reported, and the answers to their last probes counted.
            if self.active.is_empty() && !hosts_left && (self.settled || !self.wait_for_probes) {
                return Ok(());
            }
            match events.recv_timeout(EVENT_WAIT) {
                Ok(event) => {
                    self.event(event);
                    while let Ok(event) = events.try_recv() {
                        self.event(event);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                // The driver dropped the campaign: the session was closed, or its driver
                // stopped. Then the targets it held end with the session's end.
                Err(RecvTimeoutError::Disconnected) => {
                    self.session.check_open()?;
                    self.settled = true;
                    let mut ended = self.active.drain();
                    ended.sort_unstable();
                    for (index, host) in ended {
                        let error = self.session.exited();
                        self.report(index, host, Err(error), Vec::new());
                    }
                }
            }
        }
    }

    /// Hands the trace of `host` to the driver, or reports at once why it cannot be traced.
    /// Returns whether the driver got it; fails only when the session is closed.
    fn start(&mut self, index: usize, host: &str) -> Result<bool, Error> {
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
        let ticket = self.active.next_ticket();
        let started = self
            .session
            .probe_args(host.into(), probe, IfCheckGone::Proceed)
            .and_then(|args| Ok(Tracer::new(args, &self.options.trace, Instant::now())?))
            .and_then(|tracer| {
                // The driver names the target by its ticket in its events.
                self.session.send_unwoken(Command::Target {
                    job: self.id,
                    ticket,
                    tracer: Box::new(tracer),
                })
            });
        match started {
            Ok(()) => {
                self.active.insert(ticket, index, host.into());
                Ok(true)
            }
            Err(error @ Error::State(_)) => Err(error),
            Err(error) => {
                self.report(index, host.to_owned(), Err(error), Vec::new());
                Ok(false)
            }
        }
    }

    /// News from the driver: a round sent, or a trace ended.
    fn event(&mut self, event: JobEvent) {
        match event {
            JobEvent::Round {
                index: ticket,
                round,
                stats,
            } => {
                self.rounds_waiting.fetch_sub(1, Ordering::AcqRel);
                if let Some((index, host)) = self.active.get(ticket) {
                    (self.on_event)(CampaignEvent::Round {
                        index,
                        host,
                        round,
                        stats: &stats,
                    });
                }
            }
            JobEvent::Done { index: ticket, end } => {
                let TraceEnd {
                    refused,
                    stats,
                    flows,
                    counts,
                } = *end;
                self.count(counts);
                self.settled = false;
                if let Some((index, host)) = self.active.remove(ticket) {
                    match refused {
                        Some((ttl, reply)) => {
                            let error = Error::Refused { reply, ttl };
                            self.report(index, host, Err(error), Vec::new());
                        }
                        None => self.report(index, host, Ok(stats), flows),
                    }
                }
            }
            JobEvent::Settled { counts } => {
                self.count(counts);
                self.settled = true;
            }
        }
    }

    fn count(&mut self, counts: Counts) {
        self.summary.probes = counts.probes;
        self.summary.peak_in_flight = counts.peak_in_flight;
        self.summary.answered = counts.answered;
        self.summary.exhausted = counts.exhausted;
        self.summary.lost = counts.lost;
        self.summary.no_reply = counts.no_reply;
        self.summary.probes_refused = counts.refused;
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
        if let Err(Error::Refused { .. }) = stats {
            self.summary.refused += 1;
        }
        (self.on_event)(CampaignEvent::Done(TargetReport {
            index,
            host,
            stats,
            flows,
        }));
    }
}
