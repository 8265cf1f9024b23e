//! `cargo xtask demo`: the lab crate's `demo` binary (`tests/src/bin`),
//! which shares the lab with the tests, built for release and run as root.

use crate::{exec::run_lab_bin, setup};

#[derive(clap::Args)]
pub struct Options {
    /// How long the traffic runs, in seconds.
    #[arg(long, default_value_t = 20)]
    pub seconds: u64,
    #[command(flatten)]
    pub setup: setup::Options,
}

pub fn run(o: &Options) -> anyhow::Result<()> {
    setup::run(&o.setup)?;
    run_lab_bin(
        "demo",
        &["--seconds".to_owned(), o.seconds.to_string()],
        &o.setup.runner,
    )
}
