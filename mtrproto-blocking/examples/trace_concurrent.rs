//! Traces the path to a host with every TTL probed at once, one line per hop.
//!
//! ```text
//! cargo run -p mtrproto-blocking --example trace_concurrent -- [-m MAX_HOPS]
//!     [-p icmp|udp|tcp] [--port N] [-4|-6] HOST
//! ```
//!
//! Hops past the first that the target itself answers are not shown. Only trace hosts you
//! are allowed to probe (try `localhost`).

mod common;

use std::process::ExitCode;

use mtrproto_blocking::ProbeOptions;

const USAGE: &str = "trace_concurrent [-m MAX_HOPS] [-p icmp|udp|tcp] [--port N] [-4|-6] HOST";

fn main() -> ExitCode {
    let args = common::parse(USAGE, &[]);
    let session = common::open_session();
    let max_hops = args.max_hops.unwrap_or(30).max(1);
    let handles: Result<Vec<_>, _> = (1..=max_hops)
        .map(|ttl| {
            let options = ProbeOptions {
                ttl: Some(ttl),
                ..args.options.clone()
            };
            session.probe(&args.host, &options)
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
                println!("{ttl:>2}  {from:<40} {time:>12}  {}", result.result);
                if result.success {
                    reached = true;
                    break;
                }
            }
            Err(error) => println!("{ttl:>2}  {error}"),
        }
    }
    if reached {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
