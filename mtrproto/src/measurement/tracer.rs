//! [`Tracer`]: the probes of one mtr trace, when to send them, and their statistics.

use std::num::NonZeroU8;
use std::time::{Duration, Instant};

use crate::error::ArgumentError;
use crate::measurement::stats::{Rounds, TraceStats};
use crate::protocol::command::{ProbeArgs, ProbeTemplate};
use crate::protocol::flow::Flow;
use crate::protocol::reply::ReplyKind;
use crate::protocol::result::ProbeResult;
// Durations are the caller's: deadlines past what an `Instant` holds are put far off.
use crate::session::later;

/// How to trace one target: mtr's options of the same names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceConfig {
    /// Rounds of probes, one probe per hop each (mtr's `-c`, default 10); at least 1.
    pub cycles: u32,
    /// The TTL each round starts at (mtr's `-f`, default 1), brought into `1..=max_ttl`.
    pub first_ttl: u8,
    /// The highest TTL probed (mtr's `-m`, default 30); at least 1.
    pub max_ttl: u8,
    /// A round ends once more than this many hops before the next are silent (mtr's `-U`,
    /// default 12); at least 1 (0 counts as 1).
    pub max_unknown: u8,
    /// The time per round (mtr's `-i`, default 1 s): a probe goes out every
    /// `interval / hops`.
    pub interval: Duration,
    /// How long the helper waits for each probe's answer (mtr's `--timeout`, default 10 s;
    /// whole seconds on the wire, rounded up).
    pub timeout: Duration,
    /// How long to wait for answers after the last round (mtr's `--gracetime`, default
    /// 5 s).
    pub grace: Duration,
    /// Fixed flows to probe in ([`Flow`], UDP only), round by round: round `r` goes out in
    /// flow `r % flows`, and each flow keeps its own figures ([`Tracer::flow_stats`]), so
    /// each shows one path through load balancers (only the first `cycles` flows are
    /// probed when there are more). 0 (the default) leaves the ports as the probe arguments
    /// have them, as mtr does.
    pub flows: u16,
}

impl Default for TraceConfig {
    fn default() -> Self {
        TraceConfig {
            cycles: 10,
            first_ttl: 1,
            max_ttl: 30,
            max_unknown: Rounds::MAX_UNKNOWN,
            interval: Duration::from_secs(1),
            timeout: ProbeArgs::DEFAULT_TIMEOUT,
            grace: Duration::from_secs(5),
            flows: 0,
        }
    }
}

/// One probe to send: the trace's [`ProbeArgs`] at one TTL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceProbe {
    ttl: u8,
    flow: Option<Flow>,
    args: ProbeArgs,
}

impl TraceProbe {
    /// Its TTL: give it back with the probe's result.
    pub fn ttl(&self) -> u8 {
        self.ttl
    }

    /// Its flow, when the trace probes in fixed flows ([`TraceConfig::flows`]): give it
    /// back with the probe's result ([`Tracer::handle_flow_result`]).
    pub fn flow(&self) -> Option<Flow> {
        self.flow
    }

    /// The request to send.
    pub fn args(&self) -> &ProbeArgs {
        &self.args
    }

    /// The request to send, owned.
    pub fn into_args(self) -> ProbeArgs {
        self.args
    }
}

/// Where a trace is. Its time is the tracer's `at`, beside it: an enum holding the instant in
/// two variants would take 24 bytes, these two fields take 17.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Sending rounds; the next probe is due at `at`.
    Probing,
    /// Every round sent: answers are recorded until `at` (the next tick), then until
    /// `at + grace` while probes are in flight.
    Grace,
    Done,
}

/// The probes of one mtr trace and their statistics, without I/O.
///
/// It plays mtr 0.95's main loop (`select_loop` in `ui/select.c`, `net_send_batch` in
/// `ui/net.c`) for one target, without I/O: every `interval / hops` ([`Rounds::gap`]) one
/// probe goes out, TTL by TTL in [`Rounds`]' order; after `cycles` rounds it waits for the
/// next tick, then up to `grace` (mtr's `--gracetime`) for answers still due, ending early
/// once none is in flight. Answers are folded into [`TraceStats`] as they come.
///
/// It reads no clock. Time comes in as an `Instant` argument and deadlines go out, as with
/// [`Session`](crate::Session). The driving contract, after creating it and after each
/// input:
///
/// 1. call [`Tracer::poll_probe`] until it returns `None`, sending each probe (a caller
///    short of capacity may wait: the next probe then goes out later, as in mtr when it is
///    late, and the following gap counts from then);
/// 2. wait until [`Tracer::poll_timeout`] or an answer, whichever is first; hand answers to
///    [`Tracer::handle_result`] (or [`Tracer::handle_lost`] for a probe that failed without
///    an answer), and a reached deadline to [`Tracer::handle_timeout`]; calling it early is
///    harmless;
/// 3. stop once [`Tracer::is_done`]; [`Tracer::into_stats`] gives the figures, every probe
///    out of transit as mtr prints them.
///
/// ```
/// use std::time::{Duration, Instant};
/// use mtrproto::{ProbeArgs, ProbeResult, Reply, TraceConfig, Tracer};
///
/// let config = TraceConfig { cycles: 2, ..TraceConfig::default() };
/// let start = Instant::now();
/// let mut tracer = Tracer::new(ProbeArgs::new("127.0.0.1".parse()?), &config, start)?;
/// let mut now = start;
/// while !tracer.is_done() {
///     while let Some(probe) = tracer.poll_probe(now) {
///         // The target answers at TTL 2, 1 ms later; TTL 1 stays silent.
///         let line = match probe.ttl() {
///             1 => "1 no-reply".to_owned(),
///             _ => "1 reply ip-4 127.0.0.1 round-trip-time 1000".to_owned(),
///         };
///         now += Duration::from_millis(1);
///         tracer.handle_result(now, probe.ttl(), &ProbeResult::from_reply(&Reply::parse(&line)?));
///     }
///     now = tracer.poll_timeout().unwrap_or(now);
///     tracer.handle_timeout(now);
/// }
/// let stats = tracer.into_stats();
/// assert_eq!(stats.destination_ttl(), Some(2));
/// assert_eq!(stats.hops()[1].received(), 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Tracer {
    /// Every probe's args but the target (the figures') and the TTL: a campaign holds
    /// thousands of tracers.
    args: ProbeTemplate,
    stats: TraceStats,
    /// What few traces have (flows, a refusal), in one box behind a thin pointer: a
    /// campaign holds thousands of tracers, most with neither.
    rare: Option<Box<Rare>>,
    rounds: Rounds,
    interval: Nanos,
    /// The time between probes, `interval / hosts` ([`Rounds::gap`]): computed when a round
    /// ends (the only time it changes), not at every probe (a `Duration` division is three
    /// integer divisions, a fifth of a probe's cost in the `probe_cycle` bench).
    gap: Nanos,
    grace: Nanos,
    cycles: u32,
    completed: u32,
    /// Counted in 32 bits (saturating): a campaign holds thousands of tracers.
    in_flight: u32,
    sent: u32,
    phase: Phase,
    /// The time of `phase`: when the next probe is due, or the tick the grace counts from.
    at: Instant,
}

/// A [`Tracer`]'s parts that most traces do not have.
#[derive(Debug, Clone, Default)]
struct Rare {
    /// One per flow when the trace probes in fixed flows, flow `i` at `i`.
    flow_stats: Box<[TraceStats]>,
    /// The first probe the helper refused ([`ReplyKind::is_refusal`]): its TTL and reply.
    /// It ended the trace.
    refused: Option<(u8, ReplyKind<'static>)>,
}

/// A [`Duration`] of the settings in 8 bytes, where a `Duration` takes 16: a campaign holds
/// thousands of tracers. From `u64::MAX` nanoseconds (584 years) on it is
/// [`Duration::MAX`], a time never reached either way.
#[derive(Clone, Copy)]
struct Nanos(u64);

/// As the `Duration` it stands for: [`Tracer`]'s `Debug` shows its settings as given.
impl std::fmt::Debug for Nanos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.get().fmt(f)
    }
}

impl Nanos {
    fn new(duration: Duration) -> Nanos {
        Nanos(u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX))
    }

    fn get(self) -> Duration {
        match self.0 {
            u64::MAX => Duration::MAX,
            nanos => Duration::from_nanos(nanos),
        }
    }
}

impl Tracer {
    /// A trace of `args`' target (its protocol, port, size and so on, every probe alike),
    /// started at `now`: the first probe is due one gap later, as in mtr. Fails if
    /// `config.cycles` is 0, if `config.timeout` or a TTL cannot be sent, or if
    /// `config.flows` are asked of a protocol that cannot hold a flow or are more than
    /// [`Flow::MAX`]` + 1`.
    pub fn new(
        args: ProbeArgs,
        config: &TraceConfig,
        now: Instant,
    ) -> Result<Tracer, ArgumentError> {
        let out_of_range = ArgumentError::out_of_range;
        if config.max_ttl == 0 {
            return Err(out_of_range("max_ttl", 0, 1, u8::MAX.into()));
        }
        if config.cycles == 0 {
            return Err(out_of_range("cycles", 0, 1, u32::MAX.into()));
        }
        let args = args.timeout(config.timeout)?;
        if config.flows > 0 {
            // Named as the caller set it: past the last flow, `Flow::new` would name that.
            let most = u64::from(Flow::MAX) + 1;
            if u64::from(config.flows) > most {
                return Err(out_of_range("flows", config.flows.into(), 0, most));
            }
            // Checks the protocol.
            args.clone().flow(Flow::new(config.flows - 1)?)?;
        }
        let stats = TraceStats::new(args.target(), config.max_ttl);
        // Only the first `cycles` flows are ever probed (round r in flow r % flows): no
        // figures for the others, which would cost memory for nothing.
        let probed = u32::from(config.flows).min(config.cycles);
        let rare = (probed > 0).then(|| {
            let flow_stats = (0..probed)
                .map(|_| TraceStats::new(args.target(), config.max_ttl))
                .collect();
            Box::new(Rare {
                flow_stats,
                refused: None,
            })
        });
        let rounds = Rounds::starting_at(&stats, config.first_ttl, config.max_unknown);
        let gap = Nanos::new(rounds.gap(config.interval));
        let next = later(now, gap.get());
        Ok(Tracer {
            args: args.template(),
            stats,
            rare,
            rounds,
            interval: Nanos::new(config.interval),
            gap,
            grace: Nanos::new(config.grace),
            cycles: config.cycles,
            completed: 0,
            in_flight: 0,
            sent: 0,
            phase: Phase::Probing,
            at: next,
        })
    }

    /// The next probe if one is due at `now`; it counts as sent and in flight from now on.
    pub fn poll_probe(&mut self, now: Instant) -> Option<TraceProbe> {
        if self.phase != Phase::Probing || now < self.at {
            return None;
        }
        let ttl = self.rounds.next_ttl();
        // Rounds yields TTLs in 1..=max_ttl, and `new` checked that the args hold every
        // flow.
        let mut args = self.args.args(self.stats.target(), NonZeroU8::new(ttl)?);
        let flow = self.round_flow();
        if let Some(flow) = flow {
            args = args.flow(flow).ok()?;
            self.flow_stats_mut()[usize::from(flow.id())].sent(ttl);
        }
        self.stats.sent(ttl);
        self.in_flight = self.in_flight.saturating_add(1);
        self.sent = self.sent.saturating_add(1);
        if self.rounds.advance(&self.stats) {
            self.completed += 1;
            // Only a round's end changes the rounds' hosts, and so the gap.
            self.gap = Nanos::new(self.rounds.gap(self.interval.get()));
            // The hops grew as far as this round went, room rounded up: a campaign holds
            // thousands of traces.
            self.stats.fit_hops();
            if let Some(flow) = flow {
                self.flow_stats_mut()[usize::from(flow.id())].fit_hops();
            }
        }
        self.at = later(now, self.gap.get());
        if self.completed >= self.cycles {
            self.phase = Phase::Grace;
        }
        Some(TraceProbe { ttl, flow, args })
    }

    /// The flow of the round being sent, if the trace probes in flows.
    fn round_flow(&self) -> Option<Flow> {
        let flows = u32::try_from(self.flow_stats().len())
            .ok()
            .filter(|&n| n > 0)?;
        let id = u16::try_from(self.completed % flows).ok()?;
        Flow::new(id).ok()
    }

    /// The probe sent at `ttl` completed with `result` (`no-reply` included).
    ///
    /// A refusal ([`ReplyKind::is_refusal`]: the helper did not send the probe, for a
    /// reason of this host) ends the trace at once, as it ends mtr: see
    /// [`refused`](Tracer::refused).
    ///
    /// With fixed flows, use [`handle_flow_result`](Tracer::handle_flow_result): this
    /// counts the answer in the whole trace's figures only.
    pub fn handle_result(&mut self, now: Instant, ttl: u8, result: &ProbeResult) {
        self.handle_flow_result(now, ttl, None, result);
    }

    /// The probe sent at `ttl` in `flow` ([`TraceProbe::flow`]) completed with `result`:
    /// counted in the whole trace's figures and in the flow's. A flow the trace does not
    /// have counts in the whole trace's only.
    pub fn handle_flow_result(
        &mut self,
        now: Instant,
        ttl: u8,
        flow: Option<Flow>,
        result: &ProbeResult,
    ) {
        if self.phase == Phase::Done {
            return;
        }
        self.stats.record(ttl, result);
        if let Some(stats) = flow.and_then(|f| self.flow_stats_mut().get_mut(usize::from(f.id()))) {
            stats.record(ttl, result);
        }
        self.in_flight = self.in_flight.saturating_sub(1);
        if result.result.is_refusal() {
            // Figures without these probes would read as a path; the helper will likely
            // refuse the next ones as well.
            let rare = self.rare.get_or_insert_with(Box::default);
            rare.refused = Some((ttl, result.result.clone()));
            return self.end();
        }
        self.handle_timeout(now);
    }

    /// The first probe the helper refused, which ended the trace: its TTL and reply.
    /// A trace that ends so measured nothing to trust: report it as failed, not its
    /// figures.
    ///
    /// ```
    /// use std::time::Instant;
    /// use mtrproto::{ProbeArgs, ProbeResult, Reply, ReplyKind, TraceConfig, Tracer};
    /// let start = Instant::now();
    /// let mut tracer = Tracer::new(ProbeArgs::new("127.0.0.1".parse()?), &TraceConfig::default(), start)?;
    /// let due = tracer.poll_timeout().unwrap();
    /// let probe = tracer.poll_probe(due).unwrap();
    /// let refused = ProbeResult::from_reply(&Reply::parse("1 invalid-argument")?);
    /// tracer.handle_result(due, probe.ttl(), &refused);
    /// assert!(tracer.is_done());
    /// assert_eq!(tracer.refused(), Some((1, &ReplyKind::InvalidArgument)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn refused(&self) -> Option<(u8, &ReplyKind<'static>)> {
        let (ttl, reply) = self.rare.as_ref()?.refused.as_ref()?;
        Some((*ttl, reply))
    }

    /// The probe sent at `ttl` ended without a result (the helper failed): it stays counted
    /// as sent and unanswered, as a lost probe.
    pub fn handle_lost(&mut self, now: Instant, _ttl: u8) {
        self.in_flight = self.in_flight.saturating_sub(1);
        self.handle_timeout(now);
    }

    /// Time has reached `now`: ends the trace once its grace is over. Early calls do
    /// nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.phase == Phase::Grace
            && now >= self.at
            && (self.in_flight == 0 || now >= later(self.at, self.grace.get()))
        {
            self.end();
        }
    }

    /// Ends the trace: every probe out of transit.
    fn end(&mut self) {
        self.phase = Phase::Done;
        self.stats.end_transit();
        self.flow_stats_mut()
            .iter_mut()
            .for_each(TraceStats::end_transit);
    }

    /// When to call [`handle_timeout`](Tracer::handle_timeout) or
    /// [`poll_probe`](Tracer::poll_probe) next; `None` once done.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::Probing => Some(self.at),
            Phase::Grace if self.in_flight == 0 => Some(self.at),
            Phase::Grace => Some(later(self.at, self.grace.get())),
            Phase::Done => None,
        }
    }

    /// Whether rounds are still being sent: [`poll_timeout`](Tracer::poll_timeout) is then
    /// when the next probe is due (else when the trace may end), so a driver short of
    /// capacity can set a due target aside without calling
    /// [`handle_timeout`](Tracer::handle_timeout), which does nothing until then.
    ///
    /// ```
    /// use std::time::Instant;
    /// use mtrproto::{ProbeArgs, TraceConfig, Tracer};
    /// let config = TraceConfig { cycles: 1, max_ttl: 1, ..TraceConfig::default() };
    /// let start = Instant::now();
    /// let mut tracer = Tracer::new(ProbeArgs::new("127.0.0.1".parse()?), &config, start)?;
    /// assert!(tracer.is_sending());
    /// let due = tracer.poll_timeout().unwrap();
    /// assert!(tracer.poll_probe(due).is_some());
    /// // Its one round is sent: what is left is waiting for the answer, then the end.
    /// assert!(!tracer.is_sending());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_sending(&self) -> bool {
        self.phase == Phase::Probing
    }

    /// The TTL the next probe goes to, while the trace is sending ([`is_sending`]):
    /// what [`poll_probe`] reads and counts there is that hop of [`stats`], so a driver
    /// holding many traces can read it ahead for several at once.
    ///
    /// [`is_sending`]: Tracer::is_sending
    /// [`poll_probe`]: Tracer::poll_probe
    /// [`stats`]: Tracer::stats
    ///
    /// ```
    /// use std::time::Instant;
    /// use mtrproto::{ProbeArgs, TraceConfig, Tracer};
    /// let config = TraceConfig { first_ttl: 3, ..TraceConfig::default() };
    /// let start = Instant::now();
    /// let mut tracer = Tracer::new(ProbeArgs::new("127.0.0.1".parse()?), &config, start)?;
    /// assert_eq!(tracer.next_ttl(), Some(3));
    /// let due = tracer.poll_timeout().unwrap();
    /// assert_eq!(tracer.poll_probe(due).map(|p| p.ttl()), Some(3));
    /// assert_eq!(tracer.next_ttl(), Some(4));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn next_ttl(&self) -> Option<u8> {
        self.is_sending().then(|| self.rounds.next_ttl())
    }

    /// Whether the trace is over: every round sent, and its grace ended.
    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    /// Rounds sent so far.
    pub fn rounds_completed(&self) -> u32 {
        self.completed
    }

    /// Probes sent so far.
    pub fn probes_sent(&self) -> u64 {
        self.sent.into()
    }

    /// Probes sent and not yet completed.
    pub fn in_flight(&self) -> usize {
        self.in_flight as usize
    }

    /// The figures so far.
    pub fn stats(&self) -> &TraceStats {
        &self.stats
    }

    /// Each flow's figures so far, flow `i` at index `i`: the path that flow took and its
    /// per-hop figures, for the flows the rounds probe (`flows`, or `cycles` when that is
    /// fewer). Empty unless the trace probes in flows ([`TraceConfig::flows`]).
    pub fn flow_stats(&self) -> &[TraceStats] {
        self.rare.as_ref().map_or(&[], |rare| &rare.flow_stats)
    }

    fn flow_stats_mut(&mut self) -> &mut [TraceStats] {
        self.rare
            .as_mut()
            .map_or(&mut [], |rare| &mut rare.flow_stats)
    }

    /// The figures, with every probe out of transit as mtr prints its report
    /// ([`TraceStats::end_transit`]), whether or not the trace is done.
    pub fn into_stats(self) -> TraceStats {
        self.into_flow_stats().0
    }

    /// The whole trace's figures and each flow's ([`Tracer::flow_stats`]), every probe
    /// out of transit.
    pub fn into_flow_stats(mut self) -> (TraceStats, Vec<TraceStats>) {
        self.stats.end_transit();
        self.flow_stats_mut()
            .iter_mut()
            .for_each(TraceStats::end_transit);
        let flows = self.rare.map(|rare| rare.flow_stats.into_vec());
        (self.stats, flows.unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;
    use crate::protocol::command::Protocol;
    use crate::protocol::reply::Reply;
    use crate::protocol::token::Token;

    const MS: Duration = Duration::from_millis(1);

    /// A path in virtual time: who answers each TTL (None: silent) and after how long.
    struct Path {
        target: IpAddr,
        hops: Vec<Option<IpAddr>>,
        rtt: Duration,
    }

    impl Path {
        /// `len` hops, the last being the target; TTLs in `silent` never answer.
        fn new(target: &str, len: u8, silent: &[u8]) -> Path {
            let target: IpAddr = target.parse().unwrap();
            let hops = (1..=len)
                .map(|ttl| match ttl {
                    _ if silent.contains(&ttl) => None,
                    _ if ttl == len => Some(target),
                    _ if target.is_ipv4() => Some(format!("10.0.0.{ttl}").parse().unwrap()),
                    _ => Some(format!("fd00::{ttl}").parse().unwrap()),
                })
                .collect();
            Path {
                target,
                hops,
                rtt: 5 * MS,
            }
        }

        /// The helper's result for a probe at `ttl`.
        fn answer(&self, ttl: u8) -> ProbeResult {
            let hop = self.hops.get(usize::from(ttl) - 1).copied();
            let at = hop.unwrap_or(Some(self.target));
            let line = match at {
                None => "1 no-reply".to_owned(),
                Some(addr) => {
                    let kind = if addr == self.target {
                        "reply"
                    } else {
                        "ttl-expired"
                    };
                    let family = if addr.is_ipv4() { "ip-4" } else { "ip-6" };
                    let us = self.rtt.as_micros();
                    format!("1 {kind} {family} {addr} round-trip-time {us}")
                }
            };
            ProbeResult::from_reply(&Reply::parse(&line).unwrap())
        }

        /// How long the helper takes to complete a probe at `ttl`: `rtt` for an answer,
        /// `timeout` for silence.
        fn delay(&self, ttl: u8, timeout: Duration) -> Duration {
            match self.hops.get(usize::from(ttl) - 1) {
                Some(None) => timeout,
                _ => self.rtt,
            }
        }
    }

    /// What a run did: each probe's send time (from the start) and TTL, and when it ended.
    struct Run {
        sent: Vec<(Duration, u8)>,
        done_at: Duration,
        stats: TraceStats,
        lines: Vec<Vec<u8>>,
    }

    /// Drives a tracer over `path` in virtual time, as a driver would; answers complete
    /// after the path's delay. Bounded: gives up after 10,000 steps.
    fn run(path: &Path, args: ProbeArgs, config: &TraceConfig) -> Run {
        let start = Instant::now();
        let mut tracer = Tracer::new(args, config, start).unwrap();
        let mut now = start;
        let mut pending: Vec<(Instant, u8)> = Vec::new();
        let mut sent = Vec::new();
        let mut lines = Vec::new();
        for _ in 0..10_000 {
            loop {
                let next_ttl = tracer.next_ttl();
                let Some(probe) = tracer.poll_probe(now) else {
                    break;
                };
                assert_eq!(next_ttl, Some(probe.ttl()), "next_ttl told another TTL");
                sent.push((now - start, probe.ttl()));
                let mut line = Vec::new();
                probe.args().encode(Token::new(1).unwrap(), &mut line);
                lines.push(line);
                pending.push((now + path.delay(probe.ttl(), config.timeout), probe.ttl()));
            }
            if tracer.is_done() {
                break;
            }
            // The earliest of the tracer's deadline and the next completion.
            let due = pending.iter().map(|p| p.0).min();
            let next = match (tracer.poll_timeout(), due) {
                (Some(t), Some(d)) => t.min(d),
                (t, d) => t.or(d).unwrap(),
            };
            assert!(next >= now, "a deadline in the past");
            now = next;
            if let Some(i) = pending.iter().position(|p| p.0 <= now) {
                let (_, ttl) = pending.swap_remove(i);
                tracer.handle_result(now, ttl, &path.answer(ttl));
            } else {
                tracer.handle_timeout(now);
            }
        }
        assert!(tracer.is_done(), "the trace did not end");
        Run {
            sent,
            done_at: now - start,
            stats: tracer.into_stats(),
            lines,
        }
    }

    fn ttls(run: &Run) -> Vec<u8> {
        run.sent.iter().map(|s| s.1).collect()
    }

    fn localhost() -> ProbeArgs {
        ProbeArgs::new("127.0.0.1".parse().unwrap())
    }

    #[test]
    fn sends_rounds_up_to_the_target_at_mtrs_gaps() {
        let path = Path::new("127.0.0.1", 3, &[]);
        let config = TraceConfig {
            cycles: 3,
            ..TraceConfig::default()
        };
        let run = run(&path, localhost(), &config);
        // The target's first answer is not in when TTL 4 goes out (5 ms against 100 ms
        // gaps, but TTL 3 went out last): the first round is 1..=4, then rounds of three.
        assert_eq!(ttls(&run), [1, 2, 3, 4, 1, 2, 3, 1, 2, 3]);
        let times: Vec<u128> = run.sent.iter().map(|s| s.0.as_millis()).collect();
        // Gaps of interval / 10 until the first round ends, then interval / 3 (the target's
        // TTL), truncated to the nanosecond.
        assert_eq!(
            times,
            [100, 200, 300, 400, 733, 1066, 1399, 1733, 2066, 2399]
        );
        // Grace: the tick after the last probe, then nothing in flight.
        assert_eq!(run.done_at.as_millis(), 2733);
        let hops = run.stats.hops();
        assert_eq!(hops.len(), 3);
        assert_eq!(run.stats.destination_ttl(), Some(3));
        assert_eq!((hops[2].sent(), hops[2].received()), (3, 3));
        assert_eq!(hops[2].loss_percent(), 0.0);
        assert!(hops.iter().all(|h| !h.in_flight()));
    }

    #[test]
    fn a_silent_path_ends_rounds_past_max_unknown_or_at_max_ttl() {
        let silent: Vec<u8> = (1..=30).collect();
        let path = Path::new("127.0.0.1", 30, &silent);
        let one = TraceConfig {
            cycles: 1,
            ..TraceConfig::default()
        };
        // More than 12 silent hops before the next one: TTL 14 is the round's last.
        let run14 = run(&path, localhost(), &one);
        assert_eq!(ttls(&run14), (1..=14).collect::<Vec<_>>());
        let three = TraceConfig {
            max_unknown: 3,
            ..one.clone()
        };
        assert_eq!(ttls(&run(&path, localhost(), &three)), [1, 2, 3, 4, 5]);
        let short = TraceConfig {
            max_ttl: 6,
            cycles: 2,
            ..one.clone()
        };
        let run6 = run(&path, localhost(), &short);
        assert_eq!(ttls(&run6), [1, 2, 3, 4, 5, 6, 1, 2, 3, 4, 5, 6]);
        // Nothing answered: every probe waited out its timeout, the last ones past the
        // grace, which ended the trace 5 s after the tick that followed the last probe.
        let last = run6.sent.last().unwrap().0;
        assert_eq!(
            run6.done_at,
            last + Duration::from_secs(1) / 6 + Duration::from_secs(5)
        );
        assert!(run6.stats.hops().is_empty());
    }

    #[test]
    fn first_ttl_starts_every_round_there() {
        let path = Path::new("127.0.0.1", 5, &[]);
        let config = TraceConfig {
            cycles: 2,
            first_ttl: 3,
            ..TraceConfig::default()
        };
        let run = run(&path, localhost(), &config);
        assert_eq!(ttls(&run), [3, 4, 5, 6, 3, 4, 5]);
        let hops = run.stats.hops();
        assert_eq!(hops[0].sent(), 0);
        assert_eq!(hops[4].received(), 2);
        // Out of range, it is brought to max_ttl as mtr does.
        let over = TraceConfig {
            cycles: 1,
            first_ttl: 40,
            max_ttl: 4,
            ..TraceConfig::default()
        };
        assert_eq!(ttls(&super::tests::run(&path, localhost(), &over)), [4]);
    }

    #[test]
    fn the_destination_ttl_ends_rounds_on_ipv6_udp_and_tcp() {
        for protocol in [Protocol::Icmp, Protocol::Udp, Protocol::Tcp] {
            let path = Path::new("::1", 2, &[]);
            let args = ProbeArgs::new("::1".parse().unwrap()).protocol(protocol);
            let config = TraceConfig {
                cycles: 2,
                timeout: Duration::from_secs(2),
                ..TraceConfig::default()
            };
            let run = run(&path, args, &config);
            assert_eq!(ttls(&run), [1, 2, 3, 1, 2]);
            let line = String::from_utf8(run.lines[1].clone()).unwrap();
            assert_eq!(
                line,
                format!("1 send-probe ip-6 ::1 protocol {protocol} timeout 2 ttl 2\n")
                    .replace(" protocol icmp", "")
            );
            assert_eq!(run.stats.destination_ttl(), Some(2));
        }
    }

    #[test]
    fn answers_in_the_grace_period_count_and_later_ones_do_not() {
        let start = Instant::now();
        let config = TraceConfig {
            cycles: 1,
            max_ttl: 1,
            ..TraceConfig::default()
        };
        let mut tracer = Tracer::new(localhost(), &config, start).unwrap();
        assert_eq!(
            tracer.poll_probe(start),
            None,
            "the first probe waits one gap"
        );
        assert_eq!(tracer.poll_timeout(), Some(start + 100 * MS));
        let probe = tracer.poll_probe(start + 100 * MS).unwrap();
        assert_eq!(tracer.poll_probe(start + 100 * MS), None);
        assert_eq!(tracer.in_flight(), 1);
        // The tick after the round (one hop: a gap of the whole interval), then the grace.
        let tick = start + 1100 * MS;
        assert_eq!(tracer.poll_timeout(), Some(tick + Duration::from_secs(5)));
        tracer.handle_timeout(tick + 4 * MS * 1000);
        assert!(!tracer.is_done(), "early calls do nothing");
        let answer = Path::new("127.0.0.1", 1, &[]).answer(probe.ttl());
        tracer.handle_result(tick + Duration::from_secs(3), 1, &answer);
        assert!(tracer.is_done(), "the last answer ends the grace");
        tracer.handle_result(tick + Duration::from_secs(4), 1, &answer);
        assert_eq!(
            tracer.stats().hops()[0].received(),
            1,
            "after the end: ignored"
        );
        assert_eq!(tracer.poll_timeout(), None);
    }

    #[test]
    fn a_lost_probe_is_counted_as_sent_and_unanswered() {
        let start = Instant::now();
        let config = TraceConfig {
            cycles: 2,
            max_ttl: 1,
            ..TraceConfig::default()
        };
        let answer = Path::new("127.0.0.1", 1, &[]).answer(1);
        let mut tracer = Tracer::new(localhost(), &config, start).unwrap();
        let first = tracer.poll_probe(start + Duration::from_secs(1)).unwrap();
        tracer.handle_result(start + Duration::from_secs(1), first.ttl(), &answer);
        let second = tracer.poll_probe(start + Duration::from_secs(2)).unwrap();
        tracer.handle_lost(start + Duration::from_secs(2), second.ttl());
        assert!(
            !tracer.is_done(),
            "still before the tick after the last round"
        );
        tracer.handle_timeout(start + Duration::from_secs(3));
        assert!(tracer.is_done());
        let stats = tracer.into_stats();
        let hop = &stats.hops()[0];
        assert_eq!((hop.sent(), hop.received()), (2, 1));
        assert_eq!(hop.loss_percent(), 50.0);
    }

    /// A refused probe ends the trace at once, whatever else is in flight; network
    /// outcomes and `probes-exhausted` are figures and the trace goes on.
    #[test]
    fn a_refused_probe_ends_the_trace_and_other_outcomes_do_not() {
        let result = |line: &str| ProbeResult::from_reply(&Reply::parse(line).unwrap());
        let config = TraceConfig {
            cycles: 3,
            max_ttl: 4,
            ..TraceConfig::default()
        };
        for (line, refusal) in [
            ("1 invalid-argument reason protocol-not-supported", true),
            ("1 permission-denied", true),
            ("1 address-in-use", true),
            ("1 address-not-available", true),
            ("1 unexpected-error errno 13", true),
            ("1 probes-exhausted", false),
            ("1 no-reply", false),
            ("1 no-route", false),
            ("1 network-down", false),
            ("1 host-down", false),
            ("1 no-route-host ip-4 10.0.0.1 round-trip-time 300", false),
            ("1 wait-tcp-respone-timeout", false),
            ("1 something-new", false),
        ] {
            let start = Instant::now();
            let mut tracer = Tracer::new(localhost(), &config, start).unwrap();
            let mut now = start;
            // TTL 1 answers, TTL 2 gets `line`; TTL 3 is in flight meanwhile.
            let mut sent = Vec::new();
            while sent.len() < 3 {
                now = tracer.poll_timeout().unwrap();
                sent.push(tracer.poll_probe(now).unwrap().ttl());
            }
            assert_eq!(sent, [1, 2, 3]);
            tracer.handle_result(
                now,
                1,
                &result("1 ttl-expired ip-4 10.0.0.1 round-trip-time 9"),
            );
            tracer.handle_result(now, 2, &result(line));
            assert_eq!(tracer.is_done(), refusal, "{line}");
            assert_eq!(tracer.in_flight(), 1, "{line}");
            if refusal {
                let kind = Reply::parse(line).unwrap().kind.into_owned();
                assert_eq!(tracer.refused(), Some((2, &kind)));
                assert_eq!(
                    (tracer.poll_timeout(), tracer.poll_probe(now)),
                    (None, None)
                );
                // The probe still in flight is ignored when it comes back.
                tracer.handle_result(now, 3, &result("1 reply ip-4 127.0.0.1 round-trip-time 9"));
                assert_eq!(tracer.stats().destination_ttl(), None);
                let stats = tracer.into_stats();
                assert!(stats.hops().iter().all(|hop| !hop.in_flight()));
                assert_eq!(stats.hop(2).unwrap().sent(), 1);
            } else {
                assert_eq!(tracer.refused(), None, "{line}");
                assert!(tracer.poll_timeout().is_some(), "{line}");
            }
        }
    }

    #[test]
    fn intervals_and_graces_past_what_an_instant_holds_are_far_deadlines() {
        let start = Instant::now();
        let answer = Path::new("127.0.0.1", 1, &[]).answer(1);
        for (interval, grace) in [
            (Duration::MAX, Duration::ZERO),
            (Duration::ZERO, Duration::MAX),
            (Duration::MAX, Duration::MAX),
        ] {
            let config = TraceConfig {
                cycles: 1,
                max_ttl: 1,
                interval,
                grace,
                ..TraceConfig::default()
            };
            let mut tracer = Tracer::new(localhost(), &config, start).unwrap();
            let due = tracer.poll_timeout().unwrap();
            assert!(due >= start);
            let probe = tracer.poll_probe(due).unwrap();
            // In flight: the tick after the round, then the grace.
            let end = tracer.poll_timeout().unwrap();
            assert!(end >= due);
            tracer.handle_timeout(end);
            assert!(tracer.is_done(), "{interval:?} {grace:?}");
            // After the end: ignored.
            tracer.handle_result(end, probe.ttl(), &answer);
            assert_eq!((tracer.probes_sent(), tracer.poll_timeout()), (1, None));
        }
    }

    #[test]
    fn a_late_caller_delays_the_next_probe_by_as_much() {
        let start = Instant::now();
        let config = TraceConfig::default();
        let mut tracer = Tracer::new(localhost(), &config, start).unwrap();
        assert!(tracer.poll_probe(start + 100 * MS).is_some());
        // The caller had no capacity until 350 ms: the next gap counts from then.
        assert!(tracer.poll_probe(start + 350 * MS).is_some());
        assert_eq!(tracer.poll_timeout(), Some(start + 450 * MS));
        assert_eq!(tracer.probes_sent(), 2);
    }

    #[test]
    fn a_tracer_stays_small() {
        // A campaign holds one per target (`tests/tests/memory.rs` counts them): its
        // figures' 64 bytes, the probes' args without their target 56, three cache lines
        // in all.
        assert_eq!(std::mem::size_of::<TraceStats>(), 64);
        assert_eq!(std::mem::size_of::<ProbeTemplate>(), 56);
        assert!(std::mem::size_of::<Tracer>() <= 192);
        for d in [
            Duration::ZERO,
            Duration::from_nanos(1),
            Duration::new(584 * 365 * 86_400, 7),
        ] {
            assert_eq!(Nanos::new(d).get(), d);
        }
        assert_eq!(Nanos::new(Duration::MAX).get(), Duration::MAX);
        assert_eq!(
            format!("{:?}", Nanos::new(Duration::from_millis(1500))),
            "1.5s"
        );
    }

    #[test]
    fn bad_settings_are_argument_errors() {
        let now = Instant::now();
        for config in [
            TraceConfig {
                cycles: 0,
                ..TraceConfig::default()
            },
            TraceConfig {
                max_ttl: 0,
                ..TraceConfig::default()
            },
            TraceConfig {
                timeout: Duration::MAX,
                ..TraceConfig::default()
            },
        ] {
            let error = Tracer::new(localhost(), &config, now).unwrap_err();
            assert!(matches!(error, ArgumentError::OutOfRange { .. }), "{error}");
        }
        // max_unknown 0 is taken as 1, as mtr's option parsing does.
        let silent: Vec<u8> = (1..=30).collect();
        let path = Path::new("127.0.0.1", 30, &silent);
        let config = TraceConfig {
            cycles: 1,
            max_unknown: 0,
            ..TraceConfig::default()
        };
        assert_eq!(ttls(&run(&path, localhost(), &config)), [1, 2, 3]);
    }

    #[test]
    fn each_flow_keeps_the_path_it_took() {
        // TTL 2 is a balancer that sends even flows to 10.0.0.2 and odd ones to 10.0.1.2,
        // the target is at TTL 3.
        let answer = |ttl: u8, flow: Flow| {
            let line = match ttl {
                1 => "1 ttl-expired ip-4 10.0.0.1 round-trip-time 900".to_owned(),
                2 => format!(
                    "1 ttl-expired ip-4 10.0.{}.2 round-trip-time 900",
                    flow.id() % 2
                ),
                _ => "1 reply ip-4 127.0.0.1 round-trip-time 900".to_owned(),
            };
            ProbeResult::from_reply(&Reply::parse(&line).unwrap())
        };
        let config = TraceConfig {
            cycles: 6,
            flows: 3,
            ..TraceConfig::default()
        };
        let udp = localhost().protocol(Protocol::Udp);
        let start = Instant::now();
        let mut tracer = Tracer::new(udp, &config, start).unwrap();
        let mut now = start;
        let mut flows_sent = Vec::new();
        for _ in 0..1000 {
            while let Some(probe) = tracer.poll_probe(now) {
                let flow = probe.flow().expect("every probe in a flow");
                assert_eq!(probe.args().fixed_flow(), Some(flow));
                flows_sent.push(flow.id());
                tracer.handle_flow_result(now, probe.ttl(), Some(flow), &answer(probe.ttl(), flow));
            }
            match tracer.poll_timeout() {
                Some(next) => now = next,
                None => break,
            }
            tracer.handle_timeout(now);
        }
        assert!(tracer.is_done());
        // Round r in flow r % 3: the first round reaches TTL 4, later ones stop at 3.
        assert_eq!(&flows_sent[..4], [0, 0, 0, 0]);
        assert_eq!(
            &flows_sent[4..],
            [1, 1, 1, 2, 2, 2, 0, 0, 0, 1, 1, 1, 2, 2, 2]
        );
        let (all, flows) = tracer.into_flow_stats();
        let second = |stats: &TraceStats| -> Vec<IpAddr> {
            stats.hops()[1].responders().map(|r| r.address).collect()
        };
        assert_eq!(second(&all).len(), 2, "the whole trace mixes both paths");
        assert_eq!(flows.len(), 3);
        for (id, stats) in flows.iter().enumerate() {
            let expected: IpAddr = format!("10.0.{}.2", id % 2).parse().unwrap();
            assert_eq!(second(stats), [expected], "flow {id} took one path");
            assert_eq!(stats.hops()[1].sent(), 2);
            assert_eq!(stats.hops()[1].received(), 2);
            assert_eq!(stats.destination_ttl(), Some(3));
        }
    }

    #[test]
    fn flows_are_refused_where_they_cannot_hold() {
        let now = Instant::now();
        let flows = TraceConfig {
            flows: 2,
            ..TraceConfig::default()
        };
        for protocol in [Protocol::Icmp, Protocol::Tcp, Protocol::Sctp] {
            let error = Tracer::new(localhost().protocol(protocol), &flows, now).unwrap_err();
            assert!(
                matches!(error, ArgumentError::FlowNotHeld { protocol: p, .. } if p == protocol),
                "{error}"
            );
        }
        let too_many = TraceConfig {
            flows: Flow::MAX + 2,
            ..TraceConfig::default()
        };
        let udp = localhost().protocol(Protocol::Udp);
        // The error names the setting and its value (it said "flow ... got 30000").
        assert_eq!(
            Tracer::new(udp.clone(), &too_many, now).unwrap_err(),
            ArgumentError::OutOfRange {
                what: "flows",
                value: u64::from(Flow::MAX) + 2,
                min: 0,
                max: u64::from(Flow::MAX) + 1,
            }
        );
        let all = TraceConfig {
            flows: Flow::MAX + 1,
            ..TraceConfig::default()
        };
        assert!(Tracer::new(udp, &all, now).is_ok());
    }

    #[test]
    fn a_trace_keeps_figures_only_for_the_flows_its_rounds_probe() {
        // Round r goes out in flow r % flows: with more flows than rounds, the rest are never
        // probed, and their figures (64 bytes each, made at the start) would only cost
        // memory: 1.9 MB per target for Flow::MAX + 1 flows, in a campaign of thousands.
        let now = Instant::now();
        let udp = localhost().protocol(Protocol::Udp);
        let config = TraceConfig {
            flows: Flow::MAX + 1,
            cycles: 3,
            ..TraceConfig::default()
        };
        let tracer = Tracer::new(udp.clone(), &config, now).unwrap();
        assert_eq!(tracer.flow_stats().len(), 3);
        let fewer = TraceConfig {
            flows: 2,
            cycles: 3,
            ..TraceConfig::default()
        };
        assert_eq!(Tracer::new(udp, &fewer, now).unwrap().flow_stats().len(), 2);
    }

    /// The loop mtr runs, written directly over Rounds as the `trace` example did: the same
    /// probes at the same times as the tracer, over seeded paths with loss and slow hops.
    #[test]
    fn matches_a_direct_rounds_loop_over_seeded_paths() {
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for _ in 0..200 {
            let len = 1 + next(20) as u8;
            let silent: Vec<u8> = (1..len).filter(|_| next(3) == 0).collect();
            let mut path = Path::new("127.0.0.1", len, &silent);
            path.rtt = MS * (1 + next(400) as u32);
            let config = TraceConfig {
                cycles: 1 + next(4) as u32,
                max_ttl: 1 + next(30) as u8,
                max_unknown: 1 + next(13) as u8,
                timeout: Duration::from_secs(1 + next(3)),
                grace: MS * next(2000) as u32,
                ..TraceConfig::default()
            };
            let ours = run(&path, localhost(), &config);
            let theirs = direct(&path, &config);
            assert_eq!(ours.sent, theirs.0, "{config:?}");
            assert_eq!(ours.done_at, theirs.1, "{config:?}");
        }
    }

    /// mtr's select loop over `Rounds`, in virtual time: returns the probes sent and when
    /// the grace ended.
    fn direct(path: &Path, config: &TraceConfig) -> (Vec<(Duration, u8)>, Duration) {
        let mut stats = TraceStats::new(path.target, config.max_ttl);
        let mut rounds = Rounds::starting_at(&stats, config.first_ttl, config.max_unknown);
        let mut pending: Vec<(Duration, u8)> = Vec::new();
        let mut sent = Vec::new();
        let mut tick = rounds.gap(config.interval);
        let mut completed = 0;
        let deliver = |until: Duration, stats: &mut TraceStats, pending: &mut Vec<_>| {
            pending.sort_by_key(|p: &(Duration, u8)| p.0);
            while let Some(&(at, ttl)) = pending.first() {
                if at > until {
                    break;
                }
                pending.remove(0);
                stats.record(ttl, &path.answer(ttl));
            }
        };
        while completed < config.cycles {
            deliver(tick, &mut stats, &mut pending);
            let now = tick;
            let ttl = rounds.next_ttl();
            stats.sent(ttl);
            sent.push((now, ttl));
            pending.push((now + path.delay(ttl, config.timeout), ttl));
            if rounds.advance(&stats) {
                completed += 1;
            }
            tick = now + rounds.gap(config.interval);
        }
        deliver(tick, &mut stats, &mut pending);
        let end = tick + config.grace;
        let last = pending.iter().map(|p| p.0).max().unwrap_or(tick);
        (
            sent,
            if pending.is_empty() {
                tick
            } else {
                last.max(tick).min(end)
            },
        )
    }
}
