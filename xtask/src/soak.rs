//! `cargo xtask soak`: mixed legitimate and attack traffic for as long as
//! asked, with reloads, rule and ban changes and kill -9 restarts, then
//! every packet, ban and rule accounted for and the daemon's memory
//! compared (the lab crate's `soak` binary, built for release and run as
//! root). The suite runs a two-minute soak on every change.

use crate::{exec::run_lab_bin, setup};

#[derive(clap::Args)]
pub struct Options {
    /// How long the soak runs, in minutes.
    #[arg(long, default_value_t = 10.0)]
    pub minutes: f64,
    #[command(flatten)]
    pub setup: setup::Options,
}

pub fn run(o: &Options) -> anyhow::Result<()> {
    setup::run(&o.setup)?;
    run_lab_bin(
        "soak",
        &["--minutes".to_owned(), o.minutes.to_string()],
        &o.setup.runner,
    )
}
