//! The event history: the last `KEEP` events in memory, and on disk in the
//! state directory (`events.jsonl`, one event per line, mode 0600) so a
//! restarted daemon continues the history and its sequence numbers. The
//! file is appended to as events happen and rewritten to the last `KEEP`
//! when it holds twice that, so it stays bounded. A line that cannot be
//! read (a torn write at a crash) is skipped, never fatal.

use std::{
    collections::VecDeque,
    fs::File,
    io::{BufRead, BufReader, Write},
    os::unix::fs::OpenOptionsExt as _,
    path::{Path, PathBuf},
};

use super::{Event, log};
use crate::{clock::unix_ms, config::LogFormat};

/// Events kept for `tollgate events` (older ones are in the log).
pub const KEEP: usize = 1_000;

#[derive(Debug, Default)]
pub struct EventLog {
    ring: VecDeque<Event>,
    next: u64,
    /// Where the history lives; none: in memory only.
    path: Option<PathBuf>,
    /// Lines in the file (rewritten at `2 * KEEP`).
    lines: usize,
    format: LogFormat,
}

impl EventLog {
    /// The history kept in `path` (created if missing), logged in
    /// `format`. Returns it and, if some of the file could not be read, a
    /// note saying what was skipped.
    pub fn open(path: &Path, format: LogFormat) -> (Self, Option<String>) {
        let mut log = Self {
            path: Some(path.to_owned()),
            format,
            ..Self::default()
        };
        let mut skipped = 0usize;
        match File::open(path) {
            Ok(f) => {
                for line in BufReader::new(f).lines() {
                    match line
                        .ok()
                        .and_then(|l| serde_json::from_str::<Event>(&l).ok())
                    {
                        Some(e) => {
                            log.next = log.next.max(e.seq);
                            log.remember(e);
                            log.lines += 1;
                        }
                        None => skipped += 1,
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                let note = format!(
                    "the event history {} cannot be read ({e}); starting a new one",
                    path.display()
                );
                return (log, Some(note));
            }
        }
        let mut note = (skipped > 0).then(|| {
            format!(
                "skipped {skipped} unreadable lines of the event history {} (a write cut short?)",
                path.display()
            )
        });
        // Rewritten without them, so the next event starts a line of its
        // own rather than continuing a torn one.
        if skipped > 0
            && let Err(e) = log.rewrite()
        {
            note = Some(format!(
                "{}; rewriting it failed: {e:#}",
                note.unwrap_or_default()
            ));
        }
        (log, note)
    }

    /// Records `e` (its `seq` and time are set here), logs it and appends
    /// it to the history file.
    pub fn push(&mut self, mut e: Event) -> &Event {
        self.next += 1;
        e.seq = self.next;
        e.unix_ms = unix_ms();
        log::write(&e, self.format);
        self.remember(e);
        if let Err(err) = self.persist() {
            tracing::warn!(event = "event_history_failed", "{err:#}");
        }
        self.ring.back().expect("just pushed")
    }

    /// Events after `seq`, oldest first.
    pub fn since(&self, seq: u64) -> Vec<Event> {
        self.ring.iter().filter(|e| e.seq > seq).cloned().collect()
    }

    fn remember(&mut self, e: Event) {
        if self.ring.len() == KEEP {
            self.ring.pop_front();
        }
        self.ring.push_back(e);
    }

    /// Appends the newest event to the file, or rewrites the file when it
    /// would hold `2 * KEEP`.
    fn persist(&mut self) -> anyhow::Result<()> {
        let (Some(path), Some(e)) = (&self.path, self.ring.back()) else {
            return Ok(());
        };
        if self.lines + 1 >= 2 * KEEP {
            return self.rewrite();
        }
        let mut f = open(path, false)?;
        writeln!(f, "{}", serde_json::to_string(e)?)?;
        self.lines += 1;
        Ok(())
    }

    /// Replaces the file with the events in memory (the last `KEEP`).
    fn rewrite(&mut self) -> anyhow::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let tmp = path.with_extension("jsonl.tmp");
        let mut f = open(&tmp, true)?;
        let mut text = String::new();
        for e in &self.ring {
            text.push_str(&serde_json::to_string(e)?);
            text.push('\n');
        }
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        self.lines = self.ring.len();
        Ok(())
    }
}

fn open(path: &Path, truncate: bool) -> anyhow::Result<File> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(!truncate)
        .write(true)
        .truncate(truncate)
        .mode(0o600)
        .open(path)
        .map_err(|e| anyhow::anyhow!("writing the event history {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::event;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("tg-events-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn ring_is_bounded_and_followable() {
        let mut log = EventLog::default();
        for i in 0..(KEEP + 5) {
            log.push(event("ban_added", None, "banned", format!("{i}")));
        }
        let all = log.since(0);
        assert_eq!(all.len(), KEEP);
        assert_eq!(all[0].seq, 6);
        let last = all.last().unwrap().seq;
        assert!(log.since(last).is_empty());
        log.push(event("ban_expired", None, "unbanned", "x".into()));
        assert_eq!(log.since(last).len(), 1);
    }

    #[test]
    fn the_history_survives_a_restart_bounded_and_continues_its_numbers() {
        let d = dir("restart");
        let path = d.join("events.jsonl");
        let (mut log, note) = EventLog::open(&path, LogFormat::Text);
        assert!(note.is_none());
        for i in 0..(3 * KEEP) {
            log.push(event("ban_added", None, "banned", format!("{i}")).value("ttl_seconds", 60.0));
        }
        drop(log);
        let lines = std::fs::read_to_string(&path).unwrap().lines().count();
        assert!(lines < 2 * KEEP, "bounded on disk: {lines}");
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );

        // A torn last line (a crash mid-write) is skipped, said once.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(b"{\"seq\": 99999, \"kin").unwrap();
        let (mut log, note) = EventLog::open(&path, LogFormat::Text);
        assert!(note.unwrap().contains("skipped 1 unreadable line"));
        let all = log.since(0);
        assert_eq!(all.len(), KEEP);
        assert_eq!(all.last().unwrap().seq, (3 * KEEP) as u64);
        assert_eq!(all.last().unwrap().evidence["ttl_seconds"].observed, 60.0);
        let next = log
            .push(event("ban_expired", None, "unbanned", "x".into()))
            .seq;
        assert_eq!(next, (3 * KEEP + 1) as u64, "numbers continue");
        // The event after the torn line reads back whole.
        drop(log);
        let (log, note) = EventLog::open(&path, LogFormat::Text);
        assert!(note.is_none(), "{note:?}");
        assert_eq!(log.since(0).last().unwrap().seq, next);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
