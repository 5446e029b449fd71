//! nom rules shared by the request and reply grammars.
//!
//! Both directions have the same shape:
//! `line = token SP name *(SP argument)`, `argument = word SP word`.

use nom::bytes::complete::take_while1;
use nom::character::complete::char;
use nom::combinator::{map_res, opt};
use nom::error::ErrorKind;
use nom::sequence::{preceded, separated_pair};
use nom::{IResult, Parser};

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::error::ParseError;
use crate::token::Token;
use crate::word::is_word_char;

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
    preceded(sp, separated_pair(word, sp, word)).parse(input)
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
    let (rest, (minus, magnitude)) = (opt(char('-')), unsigned).parse(input)?;
    let value = match minus {
        Some(_) => 0i64.checked_sub_unsigned(magnitude),
        None => i64::try_from(magnitude).ok(),
    };
    value
        .map(|v| (rest, v))
        .ok_or_else(|| failure(input, ErrorKind::TooLarge))
}

/// Splits a line into its token, its name and the text of its arguments.
///
/// The argument text is empty or starts with the space before the first argument.
pub(crate) fn head(line: &str) -> Result<(Token, &str, &str), ParseError> {
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
    let (rest, (a, b, c, d)) = (
        dec_octet,
        preceded(char('.'), dec_octet),
        preceded(char('.'), dec_octet),
        preceded(char('.'), dec_octet),
    )
        .parse(input)?;
    Ok((rest, Ipv4Addr::new(a, b, c, d)))
}

/// `dec-octet = "0" / %x31-39 0*2DIGIT`, at most 255 (RFC 3986; no leading zeros).
fn dec_octet(input: &str) -> IResult<&str, u8> {
    let (rest, value) = unsigned(input)?;
    let digits = input.len() - rest.len();
    let leading_zero = digits > 1 && input.starts_with('0');
    match u8::try_from(value) {
        Ok(octet) if !leading_zero => Ok((rest, octet)),
        _ => Err(failure(input, ErrorKind::Verify)),
    }
}

/// `ip6 = word` that reads as an IPv6 address in any RFC 4291 text form.
pub(crate) fn ip6(input: &str) -> IResult<&str, Ipv6Addr> {
    map_res(word, str::parse::<Ipv6Addr>).parse(input)
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
        for bad in [
            "256.1.1.1",
            "1.2.3",
            "1.2.3.4.5",
            "01.2.3.4",
            "1..2.3",
            "1.2.3.4x",
            "",
        ] {
            assert!(value("ip-4", bad, ip4).is_err(), "{bad}");
        }
    }

    #[test]
    fn numbers() {
        assert_eq!(value("n", "12", unsigned), Ok(12));
        assert_eq!(value("e", "-4", signed), Ok(-4));
        assert!(value("n", "1x", unsigned).is_err());
        assert!(value("n", "99999999999999999999999", unsigned).is_err());
    }
}
