//! The flood tables as printed, their ratios, and the chart.

use super::{LIMIT, MEASURE, ROUNDS, Table, defence::Defence, measure::Sample};
use crate::{Stats, chart, stats};

fn at(d: Defence) -> usize {
    Defence::ALL.iter().position(|x| *x == d).unwrap_or(0)
}

fn median(v: impl Iterator<Item = f64>) -> f64 {
    stats(v.collect()).median
}

/// One row's figure over its rounds.
fn of(row: &[Sample], f: impl Fn(&Sample) -> f64) -> Stats {
    stats(row.iter().map(f).collect())
}

/// What one core could dispose of at a sample's cost per frame, Mpps.
fn capacity(s: &Sample) -> f64 {
    1e3 / s.ns.max(1.0)
}

/// Prints `t`. For the paced table (`flat_drop_ns`: plain XDP_DROP's ns
/// per frame flat out), the R2 lines too, and the chart when
/// `TG_BENCH_CHART` names a file.
pub fn table(t: &Table, flat_drop_ns: Option<f64>) {
    let ns = |d: Defence| median(t.rows[at(d)].iter().map(|s| s.ns));
    let cap = |d: Defence| of(&t.rows[at(d)], capacity).median;
    let (drop, read, hash) = (
        cap(Defence::XdpDrop),
        cap(Defence::ReadDrop),
        cap(Defence::Hashlimit),
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
    let Some(flat_drop_ns) = flat_drop_ns else {
        let r = |d: Defence| cap(d) / drop;
        println!(
            "flat out, capacity / XDP_DROP: banned {:.2}, over limit {:.2}, xdp-filter {:.2}, hashlimit {:.2} (the lab's lock contention included; the paced table below is the defences' own cost)",
            r(Defence::Banned),
            r(Defence::OverLimit),
            r(Defence::XdpFilter),
            r(Defence::Hashlimit)
        );
        return;
    };
    chart(t, offered.median);
    let r2 = |d: Defence| cap(d) / drop;
    println!(
        "R2 = Tollgate / XDP_DROP (paced capacity medians): banned {:.2}, over limit {:.2} (target >= 0.8), storm {:.2}, on probation {:.2} (target >= 0.5); Tollgate banned / hashlimit {:.1}, over limit / hashlimit {:.1} (target >= 6)",
        r2(Defence::Banned),
        r2(Defence::OverLimit),
        r2(Defence::Storm),
        r2(Defence::StormProbation),
        cap(Defence::Banned) / hash,
        cap(Defence::OverLimit) / hash
    );
    let r2_read = |d: Defence| {
        let floor = if matches!(d, Defence::Storm | Defence::StormProbation) {
            cap(Defence::ReadDropStorm)
        } else {
            read
        };
        cap(d) / floor
    };
    println!(
        "against XDP_DROP after reading the source (the floor of a filter that looks at the packet; for the storm rows, of the storm's frames, which the generator writes and the receiver's cache then misses): banned {:.2}, over limit {:.2}, xdp-filter {:.2}, storm {:.2}, on probation {:.2}; reading the frame costs {:.0} ns of plain XDP_DROP's {:.0}",
        r2_read(Defence::Banned),
        r2_read(Defence::OverLimit),
        r2_read(Defence::XdpFilter),
        r2_read(Defence::Storm),
        r2_read(Defence::StormProbation),
        ns(Defence::ReadDrop) - ns(Defence::XdpDrop),
        ns(Defence::XdpDrop)
    );
    // A receiver that idles between frames pays its wake-ups in every
    // row alike, which draws the paced ratios toward 1; what a defence
    // adds per frame at one pace does not have that bias. Added to plain
    // XDP_DROP's cost flat out, it estimates the ratio of a busy core.
    let extra = |d: Defence| ns(d) - ns(Defence::XdpDrop);
    let busy = |d: Defence| flat_drop_ns / (flat_drop_ns + extra(d).max(0.0));
    println!(
        "what a defence adds per frame to plain XDP_DROP at the same pace (ns, medians): banned {:+.0}, over limit {:+.0}, xdp-filter {:+.0}, on probation {:+.0}, read {:+.0}, read a storm frame {:+.0}; with plain XDP_DROP's {flat_drop_ns:.0} ns flat out, a busy core's estimated ratio: banned {:.2}, over limit {:.2}, xdp-filter {:.2}, on probation {:.2}",
        extra(Defence::Banned),
        extra(Defence::OverLimit),
        extra(Defence::XdpFilter),
        extra(Defence::StormProbation),
        extra(Defence::ReadDrop),
        extra(Defence::ReadDropStorm),
        busy(Defence::Banned),
        busy(Defence::OverLimit),
        busy(Defence::XdpFilter),
        busy(Defence::StormProbation)
    );
}

fn chart(t: &Table, offered: f64) {
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
        "One core's capacity per defence: 64-byte UDP, paced ({offered:.1} Mpps offered, median)"
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
