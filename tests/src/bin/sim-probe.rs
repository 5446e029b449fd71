//! Sends probes through mtrproto-blocking and prints every result, for the simulator tests.
//!
//! ```text
//! sim-probe [--count N] [--ttls A-B] [--protocol icmp|udp|tcp|sctp] [--ports A-B] [--timeout S]
//!     [--helpers K] [--window W] TARGET...
//! ```
//!
//! Sends N probes for every TARGET and every TTL in A-B through one session, W (default 64)
//! in flight (port i of the range for the i-th probe), then prints one line per result:
//! `TARGET TTL KIND FROM RTT_US MPLS` (`-` where the reply has none; MPLS entries as
//! `label,tc,s,ttl` joined by `;`). Meant to run inside `mtrsim`: it refuses any target but
//! loopback, or the simulator's ranges when run inside the simulator's namespace.

use std::process::ExitCode;
use std::time::Duration;

use mtrproto_blocking::{ProbeOptions, Protocol, Session};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sim-probe: {e}");
            ExitCode::FAILURE
        }
    }
}

fn range(text: &str) -> Result<(u32, u32), String> {
    let (a, b) = text.split_once('-').unwrap_or((text, text));
    let parse = |v: &str| v.parse::<u32>().map_err(|_| format!("bad range {text}"));
    Ok((parse(a)?, parse(b)?))
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let (mut count, mut ttls, mut ports, mut timeout, mut helpers) =
        (1u32, (1u32, 1u32), None, 2u64, 1usize);
    // Small: hundreds of answers in one instant overflow mtr-packet's socket buffer, a loss
    // the scenario did not ask for.
    let mut window = 64;
    let mut protocol = Protocol::Icmp;
    let mut targets = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--count" => count = value()?.parse()?,
            "--ttls" => ttls = range(&value()?)?,
            "--ports" => ports = Some(range(&value()?)?),
            "--timeout" => timeout = value()?.parse()?,
            "--helpers" => helpers = value()?.parse()?,
            "--window" => window = value()?.parse()?,
            "--protocol" => protocol = value()?.parse()?,
            target => {
                mtrproto_tests::sim::may_probe(target.parse()?)?;
                targets.push(target.to_owned());
            }
        }
    }
    let session = Session::builder().helpers(helpers).window(window).open()?;
    let (done, results) = crossbeam_channel::unbounded();
    let mut sent = 0u64;
    for target in &targets {
        for ttl in ttls.0..=ttls.1 {
            for i in 0..count {
                let options = ProbeOptions {
                    protocol,
                    ttl: Some(u8::try_from(ttl)?),
                    port: ports.map(|(a, b)| (a + i % (b - a + 1)) as u16),
                    timeout: Some(Duration::from_secs(timeout)),
                    ..ProbeOptions::default()
                };
                let done = done.clone();
                let target = target.clone();
                session.probe_with(&target.clone(), &options, move |r| {
                    let _ = done.send((target, ttl, r));
                })?;
                sent += 1;
            }
        }
    }
    drop(done);
    let mut printed = 0;
    for (target, ttl, result) in results {
        let result = result?;
        let from = result.responder.map_or("-".to_owned(), |a| a.to_string());
        let rtt = result
            .time
            .map_or("-".to_owned(), |t| t.as_micros().to_string());
        let mpls: Vec<String> = result
            .mpls
            .iter()
            .map(|m| {
                format!(
                    "{},{},{},{}",
                    m.label(),
                    m.traffic_class(),
                    u8::from(m.bottom_of_stack()),
                    m.ttl()
                )
            })
            .collect();
        let mpls = if mpls.is_empty() {
            "-".to_owned()
        } else {
            mpls.join(";")
        };
        println!("{target} {ttl} {} {from} {rtt} {mpls}", result.result);
        printed += 1;
    }
    if printed != sent {
        return Err(format!("{printed} results for {sent} probes").into());
    }
    Ok(())
}
