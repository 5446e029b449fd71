//! Our `trace` example against Debian's `mtr` (0.95), both driving the scripted helper
//! (`scripted-mtr-packet`) through `$MTR_PACKET` over seeded path scripts: loss, silent
//! hops, ECMP with MPLS, round-trip times from 0 to 5 s, transient and lasting
//! unreachables, IPv4 and IPv6. `mtr --report -n` and `trace -n` must print the same text byte
//! for byte (the `Start:` line's time aside); `mtr --report --json -n` and `trace --json`
//! the same values; `mtr --report-wide -n` and `trace --wide` the same text once the lines
//! `trace` adds (starting with `    |`) are left out. No packet is sent: the targets are 127.0.0.1 and ::1, and the helper
//! only writes answers.
//!
//! mtr sends one probe every `interval / hops` and records whatever answered in between;
//! the helper answers at once, so both send the same probes as long as an answer takes less
//! than that gap (20 ms and more here). A seed whose outputs differ is run once more before
//! it counts as a failure, so that one stall of a loaded machine does not fail the test.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use mtrproto_tests::script::{HopPlan, SEED_ENV, Script};
use serde_json::Value;

const SEEDS: u64 = 60;
/// Seeds run at once (six processes each, mostly asleep).
const PARALLEL: usize = 3;
/// The options both programs get: 3 rounds, 0.2 s apart, 50 ms of grace, 10 hops at most.
const OPTIONS: [&str; 8] = ["-c", "3", "-i", "0.2", "-G", "0.05", "-m", "10"];

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

fn run(program: &Path, seed: u64, extra: &[&str]) -> std::thread::JoinHandle<Output> {
    let mut command = Command::new(program);
    command
        .env("MTR_PACKET", env!("CARGO_BIN_EXE_scripted-mtr-packet"))
        .env(SEED_ENV, seed.to_string())
        .args(OPTIONS)
        .args(extra)
        .arg(target(seed));
    std::thread::spawn(move || command.output().expect("start"))
}

/// The text without its `Start:` line, after checking that line's form
/// (`Start: 2026-11-27T21:40:53+0000`).
fn without_start(output: &Output) -> Result<String, String> {
    let text = String::from_utf8_lossy(&output.stdout);
    let (start, rest) = text.split_once('\n').unwrap_or((&text, ""));
    let time = start.strip_prefix("Start: ").ok_or("no Start: line")?;
    let shape: String = time
        .chars()
        .map(|c| if c.is_ascii_digit() { '9' } else { c })
        .collect();
    if shape != "9999-99-99T99:99:99+9999" && shape != "9999-99-99T99:99:99-9999" {
        return Err(format!("Start line not ISO 8601: {start}"));
    }
    Ok(rest.to_owned())
}

fn json(output: &Output) -> Result<Value, String> {
    serde_json::from_slice(&output.stdout).map_err(|e| {
        format!(
            "{e}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

/// Runs both programs in both forms for one seed, each with `options` too; `Err` describes
/// a difference.
fn compare(mtr: &Path, trace: &Path, seed: u64, options: &[&str]) -> Result<(), String> {
    let with = |form: &[&'static str]| [form, options].concat();
    let runs = [
        run(mtr, seed, &with(&["--report", "-n"])),
        run(trace, seed, &with(&["-n"])),
        run(mtr, seed, &with(&["--report", "--json", "-n"])),
        run(trace, seed, &with(&["-n", "--json"])),
        run(mtr, seed, &with(&["--report-wide", "-n"])),
        run(trace, seed, &with(&["-n", "--wide"])),
    ];
    let [mtr_text, our_text, mtr_json, our_json, mtr_wide, our_wide] =
        runs.map(|r| r.join().unwrap());
    let (theirs, ours) = (without_start(&mtr_text)?, without_start(&our_text)?);
    if theirs != ours {
        return Err(format!(
            "text differs\n--- mtr\n{theirs}--- trace\n{ours}{}",
            String::from_utf8_lossy(&our_text.stderr)
        ));
    }
    let (theirs, ours) = (json(&mtr_json)?, json(&our_json)?);
    if theirs != ours {
        return Err(format!(
            "JSON differs\n--- mtr\n{theirs:#}\n--- trace\n{ours:#}"
        ));
    }
    let theirs = without_start(&mtr_wide)?;
    let ours: String = without_start(&our_wide)?
        .split_inclusive('\n')
        .filter(|line| !line.starts_with("    |"))
        .collect();
    if theirs != ours {
        return Err(format!(
            "wide text differs\n--- mtr\n{theirs}--- trace\n{ours}"
        ));
    }
    Ok(())
}

#[test]
#[ignore = "needs root: Debian's mtr allows intervals under 1 s to root only"]
fn trace_prints_what_mtr_prints_over_seeded_scripts() {
    mtrproto_tests::require_root();
    let mtr = mtrproto_tests::require_mtr();
    let trace = trace_example();

    // The seeds cover every case the test is about.
    let scripts: Vec<Script> = (0..SEEDS).map(Script::from_seed).collect();
    let any = |f: &dyn Fn(&HopPlan) -> bool| scripts.iter().any(|s| s.hops.iter().any(f));
    assert!(any(&|h| *h == HopPlan::Silent));
    assert!(any(&|h| *h == HopPlan::Unreachable));
    assert!(any(&|h| matches!(
        h,
        HopPlan::Routers {
            paths: 2..,
            mpls: true,
            ..
        }
    )));
    assert!(any(&|h| matches!(h, HopPlan::Routers { loss: 1.., .. })));
    assert!(any(&|h| matches!(
        h,
        HopPlan::Routers {
            transient_unreachable: Some(0),
            ..
        }
    )));
    assert!(scripts.iter().any(|s| s.target_loss > 0));

    compare_seeds(&mtr, &trace, &scripts, 0..SEEDS, &[]);
}

/// With `-f 3`, mtr's report starts at TTL 3: no line for the TTLs it never probed (`trace`
/// printed them as `???` with nothing sent).
#[test]
#[ignore = "needs root: Debian's mtr allows intervals under 1 s to root only"]
fn trace_prints_what_mtr_prints_from_a_first_ttl() {
    mtrproto_tests::require_root();
    let mtr = mtrproto_tests::require_mtr();
    let trace = trace_example();
    let scripts: Vec<Script> = (0..SEEDS).map(Script::from_seed).collect();
    compare_seeds(&mtr, &trace, &scripts, 0..12, &["-f", "3"]);
}

/// Compares both programs over `seeds`, each with `options`, a few at once; a seed whose
/// outputs differ runs once more before it counts as a failure.
fn compare_seeds(
    mtr: &Path,
    trace: &Path,
    scripts: &[Script],
    seeds: std::ops::Range<u64>,
    options: &[&str],
) {
    let count = seeds.end - seeds.start;
    let seeds: Vec<u64> = seeds.collect();
    let mut failures = Vec::new();
    let mut retried = 0;
    for chunk in seeds.chunks(PARALLEL) {
        let results: Vec<(u64, Result<(), String>)> = std::thread::scope(|scope| {
            let handles: Vec<_> = chunk
                .iter()
                .map(|&seed| scope.spawn(move || (seed, compare(mtr, trace, seed, options))))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (seed, result) in results {
            if result.is_err() {
                retried += 1;
                if let Err(difference) = compare(mtr, trace, seed, options) {
                    failures.push(format!(
                        "seed {seed} ({}): {:?}\n{difference}",
                        target(seed),
                        scripts[seed as usize]
                    ));
                }
            }
        }
    }
    println!("{count} seeds with {options:?}, {retried} run twice");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
