//! Project tasks: `cargo xtask <task>`. Each task lives in its own module
//! with `Options` and `run`; every task but `setup` runs `setup` first so a
//! fresh machine needs nothing but the README's two commands. `exec` holds
//! the command helpers they share. Demo and bench are binaries of the lab
//! crate (`tests/src/bin`), so they share the lab with the tests; this
//! crate stays dependency-light so `cargo xtask setup` builds on a machine
//! that has no BPF toolchain yet.

mod bench;
mod build;
mod deb;
mod demo;
mod exec;
mod fuzz;
mod install;
mod setup;
mod soak;
mod test;
mod uninstall;

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
    Build(build::Options),
    /// The whole suite: format, lints, host and kernel tests.
    Test(test::Options),
    /// Run Tollgate on a namespace lab with a well-behaved and a flooding
    /// client, with a live view, then clean up.
    Demo(demo::Options),
    /// Measure per-packet cost against a floor and xdp-filter.
    Bench(bench::Options),
    /// Fuzz the packet parser: generated frames through the kernel's parse
    /// and a reference parser, every field compared.
    Fuzz(fuzz::Options),
    /// Mixed traffic with reloads, rule and ban changes and kill -9
    /// restarts for N minutes, then every packet, ban and rule reconciled.
    Soak(soak::Options),
    /// Build the Debian package (target/debian/tollgate_VERSION_ARCH.deb).
    Deb(deb::Options),
    /// Build a release and install it as a package: binary, systemd unit
    /// (enabled), example config (kept if there), tollgate group, state
    /// directory.
    Install(install::Options),
    /// Remove the installed package; config and state stay unless --purge.
    Uninstall(uninstall::Options),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().task {
        Task::Setup(o) => setup::run(&o),
        Task::Build(o) => build::run(&o),
        Task::Test(o) => test::run(&o),
        Task::Demo(o) => demo::run(&o),
        Task::Bench(o) => bench::run(&o),
        Task::Fuzz(o) => fuzz::run(&o),
        Task::Soak(o) => soak::run(&o),
        Task::Deb(o) => deb::run(&o).map(drop),
        Task::Install(o) => install::run(&o),
        Task::Uninstall(o) => uninstall::run(&o),
    }
}
