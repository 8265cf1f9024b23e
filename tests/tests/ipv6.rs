//! IPv6 through the daemon, end to end, as the IPv4 tests take it: a
//! runtime deny rule, a ban by hand, a flood the detector finds and bans,
//! a well-behaved source left alone, and what `top`, `ban list` and
//! Prometheus say about each. Sources are whole addresses here
//! (`sources.ipv6_prefix = 128`), so four clients of one /64 are four
//! sources.

use std::net::IpAddr;

use lab::{
    Lab,
    daemon::{Daemon, config, finding, metric},
};

const DENIED: &str = "2001:db8::20";
const BANNED: &str = "2001:db8::30";
const FLOODER: &str = "2001:db8::40";
const CLIENT: &str = "2001:db8::50";

#[test]
fn ipv6_sources_meet_rules_bans_detection_top_and_metrics() {
    let addrs: Vec<IpAddr> = [DENIED, BANNED, FLOODER, CLIENT]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
    let lab = Lab::new("v6e", &addrs).expect("building the lab");
    let d = Daemon::in_lab(lab, "v6e", |dir| {
        config(dir, "[detect]\nflood_pps = 1000\nban_ttls = [\"1m\"]\n")
            .replace("[sources]\n", "[sources]\nipv6_prefix = 128\n")
    });

    d.json(&["rules", "add", &format!("{DENIED}/128"), "--action", "deny"]);
    let sent = d.send(DENIED, 200, 1_000);
    assert_eq!(d.source(DENIED, sent), (sent, sent), "denied");

    d.json(&["ban", "add", BANNED, "--ttl", "1m", "--reason", "test"]);
    let sent = d.send(BANNED, 200, 1_000);
    assert_eq!(d.source(BANNED, sent), (sent, sent), "banned");

    // A flood over the detector's line: found on the hot list and banned.
    let flood = std::thread::scope(|s| {
        let a = s.spawn(|| d.send(FLOODER, 7_500, 5_000));
        let e = finding(&d, "flood", FLOODER);
        assert!(
            e["action"].as_str().unwrap().starts_with("banned for 60s"),
            "{e}"
        );
        a.join().unwrap()
    });
    let (_, dropped) = d.source(FLOODER, flood);
    assert!(
        dropped > flood / 2,
        "the flood was dropped: {dropped} of {flood}"
    );
    let bans = d.json(&["ban", "list"]);
    let ban = |cidr: &str| {
        bans["bans"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["cidr"] == cidr)
            .cloned()
    };
    assert_eq!(ban(&format!("{BANNED}/128")).unwrap()["reason"], "test");
    assert_eq!(ban(&format!("{FLOODER}/128")).unwrap()["reason"], "flood");

    // The well-behaved source passes whole.
    let sent = d.send(CLIENT, 100, 100);
    assert_eq!(d.source(CLIENT, sent), (sent, 0), "left alone");

    // Prometheus has the drops by reason and the IPv6 top talker.
    let metrics = d.metrics().expect("the exporter answers");
    let value = |series: &str| metric(&metrics, series).unwrap_or(0.0);
    assert!(
        value("tollgate_packets_total{iface=\"tg-srv\",reason=\"deny\",verdict=\"drop\"}") >= 200.0,
        "{metrics}"
    );
    assert!(
        value("tollgate_packets_total{iface=\"tg-srv\",reason=\"banned\",verdict=\"drop\"}")
            >= 200.0,
        "{metrics}"
    );
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("tollgate_top_talker_packets{") && l.contains(FLOODER)),
        "{metrics}"
    );
    assert!(
        value("tollgate_detections_total{detector=\"flood\"}") >= 1.0,
        "{metrics}"
    );
}
