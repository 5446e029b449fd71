//! Command-line options shared by the examples; each example uses part of it.
#![allow(dead_code)]

use std::time::Duration;

use mtrproto_blocking::{IpVersion, ProbeOptions, Protocol, Session};

/// Options common to every example, plus the ones it asked for by name.
#[derive(Debug, Default)]
pub(crate) struct Args {
    pub(crate) host: String,
    pub(crate) options: ProbeOptions,
    pub(crate) count: Option<u32>,
    pub(crate) interval: Option<Duration>,
    pub(crate) grace: Option<Duration>,
    pub(crate) max_hops: Option<u8>,
    pub(crate) flags: Vec<String>,
}

/// Parses `[-c N] [-i SECONDS] [-G SECONDS] [-m HOPS] [-w TIMEOUT_S] [-t TTL] [-p icmp|udp|tcp|sctp] [--port N] [-4|-6]
/// [--FLAG...] HOST`; `flags` lists the `--FLAG`s this example accepts.
pub(crate) fn parse(usage: &str, flags: &[&str]) -> Args {
    match try_parse(flags) {
        Ok(args) => args,
        Err(error) => {
            eprintln!("error: {error}\nusage: {usage}");
            std::process::exit(2);
        }
    }
}

fn try_parse(flags: &[&str]) -> Result<Args, String> {
    let mut args = Args::default();
    let mut words = std::env::args().skip(1);
    while let Some(word) = words.next() {
        let mut value = |name: &str| words.next().ok_or(format!("{name} needs a value"));
        match word.as_str() {
            "-c" => args.count = Some(number(&value("-c")?)?),
            "-i" => args.interval = Some(seconds(&value("-i")?)?),
            "-G" => args.grace = Some(seconds(&value("-G")?)?),
            "-m" => args.max_hops = Some(number(&value("-m")?)?),
            "-w" => args.options.timeout = Some(Duration::from_secs(number(&value("-w")?)?)),
            "-t" => args.options.ttl = Some(number(&value("-t")?)?),
            "--port" => args.options.port = Some(number(&value("--port")?)?),
            "-p" => {
                args.options.protocol = match value("-p")?.as_str() {
                    "icmp" => Protocol::Icmp,
                    "udp" => Protocol::Udp,
                    "tcp" => Protocol::Tcp,
                    "sctp" => Protocol::Sctp,
                    other => return Err(format!("unknown protocol {other}")),
                }
            }
            "-4" => args.options.ip_version = Some(IpVersion::V4),
            "-6" => args.options.ip_version = Some(IpVersion::V6),
            flag if flags.contains(&flag) => args.flags.push(flag.to_owned()),
            other if other.starts_with('-') => return Err(format!("unknown option {other}")),
            host if args.host.is_empty() => args.host = host.to_owned(),
            extra => return Err(format!("unexpected argument {extra}")),
        }
    }
    if args.host.is_empty() {
        return Err("no HOST given".into());
    }
    Ok(args)
}

fn seconds(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .parse()
        .map_err(|_| format!("{text}: not a number of seconds"))?;
    Duration::try_from_secs_f64(secs).map_err(|e| format!("{text}: {e}"))
}

fn number<T: std::str::FromStr>(text: &str) -> Result<T, String> {
    text.parse()
        .map_err(|_| format!("{text}: not a valid number here"))
}

/// A duration in milliseconds with three decimals.
pub(crate) fn ms(duration: Duration) -> String {
    format!("{:.3}", duration.as_secs_f64() * 1e3)
}

/// Opens a session, or prints why it cannot and exits non-zero.
pub(crate) fn open_session() -> Session {
    Session::open().unwrap_or_else(|error| {
        eprintln!("error: {error}");
        std::process::exit(1);
    })
}
