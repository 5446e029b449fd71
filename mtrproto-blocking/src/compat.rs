//! What differs between mtr-packet releases, as data: one [`Release`] row per release.
//!
//! The session looks its helper up here when it opens ([`Release::for_version`]) and adapts:
//! the window stays within the probe table, a source address is added where the helper
//! needs one, and options the helper would ignore or never answer are refused with
//! [`Error::Unsupported`]. Every row was checked against the
//! release's own build (`tests/tests/releases.rs`).

use std::net::IpAddr;
use std::time::Duration;

use mtrproto::{ProbeResult, Protocol, ReplyKind};

use crate::error::Error;
use crate::options::ProbeOptions;

/// One mtr-packet release's behaviour where releases differ.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Release {
    /// The version as `check-support feature version` answers it, or `unknown`.
    pub version: &'static str,
    /// Probes mtr-packet keeps in flight at most (its `MAX_PROBES`); more are answered
    /// `probes-exhausted`. The session's window is clamped to it.
    pub capacity: usize,
    /// A probe naming no source address is answered `invalid-argument` (0.93): the session
    /// adds the address the local routing table picks.
    pub needs_source_address: bool,
    /// `local-device` binds the probe to an interface (0.96). Older releases ignore the
    /// argument silently, and every release's `check-support` says `no` for it.
    pub local_device: bool,
    /// UDP probes over IPv6 are accepted (0.93 refuses every one).
    pub udp_ipv6: bool,
    /// A UDP probe with both `port` and `local-port` gets an answer, per family
    /// `[IPv4, IPv6]` (0.92 gets none; 0.94 and 0.95 none over IPv6).
    pub udp_port_and_local_port: [bool; 2],
    /// A router's destination-unreachable is reported (0.92 ignores it: `no-reply`).
    pub reports_unreachable: bool,
    /// A router's answer to a UDP probe goes to whatever probe has the sequence found in
    /// its quoted destination port, source port or checksum, with no check of ports,
    /// addresses or protocol (0.92, `packet/deconstruct_unix.c`, `handle_inner_udp_packet`;
    /// from 0.93 the ports and addresses must be the probe's). Every helper numbers from
    /// 33000 and sees every answer, so with several helpers the session routes UDP probes
    /// as it routes TCP ones: only one helper has probes while any are in flight.
    pub udp_matched_by_sequence_alone: bool,
    /// `no-route` is split into `no-route-host` and `no-route-network`, and `host-down`
    /// exists (0.96).
    pub split_no_route: bool,
    /// The helper dies of SIGSEGV when a probe without a source address goes to a
    /// destination whose route is `unreachable` (0.94 to 0.96); the probe fails with
    /// [`ProcessError::Exited`](crate::ProcessError::Exited) and the session starts a new
    /// helper in its place (see the crate docs, "When the helper fails").
    pub crashes_on_unreachable_route: bool,
    /// Every reply name the release writes.
    pub reply_names: &'static [&'static str],
}

/// Reply names every release writes.
const NAMES_0_92: &[&str] = &[
    "reply",
    "ttl-expired",
    "no-reply",
    "no-route",
    "network-down",
    "permission-denied",
    "address-in-use",
    "address-not-available",
    "probes-exhausted",
    "invalid-argument",
    "unexpected-error",
    "unknown-command",
    "feature-support",
    "command-parse-error",
    "command-buffer-overflow",
];

/// 0.96 splits `no-route` and adds `host-down` and the TCP connect timeout.
const NAMES_0_96: &[&str] = &[
    "reply",
    "ttl-expired",
    "no-reply",
    "no-route-host",
    "no-route-network",
    "host-down",
    "wait-tcp-respone-timeout",
    "network-down",
    "permission-denied",
    "address-in-use",
    "address-not-available",
    "probes-exhausted",
    "invalid-argument",
    "unexpected-error",
    "unknown-command",
    "feature-support",
    "command-parse-error",
    "command-buffer-overflow",
];

/// The releases in use (2026), oldest first; the newest row also stands for later versions.
pub const RELEASES: [Release; 5] = [
    Release {
        version: "0.92",
        capacity: 1024,
        needs_source_address: false,
        local_device: false,
        udp_ipv6: true,
        udp_port_and_local_port: [false, false],
        reports_unreachable: false,
        udp_matched_by_sequence_alone: true,
        split_no_route: false,
        crashes_on_unreachable_route: false,
        reply_names: NAMES_0_92,
    },
    Release {
        version: "0.93",
        capacity: 1024,
        needs_source_address: true,
        local_device: false,
        udp_ipv6: false,
        udp_port_and_local_port: [true, false],
        reports_unreachable: true,
        udp_matched_by_sequence_alone: false,
        split_no_route: false,
        crashes_on_unreachable_route: false,
        reply_names: NAMES_0_92,
    },
    Release {
        version: "0.94",
        capacity: 1024,
        needs_source_address: false,
        local_device: false,
        udp_ipv6: true,
        udp_port_and_local_port: [true, false],
        reports_unreachable: true,
        udp_matched_by_sequence_alone: false,
        split_no_route: false,
        crashes_on_unreachable_route: true,
        reply_names: NAMES_0_92,
    },
    Release {
        version: "0.95",
        capacity: 1024,
        needs_source_address: false,
        local_device: false,
        udp_ipv6: true,
        udp_port_and_local_port: [true, false],
        reports_unreachable: true,
        udp_matched_by_sequence_alone: false,
        split_no_route: false,
        crashes_on_unreachable_route: true,
        reply_names: NAMES_0_92,
    },
    Release {
        version: "0.96",
        capacity: 10240,
        needs_source_address: false,
        local_device: true,
        udp_ipv6: true,
        udp_port_and_local_port: [true, true],
        reports_unreachable: true,
        udp_matched_by_sequence_alone: false,
        split_no_route: true,
        crashes_on_unreachable_route: true,
        reply_names: NAMES_0_96,
    },
];

/// A helper whose version is not a release above (a build without its tarball's version
/// says `UNKNOWN`) and whose behaviour is not 0.92's, 0.93's or 0.96's, so 0.94 or 0.95, or
/// could not be told (127.0.0.1 unusable, see `by_behaviour`): the smallest table;
/// `local_device` refused, which releases before 0.96 ignore, and UDP flows over IPv6, which
/// none before 0.96 answers. IPv4 flows go out (0.93 onward answer them; where the release
/// could not be told, 0.92 cannot be ruled out: its flows then go unanswered), and UDP
/// answers are taken as matched by sequence alone, as 0.92 matches them.
pub const UNKNOWN: Release = Release {
    version: "unknown",
    capacity: 1024,
    needs_source_address: false,
    local_device: false,
    udp_ipv6: true,
    udp_port_and_local_port: [true, false],
    reports_unreachable: true,
    udp_matched_by_sequence_alone: true,
    split_no_route: false,
    crashes_on_unreachable_route: true,
    reply_names: NAMES_0_96,
};

impl Release {
    /// The row for a version string: an exact release, the newest row for a later version
    /// (`0.97`, `0.96.1`, `1.0`), `None` for anything else (`UNKNOWN`, `0.91`).
    ///
    /// ```
    /// use mtrproto_blocking::compat::Release;
    /// assert_eq!(Release::for_version("0.93").unwrap().needs_source_address, true);
    /// assert_eq!(Release::for_version("0.97").unwrap().capacity, 10240);
    /// assert!(Release::for_version("UNKNOWN").is_none());
    /// ```
    pub fn for_version(version: &str) -> Option<&'static Release> {
        let (major, minor) = major_minor(version)?;
        let newest = RELEASES.last()?;
        RELEASES
            .iter()
            .find(|r| major_minor(r.version) == Some((major, minor)))
            .or_else(|| (Some((major, minor)) > major_minor(newest.version)).then_some(newest))
    }

    /// The 0.93 row: what an unknown build that refuses probes without a source address is
    /// taken for.
    pub(crate) fn needing_source_address() -> &'static Release {
        &RELEASES[1]
    }

    /// The 0.92 row: what an unknown build that never answers a UDP flow is taken for.
    pub(crate) fn answering_no_flow() -> &'static Release {
        &RELEASES[0]
    }

    /// Why this release cannot carry a probe with `options` to `target`, or `None`.
    pub(crate) fn refusal(&self, options: &ProbeOptions, target: IpAddr) -> Option<&'static str> {
        let family = usize::from(target.is_ipv6());
        let udp = options.protocol == Protocol::Udp;
        // A flow sets both ports.
        let both_ports =
            options.flow.is_some() || (options.port.is_some() && options.local_port.is_some());
        if options.local_device.is_some() && !self.local_device {
            Some("local_device (mtr-packet before 0.96 ignores it)")
        } else if udp && target.is_ipv6() && !self.udp_ipv6 {
            Some("UDP over IPv6 (this mtr-packet refuses it; 0.94 or later is needed)")
        } else if udp && both_ports && !self.udp_port_and_local_port[family] {
            // The first release that answers them, per family (`RELEASES`).
            Some(if target.is_ipv6() {
                "a UDP flow (both port and local_port) over IPv6: this mtr-packet never \
                 matches the answer; 0.96 or later is needed"
            } else {
                "a UDP flow (both port and local_port) over IPv4: this mtr-packet never \
                 matches the answer; 0.93 or later is needed"
            })
        } else {
            None
        }
    }
}

/// The row used while the release is not known yet: the newest, which refuses nothing.
pub(crate) const PERMISSIVE: &Release = &RELEASES[RELEASES.len() - 1];

/// An interface name no host has, for [`by_behaviour`].
const NO_SUCH_DEVICE: &str = "mtrproto-none";

/// The UDP ports [`by_behaviour`] tries in turn for its flow probe, the first whose plain
/// UDP probe is answered with port-unreachable: the discard port, closed on nearly every
/// host, then another below mtr-packet's sequence numbers (33000 on), so neither is taken
/// for one.
const UDP_PORTS: [u16; 2] = [9, 32998];

/// The flow probe's local port, below mtr-packet's sequence numbers too.
const FLOW_LOCAL_PORT: u16 = 32999;

/// The row for a helper whose version says nothing (`UNKNOWN`), from its behaviour with
/// probes to 127.0.0.1, each with a timeout of 1 s:
///
/// 1. Without a source address, only 0.93 answers `invalid-argument`, but so does every
///    release where the loopback has no address (a namespace whose `lo` was never up): the
///    same probe from 127.0.0.1 tells them apart (0.93 gets its reply).
/// 2. Bound to an interface that does not exist, it is `unexpected-error` (ENODEV) from 0.96
///    on, and answered as usual by the releases that ignore `local-device`.
/// 3. Where that was sent: a UDP flow (`port` and `local-port`). 0.92 writes the sequence
///    as the checksum without making the payload match it, so the datagram is dropped as
///    corrupt and the probe gets `no-reply`; 0.94 and 0.95 get their reply. It goes to the
///    first port of [`UDP_PORTS`] where a plain UDP probe, which every release answers, got
///    its reply (no listener or firewall there). This costs a second on 0.92, and where no
///    such port answers (a loopback that drops everything) a second per port tried.
///
/// ICMP echo ignored on the host (`net.ipv4.icmp_echo_ignore_all`) leaves the ICMP probes
/// unanswered but sent, which steps 1 and 2 take as they take an answer.
///
/// Where the answers tell nothing, [`UNKNOWN`]: a guess, but not a wrong release's row.
///
/// A probe that fails (the helper exited, stalled, wrote junk or an answer that does not
/// parse) ends the detection with its error at once: the helper is unusable, and each later
/// probe would wait out its own timeout and grace for nothing. The session fails the open
/// with it, except an exit, where it takes [`UNKNOWN`] if the restarted helper answers.
pub(crate) fn by_behaviour(
    probe: impl Fn(&ProbeOptions) -> Result<ProbeResult, Error>,
) -> Result<&'static Release, Error> {
    let options = ProbeOptions {
        timeout: Some(Duration::from_secs(1)),
        ..ProbeOptions::default()
    };
    let answer = |options: &ProbeOptions| probe(options).map(|r| r.result);
    if answer(&options)? == ReplyKind::InvalidArgument {
        let sourced = ProbeOptions {
            local_ip: Some("127.0.0.1".into()),
            ..options
        };
        // Routed from 127.0.0.1 (answered, or unanswered where echo is ignored): 0.93's
        // refusal. Without a loopback address it is `no-route`.
        return Ok(match answer(&sourced)? {
            ReplyKind::Reply | ReplyKind::NoReply => Release::needing_source_address(),
            _ => &UNKNOWN,
        });
    }
    let bound = ProbeOptions {
        local_device: Some(NO_SUCH_DEVICE.into()),
        ..options.clone()
    };
    match answer(&bound)? {
        ReplyKind::UnexpectedError => return Ok(PERMISSIVE),
        // Sent (echo may be ignored): the UDP probes below tell whether the loopback works.
        ReplyKind::Reply | ReplyKind::NoReply => {}
        _ => return Ok(&UNKNOWN),
    }
    let udp_to = |port| ProbeOptions {
        protocol: Protocol::Udp,
        port: Some(port),
        ..options.clone()
    };
    // A port whose plain UDP probe gets its port-unreachable (no listener, no firewall):
    // else the flow probe's silence would tell nothing.
    let mut answered_port = None;
    for port in UDP_PORTS {
        if answer(&udp_to(port))? == ReplyKind::Reply {
            answered_port = Some(port);
            break;
        }
    }
    let Some(port) = answered_port else {
        return Ok(&UNKNOWN);
    };
    let flow = ProbeOptions {
        local_port: Some(FLOW_LOCAL_PORT),
        ..udp_to(port)
    };
    Ok(if answer(&flow)? == ReplyKind::NoReply {
        Release::answering_no_flow()
    } else {
        &UNKNOWN
    })
}

/// `MAJOR.MINOR` at the start of a version string.
fn major_minor(version: &str) -> Option<(u32, u32)> {
    let mut parts = version.split(['.', '-', '+']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mtrproto::Word;

    #[test]
    fn versions_find_their_rows() {
        for release in &RELEASES {
            assert_eq!(Release::for_version(release.version), Some(release));
        }
        assert_eq!(Release::for_version("0.95.1").unwrap().version, "0.95");
        assert_eq!(Release::for_version("0.97").unwrap().version, "0.96");
        assert_eq!(Release::for_version("1.0").unwrap().version, "0.96");
        for other in ["UNKNOWN", "", "0.91", "0", "x.y", "0.9"] {
            assert_eq!(Release::for_version(other), None, "{other}");
        }
    }

    #[test]
    fn every_release_reply_name_is_a_known_kind() {
        for release in RELEASES.iter().chain([&UNKNOWN]) {
            for name in release.reply_names {
                let kind = ReplyKind::from_name(Word::new(name).unwrap());
                assert!(!matches!(kind, ReplyKind::Other(_)), "{name}");
                assert_eq!(kind.as_str(), *name);
            }
        }
    }

    #[test]
    fn refusals_follow_the_table() {
        let v4: IpAddr = "127.0.0.1".parse().unwrap();
        let v6: IpAddr = "::1".parse().unwrap();
        let udp = ProbeOptions {
            protocol: Protocol::Udp,
            port: Some(9),
            local_port: Some(2000),
            ..ProbeOptions::default()
        };
        let device = ProbeOptions {
            local_device: Some("eth0".into()),
            ..ProbeOptions::default()
        };
        let refused = |version: &str, options: &ProbeOptions, target| {
            Release::for_version(version)
                .unwrap()
                .refusal(options, target)
                .is_some()
        };
        assert!(refused("0.92", &udp, v4));
        assert!(!refused("0.93", &udp, v4));
        assert!(refused("0.95", &udp, v6));
        assert!(!refused("0.96", &udp, v6));
        let plain_udp6 = ProbeOptions {
            local_port: None,
            ..udp.clone()
        };
        assert!(refused("0.93", &plain_udp6, v6));
        assert!(!refused("0.94", &plain_udp6, v6));
        assert!(refused("0.95", &device, v4));
        assert!(!refused("0.96", &device, v4));
        assert!(UNKNOWN.refusal(&device, v4).is_some());
        assert!(UNKNOWN.refusal(&udp, v4).is_none());
        assert!(UNKNOWN.refusal(&udp, v6).is_some());
        let flow = ProbeOptions {
            protocol: Protocol::Udp,
            flow: Some(mtrproto::Flow::new(3).unwrap()),
            ..ProbeOptions::default()
        };
        let why = |version: &str, target| {
            Release::for_version(version)
                .unwrap()
                .refusal(&flow, target)
                .unwrap_or_default()
        };
        assert!(why("0.92", v4).contains("0.93 or later is needed"));
        assert!(why("0.95", v6).contains("0.96 or later is needed"));
        assert_eq!(why("0.95", v4), "");
        assert_eq!(why("0.96", v6), "");
    }

    /// The host's loopback, as `by_behaviour`'s probes find it.
    #[derive(Clone, Copy, PartialEq)]
    enum Loopback {
        Works,
        /// A namespace whose `lo` was never up: no 127.0.0.1.
        NeverUp,
        /// `net.ipv4.icmp_echo_ignore_all`: ICMP probes go out unanswered.
        EchoIgnored,
        /// Something listens on UDP port 9: no port-unreachable there.
        ListenerOn9,
    }

    /// What `version` answers to `by_behaviour`'s probes on `loopback`, as each release's
    /// build was seen to answer.
    fn scripted(
        version: &str,
        loopback: Loopback,
        probes: &std::cell::Cell<usize>,
    ) -> impl Fn(&ProbeOptions) -> Result<ProbeResult, Error> {
        use ReplyKind::{InvalidArgument, NoReply, NoRoute, Reply, UnexpectedError};
        let row = Release::for_version(version).unwrap();
        move |options: &ProbeOptions| {
            probes.set(probes.get() + 1);
            let sourced = options.local_ip.is_some();
            let udp = options.protocol == Protocol::Udp;
            let result = if loopback == Loopback::NeverUp {
                if sourced { NoRoute } else { InvalidArgument }
            } else if row.needs_source_address && !sourced {
                InvalidArgument
            } else if options.local_device.is_some() && row.local_device {
                UnexpectedError
            } else {
                // 0.92's flow dropped as corrupt, an echo ignored, a port that is listened on.
                let silent = (options.local_port.is_some() && !row.udp_port_and_local_port[0])
                    || (!udp && loopback == Loopback::EchoIgnored)
                    || (udp && options.port == Some(9) && loopback == Loopback::ListenerOn9);
                if silent { NoReply } else { Reply }
            };
            answered(result)
        }
    }

    /// A probe's result with `result` and nothing else.
    fn answered(result: ReplyKind<'static>) -> Result<ProbeResult, Error> {
        Ok(ProbeResult {
            result,
            time: None,
            unusable_time_us: None,
            responder: None,
            mpls: Default::default(),
        })
    }

    #[test]
    fn unknown_builds_are_told_by_behaviour_where_the_loopback_works() {
        let probes = std::cell::Cell::new(0);
        for (version, row, most) in [
            ("0.92", "0.92", 4),
            ("0.93", "0.93", 2),
            ("0.94", "unknown", 4),
            ("0.95", "unknown", 4),
            ("0.96", "0.96", 2),
        ] {
            // Echo ignored, or a listener on the first UDP port (the next is taken), tell
            // the same apart.
            for loopback in [
                Loopback::Works,
                Loopback::EchoIgnored,
                Loopback::ListenerOn9,
            ] {
                probes.set(0);
                let found = by_behaviour(scripted(version, loopback, &probes))
                    .unwrap()
                    .version;
                assert_eq!(found, row, "{version} {}", loopback as u8);
                let most = most + usize::from(loopback == Loopback::ListenerOn9);
                assert!(probes.get() <= most, "{version}: {} probes", probes.get());
            }
            // Without a usable 127.0.0.1 every release looks alike: the generic row.
            assert_eq!(
                by_behaviour(scripted(version, Loopback::NeverUp, &probes))
                    .unwrap()
                    .version,
                "unknown"
            );
        }
    }

    #[test]
    fn silence_tells_nothing_unless_the_loopback_answers() {
        use ReplyKind::{NoReply, Reply};
        // Nothing answers (echo requests ignored, a loopback set down again).
        assert_eq!(
            by_behaviour(|_| answered(NoReply)).unwrap().version,
            "unknown"
        );
        // Something listens on the flow probe's port, or a firewall drops UDP: a plain UDP
        // probe is not answered either, so the flow's silence does not mean 0.92.
        let udp_silent = |o: &ProbeOptions| {
            answered(if o.protocol == Protocol::Udp {
                NoReply
            } else {
                Reply
            })
        };
        assert_eq!(by_behaviour(udp_silent).unwrap().version, "unknown");
    }

    #[test]
    fn a_failed_probe_ends_the_detection_with_its_error() {
        use crate::error::ProcessError;
        // Failing at each probe in turn (the loopback works, 0.92 asks the most: four).
        for failing in 1..=4 {
            let probes = std::cell::Cell::new(0);
            let answers = scripted("0.92", Loopback::Works, &probes);
            let found = by_behaviour(|o: &ProbeOptions| {
                if probes.get() + 1 == failing {
                    probes.set(probes.get() + 1);
                    return Err(ProcessError::Unresponsive.into());
                }
                answers(o)
            });
            assert!(
                matches!(found, Err(Error::Process(ProcessError::Unresponsive))),
                "{failing}: {found:?}"
            );
            // No probe after the failed one.
            assert_eq!(probes.get(), failing);
        }
    }

    #[test]
    fn each_needed_release_named_in_a_refusal_answers_flows() {
        // The releases the refusals name are the first rows that answer flows.
        let first = |family: usize| {
            RELEASES
                .iter()
                .find(|r| r.udp_port_and_local_port[family])
                .map(|r| r.version)
        };
        assert_eq!(first(0), Some("0.93"));
        assert_eq!(first(1), Some("0.96"));
    }
}
