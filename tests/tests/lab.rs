//! The program attached in native mode to a veth in a network namespace,
//! with real traffic from a client namespace: limits, allow, deny and bans
//! on live packets. Everything stays inside namespaces this test creates.

mod common;

use std::{net::IpAddr, time::Duration};

use lab::{Lab, netns::SERVER_IF, traffic};
use monitor_common::types::SourceState;
use tollgate::{
    clock::monotonic_ns,
    loader::{AttachMode, LoadOptions, Tollgate},
    policy::{Action, Limit, Policy, Rate, Rule},
};

const RATE: u64 = 1_000;
const BURST: u64 = 200;

fn policy() -> Policy {
    Policy {
        default: Limit {
            packets: Some(Rate {
                per_sec: RATE,
                burst: BURST,
            }),
            bytes: None,
        },
        rules: vec![
            Rule::new("192.0.2.12/32".parse().unwrap(), Action::Allow),
            Rule::new("192.0.2.13/32".parse().unwrap(), Action::Deny),
        ],
        ..Policy::default()
    }
}

/// A lab with the given client addresses and Tollgate attached natively to
/// the server's veth.
fn attached(tag: &str, addrs: &[&str]) -> (Lab, Tollgate) {
    let addrs: Vec<IpAddr> = addrs.iter().map(|a| a.parse().unwrap()).collect();
    let lab = Lab::new(tag, &addrs).expect("building the namespace lab");
    let mut tg = Tollgate::load(&LoadOptions {
        max_sources: 4096,
        ..Default::default()
    })
    .expect("loading");
    tg.maps
        .apply_policy(&policy(), Some(monotonic_ns()))
        .expect("policy");
    lab.server
        .enter(|| tg.attach(SERVER_IF, AttachMode::Native))
        .expect("entering the server namespace")
        .expect("attaching in native mode to a veth");
    (lab, tg)
}

fn state(tg: &Tollgate, addr: &str) -> SourceState {
    tg.maps
        .source(&tg.maps.source_key(addr.parse().unwrap()).unwrap())
        .unwrap()
        .unwrap_or_else(|| panic!("{addr} was never seen by the program"))
}

fn send(lab: &Lab, src: &str, count: u64, pps: u64) -> traffic::Sent {
    let dst = if src.contains(':') {
        lab.server_v6()
    } else {
        lab.server_v4()
    };
    traffic::udp(
        lab.client(),
        src.parse().unwrap(),
        dst,
        9,
        count,
        pps,
        64,
        Duration::from_secs(20),
    )
    .expect("sending from the client namespace")
}

/// burst + rate·t through, within 2%, where t is the span the kernel saw
/// between the source's first and last packet.
fn assert_burst_plus_rate(s: &SourceState, what: &str) {
    let passed = s.packets - s.dropped;
    let t = (s.last_seen_ns - s.first_seen_ns) as f64 / 1e9;
    let expected = BURST as f64 + RATE as f64 * t;
    let err = (passed as f64 - expected) / expected;
    eprintln!(
        "{what}: {} packets over {t:.3} s, {passed} passed, expected {expected:.0} ({:+.2}%)",
        s.packets,
        err * 100.0
    );
    assert!(
        err.abs() <= 0.02,
        "{what}: {passed} passed, expected burst + rate·t = {expected:.0} (±2%)"
    );
}

#[test]
fn over_limit_source_gets_burst_plus_rate() {
    let (lab, tg) = attached("over", &["192.0.2.10"]);
    // 5,000 packets/s against 1,000/s for 2 s.
    let sent = send(&lab, "192.0.2.10", 10_000, 5_000);
    let s = state(&tg, "192.0.2.10");
    assert_eq!(s.packets, sent.packets, "the program saw every packet sent");
    assert!(s.dropped > 0);
    assert_burst_plus_rate(&s, "IPv4 /32 over its limit");
}

#[test]
fn ipv6_hosts_of_one_64_share_a_limit() {
    let (lab, tg) = attached("over6", &["2001:db8::10", "2001:db8::11"]);
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| send(&lab, "2001:db8::10", 5_000, 2_500));
        let b = s.spawn(|| send(&lab, "2001:db8::11", 5_000, 2_500));
        (a.join().unwrap(), b.join().unwrap())
    });
    let s = state(&tg, "2001:db8::10");
    assert_eq!(state(&tg, "2001:db8::11"), s, "one entry for the /64");
    assert_eq!(s.packets, a.packets + b.packets);
    assert_burst_plus_rate(&s, "two IPv6 hosts in one /64");
}

#[test]
fn under_limit_source_loses_nothing() {
    let (lab, tg) = attached("under", &["192.0.2.11"]);
    let sent = send(&lab, "192.0.2.11", 1_500, 800);
    let s = state(&tg, "192.0.2.11");
    assert_eq!(s.packets, sent.packets);
    assert_eq!(s.dropped, 0, "a source under its rate is never dropped");
}

#[test]
fn allowed_cidr_is_never_limited_and_denied_never_passes() {
    let (lab, tg) = attached("acl", &["192.0.2.12", "192.0.2.13"]);
    let (allowed, denied) = std::thread::scope(|s| {
        let a = s.spawn(|| send(&lab, "192.0.2.12", 20_000, 20_000));
        let d = s.spawn(|| send(&lab, "192.0.2.13", 2_000, 2_000));
        (a.join().unwrap(), d.join().unwrap())
    });
    let a = state(&tg, "192.0.2.12");
    assert_eq!(a.packets, allowed.packets);
    assert_eq!(a.dropped, 0, "allowed: never limited");
    assert!(
        a.packets > 5 * BURST,
        "the allowed source sent well past any limit"
    );
    let d = state(&tg, "192.0.2.13");
    assert_eq!(d.packets, denied.packets);
    assert_eq!(d.dropped, d.packets, "denied: nothing passes");
}

#[test]
fn banned_source_passes_again_after_expiry() {
    let (lab, mut tg) = attached("ban", &["192.0.2.14"]);
    let until = monotonic_ns() + 2_000_000_000;
    tg.maps
        .ban("192.0.2.14/32".parse().unwrap(), until)
        .expect("ban");
    // Inside the ban: 1 s of traffic under the rate, all dropped.
    let first = send(&lab, "192.0.2.14", 300, 300);
    let s = state(&tg, "192.0.2.14");
    assert_eq!((s.packets, s.dropped), (first.packets, first.packets));
    // Wait out the ban on the kernel's own clock (no daemon touches it).
    let left = until.saturating_sub(monotonic_ns());
    std::thread::sleep(Duration::from_nanos(left) + Duration::from_millis(50));
    let second = send(&lab, "192.0.2.14", 300, 300);
    let s = state(&tg, "192.0.2.14");
    assert_eq!(s.packets, first.packets + second.packets);
    assert_eq!(
        s.dropped, first.packets,
        "after expiry nothing more is dropped"
    );
}
