//! The generated internet (`[internet]` in a scenario) against the real mtr-packet: probes
//! through the library see what `mtrsim --ground-truth` says; the ground truth repeats per
//! seed; mtrsim removes its namespace on SIGTERM.

use std::collections::HashMap;
use std::net::IpAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn scenario_path(name: &str) -> String {
    format!("{}/scenarios/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// `mtrsim --ground-truth PATH`: one JSON object per line.
fn ground_truth(path: &str) -> Vec<Value> {
    ground_truth_text(path)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// `mtrsim --ground-truth PATH`, as printed.
fn ground_truth_text(path: &str) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_mtrsim"))
        .args(["--ground-truth", path])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// One line of `sim-probe`: target, TTL, kind, responder, RTT in µs.
type Line = (IpAddr, usize, String, Option<IpAddr>, Option<u64>);

/// Runs `sim-probe ARGS` inside `mtrsim internet.toml`.
fn probe_results(args: &[&str]) -> Vec<Line> {
    let output = Command::new(env!("CARGO_BIN_EXE_mtrsim"))
        .arg(scenario_path("internet.toml"))
        .args(["--", env!("CARGO_BIN_EXE_sim-probe")])
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        output.status.success(),
        "{}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
        .lines()
        .map(|line| {
            let f: Vec<&str> = line.split(' ').collect();
            let opt = |v: &str| (v != "-").then(|| v.to_owned());
            (
                f[0].parse().unwrap(),
                f[1].parse().unwrap(),
                f[2].to_owned(),
                opt(f[3]).map(|v| v.parse().unwrap()),
                opt(f[4]).map(|v| v.parse().unwrap()),
            )
        })
        .collect()
}

/// Checks one probe result against the target's ground truth, as tests/scenarios/README.md
/// states the rule; returns whether the probe was answered.
fn check(truth: &Value, ttl: usize, kind: &str, from: Option<IpAddr>, rtt: Option<u64>) -> bool {
    let hops = truth["hops"].as_array().unwrap();
    let unreachable = truth["unreachable"].as_bool().unwrap();
    // Past the end, the last entry answers again (unreachable) or nobody (silent target);
    // a target that answers is reached at the last entry, so larger TTLs reach it too.
    let hop = &hops[ttl.min(hops.len()) - 1];
    let at_end = ttl >= hops.len();
    let responders: Option<Vec<IpAddr>> = hop["responders"].as_array().map(|a| {
        a.iter()
            .map(|r| r.as_str().unwrap().parse().unwrap())
            .collect()
    });
    let context = format!("ttl {ttl} {kind} {from:?}: {truth}");
    let Some(responders) = responders else {
        assert_eq!(kind, "no-reply", "{context}");
        return false;
    };
    if kind == "no-reply" {
        let excused = hop["lossy"] == true || hop["rate_limited"] == true;
        assert!(excused, "unanswered: {context}");
        return false;
    }
    let want = match (at_end, unreachable) {
        (false, _) => "ttl-expired",
        (true, false) => "reply",
        (true, true) => "no-route",
    };
    assert_eq!(kind, want, "{context}");
    assert!(from.is_some_and(|f| responders.contains(&f)), "{context}");
    let delay_us = (hop["delay_ms"].as_f64().unwrap() * 1000.0) as u64;
    // Only a lower bound: thousands of answers on a shared machine may come late, and
    // `simulator.rs` already checks delays closely.
    let rtt = rtt.unwrap();
    assert!(rtt + 1 >= delay_us, "rtt {rtt} us: {context}");
    true
}

/// A sample of the 10,000 targets of internet.toml (IPv4 and IPv6, ICMP and UDP) probed at
/// every TTL through one session: each answer comes from a responder the ground truth lists,
/// with its kind and at least its delay; a probe goes unanswered only at a silent hop or a
/// lossy or rate-limited one.
#[test]
#[ignore = "needs root: network namespaces and a TUN device (mtrsim), and mtr-packet"]
fn sampled_targets_match_the_ground_truth() {
    mtrproto_tests::require_netns();
    mtrproto_tests::require_mtr_packet();
    let truth = ground_truth(&scenario_path("internet.toml"));
    assert_eq!(truth.len(), 20_000);
    let by_target: HashMap<IpAddr, &Value> = truth
        .iter()
        .map(|t| (t["target"].as_str().unwrap().parse().unwrap(), t))
        .collect();
    let deepest = truth
        .iter()
        .map(|t| t["hops"].as_array().unwrap().len())
        .max()
        .unwrap();
    // Every 131st IPv4 target and every 257th IPv6 one, past the path's end by 2.
    let sample: Vec<String> = truth[..10_000]
        .iter()
        .step_by(131)
        .chain(truth[10_000..].iter().step_by(257))
        .map(|t| t["target"].as_str().unwrap().to_owned())
        .collect();
    let ttls = format!("1-{}", deepest + 2);
    // Not TCP: there, Linux may end the probe's connect() on the time exceeded before
    // mtr-packet reads it, and mtr-packet then reports `no-route` without an address.
    for protocol in ["icmp", "udp"] {
        let mut args = vec!["--ttls", &ttls, "--timeout", "1", "--protocol", protocol];
        args.extend(sample.iter().map(String::as_str));
        let results = probe_results(&args);
        assert_eq!(results.len(), sample.len() * (deepest + 2), "{protocol}");
        let mut answered = 0;
        let mut targets_seen = HashMap::new();
        for (target, ttl, kind, from, rtt) in &results {
            let t = by_target[target];
            if check(t, *ttl, kind, *from, *rtt) {
                answered += 1;
            }
            targets_seen.insert(*target, t);
        }
        // The sample holds every case the scenario generates.
        let has = |f: &dyn Fn(&Value) -> bool| targets_seen.values().any(|t| f(t));
        let any_hop =
            |t: &Value, f: &dyn Fn(&Value) -> bool| t["hops"].as_array().unwrap().iter().any(f);
        assert!(has(&|t| t["answers"] == false && t["unreachable"] == false));
        assert!(has(&|t| t["unreachable"] == true));
        assert!(has(&|t| any_hop(t, &|h| h["responders"].is_null())));
        assert!(has(&|t| any_hop(t, &|h| h["responders"]
            .as_array()
            .is_some_and(|r| r.len() == 2))));
        assert!(
            answered > results.len() / 2,
            "{answered} of {}",
            results.len()
        );
    }
}

/// Every scenario file here parses, generated internets included; nothing needs root.
#[test]
fn every_scenario_file_parses() {
    let dir = format!("{}/scenarios", env!("CARGO_MANIFEST_DIR"));
    let mut parsed = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let text = std::fs::read_to_string(&path).unwrap();
            let scenario = mtrproto_tests::sim::scenario::Scenario::parse(&text);
            assert!(scenario.is_ok(), "{}: {:?}", path.display(), scenario.err());
            parsed += 1;
        }
    }
    assert!(parsed >= 14, "{parsed} scenario files");
}

/// The same seed gives the same internet, another seed another; nothing needs root.
#[test]
fn ground_truth_repeats_per_seed() {
    let path = scenario_path("internet.toml");
    let first = ground_truth_text(&path);
    assert_eq!(first, ground_truth_text(&path));
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("seed = 14\n"));
    let other = std::env::temp_dir().join(format!("internet-seed-{}.toml", std::process::id()));
    std::fs::write(&other, text.replace("seed = 14\n", "seed = 15\n")).unwrap();
    let second = ground_truth_text(other.to_str().unwrap());
    let _ = std::fs::remove_file(&other);
    let first: Vec<&str> = first.lines().collect();
    let second: Vec<&str> = second.lines().collect();
    assert_eq!((first.len(), second.len()), (20_000, 20_000));
    let differ = first.iter().zip(&second).filter(|(a, b)| a != b).count();
    assert!(
        differ > first.len() / 2,
        "{differ} of {} differ",
        first.len()
    );
}

/// SIGTERM to mtrsim stops its command and removes its namespace.
#[test]
#[ignore = "needs root: network namespaces and a TUN device (mtrsim)"]
fn sigterm_removes_the_namespace() {
    mtrproto_tests::require_netns();
    let mut mtrsim = Command::new(env!("CARGO_BIN_EXE_mtrsim"))
        .arg(scenario_path("internet.toml"))
        .args(["--", "sleep", "30"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let name = format!("mtrp{}-sim", mtrsim.id());
    let netns_exists = || {
        let list = Command::new("ip").args(["netns", "list"]).output().unwrap();
        String::from_utf8_lossy(&list.stdout)
            .split_whitespace()
            .any(|n| n == name)
    };
    let children = || mtrproto_tests::children_of(&mtrsim.id().to_string());
    // Wait (bounded) until the command runs inside the namespace.
    let deadline = Instant::now() + Duration::from_secs(10);
    let sleep = loop {
        let kids = children();
        if netns_exists() && !kids.is_empty() {
            break kids[0];
        }
        assert!(
            Instant::now() < deadline,
            "mtrsim did not start its command"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let kill = Command::new("kill")
        .args(["-TERM", &mtrsim.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = mtrsim.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = mtrsim.kill();
            panic!("mtrsim still runs 10 s after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(143));
    assert!(!netns_exists(), "namespace {name} left behind");
    assert!(
        !mtrproto_tests::process_exists(sleep),
        "command {sleep} left running"
    );
}
