//! Redaction inside the daemon: with `log.redact = "hash"`, no address of
//! a source it bans or detects appears in its log, its events or `top`,
//! whether the ban came from the operator or from a detector; each
//! address is one stable token instead, so events about one source can
//! still be followed.

use std::time::Duration;

use lab::daemon::{Daemon, events};
use serde_json::Value;

const MANUAL: &str = "2001:db8:66::1";
const FLOODER: &str = "192.0.2.66";

/// The daemon's log, one JSON object per line.
fn log_lines(d: &Daemon) -> Vec<Value> {
    d.log()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[test]
fn hashed_logs_name_no_address_and_one_token_per_source() {
    let key = std::env::temp_dir().join(format!("tg-redact-key-{}", std::process::id()));
    std::fs::write(&key, [7u8; 32]).unwrap();
    // The tests' config leaves `[log]` open, so these keys land in it.
    let extra = format!(
        "redact = \"hash\"\nhash_key_file = \"{}\"\n[detect]\nmode = \"enforce\"\nflood_pps = 500\nban_ttls = [\"1m\"]\n",
        key.display()
    );
    let d = Daemon::new("redact", &[MANUAL, FLOODER], &extra);
    d.json(&["ban", "add", MANUAL, "--ttl", "10m"]);
    // The banned source sends too, so `top` has it to show (or hide).
    assert_eq!(d.send(MANUAL, 50, 500), 50, "the lab sent the flow");
    // The detector's ban of the flooder, and the operator's, are logged.
    let logged = std::thread::scope(|s| {
        let flood = s.spawn(|| d.send(FLOODER, 8_000, 4_000));
        let began = std::time::Instant::now();
        let lines = loop {
            let lines = log_lines(&d);
            // The operator's ban, and the detector's finding that bans.
            let manual = lines.iter().any(|l| l["event"] == "ban_added");
            let detected = lines
                .iter()
                .any(|l| l["event"] == "detection" && l["detector"] == "flood");
            if manual && detected {
                break lines;
            }
            assert!(
                began.elapsed() < Duration::from_secs(20),
                "both bans logged within 20 s (the operator's and the flood detector's); the log:\n{}\nevents: {:?}",
                d.log(),
                lab::daemon::brief(&events(&d))
            );
            std::thread::sleep(Duration::from_millis(200));
        };
        flood.join().unwrap();
        lines
    });
    let text = d.log();
    for raw in [MANUAL, FLOODER, "2001:db8:66:", "192.0.2.0/24"] {
        assert!(
            !text.contains(raw),
            "the log names {raw} despite redact = \"hash\":\n{text}"
        );
    }
    // One token per source: the operator's ban and the flooder's
    // detection and ban each name theirs the same way every time.
    let tokens: std::collections::BTreeSet<String> = logged
        .iter()
        .filter(|l| l["event"] == "ban_added" || l["event"] == "detection")
        .filter_map(|l| l["source"].as_str())
        .map(str::to_owned)
        .collect();
    assert_eq!(tokens.len(), 2, "two sources, two tokens: {tokens:?}");
    // `tollgate events` and `top` speak as the log does: the same tokens,
    // no address.
    let shown = events(&d);
    assert!(
        shown
            .iter()
            .all(|e| !e.to_string().contains(MANUAL) && !e.to_string().contains(FLOODER)),
        "{shown:?}"
    );
    assert!(
        shown
            .iter()
            .filter_map(|e| e["source"].as_str())
            .all(|t| tokens.contains(t)),
        "events {shown:?}, log tokens {tokens:?}"
    );
    let top = d.json(&["top", "-n", "100"]);
    let shown_top = top["sources"].as_array().unwrap();
    assert!(shown_top.len() >= 2, "both sources in top: {top}");
    let text = top.to_string();
    assert!(
        !text.contains(FLOODER) && !text.contains("2001:db8:66:"),
        "{top}"
    );
    std::fs::remove_file(&key).unwrap();
}
