//! What the live view shows, kept between refreshes: per-second rates
//! from successive `status` answers (passed, dropped, and drops by
//! reason), a bounded history of each for the sparklines, the latest top
//! talkers, bans and events, and the keys' state (sort, pause). Pure:
//! `watch` feeds it answers and draws it.

use std::collections::{BTreeMap, VecDeque};

use crate::{
    control::replies::{BanLine, Status, Top},
    events::Event,
};

/// Rate samples kept per series: a minute at one refresh a second.
pub const HISTORY: usize = 60;
/// Events kept for the view.
pub const EVENTS: usize = 8;

/// What the talkers are ranked by; `s` cycles through them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sort {
    Packets,
    Bytes,
    Drops,
}

impl Sort {
    pub fn name(self) -> &'static str {
        match self {
            Sort::Packets => "packets",
            Sort::Bytes => "bytes",
            Sort::Drops => "drops",
        }
    }

    pub fn next(self) -> Self {
        match self {
            Sort::Packets => Sort::Bytes,
            Sort::Bytes => Sort::Drops,
            Sort::Drops => Sort::Packets,
        }
    }
}

/// A series of per-second rates, newest last.
pub type Series = VecDeque<u64>;

#[derive(Debug)]
pub struct Model {
    pub sort: Sort,
    pub paused: bool,
    pub status: Option<Status>,
    /// Packets passed and dropped per second.
    pub passed: Series,
    pub dropped: Series,
    /// Drops per second by reason (reasons seen dropping in the window).
    pub drops_by_reason: BTreeMap<String, Series>,
    pub top: Option<Top>,
    pub bans: Vec<BanLine>,
    pub events: VecDeque<Event>,
    /// The last event seen, to ask for newer ones.
    pub last_seq: u64,
    /// The previous `status` counters and when they were read (s).
    prev: Option<(f64, u64, u64, BTreeMap<String, u64>)>,
}

impl Model {
    pub fn new(sort: Sort) -> Self {
        Self {
            sort,
            paused: false,
            status: None,
            passed: Series::new(),
            dropped: Series::new(),
            drops_by_reason: BTreeMap::new(),
            top: None,
            bans: Vec::new(),
            events: VecDeque::new(),
            last_seq: 0,
            prev: None,
        }
    }

    /// Takes a `status` read at `at` seconds (any monotonic origin): the
    /// rates since the previous one join the history.
    pub fn status(&mut self, s: Status, at: f64) {
        let (pass, drop) = (s.packets.pass + s.packets.tx, s.packets.drop);
        if let Some((t0, p0, d0, by0)) = &self.prev {
            let secs = (at - t0).max(1e-3);
            let per = |now: u64, then: u64| (now.saturating_sub(then) as f64 / secs).round() as u64;
            push(&mut self.passed, per(pass, *p0));
            push(&mut self.dropped, per(drop, *d0));
            for (reason, n) in &s.dropped_by_reason {
                let then = by0.get(reason).copied().unwrap_or(0);
                let series = self
                    .drops_by_reason
                    .entry(reason.clone())
                    .or_insert_with(|| {
                        // A reason new to the view: zeros for the time before.
                        std::iter::repeat_n(0, self.passed.len().saturating_sub(1)).collect()
                    });
                push(series, per(*n, then));
            }
            // Reasons with no new drops this time get a zero.
            let len = self.passed.len();
            for series in self.drops_by_reason.values_mut() {
                if series.len() < len {
                    push(series, 0);
                }
            }
            // A reason silent for the whole window leaves the view.
            self.drops_by_reason.retain(|_, s| s.iter().any(|v| *v > 0));
        }
        self.prev = Some((at, pass, drop, s.dropped_by_reason.clone()));
        self.status = Some(s);
    }

    pub fn events(&mut self, new: Vec<Event>) {
        for e in new {
            self.last_seq = self.last_seq.max(e.seq);
            if self.events.len() == EVENTS {
                self.events.pop_front();
            }
            self.events.push_back(e);
        }
    }

    /// The drop reasons, busiest now first.
    pub fn reasons(&self) -> Vec<(&str, &Series)> {
        let mut v: Vec<_> = self
            .drops_by_reason
            .iter()
            .map(|(k, s)| (k.as_str(), s))
            .collect();
        v.sort_by_key(|(_, s)| std::cmp::Reverse(s.back().copied().unwrap_or(0)));
        v
    }
}

fn push(s: &mut Series, v: u64) {
    if s.len() == HISTORY {
        s.pop_front();
    }
    s.push_back(v);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::replies::ByVerdict;

    fn status(pass: u64, drop: u64, by: &[(&str, u64)]) -> Status {
        let mut s: Status = serde_json::from_value(serde_json::json!({
            "version": "0", "interfaces": [], "attach_mode": "native",
            "uptime_seconds": 0, "policy_generation": 0,
            "rules": {"config": 0, "runtime": 0, "management": 0},
            "bans_active": 0,
            "sources": {"tracked": 0, "capacity": 0, "evicted": 0},
            "packets": {"pass": 0, "drop": 0, "monitor": 0, "tx": 0},
            "bytes": {"pass": 0, "drop": 0, "monitor": 0, "tx": 0},
            "by_reason": {}, "last_read_ms": 0.0
        }))
        .unwrap();
        s.packets = ByVerdict {
            pass,
            drop,
            monitor: 0,
            tx: 0,
        };
        s.dropped_by_reason = by.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect();
        s
    }

    #[test]
    fn rates_come_from_successive_counters_and_reasons_join_and_leave() {
        let mut m = Model::new(Sort::Packets);
        m.status(status(100, 0, &[]), 0.0);
        assert!(m.passed.is_empty(), "one reading is no rate");
        m.status(status(300, 50, &[("banned", 50)]), 2.0);
        assert_eq!(m.passed, [100]);
        assert_eq!(m.dropped, [25]);
        assert_eq!(m.drops_by_reason["banned"], [25]);
        m.status(status(400, 150, &[("banned", 60), ("deny", 90)]), 3.0);
        assert_eq!(m.drops_by_reason["banned"], [25, 10]);
        assert_eq!(m.drops_by_reason["deny"], [0, 90], "zeros before it came");
        assert_eq!(m.reasons()[0].0, "deny", "busiest first");
        for i in 0..HISTORY as u64 {
            m.status(
                status(400, 150, &[("banned", 60), ("deny", 90)]),
                4.0 + i as f64,
            );
        }
        assert_eq!(m.passed.len(), HISTORY, "bounded");
        assert!(m.drops_by_reason.is_empty(), "silent reasons leave");
    }
}
