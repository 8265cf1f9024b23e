//! `cargo xtask bench`: the lab crate's `bench` binary (`tests/src/bin`),
//! which shares the lab with the tests, built for release and run as root.

use crate::{exec::run_lab_bin, setup};

#[derive(clap::Args)]
pub struct Options {
    /// Extra arguments for the bench binary (see `--help` there).
    #[arg(last = true)]
    pub args: Vec<String>,
    #[command(flatten)]
    pub setup: setup::Options,
}

pub fn run(o: &Options) -> anyhow::Result<()> {
    setup::run(&o.setup)?;
    run_lab_bin("bench", &o.args, &o.setup.runner)
}
