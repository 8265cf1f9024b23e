//! What a packet costs. Every figure is the kernel's own BPF_PROG_TEST_RUN
//! average over many repeats of one frame, taken several times (min /
//! median / max of the runs). Four programs see the same frames:
//!
//! - floor: a program that only returns XDP_PASS (the harness's own cost);
//! - parse: Tollgate's parser alone;
//! - full: Tollgate's production program with 1,000 CIDR rules and
//!   1,000,000 tracked sources, single-buffer (`tollgate_linear`, what the
//!   daemon attaches wherever the MTU fits a buffer);
//! - multi-buffer: the same program for jumbo MTUs (`tollgate`), which asks
//!   the kernel for each frame's length;
//! - no cache: the same program without the drop cache (`tollgate_uncached`),
//!   so one run says what the cache saves a dropped packet and costs a
//!   passed one;
//! - xdp-filter (Debian's xdp-tools) with 1,000 denied addresses, loaded on
//!   a veth in a namespace and run through `bpftool prog run`.
//!
//! The ratio (full - floor) / (xdp-filter - floor) says what policy,
//! buckets and statistics cost next to xdp-filter's exact-match lookup.

use std::{net::Ipv4Addr, path::Path, process::Command};

use anyhow::{Context as _, bail};
use lab::{NetNs, netns::exec, packets::Spec};
use monitor_common::{
    maps::{PROG_FLOOR, PROG_LINEAR, PROG_MAIN, PROG_PARSE, PROG_UNCACHED},
    reason::Verdict,
};
use tollgate::loader::Tollgate;

use crate::{Stats, stats};

/// Runs per (program, frame); each run is one BPF_PROG_TEST_RUN.
pub const RUNS: usize = 9;
/// Repeats inside one run (the kernel averages over them).
pub const REPEAT: u32 = 500_000;
const DENIED: usize = 1_000;

/// xdp-filter keeps one set of pinned maps per host, so its two feature
/// sets are loaded one after the other, each for its own rounds.
const VARIANTS: [(&str, &str); 2] = [
    (
        "tcp,udp,ipv4,ipv6,ethernet",
        "xdp-filter (default, all features)",
    ),
    ("ipv4,ipv6", "xdp-filter (IP matching only)"),
];

/// 64-byte IPv4 TCP frames from each kind of source, and a 1,500-byte
/// VLAN-tagged IPv6 UDP frame.
fn frames() -> Vec<(&'static str, Vec<u8>)> {
    let tcp64 = |src: &str| {
        let f = Spec::tcp(src, "198.51.100.1", 40000, 443)
            .payload(10)
            .build();
        assert_eq!(f.len(), 64);
        f
    };
    let big = Spec::udp("2001:db8:1::10", "2001:db8:ffff::1", 40000, 443)
        .vlans(&[42])
        .payload(1500 - 14 - 4 - 40 - 8)
        .build();
    assert_eq!(big.len(), 1500);
    vec![
        ("64B IPv4 TCP, allowed", tcp64("203.0.113.10")),
        ("64B IPv4 TCP, limited, under rate", tcp64("192.0.2.10")),
        ("64B IPv4 TCP, over rate", tcp64("192.0.2.20")),
        ("64B IPv4 TCP, banned", tcp64("192.0.2.30")),
        ("64B IPv4 TCP, denied", tcp64("198.18.0.10")),
        ("1500B VLAN IPv6 UDP, under rate", big),
    ]
}

/// The first packets of a source create its entry; steady state is what
/// is measured.
fn warm(tg: &Tollgate, frame: &[u8]) -> anyhow::Result<()> {
    for prog in [
        PROG_FLOOR,
        PROG_PARSE,
        PROG_LINEAR,
        PROG_MAIN,
        PROG_UNCACHED,
    ] {
        tg.run_program(prog, frame, 1000)?;
    }
    Ok(())
}

/// One BPF_PROG_TEST_RUN of `REPEAT` repeats: the kernel's mean ns.
fn tollgate_run(tg: &Tollgate, prog: &'static str, frame: &[u8]) -> anyhow::Result<f64> {
    Ok(tg.run_program(prog, frame, REPEAT)?.1 as f64)
}

/// xdp-filter loaded on a veth in its own namespace, with `DENIED` source
/// addresses denied; returns the namespace (kept alive) and the id of the
/// program on the interface (libxdp's dispatcher, which runs xdp-filter).
fn xdp_filter(features: &str) -> anyhow::Result<(NetNs, u32)> {
    let ns = NetNs::new("bench-xf")?;
    ns.ip(&["link", "add", "xf0", "type", "veth", "peer", "name", "xf1"])?;
    ns.ip(&["link", "set", "xf0", "up"])?;
    ns.ip(&["link", "set", "xf1", "up"])?;
    exec(ns.nsenter("xdp-filter").args([
        "load",
        "xf0",
        "--features",
        features,
        "--policy",
        "allow",
    ]))
    .context("loading xdp-filter (from Debian's xdp-tools; `cargo xtask setup` installs it)")?;
    for i in 0..DENIED {
        let a = Ipv4Addr::new(198, 18, (i >> 8) as u8, i as u8);
        exec(
            ns.nsenter("xdp-filter")
                .args(["ip", &a.to_string(), "--mode", "src"]),
        )?;
    }
    let link = ns.ip(&["-d", "link", "show", "xf0"])?;
    let id = link
        .split_whitespace()
        .skip_while(|w| *w != "prog/xdp")
        .nth(2)
        .and_then(|w| w.parse().ok())
        .with_context(|| format!("no XDP program id in `ip link` output: {link}"))?;
    Ok((ns, id))
}

/// One `bpftool prog run` of `repeat` repeats: the kernel's mean ns.
fn bpftool_run(id: u32, frame_file: &Path, repeat: u32) -> anyhow::Result<f64> {
    let out = exec(
        Command::new("bpftool")
            .args(["prog", "run", "id", &id.to_string(), "data_in"])
            .arg(frame_file)
            .args(["repeat", &repeat.to_string()]),
    )?;
    out.split("duration (average): ")
        .nth(1)
        .and_then(|s| s.trim().trim_end_matches("ns").parse().ok())
        .with_context(|| format!("unexpected `bpftool prog run` output: {out}"))
}

/// Every run's figure, per frame: `xf` per xdp-filter variant.
struct Figures {
    floor: Vec<Vec<f64>>,
    parse: Vec<Vec<f64>>,
    full: Vec<Vec<f64>>,
    frags: Vec<Vec<f64>>,
    uncached: Vec<Vec<f64>>,
    xf: Vec<Vec<Vec<f64>>>,
}

/// The figures of every program on every frame (written to `files` for
/// bpftool); xdp-filter's only unless `only_tollgate`.
fn measure(
    tg: &Tollgate,
    frames: &[(&str, Vec<u8>)],
    files: &[std::path::PathBuf],
    only_tollgate: bool,
) -> anyhow::Result<Figures> {
    let n = frames.len();
    let mut f = Figures {
        floor: vec![Vec::new(); n],
        parse: vec![Vec::new(); n],
        full: vec![Vec::new(); n],
        frags: vec![Vec::new(); n],
        uncached: vec![Vec::new(); n],
        xf: vec![vec![Vec::new(); n]; VARIANTS.len()],
    };
    for (v, (features, name)) in VARIANTS.iter().enumerate() {
        let loaded = if only_tollgate {
            None
        } else {
            let (ns, id) = xdp_filter(features)?;
            println!(
                "{name}: {DENIED} denied source addresses, run through `bpftool prog run` (libxdp dispatcher, prog id {id})"
            );
            Some((ns, id))
        };
        for (i, (_, frame)) in frames.iter().enumerate() {
            warm(tg, frame)?;
            if let Some((_, id)) = &loaded {
                bpftool_run(*id, &files[i], 1000)?;
            }
        }
        for _ in 0..RUNS {
            for (i, (_, frame)) in frames.iter().enumerate() {
                f.floor[i].push(tollgate_run(tg, PROG_FLOOR, frame)?);
                if v == 0 {
                    f.parse[i].push(tollgate_run(tg, PROG_PARSE, frame)?);
                }
                f.full[i].push(tollgate_run(tg, PROG_LINEAR, frame)?);
                if v == 0 {
                    f.frags[i].push(tollgate_run(tg, PROG_MAIN, frame)?);
                    f.uncached[i].push(tollgate_run(tg, PROG_UNCACHED, frame)?);
                }
                if let Some((_, id)) = &loaded {
                    f.xf[v][i].push(bpftool_run(*id, &files[i], REPEAT)?);
                }
            }
        }
        if let Some((ns, _)) = loaded {
            exec(ns.nsenter("xdp-filter").args(["unload", "xf0"]))?;
        }
    }
    Ok(f)
}

/// The frames whose packets drop (after the first, through the drop
/// cache): their cost over the floor is the drop path's.
const DROPPED: [&str; 3] = ["over rate", "banned", "denied"];

/// Prints the drop path's cost over the floor per dropped frame (for the
/// single- and the multi-buffer program), and what the drop cache costs
/// the passed frames (full against no cache), all from medians of this
/// run.
fn report_drop_path(frames: &[(&str, Vec<u8>)], f: &Figures) {
    let over_floor = |runs: &[Vec<f64>]| {
        let mut drops = Vec::new();
        let mut worst = 0.0f64;
        for (i, (name, _)) in frames.iter().enumerate() {
            if let Some(kind) = DROPPED.iter().find(|k| name.ends_with(*k)) {
                let over = stats(runs[i].clone()).median - stats(f.floor[i].clone()).median;
                worst = worst.max(over);
                drops.push(format!("{kind} {over:.0} ns"));
            }
        }
        format!("{}; worst {worst:.0} ns", drops.join(", "))
    };
    println!(
        "drop path (the drop cache) over the floor, medians: {}, target <= 20 ns",
        over_floor(&f.full)
    );
    println!(
        "the same in the multi-buffer program (jumbo MTUs; it asks the kernel for the frame's length): {}",
        over_floor(&f.frags)
    );
    let mut passes = Vec::new();
    let mut worst_pass = 0.0f64;
    for (i, (name, _)) in frames.iter().enumerate() {
        if !DROPPED.iter().any(|k| name.ends_with(*k)) {
            let ratio = stats(f.full[i].clone()).median / stats(f.uncached[i].clone()).median;
            worst_pass = worst_pass.max(ratio);
            passes.push(format!("{name} {ratio:.2}"));
        }
    }
    println!(
        "passed packets, full / no cache (what a cache miss costs), medians: {}; worst {worst_pass:.2}, target <= 1.0 (noise: a few percent)",
        passes.join(", ")
    );
}

/// Prints the table of figures and ratios; returns the worst ratio (min,
/// median) against each xdp-filter variant.
fn report(frames: &[(&str, Vec<u8>)], f: &Figures) -> [(f64, f64); 2] {
    let fmt = |s: &Stats| format!("{:.0}/{:.0}/{:.0}", s.min, s.median, s.max);
    println!();
    println!(
        "{:<34} {:>14} {:>14} {:>14} {:>14} {:>14} {:>14} {:>14}   ratio (min, median)",
        "ns per packet (min/median/max)",
        "floor",
        "parse",
        "full",
        "multi-buffer",
        "no cache",
        "xf default",
        "xf IP only"
    );
    let mut worst = [(0.0f64, 0.0f64); 2];
    for (i, (name, _)) in frames.iter().enumerate() {
        let fl = stats(f.floor[i].clone());
        let pa = stats(f.parse[i].clone());
        let fu = stats(f.full[i].clone());
        let mb = stats(f.frags[i].clone());
        let nc = stats(f.uncached[i].clone());
        let xs: Vec<Stats> = (0..VARIANTS.len())
            .map(|v| stats(f.xf[v][i].clone()))
            .collect();
        let mut ratios = String::new();
        for (v, x) in xs.iter().enumerate() {
            let r_min = (fu.min - fl.min) / (x.min - fl.min);
            let r_med = (fu.median - fl.median) / (x.median - fl.median);
            worst[v].0 = worst[v].0.max(r_min);
            worst[v].1 = worst[v].1.max(r_med);
            ratios.push_str(&format!("  {r_min:.2}, {r_med:.2}"));
        }
        println!(
            "{name:<34} {:>14} {:>14} {:>14} {:>14} {:>14} {:>14} {:>14} {ratios}",
            fmt(&fl),
            fmt(&pa),
            fmt(&fu),
            fmt(&mb),
            fmt(&nc),
            fmt(&xs[0]),
            fmt(&xs[1])
        );
    }
    worst
}

/// The per-packet figures of `tg` (loaded and filled) next to xdp-filter's,
/// or Tollgate's alone if `only_tollgate`.
pub fn run(tg: &Tollgate, cpus: usize, only_tollgate: bool) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("tg-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let frames = frames();
    let mut files = Vec::new();
    for (i, (_, frame)) in frames.iter().enumerate() {
        let file = dir.join(format!("frame{i}.bin"));
        std::fs::write(&file, frame)?;
        files.push(file);
    }
    // The machine is a shared VM: runs of the same program vary by tens of
    // percent. Every figure is therefore taken in interleaved rounds (each
    // round runs every program on every frame once), on one pinned CPU,
    // so noise lands on all programs alike; the ratios use the minimum
    // (noise only ever adds) and the median.
    // Children (bpftool) inherit the pinning.
    lab::traffic::pin_thread(cpus - 1)?;
    let figures = measure(tg, &frames, &files, only_tollgate)?;
    let worst = report(&frames, &figures);
    report_drop_path(&frames, &figures);
    std::fs::remove_dir_all(&dir)?;
    let c = tg.maps.counters()?;
    println!();
    println!(
        "ratio = (full - floor) / (xdp-filter - floor); worst over the frames: {:.2} (min) / {:.2} (median) against xdp-filter as loaded by default, {:.2} / {:.2} against xdp-filter matching IP addresses only. Target: <= 1.0 against the default",
        worst[0].0, worst[0].1, worst[1].0, worst[1].1
    );
    println!(
        "sanity: the full program passed {} and dropped {} packets in all (over-rate and banned frames drop)",
        c.total(Verdict::Pass).packets,
        c.total(Verdict::Drop).packets
    );
    if !only_tollgate && worst.iter().any(|w| !w.0.is_finite() || w.0 <= 0.0) {
        bail!("xdp-filter measured no slower than the floor; the figures are not meaningful");
    }
    // Unpinned again for the walk, which runs on every CPU.
    lab::traffic::unpin_thread()?;
    Ok(())
}
