//! Traces the path to a host like `mtr --report`: every cycle probes all TTLs at once and
//! the per-hop statistics are printed at the end, as text or as mtr's JSON.
//!
//! ```text
//! cargo run -p mtrproto-blocking --example trace -- [-c CYCLES] [-i INTERVAL_S] [-m MAX_HOPS]
//!     [-w TIMEOUT_S] [-p icmp|udp|tcp] [--port N] [-4|-6] [--json] [--wide] HOST
//! ```
//!
//! `--wide` lists every responder of a hop and the MPLS labels they returned; with `--json`
//! it adds them to each hub. When stdout is a terminal the table is redrawn after every
//! cycle. Only trace hosts you are allowed to probe (try `localhost`).

mod common;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use mtrproto::{ReportMeta, TraceStats, text_report};
use mtrproto_blocking::{Error, ProbeOptions, Session};

const USAGE: &str = "trace [-c CYCLES] [-i INTERVAL_S] [-m MAX_HOPS] [-w TIMEOUT_S] [-p icmp|udp|tcp] [--port N] \
                     [-4|-6] [--json] [--wide] HOST";

fn main() -> ExitCode {
    let args = common::parse(USAGE, &["--json", "--wide"]);
    match run(&args) {
        Ok(reached) if reached => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the cycles and prints the report; `Ok(false)` if the target never answered.
fn run(args: &common::Args) -> Result<bool, Error> {
    let json = args.flags.iter().any(|f| f == "--json");
    let wide = args.flags.iter().any(|f| f == "--wide");
    let cycles = args.count.unwrap_or(10).max(1);
    let interval = args.interval.unwrap_or(Duration::from_secs(1));
    let session = Session::open()?;
    let target = session.resolve(&args.host, args.options.ip_version)?;
    let mut stats = TraceStats::new(target, args.max_hops.unwrap_or(30).max(1));
    let mut max_ttl = args.max_hops.unwrap_or(30).max(1);
    let live = std::io::stdout().is_terminal() && !json;
    let src = hostname();

    for cycle in 1..=cycles {
        let started = Instant::now();
        let (done, results) = crossbeam_channel::unbounded();
        for ttl in 1..=max_ttl {
            let options = ProbeOptions {
                ttl: Some(ttl),
                timeout: Some(args.options.timeout.unwrap_or(Duration::from_secs(2))),
                ..args.options.clone()
            };
            let done = done.clone();
            stats.sent(ttl);
            session.probe_with(&target.to_string(), &options, move |r| {
                let _ = done.send((ttl, r));
            })?;
        }
        drop(done);
        for (ttl, result) in results {
            // A helper failure ends the trace; anything mtr-packet answered is a result.
            let result = result?;
            stats.record(ttl, &result);
        }
        if cycle == cycles {
            // As mtr does before its report: nothing is in flight any more.
            stats.end_transit();
        }
        // Hops past the target are not probed again.
        if let Some(destination) = stats.destination_ttl() {
            max_ttl = destination;
        }
        if live {
            print!("\x1b[H\x1b[2J{}", text_report(&stats, &src, wide));
            println!("cycle {cycle}/{cycles}");
        }
        if cycle < cycles {
            std::thread::sleep(interval.saturating_sub(started.elapsed()));
        }
    }

    if json {
        let meta = ReportMeta {
            src,
            dst: args.host.clone(),
            tos: args.options.tos.unwrap_or(0),
            tests: cycles,
            psize: args.options.size.unwrap_or(64).to_string(),
            bitpattern: format!("0x{:02X}", args.options.bit_pattern.unwrap_or(0)),
        };
        let report = mtrproto::JsonReport::new(&stats, meta, wide);
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else if !live {
        print!("{}", text_report(&stats, &src, wide));
    }
    Ok(stats.destination_ttl().is_some())
}

/// The kernel's host name, as mtr's report header shows it.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".to_owned())
}
