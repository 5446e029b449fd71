//! A sans-IO core for [`mtr-packet`](https://github.com/traviscross/mtr), the probe engine of
//! mtr.
//!
//! mtr-packet is a child process that reads requests such as
//! `42 send-probe ip-4 127.0.0.1 ttl 3` on its stdin and answers lines such as
//! `42 ttl-expired ip-4 10.0.0.1 round-trip-time 812` on its stdout. This crate holds
//! everything about that protocol that needs no I/O:
//!
//! - [`ProbeArgs`] and [`Request`]: typed requests, checked when built, so that encoding
//!   always yields exactly one valid line;
//! - [`Reply`]: a zero-copy nom parser for every reply name and argument mtr-packet 0.92 to
//!   0.96 use, MPLS label stacks ([`MplsStack`]) included, keeping whatever it does not know;
//! - [`LineFramer`]: byte chunks in, bounded lines out;
//! - [`split_command`]: the helper's command line (`$MTR_PACKET`) as words, for any driver;
//! - [`ProbeResult`]: the owned outcome of one probe;
//! - [`Session`]: the state machine a driver runs: tokens, an in-flight window with a queue
//!   behind it, pacing, re-sends after `probes-exhausted`, a watchdog, and events;
//! - [`TraceStats`], [`text_report`] and (feature `serde`) `JsonReport`: mtr's per-hop
//!   statistics and its `--report` / `--json` output;
//! - [`Tracer`]: one target's mtr trace (its probing order, [`Rounds`], and timing) as a
//!   state machine: probes out, results in;
//! - [`Flow`] and [`MultipathTracer`]: Paris-style flows, and every path to a target
//!   through load balancers with the Multipath Detection Algorithm.
//!
//! It never reads a clock, starts a thread or touches a socket: see [`Session`] for the
//! driving contract, `examples/tokio.rs` in the repository for a driver in about 150 lines,
//! and `mtrproto-blocking` for a ready, thread-safe one.
//!
//! Feature `serde`: `JsonReport`, mtr's `--json` document. The features `fuzzing` and
//! `arbitrary` serve the project's own fuzz targets and tests; they are not part of the API.
//!
//! ```
//! use mtrproto::{LineFramer, ProbeArgs, ProbeResult, Reply, Token};
//!
//! let mut request = Vec::new();
//! ProbeArgs::new("127.0.0.1".parse()?).ttl(3)?.encode(Token::new(42).unwrap(), &mut request);
//! assert_eq!(request, b"42 send-probe ip-4 127.0.0.1 ttl 3\n");
//!
//! let mut framer = LineFramer::new();
//! framer.feed(b"42 reply ip-4 127.0.0.1 round-trip-time 812\n", |line| {
//!     let reply = Reply::parse(line.unwrap()).unwrap();
//!     let result = ProbeResult::from_reply(&reply);
//!     assert!(result.success());
//! });
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

// docs.rs: mark the items a feature gates (`JsonReport` needs `serde`).
#![cfg_attr(docsrs, feature(doc_cfg))]

mod command_line;
mod error;
// Test and fuzz support, out of release builds (as quinn-proto and str0m keep theirs).
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
// Layers, bottom up: lines and their types, the request state machine, mtr's statistics.
// Private: each public type has one path, the re-export below.
mod measurement;
mod protocol;
mod session;

pub use command_line::split_command;
pub use error::{ArgumentError, CommandLineError, FrameError, MplsError, ParseError};
pub use measurement::mda::Confidence;
pub use measurement::multipath::{
    Link, MultipathConfig, MultipathEnd, MultipathHop, MultipathProbe, MultipathReport,
    MultipathResponder, MultipathTracer, ProbeId,
};
#[cfg(feature = "serde")]
pub use measurement::report::{JsonFlow, JsonHub, JsonMpls, JsonReport, JsonResponder};
pub use measurement::report::{ReportMeta, host_label, text_report, text_report_named};
pub use measurement::stats::{Hop, Responder, Rounds, TraceStats};
pub use measurement::tracer::{TraceConfig, TraceProbe, Tracer};
pub use protocol::command::{DeviceName, Feature, ProbeArgs, ProbeFields, Protocol, Request};
pub use protocol::flow::Flow;
pub use protocol::framer::LineFramer;
pub use protocol::mpls::{Mpls, MplsStack};
pub use protocol::reply::{Reply, ReplyKind};
pub use protocol::result::ProbeResult;
pub use protocol::token::{Token, TokenHasher, TokenMap};
pub use protocol::word::Word;
pub use session::slots::Slots as TokenSlots;
pub use session::{
    ConfigError, Counters, Diagnostic, Event, FAR_FUTURE, Failure, Rate, SendError, Session,
    SessionConfig,
};
