//! The simulated network's decisions: for each probe read from the TUN device, who answers,
//! what, and when.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use mtrproto::Mpls;

use super::internet::{Behaviour, Internet, Reach, TargetKind};
use super::packet::{IcmpError, Probe, Transport, echo_reply, icmp_error, set_ip_id, tcp_reply};
use super::scenario::{Hop, Scenario, Select, Target, mpls, offset};
use super::topology::{Graph, router_seed};

/// Answers probes as a scenario says.
pub struct Responder {
    targets: HashMap<IpAddr, usize>,
    scenario: Scenario,
    mpls: Vec<Vec<Vec<Mpls>>>,
    random: SplitMix,
    /// Per (target, hop): answers in the current second, and when that second started.
    rate: HashMap<(usize, usize), (Instant, u32)>,
    internet: Option<Internet>,
    /// Per rate-limited router of the internet, as `rate`.
    router_rate: HashMap<u32, (Instant, u32)>,
    /// Each target's routers.
    graphs: Vec<Graph>,
    /// The next IPv4 identification of each answering address: it counts per router.
    ip_ids: HashMap<IpAddr, u16>,
}

impl Responder {
    /// A responder for a checked scenario.
    pub fn new(mut scenario: Scenario) -> Responder {
        let internet = scenario.internet.take();
        let graphs = std::mem::take(&mut scenario.graphs);
        let mut targets = HashMap::new();
        for (i, target) in scenario.targets.iter().enumerate() {
            for n in 0..target.count {
                targets.insert(offset(target.address, n), i);
            }
        }
        let mpls = scenario
            .targets
            .iter()
            .map(|t| {
                t.hops
                    .iter()
                    .map(|h| h.mpls.iter().filter_map(|m| mpls(*m).ok()).collect())
                    .collect()
            })
            .collect();
        Responder {
            targets,
            random: SplitMix(scenario.seed),
            scenario,
            mpls,
            rate: HashMap::new(),
            internet,
            router_rate: HashMap::new(),
            graphs,
            ip_ids: HashMap::new(),
        }
    }

    /// The answer to one datagram and when to send it; `None` to stay silent.
    pub fn answer(&mut self, packet: &[u8], now: Instant) -> Option<(Instant, Vec<u8>)> {
        let (due, mut answer) = self.decide(packet, now)?;
        if let Some(&[a, b, c, d]) = answer.get(12..16) {
            let from = IpAddr::from([a, b, c, d]);
            let seed = self.scenario.seed;
            let next = self
                .ip_ids
                .entry(from)
                .or_insert_with(|| router_seed(seed, from) as u16);
            set_ip_id(&mut answer, *next);
            *next = next.wrapping_add(1);
        }
        Some((due, answer))
    }

    fn decide(&mut self, packet: &[u8], now: Instant) -> Option<(Instant, Vec<u8>)> {
        let probe = Probe::parse(packet)?;
        if probe.transport == Transport::Other {
            return None;
        }
        if probe.ttl == 0 {
            return None;
        }
        let Some(&index) = self.targets.get(&probe.dst) else {
            return self.internet_answer(&probe, now);
        };
        let target: &Target = &self.scenario.targets[index];
        let ttl = usize::from(probe.ttl);
        // A router that answers unreachable ends the path: probes with a larger TTL reach it
        // and get the same answer. Otherwise the router at the TTL answers, if there is one.
        let ends = target.hops.iter().position(|h| h.unreachable.is_some());
        let answering = match ends {
            Some(end) if end < ttl - 1 => Some(end),
            _ => (ttl <= target.hops.len()).then_some(ttl - 1),
        };
        if let Some(hop_index) = answering {
            let hop = target.hops[hop_index].clone();
            return self.router_answer(&probe, index, hop_index, &hop, now);
        }
        let destination = target.destination.clone();
        // It arrives after every router decremented its TTL.
        let arrived = probe.ttl.saturating_sub(target.hops.len() as u8);
        if self.random.uniform() < destination.timing.loss {
            return None;
        }
        let reply = match probe.transport {
            Transport::Echo => match destination.icmp_unreachable {
                Some(code) => icmp_error(&probe, probe.dst, code.into(), &[], arrived),
                None => echo_reply(&probe),
            },
            Transport::Udp { .. } => {
                icmp_error(&probe, probe.dst, IcmpError::PortUnreachable, &[], arrived)
            }
            Transport::Tcp { .. } => tcp_reply(&probe, destination.tcp_open)?,
            Transport::Other => return None,
        };
        Some((now + destination.timing.delay(self.random.uniform()), reply))
    }

    fn router_answer(
        &mut self,
        probe: &Probe<'_>,
        target: usize,
        hop_index: usize,
        hop: &Hop,
        now: Instant,
    ) -> Option<(Instant, Vec<u8>)> {
        if hop.silent
            || self.random.uniform() < hop.timing.loss
            || !self.within_rate(target, hop_index, hop.rate_limit, now)
        {
            return None;
        }
        let random = &mut self.random;
        let node = self
            .graphs
            .get(target)?
            .route(hop_index, |select| match select {
                Select::Flow => probe.flow_hash(),
                Select::FirstFour => probe.head_hash(),
                Select::Packet => random.next(),
            })?;
        let from = node.address?;
        // The TTL it arrived with (1 where it expires), or after this router's decrement.
        let arrived = probe.ttl.saturating_sub(hop_index as u8);
        let quoted = arrived.saturating_sub(1 - hop.quoted_ttl.min(1));
        let answer = match hop.unreachable {
            Some(code) => icmp_error(probe, from, code.into(), &[], quoted),
            None => icmp_error(
                probe,
                from,
                IcmpError::TimeExceeded,
                &self.mpls[target][hop_index],
                quoted,
            ),
        };
        Some((now + hop.timing.delay(self.random.uniform()), answer))
    }

    /// The answer of the generated internet, if the probe goes to one of its targets.
    fn internet_answer(&mut self, probe: &Probe<'_>, now: Instant) -> Option<(Instant, Vec<u8>)> {
        let internet = self.internet.as_ref()?;
        let index = internet.target_index(probe.dst)?;
        let (k, error) = match internet.reach(index, probe.ttl) {
            Reach::Router(k) => (k, IcmpError::TimeExceeded),
            Reach::Unreachable(k) => (k, IcmpError::HostUnreachable),
            Reach::Destination => {
                if internet.target_kind(index) != TargetKind::Answers {
                    return None;
                }
                let arrived = probe.ttl.saturating_sub(internet.path_len(index) as u8);
                let reply = match probe.transport {
                    Transport::Echo => echo_reply(probe),
                    Transport::Udp { .. } => {
                        icmp_error(probe, probe.dst, IcmpError::PortUnreachable, &[], arrived)
                    }
                    Transport::Tcp { .. } => tcp_reply(probe, false)?,
                    Transport::Other => return None,
                };
                let jitter = internet.jitter(self.random.uniform());
                return Some((now + internet.destination_delay(index) + jitter, reply));
            }
        };
        let router = internet.routers()[k as usize];
        let lost = match router.behaviour {
            Behaviour::Silent => true,
            Behaviour::Lossy => self.random.uniform() < internet.spec().loss,
            Behaviour::RateLimited => {
                let (start, count) = self.router_rate.entry(k).or_insert((now, 0));
                if now.duration_since(*start) >= Duration::from_secs(1) {
                    *start = now;
                    *count = 0;
                }
                *count += 1;
                *count > internet.spec().rate_limit
            }
            Behaviour::Answers => false,
        };
        if lost {
            return None;
        }
        // Seeded per router, so consecutive ECMP routers choose independently.
        let twin = router.twin.is_some()
            && crate::mix64(probe.flow_hash() ^ internet.router_seed(k)) % 2 == 1;
        let from = internet.router_address(k, twin, probe.dst);
        // Quoted as it arrived: 1 where it expired, more at an unreachable router.
        let arrived = match error {
            IcmpError::TimeExceeded => 1,
            _ => probe
                .ttl
                .saturating_sub(internet.path_len(index).saturating_sub(1) as u8),
        };
        let answer = icmp_error(probe, from, error, &[], arrived);
        let jitter = internet.jitter(self.random.uniform());
        Some((now + internet.router_delay(k) + jitter, answer))
    }

    /// An ICMP rate limit per hop: at most `limit` answers in each one-second window.
    fn within_rate(&mut self, target: usize, hop: usize, limit: u32, now: Instant) -> bool {
        if limit == 0 {
            return true;
        }
        let (start, count) = self.rate.entry((target, hop)).or_insert((now, 0));
        if now.duration_since(*start) >= Duration::from_secs(1) {
            *start = now;
            *count = 0;
        }
        *count += 1;
        *count <= limit
    }
}

/// SplitMix64: a small, seedable generator; runs with the same seed repeat.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        crate::mix64(self.0)
    }

    /// Uniform in 0..1.
    fn uniform(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::sim::internet::Behaviour;

    const SCENARIO: &str = r#"
        seed = 3
        [internet]
        targets = 2000
        first = "198.18.64.1"
        edges = 100
        silent_routers = 0.1
        lossy_routers = 0.1
        loss = 0.3
        rate_limited_routers = 0.1
        rate_limit = 10
        silent_targets = 0.2
        unreachable_targets = 0.1
        ecmp_routers = 0.2
    "#;

    /// A UDP probe from 198.18.0.1 to `dst` (checksums are not checked).
    fn udp_probe(dst: Ipv4Addr, ttl: u8, src_port: u16) -> Vec<u8> {
        let mut p = vec![0u8; 28];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&28u16.to_be_bytes());
        p[8] = ttl;
        p[9] = 17;
        p[12..16].copy_from_slice(&[198, 18, 0, 1]);
        p[16..20].copy_from_slice(&dst.octets());
        p[20..22].copy_from_slice(&src_port.to_be_bytes());
        p[22..24].copy_from_slice(&33434u16.to_be_bytes());
        p[24..26].copy_from_slice(&8u16.to_be_bytes());
        p
    }

    fn setup() -> (Responder, Internet) {
        let scenario = Scenario::parse(SCENARIO).unwrap();
        let internet = scenario.internet.clone().unwrap();
        (Responder::new(scenario), internet)
    }

    /// Who answers `dst` at `ttl` and with which ICMP type (`None`: silence).
    fn ask(
        r: &mut Responder,
        dst: Ipv4Addr,
        ttl: u8,
        port: u16,
        now: Instant,
    ) -> Option<(IpAddr, u8)> {
        let (_, answer) = r.answer(&udp_probe(dst, ttl, port), now)?;
        let parsed = Probe::parse(&answer)?;
        Some((parsed.src, parsed.payload[0]))
    }

    #[test]
    fn answers_follow_the_ground_truth() {
        let (mut r, net) = setup();
        let now = Instant::now();
        for i in (0..net.targets()).step_by(37) {
            let IpAddr::V4(dst) = net.target_addresses(i)[0] else {
                unreachable!()
            };
            let truth = net.truth(dst.into()).unwrap();
            let beyond = truth.hops.len() as u8 + 2;
            for ttl in 1..=beyond {
                let hop = &truth.hops[usize::from(ttl).min(truth.hops.len()) - 1];
                // Lossy and rate-limited hops are checked below.
                if hop.lossy || hop.rate_limited {
                    continue;
                }
                let got = ask(&mut r, dst, ttl, 40000, now);
                let Some(responders) = &hop.responders else {
                    assert_eq!(got, None, "{ttl}: {}", truth.to_json());
                    continue;
                };
                let (from, icmp_type) = got.unwrap();
                assert!(responders.contains(&from), "{ttl}: {}", truth.to_json());
                let at_end = usize::from(ttl) >= truth.hops.len();
                // Time exceeded on the way; port (or host) unreachable at the end.
                assert_eq!(icmp_type, if at_end { 3 } else { 11 }, "{ttl}");
            }
        }
    }

    #[test]
    fn a_rate_limited_router_answers_its_limit_per_second() {
        let (mut r, net) = setup();
        let (i, ttl) = (0..net.targets())
            .find_map(|i| {
                (1..)
                    .zip(net.path(i))
                    .find(|(_, k)| net.routers()[*k as usize].behaviour == Behaviour::RateLimited)
                    .map(|(ttl, _)| (i, ttl))
            })
            .unwrap();
        let IpAddr::V4(dst) = net.target_addresses(i)[0] else {
            unreachable!()
        };
        let now = Instant::now();
        let answered = |r: &mut Responder, at: Instant| {
            (0..30)
                .filter(|n| ask(r, dst, ttl, 40000 + n, at).is_some())
                .count()
        };
        assert_eq!(answered(&mut r, now), 10);
        assert_eq!(answered(&mut r, now + Duration::from_millis(500)), 0);
        assert_eq!(answered(&mut r, now + Duration::from_secs(1)), 10);
    }

    #[test]
    fn ecmp_routers_answer_from_both_addresses_by_flow_and_lossy_ones_lose() {
        let (mut r, net) = setup();
        let find = |f: &dyn Fn(&crate::sim::internet::Router) -> bool| {
            (0..net.targets())
                .find_map(|i| {
                    (1..)
                        .zip(net.path(i))
                        .find(|(_, k)| f(&net.routers()[*k as usize]))
                        .map(|(ttl, _)| (i, ttl))
                })
                .unwrap()
        };
        let v4 = |i: u32| match net.target_addresses(i)[0] {
            IpAddr::V4(a) => a,
            IpAddr::V6(_) => unreachable!(),
        };
        let now = Instant::now();
        let (i, ttl) = find(&|x| x.twin.is_some() && x.behaviour == Behaviour::Answers);
        let from: HashMap<u16, IpAddr> = (0..200)
            .map(|n| (n, ask(&mut r, v4(i), ttl, 40000 + n, now).unwrap().0))
            .collect();
        let distinct: std::collections::HashSet<_> = from.values().collect();
        assert_eq!(distinct.len(), 2);
        // The same flow, the same responder.
        for (n, a) in from.iter().take(20) {
            assert_eq!(ask(&mut r, v4(i), ttl, 40000 + n, now).unwrap().0, *a);
        }
        let (i, ttl) = find(&|x| x.behaviour == Behaviour::Lossy);
        let n = 2000;
        let lost = (0..n)
            .filter(|p| ask(&mut r, v4(i), ttl, 40000 + p, now).is_none())
            .count();
        let margin = 3.29 * (f64::from(n) * 0.3 * 0.7).sqrt();
        assert!((lost as f64 - 600.0).abs() <= margin, "{lost} of {n} lost");
    }
}
