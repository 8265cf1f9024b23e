//! `cargo xtask bench`: the lab crate's `bench` binary (`tests/src/bin`),
//! which shares the lab with the tests, built for release and run as root.
//! Its output streams to the terminal; a whole run (no `TG_BENCH_ONLY`) is
//! also written to `BENCHMARKS.md` with the machine and the command, so
//! the figures in the repository are ones a run printed.

use std::{
    io::{BufRead as _, BufReader},
    process::Stdio,
};

use anyhow::{Context as _, bail};

use crate::{exec::lab_bin, setup};

#[derive(clap::Args)]
pub struct Options {
    /// Extra arguments for the bench binary (see `--help` there).
    #[arg(last = true)]
    pub args: Vec<String>,
    #[command(flatten)]
    pub setup: setup::Options,
}

pub fn run(o: &Options) -> anyhow::Result<()> {
    setup::run(&o.setup)?;
    let mut c = lab_bin("bench", &o.args, &o.setup.runner)?;
    // A whole run draws the flood table's chart beside BENCHMARKS.md.
    if std::env::var_os("TG_BENCH_ONLY").is_none() {
        let chart = std::env::current_dir()?.join(CHART);
        c.env("TG_BENCH_CHART", chart);
    }
    let mut child = c
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {c:?}"))?;
    let mut printed = Vec::new();
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines() {
            let line = line.context("reading the bench's output")?;
            println!("{line}");
            printed.push(line);
        }
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("{c:?} failed with {status}");
    }
    if std::env::var_os("TG_BENCH_ONLY").is_none() {
        std::fs::write("BENCHMARKS.md", report(&printed))
            .context("writing BENCHMARKS.md in the workspace root")?;
        println!("written to BENCHMARKS.md");
    }
    Ok(())
}

/// The flood table's chart, beside BENCHMARKS.md.
const CHART: &str = "BENCHMARKS-flood.png";

/// `BENCHMARKS.md`: the machine, the command, and what the run printed.
fn report(printed: &[String]) -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name")?.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|k| k.trim().to_owned())
        .unwrap_or_default();
    let date = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    format!(
        "# Benchmarks\n\n\
         What `cargo xtask bench` printed on {date}: {cpu}, {cpus} CPUs, Linux {kernel}. \
         One run; on a shared VM single runs swing by several percent and more, so \
         read the ratios each table prints from its own run, and repeat before \
         comparing runs. What each part measures: the comments at the top of \
         `tests/src/bin/bench/*.rs`, and \"Measuring\" in the README. The flood \
         table as a chart: [{CHART}]({CHART}).\n\n\
         ```text\n{}\n```\n",
        printed.join("\n")
    )
}
