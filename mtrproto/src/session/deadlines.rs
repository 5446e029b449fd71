//! The watchdog's deadlines, earliest first, in a FIFO: a session's probes mostly share one
//! timeout, so their deadlines come in the order they are set and each one is appended. A
//! deadline earlier than the last (mixed timeouts) is inserted in its place.
//!
//! A request that completes leaves its entry behind (removing it from the middle would cost
//! a search); [`Deadlines::prune`] drops such entries from the front, so the first entry is
//! always a live one, and sweeps them all once they outnumber the live ones.

use std::collections::VecDeque;
use std::time::Instant;

use crate::protocol::token::Token;

#[derive(Debug, Default)]
pub(super) struct Deadlines {
    /// Sorted by deadline, then token (the order the session acts on them).
    queue: VecDeque<(Instant, Token)>,
}

impl Deadlines {
    /// Adds the deadline of `token`.
    pub(super) fn push(&mut self, deadline: Instant, token: Token) {
        let entry = (deadline, token);
        match self.queue.back() {
            Some(&last) if last > entry => {
                let at = self.queue.partition_point(|&e| e <= entry);
                self.queue.insert(at, entry);
            }
            _ => self.queue.push_back(entry),
        }
    }

    /// The earliest entry.
    pub(super) fn first(&self) -> Option<(Instant, Token)> {
        self.queue.front().copied()
    }

    /// Removes the earliest entry.
    pub(super) fn pop_first(&mut self) -> Option<(Instant, Token)> {
        self.queue.pop_front()
    }

    /// Drops the entries `live` refuses from the front, and every one of them once they
    /// outnumber the `live_count` live entries (so the queue stays within twice the requests
    /// in flight, and each entry is swept at most once).
    pub(super) fn prune(&mut self, live_count: usize, live: impl Fn(Instant, Token) -> bool) {
        while let Some(&(deadline, token)) = self.queue.front() {
            if live(deadline, token) {
                break;
            }
            self.queue.pop_front();
        }
        if self.queue.len() > live_count.saturating_mul(2).saturating_add(32) {
            self.queue
                .retain(|&(deadline, token)| live(deadline, token));
        }
    }

    pub(super) fn clear(&mut self) {
        self.queue.clear();
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.queue.len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn mixed_deadlines_come_out_in_order_and_stale_ones_are_swept() {
        let t = |v| Token::new(v).unwrap();
        let now = Instant::now();
        let at = |ms| now + Duration::from_millis(ms);
        let mut deadlines = Deadlines::default();
        for (ms, token) in [(10, 1), (30, 2), (20, 3), (30, 1), (5, 4), (40, 5)] {
            deadlines.push(at(ms), t(token));
        }
        let mut order = Vec::new();
        while let Some((deadline, token)) = deadlines.pop_first() {
            order.push((deadline.duration_since(now).as_millis(), token.get()));
        }
        assert_eq!(order, [(5, 4), (10, 1), (20, 3), (30, 1), (30, 2), (40, 5)]);

        // Live: odd tokens only. The front's stale entries go at once.
        for token in 1..=200 {
            deadlines.push(at(token.into()), t(token));
        }
        let live = |_, token: Token| token.get() % 2 == 1;
        deadlines.prune(100, live);
        assert_eq!(deadlines.first().map(|(_, t)| t.get()), Some(1));
        assert_eq!(deadlines.len(), 200);
        // Fewer live ones than stale: every stale one goes.
        deadlines.prune(10, live);
        assert_eq!(deadlines.len(), 100);
    }
}
