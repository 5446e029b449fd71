//! Campaigns and `Session::trace` through the fake and scripted helpers (no packet is sent):
//! every target reported once, the in-flight budget, the rate cap, fairness between targets,
//! campaigns at once, the bound on targets traced at once, targets that cannot be traced,
//! and a callback that panics mid-batch.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use mtrproto_blocking::{
    CampaignEvent, CampaignLimits, CampaignSummary, Error, IpVersion, Session, TraceConfig,
    TraceOptions,
};
use mtrproto_tests::REFUSALS;
use mtrproto_tests::script::{HopPlan, SEED_ENV, Script};

const FAKE: &str = env!("CARGO_BIN_EXE_fake-mtr-packet");
const SCRIPTED: &str = env!("CARGO_BIN_EXE_scripted-mtr-packet");

/// A session on the fake helper, answering `reply` from the target after `delay_ms`.
fn fake(delay_ms: u64) -> Session {
    let delay = delay_ms.to_string();
    Session::builder()
        .program(FAKE, ["--delay-ms", delay.as_str()])
        .open()
        .expect("open the fake helper")
}

fn options(cycles: u32, interval_ms: u64) -> TraceOptions {
    TraceOptions {
        trace: TraceConfig {
            cycles,
            interval: Duration::from_millis(interval_ms),
            timeout: Duration::from_secs(1),
            grace: Duration::from_millis(500),
            ..TraceConfig::default()
        },
        ..TraceOptions::default()
    }
}

fn hosts(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("127.0.0.{i}")).collect()
}

#[test]
fn every_target_is_reported_once_within_the_in_flight_budget() {
    let session = fake(30);
    let limits = CampaignLimits {
        max_in_flight: Some(5),
        ..CampaignLimits::default()
    };
    let hosts = hosts(30);
    let mut reports = BTreeMap::new();
    let mut probes = 0;
    let summary = session
        .campaign(&hosts, &options(3, 100), &limits, |event| {
            if let CampaignEvent::Done(report) = event {
                let stats = report.stats.expect("traced");
                probes += stats.hops().iter().map(|h| h.sent()).sum::<u64>();
                assert_eq!(stats.target().to_string(), report.host);
                assert!(
                    reports.insert(report.index, stats).is_none(),
                    "reported twice"
                );
            }
        })
        .unwrap();
    assert_eq!(reports.len(), 30);
    assert_eq!(
        reports.keys().copied().collect::<Vec<_>>(),
        (0..30).collect::<Vec<_>>()
    );
    assert_eq!((summary.targets, summary.failed), (30, 0));
    assert!(summary.peak_in_flight <= 5, "{summary:?}");
    // Probes past TTL 1 went out before the first answers came back (reports leave them
    // out, as mtr's do).
    assert!(summary.probes >= probes, "{summary:?}");
    assert_eq!(probes, 90);
    for stats in reports.values() {
        // The fake helper answers from the target at every TTL: it is at TTL 1, and
        // rounds after the first stop there.
        assert_eq!(stats.destination_ttl(), Some(1));
        let hop = &stats.hops()[0];
        assert_eq!((hop.sent(), hop.received()), (3, 3));
    }
}

#[test]
fn the_rate_cap_spaces_probes() {
    let session = fake(0);
    let limits = CampaignLimits {
        rate: Some(100),
        ..CampaignLimits::default()
    };
    let start = Instant::now();
    let summary = session
        .campaign(hosts(10), &options(2, 10), &limits, |_| {})
        .unwrap();
    let elapsed = start.elapsed();
    assert_eq!(summary.targets, 10);
    assert!(summary.probes >= 30, "{summary:?}");
    // 10 ms apart at 100 probes/s, the first at once.
    let least = Duration::from_millis(10) * (summary.probes as u32 - 1);
    assert!(elapsed >= least, "{} probes in {elapsed:?}", summary.probes);
}

/// With room for one probe at a time, the target waiting longest goes first: no target
/// gets two rounds ahead of another.
#[test]
fn a_tight_budget_is_shared_fairly() {
    let session = fake(20);
    let limits = CampaignLimits {
        max_in_flight: Some(1),
        ..CampaignLimits::default()
    };
    assert_every_target_keeps_pace(&session, &options(6, 50), &limits);
}

/// Runs a campaign of `targets` hosts, each traced without error; returns its summary and
/// how long after the start the first report came.
fn first_report(
    session: &Session,
    targets: usize,
    options: &TraceOptions,
    limits: &CampaignLimits,
) -> (CampaignSummary, Duration) {
    let start = Instant::now();
    let mut first = None;
    let summary = session
        .campaign_reports(hosts(targets), options, limits, |report| {
            assert!(report.stats.is_ok(), "{report:?}");
            first.get_or_insert_with(|| start.elapsed());
        })
        .unwrap();
    (summary, first.expect("a report"))
}

/// Runs a campaign of 4 targets x 6 rounds and asserts that each did its 6 rounds and no
/// target was ever two rounds ahead of another.
fn assert_every_target_keeps_pace(
    session: &Session,
    options: &TraceOptions,
    limits: &CampaignLimits,
) {
    let mut rounds = [0u32; 4];
    let mut worst_spread = 0;
    session
        .campaign(hosts(4), options, limits, |event| {
            if let CampaignEvent::Round { index, round, .. } = event {
                rounds[index] = round;
                let (min, max) = (rounds.iter().min().unwrap(), rounds.iter().max().unwrap());
                worst_spread = worst_spread.max(max - min);
            }
        })
        .unwrap();
    assert_eq!(rounds, [6; 4]);
    assert!(
        worst_spread <= 1,
        "a target got {worst_spread} rounds ahead"
    );
}

#[test]
fn max_active_bounds_the_targets_traced_at_once() {
    let session = fake(10);
    let limits = CampaignLimits {
        max_active: 2,
        ..CampaignLimits::default()
    };
    let mut active = HashSet::new();
    let mut most = 0;
    let mut order = Vec::new();
    session
        .campaign(hosts(6), &options(2, 50), &limits, |event| match event {
            CampaignEvent::Round { index, .. } => {
                active.insert(index);
                most = most.max(active.len());
            }
            CampaignEvent::Done(report) => {
                active.remove(&report.index);
                order.push(report.index);
            }
            _ => {}
        })
        .unwrap();
    assert_eq!(most, 2);
    order.sort_unstable();
    assert_eq!(order, (0..6).collect::<Vec<_>>());
}

#[test]
fn a_target_that_cannot_be_traced_is_reported_and_the_others_go_on() {
    let session = fake(0);
    let mut options = options(1, 20);
    options.probe.ip_version = Some(IpVersion::V4);
    let hosts = ["127.0.0.1", "::1", "127.0.0.2"];
    let mut outcomes = BTreeMap::new();
    let summary = session
        .campaign(hosts, &options, &CampaignLimits::default(), |event| {
            if let CampaignEvent::Done(report) = event {
                outcomes.insert(report.index, report.stats.map(|s| s.destination_ttl()));
            }
        })
        .unwrap();
    assert_eq!((summary.targets, summary.failed), (3, 1));
    assert!(matches!(outcomes[&0], Ok(Some(1))));
    assert!(
        matches!(outcomes[&1], Err(Error::HostResolve(_))),
        "{:?}",
        outcomes[&1]
    );
    assert!(matches!(outcomes[&2], Ok(Some(1))));
}

#[test]
fn a_closed_session_fails_the_campaign() {
    let session = fake(0);
    session.close();
    let result = session.campaign(
        hosts(2),
        &options(1, 20),
        &CampaignLimits::default(),
        |_| panic!("no report from a closed session"),
    );
    assert!(matches!(result, Err(Error::State(_))), "{result:?}");
    assert!(matches!(
        session.trace("127.0.0.1", &options(1, 20)),
        Err(Error::State(_))
    ));
}

#[test]
fn a_helper_that_never_answers_ends_each_trace_within_its_grace() {
    // The session's grace bounds the opening checks' answers, not the trace: at 200 ms the
    // fake helper, started on busy cores, answered too late and open failed (2 in 20 runs
    // of the file there).
    let session = Session::builder()
        .program(FAKE, ["--stall"])
        .grace(Duration::from_secs(1))
        .open()
        .unwrap();
    let mut options = options(1, 100);
    options.trace.max_ttl = 3;
    let start = Instant::now();
    let stats = session.trace("127.0.0.1", &options).unwrap();
    // Three probes 10 ms apart, the tick 10 ms later, then 500 ms of grace.
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    assert!(stats.hops().is_empty(), "nothing answered");
}

#[test]
fn trace_returns_at_the_end_of_its_grace_without_waiting_for_probes_still_out() {
    // The helper answers 3 s after each probe; the trace's grace ends long before. mtr's
    // report comes then and mtr exits, abandoning the probes still out: `Session::trace`
    // returns then too (a campaign waits for them, to count their outcomes).
    let session = fake(3000);
    let mut options = options(1, 20);
    options.trace.max_ttl = 1;
    options.trace.grace = Duration::from_millis(100);
    options.trace.timeout = Duration::from_secs(5);
    let start = Instant::now();
    let stats = session.trace("127.0.0.1", &options).unwrap();
    let took = start.elapsed();
    assert!(took < Duration::from_secs(2), "returned after {took:?}");
    assert!(stats.hops().is_empty(), "nothing answered in time");
    // The abandoned probe's answer disturbs nothing: the next trace is answered.
    let mut options = options.clone();
    options.trace.grace = Duration::from_secs(5);
    let stats = session.trace("127.0.0.1", &options).unwrap();
    assert_eq!(stats.destination_ttl(), Some(1));
}

#[test]
fn a_trace_after_one_that_abandoned_its_probes_waits_for_room_before_its_clock_runs() {
    // The first trace returns at its grace, leaving both of the window's probes out for
    // 1 s more (the helper answers 1 s after each). The next trace's budget is the whole
    // window: without counting the abandoned probes, its probe waited behind them in the
    // helper's backlog while its trace's clock ran, went out at 1 s, and its answer (at
    // 2 s) came after its grace (1.5 s): reported lost, though the helper answered it as
    // any other. Counted, the trace waits to send until there is room.
    let session = Session::builder()
        .program(FAKE, ["--delay-ms", "1000"])
        .window(2)
        .open()
        .unwrap();
    let mut first = options(2, 10);
    first.trace.max_ttl = 1;
    first.trace.grace = Duration::from_millis(50);
    first.trace.timeout = Duration::from_secs(5);
    let stats = session.trace("127.0.0.1", &first).unwrap();
    assert!(stats.hops().is_empty(), "nothing answered in time");
    let mut next = options(1, 10);
    next.trace.max_ttl = 1;
    next.trace.grace = Duration::from_millis(1500);
    next.trace.timeout = Duration::from_secs(5);
    let started = Instant::now();
    let stats = session.trace("127.0.0.1", &next).unwrap();
    let took = started.elapsed();
    assert_eq!(
        stats.destination_ttl(),
        Some(1),
        "after {took:?}: {stats:?}"
    );
    assert_eq!(stats.hops()[0].loss_percent(), 0.0);
    // It waited for room (about 1 s), then for its answer (1 s).
    assert!(took >= Duration::from_millis(1800), "{took:?}");
}

/// A path script with no loss, no unreachable hop and one router per hop, so that every
/// trace sees the same hops.
fn clean_script() -> (u64, Script) {
    (0..1000)
        .map(|seed| (seed, Script::from_seed(seed)))
        .find(|(_, s)| {
            s.target_loss == 0
                && s.hops.len() >= 3
                && s.hops.iter().all(|h| {
                    matches!(
                        h,
                        HopPlan::Silent
                            | HopPlan::Routers {
                                paths: 1,
                                loss: 0,
                                transient_unreachable: None,
                                ..
                            }
                    )
                })
        })
        .expect("a clean script among 1000 seeds")
}

#[test]
fn trace_follows_a_scripted_path() {
    let (seed, script) = clean_script();
    // The seed goes to the helper through `env`, leaving this process's environment alone.
    let session = Session::builder()
        .program(
            "env".to_owned(),
            [format!("{SEED_ENV}={seed}"), SCRIPTED.to_owned()],
        )
        .open()
        .unwrap();
    let stats = session.trace("127.0.0.1", &options(3, 100)).unwrap();
    let target_ttl = script.hops.len() + 1;
    assert_eq!(stats.destination_ttl(), Some(target_ttl as u8));
    let hops = stats.hops();
    assert_eq!(hops.len(), target_ttl);
    for (hop, plan) in hops.iter().zip(&script.hops) {
        let silent = matches!(plan, HopPlan::Silent);
        assert_eq!(hop.host().is_none(), silent, "TTL {}", hop.ttl());
        assert!(hop.sent() >= 3);
        if !silent {
            assert_eq!(hop.loss_percent(), 0.0, "TTL {}", hop.ttl());
        }
    }
}

#[test]
fn the_summary_counts_outcomes() {
    let session = Session::builder()
        .program(FAKE, ["--reply", "no-reply"])
        .open()
        .unwrap();
    let mut options = options(1, 50);
    options.trace.max_ttl = 3;
    let summary = session
        .campaign(hosts(2), &options, &CampaignLimits::default(), |_| {})
        .unwrap();
    assert_eq!(summary.probes, 6, "{summary:?}");
    assert_eq!(
        (summary.no_reply, summary.exhausted, summary.lost),
        (6, 0, 0)
    );
}

#[test]
fn probes_sent_before_a_callback_panics_still_reach_the_helper() {
    // The helper exits at its first probe (after the two opening checks): once that probe
    // reaches it, its slot shows an exit and a restart.
    let session = Session::builder()
        .program(FAKE, ["--exit-after", "2"])
        .open()
        .expect("open the fake helper");
    // Past the driver's read rest after the opening checks: nothing else would wake it.
    std::thread::sleep(Duration::from_millis(100));
    let one_ttl = TraceOptions {
        trace: TraceConfig {
            max_ttl: 1,
            ..options(1, 10).trace
        },
        ..TraceOptions::default()
    };
    // With one TTL, the first probe ends a round: the callback sees it and panics, after
    // the probe was sent and before the campaign woke the driver for its batch.
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        session.campaign(
            ["127.0.0.1"],
            &one_ttl,
            &CampaignLimits::default(),
            |event| {
                if let CampaignEvent::Round { .. } = event {
                    panic!("the caller's callback panics");
                }
            },
        )
    }));
    assert!(
        panicked.is_err(),
        "the callback's panic goes on to the caller"
    );
    let started = Instant::now();
    while session.helpers()[0].restarts == 0 && started.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let helper = &session.helpers()[0];
    println!(
        "probe sent before the panic reached the helper after {:?}",
        started.elapsed()
    );
    assert_eq!(helper.restarts, 1, "{helper:?}");
}

/// The traces run on the driver thread; the caller's callback never does (a slow one would
/// hold back every probe there). One that sleeps at its first event still gets every round
/// and report.
#[test]
fn the_callback_runs_on_the_callers_thread() {
    let session = fake(0);
    let caller = std::thread::current().id();
    let mut events = 0;
    let mut done = 0;
    let mut probes_at_ttl_1 = Vec::new();
    let summary = session
        .campaign(
            hosts(4),
            &options(2, 20),
            &CampaignLimits::default(),
            |event| {
                assert_eq!(std::thread::current().id(), caller);
                events += 1;
                if events == 1 {
                    std::thread::sleep(Duration::from_millis(500));
                }
                if let CampaignEvent::Done(report) = event {
                    done += 1;
                    probes_at_ttl_1.push(report.stats.expect("traced").hops()[0].sent());
                }
            },
        )
        .unwrap();
    assert_eq!((summary.targets, summary.failed, done), (4, 0, 4));
    assert!(events > 4, "rounds reported too: {events} events");
    assert_eq!(probes_at_ttl_1, [2; 4]);
}

#[test]
fn campaign_reports_hands_out_every_report_and_no_rounds() {
    let session = fake(0);
    let mut indices = Vec::new();
    let summary = session
        .campaign_reports(
            hosts(5),
            &options(2, 10),
            &CampaignLimits::default(),
            |report| {
                let stats = report.stats.expect("traced");
                assert_eq!(stats.hops()[0].sent(), 2);
                indices.push(report.index);
            },
        )
        .unwrap();
    indices.sort_unstable();
    assert_eq!(indices, (0..5).collect::<Vec<_>>());
    assert_eq!((summary.targets, summary.failed), (5, 0));
}

/// A helper that dies with probes in flight: those probes end as lost in their traces, the
/// driver starts the helper again, and every target is still reported.
#[test]
fn a_helper_that_dies_mid_campaign_loses_its_probes_and_the_traces_go_on() {
    // Two opening checks, then six probes: it exits at the sixth, with some unanswered.
    let session = Session::builder()
        .program(FAKE, ["--exit-after", "8", "--delay-ms", "20"])
        .open()
        .expect("open the fake helper");
    let mut options = options(2, 50);
    options.trace.max_ttl = 3;
    let mut reported = Vec::new();
    let summary = session
        .campaign_reports(hosts(4), &options, &CampaignLimits::default(), |report| {
            assert!(report.stats.is_ok(), "{report:?}");
            reported.push(report.index);
        })
        .unwrap();
    reported.sort_unstable();
    assert_eq!(reported, [0, 1, 2, 3]);
    assert_eq!((summary.targets, summary.failed), (4, 0));
    assert!(summary.lost >= 1, "{summary:?}");
    assert!(
        session.helpers()[0].restarts >= 1,
        "{:?}",
        session.helpers()
    );
}

/// Round events waiting for a caller that falls behind are bounded (each holds a copy of a
/// target's figures): while the callback sleeps at its first event, the traces run to
/// their end on the driver thread, and at most 256 of their rounds wait for it. Every
/// report still arrives.
#[test]
fn rounds_waiting_for_a_slow_caller_are_bounded() {
    const TARGETS: usize = 200;
    let session = fake(0);
    let hosts: Vec<String> = (0..TARGETS)
        .map(|i| format!("127.0.{}.{}", i / 250, i % 250 + 1))
        .collect();
    let (mut first, mut rounds, mut done) = (true, 0, 0);
    session
        .campaign(
            &hosts,
            &options(3, 10),
            &CampaignLimits::default(),
            |event| {
                if std::mem::take(&mut first) {
                    // Long enough for 200 short traces to end, 600 rounds sent.
                    std::thread::sleep(Duration::from_secs(2));
                }
                match event {
                    CampaignEvent::Round { .. } => rounds += 1,
                    CampaignEvent::Done(_) => done += 1,
                    _ => {}
                }
            },
        )
        .unwrap();
    println!("{rounds} round events of {} rounds sent", 3 * TARGETS);
    assert_eq!(done, TARGETS);
    assert!((1..=257).contains(&rounds), "{rounds} round events");
}

/// A trace whose grace ends while the in-flight budget is held by silent probes is
/// reported at its own end, not when some probe's timeout frees room.
#[test]
fn a_finished_trace_is_reported_while_the_budget_is_full() {
    let session = Session::builder()
        .program(FAKE, ["--stall"])
        .open()
        .expect("open the fake helper");
    let mut options = options(1, 20);
    options.trace.max_ttl = 1;
    options.trace.timeout = Duration::from_secs(4);
    options.trace.grace = Duration::from_millis(200);
    let limits = CampaignLimits {
        max_in_flight: Some(2),
        ..CampaignLimits::default()
    };
    let (summary, first) = first_report(&session, 3, &options, &limits);
    assert_eq!((summary.targets, summary.failed), (3, 0));
    // The first two traces end 20 ms + 200 ms after their one probe, silent for 4 s.
    assert!(
        first < Duration::from_secs(2),
        "first report after {first:?}"
    );
}

/// Answers that come after the last trace ended (its grace over, probes still out) are
/// counted in the summary too.
#[test]
fn the_summary_counts_answers_after_the_last_report() {
    let session = Session::builder()
        .program(FAKE, ["--delay-ms", "600", "--reply", "no-reply"])
        .open()
        .expect("open the fake helper");
    let mut options = options(1, 20);
    options.trace.max_ttl = 1;
    options.trace.grace = Duration::from_millis(100);
    let summary = session
        .campaign_reports(hosts(1), &options, &CampaignLimits::default(), |report| {
            let stats = report.stats.expect("traced");
            assert!(stats.hops().is_empty(), "answered in its grace: {stats:?}");
        })
        .unwrap();
    // The trace ends 120 ms in; its probe is answered at 600 ms.
    assert_eq!((summary.probes, summary.no_reply), (1, 1), "{summary:?}");
}

/// A helper that exits at every first probe (restarted at once, then after a pause): each
/// probe is lost or refused, yet every trace ends and the campaign returns, bounded.
#[test]
fn a_campaign_over_a_helper_that_dies_at_every_probe_returns() {
    let session = Session::builder()
        .program(FAKE, ["--exit-after", "2"])
        .helpers(2)
        .open()
        .expect("open the fake helper");
    let mut options = options(3, 30);
    options.trace.max_ttl = 4;
    options.trace.grace = Duration::from_millis(200);
    let start = Instant::now();
    let mut reported = Vec::new();
    let summary = session
        .campaign_reports(hosts(6), &options, &CampaignLimits::default(), |report| {
            reported.push(report.index);
        })
        .unwrap();
    reported.sort_unstable();
    assert_eq!(reported, [0, 1, 2, 3, 4, 5]);
    assert_eq!(summary.targets, 6);
    assert!(summary.lost >= 1, "{summary:?}");
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
}

/// Closing the session from another thread ends a running campaign with the session's
/// error, promptly, however long its traces would run.
#[test]
fn closing_the_session_from_another_thread_ends_a_campaign() {
    let session = std::sync::Arc::new(fake(20));
    let closer = {
        let session = std::sync::Arc::clone(&session);
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            session.close();
        })
    };
    let start = Instant::now();
    let result = session.campaign_reports(
        hosts(8),
        &options(1000, 100),
        &CampaignLimits::default(),
        |_| {},
    );
    closer.join().unwrap();
    assert!(matches!(result, Err(Error::State(_))), "{result:?}");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
}

/// A callback that closes the session ends the campaign with the session's error.
#[test]
fn a_callback_that_closes_the_session_ends_the_campaign() {
    let session = fake(0);
    let start = Instant::now();
    let mut events = 0;
    let result = session.campaign(
        hosts(4),
        &options(1000, 50),
        &CampaignLimits::default(),
        |_| {
            events += 1;
            if events == 3 {
                session.close();
            }
        },
    );
    assert!(result.is_err(), "{result:?}");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
}

/// A campaign started from another campaign's callback, on the same session, runs and
/// returns; the outer one then goes on.
#[test]
fn a_campaign_inside_a_callback_runs() {
    let session = fake(5);
    let mut options = options(2, 20);
    options.trace.max_ttl = 3;
    let mut inner = 0;
    let summary = session
        .campaign_reports(hosts(3), &options, &CampaignLimits::default(), |report| {
            assert!(report.stats.is_ok(), "{report:?}");
            if report.index == 0 {
                let summary = session
                    .campaign_reports(hosts(2), &options, &CampaignLimits::default(), |_| {
                        inner += 1;
                    })
                    .unwrap();
                assert_eq!(summary.targets, 2);
            }
        })
        .unwrap();
    assert_eq!((summary.targets, inner), (3, 2));
}

/// A trace that ends while the rate cap holds other targets' due probes back is reported at
/// its own end, not after every probe due before its end was sent at the capped rate.
#[test]
fn a_finished_trace_is_reported_while_the_rate_cap_holds_probes_back() {
    let session = fake(0);
    let mut options = options(1, 50);
    options.trace.max_ttl = 1;
    options.trace.grace = Duration::from_millis(100);
    // 20 targets' first probes are due at once; at 10 probes/s the last leaves 1.9 s in.
    let limits = CampaignLimits {
        rate: Some(10),
        ..CampaignLimits::default()
    };
    let (summary, first) = first_report(&session, 20, &options, &limits);
    assert_eq!((summary.targets, summary.probes), (20, 20), "{summary:?}");
    // The first target's one probe is answered at once; its trace ends an interval later.
    println!("first report after {first:?}");
    assert!(
        first < Duration::from_secs(1),
        "first report after {first:?}"
    );
}

/// Under a rate cap that holds probes back, the target waiting longest still goes first: no
/// target gets two rounds ahead of another.
#[test]
fn a_tight_rate_is_shared_fairly() {
    let session = fake(0);
    let limits = CampaignLimits {
        rate: Some(40),
        ..CampaignLimits::default()
    };
    let mut options = options(6, 20);
    options.trace.max_ttl = 1;
    assert_every_target_keeps_pace(&session, &options, &limits);
}

/// Fixed UDP flows over two helpers that die every few probes: the pinned probes move to a
/// stand-in and back as the helpers restart, every trace ends and the campaign returns.
#[test]
fn flows_over_helpers_that_keep_dying_end_every_trace() {
    let session = Session::builder()
        .program(FAKE, ["--exit-after", "7", "--delay-ms", "5"])
        .helpers(2)
        .open()
        .expect("open the fake helper");
    let mut options = options(6, 20);
    options.trace.max_ttl = 3;
    options.trace.flows = 3;
    options.trace.grace = Duration::from_millis(200);
    options.probe.protocol = mtrproto_blocking::Protocol::Udp;
    let start = Instant::now();
    let mut reported = Vec::new();
    let summary = session
        .campaign_reports(hosts(5), &options, &CampaignLimits::default(), |report| {
            let stats = report.stats.expect("traced");
            assert_eq!(report.flows.len(), 3);
            let flow_sent: u64 = report
                .flows
                .iter()
                .flat_map(|f| f.hops().iter().map(|h| h.sent()))
                .sum();
            let sent: u64 = stats.hops().iter().map(|h| h.sent()).sum();
            // A flow whose probes were all lost shows no hop.
            assert!(flow_sent <= sent, "{flow_sent} of {sent} in flows");
            reported.push(report.index);
        })
        .unwrap();
    reported.sort_unstable();
    assert_eq!(reported, [0, 1, 2, 3, 4]);
    assert!(summary.lost >= 1, "{summary:?}");
    let restarts: u32 = session.helpers().iter().map(|h| h.restarts).sum();
    assert!(restarts >= 2, "{:?}", session.helpers());
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "{:?}",
        start.elapsed()
    );
}

/// A helper whose table is always full (`probes-exhausted` to every probe): the session
/// sends each probe again while its timeout lasts, then counts it exhausted; every trace
/// still ends and the campaign returns, bounded by the probes' timeout.
#[test]
fn a_helper_that_refuses_every_probe_ends_every_trace() {
    let session = Session::builder()
        .program(FAKE, ["--reply", "probes-exhausted"])
        .open()
        .expect("open the fake helper");
    let mut options = options(2, 20);
    options.trace.max_ttl = 2;
    options.trace.timeout = Duration::from_millis(300);
    options.trace.grace = Duration::from_millis(100);
    let start = Instant::now();
    let summary = session
        .campaign_reports(hosts(3), &options, &CampaignLimits::default(), |report| {
            assert!(report.stats.is_ok(), "{report:?}");
        })
        .unwrap();
    println!("{summary:?} in {:?}", start.elapsed());
    assert_eq!((summary.targets, summary.failed), (3, 0));
    assert_eq!(summary.exhausted, summary.probes, "{summary:?}");
    // About 1.4 s; 10 s when the refused probes waiting out their timeout took the room of
    // the one slot the helper's table was taught to hold.
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
}

/// Two fixed UDP flows over two helpers, each with a window of one and no queue: a flow's
/// probes must go to the helper that holds its flow, so one helper can get more of them
/// than its window takes. They wait for it (the campaign's budget bounds them), none is
/// counted lost, and every probe is answered.
#[test]
fn pinned_flows_wait_for_their_helper_instead_of_being_lost() {
    let session = Session::builder()
        .program(FAKE, ["--delay-ms", "20"])
        .helpers(2)
        .window(1)
        .max_queue(0)
        .open()
        .expect("open the fake helper");
    let mut options = options(5, 20);
    options.trace.max_ttl = 2;
    options.trace.flows = 2;
    // The last answers wait behind their flows' helpers: with 500 ms of grace after the
    // last round, a trace on busy cores was reported before one of them came (1 in 20 runs
    // of the file there). The grace ends at the last answer.
    options.trace.grace = Duration::from_secs(5);
    options.probe.protocol = mtrproto_blocking::Protocol::Udp;
    let mut reported = Vec::new();
    let summary = session
        .campaign_reports(hosts(6), &options, &CampaignLimits::default(), |report| {
            let stats = report.stats.expect("traced");
            for hop in stats.hops() {
                assert_eq!(hop.sent(), hop.received(), "{}: {hop:?}", report.host);
            }
            reported.push(report.index);
        })
        .unwrap();
    reported.sort_unstable();
    assert_eq!(reported, [0, 1, 2, 3, 4, 5]);
    assert_eq!((summary.lost, summary.failed), (0, 0), "{summary:?}");
    assert!(summary.peak_in_flight <= 2, "{summary:?}");
}

/// A session paced at 100 probes/s, burst 1, with no queue: a campaign's probes wait in
/// the helper for the pacer, and go out when it allows (10 ms apart), not at the helper's
/// next unrelated wake-up (its 100 ms liveness check: 10 probes/s).
#[test]
fn a_paced_session_without_a_queue_sends_a_campaign_at_its_rate() {
    let session = Session::builder()
        .program(FAKE, ["--delay-ms", "0"])
        .rate(100, 1)
        .max_queue(0)
        .open()
        .expect("open the fake helper");
    let start = Instant::now();
    let summary = session
        .campaign(
            hosts(5),
            &options(5, 10),
            &CampaignLimits::default(),
            |_| {},
        )
        .unwrap();
    let elapsed = start.elapsed();
    let probes = summary.probes as u32;
    assert!(probes >= 25, "{summary:?}");
    // 10 ms apart at the rate, 100 ms at the liveness check: 40 ms leaves slack both ways.
    assert!(
        elapsed < Duration::from_millis(40) * probes,
        "{probes} probes in {elapsed:?}"
    );
}

/// A caller's TCP probe with a one-hour timeout is in flight when the helper is killed:
/// every probe is then held back for that hour (a TCP answer may go to any probe with its
/// sequence). A campaign of 1 s probes run meanwhile loses its held probes once their own
/// timeout and the session's grace have passed, and returns, instead of waiting the hour.
#[test]
fn a_campaign_does_not_wait_for_another_probes_long_quiet() {
    let log = std::env::temp_dir().join(format!("mtrproto-campaign-quiet-{}", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let log_path = log.to_str().unwrap().to_owned();
    let session = std::sync::Arc::new(
        Session::builder()
            .program(
                FAKE,
                ["--delay-ms", "5000", "--read-log", log_path.as_str()],
            )
            .grace(Duration::from_secs(1))
            .open()
            .expect("open the fake helper"),
    );
    let long_tcp = mtrproto_blocking::ProbeOptions {
        protocol: mtrproto_blocking::Protocol::Tcp,
        timeout: Some(Duration::from_secs(3600)),
        ..Default::default()
    };
    let tcp = session.probe("127.0.0.1", &long_tcp).unwrap();
    // In flight (read by the helper) before the kill, however loaded the machine.
    let started = Instant::now();
    while !std::fs::read_to_string(&log).is_ok_and(|t| t.contains(" send-probe ip-")) {
        assert!(started.elapsed() < Duration::from_secs(10), "never read");
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = std::fs::remove_file(&log);
    let pid = session.helper_pid().to_string();
    std::process::Command::new("kill")
        .args(["-KILL", &pid])
        .status()
        .unwrap();
    assert!(
        tcp.wait_timeout(Duration::from_secs(5))
            .is_some_and(|r| r.is_err())
    );
    let mut options = options(1, 20);
    options.trace.max_ttl = 2;
    options.trace.grace = Duration::from_millis(200);
    let (done, outcome) = crossbeam_channel::bounded(1);
    let campaign = std::sync::Arc::clone(&session);
    let start = Instant::now();
    // On a thread: a campaign that waits the hour must fail the test, not hang it.
    std::thread::spawn(move || {
        let summary =
            campaign.campaign_reports(hosts(2), &options, &CampaignLimits::default(), |report| {
                assert!(report.stats.is_ok(), "{report:?}");
            });
        let _ = done.send(summary);
    });
    let summary = outcome
        .recv_timeout(Duration::from_secs(10))
        .expect("the campaign returns")
        .unwrap();
    println!("{summary:?} in {:?}", start.elapsed());
    assert_eq!((summary.targets, summary.failed), (2, 0));
    assert_eq!(summary.lost, summary.probes, "{summary:?}");
    // The helper started again after the kill logged to it too.
    drop(session);
    let _ = std::fs::remove_file(&log);
}

/// A helper that could not open IPv6 sockets answers `check-support feature ip-6` with `no`
/// and every IPv6 probe with `invalid-argument` (then a trace of an IPv6 target showed an
/// empty path, no error). An IPv6 target of a campaign now gets an error report saying so,
/// as any target the helper refuses does; the IPv4 targets go on.
#[test]
fn a_target_of_an_ip_version_the_helper_lacks_gets_an_error_report() {
    let session = Session::builder()
        .program(FAKE, ["--refuse", "ip-6"])
        .open()
        .expect("open the fake helper");
    let mut outcomes = BTreeMap::new();
    let summary = session
        .campaign_reports(
            ["::1", "127.0.0.1"],
            &options(1, 20),
            &CampaignLimits::default(),
            |report| {
                outcomes.insert(report.index, report.stats);
            },
        )
        .unwrap();
    assert_eq!((summary.targets, summary.failed), (2, 1), "{outcomes:?}");
    match &outcomes[&0] {
        Err(Error::Unsupported { what, .. }) => assert!(what.contains("ip-6"), "{what}"),
        other => panic!("{other:?}"),
    }
    let traced = outcomes[&1].as_ref().expect("the IPv4 target is traced");
    assert_eq!(traced.destination_ttl(), Some(1));
    // A single probe is refused the same way, before it is sent.
    let probe = session.probe_blocking("::1", &Default::default());
    assert!(matches!(probe, Err(Error::Unsupported { .. })), "{probe:?}");
}

/// mtr-packet on a kernel without SCTP answers `check-support feature sctp` with `no` and
/// every SCTP probe with `invalid-argument` (then a trace showed an empty path, no error):
/// an SCTP campaign's targets now get an error report saying so.
#[test]
fn sctp_targets_of_a_helper_without_sctp_get_an_error_report() {
    let session = Session::builder()
        .program(FAKE, ["--refuse", "sctp"])
        .open()
        .expect("open the fake helper");
    let mut sctp = options(1, 20);
    sctp.probe.protocol = mtrproto_blocking::Protocol::Sctp;
    let mut reports = Vec::new();
    let summary = session
        .campaign_reports(hosts(2), &sctp, &CampaignLimits::default(), |report| {
            reports.push(report.stats);
        })
        .unwrap();
    assert_eq!(
        (summary.targets, summary.failed, summary.probes),
        (2, 2, 0),
        "{reports:?}"
    );
    for report in &reports {
        match report {
            Err(Error::Unsupported { what, .. }) => assert!(what.contains("sctp"), "{what}"),
            other => panic!("{other:?}"),
        }
    }
    // ICMP goes on.
    let stats = session.trace("127.0.0.1", &options(1, 20)).unwrap();
    assert_eq!(stats.destination_ttl(), Some(1));
}

/// A trace of `host` on a fake helper started with `args`, through a campaign and through
/// `Session::trace`.
fn trace_on(
    args: &[&str],
    host: &str,
) -> (
    CampaignSummary,
    Result<mtrproto_blocking::TraceStats, Error>,
) {
    trace_every(args, host, 20)
}

/// [`trace_on`] with rounds `interval_ms` apart (a probe every quarter of that).
fn trace_every(
    args: &[&str],
    host: &str,
    interval_ms: u64,
) -> (
    CampaignSummary,
    Result<mtrproto_blocking::TraceStats, Error>,
) {
    let session = Session::builder()
        .program(FAKE, args.iter().copied())
        .open()
        .expect("open the fake helper");
    let mut options = options(2, interval_ms);
    options.trace.max_ttl = 4;
    let mut reports = Vec::new();
    let summary = session
        .campaign_reports([host], &options, &CampaignLimits::default(), |report| {
            reports.push(report.stats);
        })
        .unwrap();
    assert_eq!(reports.len(), 1);
    let single = session.trace(host, &options);
    match (&reports[0], &single) {
        (Ok(_), Ok(_)) => {}
        (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
        other => panic!("campaign and trace disagree: {other:?}"),
    }
    (summary, reports.pop().unwrap())
}

/// A helper that refuses every probe (then a trace came back Ok with no hops and no
/// error): each refusal ends the trace with an error naming the reply and the TTL.
#[test]
fn a_trace_whose_probes_the_helper_refuses_ends_with_an_error() {
    for kind in REFUSALS {
        let (summary, report) = trace_on(&["--reply", kind], "127.0.0.1");
        assert_eq!(
            (summary.targets, summary.failed, summary.refused),
            (1, 1, 1),
            "{kind}: {report:?}"
        );
        // Every probe it sent was refused (one per TTL it reached before the refusal came
        // back, and that one).
        assert_eq!(
            summary.probes_refused, summary.probes,
            "{kind}: {summary:?}"
        );
        assert!(summary.probes >= 1, "{kind}: {summary:?}");
        match report {
            Err(Error::Refused { reply, ttl }) => {
                assert_eq!((reply.as_str(), ttl), (kind, 1));
                let message = Error::Refused { reply, ttl }.to_string();
                assert!(
                    message.contains(kind) && message.contains("TTL 1"),
                    "{message}"
                );
            }
            other => panic!("{kind}: {other:?}"),
        }
    }
}

/// One TTL refused among answered ones (then the trace came back Ok, the refused hop
/// merely unanswered): the trace ends with an error naming that TTL.
#[test]
fn a_trace_with_one_refused_ttl_ends_with_an_error() {
    let args = [
        "--reply-at",
        "1:no-reply",
        "--reply-at",
        "2:permission-denied",
    ];
    let (_, report) = trace_on(&args, "127.0.0.1");
    match report {
        Err(Error::Refused { reply, ttl }) => {
            assert_eq!((reply.as_str(), ttl), ("permission-denied", 2));
        }
        other => panic!("{other:?}"),
    }
    // TTL 3 refused: the target answers at TTL 1 and 2, and TTL 3 is never probed. A probe
    // every 100 ms, so that TTL 1's answer is read before TTL 3 is due even on a busy
    // machine (every 5 ms, TTL 3 went out first in 6 of 14 runs beside three busy loops).
    let (_, report) = trace_every(&["--reply-at", "3:invalid-argument"], "127.0.0.1", 400);
    assert_eq!(
        report.expect("never probed at TTL 3").destination_ttl(),
        Some(1)
    );
}

/// Network outcomes stay figures: no answer, unreachable kinds, an unknown reply name.
#[test]
fn network_outcomes_stay_figures() {
    for kind in [
        "no-reply",
        "no-route",
        "no-route-host",
        "no-route-network",
        "network-down",
        "host-down",
        "wait-tcp-respone-timeout",
    ] {
        let (summary, report) = trace_on(&["--reply", kind], "127.0.0.1");
        let stats = report.unwrap_or_else(|e| panic!("{kind}: {e}"));
        assert_eq!(
            (
                summary.targets,
                summary.failed,
                summary.refused,
                summary.probes_refused
            ),
            (1, 0, 0, 0),
            "{kind}"
        );
        let sent: u64 = (1..=4).filter_map(|t| stats.hop(t)).map(|h| h.sent()).sum();
        assert!(sent >= 2, "{kind}: {stats:?}");
    }
}

/// The summary tells targets the helper refused from other failures: of three targets, two
/// end at a probe refused at TTL 2 and one does not resolve (an IPv6 address with IPv4
/// asked); `failed` counts all three, `refused` the two, `probes_refused` their refused
/// probes, apart from the `no-reply` at TTL 1.
#[test]
fn the_summary_counts_refused_targets_and_probes_apart() {
    let session = Session::builder()
        .program(
            FAKE,
            [
                "--reply-at",
                "1:no-reply",
                "--reply-at",
                "2:permission-denied",
            ],
        )
        .open()
        .expect("open the fake helper");
    let mut options = options(2, 20);
    options.trace.max_ttl = 4;
    options.probe.ip_version = Some(IpVersion::V4);
    let mut outcomes = BTreeMap::new();
    let summary = session
        .campaign_reports(
            ["127.0.0.1", "::1", "127.0.0.2"],
            &options,
            &CampaignLimits::default(),
            |report| {
                outcomes.insert(report.index, report.stats);
            },
        )
        .unwrap();
    assert_eq!(
        (summary.targets, summary.failed, summary.refused),
        (3, 3, 2),
        "{outcomes:?}"
    );
    for index in [0, 2] {
        match &outcomes[&index] {
            Err(Error::Refused { reply, ttl }) => {
                assert_eq!((reply.as_str(), *ttl), ("permission-denied", 2));
            }
            other => panic!("{index}: {other:?}"),
        }
    }
    assert!(
        matches!(outcomes[&1], Err(Error::HostResolve(_))),
        "{outcomes:?}"
    );
    // At least the two that ended the traces; never a `no-reply` of TTL 1.
    assert!(summary.probes_refused >= 2, "{summary:?}");
    assert!(
        summary.probes_refused + summary.no_reply <= summary.probes,
        "{summary:?}"
    );
    assert!(summary.no_reply >= 2, "{summary:?}");
}

/// `Session::multipath` ends at the first probe the helper refuses, as mtr stops. Its
/// other probes were still out (one in flight, four queued behind a window of 2, each
/// answered 1 s after it went out) and kept the window after it returned: the next trace's
/// probe waited behind them while its clock ran, went out 2 s later, and was reported lost
/// (its grace 1.5 s) though the helper answered it as any other. `multipath` now waits for
/// its probes still out at a refusal (bounded: each answered within its timeout and a
/// second), so the next run has the window.
#[test]
fn a_trace_after_a_refused_multipath_has_the_window_to_itself() {
    let session = Session::builder()
        .program(
            FAKE,
            ["--delay-ms", "1000", "--reply-at", "1:invalid-argument"],
        )
        .window(2)
        .open()
        .unwrap();
    let mut paths = mtrproto_blocking::MultipathOptions::default();
    paths.trace.max_ttl = 1;
    let refused = session.multipath_partial("127.0.0.1", &paths).unwrap();
    assert!(
        matches!(refused.1, Some(Error::Refused { .. })) && refused.0.probes >= 3,
        "{refused:?}"
    );
    let mut next = options(1, 10);
    next.trace.first_ttl = 2;
    next.trace.max_ttl = 2;
    next.trace.grace = Duration::from_millis(1500);
    next.trace.timeout = Duration::from_secs(5);
    let started = Instant::now();
    let stats = session.trace("127.0.0.1", &next).unwrap();
    let took = started.elapsed();
    assert_eq!(
        stats.destination_ttl(),
        Some(2),
        "after {took:?}: {stats:?}"
    );
    assert_eq!(stats.hops()[1].loss_percent(), 0.0, "{stats:?}");
}

/// The wait for a refused multipath's probes still out allows each the timeout the helper
/// got, whole seconds rounded up as on the wire (1 s for a trace's 100 ms), and a second,
/// the trace's own bound for a lost probe. It allowed the trace's timeout as given (1.1 s)
/// instead: here each answer comes 1.2 s after its probe went out, behind a window of 1,
/// so `multipath` returned with two probes still out, and the next probe waited 2.4 s
/// behind them.
#[test]
fn a_refused_multipath_waits_its_probes_by_the_timeout_on_the_wire() {
    let session = Session::builder()
        .program(
            FAKE,
            ["--delay-ms", "1200", "--reply-at", "1:invalid-argument"],
        )
        .window(1)
        .open()
        .unwrap();
    let mut paths = mtrproto_blocking::MultipathOptions::default();
    paths.trace.max_ttl = 1;
    paths.trace.window = 3;
    paths.trace.timeout = Duration::from_millis(100);
    let refused = session.multipath_partial("127.0.0.1", &paths).unwrap();
    assert!(
        matches!(refused.1, Some(Error::Refused { .. })) && refused.0.probes == 3,
        "{refused:?}"
    );
    let started = Instant::now();
    let next = mtrproto_blocking::ProbeOptions {
        timeout: Some(Duration::from_secs(5)),
        ..mtrproto_blocking::ProbeOptions::default()
    };
    session.probe_blocking("127.0.0.1", &next).unwrap();
    let took = started.elapsed();
    assert!(took < Duration::from_millis(1900), "{took:?}");
}

/// Two campaigns at once, each with the default budget (the whole window): what the window
/// cannot take waits in the helper's queue, even with `max_queue` 0, and nothing is lost.
#[test]
fn campaigns_at_once_share_the_window_and_lose_nothing() {
    let session = Session::builder()
        .program(FAKE, ["--delay-ms", "50"])
        .window(4)
        .max_queue(0)
        .open()
        .expect("open the fake helper");
    let hosts = hosts(6);
    let summaries: Vec<CampaignSummary> = std::thread::scope(|scope| {
        let runs: Vec<_> = (0..2)
            .map(|_| {
                scope.spawn(|| {
                    let mut reported = 0;
                    let summary = session
                        .campaign(&hosts, &options(2, 10), &CampaignLimits::default(), |e| {
                            reported += usize::from(matches!(e, CampaignEvent::Done(_)));
                        })
                        .expect("the campaign runs");
                    assert_eq!(reported, 6);
                    summary
                })
            })
            .collect();
        runs.into_iter().map(|r| r.join().unwrap()).collect()
    });
    for summary in &summaries {
        assert_eq!((summary.targets, summary.failed), (6, 0), "{summary:?}");
        assert_eq!(summary.lost, 0, "{summary:?}");
        assert_eq!(summary.answered, summary.probes, "{summary:?}");
        assert!(summary.peak_in_flight <= 4, "{summary:?}");
    }
    // Together they wanted more than the window: some of their probes waited.
    let wanted: usize = summaries.iter().map(|s| s.peak_in_flight).sum();
    assert!(wanted > 4, "{summaries:?}");
}

/// A helper that refused a probe with `probes-exhausted` while one other was in flight
/// holds one at a time from then on (its table, as it said). A campaign then keeps within
/// that, not the window it was opened with: what it sent past it would wait in the helper's
/// queue, and a caller's probe behind them, for far longer than its timeout and the grace.
#[test]
fn a_campaign_keeps_within_the_table_a_refusal_taught_and_a_callers_probe_gets_through() {
    callers_probes_beside_a_campaign_on_a_taught_table(1);
}

/// With two helpers, one taught a table of one: the campaign's probes and a caller's go to
/// the helper with room, not in turn to both (about half the campaign's first burst would
/// wait in the taught one's queue, a caller's probe sent then behind them: 13 s measured).
#[test]
fn probes_go_to_the_helper_with_room_when_one_was_taught_a_small_table() {
    callers_probes_beside_a_campaign_on_a_taught_table(2);
}

/// A campaign of 100 targets beside a caller's probes, on `helpers` helpers of which the
/// first was taught a table of one: each caller's probe ends within its timeout, the grace
/// and slack for a busy machine.
fn callers_probes_beside_a_campaign_on_a_taught_table(helpers: usize) {
    // TTL 4 is refused; every answer comes 100 ms after its probe.
    let session = std::sync::Arc::new(
        Session::builder()
            .program(
                FAKE,
                [
                    "--delay-ms",
                    "100",
                    "--routers",
                    "8",
                    "--reply-at",
                    "4:probes-exhausted",
                ],
            )
            .helpers(helpers)
            .grace(Duration::from_secs(1))
            .open()
            .expect("open the fake helper"),
    );
    let one_second = mtrproto_blocking::ProbeOptions {
        timeout: Some(Duration::from_secs(1)),
        ..Default::default()
    };
    let refused = mtrproto_blocking::ProbeOptions {
        ttl: Some(4),
        ..one_second.clone()
    };
    // Refused while another is in flight at its helper (the helpers take probes in turn):
    // that helper's table holds one. The refused probe ends with the refusal at its timeout.
    let first = session.probe("127.0.0.1", &refused).unwrap();
    let others: Vec<_> = (0..2 * helpers - 1)
        .map(|_| session.probe("127.0.0.1", &one_second).unwrap())
        .collect();
    for other in others {
        assert!(other.wait().unwrap().success());
    }
    let first = first.wait().unwrap();
    assert_eq!(first.result, mtrproto_blocking::ReplyKind::ProbesExhausted);
    // 100 targets, TTLs 1 to 3 (answered by routers), a few rounds.
    let campaign = {
        let session = std::sync::Arc::clone(&session);
        std::thread::spawn(move || {
            let mut options = options(3, 10);
            options.trace.max_ttl = 3;
            session.campaign_reports(hosts(100), &options, &CampaignLimits::default(), |_| {})
        })
    };
    // Probes sent as the campaign starts and while it runs, two at a time (so that one goes
    // to each helper where their loads are equal).
    let mut waits = Vec::new();
    for pause in [20, 30, 50, 200] {
        std::thread::sleep(Duration::from_millis(pause));
        let sent = Instant::now();
        let handles: Vec<_> = (0..2)
            .map(|_| session.probe("127.0.0.1", &one_second).unwrap())
            .collect();
        for handle in handles {
            // Its timeout, the grace, and slack for a busy machine.
            let result = handle.wait_timeout(Duration::from_secs(3));
            waits.push((sent.elapsed(), result));
        }
    }
    println!("caller's probes beside the campaign: {waits:?}");
    // Ends the campaign either way (it is slow at one probe at a time).
    session.close();
    // Closed mid-way; done already only if the table was not taught (the second probe
    // held up past the first's answer on a starved machine).
    let ended = campaign.join().unwrap();
    assert!(matches!(ended, Ok(_) | Err(Error::State(_))), "{ended:?}");
    for (waited, result) in &waits {
        assert!(
            result.as_ref().is_some_and(|r| r.is_ok()),
            "caller's probe after {waited:?}: {result:?}"
        );
    }
}
