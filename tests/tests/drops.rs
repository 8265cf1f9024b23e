//! `monitor-ebpf/src/drops.rs` on the real kernel: the production program
//! (live clock; the single-buffer one the daemon attaches at any usual
//! MTU) through BPF_PROG_TEST_RUN. A banned, denied, over-limit or
//! prefix-refused source's packets after the first take the drop cache's
//! fast path (while SYN cookies are on too, except a protected port's
//! TCP), and every count stays exact: the global counters by reason and the
//! source's own packets, bytes and drops equal what was sent, whichever
//! path each packet took, on one CPU and on two at once, also when two
//! sources share a cache set and push each other out.

mod common;

use common::{cookies_on, key, load, on_two_cpus, pps, rule, udp};
use lab::packets::Spec;
use monitor_common::{
    drops::{DROP_WAYS, DROPS_PER_CPU, set_of},
    maps::PROG_LINEAR,
    reason::{Reason, Verdict},
    syncookie::cookie_mode,
    types::SourceKey,
};
use tollgate::{
    clock::coarse_ns,
    loader::Tollgate,
    policy::{Action, Policy, PrefixLimit, Rate, WideLimit},
};

const N: u32 = 100_000;
const MS: u64 = 1_000_000;

/// Runs the production program `repeat` times on `frame`.
fn send(tg: &Tollgate, frame: &[u8], repeat: u32) {
    tg.run_program(PROG_LINEAR, frame, repeat)
        .unwrap_or_else(|e| panic!("BPF_PROG_TEST_RUN of {PROG_LINEAR}: {e:#}"));
}

/// Keeps this test's thread on CPU 0. The drop cache is per CPU: a run
/// the scheduler moves to the other CPU (between two runs, or inside a
/// long one, where BPF_PROG_TEST_RUN lets it migrate when it yields)
/// misses there once more, and a count of cached packets would be off by
/// one on a busy machine.
fn one_cpu() {
    lab::traffic::pin_thread(0).expect("pinning the test to CPU 0");
}

/// Packets the drop cache's entries for `k` counted (every CPU's).
fn cached(tg: &Tollgate, k: &SourceKey) -> u64 {
    tg.maps
        .drop_cache()
        .entries()
        .iter()
        .filter(|e| e.key == *k)
        .map(|e| e.packets)
        .sum()
}

fn drops(tg: &Tollgate, reason: Reason) -> u64 {
    tg.maps
        .counters()
        .unwrap()
        .get(reason, Verdict::Drop)
        .packets
}

fn passes(tg: &Tollgate) -> u64 {
    tg.maps
        .counters()
        .unwrap()
        .get(Reason::Pass, Verdict::Pass)
        .packets
}

#[test]
fn a_banned_source_is_dropped_on_the_fast_path_and_counted_exactly() {
    one_cpu();
    let mut tg = load(&Policy::default());
    let frame = udp("192.0.2.30");
    tg.maps
        .ban(
            "192.0.2.30/32".parse().unwrap(),
            coarse_ns() + 600 * common::SEC,
        )
        .unwrap();
    send(&tg, &frame, N);
    let k = key(&tg, "192.0.2.30");
    let s = tg.maps.source(&k).unwrap().expect("tracked");
    assert_eq!(drops(&tg, Reason::Banned), N as u64);
    assert_eq!((s.packets, s.dropped), (N as u64, N as u64));
    assert_eq!(s.bytes, N as u64 * frame.len() as u64);
    assert_eq!(
        cached(&tg, &k),
        N as u64 - 1,
        "all but the first packet took the fast path"
    );
    // The sweep sees the same counts as the single read.
    let mut swept = None;
    tg.maps
        .for_each_source(|f| {
            if f.key == k {
                swept = Some((f.packets, f.dropped));
            }
        })
        .unwrap();
    assert_eq!(swept, Some((N as u64, N as u64)));
    // Unbanned, the next packet passes: the ban's entry died with the
    // policy generation it was written at.
    tg.maps.unban("192.0.2.30/32".parse().unwrap()).unwrap();
    send(&tg, &frame, 1);
    let c = tg.maps.counters().unwrap();
    assert_eq!(c.get(Reason::Pass, Verdict::Pass).packets, 1);
    assert_eq!(tg.maps.source(&k).unwrap().unwrap().packets, N as u64 + 1);
}

/// A ban's cached drops skip the clock within a tick (the entry records
/// the tick it confirmed) but end at the ban's expiry, with no daemon to
/// lift it: no batch of packets sent once the coarse clock has reached
/// the expiry loses one to the ban. A later write of the entry (a deny
/// rule for the same source) starts with no tick confirmed.
#[test]
fn a_cached_ban_ends_at_its_expiry_though_its_ticks_skip_the_clock() {
    one_cpu();
    let mut tg = load(&Policy::default());
    let frame = udp("192.0.2.31");
    let until = coarse_ns() + 1_000 * MS;
    tg.maps
        .ban("192.0.2.31/32".parse().unwrap(), until)
        .unwrap();
    send(&tg, &frame, 1_000);
    assert_eq!(drops(&tg, Reason::Banned), 1_000, "dropped while banned");
    let k = key(&tg, "192.0.2.31");
    let entry = |tg: &Tollgate| {
        tg.maps
            .drop_cache()
            .entries()
            .into_iter()
            .find(|e| e.key == k)
            .expect("the ban's entry")
    };
    assert_ne!(
        entry(&tg).jiffy,
        0,
        "a drop this long is confirmed for its tick"
    );
    let mut sent = 1_000u64;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        assert!(
            std::time::Instant::now() < deadline,
            "the coarse clock stalled"
        );
        let (at, before) = (coarse_ns(), drops(&tg, Reason::Banned));
        send(&tg, &frame, 1_000);
        sent += 1_000;
        if at >= until {
            assert_eq!(
                drops(&tg, Reason::Banned),
                before,
                "a batch sent {} us past the expiry lost packets to the ban",
                (at - until) / 1_000
            );
        }
        if at > until + 20 * MS {
            break;
        }
    }
    // Unbanned, the batches meet the default limit: every packet is a
    // pass, a ban's drop or the limit's, for the source as for the host.
    let banned = drops(&tg, Reason::Banned);
    let limited = drops(&tg, Reason::RateLimitedPackets);
    assert_eq!(banned + limited + passes(&tg), sent);
    let s = tg.maps.source(&k).unwrap().expect("tracked");
    assert_eq!((s.packets, s.dropped), (sent, banned + limited));
    // A deny rule now: the pipeline writes the same entry anew, with no
    // tick confirmed (the ban's would not be this drop's).
    let deny = Policy {
        rules: vec![rule("192.0.2.31/32", Action::Deny)],
        ..Policy::default()
    };
    tg.maps.apply_policy(&deny, None).unwrap();
    send(&tg, &frame, 1);
    let e = entry(&tg);
    assert_eq!((e.reason, e.jiffy), (Reason::Deny as u32, 0));
}

/// The detectors tell a SYN flood by its SYNs: cached drops count them
/// too, over IPv4 and IPv6, and only bare SYNs.
#[test]
fn cached_drops_count_syns_as_the_pipeline_does() {
    one_cpu();
    let mut tg = load(&Policy::default());
    for (src, net) in [
        ("192.0.2.31", "192.0.2.31/32"),
        ("2001:db8:5::1", "2001:db8:5::/64"),
    ] {
        tg.maps
            .ban(net.parse().unwrap(), coarse_ns() + 600 * common::SEC)
            .unwrap();
        let dst = if src.contains(':') {
            "2001:db8:ffff::1"
        } else {
            "198.51.100.1"
        };
        let syn = Spec::syn(src, dst, 40000, 443).build();
        let ack = Spec::tcp(src, dst, 40000, 443).build();
        send(&tg, &syn, N);
        send(&tg, &ack, N);
        let k = key(&tg, src);
        let s = tg.maps.source(&k).unwrap().expect("tracked");
        assert_eq!((s.packets, s.syns), (2 * N as u64, N as u64), "{src}");
        assert_eq!(cached(&tg, &k), 2 * N as u64 - 1, "{src}");
    }
}

#[test]
fn a_denied_source_is_dropped_on_the_fast_path_and_an_allowed_one_never_is() {
    one_cpu();
    let tg = load(&Policy {
        rules: vec![
            rule("192.0.2.0/25", Action::Deny),
            rule("192.0.2.128/25", Action::Allow),
        ],
        ..Policy::default()
    });
    send(&tg, &udp("192.0.2.1"), N);
    send(&tg, &udp("192.0.2.200"), N);
    let c = tg.maps.counters().unwrap();
    assert_eq!(c.get(Reason::Deny, Verdict::Drop).packets, N as u64);
    assert_eq!(c.get(Reason::Allow, Verdict::Pass).packets, N as u64);
    assert_eq!(cached(&tg, &key(&tg, "192.0.2.1")), N as u64 - 1);
    assert_eq!(cached(&tg, &key(&tg, "192.0.2.200")), 0);
}

/// A packet limit on the live clock: what passes is the burst plus the
/// rate over the elapsed time (the coarse clock's ticks), and passes plus
/// drops are every packet sent, on one CPU and on two.
#[test]
fn an_over_limit_source_keeps_exact_counts_on_one_and_two_cpus() {
    for two in [false, true] {
        let tg = load(&Policy {
            default: pps(1_000, 50),
            ..Policy::default()
        });
        let frame = udp("192.0.2.40");
        let start = coarse_ns();
        if two {
            on_two_cpus(|| send(&tg, &frame, N));
        } else {
            send(&tg, &frame, N);
        }
        let elapsed = coarse_ns() - start;
        let sent = if two { 2 * N as u64 } else { N as u64 };
        let k = key(&tg, "192.0.2.40");
        let c = tg.maps.counters().unwrap();
        let passed = c.get(Reason::Pass, Verdict::Pass).packets;
        let dropped = drops(&tg, Reason::RateLimitedPackets);
        let s = tg.maps.source(&k).unwrap().expect("tracked");
        assert_eq!(passed + dropped, sent, "two CPUs: {two}");
        assert_eq!((s.packets, s.dropped), (sent, dropped), "two CPUs: {two}");
        // The clock moves in ticks of up to 4 ms: one tick's worth more.
        let allowed = 50 + 1_000 * (elapsed + 4_000_000) / 1_000_000_000 + 1;
        assert!(
            (50..=allowed).contains(&passed),
            "passed {passed}, allowed {allowed} over {elapsed} ns (two CPUs: {two})"
        );
        assert!(
            cached(&tg, &k) > dropped / 2,
            "most drops took the fast path: {} of {dropped}",
            cached(&tg, &k)
        );
    }
}

/// Three banned sources in one set of two ways: each packet of one pushes
/// another out, whose counts the kernel moves into its flow record.
#[test]
fn sources_sharing_a_set_push_each_other_out_without_losing_a_count() {
    let mut tg = load(&Policy::default());
    // IPv6 sources are keyed by their /64: 2001:db8:0:i::/64 for every i
    // offers more keys than sets.
    let net = |i: u32| format!("2001:db8:0:{i:x}::");
    let set = set_of(&key(&tg, &net(0)));
    let names: Vec<String> = (0..65_536)
        .map(net)
        .filter(|n| set_of(&key(&tg, n)) == set)
        .take(DROP_WAYS as usize + 1)
        .collect();
    assert_eq!(
        names.len(),
        DROP_WAYS as usize + 1,
        "{names:?} share a set of the {DROPS_PER_CPU} entries"
    );
    for n in &names {
        tg.maps
            .ban(
                format!("{n}/64").parse().unwrap(),
                coarse_ns() + 600 * common::SEC,
            )
            .unwrap();
    }
    const ROUNDS: u64 = 200;
    const EACH: u32 = 50;
    for _ in 0..ROUNDS {
        for n in &names {
            send(&tg, &udp(&format!("{n}1")), EACH);
        }
    }
    let each = ROUNDS * EACH as u64;
    assert_eq!(drops(&tg, Reason::Banned), each * names.len() as u64);
    for n in &names {
        let s = tg.maps.source(&key(&tg, n)).unwrap().expect("tracked");
        assert_eq!((s.packets, s.dropped), (each, each), "{n}");
    }
}

/// A source within its own limit whose /24's shared budget is spent: its
/// refusals after the first take the fast path until the budget has a
/// unit again, and count as the pipeline counts them. Under a rule that
/// also limits bytes none does (a longer packet may meet that bucket
/// before the prefix's).
#[test]
fn a_source_its_prefix_refuses_is_dropped_on_the_fast_path_and_counted_exactly() {
    one_cpu();
    for bytes in [false, true] {
        let mut default = pps(1_000_000, 1_000_000);
        if bytes {
            default.bytes = Some(Rate {
                per_sec: 1_000_000_000,
                burst: 1_000_000_000,
            });
        }
        let tg = load(&Policy {
            default,
            prefix: Some(PrefixLimit {
                v4_prefix: 24,
                v6_prefix: 48,
                // One unit a second: none comes back during the run.
                all: Some(Rate {
                    per_sec: 1,
                    burst: 10,
                }),
                unproven: None,
                monitor: false,
                wide: WideLimit::OFF,
            }),
            ..Policy::default()
        });
        let frame = udp("192.0.2.50");
        send(&tg, &frame, N);
        let k = key(&tg, "192.0.2.50");
        let s = tg.maps.source(&k).unwrap().expect("tracked");
        let passed = passes(&tg);
        let refused = drops(&tg, Reason::PrefixLimited);
        assert_eq!(passed + refused, N as u64, "byte limit: {bytes}");
        assert!((10..=11).contains(&passed), "passed {passed}");
        assert_eq!((s.packets, s.dropped), (N as u64, refused));
        assert_eq!(s.bytes, N as u64 * frame.len() as u64);
        let fast = if bytes { 0 } else { refused - 1 };
        assert_eq!(cached(&tg, &k), fast, "byte limit: {bytes}");
    }
}

/// While SYN cookies are on, the cookie gate judges a protected port's
/// TCP before the source's buckets: an over-limit source's UDP, over IPv4
/// and IPv6, and its TCP to other ports still take the fast path; its SYNs
/// to the protected port reach the gate and are answered with a cookie.
#[test]
fn with_syn_cookies_on_only_a_protected_ports_tcp_leaves_the_fast_path() {
    one_cpu();
    let mut tg = load(&Policy {
        default: pps(1, 1),
        ..Policy::default()
    });
    cookies_on(&mut tg, &[80], cookie_mode::ON);
    for src in ["192.0.2.60", "2001:db8:6::1"] {
        let k = key(&tg, src);
        // The first passes (the burst), the second is refused by the
        // pipeline, the rest by the cache.
        send(&tg, &udp(src), 100);
        assert_eq!(cached(&tg, &k), 98, "{src}");
        let dst = if src.contains(':') {
            "2001:db8:ffff::1"
        } else {
            "198.51.100.1"
        };
        send(&tg, &Spec::syn(src, dst, 40000, 443).build(), 10);
        assert_eq!(cached(&tg, &k), 108, "{src}: TCP to an unprotected port");
        // One run per SYN: the gate turns the frame into its SYN-ACK in
        // place, so a repeated run would see the answer, not the SYN.
        let syn = Spec::syn(src, dst, 40000, 80).build();
        for _ in 0..10 {
            send(&tg, &syn, 1);
        }
        assert_eq!(cached(&tg, &k), 108, "{src}: SYNs to the protected port");
    }
    let c = tg.maps.counters().unwrap();
    assert_eq!(c.get(Reason::SynCookie, Verdict::Tx).packets, 20);
}
