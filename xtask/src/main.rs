//! Project tasks: `cargo xtask <task>`. Each task lives in its own module
//! with `Options` and `run`; every task but `setup` runs `setup` first so a
//! fresh machine needs nothing but the README's two commands.

mod exec;
mod install;
mod setup;
mod tasks;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask", about = "Tollgate's project tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what the project needs (Debian packages, nightly rust-src,
    /// bpf-linker); quick when already done.
    Setup(setup::Options),
    /// Build the workspace (the XDP object included).
    Build(tasks::BuildOptions),
    /// The whole suite: format, lints, host and kernel tests.
    Test(tasks::TestOptions),
    /// Run Tollgate on a namespace lab with a well-behaved and a flooding
    /// client, with a live view, then clean up.
    Demo(tasks::DemoOptions),
    /// Measure per-packet cost against a floor and xdp-filter.
    Bench(tasks::BenchOptions),
    /// Build the Debian package (target/debian/tollgate_VERSION_ARCH.deb).
    Deb(install::DebOptions),
    /// Build a release and install it as a package: binary, systemd unit
    /// (enabled), example config (kept if there), tollgate group, state
    /// directory.
    Install(install::InstallOptions),
    /// Remove the installed package; config and state stay unless --purge.
    Uninstall(install::UninstallOptions),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().task {
        Task::Setup(o) => setup::run(&o),
        Task::Build(o) => tasks::build(&o),
        Task::Test(o) => tasks::test(&o),
        Task::Demo(o) => tasks::demo(&o),
        Task::Bench(o) => tasks::bench(&o),
        Task::Deb(o) => install::deb(&o).map(drop),
        Task::Install(o) => install::install(&o),
        Task::Uninstall(o) => install::uninstall(&o),
    }
}
