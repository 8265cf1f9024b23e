//! The bucket accuracy sweep, shared by its kernel test
//! (`tests/tests/limit.rs`) and `cargo xtask bench`: one source floods the
//! production program (its drop cache included) far over its limit on the
//! live clock, through BPF_PROG_TEST_RUN on one CPU or on two at once, and
//! what passed is compared with burst + rate × elapsed time, from 10 to
//! 100,000 packets/s and for byte limits.
//!
//! The elapsed time is the kernel's own: the coarse clock from the
//! source's first packet to its last through the pipeline (its
//! `first_seen_ns` and `last_seen_ns`; cached drops in between do not move
//! the last), known to a tick (4 ms at HZ=250) at each end. So a case
//! runs long enough for at least `MIN_PASSED` packets to pass (20 s at
//! 10/s, 2 s at 100/s, 1 s above: about a minute for the sweep), and the
//! bound is 1% or two ticks' worth of the rate plus one packet, whichever
//! is larger: 1% at every rate of the sweep where a tick is 4 ms or less
//! (HZ >= 250).

use std::{
    fmt,
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use monitor_common::{
    maps::PROG_LINEAR,
    reason::{Reason, Verdict},
};
use tollgate::{
    clock::{coarse_ns, coarse_tick_ns},
    loader::{LoadOptions, Tollgate},
    policy::{Limit, Policy, Rate},
};

use crate::{packets::Spec, traffic};

/// The flooding source and where it sends.
const SOURCE: &str = "192.0.2.77";
const TARGET: &str = "198.51.100.1";

/// Rates (per second) of the sweep, and whether the limit is in bytes.
pub const SWEEP: [(u64, bool); 7] = [
    (10, false),
    (100, false),
    (1_000, false),
    (10_000, false),
    (100_000, false),
    (100, true),
    (10_000, true),
];

/// A case passes at least this many packets: at 10/s one packet is 5%
/// of a one-second flood, so the slow rates flood for longer.
pub const MIN_PASSED: u64 = 200;

/// A flood the machine paused for longer than this lost allowance it
/// never offered packets for (the sweep's bursts refill in 100 ms), so
/// its count would not measure the bucket: it runs again.
const STALL: Duration = Duration::from_millis(50);

/// One case of the sweep.
#[derive(Clone, Copy, Debug)]
pub struct Case {
    pub per_sec: u64,
    /// The limit is in bytes (the rate and burst times the frame's length).
    pub bytes: bool,
    pub two_cpus: bool,
}

impl Case {
    /// Every case: the sweep's rates on one CPU, then on two.
    pub fn all() -> Vec<Case> {
        SWEEP
            .iter()
            .flat_map(|&(per_sec, bytes)| {
                [false, true].map(|two_cpus| Case {
                    per_sec,
                    bytes,
                    two_cpus,
                })
            })
            .collect()
    }

    /// The burst, in packets: a tenth of a second's worth, at least 5
    /// (more than a tick's worth of rate, as the daemon requires).
    pub fn burst(&self) -> u64 {
        (self.per_sec / 10).max(5)
    }

    /// How long the source floods.
    pub fn duration_ns(&self) -> u64 {
        let secs = MIN_PASSED.div_ceil(self.per_sec).max(1);
        secs * 1_000_000_000
    }

    fn limit(&self, frame_len: u64) -> Limit {
        let unit = if self.bytes { frame_len } else { 1 };
        let rate = Some(Rate {
            per_sec: self.per_sec * unit,
            burst: self.burst() * unit,
        });
        if self.bytes {
            Limit {
                packets: None,
                bytes: rate,
            }
        } else {
            Limit {
                packets: rate,
                bytes: None,
            }
        }
    }
}

/// What a case measured.
#[derive(Clone, Copy, Debug)]
pub struct Measured {
    pub case: Case,
    pub passed: u64,
    pub dropped: u64,
    /// The source's time through the pipeline, first packet to last.
    pub secs: f64,
    /// burst + rate × `secs`.
    pub expected: f64,
    /// What the time's tick at each end allows (see the module's comment).
    pub bound: f64,
}

impl Measured {
    /// (passed - expected) / expected.
    pub fn error(&self) -> f64 {
        (self.passed as f64 - self.expected) / self.expected
    }

    /// Whether what passed is within the bound of burst + rate × time.
    pub fn within(&self) -> bool {
        (self.passed as f64 - self.expected).abs() <= self.bound
    }

    /// Whether the flood was far over the limit (or the figure says
    /// nothing about a bucket that refuses).
    pub fn flooded(&self) -> bool {
        self.dropped > 2 * self.passed
    }
}

impl fmt::Display for Measured {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.case;
        write!(
            f,
            "{}/s {}, {} CPU(s): passed {}, expected {:.1} +- {:.1} over {:.3} s ({:+.2}%, {} dropped)",
            c.per_sec,
            if c.bytes { "in bytes" } else { "packets" },
            if c.two_cpus { 2 } else { 1 },
            self.passed,
            self.expected,
            self.bound,
            self.secs,
            100.0 * self.error(),
            self.dropped
        )
    }
}

/// Floods a fresh program for `case` and measures it, running the flood
/// again (three times at most) if the machine paused it.
pub fn measure(case: Case) -> anyhow::Result<Measured> {
    let mut pauses = Vec::new();
    for _ in 0..3 {
        let (measured, pause) = flood(case)?;
        if pause < STALL {
            return Ok(measured);
        }
        eprintln!("the flood of {case:?} paused for {pause:?}; running it again");
        pauses.push(pause);
    }
    bail!(
        "every flood was paused (for {pauses:?}, more than {STALL:?}): this machine cannot show the buckets' accuracy now; run again when it is idle"
    )
}

/// One flood: the measurement and the longest pause between two runs of
/// the program.
fn flood(case: Case) -> anyhow::Result<(Measured, Duration)> {
    let frame = Spec::udp(SOURCE, TARGET, 40000, 53).build();
    let len = frame.len() as u64;
    let mut tg = Tollgate::load(&LoadOptions {
        max_sources: 4096,
        ..Default::default()
    })
    .context("loading Tollgate's XDP object (as root, on a BPF-enabled kernel)")?;
    tg.maps.apply_policy(
        &Policy {
            default: case.limit(len),
            ..Policy::default()
        },
        Some(0),
    )?;
    let end = coarse_ns() + case.duration_ns();
    let stall = AtomicU64::new(0);
    let failed = AtomicU64::new(0);
    // One CPU alone offers about 1 Mpps, not the program's 10: each
    // BPF_PROG_TEST_RUN call of an XDP program puts it in the kernel's XDP
    // dispatcher and takes it out again (a rewrite of the dispatcher that
    // waits for RCU), unless another call (the other CPU's) holds it
    // there. Still far over every limit, and the gaps (about 15 ms) are
    // shorter than a burst's refill.
    let run = || {
        let mut last = Instant::now();
        // Bounded by the clock: the program runs until `end`.
        while coarse_ns() < end {
            if tg.run_program(PROG_LINEAR, &frame, 20_000).is_err() {
                failed.fetch_add(1, Ordering::Relaxed);
                return;
            }
            stall.fetch_max(last.elapsed().as_micros() as u64, Ordering::Relaxed);
            last = Instant::now();
        }
    };
    if case.two_cpus {
        traffic::on_two_cpus(run)?;
    } else {
        run();
    }
    if failed.into_inner() != 0 {
        bail!("BPF_PROG_TEST_RUN failed during the flood of {case:?}");
    }
    let key = tg.maps.source_key(SOURCE.parse()?)?;
    let st = tg
        .maps
        .source(&key)?
        .with_context(|| format!("{SOURCE} is not tracked after its flood"))?;
    let secs = st.last_seen_ns.saturating_sub(st.first_seen_ns) as f64 / 1e9;
    let c = tg.maps.counters()?;
    let expected = case.burst() as f64 + case.per_sec as f64 * secs;
    let tick = coarse_tick_ns() as f64 / 1e9;
    let measured = Measured {
        case,
        passed: c.get(Reason::Pass, Verdict::Pass).packets,
        dropped: c.total(Verdict::Drop).packets,
        secs,
        expected,
        bound: (0.01 * expected).max(case.per_sec as f64 * 2.0 * tick + 1.0),
    };
    Ok((measured, Duration::from_micros(stall.into_inner())))
}
