//! `cargo xtask soak`'s run: the soak (`lab::soak`) for as many minutes
//! as asked, its reconciliation printed; exits non-zero if anything does
//! not reconcile.

use std::time::Duration;

use anyhow::{Context, bail};

fn minutes() -> anyhow::Result<f64> {
    let mut it = std::env::args().skip(1);
    let mut minutes = 10.0;
    while let Some(a) = it.next() {
        match a.as_str() {
            "--minutes" => {
                minutes = it
                    .next()
                    .and_then(|s| s.parse().ok())
                    .filter(|m: &f64| *m > 0.0)
                    .context("--minutes takes a positive number, as in --minutes 60")?;
            }
            other => bail!("unknown argument {other}; usage: soak [--minutes N]"),
        }
    }
    Ok(minutes)
}

fn main() -> anyhow::Result<()> {
    let minutes = minutes()?;
    let report = lab::soak::run(Duration::from_secs_f64(minutes * 60.0))?;
    println!("{}", report.summary());
    let problems = report.problems();
    if !problems.is_empty() {
        bail!("the soak does not reconcile:\n{}", problems.join("\n"));
    }
    println!("soak: everything reconciles");
    Ok(())
}
