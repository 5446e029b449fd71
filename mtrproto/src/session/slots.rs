//! The session's requests by token: a table indexed by the token's low bits, no hashing.
//! Public as [`TokenSlots`](crate::TokenSlots), for drivers that keep their own state per
//! request of a session (the same tokens, so the same property holds for their table).
//!
//! The session picks its tokens itself, in sequence, so it can pick one whose slot is free
//! ([`Slots::is_vacant`]): then no two live tokens share a slot, and a lookup is one index
//! and one compare. The table doubles at three quarters full; doubling keeps distinct slots
//! distinct (tokens that differ in their low `k + 1` bits differ in their low `k`).

use crate::protocol::token::{Token, TokenMap};

/// Values by [`Token`] in a table indexed by the token's low bits: a lookup is one index
/// and one compare, no hashing.
///
/// For a driver's state per request of a [`Session`](crate::Session) (`mtrproto-blocking`
/// keeps its waiters in one): the session picks tokens whose slot in its own table is free,
/// so the live tokens of one session never share a slot at that size, and a driver's table
/// holding the same tokens grows no larger. Any tokens work: two that share a slot double
/// the table until they part, up to four times its values (at least 64 slots); beyond, the
/// later one waits in a hash map beside it.
///
/// ```
/// use mtrproto::{Token, TokenSlots};
///
/// let mut waiters = TokenSlots::default();
/// let token = Token::new(7).unwrap();
/// waiters.insert(token, "caller 7");
/// assert_eq!(waiters.get(token), Some(&"caller 7"));
/// assert_eq!(waiters.remove(token), Some("caller 7"));
/// assert_eq!(waiters.get(token), None);
/// ```
#[derive(Debug)]
pub struct Slots<V> {
    /// A power of two long (or empty); `token & (len - 1)` is a token's slot.
    slots: Vec<Option<(Token, V)>>,
    /// Values in the table.
    len: usize,
    /// Values whose slot another token held where doubling would not part them soon
    /// enough (tokens far apart): empty for the session, which takes vacant tokens.
    overflow: TokenMap<V>,
}

impl<V> Default for Slots<V> {
    fn default() -> Self {
        Slots {
            slots: Vec::new(),
            len: 0,
            overflow: TokenMap::default(),
        }
    }
}

impl<V> Slots<V> {
    /// The smallest table: enough for a handful of requests without growing.
    const MIN: usize = 16;

    fn index(&self, token: Token) -> Option<usize> {
        let mask = self.slots.len().checked_sub(1)?;
        Some(token.get() as usize & mask)
    }

    /// Whether `token` may be inserted without growing the table past its load: its slot is
    /// empty. A token in use is not vacant.
    pub(crate) fn is_vacant(&self, token: Token) -> bool {
        self.index(token)
            .is_none_or(|i| self.slots.get(i).is_none_or(Option::is_none))
            && (self.overflow.is_empty() || !self.overflow.contains_key(&token))
    }

    /// The value `token` holds.
    pub fn get(&self, token: Token) -> Option<&V> {
        match self.slots.get(self.index(token)?)? {
            Some((t, value)) if *t == token => Some(value),
            _ if self.overflow.is_empty() => None,
            _ => self.overflow.get(&token),
        }
    }

    /// The value `token` holds, to change it.
    pub fn get_mut(&mut self, token: Token) -> Option<&mut V> {
        let i = self.index(token)?;
        match self.slots.get_mut(i)? {
            Some((t, value)) if *t == token => Some(value),
            _ if self.overflow.is_empty() => None,
            _ => self.overflow.get_mut(&token),
        }
    }

    /// Puts `value` at `token`, replacing what `token` held. A slot held by another token
    /// doubles the table until they part, within four times its values; beyond, `value`
    /// waits beside the table (the session avoids both by taking vacant tokens).
    pub fn insert(&mut self, token: Token, value: V) {
        if !self.overflow.is_empty()
            && let Some(held) = self.overflow.get_mut(&token)
        {
            *held = value;
            return;
        }
        if self.len + 1 > self.slots.len() / 4 * 3 {
            self.grow();
        }
        loop {
            let i = token.get() as usize & (self.slots.len() - 1);
            let roomy = self.slots.len() < 4 * (self.len + 1).max(Self::MIN);
            match &mut self.slots[i] {
                Some((t, held)) if *t == token => {
                    *held = value;
                    return;
                }
                // Doubling parts tokens that differ in the next bit; far apart ones
                // (the bits differ only high up) would take a table of 2^31 slots.
                Some(_) if roomy => self.grow(),
                Some(_) => {
                    self.overflow.insert(token, value);
                    return;
                }
                slot @ None => {
                    *slot = Some((token, value));
                    self.len += 1;
                    return;
                }
            }
        }
    }

    /// Takes out the value `token` holds.
    pub fn remove(&mut self, token: Token) -> Option<V> {
        let i = self.index(token)?;
        let slot = self.slots.get_mut(i)?;
        if slot.as_ref().is_some_and(|(t, _)| *t == token) {
            self.len -= 1;
            slot.take().map(|(_, value)| value)
        } else if self.overflow.is_empty() {
            None
        } else {
            self.overflow.remove(&token)
        }
    }

    /// Takes every value out, in slot order (those beside the table last). The table is
    /// empty from the call on, whether or not the iterator is run to its end (values not
    /// taken from it are dropped with it).
    pub fn drain(&mut self) -> impl Iterator<Item = V> + '_ {
        // Taken out whole: an iterator dropped early left values behind a count of 0,
        // which the next `remove` of one of them took below zero.
        self.len = 0;
        let slots = std::mem::take(&mut self.slots);
        let overflow = std::mem::take(&mut self.overflow);
        slots
            .into_iter()
            .filter_map(|s| s.map(|(_, v)| v))
            .chain(overflow.into_values())
    }

    /// Doubles the table, each value moved to its slot in the larger one.
    fn grow(&mut self) {
        let size = (self.slots.len() * 2).max(Self::MIN);
        let old = std::mem::replace(&mut self.slots, Vec::with_capacity(size));
        self.slots.resize_with(size, || None);
        for (token, value) in old.into_iter().flatten() {
            let i = token.get() as usize & (size - 1);
            self.slots[i] = Some((token, value));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(value: u32) -> Token {
        Token::new(value).unwrap()
    }

    #[test]
    fn tokens_sharing_a_slot_grow_the_table_and_stay_apart() {
        let mut slots = Slots::default();
        assert!(slots.is_vacant(t(1)) && slots.get(t(1)).is_none());
        slots.insert(t(1), "one");
        // 17 shares slot 1 of the 16-slot table.
        assert!(!slots.is_vacant(t(17)));
        slots.insert(t(17), "seventeen");
        assert_eq!(slots.get(t(1)), Some(&"one"));
        assert_eq!(slots.get(t(17)), Some(&"seventeen"));
        assert_eq!(slots.get(t(33)), None);
        assert_eq!(slots.remove(t(33)), None);
        assert_eq!(slots.remove(t(1)), Some("one"));
        assert_eq!(slots.get(t(1)), None);
        assert!(slots.get(t(17)).is_some());
        slots.insert(t(17), "again");
        assert_eq!(slots.drain().collect::<Vec<_>>(), ["again"]);
        assert!(slots.get(t(17)).is_none());
    }

    /// A drain dropped before its end left values in the table with its count at 0: the
    /// next `remove` of one of them overflowed (a panic in a debug build, a count of
    /// `usize::MAX` in a release one).
    #[test]
    fn a_drain_dropped_early_empties_the_table_all_the_same() {
        let mut slots = Slots::default();
        for v in [1, 2, 3, 1 + (1 << 30)] {
            slots.insert(t(v), v);
        }
        assert_eq!(slots.drain().next(), Some(1));
        for v in [1, 2, 3, 1 + (1 << 30)] {
            assert_eq!(slots.get(t(v)), None, "{v}");
            assert_eq!(slots.remove(t(v)), None, "{v}");
            assert!(slots.is_vacant(t(v)));
        }
        slots.insert(t(2), 20);
        assert_eq!(slots.remove(t(2)), Some(20));
        assert_eq!(slots.len, 0);
    }

    #[test]
    fn many_tokens_in_and_out_keep_their_values() {
        let mut slots = Slots::default();
        for v in 1..=1000 {
            slots.insert(t(v), v);
            if v % 3 == 0 {
                assert_eq!(slots.remove(t(v - 1)), Some(v - 1));
            }
        }
        for v in 1..=1000 {
            let kept = v % 3 != 2;
            assert_eq!(slots.get(t(v)).copied(), kept.then_some(v), "token {v}");
        }
        assert_eq!(slots.len, 667);
        assert!(slots.slots.len() * 3 / 4 >= slots.len);
    }

    #[test]
    fn tokens_far_apart_sharing_a_slot_keep_the_table_small() {
        // A driver may hold any tokens (one session's, then a restarted one's): two whose
        // low 20 bits agree grew the table to 2^21 slots (two sharing all but bit 30, to
        // 2^31: an allocation that aborts the process).
        let mut slots = Slots::default();
        slots.insert(t(1), 1);
        slots.insert(t(1 + (1 << 20)), 2);
        slots.insert(t(1 + (1 << 30)), 3);
        assert!(slots.slots.len() <= 64, "{} slots", slots.slots.len());
        assert_eq!(slots.get(t(1)), Some(&1));
        assert_eq!(slots.get(t(1 + (1 << 20))), Some(&2));
        assert_eq!(slots.get(t(1 + (1 << 30))), Some(&3));
        assert!(!slots.is_vacant(t(1 + (1 << 30))));
        *slots.get_mut(t(1 + (1 << 20))).unwrap() = 20;
        assert_eq!(slots.remove(t(1)), Some(1));
        assert_eq!(slots.get(t(1)), None);
        assert_eq!(slots.get(t(1 + (1 << 20))), Some(&20));
        assert_eq!(slots.remove(t(1 + (1 << 30))), Some(3));
        assert_eq!(slots.remove(t(1 + (1 << 30))), None);
        slots.insert(t(2), 4);
        let mut rest: Vec<_> = slots.drain().collect();
        rest.sort_unstable();
        assert_eq!(rest, [4, 20]);
        assert_eq!(slots.get(t(1 + (1 << 20))), None);
    }

    #[test]
    fn any_tokens_in_and_out_agree_with_a_map() {
        // Tokens near each other and far apart (equal low bits), inserted, replaced and
        // removed in a seeded order: every lookup as a map answers it, the table small.
        let mut slots = Slots::default();
        let mut model = std::collections::HashMap::new();
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for step in 0..20_000u32 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let low = (state % 40) as u32 + 1;
            let high = ((state >> 8) % 4) as u32;
            let token = t(low | (high << (17 + (state >> 16) % 12) as u32));
            match (state >> 32) % 4 {
                0 | 1 => {
                    slots.insert(token, step);
                    model.insert(token, step);
                }
                2 => assert_eq!(slots.remove(token), model.remove(&token), "{token}"),
                _ => assert_eq!(slots.get(token), model.get(&token), "{token}"),
            }
            assert_eq!(
                slots.is_vacant(token),
                slots.get(token).is_none() && {
                    let i = token.get() as usize & slots.slots.len().saturating_sub(1);
                    slots.slots.get(i).is_none_or(Option::is_none)
                }
            );
        }
        assert!(
            slots.slots.len() <= 4 * model.len().max(16) * 2,
            "{}",
            slots.slots.len()
        );
        for (token, value) in &model {
            assert_eq!(slots.get(*token), Some(value));
        }
        let mut drained: Vec<_> = slots.drain().collect();
        let mut expected: Vec<_> = model.into_values().collect();
        drained.sort_unstable();
        expected.sort_unstable();
        assert_eq!(drained, expected);
    }
}
