//! The campaign soak test: round after round, a campaign over 1 to 4 fake helpers that
//! misbehave (exit, stall, flood junk, close stdout or stdin, stop reading, answer twice or out of
//! order), with SIGKILL and SIGSTOP/SIGCONT sent from here, a caller probing from another
//! thread meanwhile, and now and then a callback that panics (the campaign abandoned). Each
//! round checks:
//!
//! - every target of a campaign run to its end is reported exactly once, with an index in
//!   range and its own host, and the campaign returns within [`campaign_bound`];
//! - the summary agrees with the reports: as many targets as reports, every probe answered
//!   or lost (`answered + lost == probes`), as many probes sent as the reports count when
//!   every target was traced;
//! - every probe of the other thread completes exactly once, within its timeout, the
//!   session's grace and [`SLACK`] of being sent or of the last fault injected;
//! - after an abandoned campaign, a new one on the same session still reports every target.
//!
//! 20 s by default; set `MTRPROTO_CAMPAIGN_CHAOS_SECONDS` to run longer. Every round prints
//! its figures, and the totals are printed at the end.
//!
//! Then one misbehaviour at a time ([`play`]), each over one helper and over two (one of
//! them misbehaving, once), a caller probing with `probe_blocking` meanwhile: a death
//! during a rest of stdout and while the budget is used up (the driver waking on its grid),
//! a stall then a SIGKILL (both also with TCP probes, held back while another helper holds
//! any), an exit leaving a child that holds the pipes, stdout or stdin closed with the
//! process alive, a junk flood, stray lines and answers for tokens never sent, a helper
//! answering one probe in three, the campaign dropped mid-way, the session closed
//! mid-campaign; and how soon a death during a rest fails a caller's probe
//! ([`DEATH_SEEN`]). Each checks every target reported once, every probe answered or lost,
//! the campaign back within [`FAULT_BOUND`], each caller's probe within [`CALLER_BOUND`],
//! and the process's peak memory under [`RSS_BOUND_KB`].

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mtrproto_blocking::{
    CampaignLimits, CampaignSummary, Error, Protocol, Session, TraceConfig, TraceOptions,
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

/// What one campaign gave: reports by index, its summary (`None` when its callback
/// panicked), whether every report held figures.
struct Outcome {
    reports: BTreeMap<usize, u32>,
    summary: Option<Result<CampaignSummary, Error>>,
    every_report_traced: bool,
    elapsed: Duration,
}

fn run_campaign(session: &Session, round: &Round, panic_at: Option<usize>) -> Outcome {
    let hosts = hosts(round.targets);
    let options = options(round);
    let mut reports: BTreeMap<usize, u32> = BTreeMap::new();
    let mut probes_reported = 0u64;
    let mut every_report_traced = true;
    let start = Instant::now();
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
        session.campaign_reports(&hosts, &options, &round.limits, |report| {
            assert!(report.index < hosts.len(), "{report:?}");
            assert_eq!(report.host, hosts[report.index]);
            match &report.stats {
                // Every TTL's, the ones past the destination's too (not in `hops()`).
                Ok(stats) => {
                    probes_reported += (1..=MAX_TTL)
                        .filter_map(|ttl| stats.hop(ttl))
                        .map(|hop| hop.sent())
                        .sum::<u64>();
                }
                Err(_) => every_report_traced = false,
            }
            *reports.entry(report.index).or_default() += 1;
            if Some(reports.len() - 1) == panic_at {
                panic!("the callback gives up");
            }
        })
    }));
    let elapsed = start.elapsed();
    let summary = match result {
        Ok(summary) => Some(summary),
        Err(_) => {
            assert!(panic_at.is_some(), "a panic nobody asked for");
            None
        }
    };
    if let Some(Ok(summary)) = &summary {
        // Every probe sent is in its target's report, and every one of them was answered
        // or lost: the campaign waited for them.
        if every_report_traced {
            assert_eq!(
                summary.probes, probes_reported,
                "{summary:?}, {probes_reported} reported"
            );
        }
        assert!(
            summary.probes >= probes_reported,
            "{summary:?}, {probes_reported} reported"
        );
        assert_eq!(
            summary.answered + summary.lost,
            summary.probes,
            "{summary:?}"
        );
        assert!(
            summary.no_reply + summary.exhausted + summary.probes_refused <= summary.answered,
            "{summary:?}"
        );
        assert!(summary.peak_in_flight <= round.limits.max_in_flight.unwrap_or(usize::MAX));
    }
    Outcome {
        reports,
        summary,
        every_report_traced,
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
        let summary = outcome
            .summary
            .expect("run to its end")
            .expect("the session stays open");
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

// One misbehaviour at a time, each against a campaign over one helper and over two (only
// one of them misbehaving, once: `--first-only`), with a caller probing through
// `probe_blocking` on the same session meanwhile.

/// How long a campaign of [`play`] may take at most: its traces' own span (two rounds 100
/// ms apart, then the timeout and the trace's grace: 1.4 s; 1.8 s with the budget of two
/// slots of [`dies_while_the_budget_is_used_up`]), its probes still out then answered or lost within their
/// timeout and the session's grace (2 s), and a second for restarts, the 20 ms rests of a
/// stdout and the wake-ups' grid.
const FAULT_BOUND: Duration = Duration::from_millis(4800);

/// Peak resident memory allowed for the whole test process, in kB.
const RSS_BOUND_KB: u64 = 128 * 1024;

/// How long a caller's `probe_blocking` may block: the probe's timeout and the session's
/// grace (a helper that stalls), and a second for wake-ups and a restart.
const CALLER_BOUND: Duration = Duration::from_secs(3);

/// What a test does to the session from another thread, given the process id of the
/// helper that misbehaves.
type Act = fn(&Session, u32);

/// One misbehaviour played against a campaign.
struct Fault {
    helpers: usize,
    /// The fake helper's arguments: what the one that misbehaves does.
    args: &'static [&'static str],
    /// Each helper's window (the release's when `None`).
    window: Option<usize>,
    targets: usize,
    /// Done from another thread this long after the campaign starts, given the process id
    /// of the helper that misbehaves.
    act: Option<(Duration, Act)>,
    /// The campaign's callback panics at this report (the campaign dropped mid-way); a
    /// second one then runs on the session.
    panic_at: Option<usize>,
    /// The campaign's probes' (the caller's are ICMP).
    protocol: Protocol,
}

impl Fault {
    fn new(helpers: usize, args: &'static [&'static str]) -> Fault {
        Fault {
            helpers,
            args,
            window: None,
            targets: 6,
            act: None,
            panic_at: None,
            protocol: Protocol::Icmp,
        }
    }
}

/// What [`play`] saw.
struct Played {
    /// The (last) campaign's.
    outcome: Outcome,
    /// How each of the caller's `probe_blocking` calls ended.
    caller: Vec<&'static str>,
    /// The session's helpers at the end.
    helpers: Vec<mtrproto_blocking::HelperStatus>,
    /// The process id of the helper that misbehaved, 0 if none started misbehaving.
    misbehaved: u32,
    session: Arc<Session>,
    /// The `--first-only` file, kept until the session is closed.
    first_only: HelperFile,
}

impl Played {
    fn summary(&self) -> &CampaignSummary {
        match &self.outcome.summary {
            Some(Ok(summary)) => summary,
            other => panic!(
                "the campaign did not run to its end: {:?}",
                other.as_ref().map(|r| r.as_ref().err())
            ),
        }
    }

    fn restarts(&self) -> u32 {
        self.helpers.iter().map(|h| h.restarts).sum()
    }
}

/// A file the fake helpers are given (`--first-only`, `--read-log`). On drop it closes the
/// session given to [`HelperFile::watch`], then removes the file: a helper started after
/// the removal (a session outlives [`play`], restarts come on a timer) would create it
/// again (with `--first-only`, misbehave as the first too) and leave it behind.
struct HelperFile {
    path: std::path::PathBuf,
    session: Option<Arc<Session>>,
}

impl HelperFile {
    fn new(kind: &str) -> HelperFile {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("mtrproto-{kind}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        HelperFile {
            path,
            session: None,
        }
    }

    /// The session whose helpers are given the file, closed before it is removed.
    fn watch(&mut self, session: &Arc<Session>) {
        self.session = Some(Arc::clone(session));
    }

    /// The process id a `--first-only` helper wrote, 0 while none did.
    fn pid(&self) -> u32 {
        pid_in(&self.path)
    }
}

/// The process id a `--first-only` helper wrote to `path`, 0 while none did.
fn pid_in(path: &std::path::Path) -> u32 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

impl Drop for HelperFile {
    fn drop(&mut self) {
        // Closed here even while other threads still hold it: its helpers are killed and
        // none is started again. Not while a failed test unwinds: its driver may be wedged
        // (what these tests catch), and `close` would wait for it without bound, hanging the
        // run instead of failing it. The file may then be left behind (and re-created by a
        // helper started later).
        if let Some(session) = self.session.take()
            && !std::thread::panicking()
        {
            session.close();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Runs `work` on a thread of its own and returns its result, failing the test if it takes
/// longer than `bound` (or panics).
fn within<T: Send + 'static>(
    what: &str,
    bound: Duration,
    work: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (done, result) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || {
        let _ = done.send(work());
    });
    match result.recv_timeout(bound) {
        Ok(value) => value,
        Err(crossbeam_channel::RecvTimeoutError::Timeout) => panic!("{what}: over {bound:?}"),
        Err(crossbeam_channel::RecvTimeoutError::Disconnected) => panic!("{what} panicked"),
    }
}

/// Probes 127.0.0.9 with `probe_blocking` until `stop`, 100 probes at most: how each call
/// ended. Each call returns within [`CALLER_BOUND`].
fn blocking_caller(session: Arc<Session>, stop: Arc<AtomicBool>) -> Vec<&'static str> {
    use mtrproto_blocking::ProcessError;
    let options = mtrproto_blocking::ProbeOptions {
        timeout: Some(TIMEOUT),
        ..Default::default()
    };
    let mut outcomes = Vec::new();
    while !stop.load(Ordering::Acquire) && outcomes.len() < 100 {
        let start = Instant::now();
        let result = session.probe_blocking("127.0.0.9", &options);
        let took = start.elapsed();
        assert!(
            took <= CALLER_BOUND,
            "probe_blocking took {took:?}: {result:?}"
        );
        outcomes.push(match result {
            Ok(_) => "answered",
            Err(Error::Process(ProcessError::Exited { .. })) => "exited",
            Err(Error::Process(ProcessError::Unresponsive)) => "unresponsive",
            Err(Error::Process(ProcessError::NotMtrPacket { .. })) => "junk",
            Err(Error::State(_)) => "closed",
            Err(_) => "other",
        });
        std::thread::sleep(Duration::from_millis(20));
    }
    outcomes
}

/// Plays `fault`: a campaign over the fake helpers (one misbehaving once), a caller
/// probing with `probe_blocking` meanwhile, the fault's act from a third thread. Checks
/// what holds whatever the fault: each target reported exactly once, the campaign back
/// within [`FAULT_BOUND`], each caller's probe within [`CALLER_BOUND`], the in-flight
/// budget kept, and when the campaign runs to its end every probe sent in a report and
/// answered or lost ([`run_campaign`]).
fn play(fault: Fault) -> Played {
    let mut first_only = HelperFile::new("first-only");
    let mut args: Vec<String> = fault.args.iter().map(|&a| a.to_owned()).collect();
    args.extend(["--first-only".into(), first_only.path.display().to_string()]);
    let mut builder = Session::builder()
        .program(FAKE, args.iter().map(String::as_str))
        .helpers(fault.helpers)
        .grace(GRACE);
    if let Some(window) = fault.window {
        builder = builder.window(window);
    }
    let session = Arc::new(builder.open().expect("open the fake helpers"));
    first_only.watch(&session);
    let budget = session.window() * fault.helpers;
    let round = Round {
        helpers: fault.helpers,
        behaviour: args,
        protocol: fault.protocol,
        flows: 0,
        targets: fault.targets,
        limits: CampaignLimits::default(),
        signals: false,
        prober: true,
        panic_at: fault.panic_at,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let caller = {
        let (session, stop) = (Arc::clone(&session), Arc::clone(&stop));
        std::thread::spawn(move || blocking_caller(session, stop))
    };
    let act = fault.act.map(|(after, act)| {
        let session = Arc::clone(&session);
        let path = first_only.path.clone();
        std::thread::spawn(move || {
            std::thread::sleep(after);
            act(&session, pid_in(&path));
        })
    });
    let campaign = {
        let session = Arc::clone(&session);
        within("the campaign", FAULT_BOUND * 2, move || {
            let first = run_campaign(&session, &round, round.panic_at);
            if first.summary.is_some() {
                return (first, round);
            }
            // Abandoned mid-way: the session still runs a whole campaign.
            let second = run_campaign(&session, &round, None);
            (second, round)
        })
    };
    let (outcome, round) = campaign;
    if let Some(act) = act {
        within("the act", FAULT_BOUND, move || act.join().expect("the act"));
    }
    stop.store(true, Ordering::Release);
    let caller = within("the caller", CALLER_BOUND * 2, move || {
        caller.join().expect("the caller's probes end in time")
    });
    println!(
        "{} helpers {:?}: {} reports in {:?}, {:?}; caller {caller:?}; helpers {:?}",
        fault.helpers,
        fault.args,
        outcome.reports.len(),
        outcome.elapsed,
        outcome.summary.as_ref().map(|s| s.as_ref().ok()),
        session.helpers()
    );
    assert!(
        outcome.elapsed < FAULT_BOUND,
        "the campaign took {:?}",
        outcome.elapsed
    );
    assert!(
        outcome.reports.values().all(|&n| n == 1),
        "a target reported twice: {:?}",
        outcome.reports
    );
    if let Some(Ok(summary)) = &outcome.summary {
        assert_eq!(
            outcome.reports.keys().copied().collect::<Vec<_>>(),
            (0..round.targets).collect::<Vec<_>>(),
            "every target reported"
        );
        assert_eq!(summary.targets, round.targets);
        assert!(summary.peak_in_flight <= budget, "{summary:?}");
    }
    assert!(!caller.is_empty(), "the caller probed");
    // Junk is counted, not kept, and every queue is bounded (the whole test process's).
    let peak = mtrproto_tests::peak_rss_kb();
    assert!(peak < RSS_BOUND_KB, "peak RSS {peak} kB");
    Played {
        outcome,
        caller,
        helpers: session.helpers(),
        misbehaved: first_only.pid(),
        session,
        first_only,
    }
}

/// Sends `name` to the helper that misbehaves.
fn signal_misbehaving(pid: u32, name: &str) {
    assert_ne!(pid, 0, "no helper misbehaved yet");
    signal(pid, name);
}

/// The helper that misbehaved was ended and its slot started another (within a second of
/// the end of [`play`]: a helper is started again once the one it replaces is reaped, on a
/// timer), and every trace went on over its successor or the other helper.
fn assert_restarted(played: &Played) {
    let start = Instant::now();
    let replaced = || {
        let helpers = played.session.helpers();
        let restarts: u32 = helpers.iter().map(|h| h.restarts).sum();
        restarts >= 1 && helpers.iter().all(|h| h.pid != played.misbehaved)
    };
    while !replaced() && start.elapsed() < Duration::from_secs(1) {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(replaced(), "not replaced: {:?}", played.session.helpers());
    assert!(played.outcome.every_report_traced);
}

/// The helper exits right after answering: with output just read its stdout rests (20 ms
/// while a campaign runs), and the end is found at the rest's end.
fn dies_during_a_rest(helpers: usize) {
    let played = play(Fault::new(helpers, &["--exit-after", "6"]));
    assert_restarted(&played);
    let summary = played.summary();
    // The first process answered at most its 4 probes (after two checks), some of them
    // the caller's: the rest came from its successor or the other helper.
    assert!(summary.answered > 4, "{summary:?}");
}

/// Windows of two slots and answers 150 ms late: the campaign's budget is used up and its
/// wake-ups fall on its grid, targets waiting for room, when the helper dies.
fn dies_while_the_budget_is_used_up(helpers: usize) {
    let played = play(Fault {
        window: Some(2),
        targets: 4,
        ..Fault::new(helpers, &["--exit-after", "6", "--delay-ms", "150"])
    });
    assert_restarted(&played);
    let summary = played.summary();
    assert!(summary.lost >= 1, "{summary:?}");
}

/// The helper answers nothing, then is killed before the watchdog would end it.
fn stalls_then_dies(helpers: usize) {
    let played = play(Fault {
        act: Some((Duration::from_millis(500), |_, pid| {
            signal_misbehaving(pid, "KILL");
        })),
        ..Fault::new(helpers, &["--stall"])
    });
    assert_restarted(&played);
    assert!(played.summary().lost >= 1, "{:?}", played.summary());
}

/// A helper that floods junk lines is ended after the grace, the flood counted, not kept
/// ([`play`] checks the memory).
fn floods_junk(helpers: usize) {
    assert_restarted(&play(Fault::new(helpers, &["--junk-after", "6"])));
}

/// Before every answer, a line of garbage, an unsolicited line and an answer for a token
/// never sent: diagnostics, and no probe lost or helper ended for them.
fn writes_stray_lines(helpers: usize) {
    let played = play(Fault::new(helpers, &["--garbage", "--foreign"]));
    let summary = played.summary();
    assert_eq!(
        (summary.lost, summary.answered),
        (0, summary.probes),
        "{summary:?}"
    );
    assert_eq!(played.restarts(), 0, "{:?}", played.helpers);
    assert!(
        played.caller.iter().all(|&c| c == "answered"),
        "{:?}",
        played.caller
    );
    let seen = |kind: &str| {
        played
            .helpers
            .iter()
            .flat_map(|h| &h.recent_diagnostics)
            .any(|d| d.starts_with(kind))
    };
    for kind in ["UnknownToken", "Unsolicited", "Frame"] {
        assert!(seen(kind), "no {kind} diagnostic: {:?}", played.helpers);
    }
}

/// A helper that answers one probe in three: the others are lost at their timeout and the
/// grace, and the traces go on.
fn answers_some(helpers: usize) {
    let played = play(Fault::new(helpers, &["--answer-every", "3"]));
    let summary = played.summary();
    assert!(summary.lost >= 1, "{summary:?}");
    assert!(summary.answered >= 1, "{summary:?}");
    assert!(played.outcome.every_report_traced);
}

/// The campaign's callback panics at its second report, probes 150 ms from their answers
/// still out: the caller's probes go on, and a campaign after it reports every target.
fn campaign_dropped(helpers: usize) {
    let played = play(Fault {
        panic_at: Some(1),
        ..Fault::new(helpers, &["--delay-ms", "150"])
    });
    assert_eq!(played.summary().lost, 0, "{:?}", played.summary());
    assert!(
        played.caller.iter().all(|&c| c == "answered"),
        "{:?}",
        played.caller
    );
}

/// The session is closed from another thread while a helper stalls (a `Session` is closed
/// when dropped, and a campaign borrows it: closing is how it goes away under one): the
/// campaign fails with the session's error, and so do the caller's later probes, in time.
fn session_closed(helpers: usize) {
    let played = play(Fault {
        act: Some((Duration::from_millis(500), |session, _| session.close())),
        ..Fault::new(helpers, &["--stall"])
    });
    assert!(
        matches!(played.outcome.summary, Some(Err(Error::State(_)))),
        "{:?}",
        played.outcome.summary.as_ref().map(|s| s.as_ref().err())
    );
    // Answered by the helper that does not stall, then the probe out at the close (if
    // any) ends with its helper's end, and every later one is refused.
    let ended = played.caller.iter().position(|&c| c != "answered");
    assert!(
        ended.is_none_or(|at| played.caller[at + 1..].iter().all(|&c| c == "closed")),
        "{:?}",
        played.caller
    );
    let options = mtrproto_blocking::ProbeOptions::default();
    let after = played.session.probe_blocking("127.0.0.1", &options);
    assert!(matches!(after, Err(Error::State(_))), "{after:?}");
}

/// TCP probes, which any helper's probes could take the answers of: a helper's death
/// leaves every TCP probe held for the quiet after it (the dead one's timeout), and a
/// helper holding any probe holds back the one with TCP probes, so over two helpers the
/// stalled one holds the campaign back until it is killed.
///
/// The helper that misbehaves exits after its first probe (its two checks before it):
/// over two helpers, run alone on an idle machine, it got only two or three probes, so an
/// exit after the fourth never came.
fn tcp_dies_during_a_rest(helpers: usize) {
    let played = play(Fault {
        protocol: Protocol::Tcp,
        ..Fault::new(helpers, &["--exit-after", "3"])
    });
    // Over two helpers every TCP probe goes to one slot (`SHARED`'s), and the helper that
    // misbehaves, the first to start, is mostly the other: it gets only the caller's probes
    // that come between the campaign's TCP ones. On busy cores the campaign once ended
    // before it had its second (3 in 10 runs): then the caller's probes go on until it has.
    let options = mtrproto_blocking::ProbeOptions {
        timeout: Some(TIMEOUT),
        ..Default::default()
    };
    let start = Instant::now();
    let mut more = 0;
    while played
        .session
        .helpers()
        .iter()
        .any(|h| h.pid == played.misbehaved)
        && start.elapsed() < FAULT_BOUND
    {
        let _ = played.session.probe_blocking("127.0.0.9", &options);
        more += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    println!("{more} more probes before the misbehaving helper was gone");
    assert_restarted(&played);
}

/// TCP probes, the helper stalling, then killed.
fn tcp_stalls_then_dies(helpers: usize) {
    let played = play(Fault {
        protocol: Protocol::Tcp,
        act: Some((Duration::from_millis(500), |_, pid| {
            signal_misbehaving(pid, "KILL");
        })),
        ..Fault::new(helpers, &["--stall"])
    });
    assert_restarted(&played);
}

/// A helper exits, leaving a child that holds its stdin and stdout open: no end of output
/// tells of the death, the liveness check does.
fn exits_leaving_an_orphan(helpers: usize) {
    assert_restarted(&play(Fault::new(helpers, &["--orphan-after", "6"])));
}

/// A helper closes stdout, and lives on.
fn closes_stdout(helpers: usize) {
    assert_restarted(&play(Fault::new(helpers, &["--close-stdout-after", "6"])));
}

/// A helper closes stdin, and lives on.
fn closes_stdin(helpers: usize) {
    assert_restarted(&play(Fault::new(helpers, &["--close-stdin-after", "6"])));
}

/// A helper started after [`play`] returned, while the test goes on with its session, is
/// not the first: it behaves, and once the played session is gone so is the `--first-only`
/// file. (The file was removed at `play`'s end, so such a helper created it again,
/// misbehaved, and left it in the temporary directory.)
#[test]
fn a_helper_started_after_the_play_behaves_and_leaves_no_file() {
    let played = play(Fault::new(1, &["--exit-after", "6"]));
    assert_restarted(&played);
    // The successor is killed: its slot starts another (at the next probe at the latest).
    signal(played.session.helper_pid(), "KILL");
    let options = mtrproto_blocking::ProbeOptions {
        timeout: Some(TIMEOUT),
        ..Default::default()
    };
    let start = Instant::now();
    let answered = loop {
        let answered = played.session.probe_blocking("127.0.0.9", &options).is_ok();
        let helper = played.session.helpers().remove(0);
        if answered && helper.restarts >= 2 || start.elapsed() > FAULT_BOUND {
            break answered;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(answered, "{:?}", played.session.helpers());
    let newest = played.session.helper_pid();
    assert_ne!(
        pid_in(&played.first_only.path),
        newest,
        "the newest helper misbehaved"
    );
    // Six more probes (past `--exit-after 6`): the newest helper answers them all.
    for _ in 0..6 {
        let probe = played.session.probe_blocking("127.0.0.9", &options);
        assert!(probe.is_ok(), "{probe:?}");
    }
    let path = played.first_only.path.clone();
    drop(played);
    assert!(!path.exists(), "{} left behind", path.display());
}

/// A test that fails while its session's driver is wedged (what these tests exist to catch)
/// fails at its bound: the [`HelperFile`] dropped while it unwinds does not wait for that
/// driver. (It closed the session, which joins the driver thread without bound: the run
/// hung.)
#[test]
fn a_failing_test_with_a_wedged_driver_is_not_held_by_its_helper_file() {
    let session = Arc::new(
        Session::builder()
            .program(FAKE, [] as [&str; 0])
            .open()
            .expect("open the fake helper"),
    );
    // A callback that blocks the driver thread until released (or a minute passes).
    let (release, released) = crossbeam_channel::bounded::<()>(1);
    let (entered, wedged) = crossbeam_channel::bounded(1);
    session
        .probe_with("127.0.0.9", &Default::default(), move |_| {
            let _ = entered.send(());
            let _ = released.recv_timeout(Duration::from_secs(60));
        })
        .expect("the probe is accepted");
    wedged
        .recv_timeout(SLACK)
        .expect("the callback runs on the driver");
    let failing = Arc::clone(&session);
    let failed = within("the failing test", SLACK, move || {
        std::panic::catch_unwind(AssertUnwindSafe(|| {
            let mut file = HelperFile::new("wedged");
            file.watch(&failing);
            panic!("a check failed");
        }))
        .is_err()
    });
    assert!(failed);
    let _ = release.send(());
    session.close();
}

/// How soon a helper's death is seen while a campaign keeps its stdout resting: the rest
/// (20 ms while a campaign runs) and a wake-up, with room for a loaded machine; a death
/// seen only by a watchdog would take the probes' timeout and the grace (2 s). (At 250 ms,
/// two helpers' deaths were seen after up to 646 ms under nice 19 on 2 busy cores, in 2 of
/// 10 runs of the file; half the watchdog's 2 s still tells the two apart.)
const DEATH_SEEN: Duration = Duration::from_secs(1);

/// Helpers killed while a campaign keeps their stdout resting (every probe answered at
/// once, so each read starts a 20 ms rest): a caller's probe held by one (TTL 30, which it
/// never answers) fails within [`DEATH_SEEN`] of the kill, 5 times over; the campaign then
/// reports every target over their successors.
fn death_seen_during_a_rest(helpers: usize) {
    let mut seen = Vec::new();
    for _ in 0..5 {
        let mut log = HelperFile::new("rest-death");
        let session = Arc::new(
            Session::builder()
                .program(
                    FAKE,
                    [
                        "--reply-at",
                        "30:none",
                        "--read-log",
                        log.path.to_str().unwrap(),
                    ],
                )
                .helpers(helpers)
                .grace(GRACE)
                .open()
                .expect("open the fake helpers"),
        );
        log.watch(&session);
        let campaign = {
            let session = Arc::clone(&session);
            std::thread::spawn(move || {
                let options = TraceOptions {
                    trace: TraceConfig {
                        cycles: 15,
                        max_ttl: MAX_TTL,
                        interval: Duration::from_millis(20),
                        timeout: TIMEOUT,
                        grace: Duration::from_millis(300),
                        ..TraceConfig::default()
                    },
                    ..TraceOptions::default()
                };
                let mut reports = 0;
                // Returned, not unwrapped here: where the test failed, its guard may have
                // closed the session, and this thread's panic would hide the first.
                let summary =
                    session.campaign_reports(hosts(4), &options, &CampaignLimits::default(), |r| {
                        assert!(r.stats.is_ok(), "{r:?}");
                        reports += 1;
                    });
                (reports, summary)
            })
        };
        std::thread::sleep(Duration::from_millis(100));
        let (done, completed) = crossbeam_channel::bounded(1);
        let options = mtrproto_blocking::ProbeOptions {
            ttl: Some(30),
            timeout: Some(TIMEOUT),
            ..Default::default()
        };
        session
            .probe_with("127.0.0.9", &options, move |result| {
                let _ = done.send((Instant::now(), result));
            })
            .expect("the probe is accepted");
        // Until the helper has read it: it is then in flight there.
        let asked = Instant::now();
        while !std::fs::read_to_string(&log.path)
            .unwrap_or_default()
            .lines()
            .any(|l| l.contains("ttl 30"))
        {
            assert!(asked.elapsed() < Duration::from_secs(2), "never read");
            std::thread::sleep(Duration::from_millis(2));
        }
        let killed = Instant::now();
        for pid in session.helper_pids() {
            signal(pid, "KILL");
        }
        let (at, result) = completed
            .recv_timeout(TIMEOUT + GRACE + SLACK)
            .expect("the probe completes");
        assert!(result.is_err(), "{result:?}");
        seen.push(at.saturating_duration_since(killed));
        let (reports, summary) = within("the campaign", FAULT_BOUND, move || {
            campaign.join().expect("the campaign runs to its end")
        });
        let summary = summary.expect("the session stays open");
        assert_eq!(reports, 4);
        assert_eq!(
            summary.answered + summary.lost,
            summary.probes,
            "{summary:?}"
        );
    }
    seen.sort_unstable();
    println!("{helpers} helpers: deaths seen {seen:?} after the kill");
    assert!(seen.iter().all(|&s| s <= DEATH_SEEN), "{seen:?}");
}

/// Two tests per fault, `FAULT::one_helper` and `FAULT::two_helpers` (one of them
/// misbehaving).
macro_rules! over_one_and_two_helpers {
    ($($fault:ident),* $(,)?) => {
        $(
            mod $fault {
                #[test]
                fn one_helper() {
                    super::$fault(1);
                }

                #[test]
                fn two_helpers() {
                    super::$fault(2);
                }
            }
        )*
    };
}

over_one_and_two_helpers!(
    dies_during_a_rest,
    dies_while_the_budget_is_used_up,
    stalls_then_dies,
    tcp_dies_during_a_rest,
    tcp_stalls_then_dies,
    exits_leaving_an_orphan,
    closes_stdout,
    closes_stdin,
    floods_junk,
    writes_stray_lines,
    answers_some,
    campaign_dropped,
    session_closed,
    death_seen_during_a_rest,
);
