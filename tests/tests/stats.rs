//! `monitor-ebpf/src/stats.rs` on the real kernel, through
//! BPF_PROG_TEST_RUN: the per-CPU counters the daemon reads add up to the
//! traffic sent, by verdict and reason, with the source events beside them.

mod common;

use common::{SEC, judge, load, pps, rule, udp};
use lab::packets::arp_request;
use monitor_common::reason::{Reason, Verdict};
use tollgate::policy::{Action, Policy};

#[test]
fn counters_add_up_to_the_traffic() {
    let mut tg = load(&Policy {
        default: pps(1, 2),
        rules: vec![rule("203.0.113.0/24", Action::Deny)],
        ..Policy::default()
    });
    let frames = [
        udp("192.0.2.50"),
        udp("203.0.113.1"),
        arp_request([1; 4], [2; 4]),
    ];
    let mut sent = 0u64;
    let mut bytes = 0u64;
    for i in 0..30 {
        let f = &frames[i % 3];
        judge(&mut tg, f, SEC);
        sent += 1;
        bytes += f.len() as u64;
    }
    let c = tg.maps.counters().unwrap();
    let pass = c.total(Verdict::Pass);
    let drop = c.total(Verdict::Drop);
    assert_eq!(pass.packets + drop.packets, sent);
    assert_eq!(pass.bytes + drop.bytes, bytes);
    assert_eq!(c.get(Reason::Pass, Verdict::Pass).packets, 2);
    assert_eq!(c.get(Reason::RateLimitedPackets, Verdict::Drop).packets, 8);
    assert_eq!(c.get(Reason::Deny, Verdict::Drop).packets, 10);
    assert_eq!(c.source_events[0], 2, "two sources created");
}
