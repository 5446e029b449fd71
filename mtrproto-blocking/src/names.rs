//! Reverse-DNS names for responders, as mtr shows them: looked up through the system
//! resolver (`getnameinfo`, so `/etc/hosts` and DNS as `/etc/nsswitch.conf` says) on a
//! small pool of worker threads, with a cache, so that no caller ever waits on a resolver.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};

/// What [`NameResolver::lookup`] knows about an address now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The address's name.
    Name(String),
    /// The lookup is running and its timeout has not passed yet.
    Pending,
    /// No name: the resolver found none, failed, or did not answer within the timeout, or
    /// every worker was busy with a full queue (asked again on a later call).
    NoName,
}

impl Lookup {
    /// The name, if there is one.
    pub fn name(&self) -> Option<&str> {
        match self {
            Lookup::Name(name) => Some(name),
            Lookup::Pending | Lookup::NoName => None,
        }
    }
}

/// Limits of a [`NameResolver`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameConfig {
    /// Worker threads, each running one lookup at a time (1 to
    /// [`NameConfig::MAX_WORKERS`]).
    pub workers: usize,
    /// How long a lookup may take before it counts as [`Lookup::NoName`]. A resolver that
    /// answers later still fills the cache for later calls.
    pub timeout: Duration,
    /// Lookups waiting for a worker; past it, new addresses get [`Lookup::NoName`] until
    /// the queue drains (1 to [`NameConfig::MAX_QUEUE`]; its room is allocated up front).
    pub queue: usize,
    /// Addresses remembered; the oldest is forgotten first (at least 1).
    pub cache: usize,
}

impl NameConfig {
    /// The most worker threads a resolver starts; more are taken as this many.
    pub const MAX_WORKERS: usize = 1024;
    /// The longest queue of lookups; a longer one is taken as this long.
    pub const MAX_QUEUE: usize = 65_536;
}

impl Default for NameConfig {
    /// Two workers, 3 s per lookup, 256 queued lookups, 4096 remembered addresses.
    fn default() -> NameConfig {
        NameConfig {
            workers: 2,
            timeout: Duration::from_secs(3),
            queue: 256,
            cache: 4096,
        }
    }
}

/// The function a worker runs for one address.
type LookupFn = dyn Fn(IpAddr) -> Option<String> + Send + Sync;

/// Reverse-DNS names through the system resolver, never blocking the caller.
///
/// [`lookup`](NameResolver::lookup) answers from the cache at once and, for an address it
/// has not seen, hands the lookup to a worker thread and answers [`Lookup::Pending`]. Call
/// it as soon as a responder appears (the `trace` example does so for every answer), and
/// again when printing: by then the name is usually there. Every queue and the cache are
/// bounded; a stuck resolver ties up at most [`NameConfig::workers`] threads.
///
/// ```no_run
/// use mtrproto_blocking::{Lookup, NameResolver};
///
/// let names = NameResolver::new();
/// let address = "127.0.0.1".parse().unwrap();
/// assert_eq!(names.lookup(address), Lookup::Pending);
/// // Later, or at once if one may wait:
/// let name = names.wait(address, std::time::Duration::from_secs(1));
/// println!("{}", name.name().unwrap_or("no name"));
/// ```
///
/// Dropping the resolver never waits: idle workers exit at once, a busy one when its
/// lookup returns.
pub struct NameResolver {
    shared: Arc<Shared>,
    requests: Sender<IpAddr>,
    timeout: Duration,
}

impl std::fmt::Debug for NameResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NameResolver")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

struct Shared {
    cache: Mutex<Cache>,
    done: Condvar,
    /// The resolver was dropped: the workers take no more lookups from the queue.
    dropped: AtomicBool,
}

/// Known addresses, bounded, forgetting the oldest first.
struct Cache {
    entries: HashMap<IpAddr, Entry>,
    order: VecDeque<IpAddr>,
    capacity: usize,
}

enum Entry {
    /// Handed to a worker at this instant.
    Pending(Instant),
    /// The resolver's answer.
    Done(Option<String>),
}

impl NameResolver {
    /// A resolver using the system's `getnameinfo` with [`NameConfig::default`].
    pub fn new() -> NameResolver {
        NameResolver::with_config(NameConfig::default())
    }

    /// A resolver using the system's `getnameinfo` with these limits.
    pub fn with_config(config: NameConfig) -> NameResolver {
        NameResolver::with_lookup(config, system_lookup)
    }

    /// A resolver whose workers call `lookup` instead of the system resolver (a name
    /// service of your own, or a test double).
    pub fn with_lookup(
        config: NameConfig,
        lookup: impl Fn(IpAddr) -> Option<String> + Send + Sync + 'static,
    ) -> NameResolver {
        let shared = Arc::new(Shared {
            cache: Mutex::new(Cache {
                entries: HashMap::new(),
                order: VecDeque::new(),
                capacity: config.cache.max(1),
            }),
            done: Condvar::new(),
            dropped: AtomicBool::new(false),
        });
        // Clamped: the channel allocates its room at once (too large panics), and each
        // worker is a thread.
        let capacity = config.queue.clamp(1, NameConfig::MAX_QUEUE);
        let (requests, queue) = crossbeam_channel::bounded(capacity);
        let lookup: Arc<LookupFn> = Arc::new(lookup);
        for index in 0..config.workers.clamp(1, NameConfig::MAX_WORKERS) {
            let (shared, queue, lookup) = (shared.clone(), queue.clone(), lookup.clone());
            // A worker that cannot start leaves the others; with none, lookups time out.
            let _ = thread::Builder::new()
                .name(format!("mtrproto-names-{index}"))
                .spawn(move || work(&shared, &queue, &*lookup));
        }
        NameResolver {
            shared,
            requests,
            timeout: config.timeout,
        }
    }

    /// What is known about `address` now, starting its lookup if it is new. Never blocks
    /// on the resolver.
    pub fn lookup(&self, address: IpAddr) -> Lookup {
        let mut cache = self.shared.lock();
        self.lookup_locked(&mut cache, address, Instant::now())
    }

    /// Like [`lookup`](NameResolver::lookup), but waits up to `timeout` (and no longer than
    /// the lookup's own timeout) for a pending lookup to finish.
    pub fn wait(&self, address: IpAddr, timeout: Duration) -> Lookup {
        let deadline = Instant::now().checked_add(timeout);
        let mut cache = self.shared.lock();
        loop {
            let now = Instant::now();
            let answer = self.lookup_locked(&mut cache, address, now);
            let left = deadline.map_or(Duration::MAX, |d| d.saturating_duration_since(now));
            if answer != Lookup::Pending || left.is_zero() {
                return answer;
            }
            // Wake when a worker finishes, or when this lookup's own timeout passes.
            let own = match cache.entries.get(&address) {
                Some(Entry::Pending(since)) => self
                    .timeout
                    .saturating_sub(now.saturating_duration_since(*since)),
                _ => Duration::ZERO,
            };
            cache = self
                .shared
                .done
                .wait_timeout(cache, left.min(own).max(Duration::from_millis(1)))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    fn lookup_locked(&self, cache: &mut Cache, address: IpAddr, now: Instant) -> Lookup {
        match cache.entries.get(&address) {
            Some(Entry::Done(Some(name))) => Lookup::Name(name.clone()),
            Some(Entry::Done(None)) => Lookup::NoName,
            Some(Entry::Pending(since)) if now.saturating_duration_since(*since) < self.timeout => {
                Lookup::Pending
            }
            Some(Entry::Pending(_)) => Lookup::NoName,
            None => match self.requests.try_send(address) {
                Ok(()) => {
                    cache.insert(address, Entry::Pending(now));
                    Lookup::Pending
                }
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => Lookup::NoName,
            },
        }
    }
}

impl Drop for NameResolver {
    fn drop(&mut self) {
        // The lookups still queued are for no one: a slow resolver would keep the workers
        // (and their queries) going for the whole queue.
        self.shared.dropped.store(true, Ordering::Relaxed);
    }
}

impl Default for NameResolver {
    fn default() -> NameResolver {
        NameResolver::new()
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Cache {
    fn insert(&mut self, address: IpAddr, entry: Entry) {
        while self.order.len() >= self.capacity {
            if let Some(oldest) = self.order.pop_front() {
                self.entries.remove(&oldest);
            }
        }
        self.order.push_back(address);
        self.entries.insert(address, entry);
    }
}

/// A worker: one lookup at a time until the resolver is dropped.
fn work(shared: &Shared, queue: &Receiver<IpAddr>, lookup: &LookupFn) {
    for address in queue {
        if shared.dropped.load(Ordering::Relaxed) {
            return;
        }
        let name = lookup(address).filter(|name| printable(name));
        let mut cache = shared.lock();
        // Forgotten meanwhile (the cache was full): the answer has no place to go.
        if let Some(entry) = cache.entries.get_mut(&address) {
            *entry = Entry::Done(name);
        }
        drop(cache);
        shared.done.notify_all();
    }
}

/// The system resolver's name for `address` (`getnameinfo` with `NI_NAMEREQD`).
fn system_lookup(address: IpAddr) -> Option<String> {
    dns_lookup::lookup_addr(&address).ok()
}

/// A name safe to print on a terminal: not empty, no spaces or control characters (a
/// hosts file or a PTR record could hold anything).
fn printable(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 1025
        && !name.chars().any(|c| c.is_whitespace() || c.is_control())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(workers: usize, timeout_ms: u64, queue: usize, cache: usize) -> NameConfig {
        NameConfig {
            workers,
            timeout: Duration::from_millis(timeout_ms),
            queue,
            cache,
        }
    }

    fn v4(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    /// Names `192.0.2.N` as `hN.test`, except 192.0.2.9 (none) and 192.0.2.7 (a control
    /// character).
    fn table(address: IpAddr) -> Option<String> {
        match address {
            IpAddr::V4(a) if a.octets()[3] == 9 => None,
            IpAddr::V4(a) if a.octets()[3] == 7 => Some("evil\x1b[2J".to_owned()),
            IpAddr::V4(a) => Some(format!("h{}.test", a.octets()[3])),
            IpAddr::V6(_) => None,
        }
    }

    #[test]
    fn a_name_arrives_after_pending_and_is_cached() {
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = calls.clone();
        let names = NameResolver::with_lookup(config(2, 5000, 8, 8), move |a| {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            table(a)
        });
        assert_eq!(names.lookup(v4(1)), Lookup::Pending);
        assert_eq!(
            names.wait(v4(1), Duration::from_secs(5)),
            Lookup::Name("h1.test".into())
        );
        assert_eq!(names.lookup(v4(1)).name(), Some("h1.test"));
        assert_eq!(names.wait(v4(9), Duration::from_secs(5)), Lookup::NoName);
        assert_eq!(names.wait(v4(7), Duration::from_secs(5)), Lookup::NoName);
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 3);
    }

    /// A resolver that never answers within the timeout: `lookup` never blocks, the address
    /// counts as nameless once the timeout passes, and `wait` gives up at that timeout.
    #[test]
    fn a_stuck_resolver_blocks_no_caller() {
        let (release, stuck) = crossbeam_channel::bounded::<()>(0);
        let names = NameResolver::with_lookup(config(1, 200, 1, 8), move |a| {
            let _ = stuck.recv_timeout(Duration::from_secs(10));
            table(a)
        });
        let started = Instant::now();
        assert_eq!(names.lookup(v4(1)), Lookup::Pending);
        while !names.requests.is_empty() {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "no worker took it"
            );
            thread::sleep(Duration::from_millis(1));
        }
        let started = Instant::now();
        // The worker is busy with 192.0.2.1: one more fits the queue, the next does not.
        assert_eq!(names.lookup(v4(2)), Lookup::Pending);
        assert_eq!(names.lookup(v4(3)), Lookup::NoName);
        assert!(started.elapsed() < Duration::from_millis(150));
        assert_eq!(names.wait(v4(1), Duration::from_secs(10)), Lookup::NoName);
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(150), "{waited:?}");
        assert!(waited < Duration::from_secs(5), "{waited:?}");
        // A late answer still fills the cache.
        release.send(()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while names.lookup(v4(1)) != Lookup::Name("h1.test".into()) {
            assert!(Instant::now() < deadline, "the late answer never arrived");
            thread::sleep(Duration::from_millis(5));
        }
        drop(release);
    }

    /// Dropped while its worker is busy and lookups wait in its queue: the worker ends when
    /// its lookup returns, and the queued addresses are never looked up (a slow resolver
    /// would keep the thread, and its queries, going long after the resolver was gone).
    #[test]
    fn a_dropped_resolver_looks_up_nothing_more() {
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = calls.clone();
        let (release, stuck) = crossbeam_channel::bounded::<()>(0);
        // Dropped with the lookup function, once every worker has ended.
        let (alive, ended) = crossbeam_channel::bounded::<()>(0);
        let names = NameResolver::with_lookup(config(1, 5000, 8, 8), move |a| {
            let _ = &alive;
            if counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                let _ = stuck.recv_timeout(Duration::from_secs(10));
            }
            table(a)
        });
        assert_eq!(names.lookup(v4(1)), Lookup::Pending);
        let started = Instant::now();
        while !names.requests.is_empty() {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "no worker took it"
            );
            thread::sleep(Duration::from_millis(1));
        }
        for last in 2..=6 {
            assert_eq!(names.lookup(v4(last)), Lookup::Pending);
        }
        drop(names);
        release.send(()).unwrap();
        assert_eq!(
            ended.recv_timeout(Duration::from_secs(5)),
            Err(crossbeam_channel::RecvTimeoutError::Disconnected),
            "the worker did not end"
        );
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    /// Limits past what a process can hold are taken as the most it can: no panic for a
    /// channel too large to allocate, no endless loop of thread starts.
    #[test]
    fn limits_out_of_reach_are_clamped() {
        let names = NameResolver::with_lookup(config(usize::MAX, 5000, usize::MAX, 8), table);
        assert_eq!(
            names.wait(v4(1), Duration::from_secs(5)),
            Lookup::Name("h1.test".into())
        );
    }

    #[test]
    fn the_cache_forgets_the_oldest_address() {
        let names = NameResolver::with_lookup(config(1, 5000, 8, 2), table);
        for last in [1, 2, 3] {
            assert_eq!(
                names.wait(v4(last), Duration::from_secs(5)).name(),
                Some(format!("h{last}.test").as_str())
            );
        }
        let cache = names.shared.lock();
        assert_eq!(cache.entries.len(), 2);
        assert!(!cache.entries.contains_key(&v4(1)));
    }

    #[test]
    fn printable_names_only() {
        assert!(printable("router-1.example.net"));
        assert!(!printable(""));
        assert!(!printable("a b"));
        assert!(!printable("a\nb"));
        assert!(!printable(&"a".repeat(2000)));
    }
}
