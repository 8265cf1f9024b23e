//! `tollgate top` against a running daemon under live traffic: each
//! source's current rate and drop rate beside its totals, and why its
//! packets are dropped (over its limit, denied, banned); a source within
//! its limit shows no reason.

use std::time::Duration;

use lab::daemon::{Daemon, eventually};
use serde_json::Value;

const LIMITED: &str = "192.0.2.31";
/// The lab config's own deny rule.
const DENIED: &str = "192.0.2.40";
const BANNED: &str = "192.0.2.32";
const CLIENT: &str = "192.0.2.33";

fn line<'a>(top: &'a Value, source: &str) -> Option<&'a Value> {
    top["sources"]
        .as_array()?
        .iter()
        .find(|s| s["source"] == source)
}

#[test]
fn top_shows_rates_and_why_each_source_is_dropped() {
    let d = Daemon::new("top", &[LIMITED, DENIED, BANNED, CLIENT], "");
    d.json(&["ban", "add", BANNED, "--ttl", "10m"]);
    let top = std::thread::scope(|s| {
        // 2,000 packets/s against the lab's default limit of 200/s, for
        // 4 s; the others steady alongside.
        s.spawn(|| d.send(LIMITED, 8_000, 2_000));
        s.spawn(|| d.send(DENIED, 2_000, 500));
        s.spawn(|| d.send(BANNED, 2_000, 500));
        s.spawn(|| d.send(CLIENT, 200, 50));
        eventually(
            "every source with a rate in top",
            Duration::from_secs(10),
            || {
                let top = d.json(&["top", "--by", "packets", "-n", "20"]);
                [LIMITED, DENIED, BANNED, CLIENT]
                    .iter()
                    .all(|a| {
                        line(&top, a).is_some_and(|l| l["pps"].as_f64().is_some_and(|p| p > 0.0))
                    })
                    .then_some(top)
            },
        )
    });
    let l = line(&top, LIMITED).unwrap();
    assert_eq!(l["drop_reason"], "rate_limited_packets", "{top}");
    let (pps, drops) = (l["pps"].as_f64().unwrap(), l["drop_pps"].as_f64().unwrap());
    assert!(pps > 200.0 && drops > 0.0 && drops < pps, "{top}");
    assert_eq!(line(&top, DENIED).unwrap()["drop_reason"], "deny", "{top}");
    assert_eq!(
        line(&top, BANNED).unwrap()["drop_reason"],
        "banned",
        "{top}"
    );
    let c = line(&top, CLIENT).unwrap();
    assert_eq!(c["drop_reason"], Value::Null, "{top}");
    assert_eq!(c["drop_pps"].as_f64(), Some(0.0), "{top}");

    // The text table says the same.
    let text = String::from_utf8_lossy(&d.cli(&["top", "--by", "drops"]).stdout).into_owned();
    assert!(
        text.starts_with("source") && text.contains("dropped for"),
        "{text}"
    );
    let row = |a: &str| {
        text.lines()
            .find(|l| l.starts_with(a))
            .unwrap_or_default()
            .to_owned()
    };
    assert!(row(LIMITED).ends_with("rate_limited_packets"), "{text}");
    assert!(row(BANNED).ends_with("banned"), "{text}");
    assert!(row(DENIED).ends_with("deny"), "{text}");
}

/// `top --watch` in a pseudo-terminal under a lab flood: the screen shows
/// the flooder among the talkers with why it is dropped, then its ban
/// (the bans panel and the detection event); `q` ends it cleanly.
#[test]
fn the_live_view_shows_a_flooder_its_drop_reason_and_its_ban() {
    const FLOODER: &str = "192.0.2.34";
    let d = Daemon::new(
        "tpw",
        &[FLOODER, CLIENT],
        "[detect]\nflood_pps = 1000\nban_ttls = [\"1m\"]\n",
    );
    let mut cmd = std::process::Command::new(lab::daemon::tollgate_bin());
    cmd.args([
        "top", "--watch", "--every", "300ms", "--by", "drops", "--socket",
    ])
    .arg(d.socket());
    let mut view = lab::pty::Pty::spawn(cmd, 50, 150).expect("a pseudo-terminal");
    view.wait_for("the view drawn", Duration::from_secs(10), |s| {
        s.contains("top talkers by drops") && s.contains("packets per second")
    });
    let screen = std::thread::scope(|s| {
        s.spawn(|| d.send(FLOODER, 12_000, 3_000));
        s.spawn(|| d.send(CLIENT, 100, 50));
        let row = |screen: &str| {
            screen
                .lines()
                .find(|l| l.trim_start_matches(['│', ' ']).starts_with(FLOODER))
                .map(str::to_owned)
        };
        view.wait_for(
            "the flooder with its drop reason",
            Duration::from_secs(20),
            |s| row(s).is_some_and(|r| r.contains("rate_limited_packets") || r.contains("banned")),
        );
        view.wait_for("its ban", Duration::from_secs(20), |s| {
            s.contains(&format!("{FLOODER}/32")) && s.contains("flood") && s.contains("detection")
        })
    });
    assert!(screen.contains("bans in force (1)"), "{screen}");
    assert!(screen.contains("dropped"), "{screen}");
    // `s` sorts by the next key (drops, then packets); `p` pauses and
    // says so; `p` again resumes.
    view.send(b"s").unwrap();
    view.wait_for("sorted by packets", Duration::from_secs(5), |s| {
        s.contains("sort: packets") && s.contains("top talkers by packets")
    });
    view.send(b"p").unwrap();
    view.wait_for("paused", Duration::from_secs(5), |s| s.contains("PAUSED"));
    view.send(b"p").unwrap();
    view.wait_for("resumed", Duration::from_secs(5), |s| !s.contains("PAUSED"));
    view.send(b"q").unwrap();
    let status = view.wait(Duration::from_secs(5)).expect("q ends the view");
    assert!(status.success(), "{status}");
}

/// Without a terminal the view prints plain blocks, `--count` of them.
#[test]
fn the_live_view_prints_plain_text_into_a_pipe() {
    let d = Daemon::new("tpp", &[CLIENT], "");
    d.send(CLIENT, 100, 100);
    let out = d.cli(&["top", "--watch", "--every", "200ms", "--count", "3"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text.matches("--- tollgate top --watch").count(),
        3,
        "{text}"
    );
    assert!(text.contains("packets/s: passed"), "{text}");
    assert!(!text.contains('\u{1b}'), "no escape sequences: {text:?}");
}
