//! Jumbo frames: the kernel refuses Tollgate's single-buffer program on a
//! veth whose MTU is 9,000 (ERANGE), so the daemon attaches the
//! multi-buffer one (`xdp.frags`) natively there, and says so; it reads
//! the headers of 9,000-byte frames from their first buffer, counts each
//! frame's whole length, and limits them like any other. An MTU raised
//! under the single-buffer program gets the multi-buffer one put in its
//! place. The replay program takes jumbo frames too, through the same
//! multi-buffer path.

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
    maps::{PROG_LINEAR, PROG_MAIN},
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
    sends_frames_counted_whole_and_limited(&d, client, FRAME);
}

/// Sends 1,000 IPv4 UDP datagrams from `client` in frames of `frame`
/// bytes: each is counted whole, and the limit of 50 a second with a
/// burst of 100 holds.
fn sends_frames_counted_whole_and_limited(d: &Daemon, client: IpAddr, frame: u64) {
    let sent = udp(
        d.lab.client(),
        client,
        d.lab.server_v4(),
        9999,
        1_000,
        1_000,
        frame as usize - 14 - 20 - 8,
        Duration::from_secs(5),
    )
    .expect("sending the datagrams");
    assert_eq!(sent.packets, 1_000, "{sent:?}");
    let top = lab::daemon::eventually("the source's counts", Duration::from_secs(5), || {
        let top = d.json(&["top", "-n", "5"]);
        let me = top["sources"]
            .as_array()?
            .iter()
            .find(|s| {
                s["source"]
                    .as_str()
                    .is_some_and(|a| a.starts_with(&client.to_string()))
            })?
            .clone();
        (me["packets"] == 1_000).then_some(me)
    });
    assert_eq!(
        top["bytes"],
        1_000 * frame,
        "each frame counted whole: {top}"
    );
    let dropped = top["dropped"].as_u64().unwrap();
    let passed = 1_000 - dropped;
    // The burst (100) and 50 a second over the second it took.
    assert!(
        (100..=200).contains(&passed),
        "the limit held for {frame}-byte frames: {passed} passed; {top}"
    );
    let status = d.json(&["status"]);
    assert_eq!(
        status["by_reason"]["rate_limited_packets"], dropped,
        "{status}"
    );
}

/// A driver may take a larger MTU under the single-buffer program
/// (virtio_net does; veth takes one on the interface itself, its peer's
/// stays capped): the daemon puts the multi-buffer program into the link
/// at its next interval, says so, and the larger frames are judged and
/// counted whole.
#[test]
fn a_raised_mtu_swaps_in_the_multi_buffer_program() {
    let client: IpAddr = "192.0.2.11".parse().unwrap();
    let lab = Lab::new("jmr", &[client]).expect("building the lab");
    let d = Daemon::in_lab(lab, "jmr", |dir| {
        config(
            dir,
            "[default_limit]\npackets_per_second = 50\nburst_packets = 100\n",
        )
    });
    let program = || d.xdp_program().map(|(_, name)| name);
    assert_eq!(program().as_deref(), Some(PROG_LINEAR), "at MTU 1,500");
    // Under the peer's cap, and past what a 1,500-byte MTU frames.
    for (ns, iface) in [(&d.lab.server, SERVER_IF), (d.lab.client(), CLIENT_IF)] {
        ns.ip(&["link", "set", iface, "mtu", "3000"])
            .expect("raising the MTU to 3000 under the single-buffer program");
    }
    lab::daemon::eventually("the multi-buffer program", Duration::from_secs(5), || {
        (program().as_deref() == Some(PROG_MAIN)).then_some(())
    });
    let log = d.log();
    assert!(
        log.lines().any(|l| l.contains("\"event\":\"multi_buffer\"")
            && l.contains("\"now\":3000")
            && l.contains("grew from 1500 to 3000")),
        "the daemon says why: {log}"
    );
    // (These frames are past `mode::LINEAR_SURE`: the single-buffer
    // program would have counted them whole too. The program's name above
    // is what shows the swap.)
    sends_frames_counted_whole_and_limited(&d, client, 3_014);
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
