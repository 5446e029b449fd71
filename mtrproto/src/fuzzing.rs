//! The properties the fuzz targets check, kept here so that `cargo test` replays the
//! committed corpus through the very same code (`mtrproto/tests/fuzz_corpus.rs`).
//!
//! Each function takes arbitrary bytes and panics when a property fails. Not part of the
//! stable API.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::{
    Confidence, Event, Feature, Flow, Hop, LineFramer, MultipathConfig, MultipathEnd,
    MultipathTracer, ProbeArgs, ProbeId, ProbeResult, Reply, ReplyKind, Request, SendError,
    Session, SessionConfig, Token, TraceConfig, TraceStats, Tracer, Word, text_report,
};

/// Reply lines: whatever parses encodes to a line that parses back equal.
pub fn reply_line(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(reply) = Reply::parse(text) {
        let mut line = String::new();
        reply.encode(&mut line);
        let again = Reply::parse(line.strip_suffix('\n').unwrap_or(&line));
        assert_eq!(
            again.as_ref(),
            Ok(&reply),
            "{text:?} re-encoded as {line:?}"
        );
    }
}

/// Request lines: whatever parses encodes to one line that parses back equal.
pub fn request_line(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok((token, request)) = Request::parse(text) {
        let mut line = Vec::new();
        request.encode(token, &mut line);
        assert!(line.len() <= Request::MAX_LINE);
        let line = std::str::from_utf8(&line).expect("requests encode to UTF-8");
        let body = line.strip_suffix('\n').expect("one newline, at the end");
        assert!(!body.contains('\n'));
        assert_eq!(
            Request::parse(body),
            Ok((token, request)),
            "{text:?} re-encoded as {line:?}"
        );
    }
}

/// Valid request and reply values, built from arbitrary input through the checked
/// constructors: each encodes to a line that parses back equal.
#[cfg(feature = "arbitrary")]
pub fn values(data: &[u8]) {
    let mut input = arbitrary::Unstructured::new(data);
    if let Ok(Some((token, request))) = arbitrary_request(&mut input) {
        let mut line = Vec::new();
        request.encode(token, &mut line);
        let line = std::str::from_utf8(&line).expect("requests encode to UTF-8");
        assert_eq!(
            Request::parse(line.trim_end_matches('\n')),
            Ok((token, request))
        );
    }
    if let Ok(Some(reply)) = arbitrary_reply(&mut input) {
        let mut line = String::new();
        reply.encode(&mut line);
        assert_eq!(Reply::parse(line.trim_end_matches('\n')), Ok(reply));
    }
}

#[cfg(feature = "arbitrary")]
type Built<T> = arbitrary::Result<Option<T>>;

#[cfg(feature = "arbitrary")]
fn arbitrary_token(input: &mut arbitrary::Unstructured<'_>) -> arbitrary::Result<Token> {
    Ok(Token::new(input.int_in_range(0..=Token::MAX.get())?).unwrap_or(Token::MAX))
}

/// A request through the checked setters; `None` when a setter refuses the value.
#[cfg(feature = "arbitrary")]
fn arbitrary_request(input: &mut arbitrary::Unstructured<'_>) -> Built<(Token, Request)> {
    use crate::{DeviceName, ProbeFields, Protocol};
    let token = arbitrary_token(input)?;
    if input.arbitrary()? {
        let Ok(feature) = Feature::from_name(input.arbitrary()?) else {
            return Ok(None);
        };
        return Ok(Some((token, Request::CheckSupport(feature))));
    }
    let target: std::net::IpAddr = input.arbitrary()?;
    let mut fields = ProbeFields::new(target);
    fields.protocol = *input.choose(&Protocol::ALL)?;
    fields.port = input.arbitrary()?;
    fields.local_port = input.arbitrary()?;
    fields.timeout = input
        .arbitrary::<Option<u32>>()?
        .map(|secs| Duration::from_secs(secs.into()));
    fields.ttl = input.arbitrary()?;
    if input.arbitrary()? {
        fields.local_addr = Some(if target.is_ipv4() {
            std::net::IpAddr::V4(input.arbitrary()?)
        } else {
            std::net::IpAddr::V6(input.arbitrary()?)
        });
    }
    if let Some(device) = input.arbitrary::<Option<&str>>()? {
        match DeviceName::new(device) {
            Ok(device) => fields.local_device = Some(device),
            Err(_) => return Ok(None),
        }
    }
    fields.bit_pattern = input.arbitrary()?;
    fields.tos = input.arbitrary()?;
    fields.mark = input.arbitrary()?;
    let Ok(mut args) = ProbeArgs::from_fields(fields) else {
        return Ok(None);
    };
    // A size mtr-packet would refuse is left out rather than ending the case.
    if let Some(size) = input.arbitrary()? {
        args = args.clone().size(size).unwrap_or(args);
    }
    // So is a flow that the protocol cannot hold.
    if let Some(id) = input.arbitrary::<Option<u16>>()? {
        let flow = crate::Flow::new(id % (crate::Flow::MAX + 1)).expect("in range");
        args = args.clone().flow(flow).unwrap_or(args);
    }
    Ok(Some((token, Request::SendProbe(args))))
}

/// A reply with every field set from the input; `None` when a text is not a word.
#[cfg(feature = "arbitrary")]
fn arbitrary_reply<'a>(input: &mut arbitrary::Unstructured<'a>) -> Built<Reply<'a>> {
    use crate::{Mpls, MplsStack, ReplyKind, Word};
    let word = |text: &str| Word::new(text).ok();
    let token = arbitrary_token(input)?;
    let Some(kind) = word(input.arbitrary()?) else {
        return Ok(None);
    };
    let mut reply = Reply::new(token, ReplyKind::from_name(kind));
    reply.address = input.arbitrary()?;
    reply.round_trip_time_us = input.arbitrary()?;
    reply.errno = input.arbitrary()?;
    let entries = input.int_in_range(0..=MplsStack::MAX_ENTRIES)?;
    for _ in 0..entries {
        let entry = Mpls::from_wire(input.arbitrary()?);
        reply.mpls.push(entry).expect("at most MAX_ENTRIES");
    }
    for field in [&mut reply.reason, &mut reply.support] {
        if let Some(text) = input.arbitrary::<Option<&str>>()? {
            let Some(text) = word(text) else {
                return Ok(None);
            };
            *field = Some(text);
        }
    }
    while input.arbitrary()? {
        let (Some(name), Some(value)) = (word(input.arbitrary()?), word(input.arbitrary()?)) else {
            return Ok(None);
        };
        if reply.push_unknown_arg(name, value).is_err() {
            return Ok(None);
        }
    }
    Ok(Some(reply))
}

/// The framer: the lines out do not depend on how the bytes are cut into chunks. The first
/// byte sets the maximum line length, the second how the rest is cut.
pub fn framer(data: &[u8]) {
    let [max, pattern, bytes @ ..] = data else {
        return;
    };
    let max_line = 1 + usize::from(*max % 64);
    let whole = frame(max_line, [bytes].into_iter());
    let mut rest = bytes;
    let cut = std::iter::from_fn(|| {
        if rest.is_empty() {
            return None;
        }
        let n = (1 + usize::from(*pattern) * (rest.len() + 7) % 23).min(rest.len());
        let (chunk, after) = rest.split_at(n);
        rest = after;
        Some(chunk)
    });
    assert_eq!(frame(max_line, cut), whole);
    assert_eq!(frame(max_line, bytes.chunks(1)), whole);
}

fn frame<'a>(
    max_line: usize,
    chunks: impl Iterator<Item = &'a [u8]>,
) -> Vec<Result<String, String>> {
    let mut framer = LineFramer::with_max_line(max_line);
    let mut out = Vec::new();
    for chunk in chunks {
        framer.feed(chunk, |l| {
            out.push(l.map(str::to_owned).map_err(|e| e.to_string()))
        });
        assert!(framer.buffered() <= max_line);
    }
    out.extend(framer.finish().map(|e| Err(e.to_string())));
    out
}

/// Trace statistics under arbitrary probe results, in any order, with or without `sent`,
/// from up to 208 responders per hop and 16 unknown reply names: no panic, Loss% within
/// 0..=100, at most [`Hop::MAX_RESPONDERS`] responders and 8 unknown names listed, whose
/// counts add up to the answers while under the cap, the reported hops end at the target,
/// reports render.
pub fn stats(data: &[u8]) {
    let target = std::net::IpAddr::from([198, 18, 0, 7]);
    let mut trace = TraceStats::new(target, 8);
    let kinds = [
        ReplyKind::Reply,
        ReplyKind::TtlExpired,
        ReplyKind::NoReply,
        ReplyKind::NoRoute,
        ReplyKind::ProbesExhausted,
    ];
    for chunk in data.chunks(6) {
        let [ttl, kind, from, rtt @ ..] = chunk else {
            break;
        };
        if kind & 0x80 == 0 {
            trace.sent(*ttl % 10);
        }
        let kind = if kind & 0x40 == 0 {
            kinds[usize::from(*kind) % kinds.len()].clone()
        } else {
            // A reply name mtr-packet does not have: past 8 per hop they are not listed.
            let name = Word::new(&format!("unknown-{}", kind & 0xf)).expect("a word");
            ReplyKind::Other(name)
        };
        let mut result = ProbeResult::from_kind(kind);
        if from & 1 == 1 {
            // The TTL byte's tens pick among 26 subnets: enough responders for one hop to
            // pass the listed cap; 198.18.0.7 is the target.
            let address = [198, 18, ttl / 10, from >> 5];
            result.responder = Some(std::net::IpAddr::from(address));
            let micros = rtt.iter().fold(0u64, |t, b| t << 8 | u64::from(*b)) << (from >> 1 & 0xf);
            result.time = Some(Duration::from_micros(micros));
        }
        trace.record(*ttl % 10, &result);
    }
    let hops = trace.hops();
    for hop in hops {
        assert!((0.0..=100.0).contains(&hop.loss_percent()), "{hop:?}");
        assert!(hop.dropped() <= hop.sent());
        assert!(hop.best_us() <= hop.worst_us() || hop.received() == 0);
        // Every answer counts for one listed responder, unless the list is full; the
        // latest is one of them, unless the list is full.
        let listed = hop.responders().count();
        let counted = hop.responders().map(|r| r.count).sum::<u64>();
        assert!(listed <= Hop::MAX_RESPONDERS, "{hop:?}");
        assert!(counted <= hop.received(), "{hop:?}");
        assert!(hop.responders().all(|r| r.count > 0), "{hop:?}");
        if listed < Hop::MAX_RESPONDERS {
            assert_eq!(counted, hop.received(), "{hop:?}");
            assert!(
                hop.host()
                    .is_none_or(|h| hop.responders().any(|r| r.address == h))
            );
        }
        assert_eq!(hop.host().is_some(), hop.received() > 0, "{hop:?}");
        let unknown = hop.errors().iter();
        assert!(
            unknown
                .filter(|(k, _)| matches!(k, ReplyKind::Other(_)))
                .count()
                <= 8
        );
    }
    if let Some(destination) = trace.destination_ttl() {
        assert!(hops.len() <= usize::from(destination));
    }
    let _ = text_report(&trace, "fuzz", true);
}

/// The multipath tracer with arbitrary settings under arbitrary results (any responder, any
/// kind, lost, late, duplicated, never, now and then refused): no panic; the trace ends
/// within its bounds; the budget and the window hold; the report stays within the TTLs
/// probed; a trace ends as refused exactly when a probe in flight was refused; once it
/// ended, however it ended, nothing changes its report.
pub fn multipath(data: &[u8]) {
    let mut bytes = Bytes(data);
    let target = std::net::IpAddr::from([198, 18, 0, 9]);
    let max_ttl = 1 + bytes.byte() % 12;
    let config = MultipathConfig {
        confidence: if bytes.byte() & 1 == 0 {
            Confidence::P95
        } else {
            Confidence::P99
        },
        first_ttl: 1 + bytes.byte() % max_ttl,
        max_ttl,
        max_silent: 1 + bytes.byte() % 4,
        // 0 included: a trace with no budget must end at once.
        max_probes: u32::from(bytes.byte()) * 2,
        window: 1 + usize::from(bytes.byte() % 16),
        gap: Duration::from_millis(u64::from(bytes.byte() % 20)),
        timeout: Duration::from_secs(1 + u64::from(bytes.byte() % 3)),
        lite: bytes.byte() & 1 == 0,
        decisions: 1 + u32::from(bytes.byte() % 8),
        single_first_hop: bytes.byte() & 1 == 1,
        per_packet_check: bytes.byte() & 1 == 0,
        first_flow: u16::from(bytes.byte()) * 64,
    };
    let start = Instant::now();
    let mut now = start;
    let args = ProbeArgs::new(target).protocol(crate::Protocol::Udp);
    let mut tracer = MultipathTracer::new(args, &config, now).expect("valid settings");
    let mut in_flight: Vec<ProbeId> = Vec::new();
    let mut done: Vec<ProbeId> = Vec::new();
    let mut refused = None;
    let kinds = [
        ReplyKind::TtlExpired,
        ReplyKind::Reply,
        ReplyKind::NoReply,
        ReplyKind::NoRoute,
    ];
    // Each turn sends, answers or moves the clock: bounded by the budget and the deadlines.
    for _ in 0..100_000 {
        while let Some(probe) = tracer.poll_probe(now) {
            in_flight.push(probe.id());
        }
        assert!(tracer.in_flight() <= config.window);
        assert!(tracer.probes_sent() <= config.max_probes);
        if tracer.is_done() {
            break;
        }
        let action = bytes.byte();
        match (action % 8, in_flight.is_empty()) {
            // The clock moves to the tracer's next deadline (probes may be lost).
            (0, _) | (_, true) => {
                let next = tracer
                    .poll_timeout()
                    .expect("a running trace has a deadline");
                now = now.max(next);
                tracer.handle_timeout(now);
            }
            (1, false) => {
                let id = in_flight.swap_remove(usize::from(bytes.byte()) % in_flight.len());
                tracer.handle_lost(now, id);
                done.push(id);
            }
            // An old result again.
            (2, false) if !done.is_empty() => {
                let id = done[usize::from(bytes.byte()) % done.len()];
                tracer.handle_result(now, id, &ProbeResult::from_kind(ReplyKind::Reply));
            }
            // Rarely, a probe the helper refused: the trace ends there.
            (7, false) if action >= 0xf0 => {
                let id = in_flight.swap_remove(usize::from(bytes.byte()) % in_flight.len());
                let result = ProbeResult::from_kind(ReplyKind::PermissionDenied);
                let before = tracer.in_flight();
                tracer.handle_result(now, id, &result);
                // Ignored if the probe was given up already; else it ends the trace.
                let counted = tracer.in_flight() < before;
                assert_eq!(tracer.is_done(), counted);
                if counted {
                    refused = Some(id.ttl());
                }
                done.push(id);
            }
            _ => {
                let id = in_flight.swap_remove(usize::from(bytes.byte()) % in_flight.len());
                let from = bytes.byte();
                let mut result = ProbeResult::from_kind(kinds[usize::from(from) % 4].clone());
                if from & 4 == 0 {
                    result.responder = Some(if from & 8 == 0 {
                        std::net::IpAddr::from([198, 18, id.ttl(), from >> 5])
                    } else {
                        target
                    });
                }
                now += Duration::from_millis(u64::from(from >> 4));
                tracer.handle_result(now, id, &result);
                done.push(id);
            }
        }
    }
    assert!(tracer.is_done(), "{config:?}: the trace did not end");
    assert!(tracer.poll_timeout().is_none());
    let report = tracer.report();
    assert_eq!(report.probes, tracer.probes_sent());
    assert!(report.end.is_some());
    assert_eq!(tracer.refused().map(|(ttl, _)| ttl), refused, "{report:?}");
    assert_eq!(report.end == Some(MultipathEnd::Refused), refused.is_some());
    let ttls = config.first_ttl..=config.max_ttl;
    assert!(
        report.hops.iter().all(|h| ttls.contains(&h.ttl)),
        "{report:?}"
    );
    assert!(report.hops.iter().map(|h| h.probes).sum::<u32>() <= report.probes);
    for link in &report.links {
        assert!(
            ttls.contains(&link.ttl) && link.ttl > config.first_ttl,
            "{link:?}"
        );
    }
    // Once it ended, however it ended, nothing changes it: probes still in flight answered
    // (by the target or a router), lost or given up.
    for (i, &id) in in_flight.iter().enumerate() {
        let kind = kinds[i % kinds.len()].clone();
        let mut result = ProbeResult::from_kind(kind);
        result.responder = Some(std::net::IpAddr::from([198, 18, id.ttl(), 200]));
        if i % 3 == 0 {
            result.responder = Some(target);
        }
        tracer.handle_result(now, id, &result);
        tracer.handle_lost(now, id);
    }
    tracer.handle_timeout(now + Duration::from_secs(3600));
    assert_eq!(
        tracer.report(),
        report,
        "changed after the end ({} in flight)",
        in_flight.len()
    );
    assert_eq!(tracer.poll_timeout(), None);
}

/// The mtr-style tracer with arbitrary settings (flows up to [`Flow::MAX`]` + 1` included)
/// under arbitrary results (any responder, any kind, lost, now and then in another flow or
/// one the trace does not have, now and then refused): no panic; the trace ends within its bounds; every probe's TTL and flow
/// are within the settings; each flow's figures count exactly the probes sent in it; once
/// ended, nothing changes its report.
pub fn tracer(data: &[u8]) {
    let mut bytes = Bytes(data);
    let target = std::net::IpAddr::from([198, 18, 0, 9]);
    let max_ttl = 1 + bytes.byte() % 12;
    let flows = match bytes.byte() % 4 {
        0 => 0,
        1 => Flow::MAX + 1,
        _ => u16::from(bytes.byte()),
    };
    let config = TraceConfig {
        cycles: 1 + u32::from(bytes.byte() % 8),
        first_ttl: bytes.byte() % 16,
        max_ttl,
        max_unknown: bytes.byte() % 16,
        interval: Duration::from_millis(u64::from(bytes.byte()) * 4),
        timeout: Duration::from_secs(1 + u64::from(bytes.byte() % 3)),
        grace: Duration::from_millis(u64::from(bytes.byte()) * 20),
        flows,
    };
    let start = Instant::now();
    let mut now = start;
    let args = ProbeArgs::new(target).protocol(crate::Protocol::Udp);
    let mut tracer = Tracer::new(args, &config, now).expect("valid settings");
    let probed = u32::from(config.flows).min(config.cycles);
    assert_eq!(tracer.flow_stats().len(), probed as usize);
    let mut in_flight: Vec<(u8, Option<Flow>)> = Vec::new();
    let mut refused = None;
    let kinds = [
        ReplyKind::TtlExpired,
        ReplyKind::Reply,
        ReplyKind::NoReply,
        ReplyKind::NoRoute,
    ];
    for _ in 0..100_000 {
        while let Some(probe) = tracer.poll_probe(now) {
            assert!((1..=config.max_ttl).contains(&probe.ttl()), "{probe:?}");
            assert_eq!(probe.flow().is_some(), config.flows > 0, "{probe:?}");
            assert!(probe.flow().is_none_or(|f| u32::from(f.id()) < probed));
            in_flight.push((probe.ttl(), probe.flow()));
        }
        assert_eq!(tracer.in_flight(), in_flight.len());
        assert!(tracer.rounds_completed() <= config.cycles);
        assert!(tracer.probes_sent() <= u64::from(config.cycles) * u64::from(config.max_ttl));
        if tracer.is_done() {
            break;
        }
        let action = bytes.byte();
        match (action % 8, in_flight.is_empty()) {
            (0, _) | (_, true) => {
                let next = tracer
                    .poll_timeout()
                    .expect("a running trace has a deadline");
                now = now.max(next);
                tracer.handle_timeout(now);
            }
            (1, false) => {
                let (ttl, _) = in_flight.swap_remove(usize::from(bytes.byte()) % in_flight.len());
                tracer.handle_lost(now, ttl);
            }
            // Rarely, a probe the helper refused: the trace ends there.
            (7, false) if action >= 0xf0 => {
                let (ttl, flow) =
                    in_flight.swap_remove(usize::from(bytes.byte()) % in_flight.len());
                let result = ProbeResult::from_kind(ReplyKind::PermissionDenied);
                tracer.handle_flow_result(now, ttl, flow, &result);
                assert!(tracer.is_done());
                refused = Some(ttl);
            }
            _ => {
                let (ttl, flow) =
                    in_flight.swap_remove(usize::from(bytes.byte()) % in_flight.len());
                let from = bytes.byte();
                let mut result = ProbeResult::from_kind(kinds[usize::from(from) % 4].clone());
                if from & 4 == 0 {
                    result.responder = Some(if from & 8 == 0 {
                        std::net::IpAddr::from([198, 18, ttl, from >> 5])
                    } else {
                        target
                    });
                    result.time = Some(Duration::from_micros(u64::from(from) * 100));
                }
                now += Duration::from_millis(u64::from(from >> 4));
                // A driver's mistake: the answer said to come in another flow (counted in
                // that flow's figures, or only the whole trace's if the trace has no such
                // flow).
                let said = match action {
                    0xe0.. => Flow::new(u16::from(bytes.byte()) * 200).ok(),
                    _ => flow,
                };
                tracer.handle_flow_result(now, ttl, said, &result);
            }
        }
    }
    assert!(tracer.is_done(), "{config:?}: the trace did not end");
    assert_eq!(tracer.poll_timeout(), None);
    assert_eq!(tracer.refused().map(|(ttl, _)| ttl), refused);
    // Every probe counts once in the whole trace and once in its flow.
    if config.flows > 0 {
        for ttl in 1..=config.max_ttl {
            let sent = |stats: &TraceStats| stats.hop(ttl).map_or(0, Hop::sent);
            let in_flows = tracer.flow_stats().iter().map(sent).sum::<u64>();
            assert_eq!(sent(tracer.stats()), in_flows, "TTL {ttl}");
        }
    }
    let report = |tracer: &Tracer| {
        let flows = tracer.flow_stats().iter();
        let mut all = vec![text_report(tracer.stats(), "fuzz", true)];
        all.extend(flows.map(|f| text_report(f, "flow", true)));
        all
    };
    let before = report(&tracer);
    // Once it ended, nothing changes it: probes still in flight answered, lost, late.
    for (i, &(ttl, flow)) in in_flight.iter().enumerate() {
        let mut result = ProbeResult::from_kind(kinds[i % kinds.len()].clone());
        result.responder = Some(target);
        result.time = Some(Duration::from_millis(1));
        tracer.handle_flow_result(now, ttl, flow, &result);
        tracer.handle_lost(now, ttl);
    }
    tracer.handle_timeout(now + Duration::from_secs(3600));
    assert!(tracer.poll_probe(now + Duration::from_secs(3600)).is_none());
    assert_eq!(report(&tracer), before, "changed after the end");
}

/// The session under an arbitrary sequence of operations, played against a scripted helper:
/// every token completes exactly once, nothing completes that was never issued, the window
/// holds, buffers stay within their bounds.
pub fn session(data: &[u8]) {
    let mut bytes = Bytes(data);
    let window = 1 + usize::from(bytes.byte() % 5);
    let max_queue = usize::from(bytes.byte() % 8);
    let mut harness = Harness::new(window, max_queue);
    while !bytes.0.is_empty() {
        harness.step(&mut bytes);
    }
    harness.finish();
}

/// Reads small values off the front of the input; zeros when it runs out.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn byte(&mut self) -> u8 {
        let Some((&first, rest)) = self.0.split_first() else {
            return 0;
        };
        self.0 = rest;
        first
    }

    fn take(&mut self, n: usize) -> &[u8] {
        let (taken, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        taken
    }
}

/// A session and a scripted helper on a virtual clock: the test (or fuzz target) reads what
/// the session transmits, as mtr-packet would, and answers with lines of its choosing.
///
/// [`Pair::drive`] moves the clock to the session's next deadline, as a driver's poll loop
/// would.
pub struct Pair {
    /// The session under test.
    pub session: Session,
    /// The virtual clock.
    pub now: Instant,
    /// The helper's side: partial lines it has read.
    helper_input: LineFramer,
}

impl Pair {
    /// A session with `config`, its clock at the current instant.
    pub fn new(config: SessionConfig) -> Pair {
        Pair {
            session: Session::new(config),
            now: Instant::now(),
            helper_input: LineFramer::new(),
        }
    }

    /// Sends a probe to 127.0.0.1 with default arguments.
    ///
    /// # Panics
    ///
    /// When the session refuses it.
    pub fn probe(&mut self) -> Token {
        let args = ProbeArgs::new([127, 0, 0, 1].into());
        self.session
            .send_probe(self.now, args)
            .expect("the session takes the probe")
    }

    /// The helper reads every transmitted byte; the tokens of the lines it read, in order.
    pub fn read(&mut self) -> Vec<Token> {
        self.read_at_most(usize::MAX)
    }

    /// The helper reads at most `max` transmitted bytes; the tokens of the whole lines read.
    ///
    /// # Panics
    ///
    /// When the session writes anything but valid request lines.
    pub fn read_at_most(&mut self, max: usize) -> Vec<Token> {
        let mut tokens = Vec::new();
        let mut left = max;
        while left > 0 {
            let Some(bytes) = self.session.poll_transmit(self.now) else {
                break;
            };
            let n = bytes.len().min(left);
            let chunk = bytes[..n].to_vec();
            self.session.consume(self.now, n);
            left -= n;
            self.helper_input.feed(&chunk, |line| {
                let line = line.expect("the session writes lines");
                let (token, _) = Request::parse(line).expect("valid request");
                tokens.push(token);
            });
        }
        tokens
    }

    /// The helper writes `text`.
    pub fn answer(&mut self, text: &str) {
        self.session.handle_input(self.now, text.as_bytes());
    }

    /// Every pending event.
    pub fn events(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.session.poll_event()).collect()
    }

    /// Moves the clock on by `by` and lets the session act on it.
    pub fn advance(&mut self, by: Duration) {
        self.now += by;
        self.session.handle_timeout(self.now);
    }

    /// Moves the clock to the session's next deadline, if any and later than now, and lets
    /// the session act on it; false when the session waits for nothing.
    pub fn drive(&mut self) -> bool {
        let Some(due) = self.session.poll_timeout() else {
            return false;
        };
        self.now = self.now.max(due);
        self.session.handle_timeout(self.now);
        true
    }
}

/// The session fuzz target's pair, with the bookkeeping its checks need.
struct Harness {
    pair: Pair,
    window: usize,
    issued: Vec<Token>,
    /// Completions per token: events, or a successful cancel.
    completions: HashMap<Token, u32>,
    /// Requests the helper read and has not answered.
    outstanding: Vec<Token>,
    /// The issued tokens that are check-supports (they hold no window slot).
    checks: Vec<Token>,
    /// Junk fed in answered a request (by itself, or left unended and glued to the
    /// helper's next line): maybe one the helper had not read, whose slot the session then
    /// gave to another while the helper still had it to read.
    junk_answered: bool,
}

const MAX_LINE: usize = 128;

impl Harness {
    fn new(window: usize, max_queue: usize) -> Harness {
        let config = SessionConfig {
            window,
            max_queue,
            grace: Duration::from_secs(1),
            max_line: MAX_LINE,
            ..SessionConfig::default()
        };
        Harness {
            pair: Pair::new(config),
            window,
            issued: Vec::new(),
            completions: HashMap::new(),
            outstanding: Vec::new(),
            checks: Vec::new(),
            junk_answered: false,
        }
    }

    /// One operation, chosen and shaped by the next bytes.
    fn step(&mut self, bytes: &mut Bytes<'_>) {
        let now = self.pair.now;
        match bytes.byte() % 8 {
            0 => {
                let timeout = 1 + u32::from(bytes.byte() % 3);
                for _ in 0..=bytes.byte() % 4 {
                    let args = ProbeArgs::new([127, 0, 0, 1].into()).timeout_secs(timeout);
                    let sent = self
                        .pair
                        .session
                        .send_probe(now, args.expect("timeout in range"));
                    self.record_send(sent, false);
                }
            }
            1 => {
                let sent = self.pair.session.check_support(now, Feature::Version);
                self.record_send(sent, true);
            }
            2 if !self.issued.is_empty() => {
                let token = self.issued[usize::from(bytes.byte()) % self.issued.len()];
                if self.pair.session.cancel(token) {
                    *self.completions.entry(token).or_default() += 1;
                }
            }
            3 => {
                let read = self.pair.read_at_most(1 + usize::from(bytes.byte()) * 2);
                self.outstanding.extend(read);
            }
            4 => self.helper_answers(bytes),
            5 => {
                let n = usize::from(bytes.byte() % 40);
                let garbage = bytes.take(n).to_vec();
                let settled = self.pair.session.settled;
                self.pair.session.handle_input(now, &garbage);
                self.junk_answered |= self.pair.session.settled != settled;
            }
            6 => self
                .pair
                .advance(Duration::from_millis(u64::from(bytes.byte()) * 32)),
            7 if bytes.byte() < 16 => {
                self.pair.session.handle_eof(now);
                self.outstanding.clear();
            }
            _ => {}
        }
        self.drain();
        self.check_bounds();
    }

    fn record_send(&mut self, sent: Result<Token, SendError>, check: bool) {
        match sent {
            Ok(token) => {
                self.checks.retain(|&t| t != token);
                if check {
                    self.checks.push(token);
                }
                assert!(
                    !self.issued.contains(&token) || self.completions.contains_key(&token),
                    "token {token} reissued while pending"
                );
                self.issued.push(token);
                self.completions.remove(&token);
            }
            Err(SendError::Closed) => assert!(self.pair.session.is_closed()),
            Err(SendError::QueueFull(_)) => {}
        }
    }

    /// The helper answers some requests it read, in an order, maybe twice, maybe with
    /// `probes-exhausted`, a negative time or a bad address, cut into chunks.
    fn helper_answers(&mut self, bytes: &mut Bytes<'_>) {
        let flags = bytes.byte();
        let mut text = String::new();
        for _ in 0..flags % 4 {
            if self.outstanding.is_empty() {
                break;
            }
            let token = self
                .outstanding
                .remove(usize::from(bytes.byte()) % self.outstanding.len());
            let line = if flags & 0x40 != 0 {
                format!("{token} probes-exhausted\n")
            } else {
                // A clock step's negative time, and an argument that does not parse, end
                // the probe like any answer.
                match bytes.byte() % 4 {
                    1 => format!("{token} reply ip-4 127.0.0.1 round-trip-time -39772\n"),
                    2 => format!("{token} reply ip-4 127.0.0.999 round-trip-time 9\n"),
                    _ => format!("{token} reply ip-4 127.0.0.1 round-trip-time 9\n"),
                }
            };
            text.push_str(&line);
            if flags & 0x80 != 0 {
                text.push_str(&line);
            }
        }
        // Junk left unended before these lines makes their first line its own: whatever
        // that line answers, junk answered it.
        let mut text = text.as_str();
        if self.pair.session.input_buffered() > 0 {
            let glued = text.find('\n').map_or(text.len(), |i| i + 1);
            let settled = self.pair.session.settled;
            self.pair.answer(&text[..glued]);
            self.junk_answered |= self.pair.session.settled != settled;
            text = &text[glued..];
        }
        let cut = usize::from(flags >> 2 & 0xf);
        // The lines are ASCII: any cut is a character boundary.
        let (a, b) = text.split_at(cut.min(text.len()));
        self.pair.answer(a);
        self.pair.answer(b);
    }

    fn drain(&mut self) {
        while let Some(event) = self.pair.session.poll_event() {
            let token = match event {
                Event::Probe { token, .. } | Event::Support { token, .. } => token,
                _ => continue,
            };
            assert!(
                self.issued.contains(&token),
                "completion for {token}, never issued"
            );
            let count = self.completions.entry(token).or_default();
            *count += 1;
            assert_eq!(*count, 1, "token {token} completed twice");
        }
    }

    fn check_bounds(&self) {
        // A check-support holds no window slot; `MAX_CHECKS` of them at most go past it.
        let session = &self.pair.session;
        let most = self.window + Session::MAX_CHECKS;
        assert!(session.probes_in_flight() <= self.window);
        assert!(session.in_flight() <= most);
        assert!(session.input_buffered() <= MAX_LINE);
        assert!(session.transmit_buffered() <= most * Request::MAX_LINE);
        // Once the watchdog gave up on a request the helper never answered, or junk answered
        // one (maybe before the helper read it), the helper is misbehaving and the slot is
        // reused: the bound holds until then.
        if self.pair.session.counters().unanswered == 0 && !self.junk_answered {
            let (checks, probes): (Vec<&Token>, Vec<&Token>) = self
                .outstanding
                .iter()
                .filter(|t| !self.completions.contains_key(t))
                .partition(|t| self.checks.contains(t));
            assert!(
                probes.len() <= self.window && checks.len() <= Session::MAX_CHECKS,
                "{} probes and {} checks unanswered at the helper",
                probes.len(),
                checks.len()
            );
        }
    }

    /// Ends the stream: every issued token completed exactly once.
    fn finish(mut self) {
        self.pair.session.handle_eof(self.pair.now);
        self.drain();
        for token in &self.issued {
            assert_eq!(self.completions.get(token), Some(&1), "token {token}");
        }
        assert_eq!(self.pair.session.in_flight(), 0);
        assert_eq!(self.pair.session.poll_timeout(), None);
    }
}
