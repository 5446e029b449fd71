//! The campaign soak test: round after round, a campaign over 1 to 4 fake helpers that
//! misbehave (exit, stall, flood junk, close stdout or stdin, stop reading, answer twice or out of
//! order), with SIGKILL and SIGSTOP/SIGCONT sent from here, a caller probing from another
//! thread meanwhile, and now and then a callback that panics (the campaign abandoned). Each
//! round checks:
//!
//! - every target of a campaign run to its end is reported exactly once, with an index in
//!   range and its own host, and the campaign returns within [`campaign_bound`];
//! - the summary agrees with the reports: as many targets as reports, no probe counted in
//!   two outcomes more than were sent, no report with more probes sent than the campaign;
//! - every probe of the other thread completes exactly once, within its timeout, the
//!   session's grace and [`SLACK`] of being sent or of the last fault injected;
//! - after an abandoned campaign, a new one on the same session still reports every target.
//!
//! 20 s by default; set `MTRPROTO_CAMPAIGN_CHAOS_SECONDS` to run longer. Every round prints
//! its figures, and the totals are printed at the end.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mtrproto_blocking::{
    CampaignLimits, CampaignSummary, Protocol, Session, TraceConfig, TraceOptions,
};
use mtrproto_tests::Random;

const FAKE: &str = env!("CARGO_BIN_EXE_fake-mtr-packet");
/// The session's grace: how long past its timeout a probe may go unanswered.
const GRACE: Duration = Duration::from_secs(1);
/// Probes' timeout, the campaign's and the other thread's.
const TIMEOUT: Duration = Duration::from_secs(1);
/// How late past timeout + grace a probe of the other thread may complete (a probe held
/// while a pin is quiet may go out just before it would give up, and then take its timeout
/// and grace again).
const SLACK: Duration = Duration::from_secs(3);
/// Cycles and TTLs of each trace: a campaign sends at most this many probes per target.
const CYCLES: u32 = 2;
const MAX_TTL: u8 = 3;

/// How long a campaign may take at most: its traces last about a second, and faults add
/// the restarts' pauses, the watchdogs' grace and the quiet after an end; in the worst
/// case every probe is lost after its timeout and the grace (a helper that answers
/// nothing), a budget's worth at a time, plus a restart's pause.
fn campaign_bound(round: &Round) -> Duration {
    let probes = round.targets as u32 * CYCLES * u32::from(MAX_TTL);
    let at_once = round.limits.max_in_flight.unwrap_or(probes as usize).max(1) as u32;
    let rate = round
        .limits
        .rate
        .map_or(Duration::ZERO, |r| Duration::from_secs(1) * probes / r);
    let lost = (TIMEOUT + GRACE + Duration::from_secs(1)) * probes.div_ceil(at_once);
    Duration::from_secs(15) + lost + rate
}

/// One round's setting, drawn from the seed.
#[derive(Debug)]
struct Round {
    helpers: usize,
    behaviour: Vec<String>,
    protocol: Protocol,
    flows: u16,
    targets: usize,
    limits: CampaignLimits,
    signals: bool,
    prober: bool,
    /// The callback panics at this report.
    panic_at: Option<usize>,
}

fn draw(random: &mut Random) -> Round {
    let n = |random: &mut Random, from: u64, to: u64| from + random.below(to - from + 1);
    let behaviour: Vec<String> = match random.below(11) {
        0 => vec!["--exit-after".into(), n(random, 2, 40).to_string()],
        1 => vec!["--close-stdout-after".into(), n(random, 2, 40).to_string()],
        2 => vec!["--junk-after".into(), n(random, 2, 40).to_string()],
        3 => vec!["--deaf-after".into(), n(random, 2, 40).to_string()],
        4 => vec!["--chaos".into(), random.next().to_string()],
        5 => vec!["--reverse".into(), n(random, 2, 5).to_string()],
        6 => vec!["--twice".into(), "--garbage".into()],
        7 => vec!["--stall".into()],
        8 => vec!["--reply".into(), "no-reply".into()],
        9 => vec!["--close-stdin-after".into(), n(random, 2, 40).to_string()],
        _ => vec![],
    };
    let mut behaviour = behaviour;
    behaviour.extend(["--delay-ms".into(), n(random, 0, 40).to_string()]);
    let (protocol, flows) = match random.below(4) {
        0 => (Protocol::Udp, 0),
        1 => (Protocol::Udp, n(random, 1, 3) as u16),
        2 => (Protocol::Tcp, 0),
        _ => (Protocol::Icmp, 0),
    };
    let limits = CampaignLimits {
        max_in_flight: (random.below(2) == 0).then(|| n(random, 1, 8) as usize),
        rate: (random.below(3) == 0).then(|| n(random, 20, 2000) as u32),
        max_active: n(random, 1, 8) as usize,
        ..CampaignLimits::default()
    };
    let targets = n(random, 0, 10) as usize;
    Round {
        helpers: n(random, 1, 4) as usize,
        behaviour,
        protocol,
        flows,
        targets,
        limits,
        signals: random.below(2) == 0,
        prober: random.below(2) == 0,
        panic_at: (random.below(5) == 0 && targets > 0)
            .then(|| random.below(targets as u64) as usize),
    }
}

fn options(round: &Round) -> TraceOptions {
    let mut options = TraceOptions {
        trace: TraceConfig {
            cycles: CYCLES,
            max_ttl: MAX_TTL,
            interval: Duration::from_millis(100),
            timeout: TIMEOUT,
            grace: Duration::from_millis(300),
            flows: round.flows,
            ..TraceConfig::default()
        },
        ..TraceOptions::default()
    };
    options.probe.protocol = round.protocol;
    options
}

fn hosts(count: usize) -> Vec<String> {
    (1..=count).map(|i| format!("127.0.0.{i}")).collect()
}

fn signal(pid: u32, name: &str) {
    // The helper may have ended meanwhile: kill's complaint is not news.
    let _ = std::process::Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .stderr(std::process::Stdio::null())
        .status();
}

/// Sends SIGKILL or SIGSTOP (then SIGCONT) to a random helper every 100 to 500 ms until
/// `stop`; records when each fault was injected.
fn injector(
    session: Arc<Session>,
    seed: u64,
    stop: Arc<AtomicBool>,
    faults: Arc<Mutex<Vec<Instant>>>,
) {
    let mut random = Random::new(seed);
    while !stop.load(Ordering::Acquire) {
        std::thread::sleep(Duration::from_millis(100 + random.below(400)));
        let pids = session.helper_pids();
        let Some(&pid) = pids.get(random.below(pids.len().max(1) as u64) as usize) else {
            continue;
        };
        faults.lock().unwrap().push(Instant::now());
        if random.below(2) == 0 {
            signal(pid, "KILL");
        } else {
            signal(pid, "STOP");
            std::thread::sleep(Duration::from_millis(random.below(1500)));
            signal(pid, "CONT");
            faults.lock().unwrap().push(Instant::now());
        }
    }
}

/// Probes from another thread until `stop`, a few at a time; returns each accepted probe's
/// submission time, completions and completion time.
fn prober(
    session: Arc<Session>,
    seed: u64,
    stop: Arc<AtomicBool>,
) -> Vec<(Instant, Arc<Mutex<Vec<Instant>>>)> {
    let mut random = Random::new(seed);
    let mut sent = Vec::new();
    while !stop.load(Ordering::Acquire) {
        let protocol = if random.below(3) == 0 {
            Protocol::Tcp
        } else {
            Protocol::Icmp
        };
        let options = mtrproto_blocking::ProbeOptions {
            protocol,
            timeout: Some(TIMEOUT),
            ..Default::default()
        };
        let completions = Arc::new(Mutex::new(Vec::new()));
        let noted = Arc::clone(&completions);
        let submitted = Instant::now();
        let accepted = session
            .probe_with("127.0.0.9", &options, move |_| {
                noted.lock().unwrap().push(Instant::now());
            })
            .is_ok();
        if accepted {
            sent.push((submitted, completions));
        }
        std::thread::sleep(Duration::from_millis(20 + random.below(80)));
    }
    sent
}

/// What one campaign gave: reports by index, and whether its callback panicked.
struct Outcome {
    reports: BTreeMap<usize, u32>,
    summary: Option<CampaignSummary>,
    elapsed: Duration,
}

fn run_campaign(session: &Session, round: &Round, panic_at: Option<usize>) -> Outcome {
    let hosts = hosts(round.targets);
    let options = options(round);
    let mut reports: BTreeMap<usize, u32> = BTreeMap::new();
    let mut probes_reported = 0u64;
    let start = Instant::now();
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
        session.campaign_reports(&hosts, &options, &round.limits, |report| {
            assert!(report.index < hosts.len(), "{report:?}");
            assert_eq!(report.host, hosts[report.index]);
            if let Ok(stats) = &report.stats {
                probes_reported += stats.hops().iter().map(|h| h.sent()).sum::<u64>();
            }
            *reports.entry(report.index).or_default() += 1;
            if Some(reports.len() - 1) == panic_at {
                panic!("the callback gives up");
            }
        })
    }));
    let elapsed = start.elapsed();
    let summary = match result {
        Ok(summary) => Some(summary.expect("the session stays open")),
        Err(_) => {
            assert!(panic_at.is_some(), "a panic nobody asked for");
            None
        }
    };
    if let Some(summary) = &summary {
        assert!(
            summary.probes >= probes_reported,
            "{summary:?}, {probes_reported} reported"
        );
        assert!(
            summary.lost + summary.no_reply + summary.exhausted <= summary.probes,
            "{summary:?}"
        );
        assert!(summary.peak_in_flight <= round.limits.max_in_flight.unwrap_or(usize::MAX));
    }
    Outcome {
        reports,
        summary,
        elapsed,
    }
}

#[test]
fn campaigns_under_misbehaving_helpers_report_every_target_once_in_time() {
    let seconds = std::env::var("MTRPROTO_CAMPAIGN_CHAOS_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let seed = std::env::var("MTRPROTO_CAMPAIGN_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_cafe_u64);
    let mut random = Random::new(seed);
    let stop_at = Instant::now() + Duration::from_secs(seconds);
    let (mut rounds, mut targets, mut probes, mut lost, mut abandoned) = (0, 0, 0, 0, 0);
    let mut caller_probes = 0;
    let mut slowest = Duration::ZERO;
    let mut latest_probe = Duration::ZERO;
    while Instant::now() < stop_at {
        let round = draw(&mut random);
        let round_seed = random.next();
        println!("round {rounds} (seed {round_seed:#x}): {round:?}");
        let session = Arc::new(
            Session::builder()
                .program(FAKE, round.behaviour.iter().map(String::as_str))
                .helpers(round.helpers)
                .grace(GRACE)
                .open()
                .expect("open the fake helpers"),
        );
        let stop = Arc::new(AtomicBool::new(false));
        let faults = Arc::new(Mutex::new(Vec::new()));
        let injector = round.signals.then(|| {
            let (session, stop, faults) =
                (Arc::clone(&session), Arc::clone(&stop), Arc::clone(&faults));
            std::thread::spawn(move || injector(session, round_seed, stop, faults))
        });
        let prober = round.prober.then(|| {
            let (session, stop) = (Arc::clone(&session), Arc::clone(&stop));
            std::thread::spawn(move || prober(session, round_seed ^ 0xff, stop))
        });
        let first = run_campaign(&session, &round, round.panic_at);
        // After a campaign abandoned mid-way, the session still runs a whole one.
        let outcome = if first.summary.is_none() {
            abandoned += 1;
            run_campaign(&session, &round, None)
        } else {
            first
        };
        stop.store(true, Ordering::Release);
        if let Some(injector) = injector {
            injector.join().unwrap();
        }
        // Every helper running again: a stopped one would stall the probes checked below.
        for pid in session.helper_pids() {
            signal(pid, "CONT");
        }
        let sent = prober.map(|p| p.join().unwrap()).unwrap_or_default();
        let summary = outcome.summary.expect("run to its end");
        println!(
            "  {} targets in {:?}: {summary:?}",
            outcome.reports.len(),
            outcome.elapsed
        );
        assert!(
            outcome.elapsed < campaign_bound(&round),
            "the campaign took {:?}",
            outcome.elapsed
        );
        assert_eq!(
            outcome.reports.keys().copied().collect::<Vec<_>>(),
            (0..round.targets).collect::<Vec<_>>(),
            "every target reported"
        );
        assert!(
            outcome.reports.values().all(|&n| n == 1),
            "a target reported twice: {:?}",
            outcome.reports
        );
        assert_eq!(summary.targets, round.targets);
        // The other thread's probes: each completes exactly once, in time.
        let bound = TIMEOUT + GRACE + SLACK;
        let waited = Instant::now();
        for (submitted, completions) in &sent {
            while completions.lock().unwrap().is_empty()
                && waited.elapsed() < bound + Duration::from_secs(5)
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            let completions = completions.lock().unwrap();
            assert_eq!(completions.len(), 1, "a probe completed {completions:?}");
            let faults = faults.lock().unwrap();
            let from = faults
                .iter()
                .copied()
                .filter(|&f| f <= completions[0])
                .fold(*submitted, Instant::max);
            let late = completions[0].saturating_duration_since(from);
            assert!(
                late <= bound,
                "a probe completed {late:?} after its start or a fault"
            );
            latest_probe = latest_probe.max(late);
        }
        session.close();
        rounds += 1;
        targets += round.targets;
        probes += summary.probes;
        lost += summary.lost;
        caller_probes += sent.len();
        slowest = slowest.max(outcome.elapsed);
    }
    println!(
        "{rounds} rounds, {abandoned} campaigns abandoned, {targets} targets, {probes} \
         campaign probes ({lost} lost), {caller_probes} caller probes (the latest {latest_probe:?} \
         after its start or a fault), slowest campaign {slowest:?}"
    );
    assert!(rounds >= 3, "only {rounds} rounds");
}
