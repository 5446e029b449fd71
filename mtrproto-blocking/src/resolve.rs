//! Host names to addresses, resolved once per session on the caller's thread.

use std::collections::HashMap;
use std::net::{IpAddr, ToSocketAddrs, UdpSocket};
use std::sync::Mutex;

use crate::error::HostResolveError;
use crate::options::IpVersion;

/// A cache of resolved names, keyed by name and requested IP version.
#[derive(Debug, Default)]
pub(crate) struct Resolver {
    cache: Mutex<HashMap<(String, Option<IpVersion>), IpAddr>>,
}

impl Resolver {
    /// The address of `host`: itself if it is an IP address, else the first address the system
    /// resolver gives of the wanted version, cached.
    pub(crate) fn resolve(
        &self,
        host: &str,
        version: Option<IpVersion>,
    ) -> Result<IpAddr, HostResolveError> {
        let error = |reason: String| HostResolveError {
            host: host.to_owned(),
            ip_version: version,
            reason,
        };
        if let Ok(addr) = host.parse::<IpAddr>() {
            return match version {
                Some(v) if !v.matches(addr) => {
                    Err(error("the address is of the other IP version".into()))
                }
                _ => Ok(addr),
            };
        }
        let key = (host.to_owned(), version);
        if let Some(addr) = self.lock().get(&key) {
            return Ok(*addr);
        }
        // Resolved without the lock held: a slow name must not hold up other callers.
        let addrs = (host, 0)
            .to_socket_addrs()
            .map_err(|e| error(e.to_string()))?;
        let addr = addrs
            .map(|a| a.ip())
            .find(|a| version.is_none_or(|v| v.matches(*a)))
            .ok_or_else(|| error("no address of that IP version".into()))?;
        self.lock().insert(key, addr);
        Ok(addr)
    }

    /// Forgets every resolved name.
    pub(crate) fn clear(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, Option<IpVersion>), IpAddr>> {
        // The map stays consistent even if a holder panicked.
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The source address the kernel would pick to reach `target`.
///
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
    fn source_address_of_loopback() {
        assert_eq!(
            source_address_for("127.0.0.1".parse().unwrap()).unwrap(),
            "127.0.0.1".parse::<IpAddr>().unwrap()
        );
    }
}
