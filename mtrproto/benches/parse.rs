//! Reply parser throughput on a realistic mix of mtr-packet lines.
//!
//! `cargo bench -p mtrproto --bench parse`; criterion reports elements (lines) per second.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mtrproto::{LineFramer, Reply};
use std::hint::black_box;

/// Roughly what a trace produces: mostly routers and the target, some losses, a few MPLS hops.
const MIX: [&str; 8] = [
    "5 reply ip-4 127.0.0.1 round-trip-time 1554",
    "6 ttl-expired ip-4 10.200.1.2 round-trip-time 7933",
    "7 ttl-expired ip-4 198.18.0.101 round-trip-time 375 mpls 1234,5,1,7",
    "8 no-reply",
    "9 reply ip-6 2001:db8::5 round-trip-time 20311",
    "10 ttl-expired ip-6 2001:db8:1::1 round-trip-time 812",
    "11 ttl-expired ip-4 10.1.2.3 round-trip-time 4410 mpls 16,0,0,1,17,7,1,255",
    "12 no-reply",
];

fn parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("reply");
    group.throughput(Throughput::Elements(MIX.len() as u64));
    group.bench_function("parse_mix", |b| {
        b.iter(|| {
            for line in MIX {
                // By reference: moving the ~200-byte result would be measured too.
                black_box(&Reply::parse(black_box(line)));
            }
        })
    });
    let stream: Vec<u8> = MIX.iter().flat_map(|l| l.bytes().chain([b'\n'])).collect();
    group.bench_function("frame_and_parse_mix", |b| {
        let mut framer = LineFramer::new();
        b.iter(|| {
            framer.feed(black_box(&stream), |line| {
                if let Ok(line) = line {
                    black_box(&Reply::parse(line));
                }
            })
        })
    });
    group.finish();
}

criterion_group!(benches, parse);
criterion_main!(benches);
