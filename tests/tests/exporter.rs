//! `monitor/src/exporter.rs` end to end: `tollgate run` in the server
//! namespace of a lab with live traffic from a client namespace, a real
//! Prometheus server (Debian's `prometheus`) scraping it and showing what
//! the kernel counted, and `promtool check metrics` finding nothing wrong
//! with the exporter's own output.

use std::{
    io::Write,
    process::{Child, Command, Stdio},
    time::Duration,
};

use lab::{
    daemon::{Daemon, METRICS, eventually, http_get},
    netns::SERVER_IF,
};
use serde_json::Value;

const PROMETHEUS: &str = "127.0.0.1:9090";

fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A Prometheus server (Debian's `prometheus`) in the server namespace,
/// scraping the daemon every second.
struct Prometheus<'a> {
    daemon: &'a Daemon,
    child: Child,
}

impl<'a> Prometheus<'a> {
    fn start(daemon: &'a Daemon) -> Self {
        let dir = daemon.dir.join("prometheus");
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = dir.join("prometheus.yml");
        std::fs::write(
            &cfg,
            format!(
                "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: tollgate\n    static_configs:\n      - targets: ['{METRICS}']\n"
            ),
        )
        .unwrap();
        let child = daemon
            .lab
            .server
            .command("prometheus")
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address={PROMETHEUS}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting prometheus (Debian package `prometheus`, installed by `cargo xtask setup`)");
        let p = Self { daemon, child };
        eventually(
            "Prometheus scraping the daemon (up == 1)",
            Duration::from_secs(60),
            || (p.query("up{job=\"tollgate\"}") == Some(1.0)).then_some(()),
        );
        p
    }

    /// The value of an instant query with one result.
    fn query(&self, q: &str) -> Option<f64> {
        let body = self
            .daemon
            .lab
            .server
            .enter(|| http_get(PROMETHEUS, &format!("/api/v1/query?query={}", encode(q))))
            .ok()??;
        let v: Value = serde_json::from_str(&body).ok()?;
        let r = v["data"]["result"].as_array()?.first()?.clone();
        r["value"][1].as_str()?.parse().ok()
    }
}

impl Drop for Prometheus<'_> {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn prometheus_scrapes_what_the_kernel_counted() {
    let d = Daemon::new("prom", &["192.0.2.10"], "");
    let prom = Prometheus::start(&d);
    let sent = d.send("192.0.2.10", 3_000, 3_000);
    let (packets, dropped) = d.source("192.0.2.10", sent);
    assert_eq!(packets, sent);
    assert!(dropped > 0, "3,000/s against 200/s must drop");
    let q = format!(
        "sum(tollgate_packets_total{{iface=\"{SERVER_IF}\",verdict=\"drop\",reason=\"rate_limited_packets\"}})"
    );
    eventually(
        "Prometheus showing the kernel's drops",
        Duration::from_secs(30),
        || (prom.query(&q) == Some(dropped as f64)).then_some(()),
    );
    let passed = sent - dropped;
    let q = format!(
        "sum(tollgate_packets_total{{iface=\"{SERVER_IF}\",verdict=\"pass\",reason=\"pass\"}})"
    );
    let seen = eventually(
        "Prometheus showing the passes",
        Duration::from_secs(30),
        || prom.query(&q).filter(|v| *v >= passed as f64),
    );
    // Other passes are the client's own IPv6 link-local chatter, if any.
    assert!(
        seen < passed as f64 + 50.0,
        "{seen} passes for {passed} sent and passed"
    );
    assert!(prom.query("tollgate_sources_tracked").unwrap_or(0.0) >= 1.0);
    assert_eq!(
        prom.query("tollgate_policy_rules"),
        Some(2.0),
        "management + the config rule"
    );
    assert_eq!(
        prom.query("tollgate_top_talker_packets{rank=\"1\"}"),
        Some(sent as f64)
    );

    // promtool on the exporter's own output reports nothing.
    let text = d.metrics().expect("GET /metrics");
    let mut check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    check
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = check.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool: {said}"
    );
}
