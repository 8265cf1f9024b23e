//! The replay program's two one-slot maps: the clock it reads instead of
//! the kernel's, and the record of its last verdict.

use monitor_common::{maps as names, types::ReplayRecord};

use super::{MapError, Maps, op};

impl Maps {
    /// Sets the time the replay program sees (kernel monotonic ns).
    pub fn set_replay_clock(&mut self, now_ns: u64) -> Result<(), MapError> {
        self.replay_clock
            .set(0, now_ns, 0)
            .map_err(op(names::REPLAY_CLOCK, "setting the replay clock"))
    }

    /// Clears the replay record, so a run that writes none is told apart.
    pub fn clear_replay_record(&mut self) -> Result<(), MapError> {
        self.replay_out
            .set(0, ReplayRecord::default(), 0)
            .map_err(op(names::REPLAY_OUT, "clearing the replay record"))
    }

    /// The record of the replay program's last run.
    pub fn replay_record(&self) -> Result<ReplayRecord, MapError> {
        self.replay_out
            .get(&0, 0)
            .map_err(op(names::REPLAY_OUT, "reading the replay record"))
    }
}
