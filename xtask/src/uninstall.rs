//! `cargo xtask uninstall`: the installed package removed; config and
//! state stay unless `--purge`, as dpkg's remove and purge do.

use std::path::PathBuf;

use crate::{exec::exec, install::dpkg};

#[derive(clap::Args)]
pub struct Options {
    /// Also remove the config, the state file and the tollgate group.
    #[arg(long)]
    pub purge: bool,
    /// The root given to `install --root`.
    #[arg(long)]
    pub root: Option<PathBuf>,
}

pub fn run(o: &Options) -> anyhow::Result<()> {
    exec(
        dpkg(o.root.as_deref())
            .arg(if o.purge { "--purge" } else { "--remove" })
            .arg("tollgate"),
    )
}
