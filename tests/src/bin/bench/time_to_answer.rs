//! Time from the first packet of each kind of attack to the daemon's
//! answer being in force (a ban, or the host-wide SYN limit), with the
//! daemon's default detection thresholds and read interval (500 ms), on
//! the lab library's daemon harness and traffic generator. The host-wide
//! SYN limit lasts 2 s here (`detect.syn_limit_ttl`, default 60 s) so
//! consecutive runs each start without one.

use std::{
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use lab::{
    Lab,
    daemon::{Daemon, base_config},
    flood::{Attack, Flood, Generator},
    netns::{CLIENT_IF, SERVER_IF},
};
use tollgate::control::{
    Client, Request,
    replies::{Bans, Events},
};

use crate::stats;

/// Runs per kind of attack.
const RUNS: u8 = 5;

fn describe(attack: Attack) -> &'static str {
    match attack {
        Attack::UdpFlood => "UDP flood, one source -> its ban",
        Attack::SynFlood => "SYN flood, one source -> its ban",
        Attack::PortScan => "port scan (10,000 ports), one source -> its ban",
        Attack::SpoofedSynFlood => {
            "SYN flood, 50 spoofed sources -> host-wide SYN limit or every source banned"
        }
    }
}

/// Sources per spoofed run: 50, fresh each run (198.51.100.1-250 in all),
/// so no run meets the bans of the one before.
const SPOOFED: u32 = 50;

/// Run `run`'s attack: a fresh attacker address (or spoofed range) per
/// run, so every ban is a first offence.
fn attack_flood(attack: Attack, run: u8) -> Flood {
    if attack == Attack::SpoofedSynFlood {
        return Flood {
            first_src: Ipv4Addr::new(198, 51, 100, 1 + SPOOFED as u8 * run),
            sources: SPOOFED,
            ..attack.flood(Ipv4Addr::UNSPECIFIED, Ipv4Addr::new(192, 0, 2, 1), 8080)
        };
    }
    let base = match attack {
        Attack::UdpFlood => 10,
        Attack::SynFlood => 30,
        Attack::PortScan => 50,
        Attack::SpoofedSynFlood => 0,
    };
    attack.flood(
        Ipv4Addr::new(203, 0, 113, base + run),
        Ipv4Addr::new(192, 0, 2, 1),
        8080,
    )
}

/// Whether the daemon's answer to `spec` is in force: every source's ban
/// in `tollgate ban list` (the daemon's record, written right after the
/// kernel's ban map), or for a spoofed flood the host-wide SYN limit's
/// detection event (written right after the kernel's config map); a flood
/// whose sources are all banned is answered either way.
fn answered(client: &mut Client, kind: Attack, spec: &Flood, since: u64) -> anyhow::Result<bool> {
    if kind == Attack::SpoofedSynFlood {
        let new: Events = client.call(Request::Events { since })?;
        if new.events.iter().any(|e| {
            e.detector.as_deref() == Some("global_syn_flood") && e.action.starts_with("limited")
        }) {
            return Ok(true);
        }
    }
    let bans: Bans = client.call(Request::BanList)?;
    let banned: std::collections::HashSet<&str> =
        bans.bans.iter().map(|b| b.cidr.as_str()).collect();
    Ok(spec.ranges().all(|(first, count)| {
        (0..count).all(|i| {
            banned.contains(format!("{}/32", Ipv4Addr::from(u32::from(first) + i)).as_str())
        })
    }))
}

/// The newest event's sequence number.
fn last_seq(client: &mut Client) -> anyhow::Result<u64> {
    let all: Events = client.call(Request::Events { since: 0 })?;
    Ok(all.events.last().map_or(0, |e| e.seq))
}

/// `RUNS` attacks of `kind` on `d`'s lab: the milliseconds to each answer
/// (runs not answered within 3 s are said and left out).
fn answer_times(d: &Daemon, client: &mut Client, kind: Attack) -> anyhow::Result<Vec<f64>> {
    let mut times = Vec::new();
    for run in 0..RUNS {
        let spec = attack_flood(kind, run);
        let generator = Generator::load(d.lab.client(), CLIENT_IF, &spec)?;
        // Attacks start at different points of the daemon's read
        // cycle (the runs would otherwise fall into step with it),
        // after any earlier SYN limit has lifted.
        std::thread::sleep(Duration::from_millis(2_500 + 137 * run as u64));
        let since = last_seq(client)?;
        let t0 = Instant::now();
        let at = std::thread::scope(|s| -> anyhow::Result<Option<f64>> {
            let sender =
                s.spawn(|| generator.send(d.lab.client(), 20_000_000, Duration::from_secs(3)));
            let mut at = None;
            while t0.elapsed() < Duration::from_secs(3) {
                if answered(client, kind, &spec, since)? {
                    at = Some(t0.elapsed().as_secs_f64() * 1e3);
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            sender
                .join()
                .map_err(|_| anyhow::anyhow!("the generator panicked"))??;
            Ok(at)
        })?;
        match at {
            Some(ms) => times.push(ms),
            None => println!("  {kind:?} run {run}: not answered within 3 s"),
        }
    }
    Ok(times)
}

pub fn run() -> anyhow::Result<()> {
    println!();
    let lab = Lab::new("bench-ban", &["192.0.2.10".parse()?])?;
    for range in ["198.51.100.0/24", "203.0.113.0/24"] {
        lab.server
            .ip(&["route", "add", range, "via", "192.0.2.10"])?;
        lab.client()
            .ip(&["route", "add", "local", range, "dev", "lo"])?;
    }
    let d = Daemon::in_lab(lab, "bench-ban", |dir| {
        let base = base_config(dir, &[SERVER_IF], "500ms", "detach", "");
        format!("{base}[detect]\nsyn_limit_ttl = \"2s\"\n")
    });
    let mut client = Client::connect(&d.socket())?;
    // Let the detectors see quiet intervals first.
    std::thread::sleep(Duration::from_secs(3));
    let mut medians = Vec::new();
    for kind in Attack::ALL {
        let times = answer_times(&d, &mut client, kind)?;
        let n = times.len();
        if n == 0 {
            println!("{:<58} never answered", describe(kind));
            continue;
        }
        let t = stats(times);
        medians.push(t.median);
        println!(
            "{:<58} {:>4.0} / {:>4.0} / {:>4.0} ms (min/median/max of {n})",
            describe(kind),
            t.min,
            t.median,
            t.max
        );
    }
    let worst = medians.iter().copied().fold(0.0f64, f64::max);
    println!(
        "time from an attack's first packet to the answer in force, interval 500 ms (default): worst median {worst:.0} ms; target < 1000 ms (FastNetMon advertises 1-2 s, a CrowdSec bouncer polls every 10 s)"
    );
    Ok(())
}
