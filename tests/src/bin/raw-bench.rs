//! The raw mtr-packet limit, for comparison with probe-bench: the leanest driver there is.
//!
//! ```text
//! raw-bench [--mtr-packet CMD] [--target 127.0.0.1|::1] [--count N] [--window W]
//!     [--protocol icmp|udp|tcp|sctp] [--port P] [--timeout S]
//! ```
//!
//! Pre-builds every request line, writes W of them, then one more for every reply line read,
//! with plain blocking pipes and no parsing beyond counting newlines. Prints the same
//! `key=value` line as probe-bench. Refuses any target but loopback.

use std::io::{Read, Write};
use std::net::IpAddr;
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

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

fn run() -> Result<bool, Box<dyn std::error::Error>> {
    let (mut program, mut target, mut count, mut window) = (
        "mtr-packet".to_owned(),
        "127.0.0.1".to_owned(),
        100_000u64,
        256u64,
    );
    let (mut protocol, mut port, mut timeout) =
        (mtrproto::Protocol::Icmp, None::<String>, "5".to_owned());
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().ok_or(format!("{arg} needs a value"))?;
        match arg.as_str() {
            "--mtr-packet" => program = value,
            "--target" => target = value,
            "--count" => count = value.parse()?,
            "--window" => window = value.parse()?,
            "--protocol" => protocol = value.parse()?,
            "--port" => port = Some(value),
            "--timeout" => timeout = value,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let address: IpAddr = target.parse()?;
    if !address.is_loopback() {
        return Err(
            format!("refusing target {target}: only 127.0.0.0/8 and ::1 are allowed").into(),
        );
    }
    let family = if address.is_ipv4() { "ip-4" } else { "ip-6" };
    let port = port.map(|p| format!(" port {p}")).unwrap_or_default();
    let requests: Vec<Vec<u8>> = (1..=count)
        .map(|token| {
            format!(
                "{token} send-probe {family} {target} protocol {protocol}{port} timeout {timeout}\n"
            )
            .into_bytes()
        })
        .collect();

    let words = mtrproto_blocking::split_command(&program)?;
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
    let (mut replies, mut answered, mut lost) = (0u64, 0u64, 0u64);
    let mut buf = vec![0u8; 64 * 1024];
    while replies < count {
        let n = stdout.read(&mut buf)?;
        if n == 0 {
            break;
        }
        let mut batch = Vec::new();
        for _ in buf[..n].iter().filter(|&&b| b == b'\n') {
            replies += 1;
            if next < requests.len() {
                batch.extend_from_slice(&requests[next]);
                next += 1;
            }
        }
        answered += buf[..n].windows(7).filter(|w| w == b" reply ").count() as u64;
        lost += buf[..n].windows(10).filter(|w| w == b" no-reply\n").count() as u64;
        stdin.write_all(&batch)?;
    }
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
