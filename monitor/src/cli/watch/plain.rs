//! The live view as plain text, for a pipe or a log: the same content at
//! each refresh, one block after another, nothing redrawn in place.

use std::io::Write as _;

use super::{Feed, Options, draw::now, model::Model};
use crate::{cli::print::Text as _, control::replies::Bans};

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
    let at = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
    let reasons: Vec<String> = m
        .reasons()
        .iter()
        .map(|(r, s)| format!("{r} {}", now(s)))
        .collect();
    let mut out = vec![
        format!("--- tollgate top --watch, {at} ---"),
        format!(
            "packets/s: passed {}, dropped {}{}",
            now(&m.passed),
            now(&m.dropped),
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
