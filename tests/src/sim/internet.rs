//! A generated internet: many targets behind a seeded tree of shared routers (core,
//! transit, edge chains), and each target's ground truth.
//!
//! One record is kept per router and per chain, none per target: a target's path and
//! properties are computed from its index when asked, so 100,000 targets cost nothing more
//! than 10. See `tests/scenarios/README.md` for the keys and the ground-truth format.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use serde::Deserialize;

use super::is_simulated;

/// The most targets an internet may hold.
pub const MAX_TARGETS: u32 = 100_000;

/// The `[internet]` table of a scenario.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InternetSpec {
    /// How many destinations.
    pub targets: u32,
    /// The first IPv4 target; the others follow.
    pub first: Option<Ipv4Addr>,
    /// The first IPv6 target; the others follow.
    pub first6: Option<Ipv6Addr>,
    /// Router `k`'s IPv4 address is this plus `k`.
    #[serde(default = "default_routers")]
    pub routers: Ipv4Addr,
    /// Router `k`'s IPv6 address is this plus `k`.
    #[serde(default = "default_routers6")]
    pub routers6: Ipv6Addr,
    /// Core chains (default: 4, at most `transits`).
    pub cores: Option<u32>,
    /// Transit chains (default: 32, at most `edges`).
    pub transits: Option<u32>,
    /// Edge chains (default: 400, at most `targets`).
    pub edges: Option<u32>,
    /// Routers before a destination, least and most, drawn per edge.
    #[serde(default = "default_hops")]
    pub hops: [u32; 2],
    /// Each router's and destination's own delay, least and most, ms.
    #[serde(default = "default_link_delay")]
    pub link_delay_ms: [f64; 2],
    /// Extra delay of each answer, uniform in 0..jitter_ms, drawn per answer.
    #[serde(default)]
    pub jitter_ms: f64,
    /// Fraction of routers that answer nothing.
    #[serde(default)]
    pub silent_routers: f64,
    /// Fraction of destinations that answer nothing.
    #[serde(default)]
    pub silent_targets: f64,
    /// Fraction of routers that lose `loss` of their answers.
    #[serde(default)]
    pub lossy_routers: f64,
    /// Probability that a lossy router loses an answer.
    #[serde(default = "default_loss")]
    pub loss: f64,
    /// Fraction of routers answering at most `rate_limit` per second.
    #[serde(default)]
    pub rate_limited_routers: f64,
    /// Answers per second of a rate-limited router.
    #[serde(default = "default_rate_limit")]
    pub rate_limit: u32,
    /// Fraction of targets whose last router answers host unreachable.
    #[serde(default)]
    pub unreachable_targets: f64,
    /// Fraction of routers that are a pair of addresses, chosen per flow.
    #[serde(default)]
    pub ecmp_routers: f64,
}

fn default_routers() -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 1, 0)
}

fn default_routers6() -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0)
}

fn default_hops() -> [u32; 2] {
    [6, 16]
}

fn default_link_delay() -> [f64; 2] {
    [0.2, 3.0]
}

fn default_loss() -> f64 {
    0.2
}

fn default_rate_limit() -> u32 {
    100
}

/// What a router does besides answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Answers every probe.
    Answers,
    /// Answers nothing.
    Silent,
    /// Loses `loss` of its answers.
    Lossy,
    /// Answers at most `rate_limit` probes per second.
    RateLimited,
}

/// One router: the generator's only record per node of the tree.
#[derive(Debug, Clone, Copy)]
pub struct Router {
    /// Delay of its answers: the sum of the link delays from the root, µs.
    pub delay_us: u32,
    /// Silent, lossy, rate-limited, or none of these.
    pub behaviour: Behaviour,
    /// For an ECMP router, the number of its second address after the last router's.
    pub twin: Option<u32>,
}

/// A chain of consecutive routers under a parent chain.
#[derive(Debug, Clone, Copy)]
struct Chain {
    start: u32,
    len: u32,
    parent: u32,
}

/// What a probe to a target with a given TTL reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// Router `k`, which answers time exceeded.
    Router(u32),
    /// Router `k`, which answers host unreachable (the path ends there).
    Unreachable(u32),
    /// The destination.
    Destination,
}

/// What a target itself does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    /// Answers probes.
    Answers,
    /// Answers nothing.
    Silent,
    /// Its last router answers host unreachable.
    Unreachable,
}

/// A generated internet.
#[derive(Debug, Clone)]
pub struct Internet {
    spec: InternetSpec,
    seed: u64,
    routers: Vec<Router>,
    twins: u32,
    cores: Vec<Chain>,
    transits: Vec<Chain>,
    edges: Vec<Chain>,
}

// Streams of the seeded hash, one per kind of draw, so draws do not correlate.
const CORE_LEN: u64 = 1;
const TRANSIT_LEN: u64 = 2;
const PATH_LEN: u64 = 3;
const TRANSIT_PARENT: u64 = 4;
const EDGE_PARENT: u64 = 5;
const LINK_DELAY: u64 = 6;
const BEHAVIOUR: u64 = 7;
const ECMP: u64 = 8;
const TARGET_KIND: u64 = 9;
const TARGET_DELAY: u64 = 10;
const ROUTER_SEED: u64 = 11;

/// A seeded hash of (seed, stream, index): every draw is a pure function of these.
fn hash(seed: u64, stream: u64, index: u64) -> u64 {
    crate::mix64(
        seed.wrapping_add(stream.wrapping_mul(0x9e37_79b9_7f4a_7c15))
            .wrapping_add(index.wrapping_mul(0xd1b5_4a32_d192_ed03)),
    )
}

/// Uniform in 0..1.
fn unit(seed: u64, stream: u64, index: u64) -> f64 {
    (hash(seed, stream, index) >> 11) as f64 / (1u64 << 53) as f64
}

/// Uniform in `low..=high`.
fn between(seed: u64, stream: u64, index: u64, low: u32, high: u32) -> u32 {
    let span = u64::from(high.saturating_sub(low)) + 1;
    low + (hash(seed, stream, index) % span) as u32
}

fn fraction(name: &str, value: f64) -> Result<(), String> {
    if (0.0..=1.0).contains(&value) {
        Ok(())
    } else {
        Err(format!("internet: {name} must be within 0..=1"))
    }
}

impl Internet {
    /// Generates the internet `spec` describes, checking it; `sources` are the prober's
    /// addresses, which no generated address may take.
    pub fn generate(
        spec: &InternetSpec,
        seed: u64,
        sources: &[IpAddr],
    ) -> Result<Internet, String> {
        let targets = spec.targets;
        if targets == 0 || targets > MAX_TARGETS {
            return Err(format!("internet: targets must be 1 to {MAX_TARGETS}"));
        }
        if spec.first.is_none() && spec.first6.is_none() {
            return Err("internet: needs first, first6 or both".into());
        }
        let edges = spec.edges.unwrap_or(400.min(targets));
        let transits = spec.transits.unwrap_or(32.min(edges));
        let cores = spec.cores.unwrap_or(4.min(transits));
        if !(1 <= cores && cores <= transits && transits <= edges && edges <= targets) {
            return Err("internet: needs 1 <= cores <= transits <= edges <= targets".into());
        }
        let [min, max] = spec.hops;
        if min < 3 || min > max || max > 250 {
            return Err("internet: hops must be [min, max] with 3 <= min <= max <= 250".into());
        }
        let [delay_low, delay_high] = spec.link_delay_ms;
        if !(0.0 <= delay_low && delay_low <= delay_high && delay_high <= 1000.0) {
            return Err(
                "internet: link_delay_ms must be [low, high], 0 <= low <= high <= 1000".into(),
            );
        }
        if !(0.0..=1000.0).contains(&spec.jitter_ms) {
            return Err("internet: jitter_ms must be within 0..=1000".into());
        }
        for (name, value) in [
            ("silent_routers", spec.silent_routers),
            ("silent_targets", spec.silent_targets),
            ("lossy_routers", spec.lossy_routers),
            ("loss", spec.loss),
            ("rate_limited_routers", spec.rate_limited_routers),
            ("unreachable_targets", spec.unreachable_targets),
            ("ecmp_routers", spec.ecmp_routers),
        ] {
            fraction(name, value)?;
        }
        if spec.silent_routers + spec.lossy_routers + spec.rate_limited_routers > 1.0 {
            return Err("internet: silent, lossy and rate-limited routers exceed 1".into());
        }
        if spec.silent_targets + spec.unreachable_targets > 1.0 {
            return Err("internet: silent and unreachable targets exceed 1".into());
        }

        let mut internet = Internet {
            spec: spec.clone(),
            seed,
            routers: Vec::new(),
            twins: 0,
            cores: Vec::new(),
            transits: Vec::new(),
            edges: Vec::new(),
        };
        // Chains are numbered level by level, so that a router's chain parent is generated
        // (and its delay known) before it.
        for c in 0..cores {
            let len = between(seed, CORE_LEN, c.into(), 1, ((min - 1) / 2).max(1));
            internet.chain(Level::Core, len, u32::MAX);
        }
        for t in 0..transits {
            // Every core gets a transit; the rest are drawn.
            let parent = if t < cores {
                t
            } else {
                between(seed, TRANSIT_PARENT, t.into(), 0, cores - 1)
            };
            let room = min - 1 - internet.cores[parent as usize].len;
            let len = between(seed, TRANSIT_LEN, t.into(), 1, room);
            internet.chain(Level::Transit, len, parent);
        }
        for e in 0..edges {
            let parent = if e < transits {
                e
            } else {
                between(seed, EDGE_PARENT, e.into(), 0, transits - 1)
            };
            let transit = internet.transits[parent as usize];
            let above = internet.cores[transit.parent as usize].len + transit.len;
            let total = between(seed, PATH_LEN, e.into(), min, max);
            internet.chain(Level::Edge, total - above, parent);
        }
        internet.check_addresses(sources)?;
        Ok(internet)
    }

    fn chain(&mut self, level: Level, len: u32, parent: u32) {
        let start = self.routers.len() as u32;
        let mut delay_us = match level {
            Level::Core => 0,
            Level::Transit => self.last_delay(self.cores[parent as usize]),
            Level::Edge => self.last_delay(self.transits[parent as usize]),
        };
        for k in start..start + len {
            delay_us += self.link_delay_us(LINK_DELAY, k);
            let s = &self.spec;
            let u = unit(self.seed, BEHAVIOUR, k.into());
            let behaviour = if u < s.silent_routers {
                Behaviour::Silent
            } else if u < s.silent_routers + s.lossy_routers {
                Behaviour::Lossy
            } else if u < s.silent_routers + s.lossy_routers + s.rate_limited_routers {
                Behaviour::RateLimited
            } else {
                Behaviour::Answers
            };
            let twin = (unit(self.seed, ECMP, k.into()) < s.ecmp_routers).then(|| {
                self.twins += 1;
                self.twins - 1
            });
            self.routers.push(Router {
                delay_us,
                behaviour,
                twin,
            });
        }
        let chain = Chain { start, len, parent };
        match level {
            Level::Core => self.cores.push(chain),
            Level::Transit => self.transits.push(chain),
            Level::Edge => self.edges.push(chain),
        }
    }

    fn last_delay(&self, chain: Chain) -> u32 {
        self.routers[(chain.start + chain.len - 1) as usize].delay_us
    }

    fn link_delay_us(&self, stream: u64, index: u32) -> u32 {
        let [low, high] = self.spec.link_delay_ms;
        let ms = low + (high - low) * unit(self.seed, stream, index.into());
        (ms * 1000.0).round() as u32
    }

    /// Every generated address is simulated, and none overlaps another or a source.
    fn check_addresses(&self, sources: &[IpAddr]) -> Result<(), String> {
        let routers = self.routers.len() as u128 + u128::from(self.twins);
        let targets = u128::from(self.spec.targets);
        let mut ranges: Vec<(&str, IpAddr, u128)> = Vec::new();
        if let Some(first) = self.spec.first {
            ranges.push(("IPv4 targets", first.into(), targets));
            ranges.push(("IPv4 routers", self.spec.routers.into(), routers));
        }
        if let Some(first6) = self.spec.first6 {
            ranges.push(("IPv6 targets", first6.into(), targets));
            ranges.push(("IPv6 routers", self.spec.routers6.into(), routers));
        }
        for source in sources {
            ranges.push(("the source", *source, 1));
        }
        let span = |addr: IpAddr, n: u128| -> Option<(bool, u128, u128)> {
            let (v4, start) = match addr {
                IpAddr::V4(a) => (true, u128::from(u32::from(a))),
                IpAddr::V6(a) => (false, u128::from(a)),
            };
            let end = start.checked_add(n - 1)?;
            let last = if v4 {
                IpAddr::V4(Ipv4Addr::from(u32::try_from(end).ok()?))
            } else {
                IpAddr::V6(Ipv6Addr::from(end))
            };
            (is_simulated(addr) && is_simulated(last)).then_some((v4, start, end))
        };
        let mut spans = Vec::new();
        for (name, addr, n) in &ranges {
            let s = span(*addr, *n).ok_or_else(|| {
                format!("internet: {name} from {addr} leave 198.18.0.0/15 and 2001:db8::/32")
            })?;
            spans.push((*name, s));
        }
        for (i, (a, (a4, a0, a1))) in spans.iter().enumerate() {
            for (b, (b4, b0, b1)) in &spans[i + 1..] {
                if a4 == b4 && a0 <= b1 && b0 <= a1 {
                    return Err(format!("internet: {a} and {b} overlap"));
                }
            }
        }
        Ok(())
    }

    /// How many targets (per address family).
    pub fn targets(&self) -> u32 {
        self.spec.targets
    }

    /// The spec it was generated from.
    pub fn spec(&self) -> &InternetSpec {
        &self.spec
    }

    /// All routers, numbered as `Reach` and `router_address` number them.
    pub fn routers(&self) -> &[Router] {
        &self.routers
    }

    /// The index of the target at `addr`, if it is one.
    pub fn target_index(&self, addr: IpAddr) -> Option<u32> {
        let n = match (addr, self.spec.first, self.spec.first6) {
            (IpAddr::V4(a), Some(first), _) => {
                u128::from(u32::from(a)).checked_sub(u32::from(first).into())?
            }
            (IpAddr::V6(a), _, Some(first6)) => u128::from(a).checked_sub(u128::from(first6))?,
            _ => return None,
        };
        u32::try_from(n).ok().filter(|n| *n < self.spec.targets)
    }

    /// Target `index`'s addresses: IPv4, then IPv6, where configured.
    pub fn target_addresses(&self, index: u32) -> Vec<IpAddr> {
        let mut out = Vec::new();
        if let Some(first) = self.spec.first {
            out.push(IpAddr::V4(u32::from(first).wrapping_add(index).into()));
        }
        if let Some(first6) = self.spec.first6 {
            out.push(IpAddr::V6((u128::from(first6) + u128::from(index)).into()));
        }
        out
    }

    /// Router `k`'s address in `target`'s family (its second one with `twin`).
    pub fn router_address(&self, k: u32, twin: bool, target: IpAddr) -> IpAddr {
        let n = match (twin, self.routers[k as usize].twin) {
            (true, Some(t)) => self.routers.len() as u32 + t,
            _ => k,
        };
        match target {
            IpAddr::V4(_) => IpAddr::V4(u32::from(self.spec.routers).wrapping_add(n).into()),
            IpAddr::V6(_) => IpAddr::V6((u128::from(self.spec.routers6) + u128::from(n)).into()),
        }
    }

    /// The seed router `k` mixes into its flow hash (real routers seed theirs per device).
    pub fn router_seed(&self, k: u32) -> u64 {
        hash(self.seed, ROUTER_SEED, k.into())
    }

    /// The edge chain of target `index`: targets are split into consecutive blocks.
    fn edge_of(&self, index: u32) -> u32 {
        (u64::from(index) * self.edges.len() as u64 / u64::from(self.spec.targets)) as u32
    }

    /// The router numbers on target `index`'s path, TTL 1 first.
    pub fn path(&self, index: u32) -> impl Iterator<Item = u32> + '_ {
        let edge = self.edges[self.edge_of(index) as usize];
        let transit = self.transits[edge.parent as usize];
        let core = self.cores[transit.parent as usize];
        [core, transit, edge]
            .into_iter()
            .flat_map(|c| c.start..c.start + c.len)
    }

    /// How many routers are on target `index`'s path.
    pub fn path_len(&self, index: u32) -> u32 {
        let edge = self.edges[self.edge_of(index) as usize];
        let transit = self.transits[edge.parent as usize];
        self.cores[transit.parent as usize].len + transit.len + edge.len
    }

    /// What target `index` does.
    pub fn target_kind(&self, index: u32) -> TargetKind {
        let u = unit(self.seed, TARGET_KIND, index.into());
        if u < self.spec.unreachable_targets {
            TargetKind::Unreachable
        } else if u < self.spec.unreachable_targets + self.spec.silent_targets {
            TargetKind::Silent
        } else {
            TargetKind::Answers
        }
    }

    /// What a probe to target `index` with `ttl` (at least 1) reaches.
    pub fn reach(&self, index: u32, ttl: u8) -> Reach {
        let ttl = u32::from(ttl.max(1));
        let edge = self.edges[self.edge_of(index) as usize];
        let transit = self.transits[edge.parent as usize];
        let core = self.cores[transit.parent as usize];
        let len = core.len + transit.len + edge.len;
        if self.target_kind(index) == TargetKind::Unreachable && ttl >= len {
            return Reach::Unreachable(edge.start + edge.len - 1);
        }
        if ttl <= core.len {
            Reach::Router(core.start + ttl - 1)
        } else if ttl <= core.len + transit.len {
            Reach::Router(transit.start + ttl - core.len - 1)
        } else if ttl <= len {
            Reach::Router(edge.start + ttl - core.len - transit.len - 1)
        } else {
            Reach::Destination
        }
    }

    /// The delay of target `index`'s own answers.
    pub fn destination_delay(&self, index: u32) -> Duration {
        let last = self
            .path(index)
            .last()
            .map_or(0, |k| self.routers[k as usize].delay_us);
        Duration::from_micros(u64::from(last + self.link_delay_us(TARGET_DELAY, index)))
    }

    /// The extra delay of one answer, given a uniform random number in 0..1.
    pub fn jitter(&self, uniform: f64) -> Duration {
        Duration::from_secs_f64(self.spec.jitter_ms * uniform / 1000.0)
    }

    /// Router `k`'s answer delay.
    pub fn router_delay(&self, k: u32) -> Duration {
        Duration::from_micros(self.routers[k as usize].delay_us.into())
    }

    /// Target `address`'s ground truth; `None` if it is not a target.
    pub fn truth(&self, address: IpAddr) -> Option<TargetTruth> {
        let index = self.target_index(address)?;
        let kind = self.target_kind(index);
        let mut hops: Vec<HopTruth> = (1..)
            .zip(self.path(index))
            .map(|(ttl, k)| {
                let router = self.routers[k as usize];
                let responders = (router.behaviour != Behaviour::Silent).then(|| {
                    let mut r = vec![self.router_address(k, false, address)];
                    if router.twin.is_some() {
                        r.push(self.router_address(k, true, address));
                    }
                    r
                });
                HopTruth {
                    ttl,
                    responders,
                    lossy: router.behaviour == Behaviour::Lossy,
                    rate_limited: router.behaviour == Behaviour::RateLimited,
                    delay: self.router_delay(k),
                }
            })
            .collect();
        if kind != TargetKind::Unreachable {
            hops.push(HopTruth {
                ttl: hops.len() as u8 + 1,
                responders: (kind == TargetKind::Answers).then(|| vec![address]),
                lossy: false,
                rate_limited: false,
                delay: self.destination_delay(index),
            });
        }
        Some(TargetTruth {
            target: address,
            answers: kind == TargetKind::Answers,
            unreachable: kind == TargetKind::Unreachable,
            hops,
        })
    }

    /// Target `address`'s ground truth as one JSON line (no newline), in the format
    /// `tests/scenarios/README.md` describes; `None` if it is not a target.
    pub fn ground_truth(&self, address: IpAddr) -> Option<String> {
        Some(self.truth(address)?.to_json())
    }
}

/// What a trace of one target should find (`tests/scenarios/README.md`).
#[derive(Debug, Clone, PartialEq)]
pub struct TargetTruth {
    /// The destination.
    pub target: IpAddr,
    /// Whether the destination answers.
    pub answers: bool,
    /// Whether the path ends in host unreachable from its last router.
    pub unreachable: bool,
    /// TTL 1 to the end of the path.
    pub hops: Vec<HopTruth>,
}

/// What answers at one TTL.
#[derive(Debug, Clone, PartialEq)]
pub struct HopTruth {
    /// The TTL.
    pub ttl: u8,
    /// Who may answer (two for an ECMP router); `None` if nobody does.
    pub responders: Option<Vec<IpAddr>>,
    /// Answers are lost with probability `loss`.
    pub lossy: bool,
    /// Answers are limited to `rate_limit` per second.
    pub rate_limited: bool,
    /// The configured delay of an answer.
    pub delay: Duration,
}

impl TargetTruth {
    /// Whether a trace that saw `seen[i]` answering at TTL `i + 1` matches, by the rule of
    /// `tests/scenarios/README.md`: up to the end of the path, every address seen is a
    /// responder and a hop with responders was seen unless it is lossy or rate-limited;
    /// beyond it, only the last hop's responders (none for a silent destination).
    pub fn matches(&self, seen: &[Vec<IpAddr>]) -> bool {
        let Some(last) = self.hops.last() else {
            return false;
        };
        let among = |addrs: &[IpAddr], hop: &HopTruth| {
            addrs
                .iter()
                .all(|a| hop.responders.as_ref().is_some_and(|r| r.contains(a)))
        };
        let on_path = self.hops.iter().enumerate().all(|(i, hop)| {
            let at = seen.get(i).map_or(&[][..], Vec::as_slice);
            let excused = hop.responders.is_none() || hop.lossy || hop.rate_limited;
            among(at, hop) && (excused || !at.is_empty())
        });
        on_path && seen.iter().skip(self.hops.len()).all(|at| among(at, last))
    }

    /// One JSON line (no newline), the format `mtrsim --ground-truth` prints.
    pub fn to_json(&self) -> String {
        let mut line = format!(
            r#"{{"target":"{}","answers":{},"unreachable":{},"hops":["#,
            self.target, self.answers, self.unreachable
        );
        for (i, hop) in self.hops.iter().enumerate() {
            let responders = match &hop.responders {
                None => "null".to_owned(),
                Some(r) => {
                    let quoted: Vec<String> = r.iter().map(|a| format!(r#""{a}""#)).collect();
                    format!("[{}]", quoted.join(","))
                }
            };
            let _ = write!(
                line,
                r#"{}{{"ttl":{},"responders":{responders},"per_packet":false,"lossy":{},"rate_limited":{},"delay_ms":{}}}"#,
                if i > 0 { "," } else { "" },
                hop.ttl,
                hop.lossy,
                hop.rate_limited,
                hop.delay.as_micros() as f64 / 1000.0,
            );
        }
        // Links between consecutive answering hops: ECMP routers choose independently.
        line.push_str(r#"],"links":["#);
        let mut first = true;
        for pair in self.hops.windows(2) {
            let (Some(from), Some(to)) = (&pair[0].responders, &pair[1].responders) else {
                continue;
            };
            for a in from {
                for b in to {
                    let _ = write!(line, r#"{}["{a}","{b}"]"#, if first { "" } else { "," });
                    first = false;
                }
            }
        }
        line.push_str("]}");
        line
    }
}

#[derive(Clone, Copy)]
enum Level {
    Core,
    Transit,
    Edge,
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use super::*;

    fn spec(text: &str) -> InternetSpec {
        toml::from_str(text).unwrap()
    }

    fn generate(text: &str, seed: u64) -> Result<Internet, String> {
        let sources = [
            "198.18.0.1".parse().unwrap(),
            "2001:db8::1".parse().unwrap(),
        ];
        Internet::generate(&spec(text), seed, &sources)
    }

    const BIG: &str = r#"
        targets = 100000
        first = "198.18.64.1"
        first6 = "2001:db8:64::1"
        edges = 1000
        transits = 100
        cores = 5
        hops = [5, 16]
        silent_targets = 0.3
        unreachable_targets = 0.05
        silent_routers = 0.1
        lossy_routers = 0.05
        rate_limited_routers = 0.02
        ecmp_routers = 0.08
    "#;

    /// Asserts `hits` of `n` is inside the 99.9% binomial interval around `p`.
    fn assert_binomial(what: &str, hits: usize, n: usize, p: f64) {
        let mean = n as f64 * p;
        let margin = 3.29 * (n as f64 * p * (1.0 - p)).sqrt();
        assert!(
            (hits as f64 - mean).abs() <= margin,
            "{what}: {hits} of {n}, expected {mean:.0} +- {margin:.0}"
        );
    }

    #[test]
    fn fractions_are_within_binomial_bounds() {
        let net = generate(BIG, 3).unwrap();
        let n = net.targets() as usize;
        let kinds: Vec<TargetKind> = (0..net.targets()).map(|i| net.target_kind(i)).collect();
        let count = |k| kinds.iter().filter(|x| **x == k).count();
        assert_binomial("silent targets", count(TargetKind::Silent), n, 0.3);
        assert_binomial("unreachable", count(TargetKind::Unreachable), n, 0.05);
        let routers = net.routers();
        let r = routers.len();
        assert!(r > 1000, "{r} routers");
        let behaving = |b| routers.iter().filter(|x| x.behaviour == b).count();
        assert_binomial("silent routers", behaving(Behaviour::Silent), r, 0.1);
        assert_binomial("lossy routers", behaving(Behaviour::Lossy), r, 0.05);
        assert_binomial("rate-limited", behaving(Behaviour::RateLimited), r, 0.02);
        let ecmp = routers.iter().filter(|x| x.twin.is_some()).count();
        assert_binomial("ecmp routers", ecmp, r, 0.08);
    }

    #[test]
    fn paths_share_routers_like_a_tree() {
        let net = generate(BIG, 4).unwrap();
        // Each router has one predecessor on every path through it (a tree), and the first
        // router of each path is one of the 5 cores' first routers.
        let mut parent: HashMap<u32, Option<u32>> = HashMap::new();
        let mut firsts = HashSet::new();
        let mut hops = 0usize;
        for i in (0..net.targets()).step_by(7) {
            let path: Vec<u32> = net.path(i).collect();
            hops += path.len();
            firsts.insert(path[0]);
            for (n, k) in path.iter().enumerate() {
                let before = n.checked_sub(1).map(|p| path[p]);
                assert_eq!(*parent.entry(*k).or_insert(before), before, "router {k}");
            }
        }
        assert_eq!(firsts.len(), 5);
        // Far fewer routers than hops: paths share them.
        assert!(
            parent.len() * 10 < hops,
            "{} routers for {hops} hops",
            parent.len()
        );
        // Neighbouring targets (one edge block) share their whole path.
        assert!(net.path(0).eq(net.path(1)));
        // Every router generated is on some path.
        assert_eq!(parent.len(), net.routers().len());
    }

    #[test]
    fn path_lengths_cover_the_range_and_no_more() {
        let net = generate(BIG, 5).unwrap();
        let lengths: HashSet<u32> = (0..net.targets()).map(|i| net.path_len(i)).collect();
        assert_eq!(lengths, (5..=16).collect());
        for i in (0..net.targets()).step_by(13) {
            let len = net.path_len(i);
            assert_eq!(net.path(i).count() as u32, len);
            let want = match net.target_kind(i) {
                TargetKind::Unreachable => Reach::Unreachable(net.path(i).last().unwrap()),
                _ => Reach::Destination,
            };
            assert_eq!(net.reach(i, len as u8 + 1), want);
            assert_eq!(net.reach(i, 255), want);
            for (ttl, k) in (1..).zip(net.path(i)) {
                let reach = net.reach(i, ttl);
                assert!(reach == Reach::Router(k) || reach == Reach::Unreachable(k));
            }
        }
    }

    #[test]
    fn delay_accumulates_along_a_path() {
        let net = generate(BIG, 6).unwrap();
        for i in (0..net.targets()).step_by(101) {
            let delays: Vec<Duration> = net.path(i).map(|k| net.router_delay(k)).collect();
            // Each link adds 0.2 to 3.0 ms.
            let mut before = Duration::ZERO;
            for d in delays.iter().chain([&net.destination_delay(i)]) {
                let step = d.saturating_sub(before);
                assert!(*d > before, "target {i}: {delays:?}");
                assert!(step >= Duration::from_micros(200) && step <= Duration::from_millis(3));
                before = *d;
            }
        }
    }

    #[test]
    fn the_same_seed_generates_the_same_internet() {
        let truth = |seed| {
            let net = generate(BIG, seed).unwrap();
            (0..net.targets())
                .step_by(97)
                .flat_map(|i| net.target_addresses(i))
                .map(|a| net.ground_truth(a).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(truth(7), truth(7));
        assert_ne!(truth(7), truth(8));
    }

    #[test]
    fn ground_truth_lines_follow_the_documented_schema() {
        let net = generate(BIG, 9).unwrap();
        let mut seen = HashSet::new();
        for i in (0..net.targets()).step_by(11) {
            for address in net.target_addresses(i) {
                let line = net.ground_truth(address).unwrap();
                let v: serde_json::Value = serde_json::from_str(&line).unwrap();
                assert_eq!(v["target"], address.to_string());
                let hops = v["hops"].as_array().unwrap();
                let len = net.path_len(i) as usize;
                let kind = net.target_kind(i);
                assert_eq!(v["answers"], kind == TargetKind::Answers);
                assert_eq!(v["unreachable"], kind == TargetKind::Unreachable);
                let want_len = if kind == TargetKind::Unreachable {
                    len
                } else {
                    len + 1
                };
                assert_eq!(hops.len(), want_len, "{line}");
                for (ttl, hop) in (1..).zip(hops) {
                    assert_eq!(hop["ttl"], ttl);
                    assert_eq!(hop["per_packet"], false);
                    let responders = &hop["responders"];
                    seen.insert(responders.as_array().map_or(0, Vec::len));
                    for r in responders.as_array().into_iter().flatten() {
                        let r: IpAddr = r.as_str().unwrap().parse().unwrap();
                        assert_eq!(r.is_ipv4(), address.is_ipv4());
                        assert!(is_simulated(r));
                    }
                }
                // Every pair of consecutive responders is a link, and nothing else.
                let mut want = HashSet::new();
                for pair in hops.windows(2) {
                    let list = |v: &serde_json::Value| v.as_array().cloned().unwrap_or_default();
                    for a in list(&pair[0]["responders"]) {
                        for b in list(&pair[1]["responders"]) {
                            want.insert(serde_json::json!([a, b]).to_string());
                        }
                    }
                }
                let links: HashSet<_> = v["links"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|l| l.to_string())
                    .collect();
                assert_eq!(links, want, "{line}");
                assert_eq!(links.len(), v["links"].as_array().unwrap().len());
                let last = &hops[want_len - 1]["responders"];
                if kind == TargetKind::Answers {
                    assert_eq!(last[0], address.to_string());
                } else if kind == TargetKind::Silent {
                    assert!(last.is_null());
                }
            }
        }
        // Silent hops, single routers and ECMP pairs all occur.
        assert_eq!(seen, HashSet::from([0, 1, 2]));
        assert!(net.ground_truth("198.18.0.9".parse().unwrap()).is_none());
    }

    #[test]
    fn a_trace_matches_its_truth_by_the_documented_rule() {
        let net = generate(BIG, 2).unwrap();
        let ip = |t: &str| -> IpAddr { t.parse().unwrap() };
        let find = |f: &dyn Fn(&TargetTruth) -> bool| {
            (0..net.targets())
                .map(|i| net.truth(net.target_addresses(i)[0]).unwrap())
                .find(|t| f(t))
                .unwrap()
        };
        // A target that answers, with no silent, lossy, rate-limited or ECMP hop.
        let clean = find(&|t| {
            t.answers
                && t.hops.iter().all(|h| {
                    h.responders.as_ref().is_some_and(|r| r.len() == 1)
                        && !h.lossy
                        && !h.rate_limited
                })
        });
        let exact: Vec<Vec<IpAddr>> = clean
            .hops
            .iter()
            .map(|h| h.responders.clone().unwrap())
            .collect();
        assert!(clean.matches(&exact));
        // A missed hop, a stranger, or a trace stopping short does not match.
        let mut missed = exact.clone();
        missed[0].clear();
        assert!(!clean.matches(&missed));
        let mut stranger = exact.clone();
        stranger[1] = vec![ip("198.18.0.77")];
        assert!(!clean.matches(&stranger));
        assert!(!clean.matches(&exact[..exact.len() - 1]));
        // Past the end, only the destination.
        let mut longer = exact.clone();
        longer.push(vec![clean.target]);
        assert!(clean.matches(&longer));
        longer.push(vec![ip("198.18.0.77")]);
        assert!(!clean.matches(&longer));
        // A lossy hop may be missed; a silent one must be.
        let lossy = find(&|t| t.hops.iter().any(|h| h.lossy));
        let seen: Vec<Vec<IpAddr>> = lossy
            .hops
            .iter()
            .map(|h| match (&h.responders, h.lossy) {
                (Some(r), false) => r.clone(),
                _ => Vec::new(),
            })
            .collect();
        assert!(lossy.matches(&seen));
        let silent = find(&|t| !t.answers && !t.unreachable);
        let mut seen: Vec<Vec<IpAddr>> = silent
            .hops
            .iter()
            .map(|h| h.responders.clone().unwrap_or_default())
            .collect();
        seen.extend([Vec::new(), Vec::new()]);
        assert!(silent.matches(&seen));
        seen.push(vec![silent.target]);
        assert!(!silent.matches(&seen));
    }

    #[test]
    fn target_addresses_map_back_to_their_index() {
        let net = generate(BIG, 1).unwrap();
        for i in [0, 1, 4242, 99_999] {
            for a in net.target_addresses(i) {
                assert_eq!(net.target_index(a), Some(i));
            }
        }
        assert_eq!(net.target_index("198.18.64.0".parse().unwrap()), None);
        assert_eq!(net.target_index("198.19.198.161".parse().unwrap()), None);
        assert_eq!(
            net.target_index("198.19.198.160".parse().unwrap()),
            Some(99_999)
        );
    }

    #[test]
    fn bad_specs_are_refused() {
        let base = r#"targets = 1000
            first = "198.18.64.1""#;
        assert!(generate(base, 0).is_ok());
        for extra in [
            "silent_targets = 1.5",
            "silent_targets = 0.6\nunreachable_targets = 0.6",
            "hops = [2, 10]",
            "hops = [9, 8]",
            "jitter_ms = -1.0",
            "edges = 2000",
            "routers = \"198.18.64.100\"",
            "routers = \"10.0.0.1\"",
            "first6 = \"fd00::1\"",
        ] {
            let text = format!("{base}\n{extra}");
            assert!(generate(&text, 0).is_err(), "accepted {text}");
        }
        let too_many = r#"targets = 100001
            first = "198.18.64.1""#;
        assert!(generate(too_many, 0).is_err());
        let sources_overlap = r#"targets = 10
            first = "198.18.0.1""#;
        assert!(generate(sources_overlap, 0).is_err());
        // Past the end of 198.18.0.0/15.
        let too_far = r#"targets = 100000
            first = "198.19.0.1""#;
        assert!(generate(too_far, 0).is_err());
    }
}
