//! The raw mtr-packet limit, for comparison with probe-bench: the leanest driver there is.
//!
//! ```text
//! raw-bench [--mtr-packet CMD] [--target 127.0.0.1|::1] [--count N] [--window W]
//!     [--protocol icmp|udp|tcp|sctp] [--port P] [--timeout S]
//! ```
//!
//! Pre-builds every request line, writes W of them, then one more for every reply line read,
//! with plain blocking pipes and no parsing beyond counting whole lines by reply name. Prints the same
//! `key=value` line as probe-bench. Refuses any target but loopback.

use std::io::{Read, Write};
use std::net::IpAddr;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use mtrproto::{ArgumentError, ProbeArgs, ProbeFields, Protocol, Token};

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("raw-bench: {e}");
            ExitCode::from(2)
        }
    }
}

/// The command line.
struct Args {
    program: String,
    target: IpAddr,
    count: u64,
    window: u64,
    protocol: Protocol,
    port: Option<u16>,
    timeout_secs: u32,
}

fn parse() -> Result<Args, Box<dyn std::error::Error>> {
    let mut parsed = Args {
        program: "mtr-packet".to_owned(),
        target: IpAddr::from([127, 0, 0, 1]),
        count: 100_000,
        window: 256,
        protocol: Protocol::Icmp,
        port: None,
        timeout_secs: 5,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().ok_or(format!("{arg} needs a value"))?;
        match arg.as_str() {
            "--mtr-packet" => parsed.program = value,
            "--target" => parsed.target = value.parse()?,
            "--count" => parsed.count = value.parse()?,
            "--window" => parsed.window = value.parse()?,
            "--protocol" => parsed.protocol = value.parse()?,
            "--port" => parsed.port = Some(value.parse()?),
            "--timeout" => parsed.timeout_secs = value.parse()?,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    if !parsed.target.is_loopback() {
        let target = parsed.target;
        return Err(
            format!("refusing target {target}: only 127.0.0.0/8 and ::1 are allowed").into(),
        );
    }
    Ok(parsed)
}

/// Every request line, built before the clock starts.
fn requests(args: &Args) -> Result<Vec<Vec<u8>>, ArgumentError> {
    let probe = ProbeArgs::from_fields(ProbeFields {
        protocol: args.protocol,
        port: args.port,
        timeout: Some(Duration::from_secs(args.timeout_secs.into())),
        ..ProbeFields::new(args.target)
    })?;
    Ok((1..=args.count)
        .filter_map(|token| Token::new(u32::try_from(token).ok()?))
        .map(|token| {
            let mut line = Vec::new();
            probe.encode(token, &mut line);
            line
        })
        .collect())
}

fn run() -> Result<bool, Box<dyn std::error::Error>> {
    let args = parse()?;
    let requests = requests(&args)?;
    let Args {
        program,
        count,
        window,
        protocol,
        ..
    } = args;
    let count = count.min(requests.len() as u64);
    let words = mtrproto::split_command(&program)?;
    let mut child = Command::new(&words[0])
        .args(&words[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
    let mut stdout = child.stdout.take().ok_or("no stdout")?;

    let started = Instant::now();
    let mut next = 0usize;
    let first = window.min(count) as usize;
    stdin.write_all(&requests[..first].concat())?;
    next += first;
    let mut tally = Tally::default();
    let mut buf = vec![0u8; 64 * 1024];
    while tally.lines < count {
        let n = stdout.read(&mut buf)?;
        if n == 0 {
            break;
        }
        let before = tally.lines;
        tally.feed(&buf[..n]);
        let mut batch = Vec::new();
        for _ in before..tally.lines {
            if next < requests.len() {
                batch.extend_from_slice(&requests[next]);
                next += 1;
            }
        }
        stdin.write_all(&batch)?;
    }
    let Tally {
        lines: replies,
        answered,
        lost,
        ..
    } = tally;
    let elapsed = started.elapsed().as_secs_f64();
    drop(stdin);
    let _ = child.kill();
    let _ = child.wait();
    println!(
        "probes_per_s={:.0} elapsed_s={elapsed:.3} count={count} completed={replies} window={window} \
         protocol={protocol} helpers=1 reply={answered} no_reply={lost} other={}",
        replies as f64 / elapsed,
        replies - answered - lost,
    );
    Ok(replies == count)
}

/// Reply lines counted by kind, whole lines only: a line split across reads counts once,
/// when its newline arrives.
#[derive(Debug, Default)]
struct Tally {
    /// Complete lines read.
    lines: u64,
    /// Lines whose reply name is `reply`.
    answered: u64,
    /// Lines whose reply name is `no-reply`.
    lost: u64,
    /// The start of a line whose newline has not arrived yet (at most one line).
    partial: Vec<u8>,
}

impl Tally {
    fn feed(&mut self, mut chunk: &[u8]) {
        while let Some(end) = chunk.iter().position(|&b| b == b'\n') {
            self.partial.extend_from_slice(&chunk[..end]);
            chunk = &chunk[end + 1..];
            self.lines += 1;
            // `TOKEN NAME ...`: the name is the second word.
            match self.partial.split(|&b| b == b' ').nth(1) {
                Some(b"reply") => self.answered += 1,
                Some(b"no-reply") => self.lost += 1,
                _ => {}
            }
            self.partial.clear();
        }
        self.partial.extend_from_slice(chunk);
    }
}

#[cfg(test)]
mod tests {
    use super::Tally;

    #[test]
    fn lines_split_across_reads_count_once_by_kind() {
        let text =
            b"1 reply ip-4 127.0.0.1 round-trip-time 9\n2 no-reply\n3 ttl-expired ip-4 127.0.0.1\n";
        for split in 1..text.len() {
            let mut tally = Tally::default();
            tally.feed(&text[..split]);
            tally.feed(&text[split..]);
            assert_eq!(
                (tally.lines, tally.answered, tally.lost),
                (3, 1, 1),
                "split at {split}"
            );
        }
    }
}
