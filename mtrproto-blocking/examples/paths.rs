//! Finds every path to a host through load balancers (MDA over fixed UDP flows), like
//! scamper's `tracelb`.
//!
//! ```text
//! cargo run -p mtrproto-blocking --example paths -- [--confidence 95|99] [--max-ttl N]
//!     [--budget N] [-w TIMEOUT_S] [--first-flow N] [--single-first-hop]
//!     [--no-per-packet-check] [--decisions N] [-4|-6] [--json] HOST
//! ```
//!
//! `--help` lists every option.
//!
//! Text: per TTL, the interfaces and how many flows reached each, `per packet` where one flow
//! was answered by several, then the links. `--json`: `{"target", "confidence", "probes",
//! "hops": [{"ttl", "responders": [addresses], "per_packet"}], "links": [[from, to], ...]}`,
//! and `"error"` when the trace failed: then the probes and hops are what it found until then
//! (mtr-packet refused a probe), or none (it could not start, the session included; `target`
//! is the host as given). A trace cut short by `--budget` or the last flow says so on
//! stderr. Exits non-zero when the session cannot open or the trace fails. Only trace hosts
//! you are allowed to probe (try `localhost`).

#[macro_use]
mod common;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use mtrproto_blocking::{
    Confidence, Flow, IpVersion, MultipathConfig, MultipathEnd, MultipathOptions, MultipathReport,
    ProbeOptions, Session,
};
use serde_json::json;

/// Finds every path to a host through load balancers (MDA over fixed UDP flows). Only trace
/// hosts you are allowed to probe.
#[derive(Debug, Parser)]
#[command(name = "paths")]
struct Cli {
    /// Confidence of the stopping rule, in percent: 95 or 99.
    #[arg(short = 'c', long, default_value = "95")]
    confidence: Confidence,
    /// Highest TTL probed.
    #[arg(short = 'm', allow_negative_numbers = true, long, default_value_t = 30,
          value_parser = clap::value_parser!(u8).range(1..))]
    max_ttl: u8,
    /// Probes to send at most.
    #[arg(long, allow_negative_numbers = true, default_value_t = 10_000,
          value_parser = clap::value_parser!(u32).range(1..))]
    budget: u32,
    /// Seconds to wait for each probe's answer (whole seconds, as mtr-packet counts them).
    #[arg(short = 'w', allow_negative_numbers = true, long = "timeout", value_name = "SECONDS",
          default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=3600))]
    timeout: u64,
    /// The first flow (UDP source port 3000 + N): other flows sample other paths.
    #[arg(long, allow_negative_numbers = true, default_value_t = 0,
          value_parser = clap::value_parser!(u16).range(..=i64::from(Flow::MAX)))]
    first_flow: u16,
    /// Take the first hop as one interface, as scamper's tracelb does (one probe there; a
    /// balancer at the first hop shows one of its interfaces).
    #[arg(long)]
    single_first_hop: bool,
    /// Do not re-probe flows to tell per-packet balancing from per-flow (saves 5 probes at
    /// 95%, 7 at 99%, per router whose flows reached two interfaces, fewer where they reached
    /// more; no hop is reported per packet).
    #[arg(long)]
    no_per_packet_check: bool,
    /// Split the confidence over N stopping decisions (1 to 100): each is held to
    /// (1 - confidence) / N, so whole traces of up to N decisions are found at the
    /// confidence (4 kept every test diamond complete in 95% of runs at 95%).
    #[arg(long, allow_negative_numbers = true, default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=100))]
    decisions: u32,
    /// Use IPv4 only.
    #[arg(short = '4', conflicts_with = "ipv6")]
    ipv4: bool,
    /// Use IPv6 only (needs mtr-packet 0.96 or later).
    #[arg(short = '6')]
    ipv6: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// Host name or address (try localhost).
    host: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let options = MultipathOptions {
        trace: MultipathConfig {
            confidence: cli.confidence,
            max_ttl: cli.max_ttl,
            max_probes: cli.budget,
            timeout: Duration::from_secs(cli.timeout),
            first_flow: cli.first_flow,
            decisions: cli.decisions,
            single_first_hop: cli.single_first_hop,
            per_packet_check: !cli.no_per_packet_check,
            ..MultipathConfig::default()
        },
        probe: ProbeOptions {
            ip_version: match (cli.ipv4, cli.ipv6) {
                (true, _) => Some(IpVersion::V4),
                (_, true) => Some(IpVersion::V6),
                _ => None,
            },
            ..ProbeOptions::default()
        },
    };
    // A session that cannot open is a trace that could not start: with `--json`, one
    // object too. The session outlives the printing, so closing it delays no output.
    let (_session, outcome) = match Session::open() {
        Ok(session) => {
            let outcome = session.multipath_partial(&cli.host, &options);
            (Some(session), outcome)
        }
        Err(error) => (None, Err(error)),
    };
    // Cut short, the last TTL may lack interfaces and later ones are missing, which
    // nothing in the report itself shows.
    if let Ok((report, None)) = &outcome
        && report.end == Some(MultipathEnd::Budget)
    {
        let last = report.hops.last().map_or(0, |hop| hop.ttl);
        eprintln!(
            "paths: the trace stopped at its probe budget (--budget {}) or its last flow \
             (--first-flow): TTL {last} may have more interfaces, and later TTLs were not \
             probed",
            cli.budget
        );
    }
    if cli.json {
        let (mut json, error) = match outcome {
            Ok((report, refused)) => (to_json(&report), refused),
            // It could not start: nothing found.
            Err(error) => (
                json!({
                    "target": cli.host,
                    "confidence": cli.confidence.percent(),
                    "probes": 0,
                    "hops": [],
                    "links": [],
                }),
                Some(error),
            ),
        };
        if let Some(error) = &error {
            json["error"] = json!(error.to_string());
        }
        outln!("{json}");
        return match error {
            Some(_) => ExitCode::FAILURE,
            None => ExitCode::SUCCESS,
        };
    }
    match outcome {
        Ok((report, None)) => {
            print_text(&cli.host, &report);
            ExitCode::SUCCESS
        }
        Ok((_, Some(error))) | Err(error) => {
            eprintln!("paths: {error}");
            ExitCode::FAILURE
        }
    }
}

/// The report as JSON, in the shape of the simulator's ground truth plus the confidence and
/// the probes used.
fn to_json(report: &MultipathReport) -> serde_json::Value {
    let hops: Vec<_> = report
        .hops
        .iter()
        .map(|hop| {
            let responders: Vec<String> = hop
                .responders
                .iter()
                .map(|r| r.address.to_string())
                .collect();
            json!({"ttl": hop.ttl, "responders": responders, "per_packet": hop.per_packet})
        })
        .collect();
    let links: Vec<_> = report
        .links
        .iter()
        .map(|l| json!([l.from.to_string(), l.to.to_string()]))
        .collect();
    json!({
        "target": report.target.to_string(),
        "confidence": report.confidence.percent(),
        "probes": report.probes,
        "hops": hops,
        "links": links,
    })
}

/// Per TTL the interfaces, most flows first, then the links.
fn print_text(host: &str, report: &MultipathReport) {
    let noun = if report.probes == 1 {
        "probe"
    } else {
        "probes"
    };
    outln!(
        "paths to {host} ({}), {}% confidence, {} {noun}",
        report.target,
        report.confidence.percent(),
        report.probes,
    );
    for hop in &report.hops {
        let mut responders: Vec<_> = hop.responders.iter().collect();
        responders.sort_by_key(|r| std::cmp::Reverse(r.flows));
        let tail = if hop.per_packet { "  (per packet)" } else { "" };
        match responders.split_first() {
            None => outln!("{:>3}  *{tail}", hop.ttl),
            Some((first, rest)) => {
                let plural = |n: u32| if n == 1 { "flow" } else { "flows" };
                outln!(
                    "{:>3}  {:<39} {:>4} {}{tail}",
                    hop.ttl,
                    first.address,
                    first.flows,
                    plural(first.flows)
                );
                for r in rest {
                    outln!("     {:<39} {:>4} {}", r.address, r.flows, plural(r.flows));
                }
            }
        }
    }
    if !report.links.is_empty() {
        outln!("links:");
        for link in &report.links {
            outln!("{:>3}  {} -> {}", link.ttl, link.from, link.to);
        }
    }
}
