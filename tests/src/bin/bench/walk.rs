//! The source table's walk alone: the million-source sweep of the mmap-ed
//! flow records, on one thread and split over the CPUs as the daemon runs
//! it.

use tollgate::loader::Tollgate;

use crate::{setup::SOURCES, stats};

pub fn run(tg: &Tollgate, cpus: usize) -> anyhow::Result<()> {
    for shares in [1, cpus.min(4)] {
        let mut walks = Vec::new();
        for _ in 0..5 {
            let t = std::time::Instant::now();
            let mut counts = vec![0usize; shares];
            let parts: Vec<_> = counts.iter_mut().map(|n| move |_: &_| *n += 1).collect();
            let (n, _) = tg.maps.for_each_source_split(parts)?;
            walks.push(t.elapsed().as_secs_f64() * 1e3);
            anyhow::ensure!(
                n >= SOURCES as usize && counts.iter().sum::<usize>() == n,
                "the walk saw {n} of {SOURCES} sources"
            );
        }
        let w = stats(walks);
        println!(
            "sweep of the {SOURCES}-source table alone (mmap-ed flow records), {shares} thread(s): {:.0} / {:.0} / {:.0} ms",
            w.min, w.median, w.max
        );
    }
    Ok(())
}
