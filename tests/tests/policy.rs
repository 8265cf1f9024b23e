//! `monitor-ebpf/src/policy.rs` on the real kernel, through
//! BPF_PROG_TEST_RUN with the replay clock: what applies to a source. CIDR
//! rules (the longest prefix wins), bans on prefixes that expire on the
//! kernel's own clock, and the per-source cache of both, revalidated when
//! the daemon changes the policy: a new policy reaches cached sources, and
//! a swap keeps the buckets of the rules it did not change.

mod common;

use common::{SEC, judge, load, pps, report, rule, udp};
use monitor_common::reason::{Reason, Verdict};
use tollgate::policy::{Action, Policy};

#[test]
fn allow_deny_and_longest_prefix() {
    let policy = Policy {
        default: pps(1, 1),
        rules: vec![
            rule("198.51.100.0/24", Action::Deny),
            rule("198.51.100.128/25", Action::Allow),
            rule("2001:db8:bad::/48", Action::Deny),
        ],
        ..Policy::default()
    };
    let mut tg = load(&policy);
    for i in 0..50 {
        let r = report(&mut tg, &udp("198.51.100.200"), SEC + i);
        assert_eq!(
            (r.verdict, r.reason),
            (Some("pass"), Some("allow")),
            "allowed /25 wins"
        );
        let r = report(&mut tg, &udp("198.51.100.5"), SEC + i);
        assert_eq!((r.verdict, r.reason), (Some("drop"), Some("deny")));
        let r = report(&mut tg, &udp("2001:db8:bad:1::7"), SEC + i);
        assert_eq!((r.verdict, r.reason), (Some("drop"), Some("deny")));
    }
    let c = tg.maps.counters().expect("counters");
    assert_eq!(c.get(Reason::Allow, Verdict::Pass).packets, 50);
    assert_eq!(c.get(Reason::Deny, Verdict::Drop).packets, 100);
}

#[test]
fn bans_apply_to_prefixes_and_expire_in_the_kernel() {
    let mut tg = load(&Policy::default());
    tg.maps
        .ban("192.0.2.0/28".parse().unwrap(), 10 * SEC)
        .expect("ban");
    tg.maps
        .ban("2001:db8:1::/64".parse().unwrap(), 10 * SEC)
        .expect("ban");
    let sources = [
        ("192.0.2.3", true),
        ("192.0.2.15", true),
        ("192.0.2.16", false),
        ("2001:db8:1::99", true),
        ("2001:db8:2::99", false),
    ];
    for (src, banned) in sources {
        let r = report(&mut tg, &udp(src), 5 * SEC);
        let want = if banned { "banned" } else { "pass" };
        assert_eq!(r.reason, Some(want), "{src} before expiry");
    }
    // The ban ends on the kernel's own clock, with nothing rewritten.
    for (src, _) in sources {
        let r = report(&mut tg, &udp(src), 10 * SEC + 1);
        assert_eq!(r.reason, Some("pass"), "{src} after expiry");
    }
    // Lifting a ban takes effect on the next packet (generation bump).
    tg.maps
        .ban("192.0.2.77/32".parse().unwrap(), 100 * SEC)
        .unwrap();
    assert_eq!(
        report(&mut tg, &udp("192.0.2.77"), 11 * SEC).reason,
        Some("banned")
    );
    assert!(tg.maps.unban("192.0.2.77/32".parse().unwrap()).unwrap());
    assert_eq!(
        report(&mut tg, &udp("192.0.2.77"), 11 * SEC + 1).reason,
        Some("pass")
    );
    // Allowed sources are never banned.
    let mut tg = load(&Policy {
        rules: vec![rule("203.0.113.0/24", Action::Allow)],
        ..Policy::default()
    });
    tg.maps
        .ban("203.0.113.9/32".parse().unwrap(), 100 * SEC)
        .unwrap();
    assert_eq!(
        report(&mut tg, &udp("203.0.113.9"), SEC).reason,
        Some("allow")
    );
}

#[test]
fn a_new_policy_reaches_cached_sources() {
    let mut tg = load(&Policy {
        default: pps(1, 1),
        ..Policy::default()
    });
    let f = udp("192.0.2.40");
    assert_eq!(judge(&mut tg, &f, SEC).reason(), Reason::Pass);
    assert_eq!(judge(&mut tg, &f, SEC).reason(), Reason::RateLimitedPackets);
    tg.maps
        .apply_policy(
            &Policy {
                default: pps(1, 1),
                rules: vec![rule("192.0.2.40/32", Action::Allow)],
                ..Policy::default()
            },
            None,
        )
        .unwrap();
    assert_eq!(judge(&mut tg, &f, SEC).reason(), Reason::Allow);
    // Removing the rule puts it back under the default, with a fresh bucket.
    tg.maps
        .apply_policy(
            &Policy {
                default: pps(1, 1),
                ..Policy::default()
            },
            None,
        )
        .unwrap();
    assert_eq!(judge(&mut tg, &f, SEC).reason(), Reason::Pass);
    assert_eq!(judge(&mut tg, &f, SEC).reason(), Reason::RateLimitedPackets);
}

#[test]
fn a_policy_swap_keeps_the_buckets_of_unchanged_rules() {
    let limited = |extra: &str| Policy {
        default: pps(1, 1),
        rules: vec![
            rule("192.0.2.0/24", Action::Limit(pps(1, 3))),
            rule(extra, Action::Deny),
        ],
        ..Policy::default()
    };
    let mut tg = load(&limited("203.0.113.0/24"));
    let f = udp("192.0.2.70");
    let passed = (0..5)
        .filter(|_| judge(&mut tg, &f, SEC).reason() == Reason::Pass)
        .count();
    assert_eq!(passed, 3);
    // Swap in a policy that changes another rule: this source's bucket is
    // still empty, not refilled by the reload.
    for round in 0..3 {
        let extra = if round % 2 == 0 {
            "198.51.100.0/24"
        } else {
            "203.0.113.0/24"
        };
        tg.maps.apply_policy(&limited(extra), None).unwrap();
        assert_eq!(
            judge(&mut tg, &f, SEC).reason(),
            Reason::RateLimitedPackets,
            "round {round}"
        );
        // The swapped-in rule is in force at once.
        assert_eq!(
            judge(&mut tg, &udp(&extra.replace(".0/24", ".1")), SEC).reason(),
            Reason::Deny
        );
    }
}

/// A full ban map (65,536 per family) refuses the next ban with an error
/// that says so and what to do, and every ban already in force stays in
/// force; a ban already there can still be renewed.
#[test]
fn a_full_ban_map_refuses_clearly_and_loses_no_ban() {
    let mut tg = load(&Policy::default());
    let net = |i: u32| -> ipnet::IpNet {
        format!("2001:db8:{:x}:{:x}::/64", i >> 16, i & 0xffff)
            .parse()
            .unwrap()
    };
    let max = monitor_common::maps::MAX_BANS_PER_FAMILY;
    for i in 0..max {
        tg.maps
            .ban(net(i), 100 * SEC)
            .expect("a ban while there is room");
    }
    let e = tg.maps.ban(net(max), 100 * SEC).unwrap_err().to_string();
    assert!(
        e.contains("is full (65536 entries)") && e.contains("every ban in force stays"),
        "{e}"
    );
    assert_eq!(tg.maps.kernel_bans().unwrap().len(), max as usize);
    // The first and the last are still enforced, and a ban already in
    // the map can be renewed.
    for i in [0, max - 1] {
        let src = format!("2001:db8:{:x}:{:x}::7", i >> 16, i & 0xffff);
        assert_eq!(report(&mut tg, &udp(&src), SEC).reason, Some("banned"));
    }
    tg.maps
        .ban(net(0), 200 * SEC)
        .expect("renewing a ban in a full map");
}
