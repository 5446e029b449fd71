//! Pacing: how fast requests may be released, as a token bucket.

use std::time::{Duration, Instant};

/// A token bucket in its GCRA form: one theoretical arrival time instead of a token count,
/// so it needs no floating point and no periodic refill.
#[derive(Debug, Clone)]
pub(crate) struct Pacer {
    interval: Duration,
    /// How far ahead of `now` the schedule may run: (burst - 1) intervals.
    slack: Duration,
    /// When the next release would be due at the steady rate.
    next_due: Option<Instant>,
}

impl Pacer {
    /// At most `per_second` releases per second on average, up to `burst` at once.
    pub(crate) fn new(per_second: u32, burst: u32) -> Pacer {
        let interval = Duration::from_secs(1) / per_second.max(1);
        Pacer {
            interval,
            slack: interval * burst.max(1).saturating_sub(1),
            next_due: None,
        }
    }

    /// The earliest instant a release is allowed.
    pub(crate) fn ready_at(&self, now: Instant) -> Instant {
        match self.next_due {
            Some(due) => due.checked_sub(self.slack).unwrap_or(now).max(now),
            None => now,
        }
    }

    /// When the next release is allowed, if the schedule has started.
    pub(crate) fn due(&self) -> Option<Instant> {
        self.next_due
            .map(|due| due.checked_sub(self.slack).unwrap_or(due))
    }

    /// Takes one release if allowed at `now`.
    pub(crate) fn try_take(&mut self, now: Instant) -> bool {
        if self.ready_at(now) > now {
            return false;
        }
        let base = self.next_due.map_or(now, |due| due.max(now));
        self.next_due = Some(crate::session::later(base, self.interval));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_at_the_rate_after_a_burst() {
        let start = Instant::now();
        let mut pacer = Pacer::new(10, 3);
        let taken = (0..5).filter(|_| pacer.try_take(start)).count();
        assert_eq!(taken, 3, "the burst");
        assert_eq!(pacer.ready_at(start), start + Duration::from_millis(100));
        assert!(!pacer.try_take(start + Duration::from_millis(99)));
        assert!(pacer.try_take(start + Duration::from_millis(100)));
        // Idle time refills the bucket up to the burst only.
        let later = start + Duration::from_secs(60);
        let taken = (0..5).filter(|_| pacer.try_take(later)).count();
        assert_eq!(taken, 3);
    }
}
