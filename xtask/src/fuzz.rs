//! `cargo xtask fuzz`: the packet fuzzer over many frames (the lab
//! crate's `fuzz` binary, built for release and run as root), comparing
//! the kernel's parse with the reference parser frame by frame; then each
//! cargo-fuzz target (`fuzz/`: the config parser, units, the control
//! protocol, CIDRs, the bucket math, the capture reader) for a bounded
//! time from its seeds. The suite runs 100,000 frames of the packet
//! fuzzer on every change.

use std::{path::Path, process::Command};

use anyhow::Context as _;

use crate::{
    exec::{exec, output, probe, run_lab_bin},
    setup,
};

/// The cargo-fuzz targets (`fuzz/Cargo.toml`), each with seeds in
/// `fuzz/seeds/<target>`.
const TARGETS: [&str; 6] = [
    "config",
    "units",
    "control_request",
    "cidr",
    "bucket",
    "capture",
];

#[derive(clap::Args)]
pub struct Options {
    /// Frames for the packet fuzzer (after the saved reproducers); 0
    /// skips it.
    #[arg(long, default_value_t = 10_000_000)]
    pub frames: u64,
    /// The packet generator's seed, to repeat a run (random by default;
    /// the run prints it).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Seconds for each cargo-fuzz target; 0 skips them.
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    /// Run only these cargo-fuzz targets (default: all).
    #[arg(long = "target", value_parser = clap::builder::PossibleValuesParser::new(TARGETS))]
    pub targets: Vec<String>,
    #[command(flatten)]
    pub setup: setup::Options,
}

pub fn run(o: &Options) -> anyhow::Result<()> {
    setup::run(&o.setup)?;
    if o.frames > 0 {
        let mut args = vec!["--frames".to_owned(), o.frames.to_string()];
        if let Some(seed) = o.seed {
            args.extend(["--seed".to_owned(), seed.to_string()]);
        }
        run_lab_bin("fuzz", &args, &o.setup.runner)?;
    }
    if o.seconds == 0 {
        return Ok(());
    }
    install_cargo_fuzz()?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("xtask has no parent directory")?;
    let chosen: Vec<&str> = if o.targets.is_empty() {
        TARGETS.to_vec()
    } else {
        o.targets.iter().map(String::as_str).collect()
    };
    for target in chosen {
        eprintln!("fuzz: {target} for {} s", o.seconds);
        // New inputs go to fuzz/corpus (ignored by git); the seeds stay
        // as committed.
        let corpus = root.join("fuzz/corpus").join(target);
        std::fs::create_dir_all(&corpus)
            .with_context(|| format!("creating {}", corpus.display()))?;
        exec(
            Command::new("cargo")
                .current_dir(root)
                .args(["+nightly", "fuzz", "run", "-O", target])
                .arg(&corpus)
                .arg(root.join("fuzz/seeds").join(target))
                .arg("--")
                .arg(format!("-max_total_time={}", o.seconds))
                .arg("-rss_limit_mb=2048")
                .arg("-timeout=10"),
        )
        .with_context(|| {
            format!(
                "the {target} fuzz target failed; the input is under fuzz/artifacts/{target}/ \
                 (`cargo +nightly fuzz run {target} <file>` repeats it)"
            )
        })?;
    }
    Ok(())
}

/// cargo-fuzz (it runs on the nightly toolchain `setup` installs).
fn install_cargo_fuzz() -> anyhow::Result<()> {
    if probe(Command::new("cargo").args(["fuzz", "--version"])) {
        return Ok(());
    }
    eprintln!("fuzz: installing cargo-fuzz (a minute or two)");
    exec(Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]))?;
    output(Command::new("cargo").args(["fuzz", "--version"])).map(drop)
}
