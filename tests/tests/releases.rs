//! Every mtr-packet release, 0.92 to 0.96, as built by `scripts/build-mtr-versions` into
//! `$MTR_VERSIONS/VERSION/mtr-packet` (default `target/mtr-versions`): each release's
//! behaviour where releases differ, as one row of `EXPECTED`, checked both on the raw helper
//! and through the session that adapts to it. Needs root (raw sockets, namespaces); probes
//! go to loopback and to addresses inside the namespaces made here only.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mtrproto_blocking::{
    Error, Feature, ProbeOptions, ProcessError, Protocol, ReplyKind, Session, SessionBuilder,
};
use mtrproto_tests::netns::{Netns, veth};

/// What one release does where releases differ, each checked against its build below.
struct Expected {
    version: &'static str,
    /// Probes in flight before `probes-exhausted` (`MAX_PROBES`).
    capacity: usize,
    /// A probe naming no source address is answered `invalid-argument`.
    needs_source: bool,
    /// UDP over IPv6 is accepted at all.
    udp_ipv6: bool,
    /// A UDP probe with both `port` and `local-port` is answered, `[IPv4, IPv6]`.
    udp_port_and_local_port: [bool; 2],
    /// A router's destination-unreachable (`no-reply`: not reported).
    router_unreachable: ReplyKind<'static>,
    /// A destination whose local route is `unreachable` (EHOSTUNREACH), source given.
    host_unreachable: ReplyKind<'static>,
    /// A destination with no route at all (ENETUNREACH), source given.
    network_unreachable: ReplyKind<'static>,
    /// Without a source address, an `unreachable` route kills the helper (SIGSEGV);
    /// otherwise the probe is answered `invalid-argument`.
    crashes_on_unreachable_route: bool,
    /// `local-device` binds the probe to an interface (else it is ignored).
    local_device: bool,
}

use ReplyKind::{NoReply, NoRoute, NoRouteHost, NoRouteNetwork};

const EXPECTED: [Expected; 5] = [
    Expected {
        version: "0.92",
        capacity: 1024,
        needs_source: false,
        udp_ipv6: true,
        udp_port_and_local_port: [false, false],
        router_unreachable: NoReply,
        host_unreachable: NoRoute,
        network_unreachable: NoRoute,
        crashes_on_unreachable_route: false,
        local_device: false,
    },
    Expected {
        version: "0.93",
        capacity: 1024,
        needs_source: true,
        udp_ipv6: false,
        udp_port_and_local_port: [true, false],
        router_unreachable: NoRoute,
        host_unreachable: NoRoute,
        network_unreachable: NoRoute,
        crashes_on_unreachable_route: false,
        local_device: false,
    },
    Expected {
        version: "0.94",
        capacity: 1024,
        needs_source: false,
        udp_ipv6: true,
        udp_port_and_local_port: [true, false],
        router_unreachable: NoRoute,
        host_unreachable: NoRoute,
        network_unreachable: NoRoute,
        crashes_on_unreachable_route: true,
        local_device: false,
    },
    Expected {
        version: "0.95",
        capacity: 1024,
        needs_source: false,
        udp_ipv6: true,
        udp_port_and_local_port: [true, false],
        router_unreachable: NoRoute,
        host_unreachable: NoRoute,
        network_unreachable: NoRoute,
        crashes_on_unreachable_route: true,
        local_device: false,
    },
    Expected {
        version: "0.96",
        capacity: 10240,
        needs_source: false,
        udp_ipv6: true,
        udp_port_and_local_port: [true, true],
        router_unreachable: NoRouteHost,
        host_unreachable: NoRouteHost,
        network_unreachable: NoRouteNetwork,
        crashes_on_unreachable_route: true,
        local_device: true,
    },
];

/// The release's row and its binary, or `None` (with a note) where the test cannot run.
fn release(version: &str) -> Option<(&'static Expected, PathBuf)> {
    let expected = EXPECTED.iter().find(|e| e.version == version).unwrap();
    binary(version).map(|path| (expected, path))
}

fn binary(dir_name: &str) -> Option<PathBuf> {
    mtrproto_tests::require_netns();
    let path = mtrproto_tests::built_release(dir_name);
    if path.is_none() {
        println!("skipped: mtr-packet {dir_name} not built (scripts/build-mtr-versions)");
    }
    path
}

/// Namespace and interface names unique to this release's tests, which run in parallel.
fn tag(e: &Expected) -> String {
    format!("v{}", e.version.replace('.', ""))
}

/// A session on `binary`, inside `ns` if given.
fn builder(binary: &Path, ns: Option<&Netns>) -> SessionBuilder {
    let binary = binary.to_str().unwrap().to_owned();
    match ns {
        Some(ns) => Session::builder().program(
            "ip".to_owned(),
            ["netns".into(), "exec".into(), ns.name().to_owned(), binary],
        ),
        None => Session::builder().program(binary, []),
    }
}

/// Runs the helper on `lines` (inside `ns` if given) until it has answered them all and
/// exited, within 30 s; returns each token's reply line without the token, and how it exited.
fn raw(
    binary: &Path,
    ns: Option<&Netns>,
    lines: Vec<String>,
) -> (HashMap<u32, String>, std::process::ExitStatus) {
    let mut command = Command::new("timeout");
    command.arg("30");
    if let Some(ns) = ns {
        command.args(["ip", "netns", "exec", ns.name()]);
    }
    let mut child = command
        .arg(binary)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // Written by another thread: the helper answers while it reads.
    let writer = std::thread::spawn(move || {
        for (i, line) in lines.iter().enumerate() {
            let _ = writeln!(stdin, "{} {line}", i + 1);
        }
    });
    let mut replies = HashMap::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        let (token, rest) = line.split_once(' ').unwrap();
        replies.insert(token.parse().unwrap(), rest.to_owned());
    }
    writer.join().unwrap();
    (replies, child.wait().unwrap())
}

/// The reply name of each request, in order.
fn raw_kinds(binary: &Path, ns: Option<&Netns>, lines: &[&str]) -> Vec<String> {
    let (replies, status) = raw(binary, ns, lines.iter().map(|l| l.to_string()).collect());
    assert!(status.success(), "{status}");
    (1..=lines.len() as u32)
        .map(|t| {
            let reply = replies.get(&t).map_or("", String::as_str);
            reply.split(' ').next().unwrap().to_owned()
        })
        .collect()
}

fn within(seconds: u64) -> ProbeOptions {
    ProbeOptions {
        timeout: Some(Duration::from_secs(seconds)),
        ..ProbeOptions::default()
    }
}

fn version_and_features(version: &str) {
    let Some((e, binary)) = release(version) else {
        return;
    };
    let session = builder(&binary, None).window(20_000).open().unwrap();
    assert_eq!(session.version(), e.version);
    assert_eq!(session.release().version, e.version);
    assert_eq!(session.window(), e.capacity, "clamped to the probe table");
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
    // No release says yes to local-device, not even 0.96 which has it.
    let device = Feature::from_name("local-device").unwrap();
    assert!(!session.check_support(device).unwrap());
    let small = builder(&binary, None).window(64).open().unwrap();
    assert_eq!(small.window(), 64);
}

fn loopback(version: &str) {
    let Some((e, binary)) = release(version) else {
        return;
    };
    // The raw helper: what the session has to work around.
    let answered = |yes: bool| if yes { "reply" } else { "no-reply" };
    let refused = |refuses: bool, otherwise: &'static str| {
        if refuses {
            "invalid-argument"
        } else {
            otherwise
        }
    };
    let port = 20_000
        + 10 * EXPECTED
            .iter()
            .position(|x| x.version == e.version)
            .unwrap();
    // In a namespace of its own: a raw socket sees every ICMP message of its namespace, and
    // every release matches a UDP probe's port-unreachable by sequence number alone (in its
    // ports or checksum, numbered from 33000 in every process), so on the host's loopback
    // another mtr-packet's probes (those of the other releases' tests running at the same
    // time) can answer the probes here that must go unanswered.
    let ns = Netns::new(&format!("{}-loop", tag(e))).expect("namespace");
    let kinds = raw_kinds(
        &binary,
        Some(&ns),
        &[
            "send-probe ip-4 127.0.0.1 timeout 1",
            "send-probe ip-6 ::1 local-ip-6 ::1 protocol udp port 9 timeout 1",
            &format!(
                "send-probe ip-4 127.0.0.1 local-ip-4 127.0.0.1 protocol udp port 9 local-port {port} timeout 1"
            ),
            &format!(
                "send-probe ip-6 ::1 local-ip-6 ::1 protocol udp port 9 local-port {} timeout 1",
                port + 1
            ),
        ],
    );
    let want = [
        refused(e.needs_source, "reply"),
        refused(!e.udp_ipv6, "reply"),
        answered(e.udp_port_and_local_port[0]),
        refused(!e.udp_ipv6, answered(e.udp_port_and_local_port[1])),
    ];
    assert_eq!(kinds, want, "raw helper");

    // The session: every protocol on both loopbacks, without a source address.
    let session = builder(&binary, None).open().unwrap();
    for host in ["127.0.0.1", "::1"] {
        let tcp_port = TcpListener::bind((host, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cases = [
            (Protocol::Icmp, None, None),
            (Protocol::Tcp, Some(tcp_port), None),
            (Protocol::Udp, Some(9), None),
            (Protocol::Udp, Some(9), Some(port as u16 + 2)),
        ];
        for (protocol, port, local_port) in cases {
            let options = ProbeOptions {
                protocol,
                port,
                local_port,
                ..within(2)
            };
            let v6 = host == "::1";
            let carried = protocol != Protocol::Udp
                || ((!v6 || e.udp_ipv6)
                    && (local_port.is_none() || e.udp_port_and_local_port[usize::from(v6)]));
            match session.probe_blocking(host, &options) {
                Ok(result) => {
                    assert!(carried, "{host} {options:?}: {result:?}");
                    assert_eq!(result.result, ReplyKind::Reply, "{host} {options:?}");
                    assert_eq!(result.responder, Some(host.parse().unwrap()));
                }
                Err(Error::Unsupported { version, .. }) => {
                    assert!(!carried, "{host} {options:?} refused");
                    assert_eq!(version, e.version);
                }
                Err(other) => panic!("{host} {options:?}: {other}"),
            }
        }
    }
}

/// client 198.18.1.2 -- r1 -- r2 -- target 198.18.3.2 (and 2001:db8:N::), as in
/// `trace_netns.rs`; the client routes 198.18.0.0/18 and 2001:db8::/40 only, has an
/// `unreachable` route to 198.18.70.0/24 and 2001:db8:70::/48, and r1 one to 198.18.60.0/24
/// and 2001:db8:60::/48.
fn build_line(tag: &str) -> std::io::Result<[Netns; 4]> {
    let client = Netns::new(&format!("{tag}-client"))?;
    let r1 = Netns::new(&format!("{tag}-r1"))?;
    let r2 = Netns::new(&format!("{tag}-r2"))?;
    let target = Netns::new(&format!("{tag}-target"))?;
    let dev = |name: &str| format!("{tag}{name}");
    veth(&client, &dev("c0"), &r1, &dev("r1a"))?;
    veth(&r1, &dev("r1b"), &r2, &dev("r2a"))?;
    veth(&r2, &dev("r2b"), &target, &dev("t0"))?;
    let addr = |ns: &Netns, name: &str, v4: &str, v6: &str| -> std::io::Result<()> {
        ns.ip(&["addr", "add", v4, "dev", &dev(name)])?;
        ns.add_ipv6(v6, &dev(name))
    };
    addr(&client, "c0", "198.18.1.2/24", "2001:db8:1::2/64")?;
    addr(&r1, "r1a", "198.18.1.1/24", "2001:db8:1::1/64")?;
    addr(&r1, "r1b", "198.18.2.1/24", "2001:db8:2::1/64")?;
    addr(&r2, "r2a", "198.18.2.2/24", "2001:db8:2::2/64")?;
    addr(&r2, "r2b", "198.18.3.1/24", "2001:db8:3::1/64")?;
    addr(&target, "t0", "198.18.3.2/24", "2001:db8:3::2/64")?;
    let routes: [(&Netns, &[&str]); 12] = [
        (
            &client,
            &["route", "add", "198.18.0.0/18", "via", "198.18.1.1"],
        ),
        (
            &client,
            &[
                "-6",
                "route",
                "add",
                "2001:db8::/40",
                "via",
                "2001:db8:1::1",
            ],
        ),
        (&client, &["route", "add", "unreachable", "198.18.70.0/24"]),
        (
            &client,
            &["-6", "route", "add", "unreachable", "2001:db8:70::/48"],
        ),
        (&r1, &["route", "add", "198.18.3.0/24", "via", "198.18.2.2"]),
        (
            &r1,
            &[
                "-6",
                "route",
                "add",
                "2001:db8:3::/64",
                "via",
                "2001:db8:2::2",
            ],
        ),
        (&r1, &["route", "add", "unreachable", "198.18.60.0/24"]),
        (
            &r1,
            &["-6", "route", "add", "unreachable", "2001:db8:60::/48"],
        ),
        (&r2, &["route", "add", "198.18.1.0/24", "via", "198.18.2.1"]),
        (
            &r2,
            &[
                "-6",
                "route",
                "add",
                "2001:db8:1::/64",
                "via",
                "2001:db8:2::1",
            ],
        ),
        (
            &target,
            &["route", "add", "198.18.0.0/16", "via", "198.18.3.1"],
        ),
        (
            &target,
            &[
                "-6",
                "route",
                "add",
                "2001:db8::/32",
                "via",
                "2001:db8:3::1",
            ],
        ),
    ];
    for (ns, args) in routes {
        ns.ip(args)?;
    }
    for router in [&r1, &r2] {
        router.sysctl("net.ipv4.ip_forward", "1")?;
        router.sysctl("net.ipv6.conf.all.forwarding", "1")?;
        // Every probe must get its ICMP answer: no rate limit on the routers.
        router.sysctl("net.ipv4.icmp_ratelimit", "0")?;
        router.sysctl("net.ipv6.icmp.ratelimit", "0")?;
    }
    Ok([client, r1, r2, target])
}

fn line_of_routers(version: &str) {
    let Some((e, binary)) = release(version) else {
        return;
    };
    let line = build_line(&tag(e)).expect("namespaces");
    let session = builder(&binary, Some(&line[0])).open().unwrap();
    let families = [
        (
            "198.18.1.2",
            ["198.18.1.1", "198.18.2.2", "198.18.3.2"],
            ["198.18.60.1", "198.18.70.1", "198.18.130.1"],
        ),
        (
            "2001:db8:1::2",
            ["2001:db8:1::1", "2001:db8:2::2", "2001:db8:3::2"],
            ["2001:db8:60::1", "2001:db8:70::1", "2001:db8:9000::1"],
        ),
    ];
    for (source, hops, [behind_router, unreachable, no_route]) in families {
        // Unreachables first: a router's route error shares the ICMP rate limit of its
        // time-exceeded messages, which the trace would exhaust for a second.
        let sourced = ProbeOptions {
            local_ip: Some(source.to_owned()),
            ..within(1)
        };
        let cases = [
            (behind_router, &e.router_unreachable, Some(hops[0])),
            (unreachable, &e.host_unreachable, None),
            (no_route, &e.network_unreachable, None),
        ];
        for (target, kind, responder) in cases {
            let result = session.probe_blocking(target, &sourced).unwrap();
            assert_eq!(&result.result, kind, "{target}: {result:?}");
            if *kind != NoReply {
                assert_eq!(result.responder, responder.map(|r| r.parse().unwrap()));
            }
        }
        // The session adds a source address for 0.93 from this process's routing table,
        // not the client namespace's: there it must be given.
        let local_ip = e.needs_source.then(|| source.to_owned());
        for (ttl, hop) in hops.iter().enumerate() {
            let options = ProbeOptions {
                ttl: Some(ttl as u8 + 1),
                local_ip: local_ip.clone(),
                ..within(2)
            };
            let result = session.probe_blocking(hops[2], &options).unwrap();
            let kind = if ttl == 2 {
                ReplyKind::Reply
            } else {
                ReplyKind::TtlExpired
            };
            assert_eq!(
                result.result,
                kind,
                "{} ttl {}: {result:?}",
                hops[2],
                ttl + 1
            );
            assert_eq!(result.responder, Some(hop.parse().unwrap()), "{result:?}");
        }
    }
}

fn crash_on_unreachable_route(version: &str) {
    let Some((e, binary)) = release(version) else {
        return;
    };
    let ns = Netns::new(&format!("{}-unreach", tag(e))).expect("namespace");
    ns.ip(&["route", "add", "unreachable", "198.18.70.0/24"])
        .unwrap();
    // A destination with no route at all is refused by every release.
    let no_route = ["send-probe ip-4 198.18.130.1 timeout 1"];
    assert_eq!(
        raw_kinds(&binary, Some(&ns), &no_route),
        ["invalid-argument"]
    );
    let probe = "send-probe ip-4 198.18.70.1 timeout 1";
    let (replies, status) = raw(&binary, Some(&ns), vec![probe.into()]);
    // `timeout` passes the signal on as 128 + its number.
    let segv = status.signal() == Some(11) || status.code() == Some(128 + 11);
    assert_eq!(segv, e.crashes_on_unreachable_route, "{status}");
    if !segv {
        assert_eq!(replies[&1], "invalid-argument");
    }

    // The session reports the crash as the probe's error and carries on: the dead helper's
    // slot gets a new process, its end recorded as SIGSEGV, one helper or several.
    for helpers in [1, 2] {
        let session = builder(&binary, Some(&ns)).helpers(helpers).open().unwrap();
        let outcome = session.probe_blocking("198.18.70.1", &within(1));
        let crashed = matches!(outcome, Err(Error::Process(ProcessError::Exited { .. })));
        assert_eq!(crashed, e.crashes_on_unreachable_route, "{outcome:?}");
        let options = ProbeOptions {
            local_ip: e.needs_source.then(|| "127.0.0.1".to_owned()),
            ..within(1)
        };
        let replaced = || {
            session.helpers().iter().any(|h| {
                h.running && h.restarts == 1 && h.last_exit.and_then(|s| s.signal()) == Some(11)
            })
        };
        if crashed {
            let deadline = Instant::now() + Duration::from_secs(5);
            while !replaced() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        assert_eq!(replaced(), crashed, "{helpers}: {:?}", session.helpers());
        // Each helper in turn answers.
        for _ in 0..helpers {
            let result = session.probe_blocking("127.0.0.1", &options).unwrap();
            assert!(result.success(), "{helpers} helpers: {result:?}");
        }
        if crashed && helpers == 1 {
            // And again: every crash costs its probe only.
            let again = session.probe_blocking("198.18.70.1", &within(1));
            assert!(
                matches!(again, Err(Error::Process(ProcessError::Exited { .. }))),
                "{again:?}"
            );
            let deadline = Instant::now() + Duration::from_secs(5);
            while session.helpers()[0].restarts < 2 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let result = session.probe_blocking("127.0.0.1", &options).unwrap();
            assert!(result.success(), "{result:?}");
            assert_eq!(session.helpers()[0].restarts, 2);
        }
    }
}

/// Unanswered probes in a namespace whose loopback ignores echo requests: the raw helper
/// takes `capacity` and refuses the rest; the session, asked for a larger window, stays
/// within the table.
fn probe_table(version: &str) {
    let Some((e, binary)) = release(version) else {
        return;
    };
    let ns = Netns::new(&format!("{}-quiet", tag(e))).expect("namespace");
    ns.sysctl("net.ipv4.icmp_echo_ignore_all", "1").unwrap();
    let extra = 16;
    // Long enough for every request to be read before the first probe times out.
    let probe = "send-probe ip-4 127.0.0.1 local-ip-4 127.0.0.1 timeout 4".to_owned();
    let (replies, status) = raw(&binary, Some(&ns), vec![probe; e.capacity + extra]);
    assert!(status.success(), "{status}");
    let count = |name: &str| replies.values().filter(|r| r.as_str() == name).count();
    assert_eq!(
        (count("no-reply"), count("probes-exhausted")),
        (e.capacity, extra)
    );

    let session = builder(&binary, Some(&ns)).window(20_000).open().unwrap();
    assert_eq!(session.window(), e.capacity);
    let options = ProbeOptions {
        local_ip: Some("127.0.0.1".into()),
        ..within(1)
    };
    let handles: Vec<_> = (0..e.capacity + extra)
        .map(|_| session.probe("127.0.0.1", &options).unwrap())
        .collect();
    for handle in handles {
        assert_eq!(handle.wait().unwrap().result, NoReply);
    }
}

/// `local_device` on a namespace's veth: a (ld0) -- b 198.18.5.2, and a (le0) -- c.
fn local_device(version: &str) {
    let Some((e, binary)) = release(version) else {
        return;
    };
    let tag = tag(e);
    let [a, b, c] = ["a", "b", "c"].map(|n| Netns::new(&format!("{tag}-dev{n}")).unwrap());
    let (ld0, le0) = (format!("{tag}ld0"), format!("{tag}le0"));
    veth(&a, &ld0, &b, &format!("{tag}ld1")).unwrap();
    veth(&a, &le0, &c, &format!("{tag}le1")).unwrap();
    a.ip(&["addr", "add", "198.18.5.1/24", "dev", &ld0])
        .unwrap();
    a.ip(&["addr", "add", "198.18.6.1/24", "dev", &le0])
        .unwrap();
    b.ip(&["addr", "add", "198.18.5.2/24", "dev", &format!("{tag}ld1")])
        .unwrap();

    // Bound to the wrong interface, the probe gets lost; a release that ignores the
    // argument gets its reply anyway.
    let kinds = raw_kinds(
        &binary,
        Some(&a),
        &[&format!(
            "send-probe ip-4 198.18.5.2 local-ip-4 198.18.5.1 local-device {le0} timeout 1"
        )],
    );
    let ignored = if e.local_device { "no-reply" } else { "reply" };
    assert_eq!(kinds, [ignored]);

    let session = builder(&binary, Some(&a)).open().unwrap();
    for (device, kind) in [(&ld0, ReplyKind::Reply), (&le0, NoReply)] {
        let options = ProbeOptions {
            local_device: Some(device.clone()),
            local_ip: e.needs_source.then(|| "198.18.5.1".to_owned()),
            ..within(1)
        };
        match session.probe_blocking("198.18.5.2", &options) {
            Ok(result) => {
                assert!(e.local_device, "{result:?}");
                assert_eq!(result.result, kind, "{device}");
            }
            Err(Error::Unsupported { .. }) => assert!(!e.local_device),
            Err(other) => panic!("{other}"),
        }
    }
}

/// The releases built without their version (`UNKNOWN`), each with the row the session
/// takes it for (0.94's probe engine is 0.95's, so it is not built so).
const UNKNOWN_ROWS: [(&str, &str); 4] = [
    ("0.92", "0.92"),
    ("0.93", "0.93"),
    ("0.95", "unknown"),
    ("0.96", "0.96"),
];

/// The `UNKNOWN` build of `version` and what its release does, `None` where not built.
fn unknown_build(version: &str) -> Option<(PathBuf, &'static Expected)> {
    let binary = binary(&format!("{version}-UNKNOWN"))?;
    Some((binary, EXPECTED.iter().find(|e| e.version == version)?))
}

/// Releases built without their version (`UNKNOWN`), each with the row the session takes it
/// for: 0.92, 0.93 and 0.96 by behaviour, 0.95 (whose probe engine is 0.94's) the generic
/// row. The session adds the source address 0.93 needs and lets 0.96 bind to an interface.
#[test]
#[ignore = "needs root: raw sockets and network namespaces for each release's mtr-packet"]
fn unknown_builds_are_told_by_behaviour() {
    for (version, row) in UNKNOWN_ROWS {
        let Some((binary, e)) = unknown_build(version) else {
            continue;
        };
        // In a namespace of its own: 0.92 matches a UDP answer by sequence alone, so the
        // probes of the other tests' helpers on the host's loopback could answer the flow
        // probe that tells it apart (see `loopback`).
        let ns = Netns::new(&format!("{}-unknown", tag(e))).expect("namespace");
        let kinds = raw_kinds(
            &binary,
            Some(&ns),
            &[
                "check-support feature version",
                "send-probe ip-4 127.0.0.1 local-ip-4 127.0.0.1 local-device mtrproto-none timeout 1",
                "send-probe ip-4 127.0.0.1 local-ip-4 127.0.0.1 protocol udp port 9 local-port 32999 timeout 1",
            ],
        );
        let device = if e.local_device {
            "unexpected-error"
        } else {
            "reply"
        };
        let flow = if e.udp_port_and_local_port[0] {
            "reply"
        } else {
            "no-reply"
        };
        assert_eq!(kinds, ["feature-support", device, flow], "{version}");
        let session = builder(&binary, Some(&ns)).window(20_000).open().unwrap();
        assert_eq!(session.version(), "UNKNOWN");
        assert_eq!(session.release().version, row);
        assert_eq!(session.release().needs_source_address, e.needs_source);
        assert_eq!(session.window(), e.capacity);
        for host in ["127.0.0.1", "::1"] {
            let result = session.probe_blocking(host, &within(1)).unwrap();
            assert!(result.success(), "{version} {host}: {result:?}");
        }
        let lo = ProbeOptions {
            local_device: Some("lo".into()),
            ..within(1)
        };
        match session.probe_blocking("127.0.0.1", &lo) {
            Ok(result) => assert!(e.local_device && result.success(), "{result:?}"),
            Err(Error::Unsupported { .. }) => assert!(!e.local_device),
            Err(other) => panic!("{other}"),
        }
    }
}

/// 0.92 built `UNKNOWN` never answers a UDP flow over IPv4 either: a multipath trace is
/// refused at once, naming 0.93, as on 0.92's own version (before, the session took it for
/// 0.94 or 0.95 and `paths 127.0.0.1` printed silent TTLs and exited 0).
#[test]
#[ignore = "needs root: raw sockets and network namespaces for each release's mtr-packet"]
fn unknown_092_is_refused_udp_flows_over_ipv4() {
    let Some(binary) = binary("0.92-UNKNOWN") else {
        return;
    };
    // Its own namespace, as in `unknown_builds_are_told_by_behaviour`.
    let ns = Netns::new("v092-uflows").expect("namespace");
    let session = builder(&binary, Some(&ns)).open().unwrap();
    assert_eq!(session.version(), "UNKNOWN");
    let mut paths = mtrproto_blocking::MultipathOptions::default();
    paths.trace.max_ttl = 2;
    paths.trace.timeout = Duration::from_secs(1);
    match session.multipath("127.0.0.1", &paths) {
        Err(Error::Unsupported { what, .. }) => assert!(what.contains("0.93"), "{what}"),
        Ok(report) => panic!("no error, a silent path: {report:?}"),
        Err(other) => panic!("{other}"),
    }
}

/// In a namespace whose `lo` is down (as `ip netns add` leaves it), every release answers
/// `invalid-argument` to a probe to 127.0.0.1 without source address, as 0.93 does
/// everywhere: the session cannot tell the release there and takes the generic row, 0.93
/// included, not 0.93's (before, 0.95 and 0.96 built `UNKNOWN` were taken for 0.93 there:
/// UDP over IPv6 refused, a source address added to every probe). 0.92 does not start there
/// (`Error decoding localhost address`).
#[test]
#[ignore = "needs root: raw sockets and network namespaces for each release's mtr-packet"]
fn unknown_build_with_loopback_down_is_not_taken_for_093() {
    for version in ["0.93", "0.95", "0.96"] {
        let Some((binary, e)) = unknown_build(version) else {
            continue;
        };
        let ns = Netns::with_loopback_down(&format!("{}-lodown", tag(e))).expect("namespace");
        let session = builder(&binary, Some(&ns)).open().unwrap();
        assert_eq!(session.version(), "UNKNOWN");
        assert_eq!(session.release().version, "unknown", "{version}");
        assert!(!session.release().needs_source_address);
        // Goes out (and the helper refuses it: no route to ::1 here), where 0.93's row
        // would refuse it in the session.
        let udp6 = ProbeOptions {
            protocol: Protocol::Udp,
            port: Some(9),
            ..within(1)
        };
        if let Err(Error::Unsupported { what, .. }) = session.probe_blocking("::1", &udp6) {
            panic!("{version}: refused: {what}");
        }
    }
}

/// 0.95 and 0.96 built `UNKNOWN`, in a namespace whose `lo` is down and whose default route
/// is `unreachable`: the detection's first probe (no source address) kills the helper
/// (SIGSEGV, `crashes_on_unreachable_route`). The open takes the generic row once the
/// restarted helper answers a check, and probes over a veth are answered (the open failed
/// `Exited` with signal 11).
#[test]
#[ignore = "needs root: raw sockets and network namespaces for each release's mtr-packet"]
fn unknown_build_crashing_during_detection_opens_with_its_restart() {
    for version in ["0.95", "0.96"] {
        let Some((binary, e)) = unknown_build(version) else {
            continue;
        };
        assert!(e.crashes_on_unreachable_route, "{version}");
        let v = version.replace('.', "");
        let ns = Netns::with_loopback_down(&format!("r14a{v}")).expect("namespace");
        ns.ip(&["route", "add", "unreachable", "default"]).unwrap();
        let peer = Netns::new(&format!("r14p{v}")).expect("namespace");
        let (here, there) = (format!("r14a{v}"), format!("r14b{v}"));
        veth(&ns, &here, &peer, &there).unwrap();
        ns.ip(&["addr", "add", "198.18.0.1/24", "dev", &here])
            .unwrap();
        peer.ip(&["addr", "add", "198.18.0.2/24", "dev", &there])
            .unwrap();
        let session = builder(&binary, Some(&ns))
            .open()
            .unwrap_or_else(|e| panic!("{version}: {e:?}"));
        assert_eq!(session.version(), "UNKNOWN");
        assert_eq!(session.release().version, "unknown", "{version}");
        assert!(session.helpers()[0].restarts >= 1, "{version}");
        let result = session.probe_blocking("198.18.0.2", &within(2)).unwrap();
        assert_eq!(result.result, ReplyKind::Reply, "{version}: {result:?}");
    }
}

/// Where the host ignores ICMP echo (`net.ipv4.icmp_echo_ignore_all`, a common hardening),
/// the ICMP probes of the detection go out unanswered: each build built `UNKNOWN` must still
/// get its row (0.93 got the generic one, which adds no source address, so every probe of
/// it was refused; 0.92 too, whose UDP flows then went out and were never answered).
#[test]
#[ignore = "needs root: raw sockets and network namespaces for each release's mtr-packet"]
fn unknown_builds_are_told_where_icmp_echo_is_ignored() {
    for (version, row) in UNKNOWN_ROWS {
        let Some((binary, e)) = unknown_build(version) else {
            continue;
        };
        let ns = Netns::new(&format!("{}-noecho", tag(e))).expect("namespace");
        ns.sysctl("net.ipv4.icmp_echo_ignore_all", "1")
            .expect("sysctl");
        let session = builder(&binary, Some(&ns)).open().unwrap();
        assert_eq!(session.version(), "UNKNOWN");
        assert_eq!(session.release().version, row, "{version}");
        assert_eq!(session.release().needs_source_address, e.needs_source);
    }
}

/// A helper of unknown version that is neither 0.93 nor 0.96 by behaviour is 0.92, 0.94 or
/// 0.95, none of which ever answers a UDP flow over IPv6: a multipath trace over IPv6 is
/// refused at once, naming 0.96, as on those releases' own versions (before, it went out,
/// and on 0.95 built `UNKNOWN` `paths ::1` printed five silent TTLs after 20 s). IPv4
/// flows, which 0.94 and 0.95 answer, still go out.
#[test]
fn unknown_version_is_refused_udp_flows_over_ipv6() {
    let fake = env!("CARGO_BIN_EXE_fake-mtr-packet");
    let session = Session::builder()
        .program(fake, ["--version", "UNKNOWN"])
        .open()
        .unwrap();
    assert_eq!(session.release().version, "unknown");
    let mut paths = mtrproto_blocking::MultipathOptions::default();
    paths.trace.max_ttl = 1;
    match session.multipath("::1", &paths) {
        Err(Error::Unsupported { what, .. }) => assert!(what.contains("0.96"), "{what}"),
        other => panic!("{other:?}"),
    }
    let report = session.multipath("127.0.0.1", &paths).unwrap();
    assert!(report.hops[0].responders.iter().any(|r| r.flows > 0));
}

/// A helper of unknown version that takes probes without a source address (the fake one)
/// gets the generic row: the smallest table, `local_device` refused.
#[test]
fn unknown_version_that_needs_no_source() {
    let fake = env!("CARGO_BIN_EXE_fake-mtr-packet");
    let session = Session::builder()
        .program(fake, ["--version", "UNKNOWN"])
        .window(5000)
        .open()
        .unwrap();
    assert_eq!(session.version(), "UNKNOWN");
    assert_eq!(session.release().version, "unknown");
    assert!(!session.release().needs_source_address);
    assert_eq!(session.window(), 1024);
    let device = ProbeOptions {
        local_device: Some("eth0".into()),
        ..ProbeOptions::default()
    };
    assert!(matches!(
        session.probe_blocking("127.0.0.1", &device),
        Err(Error::Unsupported { .. })
    ));
    assert!(
        session
            .probe_blocking("127.0.0.1", &within(1))
            .unwrap()
            .success()
    );
}

/// A session that allows no queue under a rate (`max_queue(0)`, `rate(1, 1)`): the
/// detection's probes, sent back to back, each wait for the rate's token instead of failing
/// the open `QueueFull(0)`, and the row is the one the helper's behaviour gives: 0.93's for
/// a helper that refuses probes without a source address, the generic one for the fake as
/// it is, once all four probes were asked (not by accident, after a failed one).
#[test]
fn unknown_version_is_told_under_a_rate_with_no_queue() {
    let fake = env!("CARGO_BIN_EXE_fake-mtr-packet");
    let log = std::env::temp_dir().join(format!(
        "mtrproto-rate-detection-{}.log",
        std::process::id()
    ));
    for (behaviour, row, probes) in [
        (&["--require-local-ip"][..], "0.93", 2),
        (&[], "unknown", 4),
    ] {
        let _ = std::fs::remove_file(&log);
        let args = [
            &["--version", "UNKNOWN", "--read-log", log.to_str().unwrap()][..],
            behaviour,
        ]
        .concat();
        let opened = Session::builder()
            .program(fake, args)
            .max_queue(0)
            .rate(1, 1)
            .open();
        let read = std::fs::read_to_string(&log).unwrap_or_default();
        let _ = std::fs::remove_file(&log);
        let session = opened.unwrap_or_else(|e| panic!("{row}: {e:?}"));
        assert_eq!(session.release().version, row);
        let sent = read
            .lines()
            .filter(|l| l.split(' ').nth(1) == Some("send-probe"))
            .count();
        assert_eq!(sent, probes, "{row}: {read}");
    }
}

/// A temporary path for the fake's `--first-only` (and the like), removed on drop.
struct TempPath(PathBuf);

impl TempPath {
    fn new(name: &str) -> TempPath {
        let path =
            std::env::temp_dir().join(format!("mtrproto-releases-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        let _ = std::fs::remove_file(&path);
        TempPath(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("a temp path in UTF-8")
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A helper of unknown version that exits once while the session tells its release by
/// behaviour (at the first probe, as 0.94-0.96 crash on one without source address where
/// the default route is `unreachable`, or at the UDP one after two answers): the probes
/// tell nothing more, and the open takes the generic row once the restarted helper answers
/// a check, which then takes probes (the open failed `Exited`).
#[test]
fn unknown_version_exiting_once_during_detection_opens_with_the_generic_row() {
    let fake = env!("CARGO_BIN_EXE_fake-mtr-packet");
    // The opening checks are requests 0 and 1; the detection's probes follow.
    for after in ["2", "4"] {
        let first_only = TempPath::new(&format!("exit-once-{after}"));
        let opened = Session::builder()
            .program(
                fake,
                [
                    "--version",
                    "UNKNOWN",
                    "--exit-after",
                    after,
                    "--first-only",
                    first_only.path(),
                ],
            )
            .open();
        let session = opened.unwrap_or_else(|e| panic!("{after}: {e:?}"));
        assert_eq!(session.release().version, "unknown", "{after}");
        assert!(session.helpers()[0].restarts >= 1, "{after}");
        let probe = session.probe_blocking("127.0.0.1", &within(1));
        assert!(
            probe.as_ref().is_ok_and(|r| r.success()),
            "{after}: {probe:?}"
        );
    }
}

/// A helper of unknown version that exits during the detection and whose restart dies too,
/// at the check the open then asks it: `open` fails with that exit, at once.
#[test]
fn unknown_version_dying_again_at_the_check_after_detection_fails_open() {
    let fake = env!("CARGO_BIN_EXE_fake-mtr-packet");
    // The first process exits at the first probe (request 2); each later one answers the
    // driver's version check (request 0) and exits at the next.
    let first = TempPath::new("dying-again");
    let script = r#"if mkdir "$1" 2>/dev/null; then n=2; else n=1; fi
exec "$0" --version UNKNOWN --exit-after "$n""#;
    let started = Instant::now();
    let opened = Session::builder()
        .program("sh", ["-c", script, fake, first.path()])
        .open();
    let took = started.elapsed();
    assert!(
        matches!(opened, Err(Error::Process(ProcessError::Exited { .. }))),
        "{opened:?}"
    );
    assert!(took < Duration::from_secs(3), "{took:?}");
}

/// A helper of unknown version that answers the detection's probe with a line whose
/// arguments do not parse (a value no mtr-packet writes: unknown arguments are kept, not
/// refused) is not behaving as mtr-packet, as one writing junk: `open` fails
/// `NotMtrPacket` at once, without the probes' timeouts.
#[test]
fn unknown_version_answering_malformed_during_detection_fails_open() {
    let fake = env!("CARGO_BIN_EXE_fake-mtr-packet");
    let started = Instant::now();
    let opened = Session::builder()
        .program(fake, ["--version", "UNKNOWN", "--malformed"])
        .open();
    let took = started.elapsed();
    assert!(
        matches!(
            opened,
            Err(Error::Process(ProcessError::NotMtrPacket { .. }))
        ),
        "{opened:?}"
    );
    // Not after the probe's timeout and the grace (1 s + 5 s), with room for a busy machine.
    assert!(took < Duration::from_secs(3), "{took:?}");
}

/// A helper of unknown version that stops answering during the detection (never answering
/// a probe, or deaf from the UDP probe on): `open` fails `Unresponsive` once the first
/// unanswered probe's timeout (1 s) and the grace are over, not after every later probe's
/// too.
#[test]
fn unknown_version_stalling_during_detection_fails_open_within_the_grace() {
    let fake = env!("CARGO_BIN_EXE_fake-mtr-packet");
    let grace = Duration::from_secs(2);
    for stall in [&["--stall"][..], &["--deaf-after", "4"]] {
        let started = Instant::now();
        let opened = Session::builder()
            .program(fake, [&["--version", "UNKNOWN"][..], stall].concat())
            .grace(grace)
            .open();
        let took = started.elapsed();
        assert!(
            matches!(opened, Err(Error::Process(ProcessError::Unresponsive))),
            "{stall:?}: {opened:?}"
        );
        // One probe's timeout and the grace, with room for a busy machine; a second
        // unanswered probe would take as long again.
        let bound = Duration::from_secs(1) + grace + Duration::from_millis(1500);
        assert!(took < bound, "{stall:?}: {took:?}");
    }
}

/// One module per release, one test per area.
macro_rules! releases {
    ($($module:ident => $version:literal),* $(,)?) => {$(
        mod $module {
            #[test]
            #[ignore = "needs root: raw sockets and network namespaces for each release's mtr-packet"]
            fn version_and_features() {
                super::version_and_features($version);
            }
            #[test]
            #[ignore = "needs root: raw sockets and network namespaces for each release's mtr-packet"]
            fn loopback() {
                super::loopback($version);
            }
            #[test]
            #[ignore = "needs root: raw sockets and network namespaces for each release's mtr-packet"]
            fn line_of_routers() {
                super::line_of_routers($version);
            }
            #[test]
            #[ignore = "needs root: raw sockets and network namespaces for each release's mtr-packet"]
            fn crash_on_unreachable_route() {
                super::crash_on_unreachable_route($version);
            }
            #[test]
            #[ignore = "needs root: raw sockets and network namespaces for each release's mtr-packet"]
            fn probe_table() {
                super::probe_table($version);
            }
            #[test]
            #[ignore = "needs root: raw sockets and network namespaces for each release's mtr-packet"]
            fn local_device() {
                super::local_device($version);
            }
        }
    )*};
}

releases!(v0_92 => "0.92", v0_93 => "0.93", v0_94 => "0.94", v0_95 => "0.95", v0_96 => "0.96");
