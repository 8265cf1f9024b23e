//! The detectors' memory and their reading of each interval: host-wide
//! rates against learned baselines, the hot list (sources over their
//! limit), and the top talkers of each walk of the source table. Judging
//! is pure logic in `monitor_common::detect`; this file keeps what it
//! needs between intervals and returns `Finding`s, which `respond` acts on.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use ipnet::IpNet;
use monitor_common::{
    detect::{
        Detector, Evidence, Ewma, GlobalDetector, GlobalRates, SourceRates, Thresholds,
        judge_source, ports_from_sketch,
    },
    maps::{MAX_HOT, signal, source_event},
    reason::Reason,
    types::{SourceKey, SourceState},
};

use crate::{
    clock::coarse_ns,
    maps::{Maps, source_key_net},
    snapshot::{Snapshot, Talker},
};

/// How long a source's destination-port sketch collects before it starts
/// over: `detect.scan_ports` distinct ports within it mark a scan (about
/// 7 new ports a second sustained, or a burst). It was one walk of the
/// table when walks came every 15 s; walks are every second now, and a
/// window that short would miss the slower scans.
pub const PORT_WINDOW: Duration = Duration::from_secs(15);

/// What the detectors found this interval.
#[derive(Clone, Debug)]
pub enum Finding {
    /// One source prefix: answered by banning it.
    Source {
        net: IpNet,
        detector: Detector,
        evidence: Evidence,
    },
    /// A SYN flood host-wide: answered by limiting new connections to
    /// twice the usual SYN rate (`usual_syns_per_sec`).
    SynFlood {
        evidence: Evidence,
        usual_syns_per_sec: f64,
    },
    /// Something host-wide with no one source to ban: reported.
    HostWide {
        detector: Detector,
        evidence: Evidence,
    },
}

/// What this interval's per-source findings explain of the host-wide
/// rates, per second: a flood from a few sources that their bans answer is
/// not evidence of a host-wide attack, so it must not also bring the
/// host-wide SYN limit down on every new client (a source found twice, on
/// the hot list and in the walk, counts once). Only heavy hitters explain:
/// a source with at least `HEAVY` of the host's SYNs. A spread of hundreds
/// of spoofed sources, each also found, explains nothing: banning them one
/// by one is slower than the host-wide limit.
#[derive(Default)]
struct Explained(HashMap<IpNet, (f64, f64, f64)>);

/// The share of the host's SYNs that makes a found source a heavy hitter.
const HEAVY: f64 = 0.1;

impl Explained {
    /// `net` sent `packets` and `syns` over the last `window` seconds.
    fn add(&mut self, net: IpNet, packets: u64, syns: u64, window: f64) {
        let e = self.0.entry(net).or_insert((0.0, 0.0, 0.0));
        if syns as f64 > e.1 {
            *e = (packets as f64, syns as f64, window.max(1e-3));
        }
    }

    /// Packets and SYNs the heavy hitters among the found sources account
    /// for over the interval's `secs`, of the host's `syns` in that time:
    /// each source's rate over its window, for as much of the interval as
    /// the window covers.
    fn over(&self, secs: f64, syns: u64) -> (u64, u64) {
        let (mut packets, mut their_syns) = (0.0, 0.0);
        for (p, s, window) in self.0.values() {
            let share = secs.min(*window) / window;
            if s * share >= HEAVY * syns as f64 {
                packets += p * share;
                their_syns += s * share;
            }
        }
        (packets as u64, their_syns as u64)
    }
}

/// Host-wide totals at an interval: time, packets, signals, sources
/// created, packets their prefix's budget refused.
type Totals = (Instant, u64, [u64; signal::COUNT as usize], u64, u64);

/// What the detectors remember between intervals.
pub struct Detection {
    global: GlobalDetector,
    last_global: Option<Totals>,
    /// Top talkers at the previous walk, by prefix, for per-source rates.
    last_walk: Option<(Instant, HashMap<IpNet, Talker>)>,
    /// When the current destination-port window began (see `PORT_WINDOW`).
    port_window_since: Instant,
    /// Hot sources at the previous interval, for their rates.
    hot_prev: HashMap<SourceKey, (Instant, SourceState)>,
    /// A typical busy source's packet rate, from the last walk.
    typical_pps: f64,
    /// Host-wide SYN rate outside SYN floods: what the SYN limit allows.
    syn_baseline: Ewma,
    /// The last interval looked like a host-wide SYN flood (see
    /// `judge_host`: one from few sources must look so twice).
    syn_flood_before: bool,
    /// When the last calm interval ended (coarse ns; `GlobalRates::calm`).
    calm_ns: u64,
    /// The kernel's count of reports the full hot list refused, as last
    /// said in the log (at the first interval: as found), and when it was
    /// said (see `say_hot_lost`).
    hot_lost_said: Option<(u64, Option<Instant>)>,
    /// The last interval's host-wide rates, as judged (`detect show`).
    last_rates: Option<GlobalRates>,
}

/// What the detectors have learned and last read, for `detect show`.
pub struct Learned {
    /// Host-wide packets/s: the baseline's mean and standard deviation.
    pub pps: (f64, f64),
    /// New sources per second: mean and standard deviation.
    pub new_sources: (f64, f64),
    /// Host-wide SYNs/s outside SYN floods.
    pub syns: f64,
    /// A typical busy source's packets/s (0: too few sources to say).
    pub typical_source_pps: f64,
    /// Intervals left before the baselines are trusted.
    pub warmup_left: u64,
    /// The last interval's host-wide rates, per second: packets, SYNs,
    /// new sources, bogon sources, prefix refusals.
    pub last: Option<[f64; 5]>,
}

/// How far back a storm's start may be dated: sources first seen within
/// this before its finding are taken for the storm's (see `storm_began`).
const STORM_LOOKBACK: Duration = Duration::from_secs(10);

impl Default for Detection {
    fn default() -> Self {
        Self {
            global: GlobalDetector::default(),
            last_global: None,
            last_walk: None,
            port_window_since: Instant::now(),
            hot_prev: HashMap::new(),
            typical_pps: 0.0,
            syn_baseline: Ewma::new(0.01),
            syn_flood_before: false,
            calm_ns: coarse_ns(),
            hot_lost_said: None,
            last_rates: None,
        }
    }
}

/// The median packet rate of the sources seen in both walks: what a
/// typical busy source sends, for the flood detector's relative line.
/// With fewer than five sources there is no "typical" (0): the absolute
/// line alone decides.
fn median_pps(cur: &HashMap<IpNet, Talker>, prev: &HashMap<IpNet, Talker>, secs: f64) -> f64 {
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

/// A source's rates since `old` (seen at `at`), or over its whole life
/// the first time it is hot (a flood's source is new).
pub(super) fn hot_rates(
    st: &SourceState,
    old: Option<&(Instant, SourceState)>,
    now: Instant,
) -> SourceRates {
    match old {
        Some((at, old)) => SourceRates {
            packets: st.packets.saturating_sub(old.packets),
            bytes: st.bytes.saturating_sub(old.bytes),
            syns: st.syns.saturating_sub(old.syns),
            acks: st.acks.saturating_sub(old.acks),
            distinct_ports: ports_from_sketch(st.port_sketch),
            secs: now.duration_since(*at).as_secs_f64(),
        },
        None => SourceRates {
            packets: st.packets,
            bytes: st.bytes,
            syns: st.syns,
            acks: st.acks,
            distinct_ports: ports_from_sketch(st.port_sketch),
            secs: (st.last_seen_ns.saturating_sub(st.first_seen_ns) as f64 / 1e9).max(1.0),
        },
    }
}

impl Detection {
    /// What the detectors have learned and last read.
    pub fn learned(&self) -> Learned {
        let band = |e: &Ewma| (e.mean, e.var.sqrt());
        Learned {
            pps: band(&self.global.pps),
            new_sources: band(&self.global.new_sources),
            syns: self.syn_baseline.mean,
            typical_source_pps: self.typical_pps,
            warmup_left: self.global.warmup.saturating_sub(self.global.pps.n),
            last: self.last_rates.as_ref().map(|g| {
                let per = |n: u64| n as f64 / g.secs.max(1e-3);
                [
                    per(g.packets),
                    per(g.syns),
                    per(g.new_sources),
                    per(g.bogon_sources),
                    per(g.prefix_limited),
                ]
            }),
        }
    }

    /// When the storm found now began, as far as the counters tell: the
    /// end of the last calm interval, at most `STORM_LOOKBACK` ago. The
    /// sources first seen since came with the storm (or during it), so
    /// they must show they are real; a storm is found an interval or two
    /// after it begins, and its sources would otherwise pass for sources
    /// that were already sending.
    pub fn storm_began(&self) -> u64 {
        let floor = coarse_ns().saturating_sub(STORM_LOOKBACK.as_nanos() as u64);
        self.calm_ns.max(floor).max(1)
    }

    /// Judges what changed since the last interval: host-wide rates, the
    /// hot list, and (when `snap` walked the table) the top talkers.
    /// `banned`: whether a prefix is banned now (its SYNs are counted as
    /// answered already, so a finding on it explains nothing more).
    pub fn judge(
        &mut self,
        maps: &mut Maps,
        snap: &Snapshot,
        t: &Thresholds,
        banned: &dyn Fn(&IpNet) -> bool,
    ) -> Vec<Finding> {
        let now = Instant::now();
        let mut findings = Vec::new();
        let Ok(signals) = maps.signals() else {
            return findings;
        };
        self.say_hot_lost(signals[signal::HOT_LOST as usize], now);
        let mut explained = Explained::default();
        self.judge_hot(maps, now, t, &mut findings, &mut explained);
        if snap.walked {
            self.judge_walk(snap, now, t, &mut findings, &mut explained);
            // A new port window once the current one has lasted its
            // length, however often the table is walked.
            if now.duration_since(self.port_window_since) >= PORT_WINDOW {
                self.port_window_since = now;
                if let Err(e) = maps.next_port_window() {
                    tracing::warn!(event = "port_window_failed", "{e}");
                }
            }
        }
        explained.0.retain(|net, _| !banned(net));
        self.judge_host(snap, signals, now, t, &explained, &mut findings);
        findings
    }

    /// Host-wide rates, less what bans, deny rules and this interval's
    /// per-source findings answer, against their baselines.
    fn judge_host(
        &mut self,
        snap: &Snapshot,
        signals: [u64; signal::COUNT as usize],
        now: Instant,
        t: &Thresholds,
        explained: &Explained,
        out: &mut Vec<Finding>,
    ) {
        let packets: u64 = Reason::ALL.iter().map(|r| snap.counters.packets(*r)).sum();
        // Never-seen sources: those that claimed a slot and, during a
        // storm, those judged on probation (a storm's sources never claim).
        let created = snap.counters.source_events[source_event::CREATED as usize]
            + snap.counters.source_events[source_event::PROBATION as usize];
        let syn = signal::SYN as usize;
        let bogon = signal::BOGON_SOURCE as usize;
        let answered = signal::SYN_ANSWERED as usize;
        let prefix_limited = snap.counters.packets(Reason::PrefixLimited);
        if let Some((at, p0, s0, c0, l0)) = self.last_global {
            let secs = now.duration_since(at).as_secs_f64();
            let all_syns = signals[syn].saturating_sub(s0[syn]);
            let packets = packets.saturating_sub(p0);
            let (their_packets, their_syns) = explained.over(secs, all_syns);
            // Only SYNs that no ban or deny rule answers and that no heavy
            // hitter found this interval sends (its ban answers them now):
            // bans are renewed while their sources keep attacking, so they
            // do not lapse under a host-wide measure either.
            let syns = all_syns
                .saturating_sub(signals[answered].saturating_sub(s0[answered]))
                .saturating_sub(their_syns);
            let g = GlobalRates {
                packets: packets.saturating_sub(their_packets),
                syns,
                // Host-wide, every packet that is not a SYN stands in for
                // the completed handshakes (a SYN flood's packets are
                // nearly all SYNs; a healthy host's are not).
                acks: packets.saturating_sub(all_syns),
                new_sources: created.saturating_sub(c0),
                bogon_sources: signals[bogon].saturating_sub(s0[bogon]),
                prefix_limited: prefix_limited.saturating_sub(l0),
                secs,
            };
            if g.calm(t) {
                self.calm_ns = coarse_ns();
            }
            self.last_rates = Some(g);
            let mut found = self.global.judge(&g, t);
            let syn_flood = found
                .iter()
                .flatten()
                .any(|(d, _)| *d == Detector::GlobalSynFlood);
            // A flood from one source looks host-wide for its first
            // moments, before it goes over its limit and a per-source
            // detector finds it (then it is explained, above). Without
            // the mark of spoofing (many new sources), a SYN flood must
            // last two intervals to be host-wide.
            let spread = g.new_sources as f64 / secs.max(1e-3) >= t.new_sources_per_sec / 20.0;
            if syn_flood && !spread && !self.syn_flood_before {
                for f in &mut found {
                    if f.as_ref()
                        .is_some_and(|(d, _)| *d == Detector::GlobalSynFlood)
                    {
                        *f = None;
                    }
                }
            }
            self.syn_flood_before = syn_flood;
            if !syn_flood {
                self.syn_baseline.observe(g.syns as f64 / g.secs.max(1e-3));
            }
            for (detector, evidence) in found.into_iter().flatten() {
                out.push(match detector {
                    Detector::GlobalSynFlood => Finding::SynFlood {
                        evidence,
                        usual_syns_per_sec: self.syn_baseline.mean,
                    },
                    _ => Finding::HostWide { detector, evidence },
                });
            }
        }
        self.last_global = Some((now, packets, signals, created, prefix_limited));
    }

    /// Sources over their limit this interval: judged now, not at the
    /// next walk of the whole table.
    fn judge_hot(
        &mut self,
        maps: &mut Maps,
        now: Instant,
        t: &Thresholds,
        out: &mut Vec<Finding>,
        explained: &mut Explained,
    ) {
        let hot = match maps.take_hot() {
            Ok(hot) => hot,
            Err(e) => return tracing::warn!(event = "hot_read_failed", "{e}"),
        };
        let cfg = maps.runtime_config().unwrap_or_default();
        let mut seen = HashMap::new();
        for key in hot {
            let Ok(Some(st)) = maps.source(&key) else {
                continue;
            };
            let rates = hot_rates(&st, self.hot_prev.get(&key), now);
            let first_seen_ns = st.first_seen_ns;
            seen.insert(key, (now, st));
            if let Some((detector, evidence)) = judge_source(&rates, self.typical_pps, t) {
                let net = source_key_net(&key, &cfg);
                // What it sent in this interval: since the last reading,
                // or its whole life the first time it is hot (its rate is
                // judged over at least a second, its share of this
                // interval's SYNs over the time it has been sending).
                let window = if self.hot_prev.contains_key(&key) {
                    rates.secs
                } else {
                    coarse_ns().saturating_sub(first_seen_ns) as f64 / 1e9
                };
                explained.add(net, rates.packets, rates.syns, window);
                out.push(Finding::Source {
                    net,
                    detector,
                    evidence,
                });
            }
        }
        self.hot_prev = seen;
    }

    /// Says, at most once a minute, that over-limit sources found the hot
    /// list full (`lost`: the kernel's count so far) and what judges them
    /// instead; `tollgate_hot_reports_lost_total` counts them all.
    fn say_hot_lost(&mut self, lost: u64, now: Instant) {
        // The kernel's count outlives daemons: start from it, so a restart
        // does not say a predecessor's losses again.
        let (said, at) = *self.hot_lost_said.get_or_insert((lost, None));
        let quiet = at.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(60));
        if lost > said && quiet {
            tracing::warn!(
                event = "hot_list_full",
                lost = lost - said,
                "{} over-limit sources found the hot list full ({MAX_HOT} per interval) since this was last said; \
                 they are judged at the table walk, among its top talkers, and in aggregate by the storm detectors \
                 (spoofed_storm, prefix_storm in `tollgate events`)",
                lost - said
            );
            self.hot_lost_said = Some((lost, Some(now)));
        }
    }

    /// The top talkers of this walk against the previous one.
    fn judge_walk(
        &mut self,
        snap: &Snapshot,
        now: Instant,
        t: &Thresholds,
        out: &mut Vec<Finding>,
        explained: &mut Explained,
    ) {
        let top: HashMap<IpNet, Talker> = snap
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
                if let Some((detector, evidence)) = judge_source(&r, typical, t) {
                    explained.add(*net, r.packets, r.syns, r.secs);
                    out.push(Finding::Source {
                        net: *net,
                        detector,
                        evidence,
                    });
                }
            }
        }
        self.last_walk = Some((now, top));
    }
}
