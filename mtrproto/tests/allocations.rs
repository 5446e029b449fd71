//! Allocation figures: parsing a reply allocates nothing, and what a pending probe costs.

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
