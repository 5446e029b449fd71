//! Host names to addresses, resolved once per session on the caller's thread.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, ToSocketAddrs, UdpSocket};
use std::sync::Mutex;

use crate::error::HostResolveError;
use crate::options::IpVersion;
use crate::status::cut;

/// The longest host name kept in an error message, in bytes.
const HOST_IN_ERROR: usize = 256;

/// The longest DNS name (RFC 1035, section 3.1, in its dotted text form).
const MAX_NAME: usize = 253;

/// Where a probe goes: a host name or address as text (resolved through the session's
/// cache), or an address (used as it is, no text in between).
///
/// `&str`, `&String` and `IpAddr` convert into it, so every `probe*` takes any of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Host<'a> {
    /// A name, or an address as text.
    Name(&'a str),
    /// An address.
    Addr(IpAddr),
}

impl<'a> From<&'a str> for Host<'a> {
    fn from(name: &'a str) -> Host<'a> {
        Host::Name(name)
    }
}

impl<'a> From<&'a String> for Host<'a> {
    fn from(name: &'a String) -> Host<'a> {
        Host::Name(name)
    }
}

impl From<IpAddr> for Host<'_> {
    fn from(addr: IpAddr) -> Self {
        Host::Addr(addr)
    }
}

impl std::fmt::Display for Host<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Host::Name(name) => f.write_str(name),
            Host::Addr(addr) => addr.fmt(f),
        }
    }
}

/// A name and the IP version asked for.
type Key = (String, Option<IpVersion>);

/// Names remembered at most; the oldest is forgotten first. A campaign resolves its hosts
/// as it takes them, so that its memory grows with the targets traced at once, not with
/// its list: their names must not all stay behind.
const CACHED_NAMES: usize = 4096;

/// A cache of resolved names, keyed by name and requested IP version, bounded.
#[derive(Debug, Default)]
pub(crate) struct Resolver {
    cache: Mutex<Cache>,
}

/// The names resolved, and the order they came in.
#[derive(Debug, Default)]
struct Cache {
    entries: HashMap<Key, IpAddr>,
    order: VecDeque<Key>,
}

impl Cache {
    /// Remembers `key`, forgetting the oldest name once [`CACHED_NAMES`] are.
    fn insert(&mut self, key: Key, addr: IpAddr) {
        // Another caller may have resolved it meanwhile: it is in `order` already.
        if self.entries.insert(key.clone(), addr).is_some() {
            return;
        }
        self.order.push_back(key);
        while self.order.len() > CACHED_NAMES {
            if let Some(oldest) = self.order.pop_front() {
                self.entries.remove(&oldest);
            }
        }
    }
}

impl Resolver {
    /// The address of `host`: an address as it is (if of the wanted version), a text as
    /// [`Resolver::resolve`] reads it.
    pub(crate) fn resolve_host(
        &self,
        host: Host<'_>,
        version: Option<IpVersion>,
    ) -> Result<IpAddr, HostResolveError> {
        match host {
            Host::Name(name) => self.resolve(name, version),
            Host::Addr(addr) => of_version(addr, version).map_err(|reason| HostResolveError {
                host: addr.to_string(),
                ip_version: version,
                reason,
            }),
        }
    }

    /// The address of `host`: itself if it is an IP address, else the first address the system
    /// resolver gives of the wanted version, cached.
    pub(crate) fn resolve(
        &self,
        host: &str,
        version: Option<IpVersion>,
    ) -> Result<IpAddr, HostResolveError> {
        let error = |reason: String| HostResolveError {
            host: cut(host, HOST_IN_ERROR),
            ip_version: version,
            reason,
        };
        if let Some((addr, scope)) = host.split_once('%')
            && addr.parse::<std::net::Ipv6Addr>().is_ok()
        {
            return Err(error(scope_refused(scope)));
        }
        if host.len() > MAX_NAME {
            return Err(error(format!(
                "{} bytes is longer than a DNS name can be ({MAX_NAME})",
                host.len()
            )));
        }
        if let Ok(addr) = host.parse::<IpAddr>() {
            return of_version(addr, version).map_err(error);
        }
        let key = (host.to_owned(), version);
        if let Some(addr) = self.lock().entries.get(&key) {
            return Ok(*addr);
        }
        // Resolved without the lock held: a slow name must not hold up other callers.
        let mut addrs = (host, 0)
            .to_socket_addrs()
            .map_err(|e| error(e.to_string()))?;
        let addr = addrs
            .find(|a| version.is_none_or(|v| v.matches(a.ip())))
            .ok_or_else(|| error("no address of that IP version".into()))?;
        // A name can resolve to a scoped address too (from /etc/hosts).
        if let std::net::SocketAddr::V6(v6) = addr
            && v6.scope_id() != 0
        {
            return Err(error(scope_refused(&v6.scope_id().to_string())));
        }
        let addr = addr.ip();
        self.lock().insert(key, addr);
        Ok(addr)
    }

    /// Forgets every resolved name.
    pub(crate) fn clear(&self) {
        *self.lock() = Cache::default();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        // The map stays consistent even if a holder panicked.
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Why a scoped IPv6 address is refused rather than probed without its scope.
fn scope_refused(scope: &str) -> String {
    format!(
        "mtr-packet takes no scope id (%{}) with an address; give the address alone and the \
         interface as ProbeOptions::local_device",
        cut(scope, 32)
    )
}

/// The source address the kernel would pick to reach `target`.
///
/// `addr`, if of the wanted IP version.
fn of_version(addr: IpAddr, version: Option<IpVersion>) -> Result<IpAddr, String> {
    match version {
        Some(v) if !v.matches(addr) => Err("the address is of the other IP version".into()),
        _ => Ok(addr),
    }
}

/// Connecting a UDP socket only consults the routing table: no packet is sent.
pub(crate) fn source_address_for(target: IpAddr) -> std::io::Result<IpAddr> {
    let bind: IpAddr = if target.is_ipv4() {
        std::net::Ipv4Addr::UNSPECIFIED.into()
    } else {
        std::net::Ipv6Addr::UNSPECIFIED.into()
    };
    let socket = UdpSocket::bind((bind, 0))?;
    socket.connect((target, 9))?;
    Ok(socket.local_addr()?.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_and_localhost() {
        let resolver = Resolver::default();
        assert_eq!(
            resolver.resolve("::1", None).unwrap(),
            "::1".parse::<IpAddr>().unwrap()
        );
        assert!(resolver.resolve("127.0.0.1", Some(IpVersion::V6)).is_err());
        let v4 = resolver.resolve("localhost", Some(IpVersion::V4)).unwrap();
        assert!(v4.is_loopback() && v4.is_ipv4());
    }

    #[test]
    fn an_address_is_taken_as_it_is_if_of_the_wanted_version() {
        let resolver = Resolver::default();
        let v4: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(resolver.resolve_host(v4.into(), None).unwrap(), v4);
        assert_eq!(
            resolver
                .resolve_host(v4.into(), Some(IpVersion::V4))
                .unwrap(),
            v4
        );
        let refused = resolver.resolve_host(Host::Addr(v4), Some(IpVersion::V6));
        assert_eq!(
            refused.map_err(|e| e.reason).unwrap_err(),
            resolver
                .resolve("127.0.0.1", Some(IpVersion::V6))
                .map_err(|e| e.reason)
                .unwrap_err()
        );
        assert_eq!(Host::Addr(v4).to_string(), "127.0.0.1");
    }

    #[test]
    fn source_address_of_loopback() {
        assert_eq!(
            source_address_for("127.0.0.1".parse().unwrap()).unwrap(),
            "127.0.0.1".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn the_cache_of_names_stays_bounded() {
        // A campaign takes hosts from its iterator as others end, so that its memory grows
        // with the targets traced at once, not with the list: the names it resolved must
        // not stay behind. Decimal numbers are names the system resolver reads as IPv4
        // addresses (inet_aton: 2130706433 is 127.0.0.1) without asking any server.
        let resolver = Resolver::default();
        let names = 5_000u32;
        for i in 0..names {
            let name = (2_130_706_433 + i).to_string();
            let addr = resolver.resolve(&name, None).unwrap();
            assert_eq!(
                addr,
                IpAddr::from(std::net::Ipv4Addr::from(2_130_706_433 + i))
            );
        }
        let cache = resolver.lock();
        let cached = cache.entries.len();
        assert!(cached <= CACHED_NAMES, "{cached} names cached");
        assert_eq!(cache.order.len(), cached);
        // The latest stay.
        let last = (2_130_706_433 + names - 1).to_string();
        assert!(cache.entries.contains_key(&(last, None)));
    }
}
