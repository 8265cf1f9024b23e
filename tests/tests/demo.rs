//! `cargo xtask demo`'s binary run to completion, as the README's quick
//! start runs it (shorter, its output into a pipe so the live view prints
//! plain blocks): the config, the live view, the flood's detection and
//! ban, the ban list, the metrics excerpt and the per-source summary, and
//! nothing of its lab left behind.

use std::process::Command;

#[test]
fn the_demo_runs_to_its_summary_and_cleans_up() {
    let out = Command::new(env!("CARGO_BIN_EXE_demo"))
        .args(["--seconds", "5"])
        .output()
        .expect("running the demo");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}\n{err}");
    for part in [
        "== the daemon runs `tollgate run --config",
        "[default_limit]",
        "--- tollgate top --watch",
        "== what the detectors found",
        "detection flood 192.0.2.66 by detector flood: banned for 300s",
        "== `tollgate ban list`:\n192.0.2.66/32",
        "tollgate_detections_total{detector=\"flood\"} 1",
        "== summary per source:",
        "lab removed",
    ] {
        assert!(text.contains(part), "{part:?} missing from:\n{text}");
    }
    // The summary's rows are the last lines starting with an address.
    let row = |a: &str| {
        text.lines()
            .rev()
            .find(|l| l.starts_with(a))
            .unwrap_or_default()
            .to_owned()
    };
    let flooder = row("192.0.2.66 ");
    assert!(
        flooder
            .split_whitespace()
            .last()
            .is_some_and(|t| t.ends_with('s') && t != "banned"),
        "a time to ban: {flooder:?}\n{text}"
    );
    // The well-behaved client lost nothing to Tollgate.
    let good = row("192.0.2.10 ");
    let cols: Vec<&str> = good.split_whitespace().collect();
    assert_eq!(cols.get(4), Some(&"0"), "nothing dropped: {good:?}");
    // Its lab is gone.
    let netns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let left = String::from_utf8_lossy(&netns.stdout);
    assert!(
        !left.lines().any(|l| l.starts_with("tg-demo-")),
        "namespaces left: {left}"
    );
}

/// `cargo xtask demo --fleet` to completion: the ban reaches host B, B
/// drops the flooder, and the fleet's namespaces are gone.
#[test]
fn the_fleet_demo_shows_a_ban_reaching_the_second_host_and_cleans_up() {
    let out = Command::new(env!("CARGO_BIN_EXE_demo"))
        .args(["--fleet", "--seconds", "20"])
        .output()
        .expect("running the fleet demo");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}\n{err}");
    for part in [
        "host A's flood detector bans 192.0.2.66",
        "the ban is in force in host B's kernel",
        "192.0.2.66/32",
        "crowdsec: tollgate/flood",
        "dropped 200",
        "fleet removed",
    ] {
        assert!(text.contains(part), "{part:?} missing from:\n{text}");
    }
    let netns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let left = String::from_utf8_lossy(&netns.stdout);
    assert!(
        !left.lines().any(|l| l.starts_with("tg-dfl")),
        "namespaces left: {left}"
    );
}
