//! `monitor-ebpf/src/mode.rs` on the real kernel: the production
//! pipeline's two entries, single-buffer (`tollgate_linear`, attached
//! wherever the MTU fits a buffer) and multi-buffer (`tollgate`, for jumbo
//! MTUs), judge, count and answer SYNs alike. They differ only in how they
//! read a frame's length and which jump table leads to their SYN-ACK
//! program, so the same frames through each, on two loads with the same
//! policy, leave the same counters and source records, and each answers
//! a SYN to a protected port with its own SYN-ACK program.

mod common;

use common::{cookies_on, key, pps, rule, run_out, udp};
use lab::packets::{Spec, linux_syn_options};
use monitor_common::{
    maps::{PROG_LINEAR, PROG_MAIN},
    reason::{Reason, Verdict},
    syncookie::{cookie_event, cookie_mode},
};
use tollgate::{
    clock::coarse_ns,
    loader::{LoadOptions, Tollgate},
    policy::{Action, Policy},
};

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;

/// The tests' policy: one packet a second with a burst of 20 (so a
/// source's passes are its burst for the whole test), 198.18.0.0/15
/// denied; 192.0.2.30 is banned by `load_both`.
fn policy() -> Policy {
    Policy {
        default: pps(1, 20),
        rules: vec![rule("198.18.0.0/15", Action::Deny)],
        ..Policy::default()
    }
}

/// The same policy and ban in two loads, one per entry.
fn load_both() -> [(Tollgate, &'static str); 2] {
    [PROG_LINEAR, PROG_MAIN].map(|prog| {
        let mut tg = Tollgate::load(&LoadOptions {
            max_sources: 4096,
            multi_buffer: prog == PROG_MAIN,
            ..LoadOptions::default()
        })
        .expect("loading Tollgate's XDP object");
        tg.maps
            .apply_policy(&policy(), Some(0))
            .expect("applying the test policy");
        tg.maps
            .ban(
                "192.0.2.30/32".parse().unwrap(),
                coarse_ns() + 600 * common::SEC,
            )
            .unwrap();
        cookies_on(&mut tg, &[443], cookie_mode::ON);
        (tg, prog)
    })
}

/// A 1,500-byte IPv6 UDP frame under two VLAN tags.
fn big_v6() -> Vec<u8> {
    let frame = Spec::udp("2001:db8:7::10", "2001:db8:ffff::1", 40000, 53)
        .vlans(&[100, 200])
        .payload(1500 - 14 - 8 - 40 - 8)
        .build();
    assert_eq!(frame.len(), 1500);
    frame
}

/// A 9,014-byte IPv4 UDP frame. BPF_PROG_TEST_RUN puts what does not fit
/// a page in further buffers, for a single-buffer program too, so its
/// first buffer holds about 3.5 KiB, past `mode::LINEAR_SURE`: the
/// single-buffer program must ask the helper for its length, or count it
/// short (as veth, which fills a page first, may hand it such a frame).
fn long_v4() -> Vec<u8> {
    let frame = Spec::udp("192.0.2.12", "198.51.100.1", 40000, 53)
        .payload(9000 - 20 - 8)
        .build();
    assert_eq!(frame.len(), 9014);
    frame
}

#[test]
fn both_entries_judge_count_and_answer_syns_alike() {
    let frames: Vec<(&str, Vec<u8>, u32)> = vec![
        ("over its limit after 20", udp("192.0.2.10"), 200),
        ("banned", udp("192.0.2.30"), 100),
        ("denied", udp("198.18.0.10"), 100),
        ("IPv6 under two VLAN tags", big_v6(), 10),
        ("9,014 bytes, in buffers", long_v4(), 10),
        ("truncated", udp("192.0.2.11")[..30].to_vec(), 5),
    ];
    let both = load_both();
    let mut actions = Vec::new();
    for (tg, prog) in &both {
        let mut seen = Vec::new();
        for (what, frame, n) in &frames {
            let mut per_frame = [0u32; 4];
            for _ in 0..*n {
                let (action, _) = tg
                    .run_program(prog, frame, 1)
                    .unwrap_or_else(|e| panic!("{prog} on {what}: {e:#}"));
                per_frame[action as usize & 3] += 1;
            }
            seen.push((*what, per_frame));
        }
        // A SYN to the protected port is answered by this entry's own
        // SYN-ACK program, reached through its own jump table.
        let syn = Spec::syn("192.0.2.50", "198.51.100.1", 40000, 443)
            .tcp_options(&linux_syn_options(0x1234_5678, 8))
            .build();
        let (action, reply) = run_out(tg, prog, &syn);
        assert_eq!(action, XDP_TX, "{prog}: the SYN is answered from XDP");
        assert_eq!(
            reply[..6],
            syn[6..12],
            "{prog}: sent back to the SYN's sender"
        );
        let ev = tg.maps.cookie_events().unwrap();
        assert_eq!(
            (
                ev[cookie_event::SENT as usize],
                ev[cookie_event::FAILED as usize]
            ),
            (1, 0),
            "{prog}: the SYN-ACK program ran"
        );
        actions.push(seen);
    }
    assert_eq!(actions[0], actions[1], "the same actions, frame by frame");
    let over = actions[0][0].1;
    assert_eq!(
        (over[XDP_PASS as usize], over[XDP_DROP as usize]),
        (20, 180),
        "the burst passes, the rest is dropped"
    );

    let [(a, _), (b, _)] = &both;
    let (ca, cb) = (a.maps.counters().unwrap(), b.maps.counters().unwrap());
    for (reason, verdict) in [
        (Reason::Pass, Verdict::Pass),
        (Reason::RateLimitedPackets, Verdict::Drop),
        (Reason::Banned, Verdict::Drop),
        (Reason::Deny, Verdict::Drop),
        (Reason::Malformed, Verdict::Drop),
        (Reason::SynCookie, Verdict::Tx),
    ] {
        let (x, y) = (ca.get(reason, verdict), cb.get(reason, verdict));
        assert_eq!(
            (x.packets, x.bytes),
            (y.packets, y.bytes),
            "{reason:?}/{verdict:?}: the same packets and bytes"
        );
    }
    assert_eq!(ca.get(Reason::Banned, Verdict::Drop).packets, 100);
    // Each source's record: every packet and byte, and its drops.
    for (addr, frame, n) in [
        ("192.0.2.10", udp("192.0.2.10"), 200u64),
        ("192.0.2.30", udp("192.0.2.30"), 100),
        ("2001:db8:7::10", big_v6(), 10),
        ("192.0.2.12", long_v4(), 10),
    ] {
        let record = |tg: &Tollgate| {
            let s = tg.maps.source(&key(tg, addr)).unwrap().expect("tracked");
            (s.packets, s.bytes, s.dropped)
        };
        assert_eq!(record(a), record(b), "{addr}");
        assert_eq!(
            record(a).1,
            n * frame.len() as u64,
            "{addr}: every byte counted"
        );
    }
}
