//! Words: the text of one protocol field.

use std::borrow::Cow;
use std::fmt;

use crate::error::ArgumentError;

/// One field of a protocol line: non-empty text without whitespace or control characters.
///
/// mtr-packet separates fields by single spaces and lines by newlines, so a `Word` can never
/// split a field or start a second command. Parsed words borrow from the line; build an
/// owned one with [`Word::new`].
///
/// ```
/// use mtrproto::Word;
/// assert_eq!(Word::new("ip-version-not-supported").unwrap().as_str(), "ip-version-not-supported");
/// assert!(Word::new("two words").is_err());
/// assert!(Word::new("x\n1 send-probe").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Word<'a>(Cow<'a, str>);

impl<'a> Word<'a> {
    /// The longest word that can be built by hand.
    ///
    /// Bounds the request line: a request built from valid values always fits mtr-packet's
    /// 4095-byte command buffer.
    pub const MAX_LEN: usize = 255;

    /// Checks `text` and keeps a copy of it.
    pub fn new(text: &str) -> Result<Word<'static>, ArgumentError> {
        check_word("word", text, Word::MAX_LEN)?;
        Ok(Word(Cow::Owned(text.to_owned())))
    }

    /// Borrows text the parser already checked to be a word.
    pub(crate) fn parsed(text: &'a str) -> Word<'a> {
        debug_assert!(text.chars().all(is_word_char) && !text.is_empty());
        Word(Cow::Borrowed(text))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Detaches the word from the line it was parsed from.
    pub fn into_owned(self) -> Word<'static> {
        Word(Cow::Owned(self.0.into_owned()))
    }
}

impl fmt::Debug for Word<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for Word<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether `c` may appear inside a field.
pub(crate) fn is_word_char(c: char) -> bool {
    !c.is_whitespace() && !c.is_control()
}

/// Checks that `text` is a non-empty word of at most `max` bytes.
pub(crate) fn check_word(what: &'static str, text: &str, max: usize) -> Result<(), ArgumentError> {
    if text.is_empty() {
        return Err(ArgumentError::Empty { what });
    }
    if !text.chars().all(is_word_char) {
        return Err(ArgumentError::BadCharacter { what });
    }
    if text.len() > max {
        return Err(ArgumentError::TooLong {
            what,
            len: text.len(),
            max,
        });
    }
    Ok(())
}
