//! SYN cookies (`monitor-ebpf/src/cookie/`) on the real kernel, through
//! BPF_PROG_TEST_RUN of the production program (its tail call into
//! `tollgate_synack` included): the SYN-ACK it builds is a valid TCP
//! segment answering the SYN, with the options the SYN offered; the ACK
//! carrying its cookie passes and verifies the source, which the kernel's
//! own cookie check decides; forged and replayed ACKs are dropped; a
//! verified source's next SYN goes to the stack; bans and deny rules win
//! over the cookie; VLAN tags and IPv6 extension headers are handled; the
//! replay program says what a SYN would get without answering it.

mod common;

use std::net::IpAddr;

use common::{SEC, cookies_on, judge, load, rule, run_out};
use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TcpOptionElement, TransportSlice};
use lab::packets::{Exts, Spec, linux_syn_options};
use monitor_common::{
    maps::PROG_LINEAR,
    reason::{Reason, Verdict},
    syncookie::{MAX_VERIFIED, VerifiedKey, cookie_event, cookie_mode},
};
use tollgate::{
    loader::Tollgate,
    policy::{Action, Policy},
};

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;
const SERVER4: &str = "198.51.100.1";
const SERVER6: &str = "2001:db8:ffff::1";
const PORT: u16 = 443;
/// The SYN's sequence number (as `Spec` builds it) and TSval.
const ISN: u32 = 1000;
const TSVAL: u32 = 0x1234_5678;

/// A SYN as Linux sends it, window scale 8.
fn syn(src: &str, sport: u16) -> Spec {
    let dst = if src.contains(':') { SERVER6 } else { SERVER4 };
    Spec::syn(src, dst, sport, PORT).tcp_options(&linux_syn_options(TSVAL, 8))
}

/// The client's ACK completing the handshake: `ack` is the SYN-ACK's
/// sequence number plus one when the client is real.
fn ack(src: &str, sport: u16, ack: u32) -> Vec<u8> {
    let eth = PacketBuilder::ethernet2(lab::packets::SRC_MAC, lab::packets::DST_MAC);
    let ip = match src.parse::<IpAddr>().unwrap() {
        IpAddr::V4(s) => eth.ipv4(
            s.octets(),
            SERVER4.parse::<std::net::Ipv4Addr>().unwrap().octets(),
            64,
        ),
        IpAddr::V6(s) => eth.ipv6(
            s.octets(),
            SERVER6.parse::<std::net::Ipv6Addr>().unwrap().octets(),
            64,
        ),
    };
    let mut out = Vec::new();
    ip.tcp(sport, PORT, ISN + 1, 502)
        .ack(ack)
        .write(&mut out, &[])
        .unwrap();
    out
}

/// Tollgate with `policy` and the cookies on for `PORT`.
fn with_cookies(policy: &Policy) -> Tollgate {
    let mut tg = load(policy);
    cookies_on(&mut tg, &[PORT], cookie_mode::ON);
    tg
}

/// Runs the production program (the single-buffer one; `mode.rs` tests
/// the multi-buffer one against it) on `frame`: the action and the frame
/// as it left the program.
fn run(tg: &Tollgate, frame: &[u8]) -> (u32, Vec<u8>) {
    run_out(tg, PROG_LINEAR, frame)
}

/// Checks that `reply` is a valid SYN-ACK answering `syn`; returns its
/// sequence number (the cookie).
fn check_synack(syn: &[u8], reply: &[u8], mss: u16) -> u32 {
    let s = SlicedPacket::from_ethernet(syn).unwrap();
    let r = SlicedPacket::from_ethernet(reply).expect("the reply parses");
    assert_eq!(
        reply[0..6],
        syn[6..12],
        "destination MAC is the SYN's source"
    );
    assert_eq!(reply[6..12], syn[0..6]);
    assert_eq!(
        r.vlan_ids().as_slice(),
        s.vlan_ids().as_slice(),
        "VLAN tags kept"
    );
    let (Some(TransportSlice::Tcp(st)), Some(TransportSlice::Tcp(rt))) =
        (&s.transport, &r.transport)
    else {
        panic!("both are TCP")
    };
    let (src, dst) = match (&s.net, &r.net) {
        (Some(NetSlice::Ipv4(si)), Some(NetSlice::Ipv4(ri))) => {
            let h = ri.header().to_header();
            assert_eq!(h.header_checksum, h.calc_header_checksum(), "IPv4 checksum");
            assert_eq!(h.time_to_live, 61);
            assert!(h.dont_fragment);
            assert_eq!(
                rt.to_header().calc_checksum_ipv4(&h, rt.payload()).unwrap(),
                rt.checksum(),
                "TCP checksum over the IPv4 pseudo-header"
            );
            (
                si.header().source().to_vec(),
                ri.header().destination().to_vec(),
            )
        }
        (Some(NetSlice::Ipv6(si)), Some(NetSlice::Ipv6(ri))) => {
            let h = ri.header().to_header();
            assert_eq!(
                h.next_header,
                etherparse::IpNumber::TCP,
                "no extension headers echoed"
            );
            assert_eq!(h.hop_limit, 61);
            assert_eq!(
                rt.to_header().calc_checksum_ipv6(&h, rt.payload()).unwrap(),
                rt.checksum(),
                "TCP checksum over the IPv6 pseudo-header"
            );
            (
                si.header().source().to_vec(),
                ri.header().destination().to_vec(),
            )
        }
        _ => panic!("same family both ways"),
    };
    assert_eq!(src, dst, "the reply goes to the SYN's source");
    assert!(rt.syn() && rt.ack() && !rt.rst() && !rt.fin());
    assert_eq!(
        (rt.source_port(), rt.destination_port()),
        (st.destination_port(), st.source_port())
    );
    assert_eq!(rt.acknowledgment_number(), st.sequence_number() + 1);
    assert!(rt.payload().is_empty());
    let opts: Vec<_> = rt.options_iterator().map(|o| o.unwrap()).collect();
    assert!(
        opts.contains(&TcpOptionElement::MaximumSegmentSize(mss)),
        "{opts:?}"
    );
    assert!(opts.contains(&TcpOptionElement::SelectiveAcknowledgementPermitted));
    assert!(opts.contains(&TcpOptionElement::WindowScale(9)));
    let ts = opts
        .iter()
        .find_map(|o| match o {
            TcpOptionElement::Timestamp(val, ecr) => Some((*val, *ecr)),
            _ => None,
        })
        .expect("timestamps echoed");
    assert_eq!(ts.1, TSVAL, "TSecr is the client's TSval");
    assert_eq!(
        ts.0 & 0x3f,
        8 | 1 << 4,
        "the TSval carries wscale 8 and SACK for the kernel"
    );
    rt.sequence_number()
}

#[test]
fn a_cookie_handshake_verifies_the_source_and_forged_acks_are_dropped() {
    let tg = with_cookies(&Policy::default());
    let client = "192.0.2.50";
    let s = syn(client, 40000).build();
    let (action, reply) = run(&tg, &s);
    assert_eq!(action, XDP_TX, "the SYN is answered from XDP");
    let cookie = check_synack(&s, &reply, 1400);
    assert_eq!(
        tg.maps.sources().unwrap().len(),
        0,
        "an unverified SYN claims no source slot"
    );

    // A forged ACK (wrong cookie), the right cookie replayed from another
    // port or address, and a stale one: the kernel's check refuses them.
    // A cookie's top 8 bits count minutes (`tcp_cookie_time`) and it is
    // good for two: the same cookie marked three minutes older is refused
    // by that age test. (A real cookie of three minutes ago would need
    // the kernel's secret to make, and its hash would differ too.)
    let stale = cookie.wrapping_sub(3 << 24);
    for (src, sport, ackno) in [
        (client, 40000, cookie.wrapping_add(2)),
        (client, 40001, cookie.wrapping_add(1)),
        ("192.0.2.51", 40000, cookie.wrapping_add(1)),
        (client, 40000, stale.wrapping_add(1)),
    ] {
        assert_eq!(
            run(&tg, &ack(src, sport, ackno)).0,
            XDP_DROP,
            "{src}:{sport} ack {ackno}"
        );
    }
    assert_eq!(
        tg.maps
            .verified_sources(tollgate::clock::coarse_ns())
            .unwrap(),
        0
    );

    assert_eq!(
        run(&tg, &ack(client, 40000, cookie.wrapping_add(1))).0,
        XDP_PASS
    );
    assert_eq!(
        tg.maps
            .verified_sources(tollgate::clock::coarse_ns())
            .unwrap(),
        1,
        "the source is verified"
    );
    // Its next connection goes to the stack; another source still gets a
    // cookie.
    assert_eq!(run(&tg, &syn(client, 40002).build()).0, XDP_PASS);
    assert_eq!(run(&tg, &syn("192.0.2.52", 40000).build()).0, XDP_TX);

    let ev = tg.maps.cookie_events().unwrap();
    assert_eq!(ev[cookie_event::SENT as usize], 2);
    assert_eq!(ev[cookie_event::ACK_INVALID as usize], 4);
    assert_eq!(ev[cookie_event::ACK_VALID as usize], 1);
    assert_eq!(ev[cookie_event::VERIFIED_SYN as usize], 1);
    assert_eq!(ev[cookie_event::FAILED as usize], 0);
    let c = tg.maps.counters().unwrap();
    assert_eq!(c.get(Reason::SynCookie, Verdict::Tx).packets, 2);
    assert_eq!(c.get(Reason::CookieInvalid, Verdict::Drop).packets, 4);
}

#[test]
fn ipv6_with_extension_headers_and_vlan_tags_get_cookies() {
    let tg = with_cookies(&Policy::default());
    let client = "2001:db8:1:2::50";
    let s = syn(client, 40000)
        .vlans(&[100, 200])
        .exts(Exts {
            hop_by_hop: true,
            dest_opts: true,
            ..Exts::default()
        })
        .build();
    let (action, reply) = run(&tg, &s);
    assert_eq!(action, XDP_TX);
    let cookie = check_synack(&s, &reply, 1380);
    assert_eq!(
        run(&tg, &ack(client, 40000, cookie.wrapping_add(1))).0,
        XDP_PASS
    );
    assert_eq!(
        tg.maps
            .verified_sources(tollgate::clock::coarse_ns())
            .unwrap(),
        1
    );

    // IPv4 options are not echoed either; the reply is still valid.
    let s4 = syn("192.0.2.60", 40000)
        .ipv4_options(&[1, 1, 1, 0])
        .vlans(&[7])
        .build();
    let (action, reply) = run(&tg, &s4);
    assert_eq!(action, XDP_TX);
    check_synack(&s4, &reply, 1400);
}

#[test]
fn bans_and_deny_rules_win_over_cookies_and_allowed_sources_skip_them() {
    let mut tg = with_cookies(&Policy {
        rules: vec![
            rule("203.0.113.0/24", Action::Deny),
            rule("198.51.100.128/25", Action::Allow),
        ],
        ..Policy::default()
    });
    tg.maps
        .ban("192.0.2.66/32".parse().unwrap(), u64::MAX / 2)
        .unwrap();
    assert_eq!(
        run(&tg, &syn("192.0.2.66", 40000).build()).0,
        XDP_DROP,
        "banned"
    );
    assert_eq!(
        run(&tg, &syn("203.0.113.9", 40000).build()).0,
        XDP_DROP,
        "denied"
    );
    assert_eq!(
        run(&tg, &syn("198.51.100.200", 40000).build()).0,
        XDP_PASS,
        "allowed"
    );
    assert_eq!(run(&tg, &syn("192.0.2.67", 40000).build()).0, XDP_TX);
    // An allowed source's handshake went to the socket: its ACK carries
    // no cookie and must pass.
    assert_eq!(
        run(&tg, &ack("198.51.100.200", 40000, 77)).0,
        XDP_PASS,
        "an allowed source's ACK"
    );
    let c = tg.maps.counters().unwrap();
    assert_eq!(c.get(Reason::Banned, Verdict::Drop).packets, 1);
    assert_eq!(c.get(Reason::Deny, Verdict::Drop).packets, 1);
}

#[test]
fn while_watching_syns_go_to_the_stack_and_valid_cookies_still_verify() {
    let mut tg = with_cookies(&Policy::default());
    let client = "192.0.2.70";
    let (_, reply) = run(&tg, &syn(client, 40000).build());
    let cookie = u32::from_be_bytes(reply[38..42].try_into().unwrap());
    cookies_on(&mut tg, &[PORT], cookie_mode::WATCH);
    assert_eq!(run(&tg, &syn("192.0.2.71", 40000).build()).0, XDP_PASS);
    // Not a cookie: passed while watching.
    assert_eq!(run(&tg, &ack("192.0.2.72", 40000, 77)).0, XDP_PASS);
    assert_eq!(
        run(&tg, &ack(client, 40000, cookie.wrapping_add(1))).0,
        XDP_PASS
    );
    assert_eq!(
        tg.maps
            .verified_sources(tollgate::clock::coarse_ns())
            .unwrap(),
        1
    );
    // Other ports are never touched.
    let other = Spec::syn("192.0.2.73", SERVER4, 40000, 8080).build();
    cookies_on(&mut tg, &[PORT], cookie_mode::ON);
    assert_eq!(run(&tg, &other).0, XDP_PASS);
}

#[test]
fn sources_seen_before_the_cookies_turned_on_keep_their_connections() {
    let mut tg = load(&Policy::default());
    cookies_on(&mut tg, &[PORT], cookie_mode::WATCH);
    // An established connection's ACK while watching: the source is seen.
    assert_eq!(run(&tg, &ack("192.0.2.90", 40000, 77)).0, XDP_PASS);
    std::thread::sleep(std::time::Duration::from_millis(20));
    cookies_on(&mut tg, &[PORT], cookie_mode::ON);
    assert_eq!(
        run(&tg, &ack("192.0.2.90", 40000, 78)).0,
        XDP_PASS,
        "known before"
    );
    assert_eq!(
        run(&tg, &ack("192.0.2.91", 40000, 78)).0,
        XDP_DROP,
        "new since"
    );
    // A new connection from the known source still gets a cookie.
    assert_eq!(run(&tg, &syn("192.0.2.90", 40001).build()).0, XDP_TX);
}

#[test]
fn replay_says_a_syn_would_get_a_cookie_and_sends_nothing() {
    let mut tg = with_cookies(&Policy::default());
    let j = judge(&mut tg, &syn("192.0.2.80", 40000).build(), SEC);
    assert_eq!((j.reason(), j.verdict()), (Reason::SynCookie, Verdict::Tx));
    assert_eq!(
        tg.maps.cookie_events().unwrap()[cookie_event::SENT as usize],
        0
    );
}

/// A filler source for the verified map: 2001:db8:f000::/48 and `i`.
fn filler(i: u32) -> (std::net::Ipv6Addr, VerifiedKey) {
    let mut o = [0u8; 16];
    o[..6].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0xf0, 0x00]);
    o[12..].copy_from_slice(&i.to_be_bytes());
    let words =
        std::array::from_fn(|w| u32::from_ne_bytes(o[w * 4..w * 4 + 4].try_into().unwrap()));
    (o.into(), VerifiedKey::v6(&words))
}

#[test]
fn a_full_verified_map_forgets_the_oldest_which_prove_themselves_again() {
    let mut tg = with_cookies(&Policy::default());
    let until = tollgate::clock::coarse_ns() + 3600 * SEC;
    let overfill = MAX_VERIFIED + 1024;
    tg.maps
        .remember_verified((0..overfill).map(|i| (filler(i).1, until)))
        .expect("filling the verified map");
    let held = tg.maps.verified_entries().unwrap();
    assert!(
        held <= MAX_VERIFIED as usize && held > MAX_VERIFIED as usize / 2,
        "the LRU holds at most its capacity: {held}"
    );

    // A new client still verifies: the map takes it by forgetting others.
    let client = "192.0.2.95";
    let s = syn(client, 40000).build();
    let (action, reply) = run(&tg, &s);
    assert_eq!(action, XDP_TX);
    let cookie = check_synack(&s, &reply, 1400);
    assert_eq!(
        run(&tg, &ack(client, 40000, cookie.wrapping_add(1))).0,
        XDP_PASS
    );
    assert!(
        tg.maps
            .is_verified_entry(&VerifiedKey::v4(u32::from_ne_bytes(
                client.parse::<std::net::Ipv4Addr>().unwrap().octets()
            )))
    );
    assert_eq!(run(&tg, &syn(client, 40001).build()).0, XDP_PASS);
    assert!(tg.maps.verified_entries().unwrap() <= MAX_VERIFIED as usize);

    // The first fillers went first; one of them is challenged again (not
    // dropped) and its handshake verifies it anew. A filler still held
    // goes straight to the stack.
    let (gone, gone_key) = (0..overfill)
        .map(filler)
        .find(|(_, k)| !tg.maps.is_verified_entry(k))
        .expect("a filler was forgotten");
    let (kept, _) = (0..overfill)
        .rev()
        .map(filler)
        .find(|(_, k)| tg.maps.is_verified_entry(k))
        .expect("a filler is still held");
    assert_eq!(run(&tg, &syn(&kept.to_string(), 40000).build()).0, XDP_PASS);
    let s = syn(&gone.to_string(), 40000).build();
    let (action, reply) = run(&tg, &s);
    assert_eq!(action, XDP_TX, "a forgotten source gets a cookie again");
    let cookie = check_synack(&s, &reply, 1380);
    assert_eq!(
        run(&tg, &ack(&gone.to_string(), 40000, cookie.wrapping_add(1))).0,
        XDP_PASS
    );
    assert!(tg.maps.is_verified_entry(&gone_key));
    assert_eq!(
        tg.maps.cookie_events().unwrap()[cookie_event::FAILED as usize],
        0
    );
}

/// The filter is rewritten from the sources verified now (as the daemon
/// does every ten minutes): expired sources lose their bits, live ones
/// keep theirs, so their SYNs still go to the stack.
#[test]
fn the_verified_filter_is_rewritten_from_the_live_sources() {
    let mut tg = with_cookies(&Policy::default());
    let now = tollgate::clock::coarse_ns();
    let live: Vec<_> = (0..3).map(filler).collect();
    let expired: Vec<_> = (3..6).map(filler).collect();
    let until = |keys: &[(std::net::Ipv6Addr, VerifiedKey)], t: u64| {
        keys.iter().map(move |(_, k)| (*k, t)).collect::<Vec<_>>()
    };
    tg.maps
        .remember_verified(
            until(&live, now + 3600 * SEC)
                .into_iter()
                .chain(until(&expired, now - SEC)),
        )
        .expect("filling the verified map");
    let bits: std::collections::HashSet<_> = live.iter().map(|(_, k)| k.filter_slot()).collect();
    assert_eq!(
        tg.maps.refresh_verified_filter(now, false).unwrap(),
        bits.len() as u32,
        "the bits of the live sources alone"
    );
    for (addr, _) in &live {
        let s = syn(&addr.to_string(), 40000).build();
        assert_eq!(run(&tg, &s).0, XDP_PASS, "{addr} is still verified");
    }
    for (addr, _) in &expired {
        let s = syn(&addr.to_string(), 40000).build();
        assert_eq!(run(&tg, &s).0, XDP_TX, "{addr} expired: a cookie");
    }
}
