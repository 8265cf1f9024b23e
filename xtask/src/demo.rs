//! `cargo xtask demo`: the lab crate's `demo` binary (`tests/src/bin`),
//! which shares the lab with the tests, built for release and run as root.

use crate::{exec::run_lab_bin, setup};

#[derive(clap::Args)]
pub struct Options {
    /// How long the traffic runs, in seconds.
    #[arg(long, default_value_t = 20)]
    pub seconds: u64,
    /// Two hosts sharing a flood's ban through a real CrowdSec Local API.
    #[arg(long)]
    pub fleet: bool,
    #[command(flatten)]
    pub setup: setup::Options,
}

pub fn run(o: &Options) -> anyhow::Result<()> {
    setup::run(&o.setup)?;
    let mut args = vec!["--seconds".to_owned(), o.seconds.to_string()];
    if o.fleet {
        args.push("--fleet".to_owned());
    }
    run_lab_bin("demo", &args, &o.setup.runner)
}
