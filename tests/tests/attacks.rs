//! Attacks that hurt, at the generator's full speed, against Debian's
//! nginx, while legitimate clients make requests with a 1 s deadline
//! throughout: existing ones (they made requests before the attack) and
//! new ones, whose first connections come after it has started. Each
//! attack runs twice: with Tollgate in monitor mode (limits and detectors
//! only count and log), where the clients clearly suffer, and enforcing,
//! where both classes keep at least 99.5% success with a p99 far from a
//! harmed one (`HARMED`), the attacker is detected and handled with no rule naming it, and the
//! response ends after the attack. Monitor mode must log the same finding
//! without changing the kernel.
//!
//! The lab is the flood lab (`lab::flood_lab`), two hosts on a 2-core
//! machine: the attacker (the live-frames generator) runs on CPU 0, where
//! its frames are received and Tollgate's XDP runs; the server's stack
//! (receive steered to CPU 1, as a multi-queue NIC spreads it), nginx and
//! the clients run on CPU 1. What Tollgate drops never reaches the
//! server's CPU. Replies to the attack's sources go to the attacker's
//! link, where they are dropped, as a spoofer's victims would ignore them.
//!
//! The attack tests share the CPUs, so they run one at a time.

use std::{net::Ipv4Addr, sync::Mutex, time::Duration};

use lab::{
    clients::Report,
    daemon::{Daemon, brief, config_on, events, eventually},
    flood::{Attack, Flood, Kind, flood},
    flood_lab::{ATTACK_IF, FloodLab},
    netns::{CLIENT_IF, SERVER_IF},
    under_attack::{PORT, Stage, assert_not_slowed},
};
use serde_json::Value;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
/// A p99 at which the clients are harmed: queueing behind the attack, as
/// in monitor mode (120-330 ms here). Defended, they see 1.4-10 ms on
/// this VM; the 10 ms target is the bench's to measure (`ceiling`), not a
/// timed assertion here.
const HARMED: Duration = Duration::from_millis(50);

const CLIENT: &str = "192.0.2.10";
const ATTACKER: &str = "203.0.113.66";
/// Client addresses: the first `EXISTING` are existing, the rest new.
const CLIENTS: usize = 30;
const EXISTING: usize = 10;
/// The attack outlasts the first ban (6 s), so the ban must be renewed.
const ATTACK_TIME: Duration = Duration::from_secs(10);
/// The clients start this long after the attack and stop before it ends.
const LEAD: Duration = Duration::from_secs(2);

/// The lab's attacks, from `ATTACKER` on the server, at full speed.
fn flood_of(attack: Attack, dst: Ipv4Addr) -> Flood {
    Flood {
        spin: 0,
        ..attack.flood(ATTACKER.parse().unwrap(), dst, PORT)
    }
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
    clients: Report,
    /// Frames the generator sent, per second.
    attack_pps: f64,
    /// When the attack ended (Unix ms, as events carry).
    ended_ms: u64,
    finding: Value,
    /// Packets the kernel dropped or would have dropped (monitor verdict).
    dropped: u64,
    monitored: u64,
    daemon: Daemon<FloodLab>,
}

/// A default limit an API client never meets, short bans, and SYN cookies
/// that come on under a spoofed SYN flood (the answer that lets new
/// clients in; see `syn_flood.rs`).
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
storm_ttl = "6s"
[syn_cookies]
ports = [{PORT}]
mode = "under_attack"
"#
    )
}

fn run(tag: &str, attack: Attack, mode: &str) -> Run {
    let lab = FloodLab::new(tag, CLIENTS).expect("building the flood lab");
    let spec = flood_of(attack, lab.server_v4());
    let mut stage = Stage::new(&lab, &spec, EXISTING, CLIENTS).expect("the scene");
    let d = Daemon::in_lab(lab, tag, |dir| {
        config_on(dir, &[SERVER_IF, ATTACK_IF], &config(mode))
    });
    let attacked = stage.play(&d.lab, ATTACK_TIME, LEAD).expect("the attack");
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
    Run {
        clients: attacked.clients,
        attack_pps: attacked.attack_pps,
        ended_ms: attacked.ended_ms,
        finding,
        dropped: n(&status["packets"]["drop"]),
        monitored: n(&status["packets"]["monitor"]),
        daemon: d,
    }
}

/// Monitor mode: the client suffers, the detector fires and says what it
/// would do, nothing is dropped or banned. Enforcing: the client is fine,
/// the attacker is handled, and the response ends after its TTL.
fn attack_test(tag: &str, attack: Attack) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());

    let print = |mode: &str, r: &Run| {
        eprintln!(
            "{attack:?} at {:.2} Mpps, {mode}: existing clients {}; new clients {}; {} packets dropped, {} would have been",
            r.attack_pps / 1e6,
            r.clients.existing,
            r.clients.new,
            r.dropped,
            r.monitored
        )
    };
    let watched = run(&format!("{tag}m"), attack, "monitor");
    print("monitor", &watched);
    let hurt = [&watched.clients.existing, &watched.clients.new]
        .iter()
        .any(|t| t.success() < 0.99 || t.p99().is_none_or(|p| p > HARMED));
    assert!(
        hurt,
        "the attack must hurt when nothing is enforced: existing {}, new {}",
        watched.clients.existing, watched.clients.new
    );
    let action = watched.finding["action"].as_str().unwrap_or("");
    assert!(action.starts_with("would "), "{}", watched.finding);
    assert_eq!(watched.dropped, 0, "monitor mode dropped nothing");
    let bans = watched.daemon.json(&["ban", "list"]);
    assert_eq!(bans["bans"].as_array().map(Vec::len), Some(0), "{bans}");
    let watched_pps = watched.attack_pps;
    drop(watched);

    let enforced = run(&format!("{tag}e"), attack, "enforce");
    print("enforce", &enforced);
    // Monitor mode judges every frame in full, enforcing drops a banned
    // source's frames on the fast path. A spoofed SYN flood is answered
    // (cookies, a ban per source), which costs the server more per frame
    // than monitoring, so it is not held to this.
    if detectors(attack).1.is_some() {
        assert_not_slowed(&format!("{attack:?}"), watched_pps, enforced.attack_pps);
    }
    for (class, t) in [
        ("existing", &enforced.clients.existing),
        ("new", &enforced.clients.new),
    ] {
        assert!(
            t.success() >= 0.995 && t.p99().is_some_and(|p| p < HARMED),
            "{attack:?}: {class} clients kept {t} while Tollgate enforced; events: {:#?}",
            brief(&events(&enforced.daemon))
        );
    }
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
        ..flood_of(Attack::SynFlood, "192.0.2.1".parse().unwrap())
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
        let spec = flood_of(attack, "192.0.2.1".parse().unwrap());
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
