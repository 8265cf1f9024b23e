//! `monitor-ebpf/src/drops.rs` on the real kernel: the production program
//! (live clock) through BPF_PROG_TEST_RUN. A banned, denied or over-limit
//! source's packets after the first take the drop cache's fast path, and
//! every count stays exact: the global counters by reason and the
//! source's own packets, bytes and drops equal what was sent, whichever
//! path each packet took, on one CPU and on two at once, also when two
//! sources share a cache set and push each other out.

mod common;

use common::{key, load, on_two_cpus, pps, rule, udp};
use lab::packets::Spec;
use monitor_common::{
    drops::{DROP_WAYS, DROPS_PER_CPU, set_of},
    maps::PROG_MAIN,
    reason::{Reason, Verdict},
    types::SourceKey,
};
use tollgate::{
    clock::coarse_ns,
    loader::Tollgate,
    policy::{Action, Policy},
};

const N: u32 = 100_000;

/// Runs the production program `repeat` times on `frame`.
fn send(tg: &Tollgate, frame: &[u8], repeat: u32) {
    tg.run_program(PROG_MAIN, frame, repeat)
        .unwrap_or_else(|e| panic!("BPF_PROG_TEST_RUN of {PROG_MAIN}: {e:#}"));
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
