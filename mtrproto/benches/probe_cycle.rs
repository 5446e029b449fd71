//! The core's cost per probe, as a driver pays it.
//!
//! `cargo bench -p mtrproto --bench probe_cycle`; criterion reports elements (probes) per
//! second, and its time per iteration divided by the elements is the cost of one probe.
//! The time is the benchmark thread's CPU time, not wall time: on a machine shared with
//! other work, time spent preempted would otherwise be counted.
//!
//! - `session`: a `Session` in its steady state with about 250 probes in flight on a
//!   virtual clock, in batches of 16 as a driver reads them: submit, take the encoded
//!   lines, feed the helper's answers (a realistic mix, `no-reply` for 30%), drain the
//!   events, ask for the next deadline and handle it; one probe in 32 is never answered and
//!   ends at the watchdog (its timeout of 1 s and a grace of 1 s later).
//! - `tracer`: a `Tracer` over a 16-hop path whose hops 3, 5, 8, 11 and 14 are silent
//!   (30%): poll the next probe, hand back its result (the figures recorded), with a new
//!   tracer every 10 rounds.
//! - `tracers`: 1,500 of those tracers at once, each probe's result handed back after 1,024
//!   other probes went out, as in a campaign at scale: each target's state is out of the
//!   nearest caches when its answer or its next probe comes.

use std::hint::black_box;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mtrproto::{
    Event, ProbeArgs, ProbeResult, Reply, Session, SessionConfig, Token, TraceConfig, Tracer,
};

const BATCH: usize = 16;

/// The calling thread's CPU time.
#[allow(unsafe_code)]
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write to; the clock id is a constant Linux has.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Runs `batch` `iters` times; returns the CPU time it took.
fn cpu_timed(iters: u64, mut batch: impl FnMut()) -> Duration {
    let start = thread_cpu_time();
    for _ in 0..iters {
        batch();
    }
    thread_cpu_time() - start
}

/// What mtr-packet answers to the `n`-th probe, after its token; `None` for one left
/// unanswered.
fn answer(n: u64) -> Option<&'static str> {
    const ROUTERS: [&str; 4] = [
        " ttl-expired ip-4 10.200.1.2 round-trip-time 7933\n",
        " ttl-expired ip-4 10.200.3.77 round-trip-time 375\n",
        " ttl-expired ip-4 192.0.2.201 round-trip-time 12044\n",
        " ttl-expired ip-4 10.9.0.1 round-trip-time 860\n",
    ];
    Some(match n % 32 {
        0 => return None,
        1..=9 => " no-reply\n",
        10..=13 => " reply ip-4 127.0.0.1 round-trip-time 1554\n",
        14 => " ttl-expired ip-4 10.1.2.3 round-trip-time 4410 mpls 16,0,0,1\n",
        _ => ROUTERS[(n % 4) as usize],
    })
}

/// Appends `token` and its answer to `out`, without the formatting machinery (the same
/// cost in every run, small against the session's).
fn push_line(out: &mut Vec<u8>, token: Token, answer: &str) {
    let mut digits = [0u8; 10];
    let mut value = token.get();
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
    out.extend_from_slice(answer.as_bytes());
}

fn session(c: &mut Criterion) {
    let mut group = c.benchmark_group("probe_cycle");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("session", |b| {
        let config = SessionConfig {
            window: 1024,
            // As `scale-bench` has it: the grace is the timeout. Answers come 1 s after their
            // probe, within it, so none is late.
            grace: Duration::from_secs(1),
            ..SessionConfig::default()
        };
        let mut session = Session::new(config);
        let args = ProbeArgs::new("127.0.0.1".parse().unwrap())
            .timeout(Duration::from_secs(1))
            .unwrap();
        let mut now = Instant::now();
        // Probes in flight, oldest first, with their answer: answered 250 probes later.
        let mut flight = std::collections::VecDeque::new();
        let mut n = 0u64;
        let mut input = Vec::new();
        // A probe every 4 ms, timeout 1 s: about 250 in flight.
        let step = Duration::from_millis(4);
        let mut batch = || {
            for _ in 0..BATCH {
                n += 1;
                let ttl = (n % 30 + 1) as u8;
                let token = session
                    .send_probe(now, args.clone().ttl(ttl).unwrap())
                    .unwrap();
                flight.push_back((token, answer(n)));
                now += step;
            }
            if let Some(bytes) = session.poll_transmit(now) {
                let len = black_box(bytes).len();
                session.consume(now, len);
            }
            input.clear();
            while flight.len() > 250 {
                if let Some((token, Some(line))) = flight.pop_front() {
                    push_line(&mut input, token, line);
                }
            }
            session.handle_input(now, &input);
            if let Some(at) = session.poll_timeout()
                && at <= now
            {
                session.handle_timeout(now);
            }
            while let Some(event) = session.poll_event() {
                if let Event::Probe { outcome, .. } = &event {
                    black_box(outcome);
                }
            }
            // A late answer would be a stray, which this bench does not mean to measure.
            assert_eq!(session.counters().diagnostics, 0, "stray answers");
        };
        b.iter_custom(|iters| cpu_timed(iters, &mut batch))
    });
    group.finish();
}

/// The result of each TTL's probe on a 16-hop path to `target`: silent hops answer
/// `no-reply`, the target answers at TTL 16.
fn path_results(target: IpAddr) -> Vec<ProbeResult> {
    (1..=16u8)
        .map(|ttl| {
            let line = match ttl {
                3 | 5 | 8 | 11 | 14 => "1 no-reply".to_owned(),
                16 => format!("1 reply ip-4 {target} round-trip-time 2100"),
                _ => format!(
                    "1 ttl-expired ip-4 10.0.0.{ttl} round-trip-time {}",
                    100 * u32::from(ttl)
                ),
            };
            ProbeResult::from_reply(&Reply::parse(&line).unwrap())
        })
        .collect()
}

fn tracer(c: &mut Criterion) {
    let mut group = c.benchmark_group("probe_cycle");
    group.throughput(Throughput::Elements(BATCH as u64));
    let target: IpAddr = "127.0.0.16".parse().unwrap();
    let results = path_results(target);
    let config = TraceConfig {
        cycles: 10,
        timeout: Duration::from_secs(1),
        ..TraceConfig::default()
    };
    let args = ProbeArgs::new(target);
    group.bench_function("tracer", |b| {
        let mut now = Instant::now();
        let mut tracer = Tracer::new(args.clone(), &config, now).unwrap();
        let mut batch = || {
            let mut done = 0;
            while done < BATCH {
                if tracer.is_done() {
                    black_box(tracer.stats());
                    tracer = Tracer::new(args.clone(), &config, now).unwrap();
                }
                now = tracer.poll_timeout().map_or(now, |at| at.max(now));
                tracer.handle_timeout(now);
                if let Some(probe) = tracer.poll_probe(now) {
                    let ttl = probe.ttl();
                    black_box(probe.args());
                    tracer.handle_result(now, ttl, &results[usize::from(ttl.min(16)) - 1]);
                    done += 1;
                }
            }
        };
        b.iter_custom(|iters| cpu_timed(iters, &mut batch))
    });
    group.finish();
}

/// `tracers`: 1,500 `Tracer`s at once, as a campaign runs them: each probe's result comes
/// back after 1,024 other probes went out (a helper's table of unanswered probes), so each
/// target's state is out of the nearest caches by the time its answer or next probe comes.
/// Each target has its own virtual clock; the path is `tracer`'s.
fn tracers(c: &mut Criterion) {
    const TARGETS: usize = 1500;
    const IN_FLIGHT: usize = 1024;
    let mut group = c.benchmark_group("probe_cycle");
    group.throughput(Throughput::Elements(BATCH as u64));
    let results = path_results("127.0.0.16".parse().unwrap());
    let config = TraceConfig {
        cycles: 3,
        timeout: Duration::from_secs(1),
        grace: Duration::from_secs(1),
        ..TraceConfig::default()
    };
    let target = |i: usize| -> IpAddr { std::net::Ipv4Addr::from(0xc612_4000 + i as u32).into() };
    group.bench_function("tracers", |b| {
        let start = Instant::now();
        let mut clocks = vec![start; TARGETS];
        let mut tracers: Vec<Tracer> = (0..TARGETS)
            .map(|i| Tracer::new(ProbeArgs::new(target(i)), &config, start).unwrap())
            .collect();
        let mut in_flight = std::collections::VecDeque::with_capacity(IN_FLIGHT + 1);
        let mut next = 0;
        let mut batch = || {
            let mut done = 0;
            while done < BATCH {
                let i = next;
                next = (next + 1) % TARGETS;
                let tracer = &mut tracers[i];
                if tracer.is_done() {
                    black_box(tracer.stats());
                    *tracer = Tracer::new(ProbeArgs::new(target(i)), &config, clocks[i]).unwrap();
                }
                let now = tracer
                    .poll_timeout()
                    .map_or(clocks[i], |at| at.max(clocks[i]));
                clocks[i] = now;
                tracer.handle_timeout(now);
                let Some(probe) = tracer.poll_probe(now) else {
                    continue;
                };
                black_box(probe.args());
                in_flight.push_back((i, probe.ttl()));
                done += 1;
                if in_flight.len() > IN_FLIGHT
                    && let Some((j, ttl)) = in_flight.pop_front()
                {
                    let result = &results[usize::from(ttl.min(16)) - 1];
                    tracers[j].handle_result(clocks[j], ttl, result);
                }
            }
        };
        b.iter_custom(|iters| cpu_timed(iters, &mut batch))
    });
    group.finish();
}

criterion_group!(benches, session, tracer, tracers);
criterion_main!(benches);
