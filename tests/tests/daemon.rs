//! The daemon as an operator runs it: `tollgate run --config FILE` in the
//! server namespace of a lab, the `tollgate` CLI changing it over the
//! control socket (rules, limits, bans, reloads, the lockout guard) with
//! the changes in force on live traffic from a client namespace and
//! surviving a restart; monitor mode; and the detectors on live floods and
//! scans: findings, bans and their expiry, the host-wide SYN limit. The
//! exporter, the control protocol, the config check and the notify
//! protocol have their own files, named after their modules.

use std::time::Duration;

use lab::{
    daemon::{Daemon, events, eventually, finding},
    netns::SERVER_IF,
    traffic,
};

#[test]
fn cli_changes_take_effect_on_live_traffic_and_survive_a_restart() {
    let mut d = Daemon::new(
        "cli",
        &["192.0.2.20", "192.0.2.30", "192.0.2.40", "192.0.2.50"],
        "",
    );
    // status and top answer with the documented fields.
    let s = d.json(&["status"]);
    assert_eq!(s["interfaces"][0], SERVER_IF);
    assert_eq!(s["rules"]["config"], 1);

    // A rule added at run time is in force at once...
    d.json(&[
        "rules",
        "add",
        "192.0.2.20/32",
        "--action",
        "deny",
        "--comment",
        "runtime",
    ]);
    let sent = d.send("192.0.2.20", 200, 1_000);
    assert_eq!(d.source("192.0.2.20", sent), (sent, sent), "denied at once");
    let rules = d.json(&["rules", "list"]);
    let origin = |cidr: &str| {
        rules["rules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["cidr"] == cidr)
            .map(|r| r["origin"].clone())
    };
    assert_eq!(origin("192.0.2.20/32"), Some("runtime".into()));
    assert_eq!(origin("192.0.2.40/32"), Some("config".into()));
    assert_eq!(origin("192.0.2.250/32"), Some("management".into()));

    // ...and after a restart (the kernel state goes with the process here;
    // the state file brings the rule back).
    d.json(&[
        "limit",
        "set",
        "--packets-per-second",
        "300",
        "--burst-packets",
        "150",
    ]);
    d.stop();
    d.start();
    let rules = d.json(&["rules", "list"]);
    assert!(
        rules["rules"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["cidr"] == "192.0.2.20/32"),
        "the runtime rule survived the restart: {rules}"
    );
    let limits = d.json(&["limit", "show"]);
    assert_eq!(limits["default"]["limit"]["packets_per_second"], 300);
    let sent = d.send("192.0.2.20", 200, 1_000);
    assert_eq!(
        d.source("192.0.2.20", sent),
        (sent, sent),
        "still denied after restart"
    );

    // Removing it lets traffic through.
    d.json(&["rules", "remove", "192.0.2.20/32"]);
    assert!(
        d.refused(&["rules", "remove", "192.0.2.40/32"])
            .contains("comes from"),
        "config rules are removed in the config"
    );

    // A ban is enforced at once and ends on time.
    d.json(&[
        "ban",
        "add",
        "192.0.2.30",
        "--ttl",
        "2s",
        "--reason",
        "test",
    ]);
    let bans = d.json(&["ban", "list"]);
    assert_eq!(bans["bans"][0]["cidr"], "192.0.2.30/32");
    let first = d.send("192.0.2.30", 100, 1_000);
    assert_eq!(d.source("192.0.2.30", first), (first, first), "banned");
    eventually("the ban to expire", Duration::from_secs(10), || {
        d.json(&["ban", "list"])["bans"]
            .as_array()?
            .is_empty()
            .then_some(())
    });
    let second = d.send("192.0.2.30", 100, 1_000);
    assert_eq!(
        d.source("192.0.2.30", first + second),
        (first + second, first),
        "passes after expiry"
    );
    d.json(&["ban", "add", "192.0.2.50", "--ttl", "10m"]);
    d.json(&["ban", "remove", "192.0.2.50"]);
    assert!(
        d.refused(&["ban", "remove", "192.0.2.50"])
            .contains("no ban on 192.0.2.50/32")
    );

    // A reload with a broken file changes nothing: the config's deny rule
    // stays enforced.
    let path = d.dir.join("tollgate.toml");
    let good = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        good.replace("action = \"deny\"", "action = \"deny\"\nbogus = 1"),
    )
    .unwrap();
    let err = d.refused(&["reload"]);
    assert!(
        err.contains("reload refused, nothing changed") && err.contains("bogus"),
        "{err}"
    );
    let sent = d.send("192.0.2.40", 100, 1_000);
    assert_eq!(
        d.source("192.0.2.40", sent),
        (sent, sent),
        "config deny still in force"
    );
    std::fs::write(&path, good.replace("192.0.2.40/32", "192.0.2.41/32")).unwrap();
    d.json(&["reload"]);
    let more = d.send("192.0.2.40", 100, 1_000);
    assert_eq!(
        d.source("192.0.2.40", sent + more),
        (sent + more, sent),
        "a good reload applies"
    );

    // The lockout guard.
    let err = d.refused(&["rules", "add", "192.0.2.0/24", "--action", "deny"]);
    assert!(
        err.contains("would deny the management network 192.0.2.250/32"),
        "{err}"
    );
    let err = d.refused(&["ban", "add", "192.0.2.250", "--ttl", "1m"]);
    assert!(err.contains("would cover the management network"), "{err}");
    let log = d.log();
    assert!(
        log.contains("\"event\":\"ban_added\""),
        "JSON event log: {log}"
    );
}

#[test]
fn monitor_mode_counts_without_dropping() {
    let d = Daemon::new("mon", &["192.0.2.60"], "");
    d.json(&[
        "rules",
        "add",
        "192.0.2.60/32",
        "--action",
        "limit",
        "--packets-per-second",
        "100",
        "--burst-packets",
        "50",
        "--monitor",
    ]);
    let sent = d.send("192.0.2.60", 1_000, 2_000);
    let (packets, dropped) = d.source("192.0.2.60", sent);
    assert_eq!((packets, dropped), (sent, 0), "monitor mode drops nothing");
    let s = eventually(
        "monitored packets in status",
        Duration::from_secs(10),
        || {
            let s = d.json(&["status"]);
            (s["packets"]["monitor"].as_u64()? > 0).then_some(s)
        },
    );
    assert!(s["packets"]["monitor"].as_u64().unwrap() >= sent / 2, "{s}");
}

fn detect_config(mode: &str) -> String {
    format!(
        "[detect]\nmode = \"{mode}\"\nflood_pps = 1000\nscan_ports = 60\nban_ttls = [\"3s\", \"1m\"]\n"
    )
}

/// `tollgate events --json`: one JSON object per line.
#[test]
fn a_flood_is_detected_and_banned_then_the_ban_expires() {
    let d = Daemon::new("flood", &["192.0.2.80"], &detect_config("enforce"));
    // 1.5 s of 5,000 packets/s: over by the first walk, done before the
    // first (3 s) ban ends, so the expiry can be watched without a second
    // offence.
    let attacker = std::thread::scope(|s| {
        let a = s.spawn(|| d.send("192.0.2.80", 7_500, 5_000));
        let e = finding(&d, "flood", "192.0.2.80");
        assert!(
            e["action"].as_str().unwrap().starts_with("banned for 3s"),
            "{e}"
        );
        let pps = e["evidence"]["packets_per_second"][0].as_f64().unwrap();
        assert!(pps > 1000.0, "evidence: {e}");
        assert_eq!(
            e["evidence"]["packets_per_second"][1].as_f64(),
            Some(1000.0)
        );
        let bans = d.json(&["ban", "list"]);
        assert_eq!(bans["bans"][0]["cidr"], "192.0.2.80/32");
        assert_eq!(bans["bans"][0]["reason"], "flood");
        a.join().unwrap()
    });
    let (p0, d0) = d.source("192.0.2.80", attacker);
    assert!(d0 > 0);
    // The ban ends on time: an expiry event, and traffic passes again
    // (a rate under every line, so no new finding).
    eventually(
        "the automatic ban to expire",
        Duration::from_secs(20),
        || {
            events(&d)
                .iter()
                .any(|e| e["kind"] == "ban_expired")
                .then_some(())
        },
    );
    let sent = d.send("192.0.2.80", 50, 100);
    assert_eq!(
        d.source("192.0.2.80", p0 + sent),
        (p0 + sent, d0),
        "passes after the ban"
    );
    let metrics = d.metrics().unwrap();
    assert!(
        metrics.contains("tollgate_detections_total{detector=\"flood\"} "),
        "{metrics}"
    );
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("tollgate_bans_total{reason=\"flood\"} ") && !l.ends_with(" 0"))
    );
}

#[test]
fn monitor_mode_detects_and_changes_nothing() {
    let d = Daemon::new("dmon", &["192.0.2.82"], &detect_config("monitor"));
    std::thread::scope(|s| {
        let a = s.spawn(|| d.send("192.0.2.82", 12_000, 4_000));
        let e = finding(&d, "flood", "192.0.2.82");
        assert_eq!(e["action"], "would ban for 3s", "{e}");
        assert!(
            d.json(&["ban", "list"])["bans"]
                .as_array()
                .unwrap()
                .is_empty()
        );
        a.join().unwrap();
    });
}

/// A bounded scan loop from `src`: 400 UDP ports, 3,000 probes at 1,000/s.
fn scan(d: &Daemon, src: &str) -> u64 {
    scan_at(d, src, 1000..1400, 3_000, 1_000)
}

/// `count` UDP probes from `src` over `ports` at `pps`, within 10 s.
fn scan_at(d: &Daemon, src: &str, ports: std::ops::Range<u16>, count: u64, pps: u64) -> u64 {
    traffic::udp_scan(
        d.lab.client(),
        src.parse().unwrap(),
        d.lab.server_v4(),
        ports,
        count,
        pps,
        Duration::from_secs(10),
    )
    .expect("scanning")
    .packets
}

#[test]
fn a_detector_in_monitor_mode_only_logs_while_the_others_act() {
    // Enforcing, but the flood detector is on probation.
    let extra = "[detect]\nmode = \"enforce\"\nflood_pps = 1000\nscan_ports = 60\nban_ttls = [\"5m\"]\n[detect.modes]\nflood = \"monitor\"\n";
    let d = Daemon::new("dmodes", &["192.0.2.87", "192.0.2.88"], extra);
    std::thread::scope(|s| {
        let a = s.spawn(|| d.send("192.0.2.87", 12_000, 4_000));
        let e = finding(&d, "flood", "192.0.2.87");
        assert_eq!(e["action"], "would ban for 300s", "{e}");
        a.join().unwrap();
    });
    scan(&d, "192.0.2.88");
    let e = finding(&d, "port_scan", "192.0.2.88");
    assert!(e["action"].as_str().unwrap().starts_with("banned"), "{e}");
    let bans = d.json(&["ban", "list"]);
    let cidrs: Vec<&str> = bans["bans"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|b| b["cidr"].as_str())
        .collect();
    assert!(cidrs.contains(&"192.0.2.88/32"), "{bans}");
    assert!(!cidrs.contains(&"192.0.2.87/32"), "{bans}");
}

#[test]
fn a_port_scan_is_detected() {
    let d = Daemon::new("scan", &["192.0.2.83"], &detect_config("enforce"));
    assert!(scan(&d, "192.0.2.83") > 0);
    let e = finding(&d, "port_scan", "192.0.2.83");
    assert!(
        e["evidence"]["distinct_ports"][0].as_f64().unwrap() >= 60.0,
        "{e}"
    );
}

/// A scan slower than a table walk sees: 40 new ports a second, 8 per
/// 200 ms walk here; the 15 s port window adds them up.
#[test]
fn a_slow_port_scan_is_detected_across_walks() {
    let d = Daemon::new("slowscan", &["192.0.2.89"], &detect_config("enforce"));
    // 240 ports in 6 s: wherever a port window ends, one part of the scan
    // has at least 120 ports in a window (the threshold is 60).
    assert_eq!(scan_at(&d, "192.0.2.89", 2000..2240, 240, 40), 240);
    let e = finding(&d, "port_scan", "192.0.2.89");
    assert!(e["action"].as_str().unwrap().starts_with("banned"), "{e}");
}

#[test]
fn floods_are_judged_between_table_walks() {
    // The whole table is walked every 60 s here: the finding can only come
    // from the kernel's hot list of over-limit sources, read every 200 ms.
    let extra = format!("# scan_interval = \"60s\"\n{}", detect_config("enforce"));
    let d = Daemon::new("hot", &["192.0.2.84"], &extra);
    std::thread::scope(|s| {
        let a = s.spawn(|| d.send("192.0.2.84", 7_500, 5_000));
        let e = finding(&d, "flood", "192.0.2.84");
        assert!(e["action"].as_str().unwrap().starts_with("banned"), "{e}");
        a.join().unwrap();
    });
}

#[test]
fn a_spoofed_syn_flood_gets_a_host_wide_syn_limit() {
    let extra = "[detect]\nmode = \"enforce\"\nglobal_syn_pps = 2000\n";
    let d = Daemon::new("synf", &["192.0.2.85"], extra);
    // 500 spoofed sources, 20 SYNs/s each: none is worth a ban, together
    // they are 10,000 SYNs/s that never complete a handshake.
    let frames: Vec<Vec<u8>> = (1..=250u8)
        .flat_map(|i| [format!("198.51.100.{i}"), format!("203.0.113.{i}")])
        .map(|src| lab::packets::Spec::syn(&src, "192.0.2.1", 40_000, 443).build())
        .collect();
    std::thread::scope(|s| {
        let flood = s.spawn(|| {
            traffic::raw_frames(
                d.lab.client(),
                lab::netns::CLIENT_IF,
                &frames,
                30_000,
                10_000,
                Duration::from_secs(6),
            )
            .expect("raw sender")
        });
        let e = finding(&d, "global_syn_flood", "");
        assert!(
            e["action"]
                .as_str()
                .unwrap()
                .starts_with("limited new TCP connections to 100/s"),
            "{e}"
        );
        assert!(
            e["evidence"]["syn_per_second"][0].as_f64().unwrap() > 2000.0,
            "{e}"
        );
        let limited = eventually(
            "SYNs dropped by the host-wide limit",
            Duration::from_secs(10),
            || {
                let s = d.json(&["status"]);
                (s["by_reason"]["syn_limited"].as_u64()? > 0).then_some(s)
            },
        );
        assert!(limited["by_reason"]["syn_limited"].as_u64().unwrap() > 100);
        assert!(flood.join().unwrap().packets > 0);
    });
    assert!(
        d.json(&["ban", "list"])["bans"]
            .as_array()
            .unwrap()
            .is_empty(),
        "no per-source bans"
    );
}
