//! The thread-safe session: callers on any thread, one driver thread owning mtr-packet.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{JoinHandle, ThreadId};
use std::time::{Duration, Instant};

use crossbeam_channel::{Sender, bounded, unbounded};
use mtrproto::{Failure, Feature, ProbeResult, Rate, SessionConfig};

use crate::compat::{self, Release};
use crate::completion::Completion;
use crate::driver::{Command, DEFAULT_CLOSE_GRACE, Driver, RESTART_PAUSE, Wakeup};
use crate::error::{Error, HostResolveError, ProcessError, StateError};
use crate::handle::ProbeHandle;
use crate::helper::{REAP_GIVE_UP, SupportAnswer, Unchecked};
use crate::options::ProbeOptions;
use crate::resolve::{Host, Resolver, source_address_for};
use crate::status::{HelperStatus, Shared};

/// What the session knows of an optional feature (`Session::optional`): not asked yet,
/// the helper has it, it does not.
const UNKNOWN: u8 = 0;
const YES: u8 = 1;
const NO: u8 = 2;

/// The features a helper may lack on a host, each asked at its first use: IPv6 (no IPv6
/// sockets: IPv6 disabled in the kernel) and SCTP (no SCTP in the kernel). mtr-packet
/// answers their probes `invalid-argument` there, which a trace would show as an empty path.
const OPTIONAL: [Feature; 2] = [Feature::Ip6, Feature::Sctp];
/// Indexes into [`OPTIONAL`] and `Session::optional`.
const IP6: usize = 0;
const SCTP: usize = 1;

/// What an IPv6 or SCTP feature check whose helper ended with it in flight means for the
/// probe that asked it ([`Session::probe_args`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IfCheckGone {
    /// A single probe fails with the error that helper's probes get, as if it had been in
    /// flight there.
    Fail,
    /// A trace (a campaign's target, a multipath trace) goes on with "yes" for now: its
    /// probes go to the restarted helper, and one lost on the way counts as lost.
    Proceed,
}

/// The environment variable naming the helper program, with arguments.
pub const MTR_PACKET_ENV: &str = "MTR_PACKET";

/// A running mtr-packet and the thread that drives it. `Send + Sync`: share it with an `Arc`
/// or by reference across threads.
///
/// ```no_run
/// use mtrproto_blocking::{ProbeOptions, Session};
///
/// let session = Session::open()?;
/// let result = session.probe_blocking("127.0.0.1", &ProbeOptions::default())?;
/// println!("{} from {:?} in {:?}", result.result, result.responder, result.time);
/// # Ok::<(), mtrproto_blocking::Error>(())
/// ```
pub struct Session {
    commands: Sender<Command>,
    waker: Arc<Wakeup>,
    driver: Mutex<Option<JoinHandle<()>>>,
    /// The driver thread, which must never join itself.
    driver_id: ThreadId,
    shared: Arc<Shared>,
    closed: AtomicBool,
    resolver: Resolver,
    /// The helper's program as the command line names it, for errors.
    program: String,
    version: String,
    release: &'static Release,
    /// Whether the helper has each of [`OPTIONAL`] ([`UNKNOWN`], [`YES`], [`NO`]).
    optional: [AtomicU8; 2],
    window: usize,
    close_grace: Duration,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("version", &self.version)
            .field("helper_pids", &self.helper_pids())
            .field("closed", &self.closed.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// Options for [`Session`]s: which program, how many probes in flight, how fast.
#[derive(Debug, Clone)]
pub struct SessionBuilder {
    command: Option<Vec<String>>,
    config: SessionConfig,
    close_grace: Duration,
    helpers: usize,
}

impl Default for SessionBuilder {
    fn default() -> Self {
        SessionBuilder {
            command: None,
            config: SessionConfig::default(),
            close_grace: DEFAULT_CLOSE_GRACE,
            helpers: 1,
        }
    }
}

impl SessionBuilder {
    /// The most helper processes one session runs.
    pub const MAX_HELPERS: usize = 64;

    /// Runs `program` with `args` instead of `$MTR_PACKET` or `mtr-packet`.
    pub fn program<S: Into<String>>(
        mut self,
        program: S,
        args: impl IntoIterator<Item = S>,
    ) -> Self {
        let mut command = vec![program.into()];
        command.extend(args.into_iter().map(Into::into));
        self.command = Some(command);
        self
    }

    /// Runs `count` helper processes behind the one driver thread (default 1, at most
    /// [`SessionBuilder::MAX_HELPERS`]), to go past one helper's probe table or CPU. Each
    /// probe goes to the least loaded helper, except UDP probes naming `port` or
    /// `local-port` (fixed flows among them): those to one target with the same ports
    /// always go to the same helper, since mtr-packet matches their answers by sequences
    /// every helper numbers alike
    /// ([`ProbeArgs::fixed_udp_ports`](mtrproto::ProbeArgs::fixed_udp_ports)); a flow keeps
    /// its helper. TCP and SCTP probes run on one helper at a time, which takes every probe
    /// while it has any of them: mtr-packet matches a router's answer to them by the
    /// sequence alone, whatever the target or protocol
    /// ([`ProbeArgs::matched_by_sequence_alone`](mtrproto::ProbeArgs::matched_by_sequence_alone)),
    /// so two helpers would take each other's answers; on 0.92 UDP probes too
    /// ([`Release::udp_matched_by_sequence_alone`](crate::compat::Release)). The window
    /// applies per helper. If one of several helpers dies, only its probes fail and it is
    /// started again.
    ///
    /// This pays off where unanswered ICMP or UDP probes fill the probe table (each helper
    /// has its own); for TCP and SCTP only as a deeper queue for the one helper at work
    /// (1.57x one helper on loopback here, 1.82x when both worked and crossed answers);
    /// not for ICMP or UDP on a fast path:
    /// every mtr-packet's raw ICMP socket receives every ICMP answer on the host, so each
    /// helper also reads the others' answers, and under load some are lost.
    pub fn helpers(mut self, count: usize) -> Self {
        self.helpers = count.clamp(1, SessionBuilder::MAX_HELPERS);
        self
    }

    /// Probes in flight at most, per helper (default 256; see [`SessionConfig::window`]),
    /// saturated to `1..=`[`SessionConfig::MAX_WINDOW`].
    pub fn window(mut self, window: usize) -> Self {
        self.config.window = window.clamp(1, SessionConfig::MAX_WINDOW);
        self
    }

    /// Probes waiting behind the window at most, per helper like the window (default
    /// 65536), saturated to [`SessionConfig::MAX_QUEUE`]. With 0, a probe is taken only
    /// while the window has room and the [`rate`](SessionBuilder::rate), if any, lets it
    /// out. A campaign's probes wait for room whatever this: its in-flight budget bounds
    /// them. A probe is refused with [`Error::QueueFull`] when
    /// sent, or never: one the driver held for an ended helper's answers
    /// ([crate docs](crate)) waits for room whatever this once it goes out. A check-support
    /// (the session's own, or [`Session::check_support`]) takes no window slot and goes out
    /// at once.
    pub fn max_queue(mut self, max_queue: usize) -> Self {
        self.config.max_queue = max_queue.min(SessionConfig::MAX_QUEUE);
        self
    }

    /// At most `per_second` probes per second, `burst` at once (each at least 1).
    pub fn rate(mut self, per_second: u32, burst: u32) -> Self {
        self.config.rate = Some(Rate {
            per_second: per_second.max(1),
            burst: burst.max(1),
        });
        self
    }

    /// How long past its timeout a probe may go unanswered before it fails with
    /// [`ProcessError::Unresponsive`] (default 5 s). Also bounds how long opening waits for
    /// the helper's first answers, how long a helper may take no input while probes wait to
    /// be written (then every probe it holds fails with `Unresponsive` and it is killed), and
    /// how long it may write only lines that answer nothing (then it is killed, and its
    /// probes fail with [`ProcessError::NotMtrPacket`]). A grace of 0 leaves no time for
    /// opening's checks: [`open`](SessionBuilder::open) then fails with `NotMtrPacket`.
    pub fn grace(mut self, grace: Duration) -> Self {
        self.config.grace = grace;
        self
    }

    /// How long [`Session::close`] lets in-flight probes finish before killing the helper
    /// (default 1 s; a grace too large for the clock counts as [`mtrproto::FAR_FUTURE`], 136
    /// years).
    pub fn close_grace(mut self, grace: Duration) -> Self {
        self.close_grace = grace;
        self
    }

    /// Starts the helper, checks it supports `send-probe` and reads its version, then looks
    /// the release up in [`compat`] (by behaviour if the version does not say) and clamps the
    /// window to its probe table. A setting out of range (see [`SessionConfig::validate`]) is
    /// [`Error::Config`]. A helper that stalls, writes junk or answers in a line that does
    /// not parse while its release is told by behaviour fails the open with that probe's
    /// error ([`ProcessError::Unresponsive`], [`ProcessError::NotMtrPacket`]). One that exits
    /// then (0.94-0.96 crash on such a probe where the default route is `unreachable`) ends
    /// the probes with the generic row, once its restart answers a version check; if that
    /// fails too, the open fails with its error ([`ProcessError::Exited`] if it exited
    /// again). Those probes keep to the [rate](SessionBuilder::rate),
    /// each waiting for its turn even with a [`max_queue`](SessionBuilder::max_queue) of 0.
    pub fn open(self) -> Result<Session, Error> {
        self.config.validate()?;
        let session = self.clone().open_once(None)?;
        let capacity = session.release.capacity;
        if self.config.window <= capacity {
            return Ok(session);
        }
        // The window is fixed when the helper starts: start again within the table, taking
        // the release found by behaviour again without its probes (a second on 0.92).
        let found = (session.version.clone(), session.release);
        session.close_within(Duration::ZERO);
        self.window(capacity).open_once(Some(found))
    }

    /// Opens one helper; `found` is the version and row an earlier open of the same program
    /// read, taken again where the version matches and says nothing.
    fn open_once(self, found: Option<(String, &'static Release)>) -> Result<Session, Error> {
        let command = match self.command {
            Some(command) => command,
            None => command_from_env()?,
        };
        let window = self.config.window;
        let rate = self.config.rate;
        let (commands, receiver) = unbounded();
        let shared = Arc::new(Shared::default());
        let (driver, waker) = Driver::start(
            command.clone(),
            self.helpers,
            self.config,
            receiver,
            Arc::clone(&shared),
        )?;
        let thread = std::thread::Builder::new()
            .name("mtr-packet driver".into())
            .spawn(move || driver.run())
            .map_err(ProcessError::Io)?;
        let mut session = Session {
            commands,
            waker,
            driver_id: thread.thread().id(),
            driver: Mutex::new(Some(thread)),
            shared,
            closed: AtomicBool::new(false),
            resolver: Resolver::default(),
            program: command[0].clone(),
            version: String::new(),
            release: compat::PERMISSIVE,
            optional: [AtomicU8::new(UNKNOWN), AtomicU8::new(UNKNOWN)],
            window,
            close_grace: self.close_grace,
        };
        let not_mtr_packet = |detail: String| ProcessError::NotMtrPacket {
            program: session.program.clone(),
            detail,
        };
        let opened = session
            .ask(Feature::SendProbe)
            .map_err(|f| not_mtr_packet(describe(&f)))
            .and_then(|support| match support.as_str() {
                "no" => Err(not_mtr_packet("it does not support send-probe".into())),
                _ => session
                    .ask(Feature::Version)
                    .map_err(|f| not_mtr_packet(describe(&f))),
            });
        let release = opened.map_err(Error::from).and_then(|version| {
            let release = match (Release::for_version(&version), found) {
                (Some(release), _) => release,
                (None, Some((seen, release))) if seen == version => release,
                // A helper that stalls or writes junk meanwhile fails the open with its
                // probe's error; one that exits (0.94-0.96 crash on a probe without source
                // address where the default route is `unreachable`) tells nothing more, and
                // the generic row is taken if its successor answers a check.
                (None, _) => match compat::by_behaviour(|o| detection_probe(&session, o, rate)) {
                    Err(Error::Process(ProcessError::Exited { .. })) => {
                        // Its slot is started again once the ended helper is reaped (or given
                        // up on), at once as it had answered.
                        session.answers_again(REAP_GIVE_UP + RESTART_PAUSE)?;
                        &compat::UNKNOWN
                    }
                    found => found?,
                },
            };
            Ok((version, release))
        });
        match release {
            Ok((version, release)) => {
                session.release = release;
                // Before any caller's probe: the driver routes UDP probes by it.
                if session.release.udp_matched_by_sequence_alone {
                    session.send(Command::UdpBySequence)?;
                }
                session.version = version;
                Ok(session)
            }
            Err(e) => {
                session.close_within(Duration::ZERO);
                Err(e)
            }
        }
    }
}

/// A probe of the detection ([`compat::by_behaviour`]), to 127.0.0.1. No caller's probe
/// waits at open, so `QueueFull` means the caller's `rate` holds it back with no queue to
/// wait in (`max_queue(0)`): it waits for the rate's next token and goes again (three times
/// at most; one wait, at most a second, is enough), as it would have waited in a queue.
fn detection_probe(
    session: &Session,
    options: &ProbeOptions,
    rate: Option<Rate>,
) -> Result<ProbeResult, Error> {
    let interval = rate.map(|r| Duration::from_secs(1) / r.per_second.max(1));
    let mut tries = 0;
    loop {
        match (session.probe_blocking("127.0.0.1", options), interval) {
            (Err(Error::QueueFull(_)), Some(interval)) if tries < 3 => {
                tries += 1;
                std::thread::sleep(interval);
            }
            (outcome, _) => return outcome,
        }
    }
}

/// Why a check-support went unanswered, for a person.
fn describe(failure: &Unchecked) -> String {
    match failure {
        Unchecked::Failed(Failure::HelperGone) => {
            "it exited without answering check-support".into()
        }
        // Ended by the driver (junk, a stall) or by itself: its probes' error says which.
        Unchecked::Gone(error) => format!("it ended without answering check-support: {error}"),
        Unchecked::Failed(Failure::Unanswered) => "it did not answer check-support in time".into(),
        Unchecked::Failed(Failure::UnexpectedReply(kind)) => {
            format!("it answered `{kind}` to check-support")
        }
        Unchecked::Failed(other) => other.to_string(),
        Unchecked::QueueFull(n) => format!("no room for check-support ({n} waiting)"),
    }
}

/// The helper's command line as [`Session::open`] runs it: `$MTR_PACKET` split by
/// [`mtrproto::split_command`], or `mtr-packet`. The one way to start the helper: the test tools and
/// benchmarks use it too.
pub fn command_from_env() -> Result<Vec<String>, ProcessError> {
    match std::env::var_os(MTR_PACKET_ENV) {
        Some(value) => mtrproto::split_command(&value.to_string_lossy()).map_err(|e| {
            ProcessError::BadCommandLine {
                value: e.value,
                reason: e.reason,
            }
        }),
        None => Ok(vec!["mtr-packet".into()]),
    }
}

impl Session {
    /// Starts `$MTR_PACKET` or `mtr-packet` with default options. See [`SessionBuilder`].
    pub fn open() -> Result<Session, Error> {
        SessionBuilder::default().open()
    }

    /// A builder for a session with other options.
    pub fn builder() -> SessionBuilder {
        SessionBuilder::default()
    }

    /// Sends one probe and blocks the calling thread until it completes.
    ///
    /// `host` is an [`IpAddr`] (used as it is), or an IP address or name as text (resolved
    /// once per session, the latest 4096 names kept, see
    /// [`Session::clear_dns_cache`]). A probe that mtr-packet answered is `Ok`, whatever the
    /// answer: check [`ProbeResult::success`].
    pub fn probe_blocking<'h>(
        &self,
        host: impl Into<Host<'h>>,
        options: &ProbeOptions,
    ) -> Result<ProbeResult, Error> {
        self.probe(host, options)?.wait()
    }

    /// Sends one probe and returns with a handle to its result, without waiting for the
    /// answer. Before sending it may wait: for a host name to resolve (see
    /// [`Session::probe_blocking`]), and at the session's first IPv6 or SCTP probe for the
    /// helper's answer to `check-support feature ip-6` or `sctp` (at most the
    /// [grace](SessionBuilder::grace)), as [`Session::probe_with`] does. If the helper ends
    /// with that check in flight, the probe fails then with the error its probes get
    /// ([`ProcessError::Exited`], or `NotMtrPacket` or `Unresponsive` where it was ended
    /// for junk or a stall), and the next such probe asks again.
    pub fn probe<'h>(
        &self,
        host: impl Into<Host<'h>>,
        options: &ProbeOptions,
    ) -> Result<ProbeHandle, Error> {
        let (done, result) = bounded(1);
        self.probe_with(host, options, move |r| {
            let _ = done.send(r);
        })?;
        Ok(ProbeHandle::new(result, self.driver_id))
    }

    /// Sends one probe and calls `done` with its result on the driver thread, where it must
    /// not block (send it to a channel, for example). Errors before the probe is sent are
    /// returned instead. Like [`Session::probe`], it may wait before sending (a name to
    /// resolve, the first IPv6 or SCTP probe's feature check), except on the driver thread,
    /// where the check is not asked. `done` may send probes (`probe_with`, `probe`); the
    /// calls that wait for the session (`probe_blocking`, [`ProbeHandle::wait`],
    /// `check_support`, `trace`, the campaigns, `multipath`) fail there with
    /// [`Error::OnDriverThread`].
    pub fn probe_with<'h>(
        &self,
        host: impl Into<Host<'h>>,
        options: &ProbeOptions,
        done: impl FnOnce(Result<ProbeResult, Error>) + Send + 'static,
    ) -> Result<(), Error> {
        let args = self.probe_args(host.into(), options, IfCheckGone::Fail)?;
        self.send_args(args, done)
    }

    /// The request for a probe to `host` with `options`: resolved, checked against the
    /// release, with the source address the release needs. `if_gone`: what a feature check
    /// whose helper ended with it in flight means for it (see [`IfCheckGone`]).
    pub(crate) fn probe_args(
        &self,
        host: Host<'_>,
        options: &ProbeOptions,
        if_gone: IfCheckGone,
    ) -> Result<mtrproto::ProbeArgs, Error> {
        self.check_open()?;
        let target = self.resolver.resolve_host(host, options.ip_version)?;
        if target.is_ipv6() && !self.has(IP6, if_gone)? {
            return Err(Error::Unsupported {
                version: self.version.clone(),
                what: "IPv6 probes: it answers `check-support feature ip-6` with no (it could \
                       not open IPv6 sockets) and would answer each with invalid-argument",
            });
        }
        if options.protocol == mtrproto::Protocol::Sctp && !self.has(SCTP, if_gone)? {
            return Err(Error::Unsupported {
                version: self.version.clone(),
                what: "SCTP probes: it answers `check-support feature sctp` with no (no SCTP \
                       in this kernel) and would answer each with invalid-argument",
            });
        }
        if let Some(what) = self.release.refusal(options, target) {
            return Err(Error::Unsupported {
                version: self.version.clone(),
                what,
            });
        }
        let local = match &options.local_ip {
            Some(local) => Some(self.resolver.resolve(local, Some(family(target)))?),
            // mtr-packet 0.93 refuses probes that name no source address; the address comes
            // from this process's routing table (give `local_ip` if the helper runs elsewhere).
            None if self.release.needs_source_address => {
                Some(source_address_for(target).map_err(|e| HostResolveError {
                    host: host.to_string(),
                    ip_version: options.ip_version,
                    reason: format!("no source address to reach it: {e}"),
                })?)
            }
            None => None,
        };
        Ok(options.to_args(target, local)?)
    }

    /// Whether the helper has `OPTIONAL[index]`: asked once, at its first use. Not asked on
    /// the driver thread (a callback sending a probe), which must not wait for itself: the
    /// probe then goes out and gets the helper's answer. An unanswered check counts as yes.
    /// A check no helper took (none was running, or none had room) counts as yes for this
    /// probe only: the next asks again. A check whose helper ended with it in flight (it
    /// exited, or was ended for junk or a stall) is asked again next time too (the restarted
    /// helper then); for this probe it is as `if_gone` says.
    fn has(&self, index: usize, if_gone: IfCheckGone) -> Result<bool, Error> {
        let known = &self.optional[index];
        Ok(match known.load(Ordering::Acquire) {
            YES => true,
            NO => false,
            _ if self.on_driver_thread() => true,
            _ => match self.ask(OPTIONAL[index].clone()) {
                Err(Unchecked::Gone(error)) => match if_gone {
                    IfCheckGone::Fail => return Err(error),
                    IfCheckGone::Proceed => true,
                },
                // No helper took the check, or none had room for it: ask again next time.
                Err(Unchecked::Failed(Failure::HelperGone) | Unchecked::QueueFull(_)) => true,
                answer => {
                    let yes = answer.map_or(true, |answer| answer != "no");
                    known.store(if yes { YES } else { NO }, Ordering::Release);
                    yes
                }
            },
        })
    }

    /// Sends a probe built by [`Session::probe_args`]; `done` as in [`Session::probe_with`].
    pub(crate) fn send_args(
        &self,
        args: mtrproto::ProbeArgs,
        done: impl FnOnce(Result<ProbeResult, Error>) + Send + 'static,
    ) -> Result<(), Error> {
        self.send_args_unwoken(args, done)?;
        self.wake_driver();
        Ok(())
    }

    /// [`Session::send_args`] without waking the driver: for a batch of probes, followed by
    /// one [`Session::wake_driver`].
    pub(crate) fn send_args_unwoken(
        &self,
        args: mtrproto::ProbeArgs,
        done: impl FnOnce(Result<ProbeResult, Error>) + Send + 'static,
    ) -> Result<(), Error> {
        self.check_open()?;
        self.send_unwoken(Command::Probe {
            args,
            done: Completion::new(done),
        })
    }

    /// Wakes the driver to take the commands sent.
    pub(crate) fn wake_driver(&self) {
        // A waker that cannot be written is an eventfd already full of wake-ups: the
        // driver is due to look anyway.
        let _ = self.waker.wake();
    }

    /// The address a probe to `host` would go to: `host` itself if it is an IP address, else
    /// its first address of the wanted version, from the session's cache.
    pub fn resolve(
        &self,
        host: &str,
        ip_version: Option<crate::IpVersion>,
    ) -> Result<IpAddr, Error> {
        Ok(self.resolver.resolve(host, ip_version)?)
    }

    /// Whether the helper supports `feature` (its answer is `ok` or a version).
    pub fn check_support(&self, feature: Feature) -> Result<bool, Error> {
        self.check_open()?;
        self.check_waitable()?;
        let answer = self.ask(feature).map_err(|f| self.unchecked(f))?;
        Ok(answer != "no")
    }

    /// The error for a check-support that got no answer.
    fn unchecked(&self, failure: Unchecked) -> Error {
        match failure {
            Unchecked::QueueFull(n) => Error::QueueFull(n),
            Unchecked::Failed(Failure::Unanswered) => ProcessError::Unresponsive.into(),
            Unchecked::Failed(Failure::UnexpectedReply(_)) => ProcessError::NotMtrPacket {
                program: self.program.clone(),
                detail: describe(&failure),
            }
            .into(),
            // The helper the check went to ended: its probes' error.
            Unchecked::Gone(error) => error,
            Unchecked::Failed(_) => ProcessError::Exited {
                status: self.shared.last_exit(),
            }
            .into(),
        }
    }

    /// After a helper exited at open: whether a helper (its restart, started at once as it
    /// had answered) answers `check-support feature version`. While none runs yet the check
    /// is asked again, until `bound` has passed; then, or when the check fails, its error
    /// (the restart exited too, stalled, or wrote junk).
    fn answers_again(&self, bound: Duration) -> Result<(), Error> {
        let until = Instant::now() + bound;
        loop {
            match self.ask(Feature::Version) {
                Ok(_) => return Ok(()),
                Err(Unchecked::Failed(Failure::HelperGone)) if Instant::now() < until => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(failure) => return Err(self.unchecked(failure)),
            }
        }
    }

    fn ask(&self, feature: Feature) -> SupportAnswer {
        let gone = || Unchecked::Failed(Failure::HelperGone);
        let (done, answer) = bounded(1);
        self.send(Command::Support { feature, done })
            .map_err(|_| gone())?;
        answer.recv().unwrap_or(Err(gone()))
    }

    fn send(&self, command: Command) -> Result<(), Error> {
        self.send_unwoken(command)?;
        self.wake_driver();
        Ok(())
    }

    /// Sends a command without waking the driver (see [`Session::wake_driver`]).
    pub(crate) fn send_unwoken(&self, command: Command) -> Result<(), Error> {
        if let Err(refused) = self.commands.send(command) {
            // The driver has stopped: the caller gets this error instead of a callback.
            if let Command::Probe { done, .. } = refused.into_inner() {
                done.cancel();
            }
            return Err(self.exited());
        }
        Ok(())
    }

    /// The error for a request the driver can no longer take.
    pub(crate) fn exited(&self) -> Error {
        ProcessError::Exited {
            status: self.shared.last_exit(),
        }
        .into()
    }

    pub(crate) fn check_open(&self) -> Result<(), StateError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StateError);
        }
        Ok(())
    }

    /// The helper's version, as it answered `check-support feature version` (`0.95` here).
    ///
    /// Read once, at open, with the release's row ([`Session::release`]) and, at their first
    /// use, the optional features (IPv6, SCTP). A helper the session starts again (after it
    /// crashed) runs whatever program the command names then; if that changed (another mtr
    /// build at the same path, an upgrade during a long campaign), the session keeps these:
    /// callers check their probes against the release on their own threads, the window was
    /// clamped to its probe table when the helpers started, and the helpers of one session
    /// would no longer agree. The new process is asked its version all the same, without
    /// waiting for it, and [`HelperStatus::version`] shows its answer: where it differs from
    /// this, open a new session to follow the new release's rules.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The helper's release as this crate knows it (from its version, or its behaviour when
    /// the version is not a known release).
    pub fn release(&self) -> &'static Release {
        self.release
    }

    /// Probes in flight at most per helper: the builder's window, clamped to the release's
    /// probe table.
    pub fn window(&self) -> usize {
        self.window
    }

    /// The process id of the first helper slot's current process (see
    /// [`Session::helper_pids`] for every helper).
    pub fn helper_pid(&self) -> u32 {
        self.shared.helpers().first().map_or(0, |h| h.pid)
    }

    /// The process ids of every helper slot's current process, in slot order. A helper that
    /// was started again has its new id here.
    pub fn helper_pids(&self) -> Vec<u32> {
        self.shared.helpers().iter().map(|h| h.pid).collect()
    }

    /// Every helper slot: process id, whether it is running, how its last process exited,
    /// restarts, and the lines it wrote that answered no request (counted, the last few kept).
    pub fn helpers(&self) -> Vec<HelperStatus> {
        self.shared.helpers().clone()
    }

    /// Fails with [`Error::OnDriverThread`] on the driver thread (in a probe callback), where
    /// a call that waits for the driver would wait for ever.
    pub(crate) fn check_waitable(&self) -> Result<(), Error> {
        if self.on_driver_thread() {
            return Err(Error::OnDriverThread);
        }
        Ok(())
    }

    /// Whether this call runs on the driver thread (in a probe callback).
    fn on_driver_thread(&self) -> bool {
        std::thread::current().id() == self.driver_id
    }

    /// Forgets resolved host names; the next probes resolve them again.
    pub fn clear_dns_cache(&self) {
        self.resolver.clear();
    }

    /// Closes the helper's stdin, lets in-flight probes finish within the close grace, then
    /// kills and reaps the helper and joins the driver thread. Probes still pending then fail
    /// with [`ProcessError::Exited`]; later calls fail with [`StateError`]. Idempotent; a
    /// close on another thread meanwhile returns once this one's work is done too. From a
    /// probe callback it returns at once; the driver thread then ends on its own once the
    /// callback has returned, the close grace is over and the helpers are killed.
    pub fn close(&self) {
        self.close_within(self.close_grace);
    }

    fn close_within(&self, grace: Duration) {
        self.closed.store(true, Ordering::Release);
        let _ = self.send(Command::Close { grace });
        // Closed from a callback, on the driver thread itself: it cannot wait for itself (nor
        // for the lock, which a caller joining it may hold); it ends on its own once this
        // call returns, and kills and reaps the helpers then.
        if self.on_driver_thread() {
            return;
        }
        // Joined under the lock: a close concurrent with another returns only once the
        // driver has ended, as the first does, not while its helpers still run.
        let mut driver = self.driver.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(thread) = driver.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.close();
    }
}

fn family(addr: IpAddr) -> crate::IpVersion {
    if addr.is_ipv4() {
        crate::IpVersion::V4
    } else {
        crate::IpVersion::V6
    }
}
