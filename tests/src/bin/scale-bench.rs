//! Path monitoring at scale: traces every target of a simulator scenario through one
//! campaign (`Session::campaign_reports`: reports only, no round events) and checks each
//! report against the ground truth.
//!
//! ```text
//! sudo mtrsim SCENARIO.toml -- scale-bench --scenario SCENARIO.toml [--targets N]
//!     [--cycles C] [--helpers K] [--timeout S] [--rate PPS] [--protocol icmp|udp|tcp]
//!     [--interval S] [--max-active N] [--mtr-packet CMD]
//! ```
//!
//! Targets are the scenario's generated internet (IPv4 addresses, the first N), else its
//! `[[targets]]`. Defaults: every target, 3 cycles, 1 helper, a 1 s timeout (also the
//! grace), mtr's 1 s interval, no rate cap. The last line is `key=value` pairs: `targets
//! cycles probes elapsed_s probes_per_s exhausted lost hops_correct hops_correct_clean
//! peak_rss_kb driver_cpu_s helper_cpu_s`, the settings, and `no_reply` (probes nothing
//! answered within their timeout) with its rate. `driver_cpu_s` is this whole
//! process (the campaign and the driver thread, and the judging of each report),
//! `helper_cpu_s` the helpers' (read from `/proc` while they run), `driver_helper_cpu` the
//! first over the second, `driver_thread_cpu_s` and `driver_thread_helper_cpu` the same for
//! the driver thread alone (without the caller's thread: the campaign's callback, the
//! judging), and `wakeups_per_s` how often this process's threads went to
//! sleep (voluntary context switches), the measure of its wake-ups. `judge_cpu_s` is the
//! caller's thread's CPU in judging the reports (the bench's work, not the library's),
//! `library_cpu_s` the process's less that, and `library_helper_cpu` that over the
//! helpers'. Every CPU figure is exact to the microsecond or better (`getrusage`,
//! `schedstat`), not counted in 10 ms ticks.
//!
//! `hops_correct` is the fraction of targets whose report matches the ground truth, by the
//! rule of `tests/scenarios/README.md` (`TargetTruth::matches`): at every TTL up to the
//! path's end, every address the report shows is among the hop's `responders`, and a hop
//! that has responders shows one unless it is `lossy` or `rate_limited` (the loss explains
//! a miss), so a target that answers is reached at exactly the path's last TTL; past the
//! end, only the last hop's responders (none for a silent destination). `hops_correct_clean` is the same over the targets whose
//! path has no lossy or rate-limited hop. Scenarios without an internet have no ground
//! truth: both are then `nan`.
//!
//! Refuses to run outside mtrsim, or with a target outside the simulated ranges.

use std::net::IpAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use mtrproto::TraceStats;
use mtrproto_blocking::{
    CampaignLimits, ProbeOptions, Protocol, Session, TraceConfig, TraceOptions,
};
use mtrproto_tests::sim::internet::TargetTruth;
use mtrproto_tests::sim::scenario::Scenario;
use mtrproto_tests::{
    child_pids, peak_rss_kb, process_cpu_seconds, schedstat_cpu_seconds, this_thread_cpu_seconds,
    thread_cpu_seconds, voluntary_switches,
};

/// The driver thread's name (`comm`), whose CPU is also given on its own.
const DRIVER_THREAD: &str = "mtr-packet driver";

struct Args {
    scenario: String,
    targets: Option<usize>,
    cycles: u32,
    helpers: usize,
    timeout: u64,
    rate: Option<u32>,
    protocol: Protocol,
    interval: Duration,
    max_active: usize,
    mtr_packet: String,
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("scale-bench: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("scale-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let text = std::fs::read_to_string(&args.scenario)?;
    let scenario = Scenario::parse(&text)?;
    let mut targets: Vec<IpAddr> = match &scenario.internet {
        Some(internet) => (0..internet.targets())
            .filter_map(|i| internet.target_addresses(i).first().copied())
            .collect(),
        None => scenario.target_addresses(),
    };
    targets.truncate(args.targets.unwrap_or(usize::MAX));
    // Network safety: only simulated addresses, from inside mtrsim's namespace.
    if !mtrproto_tests::sim::inside_simulation() {
        return Err("run me inside mtrsim (no route out of its namespace)".into());
    }
    if let Some(outside) = targets
        .iter()
        .find(|t| !mtrproto_tests::sim::is_simulated(**t))
    {
        return Err(format!("refusing target {outside}: not a simulated address").into());
    }

    let words: Vec<String> = args
        .mtr_packet
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let (program, rest) = words.split_first().ok_or("--mtr-packet is empty")?;
    // Every helper's whole probe table: the campaign's budget is the helpers' windows.
    let session = Session::builder()
        .program(program.clone(), rest.to_vec())
        .helpers(args.helpers)
        .window(usize::MAX)
        .open()?;
    let timeout = Duration::from_secs(args.timeout);
    let options = TraceOptions {
        trace: TraceConfig {
            cycles: args.cycles,
            interval: args.interval,
            timeout,
            grace: timeout,
            ..TraceConfig::default()
        },
        probe: ProbeOptions {
            protocol: args.protocol,
            ..ProbeOptions::default()
        },
    };
    let limits = CampaignLimits {
        rate: args.rate,
        max_active: args.max_active,
        ..CampaignLimits::default()
    };

    let helpers_before = helper_cpu();
    let self_before = process_cpu_seconds();
    let thread_before = thread_cpu_seconds(DRIVER_THREAD).unwrap_or(0.0);
    let switches_before = voluntary_switches();
    let mut helpers_after = helpers_before;
    let (mut correct, mut clean, mut clean_correct, mut judged) = (0u64, 0u64, 0u64, 0u64);
    // The caller's thread's CPU judging reports: the bench's work, not the library's.
    let mut judge_cpu = 0.0;
    let started = Instant::now();
    let hosts = targets.iter().map(IpAddr::to_string);
    let summary = session.campaign_reports(hosts, &options, &limits, |report| {
        if report.index + 1 == targets.len() {
            // The helpers' CPU while they still run (they are gone after close).
            helpers_after = helper_cpu();
        }
        let (Some(internet), Ok(stats)) = (&scenario.internet, &report.stats) else {
            return;
        };
        let judging = this_thread_cpu_seconds();
        if let Some(truth) = internet.truth(stats.target()) {
            judged += 1;
            let ok = truth.matches(&seen(stats));
            correct += u64::from(ok);
            if is_clean(&truth) {
                clean += 1;
                clean_correct += u64::from(ok);
            }
        }
        judge_cpu += this_thread_cpu_seconds() - judging;
    })?;
    let elapsed = started.elapsed().as_secs_f64();
    let helpers_after = helpers_after.max(helper_cpu());
    let driver_cpu = process_cpu_seconds() - self_before;
    let thread_cpu = thread_cpu_seconds(DRIVER_THREAD).unwrap_or(f64::NAN) - thread_before;
    let wakeups = voluntary_switches() - switches_before;
    let helper_cpu = helpers_after - helpers_before;
    let ratio = |a: u64, b: u64| {
        if b == 0 {
            f64::NAN
        } else {
            a as f64 / b as f64
        }
    };
    println!(
        "targets={} cycles={} probes={} elapsed_s={elapsed:.3} probes_per_s={:.0} exhausted={} \
         lost={} hops_correct={:.4} hops_correct_clean={:.4} peak_rss_kb={} \
         driver_cpu_s={driver_cpu:.3} helper_cpu_s={:.3} helpers={} timeout_s={} protocol={} \
         rate={} peak_in_flight={} failed={} refused={} no_reply={} no_reply_per_s={:.0} \
         driver_helper_cpu={:.3} driver_thread_cpu_s={thread_cpu:.3} \
         driver_thread_helper_cpu={:.3} wakeups_per_s={:.0} judge_cpu_s={judge_cpu:.3} \
         library_cpu_s={:.3} library_helper_cpu={:.3}",
        summary.targets,
        args.cycles,
        summary.probes,
        summary.probes as f64 / elapsed,
        summary.exhausted,
        summary.lost,
        ratio(correct, judged),
        ratio(clean_correct, clean),
        peak_rss_kb(),
        helper_cpu,
        args.helpers,
        args.timeout,
        args.protocol,
        args.rate.map_or("none".to_owned(), |r| r.to_string()),
        summary.peak_in_flight,
        summary.failed,
        summary.refused,
        summary.no_reply,
        summary.no_reply as f64 / elapsed,
        driver_cpu / helper_cpu,
        thread_cpu / helper_cpu,
        wakeups as f64 / elapsed,
        driver_cpu - judge_cpu,
        (driver_cpu - judge_cpu) / helper_cpu,
    );
    Ok(())
}

/// Whether no hop of the path is lossy or rate-limited.
fn is_clean(truth: &TargetTruth) -> bool {
    truth.hops.iter().all(|h| !h.lossy && !h.rate_limited)
}

/// The addresses the report shows at each TTL from 1.
fn seen(stats: &TraceStats) -> Vec<Vec<IpAddr>> {
    stats
        .hops()
        .iter()
        .map(|h| h.responders().map(|r| r.address).collect())
        .collect()
}

/// CPU seconds of every helper process alive now.
fn helper_cpu() -> f64 {
    child_pids()
        .iter()
        .filter_map(|pid| schedstat_cpu_seconds(&format!("/proc/{pid}/schedstat")))
        .sum()
}

fn parse() -> Result<Args, String> {
    let mut args = Args {
        scenario: String::new(),
        targets: None,
        cycles: 3,
        helpers: 1,
        timeout: 1,
        rate: None,
        protocol: Protocol::Icmp,
        interval: Duration::from_secs(1),
        max_active: CampaignLimits::default().max_active,
        mtr_packet: "mtr-packet".into(),
    };
    let mut words = std::env::args().skip(1);
    while let Some(word) = words.next() {
        let mut value = || words.next().ok_or(format!("{word} needs a value"));
        let bad = |v: &str| format!("{word}: bad value {v}");
        match word.as_str() {
            "--scenario" => args.scenario = value()?,
            "--targets" => args.targets = Some(value()?.parse().map_err(|_| bad("targets"))?),
            "--cycles" => args.cycles = value()?.parse().map_err(|_| bad("cycles"))?,
            "--helpers" => args.helpers = value()?.parse().map_err(|_| bad("helpers"))?,
            "--timeout" => args.timeout = value()?.parse().map_err(|_| bad("timeout"))?,
            "--rate" => args.rate = Some(value()?.parse().map_err(|_| bad("rate"))?),
            "--max-active" => args.max_active = value()?.parse().map_err(|_| bad("max-active"))?,
            "--mtr-packet" => args.mtr_packet = value()?,
            "--interval" => {
                let v = value()?;
                let secs: f64 = v.parse().map_err(|_| bad(&v))?;
                if !(0.0..=3600.0).contains(&secs) {
                    return Err(bad(&v));
                }
                args.interval = Duration::from_secs_f64(secs);
            }
            "--protocol" => {
                args.protocol = match value()?.as_str() {
                    "icmp" => Protocol::Icmp,
                    "udp" => Protocol::Udp,
                    "tcp" => Protocol::Tcp,
                    v => return Err(bad(v)),
                }
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if args.scenario.is_empty() {
        return Err("--scenario FILE is required".into());
    }
    if args.cycles == 0 || args.helpers == 0 || args.timeout == 0 {
        return Err("--cycles, --helpers and --timeout must be at least 1".into());
    }
    Ok(args)
}
