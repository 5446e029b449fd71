//! A fake mtr-packet for fault tests: it speaks the protocol from a scenario given as
//! arguments, and sends no packet at all.
//!
//! ```text
//! fake-mtr-packet [--version V] [--delay-ms N] [--check-delay-ms N] [--reverse N] [--twice] [--garbage]
//!     [--partial] [--stall] [--exit-after N] [--refuse FEATURE]... [--require-local-ip]
//!     [--reply KIND] [--reply-at TTL:KIND]... [--close-stdout-after N] [--close-stdin-after N] [--junk-after N]
//!     [--deaf-after N] [--repeat-after N]
//!     [--orphan-after N] [--chaos SEED] [--read-log PATH] [--foreign] [--answer-every N]
//!     [--first-only PATH] [--routers N] [--malformed] [--check-reply FEATURE:KIND]
//! ```
//!
//! - `--version V`: what `check-support feature version` answers (default 0.95);
//! - `--delay-ms N`: answer each probe N ms after it arrives;
//! - `--check-delay-ms N`: answer each check-support N ms after it arrives (default at once);
//! - `--reverse N`: hold answers until N probes arrived, then answer them newest first;
//! - `--twice`: write every probe answer twice;
//! - `--garbage`: write a line of garbage before every probe answer;
//! - `--partial`: write answers a byte at a time;
//! - `--stall`: never answer a probe (features are still answered);
//! - `--exit-after N`: exit without a word after reading N requests;
//! - `--refuse FEATURE`: answer `no` for FEATURE;
//! - `--require-local-ip`: like mtr 0.93, answer `invalid-argument` to probes without a
//!   local address;
//! - `--reply KIND`: the answer to probes (default `reply`, from the target with rtt 100);
//! - `--reply-at TTL:KIND`: the answer to probes with that TTL instead of `--reply`'s
//!   (`none`: no answer at all, as for `--reply none`);
//! - `--close-stdout-after N`: after reading N requests, close stdout and stay alive, reading
//!   nothing, for a minute;
//! - `--close-stdin-after N`: after reading N requests, close stdin (the request just read
//!   goes unanswered, earlier ones are answered as usual) and stay alive, stdout open, for a
//!   minute;
//! - `--junk-after N`: after reading N requests, write junk lines as fast as it can for a
//!   minute, reading nothing;
//! - `--deaf-after N`: after reading N requests, stop reading stdin for a minute;
//! - `--repeat-after N`: after reading N requests, answer none and write the last probe
//!   answer again every 5 ms for a minute, still reading stdin (a helper looping on an old
//!   answer);
//! - `--orphan-after N`: after reading N requests, start a child that keeps stdin and stdout
//!   open for a minute, and exit;
//! - `--chaos SEED`: now and then (a pseudo-random draw per probe from SEED and the process
//!   id) exit, write a burst of junk, or stop reading for up to two seconds;
//! - `--read-log PATH`: append each request line to PATH as it is read, so that a test
//!   knows a request reached the helper (written and read) instead of guessing by a sleep;
//! - `--foreign`: before every probe answer, write an unsolicited line (token 0) and an
//!   answer for a token never sent;
//! - `--answer-every N`: answer only every Nth probe (the first, the N+1th...), leave the
//!   others unanswered for good;
//! - `--first-only PATH`: misbehave only in the first process to create PATH, which writes
//!   its process id there (every process of a session and its restarts gets the same
//!   arguments): the others answer every probe with `--delay-ms`, `--reply` and
//!   `--reply-at` only;
//! - `--routers N`: a path of N routers: a probe with a TTL up to N answers `ttl-expired`
//!   from that TTL's router (192.0.2.TTL, or 2001:db8::TTL for IPv6: documentation
//!   addresses, in answers only), unless `--reply-at` names its TTL;
//! - `--malformed`: answer each probe with a line whose token and reply name parse but
//!   whose `round-trip-time` does not (a number mtr-packet never writes);
//! - `--check-reply FEATURE:KIND`: answer `check-support feature FEATURE` with a KIND reply
//!   (`unknown-command`, say) instead of `feature-support`.
//!
//! Every misbehaviour ends within a minute, so a test that fails leaves nothing running.

use std::io::{BufRead, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use mtrproto::{Feature, ProbeArgs, Reply, ReplyKind, Request, Token, Word};
use mtrproto_tests::due::write_when_due;

#[derive(Default)]
struct Scenario {
    version: String,
    delay: Duration,
    check_delay: Duration,
    reverse: usize,
    twice: bool,
    garbage: bool,
    partial: bool,
    stall: bool,
    exit_after: Option<usize>,
    refuse: Vec<String>,
    require_local_ip: bool,
    reply: String,
    reply_at: Vec<(u8, String)>,
    close_stdout_after: Option<usize>,
    close_stdin_after: Option<usize>,
    junk_after: Option<usize>,
    deaf_after: Option<usize>,
    repeat_after: Option<usize>,
    orphan_after: Option<usize>,
    chaos: Option<u64>,
    read_log: Option<String>,
    foreign: bool,
    answer_every: Option<usize>,
    first_only: Option<String>,
    routers: u8,
    malformed: bool,
    check_reply: Vec<(String, String)>,
}

/// How long a misbehaviour lasts at most.
const MISBEHAVE_FOR: Duration = Duration::from_secs(60);

fn main() {
    let mut scenario = match parse_args() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("fake-mtr-packet: {e}");
            std::process::exit(2);
        }
    };
    if let Some(path) = &scenario.first_only {
        let first = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            // Its pid, for a test to tell which helper misbehaves.
            .map(|mut file| write!(file, "{}", std::process::id()))
            .is_ok();
        if !first {
            scenario = Scenario {
                version: std::mem::take(&mut scenario.version),
                delay: scenario.delay,
                check_delay: scenario.check_delay,
                reply: std::mem::take(&mut scenario.reply),
                reply_at: std::mem::take(&mut scenario.reply_at),
                routers: scenario.routers,
                read_log: scenario.read_log.take(),
                ..Scenario::default()
            };
        }
    }
    let (to_writer, writer_input) = crossbeam_channel::unbounded::<(Instant, Vec<u8>)>();
    let partial = scenario.partial;
    let writer = std::thread::spawn(move || {
        let mut out = std::io::stdout().lock();
        write_when_due(&writer_input, |bytes| {
            if partial {
                bytes
                    .chunks(1)
                    .try_for_each(|b| out.write_all(b).and_then(|()| out.flush()))
            } else {
                out.write_all(bytes).and_then(|()| out.flush())
            }
        });
    });
    let mut held = Vec::new();
    // The last probe answer, for `--repeat-after`.
    let mut last_probe_answer = Vec::new();
    let mut repeating = false;
    // Probes read so far, for `--answer-every`.
    let mut probes = 0usize;
    // Each process its own sequence: a restarted helper must not replay its predecessor's.
    let mut random = scenario
        .chaos
        .map(|seed| (seed ^ u64::from(std::process::id()).rotate_left(32)) | 1);
    let mut read_log = scenario.read_log.as_ref().map(|path| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
    });
    let stdin = std::io::stdin();
    for (n, line) in stdin.lock().lines().enumerate() {
        let Ok(line) = line else { break };
        if let Some(Ok(log)) = &mut read_log {
            // One write per line, so a reader never sees half of one.
            let _ = log.write_all(format!("{line}\n").as_bytes());
        }
        let reached = |limit: Option<usize>| limit.is_some_and(|limit| n >= limit);
        if reached(scenario.exit_after) {
            std::process::exit(0);
        }
        if reached(scenario.close_stdout_after) {
            close_fd(1);
            std::thread::sleep(MISBEHAVE_FOR);
            std::process::exit(0);
        }
        if reached(scenario.close_stdin_after) {
            close_fd(0);
            std::thread::sleep(MISBEHAVE_FOR);
            std::process::exit(0);
        }
        if reached(scenario.junk_after) {
            flood_junk();
        }
        if reached(scenario.deaf_after) {
            std::thread::sleep(MISBEHAVE_FOR);
            std::process::exit(0);
        }
        if reached(scenario.repeat_after) {
            if !repeating {
                repeating = true;
                repeat(last_probe_answer.clone());
            }
            continue;
        }
        if reached(scenario.orphan_after) {
            // The child inherits stdin and stdout and outlives this process.
            let _ = std::process::Command::new("sleep").arg("60").spawn();
            std::process::exit(0);
        }
        let Some((probe, answer)) = answer(&scenario, &line) else {
            continue;
        };
        if !probe {
            let due = match Request::parse(&line) {
                Ok((_, Request::CheckSupport(_))) => Instant::now() + scenario.check_delay,
                _ => Instant::now(),
            };
            to_writer.send((due, answer)).ok();
            continue;
        }
        if let Some(state) = &mut random {
            match chaos_draw(state) {
                Chaos::Exit => std::process::exit(3),
                Chaos::Junk => {
                    let junk = b"%% junk burst, not protocol\n".repeat(2000);
                    to_writer.send((Instant::now(), junk)).ok();
                }
                Chaos::Deaf(pause) => std::thread::sleep(pause),
                Chaos::None => {}
            }
        }
        probes += 1;
        if scenario
            .answer_every
            .is_some_and(|every| !(probes - 1).is_multiple_of(every.max(1)))
        {
            continue;
        }
        let mut bytes = Vec::new();
        if scenario.foreign {
            // A token this session never sends: it counts up from 1.
            let never = Token::new(2_000_000_000 + probes as u32).unwrap_or(Token::MAX);
            bytes.extend_from_slice(b"0 command-parse-error\n");
            bytes.extend_from_slice(&encode(&Reply::new(never, ReplyKind::NoReply)));
        }
        if scenario.garbage {
            bytes.extend_from_slice(b"%% this is not protocol \xff\n");
        }
        let answer = if scenario.malformed {
            malformed(&answer)
        } else {
            answer
        };
        bytes.extend_from_slice(&answer);
        last_probe_answer.clone_from(&answer);
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

/// Closes stdin (0) or stdout (1) while the process goes on.
#[allow(unsafe_code)]
fn close_fd(fd: i32) {
    // SAFETY: closing a descriptor number has no memory effects; a later read or write on
    // it fails with EBADF and touches no memory.
    unsafe {
        libc::close(fd);
    }
}

/// Writes junk lines as fast as stdout takes them, then exits.
fn flood_junk() -> ! {
    let started = Instant::now();
    // Its own handle on the pipe: the answer writer holds stdout's lock for good.
    let Ok(mut out) = std::fs::OpenOptions::new()
        .write(true)
        .open("/proc/self/fd/1")
    else {
        std::process::exit(1);
    };
    let line = b"%% this is not protocol, it is a flood of junk lines\n".repeat(64);
    while started.elapsed() < MISBEHAVE_FOR {
        if out.write_all(&line).is_err() {
            break;
        }
    }
    std::process::exit(0);
}

/// Writes `answer` again every 5 ms for a minute, then exits, on a thread of its own.
fn repeat(answer: Vec<u8>) {
    std::thread::spawn(move || {
        let started = Instant::now();
        // Its own handle on the pipe: the answer writer holds stdout's lock for good.
        let Ok(mut out) = std::fs::OpenOptions::new()
            .write(true)
            .open("/proc/self/fd/1")
        else {
            std::process::exit(1);
        };
        while started.elapsed() < MISBEHAVE_FOR {
            if out.write_all(&answer).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        std::process::exit(0);
    });
}

enum Chaos {
    None,
    Exit,
    Junk,
    Deaf(Duration),
}

/// One draw of the chaos mode: about one probe in 2000 brings each misbehaviour.
fn chaos_draw(state: &mut u64) -> Chaos {
    // xorshift64: deterministic for a seed, good enough to scatter faults.
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    match *state % 6000 {
        0..=2 => Chaos::Exit,
        3..=5 => Chaos::Junk,
        6..=8 => Chaos::Deaf(Duration::from_millis(*state / 6000 % 2000)),
        _ => Chaos::None,
    }
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
            if let Some((_, kind)) = scenario
                .check_reply
                .iter()
                .find(|(f, _)| f == feature.as_str())
            {
                let kind = ReplyKind::from_name(Word::new(kind).ok()?);
                return Some((false, encode(&Reply::new(token, kind))));
            }
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
            let none =
                reply_name(scenario, &args) == "none" && router_ttl(scenario, &args).is_none();
            if scenario.stall || none {
                return None;
            }
            Some((true, encode(&probe_reply(scenario, token, &args))))
        }
    }
}

fn probe_reply(scenario: &Scenario, token: Token, args: &ProbeArgs) -> Reply<'static> {
    if scenario.require_local_ip && args.fields().local_addr.is_none() {
        return Reply::new(token, ReplyKind::InvalidArgument);
    }
    let name = reply_name(scenario, args);
    let kind =
        ReplyKind::from_name(Word::new(name).unwrap_or_else(|_| Word::new("reply").unwrap()));
    let mut reply = Reply::new(token, kind);
    if matches!(
        reply.kind,
        ReplyKind::Reply | ReplyKind::TtlExpired | ReplyKind::NoRoute
    ) {
        reply.address = Some(args.target());
        reply.round_trip_time_us = Some(100);
    }
    if let Some(ttl) = router_ttl(scenario, args) {
        reply.kind = ReplyKind::TtlExpired;
        reply.address = Some(match args.target() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::new(192, 0, 2, ttl)),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, ttl.into())),
        });
        reply.round_trip_time_us = Some(100);
    }
    reply
}

/// The probe's TTL where `--routers` has a router answer it (and `--reply-at` does not).
fn router_ttl(scenario: &Scenario, args: &ProbeArgs) -> Option<u8> {
    let ttl = args.fields().ttl?;
    let named = scenario.reply_at.iter().any(|(at, _)| *at == ttl);
    (ttl <= scenario.routers && !named).then_some(ttl)
}

/// The answer's name for a probe: `--reply-at`'s for its TTL, else `--reply`'s.
fn reply_name<'s>(scenario: &'s Scenario, args: &ProbeArgs) -> &'s str {
    scenario
        .reply_at
        .iter()
        .find(|(ttl, _)| Some(*ttl) == args.fields().ttl)
        .map_or(&scenario.reply, |(_, kind)| kind)
}

/// `answer` (one line) with its `round-trip-time` argument, or one added, made a value that
/// does not parse.
fn malformed(answer: &[u8]) -> Vec<u8> {
    let line = String::from_utf8_lossy(answer);
    let head = line
        .trim_end()
        .split(" round-trip-time")
        .next()
        .unwrap_or_default();
    format!("{head} round-trip-time not-a-number\n").into_bytes()
}

fn encode(reply: &Reply<'_>) -> Vec<u8> {
    let mut line = String::new();
    reply.encode(&mut line);
    line.into_bytes()
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
            "--check-delay-ms" => s.check_delay = Duration::from_millis(number(value()?)?),
            "--reverse" => s.reverse = number(value()?)? as usize,
            "--twice" => s.twice = true,
            "--garbage" => s.garbage = true,
            "--partial" => s.partial = true,
            "--stall" => s.stall = true,
            "--exit-after" => s.exit_after = Some(number(value()?)? as usize),
            "--refuse" => s.refuse.push(value()?),
            "--require-local-ip" => s.require_local_ip = true,
            "--reply" => s.reply = value()?,
            "--reply-at" => {
                let value = value()?;
                let (ttl, kind) = value
                    .split_once(':')
                    .ok_or(format!("--reply-at {value}: expected TTL:KIND"))?;
                let ttl = u8::try_from(number(ttl.to_owned())?).map_err(|e| e.to_string())?;
                s.reply_at.push((ttl, kind.to_owned()));
            }
            "--close-stdout-after" => s.close_stdout_after = Some(number(value()?)? as usize),
            "--close-stdin-after" => s.close_stdin_after = Some(number(value()?)? as usize),
            "--junk-after" => s.junk_after = Some(number(value()?)? as usize),
            "--deaf-after" => s.deaf_after = Some(number(value()?)? as usize),
            "--repeat-after" => s.repeat_after = Some(number(value()?)? as usize),
            "--orphan-after" => s.orphan_after = Some(number(value()?)? as usize),
            "--chaos" => s.chaos = Some(number(value()?)?),
            "--read-log" => s.read_log = Some(value()?),
            "--foreign" => s.foreign = true,
            "--answer-every" => s.answer_every = Some(number(value()?)? as usize),
            "--first-only" => s.first_only = Some(value()?),
            "--malformed" => s.malformed = true,
            "--check-reply" => {
                let value = value()?;
                let (feature, kind) = value
                    .split_once(':')
                    .ok_or(format!("--check-reply {value}: expected FEATURE:KIND"))?;
                s.check_reply.push((feature.to_owned(), kind.to_owned()));
            }
            "--routers" => {
                s.routers = u8::try_from(number(value()?)?).map_err(|e| e.to_string())?;
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(s)
}
