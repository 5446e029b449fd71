//! The examples' command lines, run against the real mtr-packet on the loopback addresses.

use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use mtrproto_tests::{built_example, built_example_of, real_mtr_packet, wait_within};

/// Runs `example` with `args` over the fake helper started with `fake_args`, for at most
/// 30 s: its exit status (`None` if it had to be killed), stdout and stderr. The outputs
/// are a few lines: they fit in the pipes while it runs.
fn run_over_fake(
    example: &str,
    args: &[&str],
    fake_args: &str,
) -> (Option<ExitStatus>, String, String) {
    let fake = env!("CARGO_BIN_EXE_fake-mtr-packet");
    let mut child = Command::new(built_example(example))
        .args(args)
        .env("MTR_PACKET", format!("'{fake}' {fake_args}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_within(&mut child, Duration::from_secs(30));
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout).unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    (status, stdout, stderr)
}

/// `-4` and `-6` are flags of every example, not negative numbers taken as a host.
#[test]
fn every_example_takes_the_ip_version_flags() {
    if real_mtr_packet().is_none() {
        println!("skipped: mtr-packet is not installed");
        return;
    }
    let runs: [(&str, &[&str]); 6] = [
        ("ping", &["-4", "-c", "1", "-i", "0", "127.0.0.1"]),
        ("ping", &["-6", "-c", "1", "-i", "0", "::1"]),
        ("trace", &["-4", "-n", "-c", "1", "-i", "0", "127.0.0.1"]),
        ("trace", &["-6", "-n", "-c", "1", "-i", "0", "::1"]),
        ("trace_concurrent", &["-4", "-m", "3", "127.0.0.1"]),
        ("trace_concurrent", &["-6", "-m", "3", "::1"]),
    ];
    for (example, args) in runs {
        let mut child = Command::new(built_example(example))
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let status = wait_within(&mut child, Duration::from_secs(30));
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
        assert!(
            status.is_some_and(|s| s.success()),
            "{example} {args:?}: {status:?}, {stderr}"
        );
    }
}

/// An example whose stdout is closed early (`trace --json HOST | head -1`) ends quietly:
/// no panic message, no panic exit status. The core's `tokio` panicked (`println!`) and
/// `decode` printed its error's `Debug` form (`Error: Custom { kind: BrokenPipe, .. }`).
#[test]
fn examples_end_quietly_when_stdout_closes() {
    if real_mtr_packet().is_none() {
        println!("skipped: mtr-packet is not installed");
        return;
    }
    let transcript = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../mtrproto/examples/data/transcript.txt"
    );
    let runs: [(&str, &str, &[&str]); 5] = [
        (
            "mtrproto-blocking",
            "ping",
            &["-c", "2", "-i", "0", "127.0.0.1"],
        ),
        (
            "mtrproto-blocking",
            "trace",
            &["--json", "-n", "-c", "1", "-i", "0", "127.0.0.1"],
        ),
        (
            "mtrproto-blocking",
            "trace_concurrent",
            &["-m", "3", "127.0.0.1"],
        ),
        ("mtrproto", "tokio", &["127.0.0.1"]),
        ("mtrproto", "decode", &[]),
    ];
    for (package, example, args) in runs {
        let stdin = match example {
            "decode" => Stdio::from(std::fs::File::open(transcript).unwrap()),
            _ => Stdio::null(),
        };
        let mut child = Command::new(built_example_of(package, example))
            .args(args)
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The reader goes away before the first line is written.
        drop(child.stdout.take());
        let status = wait_within(&mut child, Duration::from_secs(30));
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
        assert!(!stderr.contains("panicked"), "{example}: {stderr}");
        assert!(!stderr.contains("BrokenPipe"), "{example}: {stderr}");
        // 101 is the exit status of a Rust panic.
        assert!(
            status.is_some_and(|s| s.code() != Some(101)),
            "{example} {args:?}: {status:?}, {stderr}"
        );
    }
}

/// `paths` on the loopback: one hop, the target, ended by the target's first answer (fewer
/// probes than MDA's stopping point, 6 at 95% and 8 at 99%); over IPv6 mtr-packet 0.95
/// cannot hold a flow, and `paths` says which release can.
#[test]
fn paths_finds_the_loopback_and_names_the_release_ipv6_flows_need() {
    if real_mtr_packet().is_none() {
        println!("skipped: mtr-packet is not installed");
        return;
    }
    let run = |args: &[&str]| {
        let child = Command::new(built_example("paths"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let output = child.wait_with_output().unwrap();
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (output.status, text(&output.stdout), text(&output.stderr))
    };
    // The target's first answer ends its TTL (no balancer spreads one destination).
    for confidence in ["95", "99"] {
        let (status, stdout, stderr) = run(&["--json", "-c", confidence, "127.0.0.1"]);
        assert!(status.success(), "{stderr}");
        let mut json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        // One probe unless the answer takes longer than the 10 ms between probes (a busy
        // machine): then a few, never the stopping point's 6.
        let probes = json["probes"].take().as_u64().unwrap();
        assert!((1..6).contains(&probes), "{stdout}");
        assert_eq!(
            json,
            serde_json::json!({
                "target": "127.0.0.1",
                "confidence": confidence.parse::<u8>().unwrap(),
                "probes": null,
                "hops": [{"ttl": 1, "responders": ["127.0.0.1"], "per_packet": false}],
                "links": [],
            })
        );
    }
    let (status, stdout, _) = run(&["127.0.0.1"]);
    assert!(status.success());
    assert!(stdout.contains("  1  127.0.0.1 "), "{stdout}");
    // The header counts the probes in words: "1 probe" (it said "1 probes"), "3 probes".
    let header = stdout.lines().next().unwrap_or_default();
    let count = header.rsplit(", ").next().and_then(|t| t.split(' ').next());
    let noun = if count == Some("1") {
        "probe"
    } else {
        "probes"
    };
    assert!(header.ends_with(&format!(" {noun}")), "{stdout}");
    let (status, _, stderr) = run(&["-6", "::1"]);
    assert!(!status.success());
    assert!(stderr.contains("0.96 or later is needed"), "{stderr}");
}

/// `ping` through a helper that refuses every probe (it printed "2 probes sent, 0
/// received", as if the probes had been lost): it says they were refused, and why.
#[test]
fn ping_says_why_refused_probes_were_not_sent() {
    let (status, stdout, _) = run_over_fake(
        "ping",
        &["-c", "2", "-i", "0", "127.0.0.1"],
        "--reply invalid-argument",
    );
    println!("{stdout}");
    assert!(status.is_some_and(|s| !s.success()), "{status:?}: {stdout}");
    let summary = stdout.lines().last().unwrap_or_default();
    assert_eq!(
        summary, "0 probes sent, 2 refused by mtr-packet (invalid-argument)",
        "{stdout}"
    );
    assert!(
        stdout.contains("seq=2: not sent, mtr-packet refused it: invalid-argument"),
        "{stdout}"
    );
}

/// `ping` with an option the library refuses before sending (a port of 0, SCTP where the
/// helper has none) says so once and stops: it printed the error for every probe, a second
/// apart, then "3 probes sent, 0 received, 100% loss" though none went out.
#[test]
fn ping_stops_at_an_option_no_probe_can_be_sent_with() {
    for (args, fake, error) in [
        (
            &["-c", "3", "-p", "udp", "--port", "0", "127.0.0.1"][..],
            "",
            "ping: invalid probe option: port must be in 1..=65535, got 0",
        ),
        (
            &["-c", "3", "-p", "sctp", "127.0.0.1"],
            "--refuse sctp",
            "ping: mtr-packet 0.95 cannot send SCTP probes",
        ),
    ] {
        let (status, stdout, stderr) = run_over_fake("ping", args, fake);
        assert!(status.is_some_and(|s| !s.success()), "{args:?}: {stdout}");
        assert!(
            stderr.starts_with(error) && stderr.lines().count() == 1,
            "{args:?}: {stderr}"
        );
        assert!(!stdout.contains("probes sent"), "{args:?}: {stdout}");
    }
}

/// The core's `tokio` example runs the program `$MTR_PACKET` names, as the blocking driver
/// does, when the value is not UTF-8 too: it ran `mtr-packet` from `PATH` in its place.
#[test]
fn tokio_runs_the_helper_mtr_packet_names_even_when_not_utf8() {
    use std::os::unix::ffi::OsStrExt;
    let output = Command::new(built_example_of("mtrproto", "tokio"))
        .arg("127.0.0.1")
        .env(
            "MTR_PACKET",
            std::ffi::OsStr::from_bytes(b"/nonexistent/mtr-packet-\xff"),
        )
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.starts_with("error: cannot start /nonexistent/mtr-packet-"),
        "{stderr}"
    );
}

/// `paths --json` prints one JSON object whether the trace worked or not (it printed only
/// the error on stderr): when the helper refuses a probe, what the trace found until then
/// (the probes sent, the TTL probed, no responder) and `"error"` naming the refusal; when
/// the trace cannot start, the host as given, no probe and the error. The exit status
/// still says it failed.
#[test]
fn paths_json_is_one_object_with_the_error_when_a_probe_is_refused() {
    let run = |args: &[&str]| {
        let (status, stdout, stderr) =
            run_over_fake("paths", args, "--reply invalid-argument --refuse ip-6");
        assert!(
            status.is_some_and(|s| !s.success()),
            "{args:?}: {status:?}: {stdout}"
        );
        assert_eq!(stdout.lines().count(), 1, "{args:?}: one line: {stdout}");
        let json: serde_json::Value = serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("{args:?}: {e}: {stdout:?} {stderr}"));
        json
    };
    let mut json = run(&["--json", "127.0.0.1"]);
    let error = json["error"].take();
    let error = error.as_str().unwrap_or_else(|| panic!("{json}"));
    assert!(
        error.contains("invalid-argument") && error.contains("TTL 1"),
        "{error}"
    );
    // The first refusal ends the trace; on a loaded machine a second flow may go out (10 ms
    // later) before it arrives, so the count is whatever was sent, all at TTL 1.
    let probes = json["probes"].take();
    assert!(probes.as_u64().is_some_and(|n| n >= 1), "{probes}");
    assert_eq!(
        json,
        serde_json::json!({
            "target": "127.0.0.1",
            "confidence": 95,
            "probes": null,
            "hops": [{"ttl": 1, "responders": [], "per_packet": false}],
            "links": [],
            "error": null,
        })
    );
    // Refused before any probe: the helper cannot send IPv6 probes.
    let mut json = run(&["--json", "-c", "99", "::1"]);
    let error = json["error"].take();
    assert!(
        error.as_str().is_some_and(|e| e.contains("ip-6")),
        "{error}"
    );
    assert_eq!(
        json,
        serde_json::json!({
            "target": "::1",
            "confidence": 99,
            "probes": 0,
            "hops": [],
            "links": [],
            "error": null,
        })
    );
}

/// `paths` without `--json` on a refused probe prints no partial path (the TTLs before the
/// refusal are not a path to trust) and says why on stderr, naming the answer, the TTL and
/// what it usually means, and exits non-zero.
#[test]
fn paths_text_says_why_a_probe_was_refused() {
    let (status, stdout, stderr) =
        run_over_fake("paths", &["127.0.0.1"], "--reply permission-denied");
    assert!(status.is_some_and(|s| !s.success()), "{status:?}: {stdout}");
    assert_eq!(stdout, "", "{stderr}");
    assert!(
        stderr.starts_with("paths: mtr-packet refused the probe at TTL 1: permission-denied (")
            && stderr.lines().count() == 1,
        "{stderr}"
    );
}

/// `paths --json` is one object with `"error"` when the session cannot open either (it
/// printed the error on stderr alone, stdout empty), and the text form says why on stderr;
/// both exit non-zero.
#[test]
fn paths_json_is_one_object_when_the_helper_cannot_start() {
    for json in [true, false] {
        let args: &[&str] = if json {
            &["--json", "127.0.0.1"]
        } else {
            &["127.0.0.1"]
        };
        let output = Command::new(built_example("paths"))
            .args(args)
            .env("MTR_PACKET", "/nonexistent/mtr-packet")
            .output()
            .unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
        );
        assert!(!output.status.success(), "{args:?}: {stdout}");
        if json {
            let mut json: serde_json::Value = serde_json::from_str(&stdout)
                .unwrap_or_else(|e| panic!("{e}: {stdout:?} {stderr}"));
            let error = json["error"].take();
            assert!(
                error.as_str().is_some_and(|e| e.contains("not found")),
                "{error}"
            );
            assert_eq!(
                json,
                serde_json::json!({
                    "target": "127.0.0.1",
                    "confidence": 95,
                    "probes": 0,
                    "hops": [],
                    "links": [],
                    "error": null,
                })
            );
        } else {
            assert_eq!(stdout, "");
            assert!(
                stderr.contains("/nonexistent/mtr-packet not found"),
                "{stderr}"
            );
        }
    }
}

/// A trace its budget (or its last flow) cut short says so on stderr: its report alone
/// reads as a whole path (`--budget 3` over 3 routers: TTL 1 with 3 flows, no word that
/// the trace stopped there). The exit status stays 0: what it found is what it was allowed.
#[test]
fn paths_says_when_its_budget_cut_the_trace_short() {
    for args in [
        &["--budget", "3", "127.0.0.1"][..],
        &["--first-flow", "29998", "127.0.0.1"],
        &["--json", "--budget", "3", "127.0.0.1"],
    ] {
        let (status, stdout, stderr) = run_over_fake("paths", args, "--routers 3");
        assert!(status.is_some_and(|s| s.success()), "{args:?}: {stderr}");
        assert!(stdout.contains("192.0.2.1"), "{args:?}: {stdout}");
        assert!(
            stderr.starts_with("paths: the trace stopped at its probe budget")
                && stderr.contains("TTL 1 may have more interfaces"),
            "{args:?}: {stderr}"
        );
    }
    // A whole trace says nothing more.
    let (status, stdout, stderr) = run_over_fake("paths", &["127.0.0.1"], "--routers 3");
    assert!(status.is_some_and(|s| s.success()), "{stderr}");
    assert!(stdout.contains("  4  127.0.0.1 "), "{stdout}");
    assert_eq!(stderr, "");
}

/// `trace` with several hosts names each report's target before it: the reports come in
/// the order their traces end, and mtr's text names no target (it printed two identical
/// tables for two silent targets, and exited 1 without saying whose trace failed).
#[test]
fn trace_names_the_target_of_each_report_of_several() {
    let args = [
        "-n",
        "-c",
        "1",
        "-i",
        "0.1",
        "-G",
        "0.2",
        "-w",
        "1",
        "-m",
        "4",
        "127.0.0.1",
        "127.0.0.2",
    ];
    let (status, stdout, stderr) = run_over_fake("trace", &args, "--routers 2 --reply none");
    assert!(
        status.is_some_and(|s| s.code() == Some(1)),
        "{status:?}: {stderr}"
    );
    let mut named: Vec<&str> = stdout
        .lines()
        .filter_map(|line| line.strip_prefix("==> ")?.strip_suffix(" <=="))
        .collect();
    named.sort_unstable();
    assert_eq!(named, ["127.0.0.1", "127.0.0.2"], "{stdout}");
    for (line, next) in stdout.lines().zip(stdout.lines().skip(1)) {
        if line.starts_with("==> ") {
            assert!(next.starts_with("Start: "), "{stdout}");
        }
    }
    // One host: mtr's text alone.
    let (_, stdout, stderr) = run_over_fake("trace", &args[..args.len() - 1], "--routers 2");
    assert!(stdout.starts_with("Start: "), "{stdout}{stderr}");
    assert!(!stdout.contains("==>"), "{stdout}");
}

/// `trace` ends as mtr does once its grace is over, abandoning probes still out (mtr
/// exits then): with a helper that answers each probe 3 s late, mtr 0.95 printed and
/// exited after 0.16 s here, `trace` after 3.05 s before it stopped waiting for them.
#[test]
fn trace_exits_at_the_end_of_its_grace_without_waiting_for_probes_still_out() {
    let fake = env!("CARGO_BIN_EXE_fake-mtr-packet");
    let started = std::time::Instant::now();
    let mut child = Command::new(built_example("trace"))
        .env("MTR_PACKET", format!("{fake} --delay-ms 3000"))
        .args([
            "-n",
            "-c",
            "1",
            "-i",
            "0.1",
            "-G",
            "0.05",
            "-m",
            "1",
            "127.0.0.1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let status = wait_within(&mut child, Duration::from_secs(30));
    let took = started.elapsed();
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout).unwrap();
    // Nothing answered in time: the report has no hop, and the exit status says so.
    assert!(status.is_some_and(|s| !s.success()), "{status:?}");
    assert!(stdout.starts_with("Start: "), "{stdout}");
    assert!(took < Duration::from_secs(2), "exited after {took:?}");
}
