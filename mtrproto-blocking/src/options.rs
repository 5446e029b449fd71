//! Probe options, as the Python package's `probe()` keyword arguments.

use std::net::IpAddr;
use std::time::Duration;

use mtrproto::{ArgumentError, DeviceName, Flow, ProbeArgs, ProbeFields, Protocol};

/// An IP version to ask for when a host name has addresses of both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpVersion {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl IpVersion {
    /// Whether `addr` is of this version.
    pub fn matches(self, addr: IpAddr) -> bool {
        addr.is_ipv4() == (self == IpVersion::V4)
    }
}

/// How to send one probe. Every field is optional; mtr-packet's defaults apply.
///
/// ```
/// use mtrproto_blocking::{ProbeOptions, Protocol};
/// let options = ProbeOptions {
///     protocol: Protocol::Udp,
///     port: Some(9),
///     ttl: Some(3),
///     ..ProbeOptions::default()
/// };
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProbeOptions {
    /// Resolve host names to this IP version only.
    pub ip_version: Option<IpVersion>,
    /// `icmp` (default), `udp`, `tcp` or `sctp`.
    pub protocol: Protocol,
    /// Destination port for UDP, TCP and SCTP. For UDP use a port below 33000 (see
    /// [`ProbeArgs::port`]).
    pub port: Option<u16>,
    /// Source address or name; a name resolves in the target's IP version.
    pub local_ip: Option<String>,
    /// Source port, 1024 or above.
    pub local_port: Option<u16>,
    /// Interface to send from (newer mtr-packet only).
    pub local_device: Option<String>,
    /// How long mtr-packet waits for an answer, rounded up to whole seconds (default 10 s).
    pub timeout: Option<Duration>,
    /// IP TTL / hop limit, 1..=255.
    pub ttl: Option<u8>,
    /// Packet size in bytes, IP header included: at most 9000 for IPv4 and 9040 for IPv6,
    /// as mtr-packet allows (`ProbeArgs::size`).
    pub size: Option<u16>,
    /// Payload fill byte.
    pub bit_pattern: Option<u8>,
    /// IPv4 TOS / IPv6 traffic class.
    pub tos: Option<u8>,
    /// Linux socket mark.
    pub mark: Option<u32>,
    /// A fixed flow for UDP probes ([`Flow`]): its `local_port` and `port`, which must then
    /// be unset. Refused for other protocols, and by releases that cannot answer such
    /// probes (see [`compat`](crate::compat)).
    pub flow: Option<Flow>,
}

impl ProbeOptions {
    /// The request for `target` from `local`, each option checked.
    pub(crate) fn to_args(
        &self,
        target: IpAddr,
        local: Option<IpAddr>,
    ) -> Result<ProbeArgs, ArgumentError> {
        let local_device = self.local_device.as_deref().map(DeviceName::new);
        ProbeArgs::from_fields(ProbeFields {
            target,
            protocol: self.protocol,
            port: self.port,
            local_addr: local,
            local_port: self.local_port,
            local_device: local_device.transpose()?,
            timeout: self.timeout,
            ttl: self.ttl,
            size: self.size,
            bit_pattern: self.bit_pattern,
            tos: self.tos,
            mark: self.mark,
            flow: self.flow,
        })
    }
}
