//! Pings a host through mtr-packet, like `ping`.
//!
//! ```text
//! cargo run -p mtrproto-blocking --example ping -- [-c COUNT] [-i SECONDS] [-p icmp|udp|tcp]
//!     [--port N] [-t TTL] [-4|-6] HOST
//! ```
//!
//! Prints one line per probe and a summary; exits non-zero when the session cannot open or
//! no probe got a reply. Only ping hosts you are allowed to probe (try `localhost`).

mod common;

use std::process::ExitCode;
use std::time::{Duration, Instant};

const USAGE: &str =
    "ping [-c COUNT] [-i SECONDS] [-p icmp|udp|tcp] [--port N] [-t TTL] [-4|-6] HOST";

fn main() -> ExitCode {
    let args = common::parse(USAGE, &[]);
    let session = common::open_session();
    let count = args.count.unwrap_or(4);
    let interval = args.interval.unwrap_or(Duration::from_secs(1));
    println!("PING {} via mtr-packet {}", args.host, session.version());
    let mut times = Vec::new();
    for seq in 1..=count {
        let started = Instant::now();
        match session.probe_blocking(&args.host, &args.options) {
            Ok(result) => {
                let from = result.responder.map_or("-".to_owned(), |a| a.to_string());
                let time = result.time.map_or("-".to_owned(), common::ms);
                println!("{} from {from}: seq={seq} time={time} ms", result.result);
                if result.success {
                    times.extend(result.time);
                }
            }
            Err(error) => println!("seq={seq}: {error}"),
        }
        if seq < count {
            std::thread::sleep(interval.saturating_sub(started.elapsed()));
        }
    }
    let received = times.len() as u32;
    let loss = 100.0 * f64::from(count - received) / f64::from(count.max(1));
    println!("--- {} ping statistics ---", args.host);
    println!("{count} probes sent, {received} received, {loss:.0}% loss");
    if let (Some(min), Some(max)) = (times.iter().min(), times.iter().max()) {
        let avg = times.iter().sum::<Duration>() / received;
        println!(
            "rtt min/avg/max = {}/{}/{} ms",
            common::ms(*min),
            common::ms(avg),
            common::ms(*max)
        );
    }
    if received > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
