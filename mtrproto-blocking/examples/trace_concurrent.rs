//! Traces the path to a host with every TTL probed at once, one line per hop.
//!
//! ```text
//! cargo run -p mtrproto-blocking --example trace_concurrent -- [-m MAX_HOPS]
//!     [-p icmp|udp|tcp|sctp] [--port N] [-w TIMEOUT_S] [-4|-6] HOST
//! ```
//!
//! `--help` lists every option.
//!
//! Hops past the first that the target itself answers are not shown. Only trace hosts you
//! are allowed to probe (try `localhost`).

#[macro_use]
mod common;

use std::process::ExitCode;

use clap::Parser;
use mtrproto_blocking::ProbeOptions;

/// Traces the path to a host with every TTL probed at once, one line per hop. Only trace
/// hosts you are allowed to probe.
#[derive(Debug, Parser)]
#[command(name = "trace_concurrent")]
struct Cli {
    /// Highest TTL probed.
    #[arg(short = 'm', allow_negative_numbers = true, long = "max-ttl", value_name = "HOPS", default_value_t = 30,
          value_parser = clap::value_parser!(u8).range(1..))]
    max_hops: u8,
    #[command(flatten)]
    probe: common::ProbeFlags,
    /// Host name or address to trace (try localhost).
    host: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let base = cli.probe.options();
    let session = common::open_session();
    let max_hops = cli.max_hops;
    let handles: Result<Vec<_>, _> = (1..=max_hops)
        .map(|ttl| {
            let options = ProbeOptions {
                ttl: Some(ttl),
                ..base.clone()
            };
            session.probe(&cli.host, &options)
        })
        .collect();
    let handles = match handles {
        Ok(handles) => handles,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    let mut reached = false;
    for (ttl, handle) in (1..).zip(handles) {
        match handle.wait() {
            Ok(result) => {
                let from = result.responder.map_or("???".to_owned(), |a| a.to_string());
                let time = result
                    .time
                    .map_or(String::new(), |t| format!("{} ms", common::ms(t)));
                outln!("{ttl:>2}  {from:<40} {time:>12}  {}", result.result);
                if result.success() {
                    reached = true;
                    break;
                }
            }
            Err(error) => outln!("{ttl:>2}  {error}"),
        }
    }
    if reached {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
