//! Allocation figures: parsing a reply allocates nothing, what a pending probe costs, and
//! what a trace in progress holds.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use std::time::Instant;

use mtrproto::{LineFramer, ProbeArgs, ProbeResult, Reply, Session, SessionConfig};

struct Counting;

// Per thread, so that the test harness and other tests do not count.
thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
    static LIVE_BYTES: Cell<isize> = const { Cell::new(0) };
}

fn allocations() -> usize {
    ALLOCATIONS.with(Cell::get)
}

fn live_bytes() -> isize {
    LIVE_BYTES.with(Cell::get)
}

// SAFETY: forwards to the system allocator unchanged; only counts calls.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        LIVE_BYTES.with(|n| n.set(n.get() + layout.size() as isize));
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.with(|n| n.set(n.get() - layout.size() as isize));
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn parsing_replies_does_not_allocate() {
    let lines = [
        "5 reply ip-4 127.0.0.1 round-trip-time 1554",
        "6 ttl-expired ip-6 2001:db8::1 round-trip-time 7933",
        "7 ttl-expired ip-4 198.18.0.101 round-trip-time 375 mpls 1234,5,1,7,16,0,0,1",
        "8 no-reply",
        "9 feature-support support 0.95",
        "10 invalid-argument reason protocol-not-supported",
    ];
    let stream: Vec<u8> = lines
        .iter()
        .flat_map(|l| l.bytes().chain([b'\n']))
        .collect();
    let mut framer = LineFramer::new();
    let mut parsed = 0;

    let before = allocations();
    for line in lines {
        let reply = Reply::parse(line).unwrap();
        std::hint::black_box(ProbeResult::from_reply(&reply));
    }
    framer.feed(&stream, |line| {
        parsed += usize::from(line.ok().and_then(|l| Reply::parse(l).ok()).is_some());
    });
    let after = allocations();

    assert_eq!(parsed, lines.len());
    assert_eq!(after - before, 0, "allocations while parsing");
}

/// Heap bytes a session holds per pending probe, queued or in flight. The figure is printed
/// (`cargo test -p mtrproto --test allocations -- --nocapture`) and bounded here.
#[test]
fn bytes_held_per_pending_probe() {
    const PROBES: usize = 20_000;
    for (what, window) in [("queued", 1), ("in flight", PROBES)] {
        let now = Instant::now();
        let args = ProbeArgs::new("127.0.0.1".parse().unwrap()).ttl(3).unwrap();
        let config = SessionConfig {
            window,
            ..SessionConfig::default()
        };
        let before = live_bytes();
        let mut session = Session::new(config);
        for _ in 0..PROBES {
            session.send_probe(now, args.clone()).unwrap();
        }
        let per_probe = (live_bytes() - before) / PROBES as isize;
        println!("{what}: {per_probe} bytes per pending probe");
        assert!(per_probe <= 400, "{what}: {per_probe} bytes per probe");
        drop(session);
    }
}

/// Heap bytes of one trace in progress on a long path: 16 routers (the longest of the
/// generated internet), then a target that answers, or a silent one (probed 13 hops past
/// the path). Every router answers each probe at once, in virtual time.
fn bytes_held_by_trace(silent_target: bool) -> isize {
    use mtrproto::{TraceConfig, Tracer};
    use std::time::Duration;
    const ROUTERS: u8 = 16;
    let start = Instant::now();
    let config = TraceConfig {
        cycles: 3,
        ..TraceConfig::default()
    };
    let target = "127.0.0.1";
    let before = live_bytes();
    let mut tracer = Tracer::new(ProbeArgs::new(target.parse().unwrap()), &config, start).unwrap();
    let mut now = start;
    let mut held = 0;
    while !tracer.is_done() && now < start + Duration::from_secs(600) {
        while let Some(probe) = tracer.poll_probe(now) {
            let ttl = probe.ttl();
            let line = match ttl {
                _ if ttl <= ROUTERS => {
                    format!("1 ttl-expired ip-4 10.0.0.{ttl} round-trip-time 900")
                }
                _ if silent_target => "1 no-reply".to_owned(),
                _ => format!("1 reply ip-4 {target} round-trip-time 1000"),
            };
            let result = ProbeResult::from_reply(&Reply::parse(&line).unwrap());
            drop(line);
            tracer.handle_result(now, ttl, &result);
            held = held.max(live_bytes() - before);
        }
        now = tracer.poll_timeout().unwrap_or(now).max(now);
        tracer.handle_timeout(now);
    }
    assert!(tracer.is_done());
    let hops = tracer.stats().hops().len();
    assert_eq!(hops, usize::from(ROUTERS) + 1);
    // The tracer itself lives on the stack here; a campaign keeps it in its table.
    held + std::mem::size_of::<Tracer>() as isize
}

/// A trace in progress holds its tracer (192 bytes), a 16-byte hop per TTL probed, and one
/// 72-byte allocation of mtr's figures per hop that answered (a second only for a hop with
/// several responders, an MPLS stack or errors): within 2 KB on the longest paths (1,776
/// bytes measured with an answering target, 1,824 with a silent one).
#[test]
fn bytes_held_per_trace_in_progress() {
    let answering = bytes_held_by_trace(false);
    let silent = bytes_held_by_trace(true);
    println!("16 routers: {answering} bytes, answering target; {silent} bytes, silent target");
    assert!(answering <= 2048, "{answering} bytes per trace");
    assert!(silent <= 2048, "{silent} bytes per trace");
}
