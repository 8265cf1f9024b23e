//! `cargo xtask install`: a release built and installed as the Debian
//! package (see `deb`), into the running system or a throwaway root.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::Context as _;

use crate::{deb, exec::exec};

#[derive(clap::Args)]
pub struct Options {
    /// Install into this directory instead of the running system (dpkg
    /// --root; maintainer scripts then touch only that tree).
    #[arg(long)]
    pub root: Option<PathBuf>,
    #[command(flatten)]
    pub deb: deb::Options,
}

/// dpkg on the running system, or on `root` (also for `uninstall`).
pub fn dpkg(root: Option<&Path>) -> Command {
    let mut c = Command::new("dpkg");
    if let Some(r) = root {
        // Chrootless scripts honour DPKG_ROOT; a bare root has none of
        // the package's dependencies installed.
        c.arg(format!("--root={}", r.display()))
            .args(["--force-script-chrootless", "--force-depends"]);
    }
    c
}

pub fn run(o: &Options) -> anyhow::Result<()> {
    let pkg = deb::run(&o.deb)?;
    if let Some(r) = &o.root {
        prepare_root(r)?;
    }
    exec(dpkg(o.root.as_deref()).arg("-i").arg(&pkg))
}

/// A root for `dpkg --root` needs dpkg's database and, for the group
/// tools, the account files; existing ones are left alone.
fn prepare_root(root: &Path) -> anyhow::Result<()> {
    for d in ["var/lib/dpkg/info", "var/lib/dpkg/updates", "etc"] {
        std::fs::create_dir_all(root.join(d))
            .with_context(|| format!("creating {}", root.join(d).display()))?;
    }
    for (f, text) in [
        ("var/lib/dpkg/status", ""),
        ("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"),
        ("etc/group", "root:x:0:\n"),
        ("etc/shadow", "root:*::0:99999:7:::\n"),
        ("etc/gshadow", "root:*::\n"),
    ] {
        let p = root.join(f);
        if !p.exists() {
            std::fs::write(&p, text).with_context(|| format!("writing {}", p.display()))?;
        }
    }
    Ok(())
}
