//! Traces the path to a host like `mtr --report`: the same probes in the same order, and
//! the same report, as text or as mtr's JSON.
//!
//! ```text
//! cargo run -p mtrproto-blocking --example trace -- [-c CYCLES] [-i INTERVAL_S] [-G GRACE_S]
//!     [-m MAX_HOPS] [-w TIMEOUT_S] [-p icmp|udp|tcp|sctp] [--port N] [-4|-6] [-n|-b]
//!     [--json] [--wide] HOST
//! ```
//!
//! Responders show their reverse-DNS names, as mtr shows them: `-n` shows addresses only,
//! `-b` both (`name (address)`). Names come from the system resolver through a
//! [`NameResolver`](mtrproto_blocking::NameResolver), asked as soon as a responder answers;
//! a name not known when the report is printed shows as the address.
//!
//! As mtr does, it sends one probe at a time, TTL 1, 2, ... up to the target, every
//! `INTERVAL / hops` (see [`mtrproto::Rounds`]), runs `CYCLES` such rounds (default 10, one
//! per second), then waits up to `GRACE` (default 5 s, as mtr's `--gracetime`) for answers
//! still due, and prints the report. `--wide` lists every responder of a hop with the MPLS
//! labels it returned; with `--json` it adds them to each hub and keeps every microsecond.
//! When stdout is a terminal the table is redrawn after every round. `--help` lists every
//! option. Only trace hosts you are allowed to probe (try `localhost`).

mod common;

use std::io::IsTerminal;
use std::net::IpAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use crossbeam_channel::{Receiver, RecvTimeoutError};
use mtrproto::{ProbeResult, ReportMeta, Rounds, TraceStats, host_label, text_report_named};
use mtrproto_blocking::{Error, NameResolver, ProbeOptions, Session};

/// Traces the path to a host like `mtr --report`: mtr's probes, in mtr's order, and its
/// report. Only trace hosts you are allowed to probe.
#[derive(Debug, Parser)]
#[command(name = "trace", allow_negative_numbers = true)]
struct Cli {
    /// Rounds of probes (one probe per hop each).
    #[arg(short = 'c', long = "report-cycles", value_name = "CYCLES", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..))]
    cycles: u32,
    /// Seconds per round.
    #[arg(short = 'i', long, value_name = "SECONDS", default_value = "1",
          value_parser = common::seconds)]
    interval: Duration,
    /// Seconds to wait for answers after the last round (mtr's --gracetime).
    #[arg(short = 'G', long = "gracetime", value_name = "SECONDS", default_value = "5",
          value_parser = common::seconds)]
    grace: Duration,
    /// Highest TTL probed.
    #[arg(short = 'm', long = "max-ttl", value_name = "HOPS", default_value_t = 30,
          value_parser = clap::value_parser!(u8).range(1..))]
    max_hops: u8,
    /// Show addresses only, no reverse-DNS names.
    #[arg(short = 'n', long = "no-dns")]
    no_dns: bool,
    /// Show both the name and the address of each responder.
    #[arg(short = 'b', long = "show-ips")]
    show_ips: bool,
    /// Print mtr's JSON report instead of the text.
    #[arg(long)]
    json: bool,
    /// Every responder of a hop with its MPLS labels; the host column fits the longest name.
    #[arg(long)]
    wide: bool,
    #[command(flatten)]
    probe: common::ProbeFlags,
    /// Host name or address to trace (try localhost).
    host: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(reached) if reached => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

type Answer = (u8, Result<ProbeResult, Error>);

/// Runs the rounds and prints the report; `Ok(false)` if the target never answered.
fn run(cli: &Cli) -> Result<bool, Error> {
    let (json, wide, cycles) = (cli.json, cli.wide, cli.cycles);
    let (interval, grace) = (cli.interval, cli.grace);
    let options = cli.probe.options();
    // Probes still out when the report is printed are abandoned, as mtr abandons them.
    let session = Session::builder().close_grace(Duration::ZERO).open()?;
    let target = session.resolve(&cli.host, options.ip_version)?;
    let mut stats = TraceStats::new(target, cli.max_hops);
    let live = std::io::stdout().is_terminal() && !json;
    let src = hostname();
    let start = format!("Start: {}\n", start_time());
    let names = Names {
        resolver: (!cli.no_dns).then(NameResolver::new),
        show_ips: cli.show_ips,
    };
    let host = |address| names.label(address);

    let (done, answers) = crossbeam_channel::unbounded::<Answer>();
    let mut rounds = Rounds::new(&stats);
    let mut completed = 0;
    let mut in_flight = 0;
    let mut tick = Instant::now() + rounds.gap(interval);
    // mtr's select loop: answers are recorded as they come; at every tick one probe goes out.
    while completed < cycles {
        in_flight -= record_until(&answers, &mut stats, &names, tick, in_flight, true)?;
        let ttl = rounds.next_ttl();
        stats.sent(ttl);
        probe(&session, target, ttl, &options, &done)?;
        in_flight += 1;
        if rounds.advance(&stats) {
            completed += 1;
            if live {
                print!(
                    "\x1b[H\x1b[2J{start}{}",
                    text_report_named(&stats, &src, wide, &host)
                );
                println!("round {completed}/{cycles}");
            }
        }
        tick = Instant::now() + rounds.gap(interval);
    }
    // The next tick starts the grace period, which ends early once nothing is in flight.
    in_flight -= record_until(&answers, &mut stats, &names, tick, in_flight, true)?;
    record_until(
        &answers,
        &mut stats,
        &names,
        Instant::now() + grace,
        in_flight,
        false,
    )?;
    stats.end_transit();

    if json {
        let meta = ReportMeta {
            src,
            dst: cli.host.clone(),
            tos: options.tos.unwrap_or(0),
            tests: cycles,
            psize: options.size.unwrap_or(64).to_string(),
            bitpattern: format!("0x{:02X}", options.bit_pattern.unwrap_or(0)),
        };
        let report = mtrproto::JsonReport::named(&stats, meta, wide, &host);
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        if live {
            print!("\x1b[H\x1b[2J");
        }
        print!("{start}{}", text_report_named(&stats, &src, wide, &host));
    }
    Ok(stats.destination_ttl().is_some())
}

/// Sends one probe at `ttl`; its answer goes to `done`.
fn probe(
    session: &Session,
    target: IpAddr,
    ttl: u8,
    options: &ProbeOptions,
    done: &crossbeam_channel::Sender<Answer>,
) -> Result<(), Error> {
    let options = ProbeOptions {
        ttl: Some(ttl),
        timeout: Some(options.timeout.unwrap_or(Duration::from_secs(10))),
        ..options.clone()
    };
    let done = done.clone();
    session.probe_with(&target.to_string(), &options, move |r| {
        let _ = done.send((ttl, r));
    })
}

/// Responder names as mtr shows them: none with `-n`; else the name when the resolver has
/// one, with `-b` followed by the address.
struct Names {
    resolver: Option<NameResolver>,
    show_ips: bool,
}

impl Names {
    /// Starts looking up `address`, so that its name is there by the next report.
    fn start(&self, address: IpAddr) {
        if let Some(resolver) = &self.resolver {
            resolver.lookup(address);
        }
    }

    /// The report's text for `address`; never waits for the resolver.
    fn label(&self, address: IpAddr) -> String {
        let lookup = self.resolver.as_ref().map(|r| r.lookup(address));
        let name = lookup.as_ref().and_then(|l| l.name());
        host_label(address, name, self.show_ips)
    }
}

/// Records answers until `deadline` (until none of the `in_flight` probes is left, unless
/// `whole`); returns how many came. A helper failure ends the trace.
fn record_until(
    answers: &Receiver<Answer>,
    stats: &mut TraceStats,
    names: &Names,
    deadline: Instant,
    in_flight: usize,
    whole: bool,
) -> Result<usize, Error> {
    let mut count = 0;
    while count < in_flight {
        let timeout = deadline.saturating_duration_since(Instant::now());
        match answers.recv_timeout(timeout) {
            Ok((ttl, result)) => {
                count += 1;
                let result = result?;
                if let Some(responder) = result.responder {
                    names.start(responder);
                }
                stats.record(ttl, &result);
            }
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
        }
    }
    if whole {
        std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
    }
    Ok(count)
}

/// The local time as mtr's `Start:` line shows it (ISO 8601, `iso_time` in mtr's utils.c).
fn start_time() -> String {
    chrono::Local::now()
        .format("%Y-%m-%dT%H:%M:%S%z")
        .to_string()
}

/// The kernel's host name, as mtr's report header shows it.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".to_owned())
}
