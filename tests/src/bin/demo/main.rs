//! `cargo xtask demo`: the product on a lab it builds itself. The daemon
//! (`tollgate run --config`, a config file printed first) in a server
//! namespace; a well-behaved client (IPv4 and IPv6) and a flooder in a
//! client namespace; the live view (`tollgate top --watch`) while the
//! flood runs; then the flood's detection and ban from the event log,
//! `tollgate ban list`, an excerpt of `/metrics`, and a summary per
//! source (sent, passed, dropped, time to ban). Everything is removed on
//! exit, on failure and on Ctrl-C (the lab's guards delete the namespaces;
//! the daemon detaches when it stops). `--fleet` shows two hosts sharing
//! a ban through a real CrowdSec Local API instead (`fleet`).

mod fleet;

use std::{
    net::IpAddr,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use lab::{
    Lab,
    daemon::{Daemon, base_config, events, tollgate_bin},
    netns::SERVER_IF,
    traffic::{self, Sent},
};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
    traffic::stop_all();
}

const GOOD_V4: &str = "192.0.2.10";
const GOOD_V6: &str = "2001:db8::10";
const FLOODER: &str = "192.0.2.66";

/// The demo's policy and detection: what an operator would write.
const TABLES: &str = r#"[default_limit]
packets_per_second = 500
burst_packets = 1000

[management]
cidrs = ["192.0.2.250/32"]

[detect]
flood_pps = 5000
ban_ttls = ["5m", "1h"]

[log]
format = "json"
"#;

/// `--seconds N` (at least 3) and `--fleet`.
fn args() -> anyhow::Result<(u64, bool)> {
    let mut it = std::env::args().skip(1);
    let mut seconds = 20;
    let mut fleet = false;
    while let Some(a) = it.next() {
        match a.as_str() {
            "--fleet" => fleet = true,
            "--seconds" => {
                seconds = it
                    .next()
                    .and_then(|s| s.parse().ok())
                    .filter(|s| *s >= 3)
                    .context("--seconds takes a whole number, at least 3")?;
            }
            other => bail!("unknown argument {other}; usage: demo [--seconds N] [--fleet]"),
        }
    }
    Ok((seconds, fleet))
}

fn main() -> anyhow::Result<()> {
    let (seconds, fleet) = args()?;
    // SAFETY: the handler only stores to atomics.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    if fleet {
        return fleet::run(seconds, &INTERRUPTED);
    }
    let addrs: Vec<IpAddr> = [GOOD_V4, GOOD_V6, FLOODER]
        .iter()
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    let lab = Lab::new("demo", &addrs).context("building the demo lab")?;
    let d = Daemon::in_lab(lab, "demo", |dir| {
        let tables = format!("[sources]\n{TABLES}");
        base_config(dir, &[SERVER_IF], "1s", "detach", &tables)
    });
    let config = std::fs::read_to_string(d.dir.join("tollgate.toml"))?;
    println!(
        "== Tollgate demo: a server ({}, {}), a well-behaved client ({GOOD_V4}, {GOOD_V6}) and a flooder ({FLOODER}), in network namespaces\n\n== the daemon runs `tollgate run --config {}`:\n{config}",
        d.lab.server_v4(),
        d.lab.server_v6(),
        d.dir.join("tollgate.toml").display(),
    );

    let flood_start_ms = tollgate::clock::unix_ms();
    let (sent, watched) = std::thread::scope(|s| {
        let good4 = s.spawn(|| send(&d, GOOD_V4, 200, seconds, 200));
        let good6 = s.spawn(|| send(&d, GOOD_V6, 100, seconds, 200));
        let flood = s.spawn(|| send(&d, FLOODER, 0, seconds, 64));
        println!(
            "== {seconds}s of traffic: the client at 200/s (IPv4) and 100/s (IPv6), the flooder as fast as it can; the live view (`tollgate top --watch`):"
        );
        let watched = watch(&d, seconds);
        // The view may end early (q, Ctrl-C): the traffic ends with it.
        traffic::stop_all();
        let joined = [good4, good6, flood].map(|h| h.join().expect("a sender panicked"));
        (joined, watched)
    });
    watched?;
    let [good4, good6, flood] = sent;
    let (good4, good6, flood) = (good4?, good6?, flood?);
    if INTERRUPTED.load(Ordering::Relaxed) {
        println!("interrupted: cleaning up");
        return Ok(());
    }

    println!("\n== what the detectors found (`tollgate events`):");
    let all = events(&d);
    for e in all
        .iter()
        .filter(|e| e["kind"] == "detection" || e["kind"] == "ban_added")
    {
        println!("{}", text_of(&d, e["seq"].as_u64().unwrap_or(0)));
    }
    println!("\n== `tollgate ban list`:\n{}", cli(&d, &["ban", "list"]));
    println!("\n== an excerpt of /metrics:");
    for line in d
        .metrics()
        .unwrap_or_default()
        .lines()
        .filter(|l| excerpt(l))
    {
        println!("{line}");
    }

    println!("\n== summary per source:");
    println!(
        "{:<16} {:>10} {:>10} {:>10} {:>10}  time to ban",
        "source", "sent", "seen", "passed", "dropped"
    );
    let ban_ms = all
        .iter()
        .find(|e| e["kind"] == "detection" && e["source"] == FLOODER)
        .and_then(|e| e["unix_ms"].as_u64());
    for (addr, sent) in [(GOOD_V4, &good4), (GOOD_V6, &good6), (FLOODER, &flood)] {
        // What the kernel counted for the address's source (`explain`).
        let e = d.json(&["explain", addr]);
        let n = |k: &str| e["tracked"][k].as_u64().unwrap_or(0);
        let (seen, dropped) = (n("packets"), n("dropped"));
        let to_ban = match (addr, ban_ms) {
            (FLOODER, Some(at)) => {
                format!("{:.1}s", at.saturating_sub(flood_start_ms) as f64 / 1e3)
            }
            (FLOODER, None) => "not banned".into(),
            _ => "-".into(),
        };
        println!(
            "{addr:<16} {:>10} {seen:>10} {:>10} {dropped:>10}  {to_ban}",
            sent.packets,
            seen.saturating_sub(dropped),
        );
    }
    println!(
        "(seen: what reached XDP; the rest of what was sent was lost on the way, in the sender's or the veth's queues under the flood)"
    );
    drop(d);
    println!("\nlab removed");
    if ban_ms.is_none() {
        bail!("the flood was not banned; see the events above");
    }
    Ok(())
}

/// `seconds` of UDP from `src` at `pps` (0: as fast as it can).
fn send(d: &Daemon, src: &str, pps: u64, seconds: u64, payload: usize) -> anyhow::Result<Sent> {
    let src: IpAddr = src.parse()?;
    let dst = if src.is_ipv6() {
        d.lab.server_v6()
    } else {
        d.lab.server_v4()
    };
    let count = if pps == 0 {
        u64::MAX / 2
    } else {
        pps * seconds
    };
    traffic::udp(
        d.lab.client(),
        src,
        dst,
        8080,
        count,
        pps,
        payload,
        Duration::from_secs(seconds),
    )
}

/// The live view on this terminal (plain blocks when it is not one), for
/// the length of the traffic.
fn watch(d: &Daemon, seconds: u64) -> anyhow::Result<()> {
    let started = Instant::now();
    let status = std::process::Command::new(tollgate_bin())
        .args([
            "top", "--watch", "--every", "1s", "--by", "drops", "-n", "5",
        ])
        .args(["--count", &seconds.to_string(), "--socket"])
        .arg(d.socket())
        .status()
        .context("starting tollgate top --watch")?;
    if !status.success() && !INTERRUPTED.load(Ordering::Relaxed) {
        bail!(
            "tollgate top --watch failed with {status} after {:?}",
            started.elapsed()
        );
    }
    Ok(())
}

fn cli(d: &Daemon, args: &[&str]) -> String {
    String::from_utf8_lossy(&d.cli(args).stdout)
        .trim_end()
        .to_owned()
}

/// Event `seq` as `tollgate events` prints it.
fn text_of(d: &Daemon, seq: u64) -> String {
    let out = cli(d, &["events"]);
    out.lines()
        .find(|l| l.starts_with(&format!("#{seq} ")))
        .unwrap_or_default()
        .to_owned()
}

/// The metrics lines worth showing: drops by reason, detections, bans.
fn excerpt(line: &str) -> bool {
    let nonzero = !line.ends_with(" 0");
    (line.starts_with("tollgate_packets_total{") && line.contains("verdict=\"drop\"") && nonzero)
        || (line.starts_with("tollgate_detections_total") && nonzero)
        || line.starts_with("tollgate_bans_active")
}
