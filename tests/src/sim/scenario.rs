//! Scenario files: the simulated network's ground truth, in TOML.
//!
//! See `tests/scenarios/README.md` for the format.

use std::net::IpAddr;
use std::time::Duration;

use mtrproto::Mpls;
use serde::Deserialize;

use super::internet::{Internet, InternetSpec};
use super::packet::IcmpError;
use super::topology::{Graph, PathTruth};

/// A whole scenario.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Seeds every random choice (loss, jitter, per-packet ECMP), so runs repeat.
    #[serde(default)]
    pub seed: u64,
    /// The prober's IPv4 address, on the TUN device.
    #[serde(default = "default_source4")]
    pub source4: IpAddr,
    /// The prober's IPv6 address, on the TUN device.
    #[serde(default = "default_source6")]
    pub source6: IpAddr,
    /// Prefixes routed into the TUN device.
    #[serde(default = "default_routes")]
    pub routes: Vec<String>,
    /// The targets and their paths.
    #[serde(default)]
    pub targets: Vec<Target>,
    /// A generated internet's description (`[internet]`).
    #[serde(default, rename = "internet")]
    pub internet_spec: Option<InternetSpec>,
    /// The internet generated from it, by `parse`.
    #[serde(skip)]
    pub internet: Option<Internet>,
    /// Each target's routers as a graph, made by `parse`.
    #[serde(skip)]
    pub graphs: Vec<Graph>,
}

fn default_source4() -> IpAddr {
    [198, 18, 0, 1].into()
}

fn default_source6() -> IpAddr {
    "2001:db8::1".parse().unwrap_or(IpAddr::from([0u8; 16]))
}

fn default_routes() -> Vec<String> {
    vec!["198.18.0.0/15".into(), "2001:db8::/32".into()]
}

/// A destination and the hops before it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// The destination address.
    pub address: IpAddr,
    /// This many targets with consecutive addresses from `address`, sharing the path.
    #[serde(default = "one")]
    pub count: u32,
    /// The routers, in order: TTL 1 reaches the first.
    #[serde(default)]
    pub hops: Vec<Hop>,
    /// How the destination answers.
    #[serde(default)]
    pub destination: Destination,
}

fn one() -> u32 {
    1
}

fn one_u8() -> u8 {
    1
}

/// One router on a path.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hop {
    /// Who answers: one address, or several with weights.
    #[serde(default)]
    pub responders: Vec<Responder>,
    /// How each router of the previous hop (for the first hop, the prober's side) chooses
    /// among its successors here: by a hash of the 5-tuple, of the first four bytes of the
    /// transport header, or per packet; weighted.
    #[serde(default)]
    pub select: Select,
    /// Which routers of the previous hop lead to which of this hop's (default: every one to
    /// every one); not allowed on the first hop.
    pub links: Option<Vec<Link>>,
    /// The TTL its ICMP errors quote for a probe that expired here: 1, the datagram as it
    /// arrived (RFC 1812 4.3.2.3), or 0, some routers' quote after the decrement.
    #[serde(default = "one_u8")]
    pub quoted_ttl: u8,
    /// Answers nothing.
    #[serde(default)]
    pub silent: bool,
    /// Answers with this destination unreachable instead of time exceeded.
    pub unreachable: Option<Unreachable>,
    /// Delay and loss of its answers.
    #[serde(flatten)]
    pub timing: Timing,
    /// Answers at most this many probes per second (0: no limit).
    #[serde(default)]
    pub rate_limit: u32,
    /// MPLS label stack entries `[label, traffic_class, bottom_of_stack, ttl]` quoted in
    /// time exceeded, 1 to 8.
    #[serde(default)]
    pub mpls: Vec<[u32; 4]>,
}

/// A responder of a hop.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Responder {
    /// Just an address, weight 1.
    Address(IpAddr),
    /// An address, its weight, and how it balances.
    Weighted {
        /// The address.
        address: IpAddr,
        /// Its share, relative to the others' (default 1).
        #[serde(default = "one")]
        weight: u32,
        /// How this router chooses among its successors in the next hop, overriding that
        /// hop's `select`.
        select: Option<Select>,
    },
}

impl Responder {
    /// Its address.
    pub fn address(&self) -> IpAddr {
        match self {
            Responder::Address(a) | Responder::Weighted { address: a, .. } => *a,
        }
    }

    /// Its weight.
    pub fn weight(&self) -> u32 {
        match self {
            Responder::Address(_) => 1,
            Responder::Weighted { weight, .. } => *weight,
        }
    }

    /// How it chooses among its successors, if it overrides the next hop's `select`.
    pub fn select(&self) -> Option<Select> {
        match self {
            Responder::Address(_) => None,
            Responder::Weighted { select, .. } => *select,
        }
    }
}

/// A link from a router of the previous hop to one of this hop's.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Link {
    /// `[from, to]`: weighted as `to` is among the hop's responders.
    Pair([IpAddr; 2]),
    /// `{ from, to, weight }`: its own weight among `from`'s links.
    Weighted {
        /// The previous hop's router.
        from: IpAddr,
        /// This hop's router.
        to: IpAddr,
        /// Its share of `from`'s flows, relative to `from`'s other links.
        weight: u32,
    },
}

/// How a balancing router chooses among its successors (`tests/scenarios/README.md`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Select {
    /// By a hash of the 5-tuple: addresses, protocol and, for UDP and TCP, the ports (ICMP
    /// probes of one source and destination all take one path).
    #[default]
    Flow,
    /// By a hash of the addresses, the protocol and the transport header's first four
    /// bytes (ICMP: type, code, checksum, so classic ICMP probes change path; UDP and TCP:
    /// the ports).
    FirstFour,
    /// At random for every packet.
    Packet,
}

/// Destination unreachable codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Unreachable {
    /// Network unreachable.
    Net,
    /// Host (IPv6: address) unreachable.
    Host,
    /// Administratively prohibited.
    Prohibited,
}

impl From<Unreachable> for IcmpError {
    fn from(u: Unreachable) -> IcmpError {
        match u {
            Unreachable::Net => IcmpError::NetUnreachable,
            Unreachable::Host => IcmpError::HostUnreachable,
            Unreachable::Prohibited => IcmpError::Prohibited,
        }
    }
}

/// Delay and loss.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timing {
    /// Fixed delay before answering, ms.
    #[serde(default)]
    pub delay_ms: f64,
    /// Extra delay, uniform in 0..jitter_ms.
    #[serde(default)]
    pub jitter_ms: f64,
    /// Probability of no answer, 0..=1.
    #[serde(default)]
    pub loss: f64,
}

/// How the destination answers each protocol.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Destination {
    /// Delay and loss of its answers.
    #[serde(flatten)]
    pub timing: Timing,
    /// Answer ICMP echo with this unreachable instead of an echo reply.
    pub icmp_unreachable: Option<Unreachable>,
    /// TCP: answer SYN with SYN-ACK (open port) instead of RST.
    #[serde(default)]
    pub tcp_open: bool,
}

impl Scenario {
    /// Reads and checks a scenario file's text.
    pub fn parse(text: &str) -> Result<Scenario, String> {
        let mut scenario: Scenario = toml::from_str(text).map_err(|e| e.to_string())?;
        if let Some(spec) = &scenario.internet_spec {
            let sources = [scenario.source4, scenario.source6];
            scenario.internet = Some(Internet::generate(spec, scenario.seed, &sources)?);
        }
        for (i, target) in scenario.targets.iter().enumerate() {
            for (ttl, hop) in (1..).zip(&target.hops) {
                let at = format!("target {i} hop {ttl}");
                if hop.responders.is_empty() && !hop.silent {
                    return Err(format!("{at}: no responder and not silent"));
                }
                if hop.mpls.len() > mtrproto::MplsStack::MAX_ENTRIES {
                    let max = mtrproto::MplsStack::MAX_ENTRIES;
                    return Err(format!("{at}: more than {max} MPLS entries"));
                }
                for m in &hop.mpls {
                    mpls(*m).map_err(|e| format!("{at}: {e}"))?;
                }
                if !(0.0..=1.0).contains(&hop.timing.loss) {
                    return Err(format!("{at}: loss must be within 0..=1"));
                }
                if hop.quoted_ttl > 1 {
                    return Err(format!("{at}: quoted_ttl must be 0 or 1"));
                }
                if ttl == 1 && hop.links.is_some() {
                    return Err(format!("{at}: the first hop has no links"));
                }
            }
            let graph =
                Graph::new(target, scenario.seed).map_err(|e| format!("target {i}: {e}"))?;
            scenario.graphs.push(graph);
        }
        Ok(scenario)
    }

    /// The multipath ground truth of every target address (`count` expanded), in order.
    pub fn path_truths(&self) -> Vec<PathTruth> {
        self.targets
            .iter()
            .zip(&self.graphs)
            .flat_map(|(t, g)| (0..t.count).map(move |i| g.truth(t, offset(t.address, i))))
            .collect()
    }

    /// Every target address, `count` expanded.
    pub fn target_addresses(&self) -> Vec<IpAddr> {
        self.targets
            .iter()
            .flat_map(|t| (0..t.count).map(move |i| offset(t.address, i)))
            .collect()
    }
}

/// `addr + n`.
pub fn offset(addr: IpAddr, n: u32) -> IpAddr {
    match addr {
        IpAddr::V4(a) => IpAddr::V4((u32::from(a).wrapping_add(n)).into()),
        IpAddr::V6(a) => IpAddr::V6((u128::from(a).wrapping_add(n.into())).into()),
    }
}

/// An MPLS entry from its four scenario values.
pub fn mpls([label, tc, s, ttl]: [u32; 4]) -> Result<Mpls, String> {
    let small =
        |v: u32, what: &str| u8::try_from(v).map_err(|_| format!("{what} {v} out of range"));
    Mpls::new(
        label,
        small(tc, "traffic class")?,
        s == 1,
        small(ttl, "ttl")?,
    )
    .map_err(|e| e.to_string())
}

impl Timing {
    /// The delay for one answer, given a uniform random number in 0..1.
    pub fn delay(&self, uniform: f64) -> Duration {
        Duration::from_secs_f64(((self.delay_ms + self.jitter_ms * uniform) / 1000.0).max(0.0))
    }
}
