//! Command-line options shared by the examples (parsed with clap), and small helpers.
//!
//! Numeric options take negative numbers (so `-c -1` says the value is out of range) one by
//! one, never command-wide, where `-4` and `-6` would read as numbers instead of flags.
#![allow(dead_code, unused_macros)]

use std::io::Write;
use std::time::Duration;

use clap::Args;
use mtrproto_blocking::{IpVersion, ProbeOptions, Protocol, Session};

/// How probes are sent: protocol, port, address family and timeout.
#[derive(Debug, Args)]
pub(crate) struct ProbeFlags {
    /// Probe protocol: icmp, udp, tcp or sctp.
    #[arg(short = 'p', long, default_value_t = Protocol::Icmp)]
    pub(crate) protocol: Protocol,
    /// Destination port (UDP, TCP and SCTP).
    #[arg(long, value_name = "PORT", allow_negative_numbers = true)]
    pub(crate) port: Option<u16>,
    /// Use IPv4 only.
    #[arg(short = '4', conflicts_with = "ipv6")]
    pub(crate) ipv4: bool,
    /// Use IPv6 only.
    #[arg(short = '6')]
    pub(crate) ipv6: bool,
    /// Seconds to wait for each probe's answer (whole seconds, as mtr-packet counts them).
    #[arg(short = 'w', allow_negative_numbers = true, long = "timeout", value_name = "SECONDS",
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub(crate) timeout: Option<u64>,
}

impl ProbeFlags {
    /// The probe options these flags ask for.
    pub(crate) fn options(&self) -> ProbeOptions {
        ProbeOptions {
            protocol: self.protocol,
            port: self.port,
            ip_version: if self.ipv4 {
                Some(IpVersion::V4)
            } else if self.ipv6 {
                Some(IpVersion::V6)
            } else {
                None
            },
            timeout: self.timeout.map(Duration::from_secs),
            ..ProbeOptions::default()
        }
    }
}

/// Parses a number of seconds such as `0.2`: finite, not negative, at most a day.
pub(crate) fn seconds(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .parse()
        .map_err(|_| "not a number of seconds".to_owned())?;
    if !(0.0..=86_400.0).contains(&secs) {
        return Err("must be between 0 and 86400 seconds".to_owned());
    }
    Ok(Duration::from_secs_f64(secs))
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

/// Writes to stdout. A closed stdout (`trace --json HOST | head -1`) ends the program
/// quietly with status 1, as it ends Unix tools, instead of the panic of `print!`.
pub(crate) fn write_stdout(text: std::fmt::Arguments<'_>) {
    let mut stdout = std::io::stdout().lock();
    if let Err(error) = stdout.write_fmt(text).and_then(|()| stdout.flush()) {
        if error.kind() != std::io::ErrorKind::BrokenPipe {
            eprintln!("error: writing the output: {error}");
        }
        std::process::exit(1);
    }
}

/// `print!` through [`write_stdout`].
macro_rules! out {
    ($($arg:tt)*) => { $crate::common::write_stdout(format_args!($($arg)*)) };
}

/// `println!` through [`write_stdout`].
macro_rules! outln {
    ($($arg:tt)*) => { $crate::common::write_stdout(format_args!("{}\n", format_args!($($arg)*))) };
}
