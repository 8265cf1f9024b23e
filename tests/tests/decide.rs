//! The decision pipeline (`monitor-ebpf/src/decide.rs`) on the real
//! kernel, through BPF_PROG_TEST_RUN with the replay clock: the decisions
//! it makes between the modules. The
//! malformed verdict (configurable, and never a way around a source's
//! limits), non-IP frames, monitor mode (passes what it would drop, bans
//! always enforced), and packets whose source the table could not take
//! (no buckets, but bans and deny rules hold), and the hot list when
//! full.

mod common;

use common::{SEC, judge, key, load, pps, report, rule, udp};
use lab::packets::arp_request;
use monitor_common::{
    maps::{MAX_HOT, signal},
    reason::{Reason, Verdict},
};
use tollgate::policy::{Action, Policy, PrefixLimit, WideLimit};

#[test]
fn malformed_verdict_is_configurable_and_still_source_limited() {
    let mut bad = udp("192.0.2.30");
    bad.truncate(14 + 20 + 4); // UDP header cut
    for (malformed, want) in [
        (tollgate::policy::Policy::default().malformed, "drop"),
        (Verdict::Pass, "pass"),
    ] {
        let mut tg = load(&Policy {
            default: pps(1, 3),
            malformed,
            ..Policy::default()
        });
        let got: Vec<_> = (0..5).map(|_| report(&mut tg, &bad, SEC)).collect();
        for r in &got[..3] {
            assert_eq!((r.verdict, r.reason), (Some(want), Some("malformed")));
        }
        // Past the burst, the source limit applies first: malformed
        // packets are not a way around the limits.
        for r in &got[3..] {
            assert_eq!(
                (r.verdict, r.reason),
                (Some("drop"), Some("rate_limited_packets"))
            );
        }
        let c = tg.maps.counters().unwrap();
        assert_eq!(
            c.malformed[monitor_common::reason::Malformed::Udp as usize].packets,
            5
        );
    }
}

#[test]
fn non_ip_passes_and_is_counted() {
    let mut tg = load(&Policy {
        default: pps(1, 1),
        ..Policy::default()
    });
    for i in 0..10 {
        let r = report(
            &mut tg,
            &arp_request([192, 0, 2, 1], [192, 0, 2, 2]),
            SEC + i,
        );
        assert_eq!((r.verdict, r.reason), (Some("pass"), Some("non_ip")));
    }
    let c = tg.maps.counters().unwrap();
    assert_eq!(c.get(Reason::NonIp, Verdict::Pass).packets, 10);
    assert_eq!(c.get(Reason::NonIp, Verdict::Pass).bytes, 10 * 42);
    assert_eq!(
        tg.maps.sources().unwrap().len(),
        0,
        "no source state for ARP"
    );
}

#[test]
fn monitor_mode_passes_what_it_would_drop_and_counts_it() {
    let mut deny = rule("198.51.100.0/24", Action::Deny);
    deny.monitor = true;
    let mut tg = load(&Policy {
        default: pps(1, 1),
        default_monitor: true,
        rules: vec![deny],
        ..Policy::default()
    });
    let f = udp("192.0.2.60");
    let first = judge(&mut tg, &f, SEC);
    assert_eq!(
        (first.reason(), first.verdict()),
        (Reason::Pass, Verdict::Pass)
    );
    for _ in 0..3 {
        let j = judge(&mut tg, &f, SEC);
        assert_eq!(
            (j.reason(), j.verdict()),
            (Reason::RateLimitedPackets, Verdict::Monitor)
        );
        assert_eq!(j.action, Verdict::Pass.xdp_action(), "monitor mode passes");
    }
    let j = judge(&mut tg, &udp("198.51.100.9"), SEC);
    assert_eq!((j.reason(), j.verdict()), (Reason::Deny, Verdict::Monitor));
    // Bans are the daemon's own decisions: always enforced.
    tg.maps
        .ban("192.0.2.61/32".parse().unwrap(), 10 * SEC)
        .unwrap();
    let j = judge(&mut tg, &udp("192.0.2.61"), SEC);
    assert_eq!((j.reason(), j.verdict()), (Reason::Banned, Verdict::Drop));
    let c = tg.maps.counters().unwrap();
    assert_eq!(
        c.get(Reason::RateLimitedPackets, Verdict::Monitor).packets,
        3
    );
    assert_eq!(c.get(Reason::Deny, Verdict::Monitor).packets, 1);
    let s = tg.maps.source(&key(&tg, "192.0.2.60")).unwrap().unwrap();
    assert_eq!(s.dropped, 0, "nothing was dropped");
}

/// A packet whose source the table cannot take (here: claims stopped,
/// as when two CPUs claim at once) has no buckets, but bans and deny
/// rules hold all the same; it is counted, and tracking resumes.
#[test]
fn untracked_packets_still_obey_bans_and_deny_rules() {
    let mut tg = load(&Policy {
        default: pps(1, 1),
        rules: vec![
            rule("198.51.100.0/24", Action::Deny),
            rule("203.0.113.0/24", Action::Allow),
        ],
        ..Policy::default()
    });
    tg.maps
        .ban("192.0.2.30/32".parse().unwrap(), 100 * SEC)
        .unwrap();
    let running = tg.maps.sources.clock().unwrap();
    tg.maps
        .sources
        .set_clock(monitor_common::types::SlotClock {
            capacity: 0,
            ..running
        })
        .unwrap();
    for i in 0..3 {
        for (src, want) in [
            ("192.0.2.30", ("drop", "banned")),
            ("198.51.100.5", ("drop", "deny")),
            ("203.0.113.5", ("pass", "allow")),
            // Over its 1/s limit from the second packet, were it tracked.
            ("192.0.2.31", ("pass", "untracked")),
        ] {
            let r = report(&mut tg, &udp(src), SEC + i);
            assert_eq!((r.verdict, r.reason), (Some(want.0), Some(want.1)), "{src}");
        }
    }
    let events = tg.maps.counters().unwrap().source_events;
    assert_eq!(
        events[monitor_common::maps::source_event::INSERT_FAILED as usize],
        12
    );
    assert!(tg.maps.sources().unwrap().is_empty());
    tg.maps.sources.set_clock(running).unwrap();
    assert_eq!(
        judge(&mut tg, &udp("192.0.2.31"), 2 * SEC).reason(),
        Reason::Pass
    );
    assert_eq!(
        judge(&mut tg, &udp("192.0.2.31"), 2 * SEC).reason(),
        Reason::RateLimitedPackets,
        "tracked again, its bucket applies"
    );
}

/// The hot list full (`maps::MAX_HOT` over-limit sources in one window):
/// every source past it is refused and counted (`signal::HOT_LOST`, which
/// the daemon exports and alerts on), none lost in silence; once the
/// daemon takes the list, reports fit again.
#[test]
fn a_full_hot_list_counts_every_source_it_refuses() {
    let default = pps(1, 1);
    // Without the wide level (every /48 here is in 2001:db8::/32, whose
    // budget would refuse most of them).
    let prefix = PrefixLimit {
        wide: WideLimit::OFF,
        ..PrefixLimit::following(&default, false)
    };
    let mut tg = common::load_with(
        16_384,
        &Policy {
            default,
            prefix: Some(prefix),
            ..Policy::default()
        },
    );
    // A new window: sources report from here.
    tg.maps.take_hot().expect("taking the hot list");
    let past = 808;
    for i in 0..MAX_HOT + past {
        // One /48 each: one source (a /64) each, and one prefix budget
        // each, so only the sources' own limits apply.
        let frame = udp(&format!("2001:db8:{i:x}::1"));
        let first = judge(&mut tg, &frame, SEC);
        let second = judge(&mut tg, &frame, SEC);
        assert_eq!(
            (first.verdict(), second.verdict(), second.reason()),
            (Verdict::Pass, Verdict::Drop, Reason::RateLimitedPackets),
            "source {i}: its burst of 1, then over its limit"
        );
    }
    let lost =
        |tg: &tollgate::loader::Tollgate| tg.maps.signals().unwrap()[signal::HOT_LOST as usize];
    assert_eq!(
        lost(&tg),
        u64::from(past),
        "every source past the full list counted"
    );
    let taken = tg.maps.take_hot().expect("taking the hot list");
    assert_eq!(taken.len(), MAX_HOT as usize, "the list holds its capacity");
    let frame = udp("2001:db8:ffff::1");
    judge(&mut tg, &frame, SEC);
    judge(&mut tg, &frame, SEC);
    assert_eq!(
        tg.maps.take_hot().unwrap().len(),
        1,
        "room again once taken"
    );
    assert_eq!(lost(&tg), u64::from(past), "nothing more lost");
}
