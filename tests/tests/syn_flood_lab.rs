//! The SYN-flood lab's pieces, each proved on its own with no Tollgate at
//! all: the three-namespace flood lab, Debian's nginx in it (curl over
//! IPv4 and IPv6, the 10 MiB file whole), the generator's spoofed IPv4
//! (three documentation /24s) and IPv6 (random /64s across 2001:db8::/32)
//! SYNs, and the pool of legitimate clients. `generator_rates` measures
//! the generator into the lab (ignored by default: it prints figures).

use std::{
    collections::HashSet,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::Mutex,
    time::Duration,
};

use etherparse::{Ipv4Header, Ipv6Header, TcpHeader};
use lab::{
    clients::{Load, Pool},
    flood::{Flood, Generator, Sink},
    flood_lab::{ATTACK_IF, FLOOD_IF, FLOOD_SOURCES_V4, FloodLab, client_v4, client_v6},
    nginx::{BIG_PATH, BIG_SIZE, Nginx, curl},
    traffic::pin_thread,
};

/// The load tests share the CPUs, so they run one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

const PORT: u16 = 8080;

#[test]
fn nginx_answers_curl_over_ipv4_and_ipv6_and_serves_the_big_file_whole() {
    let lab = FloodLab::new("lnx", 2).expect("building the flood lab");
    let addrs = [lab.server_v4().into(), lab.server_v6().into()];
    let _nginx = Nginx::start(&lab.server, &addrs, PORT, None).expect("starting nginx");
    let urls = [
        (
            IpAddr::from(client_v4(1)),
            format!("http://{}:{PORT}", lab.server_v4()),
        ),
        (
            IpAddr::from(client_v6(1)),
            format!("http://[{}]:{PORT}", lab.server_v6()),
        ),
    ];
    for (from, base) in &urls {
        let limit = Duration::from_secs(10);
        let (code, size) = curl(&lab.clients, *from, &format!("{base}/"), limit).unwrap();
        assert_eq!((code, size), (200, 3), "GET {base}/ from {from}");
        let (code, size) = curl(&lab.clients, *from, &format!("{base}{BIG_PATH}"), limit).unwrap();
        assert_eq!(
            (code, size),
            (200, BIG_SIZE),
            "GET {base}{BIG_PATH} from {from}"
        );
    }
}

/// Spoofed IPv4 SYNs: valid checksums, sources from all three
/// documentation /24s and never the server or a client.
#[test]
fn spoofed_ipv4_syns_are_valid_and_come_from_all_three_documentation_ranges() {
    let lab = FloodLab::new("lg4", 1).expect("building the flood lab");
    let spec = Flood::spoofed_syn_v4(&FLOOD_SOURCES_V4, lab.server_v4(), PORT);
    let g = Generator::load(&lab.attacker, FLOOD_IF, &spec).unwrap();
    let mut nets = HashSet::new();
    for _ in 0..500 {
        let f = g.sample().unwrap();
        let (ip, _) = Ipv4Header::from_slice(&f[14..]).unwrap();
        assert_eq!(ip.header_checksum, ip.calc_header_checksum());
        let (tcp, _) = TcpHeader::from_slice(&f[34..]).unwrap();
        assert_eq!(tcp.checksum, tcp.calc_checksum_ipv4(&ip, &f[54..]).unwrap());
        assert!(tcp.syn && !tcp.ack && tcp.destination_port == PORT);
        let src = Ipv4Addr::from(ip.source);
        assert!(
            FLOOD_SOURCES_V4
                .iter()
                .any(|(first, n)| u32::from(src).wrapping_sub(u32::from(*first)) < *n),
            "source {src} outside the flood's ranges"
        );
        nets.insert(ip.source[..3].to_vec());
    }
    assert_eq!(
        nets.len(),
        3,
        "sources from every documentation /24: {nets:?}"
    );
}

/// Spoofed IPv6 SYNs: valid checksums, sources in many /64s, all within
/// 2001:db8::/32.
#[test]
fn spoofed_ipv6_syns_are_valid_and_come_from_random_64s_in_2001_db8() {
    let lab = FloodLab::new("lg6", 1).expect("building the flood lab");
    let spec = Flood::spoofed_syn_v6(lab.server_v6(), PORT);
    let g = Generator::load(&lab.attacker, FLOOD_IF, &spec).unwrap();
    let mut nets = HashSet::new();
    for _ in 0..500 {
        let f = g.sample().unwrap();
        let (ip, _) = Ipv6Header::from_slice(&f[14..]).unwrap();
        let (tcp, _) = TcpHeader::from_slice(&f[54..]).unwrap();
        assert_eq!(tcp.checksum, tcp.calc_checksum_ipv6(&ip, &f[74..]).unwrap());
        assert!(tcp.syn && !tcp.ack && tcp.destination_port == PORT);
        let src = Ipv6Addr::from(ip.source);
        assert_eq!(&src.segments()[..2], &[0x2001, 0xdb8], "source {src}");
        assert_eq!(ip.destination, lab.server_v6().octets());
        nets.insert(u128::from(src) >> 64);
    }
    assert!(
        nets.len() > 490,
        "random /64s: {} of 500 distinct",
        nets.len()
    );
}

/// Outside documentation ranges, or across two /24s, the generator
/// refuses to load.
#[test]
fn the_generator_refuses_sources_outside_documentation_ranges() {
    let lab = FloodLab::new("lgr", 1).expect("building the flood lab");
    let dst = lab.server_v4();
    let across = [(Ipv4Addr::new(192, 0, 2, 200), 100)];
    let outside = [FLOOD_SOURCES_V4[0], (Ipv4Addr::new(10, 0, 0, 1), 5)];
    let v6 = Flood {
        src6: "2001:db9::1".parse().unwrap(),
        ..Flood::spoofed_syn_v6(lab.server_v6(), PORT)
    };
    let wide = Flood {
        src6_random: u128::MAX >> 31,
        ..Flood::spoofed_syn_v6(lab.server_v6(), PORT)
    };
    for spec in [
        Flood::spoofed_syn_v4(&across, dst, PORT),
        Flood::spoofed_syn_v4(&outside, dst, PORT),
        v6,
        wide,
    ] {
        let err = Generator::load(&lab.attacker, FLOOD_IF, &spec)
            .err()
            .unwrap_or_else(|| panic!("{spec:?} was accepted"));
        assert!(err.to_string().contains("documentation range"), "{err}");
    }
}

/// With no attack, the pool's existing and new addresses all get in.
#[test]
fn the_client_pool_gets_in_to_nginx_without_an_attack() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let lab = FloodLab::new("lcp", 40).expect("building the flood lab");
    let addrs = [lab.server_v4().into(), lab.server_v6().into()];
    let _nginx = Nginx::start(&lab.server, &addrs, PORT, Some(1)).expect("starting nginx");
    let (v4, v6) = (lab.clients_v4(), lab.clients_v6());
    // Half of each family existing, half new.
    let existing: Vec<IpAddr> = v4[..20].iter().chain(&v6[..20]).copied().collect();
    let new: Vec<IpAddr> = v4[20..].iter().chain(&v6[20..]).copied().collect();
    let targets: Vec<SocketAddr> = addrs.iter().map(|a| SocketAddr::new(*a, PORT)).collect();
    let pool = Pool::new(&existing, &new, &targets).unwrap();
    let load = Load {
        cpu: Some(0),
        ..Load::api(Duration::from_secs(2))
    };
    let warm = pool.warm_up(&lab.clients, &load).unwrap();
    eprintln!("warm-up (existing only): {warm}");
    let report = pool
        .run(
            &lab.clients,
            &Load {
                duration: Duration::from_secs(6),
                ..load
            },
        )
        .unwrap();
    eprintln!(
        "no attack: existing {}; new {}",
        report.existing, report.new
    );
    for (class, t) in [
        ("warm-up", &warm),
        ("existing", &report.existing),
        ("new", &report.new),
    ] {
        assert!(t.total > 0 && t.success() >= 0.995, "{class}: {t}");
    }
}

/// The generator's rate at full speed (spin 0) into the flood lab, with
/// no program on the server's attacker-facing link (its stack on the generator's
/// CPU, then on the other one), and with an XDP_DROP there, IPv4 and IPv6. Prints figures; run it alone:
/// `cargo test -p tollgate-tests --test syn_flood_lab generator_rates -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement: prints the generator's rates"]
fn generator_rates() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let lab = FloodLab::new("lgm", 1).expect("building the flood lab");
    let specs = [
        (
            "IPv4, 3 ranges",
            Flood::spoofed_syn_v4(&FLOOD_SOURCES_V4, lab.server_v4(), PORT),
        ),
        (
            "IPv6, random /64s",
            Flood::spoofed_syn_v6(lab.server_v6(), PORT),
        ),
    ];
    // The server's stack on the generator's CPU, then steered to the other
    // CPU (RPS, as the attack tests do), then an XDP_DROP before it.
    for (server, rps, server_drop) in [
        ("no program", 0b01, false),
        ("no program, RPS to CPU 1", 0b10, false),
        ("XDP_DROP", 0b01, true),
    ] {
        lab.steer(rps)
            .expect("steering the server's receive processing");
        let _sink = server_drop.then(|| Sink::attach(&lab.server, ATTACK_IF).expect("server sink"));
        for (name, spec) in &specs {
            let g = Generator::load(&lab.attacker, FLOOD_IF, spec).unwrap();
            let before = rx_packets(&lab, ATTACK_IF);
            let sent = std::thread::scope(|s| {
                s.spawn(|| {
                    pin_thread(0).expect("pinning the generator");
                    g.send(&lab.attacker, 30_000_000, Duration::from_secs(5))
                })
                .join()
                .unwrap()
            })
            .unwrap();
            let secs = sent.elapsed.as_secs_f64();
            let received = rx_packets(&lab, ATTACK_IF) - before;
            eprintln!(
                "{name}, server {server}: sent {:.2} Mpps, the server's link received {:.2} Mpps ({} frames in {secs:.2} s)",
                sent.packets as f64 / secs / 1e6,
                received as f64 / secs / 1e6,
                sent.packets
            );
        }
    }
}

/// Packets `iface` in the server namespace has received.
fn rx_packets(lab: &FloodLab, iface: &str) -> u64 {
    let out = lab
        .server
        .ip(&["-j", "-s", "link", "show", "dev", iface])
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v[0]["stats64"]["rx"]["packets"]
        .as_u64()
        .expect("rx packets")
}
