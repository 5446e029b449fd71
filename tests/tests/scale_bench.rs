//! `scale-bench` inside mtrsim on the generated internet: a small campaign reports every
//! target, none refused for a full table, and every report matches the ground truth on
//! paths without loss, and the driver thread's and the judging's CPU are read. The figures themselves are the
//! benchmark's, not asserted here.

use std::collections::HashMap;
use std::process::Command;

fn scenario() -> String {
    format!("{}/scenarios/internet.toml", env!("CARGO_MANIFEST_DIR"))
}

/// The last line's `key=value` pairs.
fn last_line(text: &str) -> HashMap<String, String> {
    let line = text.lines().last().unwrap_or_default();
    line.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

#[test]
#[ignore = "needs root: network namespaces and a TUN device (mtrsim), and mtr-packet"]
fn a_small_campaign_matches_the_ground_truth() {
    mtrproto_tests::require_netns();
    mtrproto_tests::require_mtr_packet();
    let output = Command::new(env!("CARGO_BIN_EXE_mtrsim"))
        .arg(scenario())
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_scale-bench"))
        .args([
            "--scenario",
            &scenario(),
            "--targets",
            "150",
            "--cycles",
            "2",
        ])
        .args(["--interval", "0.5", "--helpers", "2"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let figures = last_line(&stdout);
    let get = |key: &str| {
        figures
            .get(key)
            .unwrap_or_else(|| panic!("{key} in {stdout}"))
    };
    assert_eq!(get("targets"), "150");
    assert_eq!(get("failed"), "0");
    assert_eq!(get("exhausted"), "0");
    assert_eq!(get("hops_correct_clean"), "1.0000", "{stdout}");
    let correct: f64 = get("hops_correct").parse().unwrap();
    assert!(correct >= 0.95, "{stdout}");
    assert!(get("probes").parse::<u64>().unwrap() >= 150 * 2);
    // The driver thread was found by its name, and its CPU is part of the process's, as is
    // the judging's; the library's is the rest (each printed to the millisecond).
    let process: f64 = get("driver_cpu_s").parse().unwrap();
    let thread: f64 = get("driver_thread_cpu_s").parse().unwrap();
    let judge: f64 = get("judge_cpu_s").parse().unwrap();
    let library: f64 = get("library_cpu_s").parse().unwrap();
    assert!(thread > 0.0 && thread <= process + 0.001, "{stdout}");
    assert!(judge > 0.0 && judge + thread <= process + 0.002, "{stdout}");
    assert!((library - (process - judge)).abs() <= 0.002, "{stdout}");
}

#[test]
fn refuses_to_run_outside_the_simulator() {
    let output = Command::new(env!("CARGO_BIN_EXE_scale-bench"))
        .args(["--scenario", &scenario(), "--targets", "1"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("inside mtrsim"), "{stderr}");
}
