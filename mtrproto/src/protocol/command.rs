//! Requests to mtr-packet: `send-probe` and `check-support`, typed and validated.

use std::fmt;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::num::{NonZeroU8, NonZeroU32};
use std::time::Duration;

use crate::error::{ArgumentError, ParseError};
use crate::protocol::flow::Flow;
use crate::protocol::grammar::{self, Arguments};
use crate::protocol::names::names;
use crate::protocol::token::Token;
use crate::protocol::word::{Word, check_word};

/// The protocol a probe uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Protocol {
    /// ICMP echo request (mtr-packet's default).
    #[default]
    Icmp,
    /// UDP datagram.
    Udp,
    /// TCP SYN.
    Tcp,
    /// SCTP INIT.
    Sctp,
}

impl Protocol {
    /// Every protocol, in mtr-packet's order.
    pub const ALL: [Protocol; 4] = [Protocol::Icmp, Protocol::Udp, Protocol::Tcp, Protocol::Sctp];

    names!(Protocol;
        Icmp => "icmp",
        Udp => "udp",
        Tcp => "tcp",
        Sctp => "sctp",
    );

    /// The name mtr-packet uses.
    pub fn as_str(self) -> &'static str {
        self.known_name().unwrap_or_default()
    }

    /// The protocol of a name, if known.
    pub fn from_name(name: &str) -> Option<Protocol> {
        Protocol::known_from_name(name)
    }
}

/// Parses mtr-packet's name of a protocol, as command lines take it.
///
/// ```
/// use mtrproto::Protocol;
/// assert_eq!("udp".parse(), Ok(Protocol::Udp));
/// assert!("quic".parse::<Protocol>().is_err());
/// ```
impl std::str::FromStr for Protocol {
    type Err = ArgumentError;

    fn from_str(name: &str) -> Result<Protocol, ArgumentError> {
        Protocol::from_name(name).ok_or_else(|| ArgumentError::UnknownProtocol(name.to_owned()))
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A feature to ask about with `check-support`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Feature {
    /// `version`: the answer is the version text.
    Version,
    /// `send-probe`.
    SendProbe,
    /// `ip-4`.
    Ip4,
    /// `ip-6`.
    Ip6,
    /// `icmp`.
    Icmp,
    /// `udp`.
    Udp,
    /// `tcp`.
    Tcp,
    /// `sctp`.
    Sctp,
    /// `mark` (Linux `SO_MARK`).
    Mark,
    /// Any other name; mtr-packet answers `no` to names it does not know.
    Other(Word<'static>),
}

impl Feature {
    names!(Feature;
        Version => "version",
        SendProbe => "send-probe",
        Ip4 => "ip-4",
        Ip6 => "ip-6",
        Icmp => "icmp",
        Udp => "udp",
        Tcp => "tcp",
        Sctp => "sctp",
        Mark => "mark",
    );

    /// The feature of a name: a known one, or a checked [`Feature::Other`].
    ///
    /// ```
    /// use mtrproto::Feature;
    /// assert_eq!(Feature::from_name("udp"), Ok(Feature::Udp));
    /// assert_eq!(Feature::from_name("quic")?.as_str(), "quic");
    /// assert!(Feature::from_name("udp tcp").is_err());
    /// # Ok::<(), mtrproto::ArgumentError>(())
    /// ```
    pub fn from_name(name: &str) -> Result<Feature, ArgumentError> {
        match Feature::known_from_name(name) {
            Some(feature) => Ok(feature),
            None => Ok(Feature::Other(Word::new(name)?)),
        }
    }

    /// The name mtr-packet uses.
    pub fn as_str(&self) -> &str {
        match self {
            Feature::Other(word) => word.as_str(),
            known => known.known_name().unwrap_or_default(),
        }
    }
}

/// A network interface name for `local-device`: 1 to 15 bytes, no whitespace, `/` or `:`
/// (Linux's rule for interface names). A boxed `str`, 8 bytes smaller than a `String`: every
/// [`ProbeArgs`] has room for one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DeviceName(Box<str>);

impl DeviceName {
    /// Linux's `IFNAMSIZ` minus the terminating NUL.
    pub const MAX_LEN: usize = 15;

    /// Checks a device name.
    ///
    /// ```
    /// use mtrproto::DeviceName;
    /// assert!(DeviceName::new("lo").is_ok());
    /// assert!(DeviceName::new("").is_err());
    /// assert!(DeviceName::new("eth0 ttl").is_err());
    /// assert!(DeviceName::new("a-very-long-interface").is_err());
    /// ```
    pub fn new(name: &str) -> Result<DeviceName, ArgumentError> {
        const WHAT: &str = "local device name";
        check_word(WHAT, name, DeviceName::MAX_LEN)?;
        if name.contains(['/', ':']) || name == "." || name == ".." {
            return Err(ArgumentError::BadCharacter { what: WHAT });
        }
        Ok(DeviceName(name.into()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The arguments of one `send-probe`, each checked when set.
///
/// A value of this type always encodes to a single line that mtr-packet can read.
///
/// ```
/// use mtrproto::{ProbeArgs, Protocol};
/// use std::time::Duration;
/// let args = ProbeArgs::new("127.0.0.1".parse()?)
///     .protocol(Protocol::Udp)
///     .port(9)?
///     .ttl(3)?
///     .timeout(Duration::from_millis(1500))?;
/// let mut line = Vec::new();
/// args.encode(mtrproto::Token::new(42).unwrap(), &mut line);
/// assert_eq!(line, b"42 send-probe ip-4 127.0.0.1 protocol udp port 9 timeout 2 ttl 3\n");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProbeArgs {
    target: IpAddr,
    protocol: Protocol,
    port: Option<u16>,
    local_addr: Option<IpAddr>,
    local_port: Option<u16>,
    local_device: Option<DeviceName>,
    /// Never 0 (its range starts at 1): the niche keeps `ProbeArgs` at 80 bytes.
    timeout_secs: Option<NonZeroU32>,
    ttl: Option<NonZeroU8>,
    size: Option<u16>,
    bit_pattern: Option<u8>,
    tos: Option<u8>,
    mark: Option<u32>,
}

/// A [`ProbeArgs`] without its target and TTL, packed in 56 bytes where the args take 80:
/// what a [`Tracer`](crate::Tracer) keeps (its target is its figures', the TTL each
/// probe's), and a campaign holds thousands of tracers. The optional numbers are plain
/// values with a bit each in `set`: an `Option` of each would take twice their room.
#[derive(Debug, Clone)]
pub(crate) struct ProbeTemplate {
    protocol: Protocol,
    local_addr: Option<IpAddr>,
    local_device: Option<DeviceName>,
    timeout_secs: Option<NonZeroU32>,
    mark: u32,
    port: u16,
    local_port: u16,
    size: u16,
    bit_pattern: u8,
    tos: u8,
    /// Which of the plain values are set: the `ProbeTemplate::*_SET` bits.
    set: u8,
}

impl ProbeTemplate {
    const PORT_SET: u8 = 1;
    const LOCAL_PORT_SET: u8 = 2;
    const SIZE_SET: u8 = 4;
    const BIT_PATTERN_SET: u8 = 8;
    const TOS_SET: u8 = 16;
    const MARK_SET: u8 = 32;

    /// `value` if its bit is set.
    fn get<T>(&self, bit: u8, value: T) -> Option<T> {
        (self.set & bit != 0).then_some(value)
    }

    /// The args it was made of ([`ProbeArgs::template`]), to `target` (theirs) at `ttl`.
    pub(crate) fn args(&self, target: IpAddr, ttl: NonZeroU8) -> ProbeArgs {
        ProbeArgs {
            target,
            protocol: self.protocol,
            port: self.get(Self::PORT_SET, self.port),
            local_addr: self.local_addr,
            local_port: self.get(Self::LOCAL_PORT_SET, self.local_port),
            local_device: self.local_device.clone(),
            timeout_secs: self.timeout_secs,
            ttl: Some(ttl),
            size: self.get(Self::SIZE_SET, self.size),
            bit_pattern: self.get(Self::BIT_PATTERN_SET, self.bit_pattern),
            tos: self.get(Self::TOS_SET, self.tos),
            mark: self.get(Self::MARK_SET, self.mark),
        }
    }
}

/// Every field of a probe request as a plain value, unchecked: what
/// [`ProbeArgs::from_fields`] checks and [`ProbeArgs::fields`] gives back. Each field is
/// named like the [`ProbeArgs`] setter that checks it; `None` leaves mtr-packet's default.
///
/// ```
/// use mtrproto::{ProbeArgs, ProbeFields, Protocol};
/// let fields = ProbeFields {
///     protocol: Protocol::Udp,
///     port: Some(9),
///     ttl: Some(3),
///     ..ProbeFields::new("127.0.0.1".parse()?)
/// };
/// let args = ProbeArgs::from_fields(fields.clone())?;
/// assert_eq!(args, ProbeArgs::new("127.0.0.1".parse()?).protocol(Protocol::Udp).port(9)?.ttl(3)?);
/// assert_eq!(args.fields(), fields);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProbeFields {
    /// The target address.
    pub target: IpAddr,
    /// See [`ProbeArgs::protocol`].
    pub protocol: Protocol,
    /// See [`ProbeArgs::port`].
    pub port: Option<u16>,
    /// See [`ProbeArgs::local_addr`].
    pub local_addr: Option<IpAddr>,
    /// See [`ProbeArgs::local_port`].
    pub local_port: Option<u16>,
    /// See [`ProbeArgs::local_device`].
    pub local_device: Option<DeviceName>,
    /// See [`ProbeArgs::timeout`]: rounded up to whole seconds when checked.
    pub timeout: Option<Duration>,
    /// See [`ProbeArgs::ttl`].
    pub ttl: Option<u8>,
    /// See [`ProbeArgs::size`].
    pub size: Option<u16>,
    /// See [`ProbeArgs::bit_pattern`].
    pub bit_pattern: Option<u8>,
    /// See [`ProbeArgs::tos`].
    pub tos: Option<u8>,
    /// See [`ProbeArgs::mark`].
    pub mark: Option<u32>,
    /// See [`ProbeArgs::flow`]: sets `port` and `local_port`, which must then be `None` or
    /// the flow's. [`ProbeArgs::fields`] gives those ports back, with `flow` `None`.
    pub flow: Option<Flow>,
}

impl ProbeFields {
    /// An ICMP probe to `target`, every other field left to mtr-packet's default.
    pub fn new(target: IpAddr) -> ProbeFields {
        ProbeFields {
            target,
            protocol: Protocol::Icmp,
            port: None,
            local_addr: None,
            local_port: None,
            local_device: None,
            timeout: None,
            ttl: None,
            size: None,
            bit_pattern: None,
            tos: None,
            mark: None,
            flow: None,
        }
    }
}

impl ProbeArgs {
    /// mtr-packet's timeout when none is given.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
    /// The smallest local port mtr-packet accepts.
    pub const MIN_LOCAL_PORT: u16 = 1024;
    /// The largest timeout: mtr-packet stores it in a C `int`.
    pub const MAX_TIMEOUT_SECS: u32 = i32::MAX as u32;
    /// The largest IPv4 `size`: mtr-packet builds each probe, IP header included, in a
    /// 9000-byte buffer (`PACKET_BUFFER_SIZE` in `packet/probe.h`, releases 0.92 to 0.96)
    /// and answers `invalid-argument` past it.
    pub const MAX_SIZE_IPV4: u16 = 9000;
    /// The largest IPv6 `size`: the same 9000-byte buffer, without the 40-byte IPv6 header
    /// the kernel adds (`compute_packet_size` in `packet/construct_unix.c`). mtr-packet
    /// without raw sockets (ICMP datagram sockets) counts that header in, and refuses sizes
    /// past 9000 with `invalid-argument`.
    pub const MAX_SIZE_IPV6: u16 = 9040;

    /// An ICMP probe to `target` with mtr-packet's defaults for everything else.
    pub fn new(target: IpAddr) -> ProbeArgs {
        ProbeArgs {
            target,
            protocol: Protocol::Icmp,
            port: None,
            local_addr: None,
            local_port: None,
            local_device: None,
            timeout_secs: None,
            ttl: None,
            size: None,
            bit_pattern: None,
            tos: None,
            mark: None,
        }
    }

    /// Sets the protocol (`protocol`).
    pub fn protocol(mut self, protocol: Protocol) -> ProbeArgs {
        self.protocol = protocol;
        self
    }

    /// Sets the destination port (`port`), 1..=65535, for UDP, TCP and SCTP.
    ///
    /// With UDP, prefer a port below 33000: mtr-packet 0.95 matches UDP replies by
    /// destination port first, and its own sequence numbers live in 33000..=65535.
    pub fn port(mut self, port: u16) -> Result<ProbeArgs, ArgumentError> {
        range("port", port.into(), 1, u16::MAX.into())?;
        self.port = Some(port);
        Ok(self)
    }

    /// Sets the source address (`local-ip-4` / `local-ip-6`); it must be of the target's IP version.
    pub fn local_addr(mut self, local: IpAddr) -> Result<ProbeArgs, ArgumentError> {
        if local.is_ipv4() != self.target.is_ipv4() {
            return Err(ArgumentError::AddressFamilyMismatch {
                target: self.target,
                local,
            });
        }
        self.local_addr = Some(local);
        Ok(self)
    }

    /// Sets the source port (`local-port`), which mtr-packet refuses below 1024.
    pub fn local_port(mut self, port: u16) -> Result<ProbeArgs, ArgumentError> {
        range(
            "local port",
            port.into(),
            ProbeArgs::MIN_LOCAL_PORT.into(),
            u16::MAX.into(),
        )?;
        self.local_port = Some(port);
        Ok(self)
    }

    /// Sends the probe in `flow`: its fixed `local-port` and `port`, so that every probe of
    /// the flow takes the same path through load balancers (see [`Flow`]).
    ///
    /// Only UDP probes can hold a flow: set the protocol first. Refused, saying why, for
    /// the others, whose flow fields change with every probe. A later
    /// [`port`](ProbeArgs::port) or [`local_port`](ProbeArgs::local_port) replaces the
    /// flow's.
    ///
    /// ```
    /// use mtrproto::{ArgumentError, Flow, ProbeArgs, Protocol};
    /// let icmp = ProbeArgs::new("127.0.0.1".parse()?);
    /// let refused = icmp.clone().flow(Flow::new(1)?);
    /// assert!(matches!(refused, Err(ArgumentError::FlowNotHeld { protocol: Protocol::Icmp, .. })));
    /// assert!(icmp.protocol(Protocol::Udp).flow(Flow::new(1)?).is_ok());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn flow(mut self, flow: Flow) -> Result<ProbeArgs, ArgumentError> {
        if let Some(why) = Flow::refusal(self.protocol) {
            return Err(ArgumentError::FlowNotHeld {
                protocol: self.protocol,
                why,
            });
        }
        self.port = Some(flow.port());
        self.local_port = Some(flow.local_port());
        Ok(self)
    }

    /// The flow this UDP probe's ports are, if they are one ([`Flow::from_ports`]).
    pub fn fixed_flow(&self) -> Option<Flow> {
        match (self.protocol, self.local_port, self.port) {
            (Protocol::Udp, Some(local), Some(port)) => Flow::from_ports(local, port),
            _ => None,
        }
    }

    /// The ports of a UDP probe that names `local-port` or `port`, as `(local_port, port)`;
    /// `None` for a UDP probe naming neither and for the other protocols.
    ///
    /// mtr-packet then tells the probe's answer apart only by the sequence it numbers
    /// itself (in the source port, the destination port or the checksum), and every
    /// mtr-packet's raw socket sees every answer: two helpers probing one target with these
    /// ports may each take the other's answer as their own. A UDP probe naming neither
    /// port sends from mtr-packet's pid; ICMP probes carry it as their identifier.
    ///
    /// ```
    /// use mtrproto::{Flow, ProbeArgs, Protocol};
    /// let udp = ProbeArgs::new("127.0.0.1".parse()?).protocol(Protocol::Udp);
    /// assert_eq!(udp.fixed_udp_ports(), None);
    /// assert_eq!(udp.clone().port(9)?.fixed_udp_ports(), Some((None, Some(9))));
    /// let flow = udp.flow(Flow::new(2)?)?;
    /// assert_eq!(flow.fixed_udp_ports(), Some((Some(3002), Some(Flow::PORT))));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn fixed_udp_ports(&self) -> Option<(Option<u16>, Option<u16>)> {
        let named = self.local_port.is_some() || self.port.is_some();
        (self.protocol == Protocol::Udp && named).then_some((self.local_port, self.port))
    }

    /// Whether mtr-packet matches a router's answer to this probe (`ttl-expired`,
    /// `no-route`) by its sequence alone: TCP and SCTP probes, whose source port is the
    /// sequence. An ICMP error quoting such a probe goes to whatever probe of the reading
    /// mtr-packet has that sequence, whatever its target or protocol (releases 0.92 to
    /// 0.96, `packet/deconstruct_unix.c`, `handle_inner_ip4_packet`); every mtr-packet
    /// numbers from 33000 and every raw socket sees every answer, so two helpers with
    /// probes in flight take each other's. The target's own answer (a connection) is not
    /// shared.
    ///
    /// ```
    /// use mtrproto::{ProbeArgs, Protocol};
    /// let probe = ProbeArgs::new("127.0.0.1".parse()?);
    /// assert!(!probe.clone().matched_by_sequence_alone());
    /// assert!(probe.protocol(Protocol::Tcp).matched_by_sequence_alone());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn matched_by_sequence_alone(&self) -> bool {
        matches!(self.protocol, Protocol::Tcp | Protocol::Sctp)
    }

    /// Sets the interface to send from (`local-device`; newer mtr-packet only).
    pub fn local_device(mut self, device: DeviceName) -> ProbeArgs {
        self.local_device = Some(device);
        self
    }

    /// Sets how long mtr-packet waits for an answer (`timeout`).
    ///
    /// mtr-packet counts whole seconds, so the timeout is rounded **up** to the next whole
    /// second, and at least one: a probe never gets less time than asked, and 1.2 s becomes
    /// 2 s. Refused above `i32::MAX` seconds.
    pub fn timeout(self, timeout: Duration) -> Result<ProbeArgs, ArgumentError> {
        let whole = timeout
            .as_secs()
            .saturating_add(u64::from(timeout.subsec_nanos() > 0))
            .max(1);
        // Checked before narrowing, so that an error names the seconds asked for.
        range("timeout", whole, 1, ProbeArgs::MAX_TIMEOUT_SECS.into())?;
        self.timeout_secs(u32::try_from(whole).unwrap_or(u32::MAX))
    }

    /// Sets the timeout in whole seconds, `1..=i32::MAX`.
    pub fn timeout_secs(mut self, secs: u32) -> Result<ProbeArgs, ArgumentError> {
        range(
            "timeout",
            secs.into(),
            1,
            ProbeArgs::MAX_TIMEOUT_SECS.into(),
        )?;
        self.timeout_secs = NonZeroU32::new(secs);
        Ok(self)
    }

    /// Sets the IP TTL / hop limit (`ttl`), 1..=255.
    pub fn ttl(mut self, ttl: u8) -> Result<ProbeArgs, ArgumentError> {
        let ttl = NonZeroU8::new(ttl).ok_or(ArgumentError::OutOfRange {
            what: "ttl",
            value: 0,
            min: 1,
            max: 255,
        })?;
        self.ttl = Some(ttl);
        Ok(self)
    }

    /// Sets the packet size in bytes, IP header included (`size`), at most
    /// [`MAX_SIZE_IPV4`](ProbeArgs::MAX_SIZE_IPV4) or
    /// [`MAX_SIZE_IPV6`](ProbeArgs::MAX_SIZE_IPV6) by the target's IP version.
    ///
    /// mtr-packet raises a size smaller than the headers to their size, and TCP and SCTP
    /// probes ignore it; the limit applies to every protocol all the same, so that it does
    /// not depend on the order of the setters.
    ///
    /// ```
    /// use mtrproto::{ArgumentError, ProbeArgs};
    /// let args = ProbeArgs::new("127.0.0.1".parse()?);
    /// assert!(args.clone().size(9000).is_ok());
    /// assert!(matches!(args.size(9001), Err(ArgumentError::OutOfRange { max: 9000, .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn size(mut self, size: u16) -> Result<ProbeArgs, ArgumentError> {
        let (what, max) = match self.target {
            IpAddr::V4(_) => ("IPv4 packet size", ProbeArgs::MAX_SIZE_IPV4),
            IpAddr::V6(_) => ("IPv6 packet size", ProbeArgs::MAX_SIZE_IPV6),
        };
        range(what, size.into(), 0, max.into())?;
        self.size = Some(size);
        Ok(self)
    }

    /// Sets the payload fill byte (`bit-pattern`).
    pub fn bit_pattern(mut self, pattern: u8) -> ProbeArgs {
        self.bit_pattern = Some(pattern);
        self
    }

    /// Sets the IPv4 TOS / IPv6 traffic class (`tos`).
    pub fn tos(mut self, tos: u8) -> ProbeArgs {
        self.tos = Some(tos);
        self
    }

    /// Sets the Linux socket mark (`mark`, `SO_MARK`).
    pub fn mark(mut self, mark: u32) -> ProbeArgs {
        self.mark = Some(mark);
        self
    }

    /// Checks every field through its setter; the first refusal is the error.
    pub fn from_fields(fields: ProbeFields) -> Result<ProbeArgs, ArgumentError> {
        let mut args = ProbeArgs::new(fields.target).protocol(fields.protocol);
        if let Some(port) = fields.port {
            args = args.port(port)?;
        }
        if let Some(local) = fields.local_addr {
            args = args.local_addr(local)?;
        }
        if let Some(port) = fields.local_port {
            args = args.local_port(port)?;
        }
        if let Some(flow) = fields.flow {
            let theirs = |given: Option<u16>, flow_port| given.is_none_or(|p| p == flow_port);
            if !theirs(fields.port, flow.port()) || !theirs(fields.local_port, flow.local_port()) {
                return Err(ArgumentError::FlowPortsDiffer { flow });
            }
            args = args.flow(flow)?;
        }
        if let Some(device) = fields.local_device {
            args = args.local_device(device);
        }
        if let Some(timeout) = fields.timeout {
            args = args.timeout(timeout)?;
        }
        if let Some(ttl) = fields.ttl {
            args = args.ttl(ttl)?;
        }
        if let Some(size) = fields.size {
            args = args.size(size)?;
        }
        args.bit_pattern = fields.bit_pattern;
        args.tos = fields.tos;
        args.mark = fields.mark;
        Ok(args)
    }

    /// Every field as a plain value, named like its setter; the timeout in whole seconds.
    pub fn fields(&self) -> ProbeFields {
        ProbeFields {
            target: self.target,
            protocol: self.protocol,
            port: self.port,
            local_addr: self.local_addr,
            local_port: self.local_port,
            local_device: self.local_device.clone(),
            timeout: self
                .timeout_secs
                .map(|s| Duration::from_secs(s.get().into())),
            ttl: self.ttl.map(NonZeroU8::get),
            size: self.size,
            bit_pattern: self.bit_pattern,
            tos: self.tos,
            mark: self.mark,
            flow: None,
        }
    }

    /// The target address.
    pub fn target(&self) -> IpAddr {
        self.target
    }

    /// Its fields but the target and TTL, which [`ProbeTemplate::args`] takes back.
    pub(crate) fn template(&self) -> ProbeTemplate {
        let bit = |value: bool, bit: u8| if value { bit } else { 0 };
        ProbeTemplate {
            protocol: self.protocol,
            local_addr: self.local_addr,
            local_device: self.local_device.clone(),
            timeout_secs: self.timeout_secs,
            mark: self.mark.unwrap_or(0),
            port: self.port.unwrap_or(0),
            local_port: self.local_port.unwrap_or(0),
            size: self.size.unwrap_or(0),
            bit_pattern: self.bit_pattern.unwrap_or(0),
            tos: self.tos.unwrap_or(0),
            set: bit(self.port.is_some(), ProbeTemplate::PORT_SET)
                | bit(self.local_port.is_some(), ProbeTemplate::LOCAL_PORT_SET)
                | bit(self.size.is_some(), ProbeTemplate::SIZE_SET)
                | bit(self.bit_pattern.is_some(), ProbeTemplate::BIT_PATTERN_SET)
                | bit(self.tos.is_some(), ProbeTemplate::TOS_SET)
                | bit(self.mark.is_some(), ProbeTemplate::MARK_SET),
        }
    }

    /// How long mtr-packet will wait for an answer: the timeout sent, or its default of 10 s.
    pub fn effective_timeout(&self) -> Duration {
        self.timeout_secs.map_or(ProbeArgs::DEFAULT_TIMEOUT, |s| {
            Duration::from_secs(s.get().into())
        })
    }

    /// Appends `TOKEN send-probe ARGS...\n` to `out`.
    pub fn encode(&self, token: Token, out: &mut Vec<u8>) {
        // Writing to a Vec cannot fail.
        push_decimal(out, token.get().into());
        out.extend_from_slice(b" send-probe");
        match self.target {
            IpAddr::V4(a) => push_arg(out, "ip-4", a),
            IpAddr::V6(a) => push_arg(out, "ip-6", a),
        }
        if self.protocol != Protocol::Icmp {
            push_arg(out, "protocol", self.protocol);
        }
        push_opt(out, "port", self.port);
        match self.local_addr {
            Some(IpAddr::V4(a)) => push_arg(out, "local-ip-4", a),
            Some(IpAddr::V6(a)) => push_arg(out, "local-ip-6", a),
            None => {}
        }
        push_opt(out, "local-port", self.local_port);
        push_opt(
            out,
            "local-device",
            self.local_device.as_ref().map(DeviceName::as_str),
        );
        push_opt(out, "timeout", self.timeout_secs.map(NonZeroU32::get));
        push_opt(out, "ttl", self.ttl);
        push_opt(out, "size", self.size);
        push_opt(out, "bit-pattern", self.bit_pattern);
        push_opt(out, "tos", self.tos);
        push_opt(out, "mark", self.mark);
        out.push(b'\n');
    }

    /// Reads the arguments of a `send-probe` line back, with the same checks as the setters.
    fn parse_arguments(text: &str) -> Result<ProbeArgs, ParseError> {
        let values = SendProbeValues::read(text)?;
        let get = |name| values.get(name);
        let target = either_address(get("ip-4"), get("ip-6"), ["ip-4", "ip-6"])?
            .ok_or(ParseError::MissingArgument("ip-4 or ip-6"))?;
        let protocol = match get("protocol") {
            Some(v) => Protocol::from_name(v).ok_or_else(|| invalid("protocol", v))?,
            None => Protocol::Icmp,
        };
        let local_addr = either_address(
            get("local-ip-4"),
            get("local-ip-6"),
            ["local-ip-4", "local-ip-6"],
        )?;
        let args = ProbeArgs::from_fields(ProbeFields {
            target,
            protocol,
            port: values.number("port")?,
            local_addr,
            local_port: values.number("local-port")?,
            local_device: get("local-device").map(DeviceName::new).transpose()?,
            // Whole seconds, checked below: `timeout` would take 0 as 1.
            timeout: None,
            ttl: values.number("ttl")?,
            size: values.number("size")?,
            bit_pattern: values.number("bit-pattern")?,
            tos: values.number("tos")?,
            mark: values.number("mark")?,
            flow: None,
        })?;
        match values.number("timeout")? {
            Some(secs) => Ok(args.timeout_secs(secs)?),
            None => Ok(args),
        }
    }
}

/// The value of each `send-probe` argument, in [`SEND_PROBE_ARGUMENTS`] order: collected
/// first, as the local address is checked against the target, which may come later.
struct SendProbeValues<'t>([Option<&'t str>; SEND_PROBE_ARGUMENTS.len()]);

impl<'t> SendProbeValues<'t> {
    /// Every argument of the line, each at most once and known.
    fn read(text: &'t str) -> Result<SendProbeValues<'t>, ParseError> {
        let mut values = [None; SEND_PROBE_ARGUMENTS.len()];
        for argument in Arguments::new(text) {
            let (name, value) = argument?;
            let i = SEND_PROBE_ARGUMENTS
                .iter()
                .position(|known| *known == name)
                .ok_or_else(|| ParseError::UnknownArgument(name.to_owned()))?;
            if values[i].replace(value).is_some() {
                return Err(ParseError::DuplicateArgument(SEND_PROBE_ARGUMENTS[i]));
            }
        }
        Ok(SendProbeValues(values))
    }

    fn get(&self, name: &str) -> Option<&'t str> {
        SEND_PROBE_ARGUMENTS
            .iter()
            .position(|known| *known == name)
            .and_then(|i| self.0[i])
    }

    fn number<T: TryFrom<u64>>(&self, name: &'static str) -> Result<Option<T>, ParseError> {
        self.get(name).map(|v| number(name, v)).transpose()
    }
}

/// Every argument `send-probe` takes.
const SEND_PROBE_ARGUMENTS: [&str; 14] = [
    "ip-4",
    "ip-6",
    "protocol",
    "port",
    "local-ip-4",
    "local-ip-6",
    "local-port",
    "local-device",
    "timeout",
    "ttl",
    "size",
    "bit-pattern",
    "tos",
    "mark",
];

/// One address from a `*-ip-4` / `*-ip-6` pair of arguments, at most one of which may be given.
fn either_address(
    v4: Option<&str>,
    v6: Option<&str>,
    [v4_name, v6_name]: [&'static str; 2],
) -> Result<Option<IpAddr>, ParseError> {
    match (v4, v6) {
        (None, None) => Ok(None),
        (Some(v), None) => Ok(Some(IpAddr::V4(grammar::value(v4_name, v, grammar::ip4)?))),
        (None, Some(v)) => Ok(Some(IpAddr::V6(grammar::value(v6_name, v, grammar::ip6)?))),
        (Some(_), Some(_)) => Err(ParseError::DuplicateArgument(v6_name)),
    }
}

/// A decimal argument value that fits `T`.
fn number<T: TryFrom<u64>>(argument: &'static str, text: &str) -> Result<T, ParseError> {
    grammar::value(argument, text, grammar::unsigned)?
        .try_into()
        .map_err(|_| invalid(argument, text))
}

fn invalid(argument: &'static str, text: &str) -> ParseError {
    ParseError::InvalidValue {
        argument,
        value: text.to_owned(),
    }
}

/// One request line.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Request {
    /// `send-probe`.
    SendProbe(ProbeArgs),
    /// `check-support feature NAME`.
    CheckSupport(Feature),
}

impl Request {
    /// An upper bound on the length of an encoded request line, newline included: every
    /// `send-probe` argument at its longest, or a `check-support` with a longest [`Word`].
    pub const MAX_LINE: usize = 320;

    /// Appends `TOKEN COMMAND ARGS...\n` to `out`: always exactly one line, shorter than
    /// mtr-packet's 4095-byte command buffer.
    ///
    /// ```
    /// use mtrproto::{Feature, Request, Token};
    /// let mut out = Vec::new();
    /// Request::CheckSupport(Feature::Version).encode(Token::new(1).unwrap(), &mut out);
    /// assert_eq!(out, b"1 check-support feature version\n");
    /// ```
    pub fn encode(&self, token: Token, out: &mut Vec<u8>) {
        match self {
            Request::SendProbe(args) => args.encode(token, out),
            Request::CheckSupport(feature) => {
                let _ = writeln!(out, "{token} check-support feature {}", feature.as_str());
            }
        }
    }

    /// Parses one request line (without its newline), as mtr-packet would read it.
    ///
    /// `request = token SP command *(SP argument)`. Unknown commands and arguments are
    /// refused, and every value goes through the same checks as the typed setters.
    ///
    /// ```
    /// use mtrproto::{Request, Protocol};
    /// let (token, request) = Request::parse("42 send-probe ip-4 127.0.0.1 ttl 3 protocol udp")?;
    /// assert_eq!(token.get(), 42);
    /// let Request::SendProbe(args) = request else { unreachable!() };
    /// let fields = args.fields();
    /// assert_eq!((fields.ttl, fields.protocol), (Some(3), Protocol::Udp));
    /// # Ok::<(), mtrproto::ParseError>(())
    /// ```
    pub fn parse(line: &str) -> Result<(Token, Request), ParseError> {
        let (token, name, args) = grammar::head(line)?;
        let request = match name {
            "send-probe" => Request::SendProbe(ProbeArgs::parse_arguments(args)?),
            "check-support" => {
                let mut feature = None;
                for argument in Arguments::new(args) {
                    match argument? {
                        ("feature", value) if feature.is_none() => feature = Some(value),
                        ("feature", _) => return Err(ParseError::DuplicateArgument("feature")),
                        (other, _) => return Err(ParseError::UnknownArgument(other.to_owned())),
                    }
                }
                let feature = feature.ok_or(ParseError::MissingArgument("feature"))?;
                Request::CheckSupport(Feature::from_name(feature)?)
            }
            other => return Err(ParseError::UnknownCommand(other.to_owned())),
        };
        Ok((token, request))
    }
}

/// Appends ` NAME VALUE`.
fn push_arg(out: &mut Vec<u8>, name: &str, value: impl Field) {
    out.push(b' ');
    out.extend_from_slice(name.as_bytes());
    out.push(b' ');
    value.push_to(out);
}

/// Appends ` NAME VALUE` when there is a value.
fn push_opt(out: &mut Vec<u8>, name: &str, value: Option<impl Field>) {
    if let Some(value) = value {
        push_arg(out, name, value);
    }
}

/// A value of a request line. Numbers and IPv4 addresses are written without `core::fmt`:
/// encoding is on the driver's path for every probe.
trait Field {
    fn push_to(&self, out: &mut Vec<u8>);
}

macro_rules! decimal_fields {
    ($($t:ty),*) => {$(
        impl Field for $t {
            fn push_to(&self, out: &mut Vec<u8>) {
                push_decimal(out, u64::from(*self));
            }
        }
    )*};
}
decimal_fields!(u8, u16, u32);

impl Field for NonZeroU8 {
    fn push_to(&self, out: &mut Vec<u8>) {
        push_decimal(out, self.get().into());
    }
}

impl Field for Ipv4Addr {
    fn push_to(&self, out: &mut Vec<u8>) {
        for (i, octet) in self.octets().into_iter().enumerate() {
            if i > 0 {
                out.push(b'.');
            }
            push_decimal(out, octet.into());
        }
    }
}

impl Field for Ipv6Addr {
    fn push_to(&self, out: &mut Vec<u8>) {
        // Writing to a Vec cannot fail.
        let _ = write!(out, "{self}");
    }
}

impl Field for &str {
    fn push_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes());
    }
}

impl Field for Protocol {
    fn push_to(&self, out: &mut Vec<u8>) {
        self.as_str().push_to(out);
    }
}

/// Appends `value` in decimal.
fn push_decimal(out: &mut Vec<u8>, value: u64) {
    // Most values are a TTL or an octet: pushed digit by digit, without a copy of a
    // variable length (a call to `memcpy`).
    let digit = |v: u64| b'0' + (v % 10) as u8;
    if value < 10 {
        return out.push(digit(value));
    }
    if value < 100 {
        return out.extend_from_slice(&[digit(value / 10), digit(value)]);
    }
    if value < 1000 {
        return out.extend_from_slice(&[digit(value / 100), digit(value / 10), digit(value)]);
    }
    let mut value = value;
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = digit(value);
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

/// Checks that `value` is in `min..=max`.
fn range(what: &'static str, value: u64, min: u64, max: u64) -> Result<(), ArgumentError> {
    if value < min || value > max {
        return Err(ArgumentError::OutOfRange {
            what,
            value,
            min,
            max,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_template_gives_back_the_args_at_each_ttl() {
        let bare = ProbeArgs::new("::1".parse().unwrap());
        let full = ProbeArgs::new("127.0.0.1".parse().unwrap())
            .protocol(Protocol::Udp)
            .port(9)
            .unwrap()
            .local_addr("127.0.0.2".parse().unwrap())
            .unwrap()
            .local_port(2000)
            .unwrap()
            .local_device(DeviceName::new("lo").unwrap())
            .timeout_secs(3)
            .unwrap()
            .size(0)
            .unwrap()
            .bit_pattern(0)
            .tos(0)
            .mark(0);
        let udp = ProbeArgs::new("127.0.0.1".parse().unwrap()).protocol(Protocol::Udp);
        let flow = udp.flow(Flow::new(3).unwrap()).unwrap().mark(u32::MAX);
        for args in [bare, full, flow] {
            for ttl in [1, 64, 255] {
                let at = NonZeroU8::new(ttl).unwrap();
                let rebuilt = args.template().args(args.target(), at);
                assert_eq!(rebuilt, args.clone().ttl(ttl).unwrap());
                // The TTL the args had is the probe's, not theirs.
                let other = args.clone().ttl(7).unwrap().template();
                assert_eq!(other.args(args.target(), at), rebuilt);
            }
        }
    }

    #[test]
    fn decimals_of_every_length_as_format_writes_them() {
        let mut values = vec![0, u64::MAX, u64::from(u32::MAX), 1 << 53];
        for power in 0..20 {
            let p = 10u64.pow(power);
            values.extend([p - 1, p, p + 1, p.saturating_mul(7).saturating_add(3)]);
        }
        let mut out = b"x".to_vec();
        let mut expected = "x".to_owned();
        for value in values {
            push_decimal(&mut out, value);
            out.push(b' ');
            expected.push_str(&format!("{value} "));
        }
        assert_eq!(String::from_utf8(out).unwrap(), expected);
    }

    #[test]
    fn a_timeout_too_long_is_refused_naming_its_seconds() {
        // It named 4294967295, the seconds cut to 32 bits, not those asked for.
        let secs = 5_000_000_000;
        let localhost = || ProbeArgs::new("127.0.0.1".parse().unwrap());
        let error = localhost().timeout(Duration::from_secs(secs));
        assert_eq!(
            error.unwrap_err(),
            ArgumentError::OutOfRange {
                what: "timeout",
                value: secs,
                min: 1,
                max: ProbeArgs::MAX_TIMEOUT_SECS.into(),
            }
        );
        let most = Duration::from_secs(ProbeArgs::MAX_TIMEOUT_SECS.into());
        assert!(localhost().timeout(most).is_ok());
    }

    #[test]
    fn a_parsed_timeout_is_checked_in_whole_seconds() {
        let parse = |line| Request::parse(line).map(|(_, request)| request);
        assert!(matches!(
            parse("1 send-probe ip-4 127.0.0.1 timeout 0"),
            Err(ParseError::Argument(ArgumentError::OutOfRange {
                what: "timeout",
                ..
            }))
        ));
        let Ok(Request::SendProbe(args)) = parse("1 send-probe timeout 3 ip-4 127.0.0.1 ttl 4")
        else {
            panic!("a valid line")
        };
        assert_eq!(args.effective_timeout(), Duration::from_secs(3));
        assert_eq!(args.fields().ttl, Some(4));
    }
}
