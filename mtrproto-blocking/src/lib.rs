//! Blocking, thread-safe probes through `mtr-packet`, without an async runtime.
//!
//! [`Session::open`] starts mtr-packet (or `$MTR_PACKET`) and one driver thread that owns it:
//! a `mio::Poll` over the child's pipes runs the sans-IO [`mtrproto::Session`]. Callers on
//! any thread send probes over a channel and block only themselves:
//!
//! ```no_run
//! use mtrproto_blocking::{ProbeOptions, Protocol, Session};
//!
//! let session = Session::open()?;
//! println!("mtr-packet {}", session.version()); // "0.95" on Debian 12 and 13
//!
//! // One probe, blocking this thread only.
//! let result = session.probe_blocking("localhost", &ProbeOptions::default())?;
//! assert!(result.success());
//!
//! // Many at once from one thread.
//! let udp = ProbeOptions { protocol: Protocol::Udp, port: Some(9), ..ProbeOptions::default() };
//! let handles: Vec<_> = (0..1000)
//!     .map(|_| session.probe("127.0.0.1", &udp))
//!     .collect::<Result<_, _>>()?;
//! for handle in handles {
//!     handle.wait()?;
//! }
//! # Ok::<(), mtrproto_blocking::Error>(())
//! ```
//!
//! It needs `mtr-packet` (Debian and Ubuntu: `apt-get install mtr-tiny`, which gives it the
//! `cap_net_raw` capability, so a normal user can probe); [`Session::builder`] sets another
//! command line ([`SessionBuilder::program`]), the window, a rate and several helpers. Any
//! release from 0.92 to 0.96 works: the session adapts to the one it finds ([`compat`]).
//!
//! The same session also traces, through the sans-IO tracers of `mtrproto`:
//!
//! - [`Session::trace`]: one host as `mtr --report` traces it, its [`TraceStats`] printed
//!   with `mtrproto::text_report` (add `mtrproto` to your dependencies for the reports);
//! - [`Session::campaign`]: thousands of hosts at once, within an in-flight budget and an
//!   optional rate, each target's report handed to a callback as soon as its trace ends;
//! - [`Session::multipath`]: every path to a host through load balancers (MDA over fixed
//!   UDP [`Flow`]s).
//!
//! [`NameResolver`] gives responders their reverse-DNS names, as mtr shows them, from the
//! system resolver on its own small pool of threads: a caller never waits on a resolver.
//!
//! Probe only hosts you are allowed to probe; the examples here use localhost. The crate's
//! repository has runnable examples: `ping`, `trace_concurrent`, `trace` (mtr's report, one
//! or many hosts) and `paths` (every path).
//!
//! # When the helper fails
//!
//! The helper may be a wrapper (`sudo mtr-packet`, `ip netns exec NS mtr-packet`), a broken
//! build, or a real mtr-packet that crashes. Whatever it does, every probe the session
//! accepted completes, exactly once, and the driver thread neither blocks (it waits only in
//! `poll`) nor spins. Each helper runs in a process group of its own; ending a helper means
//! killing that whole group (whatever it started too), completing its probes, and reaping
//! it with `try_wait` on a timer. `grace` is [`SessionBuilder::grace`] (default 5 s),
//! `timeout` the probe's own.
//!
//! | the helper | its pending probes fail with | how soon |
//! |---|---|---|
//! | exits, crashes or is killed | [`ProcessError::Exited`] with its exit status; it is started again (below) | when its output ends (seen up to 10 ms late if it answered in the last 10 ms, 20 ms while a campaign runs: see below), plus up to 20 ms for its exit status (11 ms for 1000 probes after SIGKILL, measured) |
//! | closes stdout and stays alive | `Exited { status: None }`; it is killed | 20 ms after its output ends is seen (up to 10 ms late, 20 ms while a campaign runs: 31 ms measured right after an answer) |
//! | exits, leaving a child holding its pipes | `Exited` with its status; the child is killed with it | within 100 ms while it has probes (checked on a timer); idle, at the next probe |
//! | reads but stops answering | [`ProcessError::Unresponsive`], every probe it holds, queued ones too; it is killed | `timeout + grace` after the first unanswered probe was written, if nothing at all was answered in the last `grace` (mtr-packet answers every probe by its timeout); otherwise only that probe fails |
//! | stops reading its stdin (hung, stopped) | `Unresponsive`, every probe it holds, queued ones too; it is killed | `grace` after it last read, once bytes wait unread in the pipe (up to 100 ms, or an eighth of `grace` if less, later: the pipe is asked that often) |
//! | writes only lines that answer nothing (a late or second answer counts as an answer once per token, so an old answer written again and again does not), or one line without end | [`ProcessError::NotMtrPacket`] naming the last such line; it is killed | `grace` after the first such line (an endless one: once longer than the longest line), at the next output |
//! | answers a probe in a line whose token and name parse but an argument does not | that probe only: [`ProcessError::NotMtrPacket`] saying what does not parse; it lives on | at once |
//! | mixes such lines with answers, or floods its output | nothing: each line is counted ([`HelperStatus::diagnostics`], the last 8 kept); reads stop after 256 KiB per wake-up, so memory stays bounded and other work goes on | - |
//! | exits while probes are being written | as when it exits: SIGPIPE is blocked on the driver thread, so the host process lives on even if it keeps SIGPIPE's default action | as above |
//! | closes its stdin and lives on | a write to it fails: it takes no new probe from then (another helper does; with none, or while it holds probes whose answers another helper's could take (TCP, SCTP, 0.92's UDP), or a flow's probes (that flow's), `Exited` at once), those still in its backlog (behind its window) end with `Exited` then, those it was handed end as their watchdogs say (`Unresponsive`); it is killed and started again once it holds none | at the first write after the close |
//!
//! After a read that got output, while requests are in flight, a helper's stdout rests out
//! of the driver's poll and is read at each of the driver's wake-ups, at the latest when the
//! 10 ms rest ends (20 ms while a campaign runs, [`Session::campaign`]: its wake-ups read
//! the output meanwhile, and the longer rest saves the driver wake-ups of its own): so every
//! row's "when its output ends" is when the driver sees it, at most 10 ms after (20 ms
//! while a campaign runs). A caller's answer that comes during a rest waits as long.
//!
//! Whatever the count of helpers ([`SessionBuilder::helpers`]), only the failed helper's
//! probes fail, and its slot gets a new process: at once if the helper had answered
//! anything (mtr-packet 0.94 to 0.96 die of SIGSEGV on a probe to a destination whose route
//! is `unreachable` when no source address is given: that probe fails with `Exited` and the
//! signal, later probes go to the new helper), after 1 s if it never answered and some
//! helper of the session did; a helper that never answered and was handed no request of a
//! caller (it died on the session's own version check, asked of each new helper, or by
//! itself) is started again only once a request comes (then at once if that 1 s is over),
//! so an idle session does not start a program that dies at once again and again. A slot
//! started again 5 times within 10 s waits 1 s before each further start, so a helper that
//! crashes on every probe costs at most one start a second.
//! Probes sent while a slot has no helper (between the end and the start, or while the
//! program cannot be started) fail at once with `Exited` and the status it died with, or go
//! to another helper if there is one. If no helper of the session ever answered, a slot is
//! not started again, and once every slot is empty later probes fail the same way.
//! A helper that ends with fixed-port UDP probes (flows) or TCP or SCTP probes in flight
//! leaves their answers behind, which a helper numbering alike (the new one starts again
//! from 33000) would take as its own: until the longest timeout of such probes it was
//! sent since it last had none has passed since the end, later probes of the same target
//! and ports (for TCP and SCTP: every probe)
//! wait in the driver instead of going to any helper; a caller's at most `max_queue` per
//! helper (more fail with [`Error::QueueFull`] when sent; one taken then never does: it
//! waits for its helper's window when the quiet ends, whatever `max_queue`). A probe held
//! there past its own timeout and the grace, as another probe's longer timeout can make the
//! quiet, ends unsent with [`ProcessError::Unresponsive`] then (a campaign counts it lost),
//! as a probe held back behind other helpers' probes (a TCP or SCTP probe, and every probe
//! after it, waits until no other helper has any) does once its own timeout and the grace
//! have passed: the same wait, one outcome.
//! A helper started again runs the program the command names then, which may have changed
//! since the session opened (an upgrade): the session keeps the release and feature answers
//! it read at open ([`Session::version`] says why), and reports the new process's own
//! answer to `check-support feature version`, asked as its first request, in
//! [`HelperStatus::version`].
//! [`Session::helpers`] reports each slot's current pid, last exit status and restarts. A
//! program that is not mtr-packet fails [`SessionBuilder::open`]
//! within `grace`. [`Session::close`] lets in-flight probes finish within the close grace,
//! then kills the helpers; closing from a probe's callback, or dropping the last `Arc` of the
//! session there, is fine. A callback that panics does not take the session down.

mod campaign;
pub mod compat;
mod completion;
mod driver;
mod error;
mod handle;
mod helper;
mod job;
mod multipath;
mod names;
mod options;
mod resolve;
mod session;
mod status;
mod sys;

pub use campaign::{CampaignEvent, CampaignLimits, CampaignSummary, TargetReport, TraceOptions};
pub use error::{Error, HostResolveError, ProcessError, StateError};
pub use handle::ProbeHandle;
pub use mtrproto::{
    Confidence, Feature, Flow, Link, Mpls, MplsStack, MultipathConfig, MultipathEnd, MultipathHop,
    MultipathReport, MultipathResponder, ProbeResult, Protocol, ReplyKind, TraceConfig, TraceStats,
};
pub use multipath::MultipathOptions;
pub use names::{Lookup, NameConfig, NameResolver};
pub use options::{IpVersion, ProbeOptions};
pub use resolve::Host;
pub use session::{MTR_PACKET_ENV, Session, SessionBuilder, command_from_env};
pub use status::HelperStatus;
