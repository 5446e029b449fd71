//! Error types of the protocol core.

use thiserror::Error;

/// A request value that cannot be sent to mtr-packet.
///
/// Returned when building a [`ProbeArgs`](crate::ProbeArgs), a [`Word`](crate::Word) or a
/// [`DeviceName`](crate::DeviceName); a value that exists can always be encoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ArgumentError {
    /// Text that must be one protocol word was empty.
    #[error("{what} must not be empty")]
    Empty {
        /// What the text was meant to be.
        what: &'static str,
    },
    /// Text held a space, a control character or other whitespace, which would split or
    /// end the request line.
    #[error("{what} must not contain whitespace or control characters")]
    BadCharacter {
        /// What the text was meant to be.
        what: &'static str,
    },
    /// Text longer than the protocol allows.
    #[error("{what} is {len} bytes long, at most {max} are allowed")]
    TooLong {
        /// What the text was meant to be.
        what: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The allowed maximum.
        max: usize,
    },
    /// A number outside the range mtr-packet accepts.
    #[error("{what} must be in {min}..={max}, got {value}")]
    OutOfRange {
        /// Which argument.
        what: &'static str,
        /// The value given.
        value: u64,
        /// Smallest accepted value.
        min: u64,
        /// Largest accepted value.
        max: u64,
    },
    /// An unknown-argument name that is one the parser types, so it would not read back as unknown.
    #[error("`{0}` is a typed reply argument: set its field instead")]
    TypedArgumentName(String),
    /// The local address is of another IP version than the target.
    #[error("local address {local} is not of the same IP version as target {target}")]
    AddressFamilyMismatch {
        /// The target address.
        target: std::net::IpAddr,
        /// The local address.
        local: std::net::IpAddr,
    },
    /// A flow was asked of a probe whose protocol cannot keep its flow fields fixed.
    #[error("a {protocol} probe cannot hold a flow ({why}): flows need protocol udp")]
    FlowNotHeld {
        /// The probe's protocol.
        protocol: crate::Protocol,
        /// Why it cannot.
        why: &'static str,
    },
    /// A flow was given with a `port` or `local_port` other than its own.
    #[error("{flow} sets port and local port itself: leave them unset or give the flow's")]
    FlowPortsDiffer {
        /// The flow.
        flow: crate::Flow,
    },
    /// A confidence MDA's stopping rule does not have.
    #[error("unknown confidence `{0}`: 95 or 99")]
    UnknownConfidence(String),
    /// A protocol name mtr-packet does not know.
    #[error("unknown protocol `{0}`: one of icmp, udp, tcp, sctp")]
    UnknownProtocol(String),
}

impl ArgumentError {
    /// `what` is `value`, outside `min..=max`.
    pub(crate) fn out_of_range(what: &'static str, value: u64, min: u64, max: u64) -> Self {
        ArgumentError::OutOfRange {
            what,
            value,
            min,
            max,
        }
    }
}

/// A line from or for mtr-packet that does not follow the protocol grammar.
///
/// Every variant concerns one line only: the stream goes on with the next line.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The line does not start with a token in `0..=2147483647` followed by a space.
    #[error("line does not start with a token in 0..=2147483647")]
    BadToken,
    /// No command or reply name follows the token.
    #[error("missing command or reply name after the token")]
    MissingName,
    /// The fields are not separated by single spaces, or a field holds a control character.
    #[error("malformed argument list: fields must be words separated by single spaces")]
    Malformed,
    /// An argument name came without a value.
    #[error("argument `{0}` has no value")]
    MissingValue(String),
    /// A known argument appeared twice.
    #[error("argument `{0}` given twice")]
    DuplicateArgument(&'static str),
    /// A known argument has a value of the wrong form.
    #[error("argument `{argument}` has an invalid value `{value}`")]
    InvalidValue {
        /// The argument's name.
        argument: &'static str,
        /// The value as received.
        value: String,
    },
    /// An `mpls` list that is not groups of four in range.
    #[error("invalid mpls list: {0}")]
    Mpls(#[from] MplsError),
    /// A request names a command this crate does not know.
    #[error("unknown command `{0}`")]
    UnknownCommand(String),
    /// A request carries an argument its command does not take.
    #[error("command does not take argument `{0}`")]
    UnknownArgument(String),
    /// A request lacks a required argument.
    #[error("missing required argument: {0}")]
    MissingArgument(&'static str),
    /// A request argument has a value that parses but is refused by validation.
    #[error(transparent)]
    Argument(#[from] ArgumentError),
}

/// Why an `mpls` list was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum MplsError {
    /// The number of values is not a multiple of four.
    #[error("{0} values, expected groups of four")]
    NotGroupsOfFour(usize),
    /// More label stack entries than mtr-packet reports.
    #[error("more than {max} label stack entries")]
    TooManyEntries {
        /// The limit.
        max: usize,
    },
    /// A value that is not a decimal number.
    #[error("`{0}` is not a decimal number")]
    NotANumber(String),
    /// A field out of its range.
    #[error("{field} {value} out of range (max {max})")]
    OutOfRange {
        /// Which field of the entry.
        field: &'static str,
        /// The value received.
        value: u64,
        /// Its largest allowed value.
        max: u32,
    },
}

/// A line the [`LineFramer`](crate::LineFramer) could not hand out.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The line grew past the maximum length; its bytes up to the next newline are dropped.
    #[error("line longer than {max} bytes dropped")]
    LineTooLong {
        /// The framer's maximum line length.
        max: usize,
    },
    /// The line is not valid UTF-8.
    #[error("line is not valid UTF-8")]
    InvalidUtf8,
    /// The stream ended in the middle of a line.
    #[error("stream ended inside a line of {len} bytes")]
    Unterminated {
        /// Bytes of the unfinished line.
        len: usize,
    },
}

/// A command line [`split_command`](crate::split_command) could not split into words.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("cannot split the command line {value:?}: {reason}")]
pub struct CommandLineError {
    /// The command line.
    pub value: String,
    /// What is wrong with it.
    pub reason: String,
}
