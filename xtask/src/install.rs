//! `cargo xtask deb`, `install` and `uninstall`. Installing goes through
//! the Debian package, so there is one definition of what an install is
//! (packaging/build-deb.sh and the maintainer scripts in
//! packaging/debian): the binary, the systemd unit, the example config as
//! a conffile (never overwritten), the tollgate group, the state
//! directory, the service enabled. Uninstall keeps config and state
//! unless `--purge`, as dpkg's remove and purge do.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::Context as _;

use crate::{
    exec::{exec, output},
    setup,
};

#[derive(clap::Args)]
pub struct DebOptions {
    /// Package this binary instead of building a release.
    #[arg(long)]
    pub binary: Option<PathBuf>,
    /// Where the .deb goes.
    #[arg(long, default_value = "target/debian")]
    pub out: PathBuf,
    #[command(flatten)]
    pub setup: setup::Options,
}

#[derive(clap::Args)]
pub struct InstallOptions {
    /// Install into this directory instead of the running system (dpkg
    /// --root; maintainer scripts then touch only that tree).
    #[arg(long)]
    pub root: Option<PathBuf>,
    #[command(flatten)]
    pub deb: DebOptions,
}

#[derive(clap::Args)]
pub struct UninstallOptions {
    /// Also remove the config, the state file and the tollgate group.
    #[arg(long)]
    pub purge: bool,
    /// The root given to `install --root`.
    #[arg(long)]
    pub root: Option<PathBuf>,
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Builds the package; returns its path.
pub fn deb(o: &DebOptions) -> anyhow::Result<PathBuf> {
    let binary = match &o.binary {
        Some(b) => b.clone(),
        None => {
            setup::run(&o.setup)?;
            exec(
                Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())).args([
                    "build",
                    "--release",
                    "-p",
                    "monitor",
                    "--bin",
                    "tollgate",
                ]),
            )?;
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

fn dpkg(root: Option<&Path>) -> Command {
    let mut c = Command::new("dpkg");
    if let Some(r) = root {
        // Chrootless scripts honour DPKG_ROOT; a bare root has none of
        // the package's dependencies installed.
        c.arg(format!("--root={}", r.display()))
            .args(["--force-script-chrootless", "--force-depends"]);
    }
    c
}

pub fn install(o: &InstallOptions) -> anyhow::Result<()> {
    let pkg = deb(&o.deb)?;
    if let Some(r) = &o.root {
        prepare_root(r)?;
    }
    exec(dpkg(o.root.as_deref()).arg("-i").arg(&pkg))
}

pub fn uninstall(o: &UninstallOptions) -> anyhow::Result<()> {
    exec(
        dpkg(o.root.as_deref())
            .arg(if o.purge { "--purge" } else { "--remove" })
            .arg("tollgate"),
    )
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
