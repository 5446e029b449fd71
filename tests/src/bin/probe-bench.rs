//! End-to-end throughput of mtrproto-blocking against mtr-packet on loopback.
//!
//! ```text
//! cargo run --release -p mtrproto-tests --bin probe-bench -- --mtr-packet CMD
//!     --target 127.0.0.1|::1 --count N --window W --protocol icmp|udp|tcp|sctp [--port P]
//!     --timeout S [--helpers K] [--submit-all]
//! ```
//!
//! Opens one session, sends one warm-up probe, then keeps W probes in flight (per helper)
//! until N complete; `--submit-all` hands all N to the session at once instead. The last
//! line is `key=value` pairs; exit 0 only if every probe completed. Refuses any target but
//! loopback, or simulated addresses when run inside `mtrsim`.

use std::net::IpAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use mtrproto_blocking::{ProbeOptions, ProbeResult, Protocol, ReplyKind, Session};
use mtrproto_tests::{child_pids, peak_rss_kb, stat_cpu_seconds, thread_cpu_seconds};

struct Args {
    mtr_packet: String,
    target: IpAddr,
    count: u64,
    window: usize,
    protocol: Protocol,
    port: Option<u16>,
    timeout: u64,
    helpers: usize,
    submit_all: bool,
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("probe-bench: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("probe-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<bool, Box<dyn std::error::Error>> {
    let words = mtrproto::split_command(&args.mtr_packet)?;
    let session = Session::builder()
        .program(words[0].clone(), words[1..].to_vec())
        .window(args.window)
        .helpers(args.helpers)
        .max_queue(mtrproto::SessionConfig::MAX_QUEUE)
        .open()?;
    let options = ProbeOptions {
        protocol: args.protocol,
        port: args.port,
        timeout: Some(Duration::from_secs(args.timeout)),
        ..ProbeOptions::default()
    };
    session.probe_blocking(args.target, &options)?;

    let helpers_before: f64 = helper_cpu();
    let driver_before = thread_cpu_seconds("mtr-packet driver").unwrap_or(0.0);
    let (done, results) = crossbeam_channel::unbounded();
    // Per-probe wall time is only measured at W=1, where it gives the overhead: reading the
    // clock in the callback runs on the driver thread and would count as driver CPU.
    let timed = args.window == 1;
    let submit = |n: u64| -> Result<(), mtrproto_blocking::Error> {
        for _ in 0..n {
            let done = done.clone();
            let sent = timed.then(Instant::now);
            session.probe_with(args.target, &options, move |r| {
                let _ = done.send((sent.map(|s| s.elapsed()).unwrap_or_default(), r));
            })?;
        }
        Ok(())
    };
    let started = Instant::now();
    let in_flight = if args.submit_all {
        args.count
    } else {
        (args.window * args.helpers) as u64
    };
    let mut submitted = in_flight.min(args.count);
    submit(submitted)?;
    let mut tally = Tally::default();
    while tally.completed < args.count {
        let Ok((elapsed, result)) = results.recv_timeout(Duration::from_secs(args.timeout + 10))
        else {
            break;
        };
        tally.add(elapsed, &result);
        if submitted < args.count {
            submit(1)?;
            submitted += 1;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let driver_cpu = thread_cpu_seconds("mtr-packet driver").unwrap_or(0.0) - driver_before;
    let helper_cpu = helper_cpu() - helpers_before;
    println!("{}", tally.line(args, elapsed, driver_cpu, helper_cpu));
    Ok(tally.completed == args.count)
}

/// What the probes came back with.
#[derive(Default)]
struct Tally {
    completed: u64,
    reply: u64,
    no_reply: u64,
    exhausted: u64,
    other: u64,
    /// Wall time from submission to completion, summed (measured at W=1 only).
    wall: Duration,
    /// Round-trip times of the replies, summed.
    rtt: Duration,
}

impl Tally {
    fn add(&mut self, elapsed: Duration, result: &Result<ProbeResult, mtrproto_blocking::Error>) {
        self.completed += 1;
        self.wall += elapsed;
        match result {
            Ok(r) if r.result == ReplyKind::Reply => {
                self.reply += 1;
                self.rtt += r.time.unwrap_or_default();
            }
            Ok(r) if r.result == ReplyKind::NoReply => self.no_reply += 1,
            Ok(r) if r.result == ReplyKind::ProbesExhausted => self.exhausted += 1,
            _ => self.other += 1,
        }
    }

    /// The `key=value` line the compare script reads.
    fn line(&self, args: &Args, elapsed: f64, driver_cpu: f64, helper_cpu: f64) -> String {
        let Tally {
            completed,
            reply,
            no_reply,
            exhausted,
            other,
            wall,
            rtt,
        } = self;
        let mut line = format!(
            "probes_per_s={:.0} elapsed_s={elapsed:.3} count={} completed={completed} window={} protocol={} \
         helpers={} reply={reply} no_reply={no_reply} probes_exhausted={exhausted} other={other} \
         driver_cpu_s={driver_cpu:.2} helper_cpu_s={helper_cpu:.2} rss_kb={}",
            *completed as f64 / elapsed,
            args.count,
            args.window,
            args.protocol,
            args.helpers,
            peak_rss_kb(),
        );
        if args.window == 1 && *reply > 0 {
            let overhead =
                wall.as_secs_f64() / *completed as f64 - rtt.as_secs_f64() / *reply as f64;
            line.push_str(&format!(" overhead_us={:.1}", overhead * 1e6));
        }
        line
    }
}

/// CPU seconds of every helper process alive now.
fn helper_cpu() -> f64 {
    child_pids()
        .iter()
        .filter_map(|pid| stat_cpu_seconds(&format!("/proc/{pid}/stat")))
        .sum()
}

fn parse() -> Result<Args, String> {
    let mut args = Args {
        mtr_packet: "mtr-packet".into(),
        target: IpAddr::from([127, 0, 0, 1]),
        count: 100_000,
        window: 256,
        protocol: Protocol::Icmp,
        port: None,
        timeout: 5,
        helpers: 1,
        submit_all: false,
    };
    let mut words = std::env::args().skip(1);
    while let Some(word) = words.next() {
        let mut value = || words.next().ok_or(format!("{word} needs a value"));
        let bad = |v: &str| format!("{word}: bad value {v}");
        match word.as_str() {
            "--mtr-packet" => args.mtr_packet = value()?,
            "--target" => {
                let v = value()?;
                args.target = v.parse().map_err(|_| bad(&v))?;
            }
            "--count" => args.count = value()?.parse().map_err(|_| bad("count"))?,
            "--window" => args.window = value()?.parse().map_err(|_| bad("window"))?,
            "--timeout" => args.timeout = value()?.parse().map_err(|_| bad("timeout"))?,
            "--helpers" => args.helpers = value()?.parse().map_err(|_| bad("helpers"))?,
            "--port" => args.port = Some(value()?.parse().map_err(|_| bad("port"))?),
            "--protocol" => {
                let v = value()?;
                args.protocol = v.parse().map_err(|_| bad(&v))?;
            }
            "--submit-all" => args.submit_all = true,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    // Network safety: this tool floods its target.
    mtrproto_tests::sim::may_probe(args.target)?;
    if args.window == 0 || args.helpers == 0 {
        return Err("--window and --helpers must be at least 1".into());
    }
    Ok(args)
}
