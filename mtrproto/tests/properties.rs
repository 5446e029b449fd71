//! Property tests: encode/parse round trips, framer chunking independence, no panics.

use std::net::IpAddr;
use std::time::Duration;

use mtrproto::{
    DeviceName, Feature, Flow, FrameError, LineFramer, Mpls, MplsStack, ProbeArgs, ProbeFields,
    Protocol, Reply, ReplyKind, Request, Token, Word,
};
use proptest::prelude::*;

fn token() -> impl Strategy<Value = Token> {
    (0..=Token::MAX.get()).prop_map(|n| Token::new(n).unwrap())
}

fn word() -> impl Strategy<Value = Word<'static>> {
    "[!-~é☃]{1,12}".prop_map(|s| Word::new(&s).unwrap())
}

fn address(v4: bool) -> BoxedStrategy<IpAddr> {
    if v4 {
        any::<std::net::Ipv4Addr>().prop_map(IpAddr::V4).boxed()
    } else {
        any::<std::net::Ipv6Addr>().prop_map(IpAddr::V6).boxed()
    }
}

fn probe_args() -> impl Strategy<Value = ProbeArgs> {
    any::<bool>().prop_flat_map(|v4| {
        (
            address(v4),
            prop::sample::select(Protocol::ALL.to_vec()),
            prop::option::of(1..=u16::MAX),
            prop::option::of(address(v4)),
            prop::option::of(ProbeArgs::MIN_LOCAL_PORT..=u16::MAX),
            prop::option::of("[a-z0-9.-]{1,15}"),
            prop::option::of(1..=ProbeArgs::MAX_TIMEOUT_SECS),
            prop::option::of(1..=u8::MAX),
            (
                prop::option::of(any::<u16>()),
                prop::option::of(any::<u8>()),
                prop::option::of(any::<u8>()),
                prop::option::of(any::<u32>()),
                prop::option::weighted(0.25, 0..=Flow::MAX),
            ),
        )
            .prop_filter_map(
                "device names . and .. are refused",
                |(target, protocol, port, local, local_port, device, timeout, ttl, rest)| {
                    let (size, pattern, tos, mark, flow) = rest;
                    // A flow is a UDP probe whose two ports are the flow's.
                    let flow = flow.map(|id| Flow::new(id).unwrap());
                    let (protocol, port, local_port) = match flow {
                        Some(_) => (Protocol::Udp, None, None),
                        None => (protocol, port, local_port),
                    };
                    let local_device = match device {
                        Some(name) => Some(DeviceName::new(&name).ok()?),
                        None => None,
                    };
                    ProbeArgs::from_fields(ProbeFields {
                        target,
                        protocol,
                        port,
                        local_addr: local,
                        local_port,
                        local_device,
                        timeout: timeout.map(|t| Duration::from_secs(t.into())),
                        ttl,
                        size,
                        bit_pattern: pattern,
                        tos,
                        mark,
                        flow,
                    })
                    .ok()
                },
            )
    })
}

fn feature() -> impl Strategy<Value = Feature> {
    prop_oneof![
        prop::sample::select(vec![
            "version",
            "send-probe",
            "ip-4",
            "ip-6",
            "icmp",
            "udp",
            "tcp",
            "sctp",
            "mark"
        ])
        .prop_map(|n| Feature::from_name(n).unwrap()),
        word().prop_map(|w| Feature::from_name(w.as_str()).unwrap()),
    ]
}

fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        probe_args().prop_map(Request::SendProbe),
        feature().prop_map(Request::CheckSupport),
    ]
}

fn reply_kind() -> impl Strategy<Value = ReplyKind<'static>> {
    word().prop_map(ReplyKind::from_name)
}

fn mpls() -> impl Strategy<Value = MplsStack> {
    prop::collection::vec(
        (
            0..=Mpls::MAX_LABEL,
            0..=Mpls::MAX_TRAFFIC_CLASS,
            any::<bool>(),
            any::<u8>(),
        )
            .prop_map(|(l, tc, s, ttl)| Mpls::new(l, tc, s, ttl).unwrap()),
        0..=MplsStack::MAX_ENTRIES,
    )
    .prop_map(|entries| MplsStack::from_entries(&entries).unwrap())
}

fn reply() -> impl Strategy<Value = Reply<'static>> {
    (
        token(),
        prop_oneof![
            reply_kind(),
            Just(ReplyKind::Reply),
            Just(ReplyKind::TtlExpired)
        ],
        prop::option::of(any::<IpAddr>()),
        prop::option::of(any::<i64>()),
        mpls(),
        (
            prop::option::of(word()),
            prop::option::of(any::<i64>()),
            prop::option::of(word()),
        ),
        prop::collection::vec((word(), word()), 0..3),
    )
        .prop_map(
            |(token, kind, address, rtt, mpls, (reason, errno, support), unknown)| {
                let mut reply = Reply::new(token, kind);
                reply.address = address;
                reply.round_trip_time_us = rtt;
                reply.mpls = mpls;
                reply.reason = reason;
                reply.errno = errno;
                reply.support = support;
                for (name, value) in unknown {
                    // Typed names are refused here, which is what keeps the round trip exact.
                    let _ = reply.push_unknown_arg(name, value);
                }
                reply
            },
        )
}

/// Lines from a framer fed `chunks`, then finished.
fn frame(max_line: usize, chunks: &[&[u8]]) -> Vec<Result<String, FrameError>> {
    let mut framer = LineFramer::with_max_line(max_line);
    let mut out = Vec::new();
    for chunk in chunks {
        framer.feed(chunk, |l| out.push(l.map(str::to_owned)));
        assert!(framer.buffered() <= max_line);
    }
    out.extend(framer.finish().map(Err));
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn request_encodes_to_one_line_that_parses_back(token in token(), request in request()) {
        let mut out = Vec::new();
        request.encode(token, &mut out);
        prop_assert!(out.len() <= Request::MAX_LINE);
        prop_assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
        prop_assert_eq!(out.last(), Some(&b'\n'));
        let line = std::str::from_utf8(&out[..out.len() - 1]).unwrap();
        prop_assert_eq!(Request::parse(line), Ok((token, request)));
    }

    #[test]
    fn probe_fields_check_back_to_the_same_args(args in probe_args()) {
        prop_assert_eq!(ProbeArgs::from_fields(args.fields()), Ok(args));
    }

    #[test]
    fn a_flow_is_held_by_udp_only_and_read_back_from_its_line(
        args in probe_args(), id in 0..=Flow::MAX, token in token(),
    ) {
        let flow = Flow::new(id).unwrap();
        match args.clone().flow(flow) {
            Ok(with_flow) => {
                prop_assert_eq!(args.fields().protocol, Protocol::Udp);
                prop_assert_eq!(with_flow.fixed_flow(), Some(flow));
                let mut out = Vec::new();
                with_flow.encode(token, &mut out);
                let line = std::str::from_utf8(&out).unwrap().trim_end();
                let Ok((_, Request::SendProbe(parsed))) = Request::parse(line) else {
                    return Err(TestCaseError::fail("the line parses"));
                };
                prop_assert_eq!(parsed.fixed_flow(), Some(flow));
                let fields = parsed.fields();
                prop_assert_eq!((fields.local_port, fields.port), (Some(flow.local_port()), Some(flow.port())));
            }
            Err(e) => {
                prop_assert_ne!(args.fields().protocol, Protocol::Udp);
                prop_assert!(e.to_string().contains("flows need protocol udp"), "{}", e);
            }
        }
    }

    #[test]
    fn reply_encodes_and_parses_back(reply in reply()) {
        let mut out = String::new();
        reply.encode(&mut out);
        let line = out.strip_suffix('\n').unwrap();
        prop_assert!(!line.contains('\n'));
        let parsed = Reply::parse(line).map(Reply::into_owned);
        prop_assert_eq!(parsed, Ok(reply));
    }

    #[test]
    fn parsed_lines_reencode_to_an_equal_reply(line in "[0-9]{1,3} [a-z-]{1,8}( [a-z0-9,.:-]{1,6} [a-z0-9,.:-]{1,9}){0,4}") {
        if let Ok(reply) = Reply::parse(&line) {
            let mut out = String::new();
            reply.encode(&mut out);
            prop_assert_eq!(Reply::parse(out.trim_end_matches('\n')), Ok(reply));
        }
    }

    #[test]
    fn arbitrary_text_never_panics_the_parsers(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = Reply::parse(&text);
        let _ = Request::parse(&text);
        let _ = MplsStack::parse(&text);
    }

    #[test]
    fn framer_output_does_not_depend_on_chunking(
        bytes in prop::collection::vec(prop_oneof![Just(b'\n'), Just(b'\r'), Just(0xff), b'a'..=b'e'], 0..300),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..20),
        max_line in 1usize..24,
    ) {
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
        points.sort_unstable();
        let mut chunks = Vec::new();
        let mut start = 0;
        for p in points {
            chunks.push(&bytes[start..p]);
            start = p;
        }
        chunks.push(&bytes[start..]);
        prop_assert_eq!(frame(max_line, &chunks), frame(max_line, &[&bytes]));
        // One byte at a time too.
        let singles: Vec<&[u8]> = bytes.chunks(1).collect();
        prop_assert_eq!(frame(max_line, &singles), frame(max_line, &[&bytes]));
    }
}
