//! The driver thread: one `mio::Poll` over the helper's pipes and a waker, running the
//! sans-IO session.
//!
//! It blocks in `poll` until the helper writes, the helper can take more input (interest in
//! writability is registered only while output is pending), a caller sends a command (the
//! waker), or the session's next deadline. It never spins.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::process::{Child, ExitStatus};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use mio::unix::pipe;
use mio::{Events, Interest, Poll, Token as PollToken, Waker};
use mtrproto::{
    Event, Failure, Feature, ProbeArgs, ProbeResult, SendError, Session, SessionConfig, Token,
};

use crate::error::{Error, ProcessError};

const STDOUT: PollToken = PollToken(0);
const STDIN: PollToken = PollToken(1);
const WAKER: PollToken = PollToken(2);

/// How long in-flight probes may take to finish when the session is closed or dropped.
pub(crate) const DEFAULT_CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Called once with a probe's result, on the driver thread: it must not block.
pub(crate) type Completion = Box<dyn FnOnce(Result<ProbeResult, Error>) + Send>;

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
    /// Close the helper's stdin, let in-flight requests finish, kill it after `grace`.
    Close {
        grace: Duration,
    },
}

enum Waiter {
    Probe(Completion),
    Support(Sender<Result<String, Failure>>),
}

/// The helper process and its pipes, ready for the driver.
pub(crate) struct Helper {
    pub(crate) child: Child,
    pub(crate) stdin: pipe::Sender,
    pub(crate) stdout: pipe::Receiver,
}

/// The thread's state.
pub(crate) struct Driver {
    poll: Poll,
    session: Session,
    child: Child,
    stdin: Option<pipe::Sender>,
    stdin_registered: bool,
    stdout: pipe::Receiver,
    commands: Receiver<Command>,
    waiting: HashMap<Token, Waiter>,
    /// Set once closing: stdin closes as soon as what was sent is written; the helper is
    /// killed if it has not exited by then.
    kill_at: Option<Instant>,
    status: Option<ExitStatus>,
}

impl Driver {
    /// Sets up the poll; the waker it returns wakes the driver after a command is sent.
    pub(crate) fn new(
        helper: Helper,
        config: SessionConfig,
        commands: Receiver<Command>,
    ) -> io::Result<(Driver, Arc<Waker>)> {
        let poll = Poll::new()?;
        let Helper {
            child,
            stdin,
            mut stdout,
        } = helper;
        poll.registry()
            .register(&mut stdout, STDOUT, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let driver = Driver {
            poll,
            session: Session::new(config),
            child,
            stdin: Some(stdin),
            stdin_registered: false,
            stdout,
            commands,
            waiting: HashMap::new(),
            kill_at: None,
            status: None,
        };
        Ok((driver, waker))
    }

    /// Runs until the helper's output ends, then reaps it.
    pub(crate) fn run(mut self) {
        let mut events = Events::with_capacity(16);
        let mut buf = vec![0u8; 64 * 1024];
        while !self.session.is_closed() {
            let now = Instant::now();
            self.take_commands(now);
            self.session.handle_timeout(now);
            if self.kill_at.is_some_and(|at| at <= now) {
                self.kill();
            }
            self.flush();
            if self.kill_at.is_some() && self.session.poll_transmit().is_none() {
                self.close_stdin();
            }
            self.dispatch();
            if self.session.is_closed() {
                break;
            }
            if let Err(e) = self.update_interest() {
                self.fail(e);
                continue;
            }
            let deadline = [self.session.poll_timeout(), self.kill_at]
                .into_iter()
                .flatten()
                .min();
            let timeout = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.fail(e);
                    continue;
                }
            }
            if events.iter().any(|e| e.token() == STDOUT) {
                self.read(&mut buf);
            }
        }
        self.dispatch();
        self.stdin = None;
        self.kill();
        self.reap();
    }

    /// Moves every queued command into the session.
    fn take_commands(&mut self, now: Instant) {
        loop {
            match self.commands.try_recv() {
                Ok(Command::Probe { args, done }) => match self.session.send_probe(now, args) {
                    Ok(token) => {
                        self.waiting.insert(token, Waiter::Probe(done));
                    }
                    Err(e) => done(Err(self.send_error(e))),
                },
                Ok(Command::Support { feature, done }) => {
                    match self.session.check_support(now, feature) {
                        Ok(token) => {
                            self.waiting.insert(token, Waiter::Support(done));
                        }
                        Err(_) => {
                            let _ = done.send(Err(Failure::HelperGone));
                        }
                    }
                }
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

    /// Starts closing: once what was sent is written, the helper's stdin closes so that it
    /// exits when its probes are answered; it is killed if it has not after `grace`.
    fn begin_close(&mut self, now: Instant, grace: Duration) {
        if self.kill_at.is_none() {
            self.kill_at = Some(now + grace);
        }
    }

    fn send_error(&mut self, error: SendError) -> Error {
        match error {
            SendError::QueueFull(n) => Error::QueueFull(n),
            _ => self.exited(),
        }
    }

    /// Writes pending bytes until the pipe is full.
    fn flush(&mut self) {
        let Some(stdin) = &mut self.stdin else {
            return;
        };
        while let Some(bytes) = self.session.poll_transmit() {
            match stdin.write(bytes) {
                Ok(n) => self.session.consume(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // The helper closed its stdin (it died): its output's end completes everything.
                Err(_) => {
                    self.close_stdin();
                    return;
                }
            }
        }
    }

    /// Reads until the pipe is empty or ends.
    fn read(&mut self, buf: &mut [u8]) {
        loop {
            match self.stdout.read(buf) {
                Ok(0) => {
                    self.status = self.child.try_wait().ok().flatten();
                    self.session.handle_eof(Instant::now());
                    return;
                }
                Ok(n) => self.session.handle_input(Instant::now(), &buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.fail(e),
            }
        }
    }

    /// Hands finished requests to their callers.
    fn dispatch(&mut self) {
        while let Some(event) = self.session.poll_event() {
            match event {
                Event::Probe { token, outcome } => {
                    if let Some(Waiter::Probe(done)) = self.waiting.remove(&token) {
                        let outcome = outcome.map_err(|f| self.failure(f));
                        done(outcome);
                    }
                }
                Event::Support { token, outcome, .. } => {
                    if let Some(Waiter::Support(done)) = self.waiting.remove(&token) {
                        let _ = done.send(outcome);
                    }
                }
                // Counted by the session; a line for no request changes no caller's result.
                _ => {}
            }
        }
    }

    fn failure(&self, failure: Failure) -> Error {
        match failure {
            Failure::Unanswered => ProcessError::Unresponsive.into(),
            _ => self.exited(),
        }
    }

    fn exited(&self) -> Error {
        ProcessError::Exited {
            status: self.status,
        }
        .into()
    }

    /// Registers interest in writability exactly while output is pending.
    fn update_interest(&mut self) -> io::Result<()> {
        let Some(stdin) = &mut self.stdin else {
            return Ok(());
        };
        let want = self.session.poll_transmit().is_some();
        if want && !self.stdin_registered {
            self.poll
                .registry()
                .register(stdin, STDIN, Interest::WRITABLE)?;
        } else if !want && self.stdin_registered {
            self.poll.registry().deregister(stdin)?;
        }
        self.stdin_registered = want;
        Ok(())
    }

    fn close_stdin(&mut self) {
        if let Some(mut stdin) = self.stdin.take()
            && self.stdin_registered
        {
            let _ = self.poll.registry().deregister(&mut stdin);
        }
        self.stdin_registered = false;
    }

    /// The driver cannot go on: end the helper, which completes every request.
    fn fail(&mut self, _error: io::Error) {
        self.kill();
        self.reap();
        self.session.handle_eof(Instant::now());
    }

    fn kill(&mut self) {
        if self.status.is_none() && matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
    }

    fn reap(&mut self) {
        if self.status.is_none() {
            self.status = self.child.wait().ok();
        }
    }
}
