//! The daemon's side of CrowdSec: decisions pulled from the Local API
//! applied to the ban book (origin `crowdsec`, so deletes lift only what
//! CrowdSec placed and a longer ban from elsewhere is kept), management
//! networks and allow rules refused with an event, and the detectors'
//! bans queued for the LAPI as alerts (never one that came from it).

use std::{
    collections::BTreeMap,
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
    crowdsec::{Action, Health, Host, Pull, Report, Stream, alerts},
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
    /// A ban in force that lasts about as long: counted as
    /// `already_banned` except in a resync, whose list repeats every
    /// decision already counted.
    Same,
    /// Counted only (ignored, unreadable, failed).
    Counted,
}

/// Says what a resync changed: decisions made since the last pull, or
/// ones CrowdSec's delta stream skipped (`crowdsec::Pull`).
fn resync_said(outcomes: &[Outcome]) {
    let n = |f: fn(&Outcome) -> bool| outcomes.iter().filter(|o| f(o)).count();
    tracing::info!(
        event = "crowdsec_resync",
        banned = n(|o| matches!(o, Outcome::Banned(..))),
        lifted = n(|o| matches!(o, Outcome::Lifted(_))),
        refused = n(|o| matches!(o, Outcome::Refused(..))),
        "the whole list, pulled again, held changes the delta pulls had not brought (decisions made since the last pull, or ones the Local API's delta stream skipped); applied"
    );
}

/// Changes a pull lists one event each; past it, one summary event (a
/// startup pull from a community blocklist holds tens of thousands).
const EVENTS_PER_PULL: usize = 20;

impl Daemon {
    /// Applies one pull, then saves the state file once and says what
    /// changed. A whole list (at startup, after an outage, each resync) is
    /// every decision in force: CrowdSec's bans the book holds but the
    /// list lacks were deleted while the daemon was away or in a delete
    /// the stream did not say, and are lifted.
    pub(super) fn apply_stream(&mut self, s: Stream, pull: Pull) {
        let new = s.new.unwrap_or_default();
        let mut seen = std::collections::HashSet::new();
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
        let mut outcomes: Vec<Outcome> = s
            .deleted
            .unwrap_or_default()
            .iter()
            .map(|d| self.decision(d.on_deleted(), &allows))
            .collect();
        for d in &new {
            let action = d.on_new();
            if let Action::Ban { net, .. } = &action {
                seen.insert(*net);
            }
            outcomes.push(self.decision(action, &allows));
        }
        if pull.whole() {
            let stale: Vec<IpNet> = self
                .bans
                .in_force(coarse_ns())
                .filter(|(n, b)| b.origin == "crowdsec" && !seen.contains(*n))
                .map(|(n, _)| *n)
                .collect();
            for net in stale {
                outcomes.push(self.decision(Action::Lift { net }, &allows));
            }
        }
        let repeats = outcomes
            .iter()
            .filter(|o| matches!(o, Outcome::Same))
            .count();
        if pull != Pull::Resync && repeats > 0 {
            *self
                .crowdsec
                .decisions
                .entry("already_banned".to_owned())
                .or_default() += repeats as u64;
        }
        outcomes.retain(|o| !matches!(o, Outcome::Counted | Outcome::Same));
        if pull == Pull::Resync && !outcomes.is_empty() {
            resync_said(&outcomes);
        }
        if outcomes
            .iter()
            .any(|o| matches!(o, Outcome::Banned(..) | Outcome::Lifted(_)))
        {
            self.save_or_warn();
        }
        self.say(outcomes);
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
                Outcome::Counted | Outcome::Same => continue,
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
            return Outcome::Same;
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
