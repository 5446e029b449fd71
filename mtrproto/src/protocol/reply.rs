//! Replies from mtr-packet: `TOKEN NAME [ARG-NAME ARG-VALUE]...`.

use std::fmt::Write as _;
use std::net::IpAddr;

use crate::error::{ArgumentError, ParseError};
use crate::protocol::grammar::{self, Arguments};
use crate::protocol::mpls::MplsStack;
use crate::protocol::names::names;
use crate::protocol::token::Token;
use crate::protocol::word::Word;

/// The name of a reply, one variant per name mtr-packet 0.92 to 0.96 use (each release's
/// names: `mtrproto_blocking::compat`).
///
/// Names this crate does not know are kept as [`ReplyKind::Other`]; the parser never puts a
/// known name there.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ReplyKind<'a> {
    /// `reply`: the target answered.
    Reply,
    /// `ttl-expired`: a router on the path answered.
    TtlExpired,
    /// `no-route`: mtr 0.93 to 0.95's name for a local routing error and for a router's
    /// destination-unreachable (0.92 uses it for local routing errors only).
    NoRoute,
    /// `no-route-host`: mtr 0.96's name for a host unreachable.
    NoRouteHost,
    /// `no-route-network`: mtr 0.96's name for a network unreachable.
    NoRouteNetwork,
    /// `no-reply`: the probe's timeout passed.
    NoReply,
    /// `network-down`.
    NetworkDown,
    /// `host-down` (mtr 0.96).
    HostDown,
    /// `permission-denied`.
    PermissionDenied,
    /// `address-in-use`.
    AddressInUse,
    /// `address-not-available`.
    AddressNotAvailable,
    /// `probes-exhausted`: mtr-packet's in-flight table is full.
    ProbesExhausted,
    /// `invalid-argument`, often with a `reason`.
    InvalidArgument,
    /// `unexpected-error`, with an `errno`.
    UnexpectedError,
    /// `wait-tcp-respone-timeout` (spelled so by mtr-packet 0.96).
    WaitTcpResponseTimeout,
    /// `unknown-command`.
    UnknownCommand,
    /// `feature-support`, with `support`.
    FeatureSupport,
    /// `command-parse-error` (token 0).
    CommandParseError,
    /// `command-buffer-overflow` (token 0): a request line was too long.
    CommandBufferOverflow,
    /// A name this crate does not know.
    Other(Word<'a>),
}

impl<'a> ReplyKind<'a> {
    names!(ReplyKind<'static>;
        Reply => "reply",
        TtlExpired => "ttl-expired",
        NoRoute => "no-route",
        NoRouteHost => "no-route-host",
        NoRouteNetwork => "no-route-network",
        NoReply => "no-reply",
        NetworkDown => "network-down",
        HostDown => "host-down",
        PermissionDenied => "permission-denied",
        AddressInUse => "address-in-use",
        AddressNotAvailable => "address-not-available",
        ProbesExhausted => "probes-exhausted",
        InvalidArgument => "invalid-argument",
        UnexpectedError => "unexpected-error",
        WaitTcpResponseTimeout => "wait-tcp-respone-timeout",
        UnknownCommand => "unknown-command",
        FeatureSupport => "feature-support",
        CommandParseError => "command-parse-error",
        CommandBufferOverflow => "command-buffer-overflow",
    );

    /// The kind for a reply name.
    pub fn from_name(name: Word<'a>) -> ReplyKind<'a> {
        ReplyKind::known_from_name(name.as_str()).unwrap_or(ReplyKind::Other(name))
    }

    /// Whether a probe's reply says that mtr-packet did not send it, or could not, for a
    /// reason of this host rather than of the network: `invalid-argument`,
    /// `permission-denied`, `address-in-use`, `address-not-available`, `unexpected-error`
    /// (mtr 0.92 to 0.96 stop with an error on each, in `handle_reply_errors`).
    ///
    /// `probes-exhausted` is not one: the helper's table is full for now, and the session
    /// sends the probe again. Network outcomes (`no-reply`, the unreachable kinds) and
    /// unknown names are not either.
    ///
    /// ```
    /// use mtrproto::ReplyKind;
    /// assert!(ReplyKind::InvalidArgument.is_refusal());
    /// assert!(!ReplyKind::ProbesExhausted.is_refusal());
    /// assert!(!ReplyKind::NoRoute.is_refusal());
    /// ```
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            ReplyKind::InvalidArgument
                | ReplyKind::PermissionDenied
                | ReplyKind::AddressInUse
                | ReplyKind::AddressNotAvailable
                | ReplyKind::UnexpectedError
        )
    }

    /// The name as mtr-packet writes it.
    pub fn as_str(&self) -> &str {
        match self {
            ReplyKind::Other(name) => name.as_str(),
            known => known.known_name().unwrap_or_default(),
        }
    }

    /// Detaches an [`Other`](ReplyKind::Other) name from the line it was parsed from.
    pub fn into_owned(self) -> ReplyKind<'static> {
        match self {
            ReplyKind::Other(name) => ReplyKind::Other(name.into_owned()),
            known => known.known_static().unwrap_or(ReplyKind::Reply),
        }
    }
}

impl std::fmt::Display for ReplyKind<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One reply line, parsed.
///
/// Text fields borrow from the line; [`Reply::into_owned`] detaches them.
///
/// ```
/// use mtrproto::{Reply, ReplyKind};
/// let reply = Reply::parse("1 ttl-expired ip-4 198.18.0.101 round-trip-time 375 mpls 1234,5,1,7")?;
/// assert_eq!(reply.token.get(), 1);
/// assert_eq!(reply.kind, ReplyKind::TtlExpired);
/// assert_eq!(reply.address, Some("198.18.0.101".parse()?));
/// assert_eq!(reply.round_trip_time_us, Some(375));
/// assert_eq!(reply.mpls[0].label(), 1234);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply<'a> {
    /// The request's token, or [`Token::UNSOLICITED`].
    pub token: Token,
    /// The reply name.
    pub kind: ReplyKind<'a>,
    /// `ip-4` / `ip-6`: who answered.
    pub address: Option<IpAddr>,
    /// `round-trip-time`, in microseconds, as written.
    ///
    /// Negative when mtr-packet's clock stepped back while the probe was out: it prints the
    /// unsigned difference of two `gettimeofday` readings with `%d`.
    /// [`ProbeResult`](crate::ProbeResult) turns such a value into an unusable time.
    pub round_trip_time_us: Option<i64>,
    /// `mpls`: the label stack a router quoted; empty when absent.
    pub mpls: MplsStack,
    /// `reason` of an `invalid-argument`.
    pub reason: Option<Word<'a>>,
    /// `errno` of an `unexpected-error`.
    pub errno: Option<i64>,
    /// `support` of a `feature-support`: `ok`, `no`, or the version text.
    pub support: Option<Word<'a>>,
    unknown: Vec<(Word<'a>, Word<'a>)>,
}

impl<'a> Reply<'a> {
    /// A reply with no arguments.
    pub fn new(token: Token, kind: ReplyKind<'a>) -> Reply<'a> {
        Reply {
            token,
            kind,
            address: None,
            round_trip_time_us: None,
            mpls: MplsStack::new(),
            reason: None,
            errno: None,
            support: None,
            unknown: Vec::new(),
        }
    }

    /// Parses one line (without its newline).
    ///
    /// `reply = token SP reply-name *(SP argument)`. Known arguments are typed and checked;
    /// unknown ones are kept. Allocates nothing unless the line has unknown arguments or
    /// is refused.
    pub fn parse(line: &'a str) -> Result<Reply<'a>, ParseError> {
        let (token, name, args) = grammar::head(line)?;
        let mut reply = Reply::new(token, ReplyKind::from_name(Word::parsed(name)));
        for argument in Arguments::new(args) {
            let (name, value) = argument?;
            reply.set_argument(name, value)?;
        }
        Ok(reply)
    }

    /// Types one argument into its field.
    fn set_argument(&mut self, name: &'a str, value: &'a str) -> Result<(), ParseError> {
        match name {
            "ip-4" => set_once(
                &mut self.address,
                "ip-4/ip-6",
                IpAddr::V4(grammar::value("ip-4", value, grammar::ip4)?),
            ),
            "ip-6" => set_once(
                &mut self.address,
                "ip-4/ip-6",
                IpAddr::V6(grammar::value("ip-6", value, grammar::ip6)?),
            ),
            "round-trip-time" => set_once(
                &mut self.round_trip_time_us,
                "round-trip-time",
                grammar::value("round-trip-time", value, grammar::signed)?,
            ),
            "mpls" => {
                if !self.mpls.is_empty() {
                    return Err(ParseError::DuplicateArgument("mpls"));
                }
                self.mpls = MplsStack::parse(value)?;
                Ok(())
            }
            "reason" => set_once(&mut self.reason, "reason", Word::parsed(value)),
            "errno" => set_once(
                &mut self.errno,
                "errno",
                grammar::value("errno", value, grammar::signed)?,
            ),
            "support" => set_once(&mut self.support, "support", Word::parsed(value)),
            _ => {
                self.unknown.push((Word::parsed(name), Word::parsed(value)));
                Ok(())
            }
        }
    }

    /// Arguments the parser does not type, in the order received.
    pub fn unknown_args(&self) -> &[(Word<'a>, Word<'a>)] {
        &self.unknown
    }

    /// Adds an argument this crate does not type; refuses the names it does type.
    pub fn push_unknown_arg(
        &mut self,
        name: Word<'a>,
        value: Word<'a>,
    ) -> Result<(), ArgumentError> {
        // A name is typed when set_argument does not keep it as unknown.
        let mut typed = Reply::new(Token::UNSOLICITED, ReplyKind::Reply);
        let _ = typed.set_argument(name.as_str(), value.as_str());
        if typed.unknown.is_empty() {
            return Err(ArgumentError::TypedArgumentName(name.as_str().to_owned()));
        }
        self.unknown.push((name, value));
        Ok(())
    }

    /// Appends the line, with its newline, to `out`. [`Reply::parse`] reads it back equal.
    pub fn encode(&self, out: &mut String) {
        // Writing to a String cannot fail.
        let _ = write!(out, "{} {}", self.token, self.kind);
        match self.address {
            Some(IpAddr::V4(a)) => {
                let _ = write!(out, " ip-4 {a}");
            }
            Some(IpAddr::V6(a)) => {
                let _ = write!(out, " ip-6 {a}");
            }
            None => {}
        }
        if let Some(rtt) = self.round_trip_time_us {
            let _ = write!(out, " round-trip-time {rtt}");
        }
        if !self.mpls.is_empty() {
            out.push_str(" mpls ");
            let _ = self.mpls.write_list(out);
        }
        if let Some(reason) = &self.reason {
            let _ = write!(out, " reason {reason}");
        }
        if let Some(errno) = self.errno {
            let _ = write!(out, " errno {errno}");
        }
        if let Some(support) = &self.support {
            let _ = write!(out, " support {support}");
        }
        for (name, value) in &self.unknown {
            let _ = write!(out, " {name} {value}");
        }
        out.push('\n');
    }

    /// Detaches every text field from the line.
    pub fn into_owned(self) -> Reply<'static> {
        Reply {
            token: self.token,
            kind: self.kind.into_owned(),
            address: self.address,
            round_trip_time_us: self.round_trip_time_us,
            mpls: self.mpls,
            reason: self.reason.map(Word::into_owned),
            errno: self.errno,
            support: self.support.map(Word::into_owned),
            unknown: self
                .unknown
                .into_iter()
                .map(|(n, v)| (n.into_owned(), v.into_owned()))
                .collect(),
        }
    }
}

/// Fills a field that may appear once per line.
fn set_once<T>(field: &mut Option<T>, name: &'static str, value: T) -> Result<(), ParseError> {
    if field.is_some() {
        return Err(ParseError::DuplicateArgument(name));
    }
    *field = Some(value);
    Ok(())
}
