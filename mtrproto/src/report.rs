//! mtr's report forms of a [`TraceStats`]: the text of `mtr --report`, a wide form with every
//! responder and MPLS label, and (with the `serde` feature) the JSON of `mtr --json`.

use std::fmt::Write as _;

use crate::stats::{Hop, TraceStats};

/// What the report header says about the run (`mtr --json`'s `"mtr"` object).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct ReportMeta {
    /// The local host name.
    pub src: String,
    /// The target as given.
    pub dst: String,
    /// The TOS byte.
    pub tos: u8,
    /// Cycles run.
    pub tests: u32,
    /// Packet size, as text (mtr allows `rand(...)`).
    pub psize: String,
    /// Payload pattern, as `0xNN`.
    pub bitpattern: String,
}

/// Milliseconds from whole microseconds, as mtr divides them (`/ 1000.0`).
fn ms(us: i64) -> f64 {
    us as f64 / 1000.0
}

/// The first column: mtr prints a 33-character label and lets the fields overwrite what
/// does not fit; the wide form widens it to the longest label instead.
const LABEL: usize = 33;

/// The text of `mtr --report` (without its `Start:` line).
///
/// ```text
/// HOST: vm                          Loss%   Snt   Last   Avg  Best  Wrst StDev
///   1.|-- 127.0.0.1                  0.0%     3    0.0   0.1   0.0   0.1   0.0
/// ```
///
/// A silent hop shows `???`. With `wide`, the label column grows to fit, and every further
/// responder of a hop and the MPLS labels each returned follow their hop, as
/// `mtr --report-wide --mpls` prints them.
pub fn text_report(stats: &TraceStats, src: &str, wide: bool) -> String {
    let hops = stats.hops();
    let labels: Vec<String> = hops
        .iter()
        .map(|h| format!(" {:>2}.|-- {}", h.ttl(), host(h)))
        .collect();
    let header = format!("HOST: {src}");
    let width = if wide {
        labels
            .iter()
            .map(String::len)
            .chain([header.len()])
            .max()
            .unwrap_or(LABEL)
            .max(LABEL)
    } else {
        LABEL
    };
    let mut out = String::new();
    push_label(&mut out, &header, width);
    out.push_str(" Loss%   Snt   Last   Avg  Best  Wrst StDev\n");
    for (hop, label) in hops.iter().zip(&labels) {
        push_label(&mut out, label, width);
        let _ = writeln!(
            out,
            " {:4.1}% {:5}  {:5.1} {:5.1} {:5.1} {:5.1} {:5.1}",
            hop.loss_percent(),
            hop.sent(),
            ms(hop.last_us()),
            ms(hop.avg_us()),
            ms(hop.best_us()),
            ms(hop.worst_us()),
            ms(hop.stdev_us()),
        );
        if wide {
            push_details(&mut out, hop);
        }
    }
    out
}

/// Pads or cuts `label` to `width` characters.
fn push_label(out: &mut String, label: &str, width: usize) {
    let cut: String = label.chars().take(width).collect();
    let _ = write!(out, "{cut:<width$}");
}

/// The MPLS stack of the hop's host, then every other responder with its own, after mtr's
/// `--mpls` layout, then the error outcomes.
fn push_details(out: &mut String, hop: &Hop) {
    let (shown, others): (Vec<_>, Vec<_>) = hop
        .responders()
        .iter()
        .partition(|r| Some(r.address) == hop.host());
    for responder in shown.into_iter().chain(others) {
        if Some(responder.address) != hop.host() {
            let _ = writeln!(
                out,
                "    |  `|-- {} ({} answers)",
                responder.address, responder.count
            );
        }
        for entry in &responder.mpls {
            let _ = writeln!(
                out,
                "    |   +-- [MPLS: Lbl {} Exp {} S {} TTL {}]",
                entry.label(),
                entry.traffic_class(),
                u8::from(entry.bottom_of_stack()),
                entry.ttl()
            );
        }
    }
    for (kind, count) in hop.errors() {
        let _ = writeln!(out, "    |   !-- {kind} x{count}");
    }
}

fn host(hop: &Hop) -> String {
    hop.host()
        .map_or_else(|| "???".to_owned(), |a| a.to_string())
}

#[cfg(feature = "serde")]
pub use self::json::{JsonHub, JsonMpls, JsonReport, JsonResponder};

#[cfg(feature = "serde")]
mod json {
    use serde::Serialize;

    use super::{ReportMeta, host, ms};
    use crate::stats::TraceStats;

    /// `mtr --json`'s document: `{"report": {"mtr": {...}, "hubs": [...]}}`.
    #[derive(Debug, Clone, Serialize)]
    pub struct JsonReport {
        report: Body,
    }

    #[derive(Debug, Clone, Serialize)]
    struct Body {
        mtr: ReportMeta,
        hubs: Vec<JsonHub>,
    }

    /// One hop, with the keys of `mtr --json` (times in ms), and in the extended form every
    /// responder with its MPLS stack and the error outcomes.
    #[derive(Debug, Clone, Serialize)]
    #[allow(non_snake_case)]
    pub struct JsonHub {
        /// The TTL.
        pub count: u8,
        /// The latest responder, or `???`.
        pub host: String,
        /// Loss%.
        #[serde(rename = "Loss%")]
        pub loss: f64,
        /// Snt.
        pub Snt: u64,
        /// Last, ms.
        pub Last: f64,
        /// Avg, ms.
        pub Avg: f64,
        /// Best, ms.
        pub Best: f64,
        /// Wrst, ms.
        pub Wrst: f64,
        /// StDev, ms.
        pub StDev: f64,
        /// Every responder (extended form only).
        #[serde(skip_serializing_if = "Option::is_none")]
        pub responders: Option<Vec<JsonResponder>>,
        /// Error outcomes by reply name (extended form only).
        #[serde(skip_serializing_if = "Option::is_none")]
        pub errors: Option<Vec<(String, u64)>>,
    }

    /// A responder of a hop (extended form).
    #[derive(Debug, Clone, Serialize)]
    pub struct JsonResponder {
        /// Its address.
        pub host: String,
        /// Answers from it.
        pub count: u64,
        /// Its latest MPLS label stack.
        pub mpls: Vec<JsonMpls>,
    }

    /// One MPLS label stack entry (extended form).
    #[derive(Debug, Clone, Serialize)]
    pub struct JsonMpls {
        /// Label.
        pub label: u32,
        /// Traffic class.
        pub traffic_class: u8,
        /// Bottom of stack.
        pub bottom_of_stack: bool,
        /// TTL.
        pub ttl: u8,
    }

    impl JsonReport {
        /// The report; `extended` adds responders, MPLS stacks and errors to every hub.
        pub fn new(stats: &TraceStats, meta: ReportMeta, extended: bool) -> JsonReport {
            let hubs = stats
                .hops()
                .iter()
                .map(|hop| JsonHub {
                    count: hop.ttl(),
                    host: host(hop),
                    loss: hop.loss_percent(),
                    Snt: hop.sent(),
                    Last: ms(hop.last_us()),
                    Avg: ms(hop.avg_us()),
                    Best: ms(hop.best_us()),
                    Wrst: ms(hop.worst_us()),
                    StDev: ms(hop.stdev_us()),
                    responders: extended.then(|| {
                        hop.responders()
                            .iter()
                            .map(|r| JsonResponder {
                                host: r.address.to_string(),
                                count: r.count,
                                mpls: r
                                    .mpls
                                    .iter()
                                    .map(|m| JsonMpls {
                                        label: m.label(),
                                        traffic_class: m.traffic_class(),
                                        bottom_of_stack: m.bottom_of_stack(),
                                        ttl: m.ttl(),
                                    })
                                    .collect(),
                            })
                            .collect()
                    }),
                    errors: extended.then(|| {
                        hop.errors()
                            .iter()
                            .map(|(k, n)| (k.to_string(), *n))
                            .collect()
                    }),
                })
                .collect();
            JsonReport {
                report: Body { mtr: meta, hubs },
            }
        }
    }
}
