//! Runs a command inside a simulated network.
//!
//! ```text
//! mtrsim SCENARIO.toml -- COMMAND [ARGS...]
//! mtrsim --ground-truth SCENARIO.toml
//! ```
//!
//! Creates a fresh network namespace holding only `lo` and a TUN device `sim0` with the
//! scenario's source addresses, routes the scenario's prefixes into the TUN, answers the
//! probes that arrive there as the scenario says, and runs COMMAND inside the namespace (so
//! an mtr-packet it starts probes the simulation). Removes the namespace afterwards, also
//! when COMMAND fails, on Ctrl-C, or on SIGTERM (which it passes on to COMMAND, then exits
//! with 143). Exits with COMMAND's code. Nothing can leave the namespace: it has no other
//! interface. Needs root. Format: tests/scenarios/README.md.
//!
//! `--ground-truth` prints what a trace of each target should find, one JSON line per target
//! (format in the same README): the scenario's own targets first (every responder per TTL
//! and the links between them, for multipath tracing), then its generated internet's; it
//! needs nothing.

use std::io::{Read, Write};
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mtrproto_tests::due::write_when_due;
use mtrproto_tests::netns::{Netns, ip};
use mtrproto_tests::sim::responder::Responder;
use mtrproto_tests::sim::scenario::Scenario;
use mtrproto_tests::sim::tun::{
    catch_terminate, enter_netns, ignore_interrupts, open_tun, send_terminate, terminate_requested,
};

const TUN: &str = "sim0";
/// How long a command may take to exit on SIGTERM before it is killed.
const TERM_GRACE: Duration = Duration::from_secs(2);
/// How often the command's exit and SIGTERM are checked.
const POLL: Duration = Duration::from_millis(10);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().is_some_and(|a| a == "--ground-truth") {
        return match args.get(1..) {
            Some([path]) => ground_truth(path),
            _ => {
                eprintln!("usage: mtrsim --ground-truth SCENARIO.toml");
                ExitCode::from(2)
            }
        };
    }
    let Some(split) = args.iter().position(|a| a == "--") else {
        eprintln!("usage: mtrsim SCENARIO.toml -- COMMAND [ARGS...]");
        return ExitCode::from(2);
    };
    let (Some(path), Some(program)) = (args.first().filter(|_| split == 1), args.get(split + 1))
    else {
        eprintln!("usage: mtrsim SCENARIO.toml -- COMMAND [ARGS...]");
        return ExitCode::from(2);
    };
    let scenario = match load(path) {
        Ok(scenario) => scenario,
        Err(code) => return code,
    };
    match run(scenario, program, &args[split + 2..]) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("mtrsim: {e}");
            ExitCode::from(125)
        }
    }
}

fn run(
    scenario: Scenario,
    program: &str,
    args: &[String],
) -> Result<u8, Box<dyn std::error::Error>> {
    // Before the namespace exists, so that a SIGTERM from now on leads to its removal.
    catch_terminate();
    let netns = Netns::new("sim")?;
    // From here on this thread, the threads it starts and the commands it runs are inside.
    enter_netns(netns.name())?;
    let tun = Arc::new(open_tun(TUN)?);
    // A deep queue: mtr-packet sends a whole window of probes at once.
    ip(&["link", "set", TUN, "up", "txqueuelen", "10000"])?;
    ip(&[
        "addr",
        "add",
        &format!("{}/32", scenario.source4),
        "dev",
        TUN,
    ])?;
    // Waits for its local route: answers that arrive before it are dropped.
    netns.add_ipv6(&format!("{}/128", scenario.source6), TUN)?;
    for route in &scenario.routes {
        let family = if route.contains(':') { "-6" } else { "-4" };
        ip(&[family, "route", "add", route, "dev", TUN])?;
    }

    let (to_writer, scheduled) = crossbeam_channel::unbounded();
    let reader_tun = Arc::clone(&tun);
    let mut responder = Responder::new(scenario);
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        while let Ok(n) = (&*reader_tun).read(&mut buf) {
            let Some((due, packet)) = responder.answer(&buf[..n], Instant::now()) else {
                continue;
            };
            // Due now: answer from here, sparing the writer thread a wake-up.
            if due <= Instant::now() {
                let _ = (&*reader_tun).write(&packet);
            } else if to_writer.send((due, packet)).is_err() {
                return;
            }
        }
    });
    // A failed write loses that answer, as a lossy link would; the writer goes on.
    std::thread::spawn(move || {
        write_when_due(&scheduled, |packet| {
            let _ = (&*tun).write(packet);
            Ok(())
        })
    });

    if terminate_requested() {
        return Ok(128 + 15);
    }
    let mut child = Command::new(program).args(args).spawn()?;
    ignore_interrupts();
    let code = loop {
        if let Some(status) = child.try_wait()? {
            break status.code().map_or(128 + 2, |c| c as u8);
        }
        if terminate_requested() {
            // Pass it on, give the command a moment to exit, then kill it.
            let _ = send_terminate(child.id());
            let deadline = Instant::now() + TERM_GRACE;
            while child.try_wait()?.is_none() && Instant::now() < deadline {
                std::thread::sleep(POLL);
            }
            let _ = child.kill();
            let _ = child.wait();
            break 128 + 15;
        }
        std::thread::sleep(POLL);
    };
    drop(netns);
    Ok(code)
}

/// Prints the ground truth of every target of the scenario and of its generated internet.
fn ground_truth(path: &str) -> ExitCode {
    let scenario = match load(path) {
        Ok(scenario) => scenario,
        Err(code) => return code,
    };
    if scenario.targets.is_empty() && scenario.internet.is_none() {
        eprintln!("mtrsim: {path}: no targets");
        return ExitCode::from(2);
    }
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    // The scenario's own targets first: their paths as a graph, for multipath tracing.
    let paths = scenario.path_truths().into_iter().map(|t| t.to_json());
    let internet = scenario.internet.iter().flat_map(|internet| {
        let (v4, v6): (Vec<_>, Vec<_>) = (0..internet.targets())
            .flat_map(|i| internet.target_addresses(i))
            .partition(|a| a.is_ipv4());
        v4.into_iter()
            .chain(v6)
            .filter_map(|address| internet.ground_truth(address))
    });
    for line in paths.chain(internet) {
        // A closed pipe (`| head`) ends the listing quietly.
        if writeln!(out, "{line}").is_err() {
            return ExitCode::SUCCESS;
        }
    }
    let _ = out.flush();
    ExitCode::SUCCESS
}

/// Reads and parses the scenario at `path`, or says why not and gives exit status 2.
fn load(path: &str) -> Result<Scenario, ExitCode> {
    std::fs::read_to_string(path)
        .map_err(|e| e.to_string())
        .and_then(|t| Scenario::parse(&t))
        .map_err(|e| {
            eprintln!("mtrsim: {path}: {e}");
            ExitCode::from(2)
        })
}
