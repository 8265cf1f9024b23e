//! The daemon's side of CrowdSec: decisions pulled from the Local API
//! applied to the ban book (origin `crowdsec`, so deletes lift only what
//! CrowdSec placed and a longer ban from elsewhere is kept), management
//! networks and allow rules refused with an event, and the detectors'
//! bans queued for the LAPI as alerts (never one that came from it).

use std::{
    collections::{BTreeMap, HashSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
        mpsc::Sender,
    },
    time::Duration,
};

use ipnet::IpNet;
use monitor_common::{
    detect::{Detector, Evidence},
    reason::{Reason, Verdict},
};

use super::{Daemon, bans::BanBy};
use crate::{
    clock::coarse_ns,
    crowdsec::{Action, Decision, Health, Host, Pull, Report, Stream, alerts},
    events::event,
    policy::{self, guard_ban},
};

/// A ban ending this close to a decision's end is taken for the same.
const SAME_BAN: Duration = Duration::from_secs(10);

/// The daemon's CrowdSec state: the alert queue, the link's health, and
/// what became of the decisions pulled.
#[derive(Default)]
pub struct CrowdSecState {
    /// The loop's queue; dropped at stop, which ends the loop.
    pub reports: Option<Sender<Report>>,
    /// The settings the loop runs with (a reload does not change them).
    pub running: Option<crate::config::CrowdSec>,
    /// Whether detector bans are reported (machine credentials set).
    pub report_alerts: bool,
    pub health: Arc<Mutex<Health>>,
    /// Decisions by what was done: `banned`, `lifted`, `refused`, `bad`,
    /// `ignored_<why>`.
    pub decisions: BTreeMap<String, u64>,
    /// The IDs of the decisions pulled since the last whole list and in
    /// it: the next whole list repeats them, and a repeat is neither
    /// counted nor said again.
    pub known: HashSet<i64>,
    /// The highest decision ID pulled (the LAPI numbers them in order).
    pub newest: i64,
}

impl CrowdSecState {
    /// Keeps the IDs of `new` (a whole list's replace the ones known).
    fn remember(&mut self, new: &[Decision], pull: Pull) {
        if pull.whole() {
            self.known.clear();
        }
        // An answer without IDs (0) cannot be told from a repeat.
        self.known
            .extend(new.iter().map(|d| d.id).filter(|id| *id != 0));
        self.newest = new.iter().map(|d| d.id).fold(self.newest, i64::max);
    }
}

/// The loop's view of the daemon, until the daemon stops (then a pull
/// still in flight changes nothing after the final save).
pub struct DaemonHost(pub super::tasks::Shared, pub Arc<AtomicBool>);

impl Host for DaemonHost {
    fn apply(&self, s: Stream, pull: Pull) {
        let mut d = super::tasks::lock(&self.0);
        if !self.1.load(Ordering::Relaxed) {
            d.apply_stream(s, pull);
        }
    }

    fn usage(&self) -> (u64, u64, u64) {
        let d = super::tasks::lock(&self.0);
        let counters = d.tg.maps.counters().ok();
        let processed = counters
            .as_ref()
            .map_or(0, |c| Reason::ALL.iter().map(|r| c.packets(*r)).sum());
        let dropped = counters.map_or(0, |c| c.get(Reason::Banned, Verdict::Drop).packets);
        let active = d
            .bans
            .in_force(coarse_ns())
            .filter(|(_, b)| b.origin == "crowdsec")
            .count() as u64;
        (processed, dropped, active)
    }
}

/// What one decision came to, for the pull's events.
enum Outcome {
    Banned(IpNet, Duration, String),
    Lifted(IpNet),
    Refused(IpNet, String),
    /// Counted only (ignored, unreadable, failed).
    Counted,
}

/// Says what a resync changed: decisions made since the last pull, bans
/// whose decisions ended, and `skipped` bans the delta stream never
/// brought though it brought later decisions (`crowdsec::Pull`).
fn resync_said(outcomes: &[Outcome], skipped: usize) {
    let n = |f: fn(&Outcome) -> bool| outcomes.iter().filter(|o| f(o)).count();
    let banned = n(|o| matches!(o, Outcome::Banned(..)));
    let lifted = n(|o| matches!(o, Outcome::Lifted(_)));
    let refused = n(|o| matches!(o, Outcome::Refused(..)));
    if skipped > 0 {
        tracing::warn!(
            event = "crowdsec_resync",
            banned,
            lifted,
            refused,
            skipped,
            "the whole list, pulled again, held {skipped} bans the Local API's delta stream skipped (older than decisions it sent); applied now"
        );
    } else {
        tracing::info!(
            event = "crowdsec_resync",
            banned,
            lifted,
            refused,
            skipped,
            "the whole list, pulled again, held changes since the last pull; applied"
        );
    }
}

/// Changes a pull lists one event each; past it, one summary event (a
/// startup pull from a community blocklist holds tens of thousands).
const EVENTS_PER_PULL: usize = 20;

impl Daemon {
    /// Applies one pull, then saves the state file once and says what
    /// changed. A whole list (at startup, after an outage, each resync) is
    /// every decision in force: its deletes (every expired decision the
    /// LAPI keeps) are not needed, CrowdSec's bans the book holds but the
    /// list lacks are lifted, and the decisions already applied since the
    /// last whole list are neither counted nor said again.
    pub(super) fn apply_stream(&mut self, s: Stream, pull: Pull) {
        let new = s.new.unwrap_or_default();
        // The allow rules, once per pull (a startup pull can hold tens of
        // thousands of decisions).
        let allows: Vec<IpNet> = self
            .policy()
            .rules
            .iter()
            .filter(|r| matches!(r.action, policy::Action::Allow))
            .map(|r| r.net)
            .collect();
        // Deletes first, as CrowdSec's own bouncers apply them: a pull that
        // deletes a decision and makes a new one on the same address ends
        // with the new one.
        let deleted = if pull.whole() { None } else { s.deleted };
        let mut outcomes: Vec<Outcome> = deleted
            .unwrap_or_default()
            .iter()
            .map(|d| self.decision(d.on_deleted(), &allows))
            .collect();
        let newest = self.crowdsec.newest;
        let (mut seen, mut skipped) = (HashSet::new(), 0);
        for d in &new {
            let action = d.on_new();
            if let Action::Ban { net, .. } = &action {
                seen.insert(*net);
            }
            if pull.whole() && self.crowdsec.known.contains(&d.id) {
                continue;
            }
            let outcome = self.decision(action, &allows);
            // Older than a decision a pull brought, yet never brought.
            if pull == Pull::Resync && d.id < newest && matches!(outcome, Outcome::Banned(..)) {
                skipped += 1;
            }
            outcomes.push(outcome);
        }
        self.crowdsec.remember(&new, pull);
        if pull.whole() {
            outcomes.extend(self.lift_stale(&seen, &allows));
        }
        outcomes.retain(|o| !matches!(o, Outcome::Counted));
        if pull == Pull::Resync && !outcomes.is_empty() {
            resync_said(&outcomes, skipped);
        }
        if outcomes
            .iter()
            .any(|o| matches!(o, Outcome::Banned(..) | Outcome::Lifted(_)))
        {
            self.save_or_warn();
        }
        self.say(outcomes);
    }

    /// Lifts CrowdSec's bans in force that a whole list lacks (`seen`).
    fn lift_stale(&mut self, seen: &HashSet<IpNet>, allows: &[IpNet]) -> Vec<Outcome> {
        let stale: Vec<IpNet> = self
            .bans
            .in_force(coarse_ns())
            .filter(|(n, b)| b.origin == "crowdsec" && !seen.contains(*n))
            .map(|(n, _)| *n)
            .collect();
        stale
            .into_iter()
            .map(|net| self.decision(Action::Lift { net }, allows))
            .collect()
    }

    /// One event per change, or past `EVENTS_PER_PULL` one for the pull.
    fn say(&mut self, outcomes: Vec<Outcome>) {
        if outcomes.len() > EVENTS_PER_PULL {
            let n = |f: fn(&Outcome) -> bool| outcomes.iter().filter(|o| f(o)).count() as f64;
            let e = event(
                "crowdsec_pull",
                None,
                "applied",
                "decisions from the CrowdSec Local API (too many to list one by one)".into(),
            )
            .by("crowdsec")
            .value("banned", n(|o| matches!(o, Outcome::Banned(..))))
            .value("lifted", n(|o| matches!(o, Outcome::Lifted(_))))
            .value("refused", n(|o| matches!(o, Outcome::Refused(..))));
            self.events.push(e);
            return;
        }
        for o in outcomes {
            let e = match o {
                Outcome::Banned(net, ttl, scenario) => event(
                    "ban_added",
                    Some(self.redact.net(net)),
                    "banned",
                    format!("banned for {}s by CrowdSec: {scenario}", ttl.as_secs()),
                )
                .value("ttl_seconds", ttl.as_secs() as f64),
                Outcome::Lifted(net) => event(
                    "ban_removed",
                    Some(self.redact.net(net)),
                    "unbanned",
                    "decision deleted in CrowdSec".into(),
                ),
                Outcome::Refused(net, why) => event(
                    "crowdsec_refused",
                    Some(self.redact.net(net)),
                    "refused",
                    why,
                ),
                Outcome::Counted => continue,
            };
            self.events.push(e.by("crowdsec"));
        }
    }

    fn count(&mut self, what: &str) {
        *self.crowdsec.decisions.entry(what.to_owned()).or_default() += 1;
    }

    fn decision(&mut self, a: Action, allows: &[IpNet]) -> Outcome {
        match a {
            Action::Ban {
                net,
                ttl,
                scenario,
                origin,
            } => self.crowdsec_ban(net, ttl, (scenario, &origin), allows),
            Action::Lift { net } => self.crowdsec_lift(net),
            Action::Ignore { why } => {
                self.count(&format!("ignored_{why}"));
                Outcome::Counted
            }
            Action::Bad { why } => {
                self.count("bad");
                tracing::warn!(
                    event = "crowdsec_decision_unreadable",
                    "{why}; skipped, the others apply"
                );
                Outcome::Counted
            }
        }
    }

    fn crowdsec_ban(
        &mut self,
        net: IpNet,
        ttl: Duration,
        (scenario, origin): (String, &str),
        allows: &[IpNet],
    ) -> Outcome {
        if let Err(why) = self.crowdsec_refusal(&net, allows) {
            self.count("refused");
            return Outcome::Refused(
                net,
                format!("a CrowdSec ban ({scenario}) was not applied: {why}"),
            );
        }
        let until = coarse_ns() + ttl.as_nanos() as u64;
        // A ban already in force that lasts about as long stays as it is:
        // the LAPI repeats decisions at startup, and sends back the bans
        // this host reported (a few seconds later than ours end).
        if self
            .bans
            .get(&net)
            .is_some_and(|b| b.until_mono_ns + SAME_BAN.as_nanos() as u64 >= until)
        {
            self.count("already_banned");
            return Outcome::Counted;
        }
        let by = BanBy {
            origin: "crowdsec",
            count_as: "crowdsec",
            scenario: Some(scenario.clone()),
        };
        let reason = Some(format!("crowdsec: {scenario} ({origin})"));
        match self.bans.place(&mut self.tg.maps, net, ttl, reason, by) {
            Ok(()) => {
                self.count("banned");
                Outcome::Banned(net, ttl, format!("{scenario} (origin {origin})"))
            }
            Err(e) => {
                self.count("failed");
                tracing::warn!(
                    event = "crowdsec_ban_failed",
                    "placing a CrowdSec ban on {net}: {e}"
                );
                Outcome::Counted
            }
        }
    }

    /// Lifts `net` if CrowdSec placed it; a delete of a ban that is gone
    /// already (the LAPI repeats deletes) or that another origin placed
    /// changes nothing.
    fn crowdsec_lift(&mut self, net: IpNet) -> Outcome {
        if self.bans.get(&net).is_none_or(|b| b.origin != "crowdsec") {
            self.count("delete_ignored");
            return Outcome::Counted;
        }
        match self.bans.lift(&mut self.tg.maps, net) {
            Ok(_) => {
                self.count("lifted");
                Outcome::Lifted(net)
            }
            Err(e) => {
                tracing::warn!(event = "crowdsec_lift_failed", "lifting {net}: {e}");
                Outcome::Counted
            }
        }
    }

    /// Why a CrowdSec ban on `net` may not be placed: a management
    /// network, or an allow rule (of `allows`) covering part of it.
    fn crowdsec_refusal(&self, net: &IpNet, allows: &[IpNet]) -> Result<(), String> {
        guard_ban(&self.config.management, net)?;
        if let Some(a) = allows.iter().find(|a| a.contains(net) || net.contains(*a)) {
            return Err(format!("the allow rule on {a} covers it"));
        }
        Ok(())
    }

    /// Queues a detector's ban for the LAPI (when a machine is set up).
    pub(super) fn report_ban(&self, net: IpNet, ttl: Duration, d: Detector, ev: &Evidence) {
        let Some(tx) = self
            .crowdsec
            .reports
            .as_ref()
            .filter(|_| self.crowdsec.report_alerts)
        else {
            return;
        };
        let ban = alerts::Ban {
            net,
            ttl,
            detector: d.name(),
            evidence: ev.iter().map(|(n, o, l)| (*n, *o, *l)).collect(),
        };
        let until = std::time::Instant::now() + ttl;
        // The thread is gone only when the daemon is stopping.
        let _ = tx.send((alerts::alert(&ban, std::time::SystemTime::now()), until));
    }
}
