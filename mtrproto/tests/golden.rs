//! Golden vectors: every reply of shared/PROTOCOL.md, real mtr-packet lines among them, and
//! request lines as mtr-packet reads them.

use std::net::IpAddr;

use mtrproto::{
    ArgumentError, Feature, Mpls, MplsError, ParseError, ProbeArgs, ProbeResult, Protocol, Reply,
    ReplyKind, Request, Token, Word,
};

fn addr(text: &str) -> Option<IpAddr> {
    Some(text.parse().unwrap())
}

fn word(text: &str) -> Option<Word<'static>> {
    Some(Word::new(text).unwrap())
}

fn token(n: u32) -> Token {
    Token::new(n).unwrap()
}

/// Every reply name parses to its kind, with no arguments, and encodes back to the same line.
#[test]
fn every_reply_name_is_typed() {
    use ReplyKind::*;
    let names = [
        ("reply", Reply),
        ("ttl-expired", TtlExpired),
        ("no-route", NoRoute),
        ("no-route-host", NoRouteHost),
        ("no-route-network", NoRouteNetwork),
        ("no-reply", NoReply),
        ("network-down", NetworkDown),
        ("host-down", HostDown),
        ("permission-denied", PermissionDenied),
        ("address-in-use", AddressInUse),
        ("address-not-available", AddressNotAvailable),
        ("probes-exhausted", ProbesExhausted),
        ("invalid-argument", InvalidArgument),
        ("unexpected-error", UnexpectedError),
        ("wait-tcp-respone-timeout", WaitTcpResponseTimeout),
        ("unknown-command", UnknownCommand),
        ("feature-support", FeatureSupport),
        ("command-parse-error", CommandParseError),
        ("command-buffer-overflow", CommandBufferOverflow),
    ];
    for (name, kind) in names {
        let line = format!("3 {name}");
        let reply = mtrproto::Reply::parse(&line).unwrap();
        assert_eq!(reply.kind, kind, "{line}");
        assert_eq!(reply.token, token(3));
        let mut encoded = String::new();
        reply.encode(&mut encoded);
        assert_eq!(encoded, format!("{line}\n"));
    }
}

/// Lines the real mtr-packet 0.95 printed (shared/PROTOCOL.md) and 0.96 forms.
#[test]
fn real_lines() {
    let mut r = Reply::new(token(1), ReplyKind::FeatureSupport);
    r.support = word("0.95");
    assert_eq!(Reply::parse("1 feature-support support 0.95"), Ok(r));

    let mut r = Reply::new(token(13), ReplyKind::InvalidArgument);
    r.reason = word("protocol-not-supported");
    assert_eq!(
        Reply::parse("13 invalid-argument reason protocol-not-supported"),
        Ok(r)
    );

    let mut r = Reply::new(token(5), ReplyKind::Reply);
    r.address = addr("127.0.0.1");
    r.round_trip_time_us = Some(1554);
    assert_eq!(
        Reply::parse("5 reply ip-4 127.0.0.1 round-trip-time 1554"),
        Ok(r)
    );

    let mut r = Reply::new(token(7), ReplyKind::NoRoute);
    r.address = addr("10.231.1.1");
    r.round_trip_time_us = Some(275);
    assert_eq!(
        Reply::parse("7 no-route ip-4 10.231.1.1 round-trip-time 275"),
        Ok(r)
    );

    let mut r = Reply::new(token(1), ReplyKind::TtlExpired);
    r.address = addr("198.18.0.101");
    r.round_trip_time_us = Some(375);
    r.mpls.push(Mpls::new(1234, 5, true, 7).unwrap()).unwrap();
    assert_eq!(
        Reply::parse("1 ttl-expired ip-4 198.18.0.101 round-trip-time 375 mpls 1234,5,1,7"),
        Ok(r)
    );

    let mut r = Reply::new(token(2), ReplyKind::Reply);
    r.address = addr("::1");
    r.round_trip_time_us = Some(3708);
    assert_eq!(Reply::parse("2 reply ip-6 ::1 round-trip-time 3708"), Ok(r));

    let mut r = Reply::new(token(9), ReplyKind::UnexpectedError);
    r.errno = Some(97);
    assert_eq!(Reply::parse("9 unexpected-error errno 97"), Ok(r));

    let r = Reply::new(Token::UNSOLICITED, ReplyKind::CommandParseError);
    assert_eq!(Reply::parse("0 command-parse-error"), Ok(r));
}

/// mtr-packet prints an unsigned difference of two `gettimeofday` readings with `%d`: when
/// the clock steps back while a probe is out, the time it prints is negative.
#[test]
fn a_negative_round_trip_time_parses_and_is_unusable() {
    let line = "7 reply ip-4 127.0.0.1 round-trip-time -39772";
    let reply = Reply::parse(line).unwrap();
    assert_eq!(reply.round_trip_time_us, Some(-39772));
    let mut encoded = String::new();
    reply.encode(&mut encoded);
    assert_eq!(encoded, format!("{line}\n"));

    let result = ProbeResult::from_reply(&reply);
    assert!(result.success());
    assert_eq!(result.responder, addr("127.0.0.1"));
    assert_eq!(result.time, None);
    assert_eq!(result.unusable_time_us, Some(-39772));

    let result =
        ProbeResult::from_reply(&Reply::parse("7 reply ip-4 127.0.0.1 round-trip-time 0").unwrap());
    assert_eq!(
        (result.time, result.unusable_time_us),
        (Some(std::time::Duration::ZERO), None)
    );
    assert_eq!(
        Reply::parse("7 reply round-trip-time -9223372036854775809"),
        Err(ParseError::InvalidValue {
            argument: "round-trip-time",
            value: "-9223372036854775809".into(),
        })
    );
}

#[test]
fn unknown_names_and_arguments_are_kept() {
    let reply = Reply::parse("4 no-route-host ip-4 10.0.0.1 winerror 1231 future x").unwrap();
    assert_eq!(reply.kind, ReplyKind::NoRouteHost);
    assert_eq!(reply.address, addr("10.0.0.1"));
    let unknown: Vec<_> = reply
        .unknown_args()
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    assert_eq!(unknown, [("winerror", "1231"), ("future", "x")]);

    let reply = Reply::parse("4 something-new").unwrap();
    assert_eq!(reply.kind.as_str(), "something-new");
    assert!(matches!(reply.kind, ReplyKind::Other(_)));
}

#[test]
fn bad_reply_lines_are_typed_errors() {
    let cases: [(&str, ParseError); 9] = [
        ("", ParseError::BadToken),
        ("-1 reply", ParseError::BadToken),
        ("2147483648 reply", ParseError::BadToken),
        ("5", ParseError::MissingName),
        ("5 reply ip-4", ParseError::MissingValue("ip-4".into())),
        ("5 reply  ip-4 1.2.3.4", ParseError::Malformed),
        (
            "5 reply ip-4 1.2.3.4 ip-6 ::1",
            ParseError::DuplicateArgument("ip-4/ip-6"),
        ),
        (
            "5 reply ip-4 1.2.3.4 round-trip-time -",
            ParseError::InvalidValue {
                argument: "round-trip-time",
                value: "-".into(),
            },
        ),
        (
            "5 ttl-expired mpls 1,2,3,4",
            ParseError::Mpls(MplsError::OutOfRange {
                field: "bottom of stack",
                value: 3,
                max: 1,
            }),
        ),
    ];
    for (line, error) in cases {
        assert_eq!(Reply::parse(line), Err(error), "{line:?}");
    }
    assert!(matches!(
        Reply::parse("5 reply ip-6 1.2.3.4"),
        Err(ParseError::InvalidValue {
            argument: "ip-6",
            ..
        })
    ));
}

#[test]
fn probe_requests_encode_every_argument() {
    let args = ProbeArgs::new("::1".parse().unwrap())
        .protocol(Protocol::Tcp)
        .port(80)
        .unwrap()
        .local_addr("::1".parse().unwrap())
        .unwrap()
        .local_port(40000)
        .unwrap()
        .local_device(mtrproto::DeviceName::new("lo").unwrap())
        .timeout_secs(3)
        .unwrap()
        .ttl(64)
        .unwrap()
        .size(128)
        .unwrap()
        .bit_pattern(255)
        .tos(16)
        .mark(7);
    let mut line = Vec::new();
    args.encode(token(2147483647), &mut line);
    let text = "2147483647 send-probe ip-6 ::1 protocol tcp port 80 local-ip-6 ::1 local-port 40000 \
                local-device lo timeout 3 ttl 64 size 128 bit-pattern 255 tos 16 mark 7";
    assert_eq!(String::from_utf8(line).unwrap(), format!("{text}\n"));
    assert_eq!(
        Request::parse(text),
        Ok((Token::MAX, Request::SendProbe(args)))
    );
}

#[test]
fn sub_second_timeouts_round_up() {
    use std::time::Duration;
    let target: IpAddr = "127.0.0.1".parse().unwrap();
    let line = |t: Duration| {
        let mut out = Vec::new();
        ProbeArgs::new(target)
            .timeout(t)
            .unwrap()
            .encode(token(1), &mut out);
        String::from_utf8(out).unwrap()
    };
    assert_eq!(
        line(Duration::from_millis(1)),
        "1 send-probe ip-4 127.0.0.1 timeout 1\n"
    );
    assert_eq!(
        line(Duration::from_millis(1000)),
        "1 send-probe ip-4 127.0.0.1 timeout 1\n"
    );
    assert_eq!(
        line(Duration::from_millis(1001)),
        "1 send-probe ip-4 127.0.0.1 timeout 2\n"
    );
    assert_eq!(
        line(Duration::ZERO),
        "1 send-probe ip-4 127.0.0.1 timeout 1\n"
    );
    assert!(ProbeArgs::new(target).timeout(Duration::MAX).is_err());
}

#[test]
fn invalid_request_values_are_refused_when_built() {
    let v4 = ProbeArgs::new("127.0.0.1".parse().unwrap());
    assert!(v4.clone().local_port(1023).is_err());
    assert!(v4.clone().local_port(1024).is_ok());
    assert!(v4.clone().port(0).is_err());
    assert!(v4.clone().ttl(0).is_err());
    assert!(v4.clone().local_addr("::1".parse().unwrap()).is_err());
    assert!(mtrproto::DeviceName::new("eth0\n1").is_err());
    assert!(mtrproto::DeviceName::new("a/b").is_err());
    assert!(Feature::from_name("version\n2 send-probe").is_err());
    assert!(Feature::from_name(&"x".repeat(256)).is_err());
}

/// mtr-packet builds a probe in a 9000-byte buffer (`PACKET_BUFFER_SIZE`, every release from
/// 0.92 to 0.96): `size 9001` is `invalid-argument` for IPv4. For IPv6 the 40-byte header
/// the kernel adds is not in that buffer, so 9040 is the largest. There is no minimum:
/// smaller sizes are raised to the headers' size.
#[test]
fn packet_sizes_are_refused_as_mtr_packet_refuses_them() {
    let v4 = ProbeArgs::new("127.0.0.1".parse().unwrap());
    let v6 = ProbeArgs::new("::1".parse().unwrap());
    assert!(v4.clone().size(0).is_ok());
    assert!(v4.clone().size(9000).is_ok());
    assert_eq!(
        v4.clone().size(9001),
        Err(ArgumentError::OutOfRange {
            what: "IPv4 packet size",
            value: 9001,
            min: 0,
            max: 9000,
        })
    );
    assert_eq!(
        v4.clone().size(9001).unwrap_err().to_string(),
        "IPv4 packet size must be in 0..=9000, got 9001"
    );
    assert!(v6.clone().size(9040).is_ok());
    assert_eq!(
        v6.clone().size(u16::MAX),
        Err(ArgumentError::OutOfRange {
            what: "IPv6 packet size",
            value: 65535,
            min: 0,
            max: 9040,
        })
    );
    assert_eq!(ProbeArgs::MAX_SIZE_IPV4, 9000);
    assert_eq!(ProbeArgs::MAX_SIZE_IPV6, 9040);
    assert!(matches!(
        Request::parse("1 send-probe ip-4 127.0.0.1 size 9001"),
        Err(ParseError::Argument(ArgumentError::OutOfRange { .. }))
    ));
    assert!(Request::parse("1 send-probe ip-6 ::1 size 9040").is_ok());
}

#[test]
fn request_lines_parse_as_mtr_packet_reads_them() {
    assert_eq!(
        Request::parse("1 check-support feature sctp"),
        Ok((token(1), Request::CheckSupport(Feature::Sctp)))
    );
    assert_eq!(
        Request::parse("1 bogus"),
        Err(ParseError::UnknownCommand("bogus".into()))
    );
    assert_eq!(
        Request::parse("1 send-probe ttl 3"),
        Err(ParseError::MissingArgument("ip-4 or ip-6"))
    );
    assert_eq!(
        Request::parse("1 send-probe ip-4 127.0.0.1 colour red"),
        Err(ParseError::UnknownArgument("colour".into()))
    );
    assert_eq!(
        Request::parse("1 send-probe ip-4 127.0.0.1 ttl 3 ttl 4"),
        Err(ParseError::DuplicateArgument("ttl"))
    );
    assert!(matches!(
        Request::parse("1 send-probe ip-4 127.0.0.1 local-port 80"),
        Err(ParseError::Argument(_))
    ));
    assert!(matches!(
        Request::parse("1 send-probe ip-4 127.0.0.1 ttl 256"),
        Err(ParseError::InvalidValue {
            argument: "ttl",
            ..
        })
    ));
}
