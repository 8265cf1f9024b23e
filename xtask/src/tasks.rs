//! build, test, demo and bench. Demo and bench are binaries of the lab
//! crate (`tests/src/bin`), so they share the lab with the tests; this
//! crate stays dependency-light so `cargo xtask setup` builds on a machine
//! that has no BPF toolchain yet.

use std::process::Command;

use crate::{
    exec::{exec, is_root},
    setup,
};

#[derive(clap::Args)]
pub struct BuildOptions {
    #[arg(long)]
    pub release: bool,
    #[command(flatten)]
    pub setup: setup::Options,
}

#[derive(clap::Args)]
pub struct TestOptions {
    /// Skip `cargo fmt --check` and clippy (they run by default, as in CI).
    #[arg(long)]
    pub no_lint: bool,
    /// Extra arguments for `cargo test` (e.g. a test name filter).
    #[arg(last = true)]
    pub cargo_args: Vec<String>,
    #[command(flatten)]
    pub setup: setup::Options,
}

#[derive(clap::Args)]
pub struct DemoOptions {
    /// How long the traffic runs, in seconds.
    #[arg(long, default_value_t = 20)]
    pub seconds: u64,
    #[command(flatten)]
    pub setup: setup::Options,
}

#[derive(clap::Args)]
pub struct BenchOptions {
    /// Extra arguments for the bench binary (see `--help` there).
    #[arg(last = true)]
    pub args: Vec<String>,
    #[command(flatten)]
    pub setup: setup::Options,
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

/// Tests and the lab binaries need root (BPF, namespaces). As root, nothing
/// to do; otherwise cargo runs them through the runner (`sudo -E`).
fn with_runner(cmd: &mut Command, o: &setup::Options) {
    if !is_root() {
        let triple = "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER";
        cmd.env(triple, &o.runner);
    }
}

pub fn build(o: &BuildOptions) -> anyhow::Result<()> {
    setup::run(&o.setup)?;
    let mut c = cargo();
    c.args(["build", "--all-targets"]);
    if o.release {
        c.arg("--release");
    }
    exec(&mut c)
}

pub fn test(o: &TestOptions) -> anyhow::Result<()> {
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
    let mut c = cargo();
    c.arg("test").args(&o.cargo_args);
    with_runner(&mut c, &o.setup);
    exec(&mut c)
}

/// Builds the release binaries and runs `bin` of the lab crate with `args`.
fn run_lab_bin(bin: &str, args: &[String], o: &setup::Options) -> anyhow::Result<()> {
    setup::run(o)?;
    exec(cargo().args([
        "build",
        "--release",
        "-p",
        "monitor",
        "-p",
        "tollgate-tests",
        "--bins",
    ]))?;
    let mut c = cargo();
    c.args([
        "run",
        "--quiet",
        "--release",
        "-p",
        "tollgate-tests",
        "--bin",
        bin,
        "--",
    ])
    .args(args);
    with_runner(&mut c, o);
    exec(&mut c)
}

pub fn demo(o: &DemoOptions) -> anyhow::Result<()> {
    run_lab_bin(
        "demo",
        &["--seconds".to_owned(), o.seconds.to_string()],
        &o.setup,
    )
}

pub fn bench(o: &BenchOptions) -> anyhow::Result<()> {
    run_lab_bin("bench", &o.args, &o.setup)
}
