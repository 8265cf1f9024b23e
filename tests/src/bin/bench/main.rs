//! `cargo xtask bench`: what a packet costs and what the daemon costs,
//! measured in one run, one module per measurement:
//!
//! - `verifier`: the verifier's processed instructions per program;
//! - `per_packet`: ns per packet of Tollgate's programs next to a floor
//!   and xdp-filter, on the program `setup` loads (1,000 CIDR rules,
//!   1,000,000 tracked sources);
//! - `new_source`: what a never-seen source costs (a spoofed storm's every
//!   packet) on that full table, next to its next packet;
//! - `walk`: the sweep of that million-source table alone;
//! - `accuracy`: the bucket accuracy sweep (passed against burst + rate
//!   × time, 10 to 100,000 per second, one and two CPUs);
//! - `flood_table`: what each defence (Tollgate's drop paths, plain
//!   XDP_DROP, xdp-filter, iptables hashlimit, an nftables meter) absorbs of
//!   a flood on a veth pair, one receiving core, flat out and paced;
//! - `daemon_read`: the daemon reading a million sources every second (one
//!   full read, its CPU and memory);
//! - `control_socket`: a `status` call's latency, alone and with 1,000
//!   idle connections open;
//! - `time_to_answer`: from an attack's first packet to the daemon's
//!   answer in force;
//! - `ceiling`: legitimate clients under attack with Tollgate, next to a
//!   drop-only program that knows the attacker;
//! - `fleet`: from a flood's first packet on one host to its ban in force
//!   on another through a real CrowdSec LAPI, beside CrowdSec's firewall
//!   bouncer.
//!
//! `TG_BENCH_ONLY=ban|daemon|walk|accuracy|verifier|cookie|download|answer|flood|ceiling|control|fleet|packet|new`
//! runs one part alone (`packet`: the per-packet table, `new`: the new-source figure), `tollgate` all
//! but xdp-filter's figures, for quick tuning; `TG_FLOOD_ROWS=1,4`: only
//! those rows of the flood table (numbered from 0 in its order).

mod accuracy;
mod ceiling;
mod chart;
mod control_socket;
mod daemon_read;
mod download;
mod fleet;
mod flood_table;
mod new_source;
mod per_packet;
mod setup;
mod syn_answer;
mod syn_cookie;
mod time_to_answer;
mod verifier;
mod walk;

use per_packet::{REPEAT, RUNS};
use setup::RULES;

/// Min / median / max of a set of measurements.
struct Stats {
    min: f64,
    median: f64,
    max: f64,
}

fn stats(mut v: Vec<f64>) -> Stats {
    if v.is_empty() {
        v.push(f64::NAN);
    }
    v.sort_by(|a, b| a.total_cmp(b));
    Stats {
        min: v[0],
        median: v[v.len() / 2],
        max: v[v.len() - 1],
    }
}

fn main() -> anyhow::Result<()> {
    let only = std::env::var("TG_BENCH_ONLY").ok();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    // TG_BENCH_ONLY=ban|daemon|walk|accuracy|verifier|cookie|download|answer: one part alone, for quick tuning
    // (`packet` below, after the setup it shares).
    match only.as_deref() {
        Some("ban") => return time_to_answer::run(),
        Some("accuracy") => return accuracy::run(),
        Some("daemon") => return daemon_read::run(),
        Some("verifier") => return verifier::run(&setup::load()?),
        Some("cookie") => return syn_cookie::run(),
        Some("download") => return download::run(),
        Some("answer") => return syn_answer::run(),
        Some("flood") => return flood_table::run(),
        Some("ceiling") => return ceiling::run(),
        Some("control") => return control_socket::run(),
        Some("fleet") => return fleet::run(),
        Some("walk") => {
            let mut tg = setup::load()?;
            setup::prepare(&mut tg)?;
            return walk::run(&tg, cpus);
        }
        _ => {}
    }
    println!(
        "tollgate bench: BPF_PROG_TEST_RUN, {RUNS} runs x {REPEAT} repeats per figure, ns per packet (min / median / max); {cpus} CPUs"
    );
    let mut tg = setup::load()?;
    verifier::run(&tg)?;
    let filled = setup::prepare(&mut tg)?;
    println!(
        "setup: {RULES} CIDR rules, {} sources tracked (filled in {:.1} s), capacity {}",
        tg.maps.for_each_source(|_| {})?,
        filled.as_secs_f64(),
        tg.maps.max_sources()
    );
    if only.as_deref() == Some("new") {
        new_source::run(&mut tg)?;
        return Ok(());
    }
    // TG_BENCH_ONLY=tollgate: Tollgate's figures alone, for quick tuning.
    per_packet::run(&tg, cpus, only.as_deref() == Some("tollgate"))?;
    new_source::run(&mut tg)?;
    if only.as_deref() == Some("packet") {
        return Ok(());
    }
    walk::run(&tg, cpus)?;
    drop(tg);
    accuracy::run()?;
    flood_table::run()?;
    syn_cookie::run()?;
    syn_answer::run()?;
    download::run()?;
    daemon_read::run()?;
    control_socket::run()?;
    time_to_answer::run()?;
    fleet::run()?;
    ceiling::run()
}
