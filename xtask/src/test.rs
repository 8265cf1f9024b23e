//! `cargo xtask test`: the whole suite, as CI runs it: format, lints, then
//! the host and kernel tests (as root, through the runner otherwise).

use crate::{
    exec::{cargo, exec, with_runner},
    setup,
};

#[derive(clap::Args)]
pub struct Options {
    /// Skip `cargo fmt --check` and clippy (they run by default, as in CI).
    #[arg(long)]
    pub no_lint: bool,
    /// Extra arguments for `cargo test` (e.g. a test name filter).
    #[arg(last = true)]
    pub cargo_args: Vec<String>,
    #[command(flatten)]
    pub setup: setup::Options,
}

pub fn run(o: &Options) -> anyhow::Result<()> {
    setup::run(&o.setup)?;
    if !o.no_lint {
        exec(cargo().args(["fmt", "--all", "--", "--check"]))?;
        exec(cargo().args(["clippy", "--all-targets", "--", "-D", "warnings"]))?;
    }
    // The kernel tests run the `tollgate` binary itself; cargo only builds
    // it for its own package's integration tests, so build it first.
    exec(cargo().args(["build", "-p", "monitor", "--bin", "tollgate"]))?;
    // Default members: everything but the eBPF crate, which monitor's
    // build script compiles for the BPF target.
    // Every test binary runs even after one fails, so a CI run reports
    // every failure rather than the first binary's alone.
    let mut c = cargo();
    c.args(["test", "--no-fail-fast"]).args(&o.cargo_args);
    with_runner(&mut c, &o.setup.runner);
    exec(&mut c)
}
