//! MDA's stopping rule: how many probes rule out one more next hop.
//!
//! The Multipath Detection Algorithm (Augustin, Friedman, Teixeira, "Multipath tracing with
//! Paris traceroute", E2EMON 2007; failure bounds in Veitch, Augustin, Teixeira, Friedman,
//! "Failure control in multipath route tracing", INFOCOM 2009) stops probing an interface's
//! next hops once `n_k` probes have shown only `k` of them: were there `k + 1`, equally
//! likely, all `n_k` probes would have missed one with probability at most `1 -
//! confidence`.

/// The confidence of MDA's stopping rule: 95% or 99%.
///
/// ```
/// use mtrproto::Confidence;
/// // One next hop seen: 6 probes rule out a second at 95%, 8 at 99%.
/// assert_eq!(Confidence::P95.stopping_point(1), 6);
/// assert_eq!(Confidence::P99.stopping_point(1), 8);
/// assert_eq!("99".parse(), Ok(Confidence::P99));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Confidence {
    /// 95%: each stopping decision wrong with probability at most 5%.
    #[default]
    P95,
    /// 99%.
    P99,
}

impl Confidence {
    /// The confidence in percent.
    pub fn percent(self) -> u8 {
        match self {
            Confidence::P95 => 95,
            Confidence::P99 => 99,
        }
    }

    /// The failure probability each stopping decision is held to.
    fn failure(self) -> f64 {
        match self {
            Confidence::P95 => 0.05,
            Confidence::P99 => 0.01,
        }
    }

    /// `n_k`: the number of probes that, all reaching only `k` next hops, rule out a
    /// `k + 1`-th at this confidence (0 for `k` 0: nothing to rule out yet).
    ///
    /// The least `n` for which `n` probes spread uniformly over `k + 1` next hops miss at
    /// least one of them with probability at most `1 - confidence`. That probability comes
    /// from the occupancy distribution, step by step (a sum of positive terms, so no
    /// cancellation), which gives exactly the table of Veitch et al. and scamper's `tracelb`
    /// (6, 11, 16, 21, 27... at 95%; 8, 15, 21, 28, 36... at 99%). Each call costs about
    /// `k * n_k` steps: cache the points you use.
    pub fn stopping_point(self, k: usize) -> u32 {
        stopping_point(self.failure(), k)
    }

    /// The failure each of `decisions` stopping decisions is held to so that all of them
    /// together fail with probability at most `1 - confidence` (the union bound).
    pub(crate) fn split(self, decisions: u32) -> f64 {
        self.failure() / f64::from(decisions.max(1))
    }
}

/// The re-probes of answered flows that show per-packet balancing with failure at most
/// `alpha`, where the flows reached `ways` interfaces (two or more): at a hop balancing per
/// packet over at least `ways` interfaces, a re-probe of a flow whose first interface is
/// the one the fewest flows reached gets it again with that interface's share, `1 / ways`
/// where the shares are even, less (most of the time) where they are not; so `r` such
/// re-probes all do with about `ways^-r` at most (at 95%: 5 for 2 ways, 3 for 3 or more; at
/// 99%: 7, 5 for 3, 4 for 4).
pub(crate) fn repeat_point(alpha: f64, ways: usize) -> u32 {
    let miss = 1.0 / ways.max(2) as f64;
    let mut r = 1;
    while r < 64 && miss.powi(r as i32) > alpha {
        r += 1;
    }
    r
}

/// The most often a router balancing per packet, whichever two or more of a group's
/// interfaces it reaches and whatever its shares, returns every re-probe to its flow's first
/// interface, where `a` and `b` re-probes went in flows of two of its interfaces: `s^a (1 -
/// s)^b` at its largest, `s = a / (a + b)` (any other interface of it only lowers the
/// product). For a group whose routers are unknown: a router balancing per packet over two
/// of its interfaces (shares 1/2) misses `a + b` re-probes with `2^-(a + b)`, over uneven
/// shares with up to this (3 and 2: 3.5%, where 4 and 1 give 8.2%).
pub(crate) fn pair_miss(a: u32, b: u32) -> f64 {
    let (a, b) = (f64::from(a), f64::from(b));
    if a == 0.0 || b == 0.0 {
        return 1.0;
    }
    let s = a / (a + b);
    s.powf(a) * (1.0 - s).powf(b)
}

/// The re-probes a group of `interfaces` whose routers are unknown takes, none lost, where
/// each goes in a flow of its least re-probed interface until the two least re-probed pass
/// [`pair_miss`] at `alpha` (and so every pair does): `h` each, the least with
/// `pair_miss(h, h) <= alpha`, but one at the least `l` with `pair_miss(l, h) <= alpha` (at
/// 95%: 3 and 2, `3n - 1`; at 99%: 4 and 3, `4n - 1`; 5 and 7 for two interfaces, as
/// [`repeat_point`]).
pub(crate) fn turn_point(alpha: f64, interfaces: usize) -> u32 {
    let mut h = 1;
    while h < 64 && pair_miss(h, h) > alpha {
        h += 1;
    }
    let l = (0..=h).find(|&l| pair_miss(l, h) <= alpha).unwrap_or(h);
    let others = u32::try_from(interfaces.max(2) - 1).unwrap_or(u32::MAX);
    l.saturating_add(h.saturating_mul(others))
}

/// The flows that take, with failure at most `alpha`, a link one flow in `ways` takes: the
/// least `n` with `(1 - 1 / ways)^n <= alpha` (23 for 1 in 8 at 5%), at most 100,000.
pub(crate) fn link_point(alpha: f64, ways: usize) -> usize {
    if ways <= 1 {
        return 1;
    }
    let n = (alpha.ln() / (1.0 - 1.0 / ways as f64).ln()).ceil();
    // The cast saturates (NaN to 0): within 1 to 100,000 whatever alpha is.
    (n.min(100_000.0) as usize).max(1)
}

/// `n_k` for a failure probability `alpha` (see [`Confidence::stopping_point`]).
pub(crate) fn stopping_point(alpha: f64, k: usize) -> u32 {
    if k == 0 {
        return 0;
    }
    let m = k + 1;
    // seen[i]: the probability that the probes so far reached exactly i of the m.
    let mut seen = vec![0.0f64; m + 1];
    seen[0] = 1.0;
    let mf = m as f64;
    let mut n = 0u32;
    loop {
        n += 1;
        for i in (1..=m).rev() {
            seen[i] = seen[i] * (i as f64 / mf) + seen[i - 1] * ((m - i + 1) as f64 / mf);
        }
        seen[0] = 0.0;
        if 1.0 - seen[m] <= alpha || n == u32::MAX {
            return n;
        }
    }
}

/// Reads `95` or `99` (a trailing `%` allowed), as command lines take it.
impl std::str::FromStr for Confidence {
    type Err = crate::ArgumentError;

    fn from_str(text: &str) -> Result<Confidence, crate::ArgumentError> {
        match text.trim_end_matches('%') {
            "95" => Ok(Confidence::P95),
            "99" => Ok(Confidence::P99),
            _ => Err(crate::ArgumentError::UnknownConfidence(text.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stopping points of scamper's `tracelb` (its `k()` table): row `n` is the probes that rule out `n` next hops once `n - 1` are seen, at 95% (the
    /// first rows from Augustin et al. 2007, extended by Veitch et al. 2009) and 99%.
    const PUBLISHED: [(u32, u32); 36] = [
        (6, 8),
        (11, 15),
        (16, 21),
        (21, 28),
        (27, 36),
        (33, 43),
        (38, 51),
        (44, 58),
        (51, 66),
        (57, 74),
        (63, 82),
        (70, 90),
        (76, 98),
        (83, 106),
        (90, 115),
        (96, 123),
        (103, 132),
        (110, 140),
        (117, 149),
        (124, 157),
        (131, 166),
        (138, 175),
        (145, 183),
        (152, 192),
        (159, 201),
        (167, 210),
        (174, 219),
        (181, 228),
        (189, 237),
        (196, 246),
        (203, 255),
        (211, 264),
        (218, 273),
        (226, 282),
        (233, 291),
        (241, 300),
    ];

    #[test]
    fn stopping_points_are_the_published_table() {
        for (i, &(p95, p99)) in PUBLISHED.iter().enumerate() {
            let k = i + 1;
            assert_eq!(Confidence::P95.stopping_point(k), p95, "k = {k} at 95%");
            assert_eq!(Confidence::P99.stopping_point(k), p99, "k = {k} at 99%");
        }
        assert_eq!(Confidence::P95.stopping_point(0), 0);
    }

    #[test]
    fn confidences_parse() {
        assert_eq!("95%".parse(), Ok(Confidence::P95));
        assert!("90".parse::<Confidence>().is_err());
        assert_eq!(Confidence::P99.percent(), 99);
        assert_eq!(repeat_point(Confidence::P95.failure(), 2), 5);
        assert_eq!(repeat_point(Confidence::P99.failure(), 2), 7);
        assert_eq!(repeat_point(Confidence::P95.split(4), 2), 7);
        // 3^-3 = 0.037, 4^-2 = 0.0625; 3^-5 = 0.0041, 4^-4 = 0.0039, 4^-3 = 0.0156.
        assert_eq!(repeat_point(Confidence::P95.failure(), 3), 3);
        assert_eq!(repeat_point(Confidence::P95.failure(), 4), 3);
        assert_eq!(repeat_point(Confidence::P99.failure(), 3), 5);
        assert_eq!(repeat_point(Confidence::P99.failure(), 4), 4);
        assert_eq!(repeat_point(Confidence::P95.failure(), 0), 5);
        // n_1 with the 5% split 4 and 8 ways: 2^(1-n) <= 0.0125, 0.00625.
        assert_eq!(stopping_point(Confidence::P95.split(4), 1), 8);
        assert_eq!(stopping_point(Confidence::P95.split(8), 1), 9);
        // (7/8)^23 = 0.046; (11/12)^35 = 0.048, (11/12)^34 = 0.052.
        assert_eq!(link_point(0.05, 8), 23);
        assert_eq!(link_point(0.05, 12), 35);
        assert_eq!(link_point(0.05, 1), 1);
        assert_eq!(link_point(0.05, 6), 17);
        for ways in 2..200 {
            let n = link_point(0.05, ways) as i32;
            let miss = 1.0 - 1.0 / ways as f64;
            assert!(miss.powi(n) <= 0.05 && miss.powi(n - 1) > 0.05, "{ways}");
        }
    }

    #[test]
    fn any_two_interfaces_re_probed_rule_out_a_per_packet_router_over_them() {
        // 2^-5 = 0.031; 0.4^2 0.6^3 = 0.035; 0.2 0.8^4 = 0.082; 2^-6 = 0.016, 2^-7 = 0.0078.
        assert!((pair_miss(2, 3) - 0.03456).abs() < 1e-9);
        assert!((pair_miss(1, 4) - 0.08192).abs() < 1e-9);
        assert_eq!(pair_miss(0, 5), 1.0);
        assert!((pair_miss(4, 3) - pair_miss(3, 4)).abs() < 1e-12);
        // The largest s^a (1 - s)^b over the shares, on a grid.
        for (a, b) in [(1, 1), (1, 4), (2, 3), (3, 3), (3, 4), (2, 7)] {
            let most = (1..1000)
                .map(|i| f64::from(i) / 1000.0)
                .map(|s| s.powi(a as i32) * (1.0 - s).powi(b as i32))
                .fold(0.0, f64::max);
            let law = pair_miss(a, b);
            assert!(most <= law + 1e-12 && most >= law * 0.999, "{a}, {b}");
        }
        // 3 and 4 at 99%: 0.0084; 3 and 3 0.0156; 2 and 4 0.088.
        assert!(pair_miss(3, 4) <= 0.01 && pair_miss(3, 3) > 0.01 && pair_miss(2, 4) > 0.01);
        assert_eq!(turn_point(Confidence::P95.failure(), 2), 5);
        assert_eq!(turn_point(Confidence::P95.failure(), 5), 14);
        assert_eq!(turn_point(Confidence::P99.failure(), 2), 7);
        assert_eq!(turn_point(Confidence::P99.failure(), 5), 19);
        for ways in 2..12 {
            let alpha = Confidence::P95.split(ways as u32);
            // Never fewer than a lone router's re-probes for two interfaces.
            assert!(turn_point(alpha, ways) >= repeat_point(alpha, 2), "{ways}");
        }
    }
}
