//! The owned outcome of one probe.

use std::net::IpAddr;
use std::time::Duration;

use crate::protocol::mpls::MplsStack;
use crate::protocol::reply::{Reply, ReplyKind};

/// What became of a probe, with the meaning of the Python `mtrpacket` package's `ProbeResult`.
///
/// ```
/// use mtrproto::{ProbeResult, Reply, ReplyKind};
/// let result = ProbeResult::from_reply(&Reply::parse("5 reply ip-4 127.0.0.1 round-trip-time 1554")?);
/// assert!(result.success());
/// assert_eq!(result.result, ReplyKind::Reply);
/// assert_eq!(result.time, Some(std::time::Duration::from_micros(1554)));
/// assert_eq!(result.responder, Some("127.0.0.1".parse()?));
///
/// let lost = ProbeResult::from_reply(&Reply::parse("6 no-reply")?);
/// assert!(!lost.success());
/// assert_eq!((lost.time, lost.responder), (None, None));
///
/// // mtr-packet's clock stepped back: the target answered, but the time is unknown.
/// let stepped = ProbeResult::from_reply(&Reply::parse("7 reply ip-4 127.0.0.1 round-trip-time -39772")?);
/// assert!(stepped.success());
/// assert_eq!((stepped.time, stepped.unusable_time_us), (None, Some(-39772)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeResult {
    /// The reply name; unknown names are kept as text.
    pub result: ReplyKind<'static>,
    /// The round-trip time, when the reply carries a usable one.
    pub time: Option<Duration>,
    /// A `round-trip-time` that is no duration, in microseconds as mtr-packet wrote it;
    /// `time` is then `None`. It is negative: mtr-packet's clock stepped back while the probe
    /// was out. The answer itself (who answered, `success`) still holds; only its time is
    /// unknown. [`TraceStats`](crate::TraceStats) records it as mtr 0.95 does: as received,
    /// with this negative time in its figures.
    pub unusable_time_us: Option<i64>,
    /// Who answered (the target or a router), when the reply says.
    pub responder: Option<IpAddr>,
    /// The MPLS label stack quoted by a router; empty when none.
    pub mpls: MplsStack,
}

impl ProbeResult {
    /// True only when the target itself answered (`reply`). A method, not a field, so that
    /// it cannot disagree with `result`.
    pub fn success(&self) -> bool {
        self.result == ReplyKind::Reply
    }

    /// The result a reply stands for.
    pub fn from_reply(reply: &Reply<'_>) -> ProbeResult {
        let (usable, unusable) = match reply.round_trip_time_us.map(u64::try_from) {
            Some(Ok(micros)) => (Some(micros), None),
            Some(Err(_)) => (None, reply.round_trip_time_us),
            None => (None, None),
        };
        ProbeResult {
            result: reply.kind.clone().into_owned(),
            time: usable.map(Duration::from_micros),
            unusable_time_us: unusable,
            responder: reply.address,
            mpls: reply.mpls,
        }
    }

    /// A result of this kind only: no time, no responder, no MPLS (the session's own
    /// results, such as a probe refused with `probes-exhausted` until its timeout).
    pub(crate) fn from_kind(result: ReplyKind<'static>) -> ProbeResult {
        ProbeResult {
            result,
            time: None,
            unusable_time_us: None,
            responder: None,
            mpls: MplsStack::new(),
        }
    }
}
