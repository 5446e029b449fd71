//! Per-hop statistics of a trace, computed exactly as mtr 0.95 does.
//!
//! mtr keeps times as integer microseconds and updates running figures on every reply
//! (`net_process_ping` in mtr's `ui/net.c`); the same integer arithmetic, truncations
//! included, is done here so that figures match mtr's to the microsecond. Each formula is
//! given with the method that computes it.
//!
//! ```
//! use mtrproto::{ProbeResult, Reply, TraceStats};
//! let mut trace = TraceStats::new("127.0.0.1".parse()?, 30);
//! for rtt in [120, 47] {
//!     trace.sent(1);
//!     let line = format!("1 reply ip-4 127.0.0.1 round-trip-time {rtt}");
//!     trace.record(1, &ProbeResult::from_reply(&Reply::parse(&line)?));
//! }
//! let hop = &trace.hops()[0];
//! assert_eq!((hop.sent(), hop.received(), hop.loss_percent()), (2, 2, 0.0));
//! assert_eq!((hop.avg_us(), hop.stdev_us(), hop.gmean_us()), (83, 51, 75));
//! assert_eq!((hop.jitter_us(), hop.javg_us(), hop.jmax_us(), hop.jint_us()), (73, 36, 73, 73));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::net::IpAddr;

use crate::protocol::mpls::MplsStack;
use crate::protocol::reply::ReplyKind;
use crate::protocol::result::ProbeResult;

/// The statistics of one trace: a [`Hop`] per TTL from 1.
#[derive(Debug, Clone)]
pub struct TraceStats {
    target: IpAddr,
    /// The hops up to the highest TTL probed, and one past a hop a router (not the target)
    /// answered, for [`TraceStats::hops`] to show: grown on demand, as a campaign holds
    /// thousands of traces, most of them far shorter than `max_ttl`. The hop one past the
    /// highest probed, which [`TraceStats::hop`] also gives, is then mostly not made: it is
    /// an empty one ([`EMPTY_HOPS`]), and a target's answer ends the path before it.
    hops: Vec<Hop>,
    max_ttl: u8,
    /// The highest TTL probed or given a result, 0 before any.
    top: u8,
    /// Who answered each hop last, one bit per TTL (bit `ttl - 1`) for the first
    /// [`TtlBits::TTLS`] TTLs, as [`Hop::host`] says it: `heard`, anyone; `reached`, the
    /// target. [`Rounds::advance`] scans these on every probe: inline, they are in the cache
    /// line the tracer already touched, where the hops are another allocation and the
    /// figures behind them yet another. TTLs past these (rare: mtr's default `max_ttl` is
    /// 30) are read from the hops ([`TraceStats::heard`]).
    heard: TtlBits,
    reached: TtlBits,
}

/// The hops of a trace grow by this many at a time: at most 3 unused (48 bytes).
const HOPS_STEP: usize = 4;

/// A hop not yet made, for each TTL: what [`TraceStats::hop`] gives one past the highest
/// TTL probed without holding it in every trace.
static EMPTY_HOPS: [Hop; 255] = {
    let mut hops = [const { Hop::empty(0) }; 255];
    let mut i = 0;
    while i < hops.len() {
        hops[i].ttl = i as u8 + 1;
        i += 1;
    }
    hops
};

/// One bit per TTL, for TTLs 1 to [`TtlBits::TTLS`]: 8 bytes where all 255 would take 32,
/// in every trace of a campaign and every copy of its figures.
#[derive(Debug, Clone, Copy, Default)]
struct TtlBits(u64);

impl TtlBits {
    /// The TTLs with a bit.
    const TTLS: u8 = 64;

    /// The bit of index `i` (TTL `i + 1`), if it has one.
    fn get(self, i: u8) -> Option<bool> {
        (i < Self::TTLS).then(|| self.0 >> i & 1 == 1)
    }

    /// Sets the bit of index `i`; nothing past the bits.
    fn set(&mut self, i: u8, value: bool) {
        if i < Self::TTLS {
            let bit = 1u64 << i;
            if value {
                self.0 |= bit;
            } else {
                self.0 &= !bit;
            }
        }
    }
}

/// One host that answered at a hop, as [`Hop::responders`] gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Responder {
    /// Its address.
    pub address: IpAddr,
    /// How many answers came from it.
    pub count: u64,
    /// The MPLS label stack of its first answer, as mtr keeps it (`mplss` in `net.c`); empty
    /// when none.
    pub mpls: MplsStack,
}

/// The statistics of one TTL.
///
/// A hop that never answered (most of a silent target's) holds only its probe count: the
/// figures and responders are made at its first answer or error (one allocation for a hop
/// with one responder and no error, the common case).
#[derive(Debug, Clone, Default)]
pub struct Hop {
    ttl: u8,
    transit: bool,
    /// The family of its responders (the target's: answers of the other are not counted).
    v6: bool,
    xmit: u32,
    seen: Option<Box<Seen>>,
}

/// What a hop has seen. The figures have mtr's C types (`struct nethost` in `ui/net.c`):
/// `int`, and `long long` for `ssd`; the arithmetic on them is mtr's, so they stay equal.
#[derive(Debug, Clone, Default)]
struct Seen {
    returned: u32,
    last: i32,
    best: i32,
    worst: i32,
    avg: i32,
    gmean: i32,
    jitter: i32,
    javg: i32,
    jworst: i32,
    jinta: i32,
    ssd: i64,
    /// The first responder's address, once `returned` is not 0, inline: most hops have one
    /// responder. Its family is the hop's (`Hop::v6`), so its 16 bytes hold either (with
    /// the figures, 72 bytes). Its count is `returned` less the others'; its label stack
    /// and whether it answered last are in `more`.
    first: [u8; 16],
    /// The other responders and the errors, out of line: most hops have neither.
    more: Option<Box<More>>,
}

/// What most hops do not have: the first responder's label stack, the responders after
/// the first, and the outcomes other than an answer or `no-reply`.
#[derive(Debug, Clone, Default)]
struct More {
    first_mpls: Option<MplsStack>,
    /// In the order first seen; room for exactly these.
    others: Vec<OtherResponder>,
    errors: Vec<(ReplyKind<'static>, u64)>,
    /// The index in `errors` of the latest answer's error (mtr's `nh->err`), `None` after a
    /// plain answer.
    err: Option<u32>,
    /// Who answered last (mtr's `nh->addr`): 0 the first responder, `i` the `i`-th of
    /// `others`, [`UNLISTED`] the one in `unlisted`.
    latest: u32,
    /// Answers from responders past [`Hop::MAX_RESPONDERS`], and the latest of them.
    unlisted: Option<Box<Unlisted>>,
}

/// [`More::latest`] when the latest answer came from a responder not listed.
const UNLISTED: u32 = u32::MAX;

/// The answers of a hop's responders past [`Hop::MAX_RESPONDERS`]: counted, not listed.
#[derive(Debug, Clone)]
struct Unlisted {
    answers: u32,
    latest: IpAddr,
}

/// Reply names mtr-packet does not have ([`ReplyKind::Other`]) listed per hop at most; the
/// known ones are few and always listed.
const MAX_UNKNOWN_KINDS: usize = 8;

/// An address in 16 bytes, its family told apart by the caller.
fn pack(address: IpAddr) -> [u8; 16] {
    match address {
        IpAddr::V4(v4) => {
            let mut bytes = [0; 16];
            bytes[..4].copy_from_slice(&v4.octets());
            bytes
        }
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// The address [`pack`] made of `bytes`.
fn unpack(bytes: [u8; 16], v6: bool) -> IpAddr {
    if v6 {
        IpAddr::from(bytes)
    } else {
        IpAddr::from([bytes[0], bytes[1], bytes[2], bytes[3]])
    }
}

/// A responder after a hop's first.
#[derive(Debug, Clone)]
struct OtherResponder {
    address: IpAddr,
    count: u32,
    mpls: Option<Box<MplsStack>>,
}

/// A label stack kept only when it has entries.
fn kept_mpls(mpls: &MplsStack) -> Option<Box<MplsStack>> {
    (!mpls.is_empty()).then(|| Box::new(*mpls))
}

/// Appends `value` with room for exactly one more: these lists are short and grow rarely.
fn push_exact<T>(list: &mut Vec<T>, value: T) -> usize {
    list.reserve_exact(1);
    list.push(value);
    list.len() - 1
}

/// C's conversion of a `double` to `int` as x86-64 does it (`cvttsd2si`): truncation, and
/// `INT_MIN` for NaN or a value out of range, where mtr's `pow` can take its figures.
fn c_int(value: f64) -> i32 {
    if value.is_nan() || value <= f64::from(i32::MIN) - 1.0 || value >= f64::from(i32::MAX) + 1.0 {
        i32::MIN
    } else {
        value as i32
    }
}

/// [`c_int`] for a `long long` (`ssd`): `LLONG_MIN` for NaN or a value out of range.
fn c_long_long(value: f64) -> i64 {
    // 2^63 is exact in an f64; every f64 below it and from -2^63 up converts.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    // NaN is in no range.
    if !(-LIMIT..LIMIT).contains(&value) {
        i64::MIN
    } else {
        value as i64
    }
}

impl TraceStats {
    /// An empty trace towards `target` over TTLs `1..=max_ttl`.
    pub fn new(target: IpAddr, max_ttl: u8) -> TraceStats {
        TraceStats {
            target,
            hops: Vec::new(),
            max_ttl,
            top: 0,
            heard: TtlBits::default(),
            reached: TtlBits::default(),
        }
    }

    /// The target.
    pub fn target(&self) -> IpAddr {
        self.target
    }

    /// A probe with this TTL was sent and is in flight. TTLs out of range are ignored.
    pub fn sent(&mut self, ttl: u8) {
        if let Some(hop) = self.hop_mut(ttl, ttl) {
            hop.xmit = hop.xmit.saturating_add(1);
            hop.transit = true;
        }
    }

    /// The probe with this TTL completed with `result`. As mtr 0.95 counts it
    /// (`handle_command_reply` in `ui/cmdpipe.c`), an answer is a `reply`, `ttl-expired`,
    /// `no-route` or `network-down` (or 0.96's `no-route-host`, `no-route-network`,
    /// `host-down`) that carries an address of the target's family and a round-trip time;
    /// only an answer counts as received, ends the probe's transit and sets the hop's latest
    /// error. Every outcome other than `reply`, `ttl-expired` or `no-reply` is also counted
    /// among the hop's [`errors`](Hop::errors), an unreachable that is an answer too.
    pub fn record(&mut self, ttl: u8, result: &ProbeResult) {
        let target = self.target;
        let Some(hop) = self.hop_mut(ttl, ttl) else {
            return;
        };
        // `hop_mut` took only TTLs from 1.
        if let Some(from_target) = hop.record(target, result) {
            self.heard.set(ttl - 1, true);
            self.reached.set(ttl - 1, from_target);
            if !from_target && usize::from(ttl) == self.hops.len() {
                // `hops` shows the hop past one a router answered.
                self.hop_mut(ttl, ttl.saturating_add(1));
            }
        }
    }

    /// Marks every probe as no longer in flight, as mtr does before printing its report
    /// (`net_end_transit`): Loss% is then `100 - 100 * Rcv / Snt`.
    pub fn end_transit(&mut self) {
        for hop in &mut self.hops {
            hop.transit = false;
        }
    }

    /// Whether anyone answered the hop of index `i` (TTL `i + 1`) last: its bit, or past the
    /// bits, its hop.
    fn heard(&self, i: u8) -> bool {
        self.heard.get(i).unwrap_or_else(|| {
            self.hops
                .get(usize::from(i))
                .is_some_and(|h| h.host().is_some())
        })
    }

    /// Whether the target answered the hop of index `i` (TTL `i + 1`) last: its bit, or past
    /// the bits, its hop.
    fn reached(&self, i: u8) -> bool {
        self.reached.get(i).unwrap_or_else(|| {
            self.hops
                .get(usize::from(i))
                .is_some_and(|h| h.host() == Some(self.target))
        })
    }

    /// Frees the room for hops beyond those made: the tracer calls it as a round ends, when
    /// the hops have grown as far as the rounds went (mostly in the first round).
    pub(crate) fn fit_hops(&mut self) {
        self.hops.shrink_to_fit();
    }

    /// The hop of `ttl`, probed or given a result, after growing the hops to `up_to` (to
    /// `ttl`, or one past it where [`hops`] shows that one).
    ///
    /// [`hops`]: TraceStats::hops
    fn hop_mut(&mut self, ttl: u8, up_to: u8) -> Option<&mut Hop> {
        if ttl == 0 || ttl > self.max_ttl {
            return None;
        }
        self.top = self.top.max(ttl);
        let want = usize::from(up_to.min(self.max_ttl));
        if self.hops.capacity() < want {
            // Room for the hops reached rounded up to [`HOPS_STEP`]: growing by doubling would
            // leave room for up to twice as many in thousands of traces, growing by one would
            // move the hops at every probe of a trace's first round (the hops grow in it
            // only), each move an allocation, a copy and a free.
            let room = want
                .next_multiple_of(HOPS_STEP)
                .min(usize::from(self.max_ttl));
            self.hops.reserve_exact(room - self.hops.len());
        }
        while self.hops.len() < want {
            let next = u8::try_from(self.hops.len() + 1).unwrap_or(u8::MAX);
            self.hops.push(Hop::empty(next));
        }
        self.hops.get_mut(usize::from(ttl) - 1)
    }

    /// The hops to report, as mtr's `net_max` picks them: up to the first hop where the
    /// target answered or whose latest answer was an error (one transient unreachable does
    /// not end the path once a later answer clears it); with neither, up to one past the
    /// last hop that answered at all.
    pub fn hops(&self) -> &[Hop] {
        let mut max = 0;
        for (i, hop) in self.hops.iter().enumerate() {
            if hop.host() == Some(self.target) || hop.error().is_some() {
                return &self.hops[..=i];
            }
            if hop.host().is_some() {
                max = i + 2;
            }
        }
        &self.hops[..max.min(self.hops.len())]
    }

    /// The hop of `ttl`, once a probe went out at it (or past it: the hops reach one past
    /// the highest TTL probed), whether or not [`hops`](TraceStats::hops) reports it.
    ///
    /// ```
    /// use mtrproto::TraceStats;
    /// let mut trace = TraceStats::new("127.0.0.1".parse()?, 30);
    /// trace.sent(3);
    /// assert_eq!(trace.hop(3).map(|h| h.sent()), Some(1));
    /// assert_eq!(trace.hop(4).map(|h| h.sent()), Some(0));
    /// assert!(trace.hop(5).is_none());
    /// assert!(trace.hops().is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn hop(&self, ttl: u8) -> Option<&Hop> {
        let i = usize::from(ttl).checked_sub(1)?;
        match self.hops.get(i) {
            Some(hop) => Some(hop),
            // Not made: one past the highest TTL probed (within `max_ttl`) is empty; none
            // before the first probe.
            None if self.top > 0 && ttl <= self.top.saturating_add(1).min(self.max_ttl) => {
                EMPTY_HOPS.get(i)
            }
            None => None,
        }
    }

    /// The TTL of the hop where the target answered, if it has.
    pub fn destination_ttl(&self) -> Option<u8> {
        self.hops
            .iter()
            .find(|h| h.host() == Some(self.target))
            .map(|h| h.ttl)
    }
}

/// mtr's probing order (`net_send_batch` in `ui/net.c`): one probe at a time, TTL 1, 2, and
/// so on; a round ends after the probe to a hop where the target answered, after the probe
/// past a hop where it answered, when more than 12 hops before are silent, or at the last
/// TTL. The next round starts again at TTL 1.
///
/// mtr sends a probe every `interval / hosts` ([`Rounds::gap`]), `hosts` being the length of
/// the previous round (10 before the first one ends), and records whatever answers came back
/// in between. A driver that does the same sends exactly the probes mtr sends.
///
/// ```
/// use std::time::Duration;
/// use mtrproto::{ProbeResult, Reply, Rounds, TraceStats};
/// let mut trace = TraceStats::new("127.0.0.1".parse()?, 30);
/// let mut rounds = Rounds::new(&trace);
/// let mut sent = Vec::new();
/// loop {
///     let ttl = rounds.next_ttl();
///     trace.sent(ttl);
///     sent.push(ttl);
///     // The target is at TTL 2; its answer came back before the next probe.
///     let line = if ttl >= 2 { "1 reply ip-4 127.0.0.1 round-trip-time 90" } else { "1 no-reply" };
///     let ended = rounds.advance(&trace);
///     trace.record(ttl, &ProbeResult::from_reply(&Reply::parse(line)?));
///     if ended && sent.len() > 3 {
///         break;
///     }
/// }
/// // TTL 2's first answer was not in when TTL 3 went out; from then on, rounds of two.
/// assert_eq!(sent, [1, 2, 3, 1, 2]);
/// assert_eq!(rounds.gap(Duration::from_secs(1)), Duration::from_millis(500));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Rounds {
    /// mtr's `batch_at`: the index of the next TTL. Every field is below 256 (TTLs are),
    /// so each is a byte: a campaign holds thousands of these.
    at: u8,
    /// mtr's `numhosts`.
    hosts: u8,
    max_ttl: u8,
    /// mtr's `fstTTL - 1`: the index each round starts at.
    first: u8,
    /// mtr's `maxUnknown`.
    max_unknown: u8,
}

impl Rounds {
    /// mtr's `maxUnknown` default (`-U`).
    pub const MAX_UNKNOWN: u8 = 12;

    /// Rounds over the TTLs of `stats`, before the first probe.
    pub fn new(stats: &TraceStats) -> Rounds {
        Rounds::starting_at(stats, 1, Rounds::MAX_UNKNOWN)
    }

    /// Rounds that start at TTL `first_ttl` (mtr's `-f`, brought into `1..=max TTL` as mtr's
    /// option parsing does) and end once more than `max_unknown` hops before the next one
    /// are silent (mtr's `-U`, at least 1). mtr counts every silent hop of the round from
    /// `first_ttl`, not only consecutive ones.
    pub fn starting_at(stats: &TraceStats, first_ttl: u8, max_unknown: u8) -> Rounds {
        let max_ttl = stats.max_ttl.max(1);
        let first = first_ttl.clamp(1, max_ttl) - 1;
        Rounds {
            at: first,
            hosts: 10,
            max_ttl,
            first,
            max_unknown: max_unknown.max(1),
        }
    }

    /// The TTL of the next probe.
    pub fn next_ttl(&self) -> u8 {
        self.at.saturating_add(1)
    }

    /// The pause before the next probe: `interval / hosts`, as `calc_deltatime` computes it.
    pub fn gap(&self, interval: std::time::Duration) -> std::time::Duration {
        interval / u32::from(self.hosts.max(1))
    }

    /// After the probe to [`next_ttl`](Rounds::next_ttl) went out (and before its answer
    /// is recorded): moves on, and tells whether that probe ended a round ([`gap`] changes
    /// only then).
    ///
    /// [`gap`]: Rounds::gap
    pub fn advance(&mut self, stats: &TraceStats) -> bool {
        // `heard` and `reached` are `Hop::host` against the target, without following a
        // pointer: this scan runs on every probe. The hops before `at`, from `first`: the
        // silent ones counted, up to the first the target answered, if any.
        let (unknown, target_at) = if self.at < TtlBits::TTLS {
            // Every TTL to `at` has its bits (`first <= at`): a word's operations.
            let span = (1u64 << self.at) - (1u64 << self.first);
            let target_at = (stats.reached.0 & span).trailing_zeros();
            // Up to and with the target's hop, which it answered (`reached` is in `heard`).
            let upto = span & (2u64 << target_at.min(63)).wrapping_sub(1);
            let silent = !stats.heard.0 & upto;
            // 64 when the target answered none: not before `at`, so none below.
            (silent.count_ones(), u8::try_from(target_at).ok())
        } else {
            let mut unknown = 0u32;
            let mut target_at = None;
            for i in self.first..self.at {
                if !stats.heard(i) {
                    unknown += 1;
                }
                if stats.reached(i) {
                    target_at = Some(i);
                    break;
                }
            }
            (unknown, target_at)
        };
        let mut restart = false;
        // `at + 1` is at most `max_ttl`, a u8: no sum below overflows.
        if let Some(i) = target_at.filter(|&i| i < self.at) {
            restart = true;
            self.hosts = i + 1;
        }
        let reached = stats.reached(self.at);
        if reached || unknown > u32::from(self.max_unknown) || self.at + 1 >= self.max_ttl {
            restart = true;
            self.hosts = self.at + 1;
        }
        if restart {
            self.at = self.first;
        } else {
            self.at += 1;
        }
        restart
    }
}

impl Hop {
    /// The hop of `ttl` before anything is sent to it.
    const fn empty(ttl: u8) -> Hop {
        Hop {
            ttl,
            transit: false,
            v6: false,
            xmit: 0,
            seen: None,
        }
    }

    /// Records `result`; when it is an answer that counts, returns whether the target gave
    /// it (the hop's host is then the target), `None` otherwise (the host stays).
    fn record(&mut self, target: IpAddr, result: &ProbeResult) -> Option<bool> {
        use ReplyKind::*;
        let err = match result.result {
            Reply | TtlExpired => None,
            NoRoute | NoRouteHost | NoRouteNetwork | NetworkDown | HostDown => {
                Some(self.seen_mut().count_error(&result.result))
            }
            NoReply => return None,
            _ => {
                self.seen_mut().count_error(&result.result);
                return None;
            }
        };
        // mtr reads only the address of its own family and needs a time to record anything;
        // a negative time (the helper's clock stepped back) it records as it is.
        let rtt = match (result.time, result.unusable_time_us) {
            (Some(time), _) => i64::try_from(time.as_micros()).unwrap_or(i64::MAX),
            (None, Some(micros)) => micros,
            (None, None) => return None,
        };
        let address = result.responder?;
        if address.is_ipv4() != target.is_ipv4() {
            return None;
        }
        self.transit = false;
        self.v6 = address.is_ipv6();
        let seen = self.seen_mut();
        if let Some(more) = &mut seen.more {
            more.err = err;
        }
        let packed = pack(address);
        let latest = match seen.returned {
            0 => {
                seen.first = packed;
                if !result.mpls.is_empty() {
                    seen.more.get_or_insert_default().first_mpls = Some(result.mpls);
                }
                0
            }
            _ if seen.first == packed => 0,
            _ => {
                let more = seen.more.get_or_insert_default();
                let others = &mut more.others;
                match others.iter().position(|o| o.address == address) {
                    Some(at) => {
                        others[at].count = others[at].count.saturating_add(1);
                        at + 1
                    }
                    // Listed no more: a flood of new addresses costs neither memory nor a
                    // longer search per answer.
                    None if others.len() + 1 >= Hop::MAX_RESPONDERS => {
                        match &mut more.unlisted {
                            Some(unlisted) => {
                                unlisted.answers = unlisted.answers.saturating_add(1);
                                unlisted.latest = address;
                            }
                            None => {
                                more.unlisted = Some(Box::new(Unlisted {
                                    answers: 1,
                                    latest: address,
                                }));
                            }
                        }
                        UNLISTED as usize
                    }
                    None => {
                        let mpls = kept_mpls(&result.mpls);
                        let count = 1;
                        push_exact(
                            others,
                            OtherResponder {
                                address,
                                count,
                                mpls,
                            },
                        ) + 1
                    }
                }
            }
        };
        if latest != 0 || seen.more.is_some() {
            seen.more.get_or_insert_default().latest = u32::try_from(latest).unwrap_or(u32::MAX);
        }
        // mtr reads the time with `strtol` into a C int, which keeps its low 32 bits.
        seen.add_rtt(rtt as i32);
        // `address` is now the hop's host.
        Some(address == target)
    }

    fn seen_mut(&mut self) -> &mut Seen {
        self.seen.get_or_insert_default()
    }

    /// A figure of the hop, `T::default()` (zero) until it answered or failed.
    fn figure<T: Default>(&self, figure: impl Fn(&Seen) -> T) -> T {
        self.seen.as_deref().map(figure).unwrap_or_default()
    }
}

impl Hop {
    /// The TTL.
    pub fn ttl(&self) -> u8 {
        self.ttl
    }

    /// Snt: probes sent.
    pub fn sent(&self) -> u64 {
        self.xmit.into()
    }

    /// Rcv: answers received.
    pub fn received(&self) -> u64 {
        self.figure(|s| s.returned).into()
    }

    /// Whether a probe to this hop is still in flight: sent, and no answer recorded since
    /// (a `no-reply` does not end it, as in mtr, which ignores that reply).
    pub fn in_flight(&self) -> bool {
        self.transit
    }

    /// The error of the hop's latest answer (`no-route`, `network-down`...), `None` when
    /// its latest answer was a `reply` or `ttl-expired`. A hop with an error ends the path
    /// in [`TraceStats::hops`], as in mtr.
    pub fn error(&self) -> Option<&ReplyKind<'static>> {
        let more = self.seen.as_deref()?.more.as_deref()?;
        let at = usize::try_from(more.err?).ok()?;
        more.errors.get(at).map(|(kind, _)| kind)
    }

    /// Drop: probes lost, the one in flight excluded: `Snt - transit - Rcv`.
    pub fn dropped(&self) -> u64 {
        (self.sent() - u64::from(self.transit)).saturating_sub(self.received())
    }

    /// Loss%: `100 - 100 * Rcv / (Snt - transit)`, 0 when nothing completed; truncated to
    /// thousandths of a percent as mtr's `net_loss` does.
    pub fn loss_percent(&self) -> f64 {
        let completed = self.sent() - u64::from(self.transit);
        if completed == 0 {
            return 0.0;
        }
        let returned = self.received() as f64;
        let milli = (1000.0 * (100.0 - 100.0 * returned / completed as f64)) as i64;
        // More answers than probes only comes from a caller recording without `sent`.
        (milli as f64 / 1000.0).clamp(0.0, 100.0)
    }

    /// The latest responder, or `None` for a silent hop.
    pub fn host(&self) -> Option<IpAddr> {
        let seen = self.seen.as_deref()?;
        if seen.returned == 0 {
            return None;
        }
        match seen.more.as_deref() {
            Some(more) if more.latest == UNLISTED => more.unlisted.as_ref().map(|u| u.latest),
            Some(more) if more.latest > 0 => {
                let at = usize::try_from(more.latest).ok()?;
                more.others.get(at - 1).map(|o| o.address)
            }
            _ => Some(unpack(seen.first, self.v6)),
        }
    }

    /// Responders listed per hop at most (mtr keeps 8, `MAX_PATH`): answers from further
    /// ones count in the hop's figures, and the latest of them is its [`host`](Hop::host),
    /// but they are not in [`responders`](Hop::responders).
    pub const MAX_RESPONDERS: usize = 64;

    /// Every responder, in the order first seen, up to [`Hop::MAX_RESPONDERS`] (their
    /// counts then add up to less than [`received`](Hop::received)).
    pub fn responders(&self) -> impl Iterator<Item = Responder> + '_ {
        let seen = self.seen.as_deref();
        let mpls = |stack: &Option<Box<MplsStack>>| stack.as_deref().copied().unwrap_or_default();
        let more = seen.and_then(|s| s.more.as_deref());
        let others = more.map_or(&[][..], |m| &m.others[..]);
        let unlisted = more
            .and_then(|m| m.unlisted.as_ref())
            .map_or(0, |u| u64::from(u.answers));
        let first = seen.filter(|s| s.returned > 0).map(|s| {
            let answers_after = unlisted + others.iter().map(|o| u64::from(o.count)).sum::<u64>();
            Responder {
                address: unpack(s.first, self.v6),
                count: u64::from(s.returned).saturating_sub(answers_after),
                mpls: s
                    .more
                    .as_deref()
                    .and_then(|m| m.first_mpls)
                    .unwrap_or_default(),
            }
        });
        first
            .into_iter()
            .chain(others.iter().map(move |o| Responder {
                address: o.address,
                count: o.count.into(),
                mpls: mpls(&o.mpls),
            }))
    }

    /// Outcomes other than `reply`, `ttl-expired` or `no-reply` (unreachable answers, which
    /// count as received too, included), with their counts; of the reply names mtr-packet
    /// does not have ([`ReplyKind::Other`]), the first 8 seen.
    pub fn errors(&self) -> &[(ReplyKind<'static>, u64)] {
        let more = self.seen.as_deref().and_then(|s| s.more.as_deref());
        more.map_or(&[], |m| &m.errors)
    }

    /// Last: the latest round-trip time, in µs.
    pub fn last_us(&self) -> i64 {
        self.figure(|s| s.last).into()
    }

    /// Best: the smallest round-trip time, in µs.
    pub fn best_us(&self) -> i64 {
        self.figure(|s| s.best).into()
    }

    /// Wrst: the largest round-trip time, in µs.
    pub fn worst_us(&self) -> i64 {
        self.figure(|s| s.worst).into()
    }

    /// Avg: the running mean `avg += (rtt - avg) / n`, kept as whole µs.
    pub fn avg_us(&self) -> i64 {
        self.figure(|s| s.avg).into()
    }

    /// StDev: `sqrt(ssd / (n - 1))` (sample standard deviation, Welford's sum of squared
    /// differences), 0 below two answers; whole µs, in a C int as mtr's `net_stdev` returns
    /// it (`INT_MIN` when `ssd` went negative or out of range).
    pub fn stdev_us(&self) -> i64 {
        self.figure(|s| {
            if s.returned > 1 {
                c_int((s.ssd as f64 / (f64::from(s.returned) - 1.0)).sqrt())
            } else {
                0
            }
        })
        .into()
    }

    /// Gmean: the running geometric mean, whole µs.
    pub fn gmean_us(&self) -> i64 {
        self.figure(|s| s.gmean).into()
    }

    /// Jttr: `|rtt - previous rtt|` of the latest answer (0 for the first), µs.
    pub fn jitter_us(&self) -> i64 {
        self.figure(|s| s.jitter).into()
    }

    /// Javg: the running mean of Jttr in integer arithmetic, µs.
    pub fn javg_us(&self) -> i64 {
        self.figure(|s| s.javg).into()
    }

    /// Jmax: the largest Jttr, µs.
    pub fn jmax_us(&self) -> i64 {
        self.figure(|s| s.jworst).into()
    }

    /// Jint: RFC 1889's interarrival jitter estimator `J += |D| - (J + 8) / 16`, µs.
    pub fn jint_us(&self) -> i64 {
        self.figure(|s| s.jinta).into()
    }
}

impl Seen {
    /// mtr's running figures for one more round-trip time (`net_process_ping`), in its C
    /// types: `int` arithmetic wraps as it does on x86-64.
    fn add_rtt(&mut self, rtt: i32) {
        // Jitter: the absolute difference from the previous round-trip time.
        self.jitter = rtt.wrapping_sub(self.last).wrapping_abs();
        self.last = rtt;
        if self.returned == 0 {
            self.best = rtt;
            self.worst = rtt;
            self.gmean = rtt;
            self.avg = 0;
            self.ssd = 0;
            self.jitter = 0;
            self.jworst = 0;
            self.jinta = 0;
        }
        self.best = self.best.min(rtt);
        self.worst = self.worst.max(rtt);
        self.jworst = self.jworst.max(self.jitter);
        self.returned = self.returned.saturating_add(1);
        let n = f64::from(self.returned);
        // Welford's running mean and sum of squared differences, stored as integers.
        let old_avg = self.avg;
        let step = f64::from(rtt.wrapping_sub(old_avg));
        self.avg = c_int(f64::from(self.avg) + step / n);
        self.ssd = c_long_long(self.ssd as f64 + step * f64::from(rtt.wrapping_sub(self.avg)));
        // Mean jitter, in integer division as mtr does.
        let javg_step = i64::from(self.jitter.wrapping_sub(self.javg)) / i64::from(self.returned);
        self.javg = self.javg.wrapping_add(javg_step as i32);
        // RFC 1889 A.8 interarrival jitter estimator, scaled by 16.
        self.jinta = self
            .jinta
            .wrapping_add(self.jitter.wrapping_sub(self.jinta.wrapping_add(8) >> 4));
        if self.returned > 1 {
            // Running geometric mean: gmean^((n-1)/n) * rtt^(1/n). A negative time makes it
            // NaN, which mtr's conversion to int makes INT_MIN.
            let gmean = f64::from(self.gmean).powf((n - 1.0) / n) * f64::from(rtt).powf(1.0 / n);
            self.gmean = c_int(gmean);
        }
    }

    /// Counts one more `kind`; returns its index in `errors` (`u32::MAX`: not listed).
    fn count_error(&mut self, kind: &ReplyKind<'_>) -> u32 {
        let errors = &mut self.more.get_or_insert_default().errors;
        let at = match errors.iter().position(|(k, _)| k == kind) {
            Some(at) => {
                let n = &mut errors[at].1;
                *n = n.saturating_add(1);
                at
            }
            // A helper answering with ever new names must not grow the list without end.
            None if matches!(kind, ReplyKind::Other(_))
                && errors
                    .iter()
                    .filter(|(k, _)| matches!(k, ReplyKind::Other(_)))
                    .count()
                    >= MAX_UNKNOWN_KINDS =>
            {
                return u32::MAX;
            }
            None => push_exact(errors, (kind.clone().into_owned(), 1)),
        };
        u32::try_from(at).unwrap_or(u32::MAX)
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::Reply;

    fn answer(trace: &mut TraceStats, ttl: u8, line: &str) {
        trace.sent(ttl);
        trace.record(ttl, &ProbeResult::from_reply(&Reply::parse(line).unwrap()));
    }

    /// mtr's scan in `net_send_batch`, TTL by TTL on the hops themselves: what
    /// `Rounds::advance` computes from its bits.
    fn advance_as_mtr(rounds: &mut Rounds, stats: &TraceStats) -> bool {
        let target = Some(stats.target);
        let host = |i: u8| stats.hop(i + 1).and_then(Hop::host);
        let (mut unknown, mut restart) = (0, false);
        for i in rounds.first..rounds.at {
            unknown += u8::from(host(i).is_none());
            if host(i) == target {
                restart = true;
                rounds.hosts = i + 1;
                break;
            }
        }
        let last = rounds.at + 1 >= rounds.max_ttl;
        if host(rounds.at) == target || unknown > rounds.max_unknown || last {
            restart = true;
            rounds.hosts = rounds.at + 1;
        }
        rounds.at = if restart { rounds.first } else { rounds.at + 1 };
        restart
    }

    #[test]
    fn rounds_advance_as_mtr_scans_on_every_path() {
        // Paths up to 90 TTLs (past the bits' 64) with silent hops, routers and the target
        // (also before the path's end, and again after other answers), from several first
        // TTLs and unknown-hop limits, answers coming up to 40 probes late (so that the
        // target answers before the TTL being probed): every step moves the rounds as mtr's
        // scan does.
        let target: IpAddr = "127.0.0.9".parse().unwrap();
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let (mut past_bits, mut target_before) = (0, 0);
        for _ in 0..400 {
            // Mostly up to 90 TTLs, also the edges of the bits and of a u8.
            let max_ttl = match next(8) {
                0 => [1, 63, 64, 65, 255][next(5) as usize],
                _ => 1 + next(90) as u8,
            };
            // The target's TTL, past `max_ttl` for a target that never answers.
            let destination = 1 + next(u64::from(max_ttl) + 8).min(254) as u8;
            let late = next(40) as usize;
            let mut stats = TraceStats::new(target, max_ttl);
            // Mostly from the first TTLs, also from around and past the bits' end.
            let first_ttl = match next(4) {
                0 => 60 + next(10) as u8,
                _ => 1 + next(4) as u8,
            };
            let max_unknown = match next(8) {
                0 => u8::MAX,
                _ => 1 + next(13) as u8,
            };
            let mut rounds = Rounds::starting_at(&stats, first_ttl, max_unknown);
            let mut mirror = rounds.clone();
            let mut coming = std::collections::VecDeque::new();
            for _ in 0..600 {
                let ttl = rounds.next_ttl();
                past_bits += usize::from(ttl > TtlBits::TTLS);
                stats.sent(ttl);
                let line = match next(64) {
                    // Now and then the target at any TTL, or a router at the target's.
                    0 => Some("1 reply ip-4 127.0.0.9 round-trip-time 5"),
                    1 => Some("1 ttl-expired ip-4 127.0.0.1 round-trip-time 3"),
                    2..=3 => None,
                    _ if ttl == destination => Some("1 reply ip-4 127.0.0.9 round-trip-time 5"),
                    _ if ttl.is_multiple_of(11) => None,
                    _ => Some("1 ttl-expired ip-4 127.0.0.1 round-trip-time 3"),
                };
                coming.push_back((ttl, line));
                while coming.len() > late {
                    if let Some((ttl, Some(line))) = coming.pop_front() {
                        let result = ProbeResult::from_reply(&Reply::parse(line).unwrap());
                        stats.record(ttl, &result);
                    }
                }
                let at = rounds.at;
                target_before += usize::from((rounds.first..at).any(|i| stats.reached(i)));
                assert_eq!(rounds.advance(&stats), advance_as_mtr(&mut mirror, &stats));
                assert_eq!((rounds.at, rounds.hosts), (mirror.at, mirror.hosts));
            }
        }
        assert!(
            target_before > 1000,
            "{target_before} scans with the target before"
        );
        assert!(past_bits > 100, "{past_bits} probes past the bits");
    }

    #[test]
    fn the_latest_bits_follow_the_host() {
        // Every kind of outcome, in an order that moves the host between the target, two
        // routers and nobody-yet: the bits `Rounds` reads say what `host` says.
        let target: IpAddr = "127.0.0.9".parse().unwrap();
        let lines = [
            "1 no-reply",
            "1 ttl-expired ip-6 ::1 round-trip-time 10",
            "1 no-route",
            "1 ttl-expired ip-4 127.0.0.1",
            "1 ttl-expired ip-4 127.0.0.1 round-trip-time 10",
            "1 reply ip-4 127.0.0.9 round-trip-time 20",
            "1 no-reply",
            "1 ttl-expired ip-4 127.0.0.2 round-trip-time -5",
            "1 probes-exhausted",
            "1 reply ip-4 127.0.0.9 round-trip-time 30",
            "1 ttl-expired ip-4 127.0.0.1 round-trip-time 10",
        ];
        // At TTL 1 and at the last TTL with a bit; past the bits, none is set (`heard` and
        // `reached` read the hops there, `rounds_advance_as_mtr_scans_on_every_path`).
        for ttl in [1, 64, 65, 255] {
            let mut trace = TraceStats::new(target, 255);
            for line in lines {
                answer(&mut trace, ttl, line);
                let host = trace.hops[usize::from(ttl) - 1].host();
                let bits = (trace.heard.get(ttl - 1), trace.reached.get(ttl - 1));
                let expected = (host.is_some(), host == Some(target));
                if ttl <= TtlBits::TTLS {
                    assert_eq!(
                        bits,
                        (Some(expected.0), Some(expected.1)),
                        "TTL {ttl} after {line}"
                    );
                } else {
                    assert_eq!(bits, (None, None), "TTL {ttl}");
                }
                // No other TTL's bits, and none past them.
                let set = |b: TtlBits| b.0.count_ones();
                assert!(set(trace.heard) <= u32::from(ttl <= TtlBits::TTLS));
                assert!(set(trace.reached) <= u32::from(ttl <= TtlBits::TTLS));
            }
        }
        assert_eq!(std::mem::size_of::<Hop>(), 16);
    }

    #[test]
    fn hops_grow_only_as_far_as_probed() {
        let mut trace = TraceStats::new("127.0.0.9".parse().unwrap(), 30);
        assert!(trace.hops.is_empty());
        // Nothing probed: no hop at all.
        assert!(trace.hop(1).is_none());
        // Silent: up to the TTL probed, the one past it given empty but not made.
        answer(&mut trace, 2, "1 no-reply");
        assert_eq!(trace.hops.len(), 2);
        assert_eq!(trace.hop(3).map(|h| (h.ttl(), h.sent())), Some((3, 0)));
        assert!(trace.hop(4).is_none() && trace.hop(0).is_none());
        answer(&mut trace, 1, "1 reply ip-4 127.0.0.1 round-trip-time 10");
        answer(&mut trace, 3, "1 reply ip-4 127.0.0.3 round-trip-time 30");
        // One past a hop a router answered, so that the hop after the last answer shows.
        assert_eq!(trace.hops.len(), 4);
        let ttls: Vec<u8> = trace.hops().iter().map(|h| h.ttl).collect();
        assert_eq!(ttls, [1, 2, 3, 4]);
        assert_eq!(trace.hops()[1].sent(), 1);
        // A silent hop holds no figures; one that answered, one responder.
        assert!(trace.hops[1].seen.is_none());
        assert_eq!(trace.hops[0].responders().count(), 1);
        assert!(trace.hops[0].seen.as_ref().unwrap().more.is_none());
        // TTLs out of range are ignored and grow nothing.
        trace.sent(0);
        trace.sent(31);
        assert_eq!(trace.hops.len(), 4);
        // At max_ttl, no hop past it.
        answer(
            &mut trace,
            30,
            "1 reply ip-4 127.0.0.30 round-trip-time 300",
        );
        assert_eq!(trace.hops.len(), 30);
        assert_eq!(trace.hops().len(), 30);
        assert!(trace.hop(31).is_none());
        // Where the target answers, no hop past it is made: the path ends there.
        let mut trace = TraceStats::new("127.0.0.9".parse().unwrap(), 30);
        answer(&mut trace, 1, "1 reply ip-4 127.0.0.1 round-trip-time 10");
        answer(&mut trace, 2, "1 reply ip-4 127.0.0.9 round-trip-time 20");
        assert_eq!(trace.hops.len(), 2);
        assert_eq!(trace.hops().len(), 2);
        let past = trace.hop(3).unwrap();
        assert_eq!((past.ttl(), past.sent(), past.host()), (3, 0, None));
    }

    #[test]
    fn responders_keep_their_family_counts_and_the_latest() {
        for (target, a, b) in [
            ("127.0.0.9", "127.0.0.1", "127.0.0.2"),
            ("2001:db8::9", "2001:db8::1", "::ffff:127.0.0.1"),
        ] {
            let mut trace = TraceStats::new(target.parse().unwrap(), 30);
            let line = |from: &str| {
                format!(
                    "1 ttl-expired ip-{} {from} round-trip-time 10",
                    if from.contains(':') { 6 } else { 4 }
                )
            };
            answer(&mut trace, 1, &line(a));
            assert!(trace.hops[0].seen.as_ref().unwrap().more.is_none());
            answer(&mut trace, 1, &line(b));
            assert_eq!(trace.hops[0].host(), Some(b.parse().unwrap()));
            answer(&mut trace, 1, &line(a));
            assert_eq!(trace.hops[0].host(), Some(a.parse().unwrap()));
            let seen: Vec<(IpAddr, u64)> = trace.hops[0]
                .responders()
                .map(|r| (r.address, r.count))
                .collect();
            assert_eq!(seen, [(a.parse().unwrap(), 2), (b.parse().unwrap(), 1)]);
            assert_eq!(trace.hops[0].received(), 3);
        }
    }

    #[test]
    fn rounds_cover_max_ttl_before_any_hop_exists() {
        let trace = TraceStats::new("127.0.0.9".parse().unwrap(), 3);
        let mut rounds = Rounds::new(&trace);
        let mut ttls = Vec::new();
        for _ in 0..4 {
            ttls.push(rounds.next_ttl());
            rounds.advance(&trace);
        }
        assert_eq!(ttls, [1, 2, 3, 1]);
    }
}
