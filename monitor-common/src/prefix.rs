//! Prefix budgets: what the sources of one prefix (an IPv4 /24, an IPv6
//! /48 by default) pass together. Per-source buckets bound each source;
//! a storm of hundreds of sources, each under its own limit, passes
//! hundreds of allowances, and a client rotating through the addresses of
//! its prefix gets a new allowance with each. A packet that passed its
//! source's own buckets is charged to its prefix's budget too.
//!
//! Two budgets per prefix. `all` is what the prefix's sources pass
//! together in ordinary times (off unless configured). While the daemon
//! sees a storm (`RuntimeConfig::storm_since_ns` non-zero), sources that
//! have not shown they are real are charged to the much smaller
//! `unproven` budget instead, and only they are: a source is proven if
//! it was already sending before the storm began, or if it completed a
//! SYN-cookie handshake (`syncookie`, the verified sources). So a storm
//! spends its own small budget, and the clients a prefix already had
//! keep theirs.
//!
//! Two levels, one inside the other: the fine prefix and the wide prefix
//! that holds it (an IPv4 /16, an IPv6 /32 by default), each with both
//! budgets; a packet is charged to both. Without the wide level a storm
//! of random /64s across a /32 spreads over 65,536 /48s, each far under
//! its budget, and nothing bounds the sum.

use crate::{
    bucket::BucketParams,
    types::{SourceKey, family, prefix_mask},
};

/// One level of prefix budgets: the prefix lengths (as masks) and the
/// level's two budgets.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PrefixLevel {
    /// Mask applied to an IPv4 source to form its prefix (network order).
    pub v4_mask: u32,
    /// Mixed into the slot hash (`slot_of`), chosen at random by the
    /// daemon, so no sender can aim its prefixes at another's slot; one
    /// per level, so no wide prefix shares a fine one's slot whatever the
    /// seeds (the hash is linear in its key's words: with one seed the
    /// `WIDE_KEY` mark equals a fixed change of address bits).
    pub seed: u32,
    /// Mask applied to an IPv6 source (network order, four words).
    pub v6_mask: [u32; 4],
    /// What a prefix's sources pass together; unlimited (interval 0): off.
    pub all: BucketParams,
    /// During a storm: what a prefix's unproven sources pass together.
    /// Unlimited: the storm changes nothing here.
    pub unproven: BucketParams,
}
const _: () = assert!(core::mem::size_of::<PrefixLevel>() == 56);

impl PrefixLevel {
    /// Budgets over prefixes of `v4_prefix` and `v6_prefix` bits.
    pub fn new(v4_prefix: u8, v6_prefix: u8, all: BucketParams, unproven: BucketParams) -> Self {
        Self {
            v4_mask: prefix_mask::<1>(v4_prefix.min(32))[0],
            seed: 0,
            v6_mask: prefix_mask::<4>(v6_prefix.min(128)),
            all,
            unproven,
        }
    }

    /// Whether any packet can be charged at this level: during a storm
    /// (`storm`) either budget, otherwise `all`.
    #[inline(always)]
    pub fn in_force(&self, storm: bool) -> bool {
        self.all.is_limited() || (storm && self.unproven.is_limited())
    }

    /// The budget a packet is charged to at this level.
    #[inline(always)]
    pub fn budget(&self, which: Budget) -> &BucketParams {
        match which {
            Budget::All => &self.all,
            Budget::Unproven => &self.unproven,
        }
    }
}

/// Marks a wide level's prefix key (in `SourceKey::family`), so a /32 and
/// the /48 with the same bits never share a slot's key.
pub const WIDE_KEY: u32 = 1 << 8;

/// The prefix budgets' settings, part of `RuntimeConfig`: two levels, one
/// inside the other (hierarchical). A packet passes only if both the
/// `fine` prefix (an IPv4 /24, an IPv6 /48 by default) and the `wide`
/// one that holds it (a /16, a /32) have room, and is charged to both: a
/// storm spread over the many fine prefixes of one wide prefix (random
/// /64s across an IPv6 /32 fall in 65,536 /48s, each far under its own
/// budget) still meets the wide budget.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PrefixParams {
    pub fine: PrefixLevel,
    pub wide: PrefixLevel,
    /// Non-zero: a refusal is counted and the packet passed (verdict
    /// `Monitor`), as a rule in monitor mode does.
    pub monitor: u32,
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<PrefixParams>() == 120);

impl PrefixParams {
    /// Budgets at the `fine` level alone (the wide level off).
    pub fn new(v4_prefix: u8, v6_prefix: u8, all: BucketParams, unproven: BucketParams) -> Self {
        Self {
            fine: PrefixLevel::new(v4_prefix, v6_prefix, all, unproven),
            ..Self::default()
        }
    }

    /// Whether any packet can be charged at either level: during a storm
    /// (`storm`) any budget, otherwise the `all` ones.
    #[inline(always)]
    pub fn in_force(&self, storm: bool) -> bool {
        self.fine.in_force(storm) || self.wide.in_force(storm)
    }

    /// The fine prefix of a source address (`addr` network order, as
    /// `PacketInfo::src`).
    #[inline(always)]
    pub fn key(&self, fam: u8, addr: &[u32; 4]) -> SourceKey {
        level_key(&self.fine, fam, addr)
    }

    /// The wide prefix of a source address, marked `WIDE_KEY`.
    #[inline(always)]
    pub fn wide_key(&self, fam: u8, addr: &[u32; 4]) -> SourceKey {
        let mut k = level_key(&self.wide, fam, addr);
        k.family |= WIDE_KEY;
        k
    }
}

#[inline(always)]
fn level_key(level: &PrefixLevel, fam: u8, addr: &[u32; 4]) -> SourceKey {
    if fam == family::IPV4 {
        SourceKey::v4(addr[0], level.v4_mask)
    } else {
        SourceKey::v6(addr, &level.v6_mask)
    }
}

/// Slots of `maps::PREFIXES` (a power of two): room for every /48 of a
/// /32 storm twice over, so the clients' prefixes seldom share a slot.
pub const PREFIX_SLOTS: u32 = 1 << 17;

/// One slot of the prefix budgets: the prefix it holds and the two
/// budgets' GCRA words (ticks, see `bucket`), each updated by
/// compare-and-swap. A prefix whose slot holds another takes it over if
/// that one's budgets are idle (full again: nothing of them is lost) and
/// shares it otherwise, which can only refuse more, never pass more.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PrefixSlot {
    pub key: SourceKey,
    pub _pad: u32,
    pub all_tat: u64,
    pub unproven_tat: u64,
}
const _: () = assert!(core::mem::size_of::<PrefixSlot>() == 40);

/// The slot of prefix `key` (`SourceKey::slot`, seeded).
#[inline(always)]
pub fn slot_of(key: &SourceKey, seed: u32) -> u32 {
    key.slot(seed, PREFIX_SLOTS.trailing_zeros())
}

/// Which budget a packet is charged to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Budget {
    All,
    Unproven,
}

/// The budget for a packet of a source first seen at `first_seen_ns`
/// (coarse clock; a source without a slot is first seen now), while a
/// storm began at `storm_since_ns` (0: no storm), given whether it is a
/// verified source (`verified` is only asked during a storm, for sources
/// first seen since it began: the lookup costs).
#[inline(always)]
pub fn budget(storm_since_ns: u64, first_seen_ns: u64, verified: impl FnOnce() -> bool) -> Budget {
    if storm_since_ns == 0 || first_seen_ns < storm_since_ns || verified() {
        Budget::All
    } else {
        Budget::Unproven
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_storm_every_source_shares_the_whole_budget() {
        assert_eq!(budget(0, 5, || panic!("not asked")), Budget::All);
    }

    #[test]
    fn during_a_storm_only_sources_already_sending_or_verified_keep_it() {
        assert_eq!(budget(100, 99, || panic!("not asked")), Budget::All);
        assert_eq!(budget(100, 100, || false), Budget::Unproven);
        assert_eq!(budget(100, 150, || true), Budget::All);
    }

    #[test]
    fn prefixes_are_cut_at_the_configured_lengths() {
        let p = PrefixParams::new(24, 48, BucketParams::UNLIMITED, BucketParams::UNLIMITED);
        let v4 = p.key(
            family::IPV4,
            &[u32::from_be_bytes([192, 0, 2, 77]).to_be(), 0, 0, 0],
        );
        assert_eq!(v4.addr[0], u32::from_be_bytes([192, 0, 2, 0]).to_be());
        let a = [0x2001_0db8u32.to_be(), 0x0001_abcdu32.to_be(), 7, 9];
        let v6 = p.key(family::IPV6, &a);
        assert_eq!(v6.addr, [a[0], 0x0001_0000u32.to_be(), 0, 0]);
        assert_eq!(v6.family, family::IPV6 as u32);
    }

    #[test]
    fn prefixes_spread_over_the_slots_and_the_seed_moves_them() {
        let p = PrefixParams::new(24, 48, BucketParams::UNLIMITED, BucketParams::UNLIMITED);
        let mut used = std::collections::BTreeSet::new();
        let mut moved = 0;
        for i in 0..(1u32 << 16) {
            let k = p.key(
                family::IPV6,
                &[0x2001_0db8u32.to_be(), (i << 16).to_be(), 0, 0],
            );
            let s = slot_of(&k, 7);
            assert!(s < PREFIX_SLOTS);
            used.insert(s);
            moved += usize::from(slot_of(&k, 8) != s);
        }
        // 65,536 /48s over 131,072 slots: a uniform hash uses ~51,600.
        assert!(used.len() > 45_000, "{} slots used", used.len());
        assert!(moved > 60_000, "the seed moved {moved}");
    }

    #[test]
    fn the_wide_prefix_holds_the_fine_one_and_never_shares_its_key() {
        let all = BucketParams::new(1000, 100).unwrap();
        let mut p = PrefixParams::new(48, 48, all, BucketParams::UNLIMITED);
        p.wide = PrefixLevel::new(16, 48, all, BucketParams::UNLIMITED);
        let a = [0x2001_0db8u32.to_be(), 0x0001_abcdu32.to_be(), 7, 9];
        // Same bits at both levels: the mark keeps the keys apart.
        assert_eq!(
            p.key(family::IPV6, &a).addr,
            p.wide_key(family::IPV6, &a).addr
        );
        assert!(!p.key(family::IPV6, &a).same(&p.wide_key(family::IPV6, &a)));
        let v4 = [u32::from_be_bytes([192, 0, 2, 77]).to_be(), 0, 0, 0];
        let w = p.wide_key(family::IPV4, &v4);
        assert_eq!(w.addr[0], u32::from_be_bytes([192, 0, 0, 0]).to_be());
        assert_eq!(w.family, family::IPV4 as u32 | WIDE_KEY);
    }

    #[test]
    fn with_a_seed_per_level_no_wide_prefix_is_bound_to_a_fine_one_s_slot() {
        let p = PrefixParams {
            wide: PrefixLevel::new(16, 32, BucketParams::UNLIMITED, BucketParams::UNLIMITED),
            ..PrefixParams::new(24, 48, BucketParams::UNLIMITED, BucketParams::UNLIMITED)
        };
        let v4 = |a: u8, b: u8| [u32::from_be_bytes([a, b, 0, 0]).to_be(), 0, 0, 0];
        let shared = |wide_seed: u32, fine_seed: u32| {
            (0..=255u8)
                .flat_map(|a| (0..=255u8).map(move |b| (a, b)))
                .filter(|&(a, b)| {
                    // The /24 whose address bits cancel the wide mark
                    // under one seed.
                    slot_of(&p.wide_key(family::IPV4, &v4(a, b)), wide_seed)
                        == slot_of(&p.key(family::IPV4, &v4(a ^ 0x20, b)), fine_seed)
                })
                .count()
        };
        assert_eq!(shared(7, 7), 65_536, "one seed: every /16 has its partner");
        // Two seeds: as many as chance gives (65,536 / 131,072 slots).
        assert!(shared(7, 0x9E37_79B9) < 8);
        assert!(shared(0x1234_5678, 42) < 8);
    }

    #[test]
    fn a_wide_budget_alone_puts_the_budgets_in_force() {
        let b = BucketParams::new(1000, 100).unwrap();
        let mut p = PrefixParams::new(24, 48, BucketParams::UNLIMITED, BucketParams::UNLIMITED);
        assert!(!p.in_force(true));
        p.wide = PrefixLevel::new(16, 32, BucketParams::UNLIMITED, b);
        assert!(!p.in_force(false) && p.in_force(true));
        assert_eq!(p.wide.budget(Budget::Unproven), &b);
    }

    #[test]
    fn the_unproven_budget_only_counts_during_a_storm() {
        let b = BucketParams::new(1000, 100).unwrap();
        let p = PrefixParams::new(24, 48, BucketParams::UNLIMITED, b);
        assert!(!p.in_force(false));
        assert!(p.in_force(true));
        let p = PrefixParams::new(24, 48, b, BucketParams::UNLIMITED);
        assert!(p.in_force(false) && p.in_force(true));
    }
}
