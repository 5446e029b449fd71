//! IPv4/IPv6 probes read from the TUN device, and the answers written back: ICMP errors
//! quoting the probe (with an RFC 4884 / RFC 4950 MPLS extension when asked), echo replies,
//! TCP RST or SYN-ACK. Checksums are computed, never left to the kernel.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use mtrproto::Mpls;

const ICMP: u8 = 1;
const TCP: u8 = 6;
const UDP: u8 = 17;
const ICMPV6: u8 = 58;

/// What a probe carries above IP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// ICMP or ICMPv6 echo request.
    Echo,
    /// UDP datagram.
    Udp {
        /// Source port.
        src_port: u16,
        /// Destination port.
        dst_port: u16,
    },
    /// TCP segment.
    Tcp {
        /// Source port.
        src_port: u16,
        /// Destination port.
        dst_port: u16,
        /// Sequence number.
        seq: u32,
        /// Whether SYN is set.
        syn: bool,
    },
    /// Anything else (ignored by the responder).
    Other,
}

/// A datagram read from the TUN device.
#[derive(Debug, Clone)]
pub struct Probe<'a> {
    /// The whole datagram.
    pub packet: &'a [u8],
    /// Where it comes from (mtr-packet's address).
    pub src: IpAddr,
    /// Where it goes.
    pub dst: IpAddr,
    /// TTL or hop limit.
    pub ttl: u8,
    /// The transport protocol number.
    pub protocol: u8,
    /// Its transport.
    pub transport: Transport,
    /// The transport header and payload.
    pub payload: &'a [u8],
}

impl Probe<'_> {
    /// Parses an IPv4 or IPv6 datagram; `None` for anything too short or of another kind.
    pub fn parse(packet: &[u8]) -> Option<Probe<'_>> {
        let (src, dst, ttl, protocol, payload) = match packet.first()? >> 4 {
            4 => {
                let header_len = usize::from(packet[0] & 0x0f) * 4;
                let total = usize::from(u16::from_be_bytes([*packet.get(2)?, *packet.get(3)?]));
                let src = Ipv4Addr::from(<[u8; 4]>::try_from(packet.get(12..16)?).ok()?);
                let dst = Ipv4Addr::from(<[u8; 4]>::try_from(packet.get(16..20)?).ok()?);
                let payload = packet.get(header_len..total.min(packet.len()))?;
                (
                    IpAddr::V4(src),
                    IpAddr::V4(dst),
                    packet[8],
                    packet[9],
                    payload,
                )
            }
            6 => {
                let len = usize::from(u16::from_be_bytes([*packet.get(4)?, *packet.get(5)?]));
                let src = Ipv6Addr::from(<[u8; 16]>::try_from(packet.get(8..24)?).ok()?);
                let dst = Ipv6Addr::from(<[u8; 16]>::try_from(packet.get(24..40)?).ok()?);
                let payload = packet.get(40..(40 + len).min(packet.len()))?;
                (
                    IpAddr::V6(src),
                    IpAddr::V6(dst),
                    packet[7],
                    packet[6],
                    payload,
                )
            }
            _ => return None,
        };
        let port = |at: usize| {
            payload
                .get(at..at + 2)
                .map(|b| u16::from_be_bytes([b[0], b[1]]))
        };
        let transport = match protocol {
            ICMP if payload.first() == Some(&8) => Transport::Echo,
            ICMPV6 if payload.first() == Some(&128) => Transport::Echo,
            UDP => Transport::Udp {
                src_port: port(0)?,
                dst_port: port(2)?,
            },
            TCP => Transport::Tcp {
                src_port: port(0)?,
                dst_port: port(2)?,
                seq: u32::from_be_bytes(payload.get(4..8)?.try_into().ok()?),
                syn: payload.get(13)? & 0x02 != 0,
            },
            _ => Transport::Other,
        };
        Some(Probe {
            packet,
            src,
            dst,
            ttl,
            protocol,
            transport,
            payload,
        })
    }

    /// A hash of the 5-tuple: addresses, protocol and, for UDP and TCP, the ports (an
    /// ECMP router hashing flows).
    pub fn flow_hash(&self) -> u64 {
        let ports = match self.transport {
            Transport::Udp { .. } | Transport::Tcp { .. } => self.payload.get(..4),
            Transport::Echo | Transport::Other => None,
        };
        self.hash_with(ports.unwrap_or(&[]))
    }

    /// A hash of the addresses, the protocol and the transport header's first four bytes
    /// (ICMP: type, code, checksum; UDP and TCP: the ports), as some routers balance.
    pub fn head_hash(&self) -> u64 {
        self.hash_with(self.payload.get(..4).unwrap_or(self.payload))
    }

    fn hash_with(&self, transport: &[u8]) -> u64 {
        let mut hash = 0xcbf2_9ce4_8422_2325u64;
        let mut feed = |bytes: &[u8]| {
            for &b in bytes {
                hash = (hash ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
            }
        };
        feed(&ip_bytes(self.src));
        feed(&ip_bytes(self.dst));
        feed(&[self.protocol]);
        feed(transport);
        // FNV's low bits follow the last bytes closely; mix them.
        crate::mix64(hash)
    }
}

/// An ICMP error type to answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IcmpError {
    /// Time exceeded in transit.
    TimeExceeded,
    /// Destination unreachable: network.
    NetUnreachable,
    /// Destination unreachable: host (IPv6: address).
    HostUnreachable,
    /// Destination unreachable: port.
    PortUnreachable,
    /// Destination unreachable: administratively prohibited.
    Prohibited,
}

impl IcmpError {
    /// (type, code) for ICMPv4 and for ICMPv6.
    fn type_code(self, v4: bool) -> (u8, u8) {
        match (self, v4) {
            (IcmpError::TimeExceeded, true) => (11, 0),
            (IcmpError::TimeExceeded, false) => (3, 0),
            (IcmpError::NetUnreachable, true) => (3, 0),
            (IcmpError::NetUnreachable, false) => (1, 0),
            (IcmpError::HostUnreachable, true) => (3, 1),
            (IcmpError::HostUnreachable, false) => (1, 3),
            (IcmpError::PortUnreachable, true) => (3, 3),
            (IcmpError::PortUnreachable, false) => (1, 4),
            (IcmpError::Prohibited, true) => (3, 13),
            (IcmpError::Prohibited, false) => (1, 1),
        }
    }
}

/// The quoted datagram is padded to this length when an extension follows (RFC 4884).
const QUOTE_WITH_EXTENSION: usize = 128;
/// Quote at most this much of the probe otherwise.
const MAX_QUOTE: usize = 512;

/// An ICMP error from `from` to the probe's sender, quoting the probe as it arrived there,
/// with TTL (hop limit) `quoted_ttl`, and with an MPLS label stack extension when `mpls` is
/// not empty.
pub fn icmp_error(
    probe: &Probe<'_>,
    from: IpAddr,
    error: IcmpError,
    mpls: &[Mpls],
    quoted_ttl: u8,
) -> Vec<u8> {
    let v4 = probe.src.is_ipv4();
    let (kind, code) = error.type_code(v4);
    let mut body = vec![kind, code, 0, 0, 0, 0, 0, 0];
    let mut quote = probe.packet.to_vec();
    if v4 {
        // The TTL changed on the way, and the header checksum with it (RFC 1812 5.3.1).
        let header_len = usize::from(quote[0] & 0x0f) * 4;
        quote[8] = quoted_ttl;
        quote[10..12].fill(0);
        let sum = checksum(&[&quote[..header_len.min(quote.len())]]);
        quote[10..12].copy_from_slice(&sum.to_be_bytes());
    } else {
        quote[7] = quoted_ttl;
    }
    if mpls.is_empty() {
        quote.truncate(MAX_QUOTE);
        body.extend_from_slice(&quote);
    } else {
        quote.resize(QUOTE_WITH_EXTENSION, 0);
        body.extend_from_slice(&quote);
        // RFC 4884 length of the quote: 32-bit words in ICMPv4 (byte 5), 64-bit in ICMPv6 (byte 4).
        if v4 {
            body[5] = (QUOTE_WITH_EXTENSION / 4) as u8;
        } else {
            body[4] = (QUOTE_WITH_EXTENSION / 8) as u8;
        }
        body.extend_from_slice(&mpls_extension(mpls));
    }
    seal_icmp(from, probe.src, body)
}

/// RFC 4884 extension structure holding one RFC 4950 MPLS label stack object.
fn mpls_extension(mpls: &[Mpls]) -> Vec<u8> {
    let object_len = 4 + 4 * mpls.len();
    let mut ext = vec![0x20, 0, 0, 0];
    ext.extend_from_slice(&(object_len as u16).to_be_bytes());
    ext.extend_from_slice(&[1, 1]); // class-num 1 (MPLS label stack), c-type 1 (incoming)
    for entry in mpls {
        ext.extend_from_slice(&entry.to_wire().to_be_bytes());
    }
    let sum = checksum(&[&ext]);
    ext[2..4].copy_from_slice(&sum.to_be_bytes());
    ext
}

/// Sets an IPv4 answer's identification field to `id` (the header checksum follows); IPv6
/// answers have none and are left as they are.
pub fn set_ip_id(packet: &mut [u8], id: u16) {
    if packet.len() < 20 || packet[0] >> 4 != 4 {
        return;
    }
    let header_len = (usize::from(packet[0] & 0x0f) * 4).min(packet.len());
    packet[4..6].copy_from_slice(&id.to_be_bytes());
    packet[10..12].fill(0);
    let sum = checksum(&[&packet[..header_len]]);
    packet[10..12].copy_from_slice(&sum.to_be_bytes());
}

/// The echo reply to an echo request probe, from its destination.
pub fn echo_reply(probe: &Probe<'_>) -> Vec<u8> {
    let mut body = probe.payload.to_vec();
    body[0] = if probe.src.is_ipv4() { 0 } else { 129 };
    body[2..4].fill(0);
    seal_icmp(probe.dst, probe.src, body)
}

/// The TCP answer of a destination to a SYN: RST (closed port) or SYN-ACK (open port).
pub fn tcp_reply(probe: &Probe<'_>, open: bool) -> Option<Vec<u8>> {
    let Transport::Tcp {
        src_port,
        dst_port,
        seq,
        syn: true,
    } = probe.transport
    else {
        return None;
    };
    let mut segment = Vec::with_capacity(20);
    segment.extend_from_slice(&dst_port.to_be_bytes());
    segment.extend_from_slice(&src_port.to_be_bytes());
    segment.extend_from_slice(&(if open { 0x5eed_0000u32 } else { 0 }).to_be_bytes());
    segment.extend_from_slice(&seq.wrapping_add(1).to_be_bytes());
    segment.extend_from_slice(&[0x50, if open { 0x12 } else { 0x14 }, 0xff, 0xff, 0, 0, 0, 0]);
    let sum = checksum(&[
        &pseudo_header(probe.dst, probe.src, TCP, segment.len()),
        &segment,
    ]);
    segment[16..18].copy_from_slice(&sum.to_be_bytes());
    Some(ip_datagram(probe.dst, probe.src, TCP, &segment))
}

/// Fills in an ICMP or ICMPv6 checksum and wraps the message in an IP header.
fn seal_icmp(from: IpAddr, to: IpAddr, mut body: Vec<u8>) -> Vec<u8> {
    let (protocol, sum) = if from.is_ipv4() {
        (ICMP, checksum(&[&body]))
    } else {
        (
            ICMPV6,
            checksum(&[&pseudo_header(from, to, ICMPV6, body.len()), &body]),
        )
    };
    body[2..4].copy_from_slice(&sum.to_be_bytes());
    ip_datagram(from, to, protocol, &body)
}

fn ip_datagram(from: IpAddr, to: IpAddr, protocol: u8, payload: &[u8]) -> Vec<u8> {
    let mut packet = Vec::with_capacity(40 + payload.len());
    match (from, to) {
        (IpAddr::V4(from), IpAddr::V4(to)) => {
            let total = (20 + payload.len()) as u16;
            packet.extend_from_slice(&[0x45, 0]);
            packet.extend_from_slice(&total.to_be_bytes());
            packet.extend_from_slice(&[0, 0, 0, 0, 64, protocol, 0, 0]);
            packet.extend_from_slice(&from.octets());
            packet.extend_from_slice(&to.octets());
            let sum = checksum(&[&packet]);
            packet[10..12].copy_from_slice(&sum.to_be_bytes());
        }
        _ => {
            packet.extend_from_slice(&[0x60, 0, 0, 0]);
            packet.extend_from_slice(&(payload.len() as u16).to_be_bytes());
            packet.extend_from_slice(&[protocol, 64]);
            packet.extend_from_slice(&ip_bytes(from));
            packet.extend_from_slice(&ip_bytes(to));
        }
    }
    packet.extend_from_slice(payload);
    packet
}

/// The pseudo-header TCP, UDP and ICMPv6 checksums cover.
fn pseudo_header(from: IpAddr, to: IpAddr, protocol: u8, len: usize) -> Vec<u8> {
    let mut header = ip_bytes(from);
    header.extend_from_slice(&ip_bytes(to));
    if from.is_ipv4() {
        header.extend_from_slice(&[0, protocol]);
        header.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        header.extend_from_slice(&(len as u32).to_be_bytes());
        header.extend_from_slice(&[0, 0, 0, protocol]);
    }
    header
}

fn ip_bytes(addr: IpAddr) -> Vec<u8> {
    match addr {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// The Internet checksum (RFC 1071) over the concatenation of `parts`, each of even length
/// except possibly the last.
pub fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum = 0u32;
    for part in parts {
        for pair in part.chunks(2) {
            let word = u16::from_be_bytes([pair[0], pair.get(1).copied().unwrap_or(0)]);
            sum += u32::from(word);
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An ICMP echo request from 198.18.0.1 to 198.18.0.5 with TTL 1.
    fn echo_probe() -> Vec<u8> {
        let mut icmp = vec![8, 0, 0, 0, 0x12, 0x34, 0, 1, 0xaa, 0xbb];
        let sum = checksum(&[&icmp]);
        icmp[2..4].copy_from_slice(&sum.to_be_bytes());
        let mut packet = ip_datagram([198, 18, 0, 1].into(), [198, 18, 0, 5].into(), ICMP, &icmp);
        packet[8] = 1;
        packet
    }

    #[test]
    fn parses_a_probe_and_answers_with_valid_checksums() {
        let bytes = echo_probe();
        let probe = Probe::parse(&bytes).unwrap();
        assert_eq!((probe.ttl, probe.transport), (1, Transport::Echo));
        let reply = echo_reply(&probe);
        assert_eq!(checksum(&[&reply[..20]]), 0, "IP header");
        assert_eq!(checksum(&[&reply[20..]]), 0, "ICMP");
        assert_eq!(
            &reply[20 + 4..],
            &bytes[20 + 4..],
            "id, sequence and payload echoed"
        );
    }

    #[test]
    fn time_exceeded_with_mpls_has_the_rfc4884_layout() {
        let bytes = echo_probe();
        let probe = Probe::parse(&bytes).unwrap();
        let mpls = [Mpls::new(1234, 5, true, 7).unwrap()];
        let answer = icmp_error(
            &probe,
            [198, 18, 0, 101].into(),
            IcmpError::TimeExceeded,
            &mpls,
            1,
        );
        let icmp = &answer[20..];
        assert_eq!((icmp[0], icmp[1], icmp[5]), (11, 0, 32));
        assert_eq!(checksum(&[icmp]), 0);
        let ext = &icmp[8 + 128..];
        assert_eq!(ext.len(), 4 + 4 + 4);
        assert_eq!(ext[0], 0x20);
        assert_eq!(checksum(&[ext]), 0);
        assert_eq!(&ext[4..8], &[0, 8, 1, 1]);
        assert_eq!(
            u32::from_be_bytes(ext[8..12].try_into().unwrap()),
            mpls[0].to_wire()
        );
    }
}
