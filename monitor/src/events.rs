//! Structured events: every detection and every ban change is one event,
//! logged as a JSON line (with addresses already redacted), counted in
//! Prometheus, and kept in a bounded ring for `tollgate events`.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::clock::unix_ms;

/// Events kept for `tollgate events` (older ones are in the log).
pub const KEEP: usize = 1_000;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Event {
    /// Increasing, so `tollgate events --follow` can ask for what is new.
    pub seq: u64,
    pub unix_ms: u64,
    /// `detection`, `ban_added`, `ban_removed`, `ban_expired`,
    /// `syn_limit_lifted`, `syn_cookies` (a mode change: `action` is the
    /// new mode, `off`, `watch` or `on`).
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detector: Option<String>,
    /// The source or prefix, redacted as configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// What was done: `logged` (monitor mode or nothing to do), `banned`, ...
    pub action: String,
    /// The numbers that crossed the line: name -> [observed, limit].
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub evidence: BTreeMap<String, [f64; 2]>,
    pub message: String,
}

#[derive(Debug, Default)]
pub struct EventLog {
    ring: VecDeque<Event>,
    next: u64,
}

impl EventLog {
    /// Records `e` (its `seq` and time are set here) and logs it.
    pub fn push(&mut self, mut e: Event) -> &Event {
        self.next += 1;
        e.seq = self.next;
        e.unix_ms = unix_ms();
        let evidence = serde_json::to_string(&e.evidence).unwrap_or_default();
        tracing::warn!(
            event = %e.kind,
            detector = e.detector.as_deref().unwrap_or(""),
            source = e.source.as_deref().unwrap_or(""),
            action = %e.action,
            evidence = %evidence,
            seq = e.seq,
            "{}",
            e.message
        );
        if self.ring.len() == KEEP {
            self.ring.pop_front();
        }
        self.ring.push_back(e);
        self.ring.back().expect("just pushed")
    }

    /// Events after `seq`, oldest first.
    pub fn since(&self, seq: u64) -> Vec<Event> {
        self.ring.iter().filter(|e| e.seq > seq).cloned().collect()
    }
}

/// An event with the fields every kind has.
pub fn event(kind: &'static str, source: Option<String>, action: &str, message: String) -> Event {
    Event {
        seq: 0,
        unix_ms: 0,
        kind: kind.to_owned(),
        detector: None,
        source,
        action: action.to_owned(),
        evidence: BTreeMap::new(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
