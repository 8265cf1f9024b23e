//! The CrowdSec link's metrics: whether it is configured and up, when a
//! pull last succeeded, pulls and alerts by result, and what became of
//! the decisions pulled. Every series exists at 0 from the start.

use prometheus::{Gauge, IntCounter, IntCounterVec, IntGauge, Registry};

use super::{counter_vec, float_gauge, gauge};
use crate::{crowdsec::IGNORED, snapshot::CrowdSecStats};

/// What a pulled decision came to (`tollgate_crowdsec_decisions_total`).
const ACTIONS: [&str; 7] = [
    "banned",
    "lifted",
    "already_banned",
    "delete_ignored",
    "refused",
    "bad",
    "failed",
];

pub(super) struct CrowdSecMetrics {
    configured: IntGauge,
    up: IntGauge,
    last_success: Gauge,
    pulls: IntCounterVec,
    alerts: IntCounterVec,
    decisions: IntCounterVec,
}

impl CrowdSecMetrics {
    pub(super) fn new(r: &Registry) -> Self {
        let m = Self {
            configured: gauge(
                r,
                "tollgate_crowdsec_configured",
                "1 when [crowdsec] is configured: the daemon pulls decisions from a CrowdSec Local API.",
            ),
            up: gauge(
                r,
                "tollgate_crowdsec_up",
                "1 when the last pull from the CrowdSec Local API succeeded. Bans already applied stay and expire on time while it is 0.",
            ),
            last_success: float_gauge(
                r,
                "tollgate_crowdsec_last_success_timestamp_seconds",
                "Unix time of the last successful pull from the CrowdSec Local API (0: none yet).",
            ),
            pulls: counter_vec(
                r,
                "tollgate_crowdsec_pulls_total",
                "Pulls of the CrowdSec decision stream, by result (ok, failed).",
                &["result"],
            ),
            alerts: counter_vec(
                r,
                "tollgate_crowdsec_alerts_total",
                "Detector bans reported to the CrowdSec Local API as alerts, by result (sent, failed: kept and sent again).",
                &["result"],
            ),
            decisions: counter_vec(
                r,
                "tollgate_crowdsec_decisions_total",
                "Decisions pulled from the CrowdSec Local API, by what was done: banned, lifted, already_banned (a longer ban in force), delete_ignored (not CrowdSec's or gone), refused (management network or allow rule), bad (unreadable), failed (the ban map), ignored_not_a_ban, ignored_other_scope, ignored_expired.",
                &["action"],
            ),
        };
        for result in ["ok", "failed"] {
            m.pulls.with_label_values(&[result]);
        }
        for result in ["sent", "failed"] {
            m.alerts.with_label_values(&[result]);
        }
        for a in ACTIONS {
            m.decisions.with_label_values(&[a]);
        }
        for why in IGNORED {
            m.decisions.with_label_values(&[&format!("ignored_{why}")]);
        }
        m
    }

    pub(super) fn update(&self, c: &CrowdSecStats, raise: impl Fn(&IntCounter, u64)) {
        self.configured.set(c.configured as i64);
        self.up.set(c.health.up as i64);
        self.last_success.set(c.health.last_success_unix);
        raise(&self.pulls.with_label_values(&["ok"]), c.health.pulls_ok);
        raise(
            &self.pulls.with_label_values(&["failed"]),
            c.health.pulls_failed,
        );
        raise(
            &self.alerts.with_label_values(&["sent"]),
            c.health.alerts_sent,
        );
        raise(
            &self.alerts.with_label_values(&["failed"]),
            c.health.alerts_failed,
        );
        for (action, n) in &c.decisions {
            raise(&self.decisions.with_label_values(&[action]), *n);
        }
    }
}
