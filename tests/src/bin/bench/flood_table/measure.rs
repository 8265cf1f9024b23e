//! One measurement of a defence: what the receiving core absorbed and
//! spent per frame, and what the sender offered and had refused.

use std::time::Instant;

use anyhow::{Context as _, bail};
use lab::{
    NetNs,
    flood::Generator,
    flood_lab::{ATTACK_IF, FLOOD_IF, FloodLab},
    netns::exec,
    traffic::{pin_thread, unpin_thread},
};

use super::{MEASURE, WARM, defence::in_ns};

/// What one defence did with one flood.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    /// Frames the receiver took off its ring, Mpps.
    pub absorbed: f64,
    /// The receiving CPU's busy time per frame it took, ns.
    pub ns: f64,
    /// Frames the generator sent, Mpps.
    pub offered: f64,
    /// Of the frames sent, the share the receiver's full ring refused.
    pub refused: f64,
}

/// A counter of `ethtool -S IFACE` in `ns`.
fn ethtool_stat(ns: &NetNs, iface: &str, name: &str) -> anyhow::Result<u64> {
    let out = in_ns(ns, &["ethtool", "-S", iface])?;
    out.lines()
        .find_map(|l| l.trim().strip_prefix(name)?.strip_prefix(':'))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("no {name} in `ethtool -S {iface}`: {out}"))
}

/// The receiver's frames taken off its ring so far.
fn rx_frames(ns: &NetNs) -> anyhow::Result<u64> {
    ethtool_stat(ns, ATTACK_IF, "rx_queue_0_xdp_packets")
}

/// The sender's frames its peer's ring took and refused so far.
fn tx_frames(ns: &NetNs) -> anyhow::Result<(u64, u64)> {
    Ok((
        ethtool_stat(ns, FLOOD_IF, "tx_queue_0_xdp_xmit")?,
        ethtool_stat(ns, FLOOD_IF, "tx_queue_0_xdp_xmit_errors")?,
    ))
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
pub(super) fn pin_receiver(ns: &NetNs) -> anyhow::Result<()> {
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

/// One measurement of whatever is installed on the server's attack link,
/// `sender` flooding it.
pub fn measure(lab: &FloodLab, sender: &Generator) -> anyhow::Result<Sample> {
    pin_receiver(&lab.server)?;
    pin_thread(0)?;
    let sample = measure_pinned(lab, sender);
    unpin_thread()?;
    sample
}

fn measure_pinned(lab: &FloodLab, sender: &Generator) -> anyhow::Result<Sample> {
    sender.send(&lab.attacker, u64::MAX, WARM)?;
    let (ok0, err0) = tx_frames(&lab.attacker)?;
    let (f0, (b0, t0)) = (rx_frames(&lab.server)?, cpu_jiffies(1)?);
    let start = Instant::now();
    let sent = sender.send(&lab.attacker, u64::MAX, MEASURE)?;
    let secs = start.elapsed().as_secs_f64();
    let (f1, (b1, t1)) = (rx_frames(&lab.server)?, cpu_jiffies(1)?);
    let (ok1, err1) = tx_frames(&lab.attacker)?;
    let frames = f1.saturating_sub(f0) as f64;
    let busy = (b1 - b0) as f64 / (t1 - t0).max(1) as f64;
    let (ok, err) = (
        ok1.saturating_sub(ok0) as f64,
        err1.saturating_sub(err0) as f64,
    );
    Ok(Sample {
        absorbed: frames / secs / 1e6,
        ns: busy * secs * 1e9 / frames.max(1.0),
        offered: sent.pps() / 1e6,
        refused: err / (ok + err).max(1.0),
    })
}
