//! The network simulator behind `mtrsim`: a TUN device in a private network namespace, and
//! a responder that answers the real mtr-packet's probes as a scenario file says.

pub mod internet;
pub mod packet;
pub mod responder;
pub mod scenario;
pub mod topology;
pub mod tun;

use std::net::IpAddr;

/// Whether `addr` is in the ranges scenarios use (198.18.0.0/15, 2001:db8::/32, set aside
/// for benchmarks and documentation): tools that probe refuse other non-loopback addresses.
pub fn is_simulated(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(a) => a.octets()[0] == 198 && a.octets()[1] & 0xfe == 18,
        IpAddr::V6(a) => a.segments()[..2] == [0x2001, 0x0db8],
    }
}

/// The network safety guard of every tool here that sends probes: a loopback address, or a
/// simulated one from inside mtrsim's namespace (which has no interface out).
pub fn may_probe(addr: IpAddr) -> Result<(), String> {
    if addr.is_loopback() || (is_simulated(addr) && inside_simulation()) {
        return Ok(());
    }
    Err(format!(
        "refusing {addr}: only 127.0.0.0/8 and ::1, or simulated addresses inside mtrsim"
    ))
}

/// Whether this process runs where a simulated address cannot leave the machine: a network
/// namespace whose only interfaces are `lo` and the simulator's TUN device.
pub fn inside_simulation() -> bool {
    // /proc/self/net shows the calling process's namespace (/sys/class/net may not).
    std::fs::read_to_string("/proc/self/net/dev").is_ok_and(|dev| {
        dev.lines()
            .skip(2)
            .filter_map(|l| l.split(':').next())
            .all(|name| matches!(name.trim(), "lo" | "sim0"))
    })
}
