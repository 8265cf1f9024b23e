//! Structured events: every detection, ban change, rule and limit change
//! and SYN-cookie mode change is one event, with who made it (`actor`),
//! logged as one line (`log`: JSON with the evidence nested, or text),
//! counted in Prometheus, and kept in a bounded history (`history`) that
//! survives restarts, for `tollgate events` and `explain`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

mod history;
mod log;

pub use history::{EventLog, KEEP};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Event {
    /// Increasing across restarts, so `tollgate events --follow` can ask
    /// for what is new.
    pub seq: u64,
    pub unix_ms: u64,
    /// `detection`, `ban_added`, `ban_removed`, `ban_expired`,
    /// `rule_added`, `rule_removed`, `limit_set`, `limit_reset`,
    /// `reloaded`, `syn_limit_lifted`, `probation_ended`, `syn_cookies` (a
    /// mode change: `action` is the new mode, `off`, `watch` or `on`).
    pub kind: String,
    /// Who made it: `cli uid N` (a control-socket client), `detector
    /// NAME`, `config` (a reload, a SIGHUP), or `daemon` (an expiry, the
    /// daemon's own housekeeping).
    #[serde(default = "daemon")]
    pub actor: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detector: Option<String>,
    /// The source or prefix, redacted as configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// What was done: `logged` (monitor mode or nothing to do), `banned`, ...
    pub action: String,
    /// The numbers behind it: what was observed and, for a finding, the
    /// line it crossed; for a change, the values it set.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub evidence: BTreeMap<String, Reading>,
    pub message: String,
}

/// One number of an event.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
pub struct Reading {
    pub observed: f64,
    /// The line a detector compares it with (none for a plain value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<f64>,
}

fn daemon() -> String {
    "daemon".into()
}

/// An event with the fields every kind has, made by the daemon itself
/// (`by` names another actor).
pub fn event(kind: &'static str, source: Option<String>, action: &str, message: String) -> Event {
    Event {
        seq: 0,
        unix_ms: 0,
        kind: kind.to_owned(),
        actor: daemon(),
        detector: None,
        source,
        action: action.to_owned(),
        evidence: BTreeMap::new(),
        message,
    }
}

impl Event {
    /// Made by `actor`.
    pub fn by(mut self, actor: &str) -> Self {
        self.actor = actor.to_owned();
        self
    }

    /// With a plain value (a change's number, a ban's length).
    pub fn value(mut self, name: &str, v: f64) -> Self {
        self.evidence.insert(
            name.to_owned(),
            Reading {
                observed: v,
                limit: None,
            },
        );
        self
    }

    /// With a reading and the line it crossed.
    pub fn reading(mut self, name: &str, observed: f64, limit: f64) -> Self {
        self.evidence.insert(
            name.to_owned(),
            Reading {
                observed,
                limit: Some(limit),
            },
        );
        self
    }
}

/// The actor of a control-socket request.
pub fn cli_actor(uid: u32) -> String {
    format!("cli uid {uid}")
}
