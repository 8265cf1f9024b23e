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
    detect::{Detector, Evidence, SourceRates, Thresholds, judge_source},
    types::SourceState,
};

use super::{
    Daemon,
    bans::BanBy,
    detect::{Finding, hot_rates},
};
use crate::{
    clock::{coarse_ns, coarse_tick_ns, monotonic_ns},
    config::Mode,
    events::event,
    maps::MapError,
    policy::{Action, guard_ban},
    snapshot::{BANS_REFUSED, Snapshot},
};

/// How long a finding that changed nothing stays unrepeated.
const REPEAT_QUIET: Duration = Duration::from_secs(60);

/// What the response remembers: the host-wide SYN limit's end, the
/// findings reported quietly, and the detections counted by detector.
#[derive(Debug, Default)]
pub struct Responder {
    /// When the host-wide SYN limit set during a flood ends (monotonic ns).
    syn_limit_until: Option<u64>,
    /// When the answer to a storm (probation for never-seen sources, the
    /// prefixes' unproven budgets) ends (monotonic ns).
    storm_until: Option<u64>,
    /// Findings that changed nothing (monitor mode), by detector and
    /// source, with when they were last reported: repeated every interval
    /// while an attack lasts, they are reported once per `REPEAT_QUIET`.
    quiet: HashMap<(Detector, Option<IpNet>), Instant>,
    /// Detections so far, by detector name.
    detections: BTreeMap<&'static str, u64>,
    /// Automatic bans not placed for want of room: `max_bans` (the cap in
    /// force) or `map_full` (the kernel's ban map), and `failed` (any other
    /// map error). Exported, so an alert can say the response is blind.
    refused: BTreeMap<&'static str, u64>,
    /// Sources that gave their slots back when a storm was found
    /// (`demote_storm_sources`), so far. Exported.
    demoted: u64,
    /// Banned sources whose bans end soon, as last read: whether they are
    /// still attacking is judged on what they sent since (`renew_bans`).
    ending: HashMap<IpNet, (Instant, SourceState)>,
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

    /// Automatic bans refused for want of room, by why (from the start, at
    /// 0, so `rate()` works).
    pub fn bans_refused(&self) -> BTreeMap<&'static str, u64> {
        let mut all: BTreeMap<&'static str, u64> = BANS_REFUSED.iter().map(|w| (*w, 0)).collect();
        all.extend(self.refused.iter().map(|(k, v)| (*k, *v)));
        all
    }

    /// Sources that gave their slots back to storms' answers, so far.
    pub fn demoted(&self) -> u64 {
        self.demoted
    }

    /// Whether the host-wide SYN limit is in force (SYN cookies in mode
    /// `under_attack` answer exactly while it is).
    pub fn syn_limited(&self) -> bool {
        self.syn_limit_until.is_some()
    }

    /// Whether a storm is being answered (`Daemon::storm`).
    pub fn storm(&self) -> bool {
        self.storm_until.is_some()
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
        if self
            .respond
            .storm_until
            .is_some_and(|until| monotonic_ns() >= until)
        {
            self.end_probation();
        }
        let t = self.thresholds();
        self.renew_bans(&t);
        let now = coarse_ns();
        let banned: std::collections::HashSet<IpNet> =
            self.bans.in_force(now).map(|(n, _)| *n).collect();
        let findings = self
            .detect
            .judge(&mut self.tg.maps, snap, &t, &|n| banned.contains(n));
        for f in findings {
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

    /// Bans a detector placed that end within `renew_ahead`: a source that
    /// kept attacking (its dropped packets judged as the detectors judge
    /// any source's, over the last interval) is banned again at the next
    /// length before the kernel lets the ban lapse. Every such source is
    /// read, not only those the walk's top lists show: a spread of
    /// hundreds of banned sources would otherwise come back in a wave.
    fn renew_bans(&mut self, t: &Thresholds) {
        let now = coarse_ns();
        let soon = now + self.renew_ahead();
        let ending: Vec<IpNet> = self
            .bans
            .in_force(now)
            .filter(|(_, b)| b.until_mono_ns <= soon && b.reason.is_some())
            .map(|(n, _)| *n)
            .collect();
        let at = Instant::now();
        let mut seen = HashMap::new();
        for net in ending {
            let Ok(key) = self.tg.maps.source_key(net.addr()) else {
                continue;
            };
            let Ok(Some(st)) = self.tg.maps.source(&key) else {
                continue;
            };
            if let Some(last) = self.respond.ending.get(&net) {
                // What it sent since the last reading; the port sketch,
                // which the fast path does not feed, left out.
                let rates = SourceRates {
                    distinct_ports: 0,
                    ..hot_rates(&st, Some(last), at)
                };
                if let Some((d, ev)) = judge_source(&rates, 0.0, t) {
                    self.ban_for(net, d, ev);
                    continue;
                }
            }
            seen.insert(net, (at, st));
        }
        self.respond.ending = seen;
    }

    /// A host-wide finding with no source to ban, said once per
    /// `REPEAT_QUIET` while it lasts. A storm (of spoofed sources, or of
    /// sources each under its own limit) is also answered, in `enforce`
    /// mode, renewed while it lasts (`storm`).
    fn report(&mut self, d: Detector, ev: Evidence) {
        let is_storm = matches!(d, Detector::SpoofedStorm | Detector::PrefixStorm);
        if is_storm && self.config.detect.mode_of(d) == Mode::Enforce {
            return self.storm(d, ev);
        }
        if self.respond.repeated(d, None) {
            return;
        }
        let action = if is_storm {
            "would put new sources on probation and on their prefix's unproven budget"
        } else {
            "logged"
        };
        let message = match d {
            Detector::SpoofedStorm => format!(
                "{}; per-source bans cannot stop it, the source table's clock recycles their slots",
                storm_cause(d)
            ),
            Detector::PrefixStorm => storm_cause(d).to_owned(),
            _ => "host-wide traffic far above its learned baseline".to_owned(),
        };
        self.finding(d, ev, None, action, message);
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

    /// The answer to a storm, for `detect.storm_ttl` after its last finding:
    /// never-seen sources claim a slot with their second packet, not their
    /// first (a spoofed source, seen once, then costs no slot claim and
    /// evicts no client), and sources first seen since the storm began
    /// share their prefix's small unproven budget until a SYN-cookie
    /// handshake verifies them (cookies come on for it with
    /// `mode = "under_attack"`), while sources that were already sending
    /// keep their prefix's whole budget.
    fn storm(&mut self, d: Detector, ev: Evidence) {
        let renewing = self.respond.storm_until.is_some();
        let ttl = self.config.detect.storm_ttl;
        self.respond.storm_until = Some(monotonic_ns() + ttl.as_nanos() as u64);
        let why = storm_cause(d);
        // While it lasts, each detector's finding is said once per
        // `REPEAT_QUIET`, also when another's answered the storm first.
        let said = self.respond.repeated(d, None);
        if renewing {
            if !said {
                let action = format!("the storm's answer renewed for {}s", ttl.as_secs());
                self.finding(d, ev, None, &action, why.into());
            }
            return;
        }
        let began = self.detect.storm_began();
        match self.tg.maps.set_storm_since(began) {
            Ok(()) => {
                let demoted = self.demote_storm_sources(began);
                self.finding(
                    d,
                    ev,
                    None,
                    &format!(
                        "new sources on probation and on their prefix's unproven budget for {}s",
                        ttl.as_secs()
                    ),
                    format!("{why}; a never-seen source claims a slot with its second packet, and sources first seen since the storm began share their prefix's unproven budget until a SYN-cookie handshake verifies them ({demoted} of them tracked already gave back their slots), while those already sending keep theirs (renewed while it lasts)"),
                );
                self.sync_cookie_mode(
                    "a storm: new sources show they are real with a SYN-cookie handshake",
                );
            }
            Err(e) => self.finding(
                d,
                ev,
                None,
                "logged",
                format!("answering the storm failed: {e}"),
            ),
        }
    }

    /// Takes back the slots the storm's sources claimed before it was
    /// found (`SourceTable::demote_since`); how many.
    fn demote_storm_sources(&mut self, began: u64) -> u32 {
        let demoted = self.tg.maps.unlimited_rule_slots().and_then(|unlimited| {
            self.tg
                .maps
                .sources
                .demote_since(began, coarse_ns(), &unlimited)
        });
        match demoted {
            Ok(n) => {
                self.respond.demoted += u64::from(n);
                n
            }
            Err(e) => {
                tracing::warn!(
                    event = "storm_demote_failed",
                    "taking back the slots of the storm's sources: {e}; they stay tracked, on their prefix's unproven budget all the same"
                );
                0
            }
        }
    }

    /// Ends the answer to a storm.
    fn end_probation(&mut self) {
        self.respond.storm_until = None;
        match self.tg.maps.set_storm(false) {
            Ok(()) => {
                self.events.push(event(
                    "probation_ended",
                    None,
                    "new sources claim a slot at once and share their prefix's whole budget",
                    "no storm for a while".into(),
                ));
                self.sync_cookie_mode("the storm ended");
            }
            Err(e) => tracing::warn!(event = "probation_failed", "{e}"),
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
        let mut e =
            event("detection", source, action, message).by(&format!("detector {}", d.name()));
        e.detector = Some(d.name().into());
        for (name, observed, limit) in ev.iter() {
            e = e.reading(name, *observed, *limit);
        }
        self.events.push(e);
    }

    /// Why `net` may not be banned for `d`, if it may not (said in the
    /// event): an allow rule, the management guard, monitor mode, the cap.
    fn ban_refusal(&mut self, net: IpNet, d: Detector, ttl: Duration) -> Option<(String, String)> {
        let allowed = self
            .policy()
            .rules
            .iter()
            .filter(|r| r.net.contains(&net))
            .max_by_key(|r| r.net.prefix_len())
            .is_some_and(|r| matches!(r.action, Action::Allow));
        // A renewal replaces its own ban: not one more against the cap.
        let now = monotonic_ns();
        let renewing = self.bans.get(&net).is_some_and(|b| b.until_mono_ns > now);
        let active = self.bans.active(now) - usize::from(renewing);
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
            *self.respond.refused.entry("max_bans").or_default() += 1;
            Some((
                "logged".to_owned(),
                format!("not banned: {active} bans already in force (detect.max_bans)"),
            ))
        } else {
            None
        }
    }

    /// How long before its end a ban whose source is still attacking is
    /// renewed: two walks of the table (the banned source's packets are
    /// found there, dropped), so its renewal lands before the kernel lets
    /// it lapse and the attack back in for the time it takes to find it
    /// again.
    fn renew_ahead(&self) -> u64 {
        2 * self
            .config
            .scan_interval
            .max(self.config.interval)
            .as_nanos() as u64
    }

    /// Bans `net` for a per-source finding, unless it may not be (each
    /// refusal said in the event).
    fn ban_for(&mut self, net: IpNet, d: Detector, ev: Evidence) {
        // A banned source's packets still reach the detectors (dropped);
        // the ban already answered them, until it nears its end: then the
        // source is still attacking, and the ban is renewed at the next
        // length. Expiry is judged on the kernel's clock, as the sweep
        // does: a ban that just ended is swept (and its end reported)
        // before a new one is considered.
        let mut renewal = false;
        if let Some(b) = self.bans.get(&net) {
            let now = coarse_ns();
            if b.until_mono_ns > now + self.renew_ahead() {
                return;
            }
            renewal = b.until_mono_ns > now;
            if !renewal {
                self.sweep_bans();
            }
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
                let by = BanBy {
                    origin: "detector",
                    count_as: d.name(),
                    scenario: Some(format!("tollgate/{}", d.name())),
                };
                match self
                    .bans
                    .place(&mut self.tg.maps, net, ttl, Some(d.name().into()), by)
                {
                    Ok(()) => {
                        self.bans.offended(net);
                        self.save_or_warn();
                        // The fleet hears of it (a LAPI machine configured).
                        self.report_ban(net, ttl, d, &ev);
                        let renewed = if renewal {
                            ", renewed: still attacking as its ban neared its end"
                        } else {
                            ""
                        };
                        (
                            format!("banned for {}s", ttl.as_secs()),
                            format!("offence {} of this source{renewed}", offence + 1),
                        )
                    }
                    Err(e) => {
                        let why = if matches!(e, MapError::Full { .. }) {
                            "map_full"
                        } else {
                            "failed"
                        };
                        *self.respond.refused.entry(why).or_default() += 1;
                        ("logged".to_owned(), format!("ban failed: {e}"))
                    }
                }
            }
        };
        self.finding(d, ev, Some(source), &action, message);
    }
}

/// What a storm detector's finding means, for its events.
fn storm_cause(d: Detector) -> &'static str {
    match d {
        Detector::PrefixStorm => {
            "sources each under their own limit send more than their prefixes may together: a storm spread over many sources"
        }
        _ => "a surge of new (or bogon) sources: the mark of spoofed sources",
    }
}
