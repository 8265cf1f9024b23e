//! Running commands with errors that name the whole command, and the
//! commands several tasks run: cargo, and the lab binaries as root.

use std::process::{Command, Stdio};

use anyhow::{Context as _, bail};

/// Runs `cmd` with inherited output; fails naming the command and status.
pub fn exec(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("could not start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

/// Runs `cmd` quietly and returns whether it succeeded (for probes).
pub fn probe(cmd: &mut Command) -> bool {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs `cmd` and returns its stdout.
pub fn output(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("could not start {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether this process runs as uid 0.
pub fn is_root() -> bool {
    output(Command::new("id").arg("-u")).is_ok_and(|s| s.trim() == "0")
}

/// `cargo`, the one running this task if known.
pub fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

/// Tests and the lab binaries need root (BPF, namespaces). As root, nothing
/// to do; otherwise cargo runs them through `runner` (`sudo -E`).
pub fn with_runner(cmd: &mut Command, runner: &str) {
    if !is_root() {
        let triple = "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER";
        cmd.env(triple, runner);
    }
}

/// Builds the release binaries (`tollgate` and the lab crate's) and runs
/// the lab crate's `bin` with `args`, through `runner` unless root.
pub fn run_lab_bin(bin: &str, args: &[String], runner: &str) -> anyhow::Result<()> {
    exec(&mut lab_bin(bin, args, runner)?)
}

/// The lab crate's binary `bin`, built for release (with the `tollgate`
/// binary it drives), ready to run as root with `args`.
pub fn lab_bin(bin: &str, args: &[String], runner: &str) -> anyhow::Result<Command> {
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
    with_runner(&mut c, runner);
    Ok(c)
}
