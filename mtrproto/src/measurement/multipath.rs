//! [`MultipathTracer`]: every path to one target, enumerated with MDA over fixed flows.

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::error::ArgumentError;
use crate::measurement::mda::{self, Confidence};
use crate::protocol::command::ProbeArgs;
use crate::protocol::flow::Flow;
use crate::protocol::reply::ReplyKind;
use crate::protocol::result::ProbeResult;
// The gap is the caller's: a deadline past what an `Instant` holds is put far off.
use crate::session::later;

/// How to enumerate the paths to one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultipathConfig {
    /// The stopping rule's confidence (default 95%).
    pub confidence: Confidence,
    /// The first TTL probed (default 1).
    pub first_ttl: u8,
    /// The highest TTL probed (default 30).
    pub max_ttl: u8,
    /// The trace ends after this many silent TTLs in a row (default 5); at least 1.
    pub max_silent: u8,
    /// The probe budget: no probe is sent past it (default 10,000).
    pub max_probes: u32,
    /// Probes in flight at most (default 16); at least 1.
    pub window: usize,
    /// The time between two probes (default 10 ms).
    pub gap: Duration,
    /// How long the helper waits for each answer (default 2 s; whole seconds on the wire,
    /// rounded up). A probe whose result has not come one second past it counts as lost.
    pub timeout: Duration,
    /// MDA-Lite's savings (Vermeulen et al., IMC 2018; default): each TTL takes its own
    /// stopping rule (fresh flows sent straight to it, or flows from the TTL before spread
    /// evenly over its interfaces) and each interface before needs one flow onward (its
    /// link), instead of the stopping point's number through each interface before. Where
    /// the hops converge onto several interfaces unmeshed (each interface before reaching
    /// one), MDA-Lite's hop rule: the TTL's own rule, its flows spread evenly over the
    /// interfaces before, at least 2 through each (the meshing test; 11 flows for 4
    /// interfaces reaching 2, as `tracelb`). Where, on the flows seen at both TTLs, the
    /// hops are meshed (an interface before reaching two or more, one here reached from two
    /// or more): each interface before followed on its own flows as answers come, from the
    /// moment the hop shows meshed, until it reached every interface here or took its
    /// stopping point with the confidence split over the interfaces before, the TTL before
    /// ruling out one more interface than it showed (4 interfaces each reaching both of 2:
    /// a median 13 flows here, 27 before); or, where fewer, flows seen at both until each
    /// link there is (counting one more interface before) and one more successor behind any
    /// interface before that has not reached every interface here would have shown (26 for
    /// 3 each reaching 2 of 3). MDA's per-interface rule only where the interfaces before
    /// reach unequal numbers here, or several interfaces here are each reached from exactly
    /// one before (parallel paths: where a second successor behind one of them is the
    /// rarest next hop, which the TTL's own rule may miss). A TTL whose own rule found one
    /// interface, and lost no flow, is taken as linked from every interface before whose
    /// flows go on, as scamper's `tracelb` does (no flow onward from each). `false`: MDA's
    /// per-interface rule everywhere.
    ///
    /// What MDA-Lite gives up: an uneven successor behind one interface before, where the
    /// TTL's own rule shows one interface, or where the hops converge, goes unseen more
    /// often than the confidence allows. At 95%, over 200 seeded runs: one interface seen,
    /// the hidden one taking a quarter of the flows, found in 177 (`false`: 194); an eighth,
    /// in 110 (197: the TTL's 6 flows spread 2, 2, 1, 1 over the four interfaces before in
    /// address order, and the one with the second successor is last); converging, a third
    /// interface behind the last of four that reach two (an eighth of the flows), in 152
    /// (199, at 1.4 times the probes; flows at both TTLs until such a successor would have
    /// shown, 23 for 4 interfaces, found it in 190, at 14 probes more than the hop rule on
    /// the nested diamond). Set `false` where such uneven hops matter more than probes.
    pub lite: bool,
    /// The stopping decisions the confidence covers together (default 1: each decision on
    /// its own, as MDA has it); 1 to 100. With `N`, each decision (a TTL's or an
    /// interface's stopping rule, a per-packet check) is held to `(1 - confidence) / N`, so
    /// a trace taking at most `N` of them misses nothing with probability at least the
    /// confidence (failure control, Veitch et al. 2009, by the union bound). More probes:
    /// `n_1` is 6 at 95%, 8 with `N` = 4, 9 with 8.
    pub decisions: u32,
    /// Probe the first TTL as one interface, as scamper's `tracelb` does (default
    /// `false`): one answered flow there instead of the stopping rule. A balancer at the
    /// first hop then shows one of its interfaces; for probe counts like tracelb's.
    pub single_first_hop: bool,
    /// Re-probe answered flows at every TTL with two or more interfaces to tell per-packet
    /// balancing from per-flow (default `true`): the flows through each interface before
    /// that reached two or more, 5 times at 95% (7 at 99%), 3 where its flows, seen going
    /// through it, reached three or more (5 at 99%; 4 for four or more). Each re-probe goes
    /// in a flow of the interface the fewest of them reached: a router balancing per packet
    /// sends it back there with that interface's share, at most one in as many interfaces
    /// however uneven the weights (a flow of any interface comes back with the sum of the
    /// squared shares, 0.44 for shares of 3, 1, 1: three such re-probes miss 8.5% of such
    /// routers at 95%); at TTL 1 every flow came from this host, one router. Flows whose
    /// router before is unknown (the TTL before silent, flows sent straight to the TTL, or
    /// past a per-packet hop whose ways have not met since at one interface) may have come
    /// through several routers, one balancing per packet beside others balancing per flow:
    /// each re-probe goes in a flow of their least re-probed interface, until any two of
    /// their interfaces, taken as one router's however uneven its shares, would have shown
    /// it (3 re-probes each but one 2 at 95%, `3n - 1` for `n` interfaces; 4 and 3 at 99%,
    /// `4n - 1`; 5 and 7 for two, as for a known router). Behind a silent TTL, 2 interfaces
    /// of a per-packet router beside 3 of a per-flow one are missed in 2.3% of the runs
    /// that saw them at 95% (0.35% at 99%; 5 re-probes in turn missed 23%), a lone
    /// per-packet router in 3.0% for even 1, 1 and 0.6% for 4, 1; past a per-packet hop
    /// whose ways met again, a router balancing 4, 1 in 0.5% (6.8% in the least-probed
    /// idle flow). A router whose flows all reached one interface, where other routers'
    /// flows showed the TTL's others (MDA-Lite takes few flows through each router), is
    /// re-probed once nothing else is left to send at the TTL, until its flows and
    /// re-probes are 7 at 95% (10 at 99%: with the two-interface check's miss, within the
    /// confidence), MDA's per-router rule, while the trace's probes stay within MDA's own
    /// for what it has seen so far (its bound); TTLs before are checked again there, as
    /// node control may have found more at them since: beside two routers reaching one
    /// interface each, such a router is missed in 3.4% of the runs that saw it (30.0%
    /// before), at a cost where no router balances per packet: 4 routers converging onto 2
    /// (the nested (2, 4, 2) diamond) take a median 88 probes instead of 71. `false` saves
    /// those probes and never reports a hop as per packet.
    pub per_packet_check: bool,
    /// The first flow identifier used (default 0); later ones follow it, up to
    /// [`Flow::MAX`] (then the trace ends as if out of budget). The same flows through the
    /// same routers take the same paths: another `first_flow` samples others.
    pub first_flow: u16,
}

impl Default for MultipathConfig {
    fn default() -> Self {
        MultipathConfig {
            confidence: Confidence::P95,
            first_ttl: 1,
            max_ttl: 30,
            max_silent: 5,
            max_probes: 10_000,
            window: 16,
            gap: Duration::from_millis(10),
            timeout: Duration::from_secs(2),
            lite: true,
            decisions: 1,
            single_first_hop: false,
            per_packet_check: true,
            first_flow: 0,
        }
    }
}

/// The number the next [`MultipathTracer`] takes, so that its probes' ids differ from
/// every other trace's (the count wraps after 2^32 traces).
static NEXT_TRACE: AtomicU32 = AtomicU32::new(0);

/// Which probe a result belongs to: keep it from [`MultipathProbe::id`] and give it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProbeId {
    /// The trace that sent it: every trace numbers its probes from 0, and a result for
    /// another trace's probe must not pass for one of its own.
    trace: u32,
    seq: u32,
    ttl: u8,
    flow: Flow,
}

impl ProbeId {
    /// The probe's TTL.
    pub fn ttl(self) -> u8 {
        self.ttl
    }

    /// The probe's flow.
    pub fn flow(self) -> Flow {
        self.flow
    }
}

/// One probe to send: a TTL, a flow, and the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultipathProbe {
    id: ProbeId,
    args: ProbeArgs,
}

impl MultipathProbe {
    /// Its identity: give it back with its result.
    pub fn id(&self) -> ProbeId {
        self.id
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

/// Why a multipath trace ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MultipathEnd {
    /// Every flow that was answered at the last TTL was answered by the target (or by a
    /// router ending the path, such as an unreachable).
    Reached,
    /// `max_ttl` was probed.
    MaxTtl,
    /// `max_silent` TTLs in a row answered nothing.
    Silent,
    /// The probe budget (or the flow identifiers) ran out.
    Budget,
    /// mtr-packet refused a probe ([`ReplyKind::is_refusal`]), as it ends mtr: what was
    /// found is no path to trust. [`MultipathTracer::refused`] gives its TTL and reply.
    Refused,
}

/// One interface seen at a TTL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultipathResponder {
    /// Its address.
    pub address: IpAddr,
    /// How many flows reached it.
    pub flows: u32,
}

/// One TTL of a multipath trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultipathHop {
    /// The TTL.
    pub ttl: u8,
    /// The interfaces that answered, by address.
    pub responders: Vec<MultipathResponder>,
    /// One flow was answered by different interfaces here: the hop balances per packet,
    /// and its interfaces' flow counts say nothing about flows.
    pub per_packet: bool,
    /// Probes sent at this TTL.
    pub probes: u32,
    /// Probes at this TTL that got no answer.
    pub unanswered: u32,
}

/// A link between two interfaces at consecutive TTLs, seen by one flow at both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Link {
    /// The TTL of `to`; `from` is at the TTL before.
    pub ttl: u8,
    /// The interface at `ttl - 1`.
    pub from: IpAddr,
    /// The interface at `ttl`.
    pub to: IpAddr,
}

/// What a multipath trace found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultipathReport {
    /// The target.
    pub target: IpAddr,
    /// The stopping rule's confidence.
    pub confidence: Confidence,
    /// Probes sent.
    pub probes: u32,
    /// Every TTL probed, in order.
    pub hops: Vec<MultipathHop>,
    /// Every link seen: one flow answered at both TTLs. After a hop balancing per packet,
    /// and at every TTL after it until the ways meet at one interface that lost no probe, a
    /// flow's two probes may have gone different ways: links there only where the next TTL
    /// has one interface and lost no probe (every interface of the hop leads to it). With
    /// [`MultipathConfig::lite`], a TTL whose own stopping rule found one interface (and
    /// lost no flow) is linked from every interface before whose flows go on, followed
    /// there or not.
    pub links: Vec<Link>,
    /// Why it ended; `None` while it runs.
    pub end: Option<MultipathEnd>,
}

/// One flow at one TTL.
#[derive(Debug, Clone, Default)]
struct Obs {
    /// Probes sent, answered, lost.
    sent: u16,
    answered: u16,
    lost: u16,
    /// The first interface that answered.
    responder: Option<IpAddr>,
    /// That answer ends the path (the target, or a router's unreachable).
    terminal: bool,
    /// A later probe of the flow was answered by another interface.
    changed: bool,
    /// The interface it came through at the TTL before, when first sent here.
    from: Option<IpAddr>,
}

impl Obs {
    /// Answered by an interface the path goes on from.
    fn through(&self) -> Option<IpAddr> {
        self.responder.filter(|_| !self.terminal && !self.changed)
    }
}

/// The flows at one TTL that came through one interface of the TTL before.
#[derive(Debug, Clone, Default)]
struct FromStats {
    /// Flows answered, lost, waiting for their first answer.
    answered: usize,
    lost: usize,
    coming: usize,
    /// The interfaces that answered them.
    successors: BTreeSet<IpAddr>,
    /// Every flow through the interface below this one has been probed at this TTL.
    scan_from: Cell<u16>,
}

/// One TTL's flows.
#[derive(Debug, Clone, Default)]
struct HopState {
    flows: BTreeMap<u16, Obs>,
    per_packet: bool,
    /// The target itself answered a flow here.
    reached_target: bool,
    /// Fresh flows sent at the TTL before, to reach its interfaces (node control).
    node_control: u32,
    /// Probes in flight at this TTL.
    pending: u32,
    /// Other interfaces that answered re-probes, with the flow.
    extra: BTreeSet<(IpAddr, u16)>,
    /// The interfaces that answered, each with the flows that reached it.
    found: BTreeMap<IpAddr, u32>,
    /// Flows answered, lost (never answered), and waiting for their first answer: kept as
    /// the flows change, as the rule reads them for every probe.
    answered_flows: usize,
    lost_flows: usize,
    outstanding_flows: usize,
    /// The flows that go on from each interface ([`Obs::through`]).
    onward: BTreeMap<IpAddr, BTreeSet<u16>>,
    /// Every flow of the TTL before below this one is probed here already: where the search
    /// for the next one starts.
    scan_from: Cell<u16>,
    /// The flows here by the interface they came through at the TTL before.
    by_from: BTreeMap<IpAddr, FromStats>,
}

impl HopState {
    /// The interfaces that answered, each with the flows that reached it.
    fn interfaces(&self) -> &BTreeMap<IpAddr, u32> {
        &self.found
    }

    fn answered(&self) -> usize {
        self.answered_flows
    }

    fn lost(&self) -> usize {
        self.lost_flows
    }

    fn outstanding(&self) -> usize {
        self.outstanding_flows
    }

    /// A probe of flow `id` goes out; `from`: where it came through at the TTL before.
    fn sent(&mut self, id: u16, from: Option<IpAddr>) {
        let obs = self.flows.entry(id).or_default();
        if obs.sent == 0 {
            self.outstanding_flows += 1;
            obs.from = from;
            if let Some(from) = from {
                self.by_from.entry(from).or_default().coming += 1;
            }
        }
        obs.sent = obs.sent.saturating_add(1);
        self.pending += 1;
    }

    /// A probe of flow `id` was answered by `address`; `terminal` if the path ends there.
    fn answered_by(&mut self, id: u16, address: IpAddr, terminal: bool) {
        self.pending = self.pending.saturating_sub(1);
        let obs = self.flows.entry(id).or_default();
        if obs.answered == 0 {
            let stats = obs.from.map(|f| self.by_from.entry(f).or_default());
            if obs.lost == 0 {
                self.outstanding_flows = self.outstanding_flows.saturating_sub(1);
            } else {
                self.lost_flows = self.lost_flows.saturating_sub(1);
            }
            self.answered_flows += 1;
            if let Some(stats) = stats {
                if obs.lost == 0 {
                    stats.coming = stats.coming.saturating_sub(1);
                } else {
                    stats.lost = stats.lost.saturating_sub(1);
                }
                stats.answered += 1;
                stats.successors.insert(address);
            }
        }
        obs.answered = obs.answered.saturating_add(1);
        match obs.responder {
            None => {
                obs.responder = Some(address);
                obs.terminal = terminal;
                *self.found.entry(address).or_insert(0) += 1;
                if !terminal {
                    self.onward.entry(address).or_default().insert(id);
                }
            }
            Some(first) if first != address => {
                obs.changed = true;
                self.per_packet = true;
                if let Some(flows) = self.onward.get_mut(&first) {
                    flows.remove(&id);
                }
                if self.extra.insert((address, id)) {
                    *self.found.entry(address).or_insert(0) += 1;
                }
            }
            Some(_) => {}
        }
    }

    /// Flow `id`, sent here before its interface at the TTL before was known, was answered
    /// there by `from`, an interface it goes on from: from now on it counts for that
    /// interface, as if it had been known when sent.
    fn credit(&mut self, id: u16, from: IpAddr) {
        let Some(obs) = self.flows.get_mut(&id) else {
            return;
        };
        if obs.sent == 0 || obs.from.is_some() {
            return;
        }
        obs.from = Some(from);
        let stats = self.by_from.entry(from).or_default();
        match obs.responder {
            Some(address) => {
                stats.answered += 1;
                stats.successors.insert(address);
            }
            None if obs.lost > 0 => stats.lost += 1,
            None => stats.coming += 1,
        }
    }

    /// A probe of flow `id` got no answer.
    fn unanswered(&mut self, id: u16) {
        self.pending = self.pending.saturating_sub(1);
        let obs = self.flows.entry(id).or_default();
        if obs.answered == 0 && obs.lost == 0 {
            self.outstanding_flows = self.outstanding_flows.saturating_sub(1);
            self.lost_flows += 1;
            if let Some(stats) = obs.from.map(|f| self.by_from.entry(f).or_default()) {
                stats.coming = stats.coming.saturating_sub(1);
                stats.lost += 1;
            }
        }
        obs.lost = obs.lost.saturating_add(1);
    }

    /// MDA-Lite's tests (Vermeulen et al., IMC 2018) between the TTL before and this one,
    /// on the flows seen at both. The meshing test: some interface before reached two or
    /// more here, and some interface here was reached from two or more before: each
    /// interface before followed on its own flows (`follow`). Each interface before
    /// reaching one, several here and one of them reached from two or more before
    /// (converging, unmeshed): MDA-Lite's hop rule, the TTL's own rule with
    /// [`MESHING_FLOWS`] through each interface before, so that a meshed hop shows as such.
    /// The uniformity test: the interfaces before that reached any here reached unequal
    /// numbers, so the TTL's interfaces are not equally likely and the TTL's own rule may
    /// miss the rarer ones. And where each interface before reached one here and each here
    /// was reached from one before, several of them (parallel paths, which is how a 2-way
    /// router beside a 1-way one looks once its second branch is missed), MDA's rule still
    /// rules out a second successor behind each: flows at both TTLs would take no more than
    /// the TTL's rule did, which misses a branch taken by a quarter of the flows more often
    /// than its confidence allows. Otherwise every interface here has one predecessor: a
    /// flow through each shows every link.
    fn lite_test(&self) -> LiteTest {
        let mut predecessors: BTreeMap<IpAddr, usize> = BTreeMap::new();
        let (mut least, mut most, mut from) = (usize::MAX, 0, 0);
        for stats in self.by_from.values().filter(|s| !s.successors.is_empty()) {
            least = least.min(stats.successors.len());
            most = most.max(stats.successors.len());
            from += 1;
            for &to in &stats.successors {
                *predecessors.entry(to).or_insert(0) += 1;
            }
        }
        let converging = predecessors.values().any(|&n| n >= 2);
        if converging && most >= 2 {
            LiteTest::Meshed { from, most }
        } else if converging && predecessors.len() >= 2 {
            LiteTest::Converging
        } else if (most >= 2 && least < most) || (most == 1 && predecessors.len() >= 2) {
            LiteTest::Mda
        } else {
            LiteTest::Pass
        }
    }

    /// The one interface flows go on from, if there is exactly one.
    fn sole_through(&self) -> Option<IpAddr> {
        let mut through = self.onward.iter().filter(|(_, flows)| !flows.is_empty());
        match (through.next(), through.next()) {
            (Some((&address, _)), None) => Some(address),
            _ => None,
        }
    }

    /// Where flow `id` is taken to come from at this TTL, when it goes out at the next: its
    /// interface here, or, for a flow sent straight to the next TTL, the one interface
    /// flows go on from here (an assumption, for the stopping rules only).
    fn came_through(&self, id: u16) -> Option<IpAddr> {
        match self.flows.get(&id) {
            Some(obs) => obs.through(),
            None => self.sole_through(),
        }
    }

    /// Where flow `id` was seen to go on from at this TTL: its own answer here, the only
    /// ground for a link (a flow sent straight past may have gone through an interface
    /// MDA missed here).
    fn seen_through(&self, id: u16) -> Option<IpAddr> {
        self.flows.get(&id).and_then(Obs::through)
    }
}

/// A group's re-probes sent, in re-probes needed, before the check gives up on it: where
/// answers are lost (loss, rate limiting), re-probes are sent again up to this bound.
const REPROBE_TRIES: u32 = 3;

/// Flows at one TTL taken to have come through one interface before, for the per-packet
/// check ([`MultipathTracer::reprobe`]).
#[derive(Debug, Default)]
struct Group {
    /// The interfaces that answered them first, each with how many, their re-probes not
    /// lost, and the least-probed of them (probes, flow).
    reached: BTreeMap<IpAddr, Reached>,
    /// Their re-probes not lost (answered or in flight): a lost one shows nothing.
    reprobes: u32,
    /// Their re-probes sent, lost ones too: bounds the re-probes where answers are lost.
    sent: u32,
}

/// The flows of a [`Group`] that one interface answered first.
#[derive(Debug, Clone, Copy)]
struct Reached {
    flows: u32,
    reprobes: u32,
    least: (u16, u16),
}

impl Group {
    fn add(&mut self, id: u16, o: &Obs, responder: IpAddr) {
        let reached = self.reached.entry(responder).or_insert(Reached {
            flows: 0,
            reprobes: 0,
            least: (o.sent, id),
        });
        let reprobes = u32::from(o.sent.saturating_sub(1).saturating_sub(o.lost));
        reached.flows += 1;
        reached.reprobes += reprobes;
        reached.least = reached.least.min((o.sent, id));
        self.reprobes += reprobes;
        self.sent += u32::from(o.sent.saturating_sub(1));
    }

    /// The least-probed flow of the interface the fewest flows reached first (the first by
    /// address among equals), in flight or not. At a router balancing per packet, a
    /// re-probe comes back to the flow's first interface with that interface's share: the
    /// rarest one's is at most `1 / ways` where the shares are even, and less where they
    /// are not (a flow picked blindly comes back with the sum of the squared shares, more
    /// than `1 / ways` where they are uneven: 0.44 for shares of 3, 1, 1).
    fn rarest(&self) -> Option<u16> {
        let reached = self.reached.values().min_by_key(|r| r.flows)?;
        Some(reached.least.1)
    }

    /// For flows whose router before is unknown: the least-probed flow of the interface
    /// with the fewest re-probes not lost (then the fewest flows, then the first by
    /// address). Any two of the group's interfaces may be one router's: the check goes on
    /// until the two least re-probed pass [`mda::pair_miss`] (`turned`), so that a router
    /// balancing per packet is missed within the confidence whichever they are and whatever
    /// its shares, though routers balancing per flow share the group (their re-probes
    /// never show a change).
    fn in_turn(&self) -> Option<u16> {
        let reached = self
            .reached
            .values()
            .min_by_key(|r| (r.reprobes, r.flows))?;
        Some(reached.least.1)
    }

    /// Whether the two least re-probed interfaces pass [`mda::pair_miss`] at `alpha`.
    fn turned(&self, alpha: f64) -> bool {
        let mut counts: Vec<u32> = self.reached.values().map(|r| r.reprobes).collect();
        counts.sort_unstable();
        match counts[..] {
            [a, b, ..] => mda::pair_miss(a, b) <= alpha,
            _ => true,
        }
    }
}

/// What MDA-Lite's tests say of the links into one TTL ([`HopState::lite_test`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LiteTest {
    /// A flow through each interface shows every link.
    Pass,
    /// Meshed: `from` interfaces before reached any here, each at most `most` (two or
    /// more).
    Meshed { from: usize, most: usize },
    /// Converging onto several interfaces, unmeshed (each interface before reached one):
    /// the TTL's own rule, its flows spread evenly over the interfaces before, with
    /// [`MESHING_FLOWS`] through each for the meshing test.
    Converging,
    /// MDA's per-interface rule is needed.
    Mda,
}

/// The flows each interface before needs onward ([`MultipathTracer::per_interface`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Each {
    /// This many.
    Flows(usize),
    /// MDA's rule: the stopping point for the successors it showed.
    Mda,
}

/// The flows through each interface before that MDA-Lite's meshing test follows to a
/// converging TTL: φ = 2, as in Vermeulen et al. (IMC 2018). An interface before with two
/// successors there, evenly split, shows both in two flows with probability 1/2; the test
/// misses meshing only where each such interface shows one (the TTL's own rule, spread
/// evenly, gives each interface before more flows than two where there are few of them).
const MESHING_FLOWS: usize = 2;

/// What the trace wants next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    /// A probe at `ttl` in `flow`, or in a fresh flow.
    Send { ttl: u8, flow: Option<u16> },
    /// Answers in flight may be enough: wait for them.
    Wait,
    /// The current TTL is done.
    HopDone,
}

/// The most next hops the stopping points are kept for; past it, the last point is used.
const MAX_POINTS: usize = 128;

/// A lost probe is given up this long after the helper's own timeout.
const LOST_AFTER: Duration = Duration::from_secs(1);

/// Every path to one target, found with the Multipath Detection Algorithm over fixed flows,
/// without I/O.
///
/// MDA (Augustin, Friedman, Teixeira 2007; Veitch et al. 2009) probes TTL by TTL in Paris
/// flows ([`Flow`]: UDP with both ports fixed, so a per-flow balancer sends all of a flow's
/// probes one way). At each TTL it keeps sending flows until, with `k` interfaces seen,
/// [`Confidence::stopping_point`]`(k)` flows have answered: a `k + 1`-th interface is then
/// ruled out at the confidence chosen. Flows answered at one TTL are reused at the next, so
/// a flow seen at both gives a link. The rule holds for the TTL as a whole and, where the
/// TTL before has several interfaces, for each of them: each needs the stopping point's
/// number of flows through it for the successors it showed, and fresh flows are sent to the
/// TTL before until enough reach it (node control), within a cap. A flow counts for an
/// interface before only once the TTL before answered it (one sent straight past counts
/// for none until then, and is probed there before a fresh flow is). With
/// [`MultipathConfig::lite`] (MDA-Lite, Vermeulen et al. 2018), a TTL takes its own rule,
/// flows from the TTL before spread evenly over its interfaces or fresh flows sent straight
/// to it, and one flow onward from each interface before (its link); MDA-Lite's tests on
/// the flows seen at both TTLs pick what more it needs: on hops converging unmeshed onto
/// several interfaces, two flows through each interface before (the meshing test); on
/// meshed hops (from the moment they show as such, within the TTL's own rule), each
/// interface before followed on its own flows until it reached every interface here or its
/// own stopping rule is met (MDA's per-node rule, as answers come), or flows seen at both
/// until each link there is would have shown, counting one more interface before, and a
/// link one more successor behind an interface before that has not reached every interface
/// here would add is ruled out, whichever ends first; where the interfaces before reach
/// unequal numbers, or several interfaces are each reached from exactly one before, the
/// per-interface rule. A TTL whose own rule found one interface (and lost no flow) is
/// linked from every interface before whose flows go on. Otherwise a link is reported only
/// where one flow answered at both TTLs: an interface reached only by flows sent straight
/// to it has one of them probed at the TTL before (the predecessor may have an interface
/// MDA missed, which that probe may find). A TTL with two or more interfaces has answered
/// flows probed again, 5 times at 95% (7 at 99%) for each interface before whose flows
/// reached several, fewer where they reached three or more, in the flows of the interface
/// the fewest of them reached (for flows whose router before is unknown, sent straight to
/// it unless every interface before is checked on its own, or past a per-packet hop whose
/// ways have not met again, each interface in turn until any two would have shown a router
/// balancing per packet over them; on a meshed hop, once each interface before is
/// followed): one flow answered by two interfaces marks the hop as balancing per packet.
/// The trace ends when every answered flow reached the target, after `max_silent` silent
/// TTLs, at `max_ttl`, or when the budget is spent.
///
/// It reads no clock; the driving contract is [`Tracer`](crate::Tracer)'s: after creating
/// it and after each input, call [`poll_probe`](MultipathTracer::poll_probe) until `None`,
/// send each probe, keep its [`ProbeId`]; hand results to
/// [`handle_result`](MultipathTracer::handle_result) and reached deadlines
/// ([`poll_timeout`](MultipathTracer::poll_timeout)) to
/// [`handle_timeout`](MultipathTracer::handle_timeout); stop once
/// [`is_done`](MultipathTracer::is_done) and read the [`report`](MultipathTracer::report).
///
/// ```
/// use std::time::Instant;
/// use mtrproto::{MultipathConfig, MultipathTracer, ProbeArgs, ProbeResult, Protocol, Reply};
///
/// // TTL 1 balances flows over two routers; the target is at TTL 2.
/// let args = ProbeArgs::new("127.0.0.1".parse()?).protocol(Protocol::Udp);
/// let mut now = Instant::now();
/// let mut tracer = MultipathTracer::new(args, &MultipathConfig::default(), now)?;
/// for _ in 0..10_000 {
///     while let Some(probe) = tracer.poll_probe(now) {
///         let id = probe.id();
///         let line = match id.ttl() {
///             1 => format!("1 ttl-expired ip-4 10.0.0.{} round-trip-time 500", id.flow().id() % 2),
///             _ => "1 reply ip-4 127.0.0.1 round-trip-time 900".to_owned(),
///         };
///         tracer.handle_result(now, id, &ProbeResult::from_reply(&Reply::parse(&line)?));
///     }
///     match tracer.poll_timeout() {
///         Some(next) => now = now.max(next),
///         None => break,
///     }
///     tracer.handle_timeout(now);
/// }
/// let report = tracer.report();
/// assert_eq!(report.hops[0].responders.len(), 2);
/// assert_eq!(report.hops[1].responders.len(), 1);
/// assert_eq!(report.links.len(), 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct MultipathTracer {
    args: ProbeArgs,
    target: IpAddr,
    config: MultipathConfig,
    /// Indexed by TTL; 0 unused.
    hops: Vec<HopState>,
    current: u8,
    silent_run: u8,
    next_flow: u32,
    /// This trace's number among the process's traces, in its probes' ids.
    trace: u32,
    next_seq: u32,
    probes: u32,
    pending: BTreeMap<u32, ProbeId>,
    deadlines: VecDeque<(Instant, u32)>,
    next_send: Instant,
    end: Option<MultipathEnd>,
    points: &'static [u32],
    /// Re-probes that show per-packet balancing at the decisions' failure.
    repeats: u32,
    /// The probes (flows and re-probes) a router whose flows all reached one interface
    /// takes ([`MultipathTracer::reprobe`]).
    single_point: u32,
    /// The failure each stopping decision is held to.
    alpha: f64,
    /// The probe the helper refused, which ended the trace: its TTL and reply.
    refused: Option<(u8, ReplyKind<'static>)>,
}

impl MultipathTracer {
    /// A trace of `args`' target, which must be a UDP probe (its flows set the ports),
    /// started at `now`; the first probe is due at once. Fails on a protocol that cannot
    /// hold a flow, and on settings out of range.
    pub fn new(
        args: ProbeArgs,
        config: &MultipathConfig,
        now: Instant,
    ) -> Result<MultipathTracer, ArgumentError> {
        let out_of_range = ArgumentError::out_of_range;
        if config.max_ttl == 0 {
            return Err(out_of_range("max_ttl", 0, 1, 255));
        }
        if config.first_ttl == 0 || config.first_ttl > config.max_ttl {
            let value = config.first_ttl.into();
            return Err(out_of_range("first_ttl", value, 1, config.max_ttl.into()));
        }
        if config.max_silent == 0 {
            return Err(out_of_range("max_silent", 0, 1, 255));
        }
        if config.first_flow > Flow::MAX {
            let value = config.first_flow.into();
            return Err(out_of_range("first_flow", value, 0, Flow::MAX.into()));
        }
        if config.window == 0 {
            return Err(out_of_range("window", 0, 1, usize::MAX as u64));
        }
        let args = args.timeout(config.timeout)?.flow(Flow::new(0)?)?;
        if !(1..=MAX_DECISIONS).contains(&config.decisions) {
            let value = config.decisions.into();
            return Err(out_of_range("decisions", value, 1, MAX_DECISIONS.into()));
        }
        let points = stopping_points(config.confidence, config.decisions);
        let alpha = config.confidence.split(config.decisions);
        let repeats = mda::repeat_point(alpha, 2);
        // A router balancing per packet is missed where its probes all reached one
        // interface, or where its flows reached two and `repeats` re-probes did not show it
        // (at most 2^-repeats): the two together within `alpha` (7 at 95%, 10 at 99%, where
        // the stopping point for one more next hop, 6 and 8, missed 5.5% at 95%).
        let rest = (alpha - 0.5f64.powi(repeats.try_into().unwrap_or(i32::MAX))).max(alpha / 4.0);
        let single_point = mda::stopping_point(rest, 1);
        let mut tracer = MultipathTracer {
            target: args.target(),
            args,
            config: config.clone(),
            hops: vec![HopState::default(); usize::from(config.max_ttl) + 1],
            current: config.first_ttl,
            silent_run: 0,
            next_flow: u32::from(config.first_flow),
            trace: NEXT_TRACE.fetch_add(1, Ordering::Relaxed),
            next_seq: 0,
            probes: 0,
            pending: BTreeMap::new(),
            deadlines: VecDeque::new(),
            next_send: now,
            end: None,
            points,
            repeats,
            single_point,
            alpha,
            refused: None,
        };
        // A budget of no probes ends it now: no input would come to end it later.
        tracer.advance();
        Ok(tracer)
    }

    /// The next probe if one is due at `now`: within the window, the gap and the budget.
    pub fn poll_probe(&mut self, now: Instant) -> Option<MultipathProbe> {
        if self.end.is_some()
            || self.pending.len() >= self.config.window
            || now < self.next_send
            || self.probes >= self.config.max_probes
        {
            return None;
        }
        let Want::Send { ttl, flow } = self.want() else {
            return None;
        };
        let id = match flow {
            Some(id) => id,
            None => {
                let id = u16::try_from(self.next_flow)
                    .ok()
                    .filter(|&id| id <= Flow::MAX)?;
                self.next_flow += 1;
                if ttl < self.current {
                    self.hops[usize::from(self.current)].node_control += 1;
                }
                id
            }
        };
        let flow = Flow::new(id).ok()?;
        // `new` checked that the arguments hold a flow; every TTL is valid.
        let args = self.args.clone().ttl(ttl).ok()?.flow(flow).ok()?;
        // A flow's interface before is known once it answered there (`credit` when that
        // answer comes later): a flow sent straight here is evidence for no interface
        // before, though the TTL before shows one now (it may show another later). A first
        // hop taken as one interface is the exception: it is never probed further.
        let from = match usize::from(ttl) {
            t if t > usize::from(self.config.first_ttl) && self.assumed_single(t - 1) => {
                self.hops[t - 1].came_through(id)
            }
            t if t > usize::from(self.config.first_ttl) => self.hops[t - 1].seen_through(id),
            _ => None,
        };
        self.hops[usize::from(ttl)].sent(id, from);
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        let probe_id = ProbeId {
            trace: self.trace,
            seq,
            ttl,
            flow,
        };
        self.pending.insert(seq, probe_id);
        let deadline = later(now, args.effective_timeout().saturating_add(LOST_AFTER));
        self.deadlines.push_back((deadline, seq));
        self.probes += 1;
        self.next_send = later(now, self.config.gap);
        Some(MultipathProbe { id: probe_id, args })
    }

    /// The probe `id` completed with `result`. A result for a probe not in flight (a
    /// duplicate, one already counted lost, one of another trace) is ignored.
    ///
    /// A refusal ([`ReplyKind::is_refusal`]: the helper did not send the probe, for a
    /// reason of this host) ends the trace at once, as it ends a [`Tracer`](crate::Tracer)
    /// and mtr: see [`refused`](MultipathTracer::refused).
    ///
    /// Once the trace has ended, however it ended, results are ignored: the report stays
    /// as it was at the end. (It ends otherwise only with no probe in flight.)
    pub fn handle_result(&mut self, now: Instant, id: ProbeId, result: &ProbeResult) {
        if self.end.is_some() || self.pending.get(&id.seq) != Some(&id) {
            return;
        }
        self.pending.remove(&id.seq);
        let hop = &mut self.hops[usize::from(id.ttl)];
        if result.result.is_refusal() {
            // Counted unanswered, the TTL would pass for silent and the report for a path;
            // the helper will likely refuse the next probes as well.
            hop.unanswered(id.flow.id());
            self.refused = Some((id.ttl, result.result.clone()));
            self.end = Some(MultipathEnd::Refused);
            return;
        }
        match result.responder {
            Some(address) => {
                let terminal = address == self.target || result.result != ReplyKind::TtlExpired;
                hop.answered_by(id.flow.id(), address, terminal);
                hop.reached_target |= address == self.target;
                // The flow may have been sent to the next TTL already: its interface here
                // is known now.
                if let Some(from) = hop.seen_through(id.flow.id())
                    && let Some(next) = self.hops.get_mut(usize::from(id.ttl) + 1)
                {
                    next.credit(id.flow.id(), from);
                }
            }
            None => hop.unanswered(id.flow.id()),
        }
        self.handle_timeout(now);
    }

    /// The probe `id` ended without a result (the helper failed): counted as unanswered.
    /// Ignored once the trace has ended.
    pub fn handle_lost(&mut self, now: Instant, id: ProbeId) {
        if self.end.is_some() {
            return;
        }
        if self.pending.get(&id.seq) == Some(&id) {
            self.lose(id.seq);
        }
        self.handle_timeout(now);
    }

    /// Time has reached `now`: probes past their deadline count as lost. Early calls do
    /// nothing, and so do calls once the trace has ended.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.end.is_some() {
            return;
        }
        // Deadlines of probes already answered are dropped here too, so that the front is
        // always one in flight.
        while let Some(&(deadline, seq)) = self.deadlines.front() {
            if deadline <= now {
                self.lose(seq);
            } else if self.pending.contains_key(&seq) {
                break;
            }
            self.deadlines.pop_front();
        }
        self.advance();
    }

    /// When to call [`handle_timeout`](MultipathTracer::handle_timeout) or
    /// [`poll_probe`](MultipathTracer::poll_probe) next; `None` once done.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.end.is_some() {
            return None;
        }
        // The front is in flight (`handle_timeout` drops the others), the earliest.
        let lost = self.deadlines.front().map(|d| d.0);
        let flows_left = self.next_flow <= u32::from(Flow::MAX);
        let send = (self.pending.len() < self.config.window
            && self.probes < self.config.max_probes
            && match self.want() {
                Want::Send { flow, .. } => flow.is_some() || flows_left,
                _ => false,
            })
        .then_some(self.next_send);
        match (lost, send) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether the trace is over.
    pub fn is_done(&self) -> bool {
        self.end.is_some()
    }

    /// The first probe the helper refused, which ended the trace
    /// ([`MultipathEnd::Refused`]): its TTL and reply. A trace that ends so found nothing
    /// to trust: report it as failed, not its report.
    ///
    /// ```
    /// use std::time::Instant;
    /// use mtrproto::{MultipathConfig, MultipathEnd, MultipathTracer, ProbeArgs, ProbeResult, Protocol, Reply, ReplyKind};
    /// let now = Instant::now();
    /// let args = ProbeArgs::new("127.0.0.1".parse()?).protocol(Protocol::Udp);
    /// let mut tracer = MultipathTracer::new(args, &MultipathConfig::default(), now)?;
    /// let probe = tracer.poll_probe(now).unwrap();
    /// let refused = ProbeResult::from_reply(&Reply::parse("1 invalid-argument")?);
    /// tracer.handle_result(now, probe.id(), &refused);
    /// assert!(tracer.is_done());
    /// assert_eq!(tracer.refused(), Some((1, &ReplyKind::InvalidArgument)));
    /// assert_eq!(tracer.report().end, Some(MultipathEnd::Refused));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn refused(&self) -> Option<(u8, &ReplyKind<'static>)> {
        self.refused.as_ref().map(|(ttl, reply)| (*ttl, reply))
    }

    /// Probes sent so far.
    pub fn probes_sent(&self) -> u32 {
        self.probes
    }

    /// Probes in flight.
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    /// What the trace found so far: every TTL probed, its interfaces, the links.
    pub fn report(&self) -> MultipathReport {
        let last = self
            .hops
            .iter()
            .rposition(|h| !h.flows.is_empty())
            .unwrap_or(0);
        let first = usize::from(self.config.first_ttl);
        let mut hops = Vec::new();
        let mut links = BTreeSet::new();
        for ttl in first..=last {
            // Whether a flow's probes at the TTL before may have answered from different
            // interfaces (a flow's way may change with each probe till the ways meet).
            let varies = self.ways_vary(ttl);
            let hop = &self.hops[ttl];
            let ttl8 = u8::try_from(ttl).unwrap_or(u8::MAX);
            hops.push(MultipathHop {
                ttl: ttl8,
                responders: hop
                    .interfaces()
                    .iter()
                    .map(|(&address, &flows)| MultipathResponder { address, flows })
                    .collect(),
                per_packet: hop.per_packet,
                probes: hop.flows.values().map(|o| u32::from(o.sent)).sum(),
                unanswered: hop.flows.values().map(|o| u32::from(o.lost)).sum(),
            });
            // One interface and no probe lost: every way meets there.
            let met = hop.interfaces().len() == 1 && hop.flows.values().all(|o| o.lost == 0);
            if ttl > first {
                let before = &self.hops[ttl - 1];
                // After a per-packet hop, a flow's probe here may have come through another
                // interface than its probe there showed: its link may not exist.
                let flows = if varies { None } else { Some(&hop.flows) };
                for (id, obs) in flows.into_iter().flatten() {
                    let from = if self.assumed_single(ttl - 1) {
                        before.came_through(*id)
                    } else {
                        before.seen_through(*id)
                    };
                    if let (Some(from), Some(to)) = (from, obs.responder) {
                        links.insert(Link {
                            ttl: ttl8,
                            from,
                            to,
                        });
                    }
                }
                // A TTL of one interface by its own rule: every interface before whose
                // flows go on leads to it (MDA-Lite, `converged`).
                if let Some(to) = self.converged(ttl) {
                    for (&from, flows) in &before.onward {
                        if !flows.is_empty() {
                            links.insert(Link {
                                ttl: ttl8,
                                from,
                                to,
                            });
                        }
                    }
                }
                // After a per-packet hop, flows say nothing about links; but where the
                // next TTL has one interface and lost no probe, every interface of the hop
                // leads to it.
                let next = hop.interfaces();
                if varies && met {
                    for (&from, &to) in before.interfaces().keys().zip(next.keys().cycle()) {
                        links.insert(Link {
                            ttl: ttl8,
                            from,
                            to,
                        });
                    }
                }
            }
        }
        MultipathReport {
            target: self.target,
            confidence: self.config.confidence,
            probes: self.probes,
            hops,
            links: links.into_iter().collect(),
            end: self.end,
        }
    }

    /// Counts the probe `seq` as lost, if it is still in flight.
    fn lose(&mut self, seq: u32) {
        let Some(id) = self.pending.remove(&seq) else {
            return;
        };
        self.hops[usize::from(id.ttl)].unanswered(id.flow.id());
    }

    /// Ends TTLs that are done and the trace when it is over.
    fn advance(&mut self) {
        // Each turn ends a TTL or the trace: bounded by max_ttl.
        for _ in 0..=u16::from(self.config.max_ttl) {
            if self.end.is_some() {
                return;
            }
            match self.want() {
                Want::HopDone => self.finish_hop(),
                Want::Send { flow, .. } => {
                    let no_flows = flow.is_none() && self.next_flow > u32::from(Flow::MAX);
                    if (self.probes >= self.config.max_probes || no_flows)
                        && self.pending.is_empty()
                    {
                        self.end = Some(MultipathEnd::Budget);
                    }
                    return;
                }
                Want::Wait => return,
            }
        }
    }

    /// The current TTL is done: on to the next, or the end.
    fn finish_hop(&mut self) {
        let hop = &self.hops[usize::from(self.current)];
        let answered: Vec<&Obs> = hop.flows.values().filter(|o| o.answered > 0).collect();
        if answered.is_empty() {
            self.silent_run += 1;
            if self.silent_run >= self.config.max_silent {
                self.end = Some(MultipathEnd::Silent);
                return;
            }
        } else {
            self.silent_run = 0;
            if answered.iter().all(|o| o.terminal) {
                self.end = Some(MultipathEnd::Reached);
                return;
            }
        }
        if self.current >= self.config.max_ttl {
            self.end = Some(MultipathEnd::MaxTtl);
        } else {
            self.current += 1;
        }
    }

    /// `n_k` at the trace's confidence, for at least one next hop.
    fn point(&self, k: usize) -> usize {
        let k = k.clamp(1, MAX_POINTS);
        self.points[k] as usize
    }

    /// What the current TTL needs next.
    fn want(&self) -> Want {
        let h = usize::from(self.current);
        let first = usize::from(self.config.first_ttl);
        let hop = &self.hops[h];
        let before = (h > first).then(|| &self.hops[h - 1]);
        let interfaces = hop.interfaces();
        let k = interfaces.len();

        // The TTL as a whole: n_k flows answered, or as many lost (a lossy hop gives up).
        // MDA-Lite: at the target's TTL one answer from the target will do, as no balancer
        // spreads one destination address over several; and a single first hop needs one.
        let single = self.config.single_first_hop && h == first;
        let needed = if single { 1 } else { self.point(k) };
        let (answered, lost) = (hop.answered(), hop.lost());
        let reached = self.config.lite && hop.reached_target;
        if !reached && answered < needed && lost < needed {
            // A TTL already seen meshed follows each interface before on its own flows
            // (`follow`) from then on, rather than spreading the rest of its own rule blindly.
            if self.config.lite
                && let Some(before) = before.filter(|b| !b.per_packet)
                && let LiteTest::Meshed { from, most } = hop.lite_test()
                && let Some(send @ Want::Send { .. }) = self.follow(h, before, from, most)
            {
                return send;
            }
            // Flows onward from the interfaces before not yet followed count for both rules:
            // take those first, so that fewer flows cover every link.
            if self.config.lite
                && let Some(before) = before.filter(|b| !b.per_packet)
                && let Some(send @ Want::Send { .. }) =
                    self.per_interface(h, before, Each::Flows(1))
            {
                return send;
            }
            let coming = hop.outstanding() + before.map_or(0, HopState::outstanding);
            if answered + coming < needed {
                return self.next_flow_at(h);
            }
            return Want::Wait;
        }

        // Per-packet balancing: answered flows probed again until, were a router balancing
        // per packet, one of them would have shown another interface at this confidence.
        // Per interface of the TTL before (its router's own choice), not per TTL: a hop
        // may mix per-flow and per-packet routers, and re-probes of the per-flow ones'
        // flows show nothing. On a meshed hop, after each interface before is followed: the
        // interfaces its flows reached set its re-probes, fewer the more they are.
        let following = match (before.filter(|b| !b.per_packet), hop.lite_test()) {
            (Some(before), LiteTest::Meshed { from, most })
                if self.config.lite && self.converged(h).is_none() =>
            {
                matches!(self.follow(h, before, from, most), Some(Want::Send { .. }))
            }
            _ => false,
        };
        if self.config.per_packet_check
            && k >= 2
            && !hop.per_packet
            && !following
            && let Some(want) = self.reprobe(h, false)
        {
            return want;
        }

        // The interfaces of the TTL before, each on its own: MDA's rule where MDA-Lite's
        // tests fail (judged once the TTL's own rule is met, on the flows it took); on
        // meshed hops, each interface before on its own flows (`follow`). None where this
        // TTL has one interface by its own rule: every interface before leads to it
        // (`converged`).
        if let Some(before) = before.filter(|b| !b.per_packet && self.converged(h).is_none()) {
            let test = match self.config.lite {
                true => hop.lite_test(),
                false => LiteTest::Mda,
            };
            if let LiteTest::Meshed { from, most } = test
                && let Some(want) = self.follow(h, before, from, most)
            {
                return want;
            }
            let each = match test {
                LiteTest::Mda => Each::Mda,
                LiteTest::Converging => Each::Flows(MESHING_FLOWS),
                _ => Each::Flows(1),
            };
            if let Some(want) = self.per_interface(h, before, each) {
                return want;
            }
        }
        // Links into this TTL, and into the one before, where node control found more.
        if let Some(want) = self.link_probe(h).or_else(|| self.link_probe(h - 1)) {
            return want;
        }
        // Routers whose flows here all reached one interface, once no more flows come
        // (they may yet show another), within MDA's own probes for what is seen; and at the
        // TTLs before, where node control or link probes found more there since.
        if self.config.per_packet_check && (self.probes as usize) < self.mda_probes(h) {
            for t in (first..=h).rev() {
                if self.hops[t].interfaces().len() >= 2
                    && !self.hops[t].per_packet
                    && let Some(want) = self.reprobe(t, true)
                {
                    return want;
                }
            }
        }
        // Re-probes of the TTLs before too: the trace may end at this TTL, and an answer
        // read after the end would be a probe spent for nothing.
        let in_flight: u32 = self.hops[first..=h].iter().map(|t| t.pending).sum();
        if in_flight > 0 {
            Want::Wait
        } else {
            Want::HopDone
        }
    }

    /// The next re-probe looking for per-packet balancing at `hop`, if one is needed: the
    /// flows grouped by the interface they came through at the TTL before, each group that
    /// reached two or more interfaces re-probed `repeat_point` times, for the interfaces
    /// its known flows reached (the least re-probed group first, in the flows of its rarest
    /// interface, [`Group::rarest`]; at TTL 1, all flows came from this host). Flows whose
    /// interface before is unknown (sent straight here) form a group of their own,
    /// re-probed only where some interface before is not checked on its own flows, in the
    /// flows of its least re-probed interface until any two of them pass
    /// [`mda::pair_miss`] ([`Group::in_turn`], [`Group::turned`]). Past a per-packet hop
    /// whose ways have not met since at one interface, a flow's way there may change with
    /// each probe, so its group may hold several routers' flows: every group is re-probed
    /// so. With `single`, also the groups whose flows all reached one interface, which
    /// other routers' flows may have shown the TTL's others: re-probed until flows and
    /// re-probes together are `single_point` (MDA's per-router rule, for a router MDA-Lite
    /// took few flows through); the caller asks once nothing else is left to send.
    fn reprobe(&self, h: usize, single: bool) -> Option<Want> {
        let hop = &self.hops[h];
        let before = (h > usize::from(self.config.first_ttl)).then(|| &self.hops[h - 1]);
        // A flow seen going on from its interface before (or from the only one there) came
        // through that router, unless the ways vary before (a flow's way there may change
        // with each probe). A router balancing per packet over the interfaces its known
        // flows reached returns a re-probe to the first one with probability at most one in
        // that many: fewer re-probes where they reached three or more.
        let steady = !self.ways_vary(h);
        let sole = before.and_then(HopState::sole_through);
        // At TTL 1 every flow came from this host: one router before, known.
        let first_hop = h == 1;
        let known = |id: u16, from: Option<IpAddr>| {
            steady
                && (first_hop
                    || (from.is_some()
                        && (sole == from || before.is_some_and(|b| b.seen_through(id) == from))))
        };
        let mut groups: BTreeMap<Option<IpAddr>, [Group; 2]> = BTreeMap::new();
        for (&id, o) in &hop.flows {
            let Some(responder) = o.responder else {
                continue;
            };
            // A flow sent straight here, not probed at the TTL before: taken to have come
            // through the only interface flows go on from there, as that TTL stands now.
            let from = o
                .from
                .or_else(|| sole.filter(|_| before.is_some_and(|b| !b.flows.contains_key(&id))));
            let [all, sure] = groups.entry(from).or_default();
            all.add(id, o, responder);
            if known(id, from) {
                sure.add(id, o, responder);
            }
        }
        // Flows sent straight here came through an unknown interface before. Where every
        // interface before that flows go on from has its own group here, which reached two
        // or more interfaces and so gets its own re-probes, theirs would test the same
        // routers again.
        let covered = before.is_some_and(|b| {
            let mut through = b.onward.iter().filter(|(_, f)| !f.is_empty()).peekable();
            through.peek().is_some()
                && through.all(|(&a, _)| {
                    groups
                        .get(&Some(a))
                        .is_some_and(|[all, _]| all.reached.len() >= 2)
                })
        });
        // The least re-probed group first: a router balancing per packet shows after a few
        // of its own re-probes, which ends the check for every group.
        let (mut best, mut waiting) = (None::<(u32, u16)>, false);
        for (from, [all, sure]) in &groups {
            let least = if single { 1 } else { 2 };
            if all.reached.len() < least || (from.is_none() && covered) {
                continue;
            }
            // One router's flows: those of its rarest interface. Flows whose router before
            // is unknown may have come through several routers, one balancing per packet
            // beside others balancing per flow: each interface in turn, until any two of
            // them, taken as one router's, would have shown it.
            let one_router = steady && (from.is_some() || first_hop);
            let (group, needed, done, pick) = match (one_router, sure.reached.len()) {
                // Its flows all reached one interface, while others' show the rest of the
                // TTL: a router balancing per packet draws anew for each probe, so its
                // flows and their re-probes together rule it out as MDA's per-router rule
                // rules out one more next hop (`single_point`).
                _ if all.reached.len() == 1 => {
                    let flows = all.reached.values().map(|r| r.flows).sum::<u32>();
                    let needed = self.single_point.saturating_sub(flows);
                    (all, needed, all.reprobes >= needed, all.rarest())
                }
                (true, ways @ 3..) => {
                    let needed = mda::repeat_point(self.alpha, ways);
                    (sure, needed, sure.reprobes >= needed, sure.rarest())
                }
                (true, _) => (
                    all,
                    self.repeats,
                    all.reprobes >= self.repeats,
                    all.rarest(),
                ),
                (false, _) => {
                    let needed = mda::turn_point(self.alpha, all.reached.len());
                    (all, needed, all.turned(self.alpha), all.in_turn())
                }
            };
            if done || group.sent >= REPROBE_TRIES * needed {
                continue;
            }
            match pick {
                Some(id) if best.is_none_or(|b| group.reprobes < b.0) => {
                    best = Some((group.reprobes, id));
                }
                Some(_) => {}
                None => waiting = true,
            }
        }
        match best {
            Some((_, id)) => Some(Want::Send {
                ttl: u8::try_from(h).unwrap_or(u8::MAX),
                flow: Some(id),
            }),
            None => waiting.then_some(Want::Wait),
        }
    }

    /// MDA's own probes up to TTL `h` for what the trace has seen there: at each TTL, the
    /// stopping point of every interface before whose flows go on, for the successors its
    /// flows reached (MDA's per-interface rule, node control aside), and one more where
    /// the TTL has two or more interfaces (its per-packet check).
    fn mda_probes(&self, h: usize) -> usize {
        let first = usize::from(self.config.first_ttl);
        let mut total = 0;
        for t in first..=h {
            let hop = &self.hops[t];
            if t == first {
                total += self.point(hop.interfaces().len());
            } else {
                let before = &self.hops[t - 1];
                for (from, flows) in &before.onward {
                    if !flows.is_empty() {
                        total +=
                            self.point(hop.by_from.get(from).map_or(0, |s| s.successors.len()));
                    }
                }
            }
            if hop.interfaces().len() >= 2 {
                total += self.point(1);
            }
        }
        total
    }

    /// Whether a flow's way into TTL `h` may change from one probe to the next: a TTL
    /// before it balances per packet, and the ways have not met since at one interface that
    /// lost no probe.
    fn ways_vary(&self, h: usize) -> bool {
        let first = usize::from(self.config.first_ttl);
        self.hops[first.min(h)..h]
            .iter()
            .fold(false, |varies, hop| {
                let met = hop.interfaces().len() == 1 && hop.flows.values().all(|o| o.lost == 0);
                hop.per_packet || (varies && !met)
            })
    }

    /// What the interfaces of the TTL before `h` need, if anything: `each` flows onward
    /// from each (MDA-Lite: one for its link, [`MESHING_FLOWS`] for the meshing test), or
    /// n_k flows through each (MDA's rule) where two or more go on.
    fn per_interface(&self, h: usize, before: &HopState, each: Each) -> Option<Want> {
        let hop = &self.hops[h];
        let through = &before.onward;
        let mut waiting = false;
        let none = FromStats::default();
        for (from, flows) in through {
            let stats = hop.by_from.get(from).unwrap_or(&none);
            let needed = match each {
                Each::Mda if through.len() >= 2 => self.point(stats.successors.len()),
                Each::Mda => 1,
                Each::Flows(n) => n,
            };
            if stats.answered >= needed || stats.lost >= needed {
                continue;
            }
            // Flows through it go out in order: the probed ones are a prefix.
            let mut unprobed = None;
            for &id in flows.range(stats.scan_from.get()..) {
                if hop.flows.contains_key(&id) {
                    stats.scan_from.set(id.saturating_add(1));
                } else {
                    unprobed = Some(id);
                    break;
                }
            }
            if let Some(id) = unprobed {
                return Some(Want::Send {
                    ttl: self.current,
                    flow: Some(id),
                });
            }
            if stats.answered + stats.coming >= needed {
                waiting = true;
                continue;
            }
            // Node control: flows sent straight here placed at the TTL before first, then
            // fresh flows there until enough reach this interface, within a cap that gives
            // up on one too rarely reached.
            if let Some(want) = self.unplaced(h) {
                if before.outstanding() < self.config.window {
                    return Some(want);
                }
                waiting = true;
                continue;
            }
            let cap = 2 * through.len() * self.point(through.len());
            if (hop.node_control as usize) < cap {
                if before.outstanding() < self.config.window {
                    return Some(self.next_flow_at(h - 1));
                }
                waiting = true;
            }
        }
        waiting.then_some(Want::Wait)
    }

    /// What a meshed TTL `h` needs, if anything (`from` interfaces before reached any here,
    /// each at most `most`). Each interface before is followed on its own flows as their
    /// answers come (MDA's per-node rule): one that reached every interface here is done
    /// (one more interface here is what the TTL's own rule ruled out); one that reached
    /// `s` of them takes flows until the stopping point `n_s` at the confidence split over
    /// the `from` interfaces (8 flows for one seen among 4 at 95%), one flow in flight at a
    /// time so that it stops as soon as it showed them all. Or all of them together, flows
    /// at both TTLs as they come, until each link there is would have shown, counting one
    /// more interface before (one flow in `(from + 1) * most`), and one more successor
    /// behind any interface that has not reached every one here (one in `from * (s + 1)`,
    /// `mda::link_point`), whichever ends first (3 interfaces each reaching 2 of 3: 26
    /// flows at both, where 11 through each would take 33); an interface with no flow left
    /// to follow goes on those terms. A router missed at the TTL before takes its links
    /// with it, so the TTL before rules out one more interface than it showed. Flows sent
    /// straight here are probed at the TTL before first (`unplaced`), then fresh flows are
    /// sent there within node control's cap.
    fn follow(&self, h: usize, before: &HopState, from: usize, most: usize) -> Option<Want> {
        let hop = &self.hops[h];
        let here = hop.interfaces().len();
        let none = FromStats::default();
        let through = || before.onward.iter().filter(|(_, f)| !f.is_empty());
        let open = through()
            .map(|(from, _)| hop.by_from.get(from).map_or(0, |s| s.successors.len()))
            .filter(|&seen| seen < here)
            .max();
        let each_link = mda::link_point(self.alpha, from.saturating_add(1).saturating_mul(most));
        let one_more = open.map_or(0, |s| {
            mda::link_point(self.alpha, from.saturating_mul(s + 1))
        });
        let at_both: usize = hop.by_from.values().map(|s| s.answered).sum();
        let together = at_both >= each_link.max(one_more);
        let split = self.alpha / from.max(1) as f64;
        let (mut waiting, mut short) = (false, 0);
        for (from, flows) in through() {
            let stats = hop.by_from.get(from).unwrap_or(&none);
            let seen = stats.successors.len();
            if seen >= here || together {
                continue;
            }
            let needed = mda::stopping_point(split, seen.max(1)) as usize;
            if stats.answered >= needed || stats.lost >= needed {
                continue;
            }
            if stats.coming > 0 {
                waiting = true;
                continue;
            }
            // Flows through it go out in order: the probed ones are a prefix.
            for &id in flows.range(stats.scan_from.get()..) {
                if hop.flows.contains_key(&id) {
                    stats.scan_from.set(id.saturating_add(1));
                } else {
                    return Some(Want::Send {
                        ttl: self.current,
                        flow: Some(id),
                    });
                }
            }
            short += 1;
        }
        // An interface before with no flow left to follow: the rest on the flows at both
        // TTLs together, any flow through the TTL before first (a fresh flow there reaches
        // a given interface one time in `from`: a rarely reached one would take many).
        if short > 0
            && let Some(&id) = through()
                .flat_map(|(_, flows)| flows)
                .find(|id| !hop.flows.contains_key(id))
        {
            return Some(Want::Send {
                ttl: self.current,
                flow: Some(id),
            });
        }
        // One more interface before (the flows at both TTLs together count it already).
        let wider = self.point(before.interfaces().len() + 1);
        let fewer = match !together && before.answered() < wider && before.lost() < wider {
            true => wider - before.answered(),
            false => 0,
        };
        let fresh = short.max(fewer).min(self.config.window);
        let outstanding = before.outstanding();
        if fresh > 0
            && outstanding < fresh
            && let Some(want) = self.unplaced(h)
        {
            return Some(want);
        }
        if fresh > 0 {
            let cap = 2 * before.onward.len() * self.point(before.onward.len());
            if (hop.node_control as usize) < cap && outstanding < fresh {
                return Some(self.next_flow_at(h - 1));
            }
        }
        waiting |= outstanding > 0;
        waiting.then_some(Want::Wait)
    }

    /// A probe at the TTL before `h` of a flow answered at `h` that was sent straight there
    /// (its interface before unknown, so it counts for none), if there is one: where an
    /// interface before needs more flows, one such probe places a flow (`credit`) where a
    /// fresh flow takes two. None where the TTL before cannot tell (it balances per packet,
    /// or is a first hop taken as one).
    fn unplaced(&self, h: usize) -> Option<Want> {
        if h <= usize::from(self.config.first_ttl) || self.assumed_single(h - 1) {
            return None;
        }
        let (hop, before) = (&self.hops[h], &self.hops[h - 1]);
        if before.per_packet {
            return None;
        }
        let (&id, _) = hop.flows.iter().find(|(id, o)| {
            o.from.is_none() && o.responder.is_some() && !before.flows.contains_key(id)
        })?;
        Some(Want::Send {
            ttl: u8::try_from(h - 1).unwrap_or(u8::MAX),
            flow: Some(id),
        })
    }

    /// A flow that went on from an interface of `before` and has not been probed at `hop`:
    /// the lowest one through the interface with the fewest flows sent on so far (MDA-Lite
    /// spreads a TTL's flows evenly over the interfaces before, as its rule assumes; among
    /// equals, the first by address).
    fn evenly(&self, hop: &HopState, before: &HopState) -> Option<u16> {
        let none = FromStats::default();
        let mut best: Option<(usize, u16)> = None;
        for (from, flows) in &before.onward {
            let stats = hop.by_from.get(from).unwrap_or(&none);
            let sent = stats.answered + stats.lost + stats.coming;
            if best.is_some_and(|(least, _)| sent >= least) {
                continue;
            }
            // Flows through it go out in order: the probed ones are a prefix.
            for &id in flows.range(stats.scan_from.get()..) {
                if hop.flows.contains_key(&id) {
                    stats.scan_from.set(id.saturating_add(1));
                } else {
                    best = Some((sent, id));
                    break;
                }
            }
        }
        best.map(|(_, id)| id)
    }

    /// A probe at the TTL before `h` for an interface at `h` reached only by flows sent
    /// straight to it, if one is needed: one of those flows, so that its own answer there
    /// shows the link (and any interface MDA missed there). Each flow is tried once. None
    /// where the TTL before is silent, balances per packet, or is a first hop taken as one.
    fn link_probe(&self, h: usize) -> Option<Want> {
        if h <= usize::from(self.config.first_ttl) || self.assumed_single(h - 1) {
            return None;
        }
        let (hop, before) = (&self.hops[h], &self.hops[h - 1]);
        if before.per_packet || before.answered() == 0 {
            return None;
        }
        // Per interface: linked by a flow seen at both TTLs, a flow on its way to the TTL
        // before, a flow not yet sent there.
        let mut state: BTreeMap<IpAddr, (bool, bool, Option<u16>)> = BTreeMap::new();
        for (&id, o) in &hop.flows {
            let Some(to) = o.responder else {
                continue;
            };
            let entry = state.entry(to).or_default();
            match before.flows.get(&id) {
                Some(b) if b.through().is_some() => entry.0 = true,
                Some(b) if b.answered == 0 && b.lost == 0 => entry.1 = true,
                Some(_) => {}
                None => {
                    entry.2.get_or_insert(id);
                }
            }
        }
        let mut waiting = false;
        for (linked, coming, untried) in state.into_values() {
            if linked {
                continue;
            }
            if coming {
                waiting = true;
            } else if let Some(id) = untried {
                return Some(Want::Send {
                    ttl: u8::try_from(h - 1).unwrap_or(u8::MAX),
                    flow: Some(id),
                });
            }
        }
        waiting.then_some(Want::Wait)
    }

    /// The one interface of TTL `h`, where MDA-Lite takes every interface of the TTL
    /// before whose flows go on as linked to it: `lite`, the TTL's own stopping rule met
    /// with that one interface (`n_1` flows answered by it, none lost, none answered by
    /// another), and not the target's TTL (ended at the target's first answer, not by the
    /// rule: a longer path may still be on its way there). The inference assumes what the
    /// TTL's rule does: no next hop rarer than one in two is missed here, so the flows not
    /// followed from the interfaces before reach this one too (as in scamper's `tracelb`).
    fn converged(&self, h: usize) -> Option<IpAddr> {
        let hop = self.hops.get(h)?;
        let one = hop.found.len() == 1 && hop.extra.is_empty() && !hop.per_packet;
        let ruled = hop.answered() >= self.point(1) && hop.lost() == 0 && !hop.reached_target;
        let before = h.checked_sub(1).and_then(|b| self.hops.get(b))?;
        let after_first = h > usize::from(self.config.first_ttl);
        if !(self.config.lite && one && ruled && after_first) || before.per_packet {
            return None;
        }
        hop.found.keys().next().copied()
    }

    /// Whether TTL `t` is taken as one interface without the stopping rule
    /// ([`MultipathConfig::single_first_hop`]): flows sent past it are linked to it.
    fn assumed_single(&self, t: usize) -> bool {
        self.config.single_first_hop && t == usize::from(self.config.first_ttl)
    }

    /// The next flow to probe at `h`: one that went on from `h - 1` and has not been
    /// probed at `h` (lowest first), or a fresh one, sent at `h - 1` first so that its
    /// link is known, unless `h` is the first TTL or the TTL before answers nothing or
    /// balances per packet.
    fn next_flow_at(&self, h: usize) -> Want {
        let first = usize::from(self.config.first_ttl);
        let ttl = u8::try_from(h).unwrap_or(u8::MAX);
        if h > first {
            let before = &self.hops[h - 1];
            let hop = &self.hops[h];
            if let Some(id) = self.evenly(hop, before) {
                return Want::Send {
                    ttl,
                    flow: Some(id),
                };
            }
            let mut prefix = true;
            for (&id, o) in before.flows.range(hop.scan_from.get()..) {
                if hop.flows.contains_key(&id) {
                    if prefix {
                        hop.scan_from.set(id.saturating_add(1));
                    }
                    continue;
                }
                prefix = false;
                if o.through().is_some() || (o.answered == 0 && o.lost > 0) {
                    return Want::Send {
                        ttl,
                        flow: Some(id),
                    };
                }
            }
            // Straight to `h` where the TTL before cannot tell where a flow went (it answers
            // nothing, or balances per packet) or need not (it has one interface).
            // MDA-Lite: a fresh flow for the TTL's own rule needs no answer before (a link
            // into an interface reached only this way is probed on its own, `link_probe`;
            // MDA's rule, where needed, sends its own flows there first).
            let direct = before.per_packet
                || before.answered() == 0
                || before.sole_through().is_some()
                || (self.config.lite && hop.lite_test() == LiteTest::Pass);
            if !direct && h == usize::from(self.current) {
                return Want::Send {
                    ttl: ttl - 1,
                    flow: None,
                };
            }
        }
        Want::Send { ttl, flow: None }
    }
}

/// The most stopping decisions a trace's confidence can be split over.
const MAX_DECISIONS: u32 = 100;

/// The stopping points for a confidence split over `decisions`, `[k]` for `k` in
/// `0..=MAX_POINTS`, each set computed once and kept (at most 2 x `MAX_DECISIONS` sets of
/// 129 numbers).
fn stopping_points(confidence: Confidence, decisions: u32) -> &'static [u32] {
    type Cache = Mutex<BTreeMap<(u8, u32), &'static [u32]>>;
    static POINTS: OnceLock<Cache> = OnceLock::new();
    let cache = POINTS.get_or_init(Cache::default);
    // A poisoned lock still holds complete entries: each is inserted whole.
    let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
    cache
        .entry((confidence.percent(), decisions))
        .or_insert_with(|| {
            let alpha = confidence.split(decisions);
            let points: Vec<u32> = (0..=MAX_POINTS)
                .map(|k| mda::stopping_point(alpha, k))
                .collect();
            Box::leak(points.into_boxed_slice())
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::command::Protocol;
    use crate::protocol::reply::Reply;

    #[test]
    fn a_flow_sent_straight_past_counts_for_no_interface_before_until_answered_there() {
        // TTL 2: flows 0 to 5 and the even ones reach A, the odd ones from 7 on B, so TTL
        // 2's own rule shows A alone; TTL 3: X and Y behind A (even and odd flows), Z
        // behind B. Flows sent straight to
        // TTL 3 while TTL 2 shows A alone went through B half the time: they are evidence
        // for A's successors only once TTL 2 answered them with A.
        let a: IpAddr = "10.2.0.1".parse().unwrap();
        let b: IpAddr = "10.2.0.2".parse().unwrap();
        let via = |flow: u16| {
            if flow < 6 || flow.is_multiple_of(2) {
                a
            } else {
                b
            }
        };
        let args = ProbeArgs::new("127.0.0.1".parse().unwrap()).protocol(Protocol::Udp);
        let mut now = Instant::now();
        let mut tracer = MultipathTracer::new(args, &MultipathConfig::default(), now).unwrap();
        for _ in 0..10_000 {
            while let Some(probe) = tracer.poll_probe(now) {
                let id = probe.id();
                let flow = id.flow().id();
                let line = match id.ttl() {
                    1 => "1 ttl-expired ip-4 10.1.0.1 round-trip-time 500".to_owned(),
                    2 => format!("1 ttl-expired ip-4 {} round-trip-time 500", via(flow)),
                    3 => {
                        let to = if via(flow) == b { 3 } else { 1 + flow % 2 };
                        format!("1 ttl-expired ip-4 10.3.0.{to} round-trip-time 500")
                    }
                    _ => "1 reply ip-4 127.0.0.1 round-trip-time 900".to_owned(),
                };
                let result = ProbeResult::from_reply(&Reply::parse(&line).unwrap());
                tracer.handle_result(now, id, &result);
            }
            match tracer.poll_timeout() {
                Some(next) => now = now.max(next),
                None => break,
            }
            tracer.handle_timeout(now);
        }
        assert!(tracer.is_done());
        let (two, three) = (&tracer.hops[2], &tracer.hops[3]);
        assert_eq!(two.interfaces().len(), 2, "B is found at TTL 2");
        for (&id, obs) in &three.flows {
            if let Some(from) = obs.from {
                assert_eq!(
                    two.seen_through(id),
                    Some(from),
                    "flow {id} credited to {from}"
                );
            }
        }
        for (from, stats) in &three.by_from {
            let credited = three.flows.values().filter(|o| o.from == Some(*from));
            assert_eq!(stats.answered, credited.filter(|o| o.answered > 0).count());
        }
        let links = tracer.report().links;
        let z: IpAddr = "10.3.0.3".parse().unwrap();
        assert!(links.iter().any(|l| l.ttl == 3 && l.from == b && l.to == z));
        assert!(!links.iter().any(|l| l.ttl == 3 && l.from == a && l.to == z));
    }
}
