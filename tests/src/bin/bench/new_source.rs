//! What a never-seen source costs: the path a spoofed storm takes on every
//! packet (index miss, rule and ban lookups, a slot claimed under the
//! clock hand, the evicted source's index entry removed and the new one
//! inserted), next to the same source's next packet (steady state) and
//! the floor. One packet per BPF_PROG_TEST_RUN (the kernel's own timing
//! of that run), medians of many, on the bench's full source table: every
//! new source evicts one. Then the same on probation, as during a storm
//! the daemon detected: the first packet claims no slot (the second,
//! measured as "its next packet", does). Then a storm whose wide prefix
//! budget is spent: refused before it claims or reads its probation
//! entry. Prefix budgets that never bind for the first two, so each
//! measures its own path.

use aya::programs::{TestRun, TestRunOptions};
use lab::packets::Spec;
use monitor_common::maps::{PROG_FLOOR, PROG_LINEAR};
use tollgate::{
    loader::Tollgate,
    policy::{Policy, PrefixLimit, Rate, WideLimit},
};

use crate::setup;

const RUNS: u32 = 20_000;

/// A UDP frame from the `i`-th storm source: a /64 of 2001:db8:e000::/36
/// that the bench's million sources (2001:db8:f000::/36) do not use.
fn storm_frame(i: u32) -> Vec<u8> {
    let src = format!("2001:db8:{:x}:{:x}::1", 0xe000 | (i >> 16), i & 0xffff);
    Spec::udp(&src, "2001:db8:ffff::1", 40000, 53).build()
}

/// The kernel-timed ns of one run of `prog` on `frame`.
fn once(tg: &Tollgate, prog: &'static str, frame: &[u8]) -> anyhow::Result<u64> {
    let r = tg.program(prog)?.test_run(TestRunOptions {
        data_in: Some(frame),
        ..TestRunOptions::default()
    })?;
    Ok(r.duration.as_nanos() as u64)
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

/// Prints the new-source path's cost (run on the bench's loaded and
/// filled program): with prefix budgets that never bind, every new source
/// claiming a slot and, as during a storm the daemon detected, on
/// probation (claiming with its second packet); then with the storm's
/// wide budget spent, every packet refused before it claims or reads its
/// probation entry (the storm's packets once its budget is spent).
pub fn run(tg: &mut Tollgate) -> anyhow::Result<()> {
    let following = PrefixLimit::following(&Policy::default().default, false);
    budgets(
        tg,
        Some(PrefixLimit {
            all: None,
            unproven: None,
            wide: WideLimit::OFF,
            ..following
        }),
    )?;
    let claim = measure(tg, 0, "claims a slot")?;
    tg.maps.set_storm(true)?;
    let probation = measure(tg, RUNS, "on probation (a storm the daemon detected)")?;
    budgets(
        tg,
        Some(PrefixLimit {
            wide: WideLimit {
                unproven: Some(Rate {
                    per_sec: 1,
                    burst: 1,
                }),
                ..following.wide
            },
            ..following
        }),
    )?;
    let refused = measure(
        tg,
        2 * RUNS,
        "refused by its /32's spent budget (during a storm)",
    )?;
    tg.maps.set_storm(false)?;
    budgets(tg, None)?;
    println!(
        "new source, claiming / on probation = {:.1}, claiming / refused = {:.1}",
        claim as f64 / probation.max(1) as f64,
        claim as f64 / refused.max(1) as f64
    );
    Ok(())
}

/// The bench's policy with prefix budgets `prefix` (None: those that
/// follow its default limit).
fn budgets(tg: &mut Tollgate, prefix: Option<PrefixLimit>) -> anyhow::Result<()> {
    let policy = Policy {
        prefix,
        ..setup::policy()
    };
    tg.maps.apply_policy(&policy, None)?;
    Ok(())
}

/// One pass over `RUNS` never-seen sources from the `first`-th: prints and
/// returns the new source's median ns net of the floor.
fn measure(tg: &Tollgate, first: u32, how: &str) -> anyhow::Result<u64> {
    let (mut floor, mut new, mut again) = (Vec::new(), Vec::new(), Vec::new());
    let before = tg.maps.counters()?.source_events;
    for i in first..first + RUNS {
        let frame = storm_frame(i);
        floor.push(once(tg, PROG_FLOOR, &frame)?);
        new.push(once(tg, PROG_LINEAR, &frame)?);
        again.push(once(tg, PROG_LINEAR, &frame)?);
    }
    let after = tg.maps.counters()?.source_events;
    let created = after[0] - before[0];
    let (floor, new, again) = (median(floor), median(new), median(again));
    println!(
        "new source (a spoofed storm's every packet), {how}: {new} ns, its next packet {again} ns, floor {floor} ns; new / steady = {:.1}; {created} of {RUNS} sources claimed a slot; medians of single runs",
        new.saturating_sub(floor) as f64 / again.saturating_sub(floor).max(1) as f64
    );
    Ok(new.saturating_sub(floor))
}
