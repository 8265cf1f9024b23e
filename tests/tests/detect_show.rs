//! `tollgate detect show`, `set` and `reset` against a running daemon: the
//! modes, thresholds (config or runtime), learned baselines and readings
//! it shows; a threshold raised at run time lets a flood under it pass
//! unbanned, survives a restart, and its reset brings the file's line back,
//! which the next flood crosses.

use std::time::Duration;

use lab::daemon::{Daemon, events, eventually, finding};
use serde_json::Value;

const FLOODER: &str = "192.0.2.81";

fn flood_pps(show: &Value) -> (f64, String) {
    let flood = show["detectors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "flood")
        .expect("the flood detector");
    let t = flood["thresholds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["key"] == "flood_pps")
        .expect("flood_pps");
    (
        t["value"].as_f64().unwrap(),
        t["origin"].as_str().unwrap().to_owned(),
    )
}

#[test]
fn thresholds_change_at_run_time_survive_a_restart_and_reset_to_the_file() {
    let mut d = Daemon::new(
        "dsh",
        &[FLOODER],
        "[detect]\nflood_pps = 1000\nban_ttls = [\"1m\"]\n[detect.modes]\nspike = \"monitor\"\n",
    );
    let show = d.json(&["detect", "show"]);
    assert_eq!(flood_pps(&show), (1000.0, "config".into()), "{show}");
    let modes: Vec<(String, String)> = show["detectors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["name"].as_str().unwrap().into(),
                d["mode"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(modes.len(), 7, "{show}");
    assert!(
        modes.contains(&("spike".into(), "monitor".into())),
        "{show}"
    );
    assert!(
        modes.contains(&("flood".into(), "enforce".into())),
        "{show}"
    );
    // Readings come from the second interval on.
    let show = eventually("a reading", Duration::from_secs(10), || {
        let s = d.json(&["detect", "show"]);
        s["readings"].is_object().then_some(s)
    });
    assert!(
        show["readings"]["packets_per_second"].as_f64().is_some(),
        "{show}"
    );
    assert!(
        show["learned"]["warmup_intervals_left"].as_u64().is_some(),
        "{show}"
    );

    // Raised at run time: a 3,000 packets/s flood is under the line.
    let set = d.json(&["detect", "set", "flood_pps", "50000"]);
    assert_eq!(set["origin"], "runtime", "{set}");
    assert_eq!(
        flood_pps(&d.json(&["detect", "show"])),
        (50000.0, "runtime".into())
    );
    d.send(FLOODER, 6_000, 3_000);
    // Two more intervals judge what was sent.
    std::thread::sleep(Duration::from_millis(600));
    assert!(
        !events(&d)
            .iter()
            .any(|e| e["kind"] == "detection" && e["detector"] == "flood"),
        "no flood under the raised line"
    );
    let changed = events(&d)
        .into_iter()
        .find(|e| e["kind"] == "threshold_set")
        .expect("the change is an event");
    assert_eq!(changed["actor"], "cli uid 0", "{changed}");
    assert_eq!(changed["evidence"]["flood_pps"]["observed"], 50000.0);

    // Kept across a restart, as runtime.
    d.stop();
    d.start();
    assert_eq!(
        flood_pps(&d.json(&["detect", "show"])),
        (50000.0, "runtime".into())
    );

    // Bad changes say what is wrong and change nothing.
    let err = d.refused(&["detect", "set", "floods", "5"]);
    assert!(
        err.contains("no threshold is called floods; one of flood_pps"),
        "{err}"
    );
    let err = d.refused(&["detect", "set", "scan_ports", "1.5"]);
    assert!(err.contains("a whole number of ports, at least 2"), "{err}");
    let err = d.refused(&["detect", "set", "flood_pps", "lots"]);
    assert!(err.contains("not a number"), "{err}");
    assert_eq!(
        flood_pps(&d.json(&["detect", "show"])),
        (50000.0, "runtime".into())
    );

    // Reset: the file's line again, and the next flood crosses it.
    let reset = d.json(&["detect", "reset", "flood_pps"]);
    assert_eq!(reset[0]["value"], 1000.0, "{reset}");
    assert_eq!(
        flood_pps(&d.json(&["detect", "show"])),
        (1000.0, "config".into())
    );
    std::thread::scope(|s| {
        let a = s.spawn(|| d.send(FLOODER, 7_500, 3_000));
        let e = finding(&d, "flood", FLOODER);
        assert!(e["action"].as_str().unwrap().starts_with("banned"), "{e}");
        a.join().unwrap()
    });
    let text = String::from_utf8_lossy(&d.cli(&["detect", "show"]).stdout).into_owned();
    assert!(
        text.contains("flood") && text.contains("flood_pps=1,000 (config)"),
        "{text}"
    );
}
