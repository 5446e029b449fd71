//! Reads mtr-packet output on stdin and prints one JSON object per line.
//!
//! ```text
//! cargo run -p mtrproto --example decode < mtrproto/examples/data/transcript.txt
//! ```
//!
//! Keys, each present only when the reply carries it: `token`, `reply`, `success`,
//! `responder`, `rtt_us`, `mpls` (objects with `label`, `traffic_class`, `bottom_of_stack`,
//! `ttl`), `reason`, `errno`, `support`, `args` (unknown arguments). A line that does not
//! parse prints `{"error": "..."}` and decoding goes on; only an I/O error fails the run.

use std::io::{self, BufWriter, Read, Write};
use std::process::ExitCode;

use mtrproto::{FrameError, LineFramer, ProbeResult, Reply};
use serde_json::{Map, Value, json};

/// Reads mtr-packet output on stdin and prints one JSON object per line.
#[derive(Debug, clap::Parser)]
#[command(name = "decode")]
struct Cli {}

fn main() -> ExitCode {
    <Cli as clap::Parser>::parse();
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        // A closed stdout (`decode | head -1`) ends it quietly, as it ends Unix tools.
        Err(error) if error.kind() == io::ErrorKind::BrokenPipe => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Decodes stdin to stdout.
fn run() -> io::Result<()> {
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut framer = LineFramer::new();
    let mut input = io::stdin().lock();
    let mut chunk = [0u8; 64 * 1024];
    let mut result = Ok(());
    loop {
        let n = match input.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        framer.feed(&chunk[..n], |line| {
            if result.is_ok() {
                result = writeln!(out, "{}", decode(line));
            }
        });
        result
            .as_ref()
            .map_err(|e| io::Error::new(e.kind(), e.to_string()))?;
    }
    if let Some(error) = framer.finish() {
        writeln!(out, "{}", decode(Err(error)))?;
    }
    out.flush()
}

/// The JSON object for one framed line.
fn decode(line: Result<&str, FrameError>) -> Value {
    let reply = match line
        .map_err(|e| e.to_string())
        .and_then(|l| Reply::parse(l).map_err(|e| e.to_string()))
    {
        Ok(reply) => reply,
        Err(error) => return json!({ "error": error }),
    };
    let result = ProbeResult::from_reply(&reply);
    let mut object = Map::new();
    object.insert("token".into(), reply.token.get().into());
    object.insert("reply".into(), reply.kind.as_str().into());
    object.insert("success".into(), result.success().into());
    if let Some(responder) = result.responder {
        object.insert("responder".into(), responder.to_string().into());
    }
    if let Some(rtt) = reply.round_trip_time_us {
        object.insert("rtt_us".into(), rtt.into());
    }
    if !reply.mpls.is_empty() {
        let entries = reply.mpls.iter().map(|m| {
            json!({
                "label": m.label(),
                "traffic_class": m.traffic_class(),
                "bottom_of_stack": m.bottom_of_stack(),
                "ttl": m.ttl(),
            })
        });
        object.insert("mpls".into(), entries.collect());
    }
    if let Some(reason) = &reply.reason {
        object.insert("reason".into(), reason.as_str().into());
    }
    if let Some(errno) = reply.errno {
        object.insert("errno".into(), errno.into());
    }
    if let Some(support) = &reply.support {
        object.insert("support".into(), support.as_str().into());
    }
    if !reply.unknown_args().is_empty() {
        let args = reply
            .unknown_args()
            .iter()
            .map(|(name, value)| (name.to_string(), Value::from(value.as_str())));
        object.insert("args".into(), args.collect::<Map<_, _>>().into());
    }
    object.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The transcript of real mtr-packet lines decodes to the committed JSON, line for line.
    #[test]
    fn transcript_decodes_to_golden_json() {
        let transcript = include_str!("data/transcript.txt");
        let golden = include_str!("data/transcript.jsonl");
        let mut framer = LineFramer::new();
        let mut got = Vec::new();
        framer.feed(transcript.as_bytes(), |line| got.push(decode(line)));
        let want: Vec<Value> = golden
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(got.len(), want.len());
        for (got, want) in got.iter().zip(&want) {
            assert_eq!(got, want);
        }
    }
}
