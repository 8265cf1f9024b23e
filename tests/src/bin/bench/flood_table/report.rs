//! The flood tables as printed, their ratios, and the chart.

use super::{LIMIT, MEASURE, ROUNDS, Table, defence::Defence, measure::Sample};
use crate::{Stats, chart, stats};

fn at(d: Defence) -> usize {
    Defence::ALL.iter().position(|x| *x == d).unwrap_or(0)
}

/// One row's figure over its rounds.
fn of(row: &[Sample], f: impl Fn(&Sample) -> f64) -> Stats {
    stats(row.iter().map(f).collect())
}

/// What one core could dispose of at a sample's cost per frame, Mpps.
fn capacity(s: &Sample) -> f64 {
    1e3 / s.ns.max(1.0)
}

/// Both tables, then the ratios the targets are judged on (from
/// the paced one) and the chart when `TG_BENCH_CHART` names a file.
pub fn tables(flat: &Table, paced: &Table) {
    table(flat);
    let r = |d: Defence| cap(flat, d) / cap(flat, Defence::XdpDrop);
    println!(
        "flat out, capacity / XDP_DROP: banned {:.2}, over limit {:.2}, xdp-filter {:.2}, hashlimit {:.2} (the lab's lock contention included, more the slower the receiver; the paced table below has little of it, and wake-ups alike for every row)",
        r(Defence::Banned),
        r(Defence::OverLimit),
        r(Defence::XdpFilter),
        r(Defence::Hashlimit)
    );
    table(paced);
    chart(paced);
    paced_ratios(paced, ns(flat, Defence::XdpDrop));
}

/// A row's median ns per frame.
fn ns(t: &Table, d: Defence) -> f64 {
    of(&t.rows[at(d)], |s| s.ns).median
}

/// A row's median capacity.
fn cap(t: &Table, d: Defence) -> f64 {
    of(&t.rows[at(d)], capacity).median
}

fn table(t: &Table) {
    let (drop, read, hash) = (
        cap(t, Defence::XdpDrop),
        cap(t, Defence::ReadDrop),
        cap(t, Defence::Hashlimit),
    );
    let offered = stats(t.rows.iter().flatten().map(|s| s.offered).collect());
    println!();
    println!(
        "flood table, {}: 64-byte UDP from the generator on CPU 0 ({:.1} / {:.1} / {:.1} Mpps offered), the receiver's threaded NAPI alone on CPU 1 at SCHED_FIFO; {ROUNDS} rounds of {} s, per-source limits {LIMIT}/s",
        t.title,
        offered.min,
        offered.median,
        offered.max,
        MEASURE.as_secs()
    );
    println!(
        "{:<38} {:>7} {:>20} {:>8} {:>9} {:>8} {:>10} {:>11} {:>11}",
        "defence",
        "ns/fr",
        "Mpps capacity",
        "offered",
        "absorbed",
        "refused",
        "/ XDP_DROP",
        "/ read+drop",
        "/ hashlimit"
    );
    for (i, d) in Defence::ALL.into_iter().enumerate() {
        let row = &t.rows[i];
        let c = of(row, capacity);
        println!(
            "{:<38} {:>7.0} {:>20} {:>8.2} {:>9.2} {:>7.1}% {:>10.2} {:>11.2} {:>11.1}",
            d.name(),
            of(row, |s| s.ns).median,
            format!("{:.2} / {:.2} / {:.2}", c.min, c.median, c.max),
            of(row, |s| s.offered).median,
            of(row, |s| s.absorbed).median,
            100.0 * of(row, |s| s.refused).median,
            c.median / drop,
            c.median / read,
            c.median / hash
        );
    }
}

/// R2 and the ratios to hashlimit and to reading the frame, from the
/// paced table; and what each defence adds per frame at its pace, with
/// the ratio that makes on a busy core.
fn paced_ratios(t: &Table, flat_drop_ns: f64) {
    let cap = |d: Defence| cap(t, d);
    let ns = |d: Defence| ns(t, d);
    let (drop, hash) = (cap(Defence::XdpDrop), cap(Defence::Hashlimit));
    let r2 = |d: Defence| cap(d) / drop;
    println!(
        "R2 = Tollgate / XDP_DROP (paced capacity medians; the wake-ups every row pays draw it toward 1): banned {:.2}, over limit {:.2} (target >= 0.8), storm {:.2}, on probation {:.2} (target >= 0.5); Tollgate banned / hashlimit {:.1}, over limit / hashlimit {:.1} (target >= 6; plain XDP_DROP / hashlimit {:.1})",
        r2(Defence::Banned),
        r2(Defence::OverLimit),
        r2(Defence::Storm),
        r2(Defence::StormProbation),
        cap(Defence::Banned) / hash,
        cap(Defence::OverLimit) / hash,
        drop / hash
    );
    // Each row against the read of its own frames, from the same
    // generator at the same pace.
    let floor = |d: Defence| {
        if d.storm_frames() {
            Defence::ReadDropStorm
        } else {
            Defence::ReadDrop
        }
    };
    let r2_read = |d: Defence| cap(d) / cap(floor(d));
    println!(
        "against XDP_DROP after reading the source of the same frames (the floor of a filter that looks at the packet; the storm's frames are written by the generator, so the receiver's first read misses): banned {:.2}, over limit {:.2}, xdp-filter {:.2}, storm {:.2}, on probation {:.2}",
        r2_read(Defence::Banned),
        r2_read(Defence::OverLimit),
        r2_read(Defence::XdpFilter),
        r2_read(Defence::Storm),
        r2_read(Defence::StormProbation),
    );
    // A receiver that idles between frames pays its wake-ups in every
    // row alike, which draws the paced ratios toward 1; what a defence
    // adds per frame at one pace, from one generator, does not have that
    // bias. Added to plain XDP_DROP's cost flat out (which has some of the
    // lab's lock contention: its refused share above), it estimates the
    // ratio of a busy core.
    let extra = |d: Defence, base: Defence| ns(d) - ns(base);
    let busy = |d: Defence| flat_drop_ns / (flat_drop_ns + extra(d, Defence::XdpDrop));
    println!(
        "what a defence adds per frame at the same pace (ns, medians): to plain XDP_DROP, banned {:+.0}, over limit {:+.0}, xdp-filter {:+.0}, reading the frame {:+.0}; to reading a storm frame, the storm on probation {:+.0}, before it is found {:+.0}. Estimated ratio on a busy core, with plain XDP_DROP's {flat_drop_ns:.0} ns flat out: banned {:.2}, over limit {:.2}, xdp-filter {:.2}",
        extra(Defence::Banned, Defence::XdpDrop),
        extra(Defence::OverLimit, Defence::XdpDrop),
        extra(Defence::XdpFilter, Defence::XdpDrop),
        extra(Defence::ReadDrop, Defence::XdpDrop),
        extra(Defence::StormProbation, Defence::ReadDropStorm),
        extra(Defence::Storm, Defence::ReadDropStorm),
        busy(Defence::Banned),
        busy(Defence::OverLimit),
        busy(Defence::XdpFilter)
    );
}

fn chart(t: &Table) {
    let offered = stats(t.rows.iter().flatten().map(|s| s.offered).collect()).median;
    let Some(path) = std::env::var_os("TG_BENCH_CHART") else {
        return;
    };
    let bars: Vec<chart::Bar> = Defence::ALL
        .into_iter()
        .enumerate()
        .map(|(i, d)| {
            let c = of(&t.rows[i], capacity);
            chart::Bar {
                name: d.name(),
                mpps: (c.min, c.median, c.max),
            }
        })
        .collect();
    let title = format!(
        "One core's capacity per defence: 64-byte UDP, paced ({offered:.1} Mpps offered, median of all rows)"
    );
    match chart::flood(std::path::Path::new(&path), &bars, &title) {
        Ok(()) => println!("chart: {}", std::path::Path::new(&path).display()),
        Err(e) => println!("chart: not drawn: {e:#}"),
    }
}

/// What Tollgate passed of each flood: a row's cost per frame is its
/// program's only where it drops.
pub fn passed(passed: &[Vec<f64>]) {
    let shares: Vec<String> = Defence::ALL
        .into_iter()
        .zip(passed)
        .filter(|(_, v)| !v.is_empty())
        .map(|(d, v)| format!("{} {:.1} %", d.name(), 100.0 * stats(v.clone()).median))
        .collect();
    println!(
        "passed to the stack of what Tollgate judged (medians, both tables): {}. The storm's random /64s of 2001:db8::/32 fall in 65,536 /48s, each far under its own prefix budget; what bounds their sum is the /32's wide budget (64 sources' worth before the storm is found, the first row, where what it passes claims slots; four once it is, on probation)",
        shares.join(", ")
    );
}
