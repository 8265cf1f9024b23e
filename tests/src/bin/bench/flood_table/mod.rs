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
//! Each defence is measured twice in each round, and two tables are
//! printed:
//!
//! - flat out: the generator as fast as it goes. What the defences absorb
//!   of the flood; but a receiver slower than the offer also pays for the
//!   lab's own lock contention (`pace.rs` says which, with the profile),
//!   more the slower it is, and the ring refuses frames;
//! - paced: the generator slowed to a rate the defences dispose of (half
//!   its flat-out rate for the XDP defences, a sixth for those in the
//!   kernel's stack), so few frames are refused (a few percent, while the
//!   receiver's thread wakes) and the receiver's time per frame is the
//!   defence's own, plus its wake-ups. Each row prints the share of
//!   frames the ring refused, which says whether the pace held. The
//!   ratios R2 and to hashlimit are read from this table; the chart
//!   draws it.
//!
//! The defences take turns within each round, so the VM's noise lands on
//! all of them alike. Every per-source limit is 1,000 packets/s with a
//! burst of 1,000.

use std::{net::IpAddr, time::Duration};

use anyhow::Context as _;
use lab::{
    flood::{Flood, Generator, Kind},
    flood_lab::{FLOOD_IF, FloodLab},
};

use self::{
    defence::{Defence, install, passed_share, remove},
    measure::{Sample, measure},
};

mod defence;
mod measure;
mod pace;
mod report;

const ROUNDS: usize = 5;
const WARM: Duration = Duration::from_millis(500);
const MEASURE: Duration = Duration::from_secs(2);
const LIMIT: u64 = 1_000;
const PORT: u16 = 9;
/// The paced table's rates, as shares of the generator's flat-out rate:
/// for the XDP defences, and for the kernel stack's (which dispose of
/// about 1 Mpps here).
const XDP_PACE: f64 = 0.5;
const STACK_PACE: f64 = 1.0 / 6.0;

/// A table's samples: per defence (in `Defence::ALL` order), per round.
pub struct Table {
    pub title: String,
    pub rows: Vec<Vec<Sample>>,
}

impl Table {
    fn new(title: &str) -> Self {
        Table {
            title: title.to_string(),
            rows: vec![vec![]; Defence::ALL.len()],
        }
    }
}

/// One generator per kind of flood (the kernel stack's defences never
/// meet the storm, so their pace has no storm generator).
struct Senders {
    one: Generator,
    storm: Option<Generator>,
}

impl Senders {
    fn for_defence(&self, d: Defence) -> anyhow::Result<&Generator> {
        if d.storm_frames() {
            self.storm
                .as_ref()
                .with_context(|| format!("no storm generator at this pace for {}", d.name()))
        } else {
            Ok(&self.one)
        }
    }
}

/// The rows `TG_FLOOD_ROWS` asks for (all without it), by their place in
/// `Defence::ALL`.
fn rows() -> anyhow::Result<Vec<bool>> {
    let n = Defence::ALL.len();
    let Ok(list) = std::env::var("TG_FLOOD_ROWS") else {
        return Ok(vec![true; n]);
    };
    let mut wanted = vec![false; n];
    for r in list.split(',') {
        let i: usize = r.trim().parse().ok().filter(|i| *i < n).with_context(|| {
            format!("TG_FLOOD_ROWS={list}: `{r}` is not a row of the flood table; give row numbers from 0 to {}, comma-separated", n - 1)
        })?;
        wanted[i] = true;
    }
    Ok(wanted)
}

pub fn run() -> anyhow::Result<()> {
    let wanted = rows()?;
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
    let flat = Senders {
        one: Generator::load(&lab.attacker, FLOOD_IF, &one)?,
        storm: Some(Generator::load(&lab.attacker, FLOOD_IF, &storm)?),
    };
    let mut one_paced = pace::calibrate(&lab, &one, &[XDP_PACE, STACK_PACE])?.into_iter();
    let mut storm_paced = pace::calibrate(&lab, &storm, &[XDP_PACE])?.into_iter();
    let (xdp, stack) = (
        Senders {
            one: one_paced.next().context("the XDP pace's generator")?,
            storm: storm_paced.next(),
        },
        Senders {
            one: one_paced
                .next()
                .context("the kernel stack's pace's generator")?,
            storm: None,
        },
    );
    let mut flat_out = Table::new("flat out: the generator as fast as it goes");
    let mut paced = Table::new(&format!(
        "paced: the generator calibrated for {:.0} % of its flat-out rate for the XDP defences, {:.0} % for the kernel stack's",
        100.0 * XDP_PACE,
        100.0 * STACK_PACE
    ));
    let mut passed: Vec<Vec<f64>> = vec![vec![]; Defence::ALL.len()];
    for _ in 0..ROUNDS {
        for (i, d) in Defence::ALL.into_iter().enumerate() {
            if !wanted[i] {
                continue;
            }
            let installed = install(d, &lab, &attacker)?;
            flat_out.rows[i].push(measure(&lab, flat.for_defence(d)?)?);
            let pace = if d.in_stack() { &stack } else { &xdp };
            paced.rows[i].push(measure(&lab, pace.for_defence(d)?)?);
            if let Some(share) = passed_share(&installed)? {
                passed[i].push(share);
            }
            remove(installed, &lab.server)?;
        }
    }
    report::tables(&flat_out, &paced);
    report::passed(&passed);
    Ok(())
}
