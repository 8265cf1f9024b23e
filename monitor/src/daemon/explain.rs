//! `tollgate explain ADDR`: what applies to one address right now, read
//! from the daemon's books and the kernel's maps (its rule, ban, limit,
//! bucket levels and counters, SYN-cookie state and the events about it),
//! and what its next packet would get (`policy::next_packet`, the
//! kernel's order). Reads only: no packet is sent or counted.

use std::net::IpAddr;

use monitor_common::{
    bucket::ticks,
    syncookie::{VerifiedKey, cookie_mode},
};

use super::Daemon;
use crate::{
    clock::coarse_ns,
    control::replies::{
        BanLine, EXPLAIN_EVENTS, Explanation, LimitNumbers, NextPacket, RuleLine, TrackedSource,
    },
    maps::{source_key, source_key_net},
    policy::{Action, Levels, next_packet},
};

const NS_PER_SEC: u64 = 1_000_000_000;

impl Daemon {
    pub(super) fn explain(&self, addr: &str) -> Result<Explanation, String> {
        let ip: IpAddr = addr.trim().parse().map_err(|_| {
            format!("{addr}: not an IP address; give one address, e.g. 192.0.2.7 or 2001:db8::7")
        })?;
        let now = coarse_ns();
        let policy = self.policy();
        let rule = self
            .rules
            .all(&self.config)
            .into_iter()
            .filter(|(e, _)| e.rule.net.contains(&ip))
            .max_by_key(|(e, _)| e.rule.net.prefix_len());
        let (action, monitor) = match &rule {
            Some((e, _)) => (e.rule.action, e.rule.monitor),
            None => (Action::Limit(policy.default), policy.default_monitor),
        };
        let limit = match action {
            Action::Limit(l) => Some(l),
            _ => None,
        };
        let ban = self
            .bans
            .in_force(now)
            .filter(|(n, _)| n.contains(&ip))
            .max_by_key(|(n, _)| n.prefix_len())
            .map(|(n, b)| BanLine {
                cidr: n.to_string(),
                remaining_seconds: b.until_mono_ns.saturating_sub(now) / NS_PER_SEC,
                reason: b.reason.clone(),
                origin: b.origin.clone(),
                scenario: b.scenario.clone(),
            });

        let cfg = self.tg.maps.runtime_config().map_err(|e| e.to_string())?;
        let key = source_key(&cfg, ip);
        let source = source_key_net(&key, &cfg);
        let state = self.tg.maps.sources.get(&key).map_err(|e| e.to_string())?;
        let since_base = ticks(now.saturating_sub(cfg.clock_base_ns));
        let levels = match (&state, limit) {
            (Some(s), Some(l)) => Some(Levels::of(&l, s.pkt_tat, s.byte_tat, since_base)),
            _ => None,
        };
        let tracked = state.map(|s| TrackedSource {
            packets: s.packets,
            bytes: s.bytes,
            dropped: s.dropped,
            syns: s.syns,
            first_seen_seconds_ago: now.saturating_sub(s.first_seen_ns) / NS_PER_SEC,
            last_seen_seconds_ago: now.saturating_sub(s.last_seen_ns) / NS_PER_SEC,
            packet_tokens: levels.and_then(|l| l.packets),
            burst_packets: limit.and_then(|l| l.packets).map(|r| r.burst),
            byte_tokens: levels.and_then(|l| l.bytes),
            burst_bytes: limit.and_then(|l| l.bytes).map(|r| r.burst),
        });
        let cookie_verified = (cfg.cookie.mode != cookie_mode::OFF).then(|| {
            let vkey = match ip {
                IpAddr::V4(a) => VerifiedKey::v4(u32::from_ne_bytes(a.octets())),
                IpAddr::V6(a) => VerifiedKey::v6(&crate::maps::words(&a.octets())),
            };
            self.tg
                .maps
                .verified_until(&vkey)
                .is_some_and(|until| until > now)
        });

        // Events name sources and bans as the redactor writes them.
        let names = [
            Some(self.redact.net(source)),
            ban.as_ref()
                .and_then(|b| b.cidr.parse().ok().map(|n| self.redact.net(n))),
        ];
        let mut events: Vec<_> = self
            .events
            .since(0)
            .into_iter()
            .filter(|e| e.source.is_some() && names.contains(&e.source))
            .collect();
        events.drain(..events.len().saturating_sub(EXPLAIN_EVENTS));

        // A ban on a source that has not sent since is still enforced:
        // the kernel looks it up on the source's next packet.
        let (reason, verdict, why) = next_packet(&action, monitor, ban.is_some(), levels);
        Ok(Explanation {
            address: ip.to_string(),
            source: source.to_string(),
            rule: rule.map(|(e, origin)| RuleLine::new(&e.rule, e.comment, origin)),
            limit: limit.as_ref().map(LimitNumbers::from),
            monitor,
            ban,
            tracked,
            cookie_verified,
            events,
            next_packet: NextPacket {
                verdict: verdict.name().into(),
                reason: reason.name().into(),
                why,
            },
        })
    }
}
