//! Which list each pull asks for: the whole list first, after a failed
//! pull, and again every `resync` since the last whole one; the delta in
//! between. Pure.
//!
//! Why the whole list again: CrowdSec's delta stream can skip a decision
//! for good. It answers with the decisions created after the key's last
//! pull, and records as that last pull the instant its answer began; a
//! decision stamped before that instant but committed after the answer's
//! query is in neither that answer nor any later one (seen with CrowdSec
//! 1.4.6: a bouncer pulling back to back while decisions were added missed
//! 8 of 60). Only a whole list brings it; until then the fleet's ban is
//! missing on this host.

use std::time::{Duration, Instant};

/// What one pull asks the Local API for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pull {
    /// The decisions since this key's last pull.
    Delta,
    /// Every decision in force: the first pull, and the first after a
    /// failed one (the LAPI may have moved the key's cursor past an answer
    /// that never arrived whole).
    Whole,
    /// Every decision in force again, `resync` after the last whole list:
    /// what the delta stream skipped, and deletes it did not say.
    Resync,
}

impl Pull {
    /// Whether the answer is every decision in force (`startup=true`).
    pub fn whole(self) -> bool {
        self != Pull::Delta
    }
}

/// The schedule of whole lists.
pub struct Pulls {
    resync: Duration,
    last_whole: Option<Instant>,
    failed: bool,
}

impl Pulls {
    pub fn new(resync: Duration) -> Self {
        Self {
            resync,
            last_whole: None,
            failed: false,
        }
    }

    /// The pull to make at `now`.
    pub fn next(&self, now: Instant) -> Pull {
        match self.last_whole {
            None => Pull::Whole,
            Some(_) if self.failed => Pull::Whole,
            Some(t) if now.saturating_duration_since(t) >= self.resync => Pull::Resync,
            Some(_) => Pull::Delta,
        }
    }

    /// `pull`, made at `now`, was answered (`ok`) or not.
    pub fn done(&mut self, pull: Pull, ok: bool, now: Instant) {
        self.failed = !ok;
        if ok && pull.whole() {
            self.last_whole = Some(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_first_after_a_failure_and_every_resync_deltas_between() {
        let t0 = Instant::now();
        let s = |n: u64| t0 + Duration::from_secs(n);
        let mut p = Pulls::new(Duration::from_secs(60));
        assert_eq!(p.next(t0), Pull::Whole, "the first pull");
        p.done(Pull::Whole, false, t0);
        assert_eq!(p.next(s(2)), Pull::Whole, "not answered: whole again");
        p.done(Pull::Whole, true, s(2));
        assert_eq!(p.next(s(4)), Pull::Delta);
        p.done(Pull::Delta, true, s(4));
        assert_eq!(p.next(s(61)), Pull::Delta, "60 s after the whole list");
        assert_eq!(p.next(s(62)), Pull::Resync);
        p.done(Pull::Resync, true, s(62));
        assert_eq!(p.next(s(64)), Pull::Delta, "the clock restarts");
        p.done(Pull::Delta, false, s(64));
        assert_eq!(p.next(s(66)), Pull::Whole, "a failed delta");
        p.done(Pull::Whole, true, s(66));
        assert_eq!(p.next(s(125)), Pull::Delta);
        assert_eq!(p.next(s(126)), Pull::Resync);
        assert!(Pull::Resync.whole() && Pull::Whole.whole() && !Pull::Delta.whole());
    }
}
