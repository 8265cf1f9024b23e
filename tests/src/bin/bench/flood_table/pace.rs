//! Generators slowed to a chosen rate, for the paced table.
//!
//! Why a paced table: the live-frames generator and the receiver share one
//! page pool (the generator's). The receiver returns each frame it drops
//! to that pool's ring under the ring's producer lock; when the receiver's
//! ring is full, the generator returns every frame it refuses under the
//! same lock. So a receiver slower than the offer pays for lock contention
//! that a real NIC's receiver (recycling its own pool's pages without a
//! lock) never sees, and the slower it is the more frames are refused and
//! the more it pays: `perf record -C 1` during a flat-out flood put the
//! receiver's spin-lock slow path at 27 % of plain XDP_DROP's time per
//! frame and at 41 % of a banned source's under Tollgate. Paced below what
//! a defence disposes of, few frames are refused (a few percent, while
//! the receiver's thread wakes) and the receiver's time per
//! frame is the defence's own (and the kernel path's). The price: a
//! receiver that idles between frames also pays its wake-ups, alike for
//! every defence at one pace.

use std::time::Duration;

use lab::{
    flood::{Flood, Generator, Sink},
    flood_lab::{ATTACK_IF, FLOOD_IF, FloodLab},
    traffic::{pin_thread, unpin_thread},
};
use monitor_common::generator::GEN_MAX_SPIN;

use super::measure::pin_receiver;

/// How long each calibration send runs.
const PROBE: Duration = Duration::from_millis(500);
/// The spin of the second calibration send.
const PROBE_SPIN: u32 = 400;

/// The generator's rate for `flood` at `spin`, Mpps, into plain XDP_DROP.
fn rate(lab: &FloodLab, flood: &Flood, spin: u32) -> anyhow::Result<f64> {
    let g = Generator::load(&lab.attacker, FLOOD_IF, &Flood { spin, ..*flood })?;
    pin_thread(0)?;
    let sent = g.send(&lab.attacker, u64::MAX, PROBE);
    unpin_thread()?;
    let sent = sent?;
    Ok(sent.pps() / 1e6)
}

/// The generator's flat-out rate for `flood` and the spin that slows it to
/// each of `shares` of that: the time per frame grows linearly with the
/// spin, so two sends into plain XDP_DROP (the fastest receiver, on its
/// own CPU as in the measurements) place it.
pub fn calibrate(lab: &FloodLab, flood: &Flood, shares: &[f64]) -> anyhow::Result<Vec<Generator>> {
    let sink = Sink::attach(&lab.server, ATTACK_IF)?;
    pin_receiver(&lab.server)?;
    let (fast, slow) = (rate(lab, flood, 0)?, rate(lab, flood, PROBE_SPIN)?);
    drop(sink);
    let per_spin = (1e3 / slow - 1e3 / fast) / PROBE_SPIN as f64;
    anyhow::ensure!(
        per_spin.is_finite() && per_spin > 0.0,
        "the generator did not slow down with its spin ({fast:.2} Mpps at 0, {slow:.2} at {PROBE_SPIN}); a busy machine? run the bench again"
    );
    shares
        .iter()
        .map(|share| {
            let want_ns = 1e3 / (fast * share);
            let spin = (want_ns - 1e3 / fast) / per_spin;
            anyhow::ensure!(
                (0.0..=GEN_MAX_SPIN as f64).contains(&spin),
                "pacing the generator to {:.0} % of its {fast:.2} Mpps needs a spin of {spin:.0}, past its 0..={GEN_MAX_SPIN}; change the pace shares in flood_table/mod.rs",
                100.0 * share
            );
            println!(
                "flood table: paced at {:.0} % of {fast:.2} Mpps flat out ({}): spin {spin:.0}",
                100.0 * share,
                if flood.src6_random != 0 { "storm frames" } else { "one source" }
            );
            Generator::load(&lab.attacker, FLOOD_IF, &Flood { spin: spin as u32, ..*flood })
        })
        .collect()
}
