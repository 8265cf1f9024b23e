//! `tollgate run --config FILE`: the daemon. `Core` owns the loaded object
//! and everything the daemon decides (config, runtime rules, bans, the
//! state file); the stats loop, the exporter and the control server reach
//! it through one mutex, never across an await.

use std::{
    collections::BTreeMap,
    net::IpAddr,
    os::unix::fs::PermissionsExt,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use ipnet::IpNet;
use monitor_common::{
    maps::source_event,
    reason::{Reason, Verdict},
    types::{SourceFlow, SourceKey, SourceState},
};
use serde_json::json;
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::UnixListener,
    signal::unix::{SignalKind, signal},
};

use monitor_common::{
    detect::{
        Detector, Evidence, GlobalDetector, GlobalRates, SourceRates, judge_source,
        ports_from_sketch,
    },
    maps::signal,
};

use crate::{
    clock::{coarse_ns, coarse_tick_ns, monotonic_ns},
    config::{self, Config, Origin, RuleEntry, guard_ban, guard_rule},
    control::{self, Command, LimitSpec, Response},
    events::{EventLog, event},
    exporter::{self, Metrics},
    loader::{LoadOptions, Tollgate},
    maps::source_key_net,
    policy::{Action, Limit, Policy, Rate, Rule},
    redact::Redactor,
    snapshot::{Snapshot, TOP_MAX, Talker, Tops, key_id},
    state::{SavedBan, SavedRule, State, unix_ms},
    units,
};

/// How long a source's destination-port sketch collects before it starts
/// over: `detect.scan_ports` distinct ports within it mark a scan (about
/// 7 new ports a second sustained, or a burst). It was one walk of the
/// table when walks came every 15 s; walks are every second now, and a
/// window that short would miss the slower scans.
pub const PORT_WINDOW: Duration = Duration::from_secs(15);
/// Longest ban accepted from the CLI: a month; longer is a deny rule.
const MAX_BAN: Duration = Duration::from_secs(30 * 86_400);

#[derive(Clone, Debug)]
struct BanInfo {
    until_mono_ns: u64,
    until_unix_ms: u64,
    reason: Option<String>,
}

/// The daemon's state, one owner.
pub struct Core {
    tg: Tollgate,
    /// The locked pin directory (dropped last: the lock outlives the maps).
    pins: Option<crate::pins::PinDir>,
    config: Config,
    runtime_rules: Vec<RuleEntry>,
    default_override: Option<(Limit, bool)>,
    bans: BTreeMap<IpNet, BanInfo>,
    redact: Redactor,
    started: Instant,
    events: EventLog,
    global: GlobalDetector,
    /// Host-wide totals at the previous interval: (time, packets, signals,
    /// sources created).
    last_global: Option<(Instant, u64, [u64; 3], u64)>,
    /// Top talkers at the previous walk, by prefix, for per-source rates.
    last_walk: Option<(Instant, std::collections::HashMap<IpNet, Talker>)>,
    /// When the current destination-port window began (see `PORT_WINDOW`).
    port_window_since: Instant,
    /// Offences per prefix, for escalating ban lengths.
    offences: std::collections::HashMap<IpNet, usize>,
    detections: BTreeMap<&'static str, u64>,
    bans_by_reason: BTreeMap<String, u64>,
    /// Hot sources at the previous interval, for their rates.
    hot_prev: std::collections::HashMap<SourceKey, (Instant, SourceState)>,
    /// A typical busy source's packet rate, from the last walk.
    typical_pps: f64,
    /// Host-wide SYN rate outside SYN floods: what the SYN limit allows.
    syn_baseline: monitor_common::detect::Ewma,
    /// When the host-wide SYN limit set during a flood ends (monotonic ns).
    syn_limit_until: Option<u64>,
    /// Findings that changed nothing (monitor mode), by detector and
    /// source, with when they were last reported: repeated every interval
    /// while an attack lasts, they are reported once per `REPEAT_QUIET`.
    quiet: std::collections::HashMap<(Detector, Option<IpNet>), Instant>,
}

/// How long a finding that changed nothing stays unrepeated.
const REPEAT_QUIET: Duration = Duration::from_secs(60);

/// The median packet rate of the sources seen in both walks: what a
/// typical busy source sends, for the flood detector's relative line.
/// With fewer than five sources there is no "typical" (0): the absolute
/// line alone decides.
fn median_pps(
    cur: &std::collections::HashMap<IpNet, Talker>,
    prev: &std::collections::HashMap<IpNet, Talker>,
    secs: f64,
) -> f64 {
    let mut rates: Vec<f64> = cur
        .iter()
        .filter_map(|(n, c)| {
            Some(c.packets.saturating_sub(prev.get(n)?.packets) as f64 / secs.max(1e-3))
        })
        .collect();
    if rates.len() < 5 {
        return 0.0;
    }
    rates.sort_by(|a, b| a.total_cmp(b));
    rates[rates.len() / 2]
}

fn parse_cidr(s: &str) -> Result<IpNet, String> {
    let net: IpNet = s
        .trim()
        .parse()
        .or_else(|_| s.trim().parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| {
            format!("`{s}` is not an address or CIDR (e.g. 192.0.2.7 or 2001:db8::/64)")
        })?;
    if net.trunc() != net {
        return Err(format!(
            "`{s}` has host bits set; write the network address, {}",
            net.trunc()
        ));
    }
    Ok(net)
}

fn parse_limit(spec: &LimitSpec) -> Result<Limit, String> {
    let rate = |r: &Option<String>,
                b: &Option<String>,
                parse: fn(&str) -> Result<u64, String>,
                what: &str| {
        match (r, b) {
            (Some(r), Some(b)) => {
                let per_sec = parse(r)?;
                let burst = parse(b)?;
                if per_sec == 0 || burst == 0 {
                    return Err(format!(
                        "the {what} rate and burst must be greater than zero; to drop everything use a deny rule"
                    ));
                }
                Ok(Some(Rate { per_sec, burst }))
            }
            (None, None) => Ok(None),
            _ => Err(format!("a {what} limit needs both a rate and a burst")),
        }
    };
    let limit = Limit {
        packets: rate(
            &spec.packets_per_second,
            &spec.burst_packets,
            units::count,
            "packet",
        )?,
        bytes: rate(
            &spec.bytes_per_second,
            &spec.burst_bytes,
            units::bytes,
            "byte",
        )?,
    };
    if limit.packets.is_none() && limit.bytes.is_none() {
        return Err(
            "give packets_per_second with burst_packets, or bytes_per_second with burst_bytes"
                .into(),
        );
    }
    Ok(limit)
}

fn limit_spec(l: &Limit) -> LimitSpec {
    LimitSpec {
        packets_per_second: l.packets.map(|r| r.per_sec.to_string()),
        burst_packets: l.packets.map(|r| r.burst.to_string()),
        bytes_per_second: l.bytes.map(|r| r.per_sec.to_string()),
        burst_bytes: l.bytes.map(|r| r.burst.to_string()),
    }
}

fn action_name(a: &Action) -> &'static str {
    match a {
        Action::Allow => "allow",
        Action::Deny => "deny",
        Action::Limit(_) => "limit",
    }
}

fn saved_rule(e: &RuleEntry) -> SavedRule {
    SavedRule {
        cidr: e.rule.net.to_string(),
        action: action_name(&e.rule.action).into(),
        limit: match &e.rule.action {
            Action::Limit(l) => limit_spec(l),
            _ => LimitSpec::default(),
        },
        monitor: e.rule.monitor,
        comment: e.comment.clone(),
    }
}

fn rule_from_saved(r: &SavedRule) -> Result<Rule, String> {
    let net = parse_cidr(&r.cidr)?;
    let action = match r.action.as_str() {
        "allow" => Action::Allow,
        "deny" => Action::Deny,
        "limit" => Action::Limit(parse_limit(&r.limit)?),
        other => {
            return Err(format!(
                "unknown action `{other}`; one of allow, deny, limit"
            ));
        }
    };
    Ok(Rule {
        net,
        action,
        monitor: r.monitor,
    })
}

fn limit_json(l: &Limit) -> serde_json::Value {
    json!({
        "packets_per_second": l.packets.map(|r| r.per_sec),
        "burst_packets": l.packets.map(|r| r.burst),
        "bytes_per_second": l.bytes.map(|r| r.per_sec),
        "burst_bytes": l.bytes.map(|r| r.burst),
    })
}

impl Core {
    /// Loads the programs, restores runtime rules and bans from the state
    /// file, applies the policy. Does not attach yet.
    pub fn new(config: Config, redact: Redactor) -> anyhow::Result<Self> {
        let (state, note) = State::load(&config.state_file)?;
        if let Some(note) = note {
            tracing::warn!(event = "state_unreadable", "{note}");
        }
        let mut pins = crate::pins::PinDir::open(&config.pin_dir)?;
        let older = pins.other_versions();
        if !pins.adopted() && !older.is_empty() {
            tracing::warn!(
                event = "layout_changed",
                "pinned maps of layout {} found under {}; this build uses layout v{}: its maps start fresh (bans and runtime rules come back from the state file; counters and bucket state restart). The running program keeps enforcing until ours replaces it.",
                older
                    .iter()
                    .map(|(v, _)| format!("v{v}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                config.pin_dir.display(),
                monitor_common::maps::LAYOUT_VERSION
            );
        }
        let load = |pins: &crate::pins::PinDir| {
            Tollgate::load(&LoadOptions {
                max_sources: config.max_sources,
                pin_dir: Some(pins.dir().to_owned()),
            })
        };
        let tg = match load(&pins) {
            Err(e @ crate::loader::LoadError::PinnedCapacity { .. }) => {
                tracing::warn!(
                    event = "pins_restarted",
                    "{e}: the maps start fresh (bans and runtime rules come back from the state file; counters and bucket state restart)"
                );
                pins.clear_maps()?;
                load(&pins)
            }
            r => r,
        }
        .context("loading Tollgate's XDP programs")?;
        let adopted = pins.adopted();
        if adopted {
            tracing::info!(
                event = "pins_adopted",
                dir = %pins.dir().display(),
                "adopted the pinned maps: buckets, flow records, bans and counters continue"
            );
        }
        let mut core = Self {
            tg,
            pins: Some(pins),
            config,
            runtime_rules: Vec::new(),
            default_override: None,
            bans: BTreeMap::new(),
            redact,
            started: Instant::now(),
            events: EventLog::default(),
            global: GlobalDetector::default(),
            last_global: None,
            last_walk: None,
            port_window_since: Instant::now(),
            offences: std::collections::HashMap::new(),
            detections: Detector::ALL
                .iter()
                .filter_map(|d| Some((d.name(), *state.detections.get(d.name())?)))
                .collect(),
            bans_by_reason: state.bans_by_reason.clone(),
            hot_prev: std::collections::HashMap::new(),
            typical_pps: 0.0,
            syn_baseline: monitor_common::detect::Ewma::new(0.01),
            syn_limit_until: None,
            quiet: std::collections::HashMap::new(),
        };
        core.tg
            .maps
            .set_bogons(&core.config.detect.bogons)
            .context("writing the bogon ranges")?;
        for r in &state.rules {
            match rule_from_saved(r) {
                Ok(rule) => core.runtime_rules.push(RuleEntry {
                    rule,
                    comment: r.comment.clone(),
                    origin: Origin::Runtime,
                }),
                Err(e) => {
                    tracing::warn!(event = "state_rule_skipped", cidr = %r.cidr, "runtime rule not restored: {e}")
                }
            }
        }
        if let Some(d) = &state.default_limit {
            match parse_limit(&d.limit) {
                Ok(l) => core.default_override = Some((l, d.monitor)),
                Err(e) => tracing::warn!(
                    event = "state_limit_skipped",
                    "default limit override not restored: {e}"
                ),
            }
        }
        // Adopted maps keep their bucket clock: the buckets are relative
        // to it.
        core.apply((!adopted).then(monotonic_ns))
            .map_err(|e| anyhow::anyhow!("applying the configured policy: {e}"))?;
        let now_unix = unix_ms();
        let now_mono = monotonic_ns();
        for b in &state.bans {
            if b.until_unix_ms <= now_unix {
                continue;
            }
            let Ok(net) = parse_cidr(&b.cidr) else {
                continue;
            };
            let until = now_mono + (b.until_unix_ms - now_unix) * 1_000_000;
            core.tg.maps.ban(net, until)?;
            core.bans.insert(
                net,
                BanInfo {
                    until_mono_ns: until,
                    until_unix_ms: b.until_unix_ms,
                    reason: b.reason.clone(),
                },
            );
        }
        if adopted {
            // A SYN limit the previous daemon set has no end here (its
            // timer went with it): lift it; a flood still going on gets it
            // again within an interval.
            if core.tg.maps.runtime_config()?.syn_limit.is_limited() {
                core.lift_syn_limit("lifted at start: the daemon that set it is gone");
            }
            // Bans the kernel holds that the state file missed (a crash
            // between the two writes) stay known, and expire on time;
            // expired ones are removed.
            for (net, until) in core.tg.maps.kernel_bans()? {
                if until <= now_mono {
                    core.tg.maps.unban(net)?;
                } else {
                    core.bans.entry(net).or_insert_with(|| BanInfo {
                        until_mono_ns: until,
                        until_unix_ms: now_unix + (until - now_mono) / 1_000_000,
                        reason: Some("restored from the kernel".into()),
                    });
                }
            }
        }
        if !state.bans.is_empty() || !state.rules.is_empty() {
            tracing::info!(
                event = "state_restored",
                rules = core.runtime_rules.len(),
                bans = core.bans.len(),
                "runtime rules and bans restored from {}",
                core.config.state_file.display()
            );
        }
        Ok(core)
    }

    /// Attaches on every configured interface through pinned links,
    /// adopting those a previous daemon left (its program is replaced in
    /// one atomic update), and detaches from interfaces no longer
    /// configured.
    pub fn attach_all(&mut self) -> anyhow::Result<()> {
        let pins = self
            .pins
            .as_ref()
            .context("the pin directory is not open")?;
        for iface in self.config.interfaces.clone() {
            let adopted = self.tg.attach_pinned(
                &iface,
                self.config.attach_mode,
                &pins.link(&iface),
                &pins.older_links(&iface),
            )?;
            if adopted {
                tracing::info!(event = "attached", iface = %iface, "adopted the pinned XDP link: enforcement never paused");
            } else {
                tracing::info!(event = "attached", iface = %iface, mode = %self.config.attach_mode, "attached");
            }
        }
        for stale in pins.stale_links(&self.config.interfaces) {
            match std::fs::remove_file(&stale) {
                Ok(()) => {
                    tracing::info!(event = "detached", pin = %stale.display(), "detached from an interface no longer configured")
                }
                Err(e) => tracing::warn!(event = "detach_failed", pin = %stale.display(), "{e}"),
            }
        }
        for (v, dir) in pins.other_versions() {
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => {
                    tracing::info!(event = "old_pins_removed", layout = v, dir = %dir.display(), "removed the pins of layout v{v}")
                }
                Err(e) => {
                    tracing::warn!(event = "old_pins_removal_failed", dir = %dir.display(), "{e}")
                }
            }
        }
        Ok(())
    }

    /// What a clean stop leaves behind, per `state.on_exit`.
    pub fn exit(&mut self) -> anyhow::Result<()> {
        match self.config.on_exit {
            crate::pins::OnExit::Keep => {
                tracing::info!(
                    event = "kept",
                    "leaving XDP attached on {} with the maps pinned in {} (state.on_exit = \"keep\"): the kernel keeps enforcing the last policy and bans until the next daemon adopts them",
                    self.config.interfaces.join(", "),
                    self.config.pin_dir.display()
                );
            }
            crate::pins::OnExit::Detach => {
                self.tg.detach_all()?;
                if let Some(p) = self.pins.take() {
                    p.remove()?;
                }
                tracing::info!(
                    event = "detached",
                    "detached and removed the pins (state.on_exit = \"detach\")"
                );
            }
        }
        Ok(())
    }

    fn policy(&self) -> Policy {
        let mut p = self.config.policy(&self.runtime_rules);
        if let Some((l, monitor)) = self.default_override {
            p.default = l;
            p.default_monitor = monitor;
        }
        p
    }

    /// Checks and applies the current policy (atomically in the kernel).
    fn apply(&mut self, clock_base: Option<u64>) -> Result<(), String> {
        let p = self.policy();
        p.compile().map_err(|e| e.to_string())?;
        p.check_bursts(coarse_tick_ns())
            .map_err(|e| e.to_string())?;
        self.tg
            .maps
            .apply_policy(&p, clock_base)
            .map_err(|e| format!("{e:#}"))
    }

    fn save(&self) -> Result<(), String> {
        let state = State {
            rules: self.runtime_rules.iter().map(saved_rule).collect(),
            default_limit: self.default_override.map(|(l, monitor)| SavedRule {
                cidr: String::new(),
                action: "limit".into(),
                limit: limit_spec(&l),
                monitor,
                comment: None,
            }),
            bans: self
                .bans
                .iter()
                .map(|(net, b)| SavedBan {
                    cidr: net.to_string(),
                    until_unix_ms: b.until_unix_ms,
                    reason: b.reason.clone(),
                })
                .collect(),
            detections: self
                .detections
                .iter()
                .map(|(k, v)| ((*k).to_owned(), *v))
                .collect(),
            bans_by_reason: self.bans_by_reason.clone(),
            ..State::default()
        };
        state
            .save(&self.config.state_file)
            .map_err(|e| format!("{e:#} (the change is in force but will not survive a restart)"))
    }

    /// Reads the maps: the counters always; the source table (a sweep of
    /// its mmap-ed slots) and top talkers only when `walk`, otherwise those
    /// come from `prev`. The sweep runs every `sources.scan_interval`
    /// (default 1 s; a million sources take ~12 ms here), the counters every
    /// `interval`.
    pub fn snapshot(&self, walk: bool, prev: Option<&Snapshot>) -> anyhow::Result<Snapshot> {
        let start = Instant::now();
        let counters = self.tg.maps.counters()?;
        let cfg = self.tg.maps.runtime_config()?;
        let now = coarse_ns();
        let mut ifaces = vec!["none".to_owned()];
        ifaces.extend(self.tg.attached().map(str::to_owned));
        if let Some(p) = prev.filter(|_| !walk) {
            return Ok(Snapshot {
                counters,
                ifaces,
                bans_active: self.bans.values().filter(|b| b.until_mono_ns > now).count(),
                rules: self.policy().rules.len(),
                generation: cfg.generation,
                detections: self.detections.clone(),
                bans_by_reason: self.bans_by_reason.clone(),
                walked: false,
                ..p.clone()
            });
        }
        // The sweep runs in two shares where there are two CPUs, each with
        // its own top lists, merged after: half the wall time for the same
        // CPU time (more shares mostly add contention on the address
        // space's lock as each maps its windows).
        let shares = std::thread::available_parallelism().map_or(1, |n| n.get().min(2));
        let window = cfg.port_window;
        let mut tops: Vec<Tops> = (0..shares).map(|_| Tops::new(window)).collect();
        let parts: Vec<_> = tops
            .iter_mut()
            .map(|t| move |s: &SourceFlow| t.offer(s))
            .collect();
        let (tracked, _) = self.tg.maps.for_each_source_split(parts)?;
        let mut all = Tops::new(window);
        for t in tops {
            all.merge(t);
        }
        let Tops {
            by_packets,
            by_bytes,
            by_drops,
            by_syns,
            by_ports,
            ..
        } = all;
        // The listed sources' ACK counts, from their control records: one
        // lookup per source however many lists it is on.
        let mut seen = std::collections::HashMap::new();
        let mut acks = |k: &SourceKey| {
            *seen
                .entry(key_id(k))
                .or_insert_with(|| self.tg.maps.source(k).ok().flatten().map_or(0, |s| s.acks))
        };
        Ok(Snapshot {
            counters,
            ifaces,
            tracked,
            capacity: self.tg.maps.max_sources(),
            bans_active: self.bans.values().filter(|b| b.until_mono_ns > now).count(),
            rules: self.policy().rules.len(),
            top_by_packets: by_packets.into_talkers(&cfg, &self.redact, &mut acks),
            top_by_bytes: by_bytes.into_talkers(&cfg, &self.redact, &mut acks),
            top_by_drops: by_drops.into_talkers(&cfg, &self.redact, &mut acks),
            top_by_syns: by_syns.into_talkers(&cfg, &self.redact, &mut acks),
            top_by_ports: by_ports.into_talkers(&cfg, &self.redact, &mut acks),
            read_duration: start.elapsed(),
            generation: cfg.generation,
            detections: self.detections.clone(),
            bans_by_reason: self.bans_by_reason.clone(),
            walked: true,
        })
    }

    /// Forgets bans the kernel no longer enforces.
    pub fn sweep_bans(&mut self) {
        let now = coarse_ns();
        let expired: Vec<IpNet> = self
            .bans
            .iter()
            .filter(|(_, b)| b.until_mono_ns <= now)
            .map(|(n, _)| *n)
            .collect();
        if expired.is_empty() {
            return;
        }
        for net in expired {
            self.bans.remove(&net);
            if let Err(e) = self.tg.maps.unban(net) {
                tracing::warn!(event = "ban_sweep_failed", "removing an expired ban: {e}");
            }
            let source = self.redact.net(net);
            self.events.push(event(
                "ban_expired",
                Some(source),
                "unbanned",
                "ban expired".into(),
            ));
        }
        if let Err(e) = self.save() {
            tracing::warn!(event = "state_save_failed", "{e}");
        }
    }

    /// Runs the detectors on what changed since the last interval, and
    /// responds: per-source findings ban the source's prefix (escalating
    /// with repeat offences) unless it is allowed or detection is in
    /// monitor mode; host-wide findings are events (a spoofed storm has no
    /// single source to ban).
    pub fn detect(&mut self, snap: &Snapshot) {
        let now = Instant::now();
        let t = self.config.detect.thresholds;
        let Ok(signals) = self.tg.maps.signals() else {
            return;
        };
        let packets: u64 = Reason::ALL.iter().map(|r| snap.counters.packets(*r)).sum();
        let created = snap.counters.source_events[source_event::CREATED as usize];
        // A lapsed SYN limit is lifted before this interval is judged, so a
        // flood still going on gets it again at once.
        if self
            .syn_limit_until
            .is_some_and(|until| monotonic_ns() >= until)
        {
            self.lift_syn_limit("the host-wide limit on new TCP connections ended");
        }
        if let Some((at, p0, s0, c0)) = self.last_global {
            let g = GlobalRates {
                packets: packets.saturating_sub(p0),
                syns: signals[signal::SYN as usize].saturating_sub(s0[signal::SYN as usize]),
                // Host-wide, every packet that is not a SYN stands in for
                // the completed handshakes (a SYN flood's packets are
                // nearly all SYNs; a healthy host's are not).
                acks: packets.saturating_sub(p0).saturating_sub(
                    signals[signal::SYN as usize].saturating_sub(s0[signal::SYN as usize]),
                ),
                new_sources: created.saturating_sub(c0),
                bogon_sources: signals[signal::BOGON_SOURCE as usize]
                    .saturating_sub(s0[signal::BOGON_SOURCE as usize]),
                secs: now.duration_since(at).as_secs_f64(),
            };
            let findings = self.global.judge(&g, &t);
            let syn_flood = findings
                .iter()
                .flatten()
                .any(|(d, _)| *d == Detector::GlobalSynFlood);
            if !syn_flood {
                self.syn_baseline.observe(g.syns as f64 / g.secs.max(1e-3));
            }
            for (d, ev) in findings.into_iter().flatten() {
                // Findings that only inform are said once per REPEAT_QUIET
                // while the condition lasts.
                if d != Detector::GlobalSynFlood && self.repeated(d, None) {
                    continue;
                }
                match d {
                    Detector::GlobalSynFlood => self.limit_syns(ev),
                    Detector::SpoofedStorm => self.finding(
                        d,
                        ev,
                        None,
                        "logged",
                        "a surge of new (or bogon) sources: the mark of spoofed sources; per-source bans cannot stop it, the source table's clock recycles their slots".into(),
                    ),
                    _ => self.finding(
                        d,
                        ev,
                        None,
                        "logged",
                        "host-wide traffic far above its learned baseline".into(),
                    ),
                }
            }
        }
        self.last_global = Some((now, packets, signals, created));

        // Sources over their limit this interval: judged now, not at the
        // next walk of the whole table.
        match self.tg.maps.take_hot() {
            Ok(hot) => {
                let cfg = self.tg.maps.runtime_config().unwrap_or_default();
                let mut seen = std::collections::HashMap::new();
                for key in hot {
                    let Ok(Some(st)) = self.tg.maps.source(&key) else {
                        continue;
                    };
                    let rates = match self.hot_prev.get(&key) {
                        Some((at, old)) => SourceRates {
                            packets: st.packets.saturating_sub(old.packets),
                            bytes: st.bytes.saturating_sub(old.bytes),
                            syns: st.syns.saturating_sub(old.syns),
                            acks: st.acks.saturating_sub(old.acks),
                            distinct_ports: ports_from_sketch(st.port_sketch),
                            secs: now.duration_since(*at).as_secs_f64(),
                        },
                        // First time hot: its whole life so far, if long
                        // enough to be a rate (a flood's source is new).
                        None => SourceRates {
                            packets: st.packets,
                            bytes: st.bytes,
                            syns: st.syns,
                            acks: st.acks,
                            distinct_ports: ports_from_sketch(st.port_sketch),
                            secs: (st.last_seen_ns.saturating_sub(st.first_seen_ns) as f64 / 1e9)
                                .max(1.0),
                        },
                    };
                    seen.insert(key, (now, st));
                    if let Some((d, ev)) = judge_source(&rates, self.typical_pps, &t) {
                        self.respond(source_key_net(&key, &cfg), d, ev);
                    }
                }
                self.hot_prev = seen;
            }
            Err(e) => tracing::warn!(event = "hot_read_failed", "{e}"),
        }

        if !snap.walked {
            return;
        }
        let top: std::collections::HashMap<IpNet, Talker> = snap
            .top_by_packets
            .iter()
            .chain(&snap.top_by_syns)
            .chain(&snap.top_by_ports)
            .filter_map(|t| Some((t.net?, t.clone())))
            .collect();
        if let Some((at, prev)) = self.last_walk.take() {
            let secs = now.duration_since(at).as_secs_f64();
            let typical = median_pps(&top, &prev, secs);
            self.typical_pps = typical;
            for (net, cur) in &top {
                let Some(old) = prev.get(net) else { continue };
                let r = SourceRates {
                    packets: cur.packets.saturating_sub(old.packets),
                    bytes: cur.bytes.saturating_sub(old.bytes),
                    syns: cur.syns.saturating_sub(old.syns),
                    acks: cur.acks.saturating_sub(old.acks),
                    distinct_ports: cur.ports,
                    secs,
                };
                if let Some((d, ev)) = judge_source(&r, typical, &t) {
                    self.respond(*net, d, ev);
                }
            }
        }
        self.last_walk = Some((now, top));
        // A new port window once the current one has lasted its length,
        // however often the table is walked.
        if now.duration_since(self.port_window_since) >= PORT_WINDOW {
            self.port_window_since = now;
            if let Err(e) = self.tg.maps.next_port_window() {
                tracing::warn!(event = "port_window_failed", "{e}");
            }
        }
    }

    /// A SYN flood host-wide, from sources too many (or too spoofed) to ban
    /// one by one: new connections are limited host-wide, for
    /// `detect.syn_limit_ttl`, to twice the usual SYN rate (at least 100/s);
    /// allowed sources are exempt. Monitor mode only says so.
    fn limit_syns(&mut self, ev: Evidence) {
        let ttl = self.config.detect.syn_limit_ttl;
        let rate = (2.0 * self.syn_baseline.mean).max(100.0) as u64;
        // The burst covers a second of the rate and at least a clock tick.
        let tick_burst =
            (rate as u128 * coarse_tick_ns() as u128).div_ceil(1_000_000_000) as u64 + 1;
        let burst = rate.max(tick_burst);
        let d = Detector::GlobalSynFlood;
        // Already answered: the limit is renewed when it lapses, if the
        // flood is still on.
        if self.syn_limit_until.is_some() {
            return;
        }
        if self.config.detect.mode_of(d) == config::Mode::Monitor {
            if self.repeated(d, None) {
                return;
            }
            let action = format!(
                "would limit new TCP connections to {rate}/s for {}s",
                ttl.as_secs()
            );
            return self.finding(d, ev, None, &action, "monitor mode: nothing changed".into());
        }
        let params = match monitor_common::bucket::BucketParams::new(rate, burst) {
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
                self.syn_limit_until = Some(monotonic_ns() + ttl.as_nanos() as u64);
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
    fn lift_syn_limit(&mut self, why: &str) {
        self.syn_limit_until = None;
        match self
            .tg
            .maps
            .set_syn_limit(monitor_common::bucket::BucketParams::UNLIMITED, 0)
        {
            Ok(()) => {
                self.events
                    .push(event("syn_limit_lifted", None, "unlimited", why.into()));
            }
            Err(e) => tracing::warn!(event = "syn_limit_failed", "{e}"),
        }
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

    fn finding(
        &mut self,
        d: Detector,
        ev: Evidence,
        source: Option<String>,
        action: &str,
        message: String,
    ) {
        *self.detections.entry(d.name()).or_default() += 1;
        let mut e = event("detection", source, action, message);
        e.detector = Some(d.name());
        for (name, observed, limit) in ev.iter() {
            e.evidence.insert(name, [*observed, *limit]);
        }
        self.events.push(e);
    }

    /// Bans `net` for a per-source finding, unless monitor mode, an allow
    /// rule, the management guard or the ban cap says no (each said in
    /// the event).
    fn respond(&mut self, net: IpNet, d: Detector, ev: Evidence) {
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
        let now = monotonic_ns();
        if self.config.detect.mode_of(d) == config::Mode::Monitor && self.repeated(d, Some(net)) {
            return;
        }
        let source = self.redact.net(net);
        let allowed = self
            .policy()
            .rules
            .iter()
            .filter(|r| r.net.contains(&net))
            .max_by_key(|r| r.net.prefix_len())
            .is_some_and(|r| matches!(r.action, Action::Allow));
        let offence = *self.offences.get(&net).unwrap_or(&0);
        let ttls = &self.config.detect.ban_ttls;
        let ttl = ttls[offence.min(ttls.len() - 1)];
        let active = self.bans.values().filter(|b| b.until_mono_ns > now).count();
        let (action, message) = if allowed {
            (
                "logged".to_owned(),
                "not banned: the source is allowed by a rule".to_owned(),
            )
        } else if let Err(m) = guard_ban(&self.config.management, &net) {
            ("logged".to_owned(), format!("not banned: {m}"))
        } else if self.config.detect.mode_of(d) == config::Mode::Monitor {
            (
                format!("would ban for {}s", ttl.as_secs()),
                "monitor mode: nothing changed".to_owned(),
            )
        } else if active >= self.config.detect.max_bans {
            (
                "logged".to_owned(),
                format!("not banned: {active} automatic bans already in force (detect.max_bans)"),
            )
        } else {
            let until = now + ttl.as_nanos() as u64;
            match self.tg.maps.ban(net, until) {
                Ok(()) => {
                    self.bans.insert(
                        net,
                        BanInfo {
                            until_mono_ns: until,
                            until_unix_ms: unix_ms() + ttl.as_millis() as u64,
                            reason: Some(d.name().into()),
                        },
                    );
                    self.offences.insert(net, offence + 1);
                    *self.bans_by_reason.entry(d.name().into()).or_default() += 1;
                    if let Err(e) = self.save() {
                        tracing::warn!(event = "state_save_failed", "{e}");
                    }
                    (
                        format!("banned for {}s", ttl.as_secs()),
                        format!("offence {} of this source", offence + 1),
                    )
                }
                Err(e) => ("logged".to_owned(), format!("ban failed: {e}")),
            }
        };
        self.finding(d, ev, Some(source), &action, message);
    }

    /// Re-reads the config file. On any error nothing changes.
    pub fn reload(&mut self) -> Result<serde_json::Value, String> {
        let path = self.config.path.clone();
        let new = config::load(&path, true)
            .map_err(|e| format!("reload refused, nothing changed: {e}"))?;
        if new.interfaces != self.config.interfaces || new.attach_mode != self.config.attach_mode {
            return Err(format!(
                "reload refused, nothing changed: {}: the interfaces or attach mode changed; restart the daemon to attach elsewhere",
                path.display()
            ));
        }
        for e in &self.runtime_rules {
            if let Err(m) = guard_rule(&new.management, &e.rule) {
                return Err(format!(
                    "reload refused, nothing changed: runtime rule {}: {m}",
                    e.rule.net
                ));
            }
        }
        let old = std::mem::replace(&mut self.config, new);
        if let Err(e) = self.apply(None) {
            self.config = old;
            return Err(format!("reload refused, nothing changed: {e}"));
        }
        if old.metrics_listen != self.config.metrics_listen || old.socket != self.config.socket {
            tracing::warn!(
                event = "reload_partial",
                "the metrics address and control socket change only on restart"
            );
        }
        tracing::info!(
            event = "reloaded",
            rules = self.config.rules.len(),
            "config reloaded from {}",
            path.display()
        );
        Ok(json!({ "reloaded": path.display().to_string(), "rules": self.config.rules.len() }))
    }

    fn all_rules(&self) -> Vec<(RuleEntry, &'static str)> {
        let shadowed: std::collections::HashSet<IpNet> =
            self.runtime_rules.iter().map(|e| e.rule.net).collect();
        let mut out: Vec<(RuleEntry, &'static str)> = self
            .config
            .management
            .iter()
            .map(|m| {
                (
                    RuleEntry {
                        rule: Rule::new(*m, Action::Allow),
                        comment: Some("management".into()),
                        origin: Origin::Config,
                    },
                    "management",
                )
            })
            .collect();
        out.extend(
            self.config
                .rules
                .iter()
                .filter(|e| !shadowed.contains(&e.rule.net))
                .map(|e| (e.clone(), "config")),
        );
        out.extend(self.runtime_rules.iter().map(|e| (e.clone(), "runtime")));
        out
    }

    /// Handles one control request.
    pub fn handle(&mut self, cmd: Command, latest: Option<&Snapshot>) -> Response {
        match self.dispatch(cmd, latest) {
            Ok(v) => Response::ok(v),
            Err(e) => Response::error(e),
        }
    }

    fn dispatch(
        &mut self,
        cmd: Command,
        latest: Option<&Snapshot>,
    ) -> Result<serde_json::Value, String> {
        match cmd {
            Command::Status => {
                let snap = match latest {
                    Some(s) => s.clone(),
                    None => self.snapshot(true, None).map_err(|e| format!("{e:#}"))?,
                };
                let total = |v| snap.counters.total(v);
                Ok(json!({
                    "version": env!("CARGO_PKG_VERSION"),
                    "interfaces": self.config.interfaces,
                    "attach_mode": self.config.attach_mode.to_string(),
                    "uptime_seconds": self.started.elapsed().as_secs(),
                    "policy_generation": snap.generation,
                    "rules": { "config": self.config.rules.len(), "runtime": self.runtime_rules.len(), "management": self.config.management.len() },
                    "bans_active": snap.bans_active,
                    "sources": { "tracked": snap.tracked, "capacity": snap.capacity,
                        "evicted": snap.counters.source_events[source_event::EVICTED as usize] },
                    "packets": { "pass": total(Verdict::Pass).packets, "drop": total(Verdict::Drop).packets, "monitor": total(Verdict::Monitor).packets },
                    "bytes": { "pass": total(Verdict::Pass).bytes, "drop": total(Verdict::Drop).bytes, "monitor": total(Verdict::Monitor).bytes },
                    "by_reason": Reason::ALL.iter().map(|r| (r.name(), snap.counters.packets(*r))).collect::<BTreeMap<_, _>>(),
                    "last_read_ms": snap.read_duration.as_secs_f64() * 1e3,
                }))
            }
            Command::Top { n, by } => {
                let snap = match latest {
                    Some(s) => s.clone(),
                    None => self.snapshot(true, None).map_err(|e| format!("{e:#}"))?,
                };
                if n == 0 || n > TOP_MAX {
                    return Err(format!("-n {n}: ask for 1 to {TOP_MAX} sources"));
                }
                let list = match by.as_str() {
                    "packets" => &snap.top_by_packets,
                    "bytes" => &snap.top_by_bytes,
                    "drops" => &snap.top_by_drops,
                    other => return Err(format!("--by {other}: one of packets, bytes, drops")),
                };
                Ok(json!({ "by": by, "sources": list.iter().take(n).collect::<Vec<_>>() }))
            }
            Command::RulesList => Ok(json!({
                "default": { "limit": limit_json(&self.policy().default), "monitor": self.policy().default_monitor,
                    "origin": if self.default_override.is_some() { "runtime" } else { "config" } },
                "rules": self.all_rules().iter().map(|(e, origin)| json!({
                    "cidr": e.rule.net.to_string(),
                    "action": action_name(&e.rule.action),
                    "limit": match &e.rule.action { Action::Limit(l) => limit_json(l), _ => serde_json::Value::Null },
                    "monitor": e.rule.monitor,
                    "comment": e.comment,
                    "origin": origin,
                })).collect::<Vec<_>>(),
            })),
            Command::RulesAdd {
                cidr,
                action,
                limit,
                monitor,
                comment,
            } => {
                let net = parse_cidr(&cidr)?;
                if self.all_rules().iter().any(|(e, _)| e.rule.net == net) {
                    return Err(format!(
                        "{net} already has a rule; `tollgate rules remove {net}` first, or `tollgate limit set --cidr {net}` to change its numbers"
                    ));
                }
                let rule = rule_from_saved(&SavedRule {
                    cidr: net.to_string(),
                    action,
                    limit,
                    monitor,
                    comment: comment.clone(),
                })?;
                guard_rule(&self.config.management, &rule)?;
                self.runtime_rules.push(RuleEntry {
                    rule: rule.clone(),
                    comment,
                    origin: Origin::Runtime,
                });
                if let Err(e) = self.apply(None) {
                    self.runtime_rules.pop();
                    return Err(e);
                }
                self.save()?;
                tracing::info!(event = "rule_added", cidr = %self.redact.net(net), action = action_name(&rule.action), "runtime rule added");
                Ok(json!({ "added": net.to_string() }))
            }
            Command::RulesRemove { cidr } => {
                let net = parse_cidr(&cidr)?;
                let Some(i) = self.runtime_rules.iter().position(|e| e.rule.net == net) else {
                    if self.config.rules.iter().any(|e| e.rule.net == net)
                        || self.config.management.contains(&net)
                    {
                        return Err(format!(
                            "the rule for {net} comes from {}; remove it there and run `tollgate reload`",
                            self.config.path.display()
                        ));
                    }
                    return Err(format!(
                        "no rule for {net}; `tollgate rules list` shows them"
                    ));
                };
                let removed = self.runtime_rules.remove(i);
                if let Err(e) = self.apply(None) {
                    self.runtime_rules.insert(i, removed);
                    return Err(e);
                }
                self.save()?;
                tracing::info!(event = "rule_removed", cidr = %self.redact.net(net), "runtime rule removed");
                Ok(json!({ "removed": net.to_string() }))
            }
            Command::LimitShow => {
                let p = self.policy();
                Ok(json!({
                    "default": { "limit": limit_json(&p.default), "monitor": p.default_monitor },
                    "rules": self.all_rules().iter().filter_map(|(e, origin)| match &e.rule.action {
                        Action::Limit(l) => Some(json!({ "cidr": e.rule.net.to_string(), "limit": limit_json(l), "monitor": e.rule.monitor, "origin": origin })),
                        _ => None,
                    }).collect::<Vec<_>>(),
                }))
            }
            Command::LimitSet {
                cidr,
                limit,
                monitor,
            } => {
                let l = parse_limit(&limit)?;
                match cidr {
                    None => {
                        let old = self.default_override;
                        let monitor = monitor.unwrap_or(self.policy().default_monitor);
                        self.default_override = Some((l, monitor));
                        if let Err(e) = self.apply(None) {
                            self.default_override = old;
                            return Err(e);
                        }
                        self.save()?;
                        tracing::info!(event = "limit_set", "default limit changed");
                        Ok(json!({ "default": limit_json(&l), "monitor": monitor }))
                    }
                    Some(c) => {
                        let net = parse_cidr(&c)?;
                        let current = self
                            .all_rules()
                            .into_iter()
                            .find(|(e, _)| e.rule.net == net);
                        let Some((entry, _)) = current else {
                            return Err(format!(
                                "no rule for {net}; add one with `tollgate rules add {net} --action limit ...`"
                            ));
                        };
                        if !matches!(entry.rule.action, Action::Limit(_)) {
                            return Err(format!(
                                "the rule for {net} is `{}`, not `limit`",
                                action_name(&entry.rule.action)
                            ));
                        }
                        let rule = Rule {
                            net,
                            action: Action::Limit(l),
                            monitor: monitor.unwrap_or(entry.rule.monitor),
                        };
                        guard_rule(&self.config.management, &rule)?;
                        let saved = self.runtime_rules.clone();
                        self.runtime_rules.retain(|e| e.rule.net != net);
                        self.runtime_rules.push(RuleEntry {
                            rule: rule.clone(),
                            comment: entry.comment,
                            origin: Origin::Runtime,
                        });
                        if let Err(e) = self.apply(None) {
                            self.runtime_rules = saved;
                            return Err(e);
                        }
                        self.save()?;
                        tracing::info!(event = "limit_set", cidr = %self.redact.net(net), "rule limit changed");
                        Ok(
                            json!({ "cidr": net.to_string(), "limit": limit_json(&l), "monitor": rule.monitor }),
                        )
                    }
                }
            }
            Command::BanAdd { cidr, ttl, reason } => {
                let net = parse_cidr(&cidr)?;
                let ttl = units::duration(&ttl).map_err(|e| format!("--ttl: {e}"))?;
                if ttl.is_zero() || ttl > MAX_BAN {
                    return Err(format!(
                        "--ttl {}: between 1s and 30d; for a permanent block add a deny rule",
                        units_fmt(ttl)
                    ));
                }
                guard_ban(&self.config.management, &net)?;
                let until = monotonic_ns() + ttl.as_nanos() as u64;
                self.tg.maps.ban(net, until).map_err(|e| e.to_string())?;
                self.bans.insert(
                    net,
                    BanInfo {
                        until_mono_ns: until,
                        until_unix_ms: unix_ms() + ttl.as_millis() as u64,
                        reason: reason.clone(),
                    },
                );
                self.save()?;
                *self.bans_by_reason.entry("manual".into()).or_default() += 1;
                let mut e = event(
                    "ban_added",
                    Some(self.redact.net(net)),
                    "banned",
                    format!(
                        "banned for {}s by an operator: {}",
                        ttl.as_secs(),
                        reason.as_deref().unwrap_or("no reason given")
                    ),
                );
                e.evidence
                    .insert("ttl_seconds", [ttl.as_secs() as f64, 0.0]);
                self.events.push(e);
                Ok(json!({ "banned": net.to_string(), "ttl_seconds": ttl.as_secs() }))
            }
            Command::BanList => {
                let now = coarse_ns();
                Ok(
                    json!({ "bans": self.bans.iter().filter(|(_, b)| b.until_mono_ns > now).map(|(n, b)| json!({
                    "cidr": n.to_string(),
                    "remaining_seconds": (b.until_mono_ns - now) / 1_000_000_000,
                    "reason": b.reason,
                })).collect::<Vec<_>>() }),
                )
            }
            Command::BanRemove { cidr } => {
                let net = parse_cidr(&cidr)?;
                if self.bans.remove(&net).is_none() {
                    return Err(format!("no ban on {net}; `tollgate ban list` shows them"));
                }
                self.tg.maps.unban(net).map_err(|e| e.to_string())?;
                self.save()?;
                let source = self.redact.net(net);
                self.events.push(event(
                    "ban_removed",
                    Some(source),
                    "unbanned",
                    "ban lifted by an operator".into(),
                ));
                Ok(json!({ "unbanned": net.to_string() }))
            }
            Command::Reload => self.reload(),
            Command::Events { since } => Ok(json!({ "events": self.events.since(since) })),
        }
    }
}

fn units_fmt(d: Duration) -> String {
    format!("{}s", d.as_secs())
}

type Shared = Arc<Mutex<Core>>;
type Latest = Arc<Mutex<Option<Arc<Snapshot>>>>;

fn lock(core: &Shared) -> std::sync::MutexGuard<'_, Core> {
    core.lock().unwrap_or_else(|e| e.into_inner())
}

/// Binds the control socket: stale file removed, mode 0660, optional group.
fn bind_socket(cfg: &Config) -> anyhow::Result<UnixListener> {
    let path = &cfg.socket;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if path.exists() {
        std::fs::remove_file(path)
            .with_context(|| format!("removing the stale socket {}", path.display()))?;
    }
    let l = UnixListener::bind(path)
        .with_context(|| format!("binding the control socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    if let Some(g) = &cfg.socket_group {
        let gid = control::group_id(g)
            .with_context(|| format!("control.group: no group `{g}` on this host"))?;
        std::os::unix::fs::chown(path, None, Some(gid))?;
    }
    Ok(l)
}

async fn serve_client(
    stream: tokio::net::UnixStream,
    core: Shared,
    latest: Latest,
    allowed_gid: Option<u32>,
) {
    use std::os::fd::AsRawFd;
    let peer = control::peer_credentials(stream.as_raw_fd());
    let (read, mut write) = stream.into_split();
    async fn deny(w: &mut tokio::net::unix::OwnedWriteHalf, msg: String) {
        let line = serde_json::to_string(&Response::error(msg)).unwrap_or_default();
        let _ = w.write_all(format!("{line}\n").as_bytes()).await;
    }
    let peer = match peer {
        Ok(p) => p,
        Err(e) => return deny(&mut write, format!("cannot read your credentials: {e}")).await,
    };
    let me = unsafe { libc::geteuid() };
    let permitted = peer.uid == 0
        || peer.uid == me
        || allowed_gid.is_some_and(|g| control::user_in_group(peer.uid, peer.gid, g));
    if !permitted {
        tracing::warn!(
            event = "control_refused",
            uid = peer.uid,
            pid = peer.pid,
            "control request refused"
        );
        let msg = format!(
            "permission denied: uid {} is not root{}",
            peer.uid,
            if allowed_gid.is_some() {
                " and not in the control group"
            } else {
                "; set control.group in the config to let a group in"
            }
        );
        return deny(&mut write, msg).await;
    }
    let mut reader = BufReader::new(read);
    loop {
        let mut buf = Vec::new();
        let n = match (&mut reader)
            .take(control::MAX_REQUEST as u64 + 1)
            .read_until(b'\n', &mut buf)
            .await
        {
            Ok(n) => n,
            Err(_) => return,
        };
        if n == 0 {
            return;
        }
        let oversized = buf.len() > control::MAX_REQUEST && !buf.ends_with(b"\n");
        let resp = if oversized {
            Response::error(format!(
                "request longer than {} bytes; refused (one request per line, a few hundred bytes each)",
                control::MAX_REQUEST
            ))
        } else {
            match std::str::from_utf8(&buf)
                .map_err(|_| "the request is not UTF-8".to_owned())
                .and_then(|l| control::parse_request(l.trim()))
            {
                Err(e) => Response::error(e),
                Ok(req) => {
                    let snap = latest.lock().unwrap_or_else(|e| e.into_inner()).clone();
                    let core = core.clone();
                    tokio::task::spawn_blocking(move || {
                        lock(&core).handle(req.command, snap.as_deref())
                    })
                    .await
                    .unwrap_or_else(|_| {
                        Response::error("the request handler failed; see the daemon's log")
                    })
                }
            }
        };
        let line = serde_json::to_string(&resp).unwrap_or_default();
        if write
            .write_all(format!("{line}\n").as_bytes())
            .await
            .is_err()
            || oversized
        {
            return;
        }
    }
}

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let redact = Redactor::new(&config.log)?;
    let interval = config.interval;
    let scan_every = (config.scan_interval.as_millis() / interval.as_millis().max(1)).max(1) as u64;
    let top_n = config.top_talkers;
    let metrics_addr = config.metrics_listen;
    let socket_path: PathBuf = config.socket.clone();
    let mut core = Core::new(config.clone(), redact)?;
    core.attach_all()?;
    let core: Shared = Arc::new(Mutex::new(core));
    let latest: Latest = Arc::new(Mutex::new(None));
    let metrics = Metrics::new(top_n);

    let listener = bind_socket(&config)?;
    let allowed_gid = config.socket_group.as_deref().and_then(control::group_id);
    let http = tokio::net::TcpListener::bind(metrics_addr)
        .await
        .with_context(|| format!("binding the metrics address {metrics_addr} (metrics.listen)"))?;
    tracing::info!(event = "ready", metrics = %metrics_addr, socket = %socket_path.display(), "serving");
    crate::notify::notify(&format!(
        "READY=1\nSTATUS=enforcing on {}; metrics on {metrics_addr}",
        config.interfaces.join(", ")
    ));
    let watchdog = crate::notify::watchdog_interval().map(|every| {
        // Pets only while the map owner answers: a wedged daemon is
        // restarted (the kernel keeps enforcing meanwhile).
        let core = core.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let c = core.clone();
                if tokio::task::spawn_blocking(move || lock(&c).tg.maps.runtime_config().is_ok())
                    .await
                    .unwrap_or(false)
                {
                    crate::notify::notify("WATCHDOG=1");
                }
            }
        })
    });

    let stats = {
        let (core, latest, metrics) = (core.clone(), latest.clone(), metrics.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let mut n: u64 = 0;
            loop {
                tick.tick().await;
                let c = core.clone();
                let prev = latest.lock().unwrap_or_else(|e| e.into_inner()).clone();
                let walk = n.is_multiple_of(scan_every);
                n += 1;
                let res = tokio::task::spawn_blocking(move || {
                    let mut core = lock(&c);
                    core.sweep_bans();
                    let snap = core.snapshot(walk, prev.as_deref())?;
                    core.detect(&snap);
                    Ok::<_, anyhow::Error>(snap)
                })
                .await;
                match res {
                    Ok(Ok(s)) => {
                        metrics.update(&s);
                        *latest.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(s));
                    }
                    Ok(Err(e)) => tracing::warn!(event = "read_failed", "reading the maps: {e:#}"),
                    Err(e) => tracing::warn!(event = "read_failed", "reading the maps: {e}"),
                }
            }
        })
    };
    let exporter = tokio::spawn(async move {
        if let Err(e) = axum::serve(http, exporter::router(metrics)).await {
            tracing::error!(event = "exporter_failed", "metrics server: {e}");
        }
    });
    let control = {
        let (core, latest) = (core.clone(), latest.clone());
        tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, _)) => {
                        tokio::spawn(serve_client(
                            stream,
                            core.clone(),
                            latest.clone(),
                            allowed_gid,
                        ));
                    }
                    Err(e) => tracing::warn!(event = "control_accept_failed", "{e}"),
                }
            }
        })
    };

    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => {
                crate::notify::notify("RELOADING=1");
                let c = core.clone();
                match tokio::task::spawn_blocking(move || lock(&c).reload()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => tracing::error!(event = "reload_failed", "{e}"),
                    Err(e) => tracing::error!(event = "reload_failed", "{e}"),
                }
                crate::notify::notify("READY=1");
            }
        }
    }
    tracing::info!(event = "stopping", "stopping");
    crate::notify::notify("STOPPING=1");
    if let Some(w) = watchdog {
        w.abort();
    }
    stats.abort();
    exporter.abort();
    control.abort();
    let _ = std::fs::remove_file(&socket_path);
    let mut core = lock(&core);
    if let Err(e) = core.save() {
        tracing::warn!(event = "state_save_failed", "{e}");
    }
    core.exit()
}
