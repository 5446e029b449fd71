//! Trace statistics against sequences computed by hand with mtr 0.95's formulas, and the
//! report forms.

use std::net::IpAddr;

use mtrproto::{ProbeResult, Reply, TraceStats, text_report, text_report_named};

fn result(line: &str) -> ProbeResult {
    ProbeResult::from_reply(&Reply::parse(line).unwrap())
}

fn answer(stats: &mut TraceStats, ttl: u8, from: &str, rtt_us: u64) {
    stats.sent(ttl);
    let kind = if from.parse::<IpAddr>().unwrap() == stats.target() {
        "reply"
    } else {
        "ttl-expired"
    };
    let version = if from.contains(':') { 6 } else { 4 };
    stats.record(
        ttl,
        &result(&format!(
            "1 {kind} ip-{version} {from} round-trip-time {rtt_us}"
        )),
    );
}

fn target() -> IpAddr {
    "198.18.3.2".parse().unwrap()
}

#[test]
fn loss_excludes_the_probe_in_flight() {
    let mut stats = TraceStats::new(target(), 30);
    answer(&mut stats, 1, "198.18.3.2", 100);
    answer(&mut stats, 1, "198.18.3.2", 100);
    stats.sent(1);
    stats.record(1, &result("1 no-reply"));
    stats.sent(1); // still in flight
    let hop = &stats.hops()[0];
    assert_eq!((hop.sent(), hop.received(), hop.dropped()), (4, 2, 1));
    assert!(hop.in_flight());
    // 100 - 100 * 2 / 3, truncated to thousandths as mtr does.
    assert_eq!(hop.loss_percent(), 33.333);
}

#[test]
fn averages_stdev_and_gmean() {
    let mut stats = TraceStats::new(target(), 30);
    for rtt in [100, 200, 300] {
        answer(&mut stats, 1, "198.18.3.2", rtt);
    }
    let hop = &stats.hops()[0];
    // avg: 100, 150, 200. ssd: 0, 100*50 = 5000, 5000 + 150*100 = 20000.
    assert_eq!(hop.avg_us(), 200);
    // sqrt(20000 / 2)
    assert_eq!(hop.stdev_us(), 100);
    // sqrt(100*200) = 141; 141^(2/3) * 300^(1/3) = 181.3
    assert_eq!(hop.gmean_us(), 181);
    assert_eq!(
        (hop.best_us(), hop.worst_us(), hop.last_us()),
        (100, 300, 300)
    );
}

#[test]
fn jitter_figures() {
    let mut stats = TraceStats::new(target(), 30);
    for rtt in [100, 200, 300, 250] {
        answer(&mut stats, 1, "198.18.3.2", rtt);
    }
    let hop = &stats.hops()[0];
    // Jttr: 0, 100, 100, 50.
    assert_eq!(hop.jitter_us(), 50);
    assert_eq!(hop.jmax_us(), 100);
    // Javg (integer division): 0, 50, 50 + 50/3 = 66, 66 + (50-66)/4 = 66 - 4 = 62.
    assert_eq!(hop.javg_us(), 62);
    // Jint: 0, 100 - 0 = 100, 100 + 100 - 6 = 194, 194 + 50 - 12 = 232.
    assert_eq!(hop.jint_us(), 232);
}

#[test]
fn the_destination_ends_the_report_and_silent_hops_show() {
    let mut stats = TraceStats::new(target(), 30);
    answer(&mut stats, 1, "198.18.1.1", 100);
    stats.sent(2);
    stats.record(2, &result("1 no-reply"));
    answer(&mut stats, 3, "198.18.3.2", 300);
    answer(&mut stats, 4, "198.18.3.2", 300);
    stats.end_transit();
    assert_eq!(stats.hops().len(), 3);
    assert_eq!(stats.destination_ttl(), Some(3));
    assert_eq!(stats.hops()[1].host(), None);
    assert_eq!(stats.hops()[1].loss_percent(), 100.0);

    // Without the target, up to one past the last hop that answered.
    let mut partial = TraceStats::new(target(), 30);
    answer(&mut partial, 1, "198.18.1.1", 100);
    assert_eq!(partial.hops().len(), 2);
}

#[test]
fn a_transient_unreachable_does_not_end_the_path() {
    // mtr keeps only the latest answer's error per hop (`nh->err = err`).
    let mut stats = TraceStats::new(target(), 30);
    answer(&mut stats, 1, "198.18.1.1", 100);
    stats.sent(2);
    stats.record(2, &result("1 no-route ip-4 198.18.1.2 round-trip-time 275"));
    assert_eq!(stats.hops().len(), 2);
    answer(&mut stats, 2, "198.18.1.2", 200);
    answer(&mut stats, 3, "198.18.3.2", 300);
    assert_eq!(stats.hops().len(), 3);
    assert_eq!(stats.hops()[1].error(), None);
    // The outcome is still counted for the extended forms.
    assert_eq!(stats.hops()[1].errors()[0].1, 1);
    // An unreachable as the latest answer ends it again.
    stats.sent(2);
    stats.record(2, &result("1 no-route ip-4 198.18.1.2 round-trip-time 275"));
    assert_eq!(stats.hops().len(), 2);
}

#[test]
fn replies_mtr_ignores_leave_the_probe_in_transit() {
    let mut stats = TraceStats::new(target(), 30);
    answer(&mut stats, 1, "198.18.3.2", 100);
    stats.sent(1);
    stats.record(1, &result("1 no-reply"));
    assert!(stats.hops()[0].in_flight());
    // mtr reads only the address of the target's family.
    stats.sent(1);
    stats.record(1, &result("1 reply ip-6 ::1 round-trip-time 5"));
    assert_eq!(stats.hops()[0].received(), 1);
    // 1 of the 2 probes no longer in flight.
    assert_eq!(stats.hops()[0].loss_percent(), 50.0);
    // Before its report mtr ends every transit: 1 of 3 received.
    stats.end_transit();
    assert!(!stats.hops()[0].in_flight());
    assert_eq!(stats.hops()[0].loss_percent(), 66.666);
}

#[test]
fn an_unreachable_ends_the_path_and_is_counted() {
    let mut stats = TraceStats::new(target(), 30);
    answer(&mut stats, 1, "198.18.1.1", 100);
    stats.sent(2);
    stats.record(2, &result("1 no-route ip-4 198.18.1.2 round-trip-time 275"));
    stats.sent(3);
    stats.record(3, &result("1 no-route ip-4 198.18.1.2 round-trip-time 275"));
    assert_eq!(stats.hops().len(), 2);
    let hop = &stats.hops()[1];
    assert_eq!(hop.received(), 1);
    assert_eq!(hop.errors()[0].0.as_str(), "no-route");
}

#[test]
fn every_responder_and_its_mpls_stack_are_kept() {
    let mut stats = TraceStats::new(target(), 30);
    for (from, mpls) in [
        ("198.18.1.1", "16,0,0,1"),
        ("198.18.1.9", "17,5,1,2"),
        ("198.18.1.1", "18,0,1,1"),
    ] {
        stats.sent(1);
        stats.record(
            1,
            &result(&format!(
                "1 ttl-expired ip-4 {from} round-trip-time 5 mpls {mpls}"
            )),
        );
    }
    let responders: Vec<_> = stats.hops()[0].responders().collect();
    assert_eq!(responders.len(), 2);
    // mtr keeps each responder's first stack (`mplss` in net.c), not its latest.
    assert_eq!(
        (responders[0].count, responders[0].mpls[0].label()),
        (2, 16)
    );
    assert_eq!(
        (responders[1].count, responders[1].mpls[0].traffic_class()),
        (1, 5)
    );
    let wide = text_report(&stats, "client", true);
    // mtr 0.93 and later say TC (traffic class), not Exp.
    assert!(wide.contains("[MPLS: Lbl 16 TC 0 S 0 TTL 1]"), "{wide}");
    assert!(!wide.contains("Lbl 18"), "{wide}");
    assert!(wide.contains("198.18.1.9 (1 answers)"), "{wide}");
}

#[test]
fn the_text_report_has_mtrs_columns() {
    let mut stats = TraceStats::new("127.0.0.1".parse().unwrap(), 30);
    for rtt in [74, 44, 50] {
        answer(&mut stats, 1, "127.0.0.1", rtt);
    }
    // Laid out like `mtr --report -c 3 127.0.0.1` printed it on this machine.
    let want = "\
HOST: vm                          Loss%   Snt   Last   Avg  Best  Wrst StDev
  1.|-- 127.0.0.1                  0.0%     3    0.1   0.1   0.0   0.1   0.0
";
    assert_eq!(text_report(&stats, "vm", false), want);
}

/// The path of a run of Debian's `mtr --report -n -c 4 127.0.0.1` against a scripted
/// helper; its report is the expected text below.
fn scripted_run() -> TraceStats {
    let mut stats = TraceStats::new("127.0.0.1".parse().unwrap(), 30);
    for rtt in [2345678, 150001, 150001, 150001] {
        answer(&mut stats, 1, "10.0.0.1", rtt);
    }
    for k in 0..4 {
        stats.sent(2);
        let line = match k {
            0 => "1 ttl-expired ip-4 10.0.0.2 round-trip-time 1000 mpls 16,0,1,1",
            2 => "1 ttl-expired ip-4 10.0.0.4 round-trip-time 1000 mpls 16,2,1,1",
            _ => "1 no-reply",
        };
        stats.record(2, &result(line));
        stats.sent(3);
        stats.record(3, &result("1 no-reply"));
        answer(&mut stats, 4, "127.0.0.1", 500);
    }
    stats.sent(5);
    stats.end_transit();
    stats
}

#[test]
fn fields_sit_at_mtrs_columns_and_other_responders_follow() {
    // Printed by mtr 0.95: `100.0` loses its `%` to the Snt column, 2345.678 ms is cut to
    // `2345.`, the last column is whole, the other responder is padded to the host column.
    let want = "\
HOST: vm                          Loss%   Snt   Last   Avg  Best  Wrst StDev
  1.|-- 10.0.0.1                   0.0%     4  150.0 698.9 150.0 2345. 1097.8
  2.|-- 10.0.0.4                  50.0%     4    1.0   1.0   1.0   1.0   0.0
        10.0.0.2                         
  3.|-- ???                       100.0     4    0.0   0.0   0.0   0.0   0.0
  4.|-- 127.0.0.1                  0.0%     4    0.5   0.5   0.5   0.5   0.0
";
    assert_eq!(text_report(&scripted_run(), "vm", false), want);
}

#[test]
fn the_wide_report_has_mtrs_report_wide_rows() {
    // Printed by `mtr --report-wide -n` for the same run: the host column fits the longest
    // name, the header two columns short of the rows, as mtr lays it out.
    let wide = text_report(&scripted_run(), "vm", true);
    let mtr_lines: Vec<&str> = wide.lines().filter(|l| !l.starts_with("    |")).collect();
    assert_eq!(
        mtr_lines,
        [
            "HOST: vm        Loss%   Snt   Last   Avg  Best  Wrst StDev",
            "  1.|-- 10.0.0.1   0.0%     4  150.0 698.9 150.0 2345. 1097.8",
            "  2.|-- 10.0.0.4  50.0%     4    1.0   1.0   1.0   1.0   0.0",
            "        10.0.0.2 ",
            "  3.|-- ???       100.0     4    0.0   0.0   0.0   0.0   0.0",
            "  4.|-- 127.0.0.1  0.0%     4    0.5   0.5   0.5   0.5   0.0",
        ]
    );
    assert!(
        wide.contains(
            "    |  `|-- 10.0.0.2 (1 answers)\n    |   +-- [MPLS: Lbl 16 TC 0 S 1 TTL 1]\n"
        ),
        "{wide}"
    );
}

/// A trace started at TTL 3 (mtr's `-f 3`) reports from TTL 3, as mtr does: the TTLs below,
/// never probed, have no line (they showed as `???` with nothing sent) and no hub.
#[test]
fn a_report_starts_at_the_first_ttl_probed() {
    let mut stats = TraceStats::new(target(), 30);
    answer(&mut stats, 3, "198.18.3.1", 1000);
    answer(&mut stats, 4, "198.18.3.2", 500);
    stats.end_transit();
    assert_eq!(stats.hops().len(), 4);
    // Printed by `mtr --report -n -f 3` for such a run.
    assert_eq!(
        text_report(&stats, "vm", false),
        "HOST: vm                          Loss%   Snt   Last   Avg  Best  Wrst StDev\n\
         \x20 3.|-- 198.18.3.1                 0.0%     1    1.0   1.0   1.0   1.0   0.0\n\
         \x20 4.|-- 198.18.3.2                 0.0%     1    0.5   0.5   0.5   0.5   0.0\n"
    );
    #[cfg(feature = "serde")]
    {
        let meta = mtrproto::ReportMeta {
            src: "vm".into(),
            dst: "198.18.3.2".into(),
            tos: 0,
            tests: 1,
            psize: "64".into(),
            bitpattern: "0x00".into(),
        };
        let json = serde_json::to_value(mtrproto::JsonReport::new(&stats, meta, false)).unwrap();
        let counts: Vec<_> = json["report"]["hubs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|hub| hub["count"].as_u64().unwrap())
            .collect();
        assert_eq!(counts, [3, 4]);
    }
}

#[cfg(feature = "serde")]
#[test]
fn json_values_have_mtrs_precision_and_the_extended_form_keeps_microseconds() {
    let meta = mtrproto::ReportMeta {
        src: "vm".into(),
        dst: "127.0.0.1".into(),
        tos: 0,
        tests: 4,
        psize: "64".into(),
        bitpattern: "0x00".into(),
    };
    let stats = scripted_run();
    let mtr = serde_json::to_value(mtrproto::JsonReport::new(&stats, meta.clone(), false)).unwrap();
    // As mtr --json printed them: 5 significant digits.
    let hub = &mtr["report"]["hubs"][0];
    assert_eq!(
        [
            &hub["Last"],
            &hub["Avg"],
            &hub["Best"],
            &hub["Wrst"],
            &hub["StDev"]
        ],
        [150.0, 698.92, 150.0, 2345.7, 1097.8]
    );
    let extended = serde_json::to_value(mtrproto::JsonReport::new(&stats, meta, true)).unwrap();
    let hub = &extended["report"]["hubs"][0];
    assert_eq!(
        [&hub["Last"], &hub["Avg"], &hub["Wrst"]],
        [150.001, 698.92, 2345.678]
    );
}

#[cfg(feature = "serde")]
#[test]
fn json_has_the_keys_and_nesting_of_mtr_json() {
    let mut stats = TraceStats::new(target(), 30);
    answer(&mut stats, 1, "198.18.1.1", 1000);
    stats.sent(2);
    stats.record(2, &result("1 no-reply"));
    answer(&mut stats, 3, "198.18.3.2", 2500);
    stats.end_transit();
    let meta = mtrproto::ReportMeta {
        src: "client".into(),
        dst: "198.18.3.2".into(),
        tos: 0,
        tests: 1,
        psize: "64".into(),
        bitpattern: "0x00".into(),
    };
    let json =
        serde_json::to_string_pretty(&mtrproto::JsonReport::new(&stats, meta.clone(), false))
            .unwrap();
    assert_eq!(json.trim(), include_str!("data/report.json").trim());
    let extended = serde_json::to_value(mtrproto::JsonReport::new(&stats, meta, true)).unwrap();
    assert_eq!(
        extended["report"]["hubs"][0]["responders"][0]["host"],
        "198.18.1.1"
    );
}

/// Each fixed flow's hubs sit next to the report's, in its form, flow `i` from the `i`-th
/// figures; no flows, no key (the document stays mtr's).
#[cfg(feature = "serde")]
#[test]
fn json_flows_sit_next_to_the_hubs_in_the_reports_form() {
    let mut left = TraceStats::new(target(), 30);
    let mut right = TraceStats::new(target(), 30);
    answer(&mut left, 1, "198.18.1.1", 1000);
    answer(&mut right, 1, "198.18.1.2", 2345678);
    stats_to_target(&mut left);
    stats_to_target(&mut right);
    let meta = mtrproto::ReportMeta {
        src: "client".into(),
        dst: "198.18.3.2".into(),
        tos: 0,
        tests: 2,
        psize: "64".into(),
        bitpattern: "0x00".into(),
    };
    let name = |address: IpAddr| format!("<{address}>");
    let plain = mtrproto::JsonReport::named(&left, meta.clone(), false, &name);
    let without = serde_json::to_value(plain.clone().flows(&[], &name)).unwrap();
    assert_eq!(without, serde_json::to_value(&plain).unwrap());
    assert!(without["report"].get("flows").is_none(), "{without}");

    let flows = [left.clone(), right.clone()];
    let json = serde_json::to_value(plain.flows(&flows, &name)).unwrap();
    let report = &json["report"];
    assert_eq!(report["flows"].as_array().unwrap().len(), 2, "{json}");
    for (i, hosts) in [
        ["<198.18.1.1>", "<198.18.3.2>"],
        ["<198.18.1.2>", "<198.18.3.2>"],
    ]
    .iter()
    .enumerate()
    {
        let flow = &report["flows"][i];
        assert_eq!(flow["flow"], i, "{json}");
        let got: Vec<&str> = flow["hubs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|hub| hub["host"].as_str().unwrap())
            .collect();
        assert_eq!(got, hosts, "{json}");
        assert!(flow["hubs"][0].get("responders").is_none(), "{json}");
    }
    // mtr's 5 significant digits in the mtr form, every microsecond in the extended one.
    assert_eq!(report["flows"][1]["hubs"][0]["Last"], 2345.7);
    let extended = mtrproto::JsonReport::named(&left, meta, true, &name).flows(&flows, &name);
    let extended = serde_json::to_value(extended).unwrap();
    let hub = &extended["report"]["flows"][1]["hubs"][0];
    assert_eq!(hub["Last"], 2345.678);
    assert_eq!(hub["responders"][0]["host"], "<198.18.1.2>");
}

/// One answer from the target at TTL 2, every probe out of transit.
#[cfg(feature = "serde")]
fn stats_to_target(stats: &mut TraceStats) {
    answer(stats, 2, "198.18.3.2", 3000);
    stats.end_transit();
}

/// mtr 0.95 takes a negative `round-trip-time` (mtr-packet's clock stepped back) as it is:
/// the answer counts as received and its time enters every figure. Checked against
/// `mtr --report -n -c 4` driven by a helper answering 1000, -500, 3000 and 2000 µs:
/// `0.0%  4  2.0  1.4  -0.5  3.0  1.5`, and in `-o LSRDNBAWVGJMXI` a Gmean of -2147 (the
/// geometric mean of a negative time is NaN, which mtr's conversion to int makes INT_MIN),
/// Jttr 1.0, Javg 1.5, Jmax 3.5, Jint 5.6.
#[test]
fn a_negative_round_trip_time_counts_as_mtr_counts_it() {
    let mut stats = TraceStats::new(target(), 30);
    for rtt in ["1000", "-500", "3000", "2000"] {
        stats.sent(1);
        stats.record(
            1,
            &result(&format!("1 reply ip-4 198.18.3.2 round-trip-time {rtt}")),
        );
    }
    let hop = &stats.hops()[0];
    assert_eq!(
        (hop.sent(), hop.received(), hop.loss_percent()),
        (4, 4, 0.0)
    );
    assert_eq!(
        [hop.last_us(), hop.avg_us(), hop.best_us(), hop.worst_us()],
        [2000, 1374, -500, 3000]
    );
    // ssd: 0, 1500 * 750, + 2750 * 1834, + 834 * 626 = 6690584; sqrt(ssd / 3).
    assert_eq!(hop.stdev_us(), 1493);
    assert_eq!(hop.gmean_us(), i64::from(i32::MIN));
    assert_eq!(
        [hop.jitter_us(), hop.javg_us(), hop.jmax_us(), hop.jint_us()],
        [1000, 1500, 3500, 5599]
    );
    let report = text_report(&stats, "vm", false);
    assert!(
        report.ends_with(
            "  1.|-- 198.18.3.2                 0.0%     4    2.0   1.4  -0.5   3.0   1.5\n"
        ),
        "{report}"
    );
}

/// Round-trip times at and past the ends of a C `int`, with every figure as mtr 0.95 has it:
/// `strtol` into an `int` keeps the low 32 bits, `int` sums wrap, and a `double` out of
/// range (or NaN) becomes `INT_MIN` (`LLONG_MIN` for `ssd`), as on x86-64. The expected
/// figures come from `net_process_ping` and `net_stdev` of mtr 0.95's `ui/net.c` built with
/// gcc on x86-64, over 8 answers cycling through the times; `mtr --report` driven by a
/// helper answering these times shows the same (`Best 0.0` for the first, `StDev -2147`
/// for the second).
#[test]
fn round_trip_times_past_a_c_int_give_mtrs_figures() {
    // [last, best, worst, avg, stdev, gmean, jitter, javg, jmax, jint]
    let cases: [(&[&str], [i64; 10]); 4] = [
        (
            &["4294967297", "1000"],
            [1000, 1, 1000, 498, 534, 28, 999, 873, 999, 5810],
        ),
        (
            &["2147483648", "1000"],
            [
                1000,
                -2147483648,
                1000,
                -2147483648,
                -2147483648,
                -2147483648,
                2147482648,
                1879047315,
                2147482648,
                1813856712,
            ],
        ),
        (
            &["2147483647", "-2147483648"],
            [
                -2147483648,
                -2147483648,
                2147483647,
                2147483647,
                0,
                -2147483648,
                1,
                0,
                1,
                7,
            ],
        ),
        (
            &["2000000000", "-2000000000"],
            [
                -2000000000,
                -2000000000,
                2000000000,
                -2129048192,
                156430031,
                -2147483648,
                294967296,
                258096383,
                294967296,
                1715526149,
            ],
        ),
    ];
    for (rtts, expected) in cases {
        let mut stats = TraceStats::new(target(), 30);
        for rtt in rtts.iter().cycle().take(8) {
            stats.sent(1);
            stats.record(
                1,
                &result(&format!("1 reply ip-4 198.18.3.2 round-trip-time {rtt}")),
            );
        }
        let hop = &stats.hops()[0];
        let figures = [
            hop.last_us(),
            hop.best_us(),
            hop.worst_us(),
            hop.avg_us(),
            hop.stdev_us(),
            hop.gmean_us(),
            hop.jitter_us(),
            hop.javg_us(),
            hop.jmax_us(),
            hop.jint_us(),
        ];
        assert_eq!(figures, expected, "round-trip times {rtts:?}");
    }
}

#[test]
fn a_hop_keeps_a_bounded_list_of_responders_and_follows_the_latest() {
    // A hop answered from a new address every time (a helper or a network that floods
    // answers): the list stays bounded, as mtr's (`MAX_PATH`), instead of growing, and
    // searched, at every answer; the figures and the latest host still count every one.
    let mut stats = TraceStats::new(target(), 30);
    let answers = 5_000u32;
    for i in 0..answers {
        let from = std::net::Ipv4Addr::from(0xc612_0000 + i).to_string();
        answer(&mut stats, 1, &from, 100);
    }
    let hop = &stats.hops()[0];
    assert_eq!(hop.received(), u64::from(answers));
    let listed: Vec<_> = hop.responders().collect();
    assert_eq!(listed.len(), mtrproto::Hop::MAX_RESPONDERS);
    assert_eq!(listed[0].address, "198.18.0.0".parse::<IpAddr>().unwrap());
    assert!(listed.iter().all(|r| r.count == 1), "{listed:?}");
    let last = std::net::Ipv4Addr::from(0xc612_0000 + answers - 1);
    assert_eq!(hop.host(), Some(IpAddr::from(last)));
    // The target, unlisted too, is the hop's host: the path ends there, as in mtr.
    answer(&mut stats, 1, "198.18.3.2", 100);
    assert_eq!(stats.hops().len(), 1);
    assert_eq!(stats.hops()[0].host(), Some(target()));
    // A listed responder answering again is the host again.
    answer(&mut stats, 1, "198.18.0.1", 100);
    let hop = &stats.hops()[0];
    assert_eq!(hop.host(), Some("198.18.0.1".parse().unwrap()));
    assert_eq!(hop.responders().nth(1).map(|r| r.count), Some(2));
    assert_eq!(hop.received(), u64::from(answers) + 2);
}

#[test]
fn a_hop_keeps_a_bounded_list_of_reply_names_it_does_not_know() {
    // Every answer a name mtr-packet does not have: listed up to a bound, the rest only
    // counted as sent and unanswered; a known error is still listed and ends the path.
    let mut stats = TraceStats::new(target(), 30);
    for i in 0..5_000 {
        stats.sent(1);
        stats.record(1, &result(&format!("1 strange-answer-{i}")));
    }
    stats.sent(1);
    stats.record(1, &result("1 no-route ip-4 198.18.0.1 round-trip-time 100"));
    let hop = &stats.hops()[0];
    assert!(hop.errors().len() <= 9, "{} listed", hop.errors().len());
    assert_eq!(hop.error(), Some(&mtrproto::ReplyKind::NoRoute));
    assert_eq!(hop.sent(), 5_001);
    assert_eq!(stats.hops().len(), 1);
}

/// mtr pads the host column with `printf`'s `%-*s`, which counts bytes: a name that is not
/// ASCII (an `/etc/hosts` entry) takes its bytes' width, not its characters'.
#[test]
fn the_host_column_is_padded_in_bytes_as_mtr_pads_it() {
    // `café` is 5 bytes, `10.0.0.1` 8: mtr prints the row as it prints `10.0.0.1`'s, with
    // three more spaces after the name, in both layouts.
    let name = |address: IpAddr| match address.to_string().as_str() {
        "10.0.0.1" => "café".to_owned(),
        other => other.to_owned(),
    };
    for wide in [false, true] {
        let plain = text_report(&scripted_run(), "vm", wide);
        let named = text_report_named(&scripted_run(), "vm", wide, &name);
        assert_eq!(
            named,
            plain.replacen("10.0.0.1", "café   ", 1),
            "wide: {wide}"
        );
    }
}

/// A resolver answering from another thread may name a hop between the column's sizing and
/// the hop's row: the row must keep the column it sized (each name asked once).
#[test]
fn wide_rows_stay_aligned_when_a_name_arrives_while_printing() {
    let asked = std::cell::Cell::new(0);
    let name = |address: IpAddr| {
        if address.to_string() != "10.0.0.1" {
            return address.to_string();
        }
        asked.set(asked.get() + 1);
        if asked.get() == 1 {
            address.to_string()
        } else {
            "router-one.example.net".to_owned()
        }
    };
    // The first answer, the address, sizes the column and names the row.
    let text = text_report_named(&scripted_run(), "vm", true, &name);
    assert_eq!(text, text_report(&scripted_run(), "vm", true));
}
