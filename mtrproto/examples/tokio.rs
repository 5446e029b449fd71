//! Drives a `Session` from tokio: the core needs nothing but bytes and instants.
//!
//! ```text
//! cargo run -p mtrproto --example tokio -- [HOST...]    # default: 127.0.0.1 ::1 (--help)
//! ```
//!
//! Starts `mtr-packet` (or `$MTR_PACKET`, a command line split by `mtrproto::split_command`
//! as the blocking driver splits it) with `tokio::process`, probes every host three times at
//! once, prints a line per result, and exits non-zero if any probe failed. Hosts are
//! IP addresses; only probe your own machine or hosts you are allowed to probe.

use std::io::{self, ErrorKind::BrokenPipe, Write};
use std::net::IpAddr;
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use clap::Parser;
use mtrproto::{Event, ProbeArgs, Session, SessionConfig, Token};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;
use tokio::time::{Instant, sleep_until};

const PROBES_PER_HOST: usize = 3;

/// Probes hosts three times each through mtr-packet, driving the sans-IO session from tokio.
/// Only probe your own machine or hosts you are allowed to probe.
#[derive(Debug, Parser)]
#[command(name = "tokio")]
struct Cli {
    /// IP addresses to probe.
    #[arg(value_name = "HOST", default_values_t = ["127.0.0.1".parse::<IpAddr>().unwrap(), "::1".parse().unwrap()])]
    hosts: Vec<IpAddr>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.hosts).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        // A closed stdout (`tokio | head -1`) ends it quietly, as it ends Unix tools.
        Err(error)
            if error.downcast_ref::<io::Error>().map(io::Error::kind) == Some(BrokenPipe) =>
        {
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Probes every host; `Ok(false)` if any probe did not get a `reply`.
async fn run(hosts: Vec<IpAddr>) -> Result<bool, Box<dyn std::error::Error>> {
    // As the blocking driver reads it (`command_from_env`): a value that is not UTF-8 too,
    // lossily, rather than mtr-packet from PATH in its place.
    let words = match std::env::var_os("MTR_PACKET") {
        Some(value) => mtrproto::split_command(&value.to_string_lossy())?,
        None => vec!["mtr-packet".into()],
    };
    let program = &words[0];
    let mut child = Command::new(program)
        .args(&words[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start {program}: {e} (apt-get install mtr-tiny)"))?;
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
    let mut stdout = child.stdout.take().ok_or("no stdout")?;

    let mut session = Session::new(SessionConfig::default());
    let mut waiting: Vec<(Token, IpAddr, usize)> = Vec::new();
    for &host in &hosts {
        for seq in 1..=PROBES_PER_HOST {
            let args = ProbeArgs::new(host).timeout_secs(2)?;
            waiting.push((
                session.send_probe(Instant::now().into_std(), args)?,
                host,
                seq,
            ));
        }
    }

    let mut all_ok = true;
    let mut buf = vec![0u8; 64 * 1024];
    while !waiting.is_empty() {
        // Outputs, in the order the session documents: transmit, timeout, events.
        let now = Instant::now().into_std();
        let pending = session.poll_transmit(now).map(<[u8]>::to_vec);
        let deadline = session.poll_timeout().map(Instant::from_std);
        while let Some(event) = session.poll_event() {
            all_ok &= report(event, &mut waiting)?;
        }
        if waiting.is_empty() {
            break;
        }
        tokio::select! {
            // The helper's errors named, apart from this program's own stdout.
            written = stdin.write(pending.as_deref().unwrap_or_default()), if pending.is_some() => {
                let written = written.map_err(|e| format!("writing to {program}: {e}"))?;
                session.consume(Instant::now().into_std(), written);
            }
            read = stdout.read(&mut buf) => match read.map_err(|e| format!("reading {program}: {e}"))? {
                0 => session.handle_eof(Instant::now().into_std()),
                n => session.handle_input(Instant::now().into_std(), &buf[..n]),
            },
            () = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                session.handle_timeout(Instant::now().into_std());
            }
        }
    }
    drop(stdin);
    tokio::time::timeout(Duration::from_secs(2), child.wait())
        .await
        .ok();
    Ok(all_ok)
}

/// Prints one result line; returns whether it was a success.
fn report(event: Event, waiting: &mut Vec<(Token, IpAddr, usize)>) -> io::Result<bool> {
    let Event::Probe { token, outcome } = event else {
        eprintln!("note: {event:?}");
        return Ok(true);
    };
    let Some(i) = waiting.iter().position(|(t, _, _)| *t == token) else {
        return Ok(true);
    };
    let mut out = io::stdout().lock();
    let (_, host, seq) = waiting.swap_remove(i);
    match outcome {
        Ok(result) => {
            let from = result.responder.map_or("-".into(), |a| a.to_string());
            let time = result
                .time
                .map_or("-".into(), |t| format!("{:.3} ms", t.as_secs_f64() * 1e3));
            writeln!(
                out,
                "{host} probe {seq}: {} from {from} time {time}",
                result.result
            )?;
            Ok(result.success())
        }
        Err(failure) => {
            writeln!(out, "{host} probe {seq}: failed: {failure}")?;
            Ok(false)
        }
    }
}
