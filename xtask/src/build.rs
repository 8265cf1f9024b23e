//! `cargo xtask build`: the workspace, the XDP object included (monitor's
//! build script compiles it).

use crate::{
    exec::{cargo, exec},
    setup,
};

#[derive(clap::Args)]
pub struct Options {
    #[arg(long)]
    pub release: bool,
    #[command(flatten)]
    pub setup: setup::Options,
}

pub fn run(o: &Options) -> anyhow::Result<()> {
    setup::run(&o.setup)?;
    let mut c = cargo();
    c.args(["build", "--all-targets"]);
    if o.release {
        c.arg("--release");
    }
    exec(&mut c)
}
