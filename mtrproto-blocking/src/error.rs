//! Errors of the blocking session, after the Python `mtrpacket` package's.

use std::io;
use std::process::ExitStatus;

use mtrproto::{ArgumentError, ConfigError, ReplyKind};
use thiserror::Error;

/// Anything a probe or a session call can fail with.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// The session was closed.
    #[error(transparent)]
    State(#[from] StateError),
    /// A host name did not resolve.
    #[error(transparent)]
    HostResolve(#[from] HostResolveError),
    /// The mtr-packet process is missing, broken, gone or unresponsive.
    #[error(transparent)]
    Process(#[from] ProcessError),
    /// A probe option mtr-packet would refuse.
    #[error("invalid probe option: {0}")]
    Argument(#[from] ArgumentError),
    /// A session setting out of range (window, queue, rate).
    #[error("invalid session setting: {0}")]
    Config(#[from] ConfigError),
    /// A probe option this mtr-packet release would ignore or never answer (see
    /// [`compat`](crate::compat)), or an IPv6 or SCTP probe of a helper without IPv6
    /// sockets or SCTP (it answers `check-support feature ip-6` or `sctp` with `no`).
    #[error("mtr-packet {version} cannot send {what}; see the compatibility table in the README")]
    Unsupported {
        /// The helper's version.
        version: String,
        /// What it cannot do.
        what: &'static str,
    },
    /// mtr-packet refused a trace's probe for a reason of this host, not of the network
    /// (`invalid-argument`, `permission-denied`, `address-in-use`, `address-not-available`,
    /// `unexpected-error`: [`ReplyKind::is_refusal`]); mtr stops on these too. The trace
    /// ends at the first one.
    #[error("mtr-packet refused the probe at TTL {ttl}: {reply} ({})", refusal_hint(.reply))]
    Refused {
        /// The reply.
        reply: ReplyKind<'static>,
        /// The TTL of the refused probe.
        ttl: u8,
    },
    /// More probes are waiting than the chosen helper's queue holds
    /// ([`SessionBuilder::max_queue`](crate::SessionBuilder::max_queue), per helper); for
    /// [`Session::check_support`](crate::Session::check_support), no room for the check.
    #[error("too many probes waiting ({0}); wait for results before sending more")]
    QueueFull(usize),
    /// A call that waits for the session's driver thread, made on that thread (from a probe
    /// callback): it would wait for itself for ever. A callback may send probes with
    /// [`Session::probe_with`](crate::Session::probe_with) and must not wait.
    #[error(
        "a call that waits for the session, made from a probe callback on its own driver \
         thread, would wait for itself; send with probe_with from there"
    )]
    OnDriverThread,
}

/// What a refusal ([`Error::Refused`]) most often means.
pub(crate) fn refusal_hint(reply: &ReplyKind<'_>) -> &'static str {
    match reply {
        ReplyKind::InvalidArgument => {
            "an option, protocol or IP version this helper or host cannot send, or a target \
             this host has no route to"
        }
        ReplyKind::PermissionDenied => "the host forbids sending it (firewall, capabilities)",
        ReplyKind::AddressInUse => "its source port is taken",
        ReplyKind::AddressNotAvailable => "its source address is not this host's",
        ReplyKind::UnexpectedError => "the helper failed to send it (a route or a socket)",
        _ => "the helper did not send it",
    }
}

/// The session was closed with [`Session::close`](crate::Session::close) or dropped.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("the session is closed; open a new one")]
pub struct StateError;

/// A host name that did not resolve to an address of the wanted IP version.
#[derive(Debug, Error)]
#[error("cannot resolve {host:?}{}: {reason}", version_suffix(*.ip_version))]
pub struct HostResolveError {
    /// The name as given.
    pub host: String,
    /// The IP version asked for, if any.
    pub ip_version: Option<crate::IpVersion>,
    /// What went wrong.
    pub reason: String,
}

fn version_suffix(version: Option<crate::IpVersion>) -> &'static str {
    match version {
        Some(crate::IpVersion::V4) => " to an IPv4 address",
        Some(crate::IpVersion::V6) => " to an IPv6 address",
        None => "",
    }
}

/// What is wrong with the mtr-packet process.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ProcessError {
    /// The program is not installed or not in PATH.
    #[error(
        "{program} not found: install mtr-packet (`apt-get install mtr-tiny` on Debian/Ubuntu, \
         `brew install mtr` on macOS), or set MTR_PACKET to its path"
    )]
    NotFound {
        /// The program that was looked for.
        program: String,
    },
    /// The program could not be started.
    #[error("cannot start {program}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        source: io::Error,
    },
    /// `MTR_PACKET` could not be split into words.
    #[error("cannot parse MTR_PACKET={value:?}: {reason}")]
    BadCommandLine {
        /// The variable's value.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The program does not answer the protocol as mtr-packet does.
    #[error("{program} does not speak the mtr-packet protocol: {detail}; is it mtr-packet?")]
    NotMtrPacket {
        /// The program.
        program: String,
        /// What it did instead.
        detail: String,
    },
    /// The helper exited (or closed its output) with requests pending, or no helper runs;
    /// the session starts a new one where it can (see the crate docs).
    #[error("mtr-packet exited{}", exit_suffix(.status))]
    Exited {
        /// How it exited, once reaped.
        status: Option<ExitStatus>,
    },
    /// The helper did not answer within the request's timeout plus the session's grace;
    /// or the probe was held back that long and never sent: with several helpers, behind
    /// another helper's probes (a TCP or SCTP probe waits until no other helper has any);
    /// after a helper ended, behind the answers its probes may still get (see the crate
    /// docs).
    #[error("mtr-packet did not answer in time; it may be hung or overloaded")]
    Unresponsive,
    /// Talking to the helper failed.
    #[error("I/O error talking to mtr-packet: {0}")]
    Io(#[from] io::Error),
}

fn exit_suffix(status: &Option<ExitStatus>) -> String {
    status.map_or_else(String::new, |s| format!(" ({s})"))
}
