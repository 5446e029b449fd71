//! The multipath tracer (MDA) against in-process topologies in virtual time: diamonds 2 to
//! 16 wide, nested, meshed, unequal weights, a diamond at the first hop, a per-packet hop, a
//! silent hop. Every router picks a flow's next hop by a hash seeded per router and per run,
//! as real balancers do; each check runs over many seeds.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use mtrproto::{
    Confidence, Flow, Link, MultipathConfig, MultipathEnd, MultipathReport, MultipathTracer,
    ProbeArgs, ProbeId, ProbeResult, Protocol, Reply,
};

/// One router.
#[derive(Clone)]
struct Node {
    addr: IpAddr,
    /// Next hops (index at the next TTL) and their weights.
    next: Vec<(usize, u64)>,
    per_packet: bool,
    silent: bool,
}

/// Routers by TTL: `levels[0]` is the source, the last level is the target alone.
#[derive(Clone)]
struct Topology {
    name: &'static str,
    levels: Vec<Vec<Node>>,
}

fn addr(ttl: usize, i: usize) -> IpAddr {
    format!("10.{ttl}.{}.{}", i / 200, 1 + i % 200)
        .parse()
        .unwrap()
}

const TARGET: &str = "127.0.0.1";

impl Topology {
    /// Levels of `widths[t]` routers (the source first, the target added last), each
    /// connected to the next level by `link(ttl, from, to) -> weight` (0: no link).
    fn new(
        name: &'static str,
        widths: &[usize],
        link: impl Fn(usize, usize, usize) -> u64,
    ) -> Topology {
        let mut widths = widths.to_vec();
        widths.push(1);
        let levels = (0..widths.len())
            .map(|t| {
                (0..widths[t])
                    .map(|i| Node {
                        addr: if t + 1 == widths.len() {
                            TARGET.parse().unwrap()
                        } else {
                            addr(t, i)
                        },
                        next: match widths.get(t + 1) {
                            Some(&n) => (0..n)
                                .map(|j| (j, link(t, i, j)))
                                .filter(|&(_, w)| w > 0)
                                .collect(),
                            None => Vec::new(),
                        },
                        per_packet: false,
                        silent: false,
                    })
                    .collect()
            })
            .collect();
        Topology { name, levels }
    }

    /// Every router of a level to every one of the next, weight 1.
    fn full(name: &'static str, widths: &[usize]) -> Topology {
        Topology::new(name, widths, |_, _, _| 1)
    }

    /// The interfaces at each TTL and the links, as the trace should find them.
    fn truth(&self) -> (BTreeSet<(u8, IpAddr)>, BTreeSet<Link>) {
        let mut interfaces = BTreeSet::new();
        let mut links = BTreeSet::new();
        for (t, level) in self.levels.iter().enumerate().skip(1) {
            for node in level.iter().filter(|n| !n.silent) {
                interfaces.insert((t as u8, node.addr));
            }
        }
        for (t, level) in self.levels.iter().enumerate().skip(1) {
            for node in level.iter().filter(|n| !n.silent) {
                for &(j, _) in &node.next {
                    let to = &self.levels[t + 1][j];
                    if !to.silent && t + 1 < self.levels.len() {
                        links.insert(Link {
                            ttl: (t + 1) as u8,
                            from: node.addr,
                            to: to.addr,
                        });
                    }
                }
            }
        }
        (interfaces, links)
    }

    /// The router a probe in `flow` reaches at `ttl`: per-flow routers hash the flow with
    /// their own seed, per-packet ones draw from `rng`.
    fn walk(&self, seed: u64, ttl: u8, flow: u16, rng: &mut u64) -> &Node {
        let last = self.levels.len() - 1;
        let mut at = 0;
        for t in 0..usize::from(ttl).min(last) {
            let node = &self.levels[t][at];
            let total: u64 = node.next.iter().map(|n| n.1).sum();
            let draw = if node.per_packet {
                *rng = mix64(*rng);
                *rng
            } else {
                mix64(seed ^ mix64(((t as u64) << 40) | ((at as u64) << 20)) ^ u64::from(flow))
            };
            let mut pick = draw % total;
            for &(j, w) in &node.next {
                if pick < w {
                    at = j;
                    break;
                }
                pick -= w;
            }
        }
        &self.levels[usize::from(ttl).min(last)][at]
    }
}

/// SplitMix64's finaliser.
fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn result(line: &str) -> ProbeResult {
    ProbeResult::from_reply(&Reply::parse(line).unwrap())
}

fn udp() -> ProbeArgs {
    ProbeArgs::new(TARGET.parse().unwrap()).protocol(Protocol::Udp)
}

/// Runs a trace over `topology` in virtual time with the routers seeded by `seed`; answers
/// come 1 ms after each probe, silence at the timeout. Bounded: 100,000 steps.
fn trace(topology: &Topology, seed: u64, config: &MultipathConfig) -> MultipathReport {
    trace_lossy(topology, seed, config, 0)
}

/// [`trace`] where each probe is lost (silence at the timeout) with probability
/// `loss_per_mille` / 1,000, drawn apart from the routers' own draws.
fn trace_lossy(
    topology: &Topology,
    seed: u64,
    config: &MultipathConfig,
    loss_per_mille: u64,
) -> MultipathReport {
    trace_answering(topology, seed, config, loss_per_mille, false)
}

/// [`trace_lossy`] where each answer comes after its own delay, up to most of the timeout,
/// so that answers come out of order and re-probes of one flow overlap in flight.
fn trace_jittered(
    topology: &Topology,
    seed: u64,
    config: &MultipathConfig,
    loss_per_mille: u64,
) -> MultipathReport {
    trace_answering(topology, seed, config, loss_per_mille, true)
}

/// A trace on virtual time through `topology`: each answer after 1 ms, or with `jitter`
/// after its own delay up to 90% of the timeout (drawn from the loss draw, so that both
/// lose the same probes).
fn trace_answering(
    topology: &Topology,
    seed: u64,
    config: &MultipathConfig,
    loss_per_mille: u64,
    jitter: bool,
) -> MultipathReport {
    trace_in_flight_at_end(topology, seed, config, loss_per_mille, jitter).0
}

/// [`trace_answering`], with the probes still in flight when the trace ended.
fn trace_in_flight_at_end(
    topology: &Topology,
    seed: u64,
    config: &MultipathConfig,
    loss_per_mille: u64,
    jitter: bool,
) -> (MultipathReport, usize) {
    let mut loss_rng = seed ^ 0x1055;
    let start = Instant::now();
    let mut now = start;
    let mut tracer = MultipathTracer::new(udp(), config, now).unwrap();
    let mut rng = seed ^ 0x5555;
    let mut pending: Vec<(Instant, ProbeId, ProbeResult)> = Vec::new();
    let most = u64::try_from(config.timeout.as_millis()).unwrap() * 9 / 10;
    for _ in 0..200_000 {
        while let Some(probe) = tracer.poll_probe(now) {
            let id = probe.id();
            assert_eq!(probe.args().fixed_flow(), Some(id.flow()));
            let node = topology.walk(seed, id.ttl(), id.flow().id(), &mut rng);
            loss_rng = mix64(loss_rng);
            let lost = loss_rng % 1000 < loss_per_mille;
            let delay = if jitter {
                Duration::from_millis(1 + (loss_rng >> 20) % most.max(1))
            } else {
                Duration::from_millis(1)
            };
            let (delay, answer) = if node.silent || lost {
                (config.timeout, result("1 no-reply"))
            } else if node.addr == TARGET.parse::<IpAddr>().unwrap() {
                (
                    delay,
                    result(&format!("1 reply ip-4 {} round-trip-time 1000", node.addr)),
                )
            } else {
                (
                    delay,
                    result(&format!(
                        "1 ttl-expired ip-4 {} round-trip-time 1000",
                        node.addr
                    )),
                )
            };
            pending.push((now + delay, id, answer));
        }
        if tracer.is_done() {
            break;
        }
        let due = pending.iter().map(|p| p.0).min();
        now = match (tracer.poll_timeout(), due) {
            (Some(t), Some(d)) => t.min(d).max(now),
            (t, d) => t.or(d).expect("a trace that is not done has a deadline"),
        };
        if let Some(i) = pending.iter().position(|p| p.0 <= now) {
            let (_, id, answer) = pending.swap_remove(i);
            tracer.handle_result(now, id, &answer);
        } else {
            tracer.handle_timeout(now);
        }
    }
    assert!(tracer.is_done(), "{}: the trace did not end", topology.name);
    (tracer.report(), tracer.in_flight())
}

/// What runs over many seeds found, per interface and per link.
struct Tally {
    runs: usize,
    interfaces: BTreeMap<(u8, IpAddr), usize>,
    links: BTreeMap<Link, usize>,
    per_packet: BTreeMap<u8, usize>,
    probes: Vec<u32>,
    /// Runs that reported a link the topology does not have.
    phantom: usize,
}

fn tally(topology: &Topology, runs: usize, config: &MultipathConfig) -> Tally {
    tally_from(topology, 0, runs, config)
}

/// [`tally`] over the seeds of runs `first..first + runs`: another set of seeds.
fn tally_from(topology: &Topology, first: usize, runs: usize, config: &MultipathConfig) -> Tally {
    let (truth_interfaces, truth_links) = topology.truth();
    let mut tally = Tally {
        runs,
        interfaces: truth_interfaces.iter().map(|i| (*i, 0)).collect(),
        links: truth_links.iter().map(|l| (*l, 0)).collect(),
        per_packet: BTreeMap::new(),
        probes: Vec::new(),
        phantom: 0,
    };
    for run in first..first + runs {
        let seed = mix64(run as u64 + 1);
        let report = trace(topology, seed, config);
        assert_eq!(report.end, Some(MultipathEnd::Reached), "{}", topology.name);
        assert!(report.probes <= config.max_probes);
        for hop in &report.hops {
            for responder in &hop.responders {
                let key = (hop.ttl, responder.address);
                let count = tally.interfaces.get_mut(&key);
                *count.unwrap_or_else(|| panic!("{}: no interface {key:?}", topology.name)) += 1;
            }
            if hop.per_packet {
                *tally.per_packet.entry(hop.ttl).or_insert(0) += 1;
            }
        }
        // A link needs one flow answered at both of its TTLs: never one that is not there.
        let mut phantom = false;
        for link in &report.links {
            match tally.links.get_mut(link) {
                Some(count) => *count += 1,
                None => phantom = true,
            }
        }
        tally.phantom += usize::from(phantom);
        tally.probes.push(report.probes);
    }
    tally
}

/// Every interface and link found in at least 95% of the runs, and a link that is not
/// there reported in none.
fn assert_found(topology: &Topology, tally: &Tally) {
    assert!(
        tally.phantom == 0,
        "{}: links that are not there in {} runs",
        topology.name,
        tally.phantom
    );
    let least = |counts: Vec<usize>| counts.into_iter().min().unwrap_or(tally.runs);
    let worst_interface = least(tally.interfaces.values().copied().collect());
    let worst_link = least(tally.links.values().copied().collect());
    for (what, worst) in [("interface", worst_interface), ("link", worst_link)] {
        assert!(
            worst * 100 >= tally.runs * 95,
            "{}: an {what} found in only {worst} of {} runs: {:?} {:?}",
            topology.name,
            tally.runs,
            tally.interfaces,
            tally.links
        );
    }
}

fn median(values: &[u32]) -> u32 {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    sorted[sorted.len() / 2]
}

/// MDA's probes for a topology: at each TTL, the stopping point of every interface before
/// for its successors (MDA's per-interface rule, node control aside), and one more
/// stopping point of re-probes where a TTL has two or more interfaces.
fn mda_bound(topology: &Topology, confidence: Confidence) -> u32 {
    let n = |k: usize| confidence.stopping_point(k.max(1));
    let mut total = 0;
    for t in 1..topology.levels.len() {
        let before = &topology.levels[t - 1];
        total += before.iter().map(|u| n(u.next.len())).sum::<u32>();
        if topology.levels[t].len() >= 2 {
            total += n(1);
        }
    }
    total
}

fn diamond(name: &'static str, width: usize) -> Topology {
    Topology::full(name, &[1, 1, width, 1])
}

const RUNS: usize = 200;

#[test]
fn diamonds_2_to_16_wide_are_found_within_mdas_bound() {
    for width in [2, 3, 4, 8, 16] {
        let topology = diamond("diamond", width);
        for (lite, confidence) in [
            (true, Confidence::P95),
            (true, Confidence::P99),
            (false, Confidence::P95),
        ] {
            let config = MultipathConfig {
                lite,
                confidence,
                ..MultipathConfig::default()
            };
            let tally = tally(&topology, RUNS, &config);
            assert_found(&topology, &tally);
            let bound = mda_bound(&topology, config.confidence);
            let worst = tally.probes.iter().max().copied().unwrap_or(0);
            println!(
                "width {width} lite {lite} at {}%: median {} worst {worst} probes, MDA bound \
                 {bound}",
                confidence.percent(),
                median(&tally.probes)
            );
            // MDA's per-interface rule also sends fresh flows to reach each interface (node
            // control), which the bound leaves out: only MDA-Lite is held to it.
            if lite {
                assert!(worst <= bound, "width {width}: {worst} probes > {bound}");
            }
        }
    }
}

#[test]
fn nested_meshed_unequal_and_first_hop_diamonds_are_found() {
    let nested = Topology::new("nested", &[1, 1, 2, 4, 1], |t, i, j| match t {
        // b_i -> c_{2i}, c_{2i+1}
        2 => u64::from(j / 2 == i),
        _ => 1,
    });
    let meshed = Topology::full("meshed", &[1, 1, 2, 2, 1]);
    let meshed_wide = Topology::full("meshed 4x4", &[1, 1, 4, 4, 1]);
    // Unequal shares downstream: TTL 3's first router takes half the flows, the two
    // others a quarter each (TTL 2's routers have one and two next hops).
    let unequal = Topology::new("unequal", &[1, 1, 2, 3, 1], |t, i, j| match (t, i, j) {
        (2, 0, 0) => 1,
        (2, 1, 1 | 2) => 1,
        (2, _, _) => 0,
        _ => 1,
    });
    let first_hop = Topology::full("first hop", &[1, 4, 1]);
    // The nested diamond converging again: TTL 3's four routers pair up onto TTL 4's two.
    let nested_back = Topology::new("nested (2, 4, 2)", &[1, 1, 2, 4, 2, 1], |t, i, j| match t {
        2 => u64::from(j / 2 == i),
        3 => u64::from(i / 2 == j),
        _ => 1,
    });
    // Where runs stay within MDA's bound by default, with how many of the 200 may exceed
    // it. Nested at 95% goes over in 2 of runs 0 to 14,999 (82 and 85 against 81), where
    // TTL 2's two routers split the flows far from evenly (3 and 22, 11 and 30): MDA's rule
    // at TTL 3 then sends fresh flows to TTL 2 until the rarer router has its own (node
    // control, which the bound leaves out); held to 1% of runs, which any seeds keep, not
    // to every run, which only some sets of 200 do. Nested (2, 4, 2) at 95%: its converging
    // TTL on MDA-Lite's hop rule, worst 84 to 96 against 99 over five sets of 200 seeds;
    // over in 2 of runs 0 to 4,999 (100, 103) and 5 of 0 to 9,999 (100 to 103), where a
    // router at TTL 2 or 3 got few of the flows, as above (it took up to 103 with flows at
    // both TTLs there). At 99% both nested diamonds stay within it in every one of runs 0
    // to 9,999 (worst 105 against 109, 124 against 133); before flows sent straight to a
    // TTL counted for no router until answered at the TTL before, 5 and 4 of runs 0 to 999
    // went over (up to 119 and 134). 4x4 at 95%: worst 148 to 152 against 153 over five
    // sets of 200 seeds (`the_meshed_4x4_diamond_stays_within_mdas_bound`). Not unequal,
    // where uneven shares void MDA's bound, nor, at 99%, the meshed 4x4 (76 of runs 0 to
    // 999 over, up to 219 against 204), 4x2 and 3x3
    // (`meshed_hops_are_followed_per_router`).
    let (p95, p99) = (Confidence::P95, Confidence::P99);
    let cases = [
        (nested, &[(p95, RUNS / 100), (p99, 0)][..]),
        (meshed, &[(p95, 0), (p99, 0)][..]),
        (meshed_wide, &[(p95, 0)][..]),
        (unequal, &[][..]),
        (first_hop, &[(p95, 0), (p99, 0)][..]),
        (nested_back, &[(p95, 0), (p99, 0)][..]),
    ];
    for (topology, bounded) in cases {
        for confidence in [p95, p99] {
            let config = MultipathConfig {
                confidence,
                ..MultipathConfig::default()
            };
            let tally = tally(&topology, RUNS, &config);
            let bound = mda_bound(&topology, confidence);
            let worst = tally.probes.iter().max().copied().unwrap_or(0);
            println!(
                "{} at {}%: median {} worst {worst} probes, MDA bound {bound}",
                topology.name,
                confidence.percent(),
                median(&tally.probes)
            );
            assert_found(&topology, &tally);
            if let Some(&(_, allowed)) = bounded.iter().find(|(c, _)| *c == confidence) {
                let over = tally.probes.iter().filter(|&&p| p > bound).count();
                assert!(
                    over <= allowed,
                    "{}: {over} runs over {bound} probes (worst {worst}), {allowed} allowed",
                    topology.name
                );
            }
        }
    }
}

#[test]
fn the_meshed_4x4_diamond_stays_within_mdas_bound() {
    // TTL 2's four routers each reach all four of TTL 3's: every run within MDA's bound
    // (153 at 95%) over four sets of 200 seeds, each link found in at least 95% of the runs
    // of each set. It took up to 158, 64 to 76 runs of each 200 over: where a router of
    // TTL 2 needs many flows to show all four (up to n_3 = 21 with the confidence split
    // over four), flows at both TTLs end it at 59, and each router's flows at TTL 3 then
    // took 5 re-probes, 20 where the bound counts 6. A router whose flows reached four
    // interfaces takes 3 (were it balancing per packet, each re-probe comes back to the
    // flow's first interface one time in four at most), once it is followed: 12.
    let topology = Topology::full("meshed 4x4", &[1, 1, 4, 4, 1]);
    let config = MultipathConfig::default();
    let bound = mda_bound(&topology, config.confidence);
    assert_eq!(bound, 153);
    for set in 0..4 {
        let tally = tally_from(&topology, set * RUNS, RUNS, &config);
        assert_found(&topology, &tally);
        let worst = tally.probes.iter().max().copied().unwrap_or(0);
        println!(
            "meshed 4x4, seeds of set {set}: median {} worst {worst} probes, MDA bound {bound}",
            median(&tally.probes)
        );
        assert!(worst <= bound, "set {set}: {worst} probes > {bound}");
    }
}

#[test]
fn a_per_packet_hop_is_reported_as_such() {
    let mut topology = Topology::full("per packet", &[1, 1, 3, 1]);
    // TTL 1's router balances per packet over TTL 2's three.
    topology.levels[1][0].per_packet = true;
    let tally = tally(&topology, RUNS, &MultipathConfig::default());
    assert_found(&topology, &tally);
    let flagged = tally.per_packet.get(&2).copied().unwrap_or(0);
    assert!(flagged * 100 >= RUNS * 95, "flagged in {flagged} of {RUNS}");
    // No other hop is: per-flow routers never answer one flow from two interfaces.
    assert_eq!(tally.per_packet.len(), 1, "{:?}", tally.per_packet);
    // The same diamond balanced per flow is never flagged.
    let per_flow = Topology::full("per flow", &[1, 1, 2, 1]);
    assert!(tally_of(&per_flow).per_packet.is_empty());
}

#[test]
fn no_link_is_taken_from_flows_after_a_per_packet_hop() {
    // TTL 1's router balances per packet over TTL 2's two, each with its own router at
    // TTL 3: a flow answered by one at TTL 2 may have come through the other at TTL 3.
    let mut topology = Topology::new(
        "per packet, then parallel",
        &[1, 1, 2, 2],
        |t, i, j| match t {
            2 => u64::from(i == j),
            _ => 1,
        },
    );
    topology.levels[1][0].per_packet = true;
    let (interfaces, links) = topology.truth();
    let (mut complete, mut phantom) = (0, 0);
    for run in 0..RUNS {
        let report = trace(
            &topology,
            mix64(run as u64 + 1),
            &MultipathConfig::default(),
        );
        let found: BTreeSet<(u8, IpAddr)> = report
            .hops
            .iter()
            .flat_map(|h| h.responders.iter().map(move |r| (h.ttl, r.address)))
            .collect();
        // Where MDA missed an interface or TTL 2's balancing (each within the confidence),
        // a link may be inferred wrongly; with both found, no link may be one that is not
        // there.
        if found == interfaces && report.hops[1].per_packet {
            complete += 1;
            phantom += usize::from(report.links.iter().any(|l| !links.contains(l)));
        }
    }
    assert!(
        complete * 100 >= RUNS * 80,
        "all found in {complete} of {RUNS}"
    );
    assert_eq!(
        phantom, 0,
        "links that are not there in {phantom} of {complete} runs"
    );
}

fn tally_of(topology: &Topology) -> Tally {
    tally(topology, RUNS, &MultipathConfig::default())
}

#[test]
fn a_silent_hop_is_crossed_and_left_empty() {
    let mut topology = Topology::full("silent", &[1, 1, 1, 2, 1]);
    topology.levels[2][0].silent = true;
    let tally = tally_of(&topology);
    assert_found(&topology, &tally);
    let report = trace(&topology, 7, &MultipathConfig::default());
    assert!(report.hops[1].responders.is_empty());
    assert!(report.hops[1].unanswered > 0);
    assert_eq!(report.hops.len(), 5);
}

#[test]
fn a_silent_path_ends_after_max_silent_hops() {
    let mut topology = Topology::full("all silent", &[1, 1, 1, 1, 1, 1, 1, 1]);
    for level in &mut topology.levels[1..7] {
        level[0].silent = true;
    }
    let config = MultipathConfig {
        max_silent: 3,
        ..MultipathConfig::default()
    };
    let start = Instant::now();
    let mut tracer = MultipathTracer::new(udp(), &config, start).unwrap();
    let mut now = start;
    let mut ids = Vec::new();
    for _ in 0..10_000 {
        while let Some(probe) = tracer.poll_probe(now) {
            ids.push(probe.id());
        }
        match tracer.poll_timeout() {
            Some(next) => now = next.max(now),
            None => break,
        }
        // Nothing ever answers: every probe is given up at its deadline.
        tracer.handle_timeout(now);
    }
    let report = tracer.report();
    assert_eq!(report.end, Some(MultipathEnd::Silent));
    assert_eq!(report.hops.len(), 3);
    assert!(report.hops.iter().all(|h| h.responders.is_empty()));
    assert_eq!(report.probes as usize, ids.len());
}

#[test]
fn flows_run_out_like_the_budget() {
    // Starting 20 flows before the last: a 16-wide hop needs more.
    let config = MultipathConfig {
        first_flow: Flow::MAX - 19,
        ..MultipathConfig::default()
    };
    let report = trace(&diamond("last flows", 16), 5, &config);
    assert_eq!(report.end, Some(MultipathEnd::Budget));
    assert!(report.probes >= 20);
}

#[test]
fn the_budget_is_respected() {
    let topology = diamond("budget", 16);
    for budget in [1, 10, 50, 100] {
        let config = MultipathConfig {
            max_probes: budget,
            ..MultipathConfig::default()
        };
        let report = trace(&topology, 3, &config);
        assert!(report.probes <= budget, "{} > {budget}", report.probes);
        assert_eq!(report.end, Some(MultipathEnd::Budget));
    }
}

#[test]
fn nonsense_results_do_not_panic_and_the_trace_ends() {
    let kinds = [
        "1 no-reply",
        "1 reply ip-4 127.0.0.1 round-trip-time 5",
        "1 ttl-expired ip-4 10.9.9.9 round-trip-time 5",
        "1 ttl-expired ip-6 ::1 round-trip-time -5",
        "1 no-route ip-4 10.1.1.1 round-trip-time 5",
        "1 probes-exhausted",
        "1 invalid-argument",
        "1 something-new foo bar",
    ];
    for seed in 0..50u64 {
        let config = MultipathConfig {
            max_probes: 500,
            window: 1 + (seed % 8) as usize,
            ..MultipathConfig::default()
        };
        let start = Instant::now();
        let mut now = start;
        let mut tracer = MultipathTracer::new(udp(), &config, now).unwrap();
        let mut rng = mix64(seed);
        let mut sent: Vec<ProbeId> = Vec::new();
        for _ in 0..20_000 {
            while let Some(probe) = tracer.poll_probe(now) {
                sent.push(probe.id());
            }
            if tracer.is_done() || sent.is_empty() {
                break;
            }
            rng = mix64(rng);
            // Any probe sent so far, again and again, with any answer, or a loss.
            let id = sent[(rng % sent.len() as u64) as usize];
            let line = kinds[((rng >> 20) % kinds.len() as u64) as usize];
            match (rng >> 40) % 4 {
                0 => tracer.handle_lost(now, id),
                1 => tracer.handle_timeout(now),
                _ => tracer.handle_result(now, id, &result(line)),
            }
            now += Duration::from_millis((rng >> 50) % 50);
            assert!(tracer.probes_sent() <= config.max_probes);
        }
        assert!(tracer.is_done(), "seed {seed}");
        let report = tracer.report();
        assert!(report.probes <= config.max_probes);
    }
}

#[test]
fn settings_are_checked() {
    let now = Instant::now();
    let icmp = ProbeArgs::new(TARGET.parse().unwrap());
    assert!(MultipathTracer::new(icmp, &MultipathConfig::default(), now).is_err());
    for config in [
        MultipathConfig {
            max_ttl: 0,
            ..MultipathConfig::default()
        },
        MultipathConfig {
            first_ttl: 31,
            ..MultipathConfig::default()
        },
        MultipathConfig {
            decisions: 0,
            ..MultipathConfig::default()
        },
        MultipathConfig {
            decisions: 101,
            ..MultipathConfig::default()
        },
        MultipathConfig {
            window: 0,
            ..MultipathConfig::default()
        },
        MultipathConfig {
            max_silent: 0,
            ..MultipathConfig::default()
        },
        MultipathConfig {
            first_flow: Flow::MAX + 1,
            ..MultipathConfig::default()
        },
    ] {
        assert!(MultipathTracer::new(udp(), &config, now).is_err());
    }
}

#[test]
fn the_targets_ttl_takes_one_answer_from_the_target() {
    for width in [2, 16] {
        let topology = diamond("diamond", width);
        for seed in 1..=20 {
            let report = trace(&topology, mix64(seed), &MultipathConfig::default());
            let last = report.hops.last().unwrap();
            assert_eq!(last.ttl, 4);
            // Answers come one at a time here, so nothing else is in flight at the end.
            assert_eq!(last.probes, 1, "width {width}: {report:?}");
        }
    }
}

#[test]
fn a_single_first_hop_without_the_per_packet_check_counts_like_tracelb() {
    let config = MultipathConfig {
        single_first_hop: true,
        per_packet_check: false,
        ..MultipathConfig::default()
    };
    // scamper's tracelb took 19 probes on the simulator's diamond-2 and 104 on diamond-16
    // (tests/scenarios/README.md).
    for (width, scamper) in [(2, 19), (16, 104)] {
        let topology = diamond("diamond", width);
        let tally = tally(&topology, RUNS, &config);
        assert_found(&topology, &tally);
        assert!(tally.per_packet.is_empty());
        let worst = tally.probes.iter().max().copied().unwrap_or(0);
        println!(
            "width {width} like tracelb: median {} worst {worst} probes, tracelb {scamper}",
            median(&tally.probes)
        );
        assert!(worst <= scamper, "{worst} probes > tracelb's {scamper}");
        // TTL 3's one router takes its own rule's 6 flows, as tracelb's does: TTL 2's
        // routers not followed there are linked to it, not probed one flow each.
        let (per_ttl, _) = probes_per_ttl(&topology, &config);
        assert_eq!(per_ttl[2], 6, "{per_ttl:?}");
    }
    // A balancer at the first hop shows one of its interfaces, its links onward found.
    let first_hop = Topology::full("first hop", &[1, 4, 1]);
    for seed in 1..=20 {
        let report = trace(&first_hop, mix64(seed), &config);
        assert_eq!(report.hops[0].responders.len(), 1);
        assert_eq!(report.hops[0].probes, 1);
        // Its one interface to TTL 2's router, that router to the target.
        let first = report.hops[0].responders[0].address;
        assert_eq!(report.links.len(), 2, "{report:?}");
        assert_eq!(report.links[0].from, first);
    }
}

/// Runs for a per-packet flag's rate, where 3% of misses are within the rule.
const FLAG_RUNS: usize = 1000;

#[test]
fn a_hop_mixing_a_per_flow_and_a_per_packet_router_is_flagged() {
    // TTL 2: two routers, the first balancing per flow over TTL 3's first two, the second
    // per packet over the other two (the simulator's diamond-per-packet, second target).
    let mut topology = Topology::new("mixed", &[1, 1, 2, 4, 1], |t, i, j| match t {
        2 => u64::from(j / 2 == i),
        _ => 1,
    });
    topology.levels[2][1].per_packet = true;
    let (second, per_packet_pair) = (addr(2, 1), [addr(3, 2), addr(3, 3)]);
    for confidence in [Confidence::P95, Confidence::P99] {
        let config = MultipathConfig {
            confidence,
            ..MultipathConfig::default()
        };
        // Runs that saw the per-packet router and both its next hops, and of those, the
        // runs that flagged TTL 3: that decision is held to the confidence. (The others
        // are MDA's own misses at TTL 2 or 3, each within the confidence.)
        // 1,000 runs: the rule misses a per-packet router in about 1 run of 32 (3.2% over
        // 4,000 runs), so 200 runs' share sits within 1.5 standard deviations of 95% and
        // some sets of 200 seeds fall under it (189 of 200); 1,000 put it 3 away.
        let (mut saw, mut flagged, mut flagged_all) = (0, 0, 0);
        for run in 0..FLAG_RUNS {
            let report = trace(&topology, mix64(run as u64 + 1), &config);
            let has = |ttl: usize, a: IpAddr| {
                report.hops[ttl - 1]
                    .responders
                    .iter()
                    .any(|r| r.address == a)
            };
            let flag = report.hops[2].per_packet;
            assert!(
                report.hops.iter().all(|h| h.ttl == 3 || !h.per_packet),
                "{report:?}"
            );
            flagged_all += usize::from(flag);
            if has(2, second) && per_packet_pair.iter().all(|&a| has(3, a)) {
                saw += 1;
                flagged += usize::from(flag);
            }
        }
        println!(
            "mixed at {}%: TTL 3 per packet in {flagged} of the {saw} runs that saw its \
             routers, {flagged_all} of {FLAG_RUNS} in all",
            confidence.percent()
        );
        assert!(saw * 100 >= FLAG_RUNS * 90, "{saw} of {FLAG_RUNS}");
        assert!(flagged * 100 >= saw * 95, "flagged in {flagged} of {saw}");
        let tally = tally(&topology, RUNS, &config);
        assert_found(&topology, &tally);
    }
}

#[test]
fn a_per_packet_hop_is_flagged_though_re_probes_are_lost() {
    // TTL 1's router balances per packet over TTL 2's two (then three), and 30% of all
    // probes are lost. A lost re-probe shows nothing: the check must count the re-probes
    // answered, or a lost one would stand for one that came back to the same interface
    // (a miss of 0.65^5 = 12% over two ways, 0.53^3 = 15% over three, at 95%).
    for ways in [2, 3] {
        let mut topology = Topology::full("per packet, lossy", &[1, 1, ways, 1]);
        topology.levels[1][0].per_packet = true;
        let (mut saw, mut flagged) = (0, 0);
        for run in 0..FLAG_RUNS {
            let report = trace_lossy(
                &topology,
                mix64(run as u64 + 1),
                &MultipathConfig::default(),
                300,
            );
            assert!(report.hops.iter().all(|h| h.ttl == 2 || !h.per_packet));
            if report.hops[1].responders.len() == ways {
                saw += 1;
                flagged += usize::from(report.hops[1].per_packet);
            }
        }
        println!("{ways} ways, 30% loss: flagged in {flagged} of the {saw} runs that saw them");
        assert!(saw * 100 >= FLAG_RUNS * 90, "{saw} of {FLAG_RUNS}");
        assert!(
            flagged * 100 >= saw * 95,
            "{ways} ways: flagged in {flagged} of {saw}"
        );
    }
}

/// Runs per weighting for the per-packet check's rate on unequal weights.
const WEIGHTED_RUNS: usize = 600;

/// Runs that measure how often a per-packet router is flagged at `confidence`: at 99%,
/// 2,000, since a miss of 2^-7 = 0.8% is too near 1% to show in 600.
fn flagging_runs(confidence: Confidence) -> usize {
    match confidence {
        Confidence::P95 => WEIGHTED_RUNS,
        _ => 2000,
    }
}

/// TTL 1's router balancing flows (or, with `per_packet`, packets) over TTL 2's routers
/// with these weights.
fn weighted(weights: &[u64], per_packet: bool) -> Topology {
    let name = "weighted";
    let mut topology = Topology::new(name, &[1, 1, weights.len(), 1], |t, _, j| match t {
        1 => weights[j],
        _ => 1,
    });
    topology.levels[1][0].per_packet = per_packet;
    topology
}

/// The runs of `runs` that saw every router of `ttl`, and of those, the ones that flagged
/// it as per packet; no TTL but those of `may_flag` flagged in any run.
fn flagged_where_seen(
    topology: &Topology,
    runs: usize,
    config: &MultipathConfig,
    ttl: u8,
    may_flag: &[u8],
) -> (usize, usize) {
    let ways = topology.levels[usize::from(ttl)].len();
    let (mut saw, mut flagged) = (0, 0);
    for run in 0..runs {
        let report = trace(topology, mix64(run as u64 + 1), config);
        assert!(
            report
                .hops
                .iter()
                .all(|h| may_flag.contains(&h.ttl) || !h.per_packet),
            "{report:?}"
        );
        let Some(hop) = report.hops.iter().find(|h| h.ttl == ttl) else {
            continue;
        };
        if hop.responders.len() == ways {
            saw += 1;
            flagged += usize::from(hop.per_packet);
        }
    }
    (saw, flagged)
}

/// The share of the runs that saw all of TTL 2's routers in which the per-packet check
/// misses TTL 1's router balancing per packet over them with these weights, computed: flows
/// drawn by weight until TTL 2's stopping rule is met (`n_k` answered with `k` seen), then
/// `r` re-probes (the least with `ways^-r` within the confidence) of a flow of the router
/// the fewest flows reached (the first among equals), each back to it with its share.
fn computed_miss(weights: &[u64], confidence: Confidence) -> f64 {
    let ways = weights.len();
    let total: u64 = weights.iter().sum();
    let shares: Vec<f64> = weights.iter().map(|&w| w as f64 / total as f64).collect();
    let alpha = f64::from(100 - confidence.percent()) / 100.0;
    let repeats = (1..64)
        .find(|&r| (ways as f64).powi(-r) <= alpha)
        .unwrap_or(64);
    let points: Vec<u32> = (0..=ways)
        .map(|k| confidence.stopping_point(k.max(1)))
        .collect();
    // Flows drawn so far per router, with their probability.
    let mut states = BTreeMap::from([(vec![0u32; ways], 1.0)]);
    let (mut saw, mut missed) = (0.0, 0.0);
    while !states.is_empty() {
        let mut next = BTreeMap::new();
        for (counts, p) in states {
            let seen = counts.iter().filter(|&&c| c > 0).count();
            if counts.iter().sum::<u32>() >= points[seen] {
                if seen == ways {
                    let rarest = (0..ways).min_by_key(|&i| counts[i]).unwrap_or(0);
                    saw += p;
                    missed += p * shares[rarest].powi(repeats);
                }
                continue;
            }
            for (i, share) in shares.iter().enumerate() {
                let mut drawn = counts.clone();
                drawn[i] += 1;
                *next.entry(drawn).or_insert(0.0) += p * share;
            }
        }
        states = next;
    }
    missed / saw
}

#[test]
fn a_per_packet_router_with_unequal_weights_is_flagged_at_the_confidence() {
    // A router balancing per packet over unequal weights returns a re-probe to a flow's
    // first interface more often than one time in as many interfaces: the first flows,
    // re-probed whatever they reached, missed it in about 7.4% of the runs that saw all
    // three for shares of 3, 1, 1 (0.44^3 = 8.5% for flows drawn anew; (2, 1, 1) was
    // flagged in 528 of 556 here). Re-probing the flows of the interface that the fewest
    // flows reached misses with that interface's share^r, about 1.1% for (3, 1, 1), and
    // 1/ways^r where the shares are even. Every run that saw all of TTL 2's routers flags
    // it in at least 95% (600 runs per weighting), its misses within 3 standard deviations
    // of the computed share (`computed_miss`, under 5% for each); the same routers
    // balancing per flow are never flagged.
    let config = MultipathConfig::default();
    let weightings: [&[u64]; 8] = [
        &[1, 1],
        &[1, 1, 1],
        &[1, 1, 1, 1],
        &[2, 1, 1],
        &[3, 2, 1],
        &[3, 1, 1],
        &[4, 1],
        &[3, 1],
    ];
    for weights in weightings {
        let (saw, flagged) =
            flagged_where_seen(&weighted(weights, true), WEIGHTED_RUNS, &config, 2, &[2]);
        let computed = computed_miss(weights, config.confidence);
        let (missed, expected) = ((saw - flagged) as f64, computed * saw as f64);
        println!(
            "per packet {weights:?}: flagged in {flagged} of the {saw} runs that saw all, \
             missed {:.2}% (computed {:.2}%)",
            100.0 * missed / saw as f64,
            100.0 * computed
        );
        assert!(computed < 0.05, "{weights:?}: computed {computed}");
        assert!(
            (missed - expected).abs() <= 3.0 * (expected * (1.0 - computed)).sqrt() + 1.0,
            "{weights:?}: missed {missed} of {saw}, computed {expected:.1}"
        );
        assert!(
            saw * 100 >= WEIGHTED_RUNS * 70,
            "{weights:?}: {saw} of {WEIGHTED_RUNS}"
        );
        assert!(
            flagged * 100 >= saw * 95,
            "{weights:?}: flagged in {flagged} of {saw}"
        );
        let (saw, flagged) = flagged_where_seen(&weighted(weights, false), RUNS, &config, 2, &[2]);
        assert!(
            saw * 100 >= RUNS * 70,
            "per flow {weights:?}: {saw} of {RUNS}"
        );
        assert_eq!(
            flagged, 0,
            "per flow {weights:?}: flagged in {flagged} runs"
        );
    }
}

/// A silent TTL 2 whose router balances flows (or, with `per_packet`, packets) over TTL
/// 3's routers with these weights: the flows reaching TTL 3 have no known router before.
fn weighted_behind_silence(weights: &[u64], per_packet: bool) -> Topology {
    let mut topology = Topology::new(
        "weighted behind silence",
        &[1, 1, 1, weights.len(), 1],
        |t, _, j| match t {
            2 => weights[j],
            _ => 1,
        },
    );
    topology.levels[2][0].silent = true;
    topology.levels[2][0].per_packet = per_packet;
    topology
}

#[test]
fn a_per_packet_router_behind_a_silent_ttl_is_flagged_at_the_confidence() {
    // The flows reaching TTL 3 came through an unknown router. Re-probed in the
    // least-probed idle flow, whatever interface it reached, a router balancing per packet
    // over 4, 1 was missed in 8.0% of the runs that saw both (3, 1: 5.8%; release, 2,000
    // runs). In turn through the interfaces (the rarest first), its 5 re-probes miss with
    // the product of the shares they went through: 0.55% and 0.92% there. Every run that
    // saw all of TTL 3's routers flags it in at least 95% (600 runs per weighting); the
    // same routers balancing per flow are never flagged.
    let config = MultipathConfig::default();
    let weightings: [&[u64]; 6] = [
        &[1, 1],
        &[1, 1, 1],
        &[2, 1, 1],
        &[3, 1, 1],
        &[4, 1],
        &[3, 1],
    ];
    for weights in weightings {
        for per_packet in [true, false] {
            let topology = weighted_behind_silence(weights, per_packet);
            let runs = if per_packet { WEIGHTED_RUNS } else { RUNS };
            let (saw, flagged) = flagged_where_seen(&topology, runs, &config, 3, &[3]);
            println!(
                "per packet {per_packet} {weights:?}: flagged in {flagged} of the {saw} runs that saw all"
            );
            assert!(saw * 100 >= runs * 70, "{weights:?}: {saw} of {runs}");
            if per_packet {
                assert!(
                    flagged * 100 >= saw * 95,
                    "{weights:?}: flagged in {flagged} of {saw}"
                );
            } else {
                assert_eq!(
                    flagged, 0,
                    "per flow {weights:?}: flagged in {flagged} runs"
                );
            }
        }
    }
}

/// A silent TTL 2 holding two routers: the first balancing packets (flows, without
/// `per_packet`) over the first `pp` of TTL 3's routers, the second flows over the other
/// `pf`. TTL 1's router splits flows between them; TTL 3's flows have no known router before.
fn mixed_behind_silence(pp: usize, pf: usize, per_packet: bool) -> Topology {
    let widths = [1, 1, 2, pp + pf, 1];
    let mut topology = Topology::new("mixed behind silence", &widths, |t, i, j| match t {
        2 => u64::from((j < pp) == (i == 0)),
        _ => 1,
    });
    for node in &mut topology.levels[2] {
        node.silent = true;
    }
    topology.levels[2][0].per_packet = per_packet;
    topology
}

/// Over `runs` seeded traces of [`mixed_behind_silence`]: the runs that saw all of the first
/// router's next hops, the runs of those that flagged TTL 3, and the probes of each run. No
/// other TTL is flagged, and no interface or link reported is not there.
fn mixed_flagged(
    topology: &Topology,
    runs: usize,
    config: &MultipathConfig,
) -> (usize, usize, Vec<u32>) {
    let (truth_interfaces, truth_links) = topology.truth();
    let first: Vec<IpAddr> = topology.levels[2][0]
        .next
        .iter()
        .map(|&(j, _)| addr(3, j))
        .collect();
    let (mut saw, mut flagged, mut probes) = (0, 0, Vec::new());
    for run in 0..runs {
        let report = trace(topology, mix64(run as u64 + 1), config);
        assert!(report.probes <= config.max_probes);
        assert!(
            report.hops.iter().all(|h| h.ttl == 3 || !h.per_packet),
            "{report:?}"
        );
        for hop in &report.hops {
            for r in &hop.responders {
                assert!(
                    truth_interfaces.contains(&(hop.ttl, r.address)),
                    "{report:?}"
                );
            }
        }
        for link in &report.links {
            assert!(truth_links.contains(link), "{link:?} in {report:?}");
        }
        probes.push(report.probes);
        let Some(hop) = report.hops.iter().find(|h| h.ttl == 3) else {
            continue;
        };
        if first
            .iter()
            .all(|a| hop.responders.iter().any(|r| r.address == *a))
        {
            saw += 1;
            flagged += usize::from(hop.per_packet);
        }
    }
    (saw, flagged, probes)
}

#[test]
fn a_per_packet_router_beside_a_per_flow_one_behind_a_silent_ttl_is_flagged_at_the_confidence() {
    // TTL 3's flows came through one of two silent routers: one balancing per packet over
    // the first `pp` of TTL 3's routers, the other per flow over the other `pf`. Only
    // re-probes in flows of the first one's interfaces can show it. Through the group's
    // interfaces in turn, 5 re-probes (7 at 99%) gave two of its interfaces one each where
    // three beside them took the rest: it was missed in 23.4% of the runs that saw its next
    // hops for 2 beside 3 (18.4% at 99%; release, 2,000 runs each). Re-probed until any two
    // interfaces, taken as one router's, would have shown it (`mda::pair_miss`): 2.3% and
    // 0.35%. Flagged in at least 95% of the runs that saw its next hops at 95% (600 runs per
    // case), 99% at 99% (2,000 runs: a miss of 2^-7 = 0.8% is too near 1% to show in 600);
    // the same routers both balancing per flow never flagged; no interface or link that is
    // not there, in any run.
    let cases: [(usize, usize); 4] = [(2, 1), (2, 2), (2, 3), (3, 2)];
    for confidence in [Confidence::P95, Confidence::P99] {
        let config = MultipathConfig {
            confidence,
            ..MultipathConfig::default()
        };
        let percent = usize::from(confidence.percent());
        let runs = flagging_runs(confidence);
        for (pp, pf) in cases {
            let topology = mixed_behind_silence(pp, pf, true);
            let (saw, flagged, _) = mixed_flagged(&topology, runs, &config);
            println!(
                "{pp} per packet beside {pf} per flow at {percent}%: flagged in {flagged} of \
                 the {saw} runs that saw its next hops"
            );
            assert!(saw * 100 >= runs * 90, "{pp}, {pf}: {saw} runs saw");
            assert!(
                flagged * 100 >= saw * percent,
                "{pp}, {pf} at {percent}%: flagged in {flagged} of {saw}"
            );
            let topology = mixed_behind_silence(pp, pf, false);
            let (saw, flagged, _) = mixed_flagged(&topology, RUNS, &config);
            assert!(
                saw * 100 >= RUNS * 80,
                "per flow {pp}, {pf}: {saw} runs saw"
            );
            assert_eq!(flagged, 0, "per flow {pp}, {pf}: flagged in {flagged} runs");
        }
    }
}

/// TTL 1's router balancing per packet over two, which meet again at TTL 3's one router,
/// which balances per packet over TTL 4's with these weights.
fn per_packet_past_met_ways(weights: &[u64]) -> Topology {
    let widths = [1, 1, 2, 1, weights.len(), 1];
    let mut topology = Topology::new("per packet past met ways", &widths, |t, _, j| match t {
        3 => weights[j],
        _ => 1,
    });
    topology.levels[1][0].per_packet = true;
    topology.levels[3][0].per_packet = true;
    topology
}

/// TTL 1's router balancing per packet over two with these weights: the first balancing
/// flows over three of TTL 3's routers, the second packets over the other two.
fn per_packet_past_unmet_ways(weights: &[u64]) -> Topology {
    let mut topology =
        Topology::new(
            "per packet past unmet ways",
            &[1, 1, 2, 5, 1],
            |t, i, j| match t {
                1 => weights[j],
                2 => u64::from((j < 3) == (i == 0)),
                _ => 1,
            },
        );
    topology.levels[1][0].per_packet = true;
    topology.levels[2][1].per_packet = true;
    topology
}

#[test]
fn a_per_packet_router_past_a_per_packet_hop_is_flagged_at_the_confidence() {
    // Past a per-packet hop, a flow's way may change with each probe, so its router before
    // is not known. Re-probed in the least-probed idle flow, whatever it reached, a router
    // balancing per packet over 4, 1 where the ways met again before it was missed in 6.8%
    // of the runs that saw its next hops (3.9% at 99%), and one taking a tenth of the flows
    // past the hop where they have not met in 5.5% (3.3%; release, 2,000 runs). Where the
    // ways met at one interface that lost no probe, its router is known (its rarest
    // interface's flows: 0.5%); where they have not, each group's interfaces in turn as
    // behind a silent TTL (0.8%). Flagged in at least 95% of the runs that saw all of its
    // next hops (600 runs per case); no TTL flagged but those past the per-packet routers.
    let config = MultipathConfig::default();
    let cases = [
        (per_packet_past_met_ways(&[1, 1]), 4, [2, 4]),
        (per_packet_past_met_ways(&[4, 1]), 4, [2, 4]),
        (per_packet_past_met_ways(&[3, 1, 1]), 4, [2, 4]),
        (per_packet_past_unmet_ways(&[1, 1]), 3, [2, 3]),
        (per_packet_past_unmet_ways(&[4, 1]), 3, [2, 3]),
        (per_packet_past_unmet_ways(&[9, 1]), 3, [2, 3]),
    ];
    for (topology, ttl, may_flag) in &cases {
        let (saw, flagged) = flagged_where_seen(topology, WEIGHTED_RUNS, &config, *ttl, may_flag);
        println!(
            "{}, {:?}: TTL {ttl} flagged in {flagged} of the {saw} runs that saw all",
            topology.name,
            topology.levels[usize::from(*ttl) - 1]
                .iter()
                .map(|n| n.next.len())
                .collect::<Vec<_>>()
        );
        assert!(
            saw * 100 >= WEIGHTED_RUNS * 40,
            "{}: {saw} saw",
            topology.name
        );
        assert!(
            flagged * 100 >= saw * 95,
            "{}: flagged in {flagged} of {saw}",
            topology.name
        );
    }
}

/// TTL 2's three routers, reached by 1, 2 and 2 in 5 of the flows: the first balancing
/// packets (with `per_packet`, flows otherwise) over both of TTL 3's routers, the second
/// reaching only the first of them, the third only the second.
fn beside_one_way_routers(per_packet: bool) -> Topology {
    let mut topology = Topology::new("beside one-way routers", &[1, 1, 3, 2], |t, i, j| {
        match (t, i, j) {
            (1, _, 0) => 1,
            (1, _, _) => 2,
            (2, 0, _) => 1,
            (2, i, j) => u64::from(i == j + 1),
            _ => 1,
        }
    });
    topology.levels[2][0].per_packet = per_packet;
    topology
}

#[test]
fn a_per_packet_router_whose_flows_reached_one_interface_is_flagged_at_the_confidence() {
    // The other routers' flows show both of TTL 3's interfaces, so MDA-Lite's rules end the
    // TTL with few flows through the first router (one onward from each router, the TTL's
    // own rule spread over the three), which then often all reached one interface and took
    // no re-probe: it was missed in 30.0% of the runs that saw it and both of its next hops
    // at 95% (170 of 566), 18.6% at 99% (364 of 1,962). A router whose flows reached one
    // interface is re-probed until its flows and re-probes are `single_point` (7 at 95%,
    // 10 at 99%; the stopping point for one more next hop, 6, still missed 5.5%): 3.4%
    // and 0.4%. Flagged in at least 95% of those runs at 95% (600 runs), 99% at 99%
    // (2,000); the same router balancing flows never flagged; no interface or link that is
    // not there.
    let (truth_interfaces, truth_links) = beside_one_way_routers(true).truth();
    for confidence in [Confidence::P95, Confidence::P99] {
        let config = MultipathConfig {
            confidence,
            ..MultipathConfig::default()
        };
        let percent = usize::from(confidence.percent());
        let runs = flagging_runs(confidence);
        for per_packet in [true, false] {
            let topology = beside_one_way_routers(per_packet);
            let (mut saw, mut flagged) = (0, 0);
            for run in 0..runs {
                let report = trace(&topology, mix64(run as u64 + 1), &config);
                assert!(report.hops.iter().all(|h| h.ttl == 3 || !h.per_packet));
                for hop in &report.hops {
                    for r in &hop.responders {
                        assert!(truth_interfaces.contains(&(hop.ttl, r.address)));
                    }
                }
                assert!(report.links.iter().all(|l| truth_links.contains(l)));
                // The router seen (its flows, the only ones that can show it), and both of
                // its next hops.
                let seen = |ttl: u8, address: IpAddr| {
                    report
                        .hops
                        .iter()
                        .any(|h| h.ttl == ttl && h.responders.iter().any(|r| r.address == address))
                };
                if seen(2, addr(2, 0)) && seen(3, addr(3, 0)) && seen(3, addr(3, 1)) {
                    saw += 1;
                    flagged += usize::from(report.hops.iter().any(|h| h.per_packet));
                }
            }
            println!(
                "per packet {per_packet} beside one-way routers at {percent}%: TTL 3 flagged \
                 in {flagged} of the {saw} runs that saw the router and its next hops"
            );
            assert!(saw * 100 >= runs * 90, "{saw} of {runs} runs saw TTL 3");
            if per_packet {
                assert!(
                    flagged * 100 >= saw * percent,
                    "at {percent}%: flagged in {flagged} of {saw}"
                );
            } else {
                assert_eq!(flagged, 0, "per flow: flagged in {flagged} runs");
            }
        }
    }
}

/// Runs in which every interface and link was found, and the median probes.
fn complete_runs(topology: &Topology, config: &MultipathConfig) -> (usize, u32) {
    let (interfaces, links) = topology.truth();
    let mut complete = 0;
    let mut probes = Vec::new();
    for run in 0..RUNS {
        let report = trace(topology, mix64(run as u64 + 1), config);
        let found: BTreeSet<(u8, IpAddr)> = report
            .hops
            .iter()
            .flat_map(|h| h.responders.iter().map(move |r| (h.ttl, r.address)))
            .collect();
        let found_links: BTreeSet<Link> = report.links.iter().copied().collect();
        complete += usize::from(found == interfaces && found_links == links);
        probes.push(report.probes);
    }
    (complete, median(&probes))
}

#[test]
fn failure_control_holds_whole_traces_to_the_confidence() {
    let topologies = [
        diamond("diamond 2", 2),
        diamond("diamond 16", 16),
        Topology::new("nested", &[1, 1, 2, 4, 2, 1], |t, i, j| match t {
            2 => u64::from(j / 2 == i),
            3 => u64::from(i / 2 == j),
            _ => 1,
        }),
        Topology::full("meshed 4x2", &[1, 1, 4, 2, 1]),
        Topology::full("meshed 2x2", &[1, 1, 2, 2, 1]),
        Topology::full("first hop", &[1, 4, 1]),
    ];
    // MDA holds each decision to 5%; a trace takes many, so whole traces miss more often
    // (the meshed ones in about 1 of 8 runs). Split 4 ways, every trace here is complete
    // in at least 95% of the runs.
    for topology in &topologies {
        let mut line = format!("{}:", topology.name);
        for decisions in [1, 4, 8] {
            let config = MultipathConfig {
                decisions,
                ..MultipathConfig::default()
            };
            let (complete, probes) = complete_runs(topology, &config);
            line += &format!("  N={decisions} {complete}/{RUNS} complete, {probes} probes");
            if decisions >= 4 {
                assert!(complete * 100 >= RUNS * 95, "{line}");
            }
        }
        println!("{line}");
    }
}

#[test]
fn a_link_missed_before_a_wider_hop_is_not_made_up() {
    // TTL 2 has two routers, each with two of TTL 3's four (or two) next hops. Where MDA
    // misses one at TTL 2, the flows TTL 3 needs past those reused are sent straight to it,
    // and some go through the missed one: linking them to the one seen made up links.
    let nested = Topology::new("nested", &[1, 1, 2, 4, 1], |t, i, j| match t {
        2 => u64::from(j / 2 == i),
        _ => 1,
    });
    let nested_back = Topology::new(
        "nested, converging",
        &[1, 1, 2, 4, 2, 1],
        |t, i, j| match t {
            2 => u64::from(j / 2 == i),
            3 => u64::from(i / 2 == j),
            _ => 1,
        },
    );
    for topology in [nested, nested_back] {
        for confidence in [Confidence::P95, Confidence::P99] {
            for decisions in [1, 8] {
                let config = MultipathConfig {
                    confidence,
                    decisions,
                    ..MultipathConfig::default()
                };
                let tally = tally(&topology, RUNS, &config);
                assert_eq!(
                    tally.phantom,
                    0,
                    "{} at {}%, N = {decisions}: links that are not there",
                    topology.name,
                    confidence.percent()
                );
            }
        }
    }
}

#[test]
fn a_2_wide_diamond_is_missed_only_where_every_flow_took_one_branch() {
    // The runs that miss a branch of the 2-way hop are exactly those whose flows at TTL 2
    // all hashed onto one branch: the stopping rule's own failure (2^(1 - n) for n flows),
    // not a flow reused wrongly or a count off. (At N = 8, n = 9: 2 of these 200 seeds,
    // where 0.78 are expected and 2 or more come in 18% of batches of 200.)
    let topology = diamond("diamond 2", 2);
    let (interfaces, _) = topology.truth();
    for decisions in [1, 4, 8] {
        let config = MultipathConfig {
            decisions,
            ..MultipathConfig::default()
        };
        let mut missed = 0;
        for run in 0..RUNS {
            let seed = mix64(run as u64 + 1);
            let report = trace(&topology, seed, &config);
            let found = report.hops[1].responders.len();
            // Flows go out in order from the first, and each TTL 2 probe is a new flow
            // where it shows one interface (re-probes come only with two).
            let flows = u16::try_from(report.hops[1].probes).unwrap();
            let branches: BTreeSet<IpAddr> = (0..flows)
                .map(|flow| topology.walk(seed, 2, flow, &mut 0).addr)
                .collect();
            assert_eq!(
                found,
                branches.len(),
                "N = {decisions}, run {run}: {report:?}"
            );
            if found < 2 {
                missed += 1;
                assert_eq!(u32::from(flows), report.hops[0].probes);
            } else {
                assert!(interfaces.iter().filter(|i| i.0 == 2).count() == found);
            }
        }
        println!("2-wide diamond, N = {decisions}: a branch missed in {missed} of {RUNS} runs");
    }
}

#[test]
fn the_topologies_hash_splits_flows_evenly() {
    // Over many seeds, the first 6 flows all take one branch of a 2-way hop in 1 of 32
    // (6,250 of 200,000: standard deviation 78), as for independent fair coins.
    let topology = diamond("diamond 2", 2);
    let one_way = (0..200_000u64)
        .filter(|&run| {
            let seed = mix64(run + 1);
            let branches: BTreeSet<IpAddr> = (0..6)
                .map(|flow| topology.walk(seed, 2, flow, &mut 0).addr)
                .collect();
            branches.len() == 1
        })
        .count();
    assert!((5_860..=6_640).contains(&one_way), "{one_way} of 200,000");
}

/// Median probes per TTL (from the first) and in all, over `RUNS` seeds.
fn probes_per_ttl(topology: &Topology, config: &MultipathConfig) -> (Vec<u32>, u32) {
    let mut per_ttl: BTreeMap<u8, Vec<u32>> = BTreeMap::new();
    let mut total = Vec::new();
    for run in 0..RUNS {
        let report = trace(topology, mix64(run as u64 + 1), config);
        for hop in &report.hops {
            per_ttl.entry(hop.ttl).or_default().push(hop.probes);
        }
        total.push(report.probes);
    }
    (
        per_ttl.values().map(|v| median(v)).collect(),
        median(&total),
    )
}

#[test]
fn unmeshed_hops_take_mda_lites_hop_rule() {
    // The simulator's diamond-nested: TTL 2's two routers each lead to two of TTL 3's
    // four (divergent, not meshed), which pair up onto TTL 4's two (convergent).
    let nested = Topology::new("nested", &[1, 1, 2, 4, 2, 1], |t, i, j| match t {
        2 => u64::from(j / 2 == i),
        3 => u64::from(i / 2 == j),
        _ => 1,
    });
    let like_tracelb = MultipathConfig {
        single_first_hop: true,
        per_packet_check: false,
        ..MultipathConfig::default()
    };
    let tally = tally(&nested, RUNS, &like_tracelb);
    assert_found(&nested, &tally);
    let (per_ttl, total) = probes_per_ttl(&nested, &like_tracelb);
    println!("nested like tracelb: median {total} probes, per TTL {per_ttl:?}");
    // scamper's tracelb: 1, 11, 21, 11, 6, 1 (51), and so here. The divergent TTL 3 takes
    // the TTL's own rule, n_4 = 21 flows, with no fresh flows sent at TTL 2 to reach each
    // of its routers. TTL 4 converges unmeshed (TTL 3's four routers each reach one of TTL
    // 4's two): MDA-Lite's hop rule, n_2 = 11 flows, spread evenly over TTL 3's routers
    // (3, 3, 3, 2: at least the meshing test's 2 through each). Flows at both TTLs until a
    // second successor behind one of TTL 3's routers (one flow in 8) would have shown took
    // 23 there and 2 fresh flows more at TTL 3 (65 in all); MDA's rule, n_1 = 6 flows
    // through each router, 24 there and 33 at TTL 3 (fresh flows until the rarest router
    // had its 6).
    assert_eq!(per_ttl, [1, 11, 21, 11, 6, 1]);
    assert!(total <= 51, "{total} probes");
}

#[test]
fn meshed_hops_are_followed_per_router() {
    // The simulator's diamond-meshed: 4 routers at TTL 2 each to both of TTL 3's, and 3
    // and 3 with each of TTL 2's to two of TTL 3's.
    let full = Topology::full("meshed 4x2", &[1, 1, 4, 2, 1]);
    let partly = Topology::new("meshed 3x3", &[1, 1, 3, 3, 1], |t, i, j| match t {
        2 => u64::from(j == i || j == (i + 1) % 3),
        _ => 1,
    });
    let like_tracelb = MultipathConfig {
        single_first_hop: true,
        per_packet_check: false,
        ..MultipathConfig::default()
    };
    // Links into TTL 3 are 1 flow in 8 (1 in 6). Each router of TTL 2 is followed on its
    // own flows as their answers come, from the moment TTL 3 shows meshed (within its own
    // rule of n_2 = 11 flows): in 4x2 a router that reached both of TTL 3's is done; one
    // that showed one takes up to 8 (n_1 with the confidence split over the 4 routers). A
    // router missed at TTL 2 takes its links with it, so TTL 2 rules out one more router
    // than it showed (n_5 = 27 flows): 1 + 27 + 13 + 6 + 1 = 48 (following only once TTL
    // 3's own 11 flows were spread evenly: 14 at TTL 3, 49; flows at both TTLs until each
    // link would have shown, counting one more router at TTL 2, took 29 and 29: 66). In 3x3 each
    // reaches two of three, so a router's own rule (n_2 = 11 through each, 33) takes more
    // than flows at both TTLs until one more successor behind any (1 in 9) would have
    // shown: 26, 1 + 26 + 26 + 6 + 1 = 60. MDA's per-interface rule took a median 108 (81).
    // scamper's tracelb: 40 for each, without the links inside.
    for (topology, bound, expected) in [
        (&full, 48, [1, 27, 13, 6, 1]),
        (&partly, 60, [1, 26, 26, 6, 1]),
    ] {
        let tally = tally(topology, RUNS, &like_tracelb);
        assert_found(topology, &tally);
        let (per_ttl, total) = probes_per_ttl(topology, &like_tracelb);
        println!(
            "{} like tracelb: median {total} probes, per TTL {per_ttl:?}",
            topology.name
        );
        assert!(total <= bound, "{}: {total} probes", topology.name);
        assert_eq!(per_ttl, expected, "{}", topology.name);
    }
    // 4x2's worst link sits near 95%: over 1,000 seeds, not only the 200 above (its sets
    // of 200 range from 182 to 191, as with the flows at both TTLs before; the misses are
    // mostly a router MDA missed at TTL 2 or 3).
    let many = tally_from(&full, 0, 5 * RUNS, &like_tracelb);
    let worst_link = many.links.values().min().copied().unwrap_or(0);
    println!("meshed 4x2 like tracelb, 1,000 seeds: worst link {worst_link}");
    assert!(worst_link * 100 >= many.runs * 95, "{worst_link} of 1,000");
    assert_eq!(many.phantom, 0);
    // By default (the first hop's stopping rule, re-probes for per-packet balancing) every
    // run at 95% stays within MDA's bound. Not at 99%, where the re-probes take more than
    // the `n_1` per TTL the bound counts: 7 through each router before whose flows reached
    // two interfaces, as a router balancing per packet over two returns each to the first
    // one half the time. 3x3 goes over in every run (123 to 126 against 122: 40 flows at
    // both TTLs, 5 re-probes at TTL 2 and 21 at TTL 3), 4x2 in 12 of runs 0 to 4,999 (137
    // and 138 against 136: the flows at both TTLs end at 44, one flow in 10 for a link
    // counting a fifth router, with 28 re-probes at TTL 3).
    let two = Topology::full("meshed 2x2", &[1, 1, 2, 2, 1]);
    for topology in [&full, &partly, &two] {
        let tally = tally(topology, RUNS, &MultipathConfig::default());
        assert_found(topology, &tally);
        let bound = mda_bound(topology, Confidence::P95);
        let worst = tally.probes.iter().max().copied().unwrap_or(0);
        println!(
            "{} by default: median {} worst {worst} probes, MDA bound {bound}",
            topology.name,
            median(&tally.probes)
        );
        assert!(
            worst <= bound,
            "{}: {worst} probes > {bound}",
            topology.name
        );
    }
}

/// Where the meshed 3x3's probes go, TTL by TTL, against MDA's bound. Each TTL takes the
/// least its own rules hold their confidence with, computed here, and no run of these 200
/// takes fewer at 99% (of runs 0 to 999 one does, run 932 at 117 probes: a router of TTL 2
/// showed one of its two successors, so it took no re-probes, and the trace missed a link):
/// - TTL 1: `n_1`.
/// - TTL 2: the flows that go on to TTL 3 (the rule there needs them answered at both) and
///   TTL 1's router checked for per-packet balancing over its 3 interfaces.
/// - TTL 3: flows answered at both TTLs until one more successor behind any router of TTL 2
///   (one flow in 3 x 3) would have shown, and each of TTL 2's 3 routers checked on its own
///   over its 2 interfaces.
/// - TTL 4: `n_1`, one interface by its own rule, linked from all of TTL 3's.
/// - The target: one answer.
///
/// At 95% that is 83 probes against a bound of 91. At 99% it is 123 against 122: the bound
/// counts 21 flows at TTL 2 (where 40 go on to TTL 3), 45 at TTL 3 and 8 re-probes at each
/// multi-way TTL (TTL 3 takes 21), and MDA-Lite's TTL 4 and target (9 probes against 32)
/// win back all but one. A flow fewer at both TTLs misses one more successor in over 1%
/// of runs ((8/9)^39), a re-probe fewer a router balancing per packet in over 1%.
#[test]
fn the_meshed_3x3_takes_its_rules_least_probes_one_over_mdas_bound_at_99_percent() {
    let partly = Topology::new("meshed 3x3", &[1, 1, 3, 3, 1], |t, i, j| match t {
        2 => u64::from(j == i || j == (i + 1) % 3),
        _ => 1,
    });
    // The least flows answered at both TTLs that show a link one flow in `ways` takes
    // within `alpha`, and the least re-probes that a router balancing per packet over
    // `ways` interfaces returns all to a flow's first interface within `alpha`.
    let link = |alpha: f64, ways: u32| (1..).find(|&n| blind(ways, n) >= 1.0 - alpha).unwrap();
    let repeat = |alpha: f64, ways: u32| {
        (1..)
            .find(|&r| (1.0 / f64::from(ways)).powi(r) <= alpha)
            .unwrap()
    };
    for (confidence, alpha) in [(Confidence::P95, 0.05), (Confidence::P99, 0.01)] {
        let n1 = confidence.stopping_point(1);
        let at_both = link(alpha, 3 * 3);
        let (three, two) = (repeat(alpha, 3), repeat(alpha, 2));
        // Each the least: one fewer fails its confidence.
        assert!(blind(9, at_both - 1) < 1.0 - alpha);
        assert!(3f64.powi(1 - three) > alpha && 2f64.powi(1 - two) > alpha);
        let least = [n1, at_both + three as u32, at_both + 3 * two as u32, n1, 1];
        let sum: u32 = least.iter().sum();
        let config = MultipathConfig {
            confidence,
            ..MultipathConfig::default()
        };
        let (per_ttl, median_total) = probes_per_ttl(&partly, &config);
        let fewest = (0..RUNS)
            .map(|run| trace(&partly, mix64(run as u64 + 1), &config).probes)
            .min()
            .unwrap_or(0);
        let bound = mda_bound(&partly, confidence);
        println!(
            "meshed 3x3 at {}%: median per TTL {per_ttl:?} (least {least:?}, {sum}), median \
             {median_total}, fewest {fewest}, MDA bound {bound}",
            confidence.percent()
        );
        assert_eq!(per_ttl, least, "at {}%", confidence.percent());
        if confidence == Confidence::P99 {
            assert_eq!(fewest, sum);
            assert_eq!(sum, bound + 1);
        } else {
            assert!(sum <= bound, "{sum} against {bound}");
        }
    }
}

#[test]
fn a_gap_past_what_an_instant_holds_is_a_far_deadline() {
    let now = Instant::now();
    let config = MultipathConfig {
        gap: Duration::MAX,
        ..MultipathConfig::default()
    };
    let mut tracer = MultipathTracer::new(udp(), &config, now).unwrap();
    let probe = tracer.poll_probe(now).unwrap();
    assert_eq!(tracer.poll_probe(now), None, "the next waits the gap");
    let line = format!("1 reply ip-4 {TARGET} round-trip-time 900");
    let result = ProbeResult::from_reply(&Reply::parse(&line).unwrap());
    tracer.handle_result(now, probe.id(), &result);
    assert!(tracer.is_done(), "the target answered at the first TTL");
    assert_eq!(tracer.report().probes, 1);
}

#[test]
fn a_budget_of_no_probes_ends_the_trace_at_once() {
    let now = Instant::now();
    let config = MultipathConfig {
        max_probes: 0,
        ..MultipathConfig::default()
    };
    let mut tracer = MultipathTracer::new(udp(), &config, now).unwrap();
    // A driver waits for nothing once poll_timeout says None: the trace must be over then.
    assert_eq!(tracer.poll_probe(now), None);
    assert_eq!(tracer.poll_timeout(), None);
    assert!(tracer.is_done());
    assert_eq!(tracer.report().end, Some(MultipathEnd::Budget));
}

#[test]
fn a_silent_branch_is_not_linked_to_the_one_interface_that_answers() {
    // TTL 2's two routers each lead to their own at TTL 3, the second of which never
    // answers: TTL 3 shows one interface, but flows are lost there, so the routers of TTL
    // 2 are not all taken as linked to it.
    let mut topology = Topology::new("silent branch", &[1, 1, 2, 2, 1], |t, i, j| match t {
        2 => u64::from(i == j),
        _ => 1,
    });
    topology.levels[3][1].silent = true;
    for config in [
        MultipathConfig::default(),
        MultipathConfig {
            single_first_hop: true,
            per_packet_check: false,
            ..MultipathConfig::default()
        },
    ] {
        let tally = tally(&topology, RUNS, &config);
        assert_found(&topology, &tally);
    }
}

#[test]
fn an_uneven_ttl_after_a_wide_hop_is_found_by_mdas_rule() {
    // Every router splits its flows evenly (MDA's assumption), but the routers of TTL 2
    // reach TTL 3 unevenly: (a) A to D only, B to C and D, so C takes a quarter of the
    // flows; (b) of four, three to E only, the fourth to E and F: F takes an eighth. The
    // TTL's own rule (n_1 = 6 flows once one interface shows) misses C in (3/4)^6 = 18%
    // of runs and F in (7/8)^6 = 45%, and with one interface seen the TTL looks converged
    // (every interface before taken as linked to it). Measured over these 200 seeds at
    // 95%: lite found C in 177 and F in 110 runs (the 6 flows spread 2, 2, 1, 1 in address
    // order, F's router last); MDA's rule (`lite: false`, 6 flows through each interface
    // before) in 194 and 197, at a median 77 and 119 probes against lite's 52 and 48.
    // Requiring MDA's rule wherever a TTL converges onto one interface from several costs
    // that on every diamond converging onto a router, so MDA-Lite keeps this miss
    // (documented on `MultipathConfig::lite`) and only MDA's rule is held to the
    // confidence here; neither may report a link that is not there. (c) is the same miss
    // on a hop converging onto several interfaces, where MDA-Lite's hop rule spreads n_2 =
    // 11 flows over the four routers, 2 through the last: lite found the third in 152
    // runs, MDA's rule in 199 (median 114 and 159 probes).
    let quarter = Topology::new("uneven 2x2", &[1, 1, 2, 2, 1], |t, i, j| match t {
        2 => u64::from(i == 1 || j == 1),
        _ => 1,
    });
    let eighth = Topology::new("uneven 4x2", &[1, 1, 4, 2, 1], |t, i, j| match t {
        2 => u64::from(i == 3 || j == 0),
        _ => 1,
    });
    // (c) The nested diamond's converging TTL 4 with a third router behind the last of TTL
    // 3's four, which also reaches the second: it takes an eighth of the flows.
    let behind_one = Topology::new(
        "uneven converging",
        &[1, 1, 2, 4, 3, 1],
        |t, i, j| match t {
            2 => u64::from(j / 2 == i),
            3 => u64::from(i / 2 == j || (i == 3 && j == 2)),
            _ => 1,
        },
    );
    let mut missed = Vec::new();
    for topology in [quarter, eighth, behind_one] {
        for lite in [false, true] {
            let config = MultipathConfig {
                lite,
                ..MultipathConfig::default()
            };
            let tally = tally(&topology, RUNS, &config);
            let worst = tally.interfaces.values().min().copied().unwrap_or(RUNS);
            println!(
                "{} lite {lite}: an interface found in {worst} of {RUNS} runs, median {} probes",
                topology.name,
                median(&tally.probes)
            );
            assert_eq!(tally.phantom, 0, "{}", topology.name);
            if !lite && worst * 100 < RUNS * 95 {
                missed.push(format!(
                    "{} lite {lite}: {:?}",
                    topology.name, tally.interfaces
                ));
            }
        }
    }
    assert!(missed.is_empty(), "{missed:#?}");
}

#[test]
fn each_router_before_takes_the_re_probes_once() {
    // TTL 3's flows came through one of TTL 2's two routers, seen there, or were sent
    // straight to TTL 3 for its own rule (their router unknown). Each router's own flows
    // reach two of TTL 3's four and take the re-probes for it (5 at 95%, 7 at 99%);
    // re-probing the flows sent straight would test the same two routers again.
    let nested = Topology::new("nested", &[1, 1, 2, 4, 1], |t, i, j| match t {
        2 => u64::from(j / 2 == i),
        _ => 1,
    });
    for (confidence, repeats) in [(Confidence::P95, 5), (Confidence::P99, 7)] {
        let checked = MultipathConfig {
            confidence,
            ..MultipathConfig::default()
        };
        let unchecked = MultipathConfig {
            per_packet_check: false,
            ..checked.clone()
        };
        let (with, _) = probes_per_ttl(&nested, &checked);
        let (without, _) = probes_per_ttl(&nested, &unchecked);
        println!(
            "nested at {}%: {with:?}, unchecked {without:?}",
            confidence.percent()
        );
        // TTL 2: TTL 1's one router; TTL 3: TTL 2's two.
        assert_eq!(with[1] - without[1], repeats, "{with:?} {without:?}");
        assert_eq!(with[2] - without[2], 2 * repeats, "{with:?} {without:?}");
    }
}

/// The probability that a link one flow in `ways` takes shows in `flows` flows answered at
/// both of its TTLs, flows taken without regard to the router they went through.
fn blind(ways: u32, flows: u32) -> f64 {
    1.0 - (1.0 - 1.0 / f64::from(ways)).powi(flows as i32)
}

/// The probability that a link a router takes for half its flows shows in `flows` of them.
fn through_router(flows: u32) -> f64 {
    1.0 - 0.5f64.powi(flows as i32)
}

/// What showing each link of the meshed diamonds in 95% of runs costs at the least, against
/// tracelb's 40 probes for each (which report the hop as a clump, without those links):
/// flows at both TTLs taken blind, as ours are, 54 (4x2) and 42 (3x3) probes, exactly;
/// spread evenly over the routers before, a median 56 and 44 by simulation. Followed per
/// router as answers come, 4x2's links take about tracelb's own flows at TTL 3.
#[test]
fn the_meshed_links_floor_against_tracelbs_counts_is_computed() {
    let n = |k: usize| Confidence::P95.stopping_point(k);
    // tracelb's probes: TTL 1 as one router, each TTL's own rule, the target's one.
    // 4x2: 1 + n_4 + n_2 + n_1 + 1; 3x3 (each of 3 to 2 of 3): 1 + n_3 + n_3 + n_1 + 1.
    let tracelb_4x2 = 1 + n(4) + n(2) + n(1) + 1;
    let tracelb_3x3 = 1 + n(3) + n(3) + n(1) + 1;
    assert_eq!((tracelb_4x2, tracelb_3x3), (40, 40));
    // Flows answered at both TTLs taken blind, as ours are: a link of 4x2 is one flow in
    // 8, of 3x3 one in 6. tracelb's flows at TTL 3 (n_2 = 11, n_3 = 16) show each link
    // in 77% and 94.6% of runs; 95% takes 23 and 17 flows at both, so 1 + 23 + 23 + 6 + 1
    // = 54 and 1 + 17 + 17 + 6 + 1 = 42 probes at the least, over tracelb's 40.
    let least = |ways: u32| (1..).find(|&f| blind(ways, f) >= 0.95).unwrap();
    assert_eq!((least(8), least(6)), (23, 17));
    assert!(blind(8, n(2)) < 0.78 && blind(6, n(3)) < 0.95);
    let floor_4x2 = 1 + least(8).max(n(4)) + least(8) + n(1) + 1;
    let floor_3x3 = 1 + least(6).max(n(3)) + least(6) + n(1) + 1;
    assert_eq!((floor_4x2, floor_3x3), (54, 42));
    // Spread evenly over TTL 2's routers (each of which takes either successor for half
    // its flows), fixed before any answer at TTL 3: tracelb's 11 flows at TTL 3 of 4x2
    // give a router 2 (a link through it 75%); 95% takes 5 through each router on both
    // topologies, 20 and 15 flows at TTL 3, and TTL 2 must have answered 5 through each
    // (its own rule's 21 and 16 flows often leave a router fewer: fresh flows there).
    let per_router = (1..).find(|&f| through_router(f) >= 0.95).unwrap();
    assert_eq!(per_router, 5);
    assert!(through_router(n(2) / 4) < 0.95);
    // Chosen as answers come (a router's flows followed only until it showed both, at
    // most 5), 4x2 takes sum over t < 5 of P(the first t flows show one) = 2.875 flows
    // per router, 11.5 for four: about tracelb's own 11 at TTL 3, where blind flows take
    // 29 (the tracer follows each router so, up to 8 flows, and takes 14 there:
    // `meshed_hops_are_followed_per_router`). 3x3 cannot stop a router early: two
    // successors seen, a third may remain.
    let expected: f64 = (0..per_router)
        .map(|t| {
            if t == 0 {
                1.0
            } else {
                0.5f64.powi(t as i32 - 1)
            }
        })
        .sum();
    assert!((expected - 2.875).abs() < 1e-12, "{expected}");
    // By simulation over the in-process topologies, 2,000 seeds: flows at both TTLs taken
    // blind (the lowest first, TTL 2 at least its own rule), and evenly (TTL 2's flows
    // until its own rule is met and each router has 5, then 5 through each router at
    // TTL 3, at least TTL 3's own rule): the worst link's share and the median probes.
    let full = Topology::full("meshed 4x2", &[1, 1, 4, 2, 1]);
    let partly = Topology::new("meshed 3x3", &[1, 1, 3, 3, 1], |t, i, j| match t {
        2 => u64::from(j == i || j == (i + 1) % 3),
        _ => 1,
    });
    let seeds = 2_000u64;
    // Per topology: TTL 2's and TTL 3's own rules, a link's share of the flows.
    for (topology, at2, at3, ways) in [(&full, n(4), n(2), 8), (&partly, n(3), n(3), 6)] {
        let (_, links) = topology.truth();
        let at3_links: Vec<(IpAddr, IpAddr)> = links
            .iter()
            .filter(|l| l.ttl == 3)
            .map(|l| (l.from, l.to))
            .collect();
        // Links found blind with tracelb's flows at TTL 3 and with the floor's, evenly.
        let mut found: [BTreeMap<(IpAddr, IpAddr), u64>; 3] = Default::default();
        let mut even_probes = Vec::new();
        for seed in (0..seeds).map(|s| mix64(s + 1)) {
            let route = |flow: u32| {
                let flow = u16::try_from(flow).unwrap();
                let from = topology.walk(seed, 2, flow, &mut 0).addr;
                (from, topology.walk(seed, 3, flow, &mut 0).addr)
            };
            let tracelbs: BTreeSet<_> = (0..at3).map(route).collect();
            let floors: BTreeSet<_> = (0..least(ways)).map(route).collect();
            let mut by_router: BTreeMap<IpAddr, Vec<u32>> = BTreeMap::new();
            let mut sent2 = 0;
            while sent2 < at2
                || by_router.len() < topology.levels[2].len()
                || by_router.values().any(|f| f.len() < per_router as usize)
            {
                by_router.entry(route(sent2).0).or_default().push(sent2);
                sent2 += 1;
            }
            let mut chosen: BTreeSet<u32> = by_router
                .values()
                .flat_map(|f| f.iter().take(per_router as usize).copied())
                .collect();
            let mut more = 0..sent2;
            while (chosen.len() as u32) < at3 {
                chosen.extend(more.next());
            }
            let evenly: BTreeSet<_> = chosen.iter().map(|&f| route(f)).collect();
            even_probes.push(1 + sent2 + chosen.len() as u32 + n(1) + 1);
            for key in &at3_links {
                for (count, seen) in found.iter_mut().zip([&tracelbs, &floors, &evenly]) {
                    *count.entry(*key).or_insert(0) += u64::from(seen.contains(key));
                }
            }
        }
        let [tracelbs, floors, evenly] =
            found.map(|f| f.values().min().copied().unwrap_or(0) as f64 / seeds as f64);
        let even_median = median(&even_probes);
        println!(
            "{}: worst link with tracelb's {at3} flows at both TTLs {tracelbs:.3} (computed \
             {:.3}), with {} {floors:.3} ({:.3}); evenly, 5 through each router, \
             {evenly:.3} at a median {even_median} probes",
            topology.name,
            blind(ways, at3),
            least(ways),
            blind(ways, least(ways)),
        );
        // 2,000 runs: a share's standard deviation is at most 0.5%; the worst of 6 or 8
        // links lies a little under its own, all within 2.5% of the computed figure.
        assert!((tracelbs - blind(ways, at3)).abs() < 0.025, "{tracelbs}");
        assert!(
            (floors - blind(ways, least(ways))).abs() < 0.025,
            "{floors}"
        );
        assert!(evenly > 0.95 - 0.025, "{evenly}");
        assert!(even_median > 40, "{even_median}");
    }
}

/// A random small topology from `seed`: 1 to 5 TTLs of 1 to 4 routers before the target,
/// each router linked to 1 to 3 of the next TTL's (weights 1 to 3), every router reached
/// from at least one before; with `silent`, some routers never answer; with `per_packet`,
/// some balance per packet.
fn random_topology(seed: u64, silent: bool, per_packet: bool) -> Topology {
    let mut rng = seed;
    let mut draw = |n: u64| {
        rng = mix64(rng);
        rng % n
    };
    let depth = 1 + draw(5) as usize;
    let mut widths = vec![1];
    widths.extend((0..depth).map(|t| if t == 0 { 1 } else { 1 + draw(4) as usize }));
    let mut topology = Topology::full("random", &widths);
    for t in 0..topology.levels.len() - 1 {
        let next = topology.levels[t + 1].len();
        let mut reached = vec![false; next];
        for node in &mut topology.levels[t] {
            let fan = (1 + draw(3) as usize).min(next);
            let first = draw(next as u64) as usize;
            node.next = (0..fan)
                .map(|k| ((first + k) % next, 1 + draw(3)))
                .collect();
            for &(j, _) in &node.next {
                reached[j] = true;
            }
        }
        // A router nobody reaches would be no interface of the trace: link it from the
        // last router before.
        let width = topology.levels[t].len();
        for (j, _) in reached.iter().enumerate().filter(|(_, r)| !**r) {
            topology.levels[t][width - 1].next.push((j, 1 + draw(3)));
        }
    }
    if silent {
        // Never the target; never the source.
        let last = topology.levels.len() - 1;
        for t in 1..last {
            for node in &mut topology.levels[t] {
                node.silent = draw(6) == 0;
            }
        }
    }
    if per_packet {
        let last = topology.levels.len() - 1;
        for t in 1..last {
            for node in &mut topology.levels[t] {
                node.per_packet = draw(5) == 0;
            }
        }
    }
    topology
}

#[test]
fn random_small_topologies_get_no_false_link_and_no_panic() {
    // Seeded: 400 topologies, each traced with and without MDA-Lite, at 95% and 99%, with
    // a random budget, once without loss and once losing 1%, 5% or 20% of probes; every
    // trace ends within the budget and reports only interfaces and links that are there
    // (a lost probe shows nothing: it never makes a link, an interface or a per-packet hop).
    let (mut runs, mut phantom_runs) = (0, Vec::new());
    for case in 0..400u64 {
        let seed = mix64(case + 0x7070);
        let topology = random_topology(seed, case % 3 == 0, false);
        let (interfaces, links) = topology.truth();
        for (k, lite) in [true, false].into_iter().enumerate() {
            let config = MultipathConfig {
                confidence: if case % 2 == 0 {
                    Confidence::P95
                } else {
                    Confidence::P99
                },
                lite,
                max_probes: if case % 5 == 0 {
                    (mix64(seed) % 60) as u32
                } else {
                    10_000
                },
                ..MultipathConfig::default()
            };
            for loss in [0, [10, 50, 200][(case % 3) as usize]] {
                let report = trace_lossy(&topology, mix64(seed ^ k as u64), &config, loss);
                runs += 1;
                assert!(
                    report.probes <= config.max_probes,
                    "case {case} loss {loss}"
                );
                for hop in &report.hops {
                    for responder in &hop.responders {
                        assert!(
                            interfaces.contains(&(hop.ttl, responder.address)),
                            "case {case} loss {loss}: no interface {} at {}",
                            responder.address,
                            hop.ttl
                        );
                    }
                    assert!(!hop.per_packet, "case {case}: no hop balances per packet");
                }
                let false_links: Vec<_> =
                    report.links.iter().filter(|l| !links.contains(l)).collect();
                if !false_links.is_empty() {
                    phantom_runs.push(format!(
                        "case {case} lite {lite} loss {loss}: {false_links:?}"
                    ));
                }
            }
        }
    }
    assert!(
        phantom_runs.is_empty(),
        "false links in {} of {runs} runs: {phantom_runs:#?}",
        phantom_runs.len()
    );
}

#[test]
fn random_small_topologies_with_per_packet_routers_get_no_false_link_where_all_is_seen() {
    // Seeded: 3,000 topologies where a fifth of the routers balance per packet (a third of
    // them with silent routers too). A per-packet router changes a flow's way at every TTL
    // after it until the ways meet at one interface, so a flow answered at two TTLs there
    // shows no link. Where the trace saw every interface and flagged the TTL after each
    // per-packet router (each within the confidence), and no per-packet router or its next
    // hop is silent (its balancing then shows as loss), no link it reports may be false.
    let (mut checked, mut false_runs) = (0, Vec::new());
    for case in 0..3000u64 {
        let seed = mix64(case + 0x7070);
        let topology = random_topology(seed, case % 3 == 0, true);
        let (interfaces, links) = topology.truth();
        let levels = &topology.levels;
        let hidden = (1..levels.len() - 1).any(|t| {
            levels[t].iter().any(|n| {
                n.per_packet && (n.silent || n.next.iter().any(|&(j, _)| levels[t + 1][j].silent))
            })
        });
        if hidden {
            continue;
        }
        let balancing: BTreeSet<u8> = (1..levels.len())
            .filter(|&t| levels[t].iter().any(|n| n.per_packet && n.next.len() >= 2))
            .map(|t| (t + 1) as u8)
            .collect();
        for (k, lite) in [true, false].into_iter().enumerate() {
            let config = MultipathConfig {
                lite,
                ..MultipathConfig::default()
            };
            let report = trace(&topology, mix64(seed ^ k as u64), &config);
            assert!(report.probes <= config.max_probes, "case {case}");
            let found: BTreeSet<(u8, IpAddr)> = report
                .hops
                .iter()
                .flat_map(|h| h.responders.iter().map(move |r| (h.ttl, r.address)))
                .collect();
            assert!(found.is_subset(&interfaces), "case {case}: {found:?}");
            let flagged: BTreeSet<u8> = report
                .hops
                .iter()
                .filter(|h| h.per_packet)
                .map(|h| h.ttl)
                .collect();
            if found != interfaces || !balancing.is_subset(&flagged) {
                continue;
            }
            checked += 1;
            let false_links: Vec<_> = report.links.iter().filter(|l| !links.contains(l)).collect();
            if !false_links.is_empty() {
                false_runs.push(format!("case {case} lite {lite}: {false_links:?}"));
            }
        }
    }
    // Most runs see everything: the check covers them.
    assert!(checked >= 2000, "{checked} runs saw everything");
    println!("{checked} runs saw everything");
    assert!(
        false_runs.is_empty(),
        "false links in {} of {checked} runs: {false_runs:#?}",
        false_runs.len()
    );
}

/// The replies mtr-packet gives a probe it refused ([`mtrproto::ReplyKind::is_refusal`]).
const REFUSALS: [&str; 5] = [
    "invalid-argument",
    "permission-denied",
    "address-in-use",
    "address-not-available",
    "unexpected-error",
];

/// A probe the helper refused ends the trace at once, as it ends a `Tracer`'s (it was
/// counted unanswered: TTL 2 was crossed as silent and the trace reached the target at
/// TTL 3, missing a hop).
#[test]
fn a_refused_probe_ends_the_trace() {
    for kind in REFUSALS {
        let start = Instant::now();
        let mut now = start;
        let mut tracer = MultipathTracer::new(udp(), &MultipathConfig::default(), now).unwrap();
        let mut refused: Option<ProbeId> = None;
        let mut late = Vec::new();
        // TTL 1: one router; TTL 2: its first probe in flight, the second refused.
        for _ in 0..1000 {
            while let Some(probe) = tracer.poll_probe(now) {
                let id = probe.id();
                assert!(
                    id.ttl() <= 2,
                    "{kind}: probed TTL {} past the refusal",
                    id.ttl()
                );
                match (id.ttl(), refused) {
                    (1, _) => {
                        let line = "1 ttl-expired ip-4 10.1.0.1 round-trip-time 1000";
                        tracer.handle_result(now, id, &result(line));
                    }
                    // The first stays in flight.
                    (_, None) if !late.is_empty() => {
                        refused = Some(id);
                        tracer.handle_result(now, id, &result(&format!("1 {kind}")));
                    }
                    _ => late.push(id),
                }
            }
            match tracer.poll_timeout() {
                Some(next) => now = next.max(now),
                None => break,
            }
            tracer.handle_timeout(now);
        }
        let refused = refused.expect(kind);
        assert!(tracer.is_done(), "{kind}");
        let reply = Reply::parse(&format!("1 {kind}"))
            .unwrap()
            .kind
            .into_owned();
        assert_eq!(tracer.refused(), Some((2, &reply)));
        // At once: the probe in flight not given up first.
        assert_eq!((late.len(), tracer.in_flight()), (1, 1), "{kind}");
        assert_eq!(
            (tracer.poll_timeout(), tracer.poll_probe(now)),
            (None, None)
        );
        let report = tracer.report();
        assert_eq!(report.end, Some(MultipathEnd::Refused), "{kind}");
        assert_eq!(report.hops.len(), 2, "{kind}");
        let hop = &report.hops[1];
        assert!(hop.responders.is_empty(), "{kind}");
        assert_eq!((hop.probes, hop.unanswered), (2, 1), "{kind}");
        // Probes still in flight then are ignored when they come back or are given up.
        let answer = result("1 reply ip-4 127.0.0.1 round-trip-time 1000");
        for &id in &late {
            tracer.handle_result(now, id, &answer);
        }
        tracer.handle_result(now, refused, &answer);
        tracer.handle_timeout(now + Duration::from_secs(60));
        assert_eq!(tracer.report(), report, "{kind}");
    }
}

/// Once a trace ends, however it ends (the target reached, max TTL, silence, the budget),
/// nothing changes its report: it ends only with no probe in flight (a TTL is done only
/// once its probes and those of the TTL before are in, the budget only once none is out),
/// and results, losses and deadlines of probes no longer in flight are ignored. Over random
/// topologies with answers out of order (each after 1 to 40 ms, silence at the timeout).
#[test]
fn nothing_is_recorded_after_the_trace_ends() {
    let mut ends = BTreeMap::new();
    for case in 0..300u64 {
        let seed = mix64(case + 0x5151);
        let topology = random_topology(seed, case % 2 == 0, case % 3 == 0);
        let config = MultipathConfig {
            max_ttl: 1 + (mix64(seed ^ 1) % 6) as u8,
            max_silent: 1 + (mix64(seed ^ 2) % 2) as u8,
            max_probes: if case % 4 == 0 {
                (mix64(seed) % 80) as u32
            } else {
                10_000
            },
            gap: Duration::from_millis(mix64(seed ^ 3) % 3),
            lite: case % 5 != 0,
            ..MultipathConfig::default()
        };
        let start = Instant::now();
        let mut now = start;
        let mut tracer = MultipathTracer::new(udp(), &config, now).unwrap();
        let mut rng = seed;
        let mut sent = Vec::new();
        let mut pending: Vec<(Instant, ProbeId, ProbeResult)> = Vec::new();
        for _ in 0..100_000 {
            while let Some(probe) = tracer.poll_probe(now) {
                let id = probe.id();
                sent.push(id);
                let node = topology.walk(seed, id.ttl(), id.flow().id(), &mut rng);
                rng = mix64(rng);
                let delay = Duration::from_millis(1 + rng % 40);
                let (delay, line) = if node.silent {
                    (config.timeout, "1 no-reply".to_owned())
                } else if node.addr == TARGET.parse::<IpAddr>().unwrap() {
                    (
                        delay,
                        format!("1 reply ip-4 {} round-trip-time 1000", node.addr),
                    )
                } else {
                    (
                        delay,
                        format!("1 ttl-expired ip-4 {} round-trip-time 1000", node.addr),
                    )
                };
                pending.push((now + delay, id, result(&line)));
            }
            if tracer.is_done() {
                break;
            }
            let due = pending.iter().map(|p| p.0).min();
            now = match (tracer.poll_timeout(), due) {
                (Some(t), Some(d)) => t.min(d).max(now),
                (t, d) => t.or(d).expect("a trace that is not done has a deadline"),
            };
            if let Some(i) = pending.iter().position(|p| p.0 <= now) {
                let (_, id, answer) = pending.swap_remove(i);
                tracer.handle_result(now, id, &answer);
            } else {
                tracer.handle_timeout(now);
            }
        }
        let report = tracer.report();
        let end = report.end.expect("the trace ended");
        *ends.entry(format!("{end:?}")).or_insert(0) += 1;
        assert_eq!(
            tracer.in_flight(),
            0,
            "case {case}: {end:?} with probes in flight"
        );
        // Every probe it sent comes back once more, answered by the target or a router,
        // then lost; the clock runs far past every deadline.
        for (i, &id) in sent.iter().enumerate() {
            let line = match i % 3 {
                0 => "1 reply ip-4 127.0.0.1 round-trip-time 5".to_owned(),
                1 => format!("1 ttl-expired ip-4 10.99.0.{} round-trip-time 5", id.ttl()),
                _ => "1 no-reply".to_owned(),
            };
            tracer.handle_result(now, id, &result(&line));
            tracer.handle_lost(now, id);
        }
        tracer.handle_timeout(now + Duration::from_secs(3600));
        assert_eq!(
            tracer.report(),
            report,
            "case {case}: changed after the end"
        );
        assert_eq!(
            (tracer.poll_probe(now), tracer.poll_timeout()),
            (None, None)
        );
    }
    println!("ends: {ends:?}");
    // Each way to end was taken.
    for end in ["Reached", "MaxTtl", "Silent", "Budget"] {
        assert!(ends.contains_key(end), "no trace ended {end}: {ends:?}");
    }
}

#[test]
fn every_diamonds_worst_link_is_found_in_95_percent_of_1000_runs() {
    const SETS: usize = 5;
    // The criterion: at 95% every interface and link found in at least 95% of seeded runs.
    // Pooled over five sets of 200 seeds (runs 0 to 999): a link found in 95% of runs shows
    // in a set of 200 with a standard deviation of about 3 runs, so one set may fall under
    // 190 by chance alone, or pass while the rate is under 95%; 1,000 runs put the rate
    // within about 0.7 points, and 950 of 1,000 is the criterion itself. Each set's worst
    // is printed beside it: the least of eight or more links' counts, it falls under 190
    // more often than any one link does (meshed 4x2: 182 to 191 over these five sets, and
    // 4,784 of 5,000 pooled over 25 sets; 2x2 4,791; 4x4 4,864). Every run within MDA's
    // bound, as in the tests above (nested, 1% of runs: its 10 re-probes at TTL 3 where the
    // bound counts 5).
    let nested = Topology::new("nested", &[1, 1, 2, 4, 1], |t, i, j| match t {
        2 => u64::from(j / 2 == i),
        _ => 1,
    });
    let nested_back = Topology::new("nested (2, 4, 2)", &[1, 1, 2, 4, 2, 1], |t, i, j| match t {
        2 => u64::from(j / 2 == i),
        3 => u64::from(i / 2 == j),
        _ => 1,
    });
    let partly = Topology::new("meshed 3x3", &[1, 1, 3, 3, 1], |t, i, j| match t {
        2 => u64::from(j == i || j == (i + 1) % 3),
        _ => 1,
    });
    let cases = [
        (Topology::full("meshed 4x2", &[1, 1, 4, 2, 1]), 0),
        (Topology::full("meshed 4x4", &[1, 1, 4, 4, 1]), 0),
        (partly, 0),
        (Topology::full("meshed 2x2", &[1, 1, 2, 2, 1]), 0),
        (nested_back, 0),
        (nested, SETS * RUNS / 100),
    ];
    let config = MultipathConfig::default();
    let mut short = Vec::new();
    for (topology, allowed) in cases {
        let bound = mda_bound(&topology, config.confidence);
        let (mut interfaces, mut links) = (BTreeMap::new(), BTreeMap::new());
        let (mut probes, mut sets, mut phantom) = (Vec::new(), Vec::new(), 0);
        for set in 0..SETS {
            let tally = tally_from(&topology, set * RUNS, RUNS, &config);
            sets.push(tally.links.values().min().copied().unwrap_or(RUNS));
            for (key, n) in tally.interfaces {
                *interfaces.entry(key).or_insert(0) += n;
            }
            for (key, n) in tally.links {
                *links.entry(key).or_insert(0) += n;
            }
            probes.extend(tally.probes);
            phantom += tally.phantom;
        }
        let runs = SETS * RUNS;
        let worst_interface = interfaces.values().min().copied().unwrap_or(runs);
        let worst_link = links.values().min().copied().unwrap_or(runs);
        let worst = probes.iter().max().copied().unwrap_or(0);
        let over = probes.iter().filter(|&&p| p > bound).count();
        println!(
            "{} at 95%, {runs} runs: worst interface {worst_interface}, worst link \
             {worst_link} (sets of 200: {sets:?}); probes median {} worst {worst}, MDA bound \
             {bound}, {over} runs over",
            topology.name,
            median(&probes)
        );
        assert_eq!(phantom, 0, "{}: links that are not there", topology.name);
        assert!(
            over <= allowed,
            "{}: {over} runs over {bound} probes (worst {worst}), {allowed} allowed",
            topology.name
        );
        if worst_interface * 100 < runs * 95 || worst_link * 100 < runs * 95 {
            short.push(format!(
                "{}: worst interface {worst_interface}, link {worst_link} of {runs}",
                topology.name
            ));
        }
    }
    assert!(short.is_empty(), "under 95%: {short:?}");
}

#[test]
fn per_flow_routers_are_never_flagged_with_answers_out_of_order_lost_or_cut_short() {
    let mut meshed = Topology::full("meshed", &[1, 1, 4, 4, 1]);
    meshed.levels[3][1].silent = true;
    let topologies = [
        diamond("diamond 2", 2),
        diamond("diamond 5", 5),
        weighted(&[3, 1, 1], false),
        weighted(&[8, 1], false),
        meshed,
        mixed_behind_silence(2, 3, false),
    ];
    for topology in &topologies {
        let (truth_interfaces, truth_links) = topology.truth();
        for confidence in [Confidence::P95, Confidence::P99] {
            for max_probes in [12, 40, 1000] {
                for run in 0..60 {
                    let config = MultipathConfig {
                        confidence,
                        max_probes,
                        window: 16,
                        ..MultipathConfig::default()
                    };
                    let loss = [0, 200, 500][run % 3];
                    let report = trace_jittered(topology, mix64(run as u64 + 7), &config, loss);
                    assert!(report.probes <= max_probes, "{report:?}");
                    assert!(
                        report.hops.iter().all(|h| !h.per_packet),
                        "{}: {report:?}",
                        topology.name
                    );
                    for link in &report.links {
                        assert!(truth_links.contains(link), "{}: {link:?}", topology.name);
                    }
                    for hop in &report.hops {
                        for r in &hop.responders {
                            assert!(truth_interfaces.contains(&(hop.ttl, r.address)));
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn per_packet_routers_with_answers_out_of_order_lost_or_cut_short_make_no_link_up() {
    // TTL 1 balances per packet over two routers, each going on to one of its own at TTL 3:
    // a flow's probes at TTL 3 may go either way, which links nothing.
    let mut parallel = Topology::new("per packet, parallel", &[1, 1, 2, 2], |t, i, j| {
        u64::from(t != 2 || i == j)
    });
    parallel.levels[1][0].per_packet = true;
    let mut uneven = weighted(&[3, 1, 1], true);
    uneven.name = "per packet 3, 1, 1";
    let mixed = mixed_behind_silence(2, 3, true);
    // The last TTL that may be flagged (past the per-packet hop a flow's way changes, so
    // TTL 3 of `parallel` may be too), and the one that shows the per-packet router.
    for (topology, flagged, shows) in [(&parallel, 3, 1), (&uneven, 2, 1), (&mixed, 3, 2)] {
        let (truth_interfaces, truth_links) = topology.truth();
        for confidence in [Confidence::P95, Confidence::P99] {
            for max_probes in [12, 40, 1000] {
                for run in 0..60 {
                    let config = MultipathConfig {
                        confidence,
                        max_probes,
                        window: 16,
                        ..MultipathConfig::default()
                    };
                    let loss = [0, 200, 500][run % 3];
                    let report = trace_jittered(topology, mix64(run as u64 + 7), &config, loss);
                    assert!(report.probes <= max_probes, "{report:?}");
                    assert!(
                        report
                            .hops
                            .iter()
                            .all(|h| (2..=flagged).contains(&h.ttl) || !h.per_packet),
                        "{}: {report:?}",
                        topology.name
                    );
                    let mut found = BTreeSet::new();
                    for hop in &report.hops {
                        for r in &hop.responders {
                            assert!(truth_interfaces.contains(&(hop.ttl, r.address)));
                            found.insert((hop.ttl, r.address));
                        }
                    }
                    // Where MDA missed an interface or the balancing (each within the
                    // confidence), a link may be inferred wrongly; not with both found.
                    if found == truth_interfaces && report.hops[shows].per_packet {
                        for link in &report.links {
                            assert!(truth_links.contains(link), "{}: {link:?}", topology.name);
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn a_trace_that_reaches_the_target_leaves_no_re_probe_unanswered() {
    // Seeded: 600 random topologies with per-packet routers, no loss, answers 1 ms after
    // their probe. A trace ends at the target's TTL once no probe is in flight there or at
    // the TTL before; re-probes of a router whose flows all reached one interface may go to
    // any TTL before (once the trace's probes are within MDA's own for what is seen), and
    // one in flight there when the trace ends is a probe spent for nothing, its answer
    // (which may show the router balancing per packet) never read.
    let (mut runs, mut cut) = (0, Vec::new());
    for case in 0..3000u64 {
        let seed = mix64(case + 0x5eed);
        let topology = random_topology(seed, false, true);
        for lite in [true, false] {
            let config = MultipathConfig {
                lite,
                ..MultipathConfig::default()
            };
            let (report, in_flight) = trace_in_flight_at_end(&topology, seed, &config, 0, true);
            if report.end == Some(MultipathEnd::Reached) {
                runs += 1;
                if in_flight > 0 {
                    cut.push(format!("case {case} lite {lite}: {in_flight} in flight"));
                }
            }
        }
    }
    println!(
        "{runs} runs reached the target, {} with probes in flight",
        cut.len()
    );
    assert!(runs >= 1000, "{runs} runs reached the target");
    assert!(cut.is_empty(), "{} of {runs} runs: {cut:#?}", cut.len());
}

/// `handle_result` ignores a result for "one of another trace", as documented (and
/// `handle_lost` its loss): every trace numbered its probes from 0 alike, so another
/// trace's first probe passed for this one's, and its answer ended this trace.
#[test]
fn a_result_for_another_traces_probe_is_ignored() {
    let now = Instant::now();
    let config = MultipathConfig::default();
    let mut ours = MultipathTracer::new(udp(), &config, now).unwrap();
    let mut theirs = MultipathTracer::new(udp(), &config, now).unwrap();
    let our_probe = ours.poll_probe(now).unwrap();
    let their_probe = theirs.poll_probe(now).unwrap();
    assert_eq!(
        (our_probe.id().ttl(), our_probe.id().flow()),
        (their_probe.id().ttl(), their_probe.id().flow())
    );
    let line = format!("1 reply ip-4 {TARGET} round-trip-time 900");
    let result = ProbeResult::from_reply(&Reply::parse(&line).unwrap());
    ours.handle_result(now, their_probe.id(), &result);
    ours.handle_lost(now, their_probe.id());
    assert_eq!(ours.in_flight(), 1, "their probe's result taken for ours");
    assert!(!ours.is_done());
    ours.handle_result(now, our_probe.id(), &result);
    assert!(ours.is_done(), "the target answered at the first TTL");
}
