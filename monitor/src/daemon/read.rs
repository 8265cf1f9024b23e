//! Reading the maps into a `Snapshot`: the counters every interval, and
//! every `sources.scan_interval` a sweep of the source table's mmap-ed
//! flow records into the top-talker lists; and the upkeep of the filter
//! the kernel asks before the source index.

use std::{collections::HashMap, time::Instant};

use ipnet::IpNet;
use monitor_common::{
    maps::signal,
    reason::Reason,
    types::{RuntimeConfig, SourceFlow, SourceKey},
};

use super::Daemon;
use crate::{
    clock::coarse_ns,
    maps::{SeenDue, source_key},
    policy::{Action, Rule},
    snapshot::{Snapshot, Talker, Tops, key_id},
};

impl Daemon {
    /// Keeps the kernel's indexed-source filter (`maps::SourceTable::keep_seen`):
    /// every `SEEN_REBUILD_EVERY` one half is cleared and, an interval or
    /// more later, rebuilt from the table and tested. A failure only
    /// leaves the old half tested (stale bits cost lookups, never a
    /// source), so it is logged and the read goes on.
    pub fn keep_source_filter(&mut self) {
        match self.tg.maps.sources.keep_seen(Instant::now()) {
            Ok((SeenDue::Fill, bits)) => tracing::debug!(
                event = "source_filter_rebuilt",
                bits,
                "rebuilt the indexed-source filter from the source table"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(
                event = "source_filter_failed",
                "rebuilding the indexed-source filter: {e:#}"
            ),
        }
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
        let base = Snapshot {
            counters,
            ifaces,
            bans_active: self.bans.active(now),
            rules: self.policy().rules.len(),
            generation: cfg.generation,
            detections: self.respond.detections().clone(),
            bans_by_reason: self.bans.counts().clone(),
            bans_refused: self.respond.bans_refused(),
            hot_reports_lost: self.tg.maps.signals()?[signal::HOT_LOST as usize],
            storm_demoted: self.respond.demoted(),
            walked: false,
            cookies: self.cookie_stats(walk, prev.map(|p| &p.cookies))?,
            crowdsec: crate::snapshot::CrowdSecStats {
                configured: self.crowdsec.running.is_some(),
                health: self
                    .crowdsec
                    .health
                    .lock()
                    .map(|h| h.clone())
                    .unwrap_or_default(),
                decisions: self.crowdsec.decisions.clone(),
            },
            ..Snapshot::default()
        };
        if let Some(p) = prev.filter(|_| !walk) {
            return Ok(Snapshot {
                tracked: p.tracked,
                capacity: p.capacity,
                top_by_packets: p.top_by_packets.clone(),
                top_by_bytes: p.top_by_bytes.clone(),
                top_by_drops: p.top_by_drops.clone(),
                top_by_syns: p.top_by_syns.clone(),
                top_by_ports: p.top_by_ports.clone(),
                read_duration: p.read_duration,
                walk_ns: p.walk_ns,
                ..base
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
        // The listed sources' ACK counts, from their control records: one
        // lookup per source however many lists it is on.
        let mut seen = HashMap::new();
        let mut acks = |k: &SourceKey| {
            *seen
                .entry(key_id(k))
                .or_insert_with(|| self.tg.maps.source(k).ok().flatten().map_or(0, |s| s.acks))
        };
        let before = Before::of(prev);
        // The rules, once per walk, for the drop reasons.
        let rules = self.policy().rules;
        let mut talkers = |t: crate::snapshot::TopK| {
            let mut v = t.into_talkers(&cfg, &self.redact, &mut acks);
            for talker in &mut v {
                if let Some(b) = &before {
                    b.rate(talker, now);
                }
                self.why_dropped(talker, &cfg, &rules, now);
            }
            v
        };
        Ok(Snapshot {
            tracked,
            capacity: self.tg.maps.max_sources(),
            top_by_packets: talkers(all.by_packets),
            top_by_bytes: talkers(all.by_bytes),
            top_by_drops: talkers(all.by_drops),
            top_by_syns: talkers(all.by_syns),
            top_by_ports: talkers(all.by_ports),
            read_duration: start.elapsed(),
            walked: true,
            walk_ns: now,
            ..base
        })
    }

    /// Why `t`'s packets are dropped, if it has drops: a drop the kernel
    /// is caching says its reason; otherwise a ban or a deny rule (of
    /// `rules`) on it.
    fn why_dropped(&self, t: &mut Talker, cfg: &RuntimeConfig, rules: &[Rule], now: u64) {
        let Some(net) = t.net.filter(|_| t.dropped > 0) else {
            return;
        };
        let key = source_key(cfg, net.addr());
        let cached = self
            .tg
            .maps
            .sources
            .drop_cache()
            .reason_of(&key, now)
            .and_then(Reason::from_u32);
        let reason = cached.or_else(|| {
            if self.bans.in_force(now).any(|(b, _)| b.contains(&net)) {
                Some(Reason::Banned)
            } else {
                rules
                    .iter()
                    .filter(|r| r.net.contains(&net))
                    .max_by_key(|r| r.net.prefix_len())
                    .filter(|r| matches!(r.action, Action::Deny))
                    .map(|_| Reason::Deny)
            }
        });
        t.drop_reason = reason.map(|r| r.name().to_owned());
    }
}

/// The previous walk's counts of the sources on its lists, for rates.
struct Before {
    at_ns: u64,
    counts: HashMap<IpNet, (u64, u64)>,
}

impl Before {
    fn of(prev: Option<&Snapshot>) -> Option<Self> {
        let p = prev.filter(|p| p.walk_ns != 0)?;
        let counts = [
            &p.top_by_packets,
            &p.top_by_bytes,
            &p.top_by_drops,
            &p.top_by_syns,
            &p.top_by_ports,
        ]
        .into_iter()
        .flatten()
        .filter_map(|t| Some((t.net?, (t.packets, t.dropped))))
        .collect();
        Some(Self {
            at_ns: p.walk_ns,
            counts,
        })
    }

    /// `t`'s rates since the previous walk, if it was on its lists.
    fn rate(&self, t: &mut Talker, now: u64) {
        let Some(&(packets, dropped)) = t.net.and_then(|n| self.counts.get(&n)) else {
            return;
        };
        let secs = now.saturating_sub(self.at_ns) as f64 / 1e9;
        if secs < 1e-3 {
            return;
        }
        t.pps = Some(t.packets.saturating_sub(packets) as f64 / secs);
        t.drop_pps = Some(t.dropped.saturating_sub(dropped) as f64 / secs);
    }
}
