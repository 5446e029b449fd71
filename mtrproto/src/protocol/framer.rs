//! Splitting the helper's byte stream into lines.

use crate::error::FrameError;

/// Cuts a byte stream into lines, whatever the chunks it arrives in.
///
/// Lines end with `\n`; a `\r` before it is dropped. Complete lines inside a chunk are handed
/// out without copying; only an unfinished tail is kept, and never more than the maximum line
/// length: a longer line is reported once as [`FrameError::LineTooLong`] and its bytes are
/// skipped up to the next newline. A line that is not UTF-8 is an error for that line only.
///
/// ```
/// use mtrproto::LineFramer;
/// let mut framer = LineFramer::new();
/// let mut lines = Vec::new();
/// framer.feed(b"1 reply ip-4 127.0.0.1 round", |l| lines.push(l.map(str::to_owned)));
/// framer.feed(b"-trip-time 9\r\n2 no-reply\n", |l| lines.push(l.map(str::to_owned)));
/// assert_eq!(lines, [Ok("1 reply ip-4 127.0.0.1 round-trip-time 9".to_owned()), Ok("2 no-reply".to_owned())]);
/// ```
#[derive(Debug)]
pub struct LineFramer {
    partial: Vec<u8>,
    max_line: usize,
    skipping: bool,
}

impl Default for LineFramer {
    fn default() -> Self {
        LineFramer::new()
    }
}

impl LineFramer {
    /// The default maximum line length: twice mtr-packet's own 4096-byte buffer.
    pub const DEFAULT_MAX_LINE: usize = 8192;

    /// A framer with the default maximum line length.
    pub fn new() -> LineFramer {
        LineFramer::with_max_line(LineFramer::DEFAULT_MAX_LINE)
    }

    /// A framer that refuses lines longer than `max_line` bytes, counting a `\r` before the
    /// newline but not the newline itself.
    pub fn with_max_line(max_line: usize) -> LineFramer {
        LineFramer {
            partial: Vec::new(),
            max_line,
            skipping: false,
        }
    }

    /// The maximum line length.
    pub fn max_line(&self) -> usize {
        self.max_line
    }

    /// Bytes held for an unfinished line; never more than the maximum line length.
    pub fn buffered(&self) -> usize {
        self.partial.len()
    }

    /// Feeds a chunk, calling `on_line` for every line or error it completes, in order.
    pub fn feed(&mut self, mut input: &[u8], mut on_line: impl FnMut(Result<&str, FrameError>)) {
        while let Some(end) = memchr::memchr(b'\n', input) {
            let (line, rest) = (&input[..end], &input[end + 1..]);
            input = rest;
            if self.skipping {
                self.skipping = false;
            } else if self.partial.is_empty() {
                self.emit(line, &mut on_line);
            } else if self.partial.len() + line.len() > self.max_line {
                self.partial.clear();
                on_line(Err(self.too_long()));
            } else {
                let mut partial = std::mem::take(&mut self.partial);
                partial.extend_from_slice(line);
                self.emit(&partial, &mut on_line);
                partial.clear();
                self.partial = partial;
            }
        }
        if self.skipping {
            return;
        }
        if self.partial.len() + input.len() > self.max_line {
            self.partial.clear();
            self.skipping = true;
            on_line(Err(self.too_long()));
        } else {
            self.partial.extend_from_slice(input);
        }
    }

    /// Ends the stream: reports an unfinished last line, if any, and resets the framer.
    pub fn finish(&mut self) -> Option<FrameError> {
        let len = self.partial.len();
        self.partial.clear();
        self.skipping = false;
        (len > 0).then_some(FrameError::Unterminated { len })
    }

    fn emit(&self, line: &[u8], on_line: &mut impl FnMut(Result<&str, FrameError>)) {
        if line.len() > self.max_line {
            on_line(Err(self.too_long()));
            return;
        }
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        on_line(std::str::from_utf8(line).map_err(|_| FrameError::InvalidUtf8));
    }

    fn too_long(&self) -> FrameError {
        FrameError::LineTooLong { max: self.max_line }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(framer: &mut LineFramer, chunks: &[&[u8]]) -> Vec<Result<String, FrameError>> {
        let mut out = Vec::new();
        for chunk in chunks {
            framer.feed(chunk, |l| out.push(l.map(str::to_owned)));
        }
        out
    }

    #[test]
    fn long_line_is_dropped_once_and_framing_resumes() {
        let mut framer = LineFramer::with_max_line(8);
        let got = lines(&mut framer, &[b"1 ok\n12345", b"6789", b"abc\n2 ok\n"]);
        assert_eq!(
            got,
            [
                Ok("1 ok".into()),
                Err(FrameError::LineTooLong { max: 8 }),
                Ok("2 ok".into())
            ]
        );
        assert_eq!(framer.buffered(), 0);
    }

    #[test]
    fn a_line_of_exactly_the_maximum_passes() {
        let mut framer = LineFramer::with_max_line(4);
        let got = lines(&mut framer, &[b"ab", b"cd\n", b"abc\r\n", b"abcd\r\n"]);
        assert_eq!(
            got,
            [
                Ok("abcd".into()),
                Ok("abc".into()),
                Err(FrameError::LineTooLong { max: 4 })
            ]
        );
    }

    #[test]
    fn invalid_utf8_spoils_only_its_line() {
        let mut framer = LineFramer::new();
        let got = lines(&mut framer, &[b"1 \xff\n2 ok\n"]);
        assert_eq!(got, [Err(FrameError::InvalidUtf8), Ok("2 ok".into())]);
    }

    #[test]
    fn finish_reports_an_unterminated_line() {
        let mut framer = LineFramer::new();
        assert!(lines(&mut framer, &[b"1 no-re"]).is_empty());
        assert_eq!(framer.finish(), Some(FrameError::Unterminated { len: 7 }));
        assert_eq!(framer.finish(), None);
    }
}
