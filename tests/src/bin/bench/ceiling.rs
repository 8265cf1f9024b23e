//! The legitimate clients under attack with Tollgate, next to the
//! ceiling: a drop-only program that knows the attacker (`tollgate_sink`
//! on the server's link to the attacker, which carries nothing else), the
//! best any defence can do. The same scene as the attack and storm tests
//! (`lab::under_attack`: nginx, existing and new clients with a 1 s
//! deadline starting 2 s into the attack); Tollgate enforces with the
//! detectors as shipped and no rule naming the attacker. Prints each
//! attack's offered rate, the clients' success, p50 and p99 (both classes
//! together), and Tollgate's p50 and p99 as ratios to the ceiling's;
//! medians of `REPS` alternating runs.

use std::{net::IpAddr, time::Duration};

use lab::{
    daemon::{Daemon, config_on},
    flood::{Attack, Flood, Kind, Sink},
    flood_lab::{ATTACK_IF, FLOOD_SOURCES_V4, FloodLab},
    netns::{SERVER_IF, SERVER_V4, SERVER_V6},
    under_attack::{Attacked, PORT, Stage},
};

use crate::stats;

const REPS: usize = 3;
const CLIENTS: usize = 30;
const EXISTING: usize = 10;
const ATTACK_TIME: Duration = Duration::from_secs(8);
const LEAD: Duration = Duration::from_secs(2);

/// The attacks: name and flood.
fn attacks() -> Vec<(&'static str, Flood)> {
    let (v4, v6) = (SERVER_V4.parse().unwrap(), SERVER_V6.parse().unwrap());
    let one = |a: Attack| Flood {
        spin: 0,
        ..a.flood("203.0.113.66".parse().unwrap(), v4, PORT)
    };
    vec![
        ("UDP flood, one source", one(Attack::UdpFlood)),
        ("SYN flood, one source", one(Attack::SynFlood)),
        (
            "UDP storm, ~700 sources of three /24s",
            Flood {
                kind: Kind::Udp,
                ..Flood::spoofed_syn_v4(&FLOOD_SOURCES_V4, v4, PORT)
            },
        ),
        (
            "UDP storm, random /64s of one /48",
            Flood {
                src6: "2001:db8:1::".parse().unwrap(),
                src6_random: u128::MAX >> 48,
                ..Flood::new(Kind::Udp, IpAddr::V6(v6), PORT)
            },
        ),
    ]
}

/// Tollgate as shipped: the production cadence (counters every 500 ms,
/// the table walked every second; the tests' 200 ms for both would walk
/// it five times as often, on the cores nginx and the clients share).
const CONFIG: &str = "# interval = \"500ms\"\n# scan_interval = \"1s\"\n\
    [default_limit]\npackets_per_second = 2000\nburst_packets = 4000\n\
    [syn_cookies]\nports = [80]\nmode = \"under_attack\"\n";

/// One run of attack `i`: the ceiling's, or Tollgate's.
fn once(i: usize, rep: usize, tollgate: bool) -> anyhow::Result<Attacked> {
    let tag = format!("bc{i}{rep}{}", if tollgate { "t" } else { "c" });
    let lab = FloodLab::new(&tag, CLIENTS)?;
    let (_, spec) = attacks().swap_remove(i);
    let mut stage = Stage::new(&lab, &spec, EXISTING, CLIENTS)?;
    if tollgate {
        let d = Daemon::in_lab(lab, &tag, |dir| {
            config_on(dir, &[SERVER_IF, ATTACK_IF], CONFIG)
        });
        stage.play(&d.lab, ATTACK_TIME, LEAD)
    } else {
        let _sink = Sink::attach(&lab.server, ATTACK_IF)?;
        stage.play(&lab, ATTACK_TIME, LEAD)
    }
}

pub fn run() -> anyhow::Result<()> {
    println!(
        "legitimate clients under attack, Tollgate next to the ceiling (a drop-only program that knows the attacker); nginx, 300 requests/s with a 1 s deadline from 10 existing and 20 new addresses; medians of {REPS} runs"
    );
    println!(
        "{:<40} {:>15} {:>17} {:>22} {:>22}",
        "attack",
        "Mpps ceil / TG",
        "success ceil / TG",
        "p50 ms ceil / TG (x)",
        "p99 ms ceil / TG (x)"
    );
    // TG_CEILING_ATTACK=i: attack i alone (0-3, the table's rows), for quick tuning.
    let only: Option<usize> = std::env::var("TG_CEILING_ATTACK")
        .ok()
        .and_then(|v| v.parse().ok());
    for (i, (name, _)) in attacks().into_iter().enumerate() {
        if only.is_some_and(|o| o != i) {
            continue;
        }
        // [ceiling, Tollgate] x (Mpps, success, p50, p99)
        let mut figures: [[Vec<f64>; 4]; 2] = Default::default();
        for rep in 0..REPS {
            for (k, tollgate) in [false, true].into_iter().enumerate() {
                let a = once(i, rep, tollgate)?;
                let all = a.clients.all();
                let ms = |d: Option<Duration>| d.map_or(f64::NAN, |d| d.as_secs_f64() * 1e3);
                for (v, x) in figures[k].iter_mut().zip([
                    a.attack_pps / 1e6,
                    100.0 * all.success(),
                    ms(all.p50()),
                    ms(all.p99()),
                ]) {
                    v.push(x);
                }
            }
        }
        let med = |k: usize, f: usize| stats(figures[k][f].clone()).median;
        println!(
            "{:<40} {:>7.2} / {:<7.2} {:>7.2} / {:<7.2}% {:>6.2} / {:<5.2} ({:.2}x) {:>6.2} / {:<5.2} ({:.2}x)",
            name,
            med(0, 0),
            med(1, 0),
            med(0, 1),
            med(1, 1),
            med(0, 2),
            med(1, 2),
            med(1, 2) / med(0, 2),
            med(0, 3),
            med(1, 3),
            med(1, 3) / med(0, 3),
        );
    }
    Ok(())
}
