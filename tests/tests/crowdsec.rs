//! Tollgate against a real CrowdSec Local API (`lab::crowdsec`): decisions
//! added with `cscli` (IPv4, IPv6, ranges) enforced in the kernel on live
//! traffic and lifted when deleted; a decision on a management network
//! refused; other types ignored; the LAPI stopped and started again losing
//! nothing while bans expire on time; a decision the LAPI's delta stream
//! skipped brought by the whole list pulled again; and two daemons
//! sharing a flood's ban through the LAPI.

use std::{path::Path, time::Duration};

use lab::{
    Lab,
    crowdsec::Lapi,
    daemon::{Daemon, config, events, eventually, eventually_or, metric},
};
use serde_json::Value;

/// A daemon in `lab` pulling from `lapi` every 500 ms and the whole list
/// every 4 s, with its own bouncer key, reporting as a machine when
/// `machine`; IPv6 sources are whole addresses.
fn daemon(lab: Lab, lapi: &Lapi, tag: &str, machine: bool, extra: &str) -> Daemon {
    paced(lab, lapi, (tag, machine), ("500ms", "4s"), extra)
}

/// `daemon` pulling every `poll` and the whole list every `resync`.
fn paced(
    lab: Lab,
    lapi: &Lapi,
    (tag, machine): (&str, bool),
    (poll, resync): (&str, &str),
    extra: &str,
) -> Daemon {
    lapi.host(lab, tag, machine, poll, |dir: &Path, section| {
        let section = format!("{section}resync_interval = \"{resync}\"\n");
        config(dir, &format!("{extra}{section}"))
            .replace("[sources]\n", "[sources]\nipv6_prefix = 128\n")
    })
    .expect("a daemon with its credentials")
}

/// How many whole lists the daemon has pulled (`status`).
fn whole_lists(d: &Daemon) -> Option<u64> {
    d.json(&["status"])["crowdsec"]["whole_lists"].as_u64()
}

fn bans(d: &Daemon) -> Vec<Value> {
    d.json(&["ban", "list"])["bans"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn lapi_decisions_are_enforced_on_live_traffic_and_lifted_when_deleted() {
    let mut lapi = Lapi::new("csd").expect("a Local API");
    let clients = ["192.0.2.20", "192.0.2.130", "2001:db8::20", "192.0.2.21"];
    let lab = Lab::new("csd", &clients.map(|a| a.parse().unwrap())).expect("lab");
    lapi.join(&lab.server).unwrap();
    let d = daemon(lab, &lapi, "csd", false, "");
    let add = |args: &[&str]| lapi.cscli(&[&["decisions", "add"], args].concat()).unwrap();
    add(&["--ip", "192.0.2.20", "--duration", "5m"]);
    add(&["--range", "192.0.2.128/26", "--duration", "5m"]);
    add(&["--ip", "2001:db8::20", "--duration", "5m"]);
    // The lab's management network, and a type Tollgate does not apply.
    add(&["--ip", "192.0.2.250", "--duration", "5m"]);
    add(&[
        "--ip",
        "192.0.2.21",
        "--duration",
        "5m",
        "--type",
        "captcha",
    ]);

    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while bans(&d).len() != 3 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        bans(&d).len(),
        3,
        "the three bans in the kernel: {:?}\n{:?}\n{}",
        bans(&d),
        events(&d),
        d.log()
    );
    let b = d.ban("192.0.2.128/26").expect("the range");
    assert_eq!(b["origin"], "crowdsec", "{b}");
    assert!(
        b["scenario"].as_str().unwrap().contains("manual 'ban'"),
        "{b}"
    );
    assert!(b["remaining_seconds"].as_u64().unwrap() > 250, "{b}");
    for a in ["192.0.2.20", "192.0.2.130", "2001:db8::20"] {
        let sent = d.send(a, 100, 1_000);
        assert_eq!(
            d.source(a, sent),
            (sent, sent),
            "{a} banned on live traffic"
        );
    }
    let sent = d.send("192.0.2.21", 100, 1_000);
    assert_eq!(
        d.source("192.0.2.21", sent),
        (sent, 0),
        "a captcha is not a ban"
    );
    assert!(d.ban("192.0.2.250/32").is_none());
    let refused = events(&d)
        .into_iter()
        .find(|e| e["kind"] == "crowdsec_refused")
        .expect("the refusal is an event");
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("management network"),
        "{refused}"
    );
    assert_eq!(refused["actor"], "crowdsec");

    // Deleted in CrowdSec: lifted, and the traffic passes.
    lapi.cscli(&["decisions", "delete", "--ip", "192.0.2.20"])
        .unwrap();
    eventually("the ban lifted", Duration::from_secs(10), || {
        d.ban("192.0.2.20/32").is_none().then_some(())
    });
    let (p0, d0) = d.source("192.0.2.20", 1);
    let more = d.send("192.0.2.20", 100, 1_000);
    assert_eq!(
        d.source("192.0.2.20", p0 + more),
        (p0 + more, d0),
        "passes again"
    );

    // `status` says how the link fares; this LAPI (1.4.6) takes no usage
    // metrics, which the daemon noted and left alone.
    let s = eventually("the usage report tried", Duration::from_secs(10), || {
        let s = d.json(&["status"]);
        (s["crowdsec"]["usage"] != "unknown").then_some(s)
    });
    assert_eq!(s["crowdsec"]["up"], true, "{s}");
    assert_eq!(s["crowdsec"]["usage"], "unsupported", "{s}");
    assert_eq!(s["crowdsec"]["decisions"]["banned"], 3, "{s}");
    let text = String::from_utf8_lossy(&d.cli(&["status"]).stdout).into_owned();
    assert!(
        text.contains("crowdsec: http://203.0.113.1:8080 up"),
        "{text}"
    );
    // Two resyncs later, nothing is counted or said twice.
    eventually("two resyncs", Duration::from_secs(15), || {
        (whole_lists(&d) >= Some(3)).then_some(())
    });
    let refusals = events(&d)
        .iter()
        .filter(|e| e["kind"] == "crowdsec_refused")
        .count();
    assert_eq!(refusals, 1, "said once: {:?}", events(&d));
    let m = d.metrics().expect("metrics");
    let v = |s: &str| metric(&m, s).unwrap_or(-1.0);
    assert_eq!(v("tollgate_crowdsec_up"), 1.0, "{m}");
    assert_eq!(
        v("tollgate_crowdsec_decisions_total{action=\"banned\"}"),
        3.0
    );
    assert_eq!(
        v("tollgate_crowdsec_decisions_total{action=\"refused\"}"),
        1.0
    );
    assert_eq!(
        v("tollgate_crowdsec_decisions_total{action=\"lifted\"}"),
        1.0
    );
    assert_eq!(
        v("tollgate_crowdsec_decisions_total{action=\"ignored_not_a_ban\"}"),
        1.0
    );
    assert_eq!(
        v("tollgate_crowdsec_decisions_total{action=\"already_banned\"}"),
        0.0,
        "no repeat counted: {m}"
    );
    assert!(v("tollgate_crowdsec_last_success_timestamp_seconds") > 1.7e9);
}

#[test]
fn a_lapi_outage_loses_nothing_and_bans_still_expire_on_time() {
    let mut lapi = Lapi::new("cso").expect("a Local API");
    let lab = Lab::new(
        "cso",
        &["192.0.2.30".parse().unwrap(), "192.0.2.31".parse().unwrap()],
    )
    .expect("lab");
    lapi.join(&lab.server).unwrap();
    let d = daemon(lab, &lapi, "cso", false, "");
    lapi.cscli(&["decisions", "add", "--ip", "192.0.2.30", "--duration", "6s"])
        .unwrap();
    eventually("the short ban", Duration::from_secs(10), || {
        d.ban("192.0.2.30/32").map(|_| ())
    });

    lapi.stop();
    eventually(
        "the daemon sees the LAPI down",
        Duration::from_secs(10),
        || {
            let m = d.metrics()?;
            (metric(&m, "tollgate_crowdsec_up")? == 0.0).then_some(())
        },
    );
    // The kernel still enforces it, then lets it go on time.
    let sent = d.send("192.0.2.30", 50, 1_000);
    assert_eq!(d.source("192.0.2.30", sent), (sent, sent), "still banned");
    eventually(
        "the ban to expire without the LAPI",
        Duration::from_secs(15),
        || d.ban("192.0.2.30/32").is_none().then_some(()),
    );
    let (p0, d0) = d.source("192.0.2.30", sent);
    let more = d.send("192.0.2.30", 50, 1_000);
    assert_eq!(
        d.source("192.0.2.30", p0 + more),
        (p0 + more, d0),
        "expired on time"
    );
    let said = d.log().matches("crowdsec_unreachable").count();
    assert_eq!(said, 1, "said once: {}", d.log());

    // Back: a decision made now arrives (the pull resumes where it was),
    // and the expired one does not come back.
    lapi.start().unwrap();
    lapi.cscli(&["decisions", "add", "--ip", "192.0.2.31", "--duration", "5m"])
        .unwrap();
    eventually(
        "the new ban after the outage",
        Duration::from_secs(40),
        || d.ban("192.0.2.31/32").map(|_| ()),
    );
    assert!(d.ban("192.0.2.30/32").is_none());
    assert!(d.log().contains("crowdsec_reachable"));
}

/// CrowdSec's delta stream can skip a decision for good (a decision
/// stamped before a pull began but committed after its query; the
/// daemon's `crowdsec::Pull`). Here one is skipped on purpose: a pull with
/// the host's own key right after the decision moves the key's cursor past
/// it, so no delta of the host's brings it. A later decision comes by a
/// delta; the whole list, pulled again every `resync_interval`, brings
/// the skipped one, and the daemon warns that the stream skipped it.
#[test]
fn a_decision_the_delta_stream_skipped_arrives_with_the_whole_list() {
    let mut lapi = Lapi::new("csr").expect("a Local API");
    let addrs = ["192.0.2.51", "192.0.2.52", "192.0.2.53", "192.0.2.54"];
    let lab = Lab::new("csr", &addrs.map(|a| a.parse().unwrap())).expect("lab");
    lapi.join(&lab.server).unwrap();
    let d = paced(lab, &lapi, ("csr", false), ("500ms", "5s"), "");
    let key = std::fs::read_to_string(d.dir.join("bouncer.key")).unwrap();
    let key = key.trim();
    eventually("the first pull", Duration::from_secs(10), || {
        (whole_lists(&d) > Some(0)).then_some(())
    });
    let warned = |d: &Daemon| {
        d.log()
            .lines()
            .filter(|l| l.contains("crowdsec_resync") && l.contains("\"skipped\":1"))
            .count()
    };
    let add = |ip: &str| {
        lapi.cscli(&["decisions", "add", "--ip", ip, "--duration", "5m"])
            .unwrap()
    };
    // Each step can lose a race to the host's own pulls: its delta may
    // come between the decision and the pull that takes it (the stolen
    // answer lacks it), or a resync may bring the later decision (then
    // nothing is older than a decision a delta brought). A new address.
    for (i, ip) in addrs.into_iter().enumerate() {
        let said = warned(&d);
        add(ip);
        if !lapi.pull_with(key).unwrap().contains(&format!("\"{ip}\"")) {
            continue;
        }
        let before = whole_lists(&d);
        if d.ban(&format!("{ip}/32")).is_some() {
            continue; // a resync came already
        }
        let later = format!("198.51.100.{}", i + 1);
        add(&later);
        eventually("the later ban", Duration::from_secs(10), || {
            d.ban(&format!("{later}/32"))
        });
        // The status is read at most a snapshot (500 ms) behind.
        std::thread::sleep(Duration::from_secs(1));
        if whole_lists(&d) != before {
            continue;
        }
        let ban = eventually("the skipped ban", Duration::from_secs(15), || {
            d.ban(&format!("{ip}/32"))
        });
        assert_eq!(ban["origin"], "crowdsec", "{ban}");
        eventually("the warning", Duration::from_secs(3), || {
            (warned(&d) > said).then_some(())
        });
        let sent = d.send(ip, 50, 1_000);
        assert_eq!(d.source(ip, sent), (sent, sent), "dropped as banned");
        return;
    }
    panic!("every try lost a race to the host's own pulls: {}", d.log());
}

#[test]
fn a_flood_detected_on_one_host_is_banned_on_another() {
    const FLOODER: &str = "192.0.2.66";
    let mut lapi = Lapi::new("csf").expect("a Local API");
    let lab_a = Lab::new("csfa", &[FLOODER.parse().unwrap()]).expect("lab A");
    let lab_b = Lab::new("csfb", &[FLOODER.parse().unwrap()]).expect("lab B");
    lapi.join(&lab_a.server).unwrap();
    lapi.join(&lab_b.server).unwrap();
    let detect = "[detect]\nflood_pps = 1000\nban_ttls = [\"5m\"]\n";
    let a = daemon(lab_a, &lapi, "csfa", true, detect);
    let b = daemon(lab_b, &lapi, "csfb", false, detect);

    let started = std::time::Instant::now();
    std::thread::scope(|s| {
        let flood = s.spawn(|| a.send(FLOODER, 6_000, 3_000));
        lab::daemon::finding(&a, "flood", FLOODER);
        flood.join().unwrap()
    });
    let on_b = eventually_or(
        "the ban on host B",
        Duration::from_secs(15),
        || b.ban(&format!("{FLOODER}/32")),
        || {
            format!(
                "LAPI decisions: {:?}\nhost A: {}\nhost B: {}",
                lapi.cscli(&["decisions", "list", "-o", "json"]),
                a.log(),
                b.log()
            )
        },
    );
    eprintln!(
        "flood on A to ban on B: {:.1}s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(on_b["origin"], "crowdsec", "{on_b}");
    assert_eq!(on_b["scenario"], "tollgate/flood", "{on_b}");
    // In B's kernel: the flooder's packets to B are dropped as banned.
    let sent = b.send(FLOODER, 100, 1_000);
    assert_eq!(b.source(FLOODER, sent), (sent, sent), "banned on B");
    // A keeps its own ban (the LAPI's copy is taken for the same), and
    // reported it once.
    let on_a = a.ban(&format!("{FLOODER}/32")).expect("A's ban");
    assert_eq!(on_a["origin"], "detector", "{on_a}");
    let m = a.metrics().unwrap();
    assert_eq!(
        metric(&m, "tollgate_crowdsec_alerts_total{result=\"sent\"}"),
        Some(1.0),
        "{m}"
    );
    // The alert in the LAPI carries the detector's evidence.
    let alerts = lapi.cscli(&["alerts", "list", "-a", "-o", "json"]).unwrap();
    let alerts: Value = serde_json::from_str(&alerts).unwrap();
    let ours = alerts
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["scenario"] == "tollgate/flood")
        .unwrap_or_else(|| panic!("the alert is in the LAPI: {alerts}"));
    assert!(ours.to_string().contains("packets_per_second"), "{ours}");
}

/// A blocklist of thousands (as a community list brings at startup):
/// applied in one pull, saved once, said in one summary event rather than
/// one per ban, and the daemon keeps answering.
#[test]
fn a_blocklist_of_thousands_applies_in_one_pull_with_one_event() {
    const N: usize = 5_000;
    let mut lapi = Lapi::new("csb").expect("a Local API");
    let lab = Lab::new("csb", &["192.0.2.41".parse().unwrap()]).expect("lab");
    lapi.join(&lab.server).unwrap();
    let list: Vec<Value> = (1..=N)
        .map(|i| {
            serde_json::json!({
                "duration": "1h", "origin": "lists", "reason": "blocklist",
                "scope": "ip", "type": "ban",
                "value": format!("2001:db8:b10c::{i:x}"),
            })
        })
        .collect();
    let file = lapi.dir.join("blocklist.json");
    std::fs::write(&file, serde_json::to_string(&list).unwrap()).unwrap();
    lapi.cscli(&["decisions", "import", "-i", file.to_str().unwrap()])
        .expect("importing the list");
    let d = daemon(lab, &lapi, "csb", false, "");
    eventually("the whole list in force", Duration::from_secs(60), || {
        let s = d.json(&["status"]);
        (s["crowdsec"]["decisions"]["banned"] == N).then_some(())
    });
    assert_eq!(bans(&d).len(), N);
    let evs = events(&d);
    let pulls: Vec<&Value> = evs
        .iter()
        .filter(|e| e["kind"] == "crowdsec_pull")
        .collect();
    assert_eq!(pulls.len(), 1, "one summary event");
    assert_eq!(pulls[0]["evidence"]["banned"]["observed"], N as f64);
    assert!(
        !evs.iter().any(|e| e["kind"] == "ban_added"),
        "no event per ban"
    );
    let sent = d.send("192.0.2.41", 100, 1_000);
    assert_eq!(d.source("192.0.2.41", sent), (sent, 0), "others pass");
}
