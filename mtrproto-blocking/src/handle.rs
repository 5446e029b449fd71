//! Handles to probes in flight.

use std::thread::{self, ThreadId};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, TryRecvError};
use mtrproto::ProbeResult;

use crate::error::{Error, ProcessError};

/// A probe in flight, from [`Session::probe`](crate::Session::probe).
///
/// Dropping the handle does not cancel the probe; its result is then discarded. To wait for
/// many at once, select over their [`receiver`](ProbeHandle::receiver)s with
/// [`crossbeam_channel::Select`], or use [`Session::probe_with`](crate::Session::probe_with).
///
/// The result comes once: after [`try_result`](ProbeHandle::try_result) or
/// [`wait_timeout`](ProbeHandle::wait_timeout) returned it, later calls find the channel
/// empty and closed and return [`ProcessError::Exited`] with no status, as for a probe the
/// driver dropped.
#[derive(Debug)]
pub struct ProbeHandle {
    result: Receiver<Result<ProbeResult, Error>>,
    /// The session's driver thread, which completes the probe: waiting on it would never end.
    driver: ThreadId,
}

impl ProbeHandle {
    pub(crate) fn new(
        result: Receiver<Result<ProbeResult, Error>>,
        driver: ThreadId,
    ) -> ProbeHandle {
        ProbeHandle { result, driver }
    }

    /// Blocks until the probe completes. On the session's driver thread (in a probe
    /// callback), [`Error::OnDriverThread`] at once.
    pub fn wait(self) -> Result<ProbeResult, Error> {
        if self.on_driver_thread() {
            return Err(Error::OnDriverThread);
        }
        self.result.recv().unwrap_or_else(|_| Err(gone()))
    }

    /// Blocks at most `timeout`; `None` if the probe is still in flight then. On the
    /// session's driver thread (in a probe callback), [`Error::OnDriverThread`] at once.
    pub fn wait_timeout(&self, timeout: Duration) -> Option<Result<ProbeResult, Error>> {
        if self.on_driver_thread() {
            return Some(Err(Error::OnDriverThread));
        }
        match self.result.recv_timeout(timeout) {
            Ok(result) => Some(result),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => Some(Err(gone())),
        }
    }

    /// Whether this call runs on the session's driver thread (in a probe callback).
    fn on_driver_thread(&self) -> bool {
        thread::current().id() == self.driver
    }

    /// The result if the probe has completed, without blocking.
    pub fn try_result(&self) -> Option<Result<ProbeResult, Error>> {
        match self.result.try_recv() {
            Ok(result) => Some(result),
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => Some(Err(gone())),
        }
    }

    /// The channel the result arrives on, to select over many handles. It yields one value.
    pub fn receiver(&self) -> &Receiver<Result<ProbeResult, Error>> {
        &self.result
    }
}

/// The driver dropped the probe without completing it: it has stopped.
fn gone() -> Error {
    ProcessError::Exited { status: None }.into()
}
