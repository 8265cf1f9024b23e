//! `cargo xtask deb`: the Debian package (packaging/build-deb.sh on a
//! release build), the one definition of what an install is: the binary,
//! the systemd unit, the example config as a conffile (never overwritten),
//! the tollgate group, the state directory, the service enabled (the
//! maintainer scripts in packaging/debian). `install` goes through it.

use std::{path::PathBuf, process::Command};

use crate::{
    exec::{cargo, exec, output},
    setup,
};

/// Flattened into `install`'s options: its argument group has a name of
/// its own, as `setup`'s has.
#[derive(clap::Args)]
#[group(id = "deb")]
pub struct Options {
    /// Package this binary instead of building a release.
    #[arg(long)]
    pub binary: Option<PathBuf>,
    /// Where the .deb goes.
    #[arg(long, default_value = "target/debian")]
    pub out: PathBuf,
    #[command(flatten)]
    pub setup: setup::Options,
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Builds the package; returns its path.
pub fn run(o: &Options) -> anyhow::Result<PathBuf> {
    let binary = match &o.binary {
        Some(b) => b.clone(),
        None => {
            setup::run(&o.setup)?;
            exec(cargo().args(["build", "--release", "-p", "monitor", "--bin", "tollgate"]))?;
            repo().join("target/release/tollgate")
        }
    };
    let path = output(
        Command::new(repo().join("packaging/build-deb.sh"))
            .arg(&binary)
            .arg(env!("CARGO_PKG_VERSION"))
            .arg(&o.out),
    )?;
    let path = PathBuf::from(path.trim());
    println!("{}", path.display());
    Ok(path)
}
