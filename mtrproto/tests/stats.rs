//! Trace statistics against sequences computed by hand with mtr 0.95's formulas, and the
//! report forms.

use std::net::IpAddr;

use mtrproto::{ProbeResult, Reply, ReportMeta, TraceStats, text_report};

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
    let responders = stats.hops()[0].responders();
    assert_eq!(responders.len(), 2);
    assert_eq!(
        (responders[0].count, responders[0].mpls[0].label()),
        (2, 18)
    );
    assert_eq!(
        (responders[1].count, responders[1].mpls[0].traffic_class()),
        (1, 5)
    );
    let wide = text_report(&stats, "client", true);
    assert!(wide.contains("[MPLS: Lbl 18 Exp 0 S 1 TTL 1]"), "{wide}");
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

#[cfg(feature = "serde")]
#[test]
fn json_has_the_keys_and_nesting_of_mtr_json() {
    let mut stats = TraceStats::new(target(), 30);
    answer(&mut stats, 1, "198.18.1.1", 1000);
    stats.sent(2);
    stats.record(2, &result("1 no-reply"));
    answer(&mut stats, 3, "198.18.3.2", 2500);
    let meta = ReportMeta {
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
