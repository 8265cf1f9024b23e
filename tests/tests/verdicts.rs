//! Every verdict reason on the real kernel through BPF_PROG_TEST_RUN, with
//! the replay clock so bucket arithmetic is exact, and the counters the
//! daemon reads checked against what was sent.

mod common;

use common::{SEC, judge, key, load, report};
use lab::packets::{Spec, arp_request};
use monitor_common::{
    bucket::{BucketParams, ticks},
    reason::{Reason, Verdict},
};
use tollgate::policy::{Action, Limit, Policy, Rate, Rule};

fn rule(net: &str, action: Action) -> Rule {
    Rule::new(net.parse().expect("test CIDR"), action)
}

fn pps(per_sec: u64, burst: u64) -> Limit {
    Limit {
        packets: Some(Rate { per_sec, burst }),
        bytes: None,
    }
}

fn udp(src: &str) -> Vec<u8> {
    let dst = if src.contains(':') {
        "2001:db8:ffff::1"
    } else {
        "198.51.100.1"
    };
    Spec::udp(src, dst, 40000, 53).build()
}

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
fn packet_bucket_gives_burst_then_rate() {
    let mut tg = load(&Policy {
        default: pps(10, 5),
        ..Policy::default()
    });
    let frame = udp("192.0.2.10");
    let reasons: Vec<_> = (0..20)
        .map(|_| judge(&mut tg, &frame, SEC).reason())
        .collect();
    assert!(
        reasons[..5].iter().all(|r| *r == Reason::Pass),
        "{reasons:?}"
    );
    assert!(
        reasons[5..]
            .iter()
            .all(|r| *r == Reason::RateLimitedPackets),
        "{reasons:?}"
    );
    // Offered 100/s for the next second, exactly the rate (10) passes:
    // the bucket, emptied by the burst, refills one packet per 100 ms.
    let passed = (1..=100)
        .filter(|i| judge(&mut tg, &frame, SEC + i * SEC / 100).reason() == Reason::Pass)
        .count();
    assert_eq!(passed, 10);
    // After a long pause the bucket holds the burst again, not more.
    let passed = (0..20)
        .filter(|_| judge(&mut tg, &frame, 60 * SEC).reason() == Reason::Pass)
        .count();
    assert_eq!(passed, 5);
    let s = tg
        .maps
        .source(&key(&tg, "192.0.2.10"))
        .unwrap()
        .expect("tracked");
    assert_eq!((s.packets, s.dropped), (140, 120));
}

#[test]
fn byte_bucket_limits_by_length_and_refunds_packets() {
    let mut tg = load(&Policy {
        default: Limit {
            packets: Some(Rate {
                per_sec: 100,
                burst: 100,
            }),
            bytes: Some(Rate {
                per_sec: 3_000,
                burst: 3_000,
            }),
        },
        ..Policy::default()
    });
    let big = Spec::udp("192.0.2.20", "198.51.100.1", 1, 2)
        .payload(958)
        .build();
    assert_eq!(big.len(), 1000);
    let got: Vec<_> = (0..5).map(|_| judge(&mut tg, &big, SEC).reason()).collect();
    assert_eq!(
        got,
        [
            Reason::Pass,
            Reason::Pass,
            Reason::Pass,
            Reason::RateLimitedBytes,
            Reason::RateLimitedBytes
        ]
    );
    let small = udp("192.0.2.20");
    let passed = (0..200)
        .filter(|_| judge(&mut tg, &small, SEC).reason() == Reason::Pass)
        .count();
    assert_eq!(passed, 0, "the byte bucket is empty at the same instant");
    // Only the three frames that passed are charged to the packet bucket.
    let s = tg
        .maps
        .source(&key(&tg, "192.0.2.20"))
        .unwrap()
        .expect("tracked");
    let per_packet = BucketParams::new(100, 100).unwrap().interval;
    assert_eq!(s.pkt_tat, ticks(SEC) + 3 * per_packet);
    // A second later 3000 bytes are back: 71 small frames fit. The packet
    // bucket (burst 100) can only allow that many because the 202
    // byte-dropped frames gave their packet tokens back.
    let passed = (0..200)
        .filter(|_| judge(&mut tg, &small, 2 * SEC).reason() == Reason::Pass)
        .count();
    assert_eq!(passed, 3_000 / small.len());
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
    for (src, banned) in [
        ("192.0.2.3", true),
        ("192.0.2.15", true),
        ("192.0.2.16", false),
        ("2001:db8:1::99", true),
        ("2001:db8:2::99", false),
    ] {
        let r = report(&mut tg, &udp(src), 5 * SEC);
        let want = if banned { "banned" } else { "pass" };
        assert_eq!(r.reason, Some(want), "{src} before expiry");
        // The ban ends on the kernel's own clock, with nothing rewritten.
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
fn sources_are_grouped_by_prefix() {
    let mut tg = load(&Policy {
        default: pps(1, 4),
        v4_prefix: 24,
        ..Policy::default()
    });
    // Two IPv4 hosts in one /24 and two IPv6 hosts in one /64 share buckets.
    let mut passed = 0;
    for src in [
        "192.0.2.1",
        "192.0.2.2",
        "192.0.2.1",
        "192.0.2.2",
        "192.0.2.3",
    ] {
        passed += (judge(&mut tg, &udp(src), SEC).reason() == Reason::Pass) as u32;
    }
    assert_eq!(passed, 4);
    let mut passed = 0;
    for src in [
        "2001:db8::1",
        "2001:db8::2",
        "2001:db8::3:4",
        "2001:db8::5",
        "2001:db8::6",
    ] {
        passed += (judge(&mut tg, &udp(src), SEC).reason() == Reason::Pass) as u32;
    }
    assert_eq!(passed, 4);
    // Another /64 has its own bucket.
    assert_eq!(
        judge(&mut tg, &udp("2001:db8:0:1::1"), SEC).reason(),
        Reason::Pass
    );
    assert_eq!(tg.maps.sources().unwrap().len(), 3);
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

#[test]
fn sweeps_see_every_source_once() {
    let mut tg = common::load_with(16_384, &Policy::default());
    let cfg = tg.maps.runtime_config().unwrap();
    let sources = (0..4_000u32).flat_map(|i| {
        [
            std::net::IpAddr::from([198, 18, (i >> 8) as u8, i as u8]),
            std::net::IpAddr::from([0x2001, 0xdb8, 0, i as u16, 0, 0, 0, 1]),
        ]
        .map(|a| {
            let state = monitor_common::types::SourceState {
                packets: i as u64 + 1,
                bytes: 100 * i as u64,
                acks: i as u64 / 2,
                pkt_tat: 7 * i as u64,
                rule_slot: i % 3,
                ..Default::default()
            };
            (tollgate::maps::source_key(&cfg, a), state)
        })
    });
    let mut expected: Vec<_> = sources.collect();
    tg.maps.sources.insert(expected.iter().copied()).unwrap();
    // Whole states, through the index, come back as written (both parts).
    let mut whole = tg.maps.sources().unwrap();
    whole.sort_by_key(|(k, _)| (k.family, k.addr));
    expected.sort_by_key(|(k, _)| (k.family, k.addr));
    assert_eq!(whole, expected);
    let mut by_index: Vec<_> = whole.into_iter().map(|(k, s)| s.into_parts(k).0).collect();
    by_index.sort_by_key(|f| (f.key.family, f.key.addr));
    let mut swept = Vec::new();
    let n = tg.maps.for_each_source(|f| swept.push(*f)).expect("sweep");
    assert_eq!((n, swept.len(), by_index.len()), (8_000, 8_000, 8_000));
    swept.sort_by_key(|f| (f.key.family, f.key.addr));
    assert_eq!(swept, by_index);
    // Split sweeps: shares start on page boundaries of the flow array,
    // wherever the division falls; each source is read exactly once.
    for shares in [2, 3, 4, 5, 7, 16, 61] {
        let mut gathered: Vec<Vec<_>> = vec![Vec::new(); shares];
        let parts: Vec<_> = gathered
            .iter_mut()
            .map(|v| move |f: &monitor_common::types::SourceFlow| v.push(*f))
            .collect();
        let (n, _) = tg.maps.for_each_source_split(parts).expect("split sweep");
        let mut all: Vec<_> = gathered.into_iter().flatten().collect();
        assert_eq!((n, all.len()), (8_000, 8_000), "{shares} shares");
        all.sort_by_key(|f| (f.key.family, f.key.addr));
        assert_eq!(all, by_index, "{shares} shares");
    }
}

/// A full table under a storm of one-packet sources: the clock recycles
/// the storm's slots and the clients that keep sending keep theirs (a
/// table that evicted the oldest entry would lose them every lap).
#[test]
fn a_full_table_recycles_one_time_sources_and_keeps_busy_ones() {
    let mut tg = common::load_with(
        64,
        &Policy {
            default: pps(1_000_000, 1_000_000),
            ..Policy::default()
        },
    );
    let busy: Vec<String> = (1..=8).map(|i| format!("192.0.2.{i}")).collect();
    let rounds = 50u64;
    let mut t = SEC;
    for round in 0..rounds {
        for b in &busy {
            judge(&mut tg, &udp(b), t);
        }
        for j in 0..20u64 {
            let n = round * 20 + j;
            let src = format!("203.0.113.{}", n % 250);
            let src = if n < 250 {
                src
            } else {
                format!("2001:db8:{:x}::1", n)
            };
            judge(&mut tg, &udp(&src), t);
        }
        t += SEC / 100;
    }
    for b in &busy {
        let s = tg.maps.source(&key(&tg, b)).unwrap();
        assert_eq!(
            s.map(|s| s.packets),
            Some(rounds),
            "{b} kept its slot (and its count) through the storm"
        );
    }
    let created = tg.maps.counters().unwrap().source_events;
    let (created, evicted) = (
        created[monitor_common::maps::source_event::CREATED as usize],
        created[monitor_common::maps::source_event::EVICTED as usize],
    );
    let (swept, by_index) = common::swept_and_indexed(&tg);
    assert_eq!(created, 8 + rounds * 20);
    assert_eq!(swept.len(), 64, "the table is full");
    assert_eq!(evicted, created - 64, "every slot reuse counted");
    // The index and the slots agree: one entry per tracked source.
    assert_eq!(swept, by_index);
}

#[test]
fn the_host_wide_syn_limit_spares_clients_known_before_it() {
    // Generous per-source limits: only the SYN limit drops here.
    let mut tg = load(&Policy {
        default: pps(1_000_000, 1_000_000),
        ..Policy::default()
    });
    let server = "192.0.2.1";
    // A client that completed a handshake at t = 1 s (its bare ACK).
    let ack = Spec::tcp("192.0.2.20", server, 40000, 443).build();
    assert_eq!(report(&mut tg, &ack, SEC).verdict, Some("pass"));
    // The limit starts at t = 2 s: one new connection per second, burst 1.
    tg.maps
        .set_syn_limit(BucketParams::new(1, 1).unwrap(), 2)
        .unwrap();
    let syn = |src: &str, port: u16| Spec::syn(src, server, port, 443).build();
    let t = 3 * SEC;
    for i in 0..20 {
        let r = report(&mut tg, &syn("192.0.2.20", 41000 + i), t + i as u64);
        assert_eq!(r.verdict, Some("pass"), "the known client connects");
    }
    // A source first seen during the flood gets the burst, then nothing;
    // answering with an ACK does not make it known.
    let spoofed = "198.51.100.7";
    let r = report(&mut tg, &syn(spoofed, 42000), t);
    assert_eq!(r.verdict, Some("pass"), "the burst");
    let ack = Spec::tcp(spoofed, server, 42000, 443).build();
    report(&mut tg, &ack, t + 1);
    for i in 1..20 {
        let r = report(&mut tg, &syn(spoofed, 42000 + i), t + 2 + i as u64);
        assert_eq!(
            (r.verdict, r.reason),
            (Some("drop"), Some("syn_limited")),
            "SYN {i} from a source new during the flood"
        );
    }
    // Lifted: everyone connects.
    tg.maps.set_syn_limit(BucketParams::UNLIMITED, 0).unwrap();
    let r = report(&mut tg, &syn(spoofed, 43000), t + 100);
    assert_eq!(r.verdict, Some("pass"));
}
