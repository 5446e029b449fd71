//! The trace example over a line of network namespaces, client -> router -> router -> target,
//! with mtr-packet started inside the client namespace; and Debian's `mtr` on the same path.
//! Needs root and iproute2; the addresses live only inside the namespaces made here.

use std::path::PathBuf;

use mtrproto_tests::netns::{Netns, veth};
use serde_json::Value;

/// The four hosts and their links; removed when dropped.
struct Line {
    client: Netns,
    routers: [Netns; 2],
    target: Netns,
}

/// client 198.18.1.2 -- 198.18.1.1 r1 198.18.2.1 -- 198.18.2.2 r2 198.18.3.1 -- 198.18.3.2
/// target, and the same with 2001:db8:N::.
/// `tag` keeps the namespace names of tests running at once apart.
fn build_line(tag: &str) -> std::io::Result<Line> {
    let client = Netns::new(&format!("{tag}-client"))?;
    let r1 = Netns::new(&format!("{tag}-r1"))?;
    let r2 = Netns::new(&format!("{tag}-r2"))?;
    let target = Netns::new(&format!("{tag}-target"))?;
    veth(&client, "c0", &r1, "r1a")?;
    veth(&r1, "r1b", &r2, "r2a")?;
    veth(&r2, "r2b", &target, "t0")?;
    let addr = |ns: &Netns, dev: &str, v4: &str, v6: &str| -> std::io::Result<()> {
        ns.ip(&["addr", "add", v4, "dev", dev])?;
        ns.add_ipv6(v6, dev)
    };
    addr(&client, "c0", "198.18.1.2/24", "2001:db8:1::2/64")?;
    addr(&r1, "r1a", "198.18.1.1/24", "2001:db8:1::1/64")?;
    addr(&r1, "r1b", "198.18.2.1/24", "2001:db8:2::1/64")?;
    addr(&r2, "r2a", "198.18.2.2/24", "2001:db8:2::2/64")?;
    addr(&r2, "r2b", "198.18.3.1/24", "2001:db8:3::1/64")?;
    addr(&target, "t0", "198.18.3.2/24", "2001:db8:3::2/64")?;
    let route = |ns: &Netns, to4: &str, via4: &str, to6: &str, via6: &str| -> std::io::Result<()> {
        ns.ip(&["route", "add", to4, "via", via4])?;
        ns.ip(&["-6", "route", "add", to6, "via", via6])
    };
    route(
        &client,
        "198.18.0.0/16",
        "198.18.1.1",
        "2001:db8::/32",
        "2001:db8:1::1",
    )?;
    route(
        &r1,
        "198.18.3.0/24",
        "198.18.2.2",
        "2001:db8:3::/64",
        "2001:db8:2::2",
    )?;
    route(
        &r2,
        "198.18.1.0/24",
        "198.18.2.1",
        "2001:db8:1::/64",
        "2001:db8:2::1",
    )?;
    route(
        &target,
        "198.18.0.0/16",
        "198.18.3.1",
        "2001:db8::/32",
        "2001:db8:3::1",
    )?;
    for router in [&r1, &r2] {
        router.sysctl("net.ipv4.ip_forward", "1")?;
        router.sysctl("net.ipv6.conf.all.forwarding", "1")?;
        // Every probe must get its time-exceeded: no ICMP rate limit on the routers.
        router.sysctl("net.ipv4.icmp_ratelimit", "0")?;
        router.sysctl("net.ipv6.icmp.ratelimit", "0")?;
    }
    Ok(Line {
        client,
        routers: [r1, r2],
        target,
    })
}

/// The trace example, built from the current source.
fn trace_example() -> PathBuf {
    mtrproto_tests::built_example("trace")
}

fn json_of(output: std::process::Output, what: &str) -> Value {
    assert!(
        output.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{what}: {e}: {}", String::from_utf8_lossy(&output.stdout)))
}

fn hosts(report: &Value) -> Vec<String> {
    report["report"]["hubs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["host"].as_str().unwrap().to_owned())
        .collect()
}

/// No address of the line is tentative once it is built (`Netns::new` turns duplicate
/// address detection off): IPv6 is forwarded beyond the first router from the start.
#[test]
#[ignore = "needs root: network namespaces"]
fn the_line_has_no_tentative_address_once_built() {
    mtrproto_tests::require_netns();
    let line = build_line("dad").expect("namespaces");
    for ns in [
        &line.client,
        &line.routers[0],
        &line.routers[1],
        &line.target,
    ] {
        let tentative = ns.tentative_ipv6().expect("ip addr");
        assert!(tentative.trim().is_empty(), "{}: {tentative}", ns.name());
    }
}

#[test]
#[ignore = "needs root: network namespaces, and mtr-packet and Debian's mtr"]
fn trace_through_two_routers_matches_the_path_and_mtr() {
    mtrproto_tests::require_netns();
    mtrproto_tests::require_mtr();
    let line = build_line("trace").expect("namespaces");
    let trace = trace_example();
    let paths = [
        ("198.18.3.2", ["198.18.1.1", "198.18.2.2", "198.18.3.2"]),
        (
            "2001:db8:3::2",
            ["2001:db8:1::1", "2001:db8:2::2", "2001:db8:3::2"],
        ),
    ];
    for (target, hops) in paths {
        let ours = line
            .client
            .command(trace.to_str().unwrap())
            .args(["-n", "-c", "5", "-i", "0.1", "--json", target])
            .output()
            .unwrap();
        let ours = json_of(ours, "trace");
        assert_eq!(hosts(&ours), hops, "{ours:#}");
        for hub in ours["report"]["hubs"].as_array().unwrap() {
            assert_eq!(hub["Loss%"], 0.0, "{hub}");
            assert_eq!(hub["Snt"], 5, "{hub}");
        }

        let mtr = line
            .client
            .command("mtr")
            .args([
                "--report", "--json", "--no-dns", "-c", "3", "-i", "0.1", target,
            ])
            .output()
            .unwrap();
        let mtr = json_of(mtr, "mtr");
        assert_eq!(hosts(&mtr), hosts(&ours), "mtr: {mtr:#}");
        let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        assert_eq!(keys(&ours["report"]), keys(&mtr["report"]));
        assert_eq!(keys(&ours["report"]["mtr"]), keys(&mtr["report"]["mtr"]));
        assert_eq!(
            keys(&ours["report"]["hubs"][0]),
            keys(&mtr["report"]["hubs"][0])
        );
    }

    // The text report names the same hops.
    let text = line
        .client
        .command(trace.to_str().unwrap())
        .args(["-n", "-c", "2", "-i", "0.1", "198.18.3.2"])
        .output()
        .unwrap();
    let text = String::from_utf8(text.stdout).unwrap();
    for (ttl, hop) in ["198.18.1.1", "198.18.2.2", "198.18.3.2"]
        .iter()
        .enumerate()
    {
        assert!(
            text.contains(&format!("{:>2}.|-- {hop} ", ttl + 1)),
            "{text}"
        );
    }
}
