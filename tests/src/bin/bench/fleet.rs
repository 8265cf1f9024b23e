//! A fleet sharing bans through a real CrowdSec Local API: from the first
//! packet of a flood on host A to the ban in force on A (its own
//! detector), on host B (Tollgate as a bouncer, polling every second),
//! and on host C (CrowdSec's own firewall bouncer at its default 10 s
//! poll, nftables), each run with a flooder never seen before.

use std::{
    path::Path,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use lab::{
    Lab, NetNs,
    crowdsec::{FirewallBouncer, Lapi},
    daemon::config,
    traffic,
};

use crate::stats;

const RUNS: usize = 5;
/// How long a run waits for the three bans.
const LIMIT: Duration = Duration::from_secs(30);

pub fn run() -> anyhow::Result<()> {
    let flooders: Vec<String> = (0..RUNS).map(|i| format!("192.0.2.{}", 101 + i)).collect();
    let addrs: Vec<_> = flooders.iter().map(|a| a.parse().unwrap()).collect();
    let mut lapi = Lapi::new("bfl")?;
    let (lab_a, lab_b) = (Lab::new("bfla", &addrs)?, Lab::new("bflb", &addrs)?);
    let c = NetNs::new("bflc")?;
    lapi.join(&lab_a.server)?;
    lapi.join(&lab_b.server)?;
    lapi.join(&c)?;
    let host = |lab, tag, machine| {
        lapi.host(lab, tag, machine, "1s", |dir: &Path, section| {
            config(
                dir,
                &format!("[detect]\nflood_pps = 1000\nban_ttls = [\"10m\"]\n{section}"),
            )
        })
    };
    let a = host(lab_a, "bfla", true)?;
    let b = host(lab_b, "bflb", false)?;
    let fwb = FirewallBouncer::start(&lapi, &c, &lapi.bouncer("bflc")?)?;
    // Each bouncer's first pull (startup) done.
    std::thread::sleep(Duration::from_secs(3));

    let (mut on_a, mut on_b, mut on_c) = (Vec::new(), Vec::new(), Vec::new());
    for ip in &flooders {
        let stop = AtomicBool::new(false);
        let t0 = Instant::now();
        let (ta, tb, tc) = std::thread::scope(|s| {
            s.spawn(|| {
                let src = ip.parse().unwrap();
                // 5,000 packets/s until the three bans are seen.
                let mut sent = 0;
                while !stop.load(Ordering::Relaxed) && t0.elapsed() < LIMIT && sent < 200_000 {
                    sent += traffic::udp(
                        a.lab.client(),
                        src,
                        a.lab.server_v4(),
                        9,
                        500,
                        5_000,
                        64,
                        Duration::from_millis(200),
                    )
                    .map_or(0, |s| s.packets);
                }
            });
            let (mut ta, mut tb, mut tc) = (None, None, None);
            while (ta.is_none() || tb.is_none() || tc.is_none()) && t0.elapsed() < LIMIT {
                let now = t0.elapsed().as_secs_f64();
                if ta.is_none() && a.ban(&format!("{ip}/32")).is_some() {
                    ta = Some(now);
                }
                if tb.is_none() && b.ban(&format!("{ip}/32")).is_some() {
                    tb = Some(now);
                }
                if tc.is_none() && fwb.has(ip) {
                    tc = Some(now);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            stop.store(true, Ordering::Relaxed);
            (ta, tb, tc)
        });
        let missing = |t: Option<f64>, what: &str| {
            t.ok_or_else(|| anyhow::anyhow!("{ip}: no ban on {what} within {LIMIT:?}"))
        };
        on_a.push(missing(ta, "host A")?);
        on_b.push(missing(tb, "host B")?);
        on_c.push(missing(
            tc,
            &format!("host C (firewall bouncer): {}", fwb.log()),
        )?);
    }
    let (a, b, c) = (stats(on_a), stats(on_b), stats(on_c));
    println!(
        "fleet (a real CrowdSec LAPI, {RUNS} floods from new sources, s from the first attack packet on host A, min / median / max): banned on A by its detector {:.2} / {:.2} / {:.2}; in force on B, Tollgate bouncer polling 1 s: {:.2} / {:.2} / {:.2}; in force on C, CrowdSec's firewall bouncer at its default 10 s poll: {:.2} / {:.2} / {:.2}; C / B (medians) {:.1}",
        a.min,
        a.median,
        a.max,
        b.min,
        b.median,
        b.max,
        c.min,
        c.median,
        c.max,
        c.median / b.median
    );
    Ok(())
}
