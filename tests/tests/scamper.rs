//! scamper's `tracelb` (the MDA of Paris traceroute) against the simulator's diamonds: a
//! second opinion on the simulator, and the probe counts an MDA tracer is compared with.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use mtrproto_tests::scamper::{Tracelb, require_scamper, tracelb};
use mtrproto_tests::sim::scenario::Scenario;
use mtrproto_tests::sim::topology::PathTruth;

fn scenario_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scenarios")
        .join(name)
}

fn truth(name: &str, target: &str) -> PathTruth {
    let text = std::fs::read_to_string(scenario_path(name)).unwrap();
    let target: IpAddr = target.parse().unwrap();
    Scenario::parse(&text)
        .unwrap()
        .path_truths()
        .into_iter()
        .find(|t| t.target == target)
        .unwrap()
}

/// `tracelb` at 95% (scamper 20211212 ignores `-s`: its source port comes from its process
/// ID, so each run probes other flows).
fn run(name: &str, target: &str) -> (PathTruth, Tracelb) {
    let truth = truth(name, target);
    let found = tracelb(
        Path::new(env!("CARGO_BIN_EXE_mtrsim")),
        &scenario_path(name),
        truth.target,
        "-c 95 -w 1 -W 15",
    )
    .unwrap_or_else(|e| panic!("{name}: {e}"));
    println!(
        "scamper tracelb {name} {target}: {} probes, {} addresses, {} links known",
        found.probes,
        found.hops.values().map(BTreeSet::len).sum::<usize>(),
        found.links.len()
    );
    (truth, found)
}

fn truth_hops(truth: &PathTruth) -> BTreeMap<u8, BTreeSet<IpAddr>> {
    truth
        .hops
        .iter()
        .map(|h| (h.ttl, h.responders.iter().map(|r| r.0).collect()))
        .collect()
}

/// Every address scamper reports is in the ground truth, and so is every link from a TTL
/// where it found every interface (where it missed one, the flows through the missed one
/// are linked to those it saw: 198.18.43.21 missed, 198.18.43.22 -> .31 reported).
fn assert_within_truth(name: &str, truth: &PathTruth, found: &Tracelb) {
    let want = truth_hops(truth);
    for (ttl, addrs) in &found.hops {
        let at = want.get(ttl).cloned().unwrap_or_default();
        assert!(
            addrs.is_subset(&at),
            "{name} TTL {ttl}: {addrs:?} not in {at:?}"
        );
    }
    let links: BTreeSet<_> = truth.links.iter().map(|l| (l.0, l.1)).collect();
    let whole = |from: &IpAddr| {
        found
            .hops
            .iter()
            .any(|(ttl, addrs)| addrs.contains(from) && want.get(ttl) == Some(addrs))
    };
    for link in found.links.iter().filter(|l| whole(&l.0)) {
        assert!(
            links.contains(link),
            "{name}: {link:?} in {:?}",
            found.links
        );
    }
}

#[test]
#[ignore = "needs root: network namespaces and a TUN device (mtrsim), and scamper"]
fn scamper_tracelb_finds_every_interface_of_the_diamonds() {
    mtrproto_tests::require_netns();
    require_scamper();
    // One thread per diamond: each run mostly waits for scamper (its own namespace, the
    // simulator's process id in its name), so the diamonds need not wait for each other.
    std::thread::scope(|scope| {
        for (name, target) in [
            ("diamond-2.toml", "198.18.40.1"),
            ("diamond-16.toml", "198.18.42.1"),
            ("diamond-nested.toml", "198.18.43.1"),
            ("diamond-meshed.toml", "198.18.44.1"),
            ("diamond-meshed.toml", "198.18.45.1"),
            ("diamond-v6.toml", "2001:db8:48::1"),
            ("diamond-per-packet.toml", "198.18.49.1"),
        ] {
            scope.spawn(move || {
                // MDA at 95% misses a next hop now and then (a 2-way hop: both of 6 flows
                // on one side, 2 in 64; the meshed 4x2 found whole in 37 of 40 runs,
                // BENCHMARKS.md): each run reports only what is there, and one of 6 runs all of
                // it (3 runs all missed, about 1 time in 80, on the meshed diamond).
                let complete = (0..6).any(|_| {
                    let (truth, found) = run(name, target);
                    assert_within_truth(name, &truth, &found);
                    // MDA's least stopping point is 6 probes per hop: more probes than hops.
                    assert!(found.probes as usize > truth.hops.len(), "{name}");
                    is_complete(&truth, &found)
                });
                assert!(complete, "{name} {target}: 6 runs, none found all");
            });
        }
    });
}

/// Whether `found` has every interface at its TTL, and every link, or the clump it is in
/// (several routers on both sides).
fn is_complete(truth: &PathTruth, found: &Tracelb) -> bool {
    found.hops == truth_hops(truth)
        && truth.links.iter().all(|(from, to, _)| {
            let ttl = truth
                .hops
                .iter()
                .find(|h| h.responders.iter().any(|r| r.0 == *from));
            found.links.contains(&(*from, *to))
                || ttl.is_some_and(|h| found.unresolved.contains(&h.ttl))
        })
}

/// Where scamper falls short, as documented: a diamond at the first TTL shows one router
/// (it starts from a single first hop); a branch taking 1 in 32 flows is easily missed at
/// 95%. What it reports is still within the ground truth.
#[test]
#[ignore = "needs root: network namespaces and a TUN device (mtrsim), and scamper"]
fn scamper_tracelb_reports_nothing_outside_the_ground_truth() {
    mtrproto_tests::require_netns();
    require_scamper();
    let (truth, found) = run("diamond-first-hop.toml", "198.18.47.1");
    assert_within_truth("diamond-first-hop", &truth, &found);
    assert_eq!(found.hops[&1].len(), 1, "{found:?}");
    assert_eq!(found.hops[&2].len(), 1);
    let (truth, found) = run("diamond-weights.toml", "198.18.46.1");
    assert_within_truth("diamond-weights", &truth, &found);
    assert!(found.hops[&3].contains(&"198.18.46.32".parse().unwrap()));
}
