//! [`Flow`]: a Paris-style flow identifier, one fixed (`local-port`, `port`) pair for UDP.
//!
//! Routers that balance load hash a packet's flow fields (addresses, protocol, ports) to pick
//! a next hop. mtr-packet keeps those fields fixed for a UDP probe that names both `port` and
//! `local-port`: the probe's sequence goes into the UDP checksum and the payload is corrected
//! to match (`set_udp_ports` in mtr's `packet/construct_unix.c`). Every probe of one flow then
//! follows one path. ICMP probes carry the sequence in the ICMP sequence and checksum, TCP
//! and SCTP probes in the source port: their flow changes with every probe.

use std::fmt;

use crate::error::ArgumentError;
use crate::protocol::command::Protocol;

/// A flow identifier: the `n`-th fixed (`local-port`, `port`) pair of UDP probes.
///
/// Flow `n` sends from local port [`Flow::FIRST_LOCAL_PORT`]` + n` to port
/// [`Flow::PORT`]. Both stay below 33000, where mtr-packet's own sequence numbers start:
/// mtr-packet looks an answer's probe up by its ports before its checksum, so a port in the
/// sequence range could be taken for another probe's sequence and the answer dropped.
///
/// ```
/// use mtrproto::{Flow, ProbeArgs, Protocol, Token};
/// let flow = Flow::new(7)?;
/// assert_eq!((flow.local_port(), flow.port()), (3007, 32_434));
/// let args = ProbeArgs::new("127.0.0.1".parse()?).protocol(Protocol::Udp).flow(flow)?;
/// assert_eq!(args.fixed_flow(), Some(flow));
/// let mut line = Vec::new();
/// args.encode(Token::new(1).unwrap(), &mut line);
/// assert_eq!(line, b"1 send-probe ip-4 127.0.0.1 protocol udp port 32434 local-port 3007\n");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Flow(u16);

impl Flow {
    /// The destination port of every flow: traceroute's 33434 moved below mtr-packet's
    /// sequence range (33000..=65535).
    pub const PORT: u16 = 32_434;
    /// The local port of flow 0.
    pub const FIRST_LOCAL_PORT: u16 = 3000;
    /// The largest flow identifier: its local port is 32999.
    pub const MAX: u16 = 32_999 - Flow::FIRST_LOCAL_PORT;

    /// Flow `id`, `0..=Flow::MAX`.
    pub fn new(id: u16) -> Result<Flow, ArgumentError> {
        if id > Flow::MAX {
            return Err(ArgumentError::OutOfRange {
                what: "flow",
                value: id.into(),
                min: 0,
                max: Flow::MAX.into(),
            });
        }
        Ok(Flow(id))
    }

    /// The flow whose ports these are, if any.
    ///
    /// ```
    /// use mtrproto::Flow;
    /// assert_eq!(Flow::from_ports(3002, Flow::PORT), Some(Flow::new(2)?));
    /// assert_eq!(Flow::from_ports(3002, 9), None);
    /// # Ok::<(), mtrproto::ArgumentError>(())
    /// ```
    pub fn from_ports(local_port: u16, port: u16) -> Option<Flow> {
        let id = local_port.checked_sub(Flow::FIRST_LOCAL_PORT)?;
        (port == Flow::PORT && id <= Flow::MAX).then_some(Flow(id))
    }

    /// Its identifier.
    pub fn id(self) -> u16 {
        self.0
    }

    /// Its source port (`local-port`).
    pub fn local_port(self) -> u16 {
        Flow::FIRST_LOCAL_PORT + self.0
    }

    /// Its destination port (`port`).
    pub fn port(self) -> u16 {
        Flow::PORT
    }

    /// Why probes of `protocol` cannot hold a flow, or `None` for UDP, which can.
    ///
    /// ```
    /// use mtrproto::{Flow, Protocol};
    /// assert!(Flow::refusal(Protocol::Udp).is_none());
    /// assert!(Flow::refusal(Protocol::Icmp).unwrap().contains("ICMP sequence"));
    /// ```
    pub fn refusal(protocol: Protocol) -> Option<&'static str> {
        match protocol {
            Protocol::Udp => None,
            Protocol::Icmp => {
                Some("mtr-packet puts each probe's sequence in the ICMP sequence and checksum")
            }
            Protocol::Tcp | Protocol::Sctp => {
                Some("mtr-packet puts each probe's sequence in the source port")
            }
        }
    }
}

impl fmt::Display for Flow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "flow {}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_flow_has_its_own_ports_below_the_sequence_range() {
        for id in [0, 1, Flow::MAX / 2, Flow::MAX] {
            let flow = Flow::new(id).unwrap();
            assert!(flow.local_port() >= crate::ProbeArgs::MIN_LOCAL_PORT);
            assert!(flow.local_port() < 33_000 && flow.port() < 33_000);
            assert_eq!(Flow::from_ports(flow.local_port(), flow.port()), Some(flow));
        }
        assert!(Flow::new(Flow::MAX + 1).is_err());
        assert_eq!(
            Flow::from_ports(Flow::FIRST_LOCAL_PORT - 1, Flow::PORT),
            None
        );
        assert_eq!(Flow::from_ports(33_000, Flow::PORT), None);
    }
}
