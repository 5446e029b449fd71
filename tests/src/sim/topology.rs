//! A target's routers as a graph: which router of one hop leads to which of the next, and
//! how each balancing router chooses among its successors; the path a probe takes, and the
//! multipath ground truth (`mtrsim --ground-truth`).
//!
//! Every router hashes with its own seed (drawn from the scenario's seed and its address),
//! as real routers seed their hash per device: the choice at one hop does not fix the
//! choice at the next (no hash polarization).

use std::collections::BTreeSet;
use std::fmt::Write;
use std::net::IpAddr;

use super::scenario::{Link, Select, Target};

/// One router of a hop.
#[derive(Debug, Clone)]
pub struct Node {
    /// Its address; `None` for the anonymous router of a silent hop without responders.
    pub address: Option<IpAddr>,
    /// The seed mixed into its flow hash.
    pub seed: u64,
    /// Its successors in the next hop: (index there, weight), weights positive.
    pub next: Vec<(usize, u32)>,
    /// How it chooses among them, if not as the next hop's `select` says.
    pub select: Option<Select>,
}

/// The routers of one target's path, hop by hop.
#[derive(Debug, Clone)]
pub struct Graph {
    /// The first hop's routers as the prober's side chooses among them: (index, weight).
    pub first: Vec<(usize, u32)>,
    /// The seed of the prober's side's choice.
    pub source_seed: u64,
    /// The routers of each hop, TTL 1 first.
    pub hops: Vec<Vec<Node>>,
    /// How each hop's routers are chosen by the previous hop's (the prober's side for the
    /// first).
    pub select: Vec<Select>,
}

/// A well-mixed 64-bit value of an address.
fn address_key(addr: IpAddr) -> u64 {
    match addr {
        IpAddr::V4(a) => u64::from(u32::from(a)),
        IpAddr::V6(a) => {
            let n = u128::from(a);
            crate::mix64(n as u64) ^ (n >> 64) as u64 ^ 0x6666
        }
    }
}

/// The hash seed of the router at `address` in a scenario seeded with `seed`.
pub fn router_seed(seed: u64, address: IpAddr) -> u64 {
    crate::mix64(seed ^ crate::mix64(address_key(address)))
}

/// Picks among `choices` (index, weight) by `draw`, each with its weight's share.
fn pick(choices: &[(usize, u32)], draw: u64) -> Option<usize> {
    let total: u64 = choices.iter().map(|&(_, w)| u64::from(w)).sum();
    let mut at = draw % total.max(1);
    for &(index, weight) in choices {
        if at < u64::from(weight) {
            return Some(index);
        }
        at -= u64::from(weight);
    }
    None
}

impl Graph {
    /// The graph of `target`'s hops in a scenario seeded with `seed`; an error for links
    /// naming unknown routers, a router no link reaches or one that leads nowhere, a weight
    /// of 0, or an address twice in one hop.
    pub fn new(target: &Target, seed: u64) -> Result<Graph, String> {
        let mut hops: Vec<Vec<Node>> = Vec::with_capacity(target.hops.len());
        let mut weights: Vec<Vec<u32>> = Vec::with_capacity(target.hops.len());
        for (h, hop) in target.hops.iter().enumerate() {
            let at = format!("hop {}", h + 1);
            let mut nodes = Vec::new();
            let mut hop_weights = Vec::new();
            for r in &hop.responders {
                if r.weight() == 0 {
                    return Err(format!("{at}: {} has weight 0", r.address()));
                }
                if nodes.iter().any(|n: &Node| n.address == Some(r.address())) {
                    return Err(format!("{at}: {} twice", r.address()));
                }
                nodes.push(Node {
                    address: Some(r.address()),
                    seed: router_seed(seed, r.address()),
                    next: Vec::new(),
                    select: r.select(),
                });
                hop_weights.push(r.weight());
            }
            if nodes.is_empty() {
                // A silent hop without responders still forwards: one anonymous router.
                let key = address_key(target.address) ^ (h as u64).wrapping_mul(0x9e37);
                nodes.push(Node {
                    address: None,
                    seed: crate::mix64(seed ^ crate::mix64(key)),
                    next: Vec::new(),
                    select: None,
                });
                hop_weights.push(1);
            }
            hops.push(nodes);
            weights.push(hop_weights);
        }
        for h in 1..hops.len() {
            let at = format!("hop {}", h + 1);
            let mut reached = vec![false; hops[h].len()];
            match &target.hops[h].links {
                None => {
                    let all: Vec<(usize, u32)> = weights[h].iter().copied().enumerate().collect();
                    for node in &mut hops[h - 1] {
                        node.next.clone_from(&all);
                    }
                    reached.fill(true);
                }
                Some(links) => {
                    for link in links {
                        let (from, to, weight) = match *link {
                            Link::Pair([from, to]) => (from, to, None),
                            Link::Weighted { from, to, weight } => (from, to, Some(weight)),
                        };
                        let find = |nodes: &[Node], a: IpAddr, which: &str| {
                            nodes
                                .iter()
                                .position(|n| n.address == Some(a))
                                .ok_or_else(|| format!("{at}: link {which} {a} is not there"))
                        };
                        let i = find(&hops[h - 1], from, "from")?;
                        let j = find(&hops[h], to, "to")?;
                        let weight = weight.unwrap_or(weights[h][j]);
                        if weight == 0 {
                            return Err(format!("{at}: link {from} {to} has weight 0"));
                        }
                        if hops[h - 1][i].next.iter().any(|&(k, _)| k == j) {
                            return Err(format!("{at}: link {from} {to} twice"));
                        }
                        hops[h - 1][i].next.push((j, weight));
                        reached[j] = true;
                    }
                }
            }
            if let Some(j) = reached.iter().position(|r| !r) {
                let name = hops[h][j].address.map_or("?".into(), |a| a.to_string());
                return Err(format!("{at}: no link reaches {name}"));
            }
            if let Some(node) = hops[h - 1].iter().find(|n| n.next.is_empty()) {
                let name = node.address.map_or("?".into(), |a| a.to_string());
                return Err(format!("{at}: no link from {name}"));
            }
        }
        Ok(Graph {
            first: weights
                .first()
                .map_or(Vec::new(), |w| w.iter().copied().enumerate().collect()),
            source_seed: crate::mix64(seed ^ crate::mix64(address_key(target.address) ^ 0x5eed)),
            hops,
            select: target.hops.iter().map(|h| h.select).collect(),
        })
    }

    /// How the router `from` (`None`: the prober's side) chooses among hop `h`'s routers.
    fn select_at(&self, from: Option<&Node>, h: usize) -> Select {
        from.and_then(|n| n.select)
            .unwrap_or_else(|| self.select.get(h).copied().unwrap_or_default())
    }

    /// The router a probe reaches at hop `hop` (0 for TTL 1): each router on the way picks
    /// its successor with `key(select)` (the probe's hash for that kind of balancing, or a
    /// random number per packet) mixed with its own seed.
    pub fn route(&self, hop: usize, mut key: impl FnMut(Select) -> u64) -> Option<&Node> {
        let mut choices = &self.first;
        let mut seed = self.source_seed;
        let mut node: Option<&Node> = None;
        for h in 0..=hop {
            let draw = crate::mix64(key(self.select_at(node, h)) ^ seed);
            let n = &self.hops.get(h)?[pick(choices, draw)?];
            choices = &n.next;
            seed = n.seed;
            node = Some(n);
        }
        node
    }

    /// For each hop, the probability that a flow (or, per packet, a probe) reaches each of
    /// its routers.
    fn shares(&self) -> Vec<Vec<f64>> {
        let mut out: Vec<Vec<f64>> = Vec::with_capacity(self.hops.len());
        for (h, nodes) in self.hops.iter().enumerate() {
            let mut p = vec![0.0; nodes.len()];
            let mut spread = |from_share: f64, choices: &[(usize, u32)]| {
                let total: f64 = choices.iter().map(|&(_, w)| f64::from(w)).sum();
                for &(j, w) in choices {
                    p[j] += from_share * f64::from(w) / total;
                }
            };
            if h == 0 {
                spread(1.0, &self.first);
            } else {
                for (i, node) in self.hops[h - 1].iter().enumerate() {
                    spread(out[h - 1][i], &node.next);
                }
            }
            out.push(p);
        }
        out
    }

    /// Per hop, whether one flow can reach more than one router there: a per-packet choice
    /// on the way splits it, and the split is not merged back into one router. Tracked as
    /// the pairs of routers one flow can reach at once.
    fn per_packet(&self) -> Vec<bool> {
        let mut pairs: BTreeSet<(usize, usize)> = BTreeSet::new();
        let mut out = Vec::with_capacity(self.hops.len());
        let add_all = |set: &mut BTreeSet<(usize, usize)>, choices: &[(usize, u32)]| {
            for &(a, _) in choices {
                for &(b, _) in choices {
                    if a < b {
                        set.insert((a, b));
                    }
                }
            }
        };
        for h in 0..self.hops.len() {
            let mut next = BTreeSet::new();
            if h == 0 {
                if self.select[0] == Select::Packet {
                    add_all(&mut next, &self.first);
                }
            } else {
                let prev = &self.hops[h - 1];
                for &(x, y) in &pairs {
                    for &(a, _) in &prev[x].next {
                        for &(b, _) in &prev[y].next {
                            if a != b {
                                next.insert((a.min(b), a.max(b)));
                            }
                        }
                    }
                }
                for node in prev {
                    if self.select_at(Some(node), h) == Select::Packet {
                        add_all(&mut next, &node.next);
                    }
                }
            }
            out.push(!next.is_empty());
            pairs = next;
        }
        out
    }

    /// What a multipath trace of `address` (one of `target`'s addresses) should find.
    pub fn truth(&self, target: &Target, address: IpAddr) -> PathTruth {
        let shares = self.shares();
        let per_packet = self.per_packet();
        let end = target
            .hops
            .iter()
            .position(|h| h.unreachable.is_some())
            .unwrap_or(self.hops.len());
        let answers = |h: usize, i: usize| {
            (!target.hops[h].silent)
                .then_some(self.hops[h][i].address)
                .flatten()
        };
        let mut hops = Vec::new();
        let mut links = Vec::new();
        for h in 0..self.hops.len().min(end + 1) {
            let responders: Vec<(IpAddr, f64)> = (0..self.hops[h].len())
                .filter_map(|i| Some((answers(h, i)?, shares[h][i])))
                .collect();
            hops.push(PathHop {
                ttl: h as u8 + 1,
                per_packet: per_packet[h] && !responders.is_empty(),
                responders,
                select: self.select[h],
            });
            if h == 0 {
                continue;
            }
            for (i, node) in self.hops[h - 1].iter().enumerate() {
                let total: f64 = node.next.iter().map(|&(_, w)| f64::from(w)).sum();
                for &(j, w) in &node.next {
                    if let (Some(a), Some(b)) = (answers(h - 1, i), answers(h, j)) {
                        links.push((a, b, shares[h - 1][i] * f64::from(w) / total));
                    }
                }
            }
        }
        if end == self.hops.len() {
            if let Some(h) = self.hops.len().checked_sub(1) {
                for (i, share) in shares[h].iter().enumerate() {
                    if let Some(a) = answers(h, i) {
                        links.push((a, address, *share));
                    }
                }
            }
            hops.push(PathHop {
                ttl: self.hops.len() as u8 + 1,
                responders: vec![(address, 1.0)],
                per_packet: false,
                select: Select::Flow,
            });
        }
        PathTruth {
            target: address,
            hops,
            links,
        }
    }
}

/// What a multipath trace of one target should find: every responder at each TTL and every
/// link between consecutive TTLs.
#[derive(Debug, Clone, PartialEq)]
pub struct PathTruth {
    /// The destination.
    pub target: IpAddr,
    /// TTL 1 to the end of the path (the destination, or the router answering unreachable).
    pub hops: Vec<PathHop>,
    /// (from at TTL n, to at TTL n + 1, share of flows taking it).
    pub links: Vec<(IpAddr, IpAddr, f64)>,
}

/// One TTL of a `PathTruth`.
#[derive(Debug, Clone, PartialEq)]
pub struct PathHop {
    /// The TTL.
    pub ttl: u8,
    /// Who answers here, with the share of flows (per packet: of probes) reaching each.
    pub responders: Vec<(IpAddr, f64)>,
    /// Whether one flow can get answers from more than one responder here.
    pub per_packet: bool,
    /// How the previous hop's routers choose among this hop's (unless a router says
    /// otherwise for itself).
    pub select: Select,
}

impl Select {
    /// Its name in scenario files.
    pub fn name(self) -> &'static str {
        match self {
            Select::Flow => "flow",
            Select::FirstFour => "first-four",
            Select::Packet => "packet",
        }
    }
}

impl PathTruth {
    /// One JSON line (no newline), the format `mtrsim --ground-truth` prints.
    pub fn to_json(&self) -> String {
        let list = |items: &mut dyn Iterator<Item = String>| items.collect::<Vec<_>>().join(",");
        let mut line = format!(r#"{{"target":"{}","hops":["#, self.target);
        for (i, hop) in self.hops.iter().enumerate() {
            let _ = write!(
                line,
                r#"{}{{"ttl":{},"responders":[{}],"per_packet":{},"select":"{}","shares":[{}]}}"#,
                if i > 0 { "," } else { "" },
                hop.ttl,
                list(&mut hop.responders.iter().map(|(a, _)| format!(r#""{a}""#))),
                hop.per_packet,
                hop.select.name(),
                list(&mut hop.responders.iter().map(|(_, p)| round(*p))),
            );
        }
        let _ = write!(
            line,
            r#"],"links":[{}],"link_shares":[{}]}}"#,
            list(
                &mut self
                    .links
                    .iter()
                    .map(|(a, b, _)| format!(r#"["{a}","{b}"]"#))
            ),
            list(&mut self.links.iter().map(|(_, _, p)| round(*p))),
        );
        line
    }
}

/// A share with 6 decimals, as a JSON number.
fn round(p: f64) -> String {
    format!("{}", (p * 1e6).round() / 1e6)
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};
    use std::net::Ipv4Addr;
    use std::time::Instant;

    use super::*;
    use crate::sim::packet::{Probe, checksum};
    use crate::sim::responder::Responder;
    use crate::sim::scenario::Scenario;

    /// An IPv4 probe from 198.18.0.1 to `dst` with `ttl`, protocol and transport bytes.
    fn ipv4(dst: IpAddr, ttl: u8, protocol: u8, transport: &[u8]) -> Vec<u8> {
        let IpAddr::V4(dst) = dst else {
            panic!("{dst}")
        };
        let mut p = vec![0u8; 20];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&(20 + transport.len() as u16).to_be_bytes());
        p[8] = ttl;
        p[9] = protocol;
        p[12..16].copy_from_slice(&Ipv4Addr::new(198, 18, 0, 1).octets());
        p[16..20].copy_from_slice(&dst.octets());
        let sum = checksum(&[&p]);
        p[10..12].copy_from_slice(&sum.to_be_bytes());
        p.extend_from_slice(transport);
        p
    }

    /// An IPv6 probe from 2001:db8::1 to `dst`.
    fn ipv6(dst: IpAddr, ttl: u8, protocol: u8, transport: &[u8]) -> Vec<u8> {
        let IpAddr::V6(dst) = dst else {
            panic!("{dst}")
        };
        let mut p = vec![0x60, 0, 0, 0];
        p.extend_from_slice(&(transport.len() as u16).to_be_bytes());
        p.extend_from_slice(&[protocol, ttl]);
        p.extend_from_slice(
            &"2001:db8::1"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
        );
        p.extend_from_slice(&dst.octets());
        p.extend_from_slice(transport);
        p
    }

    /// ICMP echo request `seq` (its checksum changes with it, as mtr-packet's do).
    fn echo(seq: u16) -> Vec<u8> {
        let mut icmp = vec![8, 0, 0, 0, 0x12, 0x34];
        icmp.extend_from_slice(&seq.to_be_bytes());
        icmp.extend_from_slice(&[0xaa; 8]);
        let sum = checksum(&[&icmp]);
        icmp[2..4].copy_from_slice(&sum.to_be_bytes());
        icmp
    }

    /// UDP from `src_port` to `dst_port`, with `check` as the checksum and payload (mtr-packet
    /// keeps the ports of a fixed flow and varies the checksum).
    fn udp(src_port: u16, dst_port: u16, check: u16) -> Vec<u8> {
        let mut u = src_port.to_be_bytes().to_vec();
        u.extend_from_slice(&dst_port.to_be_bytes());
        u.extend_from_slice(&12u16.to_be_bytes());
        u.extend_from_slice(&check.to_be_bytes());
        u.extend_from_slice(&check.to_be_bytes());
        u.extend_from_slice(&[0, 0]);
        u
    }

    /// A TCP SYN from `src_port` to port 80 with sequence `seq`.
    fn tcp(src_port: u16, seq: u32) -> Vec<u8> {
        let mut t = src_port.to_be_bytes().to_vec();
        t.extend_from_slice(&80u16.to_be_bytes());
        t.extend_from_slice(&seq.to_be_bytes());
        t.extend_from_slice(&[0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
        t
    }

    fn responder(text: &str) -> Responder {
        Responder::new(Scenario::parse(text).unwrap())
    }

    /// The answer's source and its bytes.
    fn ask(r: &mut Responder, packet: &[u8]) -> Option<(IpAddr, Vec<u8>)> {
        let (_, answer) = r.answer(packet, Instant::now())?;
        let src = Probe::parse(&answer)?.src;
        Some((src, answer))
    }

    fn from(r: &mut Responder, packet: &[u8]) -> IpAddr {
        ask(r, packet).unwrap().0
    }

    fn a(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    const MESH: &str = r#"
        seed = 1
        [[targets]]
        address = "198.18.50.1"
        [[targets.hops]]
        responders = ["198.18.50.11"]
        [[targets.hops]]
        responders = ["198.18.50.21", "198.18.50.22", "198.18.50.23", "198.18.50.24"]
        [[targets.hops]]
        responders = ["198.18.50.31", "198.18.50.32"]
    "#;

    #[test]
    fn per_router_seeds_form_the_full_mesh_after_a_4_way_hop() {
        let mut r = responder(MESH);
        let dst = a("198.18.50.1");
        let mut links = HashSet::new();
        for port in 1000..1400 {
            let probe = |ttl| ipv4(dst, ttl, 17, &udp(port, 33434, 0));
            let pair = (from(&mut r, &probe(2)), from(&mut r, &probe(3)));
            // One flow, one path.
            assert_eq!(pair, (from(&mut r, &probe(2)), from(&mut r, &probe(3))));
            links.insert(pair);
        }
        // With one hash for every router, each TTL 2 router would reach only one of TTL 3's.
        assert_eq!(links.len(), 8, "{links:?}");
        let truth = Scenario::parse(MESH).unwrap().path_truths();
        let want: HashSet<_> = truth[0].links[4..12].iter().map(|l| (l.0, l.1)).collect();
        assert_eq!(links, want);
    }

    /// The `i`-th probe of a series.
    type MakeProbe = dyn Fn(u16) -> Vec<u8>;

    /// How many responders answer at TTL 2 of a 4-way hop balanced by `select`, over 64
    /// probes made by `probe(i)`.
    fn spread(select: &str, probe: &MakeProbe) -> usize {
        let text = MESH.replacen(
            r#"responders = ["198.18.50.21""#,
            &format!("select = \"{select}\"\n responders = [\"198.18.50.21\""),
            1,
        );
        let mut r = responder(&text);
        (0..64)
            .map(|i| from(&mut r, &probe(i)))
            .collect::<HashSet<_>>()
            .len()
    }

    #[test]
    fn each_balancer_hashes_its_own_fields() {
        let dst = a("198.18.50.1");
        let icmp_seq = move |i: u16| ipv4(dst, 2, 1, &echo(i));
        let icmp_same = move |_| ipv4(dst, 2, 1, &echo(7));
        let udp_ports = move |i: u16| ipv4(dst, 2, 17, &udp(1000 + i, 33434, 0));
        let udp_fixed = move |i: u16| ipv4(dst, 2, 17, &udp(1000, 33434, i));
        let tcp_ports = move |i: u16| ipv4(dst, 2, 6, &tcp(1000 + i, 5));
        let tcp_fixed = move |i: u16| ipv4(dst, 2, 6, &tcp(1000, u32::from(i)));
        // (probes, spread by the 5-tuple, by the first four bytes, per packet); 64 draws
        // over 4 ways miss one with probability below 4 * 0.75^64 = 4e-8.
        let cases: [(&str, &MakeProbe, bool, bool); 6] = [
            ("ICMP, sequence changing", &icmp_seq, false, true),
            ("ICMP, one packet", &icmp_same, false, false),
            ("UDP, ports changing", &udp_ports, true, true),
            ("UDP, ports fixed", &udp_fixed, false, false),
            ("TCP, ports changing", &tcp_ports, true, true),
            ("TCP, ports fixed", &tcp_fixed, false, false),
        ];
        for (what, probe, by_flow, by_head) in cases {
            let ways = |spreads: bool| if spreads { 4 } else { 1 };
            assert_eq!(spread("flow", probe), ways(by_flow), "5-tuple, {what}");
            assert_eq!(
                spread("first-four", probe),
                ways(by_head),
                "first four, {what}"
            );
            assert_eq!(spread("packet", probe), 4, "per packet, {what}");
        }
    }

    /// Fails unless `hits` of `n` is within 4.4 standard deviations of `n * p` (1e-5).
    fn assert_binomial(what: &str, hits: usize, n: usize, p: f64) {
        let sd = (n as f64 * p * (1.0 - p)).sqrt();
        let off = (hits as f64 - n as f64 * p).abs();
        assert!(off <= 4.4 * sd, "{what}: {hits} of {n}, expected {p}");
    }

    #[test]
    fn weights_of_responders_and_links_hold() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scenarios/diamond-weights.toml"
        ))
        .unwrap();
        let truth = &Scenario::parse(&text).unwrap().path_truths()[0];
        let mut r = responder(&text);
        let dst = truth.target;
        let n = 8000;
        let mut at2: HashMap<IpAddr, usize> = HashMap::new();
        let mut links: HashMap<(IpAddr, IpAddr), usize> = HashMap::new();
        for i in 0..n {
            let probe = |ttl| ipv4(dst, ttl, 17, &udp(20000 + i, 33434, 0));
            let (x, y) = (from(&mut r, &probe(2)), from(&mut r, &probe(3)));
            *at2.entry(x).or_default() += 1;
            *links.entry((x, y)).or_default() += 1;
        }
        let n = usize::from(n);
        for (address, share) in &truth.hops[1].responders {
            let hits = at2.get(address).copied().unwrap_or(0);
            assert_binomial(&address.to_string(), hits, n, *share);
        }
        assert_eq!(truth.hops[1].responders[2].1, 5.0 / 8.0);
        for (x, y, share) in &truth.links[3..7] {
            let hits = links.get(&(*x, *y)).copied().unwrap_or(0);
            assert_binomial(&format!("{x} {y}"), hits, n, *share);
        }
        assert_eq!(truth.links[3].2, 1.0 / 8.0 / 4.0);
        assert_eq!(links.len(), 4);
    }

    /// The flows `paths` sends on the meshed 4x2 (`mtrproto::Flow`'s ports, from mtrsim's
    /// source address), taken in order as its stopping rule takes them, are independent
    /// draws: each link takes 1 in 8, one flow's router says nothing of the next flow's, and
    /// runs of flows miss a router as often as independent draws do.
    #[test]
    fn consecutive_flows_split_evenly_and_independently() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scenarios/diamond-meshed.toml"
        ))
        .unwrap();
        let mut r = responder(&text);
        let dst = a("198.18.44.1");
        let n: u16 = 4800;
        let path: Vec<(IpAddr, IpAddr)> = (0..n)
            .map(|id| {
                let flow = mtrproto::Flow::new(id).unwrap();
                let probe = |ttl| ipv4(dst, ttl, 17, &udp(flow.local_port(), flow.port(), 0));
                (from(&mut r, &probe(2)), from(&mut r, &probe(3)))
            })
            .collect();
        let count = |pairs: &mut dyn Iterator<Item = (IpAddr, IpAddr)>| {
            let mut counts: HashMap<(IpAddr, IpAddr), usize> = HashMap::new();
            for pair in pairs {
                *counts.entry(pair).or_default() += 1;
            }
            counts
        };
        let links = count(&mut path.iter().copied());
        assert_eq!(links.len(), 8, "{links:?}");
        for (link, hits) in &links {
            assert_binomial(&format!("link {link:?}"), *hits, n.into(), 1.0 / 8.0);
        }
        // Flow i's router at TTL 2, then flow i + 1's; and at TTL 3.
        let ttl2 = count(&mut path.windows(2).map(|w| (w[0].0, w[1].0)));
        let ttl3 = count(&mut path.windows(2).map(|w| (w[0].1, w[1].1)));
        assert_eq!((ttl2.len(), ttl3.len()), (16, 4));
        let pairs = usize::from(n) - 1;
        for (pair, hits) in &ttl2 {
            assert_binomial(&format!("TTL 2 {pair:?}"), *hits, pairs, 1.0 / 16.0);
        }
        for (pair, hits) in &ttl3 {
            assert_binomial(&format!("TTL 3 {pair:?}"), *hits, pairs, 1.0 / 4.0);
        }
        // MDA stops with one interface after 6 flows at 95% (TTL 3 then misses one of its
        // two 2 * 2^-6 of the time), and with 3 after 16 (TTL 2 misses one of its four
        // 4 * (3/4)^16 - 6 * (1/2)^16 + 4 * (1/4)^16 of the time): over disjoint runs.
        let one_of_two = path
            .chunks_exact(6)
            .filter(|run| run.iter().all(|p| p.1 == run[0].1))
            .count();
        assert_binomial("6 flows, one at TTL 3", one_of_two, 800, 1.0 / 32.0);
        let three_of_four = path
            .chunks_exact(16)
            .filter(|run| run.iter().map(|p| p.0).collect::<HashSet<_>>().len() < 4)
            .count();
        let p = 4.0 * 0.75f64.powi(16) - 6.0 * 0.5f64.powi(16) + 4.0 * 0.25f64.powi(16);
        assert_binomial("16 flows, under 4 at TTL 2", three_of_four, 300, p);
    }

    #[test]
    fn quotes_the_datagram_as_it_arrived_and_counts_ip_ids_per_router() {
        let text = r#"
            seed = 2
            [[targets]]
            address = "198.18.51.1"
            [[targets.hops]]
            responders = ["198.18.51.11"]
            [[targets.hops]]
            responders = ["198.18.51.21"]
            quoted_ttl = 0
            [[targets.hops]]
            responders = ["198.18.51.31"]
            [[targets]]
            address = "2001:db8:51::1"
            [[targets.hops]]
            responders = ["2001:db8:51::11"]
            [[targets.hops]]
            responders = ["2001:db8:51::21"]
        "#;
        let mut r = responder(text);
        let dst = a("198.18.51.1");
        let quoted = |answer: &[u8]| {
            let quote = &answer[28..48];
            assert_eq!(checksum(&[quote]), 0, "quoted header checksum");
            quote[8]
        };
        let id = |answer: &[u8]| {
            assert_eq!(checksum(&[&answer[..20]]), 0, "header checksum");
            u16::from_be_bytes([answer[4], answer[5]])
        };
        let ask_ttl = |r: &mut Responder, ttl| ask(r, &ipv4(dst, ttl, 17, &udp(1, 2, 3))).unwrap();
        // Sent with TTL 1 and 3, each reaches its router with 1.
        let (first, one) = ask_ttl(&mut r, 1);
        let (third, three) = ask_ttl(&mut r, 3);
        assert_eq!((first, quoted(&one)), (a("198.18.51.11"), 1));
        assert_eq!((third, quoted(&three)), (a("198.18.51.31"), 1));
        // This router quotes it after its decrement.
        let (_, two) = ask_ttl(&mut r, 2);
        assert_eq!(quoted(&two), 0);
        // The destination gets what 3 routers left of TTL 10.
        let (dest, port) = ask_ttl(&mut r, 10);
        assert_eq!((dest, port[20], quoted(&port)), (dst, 3, 7));
        // Each router counts its own answers.
        let ids: Vec<u16> = (0..3).map(|_| id(&ask_ttl(&mut r, 1).1)).collect();
        let other = id(&ask_ttl(&mut r, 3).1);
        assert_eq!(ids[0], id(&one).wrapping_add(1));
        assert_eq!(
            ids,
            [ids[0], ids[0].wrapping_add(1), ids[0].wrapping_add(2)]
        );
        assert_eq!(other, id(&three).wrapping_add(1));
        assert_ne!(id(&one), id(&three), "routers start their counts apart");
        // IPv6: hop limit quoted as it arrived.
        let v6 = a("2001:db8:51::1");
        let (router, answer) = ask(&mut r, &ipv6(v6, 2, 17, &udp(1, 2, 3))).unwrap();
        assert_eq!(
            (router, answer[40], answer[48 + 7]),
            (a("2001:db8:51::21"), 3, 1)
        );
        let (_, answer) = ask(&mut r, &ipv6(v6, 9, 17, &udp(1, 2, 3))).unwrap();
        assert_eq!((answer[40], answer[48 + 7]), (1, 7));
    }

    /// Every diamond scenario: the addresses and links that flows find through the
    /// responder are exactly its ground truth's, and per-packet hops are the ones marked.
    #[test]
    fn diamonds_answer_as_their_ground_truth_says() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios");
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.file_name()
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .starts_with("diamond-")
            })
            .collect();
        files.sort();
        assert!(files.len() >= 8, "{files:?}");
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            let scenario = Scenario::parse(&text).unwrap();
            for truth in scenario.path_truths() {
                let what = format!("{} {}", file.display(), truth.target);
                let mut r = responder(&text);
                let hops = truth.hops.len() as u8;
                let mut seen: Vec<HashSet<IpAddr>> = vec![HashSet::new(); hops.into()];
                let mut links = HashSet::new();
                let mut per_packet = vec![false; hops.into()];
                for flow in 0..3000 {
                    let probe = |ttl| {
                        let udp = udp(10000 + flow, 33434, 0);
                        match truth.target {
                            IpAddr::V4(_) => ipv4(truth.target, ttl, 17, &udp),
                            IpAddr::V6(_) => ipv6(truth.target, ttl, 17, &udp),
                        }
                    };
                    let path: Vec<IpAddr> = (1..=hops).map(|t| from(&mut r, &probe(t))).collect();
                    for (t, addr) in path.iter().enumerate() {
                        seen[t].insert(*addr);
                        let again = from(&mut r, &probe(t as u8 + 1));
                        per_packet[t] |= again != *addr;
                    }
                    links.extend(path.windows(2).map(|w| (w[0], w[1])));
                }
                for (t, hop) in truth.hops.iter().enumerate() {
                    let want: HashSet<IpAddr> = hop.responders.iter().map(|x| x.0).collect();
                    assert_eq!(seen[t], want, "{what} TTL {}", t + 1);
                    assert_eq!(per_packet[t], hop.per_packet, "{what} TTL {}", t + 1);
                    let total: f64 = hop.responders.iter().map(|x| x.1).sum();
                    assert!((total - 1.0).abs() < 1e-9, "{what}");
                }
                let want: HashSet<_> = truth.links.iter().map(|l| (l.0, l.1)).collect();
                if truth.hops.iter().any(|h| h.per_packet) {
                    // A path stitched from several packets may hold links no packet took.
                    assert!(want.is_subset(&links), "{what}");
                } else {
                    assert_eq!(links, want, "{what}");
                }
            }
        }
    }

    #[test]
    fn bad_topologies_are_refused() {
        let base = r#"
            [[targets]]
            address = "198.18.52.1"
            [[targets.hops]]
            responders = ["198.18.52.11", "198.18.52.12"]
            [[targets.hops]]
            responders = ["198.18.52.21", "198.18.52.22"]
        "#;
        assert!(Scenario::parse(base).is_ok());
        for (links, error) in [
            (
                r#"[["198.18.52.11", "198.18.52.21"], ["198.18.52.12", "198.18.52.9"]]"#,
                "link to",
            ),
            (
                r#"[["198.18.52.11", "198.18.52.21"], ["198.18.52.12", "198.18.52.21"]]"#,
                "no link reaches",
            ),
            (
                r#"[["198.18.52.11", "198.18.52.21"], ["198.18.52.11", "198.18.52.22"]]"#,
                "no link from",
            ),
            (
                r#"[{ from = "198.18.52.11", to = "198.18.52.21", weight = 0 }]"#,
                "weight 0",
            ),
        ] {
            let text = format!("{base}links = {links}\n");
            let e = Scenario::parse(&text).unwrap_err();
            assert!(e.contains(error), "{e}");
        }
        let first = base.replacen(
            "responders = [\"198.18.52.11\"",
            "links = []\nresponders = [\"198.18.52.11\"",
            1,
        );
        assert!(Scenario::parse(&first).unwrap_err().contains("first hop"));
        let twice = base.replace("\"198.18.52.12\"", "\"198.18.52.11\"");
        assert!(Scenario::parse(&twice).unwrap_err().contains("twice"));
        let ttl = format!("{base}quoted_ttl = 2\n");
        assert!(Scenario::parse(&ttl).unwrap_err().contains("quoted_ttl"));
    }
}
