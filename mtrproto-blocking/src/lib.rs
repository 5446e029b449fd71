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
//! assert_eq!(session.version(), "0.95");
//!
//! // One probe, blocking this thread only.
//! let result = session.probe_blocking("localhost", &ProbeOptions::default())?;
//! assert!(result.success);
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
//! Probe only hosts you are allowed to probe; the examples here use localhost.

pub mod compat;
mod completion;
mod driver;
mod error;
mod handle;
mod helper;
mod options;
mod resolve;
mod session;
mod status;
mod sys;

pub use error::{Error, HostResolveError, ProcessError, StateError};
pub use handle::ProbeHandle;
pub use mtrproto::{Feature, Mpls, MplsStack, ProbeResult, Protocol, ReplyKind};
pub use options::{IpVersion, ProbeOptions};
pub use session::{MTR_PACKET_ENV, Session, SessionBuilder};
pub use status::HelperStatus;
