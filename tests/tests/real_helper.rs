//! The blocking session against the real mtr-packet (Debian's mtr-tiny, installed by
//! `.ci/run`), on loopback only.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use mtrproto_blocking::{
    CampaignEvent, CampaignLimits, Error, Feature, Flow, ProbeOptions, Protocol, ReplyKind,
    Session, TraceConfig, TraceOptions,
};
use mtrproto_tests::netns::Netns;

/// The real helper's session; fails the test where mtr-packet is not installed.
fn open() -> Session {
    mtrproto_tests::require_mtr_packet();
    Session::builder()
        .program("mtr-packet", [])
        .open()
        .expect("mtr-packet opens")
}

fn timeout() -> ProbeOptions {
    ProbeOptions {
        timeout: Some(Duration::from_secs(3)),
        ..ProbeOptions::default()
    }
}

/// A TCP port on `host` with nothing listening: bound, then released.
fn closed_port(host: &str) -> u16 {
    let listener = TcpListener::bind((host, 0)).unwrap();
    listener.local_addr().unwrap().port()
}

#[test]
#[ignore = "needs mtr-packet: apt-get install mtr-tiny (root, or its cap_net_raw)"]
fn version_and_features() {
    let session = open();
    assert_eq!(session.version(), "0.95");
    // Debian's build is the 0.95 release: same row, same probe table.
    assert_eq!(session.release().version, "0.95");
    assert_eq!(session.window(), 256);
    for feature in [
        Feature::SendProbe,
        Feature::Ip4,
        Feature::Ip6,
        Feature::Icmp,
        Feature::Udp,
        Feature::Tcp,
    ] {
        assert!(
            session.check_support(feature.clone()).unwrap(),
            "{feature:?}"
        );
    }
    assert!(
        !session
            .check_support(Feature::from_name("no-such-feature").unwrap())
            .unwrap()
    );
}

#[test]
#[ignore = "needs mtr-packet: apt-get install mtr-tiny (root, or its cap_net_raw)"]
fn every_protocol_on_both_loopbacks() {
    let session = open();
    for host in ["127.0.0.1", "::1"] {
        let cases = [
            ProbeOptions {
                protocol: Protocol::Icmp,
                ..timeout()
            },
            // Below 33000: mtr-packet 0.95 mismatches UDP replies to ports above.
            ProbeOptions {
                protocol: Protocol::Udp,
                port: Some(9),
                ..timeout()
            },
            ProbeOptions {
                protocol: Protocol::Tcp,
                port: Some(closed_port(host)),
                ..timeout()
            },
            ProbeOptions {
                ttl: Some(1),
                ..timeout()
            },
        ];
        for options in cases {
            let result = session.probe_blocking(host, &options).unwrap();
            assert!(result.success(), "{host} {options:?}: {result:?}");
            assert_eq!(result.result, ReplyKind::Reply);
            assert_eq!(result.responder, Some(host.parse().unwrap()));
            assert!(
                result.time.is_some_and(|t| t < Duration::from_secs(1)),
                "{result:?}"
            );
        }
    }
}

#[test]
#[ignore = "needs mtr-packet: apt-get install mtr-tiny (root, or its cap_net_raw)"]
fn udp_flows_answer_over_ipv4_and_are_refused_over_ipv6_on_0_95() {
    let session = open();
    for id in [0, 1, Flow::MAX] {
        let options = ProbeOptions {
            protocol: Protocol::Udp,
            flow: Some(Flow::new(id).unwrap()),
            ..timeout()
        };
        let result = session.probe_blocking("127.0.0.1", &options).unwrap();
        assert_eq!(result.result, ReplyKind::Reply, "flow {id}: {result:?}");
        // 0.95 never matches the answer of such a probe over IPv6: refused, naming 0.96.
        match session.probe_blocking("::1", &options) {
            Err(error @ Error::Unsupported { .. }) => {
                assert!(error.to_string().contains("0.96 or later"), "{error}")
            }
            other => panic!("flow over IPv6 on 0.95: {other:?}"),
        }
    }
    let icmp = ProbeOptions {
        flow: Some(Flow::new(1).unwrap()),
        ..timeout()
    };
    let refused = session.probe_blocking("127.0.0.1", &icmp).unwrap_err();
    assert!(
        refused.to_string().contains("cannot hold a flow"),
        "{refused}"
    );
}

/// A campaign in fixed UDP flows hands out each flow's figures with the report: round `r`
/// in flow `r % 3`, so 6 rounds on 127.0.0.1 give each flow 2 probes, both answered.
#[test]
#[ignore = "needs mtr-packet: apt-get install mtr-tiny (root, or its cap_net_raw)"]
fn a_campaign_in_flows_reports_each_flows_figures() {
    let session = open();
    let options = TraceOptions {
        trace: TraceConfig {
            cycles: 6,
            interval: Duration::ZERO,
            timeout: Duration::from_secs(3),
            grace: Duration::from_secs(3),
            flows: 3,
            ..TraceConfig::default()
        },
        probe: ProbeOptions {
            protocol: Protocol::Udp,
            ..ProbeOptions::default()
        },
    };
    let mut reports = Vec::new();
    session
        .campaign(
            ["127.0.0.1"],
            &options,
            &CampaignLimits::default(),
            |event| {
                if let CampaignEvent::Done(report) = event {
                    reports.push(report);
                }
            },
        )
        .unwrap();
    let [report] = &reports[..] else {
        panic!("{reports:?}")
    };
    let stats = report.stats.as_ref().unwrap();
    assert_eq!(stats.hops()[0].received(), 6, "{stats:?}");
    assert_eq!(report.flows.len(), 3);
    for flow in &report.flows {
        let hop = &flow.hops()[0];
        assert_eq!((hop.sent(), hop.received()), (2, 2), "{flow:?}");
        assert_eq!(hop.host(), Some("127.0.0.1".parse().unwrap()));
    }
    // Without flows, none.
    let plain = TraceOptions {
        trace: TraceConfig {
            flows: 0,
            ..options.trace.clone()
        },
        ..options.clone()
    };
    let mut flows = None;
    session
        .campaign(["127.0.0.1"], &plain, &CampaignLimits::default(), |event| {
            if let CampaignEvent::Done(report) = event {
                flows = Some(report.flows.len());
            }
        })
        .unwrap();
    assert_eq!(flows, Some(0));
}

/// Eight threads send 10,000 probes through one session at once: each gets its own answer,
/// from the host it probed.
///
/// Every raw ICMP socket on a host receives every ICMP packet of that network namespace,
/// and mtr-packet's receive socket keeps the default 212,992-byte buffer, about 256 of the
/// ~830-byte loopback packets: with other probes on the machine (other tests, a second run
/// of the suite) or mtr-packet short of CPU, a full buffer drops answers before mtr-packet
/// reads them (seen as 9,750 to 9,980 of 10,000 with two runs at once, every drop counted
/// in `/proc/net/raw6`'s `drops`). So the helper runs in a namespace of its own, where only
/// its own probes arrive, with a window of 64: at most 64 requests and 64 answers wait
/// unread (half the buffer), however late mtr-packet runs.
#[test]
#[ignore = "needs root: a network namespace, and mtr-packet (apt-get install mtr-tiny)"]
fn ten_thousand_probes_from_eight_threads() {
    mtrproto_tests::require_netns();
    mtrproto_tests::require_mtr_packet();
    let ns = Netns::new("ten-thousand").expect("namespace");
    let session = Session::builder()
        .program("ip", ["netns", "exec", ns.name(), "mtr-packet"])
        .window(64)
        .open()
        .expect("mtr-packet opens");
    let session = Arc::new(session);
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let session = Arc::clone(&session);
            std::thread::spawn(move || {
                let host = if i % 2 == 0 { "127.0.0.1" } else { "::1" };
                let handles: Vec<_> = (0..1250)
                    .map(|_| session.probe(host, &timeout()).unwrap())
                    .collect();
                let results = handles.into_iter().map(|h| h.wait().unwrap());
                let answered: Vec<_> = results.filter(|r| r.success()).collect();
                let from = host.parse().unwrap();
                let others = answered.iter().filter(|r| r.responder != Some(from));
                assert_eq!(others.count(), 0, "{host}: answers from another host");
                answered.len()
            })
        })
        .collect();
    let answered: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(answered, 10_000);
}
