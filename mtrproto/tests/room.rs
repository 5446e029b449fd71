//! `Session::has_room` and `Session::paced_room_at` against what `send_probe` does, over
//! seeded random sessions: windows of 1 to 4, queues of 0 to 2, with and without a rate,
//! partial writes, answers and `probes-exhausted` refusals in any order, time passing.
//! Drivers hold their own probes back on these answers, so they must be exact.

use std::time::{Duration, Instant};

use mtrproto::{ProbeArgs, Rate, SendError, Session, SessionConfig};

/// xorshift64.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn has_room_says_exactly_whether_send_probe_takes_a_probe() {
    let start = Instant::now();
    let mut disagreements = Vec::new();
    let mut counts = [0u32; 2];
    let mut paced = 0u32;
    for seed in 1..400u64 {
        let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let window = 1 + (next(&mut s) % 4) as usize;
        let max_queue = (next(&mut s) % 3) as usize;
        let rate = (next(&mut s).is_multiple_of(2)).then(|| Rate {
            per_second: 50 + (next(&mut s) % 200) as u32,
            burst: 1 + (next(&mut s) % 3) as u32,
        });
        let config = SessionConfig {
            window,
            max_queue,
            rate,
            grace: Duration::from_millis(100),
            ..SessionConfig::default()
        };
        if config.validate().is_err() {
            continue;
        }
        let mut session = Session::new(config);
        let mut now = start;
        let mut written: Vec<u32> = Vec::new();
        let mut pipe: Vec<u8> = Vec::new();
        let args = ProbeArgs::new("127.0.0.1".parse().unwrap())
            .timeout_secs(1)
            .unwrap();
        for step in 0..300 {
            match next(&mut s) % 6 {
                0 | 1 => {
                    let predicted = session.has_room(now);
                    counts[usize::from(predicted)] += 1;
                    // Room by the pacer alone: none now, some then (nothing else changing).
                    paced += u32::from(session.paced_room_at(now).is_some());
                    if let Some(at) = session.paced_room_at(now)
                        && (predicted || at <= now || !session.has_room(at))
                    {
                        disagreements.push(format!("seed {seed} step {step}: paced_room_at {:?} after now, has_room now {predicted}", at - now));
                    }
                    let taken = session.send_probe(now, args.clone());
                    if predicted != taken.is_ok()
                        || (taken.is_err() && !matches!(taken, Err(SendError::QueueFull(_))))
                    {
                        disagreements.push(format!("seed {seed} step {step}: has_room {predicted}, send_probe {taken:?} (window {window} max_queue {max_queue} rate {rate:?})"));
                    }
                }
                2 => {
                    if let Some(bytes) = session.poll_transmit(now) {
                        let n = bytes.len().min(1 + (next(&mut s) % 80) as usize);
                        pipe.extend_from_slice(&bytes[..n]);
                        session.consume(now, n);
                        // The helper reads whole lines: their tokens are in flight.
                        while let Some(end) = pipe.iter().position(|&b| b == b'\n') {
                            let line: Vec<u8> = pipe.drain(..=end).collect();
                            let line = String::from_utf8(line).unwrap();
                            written.push(line.split(' ').next().unwrap().parse().unwrap());
                        }
                    }
                }
                3 => {
                    if !written.is_empty() {
                        let i = (next(&mut s) % written.len() as u64) as usize;
                        let token = written.swap_remove(i);
                        let line = if next(&mut s).is_multiple_of(4) {
                            format!("{token} probes-exhausted\n")
                        } else {
                            format!("{token} reply ip-4 127.0.0.1 round-trip-time 100\n")
                        };
                        session.handle_input(now, line.as_bytes());
                    }
                }
                4 => {
                    now += Duration::from_millis(next(&mut s) % 40);
                    session.handle_timeout(now);
                }
                _ => while session.poll_event().is_some() {},
            }
        }
    }
    println!("has_room false {} true {}", counts[0], counts[1]);
    // Both answers were asked for, many times.
    assert!(counts[0] > 1000 && counts[1] > 1000, "{counts:?}");
    assert!(paced > 100, "{paced} held by the pacer alone");
    for d in disagreements.iter().take(10) {
        println!("{d}");
    }
    assert!(
        disagreements.is_empty(),
        "{} disagreements",
        disagreements.len()
    );
}
