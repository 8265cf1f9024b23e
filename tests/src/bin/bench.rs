//! `cargo xtask bench`: what a packet costs, measured in one run.
//!
//! Every figure is the kernel's own BPF_PROG_TEST_RUN average over many
//! repeats of one frame, taken several times (min / median / max of the
//! runs). Four programs see the same frames:
//!
//! - floor: a program that only returns XDP_PASS (the harness's own cost);
//! - parse: Tollgate's parser alone;
//! - full: Tollgate's production program with 1,000 CIDR rules and
//!   1,000,000 tracked sources;
//! - xdp-filter (Debian's xdp-tools) with 1,000 denied addresses, loaded on
//!   a veth in a namespace and run through `bpftool prog run`.
//!
//! The ratio (full - floor) / (xdp-filter - floor) says what policy,
//! buckets and statistics cost next to xdp-filter's exact-match lookup.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::Path,
    process::Command,
};

use anyhow::{Context as _, bail};
use ipnet::IpNet;
use lab::{NetNs, netns::exec, packets::Spec};
use monitor_common::{
    maps::{PROG_FLOOR, PROG_MAIN, PROG_PARSE},
    types::{SourceKey, SourceState},
};
use tollgate::{
    clock::monotonic_ns,
    loader::{LoadOptions, Tollgate},
    maps::source_key,
    policy::{Action, Limit, Policy, Rate, Rule},
};

/// Runs per (program, frame); each run is one BPF_PROG_TEST_RUN.
const RUNS: usize = 7;
/// Repeats inside one run (the kernel averages over them).
const REPEAT: u32 = 1_000_000;
const RULES: usize = 1_000;
const SOURCES: u32 = 1_000_000;
const DENIED: usize = 1_000;

struct Stats {
    min: f64,
    median: f64,
    max: f64,
}

fn stats(mut v: Vec<f64>) -> Stats {
    v.sort_by(|a, b| a.total_cmp(b));
    Stats {
        min: v[0],
        median: v[v.len() / 2],
        max: v[v.len() - 1],
    }
}

fn limit(pps: u64, burst: u64) -> Action {
    Action::Limit(Limit {
        packets: Some(Rate {
            per_sec: pps,
            burst,
        }),
        bytes: None,
    })
}

/// 1,000 rules: the ones the frames hit, and the rest from the benchmarking
/// range 198.18.0.0/15 and the documentation range 2001:db8::/32.
fn policy() -> Policy {
    let mut rules = vec![
        Rule {
            net: "203.0.113.0/24".parse().unwrap(),
            action: Action::Allow,
        },
        // Under its rate however fast the harness runs.
        Rule {
            net: "192.0.2.10/32".parse().unwrap(),
            action: limit(1_000_000_000, 1_000_000),
        },
        // Over its rate from the second packet on.
        Rule {
            net: "192.0.2.20/32".parse().unwrap(),
            action: limit(1, 1),
        },
        Rule {
            net: "2001:db8:1::/48".parse().unwrap(),
            action: limit(1_000_000_000, 1_000_000),
        },
    ];
    let mut i = 0u32;
    while rules.len() < RULES {
        let net: IpNet = if i % 2 == 0 {
            let n = i / 2;
            IpNet::new(IpAddr::V4(Ipv4Addr::new(198, 18 + (n >> 8) as u8, n as u8, 0)), 24)
                .unwrap()
        } else {
            let n = i / 2;
            IpNet::new(
                IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0x100 + n as u16, 0, 0, 0, 0, 0)),
                48,
            )
            .unwrap()
        };
        let action = match i % 3 {
            0 => Action::Deny,
            1 => limit(10_000, 20_000),
            _ => Action::Allow,
        };
        rules.push(Rule { net, action });
        i += 1;
    }
    Policy {
        rules,
        ..Policy::default()
    }
}

/// 64-byte IPv4 TCP frames from each kind of source, and a 1,500-byte
/// VLAN-tagged IPv6 UDP frame.
fn frames() -> Vec<(&'static str, Vec<u8>)> {
    let tcp64 = |src: &str| {
        let f = Spec::tcp(src, "198.51.100.1", 40000, 443).payload(10).build();
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
        ("1500B VLAN IPv6 UDP, under rate", big),
    ]
}

fn tollgate_runs(tg: &Tollgate, prog: &'static str, frame: &[u8]) -> anyhow::Result<Stats> {
    // Warm up: the first packet of a source creates its entry.
    tg.run_program(prog, frame, 1000)?;
    let mut v = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let (_, ns) = tg.run_program(prog, frame, REPEAT)?;
        v.push(ns as f64);
    }
    Ok(stats(v))
}

/// xdp-filter loaded on a veth in its own namespace, with `DENIED` source
/// addresses denied; returns the namespace (kept alive) and the id of the
/// program on the interface (libxdp's dispatcher, which runs xdp-filter).
fn xdp_filter(features: &str) -> anyhow::Result<(NetNs, u32)> {
    let ns = NetNs::new("bench-xf")?;
    ns.ip(&["link", "add", "xf0", "type", "veth", "peer", "name", "xf1"])?;
    ns.ip(&["link", "set", "xf0", "up"])?;
    ns.ip(&["link", "set", "xf1", "up"])?;
    exec(ns.nsenter("xdp-filter").args(["load", "xf0", "--features", features, "--policy", "allow"]))
        .context("loading xdp-filter (from Debian's xdp-tools; `cargo xtask setup` installs it)")?;
    for i in 0..DENIED {
        let a = Ipv4Addr::new(198, 18, (i >> 8) as u8, i as u8);
        exec(ns.nsenter("xdp-filter").args(["ip", &a.to_string(), "--mode", "src"]))?;
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

fn bpftool_runs(id: u32, frame_file: &Path) -> anyhow::Result<Stats> {
    let run = |repeat: u32| -> anyhow::Result<f64> {
        let out = exec(
            Command::new("bpftool")
                .args(["prog", "run", "id", &id.to_string(), "data_in"])
                .arg(frame_file)
                .args(["repeat", &repeat.to_string()]),
        )?;
        let ns = out
            .split("duration (average): ")
            .nth(1)
            .and_then(|s| s.trim().trim_end_matches("ns").parse().ok())
            .with_context(|| format!("unexpected `bpftool prog run` output: {out}"))?;
        Ok(ns)
    };
    run(1000)?;
    let mut v = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        v.push(run(REPEAT)?);
    }
    Ok(stats(v))
}

fn fill_sources(tg: &mut Tollgate) -> anyhow::Result<()> {
    let cfg = tg.maps.runtime_config()?;
    let now = monotonic_ns();
    for i in 0..SOURCES {
        let a = Ipv6Addr::new(
            0x2001,
            0xdb8,
            0xf000 | (i >> 16) as u16,
            i as u16,
            0,
            0,
            0,
            1,
        );
        let key: SourceKey = source_key(&cfg, IpAddr::V6(a));
        let state = SourceState {
            packets: 1,
            bytes: 100,
            first_seen_ns: now,
            last_seen_ns: now,
            generation: cfg.generation,
            ..SourceState::default()
        };
        tg.maps.insert_source(&key, &state)?;
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("tollgate bench: BPF_PROG_TEST_RUN, {RUNS} runs x {REPEAT} repeats per figure, ns per packet (min / median / max); {cpus} CPUs");
    let mut tg = Tollgate::load(&LoadOptions::default()).context("loading Tollgate")?;
    let policy = policy();
    tg.maps.apply_policy(&policy, Some(monotonic_ns()))?;
    tg.maps
        .ban("192.0.2.30/32".parse()?, monotonic_ns() + 3_600_000_000_000)?;
    let t = std::time::Instant::now();
    fill_sources(&mut tg)?;
    println!(
        "setup: {} CIDR rules, {} sources tracked (filled in {:.1} s), capacity {}",
        policy.rules.len(),
        tg.maps.sources()?.len(),
        t.elapsed().as_secs_f64(),
        tg.maps.max_sources()
    );
    let dir = std::env::temp_dir().join(format!("tg-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let frames = frames();
    let mut files = Vec::new();
    for (i, (_, frame)) in frames.iter().enumerate() {
        let file = dir.join(format!("frame{i}.bin"));
        std::fs::write(&file, frame)?;
        files.push(file);
    }
    // TG_BENCH_ONLY=tollgate: Tollgate's figures alone, for quick tuning.
    let only_tollgate = std::env::var("TG_BENCH_ONLY").is_ok_and(|v| v == "tollgate");
    // xdp-filter keeps one set of pinned maps per host, so its two feature
    // sets are loaded and measured one after the other.
    let variants = [("ipv4,ipv6", "xdp-filter ip"), ("tcp,udp,ipv4,ipv6,ethernet", "xdp-filter all")];
    let mut xdp_filter_figures: Vec<Vec<Stats>> = Vec::new();
    for (features, name) in variants {
        if only_tollgate {
            xdp_filter_figures.push(files.iter().map(|_| stats(vec![f64::NAN])).collect());
            continue;
        }
        let (ns, id) = xdp_filter(features)?;
        println!("{name}: features {features}, {DENIED} denied source addresses, run through bpftool (libxdp dispatcher, prog id {id})");
        let mut figs = Vec::new();
        for file in &files {
            figs.push(bpftool_runs(id, file)?);
        }
        exec(ns.nsenter("xdp-filter").args(["unload", "xf0"]))?;
        drop(ns);
        xdp_filter_figures.push(figs);
    }
    let mut worst_ratio: f64 = 0.0;
    let mut worst_ratio_all: f64 = 0.0;
    println!();
    println!(
        "{:<34} {:>16} {:>16} {:>16} {:>16} {:>16}  ratio ip / all",
        "frame", "floor", "parse", "full", variants[0].1, variants[1].1
    );
    for (i, (name, frame)) in frames.iter().enumerate() {
        let floor = tollgate_runs(&tg, PROG_FLOOR, frame)?;
        let parse = tollgate_runs(&tg, PROG_PARSE, frame)?;
        let full = tollgate_runs(&tg, PROG_MAIN, frame)?;
        let xf = &xdp_filter_figures[0][i];
        let xf_all = &xdp_filter_figures[1][i];
        let fmt = |s: &Stats| format!("{:.0}/{:.0}/{:.0}", s.min, s.median, s.max);
        let ratio = (full.median - floor.median) / (xf.median - floor.median);
        let ratio_all = (full.median - floor.median) / (xf_all.median - floor.median);
        worst_ratio = worst_ratio.max(ratio);
        worst_ratio_all = worst_ratio_all.max(ratio_all);
        println!(
            "{name:<34} {:>16} {:>16} {:>16} {:>16} {:>16}  {ratio:.2} / {ratio_all:.2}",
            fmt(&floor),
            fmt(&parse),
            fmt(&full),
            fmt(xf),
            fmt(xf_all)
        );
    }
    std::fs::remove_dir_all(&dir)?;
    let c = tg.maps.counters()?;
    println!();
    println!(
        "ratio = (full - floor) / (xdp-filter - floor), medians; worst over the frames: {worst_ratio:.2} against xdp-filter with IP matching only, {worst_ratio_all:.2} against xdp-filter with all its features (target <= 1.0)"
    );
    println!(
        "sanity: the full program passed {} and dropped {} packets in all (over-rate and banned frames drop)",
        c.total(monitor_common::reason::Verdict::Pass).packets,
        c.total(monitor_common::reason::Verdict::Drop).packets
    );
    if worst_ratio.is_nan() {
        bail!("xdp-filter measured no slower than the floor; the figures are not meaningful");
    }
    Ok(())
}
