//! Test support for mtrproto: the fake mtr-packet (`src/bin/fake-mtr-packet.rs`) and helpers
//! the integration tests in `tests/` share.

use std::path::Path;

/// Whether process `pid` still exists (running or a zombie nobody reaped).
pub fn process_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// How many threads this process has.
pub fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count())
}

/// CPU time (user + system) this process has used, in clock ticks.
pub fn cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the name.
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field(11) + field(12)
}

/// Where `mtr-packet` is, if installed. Tests that need it print that they skip without it.
pub fn real_mtr_packet() -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join("mtr-packet"))
        .find(|p| p.exists())
}

pub mod netns;
