//! Pings a host through mtr-packet, like `ping`.
//!
//! ```text
//! cargo run -p mtrproto-blocking --example ping -- [-c COUNT] [-i SECONDS]
//!     [-p icmp|udp|tcp|sctp] [--port N] [-t TTL] [-w TIMEOUT_S] [-4|-6] HOST
//! ```
//!
//! `--help` lists every option.
//!
//! Prints one line per probe and a summary; exits non-zero when the session cannot open or
//! no probe got a reply. Probes mtr-packet refused to send (`invalid-argument`,
//! `permission-denied`...) are counted apart from the ones sent, with its reply; an option
//! refused before any probe goes out (out of range, or one the helper lacks) ends it at
//! once. Only ping hosts you are allowed to probe (try `localhost`).

#[macro_use]
mod common;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use mtrproto_blocking::{Error, TraceStats};

/// Pings a host through mtr-packet, like `ping`. Only ping hosts you are allowed to probe.
#[derive(Debug, Parser)]
#[command(name = "ping")]
struct Cli {
    /// Probes to send.
    #[arg(short = 'c', allow_negative_numbers = true, long, default_value_t = 4,
          value_parser = clap::value_parser!(u32).range(1..))]
    count: u32,
    /// Seconds between probes.
    #[arg(short = 'i', allow_negative_numbers = true, long, value_name = "SECONDS", default_value = "1",
          value_parser = common::seconds)]
    interval: Duration,
    /// Time to live of each probe.
    #[arg(short = 't', allow_negative_numbers = true, long, value_parser = clap::value_parser!(u8).range(1..))]
    ttl: Option<u8>,
    #[command(flatten)]
    probe: common::ProbeFlags,
    /// Host name or address to ping (try localhost).
    host: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut options = cli.probe.options();
    options.ttl = cli.ttl;
    let session = common::open_session();
    let (count, interval) = (cli.count, cli.interval);
    outln!("PING {} via mtr-packet {}", cli.host, session.version());
    let target = match session.resolve(&cli.host, options.ip_version) {
        Ok(target) => target,
        Err(error) => {
            eprintln!("ping: {error}");
            return ExitCode::FAILURE;
        }
    };
    // One hop: mtr's figures for it (loss, best, average, worst) are ping's summary.
    let mut stats = TraceStats::new(target, 1);
    // Probes mtr-packet did not send (`ReplyKind::is_refusal`), and its latest reply.
    let mut refused = 0;
    let mut refusal = None;
    for seq in 1..=count {
        let started = Instant::now();
        match session.probe_blocking(target, &options) {
            Ok(result) if result.result.is_refusal() => {
                outln!(
                    "seq={seq}: not sent, mtr-packet refused it: {}",
                    result.result
                );
                refused += 1;
                refusal = Some(result.result);
            }
            Ok(result) => {
                stats.sent(1);
                let from = result.responder.map_or("-".to_owned(), |a| a.to_string());
                let time = result.time.map_or("-".to_owned(), common::ms);
                outln!("{} from {from}: seq={seq} time={time} ms", result.result);
                stats.record(1, &result);
            }
            // Refused before it went out (an option out of range, one the helper lacks):
            // so would every probe be, and none was sent.
            Err(error @ (Error::Argument(_) | Error::Unsupported { .. })) => {
                eprintln!("ping: {error}");
                return ExitCode::FAILURE;
            }
            Err(error) => {
                // Lost on the way: counted as sent and unanswered.
                stats.sent(1);
                outln!("seq={seq}: {error}");
            }
        }
        if seq < count {
            std::thread::sleep(interval.saturating_sub(started.elapsed()));
        }
    }
    stats.end_transit();
    let received = stats.hops().first().map_or(0, |hop| hop.received());
    let loss = stats.hops().first().map_or(100.0, |hop| hop.loss_percent());
    outln!("--- {} ping statistics ---", cli.host);
    let sent = count - refused;
    match refusal {
        None => outln!("{sent} probes sent, {received} received, {loss:.0}% loss"),
        Some(reply) if sent == 0 => {
            outln!("0 probes sent, {refused} refused by mtr-packet ({reply})")
        }
        Some(reply) => outln!(
            "{sent} probes sent, {received} received, {loss:.0}% loss; \
             {refused} refused by mtr-packet ({reply})"
        ),
    }
    if let Some(hop) = stats.hops().first().filter(|hop| hop.received() > 0) {
        let ms = |us: i64| format!("{:.3}", us as f64 / 1e3);
        let (best, avg, worst) = (hop.best_us(), hop.avg_us(), hop.worst_us());
        outln!(
            "rtt min/avg/max = {}/{}/{} ms",
            ms(best),
            ms(avg),
            ms(worst)
        );
    }
    if received > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
