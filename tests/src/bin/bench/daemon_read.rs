//! The daemon under load: `tollgate run --config` in a lab's server
//! namespace (the lab library's daemon harness), its source table filled
//! to 1,000,000 sources from here (opened through its pins, as root may),
//! read every second. Reports its CPU use (from /proc), resident memory,
//! and the duration of one full read of the maps as the daemon itself
//! exports it.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use lab::{
    Lab,
    daemon::{Daemon, base_config},
    netns::SERVER_IF,
};
use monitor_common::types::{SourceKey, SourceState};
use tollgate::{clock::monotonic_ns, maps::SourceTable};

use crate::{
    setup::{SOURCES, bench_source},
    stats,
};

/// The process's CPU time so far (user + system), in clock ticks.
fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat.rsplit_once(')').context("/proc stat format")?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    Ok(f[11].parse::<u64>()? + f[12].parse::<u64>()?)
}

/// The daemon's source table, filled through its pins.
fn fill(d: &Daemon) -> anyhow::Result<()> {
    let pins = d.layout_dir();
    let mut table = SourceTable::from_pins(&pins)
        .with_context(|| format!("opening the daemon's source table in {}", pins.display()))?;
    let now = monotonic_ns();
    table.insert((0..SOURCES).map(|i| {
        let a = bench_source(i);
        let mut addr = [0u32; 4];
        for (w, c) in addr.iter_mut().zip(a.octets().chunks(4)) {
            *w = u32::from_ne_bytes([c[0], c[1], c[2], c[3]]);
        }
        let key = SourceKey { addr, family: 6 };
        let state = SourceState {
            packets: 1 + i as u64 % 1000,
            bytes: 100,
            first_seen_ns: now,
            last_seen_ns: now,
            ..SourceState::default()
        };
        (key, state)
    }))?;
    Ok(())
}

pub fn run() -> anyhow::Result<()> {
    // The setting: everything read at a 1 s interval, the whole
    // source table included.
    let lab = Lab::new("bench-d", &[])?;
    let d = Daemon::in_lab(lab, "bench-daemon", |dir| {
        base_config(
            dir,
            &[SERVER_IF],
            "1s",
            "detach",
            "[sources]\nmax_tracked = 1048576\nscan_interval = \"1s\"\n",
        )
    });
    let pid = d.pid();
    fill(&d)?;
    // Let a full read of the filled table happen, then measure over
    // 30 s: thirty full reads.
    std::thread::sleep(Duration::from_secs(3));
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let (c0, t0) = (cpu_ticks(pid)?, Instant::now());
    let mut reads = Vec::new();
    for _ in 0..30 {
        std::thread::sleep(Duration::from_secs(1));
        if let Some(v) = d.metrics().as_deref().and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("tollgate_map_read_duration_seconds "))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        }) {
            reads.push(v * 1e3);
        }
    }
    let cpu_pct = (cpu_ticks(pid)? - c0) as f64 / hz / t0.elapsed().as_secs_f64() * 100.0;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = |field: &str| -> anyhow::Result<f64> {
        status
            .lines()
            .find(|l| l.starts_with(field))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .with_context(|| format!("{field} in /proc status"))
    };
    let (rss_kib, peak_kib) = (kib("VmRSS:")?, kib("VmHWM:")?);
    let r = stats(reads);
    println!();
    println!(
        "daemon with {SOURCES} tracked sources, interval 1 s: counters, the hot list and the whole source table read every second (measured over 30 s):"
    );
    println!(
        "  one full map read (counters + source table sweep + top talkers): {:.0} / {:.0} / {:.0} ms (min/median/max; target < 250 ms)",
        r.min, r.median, r.max
    );
    println!("  CPU: {cpu_pct:.1}% of one core (target < 5%)");
    println!(
        "  resident memory: {:.1} MiB, peak {:.1} MiB (target < 150 MiB)",
        rss_kib / 1024.0,
        peak_kib / 1024.0
    );
    Ok(())
}
