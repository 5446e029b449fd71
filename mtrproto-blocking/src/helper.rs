//! One mtr-packet process as the driver sees it: its pipes, its sans-IO session, and the
//! callers waiting on it.

use std::io::{self, Read, Write};
use std::process::{Child, Command as Process, ExitStatus, Stdio};
use std::time::Instant;

use crossbeam_channel::Sender;
use mio::unix::pipe;
use mio::{Interest, Registry, Token as PollToken};
use mtrproto::{
    Event, Failure, Feature, ProbeArgs, ProbeResult, SendError, Session, SessionConfig, TokenMap,
};

use crate::error::{Error, ProcessError};

/// Called once with a probe's result, on the driver thread: it must not block.
pub(crate) type Completion = Box<dyn FnOnce(Result<ProbeResult, Error>) + Send>;

/// Who gets the answer to a request.
pub(crate) enum Waiter {
    Probe(Completion),
    Support(Sender<Result<String, Failure>>),
}

/// A running helper.
pub(crate) struct Helper {
    stdin_token: PollToken,
    child: Child,
    stdin: Option<pipe::Sender>,
    stdin_registered: bool,
    stdout: pipe::Receiver,
    session: Session,
    waiting: TokenMap<Waiter>,
    status: Option<ExitStatus>,
    /// Requests it answered: a helper that never answered is not restarted.
    answered: u64,
}

impl Helper {
    /// Starts `command` with piped, non-blocking stdin and stdout, and registers its stdout
    /// with `registry` under the poll tokens of slot `slot`.
    pub(crate) fn spawn(
        command: &[String],
        config: SessionConfig,
        registry: &Registry,
        slot: usize,
    ) -> Result<Helper, ProcessError> {
        let program = &command[0];
        let mut child = Process::new(program)
            .args(&command[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|source| match source.kind() {
                io::ErrorKind::NotFound => ProcessError::NotFound {
                    program: program.clone(),
                },
                _ => ProcessError::Spawn {
                    program: program.clone(),
                    source,
                },
            })?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(ProcessError::Io(io::Error::other("child has no pipes")));
        };
        let stdin = pipe::Sender::from(stdin);
        let mut stdout = pipe::Receiver::from(stdout);
        let ready = stdin
            .set_nonblocking(true)
            .and_then(|()| stdout.set_nonblocking(true))
            .and_then(|()| registry.register(&mut stdout, PollToken(2 * slot), Interest::READABLE));
        if let Err(e) = ready {
            let _ = child.kill();
            let _ = child.wait();
            return Err(ProcessError::Io(e));
        }
        Ok(Helper {
            stdin_token: PollToken(2 * slot + 1),
            child,
            stdin: Some(stdin),
            stdin_registered: false,
            stdout,
            session: Session::new(config),
            waiting: TokenMap::default(),
            status: None,
            answered: 0,
        })
    }

    /// The slot whose stdout a poll token stands for, if it is one.
    pub(crate) fn slot_of_stdout(token: PollToken) -> Option<usize> {
        token.0.is_multiple_of(2).then_some(token.0 / 2)
    }

    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Requests in flight or queued: what "least loaded" compares.
    pub(crate) fn load(&self) -> usize {
        self.session.in_flight() + self.session.queued()
    }

    /// Whether its output ended (it exited or was killed).
    pub(crate) fn is_gone(&self) -> bool {
        self.session.is_closed()
    }

    /// Whether it ever answered a request.
    pub(crate) fn has_answered(&self) -> bool {
        self.answered > 0
    }

    /// Whether requests wait to be written.
    pub(crate) fn has_output(&self) -> bool {
        self.session.poll_transmit().is_some()
    }

    /// The session's next deadline.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.session.poll_timeout()
    }

    pub(crate) fn probe(&mut self, now: Instant, args: ProbeArgs, done: Completion) {
        match self.session.send_probe(now, args) {
            Ok(token) => {
                self.waiting.insert(token, Waiter::Probe(done));
            }
            Err(SendError::QueueFull(n)) => done(Err(Error::QueueFull(n))),
            Err(_) => done(Err(self.exited())),
        }
    }

    pub(crate) fn support(
        &mut self,
        now: Instant,
        feature: Feature,
        done: Sender<Result<String, Failure>>,
    ) {
        match self.session.check_support(now, feature) {
            Ok(token) => {
                self.waiting.insert(token, Waiter::Support(done));
            }
            Err(_) => {
                let _ = done.send(Err(Failure::HelperGone));
            }
        }
    }

    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        self.session.handle_timeout(now);
    }

    /// Writes pending bytes until the pipe is full.
    pub(crate) fn flush(&mut self, registry: &Registry) {
        let Some(stdin) = &mut self.stdin else {
            return;
        };
        while let Some(bytes) = self.session.poll_transmit() {
            match stdin.write(bytes) {
                Ok(n) => self.session.consume(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // The helper closed its stdin (it died): its output's end completes everything.
                Err(_) => return self.close_stdin(registry),
            }
        }
    }

    /// Reads until the pipe is empty or ends.
    pub(crate) fn read(&mut self, buf: &mut [u8]) {
        loop {
            match self.stdout.read(buf) {
                Ok(0) => {
                    self.status = self.child.try_wait().ok().flatten();
                    return self.session.handle_eof(Instant::now());
                }
                Ok(n) => self.session.handle_input(Instant::now(), &buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.fail(),
            }
        }
    }

    /// Hands finished requests to their callers.
    pub(crate) fn dispatch(&mut self) {
        while let Some(event) = self.session.poll_event() {
            match event {
                Event::Probe { token, outcome } => {
                    if let Some(Waiter::Probe(done)) = self.waiting.remove(&token) {
                        self.answered += u64::from(outcome.is_ok());
                        let outcome = outcome.map_err(|f| self.failure(f));
                        done(outcome);
                    }
                }
                Event::Support { token, outcome, .. } => {
                    if let Some(Waiter::Support(done)) = self.waiting.remove(&token) {
                        self.answered += u64::from(outcome.is_ok());
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
    pub(crate) fn update_interest(&mut self, registry: &Registry) {
        let Some(stdin) = &mut self.stdin else {
            return;
        };
        let want = self.session.poll_transmit().is_some();
        let changed = if want && !self.stdin_registered {
            registry.register(stdin, self.stdin_token, Interest::WRITABLE)
        } else if !want && self.stdin_registered {
            registry.deregister(stdin)
        } else {
            Ok(())
        };
        match changed {
            Ok(()) => self.stdin_registered = want,
            Err(_) => self.fail(),
        }
    }

    /// Closes its stdin: mtr-packet then exits once its probes are answered.
    pub(crate) fn close_stdin(&mut self, registry: &Registry) {
        if let Some(mut stdin) = self.stdin.take()
            && self.stdin_registered
        {
            let _ = registry.deregister(&mut stdin);
        }
        self.stdin_registered = false;
    }

    /// Talking to it failed: end it, which completes every request.
    fn fail(&mut self) {
        self.kill();
        self.reap();
        self.session.handle_eof(Instant::now());
    }

    pub(crate) fn kill(&mut self) {
        if self.status.is_none() && matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
    }

    /// Waits for it to exit; call after its output ended or it was killed.
    pub(crate) fn reap(&mut self) {
        if self.status.is_none() {
            self.status = self.child.wait().ok();
        }
    }

    /// Unregisters its stdout, so that its slot can take a new helper.
    pub(crate) fn deregister(&mut self, registry: &Registry) {
        self.close_stdin(registry);
        let _ = registry.deregister(&mut self.stdout);
    }
}
