//! `cargo xtask demo --fleet`: two hosts sharing a ban through a real
//! CrowdSec Local API. Host A and host B each run the daemon with
//! `[crowdsec]` (a bouncer key each; A reports its detectors' bans as a
//! machine); a flood on A is detected and banned there, reported to the
//! LAPI, and pulled into B's kernel: the demo prints each step with the
//! time since the flood's first packet, B's ban list, the LAPI's
//! decisions, and B dropping the flooder's packets. Everything is removed
//! on exit, failure or Ctrl-C.

use std::{
    path::Path,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use lab::{
    Lab,
    crowdsec::Lapi,
    daemon::{Daemon, config},
    traffic,
};

const FLOODER: &str = "192.0.2.66";

/// A host of the fleet (its `[crowdsec]` section, as its config has it).
fn host(lab: Lab, lapi: &Lapi, tag: &str, machine: bool) -> anyhow::Result<(Daemon, String)> {
    let mut shown = String::new();
    let d = lapi.host(lab, tag, machine, "1s", |dir: &Path, section| {
        shown = section.to_owned();
        config(
            dir,
            &format!("[detect]\nflood_pps = 5000\nban_ttls = [\"5m\"]\n{section}"),
        )
    })?;
    Ok((d, shown))
}

fn banned(d: &Daemon) -> bool {
    d.ban(&format!("{FLOODER}/32")).is_some()
}

pub fn run(seconds: u64, interrupted: &AtomicBool) -> anyhow::Result<()> {
    let mut lapi = Lapi::new("dfl").context("starting a CrowdSec Local API")?;
    let flooder = [FLOODER.parse()?];
    let (lab_a, lab_b) = (Lab::new("dfla", &flooder)?, Lab::new("dflb", &flooder)?);
    lapi.join(&lab_a.server)?;
    lapi.join(&lab_b.server)?;
    let (a, section) = host(lab_a, &lapi, "dfla", true)?;
    let (b, _) = host(lab_b, &lapi, "dflb", false)?;
    println!(
        "== a fleet of two: a CrowdSec Local API at {} (crowdsec -no-cs, SQLite, in its own namespace), host A and host B each running `tollgate run` with a bouncer key of its own; A also reports its detectors' bans as a machine. Host A's [crowdsec]:\n{section}",
        lapi.url()
    );
    std::thread::sleep(Duration::from_secs(2));

    println!("== {FLOODER} floods host A at 20,000 packets/s:");
    let t0 = Instant::now();
    let stop = AtomicBool::new(false);
    let (on_a, on_b) = std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) && t0.elapsed() < Duration::from_secs(seconds) {
                let _ = traffic::udp(
                    a.lab.client(),
                    FLOODER.parse().unwrap(),
                    a.lab.server_v4(),
                    9,
                    2_000,
                    20_000,
                    64,
                    Duration::from_millis(200),
                );
            }
        });
        let (mut on_a, mut on_b) = (None, None);
        while on_b.is_none() && t0.elapsed() < Duration::from_secs(seconds) {
            if interrupted.load(Ordering::Relaxed) {
                break;
            }
            if on_a.is_none() && banned(&a) {
                on_a = Some(t0.elapsed());
                println!(
                    "{:>6.2}s  host A's flood detector bans {FLOODER} and posts the alert to the LAPI",
                    t0.elapsed().as_secs_f64()
                );
            }
            if banned(&b) {
                on_b = Some(t0.elapsed());
                println!(
                    "{:>6.2}s  the ban is in force in host B's kernel (B pulls every 1 s)",
                    t0.elapsed().as_secs_f64()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        stop.store(true, Ordering::Relaxed);
        (on_a, on_b)
    });
    if interrupted.load(Ordering::Relaxed) {
        println!("interrupted: cleaning up");
        return Ok(());
    }
    let (Some(on_a), Some(on_b)) = (on_a, on_b) else {
        bail!("the ban did not reach host B within {seconds}s");
    };

    println!("\n== `tollgate ban list` on host B:");
    println!(
        "{}",
        String::from_utf8_lossy(&b.cli(&["ban", "list"]).stdout).trim_end()
    );
    println!("\n== the LAPI's decisions (`cscli decisions list`):");
    println!("{}", lapi.cscli(&["decisions", "list", "-a"])?.trim_end());
    let sent = b.send(FLOODER, 200, 1_000);
    let (seen, dropped) = b.source(FLOODER, sent);
    println!(
        "\n== {FLOODER} now sends {sent} packets to host B: B's kernel saw {seen} and dropped {dropped} (never seen flooding B)"
    );
    println!(
        "\n== summary: banned on A {:.2}s after the flood's first packet, in force on B {:.2}s after it; CrowdSec's own firewall bouncer polls every 10 s by default",
        on_a.as_secs_f64(),
        on_b.as_secs_f64()
    );
    drop((a, b, lapi));
    println!("fleet removed");
    Ok(())
}
