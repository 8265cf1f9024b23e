//! Prefix budgets (`monitor-ebpf/src/prefix.rs`) on the real kernel,
//! through BPF_PROG_TEST_RUN with the replay clock: the sources of one
//! prefix pass their budget together and no more, a client rotating
//! through the /64s of its /48 still meets a limit, a refusal costs the
//! source nothing, and during a storm the sources first seen since it
//! began share the small unproven budget while those already sending keep
//! the whole one. The wide level (the /32 or /16 holding a /48 or /24)
//! bounds what sources spread over its many fine prefixes pass together,
//! and its refusals cost the fine prefix nothing.

mod common;

use common::{SEC, load, pps, report, udp};
use monitor_common::reason::{Reason, Verdict};
use tollgate::policy::{Policy, PrefixLimit, Rate, WideLimit};

/// Sources at `per_source` (packets/s, burst) whose /24s and /48s pass
/// `all` together and, during a storm, `unproven` from their new sources.
fn policy(per_source: (u64, u64), all: (u64, u64), unproven: Option<(u64, u64)>) -> Policy {
    let rate = |(per_sec, burst)| Rate { per_sec, burst };
    Policy {
        default: pps(per_source.0, per_source.1),
        prefix: Some(PrefixLimit {
            v4_prefix: 24,
            v6_prefix: 48,
            all: Some(rate(all)),
            unproven: unproven.map(rate),
            monitor: false,
            wide: WideLimit::OFF,
        }),
        ..Policy::default()
    }
}

/// `p` with wide budgets over IPv6 prefixes of `v6_prefix` bits: `all`,
/// and `unproven` during a storm.
fn with_wide(
    mut p: Policy,
    v6_prefix: u8,
    all: Option<(u64, u64)>,
    unproven: Option<(u64, u64)>,
) -> Policy {
    let rate = |(per_sec, burst)| Rate { per_sec, burst };
    if let Some(b) = p.prefix.as_mut() {
        b.wide = WideLimit {
            v6_prefix,
            all: all.map(rate),
            unproven: unproven.map(rate),
            ..WideLimit::OFF
        };
    }
    p
}

/// Sends `n` packets from `src` at `at`; returns how many passed.
fn send(tg: &mut tollgate::loader::Tollgate, src: &str, n: usize, at: u64) -> usize {
    let f = udp(src);
    (0..n)
        .filter(|_| report(tg, &f, at).verdict == Some("pass"))
        .count()
}

#[test]
fn a_prefix_s_sources_pass_its_budget_together_and_other_prefixes_theirs() {
    let mut tg = load(&policy((100, 100), (1_000, 500), None));
    // 50 sources of one /24, each well within its own burst, send 1,000
    // packets at one instant: the /24 passes its burst of 500.
    let passed: usize = (1..=50)
        .map(|i| send(&mut tg, &format!("198.51.100.{i}"), 20, SEC))
        .sum();
    assert_eq!(passed, 500);
    let c = tg.maps.counters().unwrap();
    assert_eq!(c.get(Reason::PrefixLimited, Verdict::Drop).packets, 500);
    assert_eq!(c.get(Reason::Pass, Verdict::Pass).packets, 500);
    // Another /24 has its own budget.
    let other: usize = (1..=10)
        .map(|i| send(&mut tg, &format!("203.0.113.{i}"), 20, SEC))
        .sum();
    assert_eq!(other, 200);
}

#[test]
fn a_client_rotating_through_the_64s_of_its_48_still_meets_a_limit() {
    let mut tg = load(&policy((100, 100), (1_000, 300), None));
    // A new /64 every 10 packets: each would be a fresh source with a
    // fresh bucket; the /48 is one budget.
    let passed: usize = (0..100)
        .map(|i| send(&mut tg, &format!("2001:db8:1:{i:x}::1"), 10, SEC))
        .sum();
    assert_eq!(passed, 300);
    // The next /48 is another prefix.
    assert_eq!(send(&mut tg, "2001:db8:2::1", 10, SEC), 10);
}

#[test]
fn a_prefix_refusal_costs_the_source_nothing() {
    // One packet a second with a burst of 100: a source charged for
    // refused packets would have nothing left for 100 s. The /24 refills
    // 50 packets every 50 ms.
    let mut tg = load(&policy((1, 100), (1_000, 50), None));
    assert_eq!(send(&mut tg, "198.51.100.1", 50, SEC), 50);
    // The /24's budget is spent: all 100 refused by the prefix.
    assert_eq!(send(&mut tg, "198.51.100.2", 100, SEC), 0);
    // Twice 50 ms later, the source still has its whole burst of 100.
    let ms = SEC / 1_000;
    assert_eq!(send(&mut tg, "198.51.100.2", 50, SEC + 50 * ms), 50);
    assert_eq!(send(&mut tg, "198.51.100.2", 50, SEC + 100 * ms), 50);
    let c = tg.maps.counters().unwrap();
    assert_eq!(c.get(Reason::PrefixLimited, Verdict::Drop).packets, 100);
    assert_eq!(c.get(Reason::RateLimitedPackets, Verdict::Drop).packets, 0);
}

#[test]
fn during_a_storm_new_sources_share_the_unproven_budget_and_earlier_ones_keep_theirs() {
    let mut tg = load(&policy((100, 100), (10_000, 10_000), Some((1, 20))));
    // A client of the /24 sending before the storm.
    assert_eq!(send(&mut tg, "198.51.100.200", 5, SEC), 5);
    tg.maps.set_storm_since(2 * SEC).unwrap();
    // 40 sources first seen during the storm, 5 packets each (their first
    // on probation, without a slot): 20 pass together.
    let storm: usize = (1..=40)
        .map(|i| send(&mut tg, &format!("198.51.100.{i}"), 5, 3 * SEC))
        .sum();
    assert_eq!(storm, 20);
    // The client from before keeps the whole budget: its burst passes.
    assert_eq!(send(&mut tg, "198.51.100.200", 95, 3 * SEC), 95);
    // Random /64s across a /48 (each packet a never-seen source): the
    // /48's unproven budget bounds them all.
    let spoofed = (0..500)
        .filter(|i| {
            let src = format!("2001:db8:7:{:x}::{:x}", i * 7 % 65_536, i + 1);
            report(&mut tg, &udp(&src), 3 * SEC).verdict == Some("pass")
        })
        .count();
    assert_eq!(spoofed, 20);
    // The storm ends: new sources share the whole budget again.
    tg.maps.set_storm_since(0).unwrap();
    assert_eq!(send(&mut tg, "198.51.100.77", 50, 4 * SEC), 50);
}

#[test]
fn in_monitor_mode_a_prefix_refusal_passes_and_is_counted() {
    let mut p = policy((100, 100), (1, 10), None);
    if let Some(b) = p.prefix.as_mut() {
        b.monitor = true;
    }
    let mut tg = load(&p);
    let f = udp("198.51.100.1");
    let verdicts: Vec<_> = (0..30).map(|_| report(&mut tg, &f, SEC).verdict).collect();
    assert!(
        verdicts[..10].iter().all(|v| *v == Some("pass")),
        "{verdicts:?}"
    );
    assert!(
        verdicts[10..].iter().all(|v| *v == Some("monitor")),
        "{verdicts:?}"
    );
    // A new source of the spent prefix is tracked as it would be without
    // the budgets: its packets pass.
    let other = report(&mut tg, &udp("198.51.100.2"), SEC);
    assert_eq!(other.verdict, Some("monitor"));
    assert!(
        tg.maps
            .source(&common::key(&tg, "198.51.100.2"))
            .unwrap()
            .is_some()
    );
    let c = tg.maps.counters().unwrap();
    assert_eq!(c.get(Reason::PrefixLimited, Verdict::Monitor).packets, 21);
}

/// Two prefixes whose slots collide (found with the daemon's seed; /64
/// budgets here, for room to search): while one is busy the other shares
/// its budget (it can only be refused more, never passed more); once the
/// first is idle again, the second takes the slot over with a whole
/// budget.
#[test]
fn a_prefix_whose_slot_is_busy_shares_it_and_takes_it_over_when_idle() {
    use monitor_common::prefix::slot_of;
    let mut per_64 = policy((1_000, 1_000), (10, 20), None);
    if let Some(b) = per_64.prefix.as_mut() {
        b.v6_prefix = 64;
    }
    let mut tg = load(&per_64);
    let p = tg.maps.runtime_config().unwrap().prefix;
    assert!(
        p.fine.seed != 0 && p.wide.seed != 0,
        "the daemon chose the seeds"
    );
    let addr = |i: u32| format!("2001:db8:{:x}:{:x}::1", i >> 16, i & 0xffff);
    let key = |i: u32| {
        let a: std::net::Ipv6Addr = addr(i).parse().unwrap();
        let o = a.octets();
        let w = |j: usize| u32::from_ne_bytes(o[j * 4..j * 4 + 4].try_into().unwrap());
        p.key(
            monitor_common::types::family::IPV6,
            &[w(0), w(1), w(2), w(3)],
        )
    };
    let first = slot_of(&key(1), p.fine.seed);
    let other = (2..1 << 24)
        .find(|&i| slot_of(&key(i), p.fine.seed) == first)
        .expect("a /64 sharing the first one's slot");
    let (a, b) = (addr(1), addr(other));
    // The first spends its burst: the second, sharing, gets nothing.
    assert_eq!(send(&mut tg, &a, 20, SEC), 20);
    assert_eq!(send(&mut tg, &b, 5, SEC), 0);
    // 3 s later the first's budget is full again (idle): the second takes
    // the slot over, whole.
    assert_eq!(send(&mut tg, &b, 25, 4 * SEC), 20);
}

#[test]
fn a_client_rotating_through_the_48s_of_its_32_still_meets_the_wide_budget() {
    let p = with_wide(
        policy((100, 100), (1_000, 300), None),
        32,
        Some((1_000, 500)),
        None,
    );
    let mut tg = load(&p);
    // A new /48 every 10 packets: each /48's own budget has room; the
    // /32 passes its burst of 500.
    let passed: usize = (1..=100)
        .map(|i| send(&mut tg, &format!("2001:db8:{i:x}::1"), 10, SEC))
        .sum();
    assert_eq!(passed, 500);
    let c = tg.maps.counters().unwrap();
    assert_eq!(c.get(Reason::PrefixLimited, Verdict::Drop).packets, 500);
}

#[test]
fn a_wide_refusal_costs_the_fine_prefix_nothing_and_other_wide_prefixes_keep_theirs() {
    // /48s of 100 packets refilling one a second, inside /40s of 150
    // refilling 1,000 a second.
    let p = with_wide(
        policy((1_000, 1_000), (1, 100), None),
        40,
        Some((1_000, 150)),
        None,
    );
    let mut tg = load(&p);
    assert_eq!(send(&mut tg, "2001:db8:101::1", 100, SEC), 100);
    // Its /40 has 50 left: the next /48 passes those, and the 50 refused
    // leave its own budget alone.
    assert_eq!(send(&mut tg, "2001:db8:102::1", 100, SEC), 50);
    // Another /40 has its own.
    assert_eq!(send(&mut tg, "2001:db8:201::1", 100, SEC), 100);
    // 150 ms later the /40 is full again and the /48 has refilled
    // nothing: it still has the 50 it did not pass.
    let later = SEC + 150 * (SEC / 1_000);
    assert_eq!(send(&mut tg, "2001:db8:102::1", 100, later), 50);
    let c = tg.maps.counters().unwrap();
    assert_eq!(c.get(Reason::PrefixLimited, Verdict::Drop).packets, 100);
    assert_eq!(c.get(Reason::Pass, Verdict::Pass).packets, 300);
}

#[test]
fn during_a_storm_across_a_32_its_new_sources_share_the_wide_unproven_budget() {
    // Each /48 could pass 20 of its unproven sources' packets; the /32
    // they all fall in passes 50.
    let p = with_wide(
        policy((100, 100), (10_000, 10_000), Some((1, 20))),
        32,
        None,
        Some((1, 50)),
    );
    let mut tg = load(&p);
    // A client sending before the storm.
    assert_eq!(send(&mut tg, "2001:db8:aaaa::1", 5, SEC), 5);
    tg.maps.set_storm_since(2 * SEC).unwrap();
    // Random /64s across the /32, each in a /48 of its own.
    let spoofed = (1..=1_000u32)
        .filter(|i| {
            let src = format!("2001:db8:{:x}:{:x}::1", i * 37 % 40_000 + 1, i);
            report(&mut tg, &udp(&src), 3 * SEC).verdict == Some("pass")
        })
        .count();
    assert_eq!(spoofed, 50);
    // The client from before keeps its whole budget: its burst passes.
    assert_eq!(send(&mut tg, "2001:db8:aaaa::1", 95, 3 * SEC), 95);
    let c = tg.maps.counters().unwrap();
    assert_eq!(c.get(Reason::PrefixLimited, Verdict::Drop).packets, 950);
}

#[test]
fn a_storm_packet_its_budgets_refuse_puts_its_source_on_no_probation() {
    use monitor_common::maps::source_event;
    let mut tg = load(&policy((100, 100), (10_000, 10_000), Some((1, 5))));
    tg.maps.set_storm_since(2 * SEC).unwrap();
    let created = |tg: &tollgate::loader::Tollgate| {
        tg.maps.counters().unwrap().source_events[source_event::CREATED as usize]
    };
    // The /24's unproven budget of 5: its first packet on probation, the
    // second claims a slot.
    assert_eq!(send(&mut tg, "198.51.100.1", 5, 3 * SEC), 5);
    let claimed = created(&tg);
    // Spent: another new source's packets are refused, and none of them
    // counts as its first.
    assert_eq!(send(&mut tg, "198.51.100.2", 3, 3 * SEC), 0);
    // A second later the budget has one unit: that packet is the
    // source's first that passed, judged without a slot...
    let first = report(&mut tg, &udp("198.51.100.2"), 4 * SEC);
    assert_eq!(
        (first.verdict, first.reason),
        (Some("pass"), Some("untracked"))
    );
    assert_eq!(created(&tg), claimed);
    // ...and its next claims one.
    let second = report(&mut tg, &udp("198.51.100.2"), 5 * SEC);
    assert_eq!(
        (second.verdict, second.reason),
        (Some("pass"), Some("pass"))
    );
    assert_eq!(created(&tg), claimed + 1);
}

#[test]
fn a_storm_over_a_spent_prefix_claims_no_slot_and_evicts_nobody_before_it_is_found() {
    use monitor_common::maps::source_event;
    // A table of 64 slots; the /32 passes 50 packets.
    let p = with_wide(
        policy((1_000, 1_000), (1_000_000, 1_000_000), None),
        32,
        Some((1, 50)),
        None,
    );
    let mut tg = common::load_with(64, &p);
    let busy: Vec<String> = (1..=8).map(|i| format!("192.0.2.{i}")).collect();
    for b in &busy {
        assert_eq!(send(&mut tg, b, 1, SEC), 1);
    }
    // No storm has been found (the daemon has set nothing): random /48s
    // across the /32, 2,000 never-seen sources, one packet each.
    let storm = (1..=2_000u32)
        .filter(|i| send(&mut tg, &format!("2001:db8:{i:x}::1"), 1, SEC) == 1)
        .count();
    assert_eq!(storm, 50);
    let c = tg.maps.counters().unwrap();
    let event = |e: u32| c.source_events[e as usize];
    assert_eq!(
        event(source_event::CREATED),
        8 + 50,
        "only what passed claimed"
    );
    assert_eq!(event(source_event::EVICTED), 0);
    assert_eq!(event(source_event::REFUSED), 1_950);
    assert_eq!(event(source_event::PROBATION), 0);
    assert_eq!(c.get(Reason::PrefixLimited, Verdict::Drop).packets, 1_950);
    for b in &busy {
        assert!(
            tg.maps.source(&common::key(&tg, b)).unwrap().is_some(),
            "{b} kept its slot"
        );
    }
}

#[test]
fn a_new_source_under_a_watching_rule_gets_its_refusal_as_monitor_and_a_slot() {
    // The /24 spends its burst of 10; its 198.51.100.128/25 is under a
    // rule that only watches (its limit never binds here).
    let mut p = policy((100, 100), (1, 10), None);
    p.rules.push(tollgate::policy::Rule {
        monitor: true,
        ..common::rule(
            "198.51.100.128/25",
            tollgate::policy::Action::Limit(pps(100, 100)),
        )
    });
    let mut tg = load(&p);
    assert_eq!(send(&mut tg, "198.51.100.1", 10, SEC), 10);
    let r = report(&mut tg, &udp("198.51.100.200"), SEC);
    assert_eq!(
        (r.verdict, r.reason),
        (Some("monitor"), Some("prefix_limited"))
    );
    assert!(
        tg.maps
            .source(&common::key(&tg, "198.51.100.200"))
            .unwrap()
            .is_some(),
        "tracked: its packets pass"
    );
}
