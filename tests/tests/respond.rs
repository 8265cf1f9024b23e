//! `monitor/src/daemon/respond.rs` on a live daemon: the answers to
//! findings that are neither a ban nor the host-wide SYN limit (those are
//! in `daemon.rs` and `attacks.rs`). A storm of spoofed sources, each seen
//! once, puts never-seen sources on probation: from then on they claim a
//! slot in the source table with their second packet, so the storm's
//! sources claim none. Past `detect.max_bans`, a finding is logged with
//! why and the bans in force stay.

use std::time::Duration;

use lab::{
    daemon::{Daemon, eventually, finding, metric},
    netns::CLIENT_IF,
    packets::Spec,
    traffic,
};

#[test]
fn a_spoofed_source_storm_puts_new_sources_on_probation() {
    let extra = "[detect]\nmode = \"enforce\"\nnew_sources_per_second = 300\n";
    let d = Daemon::new("storm", &["192.0.2.86"], extra);
    let server = d.lab.server_v6().to_string();
    // 6,000 sources, one packet each, in random-looking /64s of
    // 2001:db8::/32, 1,500 a second: far over the storm line.
    let frames: Vec<Vec<u8>> = (0..6_000u32)
        .map(|i| {
            let src = format!("2001:db8:{:x}:{:x}::1", 0x4000 + (i >> 12), i & 0xfff);
            Spec::udp(&src, &server, 40_000, 53).build()
        })
        .collect();
    std::thread::scope(|s| {
        let storm = s.spawn(|| {
            traffic::raw_frames(
                d.lab.client(),
                CLIENT_IF,
                &frames,
                frames.len() as u64,
                1_500,
                Duration::from_secs(8),
            )
            .expect("raw sender")
        });
        let e = finding(&d, "spoofed_storm", "");
        assert!(
            e["action"]
                .as_str()
                .unwrap_or("")
                .starts_with("new sources on probation"),
            "{e}"
        );
        // The storm's later sources are judged without claiming a slot.
        eventually(
            "first packets on probation in the metrics",
            Duration::from_secs(10),
            || {
                let m = d.metrics()?;
                (metric(&m, "tollgate_source_probation_total")? > 100.0).then_some(())
            },
        );
        assert_eq!(storm.join().unwrap().packets, frames.len() as u64);
    });
    // A client's second packet still claims its slot: it is tracked.
    let client = "192.0.2.86";
    assert_eq!(d.send(client, 20, 2_000), 20);
    eventually(
        "the client among the tracked sources in `tollgate top`",
        Duration::from_secs(10),
        || d.json(&["top"]).to_string().contains(client).then_some(()),
    );
}

/// `detect.max_bans` full: a second flooder is not banned, the finding
/// says why, and the ban in force stays.
#[test]
fn past_max_bans_a_finding_is_logged_with_why_and_the_bans_in_force_stay() {
    let extra =
        "[detect]\nmode = \"enforce\"\nflood_pps = 1000\nmax_bans = 1\nban_ttls = [\"1m\"]\n";
    let d = Daemon::new("maxb", &["192.0.2.81", "192.0.2.82"], extra);
    std::thread::scope(|s| {
        let a = s.spawn(|| d.send("192.0.2.81", 6_000, 4_000));
        let e = finding(&d, "flood", "192.0.2.81");
        assert!(e["action"].as_str().unwrap().starts_with("banned"), "{e}");
        a.join().unwrap();
    });
    std::thread::scope(|s| {
        let b = s.spawn(|| d.send("192.0.2.82", 6_000, 4_000));
        let e = finding(&d, "flood", "192.0.2.82");
        assert_eq!(e["action"], "logged", "{e}");
        assert!(
            e["message"]
                .as_str()
                .is_some_and(|m| m.contains("1 bans already in force (detect.max_bans)")),
            "{e}"
        );
        b.join().unwrap();
    });
    let bans = d.json(&["ban", "list"]);
    let cidrs: Vec<&str> = bans["bans"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|b| b["cidr"].as_str())
        .collect();
    assert_eq!(cidrs, ["192.0.2.81/32"], "{bans}");
    // Counted for the operator's alert (`TollgateBansRefused`): once per
    // finding refused, every interval the flood lasts.
    let page = d.metrics().expect("the exporter answers");
    assert!(
        metric(&page, "tollgate_bans_refused_total{why=\"max_bans\"}").is_some_and(|n| n >= 1.0),
        "{page}"
    );
    assert_eq!(
        metric(&page, "tollgate_bans_refused_total{why=\"map_full\"}"),
        Some(0.0)
    );
}
