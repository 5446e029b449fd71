//! The chaos soak test: several threads probe 127.0.0.1 and ::1 through one session with
//! several fake helpers, while faults are injected at random: SIGKILL, SIGSTOP then SIGCONT
//! from here, and from the helpers themselves (`--chaos`) exits, junk bursts and reading
//! stalls. At the end:
//!
//! - every accepted probe completed exactly once, and no refused one ever;
//! - none later than its timeout + grace + 1 s after its submission or after the last fault
//!   injected before it completed;
//! - no file descriptor, thread or child process (zombie included) left behind;
//! - peak RSS under [`RSS_BOUND_KB`];
//! - with probes pending and every helper stopped, the process uses almost no CPU.
//!
//! 60 s by default; set `MTRPROTO_CHAOS_SECONDS` to run longer. Alone in its binary: it
//! counts the process's descriptors, threads, children and CPU time.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::unbounded;
use mtrproto_blocking::{Error, ProbeOptions, ProbeResult, ProcessError, Session};
use mtrproto_tests::{Random, peak_rss_kb, process_exists, stat_cpu_seconds, thread_count};

const THREADS: usize = 4;
const HELPERS: usize = 3;
/// Probes a thread keeps outstanding at most: all threads together stay well under one
/// helper's window, so no probe waits in a queue.
const OUTSTANDING: usize = 16;
const TIMEOUT: Duration = Duration::from_secs(1);
const GRACE: Duration = Duration::from_secs(1);
/// How late past timeout + grace a probe may complete (the bound).
const SLACK: Duration = Duration::from_secs(1);
/// Peak resident memory allowed for the whole test process, in kB: junk is counted, not
/// kept, and every queue is bounded.
const RSS_BOUND_KB: u64 = 128 * 1024;

/// One probe as the test saw it.
struct Record {
    submitted: Instant,
    accepted: bool,
    completions: u32,
    completed: Option<Instant>,
    /// How it ended: answered, or which error.
    outcome: &'static str,
}

fn outcome(result: &Result<ProbeResult, Error>) -> &'static str {
    match result {
        Ok(_) => "answered",
        Err(Error::Process(ProcessError::Exited { .. })) => "exited",
        Err(Error::Process(ProcessError::Unresponsive)) => "unresponsive",
        Err(Error::Process(ProcessError::NotMtrPacket { .. })) => "junk",
        Err(_) => "other",
    }
}

fn signal(pid: u32, name: &str) {
    // The helper may have ended meanwhile: kill's complaint is not news.
    let _ = std::process::Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .stderr(std::process::Stdio::null())
        .status();
}

fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

fn cpu_seconds() -> f64 {
    stat_cpu_seconds("/proc/self/stat").unwrap_or(f64::MAX)
}

/// Probes flat out from one thread until `stop`, keeping at most [`OUTSTANDING`] in flight;
/// returns every probe's record.
fn prober(session: Arc<Session>, index: usize, stop: Instant) -> Vec<Record> {
    let (done, completions) = unbounded::<(usize, Instant, &'static str)>();
    let mut records: Vec<Record> = Vec::new();
    let mut outstanding = 0;
    let options = ProbeOptions {
        timeout: Some(TIMEOUT),
        ..ProbeOptions::default()
    };
    let note = |records: &mut Vec<Record>, (id, at, how): (usize, Instant, &'static str)| {
        let record: &mut Record = &mut records[id];
        record.completions += 1;
        record.completed.get_or_insert(at);
        record.outcome = how;
    };
    while Instant::now() < stop {
        let id = records.len();
        let host = if (id + index).is_multiple_of(2) {
            "127.0.0.1"
        } else {
            "::1"
        };
        let done = done.clone();
        let submitted = Instant::now();
        let accepted = session
            .probe_with(host, &options, move |result| {
                let _ = done.send((id, Instant::now(), outcome(&result)));
            })
            .is_ok();
        records.push(Record {
            submitted,
            accepted,
            completions: 0,
            completed: None,
            outcome: "",
        });
        outstanding += usize::from(accepted);
        while outstanding >= OUTSTANDING {
            match completions.recv_timeout(TIMEOUT + GRACE + SLACK * 3) {
                Ok(completion) => {
                    note(&mut records, completion);
                    outstanding -= 1;
                }
                Err(_) => break,
            }
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    // The last ones: every accepted probe completes within its bound.
    let end = Instant::now() + TIMEOUT + GRACE + SLACK * 3;
    while outstanding > 0 {
        let Ok(completion) = completions.recv_deadline(end) else {
            break;
        };
        note(&mut records, completion);
        outstanding -= 1;
    }
    // A second completion would arrive now.
    std::thread::sleep(Duration::from_millis(200));
    while let Ok(completion) = completions.try_recv() {
        note(&mut records, completion);
    }
    records
}

/// Injects faults into the session's helpers until `stop`; returns the instants of the faults.
fn injector(session: Arc<Session>, seed: u64, stop: Instant) -> Vec<Instant> {
    let mut random = Random::new(seed);
    let mut faults = Vec::new();
    let mut stopped: Vec<(u32, Instant)> = Vec::new();
    while Instant::now() < stop {
        std::thread::sleep(Duration::from_millis(50 + random.below(250)));
        let now = Instant::now();
        // Resume the helpers whose stop is over.
        stopped.retain(|&(pid, until)| {
            if until <= now {
                signal(pid, "CONT");
                return false;
            }
            true
        });
        let running: Vec<u32> = session
            .helpers()
            .iter()
            .filter(|h| h.running)
            .map(|h| h.pid)
            .collect();
        if running.is_empty() {
            continue;
        }
        let pid = running[random.below(running.len() as u64) as usize];
        match random.below(3) {
            0 => signal(pid, "KILL"),
            1 if !stopped.iter().any(|&(p, _)| p == pid) => {
                signal(pid, "STOP");
                stopped.push((pid, now + Duration::from_millis(random.below(2500))));
            }
            _ => continue,
        }
        faults.push(Instant::now());
    }
    for (pid, _) in stopped {
        signal(pid, "CONT");
        faults.push(Instant::now());
    }
    faults
}

#[test]
fn chaos_every_probe_completes_once_in_time_and_nothing_leaks() {
    let seconds: u64 = std::env::var("MTRPROTO_CHAOS_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let seed = std::env::var("MTRPROTO_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_cafe_f00d);
    println!("chaos: {seconds} s, seed {seed} (MTRPROTO_CHAOS_SECONDS, MTRPROTO_CHAOS_SEED)");
    let fds_before = fd_count();
    let threads_before = thread_count();
    let seen_pids = Arc::new(Mutex::new(Vec::<u32>::new()));

    let session = Arc::new(
        Session::builder()
            .program(
                env!("CARGO_BIN_EXE_fake-mtr-packet"),
                ["--chaos", &seed.to_string(), "--delay-ms", "1"],
            )
            .helpers(HELPERS)
            .grace(GRACE)
            .close_grace(Duration::from_millis(500))
            .open()
            .unwrap(),
    );
    let stop = Instant::now() + Duration::from_secs(seconds);
    let probers: Vec<_> = (0..THREADS)
        .map(|index| {
            let session = Arc::clone(&session);
            std::thread::spawn(move || prober(session, index, stop))
        })
        .collect();
    let watcher = {
        let session = Arc::clone(&session);
        let seen = Arc::clone(&seen_pids);
        std::thread::spawn(move || {
            while Instant::now() < stop {
                let mut seen = seen.lock().unwrap();
                for pid in session.helper_pids() {
                    if !seen.contains(&pid) {
                        seen.push(pid);
                    }
                }
                drop(seen);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let faults = {
        let session = Arc::clone(&session);
        std::thread::spawn(move || injector(session, seed, stop))
            .join()
            .unwrap()
    };
    let records: Vec<Record> = probers
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    watcher.join().unwrap();

    // Exactly once, in time.
    let bound = TIMEOUT + GRACE + SLACK;
    let accepted = records.iter().filter(|r| r.accepted).count();
    let mut late = Vec::new();
    for record in &records {
        if !record.accepted {
            assert_eq!(
                record.completions, 0,
                "a refused probe's callback was called"
            );
            continue;
        }
        assert_eq!(record.completions, 1, "called {} times", record.completions);
        let completed = record.completed.unwrap();
        let fault = faults
            .iter()
            .copied()
            .filter(|&f| f <= completed)
            .max()
            .unwrap_or(record.submitted);
        let start = record.submitted.max(fault);
        let took = completed.saturating_duration_since(start);
        if took > bound {
            late.push(took);
        }
    }
    let slowest = records
        .iter()
        .filter_map(|r| Some(r.completed?.saturating_duration_since(r.submitted)))
        .max()
        .unwrap_or_default();
    let statuses = session.helpers();
    let exits: Vec<_> = statuses.iter().map(|h| h.last_exit).collect();
    println!(
        "chaos: {} probes, {accepted} accepted, {} faults injected, {} helper processes, \
         slowest completion {slowest:?} after submission, {} late",
        records.len(),
        faults.len(),
        seen_pids.lock().unwrap().len(),
        late.len()
    );
    println!("chaos: last exits {exits:?}");
    for how in ["answered", "exited", "unresponsive", "junk", "other"] {
        let count = records.iter().filter(|r| r.outcome == how).count();
        println!("chaos: {how}: {count}");
    }
    assert!(accepted > 1000, "too few probes: {accepted}");
    assert!(late.is_empty(), "completed later than {bound:?}: {late:?}");

    // CPU while every helper is stopped, with probes pending.
    let options = ProbeOptions {
        timeout: Some(TIMEOUT),
        ..ProbeOptions::default()
    };
    let pending: Vec<_> = (0..50)
        .filter_map(|_| session.probe("127.0.0.1", &options).ok())
        .collect();
    let pids = session.helper_pids();
    for &pid in &pids {
        signal(pid, "STOP");
    }
    let before = cpu_seconds();
    std::thread::sleep(Duration::from_millis(900));
    let used = cpu_seconds() - before;
    for &pid in &pids {
        signal(pid, "CONT");
    }
    println!("chaos: {used} s of CPU in 0.9 s with every helper stopped");
    assert!(
        used <= 0.05,
        "{used} s of CPU while every helper was stopped"
    );
    for handle in pending {
        assert!(
            handle.wait_timeout(TIMEOUT + GRACE + SLACK).is_some(),
            "a probe pending while the helpers were stopped never completed"
        );
    }

    // Nothing left behind.
    drop(session);
    let peak = peak_rss_kb();
    println!("chaos: peak RSS {peak} kB");
    assert!(peak < RSS_BOUND_KB, "peak RSS {peak} kB");
    assert_eq!(fd_count(), fds_before, "file descriptors leaked");
    assert_eq!(thread_count(), threads_before, "threads leaked");
    let left: Vec<u32> = seen_pids
        .lock()
        .unwrap()
        .iter()
        .copied()
        .filter(|&pid| process_exists(pid))
        .collect();
    assert!(
        left.is_empty(),
        "helper processes left (zombies included): {left:?}"
    );
    assert!(
        mtrproto_tests::child_pids().is_empty(),
        "children left: {:?}",
        mtrproto_tests::child_pids()
    );
}
