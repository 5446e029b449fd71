//! Test support for mtrproto: the fake mtr-packet (`src/bin/fake-mtr-packet.rs`), the seeded
//! path scripts of the scripted one (`src/bin/scripted-mtr-packet.rs`), and helpers
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

/// Where `mtr-packet` is, if installed.
pub fn real_mtr_packet() -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join("mtr-packet"))
        .find(|p| p.exists())
}

// Tests that need root, namespaces or the real helper are `#[ignore = "needs ..."]`, so that
// a plain `cargo test` lists them as not run; `cargo test -- --include-ignored` runs them,
// and these make such a test fail, saying what it needs, where that is missing.

/// Whether this process runs as root (effective uid 0).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
    })
}

/// Fails the test unless it runs as root.
pub fn require_root() {
    assert!(
        is_root(),
        "needs root: run it as root (`cargo test -- --include-ignored`)"
    );
}

/// Fails the test unless network namespaces can be made here (root and iproute2).
pub fn require_netns() {
    require_root();
    assert!(
        netns::available(),
        "needs iproute2 for network namespaces (apt-get install iproute2)"
    );
}

/// The real `mtr-packet`; fails the test where it is not installed.
pub fn require_mtr_packet() -> std::path::PathBuf {
    real_mtr_packet().expect("needs mtr-packet: apt-get install mtr-tiny")
}

/// The `mtr-packet` of mtr release `version` (`0.92` to `0.96`), as
/// `scripts/build-mtr-versions` builds them under `$MTR_VERSIONS` (default
/// `target/mtr-versions`), or `None` where it is not built. With `MTR_VERSIONS` set, as
/// `scripts/test-all` sets it, a missing build fails the test instead: there it must exist.
pub fn built_release(version: &str) -> Option<std::path::PathBuf> {
    let (dir, required) = match std::env::var_os("MTR_VERSIONS") {
        Some(dir) => (std::path::PathBuf::from(dir), true),
        None => (
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/mtr-versions"),
            false,
        ),
    };
    let path = dir.join(version).join("mtr-packet");
    if path.exists() {
        return Some(path);
    }
    assert!(
        !required,
        "{} missing with MTR_VERSIONS set",
        path.display()
    );
    None
}

/// Debian's `mtr`; fails the test where it is not installed.
pub fn require_mtr() -> std::path::PathBuf {
    std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join("mtr"))
                .find(|p| p.exists())
        })
        .expect("needs Debian's mtr: apt-get install mtr-tiny")
}

pub mod due;
pub mod netns;
pub mod scamper;

/// SplitMix64's finaliser: a well-mixed 64-bit value from any input. The one hash the
/// scripted helper and the simulator draw their seeded values from.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
pub mod script;

/// The replies mtr-packet gives a probe it did not send, for a reason of the host, not of
/// the network: those mtr stops on (`handle_reply_errors` in mtr's `ui/cmdpipe.c`), which
/// `mtrproto::ReplyKind::is_refusal` names.
pub const REFUSALS: [&str; 5] = [
    "invalid-argument",
    "permission-denied",
    "address-in-use",
    "address-not-available",
    "unexpected-error",
];

/// A small deterministic generator (xorshift64) for the chaos tests, so that a failing run
/// can be repeated from its seed.
pub struct Random(u64);

impl Random {
    /// The stream of `seed` (any value: xorshift's zero state is avoided).
    pub fn new(seed: u64) -> Random {
        Random(seed | 1)
    }

    /// The next value of the stream.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A value below `n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// CPU seconds (user + system) a `/proc/.../stat` line reports, `None` if unreadable.
pub fn stat_cpu_seconds(path: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(path).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // USER_HZ is 100 on Linux.
    Some(ticks as f64 / 100.0)
}

/// CPU seconds a `/proc/.../schedstat` line reports (its first field: time on a CPU, in
/// nanoseconds), `None` if unreadable. `stat`'s figures count whole ticks of 10 ms; this
/// one is exact, so a run's fraction of a second of driver CPU is not rounded.
pub fn schedstat_cpu_seconds(path: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(path).ok()?;
    let nanos: u64 = stat.split_whitespace().next()?.parse().ok()?;
    Some(nanos as f64 / 1e9)
}

/// CPU seconds used so far by this process's thread named `name` (as `comm` shows it: at
/// most 15 bytes), to the nanosecond.
pub fn thread_cpu_seconds(name: &str) -> Option<f64> {
    let prefix: String = name.chars().take(15).collect();
    std::fs::read_dir("/proc/self/task")
        .ok()?
        .flatten()
        .find_map(|task| {
            let comm = std::fs::read_to_string(task.path().join("comm")).ok()?;
            (comm.trim() == prefix)
                .then(|| schedstat_cpu_seconds(&task.path().join("schedstat").to_string_lossy()))?
        })
}

/// CPU seconds (user + system) used so far by this whole process, every thread, those
/// ended too (`getrusage`, to the microsecond).
#[allow(unsafe_code)]
pub fn process_cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// CPU seconds used so far by the calling thread (`CLOCK_THREAD_CPUTIME_ID`: one system
/// call, cheap enough to time one callback).
#[allow(unsafe_code)]
pub fn this_thread_cpu_seconds() -> f64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the struct it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    now.tv_sec as f64 + now.tv_nsec as f64 / 1e9
}

/// Times this process's threads have gone to sleep so far (their voluntary context
/// switches, summed): each is a wake-up later.
pub fn voluntary_switches() -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("status")).ok())
        .filter_map(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
                .and_then(|v| v.trim().parse::<u64>().ok())
        })
        .sum()
}

/// Process ids of this process's children, from every thread's `children` list.
pub fn child_pids() -> Vec<u32> {
    children_of("self")
}

/// Process ids of the children of process `pid` (a number, or `self`), from every one of its
/// threads' `children` lists; empty if it is gone.
pub fn children_of(pid: &str) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|c| {
            c.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// Peak resident memory of this process, in kB (`VmHWM`).
pub fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}
pub mod sim;

/// Builds example `name` of `mtrproto-blocking` (`cargo build --example`) and returns its
/// path, so a test runs the current source, never a binary some earlier build left behind.
/// Panics when the build fails or takes more than ten minutes.
pub fn built_example(name: &str) -> std::path::PathBuf {
    built_example_of("mtrproto-blocking", name)
}

/// [`built_example`] of another package's example (`mtrproto`'s `tokio` and `decode`).
pub fn built_example_of(package: &str, name: &str) -> std::path::PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = std::process::Command::new(cargo)
        .args(["build", "-q", "-p", package, "--example", name])
        .spawn()
        .expect("cargo starts");
    let status = wait_within(&mut build, std::time::Duration::from_secs(600))
        .unwrap_or_else(|| panic!("cargo build --example {name} took over ten minutes"));
    assert!(status.success(), "cargo build --example {name}: {status}");
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    dir.join("examples").join(name)
}

/// Waits for `child` at most `limit`; kills it and returns `None` past that.
pub fn wait_within(
    child: &mut std::process::Child,
    limit: std::time::Duration,
) -> Option<std::process::ExitStatus> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

// The READMEs' Rust snippets, compiled (and the pure ones run) by `cargo test --doc`, so that
// what a newcomer copies first still builds.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct WorkspaceReadme;
#[cfg(doctest)]
#[doc = include_str!("../../mtrproto/README.md")]
struct CoreReadme;
#[cfg(doctest)]
#[doc = include_str!("../../mtrproto-blocking/README.md")]
struct BlockingReadme;
