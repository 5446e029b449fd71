//! MPLS label stack entries, as mtr-packet reports them in `ttl-expired` replies.

use std::fmt;
use std::ops::Deref;

use nom::character::complete::char;
use nom::sequence::preceded;
use nom::{IResult, Parser};

use crate::error::MplsError;
use crate::protocol::grammar::unsigned;

/// One MPLS label stack entry (RFC 3032), as quoted by a router in an ICMP extension (RFC 4950).
///
/// ```
/// use mtrproto::Mpls;
/// let entry = Mpls::new(1234, 5, true, 7).unwrap();
/// assert_eq!((entry.label(), entry.traffic_class(), entry.bottom_of_stack(), entry.ttl()), (1234, 5, true, 7));
/// assert!(Mpls::new(1 << 20, 0, false, 1).is_err());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Mpls(u32);

impl Mpls {
    /// The largest label: labels are 20 bits.
    pub const MAX_LABEL: u32 = (1 << 20) - 1;
    /// The largest traffic class: 3 bits.
    pub const MAX_TRAFFIC_CLASS: u8 = 7;

    /// An entry, checking the label and traffic class against their bit widths.
    pub fn new(
        label: u32,
        traffic_class: u8,
        bottom_of_stack: bool,
        ttl: u8,
    ) -> Result<Mpls, MplsError> {
        check("label", label.into(), Mpls::MAX_LABEL)?;
        check(
            "traffic class",
            traffic_class.into(),
            Mpls::MAX_TRAFFIC_CLASS.into(),
        )?;
        Ok(Mpls(
            label << 12
                | u32::from(traffic_class) << 9
                | u32::from(bottom_of_stack) << 8
                | u32::from(ttl),
        ))
    }

    /// The entry from its 32-bit wire form: label (20 bits), traffic class (3), bottom of
    /// stack (1), TTL (8), most significant first.
    pub const fn from_wire(entry: u32) -> Mpls {
        Mpls(entry)
    }

    /// The 32-bit wire form; `to_be_bytes` of it is what a router puts in the packet.
    pub const fn to_wire(self) -> u32 {
        self.0
    }

    /// The 20-bit label.
    pub fn label(&self) -> u32 {
        self.0 >> 12
    }

    /// The 3-bit traffic class (formerly EXP).
    pub fn traffic_class(&self) -> u8 {
        ((self.0 >> 9) & 0b111) as u8
    }

    /// Whether this is the last entry of the stack.
    pub fn bottom_of_stack(&self) -> bool {
        self.0 & 0x100 != 0
    }

    /// The entry's TTL.
    pub fn ttl(&self) -> u8 {
        self.0 as u8
    }
}

impl fmt::Debug for Mpls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mpls")
            .field("label", &self.label())
            .field("traffic_class", &self.traffic_class())
            .field("bottom_of_stack", &self.bottom_of_stack())
            .field("ttl", &self.ttl())
            .finish()
    }
}

fn check(field: &'static str, value: u64, max: u32) -> Result<(), MplsError> {
    if value > u64::from(max) {
        return Err(MplsError::OutOfRange { field, value, max });
    }
    Ok(())
}

/// A label stack of at most [`MplsStack::MAX_ENTRIES`] entries, stored inline (no allocation).
///
/// Dereferences to a slice of [`Mpls`]. Empty when a reply carries no `mpls` argument.
#[derive(Clone, Copy, Default)]
pub struct MplsStack {
    entries: [Mpls; MplsStack::MAX_ENTRIES],
    len: u8,
}

impl MplsStack {
    /// mtr-packet reports at most 8 label stack entries.
    pub const MAX_ENTRIES: usize = 8;

    /// An empty stack.
    pub const fn new() -> MplsStack {
        MplsStack {
            entries: [Mpls(0); MplsStack::MAX_ENTRIES],
            len: 0,
        }
    }

    /// A stack holding `entries`, refused when there are more than [`MplsStack::MAX_ENTRIES`].
    pub fn from_entries(entries: &[Mpls]) -> Result<MplsStack, MplsError> {
        let mut stack = MplsStack::new();
        for entry in entries {
            stack.push(*entry)?;
        }
        Ok(stack)
    }

    /// Appends an entry.
    pub fn push(&mut self, entry: Mpls) -> Result<(), MplsError> {
        let slot =
            self.entries
                .get_mut(usize::from(self.len))
                .ok_or(MplsError::TooManyEntries {
                    max: MplsStack::MAX_ENTRIES,
                })?;
        *slot = entry;
        self.len += 1;
        Ok(())
    }

    /// Parses mtr-packet's list form, checking every range.
    ///
    /// `mpls-list = entry *("," entry)`;
    /// `entry = label "," traffic-class "," bottom-of-stack "," ttl`.
    ///
    /// ```
    /// use mtrproto::MplsStack;
    /// let stack = MplsStack::parse("1234,5,0,7,99,0,1,1").unwrap();
    /// assert_eq!(stack.len(), 2);
    /// assert!(stack[1].bottom_of_stack());
    /// assert!(MplsStack::parse("1,2,3").is_err());
    /// ```
    pub fn parse(text: &str) -> Result<MplsStack, MplsError> {
        let mut stack = MplsStack::new();
        let mut values = [0u64; 4];
        let mut count = 0usize;
        let mut rest = text;
        loop {
            let rule = if count == 0 { first_value } else { next_value };
            let (after, value) = rule(rest).map_err(|_| {
                let field = rest.strip_prefix(',').unwrap_or(rest).split(',').next();
                MplsError::NotANumber(field.unwrap_or_default().to_owned())
            })?;
            values[count % 4] = value;
            count += 1;
            if count.is_multiple_of(4) {
                stack.push(entry(values)?)?;
            }
            rest = after;
            if rest.is_empty() {
                break;
            }
        }
        if !count.is_multiple_of(4) {
            return Err(MplsError::NotGroupsOfFour(count));
        }
        Ok(stack)
    }

    /// Writes the list form that [`MplsStack::parse`] reads.
    pub(crate) fn write_list(&self, out: &mut impl fmt::Write) -> fmt::Result {
        for (i, e) in self.iter().enumerate() {
            if i > 0 {
                out.write_char(',')?;
            }
            write!(
                out,
                "{},{},{},{}",
                e.label(),
                e.traffic_class(),
                u8::from(e.bottom_of_stack()),
                e.ttl()
            )?;
        }
        Ok(())
    }
}

/// `value = 1*DIGIT`, the first of the list.
fn first_value(input: &str) -> IResult<&str, u64> {
    unsigned(input)
}

/// `"," value`, every later one.
fn next_value(input: &str) -> IResult<&str, u64> {
    preceded(char(','), unsigned).parse(input)
}

/// Builds one entry from its four values, checking each range.
fn entry([label, traffic_class, bottom, ttl]: [u64; 4]) -> Result<Mpls, MplsError> {
    check("label", label, Mpls::MAX_LABEL)?;
    check(
        "traffic class",
        traffic_class,
        Mpls::MAX_TRAFFIC_CLASS.into(),
    )?;
    check("bottom of stack", bottom, 1)?;
    check("ttl", ttl, u8::MAX.into())?;
    // The checks above make the entry fit its 32 bits exactly.
    Ok(Mpls(
        (label << 12 | traffic_class << 9 | bottom << 8 | ttl) as u32,
    ))
}

impl Deref for MplsStack {
    type Target = [Mpls];

    fn deref(&self) -> &[Mpls] {
        &self.entries[..usize::from(self.len)]
    }
}

impl PartialEq for MplsStack {
    fn eq(&self, other: &MplsStack) -> bool {
        **self == **other
    }
}

impl Eq for MplsStack {}

impl fmt::Debug for MplsStack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<'a> IntoIterator for &'a MplsStack {
    type Item = &'a Mpls;
    type IntoIter = std::slice::Iter<'a, Mpls>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_one_and_eight_entries() {
        let one = MplsStack::parse("1234,5,1,7").unwrap();
        assert_eq!(&*one, &[Mpls::new(1234, 5, true, 7).unwrap()]);
        let eight = ["1048575,7,0,255"; 8].join(",");
        let stack = MplsStack::parse(&eight).unwrap();
        assert_eq!(stack.len(), 8);
        assert_eq!(stack[7].label(), Mpls::MAX_LABEL);
        let mut listed = String::new();
        stack.write_list(&mut listed).unwrap();
        assert_eq!(listed, eight);
    }

    #[test]
    fn refuses_bad_lists() {
        assert_eq!(
            MplsStack::parse("1,2,3"),
            Err(MplsError::NotGroupsOfFour(3))
        );
        assert_eq!(
            MplsStack::parse("1048576,0,0,1"),
            Err(MplsError::OutOfRange {
                field: "label",
                value: 1048576,
                max: Mpls::MAX_LABEL
            })
        );
        assert!(matches!(
            MplsStack::parse("1,8,0,1"),
            Err(MplsError::OutOfRange {
                field: "traffic class",
                ..
            })
        ));
        assert!(matches!(
            MplsStack::parse("1,0,2,1"),
            Err(MplsError::OutOfRange {
                field: "bottom of stack",
                ..
            })
        ));
        assert!(matches!(
            MplsStack::parse("1,0,1,256"),
            Err(MplsError::OutOfRange { field: "ttl", .. })
        ));
        assert_eq!(
            MplsStack::parse(&["1,0,0,1"; 9].join(",")),
            Err(MplsError::TooManyEntries { max: 8 })
        );
        assert_eq!(
            MplsStack::parse("1,,0,1"),
            Err(MplsError::NotANumber("".into()))
        );
        assert_eq!(MplsStack::parse(""), Err(MplsError::NotANumber("".into())));
        assert_eq!(
            MplsStack::parse("1,0,0,1,"),
            Err(MplsError::NotANumber("".into()))
        );
        assert_eq!(
            MplsStack::parse("x"),
            Err(MplsError::NotANumber("x".into()))
        );
    }
}
