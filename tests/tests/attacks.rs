//! Attacks that hurt, against a real HTTP server, with a well-behaved
//! client making requests at a fixed rate throughout. Each attack runs
//! twice: with Tollgate in monitor mode (limits and detectors only count
//! and log), where the client's success clearly falls, and enforcing,
//! where the client keeps at least 99% success, the attacker is detected
//! and handled, and the ban (or limit) ends after its TTL. Monitor mode must
//! log the same finding without changing the kernel.
//!
//! The lab stands in for two hosts on a 2-core machine: the attacker (the
//! live-frames generator, ~1.2 Mpps) runs on CPU 0; the server's network
//! stack (steered there by RPS, as a multi-queue host spreads it), the
//! HTTP server (`python3 -m http.server`) and the client run on CPU 1.
//! XDP runs where the frames arrive, on CPU 0, before RPS: what Tollgate
//! drops never reaches the server's CPU. Spoofed sources answer SYN-ACKs
//! with resets (they are routed back to the client namespace, which owns
//! them as local addresses), like the live hosts a spoofer borrows.
//!
//! The attack tests share the CPUs, so they run one at a time.

use std::{
    net::{Ipv4Addr, SocketAddr},
    sync::Mutex,
    time::Duration,
};

use lab::{
    daemon::{Daemon, events, eventually},
    flood::{Attack, Flood, Kind, flood},
    http::{HttpServer, Requests, client},
    netns::{CLIENT_IF, SERVER_IF},
    traffic::pin_thread,
};
use serde_json::Value;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

const CLIENT: &str = "192.0.2.10";
const ATTACKER: &str = "203.0.113.66";
const HTTP_PORT: u16 = 8080;

/// The lab's attacks, from `ATTACKER` on the HTTP server.
fn flood_of(attack: Attack) -> Flood {
    attack.flood(
        ATTACKER.parse().unwrap(),
        "192.0.2.1".parse().unwrap(),
        HTTP_PORT,
    )
}

/// The detectors whose finding answers `attack`, the one that must fire in
/// monitor mode first, and the source they name (none for host-wide
/// findings). A scan at flood speed is also a SYN flood: enforcing,
/// whichever of the two bans first answers it (the other then has nothing
/// left to do).
fn detectors(attack: Attack) -> (&'static [&'static str], Option<&'static str>) {
    match attack {
        Attack::SynFlood => (&["syn_flood"], Some(ATTACKER)),
        Attack::UdpFlood => (&["flood"], Some(ATTACKER)),
        Attack::PortScan => (&["port_scan", "syn_flood"], Some(ATTACKER)),
        Attack::SpoofedSynFlood => (&["global_syn_flood"], None),
    }
}

/// What one run saw.
struct Run {
    client: Requests,
    /// When the flood ended (Unix ms, as events carry).
    ended_ms: u64,
    finding: Value,
    /// Packets the kernel dropped or would have dropped (monitor verdict).
    dropped: u64,
    monitored: u64,
    daemon: Daemon,
}

fn config(mode: &str) -> String {
    format!(
        r#"[default_limit]
packets_per_second = 2000
burst_packets = 4000
mode = "{mode}"
[detect]
mode = "{mode}"
ban_ttls = ["6s", "8s"]
syn_limit_ttl = "6s"
"#
    )
}

fn run(tag: &str, attack: Attack, mode: &str) -> Run {
    assert!(
        std::thread::available_parallelism().map_or(0, |n| n.get()) >= 2,
        "the attack lab needs two CPUs: one for the attacker, one for the server"
    );
    let d = Daemon::new(tag, &[CLIENT], &config(mode));
    let (server, client_ns) = (&d.lab.server, d.lab.client());
    // Replies to attack sources go back to the client namespace, which
    // owns them (and so resets unexpected SYN-ACKs).
    for range in ["198.51.100.0/24", "203.0.113.0/24"] {
        server
            .ip(&["route", "add", range, "via", CLIENT])
            .expect("route");
        client_ns
            .ip(&["route", "add", "local", range, "dev", "lo"])
            .expect("local route");
    }
    let rps = format!("echo 2 > /sys/class/net/{SERVER_IF}/queues/rx-0/rps_cpus");
    let ok = server
        .command("sh")
        .args(["-c", &rps])
        .status()
        .expect("setting RPS");
    assert!(ok.success(), "steering the server's stack to CPU 1");
    let _http = HttpServer::start(server, d.lab.server_v4(), HTTP_PORT, Some(1))
        .expect("starting the HTTP server");
    let to = SocketAddr::new(d.lab.server_v4(), HTTP_PORT);
    let spec = flood_of(attack);
    let (requests, ended_ms) = std::thread::scope(|s| {
        let c = s.spawn(|| {
            client(
                client_ns,
                to,
                40,
                Duration::from_secs(12),
                // An API client's patience: one lost SYN (retransmitted
                // after 1 s) still makes it, two do not.
                Duration::from_millis(1_500),
                Some(1),
            )
        });
        std::thread::sleep(Duration::from_secs(2));
        let sent = s
            .spawn(|| {
                pin_thread(0).expect("pinning the attacker");
                flood(
                    client_ns,
                    CLIENT_IF,
                    &spec,
                    40_000_000,
                    Duration::from_secs(9),
                )
            })
            .join()
            .unwrap()
            .expect("flooding");
        assert!(sent.packets > 1_000_000, "the attack ran: {sent:?}");
        (c.join().unwrap().expect("the client"), unix_ms())
    });
    // The decisive finding: what was (or would have been) done.
    let (detectors, source) = detectors(attack);
    let wanted: &[&str] = if mode == "monitor" {
        &detectors[..1]
    } else {
        detectors
    };
    let finding = eventually(
        &format!("a {wanted:?} finding"),
        Duration::from_secs(20),
        || {
            events(&d).into_iter().find(|e| {
                e["kind"] == "detection"
                    && wanted.iter().any(|w| e["detector"] == *w)
                    && source.is_none_or(|s| e["source"] == s)
                    && e["action"] != "logged"
            })
        },
    );
    let status = d.json(&["status"]);
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    Run {
        client: requests,
        ended_ms,
        finding,
        dropped: n(&status["packets"]["drop"]),
        monitored: n(&status["packets"]["monitor"]),
        daemon: d,
    }
}

/// One line per event, for a failure's message.
fn brief(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            format!(
                "{} {} {} {} {} {}",
                e["unix_ms"], e["kind"], e["detector"], e["source"], e["action"], e["evidence"]
            )
        })
        .collect()
}

/// Monitor mode: the client suffers, the detector fires and says what it
/// would do, nothing is dropped or banned. Enforcing: the client is fine,
/// the attacker is handled, and the response ends after its TTL.
fn attack_test(tag: &str, attack: Attack) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());

    let watched = run(&format!("{tag}m"), attack, "monitor");
    eprintln!(
        "{attack:?}, monitor mode: client {}/{} ({:.1}%), {} packets would have been dropped",
        watched.client.ok,
        watched.client.total,
        100.0 * watched.client.success(),
        watched.monitored
    );
    assert!(
        watched.client.success() < 0.90,
        "the attack must hurt when nothing is enforced: {:?}",
        watched.client
    );
    let action = watched.finding["action"].as_str().unwrap_or("");
    assert!(action.starts_with("would "), "{}", watched.finding);
    assert_eq!(watched.dropped, 0, "monitor mode dropped nothing");
    let bans = watched.daemon.json(&["ban", "list"]);
    assert_eq!(bans["bans"].as_array().map(Vec::len), Some(0), "{bans}");
    drop(watched);

    let enforced = run(&format!("{tag}e"), attack, "enforce");
    eprintln!(
        "{attack:?}, enforcing: client {}/{} ({:.1}%), {} packets dropped; {}",
        enforced.client.ok,
        enforced.client.total,
        100.0 * enforced.client.success(),
        enforced.dropped,
        enforced.finding["action"]
    );
    assert!(
        enforced.client.success() >= 0.99,
        "the client keeps >= 99% success while Tollgate enforces: {:?}; events: {:#?}",
        enforced.client,
        brief(&events(&enforced.daemon))
    );
    // A one-source attack is answered by its ban alone: no host-wide
    // measure (the SYN limit would shut out every client that had not
    // completed a handshake before the flood).
    if detectors(attack).1.is_some() {
        let all = events(&enforced.daemon);
        assert!(
            all.iter().all(|e| e["detector"] != "global_syn_flood"),
            "a {attack:?} from one source took a host-wide measure too; events: {:#?}",
            brief(&all)
        );
    }
    let action = enforced.finding["action"].as_str().unwrap_or("");
    let ends = if attack == Attack::SpoofedSynFlood {
        assert!(
            action.starts_with("limited new TCP connections"),
            "{}",
            enforced.finding
        );
        // Each spoofed source is banned too; the limit may lapse while the
        // bans hold the attack, and the bans end after it.
        "ban_expired"
    } else {
        assert!(action.starts_with("banned"), "{}", enforced.finding);
        // The attack (9 s) outlasts the first ban (6 s): the ban is
        // renewed before it ends, never lapsing while the attack goes on.
        let all = events(&enforced.daemon);
        assert!(
            all.iter()
                .any(|e| e["message"].as_str().is_some_and(|m| m.contains("renewed"))),
            "the ban was renewed while the attack went on; events: {:#?}",
            brief(&all)
        );
        let lapsed: Vec<&Value> = all
            .iter()
            .filter(|e| e["kind"] == "ban_expired" && n(&e["unix_ms"]) < enforced.ended_ms)
            .collect();
        assert!(
            lapsed.is_empty(),
            "a ban lapsed during the attack: {lapsed:?}"
        );
        "ban_expired"
    };
    // The response ends once the attack has stopped, after its TTL (bans
    // are renewed while their sources keep attacking).
    let ended = enforced.ended_ms;
    eventually(
        &format!("a {ends} event after the attack ended"),
        Duration::from_secs(30),
        || {
            let all = events(&enforced.daemon);
            let seen = all
                .iter()
                .any(|e| e["kind"] == ends && n(&e["unix_ms"]) >= ended);
            if !seen {
                let latest = brief(&all);
                eprintln!(
                    "attack ended at {ended}; latest events: {:#?}",
                    &latest[latest.len().saturating_sub(6)..]
                );
            }
            seen.then_some(())
        },
    );
}

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[test]
fn a_syn_flood_from_one_source() {
    attack_test("asyn", Attack::SynFlood);
}

#[test]
fn a_syn_flood_from_spoofed_sources() {
    attack_test("aspf", Attack::SpoofedSynFlood);
}

#[test]
fn a_udp_flood() {
    attack_test("audp", Attack::UdpFlood);
}

#[test]
fn a_fast_port_scan() {
    attack_test("ascn", Attack::PortScan);
}

/// Spoofed sources come only from documentation ranges.
#[test]
fn the_generator_refuses_addresses_outside_documentation_ranges() {
    let lab = lab::Lab::new("agen", &[CLIENT.parse().unwrap()]).unwrap();
    let spec = Flood {
        first_src: Ipv4Addr::new(203, 0, 113, 200),
        sources: 100,
        ..flood_of(Attack::SynFlood)
    };
    let err = flood(lab.client(), CLIENT_IF, &spec, 10, Duration::from_secs(1)).unwrap_err();
    assert!(
        err.to_string().contains("leave the documentation ranges"),
        "{err}"
    );
}

/// What the generator puts on the wire is valid: both checksums right for
/// every rewritten source, source port and destination port (a bad one
/// would be dropped by the server's stack before it costs anything).
#[test]
fn the_generator_sends_valid_checksums() {
    use etherparse::{Ipv4Header, TcpHeader, UdpHeader};
    let lab = lab::Lab::new("agck", &[CLIENT.parse().unwrap()]).unwrap();
    for attack in [Attack::PortScan, Attack::SpoofedSynFlood, Attack::UdpFlood] {
        let spec = flood_of(attack);
        let g = lab::flood::Generator::load(lab.client(), CLIENT_IF, &spec).unwrap();
        for _ in 0..200 {
            let f = g.sample().unwrap();
            let (ip, _) = Ipv4Header::from_slice(&f[14..]).unwrap();
            assert_eq!(ip.header_checksum, ip.calc_header_checksum(), "{attack:?}");
            let src = u32::from_be_bytes(ip.source) - u32::from(spec.first_src);
            assert!(src < spec.sources, "{attack:?}: source {:?}", ip.source);
            match spec.kind {
                Kind::Syn => {
                    let (tcp, _) = TcpHeader::from_slice(&f[34..]).unwrap();
                    assert_eq!(
                        tcp.checksum,
                        tcp.calc_checksum_ipv4(&ip, &f[54..]).unwrap(),
                        "{attack:?}"
                    );
                    let port = tcp.destination_port.wrapping_sub(spec.dport);
                    assert!(port <= spec.dport_span, "{attack:?}: port {port}");
                }
                Kind::Udp => {
                    let (udp, _) = UdpHeader::from_slice(&f[34..]).unwrap();
                    assert_eq!(
                        udp.checksum,
                        udp.calc_checksum_ipv4(&ip, &f[42..]).unwrap(),
                        "{attack:?}"
                    );
                }
            }
        }
    }
}
