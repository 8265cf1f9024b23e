//! The state file: what the daemon must not forget across restarts
//! (runtime rules, the default override, bans, runtime thresholds, its
//! own counters), written
//! after every change.

use super::Daemon;
use crate::state::State;

impl Daemon {
    /// Writes the state file; the error says the change is in force but
    /// would not survive a restart.
    pub(super) fn save(&self) -> Result<(), String> {
        let (rules, default_limit) = self.rules.saved();
        let state = State {
            rules,
            default_limit,
            bans: self.bans.saved(),
            detections: self
                .respond
                .detections()
                .iter()
                .map(|(k, v)| ((*k).to_owned(), *v))
                .collect(),
            bans_by_reason: self.bans.counts().clone(),
            thresholds: self.overrides.0.clone(),
            ..State::default()
        };
        state
            .save(&self.config.state_file)
            .map_err(|e| format!("{e:#} (the change is in force but will not survive a restart)"))
    }

    /// Saves, and logs a failure (for changes nobody is waiting on).
    pub(super) fn save_or_warn(&self) {
        if let Err(e) = self.save() {
            tracing::warn!(event = "state_save_failed", "{e}");
        }
    }
}
