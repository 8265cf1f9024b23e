//! The live view as plain text, for a pipe or a log: the same content at
//! each refresh, one block after another, nothing redrawn in place.

use std::io::Write as _;

use super::{Feed, Options, model::Model};
use crate::{
    cli::print::{Text as _, number},
    control::replies::Bans,
};

pub(super) fn run(feed: &mut Feed, m: &mut Model, o: &Options) -> anyhow::Result<()> {
    let mut refreshes = 0u64;
    loop {
        feed.refresh(m, o.n)?;
        refreshes += 1;
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", block(m))?;
        out.flush()?;
        drop(out);
        if o.count.is_some_and(|n| refreshes >= n) {
            return Ok(());
        }
        std::thread::sleep(o.every);
    }
}

/// One refresh as text.
pub(super) fn block(m: &Model) -> String {
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
    let rate = |s: &super::model::Series| s.back().map_or("-".into(), |v| number(*v as f64));
    let reasons: Vec<String> = m
        .reasons()
        .iter()
        .map(|(r, s)| format!("{r} {}", rate(s)))
        .collect();
    let mut out = vec![
        format!("--- tollgate top --watch, {now} ---"),
        format!(
            "packets/s: passed {}, dropped {}{}",
            rate(&m.passed),
            rate(&m.dropped),
            if reasons.is_empty() {
                String::new()
            } else {
                format!(" ({})", reasons.join(", "))
            }
        ),
    ];
    if let Some(t) = &m.top {
        out.push(t.text());
    }
    out.push(
        Bans {
            bans: m.bans.clone(),
        }
        .text(),
    );
    out.extend(m.events.iter().map(|e| e.text()));
    out.join("\n")
}
