//! A probe's completion: called exactly once, whatever happens to the driver.

use std::panic::{AssertUnwindSafe, catch_unwind};

use mtrproto::ProbeResult;

use crate::error::{Error, ProcessError};

type Callback = Box<dyn FnOnce(Result<ProbeResult, Error>) + Send>;

/// The caller's callback for one accepted probe. [`Completion::complete`] calls it; if the
/// completion is dropped instead (the driver stopped with the probe still in its channel, or
/// unwound), the drop calls it with [`ProcessError::Exited`]. Either way, exactly once.
pub(crate) struct Completion {
    callback: Option<Callback>,
}

impl Completion {
    pub(crate) fn new(callback: impl FnOnce(Result<ProbeResult, Error>) + Send + 'static) -> Self {
        Completion {
            callback: Some(Box::new(callback)),
        }
    }

    /// Calls the callback with `result`. A panic in it is caught: it must not take the driver
    /// thread, and every other caller, down with it.
    pub(crate) fn complete(mut self, result: Result<ProbeResult, Error>) {
        if let Some(callback) = self.callback.take() {
            let _ = catch_unwind(AssertUnwindSafe(|| callback(result)));
        }
    }

    /// Drops the callback without calling it: the probe was not accepted, and the caller
    /// gets the error as a return value instead.
    pub(crate) fn cancel(mut self) {
        self.callback = None;
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        if let Some(callback) = self.callback.take() {
            let gone = ProcessError::Exited { status: None }.into();
            let _ = catch_unwind(AssertUnwindSafe(|| callback(Err(gone))));
        }
    }
}
