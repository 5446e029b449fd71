//! Network namespaces for tests: created with `ip netns`, removed when dropped.
//!
//! Everything a test sends stays inside namespaces it created; none has a route out.

use std::io;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// How long [`Netns::add_ipv6`] waits for an address to become local.
pub const LOCAL_ROUTE_WAIT: Duration = Duration::from_secs(5);

/// Whether this process may create network namespaces (root and iproute2 present).
pub fn available() -> bool {
    let root = std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false);
    root && Command::new("ip")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A network namespace, deleted (with its interfaces) on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates `name` (made unique with the process id) with `lo` up and IPv6 duplicate
    /// address detection off for every interface made in it.
    ///
    /// With detection on, a new interface's link-local address stays tentative for a second
    /// or two, and a router sends no neighbour solicitation for a packet it forwards until
    /// it has a usable link-local source: IPv6 beyond the first router would be lost then.
    pub fn new(name: &str) -> io::Result<Netns> {
        let netns = Netns::with_loopback_down(name)?;
        netns.ip(&["link", "set", "lo", "up"])?;
        Ok(netns)
    }

    /// As [`Netns::new`], but `lo` left as `ip netns add` leaves it: down, never up, so
    /// without 127.0.0.1, ::1 or their routes (unlike a loopback set down again, which keeps
    /// its addresses and local routes and silently drops what is sent to them).
    pub fn with_loopback_down(name: &str) -> io::Result<Netns> {
        let netns = Netns {
            name: format!("mtrp{}-{name}", std::process::id()),
        };
        ip(&["netns", "add", &netns.name])?;
        for conf in ["all", "default"] {
            netns.sysctl(&format!("net.ipv6.conf.{conf}.accept_dad"), "0")?;
        }
        Ok(netns)
    }

    /// `ip -6 addr show tentative`: the IPv6 addresses not usable yet (empty when none).
    pub fn tentative_ipv6(&self) -> io::Result<String> {
        let output = Command::new("ip")
            .args(["-n", &self.name, "-6", "addr", "show", "tentative"])
            .output()?;
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        checked(output, "ip -6 addr show tentative").map(|()| text)
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `ip ARGS` inside the namespace; fails when it does.
    pub fn ip(&self, args: &[&str]) -> io::Result<()> {
        let mut all = vec!["-n", &self.name];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// Adds the IPv6 `address` (with its prefix length) to `dev` without duplicate address
    /// detection, and waits, at most [`LOCAL_ROUTE_WAIT`], until packets to it are delivered
    /// here: the kernel adds an address's local route in its address configuration work,
    /// after `ip addr add` returns (later still on a busy machine), and drops what arrives
    /// for the address before.
    pub fn add_ipv6(&self, address: &str, dev: &str) -> io::Result<()> {
        self.ip(&["-6", "addr", "add", address, "dev", dev, "nodad"])?;
        let bare = address.split('/').next().unwrap_or(address);
        let deadline = Instant::now() + LOCAL_ROUTE_WAIT;
        loop {
            let shown = Command::new("ip")
                .args([
                    "-n", &self.name, "-6", "route", "show", "table", "local", bare,
                ])
                .output()?;
            if shown.status.success() && !shown.stdout.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(io::Error::other(format!(
                    "{bare} in {}: no local route after {LOCAL_ROUTE_WAIT:?}",
                    self.name
                )));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Sets a sysctl inside the namespace.
    pub fn sysctl(&self, key: &str, value: &str) -> io::Result<()> {
        let output = self
            .command("sysctl")
            .args(["-qw", &format!("{key}={value}")])
            .output()?;
        checked(output, "sysctl")
    }

    /// A command that runs `program` inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name, program]);
        command
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.name]);
    }
}

/// Joins two namespaces with a veth pair, `a_if` in `a` and `b_if` in `b`, both up.
pub fn veth(a: &Netns, a_if: &str, b: &Netns, b_if: &str) -> io::Result<()> {
    ip(&[
        "link",
        "add",
        a_if,
        "netns",
        a.name(),
        "type",
        "veth",
        "peer",
        "name",
        b_if,
        "netns",
        b.name(),
    ])?;
    a.ip(&["link", "set", a_if, "up"])?;
    b.ip(&["link", "set", b_if, "up"])
}

/// Runs `ip ARGS...` in this process's namespace; its stderr is the error when it fails.
pub fn ip(args: &[&str]) -> io::Result<()> {
    let output = Command::new("ip").args(args).output()?;
    checked(output, &format!("ip {}", args.join(" ")))
}

fn checked(output: Output, what: &str) -> io::Result<()> {
    if output.status.success() {
        return Ok(());
    }
    Err(io::Error::other(format!(
        "{what}: {}",
        String::from_utf8_lossy(&output.stderr).trim()
    )))
}
