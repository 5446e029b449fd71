//! Request tokens.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};

/// The number that ties a reply to its request.
///
/// mtr-packet reads it with `strtol` into a C `int`, so a token is in `0..=2147483647`.
/// Token `0` is what mtr-packet uses for errors it cannot tie to a request
/// (`0 command-parse-error`); a [`Session`](crate::Session) never hands it out.
///
/// ```
/// use mtrproto::Token;
/// assert_eq!(Token::new(42).map(Token::get), Some(42));
/// assert!(Token::new(1 << 31).is_none());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Token(u32);

impl Token {
    /// The largest token mtr-packet accepts: `i32::MAX`.
    pub const MAX: Token = Token(i32::MAX as u32);

    /// The token of replies that belong to no request.
    pub const UNSOLICITED: Token = Token(0);

    /// A token with this value, or `None` above [`Token::MAX`].
    pub const fn new(value: u32) -> Option<Token> {
        if value <= Token::MAX.0 {
            Some(Token(value))
        } else {
            None
        }
    }

    /// The token's value.
    pub const fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A map keyed by [`Token`], with a hasher suited to them.
///
/// Public for drivers that keep their own state per token; [`TokenSlots`](crate::TokenSlots)
/// does the same without hashing.
///
/// Tokens are small sequential numbers the session allocates itself, so a multiplicative
/// hash spreads them well at a fraction of SipHash's cost.
pub type TokenMap<V> = HashMap<Token, V, BuildHasherDefault<TokenHasher>>;

/// The hasher of [`TokenMap`]: Fibonacci hashing of the token's value. Public because
/// [`TokenMap`] names it.
#[derive(Debug, Default, Clone, Copy)]
pub struct TokenHasher(u64);

impl Hasher for TokenHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u32(&mut self, value: u32) {
        self.write_u64(value.into());
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = (self.0 ^ value).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}
