//! Multipath traces: every path to one target ([`mtrproto::MultipathTracer`], MDA over
//! fixed UDP flows) on the caller's thread, over a session.

use std::time::{Duration, Instant};

use crossbeam_channel::RecvTimeoutError;
use mtrproto::{Flow, MultipathConfig, MultipathReport, MultipathTracer, ProbeId, Protocol};

use crate::error::Error;
use crate::options::ProbeOptions;
use crate::session::{IfCheckGone, Session};

/// How to trace every path to a target: MDA's settings ([`MultipathConfig`]) and the
/// probes' own ([`ProbeOptions`]: IP version, size, source...). The probes are UDP in fixed
/// flows: `protocol` UDP is used whatever it says, and `port`, `local_port`, `flow`, `ttl`
/// and `timeout` are set by the trace.
///
/// ```
/// use mtrproto_blocking::{Confidence, MultipathConfig, MultipathOptions};
/// let options = MultipathOptions {
///     trace: MultipathConfig { confidence: Confidence::P99, max_ttl: 16, ..MultipathConfig::default() },
///     ..MultipathOptions::default()
/// };
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MultipathOptions {
    /// MDA's settings: confidence, TTLs, budget, window, gap, timeout.
    pub trace: MultipathConfig,
    /// The probes' options.
    pub probe: ProbeOptions,
}

impl Session {
    /// Finds every path to `host` through load balancers, with the Multipath Detection
    /// Algorithm over fixed UDP flows (see [`MultipathTracer`]), and returns what it found
    /// once the trace ends: per TTL the interfaces and how many flows reached each, the
    /// links, the probes used.
    ///
    /// Fails at once if the helper's release cannot answer UDP probes with fixed ports
    /// for this address family ([`Error::Unsupported`], naming the release needed: 0.93
    /// for IPv4, 0.96 for IPv6), or if the session is closed; fails with
    /// [`Error::Refused`] when the helper refuses one of its probes, as mtr stops then,
    /// once its probes still out are answered (each waited for at most the trace's timeout,
    /// in whole seconds as sent, and a second), so that they hold no window slot a later run
    /// needs.
    ///
    /// ```no_run
    /// use mtrproto_blocking::{MultipathOptions, Session};
    /// let session = Session::open()?;
    /// let report = session.multipath("127.0.0.1", &MultipathOptions::default())?;
    /// assert_eq!(report.hops[0].responders[0].address, "127.0.0.1".parse::<std::net::IpAddr>().unwrap());
    /// # Ok::<(), mtrproto_blocking::Error>(())
    /// ```
    pub fn multipath(
        &self,
        host: &str,
        options: &MultipathOptions,
    ) -> Result<MultipathReport, Error> {
        match self.multipath_partial(host, options)? {
            (_, Some(refused)) => Err(refused),
            (report, None) => Ok(report),
        }
    }

    /// [`Session::multipath`], keeping what the trace found when the helper refused one of
    /// its probes: the report as of then (its `end` [`MultipathEnd::Refused`](mtrproto::MultipathEnd::Refused), the probes
    /// sent, the TTLs probed; not a path to trust) with the [`Error::Refused`]. For callers
    /// that show partial results, such as `paths --json`. Fails as `multipath` does when
    /// the trace cannot start or the session closes.
    ///
    /// ```no_run
    /// use mtrproto_blocking::{MultipathOptions, Session};
    /// let session = Session::open()?;
    /// let (report, refused) = session.multipath_partial("127.0.0.1", &MultipathOptions::default())?;
    /// if let Some(error) = refused {
    ///     eprintln!("{error} after {} probes", report.probes);
    /// }
    /// # Ok::<(), mtrproto_blocking::Error>(())
    /// ```
    pub fn multipath_partial(
        &self,
        host: &str,
        options: &MultipathOptions,
    ) -> Result<(MultipathReport, Option<Error>), Error> {
        self.check_waitable()?;
        // The release check sees the flows' two ports; the tracer sets them per probe.
        let probe = ProbeOptions {
            protocol: Protocol::Udp,
            port: None,
            local_port: None,
            flow: Some(Flow::new(0)?),
            ttl: None,
            ..options.probe.clone()
        };
        let args = self.probe_args(host.into(), &probe, IfCheckGone::Proceed)?;
        // The timeout each probe carries on the wire: whole seconds, rounded up.
        let on_wire = args
            .clone()
            .timeout(options.trace.timeout)
            .map_or(options.trace.timeout, |a| a.effective_timeout());
        let mut tracer = MultipathTracer::new(args, &options.trace, Instant::now())?;
        // Each probe's callback sends once, on the driver thread, which must never wait on
        // a full channel: more than a window of answers can be due at once (the tracer
        // gives a probe up before the driver does), so the channel is unbounded, and holds
        // at most one answer per probe sent, which the tracer's budget bounds.
        let (sender, answers) = crossbeam_channel::unbounded();
        // Probes the driver took whose answers have not come back.
        let mut out = 0usize;
        loop {
            let now = Instant::now();
            let mut sent = false;
            while let Some(probe) = tracer.poll_probe(now) {
                let id: ProbeId = probe.id();
                let sender = sender.clone();
                let result = self.send_args_unwoken(probe.into_args(), move |result| {
                    let _ = sender.send((id, result));
                });
                match result {
                    Ok(()) => {
                        sent = true;
                        out += 1;
                    }
                    Err(error @ Error::State(_)) => {
                        // The probes of this batch already accepted still go out.
                        if sent {
                            self.wake_driver();
                        }
                        return Err(error);
                    }
                    Err(_) => tracer.handle_lost(now, id),
                }
            }
            if sent {
                self.wake_driver();
            }
            let Some(deadline) = tracer.poll_timeout() else {
                break;
            };
            match answers.recv_deadline(deadline) {
                Ok(first) => {
                    // Every answer already in, then the probes they make due.
                    let now = Instant::now();
                    for (id, result) in std::iter::once(first).chain(answers.try_iter()) {
                        out = out.saturating_sub(1);
                        match result {
                            Ok(result) => tracer.handle_result(now, id, &result),
                            Err(_) => tracer.handle_lost(now, id),
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => tracer.handle_timeout(Instant::now()),
                // The loop holds a sender: never disconnected.
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        // Its report would read as a path with the refused TTL silent: never without the
        // error.
        let refused = tracer.refused().map(|(ttl, reply)| Error::Refused {
            reply: reply.clone(),
            ttl,
        });
        // At a refusal, the trace's other probes are still out, some maybe queued behind
        // the window, and would keep its slots after this returns: a run started next
        // would wait behind them while its clock ran. Waited for, each for at most its
        // timeout on the wire and a second after the last answer (the trace's own bound for
        // a lost probe); what they say changes nothing.
        let bound = on_wire.saturating_add(Duration::from_secs(1));
        while refused.is_some() && out > 0 && answers.recv_timeout(bound).is_ok() {
            out -= 1;
        }
        Ok((tracer.report(), refused))
    }
}
