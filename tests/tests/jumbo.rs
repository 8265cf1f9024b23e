//! Jumbo frames: the kernel refuses Tollgate's single-buffer program on a
//! veth whose MTU is 9,000 (ERANGE), so the daemon attaches the
//! multi-buffer one (`xdp.frags`) natively there, and says so; it reads
//! the headers of 9,000-byte frames from their first buffer, counts each
//! frame's whole length, and limits them like any other. The replay program takes them too, through
//! the same multi-buffer path.

mod common;

use std::{net::IpAddr, time::Duration};

use common::{SEC, load, pps, report};
use lab::{
    Lab,
    daemon::{Daemon, config},
    netns::{CLIENT_IF, SERVER_IF},
    packets::Spec,
    traffic::udp,
};
use monitor_common::{
    maps::PROG_MAIN,
    reason::{Reason, Verdict},
};
use tollgate::policy::Policy;

/// A 9,000-byte IPv4 packet's UDP payload, and its frame on the wire.
const PAYLOAD: usize = 9_000 - 20 - 8;
const FRAME: u64 = 9_000 + 14;

#[test]
fn a_native_attach_at_mtu_9000_passes_and_limits_9000_byte_frames() {
    let client: IpAddr = "192.0.2.10".parse().unwrap();
    let lab = Lab::new("jmb", &[client]).expect("building the lab");
    for (ns, iface) in [(&lab.server, SERVER_IF), (lab.client(), CLIENT_IF)] {
        ns.ip(&["link", "set", iface, "mtu", "9000"])
            .expect("setting MTU 9000");
    }
    let d = Daemon::in_lab(lab, "jmb", |dir| {
        config(
            dir,
            "[default_limit]\npackets_per_second = 50\nburst_packets = 100\n",
        )
    });
    assert_eq!(
        d.xdp_program().map(|(_, name)| name).as_deref(),
        Some(PROG_MAIN),
        "the kernel refused the single-buffer program at MTU 9,000 and took the multi-buffer one"
    );
    assert!(
        d.log().contains("\"event\":\"multi_buffer\""),
        "the daemon says why: {}",
        d.log()
    );
    let sent = udp(
        d.lab.client(),
        client,
        d.lab.server_v4(),
        9999,
        1_000,
        1_000,
        PAYLOAD,
        Duration::from_secs(5),
    )
    .expect("sending 9,000-byte datagrams");
    assert_eq!(sent.packets, 1_000, "{sent:?}");
    let top = lab::daemon::eventually("the source's counts", Duration::from_secs(5), || {
        let top = d.json(&["top", "-n", "5"]);
        let me = top["sources"]
            .as_array()?
            .iter()
            .find(|s| {
                s["source"]
                    .as_str()
                    .is_some_and(|a| a.starts_with("192.0.2.10"))
            })?
            .clone();
        (me["packets"] == 1_000).then_some(me)
    });
    assert_eq!(
        top["bytes"],
        1_000 * FRAME,
        "each frame counted whole: {top}"
    );
    let dropped = top["dropped"].as_u64().unwrap();
    let passed = 1_000 - dropped;
    // The burst (100) and 50 a second over the second it took.
    assert!(
        (100..=200).contains(&passed),
        "the limit held for jumbo frames: {passed} passed; {top}"
    );
    let status = d.json(&["status"]);
    assert_eq!(
        status["by_reason"]["rate_limited_packets"], dropped,
        "{status}"
    );
}

#[test]
fn the_replay_program_judges_jumbo_frames_whole_and_limits_them() {
    let mut tg = load(&Policy {
        default: pps(1, 2),
        ..Policy::default()
    });
    let frame = Spec::udp("192.0.2.10", "198.51.100.1", 40000, 53)
        .payload(PAYLOAD)
        .build();
    assert_eq!(frame.len() as u64, FRAME);
    let verdicts: Vec<_> = (0..3)
        .map(|_| {
            let r = report(&mut tg, &frame, SEC);
            (r.verdict, r.reason)
        })
        .collect();
    assert_eq!(
        verdicts,
        [
            (Some("pass"), Some("pass")),
            (Some("pass"), Some("pass")),
            (Some("drop"), Some("rate_limited_packets"))
        ]
    );
    let c = tg.maps.counters().unwrap();
    assert_eq!(c.get(Reason::Pass, Verdict::Pass).bytes, 2 * FRAME);
    assert_eq!(
        c.get(Reason::RateLimitedPackets, Verdict::Drop).bytes,
        FRAME
    );
}
