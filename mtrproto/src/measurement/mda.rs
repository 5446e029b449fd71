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
}
