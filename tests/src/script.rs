//! Seeded path scripts for the scripted helper (`src/bin/scripted-mtr-packet.rs`): what
//! each hop answers to the n-th probe at its TTL, decided by the seed alone, so that two
//! programs sending the same probes see the same answers. No packet is ever sent: the
//! responder addresses are text in documentation ranges (192.0.2.0/24, 2001:db8::/32).

use std::fmt::Write as _;

/// The environment variable that carries the seed to the helper (mtr starts it without
/// arguments).
pub const SEED_ENV: &str = "MTR_SCRIPT_SEED";

/// What one hop before the target does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HopPlan {
    /// Never answers.
    Silent,
    /// Routers answering `ttl-expired`.
    Routers {
        /// How many routers share the hop (ECMP: each probe picks one).
        paths: u8,
        /// Whether they quote an MPLS label stack (it changes from probe to probe).
        mpls: bool,
        /// Percent of probes lost.
        loss: u8,
        /// The probe (by its number at this TTL) answered `no-route` instead, if any.
        transient_unreachable: Option<u32>,
    },
    /// A router answering `no-route` to every probe at this TTL and beyond.
    Unreachable,
}

/// A path: hops before the target, then the target at TTL `hops.len() + 1` and beyond.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    seed: u64,
    /// The hops before the target, TTL 1 first.
    pub hops: Vec<HopPlan>,
    /// Percent of probes to the target lost.
    pub target_loss: u8,
}

/// splitmix64: a well-mixed 64-bit value from any input.
fn mix(z: u64) -> u64 {
    crate::mix64(z.wrapping_add(0x9e37_79b9_7f4a_7c15))
}

/// A small random stream from a seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = mix(self.0);
        self.0 % n.max(1)
    }
}

impl Script {
    /// The path of `seed`.
    pub fn from_seed(seed: u64) -> Script {
        let mut rng = Rng(seed);
        let len = 1 + rng.below(6) as usize;
        let mut hops = Vec::with_capacity(len);
        for _ in 0..len {
            let plan = match rng.below(10) {
                0 | 1 => HopPlan::Silent,
                2 => HopPlan::Unreachable,
                _ => HopPlan::Routers {
                    paths: 1 + rng.below(3) as u8,
                    mpls: rng.below(2) == 0,
                    loss: [0, 0, 20, 50][rng.below(4) as usize],
                    transient_unreachable: (rng.below(3) == 0).then(|| rng.below(3) as u32),
                },
            };
            hops.push(plan);
        }
        let target_loss = [0, 0, 10, 40][rng.below(4) as usize];
        Script {
            seed,
            hops,
            target_loss,
        }
    }

    /// The answer (without its token) to the `n`-th probe (from 0) at `ttl` towards
    /// `target`, an address in the text mtr-packet would print.
    pub fn answer(&self, ttl: u8, n: u32, target: &str) -> String {
        let v6 = target.contains(':');
        let family = if v6 { "ip-6" } else { "ip-4" };
        let mut rng = Rng(mix(self.seed ^ mix(u64::from(ttl) << 32 | u64::from(n))));
        let rtt = round_trip_time(&mut rng);
        let index = usize::from(ttl).saturating_sub(1);
        // A lasting unreachable answers for every TTL past it too.
        if let Some(at) = self.hops[..index.min(self.hops.len())]
            .iter()
            .position(|h| *h == HopPlan::Unreachable)
        {
            let router = router(v6, at + 1, 0);
            return format!("no-route {family} {router} round-trip-time {rtt}");
        }
        let Some(plan) = self.hops.get(index) else {
            if rng.below(100) < u64::from(self.target_loss) {
                return "no-reply".into();
            }
            return format!("reply {family} {target} round-trip-time {rtt}");
        };
        match *plan {
            HopPlan::Silent => "no-reply".into(),
            HopPlan::Unreachable => {
                let router = router(v6, index + 1, 0);
                format!("no-route {family} {router} round-trip-time {rtt}")
            }
            HopPlan::Routers {
                paths,
                mpls,
                loss,
                transient_unreachable,
            } => {
                if rng.below(100) < u64::from(loss) {
                    return "no-reply".into();
                }
                let router = router(v6, index + 1, rng.below(u64::from(paths)) as u8);
                if transient_unreachable == Some(n) {
                    return format!("no-route {family} {router} round-trip-time {rtt}");
                }
                let mut line = format!("ttl-expired {family} {router} round-trip-time {rtt}");
                if mpls {
                    // Label changes with the probe: mtr keeps each router's first stack.
                    let label = 16 + rng.below(4);
                    let _ = write!(line, " mpls {label},{},1,1", rng.below(8));
                }
                line
            }
        }
    }
}

/// A round-trip time in µs from 0 to 5 s, with the edges mtr's report columns care about.
fn round_trip_time(rng: &mut Rng) -> u64 {
    match rng.below(8) {
        0 => 0,
        1 => rng.below(1000),
        2 | 3 => rng.below(100_000),
        4 => 1000 * rng.below(5000),
        5 => 999_950 + rng.below(100),
        6 => 5_000_000 - rng.below(10),
        _ => rng.below(5_000_001),
    }
}

/// The text address of router `path` at `ttl`.
fn router(v6: bool, ttl: usize, path: u8) -> String {
    if v6 {
        format!("2001:db8:{ttl:x}::{:x}", path + 1)
    } else {
        format!("192.0.2.{}", ttl * 10 + usize::from(path) + 1)
    }
}
