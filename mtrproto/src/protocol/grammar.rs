//! nom rules shared by the request and reply grammars.
//!
//! Both directions have the same shape:
//! `line = token SP name *(SP argument)`, `argument = word SP word`.

use nom::bytes::complete::take_while1;
use nom::combinator::map_res;
use nom::error::ErrorKind;
use nom::sequence::{preceded, separated_pair};
use nom::{IResult, Parser};

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::error::ParseError;
use crate::protocol::token::Token;
use crate::protocol::word::is_word_char;

/// `token = 1*DIGIT`, with a value in `0..=2147483647`.
pub(crate) fn token(input: &str) -> IResult<&str, Token> {
    map_res(unsigned, |value| {
        u32::try_from(value).ok().and_then(Token::new).ok_or(())
    })
    .parse(input)
}

/// `word = 1*(any character but whitespace and control characters)`.
///
/// Scans bytes while they are printable ASCII, the common case, and only decodes characters
/// when it meets a non-ASCII byte.
pub(crate) fn word(input: &str) -> IResult<&str, &str> {
    let ascii_end = input
        .bytes()
        .position(|b| !(b'!'..=b'~').contains(&b))
        .unwrap_or(input.len());
    if input.as_bytes().get(ascii_end).is_none_or(u8::is_ascii) {
        if ascii_end == 0 {
            return Err(failure(input, ErrorKind::TakeWhile1));
        }
        return Ok((&input[ascii_end..], &input[..ascii_end]));
    }
    take_while1(is_word_char).parse(input)
}

/// `SP = " "`.
pub(crate) fn sp(input: &str) -> IResult<&str, char> {
    match input.as_bytes().first() {
        Some(b' ') => Ok((&input[1..], ' ')),
        _ => Err(failure(input, ErrorKind::Char)),
    }
}

/// `argument = word SP word`, preceded by the space that separates it from the previous field.
pub(crate) fn argument(input: &str) -> IResult<&str, (&str, &str)> {
    if let Some(found) = ascii_argument(input) {
        return Ok(found);
    }
    preceded(sp, separated_pair(word, sp, word)).parse(input)
}

/// `argument` for the lines mtr-packet writes: two printable ASCII words, then a space or the
/// end. `None` for anything else, which the general rule then reads (or refuses) the same
/// way: this only saves the hot path the combinators' overhead.
fn ascii_argument(input: &str) -> Option<(&str, (&str, &str))> {
    let bytes = input.as_bytes();
    if bytes.first() != Some(&b' ') {
        return None;
    }
    let name_end = 1 + ascii_word_len(&bytes[1..]);
    if name_end == 1 || bytes.get(name_end) != Some(&b' ') {
        return None;
    }
    let value_start = name_end + 1;
    let value_end = value_start + ascii_word_len(&bytes[value_start..]);
    if value_end == value_start || !matches!(bytes.get(value_end), None | Some(b' ')) {
        return None;
    }
    // Both ends are at ASCII bytes, so they are character boundaries.
    Some((
        &input[value_end..],
        (&input[1..name_end], &input[value_start..value_end]),
    ))
}

/// The length of the leading run of printable ASCII other than space.
fn ascii_word_len(bytes: &[u8]) -> usize {
    bytes
        .iter()
        .position(|b| !(b'!'..=b'~').contains(b))
        .unwrap_or(bytes.len())
}

/// `unsigned = 1*DIGIT`, fitting in a `u64`. Reads the digits in one pass.
pub(crate) fn unsigned(input: &str) -> IResult<&str, u64> {
    let end = input
        .bytes()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(input.len());
    if end == 0 {
        return Err(failure(input, ErrorKind::Digit));
    }
    let value = input.as_bytes()[..end]
        .iter()
        .try_fold(0u64, |value, digit| {
            value.checked_mul(10)?.checked_add(u64::from(digit - b'0'))
        });
    match value {
        Some(value) => Ok((&input[end..], value)),
        None => Err(failure(input, ErrorKind::TooLarge)),
    }
}

/// A recoverable nom error at `input`.
fn failure(input: &str, kind: ErrorKind) -> nom::Err<nom::error::Error<&str>> {
    nom::Err::Error(nom::error::Error::new(input, kind))
}

/// `signed = ["-"] 1*DIGIT`, fitting in an `i64`.
pub(crate) fn signed(input: &str) -> IResult<&str, i64> {
    let (negative, digits) = match input.strip_prefix('-') {
        Some(digits) => (true, digits),
        None => (false, input),
    };
    let (rest, magnitude) = unsigned(digits)?;
    let value = if negative {
        0i64.checked_sub_unsigned(magnitude)
    } else {
        i64::try_from(magnitude).ok()
    };
    value
        .map(|v| (rest, v))
        .ok_or_else(|| failure(input, ErrorKind::TooLarge))
}

/// Splits a line into its token, its name and the text of its arguments.
///
/// The argument text is empty or starts with the space before the first argument.
pub(crate) fn head(line: &str) -> Result<(Token, &str, &str), ParseError> {
    match ascii_head(line) {
        Some(head) => Ok(head),
        None => nom_head(line),
    }
}

/// `head` for the lines mtr-packet writes: at most 10 digits, a space, a printable ASCII
/// name, then a space or the end. `None` for anything else, which [`nom_head`] then reads
/// (or refuses) the same way: like [`ascii_argument`], this only saves the combinators'
/// overhead on every answer.
fn ascii_head(line: &str) -> Option<(Token, &str, &str)> {
    let bytes = line.as_bytes();
    let digits = bytes
        .iter()
        .take(11)
        .take_while(|b| b.is_ascii_digit())
        .count();
    // Ten digits hold every token (2147483647); more are refused or leading zeros.
    if digits == 0 || digits > 10 || bytes.get(digits) != Some(&b' ') {
        return None;
    }
    let value = bytes[..digits]
        .iter()
        .fold(0u64, |value, digit| value * 10 + u64::from(digit - b'0'));
    let token = Token::new(u32::try_from(value).ok()?)?;
    let name_start = digits + 1;
    let name_end = name_start + ascii_word_len(&bytes[name_start..]);
    if name_end == name_start || !matches!(bytes.get(name_end), None | Some(b' ')) {
        return None;
    }
    // Both ends are at ASCII bytes, so they are character boundaries.
    Some((token, &line[name_start..name_end], &line[name_end..]))
}

/// `head` by the general rules, with the error of each way a line can be wrong.
fn nom_head(line: &str) -> Result<(Token, &str, &str), ParseError> {
    let (rest, token) = token(line).map_err(|_| ParseError::BadToken)?;
    let (args, name) =
        preceded(sp, word)
            .parse(rest)
            .map_err(|_: nom::Err<nom::error::Error<&str>>| {
                if rest.is_empty() || rest == " " {
                    ParseError::MissingName
                } else if rest.starts_with(' ') {
                    ParseError::Malformed
                } else {
                    ParseError::BadToken
                }
            })?;
    Ok((token, name, args))
}

/// The `(name, value)` pairs of an argument text, in order.
pub(crate) struct Arguments<'a> {
    rest: &'a str,
}

impl<'a> Arguments<'a> {
    pub(crate) fn new(text: &'a str) -> Arguments<'a> {
        Arguments { rest: text }
    }
}

impl<'a> Iterator for Arguments<'a> {
    type Item = Result<(&'a str, &'a str), ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        match argument(self.rest) {
            Ok((rest, pair)) => {
                self.rest = rest;
                Some(Ok(pair))
            }
            Err(_) => {
                let rest = std::mem::take(&mut self.rest);
                let lone_name = preceded(sp, word).parse(rest);
                Some(Err(match lone_name {
                    Ok(("", name)) => ParseError::MissingValue(name.to_owned()),
                    _ => ParseError::Malformed,
                }))
            }
        }
    }
}

/// Parses a whole value with `rule`, naming `argument` in the error.
pub(crate) fn value<'a, T>(
    argument: &'static str,
    text: &'a str,
    rule: impl Fn(&'a str) -> IResult<&'a str, T>,
) -> Result<T, ParseError> {
    match rule(text) {
        Ok(("", value)) => Ok(value),
        _ => Err(ParseError::InvalidValue {
            argument,
            value: text.to_owned(),
        }),
    }
}

/// `ip4 = dec-octet 3("." dec-octet)`, the dotted quad `inet_ntop` writes.
pub(crate) fn ip4(input: &str) -> IResult<&str, Ipv4Addr> {
    let bytes = input.as_bytes();
    let mut octets = [0u8; 4];
    let mut at = 0;
    for (i, octet) in octets.iter_mut().enumerate() {
        if i > 0 {
            if bytes.get(at) != Some(&b'.') {
                return Err(failure(&input[at..], ErrorKind::Char));
            }
            at += 1;
        }
        let (len, value) =
            dec_octet(&bytes[at..]).ok_or(failure(&input[at..], ErrorKind::Verify))?;
        *octet = value;
        at += len;
    }
    Ok((&input[at..], Ipv4Addr::from(octets)))
}

/// `dec-octet = "0" / %x31-39 0*2DIGIT`, at most 255 (RFC 3986; no leading zeros): its
/// length and value.
fn dec_octet(bytes: &[u8]) -> Option<(usize, u8)> {
    let len = bytes
        .iter()
        .take(4)
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(bytes.len().min(4));
    if len == 0 || len > 3 || (len > 1 && bytes[0] == b'0') {
        return None;
    }
    let value = bytes[..len]
        .iter()
        .fold(0u16, |value, digit| value * 10 + u16::from(digit - b'0'));
    u8::try_from(value).ok().map(|octet| (len, octet))
}

/// `ip6 = word` that reads as an IPv6 address in any RFC 4291 text form.
pub(crate) fn ip6(input: &str) -> IResult<&str, Ipv6Addr> {
    if let Some((len, address)) = hex_ip6(input.as_bytes()) {
        return Ok((&input[len..], address));
    }
    map_res(word, str::parse::<Ipv6Addr>).parse(input)
}

/// The forms `inet_ntop` writes without a dotted quad, read in one pass: 8 groups of 1 to 4
/// hex digits, or fewer with one `::` standing for at least one zero group, followed by a
/// space or the end. Its length and the address; `None` for anything else, which the
/// standard parser then reads or refuses.
fn hex_ip6(bytes: &[u8]) -> Option<(usize, Ipv6Addr)> {
    let mut groups = [0u16; 8];
    let mut count = 0;
    // Where `::` stands, in groups.
    let mut gap = None;
    let mut at = 0;
    if bytes.starts_with(b"::") {
        gap = Some(0);
        at = 2;
    }
    while !matches!(bytes.get(at), None | Some(b' ')) {
        let start = at;
        let mut value = 0u16;
        while at - start < 4
            && let Some(digit) = bytes.get(at).and_then(|&b| char::from(b).to_digit(16))
        {
            value = value << 4 | digit as u16;
            at += 1;
        }
        if at == start || count == 8 {
            return None;
        }
        groups[count] = value;
        count += 1;
        match bytes.get(at) {
            None | Some(b' ') => break,
            Some(b':') if bytes.get(at + 1) == Some(&b':') => {
                if gap.replace(count).is_some() {
                    return None;
                }
                at += 2;
            }
            Some(b':') if !matches!(bytes.get(at + 1), None | Some(b' ')) => at += 1,
            // A dotted quad, a fifth digit, a lone trailing colon, anything else.
            _ => return None,
        }
    }
    match gap {
        None if count == 8 => {}
        Some(gap) if count < 8 => {
            let tail = count - gap;
            groups.copy_within(gap..count, 8 - tail);
            groups[gap..8 - tail].fill(0);
        }
        _ => return None,
    }
    Some((at, Ipv6Addr::from(groups)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_splits_token_name_and_arguments() {
        assert_eq!(
            head("7 reply ip-4 1.2.3.4"),
            Ok((Token::new(7).unwrap(), "reply", " ip-4 1.2.3.4"))
        );
        assert_eq!(head("2147483648 reply"), Err(ParseError::BadToken));
        assert_eq!(head("x reply"), Err(ParseError::BadToken));
        assert_eq!(head("7"), Err(ParseError::MissingName));
        assert_eq!(head("7  reply"), Err(ParseError::Malformed));
        assert_eq!(head("7x reply"), Err(ParseError::BadToken));
    }

    /// Whatever line the ASCII fast path reads, the general rules read the same; every
    /// line over a small alphabet of digits, spaces, name characters, a control and a
    /// non-ASCII character, up to 7 characters, and tokens around the largest.
    #[test]
    fn the_fast_head_agrees_with_the_general_rules() {
        let alphabet = ['0', '7', ' ', 'r', '-', '\t', '\u{e9}'];
        let mut texts: Vec<String> = Vec::new();
        let mut level = vec![String::new()];
        for _ in 0..7 {
            level = level
                .iter()
                .flat_map(|t| alphabet.iter().map(move |c| format!("{t}{c}")))
                .collect();
            texts.extend(level.iter().cloned());
        }
        for token in [
            "2147483647",
            "2147483648",
            "0000000001",
            "00000000001",
            "4294967296",
            "9999999999",
            "99999999999",
        ] {
            for tail in [
                " reply",
                " reply ip-4 1.2.3.4",
                " ",
                "",
                " \u{e9}",
                " a\u{e9}",
            ] {
                texts.push(format!("{token}{tail}"));
            }
        }
        let mut fast = 0;
        for text in &texts {
            if let Some(found) = ascii_head(text) {
                fast += 1;
                assert_eq!(Ok(found), nom_head(text), "{text:?}");
            }
            assert_eq!(head(text), nom_head(text), "{text:?}");
        }
        assert!(fast > 1000, "{fast}");
    }

    #[test]
    fn arguments_report_a_missing_value_and_bad_spacing() {
        let all: Vec<_> = Arguments::new(" a 1 b").collect();
        assert_eq!(
            all,
            vec![Ok(("a", "1")), Err(ParseError::MissingValue("b".into()))]
        );
        let all: Vec<_> = Arguments::new(" a  1").collect();
        assert_eq!(all, vec![Err(ParseError::Malformed)]);
        let all: Vec<_> = Arguments::new(" a 1 ").collect();
        assert_eq!(all, vec![Ok(("a", "1")), Err(ParseError::Malformed)]);
    }

    #[test]
    fn words_stop_at_spaces_and_controls() {
        assert_eq!(word("ip-4 1"), Ok((" 1", "ip-4")));
        assert_eq!(word("caf\u{e9}\u{a0}x"), Ok(("\u{a0}x", "caf\u{e9}")));
        assert_eq!(word("ab\u{7f}"), Ok(("\u{7f}", "ab")));
        assert!(word(" x").is_err());
        assert!(word("").is_err());
        assert!(word("\u{85}").is_err());
    }

    #[test]
    fn ipv4_addresses_are_dotted_quads() {
        assert_eq!(
            value("ip-4", "10.200.1.2", ip4),
            Ok(Ipv4Addr::new(10, 200, 1, 2))
        );
        assert_eq!(value("ip-4", "0.0.0.0", ip4), Ok(Ipv4Addr::UNSPECIFIED));
        assert_eq!(
            value("ip-4", "255.255.255.255", ip4),
            Ok(Ipv4Addr::BROADCAST)
        );
        assert_eq!(ip4("10.0.0.1 x"), Ok((" x", Ipv4Addr::new(10, 0, 0, 1))));
        for bad in [
            "256.1.1.1",
            "1.2.3",
            "1.2.3.4.5",
            "01.2.3.4",
            "1..2.3",
            "1.2.3.4x",
            "1.2.3.1000",
            "1.2.3.00",
            "1.2.3.",
            ".1.2.3",
            "",
        ] {
            assert!(value("ip-4", bad, ip4).is_err(), "{bad}");
        }
    }

    /// Whatever the fast IPv6 reader accepts, the standard parser reads the same.
    #[test]
    fn the_fast_ipv6_reader_agrees_with_the_standard_one() {
        let mut texts: Vec<String> = vec![
            "::".into(),
            "::1".into(),
            "1::".into(),
            "2001:db8::5".into(),
            "2001:db8:1::1".into(),
            "fe80::1:2:3:4:5:6".into(),
            "1:2:3:4:5:6:7:8".into(),
            "1:2:3:4:5:6:7::".into(),
            "::2:3:4:5:6:7:8".into(),
            "1:2:3:4::5:6:7:8".into(),
            "1:2:3:4:5:6:7:8:9".into(),
            "12345::".into(),
            "+1::".into(),
            "::ffff:1.2.3.4".into(),
            "1:::2".into(),
            ":1::".into(),
        ];
        // Every text of up to six characters over a small alphabet.
        let alphabet = [':', '0', 'f', '1', 'g'];
        let mut level = vec![String::new()];
        for _ in 0..6 {
            level = level
                .iter()
                .flat_map(|t| alphabet.iter().map(move |c| format!("{t}{c}")))
                .collect();
            texts.extend(level.iter().cloned());
        }
        let mut fast = 0;
        for text in &texts {
            let standard = text.parse::<Ipv6Addr>().ok();
            match hex_ip6(text.as_bytes()) {
                Some((len, address)) => {
                    assert_eq!(len, text.len(), "{text}");
                    fast += 1;
                    assert_eq!(Some(address), standard, "{text}");
                }
                None => assert!(
                    standard.is_none() || text.contains('.'),
                    "{text} is an address the fast reader missed"
                ),
            }
        }
        assert!(fast > 100, "{fast}");
        assert_eq!(
            value("ip-6", "2001:db8::5", ip6),
            Ok("2001:db8::5".parse().unwrap())
        );
        assert!(value("ip-6", "2001:db8::g", ip6).is_err());
        assert_eq!(ip6("::1 x"), Ok((" x", Ipv6Addr::LOCALHOST)));
        assert_eq!(
            value("ip-6", "::ffff:1.2.3.4", ip6),
            Ok("::ffff:1.2.3.4".parse().unwrap())
        );
    }

    #[test]
    fn numbers() {
        assert_eq!(value("n", "12", unsigned), Ok(12));
        assert_eq!(value("e", "-4", signed), Ok(-4));
        assert!(value("n", "1x", unsigned).is_err());
        assert!(value("n", "99999999999999999999999", unsigned).is_err());
    }
}
