//! Sends probes through mtrproto-blocking and prints every result, for the simulator tests.
//!
//! ```text
//! sim-probe [--count N] [--ttls A-B] [--protocol P[,P...]] [--ports A-B] [--timeout S]
//!     [--flow F] [--helpers K] [--window W] [--kill-after MS] TARGET...
//! ```
//!
//! Sends N probes for every TARGET and every TTL in A-B through one session, W (default 64)
//! in flight (port i of the range for the i-th probe; with `--flow`, every probe a UDP probe
//! in fixed flow F; with several protocols `icmp|udp|tcp|sctp`, the i-th target probed in
//! the i-th, in turn), then prints one line per result:
//! `TARGET TTL KIND FROM RTT_US MPLS` (`-` where the reply has none; MPLS entries as
//! `label,tc,s,ttl` joined by `;`). With `--kill-after`, the first helper is killed (SIGKILL)
//! MS milliseconds after the probes went out, and once it has been started again every probe
//! is sent again, TTLs in reverse order; only those second results are printed (a fixed
//! flow's answers that the dead helper left behind then meet the new helper numbering from
//! 33000 again, at other TTLs). Meant to run inside `mtrsim`: it refuses any target but
//! loopback, or the simulator's ranges when run inside the simulator's namespace.

use std::net::IpAddr;
use std::process::ExitCode;
use std::time::Duration;

use mtrproto_blocking::{Flow, ProbeOptions, ProbeResult, Protocol, Session};

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

/// The command line.
struct Args {
    count: u32,
    ttls: (u32, u32),
    ports: Option<(u32, u32)>,
    flow: Option<Flow>,
    timeout: u64,
    helpers: usize,
    window: usize,
    kill_after: Option<u64>,
    protocols: Vec<Protocol>,
    /// Each target as given (printed so) and as an address (probed so).
    targets: Vec<(String, IpAddr)>,
}

fn parse() -> Result<Args, Box<dyn std::error::Error>> {
    let mut parsed = Args {
        count: 1,
        ttls: (1, 1),
        ports: None,
        flow: None,
        timeout: 2,
        helpers: 1,
        kill_after: None,
        // Small: hundreds of answers in one instant overflow mtr-packet's socket buffer, a
        // loss the scenario did not ask for.
        window: 64,
        protocols: vec![Protocol::Icmp],
        targets: Vec::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--count" => parsed.count = value()?.parse()?,
            "--ttls" => parsed.ttls = range(&value()?)?,
            "--ports" => parsed.ports = Some(range(&value()?)?),
            "--flow" => parsed.flow = Some(Flow::new(value()?.parse()?)?),
            "--timeout" => parsed.timeout = value()?.parse()?,
            "--helpers" => parsed.helpers = value()?.parse()?,
            "--window" => parsed.window = value()?.parse()?,
            "--kill-after" => parsed.kill_after = Some(value()?.parse()?),
            "--protocol" => {
                parsed.protocols = value()?
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()?
            }
            target => {
                let addr: IpAddr = target.parse()?;
                mtrproto_tests::sim::may_probe(addr)?;
                parsed.targets.push((target.to_owned(), addr));
            }
        }
    }
    Ok(parsed)
}

type Sent = (String, u32, Result<ProbeResult, mtrproto_blocking::Error>);

/// Sends every probe; how many.
fn send_all(
    session: &Session,
    args: &Args,
    done: &crossbeam_channel::Sender<Sent>,
    reverse: bool,
) -> Result<u64, Box<dyn std::error::Error>> {
    let mut sent = 0;
    for (n, (text, addr)) in args.targets.iter().enumerate() {
        let protocol = args.protocols[n % args.protocols.len()];
        let ttls: Vec<u32> = if reverse {
            (args.ttls.0..=args.ttls.1).rev().collect()
        } else {
            (args.ttls.0..=args.ttls.1).collect()
        };
        for ttl in ttls {
            for i in 0..args.count {
                let options = ProbeOptions {
                    protocol: if args.flow.is_some() {
                        Protocol::Udp
                    } else {
                        protocol
                    },
                    flow: args.flow,
                    ttl: Some(u8::try_from(ttl)?),
                    port: args.ports.map(|(a, b)| (a + i % (b - a + 1)) as u16),
                    timeout: Some(Duration::from_secs(args.timeout)),
                    ..ProbeOptions::default()
                };
                let done = done.clone();
                let text = text.clone();
                session.probe_with(*addr, &options, move |r| {
                    let _ = done.send((text, ttl, r));
                })?;
                sent += 1;
            }
        }
    }
    Ok(sent)
}

/// `TARGET TTL KIND FROM RTT_US MPLS`.
fn line(target: &str, ttl: u32, result: &ProbeResult) -> String {
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
    format!("{target} {ttl} {} {from} {rtt} {mpls}", result.result)
}

/// SIGKILLs the session's first helper and waits (5 s at most) until it was started again.
fn kill_first_helper(session: &Session) -> Result<(), Box<dyn std::error::Error>> {
    let first = session.helpers().remove(0);
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &first.pid.to_string()])
        .status()?;
    if !killed.success() {
        return Err(format!("kill {} failed", first.pid).into());
    }
    let start = std::time::Instant::now();
    while session.helpers()[0].restarts == first.restarts {
        if start.elapsed() > Duration::from_secs(5) {
            return Err("the killed helper was not started again".into());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse()?;
    let session = Session::builder()
        .helpers(args.helpers)
        .window(args.window)
        .open()?;
    let (done, results) = crossbeam_channel::unbounded();
    let mut sent = send_all(&session, &args, &done, false)?;
    if let Some(ms) = args.kill_after {
        std::thread::sleep(Duration::from_millis(ms));
        kill_first_helper(&session)?;
        // The first round's outcomes (the killed helper's probes fail), not printed.
        for _ in 0..sent {
            let _outcome = results
                .recv_timeout(Duration::from_secs(args.timeout + 5))
                .map_err(|_| "the first round did not end")?;
        }
        sent = send_all(&session, &args, &done, true)?;
    }
    drop(done);
    let mut printed = 0;
    for (target, ttl, result) in results {
        println!("{}", line(&target, ttl, &result?));
        printed += 1;
    }
    if printed != sent {
        return Err(format!("{printed} results for {sent} probes").into());
    }
    Ok(())
}
