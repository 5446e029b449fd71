//! The blocking session against the real mtr-packet (Debian's mtr-tiny, installed by
//! `.ci/run`), on loopback only.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use mtrproto_blocking::{Error, Feature, Flow, ProbeOptions, Protocol, ReplyKind, Session};

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

#[test]
#[ignore = "needs mtr-packet: apt-get install mtr-tiny (root, or its cap_net_raw)"]
fn ten_thousand_probes_from_eight_threads() {
    let session = open();
    let session = Arc::new(session);
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let session = Arc::clone(&session);
            std::thread::spawn(move || {
                let host = if i % 2 == 0 { "127.0.0.1" } else { "::1" };
                let handles: Vec<_> = (0..1250)
                    .map(|_| session.probe(host, &timeout()).unwrap())
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.wait().unwrap())
                    .filter(|r| r.success())
                    .count()
            })
        })
        .collect();
    let answered: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(answered, 10_000);
}
