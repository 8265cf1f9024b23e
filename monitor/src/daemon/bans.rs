//! The ban book: every ban the daemon placed or restored, with its end on
//! both clocks (the kernel's monotonic one it enforces by, and Unix time
//! for the state file), each prefix's offences (for escalating lengths)
//! and the count of bans by reason. The kernel writes go through
//! `maps::bans`; this file is the only caller.

use std::{
    collections::{BTreeMap, HashMap},
    time::Duration,
};

use ipnet::IpNet;

use crate::{
    clock::monotonic_ns,
    maps::{MapError, Maps},
    policy::parse_cidr,
    state::{SavedBan, unix_ms},
};

#[derive(Clone, Debug)]
pub struct BanInfo {
    pub until_mono_ns: u64,
    pub until_unix_ms: u64,
    pub reason: Option<String>,
    /// Who placed it (`Origin`'s name): `cli`, `detector`, `crowdsec`,
    /// `kernel` (found in the kernel at start, unknown to the state file).
    pub origin: String,
    /// The scenario behind it: `tollgate/<detector>`, or CrowdSec's.
    pub scenario: Option<String>,
}

/// Who placed a ban, and under what it is counted and described.
pub struct BanBy<'a> {
    pub origin: &'a str,
    /// `tollgate_bans_total{reason}`: `manual`, a detector, `crowdsec`.
    pub count_as: &'a str,
    pub scenario: Option<String>,
}

#[derive(Debug, Default)]
pub struct BanBook {
    bans: BTreeMap<IpNet, BanInfo>,
    /// Offences per prefix, for escalating ban lengths.
    offences: HashMap<IpNet, usize>,
    /// Bans placed so far, by reason (a detector's name, or `manual`).
    by_reason: BTreeMap<String, u64>,
}

impl BanBook {
    /// A book that continues the counts of `by_reason` (from the state
    /// file).
    pub fn with_counts(by_reason: BTreeMap<String, u64>) -> Self {
        Self {
            by_reason,
            ..Self::default()
        }
    }

    /// Bans `net` for `ttl` in the kernel and the book, placed `by`.
    pub fn place(
        &mut self,
        maps: &mut Maps,
        net: IpNet,
        ttl: Duration,
        reason: Option<String>,
        by: BanBy,
    ) -> Result<(), MapError> {
        let until = monotonic_ns() + ttl.as_nanos() as u64;
        maps.ban(net, until)?;
        self.bans.insert(
            net,
            BanInfo {
                until_mono_ns: until,
                until_unix_ms: unix_ms() + ttl.as_millis() as u64,
                reason,
                origin: by.origin.to_owned(),
                scenario: by.scenario,
            },
        );
        *self.by_reason.entry(by.count_as.to_owned()).or_default() += 1;
        Ok(())
    }

    /// Lifts the ban on exactly `net`; false if there was none.
    pub fn lift(&mut self, maps: &mut Maps, net: IpNet) -> Result<bool, MapError> {
        if self.bans.remove(&net).is_none() {
            return Ok(false);
        }
        maps.unban(net)?;
        Ok(true)
    }

    /// Removes the bans that ended by `now` (kernel ns) from the book and
    /// the kernel; returns them.
    pub fn sweep(&mut self, maps: &mut Maps, now: u64) -> Vec<IpNet> {
        let expired: Vec<IpNet> = self
            .bans
            .iter()
            .filter(|(_, b)| b.until_mono_ns <= now)
            .map(|(n, _)| *n)
            .collect();
        for net in &expired {
            self.bans.remove(net);
            if let Err(e) = maps.unban(*net) {
                tracing::warn!(event = "ban_sweep_failed", "removing an expired ban: {e}");
            }
        }
        expired
    }

    /// The ban on `net`, if any (in force or not yet swept).
    pub fn get(&self, net: &IpNet) -> Option<&BanInfo> {
        self.bans.get(net)
    }

    /// Bans in force at `now` (kernel ns).
    pub fn in_force(&self, now: u64) -> impl Iterator<Item = (&IpNet, &BanInfo)> {
        self.bans.iter().filter(move |(_, b)| b.until_mono_ns > now)
    }

    pub fn active(&self, now: u64) -> usize {
        self.in_force(now).count()
    }

    pub fn len(&self) -> usize {
        self.bans.len()
    }

    /// How many times `net` was banned by a detector before.
    pub fn offences(&self, net: &IpNet) -> usize {
        self.offences.get(net).copied().unwrap_or(0)
    }

    pub fn offended(&mut self, net: IpNet) {
        *self.offences.entry(net).or_default() += 1;
    }

    pub fn counts(&self) -> &BTreeMap<String, u64> {
        &self.by_reason
    }

    /// Bans from the state file that have not ended, back into the kernel
    /// with the time they have left.
    pub fn restore(&mut self, maps: &mut Maps, saved: &[SavedBan]) -> Result<(), MapError> {
        let now_unix = unix_ms();
        let now_mono = monotonic_ns();
        for b in saved {
            if b.until_unix_ms <= now_unix {
                continue;
            }
            let net = match parse_cidr(&b.cidr) {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(event = "state_ban_skipped", cidr = %b.cidr, "ban not restored: {e}");
                    continue;
                }
            };
            let until = now_mono + (b.until_unix_ms - now_unix) * 1_000_000;
            maps.ban(net, until)?;
            self.bans.insert(
                net,
                BanInfo {
                    until_mono_ns: until,
                    until_unix_ms: b.until_unix_ms,
                    reason: b.reason.clone(),
                    origin: b.origin.clone(),
                    scenario: b.scenario.clone(),
                },
            );
        }
        Ok(())
    }

    /// Bans the kernel holds that the state file missed (a crash between
    /// the two writes) stay known, and expire on time; expired ones are
    /// removed.
    pub fn adopt_kernel_bans(&mut self, maps: &mut Maps) -> Result<(), MapError> {
        let now_unix = unix_ms();
        let now_mono = monotonic_ns();
        for (net, until) in maps.kernel_bans()? {
            if until <= now_mono {
                maps.unban(net)?;
            } else {
                self.bans.entry(net).or_insert_with(|| BanInfo {
                    until_mono_ns: until,
                    until_unix_ms: now_unix + (until - now_mono) / 1_000_000,
                    reason: Some("restored from the kernel".into()),
                    origin: "kernel".into(),
                    scenario: None,
                });
            }
        }
        Ok(())
    }

    /// The bans as the state file keeps them.
    pub fn saved(&self) -> Vec<SavedBan> {
        self.bans
            .iter()
            .map(|(net, b)| SavedBan {
                cidr: net.to_string(),
                until_unix_ms: b.until_unix_ms,
                reason: b.reason.clone(),
                origin: b.origin.clone(),
                scenario: b.scenario.clone(),
            })
            .collect()
    }
}
