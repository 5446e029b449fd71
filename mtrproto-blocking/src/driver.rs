//! The driver thread: one `mio::Poll` over every helper's pipes and a waker.
//!
//! It blocks in `poll` until a helper writes, a helper can take more input (interest in
//! writability is registered only while output is pending), a caller sends a command (the
//! waker), or the earliest deadline of the helpers' sessions. It never spins.
//!
//! With several helpers, each probe goes to the least loaded one. A helper that dies fails
//! only its own requests and is started again if it had been working; with one helper, its
//! death ends the session.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use mio::{Events, Poll, Token as PollToken, Waker};
use mtrproto::{Failure, Feature, ProbeArgs, SessionConfig};

use crate::error::ProcessError;
use crate::helper::{Completion, Helper};

/// The waker's poll token; helpers use `2 * slot` (stdout) and `2 * slot + 1` (stdin).
const WAKER: PollToken = PollToken(usize::MAX);

/// How long in-flight probes may take to finish when the session is closed or dropped.
pub(crate) const DEFAULT_CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Wakes the driver after a command is sent, once per batch: a caller wakes it only if no
/// wake-up is pending since the driver last drained its commands. This saves an eventfd
/// write and a poll round per probe when callers submit faster than the driver loops.
pub(crate) struct Wakeup {
    waker: Waker,
    pending: AtomicBool,
}

impl Wakeup {
    /// Called after sending a command.
    pub(crate) fn wake(&self) -> io::Result<()> {
        if self.pending.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        self.waker.wake()
    }

    /// Called by the driver before it drains the commands: any command sent after this
    /// wakes it again.
    fn rearm(&self) {
        self.pending.store(false, Ordering::Release);
    }
}

/// What callers ask of the driver.
pub(crate) enum Command {
    Probe {
        args: ProbeArgs,
        done: Completion,
    },
    Support {
        feature: Feature,
        done: Sender<Result<String, Failure>>,
    },
    /// Close the helpers' stdin once written, let in-flight requests finish, kill them
    /// after `grace`.
    Close {
        grace: Duration,
    },
}

/// The thread's state.
pub(crate) struct Driver {
    poll: Poll,
    helpers: Vec<Helper>,
    command: Vec<String>,
    config: SessionConfig,
    commands: Receiver<Command>,
    wakeup: Arc<Wakeup>,
    /// Set once closing: the helpers are killed then if they have not exited.
    kill_at: Option<Instant>,
}

impl Driver {
    /// Starts `count` helpers running `command`. Returns the driver, the wake-up callers use
    /// after sending a command, and the first helper's process id.
    pub(crate) fn start(
        command: Vec<String>,
        count: usize,
        config: SessionConfig,
        commands: Receiver<Command>,
    ) -> Result<(Driver, Arc<Wakeup>, u32), ProcessError> {
        let poll = Poll::new()?;
        let wakeup = Arc::new(Wakeup {
            waker: Waker::new(poll.registry(), WAKER)?,
            pending: AtomicBool::new(false),
        });
        let mut helpers = Vec::with_capacity(count);
        for slot in 0..count.max(1) {
            match Helper::spawn(&command, config.clone(), poll.registry(), slot) {
                Ok(helper) => helpers.push(helper),
                Err(e) => {
                    for mut helper in helpers {
                        helper.kill();
                        helper.reap();
                    }
                    return Err(e);
                }
            }
        }
        let pid = helpers[0].pid();
        let driver = Driver {
            poll,
            helpers,
            command,
            config,
            commands,
            wakeup: Arc::clone(&wakeup),
            kill_at: None,
        };
        Ok((driver, wakeup, pid))
    }

    /// Runs until every helper's output has ended, then reaps them.
    pub(crate) fn run(mut self) {
        let mut events = Events::with_capacity(64);
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let now = Instant::now();
            self.take_commands(now);
            let kill = self.kill_at.is_some_and(|at| at <= now);
            let registry = self.poll.registry();
            for helper in &mut self.helpers {
                helper.handle_timeout(now);
                if kill {
                    helper.kill();
                }
                helper.flush(registry);
                if self.kill_at.is_some() && !helper.has_output() {
                    helper.close_stdin(registry);
                }
                helper.dispatch();
            }
            self.restart_dead();
            if self.helpers.iter().all(Helper::is_gone) {
                break;
            }
            let registry = self.poll.registry();
            for helper in &mut self.helpers {
                helper.update_interest(registry);
            }
            let deadline = self
                .helpers
                .iter()
                .filter_map(Helper::deadline)
                .chain(self.kill_at)
                .min();
            let timeout = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if let Err(e) = self.poll.poll(&mut events, timeout)
                && e.kind() != std::io::ErrorKind::Interrupted
            {
                // The poll itself failed: nothing can be driven any more.
                for helper in &mut self.helpers {
                    helper.kill();
                }
            }
            for event in &events {
                if let Some(helper) =
                    Helper::slot_of_stdout(event.token()).and_then(|s| self.helpers.get_mut(s))
                {
                    helper.read(&mut buf);
                }
            }
        }
        let registry = self.poll.registry();
        for helper in &mut self.helpers {
            helper.dispatch();
            helper.close_stdin(registry);
            helper.kill();
            helper.reap();
        }
    }

    /// Moves every queued command to a helper.
    fn take_commands(&mut self, now: Instant) {
        self.wakeup.rearm();
        loop {
            match self.commands.try_recv() {
                Ok(Command::Probe { args, done }) => match self.least_loaded() {
                    Some(helper) => helper.probe(now, args, done),
                    None => done(Err(ProcessError::Exited { status: None }.into())),
                },
                Ok(Command::Support { feature, done }) => match self.least_loaded() {
                    Some(helper) => helper.support(now, feature, done),
                    None => {
                        let _ = done.send(Err(Failure::HelperGone));
                    }
                },
                Ok(Command::Close { grace }) => self.begin_close(now, grace),
                // Every Session handle is gone: close as `close()` would.
                Err(TryRecvError::Disconnected) => {
                    self.begin_close(now, DEFAULT_CLOSE_GRACE);
                    return;
                }
                Err(TryRecvError::Empty) => return,
            }
        }
    }

    fn least_loaded(&mut self) -> Option<&mut Helper> {
        self.helpers
            .iter_mut()
            .filter(|h| !h.is_gone())
            .min_by_key(|h| h.load())
    }

    /// Starts closing: once what was sent is written, each helper's stdin closes so that it
    /// exits when its probes are answered; it is killed if it has not after `grace`.
    fn begin_close(&mut self, now: Instant, grace: Duration) {
        if self.kill_at.is_none() {
            self.kill_at = Some(
                now.checked_add(grace)
                    .unwrap_or(now + Duration::from_secs(86_400)),
            );
        }
    }

    /// Reaps helpers whose output ended and, with several helpers and not closing, starts
    /// again each that had been answering (one that never answered would only die again).
    fn restart_dead(&mut self) {
        let restart = self.helpers.len() > 1 && self.kill_at.is_none();
        let registry = self.poll.registry();
        for (slot, helper) in self.helpers.iter_mut().enumerate() {
            if !helper.is_gone() {
                continue;
            }
            helper.reap();
            if !(restart && helper.has_answered()) {
                continue;
            }
            helper.deregister(registry);
            if let Ok(fresh) = Helper::spawn(&self.command, self.config.clone(), registry, slot) {
                *helper = fresh;
            }
        }
    }
}
