//! Alerts waiting for the Local API: each with the instant its ban ends,
//! so one posted late (after an outage) asks the fleet for the time the
//! ban has left, and one whose ban has ended is dropped. Bounded: past
//! `MAX`, the oldest go.

use std::time::Instant;

use serde_json::Value;

/// Alerts kept for a LAPI that does not answer.
pub const MAX: usize = 1_000;

/// An alert and the end of the ban it reports.
pub type Report = (Value, Instant);

#[derive(Default)]
pub struct Outbox {
    pending: Vec<Report>,
}

impl Outbox {
    /// Adds `r`; returns how many old ones were dropped to make room.
    pub fn add(&mut self, r: Report) -> usize {
        self.pending.push(r);
        let extra = self.pending.len().saturating_sub(MAX);
        self.pending.drain(..extra);
        extra
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// The alerts to post at `now`: ended ones dropped, each decision's
    /// duration set to what its ban has left.
    pub fn due(&mut self, now: Instant) -> Value {
        self.pending.retain(|(_, until)| *until > now);
        Value::Array(
            self.pending
                .iter()
                .map(|(a, until)| {
                    let mut a = a.clone();
                    let left = until.duration_since(now).as_secs().max(1);
                    if let Some(d) = a["decisions"].get_mut(0) {
                        d["duration"] = Value::from(format!("{left}s"));
                    }
                    a
                })
                .collect(),
        )
    }

    /// Posted (or refused for good): forget them.
    pub fn clear(&mut self) -> usize {
        let n = self.pending.len();
        self.pending.clear();
        n
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn late_alerts_ask_for_what_is_left_and_ended_ones_go() {
        let now = Instant::now();
        let alert = serde_json::json!({"decisions": [{"duration": "300s"}]});
        let mut o = Outbox::default();
        o.add((alert.clone(), now + Duration::from_secs(120)));
        o.add((alert, now + Duration::from_secs(5)));
        let due = o.due(now + Duration::from_secs(10));
        assert_eq!(due.as_array().unwrap().len(), 1, "the ended one dropped");
        assert_eq!(due[0]["decisions"][0]["duration"], "110s");
        assert_eq!(o.clear(), 1);
        assert!(o.is_empty());
        let mut o = Outbox::default();
        let dropped: usize = (0..MAX + 3)
            .map(|_| o.add((Value::Null, now + Duration::from_secs(60))))
            .sum();
        assert_eq!(dropped, 3);
    }
}
