//! The parser, on the real kernel through BPF_PROG_TEST_RUN: every header
//! shape the issue names, truncation at every header boundary, and the
//! limits of the bounded loops.

mod common;

use common::{SEC, key, load, report};
use lab::{
    packets::{Exts, L4, Spec, add_vlan_tag, arp_request, boundaries},
    tshark_shapes,
};
use tollgate::{policy::Policy, replay::PacketReport};

/// What the parser should have read; `None` fields must be absent (null).
struct Want {
    vlan: &'static [u16],
    family: &'static str,
    src: Option<&'static str>,
    dst: Option<&'static str>,
    proto: Option<u8>,
    frag: Option<&'static str>,
    ports: Option<(u16, u16)>,
    tcp_flags: Option<u16>,
    malformed_at: Option<&'static str>,
}

const V4: Want = Want {
    vlan: &[],
    family: "ipv4",
    src: Some("192.0.2.10"),
    dst: Some("198.51.100.1"),
    proto: Some(6),
    frag: Some("none"),
    ports: Some((40000, 443)),
    tcp_flags: Some(0x010),
    malformed_at: None,
};

const V6: Want = Want {
    vlan: &[],
    family: "ipv6",
    src: Some("2001:db8::10"),
    dst: Some("2001:db8:ffff::1"),
    proto: Some(6),
    frag: Some("none"),
    ports: Some((40000, 443)),
    tcp_flags: Some(0x010),
    malformed_at: None,
};

fn check(case: &str, got: &PacketReport, want: &Want) {
    assert_eq!(got.vlan, want.vlan, "{case}: vlan");
    assert_eq!(got.family, want.family, "{case}: family");
    assert_eq!(got.src.as_deref(), want.src, "{case}: src");
    assert_eq!(got.dst.as_deref(), want.dst, "{case}: dst");
    assert_eq!(got.proto, want.proto, "{case}: proto");
    assert_eq!(got.frag, want.frag, "{case}: frag");
    assert_eq!(got.sport.zip(got.dport), want.ports, "{case}: ports");
    assert_eq!(got.tcp_flags, want.tcp_flags, "{case}: tcp_flags");
    assert_eq!(got.malformed_at, want.malformed_at, "{case}: malformed_at");
    assert_eq!(
        got.malformed,
        want.malformed_at.is_some(),
        "{case}: malformed"
    );
}

fn tcp4() -> Spec {
    Spec::tcp("192.0.2.10", "198.51.100.1", 40000, 443)
}

fn tcp6() -> Spec {
    Spec::tcp("2001:db8::10", "2001:db8:ffff::1", 40000, 443)
}

#[test]
fn every_header_shape_parses_as_built() {
    // Allow everything so verdicts don't depend on buckets here.
    let policy = Policy {
        rules: vec![
            tollgate::policy::Rule::new(
                "0.0.0.0/0".parse().unwrap(),
                tollgate::policy::Action::Allow,
            ),
            tollgate::policy::Rule::new("::/0".parse().unwrap(), tollgate::policy::Action::Allow),
        ],
        ..Policy::default()
    };
    let mut tg = load(&policy);
    let syn = Spec::syn("192.0.2.10", "198.51.100.1", 40000, 443);
    let mut tcp_opts = tcp4();
    if let L4::Tcp { options, .. } = &mut tcp_opts.l4 {
        // MSS 1460, SACK permitted, timestamps, NOP, window scale 7.
        options.extend_from_slice(&[
            2, 4, 5, 180, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7,
        ]);
    }
    let udp4 = Spec::udp("192.0.2.10", "198.51.100.1", 5353, 53);
    let udp6 = Spec::udp("2001:db8::10", "2001:db8:ffff::1", 5353, 53);
    let cases: Vec<(&str, Vec<u8>, Want)> = vec![
        ("IPv4 TCP ACK", tcp4().build(), V4),
        (
            "IPv4 TCP SYN",
            syn.build(),
            Want {
                tcp_flags: Some(0x002),
                ..V4
            },
        ),
        ("IPv4 TCP with options", tcp_opts.build(), V4),
        (
            "IPv4 with 8 bytes of options (IHL 7), UDP",
            udp4.clone()
                .ipv4_options(&[0x94, 4, 0, 0, 1, 1, 1, 0])
                .build(),
            Want {
                proto: Some(17),
                ports: Some((5353, 53)),
                tcp_flags: None,
                ..V4
            },
        ),
        (
            "IPv4 with 40 bytes of options (IHL 15), TCP",
            tcp4().ipv4_options(&[1; 40]).build(),
            V4,
        ),
        (
            "802.1Q IPv4 UDP",
            udp4.clone().vlans(&[100]).build(),
            Want {
                vlan: &[100],
                proto: Some(17),
                ports: Some((5353, 53)),
                tcp_flags: None,
                ..V4
            },
        ),
        (
            "QinQ (802.1ad + 802.1Q) IPv6 TCP",
            tcp6().vlans(&[10, 20]).build(),
            Want {
                vlan: &[10, 20],
                ..V6
            },
        ),
        (
            "VLAN IPv6 HBH+DST+RT+DST+FRAG(atomic)+AH, TCP",
            tcp6().vlans(&[7]).exts(Exts::all()).build(),
            Want {
                vlan: &[7],
                frag: Some("atomic"),
                ..V6
            },
        ),
        (
            "IPv6 first fragment, UDP",
            udp6.clone()
                .exts(Exts {
                    fragment: Some((0, true)),
                    ..Exts::default()
                })
                .build(),
            Want {
                proto: Some(17),
                frag: Some("first"),
                ports: Some((5353, 53)),
                tcp_flags: None,
                ..V6
            },
        ),
        (
            "IPv6 later fragment: no ports",
            udp6.clone()
                .exts(Exts {
                    hop_by_hop: true,
                    fragment: Some((185, false)),
                    ..Exts::default()
                })
                .build(),
            Want {
                proto: Some(17),
                frag: Some("later"),
                ports: None,
                tcp_flags: None,
                ..V6
            },
        ),
        (
            "IPv4 first fragment, TCP",
            tcp4().ipv4_frag(0, true).build(),
            Want {
                frag: Some("first"),
                ..V4
            },
        ),
        (
            "IPv4 later fragment: no ports",
            tcp4().ipv4_frag(185, false).build(),
            Want {
                frag: Some("later"),
                ports: None,
                tcp_flags: None,
                ..V4
            },
        ),
        (
            "ICMP echo",
            Spec::echo("192.0.2.10", "198.51.100.1").build(),
            Want {
                proto: Some(1),
                ports: None,
                tcp_flags: None,
                ..V4
            },
        ),
        (
            "ICMPv6 echo",
            Spec::echo("2001:db8::10", "2001:db8:ffff::1").build(),
            Want {
                proto: Some(58),
                ports: None,
                tcp_flags: None,
                ..V6
            },
        ),
        (
            "ARP: not IP",
            arp_request([192, 0, 2, 10], [192, 0, 2, 1]),
            Want {
                vlan: &[],
                family: "other",
                src: None,
                dst: None,
                proto: None,
                frag: None,
                ports: None,
                tcp_flags: None,
                malformed_at: None,
            },
        ),
    ];
    for (i, (case, frame, want)) in cases.iter().enumerate() {
        let got = report(&mut tg, frame, SEC + i as u64);
        check(case, &got, want);
        let expect_reason = if want.family == "other" {
            "non_ip"
        } else {
            "allow"
        };
        assert_eq!(got.reason, Some(expect_reason), "{case}: reason");
        assert_eq!(got.verdict, Some("pass"), "{case}: verdict");
    }
}

/// A frame cut at (and one byte past) each header boundary is malformed
/// at the header that was cut, never read past its end, and still limited
/// by its source whenever the source address was read.
#[test]
fn truncation_at_every_header_boundary() {
    let mut tg = load(&Policy::default());
    let shapes: Vec<(&str, Vec<u8>)> = vec![
        (
            "VLAN IPv6 all extension headers TCP",
            tcp6().vlans(&[7]).exts(Exts::all()).build(),
        ),
        (
            "QinQ IPv4 with options TCP",
            tcp4().vlans(&[10, 20]).ipv4_options(&[1; 12]).build(),
        ),
        (
            "IPv4 UDP",
            Spec::udp("192.0.2.10", "198.51.100.1", 1, 2).build(),
        ),
        (
            "IPv6 ICMPv6",
            Spec::echo("2001:db8::10", "2001:db8:ffff::1").build(),
        ),
    ];
    let mut now = SEC;
    let mut checked = 0;
    for (shape, frame) in &shapes {
        let bounds = boundaries(frame);
        for (w, &(header, at)) in bounds.iter().enumerate() {
            for cut in [at, at + 1] {
                // Test runs need at least an Ethernet header (and XDP never
                // sees less); cuts past the L4 header are not truncation.
                if cut < 14 || header == "ethernet" || cut >= frame.len() {
                    continue;
                }
                // A cut exactly at a boundary leaves the previous header
                // whole and the next one missing; one byte in, the header
                // itself is cut. Either way the missing one is `header`.
                let missing = if cut == at { header } else { bounds[w].0 };
                let truncated = &frame[..cut];
                now += 1;
                let got = report(&mut tg, truncated, now);
                let case = format!("{shape} cut at {cut} ({missing})");
                let want_at = match missing {
                    "vlan" => "vlan",
                    "ipv4" => "ipv4",
                    "ipv6" => "ipv6",
                    "ipv6_ext" => "ipv6_ext",
                    "l4" => match got.proto {
                        Some(6) => "tcp",
                        Some(17) => "udp",
                        _ => "icmp",
                    },
                    other => panic!("unexpected boundary {other}"),
                };
                assert_eq!(got.malformed_at, Some(want_at), "{case}");
                assert!(got.malformed, "{case}");
                assert_eq!(got.reason, Some("malformed"), "{case}");
                assert_eq!(got.verdict, Some("drop"), "{case}: default verdict");
                let header_read = !matches!(missing, "vlan" | "ipv4" | "ipv6")
                    || (missing == "ipv4" && cut > at + 20);
                if header_read {
                    let src = got.src.as_deref().expect("source read");
                    let state = tg
                        .maps
                        .source(&key(&tg, src))
                        .expect("reading the source map")
                        .expect("a malformed packet with a readable source is tracked");
                    assert!(state.packets > 0, "{case}: counted against its source");
                } else {
                    assert_eq!(got.family, "malformed", "{case}: IP header unreadable");
                    assert_eq!(got.src, None, "{case}");
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= 20, "only {checked} cuts were checked");
    // Shorter than an Ethernet header: the kernel refuses to run XDP on it
    // (and never delivers such a frame); replay reports it as not run.
    assert!(tg.judge_frame(&tcp4().build()[..13], now + 1).is_err());
}

#[test]
fn bounded_loops_end_in_a_reason() {
    let mut tg = load(&Policy::default());
    // A third VLAN tag exceeds VLAN_MAX_DEPTH.
    let triple = add_vlan_tag(&tcp4().vlans(&[10, 20]).build(), 30);
    let got = report(&mut tg, &triple, SEC);
    assert_eq!(got.malformed_at, Some("vlan_depth"));
    assert_eq!(got.family, "malformed");
    assert_eq!(got.vlan, vec![30, 10], "the two tags walked are reported");

    // Nine destination-options headers exceed IPV6_EXT_MAX_CHAIN (8).
    let base = Spec::udp("2001:db8::10", "2001:db8:ffff::1", 1, 2).build();
    let mut long = base[..14 + 40].to_vec();
    let payload = &base[14 + 40..];
    long[14 + 6] = 60; // next header: destination options
    for i in 0..9 {
        let next = if i == 8 { 17 } else { 60 };
        long.extend_from_slice(&[next, 0, 1, 4, 0, 0, 0, 0]);
    }
    long.extend_from_slice(payload);
    let plen = (long.len() - 54) as u16;
    long[18..20].copy_from_slice(&plen.to_be_bytes());
    let got = report(&mut tg, &long, SEC + 1);
    assert_eq!(got.malformed_at, Some("ipv6_ext_chain"));
    assert_eq!(got.family, "ipv6");
    assert_eq!(got.src.as_deref(), Some("2001:db8::10"));

    // Eight is still fine.
    let mut ok = base[..54].to_vec();
    ok[20] = 60;
    for i in 0..7 {
        let next = if i == 6 { 17 } else { 60 };
        ok.extend_from_slice(&[next, 0, 1, 4, 0, 0, 0, 0]);
    }
    ok.extend_from_slice(payload);
    let plen = (ok.len() - 54) as u16;
    ok[18..20].copy_from_slice(&plen.to_be_bytes());
    let got = report(&mut tg, &ok, SEC + 2);
    assert_eq!(got.malformed_at, None);
    assert_eq!(got.sport.zip(got.dport), Some((1, 2)));
}

#[test]
fn malformed_headers_are_classified() {
    let mut tg = load(&Policy::default());
    let good = tcp4().build();
    // IHL 4: shorter than the fixed header. No IPv4 header, as tshark
    // reads it (and the kernel's IP layer drops it): no source.
    let mut ihl = good.clone();
    ihl[14] = 0x44;
    let got = report(&mut tg, &ihl, SEC);
    assert_eq!((got.family, got.malformed_at), ("malformed", Some("ipv4")));
    assert_eq!(got.src, None);
    // IHL 15 with the options cut short by the frame: the fixed header was
    // whole, so the source was read and the packet is limited by it.
    let mut opts = good[..14 + 40].to_vec();
    opts[14] = 0x4f;
    opts[16..18].copy_from_slice(&80u16.to_be_bytes());
    let got = report(&mut tg, &opts, SEC);
    assert_eq!((got.family, got.malformed_at), ("ipv4", Some("ipv4")));
    assert_eq!(got.src.as_deref(), Some("192.0.2.10"));
    // Version 5 under the IPv4 ethertype: nothing can be trusted.
    let mut ver = good.clone();
    ver[14] = 0x55;
    let got = report(&mut tg, &ver, SEC + 1);
    assert_eq!((got.family, got.malformed_at), ("malformed", Some("ipv4")));
    // Total length shorter than the header.
    let mut tot = good.clone();
    tot[16..18].copy_from_slice(&10u16.to_be_bytes());
    let got = report(&mut tg, &tot, SEC + 2);
    assert_eq!(got.malformed_at, Some("ipv4"));
    // TCP data offset 4.
    let mut doff = good.clone();
    doff[14 + 20 + 12] = 0x40;
    let got = report(&mut tg, &doff, SEC + 3);
    assert_eq!(got.malformed_at, Some("tcp"));
    // IPv6 version 4 under the IPv6 ethertype.
    let mut v6 = tcp6().build();
    v6[14] = 0x40;
    let got = report(&mut tg, &v6, SEC + 4);
    assert_eq!((got.family, got.malformed_at), ("malformed", Some("ipv6")));
    // An unknown upper layer is not malformed: proto only.
    let mut gre = Spec::udp("192.0.2.10", "198.51.100.1", 1, 2).build();
    gre[14 + 9] = 47;
    let got = report(&mut tg, &gre, SEC + 5);
    assert_eq!(
        (got.proto, got.malformed_at, got.sport),
        (Some(47), None, None)
    );
}

/// The frames on which the parse once read differently from tshark
/// (`lab::tshark_shapes`) read as tshark reads them; the replay test
/// checks the same frames against tshark itself.
#[test]
fn shapes_tshark_reads_otherwise_parse_as_tshark_reads_them() {
    let mut tg = load(&Policy::default());
    for (i, shape) in tshark_shapes::shapes().iter().enumerate() {
        let got = report(&mut tg, &shape.frame, SEC + i as u64);
        let case = shape.name;
        assert_eq!(got.family, shape.family, "{case}: family");
        assert_eq!(got.proto, shape.proto, "{case}: protocol");
        assert_eq!(got.sport.zip(got.dport), shape.ports, "{case}: ports");
        assert_eq!(got.tcp_flags, shape.tcp_flags, "{case}: TCP flags");
        assert_eq!(got.malformed_at, shape.malformed_at, "{case}: malformed at");
        if shape.family == "malformed" {
            assert_eq!(got.src, None, "{case}: no source");
        }
    }
}
