//! `cargo xtask fuzz`: the packet fuzzer over many frames (the lab
//! crate's `fuzz` binary, built for release and run as root), comparing
//! the kernel's parse with the reference parser frame by frame. The suite
//! runs a bounded 100,000 frames of it on every change.

use crate::{exec::run_lab_bin, setup};

#[derive(clap::Args)]
pub struct Options {
    /// Frames to generate (after the saved reproducers).
    #[arg(long, default_value_t = 10_000_000)]
    pub frames: u64,
    /// The generator's seed, to repeat a run (random by default; the run
    /// prints it).
    #[arg(long)]
    pub seed: Option<u64>,
    #[command(flatten)]
    pub setup: setup::Options,
}

pub fn run(o: &Options) -> anyhow::Result<()> {
    setup::run(&o.setup)?;
    let mut args = vec!["--frames".to_owned(), o.frames.to_string()];
    if let Some(seed) = o.seed {
        args.extend(["--seed".to_owned(), seed.to_string()]);
    }
    run_lab_bin("fuzz", &args, &o.setup.runner)
}
