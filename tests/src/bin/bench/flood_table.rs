//! What each defence absorbs of a flood, on the flood lab's attack link (a
//! veth pair): the generator (live frames, pinned to CPU 0) sends 64-byte
//! UDP as fast as it goes; the server's receive processing of that link
//! is one threaded NAPI kthread pinned to CPU 1 at SCHED_FIFO, so what the
//! receiving core disposes of is what the defence costs. Per defence:
//!
//! - the receiving CPU's busy time per frame (ns), and the rate one core
//!   could dispose of at that cost (Mpps capacity = 1000 / ns), min /
//!   median / max over the rounds;
//! - Mpps absorbed: frames the receiver's NAPI took off its ring per
//!   second (`rx_queue_0_xdp_packets`, whatever became of each);
//! - the capacity's ratios to plain XDP_DROP, to XDP_DROP after reading
//!   the frame's source address (`tollgate_sink_read`: what any filter
//!   that looks at a packet must pay; plain XDP_DROP never touches the
//!   frame) and to
//!   iptables' hashlimit, medians of this run;
//! - what Tollgate passed to the stack of what it judged: a row's cost
//!   per frame is its drop path's only where it drops.
//!
//! On these 2-vCPU machines one generator core offers 3-4 Mpps, below what
//! an XDP program can dispose of: the XDP defences then idle between
//! bursts, and what they absorb is bounded by the offer and by how soon
//! the receiver's thread wakes (a veth ring holds 256 frames). Their cost
//! per frame is what tells them apart, so the ratios are of capacities.
//!
//! The defences take turns within each round, so the VM's noise lands on
//! all of them alike. Every per-source limit is 1,000 packets/s with a
//! burst of 1,000.

use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use lab::{
    NetNs,
    flood::{Flood, Generator, Kind, Sink},
    flood_lab::{ATTACK_IF, FLOOD_IF, FloodLab},
    netns::exec,
    traffic::{pin_thread, unpin_thread},
};
use monitor_common::reason::Verdict;
use tollgate::{
    clock::coarse_ns,
    loader::{AttachMode, LoadOptions, Tollgate},
    policy::{Limit, Policy, Rate},
};

use crate::{chart, stats};

const ROUNDS: usize = 3;
const WARM: Duration = Duration::from_millis(500);
const MEASURE: Duration = Duration::from_secs(2);
const LIMIT: u64 = 1_000;
const PORT: u16 = 9;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Defence {
    None,
    XdpDrop,
    ReadDrop,
    Banned,
    OverLimit,
    Storm,
    StormProbation,
    XdpFilter,
    Hashlimit,
    NftMeter,
}

impl Defence {
    const ALL: [Defence; 10] = [
        Defence::None,
        Defence::XdpDrop,
        Defence::ReadDrop,
        Defence::Banned,
        Defence::OverLimit,
        Defence::Storm,
        Defence::StormProbation,
        Defence::XdpFilter,
        Defence::Hashlimit,
        Defence::NftMeter,
    ];

    fn name(self) -> &'static str {
        match self {
            Defence::None => "no program",
            Defence::XdpDrop => "plain XDP_DROP",
            Defence::ReadDrop => "XDP_DROP after reading the source",
            Defence::Banned => "Tollgate, source banned",
            Defence::OverLimit => "Tollgate, source over its limit",
            Defence::Storm => "Tollgate, storm of random IPv6 /64s",
            Defence::StormProbation => "Tollgate, that storm on probation",
            Defence::XdpFilter => "xdp-filter, source denied",
            Defence::Hashlimit => "iptables hashlimit",
            Defence::NftMeter => "nftables meter",
        }
    }
}

/// What a defence holds while it is in place; dropping it removes it.
enum Installed {
    Nothing,
    Sink(#[allow(dead_code, reason = "held for its Drop")] Sink),
    Tollgate(#[allow(dead_code, reason = "held for its Drop")] Box<Tollgate>),
    /// Removed by running this command in the server's namespace.
    Command(&'static [&'static str]),
}

fn in_ns(ns: &NetNs, args: &[&str]) -> anyhow::Result<String> {
    exec(ns.nsenter(args[0]).args(&args[1..]))
}

fn install(d: Defence, lab: &FloodLab, attacker: &str) -> anyhow::Result<Installed> {
    let s = &lab.server;
    Ok(match d {
        Defence::None => Installed::Nothing,
        Defence::XdpDrop => Installed::Sink(Sink::attach(s, ATTACK_IF)?),
        Defence::ReadDrop => Installed::Sink(Sink::attach_reading(s, ATTACK_IF)?),
        Defence::Banned | Defence::OverLimit | Defence::Storm | Defence::StormProbation => {
            let mut tg = Tollgate::load(&LoadOptions {
                max_sources: 1 << 16,
                ..LoadOptions::default()
            })?;
            tg.maps.apply_policy(
                &Policy {
                    default: Limit {
                        packets: Some(Rate {
                            per_sec: LIMIT,
                            burst: LIMIT,
                        }),
                        bytes: None,
                    },
                    ..Policy::default()
                },
                None,
            )?;
            // As the daemon sets it while its storm detector fires.
            if d == Defence::StormProbation {
                tg.maps.set_storm(true)?;
            }
            if d == Defence::Banned {
                let net = format!("{attacker}/32").parse()?;
                tg.maps.ban(net, coarse_ns() + 3_600_000_000_000)?;
            }
            s.enter(|| tg.attach(ATTACK_IF, AttachMode::Native))??;
            Installed::Tollgate(Box::new(tg))
        }
        Defence::XdpFilter => {
            in_ns(
                s,
                &[
                    "xdp-filter",
                    "load",
                    ATTACK_IF,
                    "--mode",
                    "native",
                    "--features",
                    "ipv4,ipv6",
                    "--policy",
                    "allow",
                ],
            )
            .context("loading xdp-filter (Debian's xdp-tools; `cargo xtask setup` installs it)")?;
            in_ns(s, &["xdp-filter", "ip", attacker, "--mode", "src"])?;
            Installed::Command(&["xdp-filter", "unload", ATTACK_IF])
        }
        Defence::Hashlimit => {
            let rate = format!("{LIMIT}/sec");
            let burst = LIMIT.to_string();
            in_ns(
                s,
                &[
                    "iptables",
                    "-t",
                    "raw",
                    "-A",
                    "PREROUTING",
                    "-i",
                    ATTACK_IF,
                    "-m",
                    "hashlimit",
                    "--hashlimit-mode",
                    "srcip",
                    "--hashlimit-above",
                    &rate,
                    "--hashlimit-burst",
                    &burst,
                    "--hashlimit-name",
                    "tgbench",
                    "-j",
                    "DROP",
                ],
            )
            .context(
                "adding the hashlimit rule (Debian's iptables; `cargo xtask setup` installs it)",
            )?;
            Installed::Command(&["iptables", "-t", "raw", "-F", "PREROUTING"])
        }
        Defence::NftMeter => {
            let chain = "{ type filter hook prerouting priority -300; policy accept; }";
            let meter =
                format!("{{ ip saddr limit rate over {LIMIT}/second burst {LIMIT} packets }}");
            for cmd in [
                vec!["nft", "add", "table", "inet", "tgbench"],
                vec!["nft", "add", "chain", "inet", "tgbench", "pre", chain],
                vec![
                    "nft",
                    "add",
                    "rule",
                    "inet",
                    "tgbench",
                    "pre",
                    "iifname",
                    ATTACK_IF,
                    "meter",
                    "persource",
                    &meter,
                    "drop",
                ],
            ] {
                in_ns(s, &cmd).context("adding the nftables meter")?;
            }
            Installed::Command(&["nft", "delete", "table", "inet", "tgbench"])
        }
    })
}

fn remove(i: Installed, ns: &NetNs) -> anyhow::Result<()> {
    if let Installed::Command(args) = i {
        in_ns(ns, args)?;
    }
    Ok(())
}

/// Of the frames Tollgate judged since it was loaded, the share it passed
/// (to the stack); `None` for the other defences.
fn passed_share(i: &Installed) -> anyhow::Result<Option<f64>> {
    let Installed::Tollgate(tg) = i else {
        return Ok(None);
    };
    let c = tg.maps.counters()?;
    let (pass, drop) = (
        c.total(Verdict::Pass).packets as f64,
        c.total(Verdict::Drop).packets as f64,
    );
    Ok(Some(pass / (pass + drop).max(1.0)))
}

/// The receiver's frames taken off its ring so far.
fn rx_frames(ns: &NetNs) -> anyhow::Result<u64> {
    let out = in_ns(ns, &["ethtool", "-S", ATTACK_IF])?;
    out.lines()
        .find_map(|l| l.trim().strip_prefix("rx_queue_0_xdp_packets:"))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("no rx_queue_0_xdp_packets in `ethtool -S {ATTACK_IF}`: {out}"))
}

/// CPU `cpu`'s busy and total jiffies.
fn cpu_jiffies(cpu: usize) -> anyhow::Result<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let name = format!("cpu{cpu} ");
    let line = stat
        .lines()
        .find(|l| l.starts_with(&name))
        .with_context(|| format!("no {name} in /proc/stat"))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    Ok((total - idle, total))
}

/// Threaded NAPI for the attack link, its kthread pinned to CPU 1 at
/// SCHED_FIFO (found again each time: an XDP attach may restart it).
fn pin_receiver(ns: &NetNs) -> anyhow::Result<()> {
    let path = format!("/sys/class/net/{ATTACK_IF}/threaded");
    exec(ns.command("sh").args(["-c", &format!("echo 1 > {path}")]))?;
    let ps = exec(std::process::Command::new("ps").args(["-e", "-o", "pid=,comm="]))?;
    let prefix = format!("napi/{ATTACK_IF}");
    let pids: Vec<&str> = ps
        .lines()
        .filter_map(|l| {
            let (pid, comm) = l.trim().split_once(' ')?;
            comm.trim().starts_with(&prefix).then_some(pid)
        })
        .collect();
    if pids.is_empty() {
        bail!("no NAPI kthread for {ATTACK_IF} after enabling threaded NAPI");
    }
    for pid in pids {
        exec(std::process::Command::new("taskset").args(["-pc", "1", pid]))?;
        exec(std::process::Command::new("chrt").args(["-f", "-p", "50", pid]))?;
    }
    Ok(())
}

/// One measurement: (Mpps absorbed, receiver ns per frame, Mpps offered).
fn measure(lab: &FloodLab, sender: &mut Generator) -> anyhow::Result<(f64, f64, f64)> {
    pin_receiver(&lab.server)?;
    pin_thread(0)?;
    sender.send(&lab.attacker, u64::MAX, WARM)?;
    let (f0, (b0, t0)) = (rx_frames(&lab.server)?, cpu_jiffies(1)?);
    let start = Instant::now();
    let sent = sender.send(&lab.attacker, u64::MAX, MEASURE)?;
    let secs = start.elapsed().as_secs_f64();
    let (f1, (b1, t1)) = (rx_frames(&lab.server)?, cpu_jiffies(1)?);
    unpin_thread()?;
    let frames = f1.saturating_sub(f0) as f64;
    let busy = (b1 - b0) as f64 / (t1 - t0).max(1) as f64;
    Ok((
        frames / secs / 1e6,
        busy * secs * 1e9 / frames.max(1.0),
        sent.packets as f64 / sent.elapsed.as_secs_f64() / 1e6,
    ))
}

pub fn run() -> anyhow::Result<()> {
    let lab = FloodLab::new("bft", 1)?;
    let server: IpAddr = lab.server_v4().into();
    let one = Flood {
        fixed: true,
        ..Flood::new(Kind::Udp, server, PORT)
    };
    let attacker = one.first_src.to_string();
    let storm = Flood {
        src6_random: u128::MAX >> 64 << 32,
        ..Flood::new(Kind::Udp, lab.server_v6().into(), PORT)
    };
    let mut gen_one = Generator::load(&lab.attacker, FLOOD_IF, &one)?;
    let mut gen_storm = Generator::load(&lab.attacker, FLOOD_IF, &storm)?;
    let n = Defence::ALL.len();
    let (mut mpps, mut ns, mut offered) = (vec![vec![]; n], vec![vec![]; n], vec![]);
    let mut passed: Vec<Vec<f64>> = vec![vec![]; n];
    for _ in 0..ROUNDS {
        for (i, d) in Defence::ALL.into_iter().enumerate() {
            let installed = install(d, &lab, &attacker)?;
            let sender = if matches!(d, Defence::Storm | Defence::StormProbation) {
                &mut gen_storm
            } else {
                &mut gen_one
            };
            let (m, per, off) = measure(&lab, sender)?;
            if let Some(share) = passed_share(&installed)? {
                passed[i].push(share);
            }
            remove(installed, &lab.server)?;
            mpps[i].push(m);
            ns[i].push(per);
            offered.push(off);
        }
    }
    report(&mpps, &ns, &offered);
    report_passed(&passed);
    Ok(())
}

/// What Tollgate passed of each flood: a row's cost per frame is its
/// program's only where it drops.
fn report_passed(passed: &[Vec<f64>]) {
    let shares: Vec<String> = Defence::ALL
        .into_iter()
        .zip(passed)
        .filter(|(_, v)| !v.is_empty())
        .map(|(d, v)| format!("{} {:.1} %", d.name(), 100.0 * stats(v.clone()).median))
        .collect();
    println!(
        "passed to the stack of what Tollgate judged (medians): {}. The storm's random /64s of 2001:db8::/32 fall in 65,536 /48s, each far under its own prefix budget; what bounds their sum is the /32's wide budget (64 sources' worth before the storm is found, the first row, where what it passes claims slots; four once it is, on probation)",
        shares.join(", ")
    );
}

fn report(mpps: &[Vec<f64>], ns: &[Vec<f64>], offered: &[f64]) {
    let med = |v: &Vec<f64>| stats(v.clone()).median;
    let at = |d: Defence| Defence::ALL.iter().position(|x| *x == d).unwrap_or(0);
    let capacity: Vec<Vec<f64>> = ns
        .iter()
        .map(|v| v.iter().map(|n| 1e3 / n.max(1.0)).collect())
        .collect();
    let (drop, read, hash) = (
        med(&capacity[at(Defence::XdpDrop)]),
        med(&capacity[at(Defence::ReadDrop)]),
        med(&capacity[at(Defence::Hashlimit)]),
    );
    let off = stats(offered.to_vec());
    println!();
    println!(
        "flood table: 64-byte UDP from the generator on CPU 0 ({:.1} / {:.1} / {:.1} Mpps offered), the receiver's threaded NAPI alone on CPU 1 at SCHED_FIFO; {ROUNDS} rounds of {} s, per-source limits {LIMIT}/s",
        off.min,
        off.median,
        off.max,
        MEASURE.as_secs()
    );
    println!(
        "{:<38} {:>14} {:>22} {:>14} {:>10} {:>11} {:>11}",
        "defence",
        "ns per frame",
        "Mpps capacity",
        "Mpps absorbed",
        "/ XDP_DROP",
        "/ read+drop",
        "/ hashlimit"
    );
    for (i, d) in Defence::ALL.into_iter().enumerate() {
        let c = stats(capacity[i].clone());
        println!(
            "{:<38} {:>14.0} {:>22} {:>14.2} {:>10.2} {:>11.2} {:>11.1}",
            d.name(),
            med(&ns[i]),
            format!("{:.2} / {:.2} / {:.2}", c.min, c.median, c.max),
            med(&mpps[i]),
            c.median / drop,
            c.median / read,
            c.median / hash
        );
    }
    if let Some(path) = std::env::var_os("TG_BENCH_CHART") {
        let bars: Vec<chart::Bar> = Defence::ALL
            .into_iter()
            .enumerate()
            .map(|(i, d)| {
                let c = stats(capacity[i].clone());
                chart::Bar {
                    name: d.name(),
                    mpps: (c.min, c.median, c.max),
                }
            })
            .collect();
        let title = format!(
            "Flood absorbed per defence: 64-byte UDP, {:.1} Mpps offered (median), one receiving core",
            off.median
        );
        match chart::flood(std::path::Path::new(&path), &bars, &title) {
            Ok(()) => println!("chart: {}", std::path::Path::new(&path).display()),
            Err(e) => println!("chart: not drawn: {e:#}"),
        }
    }
    let r2 = |d: Defence| med(&capacity[at(d)]) / drop;
    println!(
        "R2 = Tollgate / XDP_DROP (capacity medians): banned {:.2}, over limit {:.2} (target >= 0.8), storm {:.2}, on probation {:.2} (target >= 0.5); Tollgate banned / hashlimit {:.1}, over limit / hashlimit {:.1} (target >= 6)",
        r2(Defence::Banned),
        r2(Defence::OverLimit),
        r2(Defence::Storm),
        r2(Defence::StormProbation),
        med(&capacity[at(Defence::Banned)]) / hash,
        med(&capacity[at(Defence::OverLimit)]) / hash
    );
    let r2_read = |d: Defence| med(&capacity[at(d)]) / read;
    println!(
        "against XDP_DROP after reading the source (the floor of a filter that looks at the packet): banned {:.2}, over limit {:.2}, xdp-filter {:.2}, storm {:.2}, on probation {:.2}; reading the frame costs {:.0} ns of plain XDP_DROP's {:.0}",
        r2_read(Defence::Banned),
        r2_read(Defence::OverLimit),
        r2_read(Defence::XdpFilter),
        r2_read(Defence::Storm),
        r2_read(Defence::StormProbation),
        med(&ns[at(Defence::ReadDrop)]) - med(&ns[at(Defence::XdpDrop)]),
        med(&ns[at(Defence::XdpDrop)])
    );
}
