//! Traces the path to a host like `mtr --report`: the same probes in the same order, and
//! the same report, as text or as mtr's JSON.
//!
//! ```text
//! cargo run -p mtrproto-blocking --example trace -- [-c CYCLES] [-i INTERVAL_S] [-G GRACE_S]
//!     [-m MAX_HOPS] [-w TIMEOUT_S] [-p icmp|udp|tcp|sctp] [--port N] [-4|-6] [-n|-b]
//!     [-f FIRST_TTL] [-U MAX_UNKNOWN] [--flows N] [--json] [--wide] HOST...
//! ```
//!
//! Responders show their reverse-DNS names, as mtr shows them: `-n` shows addresses only,
//! `-b` both (`name (address)`). Names come from the system resolver through a
//! [`NameResolver`](mtrproto_blocking::NameResolver), asked as soon as a responder answers;
//! a name not known when the report is printed shows as the address.
//!
//! As mtr does, it sends one probe at a time, TTL 1, 2, ... up to the target, every
//! `INTERVAL / hops` (see [`mtrproto::Tracer`]), runs `CYCLES` such rounds (default 10, one
//! per second), then waits up to `GRACE` (default 5 s, as mtr's `--gracetime`) for answers
//! still due, and prints the report. Several hosts are traced at once, through one session
//! ([`Session::campaign`](mtrproto_blocking::Session::campaign)); each report is printed as
//! soon as its trace ends, after a line `==> HOST <==` naming it (the JSON has it as
//! `dst`). `--wide` lists every responder of a hop with the MPLS labels it returned; with
//! `--json` it adds them to each hub and keeps every microsecond.
//! When stdout is a terminal and one host is traced, the table is redrawn after every
//! round. `--flows N` (with `-p udp`) sends round `r` in fixed flow `r % N` (both UDP
//! ports fixed, so each flow keeps one path through load balancers) and follows the text
//! report with each flow's path: per TTL the responders that flow saw (`???` for none;
//! the flows probed, so at most `-c` of them).
//! With `--json`, each flow's hops go in a `"flows"` array next to the report's `"hubs"`:
//! `{"flow": i, "hubs": [...]}`, its hubs in the report's form (`--wide` too); without
//! `--flows` the document is mtr's. `--help` lists every
//! option. Only trace hosts you are allowed to probe (try `localhost`).

#[macro_use]
mod common;

use std::io::IsTerminal;
use std::net::IpAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use mtrproto::{ReportMeta, TraceStats, host_label, text_report_named};
use mtrproto_blocking::{
    CampaignEvent, CampaignLimits, Error, NameResolver, Session, TraceConfig, TraceOptions,
};

/// Traces the path to a host like `mtr --report`: mtr's probes, in mtr's order, and its
/// report. Only trace hosts you are allowed to probe.
#[derive(Debug, Parser)]
#[command(name = "trace")]
struct Cli {
    /// Rounds of probes (one probe per hop each).
    #[arg(short = 'c', allow_negative_numbers = true, long = "report-cycles", value_name = "CYCLES", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..))]
    cycles: u32,
    /// Seconds per round.
    #[arg(short = 'i', allow_negative_numbers = true, long, value_name = "SECONDS", default_value = "1",
          value_parser = common::seconds)]
    interval: Duration,
    /// Seconds to wait for answers after the last round (mtr's --gracetime).
    #[arg(short = 'G', allow_negative_numbers = true, long = "gracetime", value_name = "SECONDS", default_value = "5",
          value_parser = common::seconds)]
    grace: Duration,
    /// Highest TTL probed.
    #[arg(short = 'm', allow_negative_numbers = true, long = "max-ttl", value_name = "HOPS", default_value_t = 30,
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
    /// TTL each round starts at.
    #[arg(short = 'f', allow_negative_numbers = true, long = "first-ttl", value_name = "TTL", default_value_t = 1,
          value_parser = clap::value_parser!(u8).range(1..))]
    first_ttl: u8,
    /// A round ends once more than this many hops before the next are silent.
    #[arg(short = 'U', allow_negative_numbers = true, long = "max-unknown", value_name = "HOPS", default_value_t = 12,
          value_parser = clap::value_parser!(u8).range(1..))]
    max_unknown: u8,
    /// Probe in N fixed UDP flows (needs -p udp), round r in flow r % N, and print each
    /// flow's path after the text report (with --json, each flow's hubs under "flows").
    #[arg(long, value_name = "N", default_value_t = 0,
          value_parser = clap::value_parser!(u16).range(0..=i64::from(mtrproto::Flow::MAX) + 1))]
    flows: u16,
    #[command(flatten)]
    probe: common::ProbeFlags,
    /// Host names or addresses to trace (try localhost).
    #[arg(required = true)]
    hosts: Vec<String>,
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

/// Traces every host and prints each report as its trace ends; `Ok(false)` if a target
/// never answered.
fn run(cli: &Cli) -> Result<bool, Error> {
    let options = cli.trace_options();
    // Probes still out when the report is printed are abandoned, as mtr abandons them.
    let session = Session::builder().close_grace(Duration::ZERO).open()?;
    let printer = Printer {
        cli,
        options: &options,
        names: Names {
            resolver: (!cli.no_dns).then(NameResolver::new),
            show_ips: cli.show_ips,
        },
        live: std::io::stdout().is_terminal() && !cli.json && cli.hosts.len() == 1,
        src: hostname(),
        start: format!("Start: {}\n", start_time()),
    };
    let mut reached = true;
    let mut failure = None;
    // As mtr, it ends when the last trace's grace is over: probes still out are abandoned.
    let limits = CampaignLimits {
        wait_for_probes: false,
        ..CampaignLimits::default()
    };
    session.campaign(&cli.hosts, &options, &limits, |event| match event {
        CampaignEvent::Round { round, stats, .. } => printer.round(round, stats),
        CampaignEvent::Done(report) => match report.stats {
            Ok(stats) => {
                reached &= stats.destination_ttl().is_some();
                printer.report(&report.host, &stats, &report.flows);
                printer.flows(&report.flows);
            }
            Err(error) => {
                // With one host, its error is the program's, printed once on return.
                if cli.hosts.len() > 1 {
                    eprintln!("error: {}: {error}", report.host);
                }
                failure.get_or_insert(error);
            }
        },
        // Kinds of event added later: nothing to print.
        _ => {}
    })?;
    match failure {
        // With one host, its error is the program's.
        Some(error) if cli.hosts.len() == 1 => Err(error),
        Some(_) => Ok(false),
        None => Ok(reached),
    }
}

impl Cli {
    /// mtr's trace settings from the options (a probe's timeout 10 s unless `-w` says).
    fn trace_options(&self) -> TraceOptions {
        let probe = self.probe.options();
        TraceOptions {
            trace: TraceConfig {
                cycles: self.cycles,
                first_ttl: self.first_ttl,
                max_ttl: self.max_hops,
                max_unknown: self.max_unknown,
                interval: self.interval,
                timeout: probe.timeout.unwrap_or(Duration::from_secs(10)),
                grace: self.grace,
                flows: self.flows,
            },
            probe,
        }
    }
}

/// What every report shares: the options, the names, the header, whether the table is
/// redrawn live.
struct Printer<'a> {
    cli: &'a Cli,
    options: &'a TraceOptions,
    names: Names,
    live: bool,
    src: String,
    start: String,
}

impl Printer<'_> {
    /// After each round: start the name lookups; redraw the table when live.
    fn round(&self, round: u32, stats: &TraceStats) {
        self.names.start_all(stats);
        if self.live {
            let host = |address| self.names.label(address);
            out!(
                "\x1b[H\x1b[2J{}{}",
                self.start,
                text_report_named(stats, &self.src, self.cli.wide, &host)
            );
            outln!("round {round}/{}", self.cli.cycles);
        }
    }

    /// Prints one target's report: mtr's text, or its JSON (with each flow's hubs).
    fn report(&self, dst: &str, stats: &TraceStats, flows: &[TraceStats]) {
        self.names.start_all(stats);
        if self.live {
            out!("\x1b[H\x1b[2J");
        }
        let host = |address| self.names.label(address);
        if self.cli.json {
            let probe = &self.options.probe;
            let meta = ReportMeta {
                src: self.src.clone(),
                dst: dst.to_owned(),
                tos: probe.tos.unwrap_or(0),
                tests: self.cli.cycles,
                psize: probe.size.unwrap_or(64).to_string(),
                bitpattern: format!("0x{:02X}", probe.bit_pattern.unwrap_or(0)),
            };
            let report =
                mtrproto::JsonReport::named(stats, meta, self.cli.wide, &host).flows(flows, &host);
            outln!(
                "{}",
                serde_json::to_string_pretty(&report).unwrap_or_default()
            );
        } else {
            // Reports of several hosts come as their traces end: each says whose it is (mtr's
            // text names no target, and a silent one's hops name none either).
            if self.cli.hosts.len() > 1 {
                outln!("==> {dst} <==");
            }
            let text = text_report_named(stats, &self.src, self.cli.wide, &host);
            out!("{}{text}", self.start);
        }
    }
}

impl Printer<'_> {
    /// Each flow's path after the text report, one line per flow: per TTL from the first
    /// probed (`-f`) up to the target the responders that flow saw (one, unless a router
    /// balances per packet), `???` where none answered. The JSON report holds them already.
    fn flows(&self, flows: &[TraceStats]) {
        if flows.is_empty() || self.cli.json {
            return;
        }
        outln!("Flows:");
        for (id, stats) in flows.iter().enumerate() {
            let last = stats
                .destination_ttl()
                .map_or(stats.hops().len(), usize::from);
            let hops: Vec<String> = stats.hops()[..last.min(stats.hops().len())]
                .iter()
                .skip_while(|hop| hop.sent() == 0)
                .map(|hop| {
                    let names: Vec<String> = hop
                        .responders()
                        .map(|r| self.names.label(r.address))
                        .collect();
                    if names.is_empty() {
                        "???".to_owned()
                    } else {
                        names.join("/")
                    }
                })
                .collect();
            outln!("  {id:>3}  {}", hops.join(" "));
        }
    }
}

/// Responder names as mtr shows them: none with `-n`; else the name when the resolver has
/// one, with `-b` followed by the address.
struct Names {
    resolver: Option<NameResolver>,
    show_ips: bool,
}

impl Names {
    /// Starts looking up every responder, so that names are there by the next report.
    fn start_all(&self, stats: &TraceStats) {
        if let Some(resolver) = &self.resolver {
            for hop in stats.hops() {
                for responder in hop.responders() {
                    resolver.lookup(responder.address);
                }
            }
        }
    }

    /// The report's text for `address`; never waits for the resolver.
    fn label(&self, address: IpAddr) -> String {
        let lookup = self.resolver.as_ref().map(|r| r.lookup(address));
        let name = lookup.as_ref().and_then(|l| l.name());
        host_label(address, name, self.show_ips)
    }
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
