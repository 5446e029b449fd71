//! mtr's report forms of a [`TraceStats`]: the text of `mtr --report`, a wide form with every
//! responder and MPLS label, and (with the `serde` feature) the JSON of `mtr --json`.

use std::fmt::Write as _;
use std::net::IpAddr;

use crate::measurement::stats::{Hop, TraceStats};

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

/// The hops a report shows: [`TraceStats::hops`] from the first TTL probed, as mtr's reports
/// start at `net_min` (its `-f`): a trace started past TTL 1 has no line for the TTLs below,
/// which it never probed.
fn shown(stats: &TraceStats) -> &[Hop] {
    let hops = stats.hops();
    let unprobed = |hop: &Hop| hop.sent() == 0 && hop.received() == 0 && hop.errors().is_empty();
    let first = hops.iter().take_while(|hop| unprobed(hop)).count();
    &hops[first..]
}

/// The host column of the plain report (`len_hosts` in mtr's `report_close`).
const LABEL: usize = 33;

/// mtr keeps at most this many responders per hop (`MAX_PATH` in `ui/mtr.h`).
const MAX_PATH: usize = 8;

/// mtr's default report fields (`LS NABWV`): title and column width, from `data_fields` in
/// `ui/mtr.c`.
const FIELDS: [(&str, usize); 8] = [
    ("Loss%", 6),
    ("Snt", 6),
    (" ", 1),
    ("Last", 6),
    ("Avg", 6),
    ("Best", 6),
    ("Wrst", 6),
    ("StDev", 6),
];

/// One report line built as mtr builds it: each field is printed at its column, over
/// whatever the previous field wrote past it (`snprintf(buf + len, ...)` then
/// `len += width`). So `100.0%` loses its `%` to the next field and ` 2345.7` is cut to
/// ` 2345.`; the last field is printed whole.
struct Columns {
    line: Vec<u8>,
    at: usize,
}

impl Columns {
    fn new(start: String, at: usize) -> Columns {
        Columns {
            line: start.into_bytes(),
            at,
        }
    }

    fn put(&mut self, text: &str, width: usize) {
        self.line.truncate(self.at);
        self.line.resize(self.at, b' ');
        self.line.extend_from_slice(text.as_bytes());
        self.at += width;
    }

    fn end(self, out: &mut String) {
        out.push_str(&String::from_utf8_lossy(&self.line));
        out.push('\n');
    }
}

/// The text of `mtr --report -n`, byte for byte, without its `Start:` line.
///
/// ```text
/// HOST: vm                          Loss%   Snt   Last   Avg  Best  Wrst StDev
///   1.|-- 198.18.1.1                 0.0%     3    0.1   0.1   0.0   0.1   0.0
///         198.18.1.9
///   2.|-- ???                       100.0     3    0.0   0.0   0.0   0.0   0.0
/// ```
///
/// A silent hop shows `???`; a hop's other responders follow it on their own lines (padded
/// to the host column, as mtr pads them). The report starts at the first TTL probed, as
/// mtr's starts at its `-f`. With `wide`, the host column fits the longest name
/// as in `mtr --report-wide`, and lines starting with `    |` are added after each hop: every
/// responder with its count and the MPLS label stack of its first answer, then the hop's
/// error outcomes. Without those added lines, the wide text is `mtr --report-wide -n`'s.
pub fn text_report(stats: &TraceStats, src: &str, wide: bool) -> String {
    text_report_named(stats, src, wide, &|address| address.to_string())
}

/// [`text_report`] with each responder shown as `host` names it: the text of `mtr --report`
/// when `host` gives what [`host_label`] makes of the responder's reverse-DNS name.
///
/// The lines the wide form adds (`    |  `|-- ...`) keep the bare addresses, as mtr's do.
///
/// ```
/// use mtrproto::{ProbeResult, TraceStats, host_label, text_report_named};
///
/// let mut stats = TraceStats::new("127.0.0.1".parse()?, 30);
/// stats.sent(1);
/// stats.record(1, &ProbeResult::from_reply(&mtrproto::Reply::parse(
///     "1 reply ip-4 127.0.0.1 round-trip-time 100",
/// )?));
/// let text = text_report_named(&stats, "vm", false, &|address| {
///     host_label(address, Some("localhost"), true)
/// });
/// assert!(text.contains("  1.|-- localhost (127.0.0.1)"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn text_report_named(
    stats: &TraceStats,
    src: &str,
    wide: bool,
    host: &dyn Fn(IpAddr) -> String,
) -> String {
    let hops = shown(stats);
    // Each hop's name asked once: a resolver may answer between two asks (another thread),
    // and a row wider than the column it sized would shift its figures.
    let labels: Vec<String> = hops.iter().map(|h| label(h, host)).collect();
    let hosts = if wide {
        labels
            .iter()
            .map(String::len)
            .chain([src.len()])
            .max()
            .unwrap_or(0)
    } else {
        LABEL
    };
    let mut out = String::new();
    let header = format!("HOST: {}", pad(src, hosts));
    let at = if wide { header.len() } else { hosts };
    let mut line = Columns::new(header, at);
    for (title, width) in FIELDS {
        line.put(&format!("{title:>width$}"), width);
    }
    line.end(&mut out);
    for (hop, name) in hops.iter().zip(&labels) {
        let start = format!(" {:>2}.|-- {}", hop.ttl(), pad(name, hosts));
        let at = if wide { start.len() } else { hosts };
        let mut line = Columns::new(start, at);
        let values = [
            format!(" {:4.1}%", hop.loss_percent()),
            format!(" {:5}", hop.sent()),
            " ".to_owned(),
            format!(" {:5.1}", ms(hop.last_us())),
            format!(" {:5.1}", ms(hop.avg_us())),
            format!(" {:5.1}", ms(hop.best_us())),
            format!(" {:5.1}", ms(hop.worst_us())),
            format!(" {:5.1}", ms(hop.stdev_us())),
        ];
        for (value, (_, width)) in values.iter().zip(FIELDS) {
            line.put(value, width);
        }
        line.end(&mut out);
        for other in hop.responders().take(MAX_PATH) {
            if Some(other.address) != hop.host() {
                let _ = writeln!(out, "        {}", pad(&host(other.address), hosts));
            }
        }
        if wide {
            push_details(&mut out, hop);
        }
    }
    out
}

/// Every responder of the hop with its count and MPLS stack, then the error outcomes.
fn push_details(out: &mut String, hop: &Hop) {
    for responder in hop.responders() {
        let _ = writeln!(
            out,
            "    |  `|-- {} ({} answers)",
            responder.address, responder.count
        );
        for entry in responder.mpls.iter() {
            let _ = writeln!(
                out,
                "    |   +-- [MPLS: Lbl {} TC {} S {} TTL {}]",
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

/// How mtr's report shows a responder (`snprint_addr` in mtr 0.95's `ui/report.c`): its
/// reverse-DNS `name` if it has one, followed by the address in parentheses with
/// `show_ips` (`mtr -b`); the address alone without a name, or under `mtr -n` (pass `None`).
///
/// ```
/// use mtrproto::host_label;
///
/// let address = "192.0.2.1".parse()?;
/// assert_eq!(host_label(address, Some("gw.example"), false), "gw.example");
/// assert_eq!(host_label(address, Some("gw.example"), true), "gw.example (192.0.2.1)");
/// assert_eq!(host_label(address, None, true), "192.0.2.1");
/// # Ok::<(), std::net::AddrParseError>(())
/// ```
pub fn host_label(address: IpAddr, name: Option<&str>, show_ips: bool) -> String {
    match name {
        Some(name) if show_ips => format!("{name} ({address})"),
        Some(name) => name.to_owned(),
        None => address.to_string(),
    }
}

/// `text` with spaces after it up to `width` bytes, as C's `%-*s` pads it: mtr counts a
/// name's bytes, not its characters.
fn pad(text: &str, width: usize) -> String {
    format!("{text}{:1$}", "", width.saturating_sub(text.len()))
}

/// The hop's host column: its latest responder as `host` names it, `???` for none.
fn label(hop: &Hop, host: &dyn Fn(IpAddr) -> String) -> String {
    hop.host().map_or_else(|| "???".to_owned(), host)
}

#[cfg(feature = "serde")]
pub use self::json::{JsonFlow, JsonHub, JsonMpls, JsonReport, JsonResponder};

#[cfg(feature = "serde")]
mod json {
    use serde::Serialize;

    use std::net::IpAddr;

    use super::{ReportMeta, label, ms, shown};
    use crate::measurement::stats::TraceStats;

    /// `mtr --json`'s document: `{"report": {"mtr": {...}, "hubs": [...]}}`; with
    /// [`JsonReport::flows`], also `"flows": [{"flow": 0, "hubs": [...]}, ...]` next to the
    /// hubs (mtr has no flows, so without them the document is mtr's).
    #[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
    #[derive(Debug, Clone, Serialize)]
    pub struct JsonReport {
        report: Body,
    }

    #[derive(Debug, Clone, Serialize)]
    struct Body {
        mtr: ReportMeta,
        hubs: Vec<JsonHub>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        flows: Vec<JsonFlow>,
        /// Whether hubs are in the extended form, for the flows' hubs.
        #[serde(skip)]
        extended: bool,
    }

    /// One fixed flow's figures ([`TraceConfig::flows`](crate::TraceConfig::flows)): the
    /// path it took, as hubs of the report's form.
    #[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
    #[derive(Debug, Clone, Serialize)]
    pub struct JsonFlow {
        /// The flow's identifier ([`Flow::id`](crate::Flow::id)).
        pub flow: u16,
        /// Its hops, with the keys and the form of the report's.
        pub hubs: Vec<JsonHub>,
    }

    /// One hop, with the keys of `mtr --json` (times in ms), and in the extended form every
    /// responder with its MPLS stack and the error outcomes.
    ///
    /// The mtr form has mtr's values: it dumps them with 5 significant digits
    /// (`JSON_REAL_PRECISION(5)`), so a Wrst of 150001 µs is `150.0`. The extended form keeps
    /// every microsecond (`150.001`).
    #[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
    #[derive(Debug, Clone, Serialize)]
    #[allow(non_snake_case)]
    pub struct JsonHub {
        /// The TTL.
        pub count: u8,
        /// The latest responder (its address, or its name as the report names responders), or
        /// `???`.
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
    #[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
    #[derive(Debug, Clone, Serialize)]
    pub struct JsonResponder {
        /// Its address, or its name as the report names responders.
        pub host: String,
        /// Answers from it.
        pub count: u64,
        /// The MPLS label stack of its first answer.
        pub mpls: Vec<JsonMpls>,
    }

    /// One MPLS label stack entry (extended form).
    #[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
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

    /// `value` to 5 significant digits, as jansson prints it (`%.5g`, ties to even).
    fn significant(value: f64) -> f64 {
        format!("{value:.4e}").parse().unwrap_or(value)
    }

    impl JsonReport {
        /// The report; `extended` adds responders, MPLS stacks and errors to every hub and
        /// keeps times to the microsecond.
        pub fn new(stats: &TraceStats, meta: ReportMeta, extended: bool) -> JsonReport {
            JsonReport::named(stats, meta, extended, &|address| address.to_string())
        }

        /// [`JsonReport::new`] with each responder's `host` as `host` names it: mtr's
        /// `--json` without `-n` when `host` gives [`host_label`](crate::host_label)'s text.
        pub fn named(
            stats: &TraceStats,
            meta: ReportMeta,
            extended: bool,
            host: &dyn Fn(IpAddr) -> String,
        ) -> JsonReport {
            JsonReport {
                report: Body {
                    mtr: meta,
                    hubs: hubs(stats, extended, host),
                    flows: Vec::new(),
                    extended,
                },
            }
        }

        /// The report with each fixed flow's hubs next to its own, flow `i` from
        /// `flows[i]` (as [`Tracer::flow_stats`](crate::Tracer::flow_stats) gives them),
        /// in the report's form, responders named by `host`. No `flows` key when `flows`
        /// is empty.
        ///
        /// ```
        /// use mtrproto::{JsonReport, ProbeResult, Reply, ReportMeta, TraceStats};
        /// let mut trace = TraceStats::new("127.0.0.1".parse()?, 30);
        /// trace.sent(1);
        /// let reply = Reply::parse("1 reply ip-4 127.0.0.1 round-trip-time 120")?;
        /// trace.record(1, &ProbeResult::from_reply(&reply));
        /// let meta = ReportMeta {
        ///     src: "here".into(),
        ///     dst: "127.0.0.1".into(),
        ///     tos: 0,
        ///     tests: 1,
        ///     psize: "64".into(),
        ///     bitpattern: "0x00".into(),
        /// };
        /// let report = JsonReport::new(&trace, meta, false)
        ///     .flows(&[trace.clone()], &|address| address.to_string());
        /// let json = serde_json::to_value(&report)?;
        /// assert_eq!(json["report"]["flows"][0]["hubs"][0]["host"], "127.0.0.1");
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
        pub fn flows(mut self, flows: &[TraceStats], host: &dyn Fn(IpAddr) -> String) -> Self {
            let extended = self.report.extended;
            self.report.flows = (0..=u16::MAX)
                .zip(flows)
                .map(|(flow, stats)| JsonFlow {
                    flow,
                    hubs: hubs(stats, extended, host),
                })
                .collect();
            self
        }
    }

    /// The hubs of `stats`, in the extended form if `extended`.
    fn hubs(stats: &TraceStats, extended: bool, host: &dyn Fn(IpAddr) -> String) -> Vec<JsonHub> {
        let real = |value: f64| {
            if extended { value } else { significant(value) }
        };
        shown(stats)
            .iter()
            .map(|hop| JsonHub {
                count: hop.ttl(),
                host: label(hop, host),
                loss: real(hop.loss_percent()),
                Snt: hop.sent(),
                Last: real(ms(hop.last_us())),
                Avg: real(ms(hop.avg_us())),
                Best: real(ms(hop.best_us())),
                Wrst: real(ms(hop.worst_us())),
                StDev: real(ms(hop.stdev_us())),
                responders: extended.then(|| {
                    hop.responders()
                        .map(|r| JsonResponder {
                            host: host(r.address),
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
            .collect()
    }
}
