//! Reverse-DNS names in the `trace` example's reports are mtr's: Debian's `mtr --report`
//! and `trace`, both without `-n`, print the same text (plain, `-b`, and wide with `-b`) and
//! the same JSON `host` values over seeded scripts of the scripted helper.
//!
//! No network is used: every run happens under `unshare -m -n`, in a private network
//! namespace (loopback only) and a private mount namespace where a hosts file written here
//! is bind-mounted over `/etc/hosts` and `hosts: files` over `/etc/nsswitch.conf`. So every
//! name comes from that file through the system resolver, and no DNS query is sent. Half of
//! the routers have a name, so both a name and the address fallback show.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use mtrproto_tests::script::SEED_ENV;
use serde_json::Value;

/// Seeds run: even ones trace 127.0.0.1, odd ones ::1 (as in the differential test).
const SEEDS: u64 = 8;
/// The options both programs get: 3 rounds, 0.2 s apart, 50 ms of grace, 10 hops at most.
const OPTIONS: [&str; 8] = ["-c", "3", "-i", "0.2", "-G", "0.05", "-m", "10"];
/// Runs the command after its first two arguments in the private namespaces, with the first
/// as /etc/hosts and the second as /etc/nsswitch.conf.
const ISOLATE: &str = "ip link set lo up && mount --bind \"$1\" /etc/hosts && \
                       mount --bind \"$2\" /etc/nsswitch.conf && shift 2 && exec \"$@\"";

/// The trace example, built from the current source.
fn trace_example() -> PathBuf {
    mtrproto_tests::built_example("trace")
}

fn target(seed: u64) -> &'static str {
    if seed.is_multiple_of(2) {
        "127.0.0.1"
    } else {
        "::1"
    }
}

/// The scripted helper's routers (`192.0.2.{ttl * 10 + path + 1}`, `2001:db8:{ttl}::{path +
/// 1}`): those on even paths get a name, the others none; the targets are named too.
fn hosts_file() -> String {
    let mut hosts = String::from("127.0.0.1 localhost\n::1 loop6.test ip6-localhost\n");
    for ttl in 1..=10usize {
        for path in (0..4usize).step_by(2) {
            hosts += &format!("192.0.2.{} r{ttl}-{path}.v4.test\n", ttl * 10 + path + 1);
            hosts += &format!("2001:db8:{ttl:x}::{:x} r{ttl}-{path}.v6.test\n", path + 1);
        }
    }
    hosts
}

fn run(dir: &Path, program: &Path, seed: u64, extra: &[&str]) -> Output {
    Command::new("unshare")
        .args(["-m", "-n", "--", "sh", "-c", ISOLATE, "sh"])
        .arg(dir.join("hosts"))
        .arg(dir.join("nsswitch.conf"))
        .arg(program)
        .env("MTR_PACKET", env!("CARGO_BIN_EXE_scripted-mtr-packet"))
        .env(SEED_ENV, seed.to_string())
        .args(OPTIONS)
        .args(extra)
        .arg(target(seed))
        .output()
        .expect("start unshare")
}

/// The text without its `Start:` line.
fn text(output: &Output) -> String {
    let text = String::from_utf8_lossy(&output.stdout);
    let (_, rest) = text.split_once('\n').unwrap_or((&text, ""));
    rest.to_owned()
}

fn hosts_of(output: &Output) -> Result<Vec<Value>, String> {
    let json: Value = serde_json::from_slice(&output.stdout).map_err(|e| {
        format!(
            "{e}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })?;
    let hubs = json["report"]["hubs"].as_array().ok_or("no hubs")?;
    Ok(hubs.iter().map(|hub| hub["host"].clone()).collect())
}

/// Runs both programs in every form for one seed; `Err` describes a difference. Returns
/// the plain text, to check that names and addresses both showed.
fn compare(dir: &Path, mtr: &Path, trace: &Path, seed: u64) -> Result<String, String> {
    let forms: [(&[&str], &[&str]); 4] = [
        (&["--report"], &[]),
        (&["--report", "-b"], &["-b"]),
        (&["--report-wide", "-b"], &["--wide", "-b"]),
        (&["--report", "--json"], &["--json"]),
    ];
    // All eight runs at once (each mostly sleeps between its probes).
    let outputs: Vec<(Output, Output)> = std::thread::scope(|scope| {
        let runs: Vec<_> = forms
            .iter()
            .map(|(theirs, ours)| {
                (
                    scope.spawn(move || run(dir, mtr, seed, theirs)),
                    scope.spawn(move || run(dir, trace, seed, ours)),
                )
            })
            .collect();
        runs.into_iter()
            .map(|(theirs, ours)| (theirs.join().unwrap(), ours.join().unwrap()))
            .collect()
    });
    let mut plain = String::new();
    for (theirs, ours) in &outputs[..3] {
        let ours_text: String = text(ours)
            .split_inclusive('\n')
            .filter(|line| !line.starts_with("    |"))
            .collect();
        if text(theirs) != ours_text {
            return Err(format!(
                "text differs\n--- mtr\n{}--- trace\n{ours_text}{}",
                text(theirs),
                String::from_utf8_lossy(&ours.stderr)
            ));
        }
        if plain.is_empty() {
            plain = ours_text;
        }
    }
    let (theirs, ours) = (hosts_of(&outputs[3].0)?, hosts_of(&outputs[3].1)?);
    if theirs != ours {
        return Err(format!(
            "JSON hosts differ\nmtr:   {theirs:?}\ntrace: {ours:?}"
        ));
    }
    Ok(plain)
}

#[test]
#[ignore = "needs root: mount and network namespaces (unshare -m -n), and mtr's sub-second intervals"]
fn trace_names_responders_as_mtr_does() {
    mtrproto_tests::require_root();
    let mtr = &mtrproto_tests::require_mtr();
    let trace = trace_example();

    let dir = std::env::temp_dir().join(format!("mtrproto-names-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("hosts"), hosts_file()).unwrap();
    std::fs::write(dir.join("nsswitch.conf"), "hosts: files\n").unwrap();

    let mut failures = Vec::new();
    let mut shown = String::new();
    for seed in 0..SEEDS {
        // Once more before it counts: one stall of a loaded machine can change a report.
        match compare(&dir, mtr, &trace, seed).or_else(|_| compare(&dir, mtr, &trace, seed)) {
            Ok(text) => shown += &text,
            Err(difference) => failures.push(format!("seed {seed}: {difference}")),
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    // Names from the file and the address fallback both showed, for both families.
    for expected in [
        ".v4.test",
        ".v6.test",
        "loop6.test",
        "localhost",
        "192.0.2.",
        "2001:db8:",
    ] {
        assert!(shown.contains(expected), "no {expected} in\n{shown}");
    }
}
