//! `tollgate replay` end to end: a capture written here, replayed by the
//! real binary through the kernel, compared with what tshark reads from the
//! same file, and judged by the capture's own timestamps.

use std::{path::Path, process::Command};

use lab::{
    daemon::tollgate_bin,
    packets::{Exts, Spec, arp_request},
    pcap, tshark_shapes,
};
use serde_json::Value;

const MS: u64 = 1_000_000;
const T0: u64 = 1_700_000_000 * 1_000_000_000;

fn replay(path: &Path, extra: &[&str]) -> (Vec<Value>, Value) {
    let out = Command::new(tollgate_bin())
        .args(["replay", "--json", "--pcap"])
        .arg(path)
        .args(extra)
        .output()
        .expect("running tollgate replay");
    assert!(
        out.status.success(),
        "tollgate replay failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    let totals = lines.pop().expect("a totals line");
    (lines, totals["totals"].clone())
}

fn shapes() -> Vec<Vec<u8>> {
    let all = Exts::all();
    vec![
        Spec::syn("192.0.2.10", "198.51.100.1", 40000, 443).build(),
        Spec::tcp("192.0.2.10", "198.51.100.1", 40000, 443)
            .ipv4_options(&[0x94, 4, 0, 0])
            .build(),
        Spec::udp("192.0.2.11", "198.51.100.1", 5353, 53)
            .vlans(&[100])
            .build(),
        Spec::tcp("2001:db8::10", "2001:db8:ffff::1", 40001, 80)
            .vlans(&[10, 20])
            .build(),
        Spec::tcp("2001:db8::10", "2001:db8:ffff::1", 40002, 80)
            .vlans(&[7])
            .exts(all)
            .build(),
        Spec::udp("2001:db8::12", "2001:db8:ffff::1", 1000, 2000)
            .exts(Exts {
                fragment: Some((0, true)),
                ..Exts::default()
            })
            .build(),
        Spec::udp("2001:db8::12", "2001:db8:ffff::1", 1000, 2000)
            .exts(Exts {
                fragment: Some((100, false)),
                ..Exts::default()
            })
            .build(),
        Spec::tcp("192.0.2.13", "198.51.100.1", 1, 2)
            .ipv4_frag(0, true)
            .build(),
        Spec::tcp("192.0.2.13", "198.51.100.1", 1, 2)
            .ipv4_frag(64, false)
            .build(),
        Spec::echo("192.0.2.14", "198.51.100.1").build(),
        Spec::echo("2001:db8::14", "2001:db8:ffff::1").build(),
        arp_request([192, 0, 2, 15], [192, 0, 2, 1]),
    ]
}

/// The fields tshark reads from one frame, in the replay's terms.
#[derive(Debug)]
struct Tshark {
    /// VLAN IDs, outer first, comma-separated.
    vlan: String,
    family: &'static str,
    src: String,
    dst: String,
    sport: String,
    dport: String,
    /// As `0x0010`.
    tcp_flags: String,
    /// The last protocol tshark read (its number), or the next-header
    /// field of the last IP header it read when what follows is opaque.
    proto: Option<u8>,
    frag: Option<&'static str>,
}

/// tshark's fields, in this order.
const FIELDS: [&str; 26] = [
    "vlan.id",
    "ieee8021ad.id",
    "ip.src",
    "ipv6.src",
    "ip.dst",
    "ipv6.dst",
    "tcp.srcport",
    "udp.srcport",
    "tcp.dstport",
    "udp.dstport",
    "tcp.flags",
    "frame.protocols",
    "ip.proto",
    "ipv6.nxt",
    "ipv6.hopopts.nxt",
    "ipv6.routing.nxt",
    "ipv6.fraghdr.nxt",
    "ipv6.dstopts.nxt",
    "ah.next_header",
    "shim6.nxt",
    "ip.flags.mf",
    "ip.frag_offset",
    "ipv6.fraghdr.offset",
    "ipv6.fraghdr.more",
    "eth.type",
    "vlan.etype",
];

/// Protocols tshark names in `frame.protocols`, with their numbers, and
/// for the IP layers the field holding the next header after them.
const LAYERS: [(&str, u8); 12] = [
    ("tcp", 6),
    ("udp", 17),
    ("icmp", 1),
    ("icmpv6", 58),
    ("mipv6", 135),
    ("hip", 139),
    ("esp", 50),
    ("ipv6.hopopts", 0),
    ("ipv6.routing", 43),
    ("ipv6.fraghdr", 44),
    ("ipv6.dstopts", 60),
    ("ah", 51),
];
const NEXT_FIELD: [(&str, &str); 8] = [
    ("ip", "ip.proto"),
    ("ipv6", "ipv6.nxt"),
    ("ipv6.hopopts", "ipv6.hopopts.nxt"),
    ("ipv6.routing", "ipv6.routing.nxt"),
    ("ipv6.fraghdr", "ipv6.fraghdr.nxt"),
    ("ipv6.dstopts", "ipv6.dstopts.nxt"),
    ("ah", "ah.next_header"),
    ("shim6", "shim6.nxt"),
];

fn tshark_fields(path: &Path) -> Vec<Tshark> {
    let mut cmd = Command::new("tshark");
    cmd.args(["-n", "-r"]).arg(path).args([
        "-o",
        "ip.defragment:FALSE",
        "-o",
        "ipv6.defragment:FALSE",
        "-T",
        "fields",
        "-E",
        "separator=|",
        "-E",
        "occurrence=a",
        "-E",
        "aggregator=,",
    ]);
    for f in FIELDS {
        cmd.args(["-e", f]);
    }
    let out = cmd
        .output()
        .expect("running tshark (installed by `cargo xtask setup`)");
    assert!(
        out.status.success(),
        "tshark failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('|').collect();
            let get = |name: &str| f[FIELDS.iter().position(|n| *n == name).unwrap()];
            let last = |name: &str| get(name).rsplit(',').next().unwrap_or("").to_owned();
            // tshark names an 802.1ad service tag `ieee8021ad.id` and a
            // customer tag `vlan.id`; the outer tag comes first.
            let vlan = [get("ieee8021ad.id"), get("vlan.id")]
                .into_iter()
                .filter(|v| !v.is_empty())
                .collect::<Vec<_>>()
                .join(",");
            let either = |a: &str, b: &str| {
                if get(a).is_empty() {
                    get(b).to_owned()
                } else {
                    get(a).to_owned()
                }
            };
            let ip_type = |t: &str| t.split(',').any(|t| t == "0x0800" || t == "0x86dd");
            let family = if !get("ip.src").is_empty() {
                "ipv4"
            } else if !get("ipv6.src").is_empty() {
                "ipv6"
            } else if ip_type(get("eth.type")) || ip_type(get("vlan.etype")) {
                "malformed"
            } else {
                "other"
            };
            let layers: Vec<&str> = get("frame.protocols").split(':').collect();
            let proto = layers.last().and_then(|top| {
                LAYERS
                    .iter()
                    .find(|(n, _)| n == top)
                    .map(|(_, p)| *p)
                    .or_else(|| {
                        let ip_layer = layers
                            .iter()
                            .rev()
                            .find_map(|l| NEXT_FIELD.iter().find(|(n, _)| n == l))?;
                        last(ip_layer.1).parse().ok()
                    })
            });
            let frag = match family {
                "ipv4" if !matches!(get("ip.frag_offset"), "" | "0") => Some("later"),
                "ipv4" if get("ip.flags.mf") == "1" => Some("first"),
                "ipv4" => Some("none"),
                "ipv6" => match (get("ipv6.fraghdr.offset"), get("ipv6.fraghdr.more")) {
                    ("", _) => Some("none"),
                    (o, _) if o != "0" => Some("later"),
                    (_, "1") => Some("first"),
                    _ => Some("atomic"),
                },
                _ => None,
            };
            Tshark {
                vlan,
                family,
                src: either("ip.src", "ipv6.src"),
                dst: either("ip.dst", "ipv6.dst"),
                sport: either("tcp.srcport", "udp.srcport"),
                dport: either("tcp.dstport", "udp.dstport"),
                tcp_flags: get("tcp.flags").to_owned(),
                proto: (family == "ipv4" || family == "ipv6")
                    .then_some(proto)
                    .flatten(),
                frag,
            }
        })
        .collect()
}

fn field(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Every field the replay reports that tshark reads too: VLAN IDs,
/// family, addresses, protocol, fragment state, ports and TCP flags.
/// Returns those read differently, each with both readings.
fn differences(ours: &Value, t: &Tshark) -> Vec<String> {
    let vlan: Vec<String> = ours["vlan"].as_array().unwrap().iter().map(field).collect();
    let flags = ours["tcp_flags"]
        .as_u64()
        .map(|f| format!("0x{f:04x}"))
        .unwrap_or_default();
    let pairs = [
        ("VLAN IDs", vlan.join(","), t.vlan.clone()),
        ("family", field(&ours["family"]), t.family.to_owned()),
        ("source", field(&ours["src"]), t.src.clone()),
        ("destination", field(&ours["dst"]), t.dst.clone()),
        (
            "protocol",
            format!("{:?}", ours["proto"].as_u64().map(|p| p as u8)),
            format!("{:?}", t.proto),
        ),
        (
            "fragment state",
            format!("{:?}", ours["frag"].as_str()),
            format!("{:?}", t.frag),
        ),
        ("source port", field(&ours["sport"]), t.sport.clone()),
        ("destination port", field(&ours["dport"]), t.dport.clone()),
        ("TCP flags", flags, t.tcp_flags.clone()),
    ];
    pairs
        .into_iter()
        .filter(|(_, a, b)| a != b)
        .map(|(what, a, b)| format!("{what}: tollgate {a:?}, tshark {b:?}"))
        .collect()
}

fn assert_reads_as_tshark(n: usize, what: &str, ours: &Value, t: &Tshark) {
    let d = differences(ours, t);
    assert!(d.is_empty(), "frame {n} ({what}): {d:#?}");
}

#[test]
fn replay_reads_every_shape_as_tshark_does() {
    let dir = std::env::temp_dir().join(format!("tg-replay-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("shapes.pcap");
    let valid = shapes();
    let odd = tshark_shapes::shapes();
    let frames: Vec<_> = valid
        .iter()
        .chain(odd.iter().map(|s| &s.frame))
        .enumerate()
        .map(|(i, f)| (T0 + i as u64 * MS, f.clone()))
        .collect();
    pcap::write(&path, &frames).unwrap();
    let (lines, totals) = replay(&path, &[]);
    assert_eq!(lines.len(), frames.len());
    let theirs = tshark_fields(&path);
    assert_eq!(theirs.len(), frames.len());
    for (i, (ours, t)) in lines.iter().zip(&theirs).enumerate() {
        let n = i + 1;
        assert_eq!(ours["index"], n);
        for key in [
            "index",
            "vlan",
            "family",
            "src",
            "dst",
            "proto",
            "frag",
            "sport",
            "dport",
            "tcp_flags",
            "malformed",
            "verdict",
            "reason",
        ] {
            assert!(ours.get(key).is_some(), "frame {n}: key {key} present");
        }
        match odd.get(i.wrapping_sub(valid.len())) {
            None => {
                assert_reads_as_tshark(n, "well formed", ours, t);
                assert_eq!(ours["malformed"], false, "frame {n}");
            }
            Some(shape) => {
                assert_reads_as_tshark(n, shape.name, ours, t);
                assert_eq!(
                    ours["malformed_at"].as_str(),
                    shape.malformed_at,
                    "frame {n} ({})",
                    shape.name
                );
            }
        }
    }
    assert_eq!(totals["packets"], frames.len());
    // Malformed frames take the default malformed verdict, a drop.
    let well_formed = odd.iter().filter(|s| s.malformed_at.is_none()).count();
    assert_eq!(totals["pass"], valid.len() + well_formed);

    // The same capture as pcapng gives the same report.
    let ng = dir.join("shapes.pcapng");
    let st = Command::new("editcap")
        .args(["-F", "pcapng"])
        .arg(&path)
        .arg(&ng)
        .status()
        .expect("running editcap (part of tshark's packages)");
    assert!(st.success());
    let (ng_lines, _) = replay(&ng, &[]);
    assert_eq!(ng_lines, lines, "pcapng and pcap replay alike");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn replay_judges_by_the_capture_clock() {
    let dir = std::env::temp_dir().join(format!("tg-replay-clock-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = Spec::udp("192.0.2.20", "198.51.100.1", 1, 2).build();
    // Burst: 20 frames in 20 µs, then 20 frames 150 ms apart (under 10/s).
    let mut frames: Vec<_> = (0..20).map(|i| (T0 + i * 1_000, f.clone())).collect();
    frames.extend((0..20).map(|i| (T0 + 5_000 * MS + i * 150 * MS, f.clone())));
    let path = dir.join("clock.pcap");
    pcap::write(&path, &frames).unwrap();
    let limits = ["--limit-pps", "10", "--burst-packets", "5"];
    let (lines, totals) = replay(&path, &limits);
    let verdicts: Vec<_> = lines.iter().map(|l| field(&l["verdict"])).collect();
    assert!(verdicts[..5].iter().all(|v| v == "pass"), "{verdicts:?}");
    assert!(verdicts[5..20].iter().all(|v| v == "drop"), "{verdicts:?}");
    assert!(verdicts[20..].iter().all(|v| v == "pass"), "{verdicts:?}");
    assert_eq!(lines[5]["reason"], "rate_limited_packets");
    assert_eq!(totals["drop"], 15);
    assert_eq!(totals["by_reason"]["rate_limited_packets"], 15);
    // The same capture replayed takes as long as the machine needs, not the
    // 8 s it spans: judged by its timestamps, the result is the same again.
    let (again, _) = replay(&path, &limits);
    assert_eq!(again, lines);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn replay_refuses_what_it_cannot_read_and_says_why() {
    let dir = std::env::temp_dir().join(format!("tg-replay-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let junk = dir.join("junk.pcap");
    std::fs::write(&junk, b"this is not a capture at all, just text").unwrap();
    let out = Command::new(tollgate_bin())
        .args(["replay", "--pcap"])
        .arg(&junk)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("is not a pcap or pcapng file") && err.contains("junk.pcap"),
        "{err}"
    );
    let missing = dir.join("missing.pcap");
    let out = Command::new(tollgate_bin())
        .args(["replay", "--pcap"])
        .arg(&missing)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot open capture"));
    // Frames XDP can never see are reported as not run, with the reason.
    let path = dir.join("short.pcap");
    let good = Spec::udp("192.0.2.1", "198.51.100.1", 1, 2).build();
    pcap::write(&path, &[(T0, good[..10].to_vec()), (T0 + 1, good)]).unwrap();
    let (lines, totals) = replay(&path, &[]);
    assert!(
        lines[0]["skipped"]
            .as_str()
            .unwrap()
            .contains("shorter than an Ethernet header")
    );
    assert_eq!(lines[0]["verdict"], Value::Null);
    assert_eq!(lines[1]["verdict"], "pass");
    assert_eq!(
        (totals["skipped"].as_u64(), totals["pass"].as_u64()),
        (Some(1), Some(1))
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn replay_shows_what_syns_would_get_from_the_syn_cookies() {
    let dir = std::env::temp_dir().join(format!("tg-replay-cookies-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("tollgate.toml");
    std::fs::write(
        &config,
        "interfaces = [\"eth0\"]\n[syn_cookies]\nports = [443]\nmode = \"under_attack\"\n",
    )
    .unwrap();
    let frames = vec![
        (
            T0,
            Spec::syn("192.0.2.20", "198.51.100.1", 40000, 443).build(),
        ),
        (
            T0 + MS,
            Spec::syn("192.0.2.20", "198.51.100.1", 40001, 8080).build(),
        ),
        (
            T0 + 2 * MS,
            Spec::syn("2001:db8::20", "2001:db8::1", 40000, 443).build(),
        ),
        (
            T0 + 3 * MS,
            Spec::tcp("192.0.2.21", "198.51.100.1", 40000, 443).build(),
        ),
    ];
    let path = dir.join("syns.pcap");
    pcap::write(&path, &frames).unwrap();
    let (lines, totals) = replay(&path, &["--config", config.to_str().unwrap()]);
    let got: Vec<_> = lines
        .iter()
        .map(|l| (field(&l["verdict"]), field(&l["reason"])))
        .collect();
    let want = [
        ("tx", "syn_cookie"),
        ("pass", "pass"),
        ("tx", "syn_cookie"),
        // An ACK that carries no cookie, from a source never seen.
        ("drop", "cookie_invalid"),
    ];
    let want: Vec<_> = want
        .iter()
        .map(|(v, r)| (v.to_string(), r.to_string()))
        .collect();
    assert_eq!(got, want);
    assert_eq!(totals["by_reason"]["syn_cookie"], 2);
    std::fs::remove_dir_all(&dir).unwrap();
}
