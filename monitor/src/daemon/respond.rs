//! The response to findings: a per-source finding bans the source's
//! prefix (escalating with repeat offences) unless monitor mode, an allow
//! rule, the management guard or the ban cap says no; a host-wide SYN
//! flood limits new connections host-wide for a while; the rest is
//! reported. Every finding and ban change is an event.

use std::{
    collections::{BTreeMap, HashMap},
    time::{Duration, Instant},
};

use ipnet::IpNet;
use monitor_common::{
    bucket::BucketParams,
    detect::{Detector, Evidence},
};

use super::{Daemon, detect::Finding};
use crate::{
    clock::{coarse_ns, coarse_tick_ns, monotonic_ns},
    config::Mode,
    events::event,
    policy::{Action, guard_ban},
    snapshot::Snapshot,
};

/// How long a finding that changed nothing stays unrepeated.
const REPEAT_QUIET: Duration = Duration::from_secs(60);

/// What the response remembers: the host-wide SYN limit's end, the
/// findings reported quietly, and the detections counted by detector.
#[derive(Debug, Default)]
pub struct Responder {
    /// When the host-wide SYN limit set during a flood ends (monotonic ns).
    syn_limit_until: Option<u64>,
    /// Findings that changed nothing (monitor mode), by detector and
    /// source, with when they were last reported: repeated every interval
    /// while an attack lasts, they are reported once per `REPEAT_QUIET`.
    quiet: HashMap<(Detector, Option<IpNet>), Instant>,
    /// Detections so far, by detector name.
    detections: BTreeMap<&'static str, u64>,
}

impl Responder {
    /// A responder that continues the detection counts of the state file.
    pub fn with_counts(saved: &BTreeMap<String, u64>) -> Self {
        Self {
            detections: Detector::ALL
                .iter()
                .filter_map(|d| Some((d.name(), *saved.get(d.name())?)))
                .collect(),
            ..Self::default()
        }
    }

    pub fn detections(&self) -> &BTreeMap<&'static str, u64> {
        &self.detections
    }

    /// Whether the host-wide SYN limit is in force (SYN cookies in mode
    /// `under_attack` answer exactly while it is).
    pub fn syn_limited(&self) -> bool {
        self.syn_limit_until.is_some()
    }

    /// Whether a finding of `d` on `net` that changed nothing was reported
    /// within `REPEAT_QUIET` (if not, it is now).
    fn repeated(&mut self, d: Detector, net: Option<IpNet>) -> bool {
        let now = Instant::now();
        match self.quiet.get(&(d, net)) {
            Some(t) if now.duration_since(*t) < REPEAT_QUIET => true,
            _ => {
                self.quiet
                    .retain(|_, t| now.duration_since(*t) < REPEAT_QUIET);
                self.quiet.insert((d, net), now);
                false
            }
        }
    }
}

impl Daemon {
    /// Runs the detectors on what changed since the last interval and
    /// responds to what they found.
    pub fn detect(&mut self, snap: &Snapshot) {
        // A lapsed SYN limit is lifted before this interval is judged, so a
        // flood still going on gets it again at once.
        if self
            .respond
            .syn_limit_until
            .is_some_and(|until| monotonic_ns() >= until)
        {
            self.lift_syn_limit("the host-wide limit on new TCP connections ended");
        }
        let t = self.config.detect.thresholds;
        for f in self.detect.judge(&mut self.tg.maps, snap, &t) {
            match f {
                Finding::Source {
                    net,
                    detector,
                    evidence,
                } => self.ban_for(net, detector, evidence),
                Finding::SynFlood {
                    evidence,
                    usual_syns_per_sec,
                } => self.limit_syns(evidence, usual_syns_per_sec),
                Finding::HostWide { detector, evidence } => self.report(detector, evidence),
            }
        }
    }

    /// A host-wide finding with no source to ban, said once per
    /// `REPEAT_QUIET` while it lasts.
    fn report(&mut self, d: Detector, ev: Evidence) {
        if self.respond.repeated(d, None) {
            return;
        }
        let message = if d == Detector::SpoofedStorm {
            "a surge of new (or bogon) sources: the mark of spoofed sources; per-source bans cannot stop it, the source table's clock recycles their slots"
        } else {
            "host-wide traffic far above its learned baseline"
        };
        self.finding(d, ev, None, "logged", message.into());
    }

    /// Forgets bans the kernel no longer enforces, with an event each.
    pub fn sweep_bans(&mut self) {
        let expired = self.bans.sweep(&mut self.tg.maps, coarse_ns());
        if expired.is_empty() {
            return;
        }
        for net in expired {
            let source = self.redact.net(net);
            self.events.push(event(
                "ban_expired",
                Some(source),
                "unbanned",
                "ban expired".into(),
            ));
        }
        self.save_or_warn();
    }

    /// A SYN flood host-wide, from sources too many (or too spoofed) to ban
    /// one by one: new connections are limited host-wide, for
    /// `detect.syn_limit_ttl`, to twice the usual SYN rate (at least 100/s);
    /// allowed sources are exempt. Monitor mode only says so.
    fn limit_syns(&mut self, ev: Evidence, usual_syns_per_sec: f64) {
        let ttl = self.config.detect.syn_limit_ttl;
        let rate = (2.0 * usual_syns_per_sec).max(100.0) as u64;
        // The burst covers a second of the rate and at least a clock tick.
        let tick_burst =
            (rate as u128 * coarse_tick_ns() as u128).div_ceil(1_000_000_000) as u64 + 1;
        let burst = rate.max(tick_burst);
        let d = Detector::GlobalSynFlood;
        // Already answered: the limit is renewed when it lapses, if the
        // flood is still on.
        if self.respond.syn_limit_until.is_some() {
            return;
        }
        if self.config.detect.mode_of(d) == Mode::Monitor {
            if self.respond.repeated(d, None) {
                return;
            }
            let action = format!(
                "would limit new TCP connections to {rate}/s for {}s",
                ttl.as_secs()
            );
            return self.finding(d, ev, None, &action, "monitor mode: nothing changed".into());
        }
        let params = match BucketParams::new(rate, burst) {
            Ok(p) => p,
            Err(e) => {
                return self.finding(d, ev, None, "logged", format!("no SYN limit: {e:?}"));
            }
        };
        // Clients that completed a handshake before now stay exempt: a
        // spoofed source never sees the SYN-ACK it would have to answer.
        let known_before = self
            .tg
            .maps
            .runtime_config()
            .map(|c| (monotonic_ns().saturating_sub(c.clock_base_ns) / 1_000_000_000) as u32)
            .unwrap_or(0);
        match self.tg.maps.set_syn_limit(params, known_before) {
            Ok(()) => {
                self.respond.syn_limit_until = Some(monotonic_ns() + ttl.as_nanos() as u64);
                let action = format!(
                    "limited new TCP connections to {rate}/s for {}s",
                    ttl.as_secs()
                );
                self.finding(
                    d,
                    ev,
                    None,
                    &action,
                    "SYNs are not completing handshakes host-wide and per-source bans cannot stop spoofed sources: new connections are limited host-wide instead (allowed sources, and sources that completed a handshake before the flood, exempt)".into(),
                );
                self.sync_cookie_mode(&format!(
                    "a host-wide SYN flood: SYNs to the protected ports are answered with cookies from XDP for {}s (renewed while it lasts)",
                    ttl.as_secs()
                ));
            }
            Err(e) => self.finding(
                d,
                ev,
                None,
                "logged",
                format!("setting the SYN limit failed: {e}"),
            ),
        }
    }

    /// Lifts the host-wide SYN limit and says why.
    pub(super) fn lift_syn_limit(&mut self, why: &str) {
        self.respond.syn_limit_until = None;
        match self.tg.maps.set_syn_limit(BucketParams::UNLIMITED, 0) {
            Ok(()) => {
                self.events
                    .push(event("syn_limit_lifted", None, "unlimited", why.into()));
            }
            Err(e) => tracing::warn!(event = "syn_limit_failed", "{e}"),
        }
        self.sync_cookie_mode(why);
    }

    /// Records a finding: counted, and an event with its evidence.
    fn finding(
        &mut self,
        d: Detector,
        ev: Evidence,
        source: Option<String>,
        action: &str,
        message: String,
    ) {
        *self.respond.detections.entry(d.name()).or_default() += 1;
        let mut e = event("detection", source, action, message);
        e.detector = Some(d.name().into());
        for (name, observed, limit) in ev.iter() {
            e.evidence.insert((*name).into(), [*observed, *limit]);
        }
        self.events.push(e);
    }

    /// Why `net` may not be banned for `d`, if it may not (said in the
    /// event): an allow rule, the management guard, monitor mode, the cap.
    fn ban_refusal(&self, net: IpNet, d: Detector, ttl: Duration) -> Option<(String, String)> {
        let allowed = self
            .policy()
            .rules
            .iter()
            .filter(|r| r.net.contains(&net))
            .max_by_key(|r| r.net.prefix_len())
            .is_some_and(|r| matches!(r.action, Action::Allow));
        let active = self.bans.active(monotonic_ns());
        if allowed {
            Some((
                "logged".to_owned(),
                "not banned: the source is allowed by a rule".to_owned(),
            ))
        } else if let Err(m) = guard_ban(&self.config.management, &net) {
            Some(("logged".to_owned(), format!("not banned: {m}")))
        } else if self.config.detect.mode_of(d) == Mode::Monitor {
            Some((
                format!("would ban for {}s", ttl.as_secs()),
                "monitor mode: nothing changed".to_owned(),
            ))
        } else if active >= self.config.detect.max_bans {
            Some((
                "logged".to_owned(),
                format!("not banned: {active} bans already in force (detect.max_bans)"),
            ))
        } else {
            None
        }
    }

    /// Bans `net` for a per-source finding, unless it may not be (each
    /// refusal said in the event).
    fn ban_for(&mut self, net: IpNet, d: Detector, ev: Evidence) {
        // A banned source's packets still reach the detectors (dropped);
        // the ban already answered them. Expiry is judged on the kernel's
        // clock, as the sweep does: a ban that just ended is swept (and
        // its end reported) before a new one is considered.
        if let Some(b) = self.bans.get(&net) {
            if b.until_mono_ns > coarse_ns() {
                return;
            }
            self.sweep_bans();
        }
        if self.config.detect.mode_of(d) == Mode::Monitor && self.respond.repeated(d, Some(net)) {
            return;
        }
        let source = self.redact.net(net);
        let offence = self.bans.offences(&net);
        let ttls = &self.config.detect.ban_ttls;
        let ttl = ttls[offence.min(ttls.len() - 1)];
        let (action, message) = match self.ban_refusal(net, d, ttl) {
            Some(refused) => refused,
            None => {
                match self
                    .bans
                    .place(&mut self.tg.maps, net, ttl, Some(d.name().into()), d.name())
                {
                    Ok(()) => {
                        self.bans.offended(net);
                        self.save_or_warn();
                        (
                            format!("banned for {}s", ttl.as_secs()),
                            format!("offence {} of this source", offence + 1),
                        )
                    }
                    Err(e) => ("logged".to_owned(), format!("ban failed: {e}")),
                }
            }
        };
        self.finding(d, ev, Some(source), &action, message);
    }
}
