//! Bans: CIDRs dropped until an expiry the kernel itself checks, so a ban
//! ends on time even when no daemon is running.

use std::net::IpAddr;

use ipnet::IpNet;
use monitor_common::{
    maps::{self as names, MAX_BANS_PER_FAMILY},
    tries,
    types::family,
};

use super::{
    MapError, Maps,
    trie::{lpm_v4, lpm_v6, trie_entries, trie_is_empty},
};

impl Maps {
    /// Bans `net` until `until_ns` (monotonic), replacing any ban on the
    /// same prefix, and makes cached sources re-resolve.
    pub fn ban(&mut self, net: IpNet, until_ns: u64) -> Result<(), MapError> {
        let net = net.trunc();
        // Before the insert: a packet that reads the bit as it was is
        // judged as before the ban, never after it without it.
        self.mark_empty(tries::bans(family_of(&net)), false)?;
        let res = match net {
            IpNet::V4(n) => self.bans_v4.insert(&lpm_v4(&n), until_ns, 0),
            IpNet::V6(n) => self.bans_v6.insert(&lpm_v6(&n), until_ns, 0),
        };
        res.map_err(|source| {
            if is_full(&source) {
                // Nothing in force changed: the trie refused the new entry.
                MapError::Full {
                    map: ban_map(&net),
                    capacity: MAX_BANS_PER_FAMILY,
                    what: format!(
                        "{net} is not banned and every ban in force stays; lift bans (`tollgate ban list`, `tollgate ban remove`), shorten detect.ban_ttls, or ban a wider prefix"
                    ),
                }
            } else {
                MapError::Op {
                    map: ban_map(&net),
                    op: "inserting a ban",
                    source,
                }
            }
        })?;
        self.bump_generation()
    }

    /// Every ban in the kernel with its expiry (monotonic ns).
    pub fn kernel_bans(&self) -> Result<Vec<(IpNet, u64)>, MapError> {
        let mut out = trie_entries(&self.bans_v4, names::BANS_V4)?;
        out.extend(trie_entries(&self.bans_v6, names::BANS_V6)?);
        Ok(out)
    }

    /// Lifts the ban on exactly `net`. Returns whether there was one.
    pub fn unban(&mut self, net: IpNet) -> Result<bool, MapError> {
        let net = net.trunc();
        let res = match net {
            IpNet::V4(n) => self.bans_v4.remove(&lpm_v4(&n)),
            IpNet::V6(n) => self.bans_v6.remove(&lpm_v6(&n)),
        };
        match res {
            Ok(()) => {
                self.bump_generation()?;
                // The ban is lifted whatever this says: a mark not set
                // costs lookups only.
                if let Err(e) = self.note_empty_ban_trie(family_of(&net)) {
                    tracing::warn!(
                        event = "empty_tries_failed",
                        "marking the empty ban tries after lifting {net}: {e:#}"
                    );
                }
                Ok(true)
            }
            Err(aya::maps::MapError::KeyNotFound) => Ok(false),
            Err(source) => Err(MapError::Op {
                map: ban_map(&net),
                op: "removing a ban",
                source,
            }),
        }
    }

    /// Marks each family's ban trie empty or not as it is now, so that a
    /// never-seen source's packet looks in it only while it holds a ban
    /// (`monitor_common::tries`). The daemon's maps have one writer, so
    /// nothing is inserted between the look and the mark.
    pub fn note_empty_bans(&mut self) -> Result<(), MapError> {
        self.note_empty_ban_trie(family::IPV4)?;
        self.note_empty_ban_trie(family::IPV6)
    }

    /// `note_empty_bans` for family `fam` alone: after an unban, only its
    /// family's trie can have become empty (a sweep of many expired bans
    /// then looks at one trie per ban, not two).
    fn note_empty_ban_trie(&mut self, fam: u8) -> Result<(), MapError> {
        let empty = if fam == family::IPV4 {
            trie_is_empty(&self.bans_v4, names::BANS_V4)?
        } else {
            trie_is_empty(&self.bans_v6, names::BANS_V6)?
        };
        self.mark_empty(tries::bans(fam), empty)
    }
}

fn family_of(net: &IpNet) -> u8 {
    match net {
        IpNet::V4(_) => family::IPV4,
        IpNet::V6(_) => family::IPV6,
    }
}

fn ban_map(net: &IpNet) -> &'static str {
    match net.addr() {
        IpAddr::V4(_) => names::BANS_V4,
        IpAddr::V6(_) => names::BANS_V6,
    }
}

/// Whether a map update failed because the map is full (an LPM trie says
/// E2BIG, a hash ENOSPC... or E2BIG).
fn is_full(e: &aya::maps::MapError) -> bool {
    matches!(super::os_errno(e), Some(libc::E2BIG | libc::ENOSPC))
}
