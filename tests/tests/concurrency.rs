//! Two CPUs at once. The buckets are single GCRA words updated with BPF
//! compare-and-swap and the flow counters with BPF atomic adds: the
//! production program runs on both CPUs at full speed against one source,
//! and nothing may be lost and the limit must hold. New sources claim
//! slots with a compare-and-swap on the clock hand: both CPUs claim on a
//! full table, and the index and the slots must stay in step.

mod common;

use std::sync::Barrier;

use common::{key, load};
use lab::packets::Spec;
use monitor_common::{
    maps::{PROG_MAIN, source_event},
    reason::{Reason, Verdict},
};
use tollgate::policy::{Limit, Policy, Rate};

fn pin_to_cpu(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is valid; we set one bit and apply it to
    // the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        let rc = libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        assert_eq!(
            rc,
            0,
            "pinning to CPU {cpu}: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// Runs `work` on CPUs 0 and 1 at once: two pinned threads released
/// together. BPF_PROG_TEST_RUN runs the program on the calling CPU, so
/// the two run it truly in parallel.
fn on_two_cpus(work: impl Fn() + Sync) {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert!(
        cpus >= 2,
        "this test needs two CPUs; the machine has {cpus}"
    );
    let start = Barrier::new(2);
    std::thread::scope(|scope| {
        for cpu in 0..2 {
            let (start, work) = (&start, &work);
            scope.spawn(move || {
                pin_to_cpu(cpu);
                start.wait();
                work();
            });
        }
    });
}

#[test]
fn two_cpus_on_one_source_lose_no_update() {
    let rate = 2_000_000;
    // The live clock advances a tick (4 ms) at a time: the burst must
    // cover a tick of the rate, as the daemon requires.
    let burst = 20_000;
    let policy = Policy {
        default: Limit {
            packets: Some(Rate {
                per_sec: rate,
                burst,
            }),
            bytes: None,
        },
        ..Policy::default()
    };
    policy
        .check_bursts(tollgate::clock::coarse_tick_ns())
        .expect("a policy the daemon would accept");
    let mut tg = load(&policy);
    // The live program reads bpf_ktime_get_ns: base the bucket clock at
    // "now", as the daemon does.
    tg.maps
        .apply_policy(&policy, Some(tollgate::clock::monotonic_ns()))
        .unwrap();
    let frame = Spec::udp("192.0.2.99", "198.51.100.1", 1, 2).build();
    const REPEAT: u32 = 2_000_000;
    const ROUNDS: u32 = 3;
    on_two_cpus(|| {
        for _ in 0..ROUNDS {
            tg.run_program(PROG_MAIN, &frame, REPEAT)
                .expect("BPF_PROG_TEST_RUN of the production program");
        }
    });
    let s = tg
        .maps
        .source(&key(&tg, "192.0.2.99"))
        .unwrap()
        .expect("tracked");
    let total = 2 * ROUNDS as u64 * REPEAT as u64;
    assert_eq!(s.packets, total, "atomic adds lost no packet count");
    assert_eq!(s.bytes, total * frame.len() as u64);
    let passed = s.packets - s.dropped;
    let window_ns = s.last_seen_ns - s.first_seen_ns;
    let bound = burst + rate * window_ns / 1_000_000_000 + 1;
    let c = tg.maps.counters().unwrap();
    eprintln!(
        "{total} packets on 2 CPUs in {:.3} s: {passed} passed, bound {bound}; CAS retries exhausted {} times",
        window_ns as f64 / 1e9,
        c.source_events[source_event::CAS_EXHAUSTED as usize]
    );
    assert!(
        passed <= bound,
        "{passed} passed, more than burst + rate·T = {bound}: a lost bucket update"
    );
    // The offered load (tens of Mpps) is far above the rate, so the bucket
    // stays saturated: what passes is close to the bound, not starved.
    assert!(
        passed as f64 >= 0.9 * bound as f64,
        "{passed} passed, far under {bound}"
    );
}

/// Two CPUs claiming slots at once on a full table: both send the same
/// 20,000 new sources in the same order, so they race for the clock hand
/// and to index the same source. Afterwards the index and the slots agree
/// (no entry left pointing at another source's slot, no source in two
/// slots), every slot reuse was counted, and the index has room: nothing
/// leaked.
#[test]
fn two_cpus_claiming_slots_keep_the_index_and_the_slots_in_step() {
    let policy = Policy {
        default: Limit {
            packets: Some(Rate {
                per_sec: 1_000_000,
                burst: 1_000_000,
            }),
            bytes: None,
        },
        ..Policy::default()
    };
    let mut tg = common::load_with(256, &policy);
    // The live program's clock: base the buckets at "now", as the daemon does.
    tg.maps
        .apply_policy(&policy, Some(tollgate::clock::monotonic_ns()))
        .unwrap();
    const SOURCES: u32 = 20_000;
    let frames: Vec<Vec<u8>> = (0..SOURCES)
        .map(|i| {
            let src = format!("2001:db8:{:x}:{:x}::1", i >> 16, i & 0xffff);
            Spec::udp(&src, "2001:db8:ffff::1", 1, 2).build()
        })
        .collect();
    on_two_cpus(|| {
        for f in &frames {
            tg.run_program(PROG_MAIN, f, 1)
                .expect("BPF_PROG_TEST_RUN of the production program");
        }
    });
    let c = tg.maps.counters().unwrap();
    let event = |e: u32| c.source_events[e as usize];
    let (created, evicted, failed) = (
        event(source_event::CREATED),
        event(source_event::EVICTED),
        event(source_event::INSERT_FAILED),
    );
    let (swept, indexed) = common::swept_and_indexed(&tg);
    eprintln!(
        "2 x {SOURCES} packets: {created} sources created, {evicted} evicted, {failed} untracked (claims that lost the hand twice), {} tracked",
        swept.len()
    );
    let distinct = {
        let mut d = swept.clone();
        d.dedup();
        d.len()
    };
    assert_eq!(distinct, swept.len(), "a source in two slots");
    assert_eq!(swept, indexed, "index and slots disagree");
    // Full but for slots given back by CPUs that lost the race to index a
    // source (refilled when the hand comes round).
    assert!(
        !swept.is_empty() && swept.len() <= 256,
        "{} tracked",
        swept.len()
    );
    assert_eq!(
        created - evicted,
        swept.len() as u64,
        "a slot reuse not counted"
    );
    assert_eq!(
        c.get(Reason::Untracked, Verdict::Pass).packets,
        failed,
        "every untracked packet counted"
    );
    // The index has room for a new source: a claim succeeds at once.
    let fresh = Spec::udp("192.0.2.200", "198.51.100.1", 1, 2).build();
    tg.run_program(PROG_MAIN, &fresh, 1).unwrap();
    assert!(
        tg.maps.source(&key(&tg, "192.0.2.200")).unwrap().is_some(),
        "a new source after the race is tracked"
    );
}
