//! Charging a packet to its prefixes' budgets (`monitor_common::prefix`):
//! at each level one array slot found by a seeded hash and one
//! compare-and-swap on the word of the budget that applies. Only packets
//! their source's own buckets passed come here (or, for a source the table
//! does not hold, its rule and ban), so an over-limit or banned flood
//! never touches it.

use monitor_common::{
    bucket::{BucketParams, conform, ticks},
    drops::{conforms_at, ns_reaching},
    prefix::{Budget, budget, slot_of},
    syncookie::{VerifiedKey, cookie_mode},
    types::{PacketInfo, RuntimeConfig, SourceKey, family, l4},
};

use crate::{atomic, limit, maps::TG_PREFIXES, maps::TG_VERIFIED};

/// Whether the packet (of a source first seen at `first_seen_ns`) is over
/// its prefixes' budgets: `None` if not, and then it has been charged to
/// both levels; if so, `Some` with the instant (ns since the clock base)
/// before which the budget that refused it refuses every packet charged
/// to it, for the drop cache, or 0 where none is certain (see `lasting`).
///
/// The wide level is looked at first, without a charge: a storm spread
/// over a wide prefix is refused there, one slot that stays in the cache,
/// and never touches the slots of its many fine prefixes. Then the fine
/// level is charged, then the wide; a wide refusal then (another CPU took
/// the last unit meanwhile) gives the fine charge back, so a refused
/// packet costs neither level anything.
///
/// Inlined: as a BPF-to-BPF call (this, or `word`) the verifier walked it
/// once per caller all the same, and counted more (655,401 and 880,513
/// processed instructions, against 614,766 inlined, when it was written).
/// The refund after a wide refusal runs only when another CPU took the
/// wide budget's last unit between the look and the charge: no test on
/// one CPU reaches it.
#[inline(always)]
pub fn over(
    info: &PacketInfo,
    cfg: &RuntimeConfig,
    first_seen_ns: u64,
    now: u64,
    since_base: u64,
) -> Option<u64> {
    let p = &cfg.prefix;
    let storm_since = cfg.storm_since_ns;
    if !p.in_force(storm_since != 0) {
        return None;
    }
    let which = budget(storm_since, first_seen_ns, || verified(info, cfg, now));
    let now_ticks = ticks(since_base);
    let (wide, wide_params) = (p.wide_key(info.family, &info.src), p.wide.budget(which));
    let wide_tat = word(wide_params, &wide, which, p.wide.seed, now_ticks);
    if let Some(tat) = refusing(wide_tat, wide_params, now_ticks) {
        return Some(lasting(which, tat, 0, wide_params));
    }
    let (fine, fine_params) = (p.key(info.family, &info.src), p.fine.budget(which));
    let fine_tat = word(fine_params, &fine, which, p.fine.seed, now_ticks);
    if !fine_tat.is_null()
        && let Err(tat) = limit::take(fine_tat, now_ticks, 1, fine_params)
    {
        // The fine word may hold, for a moment, the charge of another
        // CPU's packet that the wide level then refused (given back
        // below): the refusal is cached as if that charge were back.
        let held = if wide_tat.is_null() {
            0
        } else {
            fine_params.charge(1)
        };
        return Some(lasting(which, tat, held, fine_params));
    }
    if !wide_tat.is_null()
        && let Err(tat) = limit::take(wide_tat, now_ticks, 1, wide_params)
    {
        if !fine_tat.is_null() {
            atomic::sub(fine_tat, fine_params.charge(1));
        }
        return Some(lasting(which, tat, 0, wide_params));
    }
    None
}

/// Until when (ns since the clock base) a refusal by budget `which` in
/// state `tat` holds: until the budget has a unit again, since a refused
/// packet charges nothing and the other sources' packets only take units
/// (`limit::refused_until`). `held` is a charge `tat` may hold that is
/// about to be given back (the fine level's, see `over`); discounting it
/// is exact where one other CPU's packet can hold a charge (two CPUs). On
/// more, several may be held at once and the refusal may outlast the
/// budget's by a unit per further CPU: the cached source then waits that
/// long for its next packet, never more. Only for the budget every source
/// shares (`Budget::All`): a source on its prefix's unproven budget leaves
/// it the moment a SYN-cookie handshake verifies it, so that refusal
/// holds for the one packet (0).
#[inline(always)]
fn lasting(which: Budget, tat: u64, held: u64, params: &BucketParams) -> u64 {
    if which != Budget::All || tat == 0 {
        return 0;
    }
    ns_reaching(conforms_at(tat, 1, params).saturating_sub(held))
}

/// Whether a never-seen source's packet would be refused by its
/// prefixes' budgets (wide, then fine; the unproven ones during a storm):
/// looked at, not charged. The pipeline asks before the source claims a
/// slot: a storm spread over a spent prefix then claims none and evicts
/// nobody, before the daemon finds it as after, and during a storm skips
/// the probation entry too, a cache miss per packet. The packet is then
/// refused without `over` (`decide::decide_untracked`): the budget looked
/// at is the one `over` would charge, and a refused packet charges none.
#[inline(always)]
pub fn refuses_new(info: &PacketInfo, cfg: &RuntimeConfig, now: u64) -> bool {
    let p = &cfg.prefix;
    let storm_since = cfg.storm_since_ns;
    // While the budgets only watch, their refusals pass: the source is
    // tracked as it would be without them.
    if !p.in_force(storm_since != 0) || p.monitor != 0 {
        return false;
    }
    // During a storm a never-seen source is unproven, unless a SYN-cookie
    // handshake verified it: that lookup is left to `over`, for the TCP
    // it can apply to.
    let which = if storm_since == 0 {
        Budget::All
    } else if may_be_verified(info, cfg) {
        return false;
    } else {
        Budget::Unproven
    };
    let now_ticks = ticks(now.saturating_sub(cfg.clock_base_ns));
    let wide = p.wide_key(info.family, &info.src);
    let fine = p.key(info.family, &info.src);
    budget_spent(p.wide.budget(which), &wide, which, p.wide.seed, now_ticks)
        || budget_spent(p.fine.budget(which), &fine, which, p.fine.seed, now_ticks)
}

/// Whether prefix `key`'s budget `which` has no unit left, read in its
/// slot whoever holds it: a slot another prefix holds is either idle (a
/// full budget, which `word` would take over) or shared, and its word
/// says which.
#[inline(always)]
fn budget_spent(
    params: &BucketParams,
    key: &SourceKey,
    which: Budget,
    seed: u32,
    now_ticks: u64,
) -> bool {
    if !params.is_limited() {
        return false;
    }
    let Some(slot) = TG_PREFIXES.get_ptr(slot_of(key, seed)) else {
        return false;
    };
    let tat = match which {
        Budget::All => unsafe { &raw const (*slot).all_tat },
        Budget::Unproven => unsafe { &raw const (*slot).unproven_tat },
    };
    spent(tat, params, now_ticks)
}

/// Whether the budget whose word is `tat` (null: unlimited) has no unit
/// left at `now_ticks`.
#[inline(always)]
fn spent(tat: *const u64, params: &BucketParams, now_ticks: u64) -> bool {
    refusing(tat, params, now_ticks).is_some()
}

/// The state of the budget whose word is `tat` (null: unlimited) if it
/// has no unit left at `now_ticks`.
#[inline(always)]
fn refusing(tat: *const u64, params: &BucketParams, now_ticks: u64) -> Option<u64> {
    if tat.is_null() {
        return None;
    }
    let state = atomic::load(tat);
    conform(state, now_ticks, 1, params)
        .is_none()
        .then_some(state)
}

/// The GCRA word of prefix `key`'s budget `which` (whose settings are
/// `params`), or null if that budget is unlimited.
#[inline(always)]
fn word(
    params: &BucketParams,
    key: &SourceKey,
    which: Budget,
    seed: u32,
    now_ticks: u64,
) -> *mut u64 {
    if !params.is_limited() {
        return core::ptr::null_mut();
    }
    let Some(slot) = TG_PREFIXES.get_ptr_mut(slot_of(key, seed)) else {
        return core::ptr::null_mut();
    };
    let s = unsafe { &mut *slot };
    // Another prefix's slot: taken over if its budgets are idle (a TAT in
    // the past is a full bucket, the same as a fresh one), shared if not.
    // Two CPUs taking it over at once write the same kind of key; a torn
    // key only makes the next packet look again.
    if !s.key.same(key)
        && atomic::load(&s.all_tat) <= now_ticks
        && atomic::load(&s.unproven_tat) <= now_ticks
    {
        s.key = *key;
    }
    match which {
        Budget::All => &mut s.all_tat,
        Budget::Unproven => &mut s.unproven_tat,
    }
}

/// Whether the packet's source completed a SYN-cookie handshake: asked
/// only for TCP while cookies are configured (a spoofed UDP storm pays no
/// lookup, and verification is a TCP handshake's).
#[inline(always)]
fn verified(info: &PacketInfo, cfg: &RuntimeConfig, now: u64) -> bool {
    if !may_be_verified(info, cfg) {
        return false;
    }
    let key = if info.family == family::IPV4 {
        VerifiedKey::v4(info.src[0])
    } else {
        VerifiedKey::v6(&info.src)
    };
    unsafe { TG_VERIFIED.get(&key) }.is_some_and(|until| *until > now)
}

/// Whether the packet's source could be a verified one: TCP while SYN
/// cookies are configured.
#[inline(always)]
fn may_be_verified(info: &PacketInfo, cfg: &RuntimeConfig) -> bool {
    info.l4 == l4::TCP && cfg.cookie.mode != cookie_mode::OFF
}
