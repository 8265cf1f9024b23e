//! What one read of the kernel maps found: counters, the top-talker
//! lists and the daemon's own tallies. The stats loop writes a `Snapshot`
//! every interval; the exporter, the control server (`status`, `top`) and
//! the detectors read it. A leaf: it depends on nothing of the daemon's.

use std::{
    collections::{BTreeMap, BinaryHeap, HashMap},
    time::Duration,
};

use monitor_common::types::{RuntimeConfig, SourceFlow, SourceKey};

use crate::{
    maps::{Counters, source_key_net},
    redact::Redactor,
};

/// Top-N lists kept per snapshot (the CLI asks for at most this many).
pub const TOP_MAX: usize = 100;

/// Why an automatic ban was not placed for want of room: `max_bans`
/// (`detect.max_bans` bans in force), `map_full` (the kernel's ban map),
/// `failed` (another map error).
pub const BANS_REFUSED: [&str; 3] = ["max_bans", "map_full", "failed"];

/// What one read of the maps found.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub counters: Counters,
    /// Interface names by counter slot (slot 0: traffic on no slot).
    pub ifaces: Vec<String>,
    pub tracked: usize,
    pub capacity: u32,
    pub bans_active: usize,
    pub rules: usize,
    pub top_by_packets: Vec<Talker>,
    pub top_by_bytes: Vec<Talker>,
    pub top_by_drops: Vec<Talker>,
    /// For the detectors: the sources with the most SYNs, and with the
    /// most distinct destination ports this window.
    pub top_by_syns: Vec<Talker>,
    pub top_by_ports: Vec<Talker>,
    pub read_duration: Duration,
    pub generation: u32,
    /// Detections so far, by detector name.
    pub detections: BTreeMap<&'static str, u64>,
    /// Bans placed so far, by reason (a detector's name, or `manual`).
    pub bans_by_reason: BTreeMap<String, u64>,
    /// Automatic bans not placed for want of room, by why
    /// (`BANS_REFUSED`).
    pub bans_refused: BTreeMap<&'static str, u64>,
    /// Over-limit sources the full hot list could not take, so far (the
    /// kernel's `signal::HOT_LOST`).
    pub hot_reports_lost: u64,
    /// Sources that gave their slots back when a storm was found, so far.
    pub storm_demoted: u64,
    /// Whether this snapshot walked the source table (top lists fresh).
    pub walked: bool,
    pub crowdsec: CrowdSecStats,
    /// When the walk behind the top lists ran (coarse ns).
    pub walk_ns: u64,
    pub cookies: CookieStats,
}

/// The CrowdSec link: configured or not, its health, what became of the
/// decisions pulled.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CrowdSecStats {
    pub configured: bool,
    pub health: crate::crowdsec::Health,
    pub decisions: BTreeMap<String, u64>,
}

/// SYN cookies: the mode, the kernel's counters and the verified sources.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CookieStats {
    /// The mode in force (`cookie_mode::*`).
    pub mode: u32,
    /// `[syn_cookies]`'s mode, if configured.
    pub configured: Option<crate::config::CookieMode>,
    pub ports: Vec<u16>,
    /// The kernel's counters, by `cookie_event::*`, summed over CPUs.
    pub events: [u64; monitor_common::syncookie::cookie_event::COUNT as usize],
    /// Sources verified and not expired (counted when the source table is
    /// walked).
    pub verified: usize,
    /// Mode changes since the daemon started.
    pub mode_changes: u64,
}

/// One source in a top-talkers list (the live view's table, the
/// daemon's `top` and metrics, the detectors' candidates).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct Talker {
    /// The source prefix, redacted as the logs are.
    pub source: String,
    pub packets: u64,
    pub bytes: u64,
    pub dropped: u64,
    pub syns: u64,
    pub acks: u64,
    /// Distinct destination ports in the current window (estimate).
    pub ports: u32,
    /// Packets per second since the previous walk; none for a source that
    /// was not on the previous walk's lists (new, or below them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pps: Option<f64>,
    /// Dropped packets per second, over the same time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drop_pps: Option<f64>,
    /// Why its packets are dropped (a `reason` name: `banned`, `deny`,
    /// `rate_limited_packets`, ...), when it has drops.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drop_reason: Option<String>,
    /// The prefix itself, for responses (never shown: `source` is).
    #[serde(skip)]
    pub net: Option<ipnet::IpNet>,
}

impl Talker {
    /// The line for source `net` (shown as `shown`) with flow record `s`
    /// and `acks` bare ACKs (kept in the source's control record).
    pub fn new(net: ipnet::IpNet, shown: String, s: &SourceFlow, acks: u64) -> Self {
        Self {
            source: shown,
            packets: s.packets,
            bytes: s.bytes,
            dropped: s.dropped,
            syns: s.syns,
            acks,
            ports: monitor_common::detect::ports_from_sketch(s.port_sketch),
            pps: None,
            drop_pps: None,
            drop_reason: None,
            net: Some(net),
        }
    }
}

/// Bounded top-K by one key.
pub struct TopK {
    k: usize,
    /// Scores at or below this are not listed: 0 until the list is full
    /// (a zero score never is), then the list's minimum.
    floor: u64,
    heap: BinaryHeap<std::cmp::Reverse<(u64, [u32; 5])>>,
    flows: HashMap<[u32; 5], SourceFlow>,
}

pub fn key_id(key: &SourceKey) -> [u32; 5] {
    [
        key.addr[0],
        key.addr[1],
        key.addr[2],
        key.addr[3],
        key.family,
    ]
}

impl TopK {
    pub fn new(k: usize) -> Self {
        Self {
            k,
            floor: 0,
            heap: BinaryHeap::new(),
            flows: HashMap::new(),
        }
    }

    /// The common case, a source at or below the list's floor, costs one
    /// comparison: a million sources are offered to five lists per sweep.
    #[inline(always)]
    pub fn offer(&mut self, score: u64, flow: &SourceFlow) {
        if score > self.floor {
            self.admit(score, flow);
        }
    }

    #[inline(never)]
    fn admit(&mut self, score: u64, flow: &SourceFlow) {
        let id = key_id(&flow.key);
        // A source seen twice (a sweep racing a claim) is listed once.
        if self.flows.contains_key(&id) {
            return;
        }
        if self.heap.len() >= self.k
            && let Some(std::cmp::Reverse((_, gone))) = self.heap.pop()
        {
            self.flows.remove(&gone);
        }
        self.heap.push(std::cmp::Reverse((score, id)));
        self.flows.insert(id, *flow);
        if self.heap.len() >= self.k {
            self.floor = self
                .heap
                .peek()
                .map_or(0, |std::cmp::Reverse((min, _))| *min);
        }
    }

    pub fn merge(&mut self, other: TopK) {
        for std::cmp::Reverse((score, id)) in other.heap {
            if let Some(f) = other.flows.get(&id) {
                self.offer(score, f);
            }
        }
    }

    /// The list, highest first, with each source's ACK count from `acks`
    /// (the sweep reads flow records only).
    pub fn into_talkers(
        self,
        cfg: &RuntimeConfig,
        redact: &Redactor,
        acks: &mut impl FnMut(&SourceKey) -> u64,
    ) -> Vec<Talker> {
        let mut v: Vec<_> = self.heap.into_iter().map(|r| r.0).collect();
        v.sort_by(|a, b| b.cmp(a));
        v.into_iter()
            .filter_map(|(_, id)| {
                let f = self.flows.get(&id)?;
                let net = source_key_net(&f.key, cfg);
                Some(Talker::new(net, redact.net(net), f, acks(&f.key)))
            })
            .collect()
    }
}

/// The top lists one walk keeps.
pub struct Tops {
    window: u32,
    pub by_packets: TopK,
    pub by_bytes: TopK,
    pub by_drops: TopK,
    pub by_syns: TopK,
    pub by_ports: TopK,
}

impl Tops {
    pub fn new(window: u32) -> Self {
        Self {
            window,
            by_packets: TopK::new(TOP_MAX),
            by_bytes: TopK::new(TOP_MAX),
            by_drops: TopK::new(TOP_MAX),
            by_syns: TopK::new(TOP_MAX),
            by_ports: TopK::new(TOP_MAX),
        }
    }

    pub fn offer(&mut self, s: &SourceFlow) {
        self.by_packets.offer(s.packets, s);
        self.by_bytes.offer(s.bytes, s);
        self.by_drops.offer(s.dropped, s);
        self.by_syns.offer(s.syns, s);
        if s.port_window == self.window {
            self.by_ports.offer(s.port_sketch.count_ones() as u64, s);
        }
    }

    /// Adds another share's lists (each source was in one share only).
    pub fn merge(&mut self, other: Tops) {
        for (mine, theirs) in [
            (&mut self.by_packets, other.by_packets),
            (&mut self.by_bytes, other.by_bytes),
            (&mut self.by_drops, other.by_drops),
            (&mut self.by_syns, other.by_syns),
            (&mut self.by_ports, other.by_ports),
        ] {
            mine.merge(theirs);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u32) -> SourceKey {
        SourceKey::v4(u32::from_ne_bytes([192, 0, 2, i as u8]), u32::MAX)
    }

    fn packets(t: TopK) -> Vec<u64> {
        let cfg = RuntimeConfig::new(0, 32, 64, 0, 0);
        t.into_talkers(&cfg, &Redactor::none(), &mut |_| 0)
            .iter()
            .map(|t| t.packets)
            .collect()
    }

    /// The top k of the scores offered, highest first, whether offered to
    /// one list or split over two and merged (as the walk's shares are).
    #[test]
    fn top_k_keeps_the_highest_and_merges() {
        let scores: Vec<u64> = (1..=200u64).map(|i| (i * 7919) % 1000 + 1).collect();
        let mut want = scores.clone();
        want.sort_unstable_by(|a, b| b.cmp(a));
        want.truncate(10);
        let flow = |i: u32, p: u64| SourceFlow {
            key: key(i),
            packets: p,
            ..Default::default()
        };
        let mut one = TopK::new(10);
        let (mut a, mut b) = (TopK::new(10), TopK::new(10));
        for (i, p) in scores.iter().enumerate() {
            one.offer(*p, &flow(i as u32, *p));
            let half = if i % 2 == 0 { &mut a } else { &mut b };
            half.offer(*p, &flow(i as u32, *p));
        }
        // A source offered twice is listed once.
        one.offer(scores[0], &flow(0, scores[0]));
        a.merge(b);
        assert_eq!(packets(one), want);
        assert_eq!(packets(a), want);
    }
}
