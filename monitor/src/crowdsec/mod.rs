//! Tollgate in a CrowdSec fleet. As a bouncer it streams the Local API's
//! decisions (`decisions`: what each asks for; `duration`: Go durations)
//! and the daemon turns bans into kernel bans that expire on their own;
//! as a signal source (machine credentials) it reports its detectors'
//! bans as alerts (`alerts`), so every bouncer of the fleet applies them.
//! `lapi` speaks HTTP; `spawn` runs the loop on its own thread: pull,
//! apply, post alerts as they come, report usage, and when the LAPI is
//! unreachable keep what is enforced, back off, and resume with a delta.

pub mod alerts;
pub mod decisions;
mod duration;
pub mod lapi;

use std::{
    sync::{Arc, Mutex, mpsc::Receiver},
    time::{Duration, Instant, SystemTime},
};

pub use decisions::{Action, Decision, IGNORED, Stream};
use lapi::{Lapi, Usage};
use serde_json::Value;

use crate::config::CrowdSec;

/// Longest wait between pulls while the LAPI does not answer: ten poll
/// intervals, at most 30 s.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

fn backoff_cap(poll: Duration) -> Duration {
    (poll * 10).clamp(poll, MAX_BACKOFF)
}
/// How often usage metrics are reported (where the LAPI takes them).
const USAGE_EVERY: Duration = Duration::from_secs(1800);
/// Alerts kept for a LAPI that does not answer, oldest dropped past it.
const PENDING_MAX: usize = 1_000;

/// How the link to the LAPI fares, for metrics and `status`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Health {
    pub up: bool,
    /// Unix seconds of the last pull that succeeded (0: none yet).
    pub last_success_unix: f64,
    pub pulls_ok: u64,
    pub pulls_failed: u64,
    pub alerts_sent: u64,
    pub alerts_failed: u64,
    /// Usage metrics: `unknown` (not tried yet), `sent`, `unsupported`.
    pub usage: &'static str,
}

/// What the loop needs of the daemon.
pub trait Host: Send + 'static {
    /// Applies one pull (`startup`: the whole list in force).
    fn apply(&self, s: Stream, startup: bool);
    /// The usage report's numbers: packets processed, packets dropped by
    /// bans, decisions from the LAPI in force.
    fn usage(&self) -> (u64, u64, u64);
}

/// Starts the loop for `cfg` on its own thread; it ends when the daemon
/// drops the sending side of `reports`.
pub fn spawn(
    cfg: &CrowdSec,
    host: impl Host,
    reports: Receiver<Value>,
    health: Arc<Mutex<Health>>,
) -> anyhow::Result<std::thread::JoinHandle<()>> {
    let lapi = Lapi::new(cfg)?;
    let poll = cfg.poll_interval;
    std::thread::Builder::new()
        .name("crowdsec".into())
        .spawn(move || run(lapi, poll, host, reports, health))
        .map_err(|e| anyhow::anyhow!("starting the CrowdSec thread: {e}"))
}

fn run(
    mut lapi: Lapi,
    poll: Duration,
    host: impl Host,
    reports: Receiver<Value>,
    health: Arc<Mutex<Health>>,
) {
    let set = |f: &dyn Fn(&mut Health)| update(&health, f);
    set(&|h| h.usage = "unknown");
    let (mut startup, mut wait, mut down_said) = (true, poll, false);
    let mut next_usage = Instant::now();
    let mut pending: Vec<Value> = Vec::new();
    loop {
        match lapi.stream(startup) {
            Ok(s) => {
                host.apply(s, startup);
                startup = false;
                wait = poll;
                let now = unix_now();
                set(&|h| {
                    h.up = true;
                    h.pulls_ok += 1;
                    h.last_success_unix = now;
                });
                if down_said {
                    tracing::info!(
                        event = "crowdsec_reachable",
                        url = lapi.url(),
                        "the Local API answers again; pulling what changed meanwhile"
                    );
                    down_said = false;
                }
            }
            Err(e) => {
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
        if !down_said && Instant::now() >= next_usage {
            next_usage = Instant::now() + USAGE_EVERY;
            report_usage(&lapi, &host, &health);
        }
        // Until the next pull, post alerts as they come.
        let deadline = Instant::now() + wait;
        loop {
            post(&mut lapi, &mut pending, &health, down_said);
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match reports.recv_timeout(left) {
                Ok(a) => {
                    pending.push(a);
                    pending.extend(reports.try_iter());
                    if pending.len() > PENDING_MAX {
                        let extra = pending.len() - PENDING_MAX;
                        pending.drain(..extra);
                        tracing::warn!(
                            event = "crowdsec_alerts_dropped",
                            dropped = extra,
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

/// Posts the pending alerts (not while the LAPI is known down: the next
/// pull finds out first).
/// Changes the shared health under its lock.
fn update(health: &Mutex<Health>, f: &dyn Fn(&mut Health)) {
    f(&mut health.lock().unwrap_or_else(|e| e.into_inner()));
}

fn post(lapi: &mut Lapi, pending: &mut Vec<Value>, health: &Mutex<Health>, down: bool) {
    if pending.is_empty() || down {
        return;
    }
    let n = pending.len() as u64;
    match lapi.alerts(&Value::Array(pending.clone())) {
        Ok(()) => {
            pending.clear();
            update(health, &|h| h.alerts_sent += n);
        }
        Err(e) => {
            update(health, &|h| h.alerts_failed += n);
            tracing::warn!(event = "crowdsec_alerts_failed", "{e}; kept to try again");
        }
    }
}

fn report_usage(lapi: &Lapi, host: &impl Host, health: &Mutex<Health>) {
    let (processed, dropped, active) = host.usage();
    let report = usage_report(processed, dropped, active, SystemTime::now());
    match lapi.usage(&report) {
        Ok(Usage::Sent) => update(health, &|h| h.usage = "sent"),
        Ok(Usage::Unsupported) => {
            update(health, &|h| h.usage = "unsupported");
            tracing::debug!(
                event = "crowdsec_usage_unsupported",
                "this Local API takes no usage metrics (before CrowdSec 1.6.3)"
            );
        }
        Err(e) => tracing::debug!(event = "crowdsec_usage_failed", "{e}"),
    }
}

/// A usage-metrics report as the LAPI documents it (remediation
/// components: processed and dropped packets, active decisions).
pub fn usage_report(processed: u64, dropped: u64, active: u64, now: SystemTime) -> Value {
    let now = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    serde_json::json!({
        "remediation_components": [{
            "version": env!("CARGO_PKG_VERSION"),
            "type": "tollgate",
            "name": "tollgate",
            "feature_flags": [],
            "utc_startup_timestamp": now,
            "os": {"name": std::env::consts::OS, "version": ""},
            "metrics": [{
                "meta": {"window_size_seconds": USAGE_EVERY.as_secs(), "utc_now_timestamp": now},
                "items": [
                    {"name": "processed", "value": processed, "unit": "packet", "labels": {}},
                    {"name": "dropped", "value": dropped, "unit": "packet", "labels": {"origin": "tollgate"}},
                    {"name": "active_decisions", "value": active, "unit": "ip", "labels": {}},
                ],
            }],
        }],
    })
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
