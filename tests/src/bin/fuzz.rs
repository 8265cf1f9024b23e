//! `cargo xtask fuzz`'s packet run: the packet fuzzer (`lab::packet_fuzz`)
//! over as many frames as asked, from a seed that repeats the run.
//! Exits non-zero on any disagreement, each saved as a reproducer.

use std::time::Instant;

use anyhow::{Context, bail};
use tollgate::loader::{LoadOptions, Tollgate};

struct Args {
    frames: u64,
    seed: u64,
}

impl Args {
    /// Two flags do not need a parser crate.
    fn parse() -> anyhow::Result<Self> {
        let mut args = Self {
            frames: 10_000_000,
            seed: fastrand::u64(..),
        };
        let mut it = std::env::args().skip(1);
        while let Some(a) = it.next() {
            let mut number = |flag: &str| {
                it.next()
                    .and_then(|s| s.replace('_', "").parse().ok())
                    .with_context(|| format!("{flag} takes a whole number, as in {flag} 1000000"))
            };
            match a.as_str() {
                "--frames" => args.frames = number("--frames")?,
                "--seed" => args.seed = number("--seed")?,
                other => bail!("unknown argument {other}; usage: fuzz [--frames N] [--seed S]"),
            }
        }
        Ok(args)
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse()?;
    let mut tg = Tollgate::load(&LoadOptions {
        max_sources: 4096,
        ..Default::default()
    })
    .context("loading Tollgate's XDP object (run as root on a BPF-enabled kernel)")?;
    let began = Instant::now();
    let out = lab::packet_fuzz::run(&mut tg, args.seed, args.frames)?;
    let secs = began.elapsed().as_secs_f64();
    println!(
        "packet fuzz: {} frames ({} from the corpus), {} mismatches, seed {} (--seed {} repeats it), {:.0} s, {:.0} frames/s",
        out.frames,
        out.corpus,
        out.mismatched,
        args.seed,
        args.seed,
        secs,
        out.frames as f64 / secs
    );
    println!(
        "packet fuzz reached: {}",
        out.reached.into_iter().collect::<Vec<_>>().join(", ")
    );
    if out.mismatched > 0 {
        for m in &out.mismatches {
            eprintln!("{}", m.describe());
        }
        bail!(
            "{} frames read differently by the kernel's parse and the reference parser; reproducers are in {}",
            out.mismatched,
            lab::packet_fuzz::corpus_dir().display()
        );
    }
    Ok(())
}
