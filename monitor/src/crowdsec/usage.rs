//! Usage metrics for the Local API (`POST /v1/usage-metrics`, CrowdSec
//! 1.6.3 and later), as its remediation components report them: the
//! packets processed and dropped during each window (what changed since
//! the last report sent), the decisions in force, and the daemon's start.

use std::time::SystemTime;

use serde_json::{Value, json};

/// How often usage metrics are reported.
pub const EVERY: std::time::Duration = std::time::Duration::from_secs(1800);

/// The counts of the last report sent, to send only what changed.
pub struct Usage {
    started: u64,
    sent: Option<(u64, u64)>,
}

impl Usage {
    pub fn new(started: SystemTime) -> Self {
        Self {
            started: unix(started),
            sent: None,
        }
    }

    /// The report for counters at (`processed`, `dropped`) now and
    /// `active` decisions in force; `sent` marks it delivered.
    pub fn report(&self, processed: u64, dropped: u64, active: u64, now: SystemTime) -> Value {
        let (p0, d0) = self.sent.unwrap_or((0, 0));
        json!({
            "remediation_components": [{
                "version": env!("CARGO_PKG_VERSION"),
                "type": "tollgate",
                "name": "tollgate",
                "feature_flags": [],
                "utc_startup_timestamp": self.started,
                "os": {"name": std::env::consts::OS, "version": ""},
                "metrics": [{
                    "meta": {"window_size_seconds": EVERY.as_secs(), "utc_now_timestamp": unix(now)},
                    "items": [
                        {"name": "processed", "value": processed.saturating_sub(p0), "unit": "packet", "labels": {}},
                        {"name": "dropped", "value": dropped.saturating_sub(d0), "unit": "packet", "labels": {"origin": "tollgate"}},
                        {"name": "active_decisions", "value": active, "unit": "ip", "labels": {}},
                    ],
                }],
            }],
        })
    }

    /// The report for (`processed`, `dropped`) was delivered.
    pub fn sent(&mut self, processed: u64, dropped: u64) {
        self.sent = Some((processed, dropped));
    }
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn each_report_counts_its_own_window_from_the_daemon_start() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_000_000);
        let mut u = Usage::new(start);
        let item = |r: &Value, i: usize| {
            r["remediation_components"][0]["metrics"][0]["items"][i]["value"].clone()
        };
        let r = u.report(1_000, 100, 3, start + Duration::from_secs(1800));
        assert_eq!(
            (item(&r, 0), item(&r, 1), item(&r, 2)),
            (1000.into(), 100.into(), 3.into())
        );
        assert_eq!(
            r["remediation_components"][0]["utc_startup_timestamp"],
            1_796_000_000u64
        );
        u.sent(1_000, 100);
        let r = u.report(1_500, 130, 2, start + Duration::from_secs(3600));
        assert_eq!(
            (item(&r, 0), item(&r, 1)),
            (500.into(), 30.into()),
            "only the window"
        );
    }
}
