//! The daemon as an operator runs it: `tollgate run --config FILE` in the
//! server namespace of a lab, the `tollgate` CLI changing it over the
//! control socket (rules, limits, bans, reloads, the lockout guard) with
//! the changes in force on live traffic from a client namespace and
//! surviving a restart; monitor mode; and the detectors on live floods and
//! scans: findings, bans and their expiry, the host-wide SYN limit. The
//! exporter, the control protocol, the config check and the notify
//! protocol have their own files, named after their modules.

use std::{
    process::{Command, Stdio},
    time::Duration,
};

use lab::{
    Lab,
    daemon::{
        Daemon, config, events, eventually, finding, layout_dir, pin_root, run_command,
        tollgate_bin,
    },
    netns::SERVER_IF,
    traffic,
};
use serde_json::Value;

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
    // The changes are events naming who made them and the numbers set.
    let before = lab::daemon::events(&d);
    let added = before
        .iter()
        .find(|e| e["kind"] == "rule_added")
        .expect("a rule_added event");
    assert_eq!(added["actor"], "cli uid 0", "{added}");
    assert_eq!(added["action"], "deny", "{added}");
    let set = before
        .iter()
        .find(|e| e["kind"] == "limit_set")
        .expect("a limit_set event");
    assert_eq!(
        set["evidence"]["packets_per_second"]["observed"], 300.0,
        "{set}"
    );
    assert_eq!(set["evidence"]["burst_packets"]["observed"], 150.0, "{set}");
    // The JSON log nests the numbers as an object.
    let logged = d
        .log()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| l["event"] == "limit_set")
        .expect("the limit_set log line");
    assert_eq!(
        logged["evidence"]["burst_packets"]["observed"], 150.0,
        "{logged}"
    );
    assert_eq!(logged["actor"], "cli uid 0", "{logged}");

    d.stop();
    d.start();
    // The event history survives the restart and its numbers go on.
    let after = lab::daemon::events(&d);
    assert_eq!(
        after[..before.len()],
        before[..],
        "the history came back whole"
    );
    d.json(&["ban", "add", "192.0.2.51", "--ttl", "1m"]);
    let last = lab::daemon::events(&d).last().cloned().unwrap();
    assert_eq!(
        last["seq"].as_u64(),
        before.last().unwrap()["seq"].as_u64().map(|s| s + 1),
        "{last}"
    );
    let text = String::from_utf8_lossy(&d.cli(&["events"]).stdout).into_owned();
    assert!(
        text.contains("ban_added 192.0.2.51 by cli uid 0: banned: banned for 60s")
            && text.contains("[ttl_seconds=60]"),
        "{text}"
    );
    assert!(!text.contains("line 0"), "{text}");
    d.json(&["ban", "remove", "192.0.2.51"]);
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
    // A missing file: the daemon names the file it looked for.
    let aside = path.with_extension("aside");
    std::fs::rename(&path, &aside).unwrap();
    let err = d.refused(&["reload"]);
    assert!(
        err.contains(&format!(
            "the daemon's config {} (its --config at start) cannot be read",
            path.display()
        )),
        "{err}"
    );
    std::fs::rename(&aside, &path).unwrap();
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
        err.contains("would deny the management network 192.0.2.250/32")
            && err.contains("narrow the rule to leave 192.0.2.250/32 out"),
        "{err}"
    );
    let err = d.refused(&["ban", "add", "192.0.2.250", "--ttl", "1m"]);
    assert!(
        err.contains("192.0.2.250/32 is inside the management network 192.0.2.250/32")
            && err.contains("take it out of [management]"),
        "{err}"
    );
    let err = d.refused(&["ban", "add", "192.0.0.0/16", "--ttl", "1m"]);
    assert!(
        err.contains("ban a narrower prefix that leaves 192.0.2.250/32 out"),
        "{err}"
    );
    // A catch-all deny or ban needs --force.
    let err = d.refused(&["ban", "add", "0.0.0.0/0", "--ttl", "1m"]);
    assert!(
        err.contains("every IPv4 packet") && err.contains("pass --force"),
        "{err}"
    );
    let err = d.refused(&["rules", "add", "::/0", "--action", "deny"]);
    assert!(
        err.contains("every IPv6 packet") && err.contains("pass --force"),
        "{err}"
    );
    d.json(&["ban", "add", "::/0", "--ttl", "1m", "--force"]);
    assert!(d.json(&["ban", "list"]).to_string().contains("::/0"));
    d.json(&["ban", "remove", "::/0"]);
    // A duplicate of a config rule names a change that works.
    let err = d.refused(&["rules", "add", "192.0.2.41/32", "--action", "deny"]);
    assert!(
        err.contains("192.0.2.41/32 already has a rule in")
            && err.contains("change it there and run `tollgate reload`"),
        "{err}"
    );
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
        let pps = e["evidence"]["packets_per_second"]["observed"]
            .as_f64()
            .unwrap();
        assert!(pps > 1000.0, "evidence: {e}");
        assert_eq!(
            e["evidence"]["packets_per_second"]["limit"].as_f64(),
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
        e["evidence"]["distinct_ports"]["observed"]
            .as_f64()
            .unwrap()
            >= 60.0,
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
            e["evidence"]["syn_per_second"]["observed"]
                .as_f64()
                .unwrap()
                > 2000.0,
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

/// `limit set` changes only the numbers it is given (the README's own
/// example used to drop the byte limit), `--monitor` alone is a change,
/// numbers on allow/deny rules and unit-less byte rates are refused, a
/// reload says which runtime changes still override the file and `limit
/// reset` goes back to it; the manual-ban count reaches the state file.
#[test]
fn limit_changes_keep_what_they_do_not_name_and_reset_restores_the_file() {
    let d = Daemon::new(
        "limits",
        &["192.0.2.60"],
        r#"[default_limit]
packets_per_second = 200
burst_packets = 100
bytes_per_second = "10MB"
burst_bytes = "2MB"
[[rule]]
cidr = "192.0.2.60/32"
action = "limit"
packets_per_second = 400
burst_packets = 200
bytes_per_second = "20MB"
burst_bytes = "4MB"
"#,
    );
    let shown = |d: &Daemon| d.json(&["limit", "show"]);
    let rule = |v: &Value| {
        v["rules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["cidr"] == "192.0.2.60/32")
            .cloned()
            .unwrap_or_else(|| panic!("the limit rule in {v}"))
    };
    d.json(&[
        "limit",
        "set",
        "--packets-per-second",
        "2k",
        "--burst-packets",
        "4k",
    ]);
    let v = shown(&d);
    assert_eq!(v["default"]["limit"]["packets_per_second"], 2000, "{v}");
    assert_eq!(v["default"]["limit"]["burst_packets"], 4000, "{v}");
    assert_eq!(
        v["default"]["limit"]["bytes_per_second"], 10_000_000,
        "the byte limit stays: {v}"
    );
    assert_eq!(v["default"]["limit"]["burst_bytes"], 2_000_000, "{v}");
    d.json(&[
        "limit",
        "set",
        "--cidr",
        "192.0.2.60/32",
        "--packets-per-second",
        "500",
    ]);
    let r = rule(&shown(&d));
    assert_eq!(r["limit"]["packets_per_second"], 500, "{r}");
    assert_eq!(r["limit"]["burst_packets"], 200, "the burst stays: {r}");
    assert_eq!(r["limit"]["bytes_per_second"], 20_000_000, "{r}");
    // As text, like `rules list`: the default, then each limit rule.
    let text = String::from_utf8_lossy(&d.cli(&["limit", "show"]).stdout).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0]
            .starts_with("default: 2000 pps burst 4000, 10000000 B/s burst 2000000 B (runtime)"),
        "{text}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("192.0.2.60/32") && l.contains("limit  500 pps burst 200")),
        "{text}"
    );
    let out = d.cli(&["limit", "set", "--burst-packets", "5k"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.starts_with("ok: default limit now 2000 pps burst 5000"),
        "{said}"
    );
    d.json(&["limit", "set", "--monitor", "true"]);
    assert_eq!(shown(&d)["default"]["monitor"], true);
    assert!(d.refused(&["limit", "set"]).contains("nothing to change"));
    let err = d.refused(&[
        "limit",
        "set",
        "--bytes-per-second",
        "80",
        "--burst-bytes",
        "2MB",
    ]);
    assert!(
        err.contains("`80` has no unit; a byte rate needs one"),
        "{err}"
    );
    let err = d.refused(&[
        "rules",
        "add",
        "192.0.2.64/26",
        "--action",
        "deny",
        "--packets-per-second",
        "10",
        "--burst-packets",
        "10",
    ]);
    assert!(
        err.contains("only action = \"limit\" takes rates and bursts"),
        "{err}"
    );

    // The file's default changes; the runtime one still wins, and says so.
    let path = d.dir.join("tollgate.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replacen("packets_per_second = 200", "packets_per_second = 250", 1),
    )
    .unwrap();
    let reloaded = d.json(&["reload"]);
    let notes = reloaded["notes"].to_string();
    assert!(
        notes.contains("`tollgate limit reset` goes back to the file's"),
        "{reloaded}"
    );
    assert!(
        notes.contains("limit reset --cidr 192.0.2.60/32"),
        "{reloaded}"
    );
    assert_eq!(shown(&d)["default"]["limit"]["packets_per_second"], 2000);
    let back = d.json(&["limit", "reset"]);
    assert_eq!(back["limit"]["packets_per_second"], 250, "{back}");
    assert_eq!(back["origin"], "config");
    let v = shown(&d);
    assert_eq!(v["default"]["origin"], "config", "{v}");
    assert_eq!(v["default"]["monitor"], false, "{v}");
    d.json(&["limit", "reset", "--cidr", "192.0.2.60/32"]);
    let r = rule(&shown(&d));
    assert_eq!(
        (
            r["limit"]["packets_per_second"].clone(),
            r["origin"].clone()
        ),
        (400.into(), "config".into()),
        "{r}"
    );
    assert!(d.refused(&["limit", "reset"]).contains("no runtime change"));

    // A manual ban is counted before the state file is written.
    d.json(&["ban", "add", "192.0.2.61", "--ttl", "10m"]);
    let state: Value =
        serde_json::from_slice(&std::fs::read(d.dir.join("state.json")).unwrap()).unwrap();
    assert_eq!(state["bans_by_reason"]["manual"], 1, "{state}");

    // A CLI command whose output pipe is closed ends quietly (SIGPIPE, as
    // other tools), not with a panic.
    let mut fds = [0; 2];
    // SAFETY: a fresh pipe; both ends are ours.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: closing the read end we own; the write end goes to the child.
    unsafe { libc::close(fds[0]) };
    let write_end =
        unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fds[1]) };
    let out = Command::new(tollgate_bin())
        .args(["status", "--socket"])
        .arg(d.socket())
        .stdout(Stdio::from(write_end))
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    use std::os::unix::process::ExitStatusExt as _;
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGPIPE),
        "{:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The kernel's bogon ranges, as a pinned map dump counts them.
fn bogon_entries(d: &Daemon) -> usize {
    let map = d.layout_dir().join(monitor_common::maps::BOGONS_V4);
    let out = Command::new("bpftool")
        .args(["--json", "map", "dump", "pinned"])
        .arg(&map)
        .output()
        .expect("bpftool");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("bpftool JSON");
    v.as_array().map_or(0, Vec::len)
}

/// `detect.bogons` is written to the kernel on reload too, not only at
/// start.
#[test]
fn reload_reapplies_the_bogon_ranges() {
    let d = Daemon::new(
        "bogons",
        &["192.0.2.70"],
        "[detect]\nbogons = [\"198.51.100.0/24\"]\n",
    );
    assert_eq!(bogon_entries(&d), 1);
    let path = d.dir.join("tollgate.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace(
            "bogons = [\"198.51.100.0/24\"]",
            "bogons = [\"198.51.100.0/24\", \"203.0.113.0/25\", \"2001:db8:ffff::/48\"]",
        ),
    )
    .unwrap();
    d.json(&["reload"]);
    assert_eq!(bogon_entries(&d), 2, "the new IPv4 range is in the kernel");
}

/// A start that fails after creating fresh pins (here: another XDP
/// program holds the interface) removes them, instead of leaving 21 maps
/// for the next start to adopt.
#[test]
fn a_start_that_fails_leaves_no_pins() {
    let lab = Lab::new("failstart", &["192.0.2.71".parse().unwrap()]).expect("lab");
    let dir = std::env::temp_dir().join(format!("tg-daemon-failstart-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("tollgate.toml"), config(&dir, "")).unwrap();
    let held = lab
        .server
        .nsenter("xdp-filter")
        .args(["load", "--mode", "native", SERVER_IF])
        .output()
        .expect("xdp-filter");
    assert!(
        held.status.success(),
        "xdp-filter load: {}",
        String::from_utf8_lossy(&held.stderr)
    );
    let out = run_command(&lab.server, &[], &dir.join("tollgate.toml"))
        .output()
        .expect("tollgate run");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let pins = pin_root(&dir);
    let left: Vec<_> = std::fs::read_dir(layout_dir(&dir))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    let _ = std::fs::remove_dir_all(&pins);
    let _ = std::fs::remove_dir_all(&dir);
    // xdp-filter pins its maps on the host's bpffs (/sys/fs/bpf/xdp-filter),
    // which outlives the lab's namespace: unload it.
    let _ = lab
        .server
        .nsenter("xdp-filter")
        .args(["unload", SERVER_IF])
        .output();
    assert!(!out.status.success(), "the start should fail: {stderr}");
    assert!(
        stderr.contains(&format!("attaching to interface `{SERVER_IF}`")),
        "{stderr}"
    );
    // The error says another program holds it, not to try generic mode.
    assert!(
        stderr.contains("another XDP program is attached to it") && !stderr.contains("generic"),
        "{stderr}"
    );
    assert!(left.is_empty(), "pins left behind: {left:?}");
}
