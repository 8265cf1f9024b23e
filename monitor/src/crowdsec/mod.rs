//! Tollgate in a CrowdSec fleet. As a bouncer it streams the Local API's
//! decisions (`decisions`: what each asks for; `duration`: Go durations)
//! and the daemon turns bans into kernel bans that expire on their own;
//! as a signal source (machine credentials) it reports its detectors'
//! bans as alerts (`alerts`), so every bouncer of the fleet applies them.
//! `lapi` speaks HTTP; `spawn` runs the loop on its own thread: pull,
//! apply, post alerts as they come (`outbox`: with the time their bans
//! have left), report usage (`usage`: each window's counts), pull the
//! whole list again now and then (`pull`: the delta stream can skip a
//! decision), and when the LAPI is unreachable keep what is enforced,
//! back off, and resume with the whole list.

pub mod alerts;
pub mod decisions;
mod duration;
pub mod lapi;
mod outbox;
mod pull;
mod usage;

use std::{
    sync::{Arc, Mutex, mpsc::Receiver},
    time::{Duration, Instant, SystemTime},
};

pub use decisions::{Action, Decision, IGNORED, Stream};
pub use lapi::Lapi;
use lapi::{LapiError, Usage as Taken};
use outbox::Outbox;
pub use outbox::Report;
pub use pull::Pull;
use pull::Pulls;

/// Longest wait between pulls while the LAPI does not answer: ten poll
/// intervals, at most 30 s, never less than one poll interval.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

fn backoff_cap(poll: Duration) -> Duration {
    (poll * 10).min(MAX_BACKOFF).max(poll)
}

/// How the link to the LAPI fares, for metrics and `status`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Health {
    pub up: bool,
    /// Unix seconds of the last pull that succeeded (0: none yet).
    pub last_success_unix: f64,
    pub pulls_ok: u64,
    /// Of those, the whole lists (`Pull::Whole` and `Pull::Resync`).
    pub whole_lists: u64,
    pub pulls_failed: u64,
    pub alerts_sent: u64,
    pub alerts_failed: u64,
    /// Usage metrics: `unknown` (not tried yet), `sent`, `unsupported`.
    pub usage: &'static str,
}

/// What the loop needs of the daemon.
pub trait Host: Send + 'static {
    /// Applies one pull's answer.
    fn apply(&self, s: Stream, pull: Pull);
    /// The usage report's numbers: packets processed, packets dropped by
    /// bans, decisions from the LAPI in force.
    fn usage(&self) -> (u64, u64, u64);
}

/// How often the loop pulls: a delta every `poll`, the whole list every
/// `resync`.
#[derive(Clone, Copy, Debug)]
pub struct Pace {
    pub poll: Duration,
    pub resync: Duration,
}

/// Starts the loop on `lapi` (made before the daemon attaches, so a bad
/// key file stops the start cleanly) on its own thread; it ends when the
/// daemon drops the sending side of `reports`.
pub fn spawn(
    lapi: Lapi,
    pace: Pace,
    host: impl Host,
    reports: Receiver<Report>,
    health: Arc<Mutex<Health>>,
) -> anyhow::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("crowdsec".into())
        .spawn(move || run(lapi, pace, host, reports, health))
        .map_err(|e| anyhow::anyhow!("starting the CrowdSec thread: {e}"))
}

fn run(
    mut lapi: Lapi,
    Pace { poll, resync }: Pace,
    host: impl Host,
    reports: Receiver<Report>,
    health: Arc<Mutex<Health>>,
) {
    let set = |f: &dyn Fn(&mut Health)| update(&health, f);
    set(&|h| h.usage = "unknown");
    let (mut pulls, mut wait, mut down_said) = (Pulls::new(resync), poll, false);
    let mut usage = (usage::Usage::new(SystemTime::now()), Instant::now(), true);
    let mut outbox = Outbox::default();
    loop {
        let pull = pulls.next(Instant::now());
        let answer = lapi.stream(pull.whole());
        pulls.done(pull, answer.is_ok(), Instant::now());
        match answer {
            Ok(s) => {
                host.apply(s, pull);
                wait = poll;
                let now = crate::clock::unix_ms() as f64 / 1e3;
                set(&|h| {
                    h.up = true;
                    h.pulls_ok += 1;
                    h.whole_lists += u64::from(pull.whole());
                    h.last_success_unix = now;
                });
                if down_said {
                    tracing::info!(
                        event = "crowdsec_reachable",
                        url = lapi.url(),
                        "the Local API answers again; pulling every decision in force"
                    );
                    down_said = false;
                }
            }
            Err(e) => {
                // The next pull asks for the whole list (`Pulls`), which
                // also lifts what was deleted meanwhile.
                set(&|h| {
                    h.up = false;
                    h.pulls_failed += 1;
                });
                if !down_said {
                    tracing::warn!(
                        event = "crowdsec_unreachable",
                        "{e}; bans in force stay and expire on time; retrying with backoff up to {}s",
                        backoff_cap(poll).as_secs_f64()
                    );
                    down_said = true;
                }
                wait = (wait * 2).min(backoff_cap(poll));
            }
        }
        if !down_said && usage.2 && Instant::now() >= usage.1 {
            usage.1 = Instant::now() + usage::EVERY;
            usage.2 = report_usage(&lapi, &host, &health, &mut usage.0);
        }
        // Until the next pull, post alerts as they come.
        let deadline = Instant::now() + wait;
        loop {
            if !down_said {
                post(&mut lapi, &mut outbox, &health);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match reports.recv_timeout(left) {
                Ok(r) => {
                    let dropped: usize = std::iter::once(r)
                        .chain(reports.try_iter())
                        .map(|r| outbox.add(r))
                        .sum();
                    if dropped > 0 {
                        tracing::warn!(
                            event = "crowdsec_alerts_dropped",
                            dropped,
                            "alerts the Local API could not take were dropped (oldest first)"
                        );
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => break,
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
            }
        }
    }
}

/// Changes the shared health under its lock.
fn update(health: &Mutex<Health>, f: &dyn Fn(&mut Health)) {
    f(&mut health.lock().unwrap_or_else(|e| e.into_inner()));
}

/// Posts what is due. An unreachable LAPI or a server error keeps the
/// alerts for the next try; a refusal (a machine not validated, an alert
/// it will not take) drops them, said once per batch: trying again would
/// be refused again.
fn post(lapi: &mut Lapi, outbox: &mut Outbox, health: &Mutex<Health>) {
    if outbox.is_empty() {
        return;
    }
    let due = outbox.due(Instant::now());
    let n = due.as_array().map_or(0, Vec::len) as u64;
    if n == 0 {
        return;
    }
    match lapi.alerts(&due) {
        Ok(()) => {
            outbox.clear();
            update(health, &|h| h.alerts_sent += n);
        }
        Err(e @ LapiError::Refused { status, .. }) if status < 500 => {
            outbox.clear();
            update(health, &|h| h.alerts_failed += n);
            tracing::warn!(event = "crowdsec_alerts_refused", "{e}; {n} alerts dropped");
        }
        Err(e) => tracing::debug!(event = "crowdsec_alerts_deferred", "{e}; kept to try again"),
    }
}

/// Sends a usage report; false once the LAPI says it takes none.
fn report_usage(
    lapi: &Lapi,
    host: &impl Host,
    health: &Mutex<Health>,
    usage: &mut usage::Usage,
) -> bool {
    let (processed, dropped, active) = host.usage();
    let report = usage.report(processed, dropped, active, SystemTime::now());
    match lapi.usage(&report) {
        Ok(Taken::Sent) => {
            usage.sent(processed, dropped);
            update(health, &|h| h.usage = "sent");
            true
        }
        Ok(Taken::Unsupported) => {
            update(health, &|h| h.usage = "unsupported");
            tracing::debug!(
                event = "crowdsec_usage_unsupported",
                "this Local API takes no usage metrics (before CrowdSec 1.6.3)"
            );
            false
        }
        Err(e) => {
            tracing::debug!(event = "crowdsec_usage_failed", "{e}");
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_is_capped_and_never_below_the_poll() {
        assert_eq!(
            backoff_cap(Duration::from_millis(500)),
            Duration::from_secs(5)
        );
        assert_eq!(backoff_cap(Duration::from_secs(2)), Duration::from_secs(20));
        assert_eq!(
            backoff_cap(Duration::from_secs(10)),
            Duration::from_secs(30)
        );
        assert_eq!(
            backoff_cap(Duration::from_secs(600)),
            Duration::from_secs(600),
            "no panic past 30 s"
        );
    }
}
