//! What the driver tells callers about its helpers: process ids, how they exited, what they
//! said that answered nothing. Written by the driver thread, read by any.

use std::collections::VecDeque;
use std::process::ExitStatus;
use std::sync::{Mutex, MutexGuard};

/// How many diagnostics each helper keeps the text of; the rest are only counted.
pub(crate) const RECENT_DIAGNOSTICS: usize = 8;

/// The longest diagnostic text kept, in bytes.
pub(crate) const DIAGNOSTIC_TEXT: usize = 160;

/// One helper slot of a session, from [`Session::helpers`](crate::Session::helpers).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HelperStatus {
    /// The process id of the slot's current (or last) helper process.
    pub pid: u32,
    /// Whether that process is still the slot's working helper.
    pub running: bool,
    /// How the slot's last helper process to end exited, once reaped.
    pub last_exit: Option<ExitStatus>,
    /// How many times the slot's helper was started again after it ended.
    pub restarts: u32,
    /// Lines from the slot's current process that answered no request (counted from its
    /// start; a restart starts again from 0).
    pub diagnostics: u64,
    /// The last few of those lines, cut to a readable length, oldest first.
    pub recent_diagnostics: VecDeque<String>,
    /// What the slot's current process answered to `check-support feature version`, asked
    /// as its first request by the session when it starts a helper again; `None` for the
    /// processes started at open (their version is [`Session::version`]) and until the
    /// answer comes. The program may have changed since the session opened (another mtr
    /// build at the same path, an upgrade during a long campaign): the session keeps the
    /// release it looked up at open, so a version that differs from
    /// [`Session::version`] means: open a new session to use the new release's rules.
    ///
    /// [`Session::version`]: crate::Session::version
    pub version: Option<String>,
}

/// The state shared between the driver and the session.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    helpers: Mutex<Vec<HelperStatus>>,
    /// How the last helper to end exited: what later calls report.
    last_exit: Mutex<Option<ExitStatus>>,
}

impl Shared {
    pub(crate) fn helpers(&self) -> MutexGuard<'_, Vec<HelperStatus>> {
        // Plain data: consistent even if a holder panicked.
        self.helpers.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn last_exit(&self) -> Option<ExitStatus> {
        *self.last_exit.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn set_last_exit(&self, status: ExitStatus) {
        *self.last_exit.lock().unwrap_or_else(|e| e.into_inner()) = Some(status);
    }
}

/// `text` cut to at most `max` bytes at a character boundary, with `...` when cut.
pub(crate) fn cut(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes)", &text[..end], text.len())
}
