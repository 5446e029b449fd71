//! A fake mtr-packet for fault tests: it speaks the protocol from a scenario given as
//! arguments, and sends no packet at all.
//!
//! ```text
//! fake-mtr-packet [--version V] [--delay-ms N] [--reverse N] [--twice] [--garbage]
//!     [--partial] [--stall] [--exit-after N] [--refuse FEATURE]... [--require-local-ip]
//!     [--reply KIND]
//! ```
//!
//! - `--version V`: what `check-support feature version` answers (default 0.95);
//! - `--delay-ms N`: answer each probe N ms after it arrives;
//! - `--reverse N`: hold answers until N probes arrived, then answer them newest first;
//! - `--twice`: write every probe answer twice;
//! - `--garbage`: write a line of garbage before every probe answer;
//! - `--partial`: write answers a byte at a time;
//! - `--stall`: never answer a probe (features are still answered);
//! - `--exit-after N`: exit without a word after reading N requests;
//! - `--refuse FEATURE`: answer `no` for FEATURE;
//! - `--require-local-ip`: like mtr 0.93, answer `invalid-argument` to probes without a
//!   local address;
//! - `--reply KIND`: the answer to probes (default `reply`, from the target with rtt 100).

use std::io::{BufRead, Write};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use mtrproto::{Feature, ProbeArgs, Reply, ReplyKind, Request, Token, Word};

#[derive(Default)]
struct Scenario {
    version: String,
    delay: Duration,
    reverse: usize,
    twice: bool,
    garbage: bool,
    partial: bool,
    stall: bool,
    exit_after: Option<usize>,
    refuse: Vec<String>,
    require_local_ip: bool,
    reply: String,
}

fn main() {
    let scenario = match parse_args() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("fake-mtr-packet: {e}");
            std::process::exit(2);
        }
    };
    let (to_writer, writer_input) = mpsc::channel::<(Instant, Vec<u8>)>();
    let partial = scenario.partial;
    let writer = std::thread::spawn(move || write_answers(writer_input, partial));
    let mut held = Vec::new();
    let stdin = std::io::stdin();
    for (n, line) in stdin.lock().lines().enumerate() {
        let Ok(line) = line else { break };
        if scenario.exit_after.is_some_and(|limit| n >= limit) {
            std::process::exit(0);
        }
        let Some((probe, answer)) = answer(&scenario, &line) else {
            continue;
        };
        if !probe {
            to_writer.send((Instant::now(), answer)).ok();
            continue;
        }
        let mut bytes = Vec::new();
        if scenario.garbage {
            bytes.extend_from_slice(b"%% this is not protocol \xff\n");
        }
        bytes.extend_from_slice(&answer);
        if scenario.twice {
            bytes.extend_from_slice(&answer);
        }
        if scenario.reverse > 0 {
            held.push(bytes);
            if held.len() >= scenario.reverse {
                for bytes in held.drain(..).rev() {
                    to_writer.send((Instant::now(), bytes)).ok();
                }
            }
        } else {
            to_writer
                .send((Instant::now() + scenario.delay, bytes))
                .ok();
        }
    }
    // Like mtr-packet: answer what is in flight, then exit.
    for bytes in held.drain(..).rev() {
        to_writer.send((Instant::now(), bytes)).ok();
    }
    drop(to_writer);
    writer.join().ok();
}

/// The answer to one request line, and whether it is a probe's. `None`: stay silent.
fn answer(scenario: &Scenario, line: &str) -> Option<(bool, Vec<u8>)> {
    let (token, request) = match Request::parse(line) {
        Ok(parsed) => parsed,
        Err(_) => {
            let token = line
                .split(' ')
                .next()
                .and_then(|t| t.parse().ok())
                .and_then(Token::new);
            let kind = if token.is_some() {
                ReplyKind::UnknownCommand
            } else {
                ReplyKind::CommandParseError
            };
            return Some((
                false,
                encode(&Reply::new(token.unwrap_or(Token::UNSOLICITED), kind)),
            ));
        }
    };
    match request {
        Request::CheckSupport(feature) => {
            let mut reply = Reply::new(token, ReplyKind::FeatureSupport);
            let support = match feature {
                f if scenario.refuse.iter().any(|r| r == f.as_str()) => "no",
                Feature::Version => scenario.version.as_str(),
                Feature::Other(_) => "no",
                _ => "ok",
            };
            reply.support = Some(Word::new(support).ok()?);
            Some((false, encode(&reply)))
        }
        Request::SendProbe(args) => {
            if scenario.stall {
                return None;
            }
            Some((true, encode(&probe_reply(scenario, token, &args))))
        }
    }
}

fn probe_reply(scenario: &Scenario, token: Token, args: &ProbeArgs) -> Reply<'static> {
    if scenario.require_local_ip && args.local_address().is_none() {
        return Reply::new(token, ReplyKind::InvalidArgument);
    }
    let kind = ReplyKind::from_name(
        Word::new(&scenario.reply).unwrap_or_else(|_| Word::new("reply").unwrap()),
    );
    let mut reply = Reply::new(token, kind);
    if matches!(
        reply.kind,
        ReplyKind::Reply | ReplyKind::TtlExpired | ReplyKind::NoRoute
    ) {
        reply.address = Some(args.target());
        reply.round_trip_time_us = Some(100);
    }
    reply
}

fn encode(reply: &Reply<'_>) -> Vec<u8> {
    let mut line = String::new();
    reply.encode(&mut line);
    line.into_bytes()
}

/// Writes answers when due. Delays are all equal, so arrival order is due order.
fn write_answers(input: mpsc::Receiver<(Instant, Vec<u8>)>, partial: bool) {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut pending: std::collections::VecDeque<(Instant, Vec<u8>)> = Default::default();
    let mut open = true;
    while open || !pending.is_empty() {
        let received = match pending.front() {
            Some((due, _)) => {
                let wait = due.saturating_duration_since(Instant::now());
                if open {
                    input
                        .recv_timeout(wait)
                        .map_err(|e| e == mpsc::RecvTimeoutError::Disconnected)
                } else {
                    std::thread::sleep(wait);
                    Err(false)
                }
            }
            None => input.recv().map_err(|_| true),
        };
        match received {
            Ok(item) => pending.push_back(item),
            Err(disconnected) => open &= !disconnected,
        }
        while let Some((due, bytes)) = pending.pop_front() {
            if due > Instant::now() {
                pending.push_front((due, bytes));
                break;
            }
            let written = if partial {
                bytes
                    .chunks(1)
                    .try_for_each(|b| out.write_all(b).and_then(|()| out.flush()))
            } else {
                out.write_all(&bytes).and_then(|()| out.flush())
            };
            if written.is_err() {
                return;
            }
        }
    }
}

fn parse_args() -> Result<Scenario, String> {
    let mut s = Scenario {
        version: "0.95".into(),
        reply: "reply".into(),
        ..Scenario::default()
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        let number = |v: String| v.parse::<u64>().map_err(|_| format!("{v}: not a number"));
        match arg.as_str() {
            "--version" => s.version = value()?,
            "--delay-ms" => s.delay = Duration::from_millis(number(value()?)?),
            "--reverse" => s.reverse = number(value()?)? as usize,
            "--twice" => s.twice = true,
            "--garbage" => s.garbage = true,
            "--partial" => s.partial = true,
            "--stall" => s.stall = true,
            "--exit-after" => s.exit_after = Some(number(value()?)? as usize),
            "--refuse" => s.refuse.push(value()?),
            "--require-local-ip" => s.require_local_ip = true,
            "--reply" => s.reply = value()?,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(s)
}
