//! A scripted mtr-packet: answers each probe from a seeded path script (see
//! `mtrproto_tests::script`), chosen by the probe's TTL and by how many probes that TTL had
//! before. It sends no packet at all. mtr starts its helper without arguments, so the seed
//! comes in `$MTR_SCRIPT_SEED`.
//!
//! ```text
//! MTR_SCRIPT_SEED=7 MTR_PACKET=scripted-mtr-packet mtr --report -n 127.0.0.1
//! ```

use std::collections::HashMap;
use std::io::{BufRead, Write};

use mtrproto_tests::script::{SEED_ENV, Script};

fn main() {
    let seed = match std::env::var(SEED_ENV).map(|s| s.parse::<u64>()) {
        Ok(Ok(seed)) => seed,
        _ => {
            eprintln!("scripted-mtr-packet: set {SEED_ENV} to a number");
            std::process::exit(2);
        }
    };
    let script = Script::from_seed(seed);
    let mut probes_at: HashMap<u8, u32> = HashMap::new();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let words: Vec<&str> = line.split(' ').collect();
        let [token, command, args @ ..] = words.as_slice() else {
            continue;
        };
        let arg = |name: &str| {
            args.chunks(2)
                .find(|pair| pair[0] == name)
                .and_then(|pair| pair.get(1).copied())
        };
        let answer = match *command {
            "check-support" => match arg("feature") {
                Some("version") => "feature-support support 0.95".to_owned(),
                _ => "feature-support support ok".to_owned(),
            },
            "send-probe" => {
                let ttl = arg("ttl").and_then(|t| t.parse().ok()).unwrap_or(255);
                match arg("ip-4").or(arg("ip-6")) {
                    Some(target) => {
                        let n = probes_at.entry(ttl).or_insert(0);
                        let answer = script.answer(ttl, *n, target);
                        *n += 1;
                        answer
                    }
                    None => "invalid-argument".to_owned(),
                }
            }
            _ => "unknown-command".to_owned(),
        };
        // One write per line: mtr reads its first answers with a single read().
        let line = format!("{token} {answer}\n");
        if out
            .write_all(line.as_bytes())
            .and_then(|()| out.flush())
            .is_err()
        {
            break;
        }
    }
}
