//! scamper's `tracelb` (Debian's `scamper`: the Multipath Detection Algorithm of Paris
//! traceroute) run inside `mtrsim`: a second opinion on the simulator's diamonds, and the
//! yardstick an MDA tracer's probe count is compared with.
//!
//! scamper reports a run of multi-way hops between two single routers as one "clump": it
//! finds each interface of the clump but not which link joins which, so only links with a
//! single router on one side are known (`Tracelb::unresolved` holds the others' TTLs). It
//! also starts from one router at the first TTL: a diamond there shows one of its routers.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long one `tracelb` run may take (a 16-way diamond takes about 16 s).
const RUN_LIMIT: Duration = Duration::from_secs(180);

/// What one `tracelb` found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tracelb {
    /// The probes it sent.
    pub probes: u32,
    /// The addresses answering at each TTL.
    pub hops: BTreeMap<u8, BTreeSet<IpAddr>>,
    /// The links it knows: `(from at TTL n, to at TTL n + 1)`.
    pub links: BTreeSet<(IpAddr, IpAddr)>,
    /// The TTLs n whose links to n + 1 it does not know (inside a clump: several routers on
    /// both sides).
    pub unresolved: BTreeSet<u8>,
}

/// Whether `scamper` and `sc_warts2json` are installed.
pub fn available() -> bool {
    ["scamper", "sc_warts2json"]
        .iter()
        .all(|tool| find_tool(tool).is_some())
}

/// Fails the test unless scamper is installed.
pub fn require_scamper() {
    assert!(available(), "needs scamper: apt-get install scamper");
}

fn find_tool(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.exists())
}

/// Runs `scamper -c "tracelb OPTIONS" -i TARGET` inside `mtrsim SCENARIO` (`mtrsim`: the
/// simulator's binary, e.g. `env!("CARGO_BIN_EXE_mtrsim")`), at most 180 s, and reads what
/// it found from its warts output. Needs root. `target` must be a simulated address.
pub fn tracelb(
    mtrsim: &Path,
    scenario: &Path,
    target: IpAddr,
    options: &str,
) -> Result<Tracelb, String> {
    if !crate::sim::is_simulated(target) {
        return Err(format!("refusing {target}: not a simulated address"));
    }
    static RUN: AtomicU32 = AtomicU32::new(0);
    let run = RUN.fetch_add(1, Ordering::Relaxed);
    let out = std::env::temp_dir().join(format!("tracelb-{}-{run}.warts", std::process::id()));
    let result = run_scamper(mtrsim, scenario, target, options, &out).and_then(|()| {
        let json = Command::new("sc_warts2json")
            .arg(&out)
            .output()
            .map_err(|e| format!("sc_warts2json: {e}"))?;
        let text = String::from_utf8_lossy(&json.stdout);
        let mut found = parse_json(&text)?;
        match found.len() {
            1 => Ok(found.remove(0)),
            n => Err(format!("{n} tracelb results in {}", out.display())),
        }
    });
    let _ = std::fs::remove_file(&out);
    result
}

fn run_scamper(
    mtrsim: &Path,
    scenario: &Path,
    target: IpAddr,
    options: &str,
    out: &Path,
) -> Result<(), String> {
    let mut child = Command::new(mtrsim)
        .arg(scenario)
        .args(["--", "scamper", "-p", "1000", "-O", "warts", "-o"])
        .arg(out)
        .args([
            "-c",
            &format!("tracelb {options}"),
            "-i",
            &target.to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("{}: {e}", mtrsim.display()))?;
    let deadline = Instant::now() + RUN_LIMIT;
    loop {
        match child.try_wait().map_err(|e| e.to_string())? {
            Some(status) if status.success() => return Ok(()),
            Some(status) => return Err(format!("mtrsim ... scamper: {status}")),
            None if Instant::now() >= deadline => {
                // mtrsim passes SIGTERM on and removes its namespace; kill only if it hangs.
                let _ = crate::sim::tun::send_terminate(child.id());
                let end = Instant::now() + Duration::from_secs(5);
                while child.try_wait().ok().flatten().is_none() && Instant::now() < end {
                    std::thread::sleep(Duration::from_millis(50));
                }
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "scamper tracelb {target}: no result in {RUN_LIMIT:?}"
                ));
            }
            None => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// Reads every `tracelb` result of `sc_warts2json`'s output (one JSON object per line).
pub fn parse_json(text: &str) -> Result<Vec<Tracelb>, String> {
    let mut found = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line).map_err(|e| format!("{e}: {line}"))?;
        if v["type"] == "tracelb" {
            found.push(one(&v).ok_or_else(|| format!("unexpected tracelb record: {line}"))?);
        }
    }
    Ok(found)
}

/// Addresses at one TTL, each with the TTL its probes were sent with (`None`: no probes).
type Group = Vec<(IpAddr, Option<u8>)>;

/// The addresses of one group of `{"addr", "probes"}` items.
fn group(items: &Value) -> Option<Group> {
    let mut out = Vec::new();
    for item in items.as_array()? {
        let addr = item["addr"].as_str()?;
        if addr == "*" {
            continue;
        }
        let ttl = item["probes"]
            .as_array()
            .and_then(|p| p.first())
            .and_then(|p| p["ttl"].as_u64())
            .and_then(|t| u8::try_from(t).ok());
        out.push((addr.parse().ok()?, ttl));
    }
    Some(out)
}

/// One `tracelb` record. A node with several links lists them as one group of far ends; a
/// node with one link lists that link's hops, a group per TTL (a clump), the far end last.
fn one(v: &Value) -> Option<Tracelb> {
    let mut found = Tracelb {
        probes: u32::try_from(v["probec"].as_u64()?).ok()?,
        ..Tracelb::default()
    };
    let firsthop = u8::try_from(v["firsthop"].as_u64().unwrap_or(1)).ok()?;
    // Per node: itself, then each group of its link (or its links' far ends).
    let mut chains: Vec<Vec<Group>> = Vec::new();
    let mut reached = BTreeSet::new();
    for node in v["nodes"].as_array().into_iter().flatten() {
        let addr = node["addr"].as_str()?;
        let links = node["links"].as_array()?;
        let mut chain = vec![match addr {
            "*" => Vec::new(),
            a => vec![(a.parse().ok()?, None)],
        }];
        for g in links {
            chain.push(group(g)?);
        }
        for (a, _) in chain.iter().skip(1).flatten() {
            reached.insert(*a);
        }
        chains.push(chain);
    }
    // TTLs: from the probes that found each address; a node nothing leads to is the first.
    let mut ttl_of: BTreeMap<IpAddr, u8> = BTreeMap::new();
    for (a, ttl) in chains.iter().flatten().flatten() {
        if let Some(t) = ttl {
            ttl_of.insert(*a, *t);
        }
    }
    for chain in &chains {
        for (a, _) in &chain[0] {
            if !reached.contains(a) {
                ttl_of.entry(*a).or_insert(firsthop);
            }
        }
    }
    for (a, t) in &ttl_of {
        found.hops.entry(*t).or_default().insert(*a);
    }
    for chain in &chains {
        for pair in chain.windows(2) {
            let (from, to) = (&pair[0], &pair[1]);
            if from.is_empty() || to.is_empty() {
                continue;
            }
            if from.len() > 1 && to.len() > 1 {
                if let Some(t) = ttl_of.get(&from[0].0) {
                    found.unresolved.insert(*t);
                }
                continue;
            }
            for (a, _) in from {
                for (b, _) in to {
                    found.links.insert((*a, *b));
                }
            }
        }
    }
    Some(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// A probe list at `ttl`, as sc_warts2json prints it (trimmed).
    fn at(addr: &str, ttl: u8) -> String {
        format!(r#"{{"addr":"{addr}", "probes":[{{"ttl":{ttl}, "flowid":1, "replies":[]}}]}}"#)
    }

    #[test]
    fn reads_nodes_clumps_and_direct_links() {
        // 11 -> (21, 22) -> (31, 32) -> 41 -> dst, and 41 also straight to 51 and 52.
        let clump = format!(
            "[{},{}],[{},{}],[{}]",
            at("198.18.9.21", 2),
            at("198.18.9.22", 2),
            at("198.18.9.31", 3),
            at("198.18.9.32", 3),
            at("198.18.9.41", 4)
        );
        let line = format!(
            r#"{{"type":"tracelb", "probec":40, "firsthop":1, "nodes":[{{"addr":"198.18.9.11", "q_ttl":1, "linkc":1, "links":[{clump}]}},{{"addr":"198.18.9.41", "linkc":2, "links":[[{},{}]]}}]}}"#,
            at("198.18.9.51", 5),
            at("198.18.9.52", 5)
        );
        let text = format!("{{\"type\":\"cycle-start\"}}\n{line}\n");
        let found = parse_json(&text).unwrap();
        assert_eq!(found.len(), 1);
        let t = &found[0];
        assert_eq!(t.probes, 40);
        let hop = |n: u8| t.hops[&n].iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(hop(1), ["198.18.9.11"]);
        assert_eq!(hop(2), ["198.18.9.21", "198.18.9.22"]);
        assert_eq!(hop(3), ["198.18.9.31", "198.18.9.32"]);
        assert_eq!(hop(4), ["198.18.9.41"]);
        assert_eq!(hop(5), ["198.18.9.51", "198.18.9.52"]);
        assert_eq!(t.unresolved, BTreeSet::from([2]));
        let links: BTreeSet<_> = [
            ("11", "21"),
            ("11", "22"),
            ("31", "41"),
            ("32", "41"),
            ("41", "51"),
            ("41", "52"),
        ]
        .iter()
        .map(|(x, y)| (a(&format!("198.18.9.{x}")), a(&format!("198.18.9.{y}"))))
        .collect();
        assert_eq!(t.links, links);
        assert!(parse_json("{\"type\":\"tracelb\"}").is_err());
    }
}
