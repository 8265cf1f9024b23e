//! Charging a packet to its prefix's budget (`monitor_common::prefix`):
//! one array slot found by a seeded hash, one compare-and-swap on the
//! word of the budget that applies. Only packets their source's own buckets passed
//! come here, so an over-limit or banned flood never touches it.

use monitor_common::{
    bucket::ticks,
    prefix::{Budget, budget, slot_of},
    syncookie::{VerifiedKey, cookie_mode},
    types::{PacketInfo, RuntimeConfig, family, l4},
};

use crate::{atomic, limit, maps::TG_PREFIXES, maps::TG_VERIFIED};

/// Whether the packet (of a source first seen at `first_seen_ns`) is over
/// its prefix's budget; if not, it has been charged.
#[inline(always)]
pub fn over(
    info: &PacketInfo,
    cfg: &RuntimeConfig,
    first_seen_ns: u64,
    now: u64,
    since_base: u64,
) -> bool {
    let p = &cfg.prefix;
    let storm_since = cfg.storm_since_ns;
    if !p.in_force(storm_since != 0) {
        return false;
    }
    let (params, unproven) = match budget(storm_since, first_seen_ns, || verified(info, cfg, now)) {
        Budget::All => (&p.all, false),
        Budget::Unproven => (&p.unproven, true),
    };
    if !params.is_limited() {
        return false;
    }
    let key = p.key(info.family, &info.src);
    let Some(slot) = TG_PREFIXES.get_ptr_mut(slot_of(&key, p.seed)) else {
        return false;
    };
    let now_ticks = ticks(since_base);
    let s = unsafe { &mut *slot };
    // Another prefix's slot: taken over if its budgets are idle (a TAT in
    // the past is a full bucket, the same as a fresh one), shared if not.
    // Two CPUs taking it over at once write the same kind of key; a torn
    // key only makes the next packet look again.
    if !s.key.same(&key)
        && atomic::load(&s.all_tat) <= now_ticks
        && atomic::load(&s.unproven_tat) <= now_ticks
    {
        s.key = key;
    }
    let tat = if unproven {
        &mut s.unproven_tat
    } else {
        &mut s.all_tat
    };
    limit::take(tat, now_ticks, 1, params).is_err()
}

/// Whether the packet's source completed a SYN-cookie handshake: asked
/// only for TCP while cookies are configured (a spoofed UDP storm pays no
/// lookup, and verification is a TCP handshake's).
#[inline(always)]
fn verified(info: &PacketInfo, cfg: &RuntimeConfig, now: u64) -> bool {
    if info.l4 != l4::TCP || cfg.cookie.mode == cookie_mode::OFF {
        return false;
    }
    let key = if info.family == family::IPV4 {
        VerifiedKey::v4(info.src[0])
    } else {
        VerifiedKey::v6(&info.src)
    };
    unsafe { TG_VERIFIED.get(&key) }.is_some_and(|until| *until > now)
}
